/* backend.h: the table of operations the model is written against.
 *
 * lib/model.c expresses the GPT forward and backward passes only through these calls, so a
 * backend is a filled-in struct pg_backend: kernels/cpu (the reference, CBLAS + OpenMP) today,
 * kernels/cuda next. Tensors are dense row-major pg_real arrays; N is a number of rows (tokens,
 * or tokens x heads), D a row width. Linear weights are stored as PyTorch does, [out, in], and a
 * linear layer computes y = x·Wᵀ. Unless a parameter says "accumulates", outputs are overwritten.
 * Weight gradients always accumulate (+=), so gradient accumulation over micro-batches is free.
 */
#ifndef PG_BACKEND_H
#define PG_BACKEND_H

#include "real.h"

#include <stddef.h>
#include <stdint.h>

struct pg_muon;
struct pg_opt_tensor;

struct pg_backend {
    const char *name;
    /* 1: alloc gives host memory, which callers may read and write directly (the CPU backend);
     * 0: device memory, reached only through upload/download. */
    int host_memory;

    /* Prepares the backend (thread pools); call once before the first operation. */
    void (*init)(void);
    /* Scratch elements the attention operations need from the caller for sequences of t tokens;
     * 0: none (the caller passes work NULL and the backend finds its own where it needs any). */
    size_t (*attention_work)(int t);

    /* Memory the operations work on: host memory for the CPU backend, device memory for a GPU
     * one. alloc returns zeroed memory or NULL; upload/download copy bytes in from / out to
     * host memory (download waits for the operations before it). */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*upload)(void *dst, const void *src, size_t bytes);
    void (*download)(void *dst, const void *src, size_t bytes);
    /* dst[n] = src (no overlap); x[n] = 0; y += a·x (computed in double, rounded once: with a = 1
     * the correctly rounded sum); x *= a. */
    void (*copy)(pg_real *dst, const pg_real *src, size_t n);
    void (*zero)(pg_real *x, size_t n);
    void (*axpy)(pg_real *y, double a, const pg_real *x, size_t n);
    void (*scale)(pg_real *x, double a, size_t n);

    /* y[N,out] = x[N,in]·w[out,in]ᵀ. */
    void (*matmul_fwd)(pg_real *y, const pg_real *x, const pg_real *w, int n, int in, int out);
    /* dx[N,in] = dy·w (accumulates into dx when dx_accumulate; skipped when dx is NULL);
     * dw[out,in] += dyᵀ·x. */
    void (*matmul_bwd)(pg_real *dx, pg_real *dw, const pg_real *dy, const pg_real *x, const pg_real *w, int n, int in,
                       int out, int dx_accumulate);

    /* y[N,D] = E[ids[i]]. */
    void (*embedding_fwd)(pg_real *y, const pg_real *emb, const int32_t *ids, int n, int d);
    /* dE[ids[i]] += dy[i] (rows may repeat). */
    void (*embedding_bwd)(pg_real *demb, const pg_real *dy, const int32_t *ids, int n, int d);

    /* Weightless RMSNorm per row, times a constant: y = scale·x / sqrt(mean(x²) + eps); rstd[N] =
     * that reciprocal (without scale), kept for the backward pass. scale is 1 but for the
     * layerwise LN scale 1/√(l+1) (spec §2.6); at 1 the results are those of plain RMSNorm. */
    void (*rmsnorm_fwd)(pg_real *y, pg_real *rstd, const pg_real *x, int n, int d, double eps, double scale);
    /* dx = rstd·(scale·dy − y·mean(dy·y)/scale), from the forward's y (scaled) and rstd: with
     * ŷ = y/scale the unit-RMS output, that is rstd·(dŷ − ŷ·mean(dŷ·ŷ)) at dŷ = scale·dy.
     * Accumulates when asked. */
    void (*rmsnorm_bwd)(pg_real *dx, const pg_real *dy, const pg_real *y, const pg_real *rstd, int n, int d,
                        double scale, int dx_accumulate);

    /* RoPE in place on x[B,T,H,hd], half-split pairing over the first rd dims of each head
     * (rd <= hd, even; rd = hd is full RoPE, less is partial RoPE, spec §2.2): with x1 = dims
     * [0, rd/2), x2 = [rd/2, rd), (x1, x2) ← (x1·cos + x2·sin, −x1·sin + x2·cos); dims from rd on
     * are left alone; cos/sin are [T, rd/2] tables. */
    void (*rope_fwd)(pg_real *x, const pg_real *cos, const pg_real *sin, int b, int t, int h, int hd, int rd);
    /* The transpose (inverse) rotation, in place on the gradient. */
    void (*rope_bwd)(pg_real *dx, const pg_real *cos, const pg_real *sin, int b, int t, int h, int hd, int rd);

    /* Causal grouped-query attention: q[B,T,H,hd], k and v [B,T,KV,hd]; query head h reads kv
     * head h / (H/KV); out[B,T,H,hd]; lse[B,H,T] keeps each row's log-sum-exp for the backward.
     * work: scratch of attention_work(t) elements from the caller (no allocation inside), or
     * NULL when that is 0. */
    void (*attention_fwd)(pg_real *out, pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v, int b,
                          int t, int h, int kv, int hd, double scale, pg_real *work);
    /* dq, dk, dv from dout (all overwritten), recomputing the probabilities from q, k and lse. */
    void (*attention_bwd)(pg_real *dq, pg_real *dk, pg_real *dv, const pg_real *dout, const pg_real *out,
                          const pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v, int b, int t,
                          int h, int kv, int hd, double scale, pg_real *work);

    /* The MLP activation y = leaky_relu(x, slope)² = x² (x > 0), slope²·x² (x <= 0); slope 0 is
     * the baseline's relu², 0.5 the records' LeakyReLU(0.5)² (spec §2.5). */
    void (*relu2_fwd)(pg_real *y, const pg_real *x, size_t n, double slope);
    /* dx = φ'(x)·dy = 2x·dy (x > 0), 2·slope²·x·dy (x <= 0). */
    void (*relu2_bwd)(pg_real *dx, const pg_real *dy, const pg_real *x, size_t n, double slope);
    /* x rounded in place to bf16 (nearest even, as the products round their operands): the
     * values autocast stores in bf16, in bf16 mode (lib/model.c: the outputs of the MLP's two
     * products, of the q, k and v products, of the attention and of its projection). */
    void (*round_bf16)(pg_real *x, size_t n);

    /* Residual mix: y = m0 ⊙ x + m1 ⊙ x0, with m0, m1 per-channel [D]. */
    void (*mix_fwd)(pg_real *y, const pg_real *x, const pg_real *x0, const pg_real *m0, const pg_real *m1, int n,
                    int d);
    /* dx = m0 ⊙ dy; dx0 += m1 ⊙ dy; dm0 += Σ_rows dy ⊙ x; dm1 += Σ_rows dy ⊙ x0. */
    void (*mix_bwd)(pg_real *dx, pg_real *dx0, pg_real *dm0, pg_real *dm1, const pg_real *dy, const pg_real *x,
                    const pg_real *x0, const pg_real *m0, const pg_real *m1, int n, int d);

    /* Scaled residual add in place: x += s ⊙ f, s per-channel [D] (attn_scale, mlp_scale, skip
     * weights). */
    void (*scale_add_fwd)(pg_real *x, const pg_real *s, const pg_real *f, int n, int d);
    /* df = s ⊙ dy (overwritten, or accumulated when asked); ds += Σ_rows dy ⊙ f. The residual
     * path's own gradient passes through unchanged. */
    void (*scale_add_bwd)(pg_real *df, pg_real *ds, const pg_real *dy, const pg_real *s, const pg_real *f, int n,
                          int d, int df_accumulate);

    /* Per-head gain in place: q[N,H,hd] *= g[h]. */
    void (*head_gain_fwd)(pg_real *q, const pg_real *g, int n, int h, int hd);
    /* dq ← g ⊙ dq (in place); dg[h] += Σ dq ⊙ q_pre, with q_pre the input of the forward. */
    void (*head_gain_bwd)(pg_real *dq, pg_real *dg, const pg_real *q_pre, const pg_real *g, int n, int h, int hd);

    /* Tied-embedding logits with softcap and cross-entropy, fused so the [N,V] logits are never
     * stored whole: z = cap·tanh((h·Eᵀ)/cap), loss_i = logsumexp(z_i) − z_i[y_i]. Returns Σ loss_i
     * (double). If losses is not NULL it receives each loss_i. If dh is not NULL, also the
     * gradient of grad_scale·Σ loss_i: dh[N,D] overwritten, dE[V,D] accumulated. Rows go in chunks
     * of PG_CE_CHUNK on the CPU, in work (pg_ce_work(v) elements); a device may take larger ones in
     * memory of its own (CUDA: up to 2^25 logits), which changes only dE's order of sums. */
    double (*softcap_ce)(pg_real *dh, pg_real *demb, float *losses, const pg_real *h, const pg_real *emb,
                         const int32_t *targets, int n, int d, int v, double cap, double grad_scale, pg_real *work);

    /* ---- the record stack's operations (spec/techniques.md §2) ---- */

    /* Causal attention restricted to documents (varlen attention, §2.2): as attention_fwd/bwd,
     * but query t of sequence b sees keys j with doc_start[b·T + t] <= j <= t, where doc_start
     * (an index into the sequence, <= t) is the first position of the token's document piece.
     * doc_start NULL is plain causal attention, bit for bit the same as attention_fwd/bwd. */
    void (*attention_varlen_fwd)(pg_real *out, pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v,
                                 const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale,
                                 pg_real *work);
    void (*attention_varlen_bwd)(pg_real *dq, pg_real *dk, pg_real *dv, const pg_real *dout, const pg_real *out,
                                 const pg_real *lse, const pg_real *q, const pg_real *k, const pg_real *v,
                                 const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale,
                                 pg_real *work);

    /* softcap_ce with the record variants (§2.13): poly5 = 0 is the tanh softcap (then with
     * z_loss 0 it is softcap_ce exactly), 1 the poly5 softcap z = c·clamp(p(u), −1, 1),
     * p(u) = u − u³/3 + u⁵/15, u = clamp(x/c, −2, 2), x = h·Eᵀ. z_loss > 0 adds z_loss·lse_i²
     * to row i's objective: the returned total and the gradient include it, losses[] (what
     * scoring reads) stay the plain cross-entropies. */
    double (*logit_ce)(pg_real *dh, pg_real *demb, float *losses, const pg_real *h, const pg_real *emb,
                       const int32_t *targets, int n, int d, int v, double cap, int poly5, double z_loss,
                       double grad_scale, pg_real *work);

    /* XSA (§2.3), in place on y[N,H,hd] with v[N,KV,hd]: for query head h of kv group g,
     * v̂ = v_g/max(‖v_g‖, 1e-12), y_h ← y_h − (y_h·v̂)·v̂. */
    void (*xsa_fwd)(pg_real *y, const pg_real *v, int n, int h, int kv, int hd);
    /* dy in place: ← the gradient of the XSA input (dy − (dy·v̂)v̂); dv += the gradient through v̂,
     * from y_pre, the forward's input. */
    void (*xsa_bwd)(pg_real *dy, pg_real *dv, const pg_real *y_pre, const pg_real *v, int n, int h, int kv, int hd);

    /* Per-head output gate (§2.4), in place on y[N,H,hd]: g[N,H] = mult·σ(scale·(w[h]·u[i, 0:win])),
     * u rows of width ld (win <= ld), w[H,win]; y[i,h,:] *= g[i,h]. g is kept for the backward.
     * AttnOutGate: mult 2, scale 1; dense gated attention: win = ld = D, mult 1, scale 1; sparse
     * gate: mult 1, scale c. */
    void (*head_gate_fwd)(pg_real *y, pg_real *g, const pg_real *u, const pg_real *w, int n, int h, int hd, int ld,
                          int win, double scale, double mult);
    /* dy in place ← g ⊙ dy (the gradient of the ungated y); dw += and du[:, 0:win] += (du rows of
     * width ld; skipped when du is NULL) through the gate, from y_pre (the ungated output). */
    void (*head_gate_bwd)(pg_real *dy, pg_real *dw, pg_real *du, const pg_real *y_pre, const pg_real *g,
                          const pg_real *u, const pg_real *w, int n, int h, int hd, int ld, int win, double scale,
                          double mult);

    /* SmearGate v2 (§2.10) on x[B,T,D] (out of place): y_t = x_t + λ·σ(w·x_t[0:win])·x_{t−1}·[ids_t ≠ bos]
     * for t >= 1 in each sequence, y_0 = x_0. gate[B·T] keeps λ·σ(·)·mask (0 at t = 0). */
    void (*smear_fwd)(pg_real *y, pg_real *gate, const pg_real *x, const int32_t *ids, const pg_real *w,
                      const pg_real *lam, int b, int t, int d, int win, int bos);
    /* dx overwritten; dw[win] += and dlam[1] += from dy, x, the forward's gate, w and λ. */
    void (*smear_bwd)(pg_real *dx, pg_real *dw, pg_real *dlam, const pg_real *dy, const pg_real *x,
                      const pg_real *gate, const int32_t *ids, const pg_real *w, const pg_real *lam, int b, int t,
                      int d, int win, int bos);
    /* SmearGate v1: y_t = (1 − s) ⊙ x_t + s ⊙ x_{t−1}·[t >= 1 and ids_t ≠ bos], s = σ(γ) per channel.
     * The records' v1 has no BOS mask: the model passes bos = −1, which no token matches. */
    void (*smear1_fwd)(pg_real *y, const pg_real *x, const int32_t *ids, const pg_real *gamma, int b, int t, int d,
                       int bos);
    /* dx overwritten; dγ += . */
    void (*smear1_bwd)(pg_real *dx, pg_real *dgamma, const pg_real *dy, const pg_real *x, const int32_t *ids,
                       const pg_real *gamma, int b, int t, int d, int bos);

    /* Gated U-Net skip (§2.7), in place: x ← s ⊙ x + (1 − s) ⊙ (w ⊙ skip), s = σ(γ), w and γ [D]. */
    void (*skip_gate_fwd)(pg_real *x, const pg_real *skip, const pg_real *w, const pg_real *gamma, int n, int d);
    /* dx in place ← s ⊙ dx; dskip += (1 − s)·w ⊙ dx; dw, dγ += ; x_pre is the forward's input x. */
    void (*skip_gate_bwd)(pg_real *dx, pg_real *dskip, pg_real *dw, pg_real *dgamma, const pg_real *x_pre,
                          const pg_real *skip, const pg_real *w, const pg_real *gamma, int n, int d);

    /* Two-lane write-back (§2.9), in place over n elements: with r[2] and p[4] = P[2][2] (row 0
     * the attention output's weights, row 1 the MLP's): l0 ← r0·l0 + P00·a + P10·m,
     * l1 ← r1·l1 + P01·a + P11·m. */
    void (*lanes_fwd)(pg_real *l0, pg_real *l1, const pg_real *a, const pg_real *m, const pg_real *r,
                      const pg_real *p, size_t n);
    /* From the gradients of the new lanes (dl0, dl1; in place ← the old lanes' gradients):
     * da, dm overwritten; dr[2], dp[4] += ; l0_pre, l1_pre are the forward's input lanes. */
    void (*lanes_bwd)(pg_real *dl0, pg_real *dl1, pg_real *da, pg_real *dm, pg_real *dr, pg_real *dp,
                      const pg_real *l0_pre, const pg_real *l1_pre, const pg_real *a, const pg_real *m,
                      const pg_real *r, const pg_real *p, size_t n);

    /* x += s1·s2·f over n elements, s1 and s2 scalars in memory (s2 NULL: 1): BigramHash and value
     * embedding scales (§2.11-2.12). */
    void (*scalar_add_fwd)(pg_real *x, const pg_real *s1, const pg_real *s2, const pg_real *f, size_t n);
    /* df = s1·s2·dy (or += when asked); ds1 += s2·Σ dy·f; ds2 += s1·Σ dy·f (when s2). */
    void (*scalar_add_bwd)(pg_real *df, pg_real *ds1, pg_real *ds2, const pg_real *dy, const pg_real *s1,
                           const pg_real *s2, const pg_real *f, size_t n, int df_accumulate);

    /* ---- fused forms (optional) ----
     * Chains of the operations above done in one pass, for a backend whose operations are bound
     * by memory traffic (a GPU). NULL: lib/model.c composes the plain operations, which are the
     * reference the fused forms are tested against (tests/emu/test_cuda_fused.c); results agree
     * with the chain to rounding (sums of squares may be added in another order). */

    /* q/k preparation on rows of hd (x[B,T,H,hd], the q or k product, unchanged): y = gain[h] ⊙
     * rope(rmsnorm(x)) with rope_fwd's pairing over the first rd dims; gain NULL: 1 (k). rstd[B·T·H]
     * as rmsnorm_fwd's (eps, scale 1). x16, when not NULL, replaces x: the product kept in bf16
     * (matmul_fwd_qkv's q16, k16), here and in the backward. */
    void (*qk_prep_fwd)(pg_real *y, pg_real *rstd, const pg_real *x, const uint16_t *x16, const pg_real *cos,
                        const pg_real *sin, const pg_real *gain, int b, int t, int h, int hd, int rd, double eps);
    /* From dy, the gradient of y: dx overwritten; dgain[h] += (when gain and dgain) Σ dy ⊙
     * rope(rmsnorm(x)). x (or x16) and rstd are the forward's. */
    void (*qk_prep_bwd)(pg_real *dx, pg_real *dgain, const pg_real *dy, const pg_real *x, const uint16_t *x16,
                        const pg_real *rstd, const pg_real *cos, const pg_real *sin, const pg_real *gain, int b, int t,
                        int h, int hd, int rd);
    /* The block's entry: xin = x (skipped when xin is NULL), then mix_fwd (xm) and rmsnorm_fwd (y,
     * rstd) on xm. */
    void (*mix_norm_fwd)(pg_real *xin, pg_real *xm, pg_real *y, pg_real *rstd, const pg_real *x, const pg_real *x0,
                         const pg_real *m0, const pg_real *m1, int n, int d, double eps, double scale);
    /* A residual add and the next norm: x = x_in + s ⊙ f (x_in may be x), then rmsnorm_fwd (y,
     * rstd) on x. */
    void (*add_norm_fwd)(pg_real *x, pg_real *y, pg_real *rstd, const pg_real *x_in, const pg_real *s,
                         const pg_real *f, int n, int d, double eps, double scale);
    /* add_norm_fwd that also writes y rounded to bf16 into y16 [N,D] (the bits of a product's own
     * conversion of y; y may be NULL): the MLP's first product reads it in the forward and its
     * backward. The branch f comes in bf16 (f16: the attention projection's output as autocast stores it,
     * matmul_fwd_to16). */
    void (*add_norm_fwd_x16)(pg_real *x, pg_real *y, uint16_t *y16, pg_real *rstd, const pg_real *x_in,
                             const pg_real *s, const uint16_t *f16, int n, int d, double eps, double scale);
    /* mix_norm_fwd that also writes y rounded to bf16 into y16 (the attention's three products read
     * it, matmul_fwd_qkv's x16); y may be NULL. */
    void (*mix_norm_fwd_x16)(pg_real *xin, pg_real *xm, pg_real *y, uint16_t *y16, pg_real *rstd, const pg_real *x,
                             const pg_real *x0, const pg_real *m0, const pg_real *m1, int n, int d, double eps,
                             double scale);
    /* rmsnorm_bwd_add (base NULL: overwriting) of the norm mix_norm_fwd made, y recomputed from the
     * block input xin, x0, m0 and m1 as it made it: the bits of rmsnorm_bwd_add with its y. */
    void (*mix_norm_bwd_x16)(pg_real *dx, const pg_real *base, const pg_real *dy, const pg_real *xin,
                             const pg_real *x0, const pg_real *m0, const pg_real *m1, const pg_real *rstd, int n, int d,
                             double scale);
    /* rmsnorm_bwd, accumulating into dx, of the norm add_norm_fwd_x16 made from x_in = mix_norm_fwd's
     * xm of the block input xin: y recomputed from xin, x0, m0, m1, s and f16 as those two made it
     * (the bits of rmsnorm_bwd with their y), for a layout that keeps no fp32 y. */
    void (*add_norm_bwd_x16)(pg_real *dx, const pg_real *dy, const pg_real *xin, const pg_real *x0, const pg_real *m0,
                             const pg_real *m1, const pg_real *s, const uint16_t *f16, const pg_real *rstd, int n,
                             int d, double scale);
    /* A residual's gradient joined by a norm's backward: dx = base + rmsnorm_bwd(dy) (base may be
     * dx), the bits of copying base to dx and then rmsnorm_bwd accumulating, without the copy. */
    void (*rmsnorm_bwd_add)(pg_real *dx, const pg_real *base, const pg_real *dy, const pg_real *y,
                            const pg_real *rstd, int n, int d, double scale);
    /* The attention's three products of one input, x[N,in] by wq[outq,in], wk and wv [outkv,in]
     * into q, k, v (matmul_fwd's each), and their backward (matmul_bwd's three: dx overwritten
     * by the first unless dx_accumulate, then accumulated, in the order q, k, v; dwq, dwk, dwv
     * accumulated): the same results, with x converted to bf16 once for the three in bf16 mode.
     * dq16, dk16 and dv16, when not NULL, replace dq, dk and dv (bf16 mode: qk_prep_bwd_x16 and
     * attention_bwd_x16 made them); in
     * the forward, q16, k16 and v16, when not NULL, replace q, k and v: those outputs rounded to bf16
     * (bf16 mode: matmul_fwd_to16's, as autocast stores them). x16, when not NULL, replaces x
     * in both (bf16 mode: mix_norm_fwd_x16's copy). */
    void (*matmul_fwd_qkv)(pg_real *q, pg_real *k, pg_real *v, uint16_t *q16, uint16_t *k16, uint16_t *v16,
                           const pg_real *x, const uint16_t *x16, const pg_real *wq, const pg_real *wk,
                           const pg_real *wv, int n, int in, int outq, int outkv);
    void (*matmul_bwd_qkv)(pg_real *dx, pg_real *dwq, pg_real *dwk, pg_real *dwv, const pg_real *dq, const pg_real *dk,
                           const pg_real *dv, const uint16_t *dq16, const uint16_t *dk16, const uint16_t *dv16,
                           const pg_real *x, const uint16_t *x16, const pg_real *wq, const pg_real *wk,
                           const pg_real *wv, int n, int in, int outq, int outkv, int dx_accumulate);
    /* bf16 operands made by the kernel that computes them, for bf16 mode (set_bf16), where a
     * value's one reader is a product that rounds it to bf16 anyway: the MLP's activation
     * (relu2_fwd_x16: relu2_fwd's n values rounded to bf16, nearest even, as uint16 bit
     * patterns) and its gradient (relu2_bwd_x16: relu2_bwd's dx so rounded), both from the MLP's
     * first product kept in bf16 (x16, as autocast stores it: round_bf16's values).
     * matmul_fwd_x16 is matmul_fwd (bf16 mode) with x given so; matmul_fwd_to16 is matmul_fwd
     * (bf16 mode, x or x16 as the input) with y rounded to bf16 into y16 (the bits of matmul_fwd
     * then round_bf16); matmul_bwd_16 is matmul_bwd (bf16 mode) where dy16 and x16, when not
     * NULL, replace dy and x. The fp32 copies are never written, nor converted by each product.
     * The branches' outputs (attention's proj, the MLP's projection) are kept in bf16 too
     * (matmul_fwd_to16, as autocast stores them): scale_add_fwd_x16 is scale_add_fwd with f so,
     * and scale_add_bwd_x16 is scale_add_bwd (overwriting) with f so and df = s ⊙ dy rounded to
     * bf16: the branch's output gradient for its last product. qk_prep_bwd_x16 is qk_prep_bwd
     * with dx so rounded: the q and k products' gradients, for matmul_bwd_qkv's dq16 and dk16.
     * lib/model.c takes them all or none. */
    void (*relu2_fwd_x16)(uint16_t *y16, const uint16_t *x16, size_t n, double slope);
    void (*relu2_bwd_x16)(uint16_t *dx16, const pg_real *dy, const uint16_t *x16, size_t n, double slope);
    void (*matmul_fwd_x16)(pg_real *y, const uint16_t *x16, const pg_real *w, int n, int in, int out);
    void (*matmul_fwd_to16)(uint16_t *y16, const pg_real *x, const uint16_t *x16, const pg_real *w, int n, int in,
                            int out);
    void (*matmul_bwd_16)(pg_real *dx, pg_real *dw, const pg_real *dy, const uint16_t *dy16, const pg_real *x,
                          const uint16_t *x16, const pg_real *w, int n, int in, int out, int dx_accumulate);
    void (*scale_add_fwd_x16)(pg_real *x, const pg_real *s, const uint16_t *f16, int n, int d);
    void (*scale_add_bwd_x16)(uint16_t *df16, pg_real *ds, const pg_real *dy, const pg_real *s, const uint16_t *f16,
                              int n, int d);
    void (*qk_prep_bwd_x16)(uint16_t *dx16, pg_real *dgain, const pg_real *dy, const pg_real *x, const uint16_t *x16,
                            const pg_real *rstd, const pg_real *cos, const pg_real *sin, const pg_real *gain, int b,
                            int t, int h, int hd, int rd);
    /* q and k kept in bf16 for an attention that rounds them so on reading (the fused bf16
     * attention): attention_x16(hd) says whether attention at head dim hd is such now (bf16 mode,
     * a supported hd); qk_prep_fwd_x16 is qk_prep_fwd with y rounded to bf16; attention_fwd_x16
     * and attention_bwd_x16 are attention_varlen_fwd/_bwd (doc_start NULL: plain causal, as
     * attention_fwd/_bwd) with q and k given so, no work buffer, and the output stored as
     * autocast stores it: the forward writes it in bf16 into out16 and, when out is not NULL,
     * rounded to bf16 into out (what attention_varlen_fwd then round_bf16 give), and the backward
     * takes it as out16: the bits of the fp32 entries with that rounded output; dv16, when not
     * NULL, gets dv rounded to bf16 instead of dv (its one reader, matmul_bwd_qkv, would round it
     * so); v16, when not NULL, replaces v in both (the v product kept in bf16: matmul_fwd_qkv's
     * v16). lib/model.c
     * takes them with the operands above, all four or none. */
    int (*attention_x16)(int hd);
    void (*qk_prep_fwd_x16)(uint16_t *y16, pg_real *rstd, const pg_real *x, const uint16_t *x16, const pg_real *cos,
                            const pg_real *sin, const pg_real *gain, int b, int t, int h, int hd, int rd, double eps);
    void (*attention_fwd_x16)(pg_real *out, uint16_t *out16, pg_real *lse, const uint16_t *q16, const uint16_t *k16,
                              const pg_real *v, const uint16_t *v16, const int32_t *doc_start, int b, int t, int h,
                              int kv, int hd, double scale);
    void (*attention_bwd_x16)(pg_real *dq, pg_real *dk, pg_real *dv, uint16_t *dv16, const pg_real *dout,
                              const uint16_t *out16, const pg_real *lse, const uint16_t *q16, const uint16_t *k16,
                              const pg_real *v, const uint16_t *v16, const int32_t *doc_start, int b, int t, int h,
                              int kv, int hd, double scale);

    /* ---- the backend's state ---- */

    /* Waits for every operation issued so far and reports the first failure since the previous
     * call, clearing it: 0, or a PG_E_* code whose message (pg_error_message) names the failed
     * call. A device backend's operations do not stop the process when the device fails (a
     * launch, a cuBLAS call, an allocation): they record the failure and lib/ asks here at its
     * synchronization points. The CPU backend's operations fail only for want of scratch
     * memory (record.c). */
    int (*status)(void);
    /* Matrix products with bfloat16 inputs and fp32 accumulation (the records' bf16 autocast)
     * when on, fp32 when off (the default); process-wide. Covers matmul_fwd/bwd, the products
     * inside attention and the tied head's logits in softcap_ce/logit_ce; everything else (norms,
     * softmax, the loss, the optimizers) stays fp32, and the products' outputs but where
     * lib/model.c rounds one (round_bf16) as autocast stores it. The CPU backend rounds the inputs to bf16
     * the same way, so the two compare like with like. */
    void (*set_bf16)(int on);
    /* set_bf16's current setting. */
    int (*get_bf16)(void);
    /* The most memory the backend's allocations held at once, in bytes; 0 when not tracked (the
     * CPU's host memory). */
    size_t (*mem_peak)(void);

    /* ---- optimizer steps on device memory (lib/optim.h) ----
     * NULL for a host-memory backend: lib/optim.c computes those on the arrays directly, and is
     * the reference these are tested against. Arguments are device pointers. */

    /* One Adam(W) update of every element of n tensors (tensor k's moments at m + off[k] and
     * v + off[k]), pg_adam_step's arithmetic: with lr_wd != 0, first p −= lr_wd·p; then
     * m = b1·m + (1−b1)·g, v = b2·v + (1−b2)·g² (in double, rounded once), denom =
     * sqrt(v)/bc2_sqrt + eps, p −= step_size·m/denom. sc non-NULL: lr_wd, step_size and
     * bc2_sqrt are instead read from device memory sc[0..2] when the update runs (a graph that
     * captured it replays each step's values; struct pg_adam sc_dev). */
    void (*adam_update)(const struct pg_opt_tensor *t, size_t n, pg_real *m, pg_real *v, const size_t *off, double b1,
                        double b2, double eps, double lr_wd, double step_size, double bc2_sqrt, const double *sc);
    /* pg_muon_launch over every matrix of mu (its buffers and scratch in this backend's memory),
     * with mu->sc's values, or read from mu->sc_dev when set. */
    void (*muon_step)(struct pg_muon *mu);
    /* pg_clip_grad_norm over n tensors, the norm staying on the device (no synchronization). */
    void (*clip_grad_norm)(const struct pg_opt_tensor *t, size_t n, double max_norm);
    /* pg_ema_update; pg_swa_add_real; dst = sum / count (in double, rounded once). */
    void (*ema_update)(float *ema, const pg_real *theta, size_t n, double decay);
    void (*swa_add)(double *sum, const pg_real *x, size_t n);
    void (*swa_average)(pg_real *dst, const double *sum, size_t n, double count);
    /* pg_sgd_step's element update (lib/sgd.h; TTT): buf = mu·buf + g; p −= lr·buf, in pg_real
     * with mu and lr already rounded to it. */
    void (*sgd_update)(pg_real *p, const pg_real *g, pg_real *buf, size_t n, double mu, double lr);
    /* pg_fake_quant_rows (lib/quant.h): per-row symmetric fake quantization to `bits`. */
    void (*fake_quant_rows)(pg_real *dst, const pg_real *src, int64_t rows, int64_t cols, int bits);
    /* pg_fake_quant_trit (lib/trit.h): ternary (levels 3) or quinary (5) groups of 128. */
    void (*fake_quant_trit)(pg_real *dst, const pg_real *src, int64_t rows, int64_t cols, int levels);

    /* ---- the ranks of a data-parallel job (lib/dist.h), NULL where the backend has none (the
     * CPU: its ranks sum through MPI). A communicator of `world` ranks: rank 0 makes its id
     * (PG_COMM_ID_BYTES bytes), which reaches every rank through MPI; comm_init joins it;
     * comm_sum replaces x[0..n) (device memory) by the sum over the ranks, queued on the
     * backend's stream; comm_share gives every rank array k of n (sizes[k] elements at ptrs[k],
     * device memory, the same list on every rank) from rank owner[k], in place, also queued
     * (Muon's matrices divided between the ranks). @return 0 or an error (comm_init's
     * PG_E_UNSUPPORTED: no such communicator here, sum through the host instead). */
    int (*comm_id)(unsigned char *id);
    int (*comm_init)(const unsigned char *id, int rank, int world);
    int (*comm_sum)(pg_real *x, size_t n);
    int (*comm_share)(pg_real *const *ptrs, const size_t *sizes, const int *owner, size_t n);
    void (*comm_free)(void);

    /* ---- a device's training step without waits or launch gaps (lib/train.c), NULL where the
     * backend has none (the CPU: every call already runs at once).
     * host_alloc/host_free: pinned host memory (NULL, the failure reported by status, if none).
     * A batch's inputs through a double buffer: stage_wait(s) waits until slot s's last copy
     * has left host memory (before the caller refills it); stage_in(dev, host, bytes, s) copies
     * host (pinned) to dev on a copy stream, once the compute stream has taken slot s's previous
     * copy; stage_take(dst, dev, bytes, s) makes the compute stream wait for that copy, then
     * copy dev to dst. None of them waits for the device otherwise.
     * logit_ce_to: logit_ce whose total is not returned (no wait) but added to the device double
     * *acc as acc += total·scale (the host's rounding); acc NULL: dropped.
     * graph_begin/graph_end: every operation issued between them is captured, not run, into a
     * graph that graph_launch replays with the pointers and values of the capture; graph_end
     * returns NULL if the capture failed (a call it forbids: a wait or an allocation; status
     * says which), and nothing captured has run. graph_free releases a graph. */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    void (*stage_wait)(int slot);
    void (*stage_in)(void *dev, const void *host, size_t bytes, int slot);
    void (*stage_take)(void *dst, const void *dev, size_t bytes, int slot);
    void (*logit_ce_to)(double *acc, double scale, pg_real *dh, pg_real *demb, float *losses, const pg_real *h,
                        const pg_real *emb, const int32_t *targets, int n, int d, int v, double cap, int poly5,
                        double z_loss, double grad_scale, pg_real *work);
    int (*graph_begin)(void);
    void *(*graph_end)(void);
    void (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);
    /* The step's phase clocks, where the device works after its calls return: mark(k) records
     * the moment the device reaches this point of its work (k < 4), elapsed_ms(a, b) the device
     * time between marks a and b (waiting for b). NULL: the host's clock tells (the CPU). */
    void (*mark)(int k);
    double (*elapsed_ms)(int a, int b);
};

/* The size of a communicator's id (NCCL's ncclUniqueId). */
#define PG_COMM_ID_BYTES 128

/* Rows of logits the CPU's fused cross-entropy holds at once, and its scratch size. */
#define PG_CE_CHUNK 256
static inline size_t pg_ce_work(int v) { return (size_t)PG_CE_CHUNK * (size_t)v + PG_CE_CHUNK; }

/* The reference backend (kernels/cpu). */
extern const struct pg_backend pg_backend_cpu;

/* The CUDA backend (kernels/cuda/backend_cuda.c): the same operations on device memory. Linked
 * from libpg when built with CUDA, and from the emulated kernels in the tests. */
extern const struct pg_backend pg_backend_cuda;

/* The backend a --device NAME asks for (lib/backend_select.c): "cpu", or "cuda" when this build
 * has CUDA and the machine a device. @return 0 and *be, PG_E_UNSUPPORTED (built without CUDA, or
 * no device: exit status 3), or PG_E_INVAL naming an unknown device. */
int pg_backend_by_name(const char *name, const struct pg_backend **be);

#endif
