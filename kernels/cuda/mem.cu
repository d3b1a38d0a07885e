// mem.cu: the CUDA backend's host-side plumbing: checked device memory for C callers, the
// stream and cuBLAS handle the operations share, device scratch, and the fatal-error report.
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

extern "C" void *pg_cuda_alloc(size_t bytes)
{
    void *p = nullptr;
    PG_CUDA_CHECK(cudaMalloc(&p, bytes));
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
