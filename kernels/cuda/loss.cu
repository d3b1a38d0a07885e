// loss.cu: tied-embedding logits with the cap·tanh softcap and cross-entropy, fused over chunks
// of PG_CE_CHUNK rows so the [N,V] logits are never stored whole, as the CPU reference
// (kernels/cpu/loss.c): per row, with u = h·Eᵀ through cuBLAS,
//   z = cap·tanh(u/cap),  loss = logsumexp(z) − z[y],
//   ∂(grad_scale·loss)/∂u_j = grad_scale·(softmax(z)_j − [j = y])·(1 − (z_j/cap)²),
// then dh = ∂u·E and dE += ∂uᵀ·h (cuBLAS again). One block per row: a max and a double sum by
// block reductions. The total is summed on the device in row order, in double, like the CPU
// loop, so it does not depend on the device or the run.
#include "pg_cuda.cuh"

#include "../../lib/backend.h" /* PG_CE_CHUNK, pg_ce_work */
#include "ops.h"

// Row i of u [rows, v] becomes its softcapped logits, or with `grad` their gradient; the
// row's loss goes to row_loss[i].
__global__ void ce_rows_kernel(float *u, float *row_loss, const int32_t *targets, int v, float cap, float inv_cap,
                               double grad_scale, int grad)
{
    int i = blockIdx.x, y = targets[i];
    float *ui = u + (size_t)i * v;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
        float z = cap * tanhf(ui[j] * inv_cap);
        ui[j] = z;
        m = fmaxf(m, z);
    }
    m = pg_block_max(m); // its barriers also make z[y] visible to every thread
    double sum = 0;
    for (int j = threadIdx.x; j < v; j += blockDim.x) sum += expf(ui[j] - m);
    sum = pg_block_sum(sum);
    double lse = m + log(sum);
    if (threadIdx.x == 0) row_loss[i] = (float)(lse - ui[y]);
    if (!grad) return;
    __syncthreads(); // z[y] is read above before any thread overwrites it below
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
        double t = ui[j] * inv_cap;
        double p = expf(ui[j] - (float)lse) - (j == y);
        ui[j] = (float)(grad_scale * p * (1 - t * t));
    }
}

// total += Σ row_loss[i] in row order; losses[i] = row_loss[i] when asked. One thread: a
// chunk is 256 additions, and their order is what makes the total reproducible.
__global__ void ce_total_kernel(double *total, float *losses, const float *row_loss, int rows)
{
    double s = *total;
    for (int i = 0; i < rows; i++) {
        s += row_loss[i];
        if (losses) losses[i] = row_loss[i];
    }
    *total = s;
}

extern "C" double pg_cuda_softcap_ce(float *dh, float *demb, float *losses, const float *h, const float *emb,
                                     const int32_t *targets, int n, int d, int v, double cap, double grad_scale,
                                     float *work)
{
    if (n <= 0) return 0;
    cudaStream_t st = pg_cuda_stream();
    float *u = work, *row_loss = work + (size_t)PG_CE_CHUNK * v;
    double *total = (double *)pg_cuda_scratch(sizeof(double)), result = 0;
    PG_CUDA_CHECK(cudaMemsetAsync(total, 0, sizeof *total, st));
    unsigned threads = v >= 256 ? 256 : ((unsigned)v + 31) / 32 * 32;
    for (int r0 = 0; r0 < n; r0 += PG_CE_CHUNK) {
        int rows = n - r0 < PG_CE_CHUNK ? n - r0 : PG_CE_CHUNK;
        const float *hc = h + (size_t)r0 * d;
        pg_cuda_matmul_fwd(u, hc, emb, rows, d, v);
        PG_LAUNCH(ce_rows_kernel, rows, threads, 0, st)(u, row_loss, targets + r0, v, (float)cap, (float)(1 / cap),
                                                        grad_scale, dh != nullptr);
        PG_CUDA_LAUNCHED();
        PG_LAUNCH(ce_total_kernel, 1, 1, 0, st)(total, losses ? losses + r0 : nullptr, row_loss, rows);
        PG_CUDA_LAUNCHED();
        if (dh) pg_cuda_matmul_bwd(dh + (size_t)r0 * d, demb, u, hc, emb, rows, d, v, 0);
    }
    PG_CUDA_CHECK(cudaMemcpyAsync(&result, total, sizeof result, cudaMemcpyDeviceToHost, st));
    PG_CUDA_CHECK(cudaStreamSynchronize(st));
    return result;
}
