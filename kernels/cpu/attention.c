/* attention.c: causal grouped-query attention, forward and backward, one (batch, head) at a
 * time: scores through BLAS (S = scale·Q·Kᵀ, T×T), a masked softmax over rows with OpenMP, then
 * O = P·V through BLAS. The backward recomputes P from Q, K and the saved log-sum-exp:
 *   dV += Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dO ⊙ O)),  dQ = scale·dS·K,  dK += scale·dSᵀ·Q.
 * Query head h reads kv head h / (H/KV) (repeat_interleave semantics), so dK and dV sum over the
 * query heads of their group. The full T×T block is computed and masked: simple, and BLAS-bound.
 * Scratch comes from the caller (pg_attention_work), so nothing here can fail. */
#include "cpu.h"

#include <string.h>

/* P[T,T] = causal softmax of scale·Q·Kᵀ given each row's log-sum-exp (or computing it into lse
 * when compute_lse). q, k point at head h of batch b; rows are strided by ldq, ldk. */
static void probs(pg_real *p, pg_real *lse, int compute_lse, const pg_real *q, int ldq, const pg_real *k, int ldk,
                  int t, int hd, double scale)
{
    pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, hd, (pg_real)scale, q, ldq, k, ldk, 0, p, t);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < t; i++) {
        pg_real *row = p + (size_t)i * t;
        pg_real l;
        if (compute_lse) {
            pg_real m = row[0];
            for (int j = 1; j <= i; j++) m = row[j] > m ? row[j] : m;
            double sum = 0;
            for (int j = 0; j <= i; j++) sum += exp((double)(row[j] - m));
            l = m + (pg_real)log(sum);
            lse[i] = l;
        } else {
            l = lse[i];
        }
        for (int j = 0; j <= i; j++) row[j] = exp(row[j] - l);
        for (int j = i + 1; j < t; j++) row[j] = 0;
    }
}

void pg_cpu_attention_fwd(pg_real *out, pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v, int b,
                          int t, int h, int kv, int hd, double scale, pg_real *work)
{
    int group = h / kv, ldq = h * hd, ldk = kv * hd;
    for (int bi = 0; bi < b; bi++)
        for (int hi = 0; hi < h; hi++) {
            size_t qo = (size_t)bi * t * ldq + (size_t)hi * hd;
            size_t ko = (size_t)bi * t * ldk + (size_t)(hi / group) * hd;
            probs(work, lse + ((size_t)bi * h + hi) * t, 1, q + qo, ldq, k + ko, ldk, t, hd, scale);
            pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, hd, t, 1, work, t, v + ko, ldk, 0, out + qo, ldq);
        }
}

void pg_cpu_attention_bwd(pg_real *dq, pg_real *dk, pg_real *dv, const pg_real *dout, const pg_real *out,
                          const pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v, int b, int t,
                          int h, int kv, int hd, double scale, pg_real *work)
{
    pg_real *p = work, *dp = work + (size_t)t * t;
    int group = h / kv, ldq = h * hd, ldk = kv * hd;
    memset(dk, 0, (size_t)b * t * ldk * sizeof *dk);
    memset(dv, 0, (size_t)b * t * ldk * sizeof *dv);
    for (int bi = 0; bi < b; bi++)
        for (int hi = 0; hi < h; hi++) {
            size_t qo = (size_t)bi * t * ldq + (size_t)hi * hd;
            size_t ko = (size_t)bi * t * ldk + (size_t)(hi / group) * hd;
            probs(p, (pg_real *)lse + ((size_t)bi * h + hi) * t, 0, q + qo, ldq, k + ko, ldk, t, hd, scale);
            /* dV += Pᵀ·dO */
            pg_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, t, hd, t, 1, p, t, dout + qo, ldq, 1, dv + ko, ldk);
            /* dP = dO·Vᵀ */
            pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, hd, 1, dout + qo, ldq, v + ko, ldk, 0, dp, t);
#pragma omp parallel for schedule(static)
            for (int i = 0; i < t; i++) {
                const pg_real *o = out + qo + (size_t)i * ldq, *g = dout + qo + (size_t)i * ldq;
                double d = 0;
                for (int c = 0; c < hd; c++) d += (double)g[c] * o[c];
                pg_real delta = (pg_real)d, *pr = p + (size_t)i * t, *dr = dp + (size_t)i * t;
                for (int j = 0; j <= i; j++) pr[j] = pr[j] * (dr[j] - delta); /* P becomes dS */
            }
            /* dQ = scale·dS·K;  dK += scale·dSᵀ·Q */
            pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, hd, t, (pg_real)scale, p, t, k + ko, ldk, 0, dq + qo,
                    ldq);
            pg_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, t, hd, t, (pg_real)scale, p, t, q + qo, ldq, 1, dk + ko,
                    ldk);
        }
}
