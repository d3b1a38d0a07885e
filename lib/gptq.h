/* gptq.h: GPTQ with the full Hessian (Frantar et al. 2022; spec/techniques.md §4.3).
 *
 * Quantizes the rows × cols weight W of a linear layer y = x Wᵀ, one column (input channel) at a
 * time, pushing each column's rounding error onto the columns not yet quantized so that the
 * layer's output error on the calibration inputs, tr(ΔW H ΔWᵀ) with H = E[xᵀx], stays small:
 *
 *   1. dead columns (H_jj = 0: an input that is always zero) get H_jj = 1 and W[:, j] = 0;
 *      damping H += damp · mean(diag H) · I;
 *   2. act-order: the columns are visited by descending H_jj (ties by index);
 *   3. U = the upper Cholesky factor of H⁻¹ (LAPACKE: potrf, potri, potrf);
 *   4. the per-row steps s are fixed before the loop (the caller's clip rule on the original row,
 *      rounded to fp16: the steps dequantization uses);
 *   5. blocks of `block` columns: for each column j, q_j = clamp(round(w_j/s), −Q, Q),
 *      e_j = (w_j − q_j s)/U_jj, W[:, j+1..block end] −= e_j U[j, j+1..block end]; after the block,
 *      W[:, rest] −= E_block U[block, rest] (the lazy batch update, one GEMM);
 *   6. the permutation is undone: q is in W's own column order.
 *
 * Everything runs in double. Rows are independent given U, so they run in parallel (OpenMP) and
 * the result does not depend on the thread count. When H is not positive definite after damping
 * (a rank-deficient H from too few calibration tokens), the damping is multiplied by 10, up to
 * five times, and the damping used is reported.
 */
#ifndef PG_GPTQ_H
#define PG_GPTQ_H

#include <stdint.h>

struct pg_gptq_opts {
    double damp;   /* relative damping (the records' 0.01) */
    int act_order; /* 1: visit columns by descending H_jj (the records' default) */
    int block;     /* columns per lazy-update block (128) */
};

struct pg_gptq_report {
    int64_t dead;      /* columns with H_jj = 0 */
    double damp;       /* the relative damping used (opts.damp, or more after retries) */
};

void pg_gptq_opts_default(struct pg_gptq_opts *o);

/* Quantizes w (rows × cols, row-major) against h (cols × cols, symmetric, row-major) with the
 * per-row steps step[rows] (positive) and levels −qmax..qmax into q (rows × cols). rep may be
 * NULL. @return 0, PG_E_INVAL (bad sizes or options), PG_E_NOMEM, or PG_E_LIB when H stays
 * singular (or LAPACK fails) after every retry. */
int pg_gptq_quantize(const float *w, int64_t rows, int64_t cols, const double *h, const float *step, int qmax,
                     const struct pg_gptq_opts *o, int8_t *q, struct pg_gptq_report *rep);

/* The layer-output error of a quantization: Σ_r (w_r − q_r s_r) H (w_r − q_r s_r)ᵀ, and in *ref
 * the same form of W itself (Σ_r w_r H w_rᵀ), so that sqrt(err / ref) is the relative output
 * error on the calibration inputs. @return the error, or NAN when out of memory. */
double pg_gptq_output_error(const float *w, int64_t rows, int64_t cols, const double *h, const int8_t *q,
                            const float *step, double *ref);
/* The same for any reconstruction wq (rows × cols), e.g. a dequantized tensor with its LQER
 * correction. */
double pg_output_error(const float *w, const float *wq, int64_t rows, int64_t cols, const double *h, double *ref);

#endif
