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
 * square (9/16 at T = 1024) instead of all of it. Inside a block the upper triangle is zeroed. */
#include "cpu.h"

#include <omp.h>
#include <string.h>

enum { ATT_BLOCK = 128 };

size_t pg_cpu_attention_work(int t)
{
    return (2 * (size_t)t * (size_t)t + (size_t)t) * (size_t)omp_get_max_threads();
}

/* Rows [r0, r1) of P (row stride t, columns [0, r1)) = causal softmax of scale·Q·Kᵀ, given each
 * row's log-sum-exp, or computing it into lse when compute_lse. q, k point at one head's row 0;
 * rows are strided by ldq, ldk. */
static void probs(pg_real *p, pg_real *lse, int compute_lse, const pg_real *q, int ldq, const pg_real *k, int ldk,
                  int t, int hd, double scale, int r0, int r1)
{
    pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hd, (pg_real)scale, q + (size_t)r0 * ldq, ldq, k,
            ldk, 0, p + (size_t)r0 * t, t);
    for (int i = r0; i < r1; i++) {
        pg_real *row = p + (size_t)i * t;
        if (compute_lse) {
            /* one exp pass: e = exp(s − max), then P = e / Σe */
            pg_real m = row[0];
#pragma omp simd reduction(max : m)
            for (int j = 1; j <= i; j++) m = row[j] > m ? row[j] : m;
            pg_cpu_exp_shift(row, row, m, i + 1);
            double sum = 0;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j <= i; j++) sum += row[j];
            lse[i] = m + (pg_real)log(sum);
            pg_real inv = (pg_real)(1.0 / sum);
#pragma omp simd
            for (int j = 0; j <= i; j++) row[j] *= inv;
        } else {
            pg_cpu_exp_shift(row, row, lse[i], i + 1);
        }
        memset(row + i + 1, 0, (size_t)(r1 - i - 1) * sizeof *row);
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
                for (int r0 = 0; r0 < t; r0 += ATT_BLOCK) {
                    int r1 = r0 + ATT_BLOCK < t ? r0 + ATT_BLOCK : t;
                    probs(p, lse + ((size_t)bi * h + hi) * t, 1, q + qo, ldq, k + ko, ldk, t, hd, scale, r0, r1);
                    /* O[r0:r1] = P[r0:r1, :r1]·V[:r1] */
                    pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hd, r1, 1, p + (size_t)r0 * t, t,
                            v + ko, ldk, 0, out + qo + (size_t)r0 * ldq, ldq);
                }
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
                for (int r0 = 0; r0 < t; r0 += ATT_BLOCK) {
                    int r1 = r0 + ATT_BLOCK < t ? r0 + ATT_BLOCK : t, nr = r1 - r0;
                    pg_real *pb = p + (size_t)r0 * t, *dpb = dp + (size_t)r0 * t;
                    const pg_real *dob = dout + qo + (size_t)r0 * ldq;
                    probs(p, (pg_real *)lse + ((size_t)bi * h + hi) * t, 0, q + qo, ldq, k + ko, ldk, t, hd, scale,
                          r0, r1);
                    /* dV[:r1] += P[r0:r1, :r1]ᵀ·dO[r0:r1] */
                    pg_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, nr, 1, pb, t, dob, ldq, 1, dv + ko, ldk);
                    /* dP[r0:r1, :r1] = dO[r0:r1]·V[:r1]ᵀ */
                    pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, r1, hd, 1, dob, ldq, v + ko, ldk, 0, dpb, t);
                    for (int i = r0; i < r1; i++) {
                        const pg_real *o = out + qo + (size_t)i * ldq, *gr = dout + qo + (size_t)i * ldq;
                        double d = 0;
                        for (int c = 0; c < hd; c++) d += (double)gr[c] * o[c];
                        pg_real delta = (pg_real)d, *pr = p + (size_t)i * t, *dr = dp + (size_t)i * t;
#pragma omp simd
                        for (int j = 0; j <= i; j++) pr[j] = pr[j] * (dr[j] - delta); /* P becomes dS */
                    }
                    /* dQ[r0:r1] = scale·dS·K[:r1];  dK[:r1] += scale·dSᵀ·Q[r0:r1] */
                    pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, r1, (pg_real)scale, pb, t, k + ko, ldk,
                            0, dq + qo + (size_t)r0 * ldq, ldq);
                    pg_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, nr, (pg_real)scale, pb, t,
                            q + qo + (size_t)r0 * ldq, ldq, 1, dk + ko, ldk);
                }
            }
        }
}
