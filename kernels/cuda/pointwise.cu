// pointwise.cu: the element- and channel-wise operations of a block: (leaky) relu², the residual mix
// with x0, scaled residual adds and the per-head q gain, forward and backward.
//
// The backward passes reduce over rows into per-channel gradients. For reproducible bits they
// use no atomics: the rows are cut into a fixed number of chunks that depends only on n (not on
// the device), one block sums a 32-channel strip of one chunk in a fixed order (8 row lanes,
// then the 8 lane sums in lane order) into a scratch table of partial sums, and a second kernel
// adds each channel's partials in chunk order. Sums run in double, like the CPU reference.
#include "pg_cuda.cuh"

#include "ops.h"

enum {
    ELT_THREADS = 256,
    CS_X = 32,          // channels per block: a warp reads 32 consecutive floats of a row
    CS_Y = 8,           // row lanes per block
    CS_MIN_ROWS = 64,   // rows per chunk, at least
    CS_MAX_CHUNKS = 64, // enough blocks to fill a GPU at the baseline's 512 channels
};

// ---- elementwise ------------------------------------------------------------------------------

#define GRID_STRIDE(i, n)                                                                                          \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

// s2 = slope² in float, as the CPU computes it; s2 == 0 (relu²) gives the baseline's exact zero.
// An output element: fp32 as computed, or rounded to bf16 (nearest even) for a product that
// reads it so (backend.h relu2_fwd_x16, relu2_bwd_x16, scale_add_bwd_x16).
__device__ inline void put(float *y, size_t i, float v) { y[i] = v; }
__device__ inline void put(__nv_bfloat16 *y, size_t i, float v) { y[i] = __float2bfloat16(v); }
template <class T, class X> __global__ void relu2_fwd_kernel(T *y, const X *x, size_t n, float s2)
{
    GRID_STRIDE(i, n)
    {
        float v = pg_ld(x, i);
        put(y, i, v > 0 ? v * v : s2 != 0 ? s2 * v * v : 0);
    }
}

template <class T, class X> __global__ void relu2_bwd_kernel(T *dx, const float *dy, const X *x, size_t n, float s2)
{
    GRID_STRIDE(i, n)
    {
        float v = pg_ld(x, i);
        put(dx, i, v > 0 ? 2 * v * dy[i] : s2 != 0 ? 2 * s2 * v * dy[i] : 0);
    }
}

__global__ void round_bf16_kernel(float *x, size_t n)
{
    GRID_STRIDE(i, n) x[i] = __bfloat162float(__float2bfloat16(x[i]));
}

__global__ void mix_fwd_kernel(float *y, const float *x, const float *x0, const float *m0, const float *m1, size_t n,
                               int d)
{
    GRID_STRIDE(k, n)
    {
        int c = (int)(k % (size_t)d);
        y[k] = m0[c] * x[k] + m1[c] * x0[k];
    }
}

template <class F> __global__ void scale_add_fwd_kernel(float *x, const float *s, const F *f, size_t n, int d)
{
    GRID_STRIDE(k, n) x[k] += s[k % (size_t)d] * pg_ld(f, k);
}

__global__ void head_gain_fwd_kernel(float *q, const float *g, size_t n, int h, int hd)
{
    GRID_STRIDE(k, n) q[k] *= g[k / (size_t)hd % (size_t)h];
}

// ---- channel sums -----------------------------------------------------------------------------

struct Chunks {
    int rows, count; // rows per chunk, number of chunks
};

static Chunks chunks_for(int n)
{
    int count = (n + CS_MIN_ROWS - 1) / CS_MIN_ROWS;
    if (count > CS_MAX_CHUNKS) count = CS_MAX_CHUNKS;
    int rows = (n + count - 1) / count;
    return Chunks{rows, (n + rows - 1) / rows};
}

// Stores the block's sum over its row lanes of each thread's v as part[c] (c < cols); every
// thread of the block calls it. The lanes are added in lane order: the same bits every run.
__device__ void cs_store(double v, double *part, int c, int cols)
{
    __shared__ double red[CS_Y][CS_X + 1];
    red[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        double s = 0;
        for (int j = 0; j < CS_Y; j++) s += red[j][threadIdx.x];
        part[c] = s;
    }
    __syncthreads(); // red[] is free again
}

// out[j] += Σ_chunks Σ_{g < group} part[chunk][j·group + g], for j < cols / group.
__global__ void cs_finish_kernel(float *out, const double *part, int chunks, int cols, int group)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols / group) return;
    double s = 0;
    for (int ch = 0; ch < chunks; ch++)
        for (int g = 0; g < group; g++) s += part[(size_t)ch * cols + (size_t)j * group + g];
    out[j] += (float)s;
}

static void cs_finish(float *out, const double *part, Chunks ch, int cols, int group)
{
    int nout = cols / group;
    PG_LAUNCH(cs_finish_kernel, (nout + 127) / 128, 128, 0, pg_cuda_stream())(out, part, ch.count, cols, group);
    PG_CUDA_LAUNCHED();
}

// The grid of a chunked pass over an [n, cols] matrix: (channel strips, chunks).
static dim3 cs_grid(Chunks ch, int cols) { return dim3((unsigned)(cols + CS_X - 1) / CS_X, (unsigned)ch.count); }

// Rows of this block's chunk; the thread starts at row r0 + threadIdx.y and steps CS_Y.
#define CHUNK_ROWS(i, rows, n)                                                                                     \
    int r1_ = (int)(blockIdx.y + 1) * (rows) < (n) ? (int)(blockIdx.y + 1) * (rows) : (n);                         \
    for (int i = (int)blockIdx.y * (rows) + (int)threadIdx.y; i < r1_; i += CS_Y)

__global__ void mix_bwd_kernel(float *dx, float *dx0, double *part, const float *dy, const float *x, const float *x0,
                               const float *m0, const float *m1, int n, int d, int rows)
{
    int c = blockIdx.x * CS_X + threadIdx.x;
    double s0 = 0, s1 = 0;
    if (c < d) {
        float a = m0[c], b = m1[c];
        CHUNK_ROWS(i, rows, n)
        {
            size_t k = (size_t)i * d + c;
            float g = dy[k];
            s0 += (double)g * x[k];
            s1 += (double)g * x0[k];
            dx0[k] += b * g;
            dx[k] = a * g;
        }
    }
    cs_store(s0, part + (size_t)blockIdx.y * d, c, d);
    cs_store(s1, part + ((size_t)gridDim.y + blockIdx.y) * d, c, d);
}

// df's element k: fp32, overwritten or accumulated; or bf16 (scale_add_bwd_x16), overwritten.
__device__ inline void put_df(float *df, size_t k, float v, int accumulate) { df[k] = accumulate ? df[k] + v : v; }
__device__ inline void put_df(__nv_bfloat16 *df, size_t k, float v, int) { put(df, k, v); }

template <class T, class F>
__global__ void scale_add_bwd_kernel(T *df, double *part, const float *dy, const float *s, const F *f, int n, int d,
                                     int rows, int accumulate)
{
    int c = blockIdx.x * CS_X + threadIdx.x;
    double acc = 0;
    if (c < d) {
        float sc = s[c];
        CHUNK_ROWS(i, rows, n)
        {
            size_t k = (size_t)i * d + c;
            float g = dy[k];
            acc += (double)g * pg_ld(f, k);
            put_df(df, k, sc * g, accumulate);
        }
    }
    cs_store(acc, part + (size_t)blockIdx.y * d, c, d);
}

// q viewed as [n, h·hd]: column c belongs to head c / hd.
__global__ void head_gain_bwd_kernel(float *dq, double *part, const float *q_pre, const float *g, int n, int cols,
                                     int hd, int rows)
{
    int c = blockIdx.x * CS_X + threadIdx.x;
    double acc = 0;
    if (c < cols) {
        float gain = g[c / hd];
        CHUNK_ROWS(i, rows, n)
        {
            size_t k = (size_t)i * cols + c;
            acc += (double)dq[k] * q_pre[k];
            dq[k] *= gain;
        }
    }
    cs_store(acc, part + (size_t)blockIdx.y * cols, c, cols);
}

// ---- host wrappers ----------------------------------------------------------------------------

template <class T, class X> static void relu2_fwd(T *y, const X *x, size_t n, double slope)
{
    if (n == 0) return;
    float s2 = (float)(slope * slope);
    PG_LAUNCH((relu2_fwd_kernel<T, X>), pg_cuda_blocks(n, ELT_THREADS), ELT_THREADS, 0, pg_cuda_stream())(y, x, n, s2);
    PG_CUDA_LAUNCHED();
}

template <class T, class X> static void relu2_bwd(T *dx, const float *dy, const X *x, size_t n, double slope)
{
    if (n == 0) return;
    float s2 = (float)(slope * slope);
    PG_LAUNCH((relu2_bwd_kernel<T, X>), pg_cuda_blocks(n, ELT_THREADS), ELT_THREADS, 0, pg_cuda_stream())(dx, dy, x, n,
                                                                                                       s2);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_relu2_fwd(float *y, const float *x, size_t n, double slope) { relu2_fwd(y, x, n, slope); }

extern "C" void pg_cuda_relu2_fwd_x16(uint16_t *y16, const uint16_t *x16, size_t n, double slope)
{
    relu2_fwd((__nv_bfloat16 *)y16, (const __nv_bfloat16 *)x16, n, slope);
}

extern "C" void pg_cuda_relu2_bwd(float *dx, const float *dy, const float *x, size_t n, double slope)
{
    relu2_bwd(dx, dy, x, n, slope);
}

extern "C" void pg_cuda_relu2_bwd_x16(uint16_t *dx16, const float *dy, const uint16_t *x16, size_t n, double slope)
{
    relu2_bwd((__nv_bfloat16 *)dx16, dy, (const __nv_bfloat16 *)x16, n, slope);
}

extern "C" void pg_cuda_round_bf16(float *x, size_t n)
{
    if (n == 0) return;
    PG_LAUNCH(round_bf16_kernel, pg_cuda_blocks(n, ELT_THREADS), ELT_THREADS, 0, pg_cuda_stream())(x, n);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_mix_fwd(float *y, const float *x, const float *x0, const float *m0, const float *m1, int n,
                                int d)
{
    size_t total = (size_t)(n > 0 ? n : 0) * (size_t)(d > 0 ? d : 0);
    if (total == 0) return;
    PG_LAUNCH(mix_fwd_kernel, pg_cuda_blocks(total, ELT_THREADS), ELT_THREADS, 0,
              pg_cuda_stream())(y, x, x0, m0, m1, total, d);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_mix_bwd(float *dx, float *dx0, float *dm0, float *dm1, const float *dy, const float *x,
                                const float *x0, const float *m0, const float *m1, int n, int d)
{
    if (n <= 0 || d <= 0) return;
    Chunks ch = chunks_for(n);
    double *part = (double *)pg_cuda_scratch(2 * (size_t)ch.count * d * sizeof(double));
    if (!part) return; // out of memory: recorded, reported by pg_cuda_status
    PG_LAUNCH(mix_bwd_kernel, cs_grid(ch, d), dim3(CS_X, CS_Y), 0,
              pg_cuda_stream())(dx, dx0, part, dy, x, x0, m0, m1, n, d, ch.rows);
    PG_CUDA_LAUNCHED();
    cs_finish(dm0, part, ch, d, 1);
    cs_finish(dm1, part + (size_t)ch.count * d, ch, d, 1);
}

template <class F> static void scale_add_fwd(float *x, const float *s, const F *f, int n, int d)
{
    size_t total = (size_t)(n > 0 ? n : 0) * (size_t)(d > 0 ? d : 0);
    if (total == 0) return;
    PG_LAUNCH(scale_add_fwd_kernel<F>, pg_cuda_blocks(total, ELT_THREADS), ELT_THREADS, 0,
              pg_cuda_stream())(x, s, f, total, d);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_scale_add_fwd(float *x, const float *s, const float *f, int n, int d)
{
    scale_add_fwd(x, s, f, n, d);
}

extern "C" void pg_cuda_scale_add_fwd_x16(float *x, const float *s, const uint16_t *f16, int n, int d)
{
    scale_add_fwd(x, s, (const __nv_bfloat16 *)f16, n, d);
}

template <class T, class F>
static void scale_add_bwd(T *df, float *ds, const float *dy, const float *s, const F *f, int n, int d, int acc)
{
    if (n <= 0 || d <= 0) return;
    Chunks ch = chunks_for(n);
    double *part = (double *)pg_cuda_scratch((size_t)ch.count * d * sizeof(double));
    if (!part) return; // out of memory: recorded, reported by pg_cuda_status
    PG_LAUNCH((scale_add_bwd_kernel<T, F>), cs_grid(ch, d), dim3(CS_X, CS_Y), 0,
              pg_cuda_stream())(df, part, dy, s, f, n, d, ch.rows, acc);
    PG_CUDA_LAUNCHED();
    cs_finish(ds, part, ch, d, 1);
}

extern "C" void pg_cuda_scale_add_bwd(float *df, float *ds, const float *dy, const float *s, const float *f, int n,
                                      int d, int df_accumulate)
{
    scale_add_bwd(df, ds, dy, s, f, n, d, df_accumulate);
}

extern "C" void pg_cuda_scale_add_bwd_x16(uint16_t *df16, float *ds, const float *dy, const float *s,
                                          const uint16_t *f16, int n, int d)
{
    scale_add_bwd((__nv_bfloat16 *)df16, ds, dy, s, (const __nv_bfloat16 *)f16, n, d, 0);
}

extern "C" void pg_cuda_head_gain_fwd(float *q, const float *g, int n, int h, int hd)
{
    size_t total = (size_t)(n > 0 ? n : 0) * (size_t)(h > 0 ? h : 0) * (size_t)(hd > 0 ? hd : 0);
    if (total == 0) return;
    PG_LAUNCH(head_gain_fwd_kernel, pg_cuda_blocks(total, ELT_THREADS), ELT_THREADS, 0,
              pg_cuda_stream())(q, g, total, h, hd);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_head_gain_bwd(float *dq, float *dg, const float *q_pre, const float *g, int n, int h, int hd)
{
    if (n <= 0 || h <= 0 || hd <= 0) return;
    int cols = h * hd;
    Chunks ch = chunks_for(n);
    double *part = (double *)pg_cuda_scratch((size_t)ch.count * cols * sizeof(double));
    if (!part) return; // out of memory: recorded, reported by pg_cuda_status
    PG_LAUNCH(head_gain_bwd_kernel, cs_grid(ch, cols), dim3(CS_X, CS_Y), 0,
              pg_cuda_stream())(dq, part, q_pre, g, n, cols, hd, ch.rows);
    PG_CUDA_LAUNCHED();
    cs_finish(dg, part, ch, cols, hd);
}
