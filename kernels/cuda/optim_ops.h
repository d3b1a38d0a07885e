/* optim_ops.h: the CUDA backend's optimizer operations (lib/backend.h's "optimizer steps on device
 * memory"), callable from C. Each reproduces the arithmetic of its host reference in lib/optim.c
 * (and lib/quant.c for the fake quantization) element by element: the same roundings in the same
 * order, with the multiplications and additions kept apart (no fused multiply-add), so an element
 * update gives the host's bits from the same inputs. What can differ is the order of the sums of
 * squares behind a norm (a tree of double partial sums here, 64 sequential blocks on the host): a
 * relative 1e-16 in double, which rarely moves the float it is rounded to. Every reduction has a
 * fixed shape: the same inputs give the same bits on every run.
 *
 * All pointers are device memory; everything runs on pg_cuda_stream() without waiting. */
#ifndef PG_CUDA_OPTIM_OPS_H
#define PG_CUDA_OPTIM_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct pg_muon;
struct pg_opt_tensor;

/* lib/backend.h adam_update (pg_adam_step's element update over a list, one launch; sc: its step
 * values on the device). */
void pg_cuda_adam_update(const struct pg_opt_tensor *t, size_t n, float *m, float *v, const size_t *off, double b1,
                         double b2, double eps, double lr_wd, double step_size, double bc2_sqrt, const double *sc);
/* lib/backend.h muon_step: pg_muon_launch, matrix by matrix (kernels/cuda/optim_muon.c). */
void pg_cuda_muon_step(struct pg_muon *mu);
/* lib/backend.h clip_grad_norm: the norm and the clipping coefficient stay on the device. */
void pg_cuda_clip_grad_norm(const struct pg_opt_tensor *t, size_t n, double max_norm);
void pg_cuda_ema_update(float *ema, const float *theta, size_t n, double decay);
void pg_cuda_swa_add(double *sum, const float *x, size_t n);
void pg_cuda_swa_average(float *dst, const double *sum, size_t n, double count);
void pg_cuda_fake_quant_rows(float *dst, const float *src, int64_t rows, int64_t cols, int bits);
void pg_cuda_fake_quant_trit(float *dst, const float *src, int64_t rows, int64_t cols, int levels);
/* lib/backend.h sgd_update (pg_sgd_step's element update, TTT). */
void pg_cuda_sgd_update(float *p, const float *g, float *buf, size_t n, double mu, double lr);

/* The pieces of a Muon step (optim_muon.c strings them together), each as lib/optim.c computes it.
 * Where they take sc (struct pg_muon sc_dev), non-NULL, the step's values are read from it on the
 * device instead of the arguments: sc[0] the momentum, sc[1] lr, sc[2] the decay factor.
 * Each goes over a list of n tensors in one launch (their element count each).
 * Momentum, list k's grad g into buf + off[k]: buf = mom·buf + g; G = g + mom·buf (Nesterov) or
 * g, into list k's param field (not written when NULL). */
void pg_cuda_muon_momentum(const struct pg_opt_tensor *list, size_t n, float *buf, const size_t *off, float mom,
                           int nesterov, const double *sc);
/* MuonEq-R: every row of x (rows × cols) divided by max(‖row‖₂, 1e-7). */
void pg_cuda_row_normalize(float *x, int rows, int cols);
/* pg_newton_schulz on count matrices at x (each rows × cols, row-major, one after the other, in
 * place) with steps (a, b, c) triples in abc (host memory, 3·steps floats: the coefficients as
 * pg_real), bf16 rounding where the baseline's compiled function stores bf16; work:
 * count·pg_newton_schulz5_work(rows, cols) device floats. The matrices go through the same
 * operations together (batched products, element passes over the batch): each gives the bits it
 * would alone, but for the products' sum order. */
void pg_cuda_newton_schulz(float *x, int count, int rows, int cols, int steps, const float *abc, int bf16,
                           float *work);
/* p = p·decay − lr·bf16?(G·scale) (float, each operation rounded: the host's decay loop, then its
 * update loop), p list k's param and G its grad field. */
void pg_cuda_muon_apply(const struct pg_opt_tensor *list, size_t n, float decay, float lr, float scale, int bf16,
                        const double *sc);

#ifdef __cplusplus
}
#endif

#endif
