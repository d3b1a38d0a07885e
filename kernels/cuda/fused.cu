// fused.cu: the fused forms of lib/backend.h (qk_prep, mix_norm, add_norm[_x16]): chains of the
// block's memory-bound operations done in one pass over the rows, so each activation is read
// and written once instead of once per operation. Their arithmetic is the plain operations'
// (norm.cu, rope.cu, pointwise.cu), float for float; only the order of the double sums of
// squares differs (a warp or a block reduction), so results agree with the chains to about one
// float ulp. tests/emu/test_cuda_fused.c compares them with the CPU's chains.
//
// Bytes per token and layer at the baseline (d 512, 8 heads, 4 KV heads, fp32; a "pass" reads or
// writes one [N, 512] tensor, 2 KiB a token): q/k preparation was 13 passes forward (norm, copy,
// rope, copy, gain on q; norm, copy, rope on k) and 10.5 backward; fused, 3 and 4.5. The residual
// mix and the attention norm were 8 (copy, mix, norm), fused 5; the attention's residual add
// and the MLP norm 7 (copy, add, norm), fused 4.
#include "pg_cuda.cuh"

#include "ops.h"

enum { ROW_WARPS = 8 }; // head rows per block in qk_prep: a warp a row

// ---- q/k preparation: y = gain ⊙ rope(rmsnorm(x)) over rows of hd --------------------------------
//
// One warp per (token, head) row. A lane takes the rotated pairs (i, i + rd/2) for i = lane,
// lane + 32, ... and the unrotated dims rd + lane, ...: every element of the row once, with its
// rotation partner in the same lane, so no exchange is needed and hd has no upper limit.

__device__ __forceinline__ void qk_row_ids(size_t row, int t, int h, int *ti, int *hi)
{
    *hi = (int)(row % (size_t)h);
    *ti = (int)(row / (size_t)h % (size_t)t);
}

// An output element: fp32 as computed, or rounded to bf16 for the product that reads it so.
__device__ __forceinline__ void put(float *y, size_t i, float v) { y[i] = v; }
__device__ __forceinline__ void put(__nv_bfloat16 *y, size_t i, float v) { y[i] = __float2bfloat16(v); }

// y in fp32, or in bf16 for the fused attention that reads it so (qk_prep_fwd_x16).
// x, the q or k product, in fp32 or in bf16 (as autocast stores a linear output: X = bf16).
template <class T, class X>
__global__ void qk_prep_fwd_kernel(T *y, float *rstd, const X *x, const float *cos, const float *sin,
                                   const float *gain, size_t rows, int t, int h, int hd, int rd, double eps)
{
    int lane = threadIdx.x & 31, half = rd / 2;
    for (size_t row = (size_t)blockIdx.x * ROW_WARPS + (threadIdx.x >> 5); row < rows;
         row += (size_t)gridDim.x * ROW_WARPS) {
        int ti, hi;
        qk_row_ids(row, t, h, &ti, &hi);
        size_t off = row * (size_t)hd;
        const X *xr = x + off;
        double ss = 0;
        for (int c = lane; c < hd; c += 32) ss += (double)pg_ld(xr, c) * pg_ld(xr, c);
        ss = pg_warp_sum(ss);
        float r = (float)(1.0 / sqrt(ss / hd + eps)), g = gain ? gain[hi] : 1.0f;
        const float *cr = cos + (size_t)ti * half, *sr = sin + (size_t)ti * half;
        for (int i = lane; i < half; i += 32) {
            float x1 = pg_ld(xr, i) * r, x2 = pg_ld(xr, i + half) * r, c = cr[i], s = sr[i];
            put(y, off + i, (x1 * c + x2 * s) * g);
            put(y, off + i + half, (-x1 * s + x2 * c) * g);
        }
        for (int c = rd + lane; c < hd; c += 32) put(y, off + c, pg_ld(xr, c) * r * g);
        if (lane == 0) rstd[row] = r;
    }
}

// From dy: dx overwritten (fp32, or bf16 for qk_prep_bwd_x16), and (gain) part[row] = Σ dy ⊙
// rope(rmsnorm(x)), the row's share of the gain's gradient. The normed and rotated rows are
// recomputed from x and rstd, the same floats the forward made (the plain chain kept them in
// memory).
template <class T, class X>
__global__ void qk_prep_bwd_kernel(T *dx, double *part, const float *dy, const X *x, const float *rstd,
                                   const float *cos, const float *sin, const float *gain, size_t rows, int t, int h,
                                   int hd, int rd)
{
    int lane = threadIdx.x & 31, half = rd / 2;
    for (size_t row = (size_t)blockIdx.x * ROW_WARPS + (threadIdx.x >> 5); row < rows;
         row += (size_t)gridDim.x * ROW_WARPS) {
        int ti, hi;
        qk_row_ids(row, t, h, &ti, &hi);
        size_t off = row * (size_t)hd;
        const X *xr = x + off;
        const float *gr = dy + off;
        float r = rstd[row], g = gain ? gain[hi] : 1.0f;
        const float *cr = cos + (size_t)ti * half, *sr = sin + (size_t)ti * half;
        double gdot = 0, ndot = 0;
        // pass 1: the gain's dot product and the norm's mean(dŷ·ŷ), ŷ the normed row
        for (int i = lane; i < half; i += 32) {
            float x1 = pg_ld(xr, i) * r, x2 = pg_ld(xr, i + half) * r, c = cr[i], s = sr[i];
            float d1 = gr[i], d2 = gr[i + half];
            gdot += (double)d1 * (x1 * c + x2 * s) + (double)d2 * (-x1 * s + x2 * c);
            float e1 = d1 * g, e2 = d2 * g; // through the gain, then the inverse rotation
            float n1 = e1 * c + e2 * -s, n2 = -e1 * -s + e2 * c;
            ndot += (double)n1 * x1 + (double)n2 * x2;
        }
        for (int c = rd + lane; c < hd; c += 32) {
            float xn = pg_ld(xr, c) * r, d1 = gr[c];
            gdot += (double)d1 * xn;
            ndot += (double)(d1 * g) * xn;
        }
        ndot = pg_warp_sum(ndot);
        float m = (float)(ndot / hd);
        // pass 2: dx = r·(dŷ − ŷ·m)
        for (int i = lane; i < half; i += 32) {
            float x1 = pg_ld(xr, i) * r, x2 = pg_ld(xr, i + half) * r, c = cr[i], s = sr[i];
            float e1 = gr[i] * g, e2 = gr[i + half] * g;
            float n1 = e1 * c + e2 * -s, n2 = -e1 * -s + e2 * c;
            put(dx, off + i, r * (n1 - x1 * m));
            put(dx, off + i + half, r * (n2 - x2 * m));
        }
        for (int c = rd + lane; c < hd; c += 32) put(dx, off + c, r * (gr[c] * g - pg_ld(xr, c) * r * m));
        if (part) {
            gdot = pg_warp_sum(gdot);
            if (lane == 0) part[row] = gdot;
        }
    }
}

// dgain[j] += Σ_i part[i·h + j]: a block per head, the rows in a fixed order (the same bits on
// every run, no atomics).
__global__ void qk_gain_finish_kernel(float *dgain, const double *part, size_t n, int h)
{
    int j = blockIdx.x;
    double s = 0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += part[i * (size_t)h + j];
    s = pg_block_sum(s);
    if (threadIdx.x == 0) dgain[j] += (float)s;
}

static unsigned row_blocks(size_t rows)
{
    size_t b = (rows + ROW_WARPS - 1) / ROW_WARPS;
    return b < 1 ? 1 : b > 65535 ? 65535 : (unsigned)b;
}

template <class T, class X>
static void qk_prep_fwd_as(T *y, float *rstd, const X *x, const float *cos, const float *sin, const float *gain, int b,
                           int t, int h, int hd, int rd, double eps)
{
    size_t rows = (size_t)b * t * h;
    if (b <= 0 || t <= 0 || h <= 0 || hd <= 0) return;
    if (rd < 0 || rd > hd || rd % 2) rd = 0; // as rope_fwd: an invalid rd rotates nothing
    PG_LAUNCH((qk_prep_fwd_kernel<T, X>), row_blocks(rows), 32 * ROW_WARPS, 0, pg_cuda_stream())(
        y, rstd, x, cos, sin, gain, rows, t, h, hd, rd, eps);
    PG_CUDA_LAUNCHED();
}

// x16, when given, replaces x (backend.h: the product kept in bf16).
template <class T>
static void qk_prep_fwd(T *y, float *rstd, const float *x, const uint16_t *x16, const float *cos, const float *sin,
                        const float *gain, int b, int t, int h, int hd, int rd, double eps)
{
    if (x16) qk_prep_fwd_as(y, rstd, (const __nv_bfloat16 *)x16, cos, sin, gain, b, t, h, hd, rd, eps);
    else qk_prep_fwd_as(y, rstd, x, cos, sin, gain, b, t, h, hd, rd, eps);
}

extern "C" void pg_cuda_qk_prep_fwd(float *y, float *rstd, const float *x, const uint16_t *x16, const float *cos,
                                    const float *sin, const float *gain, int b, int t, int h, int hd, int rd,
                                    double eps)
{
    qk_prep_fwd(y, rstd, x, x16, cos, sin, gain, b, t, h, hd, rd, eps);
}

extern "C" void pg_cuda_qk_prep_fwd_x16(uint16_t *y16, float *rstd, const float *x, const uint16_t *x16,
                                        const float *cos, const float *sin, const float *gain, int b, int t, int h,
                                        int hd, int rd, double eps)
{
    qk_prep_fwd((__nv_bfloat16 *)y16, rstd, x, x16, cos, sin, gain, b, t, h, hd, rd, eps);
}

template <class T, class X>
static void qk_prep_bwd_as(T *dx, float *dgain, const float *dy, const X *x, const float *rstd, const float *cos,
                           const float *sin, const float *gain, int b, int t, int h, int hd, int rd)
{
    size_t rows = (size_t)b * t * h;
    if (b <= 0 || t <= 0 || h <= 0 || hd <= 0) return;
    if (rd < 0 || rd > hd || rd % 2) rd = 0;
    double *part = NULL;
    if (gain && dgain && !(part = (double *)pg_cuda_scratch(rows * sizeof(double)))) return;
    PG_LAUNCH((qk_prep_bwd_kernel<T, X>), row_blocks(rows), 32 * ROW_WARPS, 0,
              pg_cuda_stream())(dx, part, dy, x, rstd, cos, sin, gain, rows, t, h, hd, rd);
    PG_CUDA_LAUNCHED();
    if (!part) return;
    PG_LAUNCH(qk_gain_finish_kernel, h, 256, 0, pg_cuda_stream())(dgain, part, (size_t)b * t, h);
    PG_CUDA_LAUNCHED();
}

template <class T>
static void qk_prep_bwd(T *dx, float *dgain, const float *dy, const float *x, const uint16_t *x16, const float *rstd,
                        const float *cos, const float *sin, const float *gain, int b, int t, int h, int hd, int rd)
{
    if (x16) qk_prep_bwd_as(dx, dgain, dy, (const __nv_bfloat16 *)x16, rstd, cos, sin, gain, b, t, h, hd, rd);
    else qk_prep_bwd_as(dx, dgain, dy, x, rstd, cos, sin, gain, b, t, h, hd, rd);
}

extern "C" void pg_cuda_qk_prep_bwd(float *dx, float *dgain, const float *dy, const float *x, const uint16_t *x16,
                                    const float *rstd, const float *cos, const float *sin, const float *gain, int b,
                                    int t, int h, int hd, int rd)
{
    qk_prep_bwd(dx, dgain, dy, x, x16, rstd, cos, sin, gain, b, t, h, hd, rd);
}

extern "C" void pg_cuda_qk_prep_bwd_x16(uint16_t *dx16, float *dgain, const float *dy, const float *x,
                                        const uint16_t *x16, const float *rstd, const float *cos, const float *sin,
                                        const float *gain, int b, int t, int h, int hd, int rd)
{
    qk_prep_bwd((__nv_bfloat16 *)dx16, dgain, dy, x, x16, rstd, cos, sin, gain, b, t, h, hd, rd);
}

// ---- the residual stream's norms: a block per row ---------------------------------------------------

static unsigned norm_threads(int d)
{
    unsigned t = ((unsigned)d + 31) / 32 * 32;
    return t > 512 ? 512 : t;
}

// xin = x (when xin), xm = m0 ⊙ x + m1 ⊙ x0, y = scale·xm/rms(xm), rstd.
// y16, when not null, gets y rounded to bf16 (mix_norm_fwd_x16: the three products' operand), and
// y may then be null (the lean layout recomputes it in the backward: mix_norm_bwd_x16).
__global__ void mix_norm_fwd_kernel(float *xin, float *xm, float *y, __nv_bfloat16 *y16, float *rstd, const float *x,
                                    const float *x0, const float *m0, const float *m1, int d, double eps, float scale)
{
    size_t off = (size_t)blockIdx.x * d;
    double ss = 0;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float v = x[off + c], w = pg_mix(m0[c], v, m1[c], x0[off + c]);
        if (xin) xin[off + c] = v;
        xm[off + c] = w;
        ss += (double)w * w;
    }
    ss = pg_block_sum(ss);
    float r = (float)(1.0 / sqrt(ss / d + eps)), rs = r * scale;
    for (int c = threadIdx.x; c < d; c += blockDim.x) { // xm: this thread's own writes
        float v = xm[off + c] * rs;
        if (y) y[off + c] = v;
        if (y16) y16[off + c] = __float2bfloat16(v);
    }
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// x = x_in + s ⊙ f (x_in may be x), y = scale·x/rms(x), rstd.
// y16, when not null, gets y rounded to bf16 too (add_norm_fwd_x16: the next product's operand);
// y may then be null (the lean layout recomputes it in the backward: add_norm_bwd_x16).
template <class F>
__global__ void add_norm_fwd_kernel(float *x, float *y, __nv_bfloat16 *y16, float *rstd, const float *x_in,
                                    const float *s, const F *f, int d, double eps, float scale)
{
    size_t off = (size_t)blockIdx.x * d;
    double ss = 0;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float v = x_in[off + c];
        v = pg_add_scaled(v, s[c], pg_ld(f, off + c));
        x[off + c] = v;
        ss += (double)v * v;
    }
    ss = pg_block_sum(ss);
    float r = (float)(1.0 / sqrt(ss / d + eps)), rs = r * scale;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float v = x[off + c] * rs;
        if (y) y[off + c] = v;
        if (y16) y16[off + c] = __float2bfloat16(v);
    }
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

extern "C" void pg_cuda_mix_norm_fwd(float *xin, float *xm, float *y, float *rstd, const float *x, const float *x0,
                                     const float *m0, const float *m1, int n, int d, double eps, double scale)
{
    if (n <= 0 || d <= 0) return;
    PG_LAUNCH(mix_norm_fwd_kernel, n, norm_threads(d), 0, pg_cuda_stream())(xin, xm, y, nullptr, rstd, x, x0, m0, m1, d,
                                                                           eps, (float)scale);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_mix_norm_fwd_x16(float *xin, float *xm, float *y, uint16_t *y16, float *rstd, const float *x,
                                         const float *x0, const float *m0, const float *m1, int n, int d, double eps,
                                         double scale)
{
    if (n <= 0 || d <= 0) return;
    PG_LAUNCH(mix_norm_fwd_kernel, n, norm_threads(d), 0, pg_cuda_stream())(xin, xm, y, (__nv_bfloat16 *)y16, rstd, x,
                                                                           x0, m0, m1, d, eps, (float)scale);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_add_norm_fwd(float *x, float *y, float *rstd, const float *x_in, const float *s,
                                     const float *f, int n, int d, double eps, double scale)
{
    if (n <= 0 || d <= 0) return;
    PG_LAUNCH(add_norm_fwd_kernel<float>, n, norm_threads(d), 0, pg_cuda_stream())(x, y, nullptr, rstd, x_in, s, f, d,
                                                                                  eps, (float)scale);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_add_norm_fwd_x16(float *x, float *y, uint16_t *y16, float *rstd, const float *x_in,
                                         const float *s, const uint16_t *f16, int n, int d, double eps, double scale)
{
    if (n <= 0 || d <= 0) return;
    PG_LAUNCH(add_norm_fwd_kernel<__nv_bfloat16>, n, norm_threads(d), 0, pg_cuda_stream())(
        x, y, (__nv_bfloat16 *)y16, rstd, x_in, s, (const __nv_bfloat16 *)f16, d, eps, (float)scale);
    PG_CUDA_LAUNCHED();
}
