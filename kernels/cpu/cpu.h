/* cpu.h: shared by the CPU reference kernels: the scalar type, BLAS for it, OpenMP. */
#ifndef PG_KERNELS_CPU_H
#define PG_KERNELS_CPU_H

#include "../../lib/backend.h"
#include "../../lib/optim.h" /* pg_bf16_round */

#include <cblas.h>
#include <stddef.h>
#include <stdint.h>
#include <tgmath.h> /* exp, sqrt, tanh, log pick the pg_real precision */

#ifdef PG_REAL_DOUBLE
#define pg_gemm cblas_dgemm
#else
#define pg_gemm cblas_sgemm
#endif

/* Below this many elements an operation runs on one thread: starting a parallel region costs more
 * than it saves (the `if` clause of the OpenMP loops). */
#define PG_OMP_MIN (1 << 15)

/* Makes OpenBLAS single-threaded (OpenMP splits the products instead); called by the backend's
 * users before the first operation (pg_backend_cpu_init). */
void pg_cpu_init(void);
void *pg_cpu_alloc(size_t bytes);
void pg_cpu_free(void *p);
void pg_cpu_memcpy(void *dst, const void *src, size_t bytes);
void pg_cpu_copy(pg_real *dst, const pg_real *src, size_t n);
void pg_cpu_zero(pg_real *x, size_t n);
void pg_cpu_axpy(pg_real *y, double a, const pg_real *x, size_t n);
void pg_cpu_scale(pg_real *x, double a, size_t n);
size_t pg_cpu_attention_work(int t);
/* The backend's state: 0, or the out-of-memory an operation recorded with pg_cpu_fail_nomem
 * (it then skipped its work), reported once; bf16 products on or off (linear.c). */
int pg_cpu_status(void);
void pg_cpu_fail_nomem(size_t bytes, const char *what);
size_t pg_cpu_mem_peak(void); /* 0: host memory is not tracked */
void pg_cpu_set_bf16(int on);
int pg_cpu_get_bf16(void);
extern int pg_cpu_bf16; /* 1: matrix products round their inputs to bfloat16 */
/* x rounded to bfloat16 (lib/optim.h's pg_bf16_round; through float in a PG_REAL_DOUBLE build). */
static inline pg_real pg_cpu_bf16_round(pg_real x) { return (pg_real)pg_bf16_round((float)x); }
/* Every matrix product of the backend (linear.c): C[m,n] = alpha·op(A)·op(B) + beta·C, row-major,
 * op(A) m × k, op(B) k × n, as cblas_?gemm(CblasRowMajor, ...). With pg_cpu_bf16 off it is that
 * BLAS call; on, A and B are rounded to bfloat16 (round to nearest even) into per-thread tiles
 * first and the tiles multiplied by the same BLAS call (fp32 accumulation; C not rounded). Safe
 * to call from OpenMP threads; never fails. */
void pg_cpu_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, pg_real alpha, const pg_real *a,
                 int lda, const pg_real *b, int ldb, pg_real beta, pg_real *c, int ldc);
/* Tests only: at most `elems` elements of each thread's bf16 tile buffer (0: all of it), to
 * exercise the tiling on small products. */
void pg_cpu_bf16_tile_limit(size_t elems);
/* y[j] = exp(x[j] − shift), j < n (y may be x): vectorized in the float build (vexp.c). */
void pg_cpu_exp_shift(pg_real *y, const pg_real *x, pg_real shift, int n);

/* The operations, one group per file, gathered into pg_backend_cpu by backend_cpu.c. */
void pg_cpu_matmul_fwd(pg_real *y, const pg_real *x, const pg_real *w, int n, int in, int out);
void pg_cpu_matmul_bwd(pg_real *dx, pg_real *dw, const pg_real *dy, const pg_real *x, const pg_real *w, int n, int in,
                       int out, int dx_accumulate);
void pg_cpu_embedding_fwd(pg_real *y, const pg_real *emb, const int32_t *ids, int n, int d);
void pg_cpu_embedding_bwd(pg_real *demb, const pg_real *dy, const int32_t *ids, int n, int d);
void pg_cpu_rmsnorm_fwd(pg_real *y, pg_real *rstd, const pg_real *x, int n, int d, double eps, double scale);
void pg_cpu_rmsnorm_bwd(pg_real *dx, const pg_real *dy, const pg_real *y, const pg_real *rstd, int n, int d,
                        double scale, int dx_accumulate);
void pg_cpu_rope_fwd(pg_real *x, const pg_real *cos, const pg_real *sin, int b, int t, int h, int hd, int rd);
void pg_cpu_rope_bwd(pg_real *dx, const pg_real *cos, const pg_real *sin, int b, int t, int h, int hd, int rd);
void pg_cpu_attention_fwd(pg_real *out, pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v, int b,
                          int t, int h, int kv, int hd, double scale, pg_real *work);
void pg_cpu_attention_bwd(pg_real *dq, pg_real *dk, pg_real *dv, const pg_real *dout, const pg_real *out,
                          const pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v, int b, int t,
                          int h, int kv, int hd, double scale, pg_real *work);
void pg_cpu_relu2_fwd(pg_real *y, const pg_real *x, size_t n, double slope);
void pg_cpu_relu2_bwd(pg_real *dx, const pg_real *dy, const pg_real *x, size_t n, double slope);
void pg_cpu_round_bf16(pg_real *x, size_t n);
void pg_cpu_mix_fwd(pg_real *y, const pg_real *x, const pg_real *x0, const pg_real *m0, const pg_real *m1, int n,
                    int d);
void pg_cpu_mix_bwd(pg_real *dx, pg_real *dx0, pg_real *dm0, pg_real *dm1, const pg_real *dy, const pg_real *x,
                    const pg_real *x0, const pg_real *m0, const pg_real *m1, int n, int d);
void pg_cpu_scale_add_fwd(pg_real *x, const pg_real *s, const pg_real *f, int n, int d);
void pg_cpu_scale_add_bwd(pg_real *df, pg_real *ds, const pg_real *dy, const pg_real *s, const pg_real *f, int n,
                          int d, int df_accumulate);
void pg_cpu_head_gain_fwd(pg_real *q, const pg_real *g, int n, int h, int hd);
void pg_cpu_head_gain_bwd(pg_real *dq, pg_real *dg, const pg_real *q_pre, const pg_real *g, int n, int h, int hd);
double pg_cpu_softcap_ce(pg_real *dh, pg_real *demb, float *losses, const pg_real *h, const pg_real *emb,
                         const int32_t *targets, int n, int d, int v, double cap, double grad_scale, pg_real *work);
/* varlen attention and logit_ce (attention.c, loss.c) */
void pg_cpu_attention_varlen_fwd(pg_real *out, pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v,
                                 const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale,
                                 pg_real *work);
void pg_cpu_attention_varlen_bwd(pg_real *dq, pg_real *dk, pg_real *dv, const pg_real *dout, const pg_real *out,
                                 const pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v,
                                 const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale,
                                 pg_real *work);
double pg_cpu_logit_ce(pg_real *dh, pg_real *demb, float *losses, const pg_real *h, const pg_real *emb,
                       const int32_t *targets, int n, int d, int v, double cap, int poly5, double z_loss,
                       double grad_scale, pg_real *work);
/* end varlen/logit_ce */
/* record-stack pointwise operations (record.c) */
void pg_cpu_xsa_fwd(pg_real *y, const pg_real *v, int n, int h, int kv, int hd);
void pg_cpu_xsa_bwd(pg_real *dy, pg_real *dv, const pg_real *y_pre, const pg_real *v, int n, int h, int kv, int hd);
void pg_cpu_head_gate_fwd(pg_real *y, pg_real *g, const pg_real *u, const pg_real *w, int n, int h, int hd, int ld,
                          int win, double scale, double mult);
void pg_cpu_head_gate_bwd(pg_real *dy, pg_real *dw, pg_real *du, const pg_real *y_pre, const pg_real *g,
                          const pg_real *u, const pg_real *w, int n, int h, int hd, int ld, int win, double scale,
                          double mult);
void pg_cpu_smear_fwd(pg_real *y, pg_real *gate, const pg_real *x, const int32_t *ids, const pg_real *w,
                      const pg_real *lam, int b, int t, int d, int win, int bos);
void pg_cpu_smear_bwd(pg_real *dx, pg_real *dw, pg_real *dlam, const pg_real *dy, const pg_real *x,
                      const pg_real *gate, const int32_t *ids, const pg_real *w, const pg_real *lam, int b, int t,
                      int d, int win, int bos);
void pg_cpu_smear1_fwd(pg_real *y, const pg_real *x, const int32_t *ids, const pg_real *gamma, int b, int t, int d,
                       int bos);
void pg_cpu_smear1_bwd(pg_real *dx, pg_real *dgamma, const pg_real *dy, const pg_real *x, const int32_t *ids,
                       const pg_real *gamma, int b, int t, int d, int bos);
void pg_cpu_skip_gate_fwd(pg_real *x, const pg_real *skip, const pg_real *w, const pg_real *gamma, int n, int d);
void pg_cpu_skip_gate_bwd(pg_real *dx, pg_real *dskip, pg_real *dw, pg_real *dgamma, const pg_real *x_pre,
                          const pg_real *skip, const pg_real *w, const pg_real *gamma, int n, int d);
void pg_cpu_lanes_fwd(pg_real *l0, pg_real *l1, const pg_real *a, const pg_real *m, const pg_real *r,
                      const pg_real *p, size_t n);
void pg_cpu_lanes_bwd(pg_real *dl0, pg_real *dl1, pg_real *da, pg_real *dm, pg_real *dr, pg_real *dp,
                      const pg_real *l0_pre, const pg_real *l1_pre, const pg_real *a, const pg_real *m,
                      const pg_real *r, const pg_real *p, size_t n);
void pg_cpu_scalar_add_fwd(pg_real *x, const pg_real *s1, const pg_real *s2, const pg_real *f, size_t n);
void pg_cpu_scalar_add_bwd(pg_real *df, pg_real *ds1, pg_real *ds2, const pg_real *dy, const pg_real *s1,
                           const pg_real *s2, const pg_real *f, size_t n, int df_accumulate);
/* end record.c */

#endif
