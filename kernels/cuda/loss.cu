// loss.cu: tied-embedding logits with the softcap and cross-entropy, fused over chunks of rows
// (up to 2^25 logits each: chunk_rows) so the [N,V] logits are never stored whole, as the CPU reference
// (kernels/cpu/loss.c): per row, with x = h·Eᵀ through cuBLAS,
//   z = cap·tanh(x/cap),  lse = logsumexp(z),  loss = lse − z[y],
//   ∂(grad_scale·loss)/∂x_j = grad_scale·(softmax(z)_j − [j = y])·(1 − (z_j/cap)²),
// then dh = ∂x·E and dE += ∂xᵀ·h (cuBLAS again). The record variants (spec §2.13): the poly5
// softcap z = cap·clamp(p(u), −1, 1), p(u) = u − u³/3 + u⁵/15, u = clamp(x/cap, −2, 2), with
// dz/dx = p'(u) = 1 − u² + u⁴/3 where no clamp holds, else 0 (the row keeps x and recomputes z);
// and the z-loss z_loss·lse², in the total and the gradient ((1 + 2·z_loss·lse)·softmax_j − [j = y])
// but not in losses[]. One block per row: a max and a double sum by block reductions. The total
// is summed on the device in row order, in double, like the CPU loop, so it does not depend on
// the device or the run.
//
// bf16 mode (lib/backend.h set_bf16): the two products are pg_cuda_matmul_fwd/bwd's, so they take
// bf16 copies of their operands (matmul.cu), as the CPU reference rounds them: x = bf(h)·bf(E)ᵀ
// accumulated and kept in fp32, the softcap and loss on those fp32 logits; the logits' gradient
// is computed in fp32 and rounded only as an operand of dh = bf(∂x)·bf(E) and dE += bf(∂x)ᵀ·
// bf(h). Those copies live in matmul.cu's own scratch, so the pg_cuda_scratch held here across
// the products (the running total, row_z) is never touched by them.
#include "pg_cuda.cuh"

#include "../../lib/backend.h" /* PG_CE_CHUNK, pg_ce_work */
#include "ops.h"

// The poly5 softcap of one logit x, and (when dzdx) its derivative dz/dx; the CPU's formula.
__device__ __forceinline__ float poly5_cap(float x, float c, float inv_c, float *dzdx)
{
    float u = x * inv_c;
    u = u < -2.0f ? -2.0f : u > 2.0f ? 2.0f : u;
    float u2 = u * u, p = u * (1.0f + u2 * ((float)(-1.0 / 3) + u2 * (float)(1.0 / 15)));
    bool inside = p > -1.0f && p < 1.0f && u > -2.0f && u < 2.0f;
    if (dzdx) *dzdx = inside ? 1.0f + u2 * (-1.0f + u2 * (float)(1.0 / 3)) : 0.0f;
    return c * (p < -1.0f ? -1.0f : p > 1.0f ? 1.0f : p);
}

// Row i of u [rows, v] becomes its softcapped logits (tanh; poly5 keeps x), or with `grad` their
// gradient; the row's loss goes to row_loss[i], z_loss·lse² to row_z[i].
__global__ void ce_rows_kernel(float *u, float *row_loss, double *row_z, const int32_t *targets, int v, float cap,
                               float inv_cap, int poly5, double z_loss, double grad_scale, int grad)
{
    int i = blockIdx.x, y = targets[i];
    float *ui = u + (size_t)i * v;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
        float z;
        if (poly5) {
            z = poly5_cap(ui[j], cap, inv_cap, nullptr);
        } else {
            z = cap * tanhf(ui[j] * inv_cap);
            ui[j] = z;
        }
        m = fmaxf(m, z);
    }
    m = pg_block_max(m); // its barriers also make z[y] visible to every thread
    double sum = 0;
    for (int j = threadIdx.x; j < v; j += blockDim.x)
        sum += expf((poly5 ? poly5_cap(ui[j], cap, inv_cap, nullptr) : ui[j]) - m);
    sum = pg_block_sum(sum);
    double lse = m + log(sum);
    if (threadIdx.x == 0) {
        float zy = poly5 ? poly5_cap(ui[y], cap, inv_cap, nullptr) : ui[y];
        row_loss[i] = (float)(lse - zy);
        row_z[i] = z_loss * lse * lse;
    }
    if (!grad) return;
    __syncthreads(); // z[y] is read above before any thread overwrites it below
    double zs = 1 + 2 * z_loss * lse;
    if (poly5) {
        for (int j = threadIdx.x; j < v; j += blockDim.x) {
            float dz, z = poly5_cap(ui[j], cap, inv_cap, &dz);
            double p = expf(z - (float)lse) * zs - (j == y);
            ui[j] = (float)(grad_scale * p * dz);
        }
    } else {
        for (int j = threadIdx.x; j < v; j += blockDim.x) {
            double t = ui[j] * inv_cap;
            double p = expf(ui[j] - (float)lse) * zs - (j == y);
            ui[j] = (float)(grad_scale * p * (1 - t * t));
        }
    }
}

// total += Σ (row_loss[i] + row_z[i] when z_loss) in row order; losses[i] = row_loss[i] when
// asked. One thread: a chunk is 256 additions, and their order is what makes the total
// reproducible.
__global__ void ce_total_kernel(double *total, float *losses, const float *row_loss, const double *row_z, int rows,
                                int z_loss)
{
    double s = *total;
    for (int i = 0; i < rows; i++) {
        s += row_loss[i];
        if (z_loss) s += row_z[i];
        if (losses) losses[i] = row_loss[i];
    }
    *total = s;
}

// acc += scale·total, rounded as the host's `loss += total * scale` is (no fused multiply-add).
__global__ void ce_acc_kernel(double *acc, const double *total, double scale)
{
    *acc = __dadd_rn(*acc, __dmul_rn(*total, scale));
}

// Rows per chunk on the device: as many as 2^25 logits (128 MiB in fp32) hold, between the CPU's
// PG_CE_CHUNK and 32,768, in multiples of PG_CE_CHUNK. Each chunk is about 15 launches (its
// products, their bf16 operands, the row and total kernels, forward and backward): at the CPU's
// 256 rows a 65,536-token micro-batch made 3,840 of them, 87% of its launches; at 32,768, 30.
// pg_cuda_ce_max_chunk (tests) lowers it.
static int chunk_cap; // 0, or the most rows per chunk
extern "C" void pg_cuda_ce_max_chunk(int rows) { chunk_cap = rows > 0 ? rows : 0; }

static int chunk_rows(int n, int v)
{
    size_t r = ((size_t)1 << 25) / (size_t)(v > 0 ? v : 1) / PG_CE_CHUNK * PG_CE_CHUNK;
    r = r < PG_CE_CHUNK ? PG_CE_CHUNK : r > 32768 ? 32768 : r;
    if (chunk_cap && r > (size_t)chunk_cap) r = (size_t)chunk_cap;
    return (int)(r < (size_t)n ? r : (size_t)n);
}

// A chunk's logits [rows, v] and row losses: a buffer of this file's own (the products' bf16
// operands live in matmul.cu's, pg_cuda_scratch holds the total), grown on demand and kept;
// NULL when the device has not that much memory (recorded).
static float *logits_scratch(size_t floats)
{
    static void *buf;
    static size_t cap;
    return (float *)pg_cuda_grow(&buf, &cap, floats * sizeof(float), "the cross-entropy's logits");
}

// The whole computation, its total left in device scratch (returned; NULL when n <= 0 or out of
// memory, the failure recorded). The caller's work buffer (pg_ce_work: the CPU's 256-row chunk)
// is not used: the device's chunks are larger (chunk_rows).
static const double *ce_run(float *dh, float *demb, float *losses, const float *h, const float *emb,
                            const int32_t *targets, int n, int d, int v, double cap, int poly5, double z_loss,
                            double grad_scale)
{
    if (n <= 0) return nullptr;
    cudaStream_t st = pg_cuda_stream();
    int chunk = chunk_rows(n, v);
    float *u = logits_scratch((size_t)chunk * v + chunk);
    // scratch: the running total, then each chunk row's z_loss·lse²
    double *total = (double *)pg_cuda_scratch((1 + (size_t)chunk) * sizeof(double));
    if (!u || !total) return nullptr; // out of memory: recorded, reported by pg_cuda_status
    float *row_loss = u + (size_t)chunk * v;
    double *row_z = total + 1;
    PG_CUDA_CHECK(cudaMemsetAsync(total, 0, sizeof *total, st));
    unsigned threads = v >= 256 ? 256 : ((unsigned)v + 31) / 32 * 32;
    for (int r0 = 0; r0 < n; r0 += chunk) {
        int rows = n - r0 < chunk ? n - r0 : chunk;
        const float *hc = h + (size_t)r0 * d;
        pg_cuda_matmul_fwd(u, hc, emb, rows, d, v);
        PG_LAUNCH(ce_rows_kernel, rows, threads, 0, st)(u, row_loss, row_z, targets + r0, v, (float)cap,
                                                        (float)(1 / cap), poly5, z_loss, grad_scale, dh != nullptr);
        PG_CUDA_LAUNCHED();
        PG_LAUNCH(ce_total_kernel, 1, 1, 0, st)(total, losses ? losses + r0 : nullptr, row_loss, row_z, rows,
                                                z_loss != 0);
        PG_CUDA_LAUNCHED();
        if (dh) pg_cuda_matmul_bwd(dh + (size_t)r0 * d, demb, u, hc, emb, rows, d, v, 0);
    }
    return total;
}

extern "C" double pg_cuda_logit_ce(float *dh, float *demb, float *losses, const float *h, const float *emb,
                                   const int32_t *targets, int n, int d, int v, double cap, int poly5, double z_loss,
                                   double grad_scale, float *work)
{
    if (n <= 0) return 0;
    const double *total = ce_run(dh, demb, losses, h, emb, targets, n, d, v, cap, poly5, z_loss, grad_scale);
    if (!total) return NAN;
    double result = 0;
    cudaStream_t st = pg_cuda_stream();
    PG_CUDA_CHECK(cudaMemcpyAsync(&result, total, sizeof result, cudaMemcpyDeviceToHost, st));
    PG_CUDA_CHECK(cudaStreamSynchronize(st));
    return result;
}

extern "C" void pg_cuda_logit_ce_to(double *acc, double scale, float *dh, float *demb, float *losses, const float *h,
                                    const float *emb, const int32_t *targets, int n, int d, int v, double cap,
                                    int poly5, double z_loss, double grad_scale, float *work)
{
    const double *total = ce_run(dh, demb, losses, h, emb, targets, n, d, v, cap, poly5, z_loss, grad_scale);
    if (acc && total) {
        PG_LAUNCH(ce_acc_kernel, 1, 1, 0, pg_cuda_stream())(acc, total, scale);
        PG_CUDA_LAUNCHED();
    }
}

extern "C" double pg_cuda_softcap_ce(float *dh, float *demb, float *losses, const float *h, const float *emb,
                                     const int32_t *targets, int n, int d, int v, double cap, double grad_scale,
                                     float *work)
{
    return pg_cuda_logit_ce(dh, demb, losses, h, emb, targets, n, d, v, cap, 0, 0, grad_scale, work);
}
