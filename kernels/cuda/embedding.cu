// embedding.cu: the token embedding lookup and its backward.
//
// The backward adds dy's rows into dE's rows, and ids repeat. For reproducible bits without
// float atomics, the rows are first sorted by (id, position) (a bitonic sort of 64-bit keys
// id << 32 | position, padded to a power of two), then one block per run of equal ids adds
// that id's rows in position order, one thread per channel: the very order of the CPU
// reference's loop, so the two backends agree to the bit.
#include "pg_cuda.cuh"

#include "ops.h"

enum { SEG = 1024 }; // keys a block sorts in shared memory

__global__ void embedding_fwd_kernel(float *y, const float *emb, const int32_t *ids, size_t total, int d)
{
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (size_t)gridDim.x * blockDim.x) {
        size_t i = k / (size_t)d, c = k % (size_t)d;
        y[k] = emb[(size_t)ids[i] * d + c];
    }
}

__global__ void keys_kernel(unsigned long long *keys, const int32_t *ids, int n, int p)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p; i += gridDim.x * blockDim.x)
        keys[i] = i < n ? (unsigned long long)(uint32_t)ids[i] << 32 | (unsigned)i : ~0ull; // padding sorts last
}

// One compare-exchange of the bitonic network: the pair (i, i + j), i with bit j clear,
// ascending where bit k of i is clear.
__device__ __forceinline__ void bitonic_pair(unsigned long long *a, int i, int j, size_t gi, int k)
{
    unsigned long long x = a[i], y = a[i + j];
    bool up = (gi & (size_t)k) == 0;
    if ((x > y) == up) {
        a[i] = y;
        a[i + j] = x;
    }
}

// Steps j ≥ seg of stage k, in global memory: thread t handles one pair.
__global__ void bitonic_global_kernel(unsigned long long *keys, int p, int k, int j)
{
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < p / 2; t += gridDim.x * blockDim.x) {
        int i = t / j * 2 * j + t % j;
        bitonic_pair(keys, i, j, (size_t)i, k);
    }
}

// Steps j < seg of stages k0..k1 (k doubling), on one seg-long segment per block in shared memory.
__global__ void bitonic_local_kernel(unsigned long long *keys, int seg, int k0, int k1, int j0)
{
    __shared__ unsigned long long s[SEG];
    size_t base = (size_t)blockIdx.x * seg;
    for (int i = threadIdx.x; i < seg; i += blockDim.x) s[i] = keys[base + i];
    __syncthreads();
    for (int k = k0; k <= k1; k <<= 1)
        for (int j = k == k0 ? j0 : k / 2; j > 0; j >>= 1) {
            for (int t = threadIdx.x; t < seg / 2; t += blockDim.x) {
                int i = t / j * 2 * j + t % j;
                bitonic_pair(s, i, j, base + i, k);
            }
            __syncthreads();
        }
    for (int i = threadIdx.x; i < seg; i += blockDim.x) keys[base + i] = s[i];
}

// Block p of the sorted order: if it starts a run of equal ids, adds the run's dy rows into
// that id's row of dE, in position order.
__global__ void embedding_bwd_kernel(float *demb, const float *dy, const unsigned long long *keys, int n, int d)
{
    int p = blockIdx.x;
    unsigned id = (unsigned)(keys[p] >> 32);
    if (p > 0 && (unsigned)(keys[p - 1] >> 32) == id) return; // not the first row of its run
    int end = p + 1;
    while (end < n && (unsigned)(keys[end] >> 32) == id) end++;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = demb[(size_t)id * d + c];
        for (int q = p; q < end; q++) acc += dy[(size_t)(uint32_t)keys[q] * d + c];
        demb[(size_t)id * d + c] = acc;
    }
}

extern "C" void pg_cuda_embedding_fwd(float *y, const float *emb, const int32_t *ids, int n, int d)
{
    if (n <= 0 || d <= 0) return;
    size_t total = (size_t)n * d;
    PG_LAUNCH(embedding_fwd_kernel, pg_cuda_blocks(total, 256), 256, 0, pg_cuda_stream())(y, emb, ids, total, d);
    PG_CUDA_LAUNCHED();
}

// Sorts keys[0, p) ascending, p a power of two.
static void bitonic_sort(unsigned long long *keys, int p)
{
    cudaStream_t st = pg_cuda_stream();
    int seg = p < SEG ? p : SEG, threads = seg / 2;
    // every segment sorted whole (stages k ≤ seg), alternately up and down: a bitonic sequence
    PG_LAUNCH(bitonic_local_kernel, p / seg, threads, 0, st)(keys, seg, 2, seg, 1);
    PG_CUDA_LAUNCHED();
    for (int k = 2 * seg; k <= p; k <<= 1) {
        for (int j = k / 2; j >= seg; j >>= 1) {
            PG_LAUNCH(bitonic_global_kernel, pg_cuda_blocks((size_t)p / 2, 256), 256, 0, st)(keys, p, k, j);
            PG_CUDA_LAUNCHED();
        }
        PG_LAUNCH(bitonic_local_kernel, p / seg, threads, 0, st)(keys, seg, k, k, seg / 2);
        PG_CUDA_LAUNCHED();
    }
}

extern "C" void pg_cuda_embedding_bwd(float *demb, const float *dy, const int32_t *ids, int n, int d)
{
    if (n <= 0 || d <= 0) return;
    int p = 2;
    while (p < n) p *= 2;
    unsigned long long *keys = (unsigned long long *)pg_cuda_scratch((size_t)p * sizeof *keys);
    if (!keys) return; // out of memory: recorded, reported by pg_cuda_status
    PG_LAUNCH(keys_kernel, pg_cuda_blocks((size_t)p, 256), 256, 0, pg_cuda_stream())(keys, ids, n, p);
    PG_CUDA_LAUNCHED();
    bitonic_sort(keys, p);
    unsigned threads = d >= 256 ? 256 : ((unsigned)d + 31) / 32 * 32;
    PG_LAUNCH(embedding_bwd_kernel, n, threads, 0, pg_cuda_stream())(demb, dy, keys, n, d);
    PG_CUDA_LAUNCHED();
}
