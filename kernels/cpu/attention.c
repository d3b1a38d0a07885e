/* attention.c: causal grouped-query attention, forward and backward. Work is split over OpenMP
 * threads by (batch, kv head): each thread owns the query heads of its group, so the dK and dV
 * sums over a group never race, and each has its own slice of the scratch (pg_cpu_attention_work).
 * Per query head, through single-threaded BLAS: S = scale·Q·Kᵀ (T×T), a causal softmax by rows,
 * O = P·V. The backward recomputes P from Q, K and the saved log-sum-exp:
 *   dV += Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dO ⊙ O)),  dQ = scale·dS·K,  dK += scale·dSᵀ·Q.
 * Query head h reads kv head h / (H/KV) (repeat_interleave semantics). The full T×T block is
 * computed and masked: simple, and BLAS-bound. */
#include "cpu.h"

#include <omp.h>
#include <string.h>

size_t pg_cpu_attention_work(int t)
{
    return (2 * (size_t)t * (size_t)t + (size_t)t) * (size_t)omp_get_max_threads();
}

/* P[T,T] = causal softmax of scale·Q·Kᵀ given each row's log-sum-exp (or computing it into lse
 * when compute_lse). q, k point at one head; rows are strided by ldq, ldk. */
static void probs(pg_real *p, pg_real *lse, int compute_lse, const pg_real *q, int ldq, const pg_real *k, int ldk,
                  int t, int hd, double scale)
{
    pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, hd, (pg_real)scale, q, ldq, k, ldk, 0, p, t);
    for (int i = 0; i < t; i++) {
        pg_real *row = p + (size_t)i * t;
        pg_real l;
        if (compute_lse) {
            pg_real m = row[0];
            for (int j = 1; j <= i; j++) m = row[j] > m ? row[j] : m;
            double sum = 0;
            for (int j = 0; j <= i; j++) sum += exp(row[j] - m);
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
#pragma omp parallel for collapse(2) schedule(dynamic) if ((size_t)b * h * t * t * hd > PG_OMP_MIN)
    for (int bi = 0; bi < b; bi++)
        for (int g = 0; g < kv; g++) {
            pg_real *p = work + (2 * (size_t)t * t + t) * (size_t)omp_get_thread_num();
            size_t ko = (size_t)bi * t * ldk + (size_t)g * hd;
            for (int hi = g * group; hi < (g + 1) * group; hi++) {
                size_t qo = (size_t)bi * t * ldq + (size_t)hi * hd;
                probs(p, lse + ((size_t)bi * h + hi) * t, 1, q + qo, ldq, k + ko, ldk, t, hd, scale);
                pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, hd, t, 1, p, t, v + ko, ldk, 0, out + qo, ldq);
            }
        }
}

void pg_cpu_attention_bwd(pg_real *dq, pg_real *dk, pg_real *dv, const pg_real *dout, const pg_real *out,
                          const pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v, int b, int t,
                          int h, int kv, int hd, double scale, pg_real *work)
{
    int group = h / kv, ldq = h * hd, ldk = kv * hd;
#pragma omp parallel for collapse(2) schedule(dynamic) if ((size_t)b * h * t * t * hd > PG_OMP_MIN)
    for (int bi = 0; bi < b; bi++)
        for (int g = 0; g < kv; g++) {
            pg_real *p = work + (2 * (size_t)t * t + t) * (size_t)omp_get_thread_num(), *dp = p + (size_t)t * t;
            size_t ko = (size_t)bi * t * ldk + (size_t)g * hd;
            for (int i = 0; i < t; i++) {
                memset(dk + ko + (size_t)i * ldk, 0, (size_t)hd * sizeof *dk);
                memset(dv + ko + (size_t)i * ldk, 0, (size_t)hd * sizeof *dv);
            }
            for (int hi = g * group; hi < (g + 1) * group; hi++) {
                size_t qo = (size_t)bi * t * ldq + (size_t)hi * hd;
                probs(p, (pg_real *)lse + ((size_t)bi * h + hi) * t, 0, q + qo, ldq, k + ko, ldk, t, hd, scale);
                /* dV += Pᵀ·dO */
                pg_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, t, hd, t, 1, p, t, dout + qo, ldq, 1, dv + ko, ldk);
                /* dP = dO·Vᵀ */
                pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, hd, 1, dout + qo, ldq, v + ko, ldk, 0, dp, t);
                for (int i = 0; i < t; i++) {
                    const pg_real *o = out + qo + (size_t)i * ldq, *gr = dout + qo + (size_t)i * ldq;
                    double d = 0;
                    for (int c = 0; c < hd; c++) d += (double)gr[c] * o[c];
                    pg_real delta = (pg_real)d, *pr = p + (size_t)i * t, *dr = dp + (size_t)i * t;
                    for (int j = 0; j <= i; j++) pr[j] = pr[j] * (dr[j] - delta); /* P becomes dS */
                }
                /* dQ = scale·dS·K;  dK += scale·dSᵀ·Q */
                pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, hd, t, (pg_real)scale, p, t, k + ko, ldk, 0,
                        dq + qo, ldq);
                pg_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, t, hd, t, (pg_real)scale, p, t, q + qo, ldq, 1,
                        dk + ko, ldk);
            }
        }
}
