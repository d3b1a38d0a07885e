// mem.cu: the CUDA backend's host-side plumbing: the sticky failure record and its report
// (pg_cuda_status), device memory for C callers, the stream and cuBLAS handle the operations
// share, device scratch, and the backend's memory operations (zeroed alloc, device copy, zero,
// axpy, scale).
#include "pg_cuda.cuh"

#include "ops.h"

#include "../../lib/err.h"

#include <stdarg.h>
#include <mutex>
#include <stdio.h>
#include <unordered_map>
#include <vector>
#include <string.h>

#include <mutex>

// ---- the sticky failure (pg_cuda.cuh) ---------------------------------------------------------

namespace {

std::mutex failure_mu;    // guards the two below: any host thread may fail, any may ask
int failure_code;         // 0: nothing recorded since the last pg_cuda_status
char failure_msg[768];    // one line, "cuda: ..."

// Records code and the message (printf-style) unless a failure is recorded already.
__attribute__((format(printf, 2, 3))) void record(int code, const char *fmt, ...)
{
    std::lock_guard<std::mutex> g(failure_mu);
    if (failure_code) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(failure_msg, sizeof failure_msg, fmt, ap);
    va_end(ap);
    failure_code = code;
}

// The call as the message names it: its text when short, else its function's name and "(...)".
void call_name(char *out, size_t size, const char *what)
{
    const char *paren = strchr(what, '(');
    if (strlen(what) <= 80 || !paren) {
        snprintf(out, size, "%s", what);
        return;
    }
    snprintf(out, size, "%.*s(...)", (int)(paren - what), what);
}

// "cudaMalloc of N bytes with F of T bytes free", recorded as out of memory: what the user needs
// to size the run (free and total from cudaMemGetInfo, as nvidia-smi would show them).
void record_oom(const char *what, size_t bytes)
{
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e == cudaSuccess)
        record(PG_E_NOMEM, "cuda: out of memory: %s of %zu bytes with %zu of %zu bytes free", what, bytes, free_b,
               total_b);
    else
        record(PG_E_NOMEM, "cuda: out of memory: %s of %zu bytes (free memory unknown: %s)", what, bytes,
               cudaGetErrorName(e));
    (void)cudaGetLastError();
}

// A failed cudaMalloc of `bytes`: out of memory with the device's numbers, or any other failure
// (a device already broken) as a failed call.
void alloc_failed(cudaError_t e, const char *what, size_t bytes, const char *file, int line)
{
    if (e == cudaErrorMemoryAllocation)
        record_oom(what, bytes);
    else
        pg_cuda_failed(e, what, file, line);
}

} // namespace

void pg_cuda_failed(cudaError_t e, const char *what, const char *file, int line)
{
    char call[96];
    call_name(call, sizeof call, what);
    record(e == cudaErrorMemoryAllocation ? PG_E_NOMEM : PG_E_LIB, "cuda: %s failed at %s:%d: %s (%s)", call, file,
           line, cudaGetErrorName(e), cudaGetErrorString(e));
    (void)cudaGetLastError(); // a non-sticky error is reported once, here, not by the next launch check
}

void pg_cublas_failed(cublasStatus_t s, const char *what, const char *file, int line)
{
    char call[96];
    call_name(call, sizeof call, what);
    record(s == CUBLAS_STATUS_ALLOC_FAILED ? PG_E_NOMEM : PG_E_LIB, "cuda: %s failed at %s:%d: %s (%s)", call, file,
           line, cublasGetStatusName(s), cublasGetStatusString(s));
}

extern "C" int pg_cuda_status(void)
{
    // Waiting shows what the queued work did: a kernel that faulted fails the synchronization.
    PG_CUDA_CHECK(cudaStreamSynchronize(pg_cuda_stream()));
    cudaError_t e = cudaGetLastError(); // an error no check saw (a launch without PG_CUDA_LAUNCHED)
    if (e != cudaSuccess) pg_cuda_failed(e, "an earlier call or launch (cudaGetLastError)", __FILE__, __LINE__);
    std::lock_guard<std::mutex> g(failure_mu);
    int code = failure_code;
    if (code) pg_error(code, "%s", failure_msg);
    failure_code = 0;
    failure_msg[0] = 0;
    return code;
}

extern "C" int pg_cuda_mem_info(size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = *total_bytes = 0;
    cudaError_t e = cudaMemGetInfo(free_bytes, total_bytes);
    if (e == cudaSuccess) return 0;
    (void)cudaGetLastError();
    return pg_error(PG_E_LIB, "cuda: cudaMemGetInfo failed: %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
}

// ---- the stream, the cuBLAS handle, scratch ---------------------------------------------------

// A stream of our own rather than the legacy default stream, because only a created stream can be
// captured into a CUDA graph (graph.cu). It is a blocking stream: any call on the legacy stream
// still waits for it and it for them, as when everything ran on the legacy stream. If it cannot
// be created, the failure is recorded and the legacy stream serves (without graphs).
cudaStream_t pg_cuda_stream(void)
{
    static cudaStream_t stream;
    static std::once_flag made;
    std::call_once(made, [] {
        cudaStream_t s = nullptr;
        PG_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamDefault));
        stream = s;
    });
    return stream;
}

// cuBLAS's workspace, ours: a product captured into a graph must not make cuBLAS allocate (a
// capture forbids it), so the handle gets a fixed one (32 MiB, NVIDIA's advice for Hopper; the
// emulator's products need none, and its tests run on devices of a few MiB).
#ifdef PG_CUDA_EMU
enum { BLAS_WORKSPACE = 4096 };
#else
enum { BLAS_WORKSPACE = 32 << 20 };
#endif

cublasHandle_t pg_cuda_blas(void)
{
    static cublasHandle_t handle;
    static void *workspace; // the handle's for the process's life
    if (!handle) { // a failed creation is recorded, and tried again at the next use
        cublasHandle_t h = nullptr;
        PG_CUBLAS_CHECK(cublasCreate(&h));
        if (h) PG_CUBLAS_CHECK(cublasSetStream(h, pg_cuda_stream()));
        if (h && !workspace) workspace = pg_cuda_malloc(BLAS_WORKSPACE, "cudaMalloc (cuBLAS workspace)");
        if (h && workspace) PG_CUBLAS_CHECK(cublasSetWorkspace(h, workspace, BLAS_WORKSPACE));
        handle = h;
    }
    return handle;
}

// What pgolf holds of the device's memory: every pg_cuda_malloc until its pg_cuda_release (the
// backend's allocations, scratch, bf16 operands, the optimizers' partials, cuBLAS's
// workspace), and the most it held at once (pg-train reports it as device_peak_bytes).
static std::mutex held_mu;
static std::unordered_map<void *, size_t> held;
static size_t held_now, held_peak;

void *pg_cuda_malloc(size_t bytes, const char *what)
{
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        alloc_failed(e, what, bytes, __FILE__, __LINE__);
        return nullptr;
    }
    std::lock_guard<std::mutex> g(held_mu);
    held[p] = bytes;
    held_now += bytes;
    if (held_now > held_peak) held_peak = held_now;
    return p;
}

void pg_cuda_release(void *p)
{
    if (!p) return;
    {
        std::lock_guard<std::mutex> g(held_mu);
        auto it = held.find(p);
        if (it != held.end()) held_now -= it->second, held.erase(it);
    }
    PG_CUDA_CHECK(cudaFree(p)); // waits for the operations still using it
}

// Scratch buffers outgrown while a graph lives: the graph may still use them (graph.cu).
static int graphs_alive;
static std::vector<void *> retired;

void pg_cuda_retire(void *p)
{
    {
        std::lock_guard<std::mutex> g(held_mu);
        if (p && graphs_alive) {
            retired.push_back(p);
            return;
        }
    }
    pg_cuda_release(p);
}

void pg_cuda_graphs_alive(int change)
{
    std::vector<void *> gone;
    {
        std::lock_guard<std::mutex> g(held_mu);
        graphs_alive += change;
        if (!graphs_alive) gone.swap(retired);
    }
    for (void *p : gone) pg_cuda_release(p);
}

extern "C" size_t pg_cuda_peak_bytes(void)
{
    std::lock_guard<std::mutex> g(held_mu);
    return held_peak;
}

void *pg_cuda_grow(void **buf, size_t *cap, size_t bytes, const char *what)
{
    if (bytes <= *cap) return *buf;
    pg_cuda_retire(*buf); // cudaFree waits for the work still using it; a live graph keeps it
    size_t want = (bytes + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1); // whole MiB: fewer regrowths
    *buf = pg_cuda_malloc(want, what);
    *cap = *buf ? want : 0;
    return *buf;
}

void *pg_cuda_scratch(size_t bytes)
{
    static void *buf;
    static size_t cap;
    return pg_cuda_grow(&buf, &cap, bytes, "cudaMalloc (scratch)");
}

// ---- device memory for C callers (ops.h) ------------------------------------------------------

extern "C" void pg_cuda_init(void)
{
    PG_CUDA_CHECK(cudaFree(nullptr)); // creates the context now, not inside the first operation
    (void)pg_cuda_blas();             // the cuBLAS handle, bound to pg_cuda_stream()
}

// Zeroed, as lib/backend.h's alloc promises (the CPU's calloc); at least 4 bytes, so that an
// empty tensor still has an address distinct from NULL. NULL when the device cannot give it,
// the failure recorded (out of memory: with the bytes asked, free and total).
extern "C" void *pg_cuda_alloc(size_t bytes)
{
    if (bytes == 0) bytes = 4;
    void *p = pg_cuda_malloc(bytes, "cudaMalloc");
    if (!p) return nullptr;
    cudaError_t e = cudaMemset(p, 0, bytes); // synchronous: the memory is zero before any use
    if (e != cudaSuccess) {
        pg_cuda_failed(e, "cudaMemset(p, 0, bytes)", __FILE__, __LINE__);
        pg_cuda_release(p);
        (void)cudaGetLastError();
        return nullptr;
    }
    return p;
}

extern "C" void pg_cuda_free(void *p) { pg_cuda_release(p); }

extern "C" void pg_cuda_upload(void *dst, const void *src, size_t bytes)
{
    PG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, pg_cuda_stream()));
    // pageable host memory: the copy has left src when the call returns, so src may be reused
}

// On a failure dst is filled with 0xff bytes (NaN floats), not left as it was: a caller that
// reads it before asking pg_cuda_status sees garbage that is plainly garbage.
extern "C" void pg_cuda_download(void *dst, const void *src, size_t bytes)
{
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, pg_cuda_stream());
    pg_cuda_check_(e, "cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, pg_cuda_stream())", __FILE__,
                   __LINE__);
    cudaError_t w = cudaStreamSynchronize(pg_cuda_stream());
    pg_cuda_check_(w, "cudaStreamSynchronize(pg_cuda_stream())", __FILE__, __LINE__);
    if ((e != cudaSuccess || w != cudaSuccess) && dst && bytes) memset(dst, 0xff, bytes);
}

extern "C" void pg_cuda_sync(void) { PG_CUDA_CHECK(cudaStreamSynchronize(pg_cuda_stream())); }

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
