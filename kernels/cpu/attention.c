/* attention.c: causal grouped-query attention, forward and backward. Work is split over OpenMP
 * threads by (batch, kv head): each thread owns the query heads of its group, so the dK and dV
 * sums over a group never race, and each has its own slice of the scratch (pg_cpu_attention_work).
 * Per query head, through single-threaded BLAS: S = scale·Q·Kᵀ, a causal softmax by rows,
 * O = P·V. The backward recomputes P from Q, K and the saved log-sum-exp:
 *   dV += Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dO ⊙ O)),  dQ = scale·dS·K,  dK += scale·dSᵀ·Q.
 * Query head h reads kv head h / (H/KV) (repeat_interleave semantics).
 *
 * Causality is used, not just masked: the rows are taken in blocks of ATT_BLOCK, and block
 * [r0, r1) only multiplies against keys [0, r1), so the products cover about half of the T×T
 * square (9/16 at T = 1024) instead of all of it. Inside a block the upper triangle is zeroed.
 *
 * Varlen attention (spec §2.2) restricts query i to the keys of its document, [doc_start[i], i].
 * A row block then starts its keys at the smallest doc_start of its rows, so packed short
 * documents skip whole key ranges; inside the block the keys before a row's own document get
 * probability exactly 0, and lse is the masked row's. Plain causal attention is the doc_start
 * NULL case: every range starts at 0, the same products as before, bit for bit.
 *
 * Every product goes through pg_cpu_gemm, so in bf16 mode (lib/backend.h set_bf16) each rounds
 * its two operands to bfloat16, as PyTorch's bf16 SDPA (flash attention) does: S = scale·bf(Q)·
 * bf(K)ᵀ in fp32, the softmax and lse in fp32, O = bf(P)·bf(V); backward dV += bf(P)ᵀ·bf(dO),
 * dP = bf(dO)·bf(V)ᵀ, dS = P ⊙ (dP − rowsum(bf(dO) ⊙ O)) from the fp32 P, dP and O (dO as dP's
 * product saw it, so that Σ_j dS_ij stays 0 up to rounding: at t = 1, dS is 0 as in fp32), then
 * dQ = scale·bf(dS)·bf(K) and dK += scale·bf(dSᵀ)·bf(Q). Outputs (O, lse, dQ, dK, dV) stay fp32.
 * The rounded copies live in pg_cpu_gemm's per-thread tiles, so the caller's work buffer keeps
 * its size and P its fp32 values. */
#include "cpu.h"

#include <omp.h>
#include <string.h>

enum { ATT_BLOCK = 128 };

size_t pg_cpu_attention_work(int t)
{
    return (2 * (size_t)t * (size_t)t + (size_t)t) * (size_t)omp_get_max_threads();
}

/* The first key a row block [r0, r1) needs: the smallest doc_start of its rows (0 without
 * documents). Keys below it are outside every row's document, so the block skips them. */
static int block_lo(const int32_t *ds, int r0, int r1)
{
    if (!ds) return 0;
    int lo = ds[r0];
    for (int i = r0 + 1; i < r1; i++) lo = ds[i] < lo ? ds[i] : lo;
    return lo;
}

/* Rows [r0, r1) of P (row stride t, columns [c0, r1) written) = the softmax of scale·Q·Kᵀ over
 * each row i's keys [ds[i], i] (ds NULL: [0, i]), given each row's log-sum-exp, or computing it
 * into lse when compute_lse; the other columns of [c0, r1) are zeroed. c0 = block_lo(ds, r0, r1).
 * q, k point at one head's row 0; rows are strided by ldq, ldk. */
static void probs(pg_real *p, pg_real *lse, int compute_lse, const pg_real *q, int ldq, const pg_real *k, int ldk,
                  int t, int hd, double scale, int r0, int r1, const int32_t *ds, int c0)
{
    pg_cpu_gemm(CblasNoTrans, CblasTrans, r1 - r0, r1 - c0, hd, (pg_real)scale, q + (size_t)r0 * ldq, ldq,
                k + (size_t)c0 * ldk, ldk, 0, p + (size_t)r0 * t + c0, t);
    for (int i = r0; i < r1; i++) {
        pg_real *row = p + (size_t)i * t;
        int lo = ds ? ds[i] : 0;
        if (compute_lse) {
            /* one exp pass: e = exp(s − max), then P = e / Σe */
            pg_real m = row[lo];
#pragma omp simd reduction(max : m)
            for (int j = lo + 1; j <= i; j++) m = row[j] > m ? row[j] : m;
            pg_cpu_exp_shift(row + lo, row + lo, m, i + 1 - lo);
            double sum = 0;
#pragma omp simd reduction(+ : sum)
            for (int j = lo; j <= i; j++) sum += row[j];
            lse[i] = m + (pg_real)log(sum);
            pg_real inv = (pg_real)(1.0 / sum);
#pragma omp simd
            for (int j = lo; j <= i; j++) row[j] *= inv;
        } else {
            pg_cpu_exp_shift(row + lo, row + lo, lse[i], i + 1 - lo);
        }
        if (lo > c0) memset(row + c0, 0, (size_t)(lo - c0) * sizeof *row); /* other documents: exactly 0 */
        memset(row + i + 1, 0, (size_t)(r1 - i - 1) * sizeof *row);
    }
}

void pg_cpu_attention_varlen_fwd(pg_real *out, pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v,
                                 const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale,
                                 pg_real *work)
{
    int group = h / kv, ldq = h * hd, ldk = kv * hd;
#pragma omp parallel for collapse(2) schedule(dynamic) if ((size_t)b * h * t * t * hd > PG_OMP_MIN)
    for (int bi = 0; bi < b; bi++)
        for (int g = 0; g < kv; g++) {
            pg_real *p = work + (2 * (size_t)t * t + t) * (size_t)omp_get_thread_num();
            size_t ko = (size_t)bi * t * ldk + (size_t)g * hd;
            const int32_t *ds = doc_start ? doc_start + (size_t)bi * t : NULL;
            for (int hi = g * group; hi < (g + 1) * group; hi++) {
                size_t qo = (size_t)bi * t * ldq + (size_t)hi * hd;
                for (int r0 = 0; r0 < t; r0 += ATT_BLOCK) {
                    int r1 = r0 + ATT_BLOCK < t ? r0 + ATT_BLOCK : t, c0 = block_lo(ds, r0, r1);
                    probs(p, lse + ((size_t)bi * h + hi) * t, 1, q + qo, ldq, k + ko, ldk, t, hd, scale, r0, r1, ds,
                          c0);
                    /* O[r0:r1] = P[r0:r1, c0:r1]·V[c0:r1] */
                    pg_cpu_gemm(CblasNoTrans, CblasNoTrans, r1 - r0, hd, r1 - c0, 1, p + (size_t)r0 * t + c0, t,
                                v + ko + (size_t)c0 * ldk, ldk, 0, out + qo + (size_t)r0 * ldq, ldq);
                }
            }
        }
}

void pg_cpu_attention_varlen_bwd(pg_real *dq, pg_real *dk, pg_real *dv, const pg_real *dout, const pg_real *out,
                                 const pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v,
                                 const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale,
                                 pg_real *work)
{
    int group = h / kv, ldq = h * hd, ldk = kv * hd, bf = pg_cpu_bf16;
#pragma omp parallel for collapse(2) schedule(dynamic) if ((size_t)b * h * t * t * hd > PG_OMP_MIN)
    for (int bi = 0; bi < b; bi++)
        for (int g = 0; g < kv; g++) {
            pg_real *p = work + (2 * (size_t)t * t + t) * (size_t)omp_get_thread_num(), *dp = p + (size_t)t * t;
            size_t ko = (size_t)bi * t * ldk + (size_t)g * hd;
            const int32_t *ds = doc_start ? doc_start + (size_t)bi * t : NULL;
            for (int i = 0; i < t; i++) {
                memset(dk + ko + (size_t)i * ldk, 0, (size_t)hd * sizeof *dk);
                memset(dv + ko + (size_t)i * ldk, 0, (size_t)hd * sizeof *dv);
            }
            for (int hi = g * group; hi < (g + 1) * group; hi++) {
                size_t qo = (size_t)bi * t * ldq + (size_t)hi * hd;
                for (int r0 = 0; r0 < t; r0 += ATT_BLOCK) {
                    int r1 = r0 + ATT_BLOCK < t ? r0 + ATT_BLOCK : t, nr = r1 - r0, c0 = block_lo(ds, r0, r1);
                    int nc = r1 - c0; /* the block's keys: [c0, r1) */
                    pg_real *pb = p + (size_t)r0 * t + c0, *dpb = dp + (size_t)r0 * t + c0;
                    const pg_real *dob = dout + qo + (size_t)r0 * ldq, *kc = k + ko + (size_t)c0 * ldk;
                    probs(p, (pg_real *)lse + ((size_t)bi * h + hi) * t, 0, q + qo, ldq, k + ko, ldk, t, hd, scale,
                          r0, r1, ds, c0);
                    /* dV[c0:r1] += P[r0:r1, c0:r1]ᵀ·dO[r0:r1] */
                    pg_cpu_gemm(CblasTrans, CblasNoTrans, nc, hd, nr, 1, pb, t, dob, ldq, 1, dv + ko + (size_t)c0 * ldk,
                                ldk);
                    /* dP[r0:r1, c0:r1] = dO[r0:r1]·V[c0:r1]ᵀ */
                    pg_cpu_gemm(CblasNoTrans, CblasTrans, nr, nc, hd, 1, dob, ldq, v + ko + (size_t)c0 * ldk, ldk, 0,
                                dpb, t);
                    for (int i = r0; i < r1; i++) {
                        const pg_real *o = out + qo + (size_t)i * ldq, *gr = dout + qo + (size_t)i * ldq;
                        double d = 0;
                        if (bf) /* rowsum(dO ⊙ O) with dO as dP's product saw it, as flash attention's */
                            for (int c = 0; c < hd; c++) d += (double)pg_cpu_bf16_round(gr[c]) * o[c];
                        else
                            for (int c = 0; c < hd; c++) d += (double)gr[c] * o[c];
                        pg_real delta = (pg_real)d, *pr = p + (size_t)i * t, *dr = dp + (size_t)i * t;
                        int lo = ds ? ds[i] : 0;
#pragma omp simd
                        for (int j = lo; j <= i; j++) pr[j] = pr[j] * (dr[j] - delta); /* P becomes dS */
                    }
                    /* dQ[r0:r1] = scale·dS·K[c0:r1];  dK[c0:r1] += scale·dSᵀ·Q[r0:r1] */
                    pg_cpu_gemm(CblasNoTrans, CblasNoTrans, nr, hd, nc, (pg_real)scale, pb, t, kc, ldk, 0,
                                dq + qo + (size_t)r0 * ldq, ldq);
                    pg_cpu_gemm(CblasTrans, CblasNoTrans, nc, hd, nr, (pg_real)scale, pb, t, q + qo + (size_t)r0 * ldq,
                                ldq, 1, dk + ko + (size_t)c0 * ldk, ldk);
                }
            }
        }
}

/* Plain causal attention is varlen attention with one document per sequence. */
void pg_cpu_attention_fwd(pg_real *out, pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v, int b,
                          int t, int h, int kv, int hd, double scale, pg_real *work)
{
    pg_cpu_attention_varlen_fwd(out, lse, q, k, v, NULL, b, t, h, kv, hd, scale, work);
}

void pg_cpu_attention_bwd(pg_real *dq, pg_real *dk, pg_real *dv, const pg_real *dout, const pg_real *out,
                          const pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v, int b, int t,
                          int h, int kv, int hd, double scale, pg_real *work)
{
    pg_cpu_attention_varlen_bwd(dq, dk, dv, dout, out, lse, q, k, v, NULL, b, t, h, kv, hd, scale, work);
}
