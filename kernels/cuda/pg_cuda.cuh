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
#if defined(__CUDACC__) && !defined(PG_CUBLAS_DIRECT)
#include "cublas_lazy.h" // cuBLAS loaded on first use, not at every program start
#endif

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
// Nothing in kernels/ exits (lib/err.h): a failed CUDA or cuBLAS call is a sticky failure. The
// checks below record the FIRST failure since the last pg_cuda_status() in one process-wide
// record (thread-safe): the file and line, the call's text, and the error's name and string.
// Later failures are dropped (they are most often consequences of the first), and the operation
// goes on: its results are then undefined, and lib/ learns of the failure at its next
// synchronization point, where it asks pg_cuda_status() (the backend's status, lib/backend.h),
// which turns the record into a PG_E_* code and a one-line message, and clears it. On a GPU some
// failures (an illegal address, a kernel fault) leave the context unusable: every later call
// fails too, so every later status reports one again; out of memory and bad arguments do not.

// The record's writers (mem.cu): the first failure wins; a CUDA error also clears the calling
// thread's last error (cudaGetLastError), so a later launch check does not report it again.
void pg_cuda_failed(cudaError_t e, const char *what, const char *file, int line);
void pg_cublas_failed(cublasStatus_t s, const char *what, const char *file, int line);

static inline void pg_cuda_check_(cudaError_t e, const char *what, const char *file, int line)
{
    if (e != cudaSuccess) pg_cuda_failed(e, what, file, line);
}
static inline void pg_cublas_check_(cublasStatus_t s, const char *what, const char *file, int line)
{
    if (s != CUBLAS_STATUS_SUCCESS) pg_cublas_failed(s, what, file, line);
}
#define PG_CUDA_CHECK(call) pg_cuda_check_((call), #call, __FILE__, __LINE__)
#define PG_CUBLAS_CHECK(call) pg_cublas_check_((call), #call, __FILE__, __LINE__)
// After every launch: a bad configuration is recorded where it was made, not at a later call.
// (A fault while the kernel runs shows at the next synchronization, in pg_cuda_status.)
#define PG_CUDA_LAUNCHED() pg_cuda_check_(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

// The stream every operation runs on (a blocking stream of our own, so that it can be captured
// into a graph) and the cuBLAS handle bound to it, with a workspace of ours; both created on
// first use (mem.cu).
cudaStream_t pg_cuda_stream(void);
cublasHandle_t pg_cuda_blas(void);
// cudaMalloc of `bytes` (not zeroed), or NULL with the failure recorded: out of memory as
// "cuda: out of memory: WHAT of N bytes with F of T bytes free" (what: "cudaMalloc (my buffer)"),
// anything else as a failed call. For every device buffer a source keeps, so that an
// out-of-memory report gives the device's numbers.
void *pg_cuda_malloc(size_t bytes, const char *what);
// Frees what pg_cuda_malloc gave (NULL: nothing), keeping the count of memory held (mem.cu).
void pg_cuda_release(void *p);
// For a scratch buffer outgrown: released now, or, while a CUDA graph lives (graph.cu), kept
// until the last one is freed, since a graph replays the pointers of its capture.
void pg_cuda_retire(void *p);
// Graphs made (+1) and freed (-1): at 0 the retired buffers go.
void pg_cuda_graphs_alive(int change);
// A buffer its caller keeps (*buf, *cap bytes), grown to at least `bytes` (whole MiB) when
// smaller: the old one retired, the new one from pg_cuda_malloc (`what` names it in an
// out-of-memory report). Returns *buf; NULL (and *cap 0) when the device has not that much.
void *pg_cuda_grow(void **buf, size_t *cap, size_t bytes, const char *what);
// Device scratch of at least `bytes`, grown on demand and kept; valid until the next call.
// One user at a time: operations on one stream run in order, so their scratch uses do not
// overlap (a second stream will need its own). NULL when the device has not that much memory
// (recorded as out of memory, as pg_cuda_alloc does): the caller must then skip its work.
void *pg_cuda_scratch(size_t bytes);

// Every matrix product of the backend (matmul.cu): C = alpha·op(A)·op(B) + beta·C, column-major
// as cublasSgemm, in fp32, or with bf16 operands and fp32 accumulation while pg_cuda_bf16 is on
// (lib/backend.h set_bf16).
extern int pg_cuda_bf16;
void pg_cuda_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc);
// count such products at once, the operands sa, sb, sc elements apart (strided batched).
void pg_cuda_gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float *a,
                          int lda, long long sa, const float *b, int ldb, long long sb, float beta, float *c, int ldc,
                          long long sc, int count);

// pg_cuda_gemm_batched with the precision given (bf16 1: bf16 operands and fp32 accumulation,
// 0: fp32) instead of the backend's mode: Muon's bf16 Newton–Schulz, whose operands are already
// bf16 values, so that their products run on tensor cores whatever the mode.
void pg_cuda_gemm_prec(int bf16, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                       const float *a, int lda, long long sa, const float *b, int ldb, long long sb, float beta,
                       float *c, int ldc, long long sc, int count);

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
#ifdef PG_CUDA_EMU
    // The emulator's fibers switch at every shuffle (160 switches for these five): one gather of
    // the warp's values instead, and the butterfly's steps replayed on them for this lane, the
    // same bits. Step o updates the lanes lane ^ m, m < o, that the later steps read; the lanes
    // it reads (m ^ o >= o) it does not write.
    static_assert(sizeof(T) <= pg_emu::GATHER_BYTES, "a lane's value fits the gather");
    const unsigned char *all = (const unsigned char *)pg_emu::warp_gather(&v, sizeof v);
    T x[32];
    for (int i = 0; i < 32; i++) memcpy(&x[i], all + (size_t)i * pg_emu::GATHER_BYTES, sizeof(T));
    int lane = (int)(threadIdx.x & 31);
    for (int o = 16; o > 0; o >>= 1)
        for (int m = 0; m < o; m++) x[lane ^ m] = op(x[lane ^ m], x[lane ^ m ^ o]);
    return x[lane];
#else
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
#endif
}

// Reduces over a 1-D block (blockDim.x a multiple of 32, at most 1024) one value per thread;
// every thread gets the result, with the same bits. Every thread of the block must call it;
// `identity` fills the slots of absent warps (0 for sums, -INFINITY for maxima). A block of one
// warp needs no second stage; otherwise warp 0 reduces the warps' partials and shares the
// result (the others waiting at the barrier rather than each repeating warp 0's five shuffles,
// which cost as much as the rest of a reduction in the CUDA emulator of make check).
template <class T, class Op> __device__ __forceinline__ T pg_block_reduce(T v, Op op, T identity)
{
    __shared__ T part[32];
    __shared__ T total;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = pg_warp_reduce(v, op);
    if (nwarps == 1) return v;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = pg_warp_reduce(lane < nwarps ? part[lane] : identity, op);
        if (lane == 0) total = v;
    }
    // Read after this barrier; rewritten (like part[]) only after the next call's first one,
    // which every thread reaches after its read.
    __syncthreads();
    return total;
}

// An activation's element as a float: stored fp32, or bf16 where autocast stores it so (backend.h
// round_bf16: the products' outputs that lib/model.c keeps in bf16).
__device__ __forceinline__ float pg_ld(const float *x, size_t i) { return x[i]; }
__device__ __forceinline__ float pg_ld(const __nv_bfloat16 *x, size_t i) { return __bfloat162float(x[i]); }

// The residual mix m0·x + m1·x0 and a scaled add x + s·f as the fused forms compute them: each
// product rounded on its own (__fmul_rn is never contracted into an FMA), then the sum, the
// CPU's arithmetic; so a backward can recompute them bit for bit (add_norm_bwd_x16).
__device__ __forceinline__ float pg_mix(float m0, float x, float m1, float x0)
{
    return __fmul_rn(m0, x) + __fmul_rn(m1, x0);
}
__device__ __forceinline__ float pg_add_scaled(float x, float s, float f) { return x + __fmul_rn(s, f); }

template <class T> __device__ __forceinline__ T pg_warp_sum(T v) { return pg_warp_reduce(v, pg_sum_op()); }
template <class T> __device__ __forceinline__ T pg_block_sum(T v) { return pg_block_reduce(v, pg_sum_op(), (T)0); }
__device__ __forceinline__ float pg_block_max(float v) { return pg_block_reduce(v, pg_max_op(), -INFINITY); }

#endif
