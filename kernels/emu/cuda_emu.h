// cuda_emu.h: the CUDA C dialect and a CUDA runtime subset on the host, so one kernel source
// compiles with nvcc for a GPU and with g++ -x c++ -std=c++17 for `make check` on machines
// without one (DESIGN.md principle 7). Kernel sources never include this file by name: they
// include <cuda_runtime.h> (or kernels/cuda/pg_cuda.cuh), and the emulated build puts
// kernels/emu/include first on the include path, whose cuda_runtime.h, cuda_bf16.h and
// cublas_v2.h lead here.
//
// How a launch runs (kernels/emu/sched.cc; README.md has the long form):
//   * every emulated CUDA thread is a fiber (ucontext, its own mmap'd stack with a guard page);
//     the threads of one block run on one OS thread, cooperatively, in a fixed round-robin
//     order, so the emulation is deterministic; a thread's locals live on its own stack;
//   * __syncthreads() is a real barrier: a thread that arrives yields to the next thread, and
//     the block goes on only when every thread that has not exited has arrived;
//   * warp shuffles, __syncwarp, __ballot_sync/__any_sync/__all_sync are real exchanges among
//     the lanes of the mask: each lane deposits its value and waits until all of them have;
//   * blocks are independent, so they are spread over a few OS threads (PG_EMU_THREADS, default
//     the CPU count, at most 8; 1 gives a fully sequential run);
//   * __shared__ is `static thread_local`: one copy per OS thread, hence per running block;
//     dynamic shared memory is PG_DYNAMIC_SMEM(T, name), a buffer of exactly the launch's
//     size, filled with 0xff bytes (NaN floats) at every block start like uninitialized memory;
//   * a thread stuck at a barrier or shuffle that can never complete (a shuffle mask naming an
//     exited lane, lanes at a barrier while the rest of their warp waits for them in a
//     shuffle) aborts with a report, where a GPU would hang or return garbage.
// Device memory is host memory from malloc, recorded so that copies, cuBLAS calls and kernel
// pointer arguments are checked against live allocations (a host pointer passed to a kernel is
// a launch error here, where a GPU would fault). Streams are synchronous.
#ifndef PG_CUDA_EMU_H
#define PG_CUDA_EMU_H

#ifdef __CUDACC__
#error "cuda_emu.h is the host emulation of CUDA; nvcc uses the real CUDA headers"
#endif

#define PG_CUDA_EMU 1

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- the CUDA C qualifiers ------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
// One copy per OS thread = per running block (all threads of a block run on one OS thread).
// Only for declarations without initializer, as in CUDA; `extern __shared__` does not compile
// here on purpose: dynamic shared memory goes through PG_DYNAMIC_SMEM.
#define __shared__ static thread_local

// ---- built-in types and variables ------------------------------------------------------------

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// Vector types with CUDA's alignment, so that a kernel's 16-byte loads (float4, uint4) are
// aligned exactly when they would be on a GPU.
struct __align__(8) float2 {
    float x, y;
};
struct __align__(16) float4 {
    float x, y, z, w;
};
struct __align__(8) uint2 {
    unsigned x, y;
};
struct __align__(16) uint4 {
    unsigned x, y, z, w;
};

static constexpr int warpSize = 32;

namespace pg_emu {

// C++20's std::bit_cast, for C++17.
template <class To, class From> inline To bit_cast(const From &from)
{
    static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
    To to;
    memcpy(&to, &from, sizeof to);
    return to;
}

// One emulated CUDA thread's identity (the fiber that runs it holds it).
struct ThreadId {
    uint3 idx;
    unsigned linear, warp, lane;
};

// The running block's coordinates, shared by its threads.
struct BlockId {
    uint3 idx;
    dim3 dim, grid;
};

// Set by the scheduler before a thread runs; the built-in variables read them. __thread, not
// thread_local: a plain TLS slot, without the C++ wrapper call that an extern thread_local
// gets (and that UBSan's null check miscompiles with GCC 12).
extern __thread const ThreadId *t_thread;
extern __thread const BlockId *t_block;

} // namespace pg_emu

#define threadIdx (::pg_emu::t_thread->idx)
#define blockIdx (::pg_emu::t_block->idx)
#define blockDim (::pg_emu::t_block->dim)
#define gridDim (::pg_emu::t_block->grid)

// ---- runtime API: errors, streams, events, memory --------------------------------------------

// The numeric values are the real ones (driver_types.h), so logs read the same on both builds.
enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureIsolation = 905,
    cudaErrorStreamCaptureImplicit = 906,
    cudaErrorStreamCaptureWrongThread = 908,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00

typedef struct pg_emu_stream *cudaStream_t;
typedef struct pg_emu_event *cudaEvent_t;

const char *cudaGetErrorString(cudaError_t err);
const char *cudaGetErrorName(cudaError_t err);
// The calling host thread's latest error; cudaGetLastError also resets it.
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);

// One emulated device (number 0): code that asks "is there a GPU?" goes on and runs here.
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);

// Device memory is malloc'd host memory, filled with 0xff bytes, out of a device of
// PG_EMU_MEM_LIMIT bytes (K/M/G/T suffixes; default 80 GiB, or the machine's RAM if less): an
// allocation the live ones leave no room for fails with cudaErrorMemoryAllocation, as on a full
// GPU, and cudaMemGetInfo reports that size as total and the room left as free.
cudaError_t cudaMalloc(void **ptr, size_t bytes);
template <class T> cudaError_t cudaMalloc(T **ptr, size_t bytes)
{
    return cudaMalloc(reinterpret_cast<void **>(ptr), bytes);
}
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t bytes);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaMemset(void *ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream = 0);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

// Streams are synchronous: every operation has finished when its call returns.
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);

cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);

// ---- stream capture and graphs (kernels/emu/graph.cc) ----
// While a stream is captured, the launches, async copies and memsets and cuBLAS calls issued on it
// are recorded, their arguments as they were then, instead of run; cudaGraphLaunch replays them
// in order. As on a GPU, the capturing thread may not synchronize, allocate or free (mode
// Global or ThreadLocal; Relaxed is not emulated), nor use the legacy stream: such a call fails
// with cudaErrorStreamCaptureUnsupported (or ...Implicit) and invalidates the capture, whose
// cudaStreamEndCapture then fails with cudaErrorStreamCaptureInvalidated. The legacy stream (0)
// cannot be captured.
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
};
typedef struct pg_emu_graph *cudaGraph_t;
typedef struct pg_emu_graph *cudaGraphExec_t; // an instantiated graph is a copy of the list
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

namespace pg_emu {
// Runs op now (returning its error), or, while `stream` is captured, appends it to the capture
// (cudaSuccess): cudaGraphLaunch runs it then and returns the first error of its operations.
cudaError_t submit(cudaStream_t stream, std::function<cudaError_t()> op);
// For each call a capture forbids: true (the capture invalidated) when this thread is capturing.
bool capture_forbids();
// True when stream is captured now (by any thread).
bool capturing(cudaStream_t stream);
// PG_EMU_COUNT's tally of an operation run as issued without submit (an uncaptured cuBLAS call).
void count_run();
} // namespace pg_emu

namespace pg_emu {
cudaError_t func_set_attribute(const void *func, cudaFuncAttribute attr, int value);
// True when [p, p + bytes) lies inside one live cudaMalloc allocation (bytes 0: p may also be
// its end); is_accessible_range also accepts cudaMallocHost memory, which kernels and cuBLAS
// may use on a GPU with unified addressing.
bool is_device_range(const void *p, size_t bytes);
bool is_accessible_range(const void *p, size_t bytes);
} // namespace pg_emu

template <class T> cudaError_t cudaFuncSetAttribute(T *func, cudaFuncAttribute attr, int value)
{
    return pg_emu::func_set_attribute(reinterpret_cast<const void *>(func), attr, value);
}

template <class T>
cudaError_t cudaMemcpyToSymbol(T &symbol, const void *src, size_t bytes, size_t offset = 0,
                               cudaMemcpyKind kind = cudaMemcpyHostToDevice)
{
    if (offset + bytes > sizeof symbol || kind == cudaMemcpyDeviceToHost) return cudaErrorInvalidValue;
    memcpy(reinterpret_cast<char *>(&symbol) + offset, src, bytes);
    return cudaSuccess;
}

// ---- synchronization and warp operations -----------------------------------------------------

namespace pg_emu {
// Block barrier: returns when every thread of the block that has not exited has arrived.
void syncthreads();
// The exchange behind every warp operation: the lanes of `mask` (which must include the
// caller) each deposit `value`; when all have, each gets the value deposited by lane `src`
// (its own when src < 0) and, in *ballot, the mask of lanes whose value was non-zero.
uint64_t warp_exchange(unsigned mask, uint64_t value, int src, unsigned *ballot);
// A warp-wide gather, for emulated fallbacks of warp-collective instructions (mma.cuh): every
// lane of a full warp deposits `bytes` (at most GATHER_BYTES) from `mine`; when all have, each
// gets the warp's deposits, lane i's at byte GATHER_BYTES·i, valid until its next warp operation.
// One exchange where the same data through shuffles takes one per 4 bytes a lane.
enum { GATHER_BYTES = 32 };
const void *warp_gather(const void *mine, size_t bytes);
// Lanes of the caller's warp that exist and have not exited.
unsigned active_mask();
// The launch's dynamic shared memory (PG_DYNAMIC_SMEM); nullptr when it asked for none.
void *dynamic_smem();
[[noreturn]] void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

template <class T> T shuffle(unsigned mask, T v, int src)
{
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffles move up to 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = warp_exchange(mask, bits, src, nullptr);
    T out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

inline int lane_in(int width)
{
    if (width <= 0 || width > 32 || (width & (width - 1)))
        fatal("warp shuffle: width %d is not a power of two in [1, 32]", width);
    return (int)t_thread->lane;
}
} // namespace pg_emu

inline void __syncthreads() { pg_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { pg_emu::warp_exchange(mask, 0, -1, nullptr); }
inline unsigned __activemask() { return pg_emu::active_mask(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// CUDA semantics: a source lane outside the caller's width-segment (above it for down/xor,
// below it for up) yields the caller's own value; __shfl_sync takes srcLane modulo width.
template <class T> T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32)
{
    int l = pg_emu::lane_in(width);
    return pg_emu::shuffle(mask, v, (l & ~(width - 1)) | (src_lane & (width - 1)));
}
template <class T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    int l = pg_emu::lane_in(width);
    return pg_emu::shuffle(mask, v, (l & (width - 1)) >= (int)delta ? l - (int)delta : l);
}
template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    int l = pg_emu::lane_in(width);
    return pg_emu::shuffle(mask, v, (l & (width - 1)) + (int)delta < width ? l + (int)delta : l);
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    int l = pg_emu::lane_in(width), src = l ^ lane_mask;
    return pg_emu::shuffle(mask, v, src >= (l & ~(width - 1)) + width || src < 0 ? l : src);
}
inline unsigned __ballot_sync(unsigned mask, int pred)
{
    unsigned ballot = 0;
    pg_emu::warp_exchange(mask, pred != 0, -1, &ballot);
    return ballot;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

// ---- atomics: real atomics (blocks run on several OS threads), relaxed as in CUDA ----------------

template <class T> inline T pg_emu_atomic_add(T *a, T v)
{
    return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
// op 0: add, 1: max, 2: min, by compare-and-swap (floats have no fetch_add).
template <class T> inline T pg_emu_atomic_update(T *a, T v, int op)
{
    T old, upd;
    __atomic_load(a, &old, __ATOMIC_RELAXED);
    do {
        upd = op == 0 ? old + v : op == 1 ? (old > v ? old : v) : (old < v ? old : v);
    } while (!__atomic_compare_exchange(a, &old, &upd, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
inline int atomicAdd(int *a, int v) { return pg_emu_atomic_add(a, v); }
inline unsigned atomicAdd(unsigned *a, unsigned v) { return pg_emu_atomic_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long *a, unsigned long long v) { return pg_emu_atomic_add(a, v); }
inline float atomicAdd(float *a, float v) { return pg_emu_atomic_update(a, v, 0); }
inline double atomicAdd(double *a, double v) { return pg_emu_atomic_update(a, v, 0); }
inline int atomicSub(int *a, int v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }
inline int atomicMax(int *a, int v) { return pg_emu_atomic_update(a, v, 1); }
inline int atomicMin(int *a, int v) { return pg_emu_atomic_update(a, v, 2); }
inline unsigned atomicMax(unsigned *a, unsigned v) { return pg_emu_atomic_update(a, v, 1); }
inline int atomicExch(int *a, int v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }
inline unsigned atomicExch(unsigned *a, unsigned v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }
inline float atomicExch(float *a, float v)
{
    float old;
    __atomic_exchange(a, &v, &old, __ATOMIC_RELAXED);
    return old;
}
template <class T> inline T pg_emu_atomic_cas(T *a, T compare, T v)
{
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare; // the old value either way
}
inline int atomicCAS(int *a, int c, int v) { return pg_emu_atomic_cas(a, c, v); }
inline unsigned atomicCAS(unsigned *a, unsigned c, unsigned v) { return pg_emu_atomic_cas(a, c, v); }
inline unsigned long long atomicCAS(unsigned long long *a, unsigned long long c, unsigned long long v)
{
    return pg_emu_atomic_cas(a, c, v);
}

// ---- math intrinsics: the device functions that <math.h> does not already give --------------
// The fast intrinsics are their accurate counterparts here; parity tests carry tolerances
// wide enough for the GPU's approximations (documented with each test).

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
template <class T> inline T __ldg(const T *p) { return *p; }

inline int __float_as_int(float f) { return pg_emu::bit_cast<int>(f); }
inline unsigned __float_as_uint(float f) { return pg_emu::bit_cast<unsigned>(f); }
inline float __int_as_float(int i) { return pg_emu::bit_cast<float>(i); }
inline float __uint_as_float(unsigned u) { return pg_emu::bit_cast<float>(u); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }

// ---- bf16 (cuda_bf16.h subset): storage type and round-to-nearest-even conversion ------------

struct __nv_bfloat16 {
    unsigned short bits_;
    __nv_bfloat16() = default;
};
typedef __nv_bfloat16 nv_bfloat16;

inline __nv_bfloat16 __float2bfloat16(float f)
{
    uint32_t u = pg_emu::bit_cast<uint32_t>(f);
    __nv_bfloat16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        b.bits_ = (unsigned short)((u >> 16) | 0x40); // NaN stays a (quiet) NaN
    } else {
        u += 0x7fffu + ((u >> 16) & 1u); // round to nearest, ties to even
        b.bits_ = (unsigned short)(u >> 16);
    }
    return b;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return pg_emu::bit_cast<float>((uint32_t)b.bits_ << 16); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.bits_; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u)
{
    __nv_bfloat16 b;
    b.bits_ = u;
    return b;
}

// ---- kernel launches ----------------------------------------------------------------------------

namespace pg_emu {

struct Launch {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const void *func;            // for cudaFuncSetAttribute limits
    const char *name, *file;     // for reports
    int line;
    void (*body)(void *);        // runs the kernel for the current thread
    void *ctx;
};

// Checks the configuration (an invalid one sets the last error and runs nothing, as CUDA
// does) and runs every block to completion before returning; returns the launch's error.
// The configuration check alone (a failure sets the last error): a captured launch is checked
// when it is captured, as on a GPU.
bool launch_ok(const Launch &l);
cudaError_t launch(const Launch &l);
// A pointer kernel argument must be null or point into (or just past) a live device or pinned
// allocation.
bool check_pointer_arg(const Launch &l, int index, const void *p);

template <class T> bool check_arg(const Launch &l, int index, const T &v)
{
    if constexpr (std::is_pointer<T>::value)
        return check_pointer_arg(l, index, reinterpret_cast<const void *>(v));
    else
        return true;
}

template <class... P> struct Launcher {
    void (*kernel)(P...);
    Launch l;

    template <class... A> void operator()(A &&...args)
    {
        static_assert(sizeof...(A) == sizeof...(P), "wrong number of kernel arguments");
        // The arguments are converted to the parameter types once, as a launch does; each
        // thread's call then copies them into its own parameters. A captured launch keeps them
        // (a graph replays the values of its capture) and checks its pointers again at replay.
        using Params = std::tuple<typename std::decay<P>::type...>;
        auto params = std::make_shared<Params>(std::forward<A>(args)...);
        if (!check_args(*params, std::index_sequence_for<P...>{}) || !launch_ok(l)) return;
        Launcher self = *this;
        submit(l.stream, [self, params]() mutable -> cudaError_t {
            if (!self.check_args(*params, std::index_sequence_for<P...>{})) return cudaErrorIllegalAddress;
            struct Ctx {
                void (*kernel)(P...);
                Params *params;
            } ctx{self.kernel, params.get()};
            self.l.ctx = &ctx;
            self.l.body = [](void *c) {
                Ctx *x = static_cast<Ctx *>(c);
                std::apply(x->kernel, *x->params);
            };
            return launch(self.l);
        });
    }

    template <class Tup, size_t... I> bool check_args(const Tup &t, std::index_sequence<I...>)
    {
        return (true && ... && check_arg(l, (int)I, std::get<I>(t)));
    }
};

template <class... P>
Launcher<P...> make_launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                             const char *name, const char *file, int line)
{
    Launcher<P...> x;
    x.kernel = kernel;
    x.l = Launch{grid, block, smem, stream, reinterpret_cast<const void *>(kernel), name, file, line, nullptr, nullptr};
    return x;
}

} // namespace pg_emu

// PG_LAUNCH(kernel, grid, block, smem_bytes, stream)(args...) is kernel<<<...>>>(args...) under
// nvcc (kernels/cuda/pg_cuda.cuh). A template kernel with several arguments needs parentheses
// around its name: PG_LAUNCH((k<A, B>), ...).
#define PG_LAUNCH(kernel, grid, block, smem, stream)                                                               \
    ::pg_emu::make_launcher(kernel, (grid), (block), (smem), (stream), #kernel, __FILE__, __LINE__)

// Dynamic shared memory of the launch, as an array of T (16-byte aligned).
#define PG_DYNAMIC_SMEM(T, name) T *name = reinterpret_cast<T *>(::pg_emu::dynamic_smem())

#endif
