// pg_cuda.cuh: what every kernel source of kernels/cuda includes first. It makes one CUDA C
// source build two ways:
//   * nvcc (__CUDACC__): the real CUDA headers, PG_LAUNCH is <<<>>>;
//   * the host C++ compiler with kernels/emu/include first on the include path (make check):
//     <cuda_runtime.h> and friends are the emulator's, PG_LAUNCH runs the kernel on CPU fibers
//     (kernels/emu/README.md).
// Kernel sources therefore write launches as PG_LAUNCH(kernel, grid, block, smem, stream)(args)
// and dynamic shared memory as PG_DYNAMIC_SMEM(T, name); everything else is plain CUDA C.
//
// Hardware-only fast paths (tensor-core mma, cp.async, TMA, ...) go under `#if PG_CUDA_HW`
// with a plain fallback in the #else branch: PG_CUDA_HW is 1 only in nvcc's device pass for
// sm_80 and later, and 0 in the emulation (and in nvcc builds with -DPG_CUDA_NO_HW, which run
// the fallback on a real GPU to compare the two), so the fallback is what `make check` tests.
#ifndef PG_CUDA_CUH
#define PG_CUDA_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define PG_LAUNCH(kernel, grid, block, smem, stream) kernel<<<(grid), (block), (smem), (stream)>>>
#define PG_DYNAMIC_SMEM(T, name)                                                                                   \
    extern __shared__ __align__(16) unsigned char pg_dynamic_smem_[];                                              \
    T *name = reinterpret_cast<T *>(pg_dynamic_smem_)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(PG_CUDA_NO_HW)
#define PG_CUDA_HW 1
#else
#define PG_CUDA_HW 0
#endif
#else
#ifndef PG_CUDA_EMU
#error "kernels/cuda without nvcc needs the emulator's headers first on the include path (-Ikernels/emu/include)"
#endif
#define PG_CUDA_HW 0
#endif

// ---- host side: checked calls -----------------------------------------------------------------
// The operations of lib/backend.h return nothing, and a failed CUDA call leaves the device in a
// state no caller could repair (launch failures are sticky on a GPU), so a failure is reported
// with the file, line and call, and the process exits with status 1 (llm.c's policy).

[[noreturn]] void pg_cuda_fatal(const char *file, int line, const char *what, const char *why);

static inline void pg_cuda_check_(cudaError_t e, const char *what, const char *file, int line)
{
    if (e != cudaSuccess) pg_cuda_fatal(file, line, what, cudaGetErrorString(e));
}
static inline void pg_cublas_check_(cublasStatus_t s, const char *what, const char *file, int line)
{
    if (s != CUBLAS_STATUS_SUCCESS) pg_cuda_fatal(file, line, what, cublasGetStatusString(s));
}
#define PG_CUDA_CHECK(call) pg_cuda_check_((call), #call, __FILE__, __LINE__)
#define PG_CUBLAS_CHECK(call) pg_cublas_check_((call), #call, __FILE__, __LINE__)
// After every launch: a bad configuration is reported where it was made, not at a later call.
#define PG_CUDA_LAUNCHED() pg_cuda_check_(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

// The stream every operation runs on (the default stream for now) and the cuBLAS handle bound
// to it, created on first use (mem.cu).
cudaStream_t pg_cuda_stream(void);
cublasHandle_t pg_cuda_blas(void);
// Device scratch of at least `bytes`, grown on demand and kept; valid until the next call.
// One user at a time: operations on one stream run in order, so their scratch uses do not
// overlap (a second stream will need its own).
void *pg_cuda_scratch(size_t bytes);

// Blocks for a grid-stride loop over n elements: enough to fill a GPU, few enough that the
// emulator does not start a fiber per element.
static inline unsigned pg_cuda_blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return b < 1 ? 1 : b > 2048 ? 2048 : (unsigned)b;
}

// ---- device side: reductions --------------------------------------------------------------------

struct pg_sum_op {
    template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct pg_max_op {
    template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// Reduces over the 32 lanes of a warp by a xor butterfly: every lane ends with the same bits
// (each step combines the same two values in either order, and sum and max are commutative).
template <class T, class Op> __device__ __forceinline__ T pg_warp_reduce(T v, Op op)
{
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Reduces over a 1-D block (blockDim.x a multiple of 32, at most 1024) one value per thread;
// every thread gets the result, with the same bits. Every thread of the block must call it;
// `identity` fills the slots of absent warps (0 for sums, -INFINITY for maxima).
template <class T, class Op> __device__ __forceinline__ T pg_block_reduce(T v, Op op, T identity)
{
    __shared__ T part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = pg_warp_reduce(v, op);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nwarps ? part[lane] : identity; // every warp reduces the partials: no broadcast step
    v = pg_warp_reduce(v, op);
    __syncthreads(); // part[] is free again for the next call
    return v;
}

template <class T> __device__ __forceinline__ T pg_warp_sum(T v) { return pg_warp_reduce(v, pg_sum_op()); }
template <class T> __device__ __forceinline__ T pg_block_sum(T v) { return pg_block_reduce(v, pg_sum_op(), (T)0); }
__device__ __forceinline__ float pg_block_max(float v) { return pg_block_reduce(v, pg_max_op(), -INFINITY); }

#endif
