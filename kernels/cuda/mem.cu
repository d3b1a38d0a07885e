// mem.cu: the CUDA backend's host-side plumbing: checked device memory for C callers, the
// stream and cuBLAS handle the operations share, device scratch, the fatal-error report, and
// the backend's memory operations (zeroed alloc, device copy, zero, axpy, scale).
#include "pg_cuda.cuh"

#include "ops.h"

#include <stdio.h>
#include <stdlib.h>

void pg_cuda_fatal(const char *file, int line, const char *what, const char *why)
{
    fprintf(stderr, "pgolf: %s:%d: %s: %s\n", file, line, what, why);
    exit(1);
}

cudaStream_t pg_cuda_stream(void)
{
    return 0; // the legacy default stream: ordered with every other default-stream call
}

cublasHandle_t pg_cuda_blas(void)
{
    static cublasHandle_t handle;
    if (!handle) {
        PG_CUBLAS_CHECK(cublasCreate(&handle));
        PG_CUBLAS_CHECK(cublasSetStream(handle, pg_cuda_stream()));
    }
    return handle;
}

void *pg_cuda_scratch(size_t bytes)
{
    static void *buf;
    static size_t cap;
    if (bytes > cap) {
        PG_CUDA_CHECK(cudaFree(buf)); // waits for the operations still using it
        buf = nullptr;
        size_t want = (bytes + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1); // whole MiB: fewer regrowths
        PG_CUDA_CHECK(cudaMalloc(&buf, want));
        cap = want;
    }
    return buf;
}

extern "C" void pg_cuda_init(void)
{
    PG_CUDA_CHECK(cudaFree(nullptr)); // creates the context now, not inside the first operation
    (void)pg_cuda_blas();             // the cuBLAS handle, bound to pg_cuda_stream()
}

// Zeroed, as lib/backend.h's alloc promises (the CPU's calloc); at least 4 bytes, so that an
// empty tensor still has an address distinct from NULL.
extern "C" void *pg_cuda_alloc(size_t bytes)
{
    void *p = nullptr;
    if (bytes == 0) bytes = 4;
    PG_CUDA_CHECK(cudaMalloc(&p, bytes));
    PG_CUDA_CHECK(cudaMemset(p, 0, bytes)); // synchronous: the memory is zero before any use
    return p;
}

extern "C" void pg_cuda_free(void *p) { PG_CUDA_CHECK(cudaFree(p)); }

extern "C" void pg_cuda_upload(void *dst, const void *src, size_t bytes)
{
    PG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, pg_cuda_stream()));
    // pageable host memory: the copy has left src when the call returns, so src may be reused
}

extern "C" void pg_cuda_download(void *dst, const void *src, size_t bytes)
{
    PG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, pg_cuda_stream()));
    PG_CUDA_CHECK(cudaStreamSynchronize(pg_cuda_stream()));
}

extern "C" void pg_cuda_sync(void) { PG_CUDA_CHECK(cudaStreamSynchronize(pg_cuda_stream())); }
// Failures still exit in pg_cuda_fatal for now: once waited for, nothing is pending.
extern "C" int pg_cuda_status(void)
{
    pg_cuda_sync();
    return 0;
}

// ---- memory operations of the backend table (lib/backend.h; kernels/cpu/mem.c) ----------------

enum { MEM_THREADS = 256 };

// y += a·x in double, rounded once to float: with a = 1 the correctly rounded sum, the CPU's bits.
__global__ void mem_axpy_kernel(float *y, double a, const float *x, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = (float)((double)y[i] + a * (double)x[i]);
}

__global__ void mem_scale_kernel(float *x, double a, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = (float)(a * (double)x[i]);
}

extern "C" void pg_cuda_copy(float *dst, const float *src, size_t n)
{
    if (n == 0) return;
    PG_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof *dst, cudaMemcpyDeviceToDevice, pg_cuda_stream()));
}

extern "C" void pg_cuda_zero(float *x, size_t n)
{
    if (n == 0) return;
    PG_CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof *x, pg_cuda_stream()));
}

extern "C" void pg_cuda_axpy(float *y, double a, const float *x, size_t n)
{
    if (n == 0) return;
    PG_LAUNCH(mem_axpy_kernel, pg_cuda_blocks(n, MEM_THREADS), MEM_THREADS, 0, pg_cuda_stream())(y, a, x, n);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_scale(float *x, double a, size_t n)
{
    if (n == 0) return;
    PG_LAUNCH(mem_scale_kernel, pg_cuda_blocks(n, MEM_THREADS), MEM_THREADS, 0, pg_cuda_stream())(x, a, n);
    PG_CUDA_LAUNCHED();
}
