/* ops.h: the CUDA backend's operations, callable from C. Each is the twin of the operation of
 * the same name in lib/backend.h (same arguments, same semantics, same "accumulates" rules),
 * on device pointers, in fp32 (pg_real is float in libpg). They run on pg_cuda_stream() and
 * return before the device has finished, like a kernel launch; pg_cuda_download waits.
 * Sums that must be reproducible (channel gradients, repeated embedding rows) are done in a
 * fixed order without float atomics: the results are the same bits on every run.
 *
 * Built by nvcc into libpg when HAVE_CUDA=1, and by the host compiler against kernels/emu for
 * the tests (make check). Nothing here exits: a failed CUDA or cuBLAS call (or kernel launch) is
 * recorded, the first one since the last pg_cuda_status() kept (pg_cuda.cuh), the operation goes
 * on with undefined results, and pg_cuda_status() reports it at the caller's next
 * synchronization point. */
#ifndef PG_CUDA_OPS_H
#define PG_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Creates the CUDA context and the cuBLAS handle bound to pg_cuda_stream() (the backend's init;
 * the operations would otherwise do it on first use). */
void pg_cuda_init(void);

/* Device memory. alloc returns zeroed memory (at least 4 bytes, so an empty tensor has an
 * address too), or NULL with the failure recorded: out of memory names the bytes asked and the
 * device's free and total bytes, so pg_cuda_status() then says why. download waits, and on a
 * failure fills dst with 0xff bytes (NaN floats). */
void *pg_cuda_alloc(size_t bytes);
void pg_cuda_free(void *p);
void pg_cuda_upload(void *dst, const void *src, size_t bytes);   /* host → device */
void pg_cuda_download(void *dst, const void *src, size_t bytes); /* device → host; waits */
void pg_cuda_sync(void);                                         /* waits for the stream */
/* The most device memory pgolf's allocations held at once, in bytes (cuBLAS's workspace, which
 * pgolf gives it, included): the backend's mem_peak. */
size_t pg_cuda_peak_bytes(void);
/* The backend's status (lib/backend.h): waits for the stream, checks cudaGetLastError, and
 * returns the first failure recorded since the previous call, clearing it: 0, PG_E_NOMEM (out of
 * device memory) or PG_E_LIB (any other failed call), with pg_error_message() set to one line
 * naming the call, e.g. "cuda: cublasSgemm(...) failed at kernels/cuda/matmul.cu:41:
 * CUBLAS_STATUS_INVALID_VALUE (an invalid numeric value was used as an argument)" or "cuda: out
 * of memory: cudaMalloc of 17179869184 bytes with 1073741824 of 150000000000 bytes free".
 * Thread-safe: failures of every host thread go to one process-wide record. */
int pg_cuda_status(void);
/* The device's free and total memory (cudaMemGetInfo): 0, or PG_E_LIB with the message set
 * (nothing recorded). */
int pg_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);
/* bf16-input matrix products on or off (lib/backend.h set_bf16). */
void pg_cuda_set_bf16(int on);
int pg_cuda_get_bf16(void);
/* The backend's vector operations (lib/backend.h), on n device floats, on pg_cuda_stream():
 * dst = src (no overlap); x = 0; y += a·x computed in double and rounded once (the CPU's bits,
 * kernels/cpu/mem.c); x *= a, likewise. */
void pg_cuda_copy(float *dst, const float *src, size_t n);
void pg_cuda_zero(float *x, size_t n);
void pg_cuda_axpy(float *y, double a, const float *x, size_t n);
void pg_cuda_scale(float *x, double a, size_t n);

void pg_cuda_matmul_fwd(float *y, const float *x, const float *w, int n, int in, int out);
void pg_cuda_matmul_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int n, int in, int out,
                        int dx_accumulate);
void pg_cuda_embedding_fwd(float *y, const float *emb, const int32_t *ids, int n, int d);
void pg_cuda_embedding_bwd(float *demb, const float *dy, const int32_t *ids, int n, int d);
void pg_cuda_rmsnorm_fwd(float *y, float *rstd, const float *x, int n, int d, double eps, double scale);
void pg_cuda_rmsnorm_bwd(float *dx, const float *dy, const float *y, const float *rstd, int n, int d, double scale,
                         int dx_accumulate);
void pg_cuda_rope_fwd(float *x, const float *cos, const float *sin, int b, int t, int h, int hd, int rd);
void pg_cuda_rope_bwd(float *dx, const float *cos, const float *sin, int b, int t, int h, int hd, int rd);
void pg_cuda_relu2_fwd(float *y, const float *x, size_t n, double slope);
void pg_cuda_relu2_bwd(float *dx, const float *dy, const float *x, size_t n, double slope);
void pg_cuda_round_bf16(float *x, size_t n);
/* backend.h matmul_fwd_qkv / matmul_bwd_qkv: the attention's three products of one input. */
void pg_cuda_matmul_fwd_qkv(float *q, float *k, float *v, uint16_t *q16, uint16_t *k16, uint16_t *v16,
                            const float *x, const uint16_t *x16, const float *wq, const float *wk, const float *wv,
                            int n, int in, int outq, int outkv);
void pg_cuda_matmul_bwd_qkv(float *dx, float *dwq, float *dwk, float *dwv, const float *dq, const float *dk,
                            const float *dv, const uint16_t *dq16, const uint16_t *dk16, const uint16_t *dv16,
                            const float *x, const uint16_t *x16, const float *wq, const float *wk, const float *wv,
                            int n, int in, int outq, int outkv, int dx_accumulate);
/* backend.h relu2_fwd_x16, relu2_bwd_x16, matmul_fwd_x16, matmul_fwd_to16, matmul_bwd_16: bf16
 * operands made by their producers (the MLP's first product, its activation and its gradient). */
void pg_cuda_relu2_fwd_x16(uint16_t *y16, const uint16_t *x16, size_t n, double slope);
void pg_cuda_matmul_fwd_x16(float *y, const uint16_t *x16, const float *w, int n, int in, int out);
void pg_cuda_matmul_fwd_to16(uint16_t *y16, const float *x, const uint16_t *x16, const float *w, int n, int in,
                             int out);
void pg_cuda_scale_add_bwd_x16(uint16_t *df16, float *ds, const float *dy, const float *s, const uint16_t *f16, int n,
                               int d);
void pg_cuda_relu2_bwd_x16(uint16_t *dx16, const float *dy, const uint16_t *x16, size_t n, double slope);
void pg_cuda_matmul_bwd_16(float *dx, float *dw, const float *dy, const uint16_t *dy16, const float *x,
                           const uint16_t *x16, const float *w, int n, int in, int out, int dx_accumulate);
void pg_cuda_mix_fwd(float *y, const float *x, const float *x0, const float *m0, const float *m1, int n, int d);
void pg_cuda_mix_bwd(float *dx, float *dx0, float *dm0, float *dm1, const float *dy, const float *x, const float *x0,
                     const float *m0, const float *m1, int n, int d);
void pg_cuda_scale_add_fwd(float *x, const float *s, const float *f, int n, int d);
void pg_cuda_scale_add_fwd_x16(float *x, const float *s, const uint16_t *f16, int n, int d);
void pg_cuda_scale_add_bwd(float *df, float *ds, const float *dy, const float *s, const float *f, int n, int d,
                           int df_accumulate);
void pg_cuda_head_gain_fwd(float *q, const float *g, int n, int h, int hd);
void pg_cuda_head_gain_bwd(float *dq, float *dg, const float *q_pre, const float *g, int n, int h, int hd);
/* The fused forms of lib/backend.h (fused.cu; rmsnorm_bwd_add in norm.cu). */
void pg_cuda_qk_prep_fwd(float *y, float *rstd, const float *x, const uint16_t *x16, const float *cos,
                         const float *sin, const float *gain, int b, int t, int h, int hd, int rd, double eps);
void pg_cuda_qk_prep_bwd(float *dx, float *dgain, const float *dy, const float *x, const uint16_t *x16,
                         const float *rstd, const float *cos, const float *sin, const float *gain, int b, int t, int h,
                         int hd, int rd);
void pg_cuda_qk_prep_fwd_x16(uint16_t *y16, float *rstd, const float *x, const uint16_t *x16, const float *cos,
                             const float *sin, const float *gain, int b, int t, int h, int hd, int rd, double eps);
void pg_cuda_qk_prep_bwd_x16(uint16_t *dx16, float *dgain, const float *dy, const float *x, const uint16_t *x16,
                             const float *rstd, const float *cos, const float *sin, const float *gain, int b, int t,
                             int h, int hd, int rd);
void pg_cuda_mix_norm_fwd(float *xin, float *xm, float *y, float *rstd, const float *x, const float *x0,
                          const float *m0, const float *m1, int n, int d, double eps, double scale);
void pg_cuda_add_norm_fwd(float *x, float *y, float *rstd, const float *x_in, const float *s, const float *f, int n,
                          int d, double eps, double scale);
void pg_cuda_mix_norm_fwd_x16(float *xin, float *xm, float *y, uint16_t *y16, float *rstd, const float *x,
                              const float *x0, const float *m0, const float *m1, int n, int d, double eps,
                              double scale);
void pg_cuda_mix_norm_bwd_x16(float *dx, const float *base, const float *dy, const float *xin, const float *x0,
                              const float *m0, const float *m1, const float *rstd, int n, int d, double scale);
void pg_cuda_add_norm_bwd_x16(float *dx, const float *dy, const float *xin, const float *x0, const float *m0,
                              const float *m1, const float *s, const uint16_t *f16, const float *rstd, int n, int d,
                              double scale);
void pg_cuda_add_norm_fwd_x16(float *x, float *y, uint16_t *y16, float *rstd, const float *x_in, const float *s,
                              const uint16_t *f16, int n, int d, double eps, double scale);
void pg_cuda_rmsnorm_bwd_add(float *dx, const float *base, const float *dy, const float *y, const float *rstd,
                             int n, int d, double scale);

/* Attention: work is device scratch of pg_cuda_attention_work(t) floats (not the CPU's size). */
size_t pg_cuda_attention_work(int t);
/* The table's attention_work: 0, so the model keeps no attention scratch of its own (the fused
 * kernels need none); the batched products, called with work NULL, take pg_cuda_scratch. */
size_t pg_cuda_attention_table_work(int t);
/* Tests: at most `seqs` sequences per round of the attention operations (they process up to
 * about 256 MiB of [t,t] matrices at once); 0 restores the default. Call before sizing work. */
void pg_cuda_attention_max_chunk(int seqs);
void pg_cuda_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int b, int t, int h,
                           int kv, int hd, double scale, float *work);
void pg_cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                           const float *q, const float *k, const float *v, int b, int t, int h, int kv, int hd,
                           double scale, float *work);
/* The fused softcap cross-entropy: losses (if not NULL) are device memory; the returned total
 * waits for the device. work is not used (the table's signature): the device computes chunks of
 * up to 2^25 logits (32,768 rows at most) in a buffer of its own, where the CPU takes 256 rows;
 * pg_cuda_ce_max_chunk(rows) caps the rows (tests; 0: the default). */
double pg_cuda_softcap_ce(float *dh, float *demb, float *losses, const float *h, const float *emb,
                          const int32_t *targets, int n, int d, int v, double cap, double grad_scale, float *work);
void pg_cuda_ce_max_chunk(int rows);

/* varlen attention and logit_ce (attention.cu, loss.cu) */
/* Varlen attention (backend.h): doc_start is a device int32 array [B·T], or NULL for plain
 * causal attention (then bit for bit pg_cuda_attention_fwd/bwd); work as for those. */
void pg_cuda_attention_varlen_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                                  const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale,
                                  float *work);
void pg_cuda_attention_varlen_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                  const float *lse, const float *q, const float *k, const float *v,
                                  const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale,
                                  float *work);
/* The ranks' communicator (nccl.cu; backend.h comm_*): NCCL on a GPU, loaded at the first use;
 * a one-rank communicator under the emulator. */
int pg_cuda_comm_id(unsigned char *id);
int pg_cuda_comm_init(const unsigned char *id, int rank, int world);
int pg_cuda_comm_sum(float *x, size_t n);
int pg_cuda_comm_share(float *const *ptrs, const size_t *sizes, const int *owner, size_t n);
void pg_cuda_comm_free(void);
/* Fused (flash) attention in bf16 (flash.cu): what the attention operations run while bf16 is
 * on and the head dim is supported (16, 32, 64 or 128), unless pg_cuda_attention_flash(0) (or
 * PG_FLASH=0 in the environment) chose the batched-product path. No work buffer. */
int pg_cuda_flash_supported(int hd);
void pg_cuda_attention_flash(int on);
void pg_cuda_flash_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale);
void pg_cuda_flash_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                       const float *q, const float *k, const float *v, const int32_t *doc_start, int b, int t,
                       int h, int kv, int hd, double scale);
/* backend.h attention_x16 (the head dims whose attention the flash kernels run now),
 * attention_fwd_x16 / attention_bwd_x16: the flash kernels with q and k given in bf16, the
 * output stored as autocast stores it (out, when not NULL, rounded to bf16 values; out16 in
 * bf16) and given to the backward in bf16; dv16, when not NULL, gets dv in bf16 instead; v16, when not
 * NULL, replaces v. */
int pg_cuda_attention_x16(int hd);
void pg_cuda_flash_fwd_x16(float *out, uint16_t *out16, float *lse, const uint16_t *q16, const uint16_t *k16,
                           const float *v, const uint16_t *v16, const int32_t *doc_start, int b, int t, int h, int kv,
                           int hd, double scale);
void pg_cuda_flash_bwd_x16(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const uint16_t *out16,
                           const float *lse, const uint16_t *q16, const uint16_t *k16, const float *v,
                           const uint16_t *v16, const int32_t *doc_start, int b, int t, int h, int kv, int hd,
                           double scale);
/* softcap_ce with the poly5 softcap and the z-loss (backend.h); losses and work as for
 * pg_cuda_softcap_ce, which is this with poly5 = 0 and z_loss = 0. */
double pg_cuda_logit_ce(float *dh, float *demb, float *losses, const float *h, const float *emb,
                        const int32_t *targets, int n, int d, int v, double cap, int poly5, double z_loss,
                        double grad_scale, float *work);
/* logit_ce without waiting: its total added to *acc (device) as acc += total·scale (backend.h
 * logit_ce_to); acc NULL: dropped. */
void pg_cuda_logit_ce_to(double *acc, double scale, float *dh, float *demb, float *losses, const float *h,
                         const float *emb, const int32_t *targets, int n, int d, int v, double cap, int poly5,
                         double z_loss, double grad_scale, float *work);
/* end varlen/logit_ce */
/* The training step without waits (graph.cu; backend.h host_alloc .. elapsed_ms): pinned host
 * memory, the batches' double buffer on a copy stream, CUDA graphs of the compute stream, the
 * step's phase clocks (events). */
void *pg_cuda_host_alloc(size_t bytes);
void pg_cuda_host_free(void *p);
void pg_cuda_stage_wait(int slot);
void pg_cuda_stage_in(void *dev, const void *host, size_t bytes, int slot);
void pg_cuda_stage_take(void *dst, const void *dev, size_t bytes, int slot);
int pg_cuda_graph_begin(void);
void *pg_cuda_graph_end(void);
void pg_cuda_graph_launch(void *graph);
void pg_cuda_graph_free(void *graph);
void pg_cuda_mark(int k);
double pg_cuda_elapsed_ms(int a, int b);
/* record-stack pointwise operations (record.cu) */
void pg_cuda_xsa_fwd(float *y, const float *v, int n, int h, int kv, int hd);
void pg_cuda_xsa_bwd(float *dy, float *dv, const float *y_pre, const float *v, int n, int h, int kv, int hd);
void pg_cuda_head_gate_fwd(float *y, float *g, const float *u, const float *w, int n, int h, int hd, int ld, int win,
                           double scale, double mult);
void pg_cuda_head_gate_bwd(float *dy, float *dw, float *du, const float *y_pre, const float *g, const float *u,
                           const float *w, int n, int h, int hd, int ld, int win, double scale, double mult);
void pg_cuda_smear_fwd(float *y, float *gate, const float *x, const int32_t *ids, const float *w, const float *lam,
                       int b, int t, int d, int win, int bos);
void pg_cuda_smear_bwd(float *dx, float *dw, float *dlam, const float *dy, const float *x, const float *gate,
                       const int32_t *ids, const float *w, const float *lam, int b, int t, int d, int win, int bos);
void pg_cuda_smear1_fwd(float *y, const float *x, const int32_t *ids, const float *gamma, int b, int t, int d, int bos);
void pg_cuda_smear1_bwd(float *dx, float *dgamma, const float *dy, const float *x, const int32_t *ids,
                        const float *gamma, int b, int t, int d, int bos);
void pg_cuda_skip_gate_fwd(float *x, const float *skip, const float *w, const float *gamma, int n, int d);
void pg_cuda_skip_gate_bwd(float *dx, float *dskip, float *dw, float *dgamma, const float *x_pre, const float *skip,
                           const float *w, const float *gamma, int n, int d);
void pg_cuda_lanes_fwd(float *l0, float *l1, const float *a, const float *m, const float *r, const float *p, size_t n);
void pg_cuda_lanes_bwd(float *dl0, float *dl1, float *da, float *dm, float *dr, float *dp, const float *l0_pre,
                       const float *l1_pre, const float *a, const float *m, const float *r, const float *p, size_t n);
void pg_cuda_scalar_add_fwd(float *x, const float *s1, const float *s2, const float *f, size_t n);
void pg_cuda_scalar_add_bwd(float *df, float *ds1, float *ds2, const float *dy, const float *s1, const float *s2,
                            const float *f, size_t n, int df_accumulate);
/* end record.cu */

#ifdef __cplusplus
}
#endif

#endif
