// runtime.cc: the CUDA runtime subset on the host: device memory is malloc'd host memory,
// copies are memcpy, streams and events are synchronous, errors follow the runtime's rules
// (a per-host-thread last error that cudaGetLastError returns and clears).
//
// Every allocation is recorded, so the emulator can check what a GPU would only fault on, or
// silently get wrong: copies and memsets past the end of an allocation, cudaFree of a pointer
// that cudaMalloc did not return, and host pointers passed to kernels or to cuBLAS. Fresh
// allocations are filled with 0xff bytes (NaN as floats), so a kernel that reads memory nobody
// wrote produces NaNs here as it would produce garbage on a device.
//
// The device has a size, so tests can run out of it: PG_EMU_MEM_LIMIT bytes (a number with an
// optional K, M, G or T suffix, powers of 1024), by default an H100's 80 GiB or the machine's RAM
// if that is less. cudaMalloc fails with cudaErrorMemoryAllocation when the live allocations
// would exceed it, and cudaMemGetInfo reports it as total and what the allocations leave as free.
#include "cuda_emu.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <set>

namespace pg_emu {

namespace {

thread_local cudaError_t last_error = cudaSuccess;

std::mutex mu;                    // guards the maps below
std::map<uintptr_t, size_t> allocs; // start → size of each live cudaMalloc block
std::map<uintptr_t, size_t> pinned; // the same for cudaMallocHost: kernels may use it (UVA)
std::set<const void *> streams;     // live cudaStreamCreate handles
std::set<const void *> events;
std::map<const void *, int> smem_optin; // kernel → cudaFuncAttributeMaxDynamicSharedMemorySize
size_t device_used;                     // bytes of the live cudaMalloc blocks

// H100's limits: 48 KiB of dynamic shared memory without opting in, 227 KiB with.
constexpr int SMEM_DEFAULT = 48 * 1024, SMEM_OPTIN = 227 * 1024;

cudaError_t fail(cudaError_t e)
{
    last_error = e;
    return e;
}

// Whether one allocation of `m` holds [p, p + bytes). Callers hold mu.
bool inside(const std::map<uintptr_t, size_t> &m, const void *p, size_t bytes)
{
    uintptr_t a = (uintptr_t)p;
    auto it = m.upper_bound(a);
    if (it == m.begin()) return false;
    --it;
    return a - it->first <= it->second && bytes <= it->second - (a - it->first);
}

// PG_EMU_MEM_LIMIT's value: digits and an optional K, M, G or T (powers of 1024); 0 if not that.
size_t parse_limit(const char *text)
{
    if (!isdigit((unsigned char)text[0])) return 0;
    char *end = nullptr;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno) return 0;
    const char *units = "KMGT", *u = *end ? strchr(units, toupper((unsigned char)*end)) : nullptr;
    int shift = u ? 10 * (int)(u - units + 1) : 0;
    if (u) end++;
    if (*end || (shift && v > (~0ull >> shift))) return 0;
    return (size_t)(v << shift);
}

// The emulated device's memory in bytes (fixed at the first allocation or query).
size_t device_limit()
{
    static size_t limit = [] {
        size_t nominal = (size_t)80 << 30; // an H100's 80 GiB
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0 && (size_t)pages * (size_t)page < nominal) nominal = (size_t)pages * (size_t)page;
        const char *env = getenv("PG_EMU_MEM_LIMIT");
        if (!env || !*env) return nominal;
        size_t v = parse_limit(env);
        if (v) return v;
        fprintf(stderr, "cuda-emu: PG_EMU_MEM_LIMIT=%s is not a size in bytes (4096, 64M, 2G, ...); using %zu\n", env,
                nominal);
        return nominal;
    }();
    return limit;
}

// Enters a new allocation into its map and hands it out.
cudaError_t record(std::map<uintptr_t, size_t> &m, void *p, size_t bytes, void **out)
{
    std::lock_guard<std::mutex> g(mu);
    m[(uintptr_t)p] = bytes;
    *out = p;
    return cudaSuccess;
}

// Frees an allocation of map m; a pointer m does not hold (not from the matching allocator, or
// freed already) is an error, as in CUDA. Null is fine.
cudaError_t release(std::map<uintptr_t, size_t> &m, void *p)
{
    if (!p) return cudaSuccess;
    {
        std::lock_guard<std::mutex> g(mu);
        if (!m.erase((uintptr_t)p)) return fail(cudaErrorInvalidValue);
    }
    free(p);
    return cudaSuccess;
}

struct Event {
    double ms;             // time of the last record; -1 before the first
    cudaStream_t captured; // the captured stream its last record went to, else null
};

double now_ms()
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

} // namespace

void set_last_error(cudaError_t e) { last_error = e; }

bool valid_stream(cudaStream_t s)
{
    std::lock_guard<std::mutex> g(mu);
    return s == nullptr || streams.count(s) != 0;
}

bool is_device_range(const void *p, size_t bytes)
{
    std::lock_guard<std::mutex> g(mu);
    return inside(allocs, p, bytes);
}

bool is_accessible_range(const void *p, size_t bytes)
{
    std::lock_guard<std::mutex> g(mu);
    return inside(allocs, p, bytes) || inside(pinned, p, bytes);
}

int dynamic_smem_limit(const void *func)
{
    std::lock_guard<std::mutex> g(mu);
    auto it = smem_optin.find(func);
    return it == smem_optin.end() ? SMEM_DEFAULT : it->second;
}

cudaError_t func_set_attribute(const void *func, cudaFuncAttribute attr, int value)
{
    if (!func) return fail(cudaErrorInvalidDeviceFunction);
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return fail(cudaErrorNotSupported);
    if (value < 0 || value > SMEM_OPTIN) return fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> g(mu);
    smem_optin[func] = value;
    return cudaSuccess;
}

bool check_pointer_arg(const Launch &l, int index, const void *p)
{
    if (!p || is_accessible_range(p, 0)) return true;
    // A GPU faults on the first access (cudaErrorIllegalAddress, reported at the next
    // synchronization); here the launch fails at once, naming the argument.
    fprintf(stderr, "cuda-emu: kernel %s (launched at %s:%d): argument %d (%p) is neither device nor pinned memory\n",
            l.name,
            l.file, l.line, index, p);
    last_error = cudaErrorIllegalAddress;
    return false;
}

} // namespace pg_emu

using pg_emu::fail;

const char *cudaGetErrorName(cudaError_t err)
{
    switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t err)
{
    switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorIllegalState: return "the resource is not in a valid state for this operation";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
    }
    return "unknown error";
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = pg_emu::last_error;
    pg_emu::last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return pg_emu::last_error; }

cudaError_t cudaGetDeviceCount(int *count)
{
    if (!count) return fail(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }

cudaError_t cudaGetDevice(int *device)
{
    if (!device) return fail(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device)
{
    if (!value) return fail(cudaErrorInvalidValue);
    if (device != 0) return fail(cudaErrorInvalidDevice);
    switch (attr) { // an H100 SXM's numbers, so grids are sized as on the real device
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = pg_emu::SMEM_DEFAULT; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = 132; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = pg_emu::SMEM_OPTIN; break;
    default: return fail(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    return pg_emu::capture_forbids() ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    if (!ptr) return fail(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (pg_emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
    if (bytes == 0) return cudaSuccess;
    size_t limit = pg_emu::device_limit();
    {
        // the device's size first: what does not fit fails as on a full GPU, before any host memory is touched
        std::lock_guard<std::mutex> g(pg_emu::mu);
        if (bytes > limit - pg_emu::device_used) return fail(cudaErrorMemoryAllocation);
        pg_emu::device_used += bytes;
    }
    void *p = nullptr;
    if (posix_memalign(&p, 256, bytes) != 0) { // cudaMalloc aligns to 256
        std::lock_guard<std::mutex> g(pg_emu::mu);
        pg_emu::device_used -= bytes;
        return fail(cudaErrorMemoryAllocation);
    }
    memset(p, 0xff, bytes);
    return pg_emu::record(pg_emu::allocs, p, bytes, ptr);
}

cudaError_t cudaFree(void *ptr)
{
    if (pg_emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
    if (!ptr) return cudaSuccess;
    {
        std::lock_guard<std::mutex> g(pg_emu::mu);
        auto it = pg_emu::allocs.find((uintptr_t)ptr);
        if (it == pg_emu::allocs.end()) return fail(cudaErrorInvalidValue); // not cudaMalloc's, or freed already
        pg_emu::device_used -= it->second;
        pg_emu::allocs.erase(it);
    }
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t bytes)
{
    if (!ptr) return fail(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (pg_emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
    if (bytes == 0) return cudaSuccess;
    void *p = malloc(bytes);
    if (!p) return fail(cudaErrorMemoryAllocation);
    return pg_emu::record(pg_emu::pinned, p, bytes, ptr);
}

cudaError_t cudaFreeHost(void *ptr)
{
    if (pg_emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
    return pg_emu::release(pg_emu::pinned, ptr);
}

// A copy's checks, made at the call and again when a graph replays it (copy_now: then the copy).
static cudaError_t copy_check(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    if (bytes == 0) return cudaSuccess;
    if (!dst || !src) return fail(cudaErrorInvalidValue);
    bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return fail(cudaErrorInvalidMemcpyDirection);
    if ((dst_dev && !pg_emu::is_device_range(dst, bytes)) || (src_dev && !pg_emu::is_device_range(src, bytes)))
        return fail(cudaErrorInvalidValue);
    return cudaSuccess;
}

static cudaError_t copy_now(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    cudaError_t e = copy_check(dst, src, bytes, kind);
    if (e == cudaSuccess && bytes) memmove(dst, src, bytes);
    return e;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    if (pg_emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
    return copy_now(dst, src, bytes, kind);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream)
{
    if (!pg_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    cudaError_t e = cudaSuccess;
    if (pg_emu::capturing(stream)) { // checked at capture too; a graph's host memory must be pinned
        const void *host = kind == cudaMemcpyHostToDevice ? src : kind == cudaMemcpyDeviceToHost ? dst : nullptr;
        e = copy_check(dst, src, bytes, kind);
        if (e == cudaSuccess && bytes && host && !pg_emu::is_accessible_range(host, bytes) && pg_emu::capture_forbids())
            e = cudaErrorStreamCaptureUnsupported;
    }
    return e != cudaSuccess ? e : pg_emu::submit(stream, [=] { return copy_now(dst, src, bytes, kind); });
}

static cudaError_t set_now(void *ptr, int value, size_t bytes)
{
    if (bytes == 0) return cudaSuccess;
    if (!pg_emu::is_device_range(ptr, bytes)) return fail(cudaErrorInvalidValue);
    memset(ptr, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *ptr, int value, size_t bytes)
{
    if (pg_emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
    return set_now(ptr, value, bytes);
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream)
{
    if (!pg_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (bytes && pg_emu::capturing(stream) && !pg_emu::is_device_range(ptr, bytes)) return fail(cudaErrorInvalidValue);
    return pg_emu::submit(stream, [=] { return set_now(ptr, value, bytes); });
}

// The device's size (PG_EMU_MEM_LIMIT) and what the live cudaMalloc blocks leave of it: an
// allocation of at most *free_bytes succeeds, one byte more fails.
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    if (!free_bytes || !total_bytes) return fail(cudaErrorInvalidValue);
    size_t limit = pg_emu::device_limit();
    std::lock_guard<std::mutex> g(pg_emu::mu);
    *total_bytes = limit;
    *free_bytes = limit - pg_emu::device_used;
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags)
{
    if (!stream || flags > cudaStreamNonBlocking) return fail(cudaErrorInvalidValue);
    // A handle is a unique address; the stream itself has no state (everything is synchronous).
    void *s = malloc(1);
    if (!s) return fail(cudaErrorMemoryAllocation);
    std::lock_guard<std::mutex> g(pg_emu::mu);
    pg_emu::streams.insert(s);
    *stream = (cudaStream_t)s;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    {
        std::lock_guard<std::mutex> g(pg_emu::mu);
        if (!stream || !pg_emu::streams.erase(stream)) return fail(cudaErrorInvalidResourceHandle);
    }
    free(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    if (pg_emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
    return pg_emu::valid_stream(stream) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags)
{
    if (!event || flags != cudaEventDefault) return fail(cudaErrorInvalidValue);
    pg_emu::Event *e = (pg_emu::Event *)malloc(sizeof *e);
    if (!e) return fail(cudaErrorMemoryAllocation);
    e->ms = -1;
    e->captured = nullptr;
    std::lock_guard<std::mutex> g(pg_emu::mu);
    pg_emu::events.insert(e);
    *event = (cudaEvent_t)e;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

static pg_emu::Event *event_of(cudaEvent_t event)
{
    std::lock_guard<std::mutex> g(pg_emu::mu);
    return pg_emu::events.count(event) ? (pg_emu::Event *)event : nullptr;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    {
        std::lock_guard<std::mutex> g(pg_emu::mu);
        if (!event || !pg_emu::events.erase(event)) return fail(cudaErrorInvalidResourceHandle);
    }
    free(event);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    pg_emu::Event *e = event_of(event);
    if (!e || !pg_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    e->captured = pg_emu::capturing(stream) ? stream : nullptr;
    return pg_emu::submit(stream, [e] {
        e->ms = pg_emu::now_ms();
        return cudaSuccess;
    });
}

// Streams run in order here, so a wait has nothing to wait for; but a captured stream may only
// wait for an event recorded in its own capture (else: uncaptured work, an isolation error).
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags)
{
    pg_emu::Event *e = event_of(event);
    if (!e || !pg_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (flags) return fail(cudaErrorInvalidValue);
    if (pg_emu::capturing(stream) && e->captured != stream) {
        pg_emu::capture_forbids();
        return fail(cudaErrorStreamCaptureIsolation);
    }
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    if (pg_emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
    return event_of(event) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    pg_emu::Event *a = event_of(start), *b = event_of(end);
    if (!ms) return fail(cudaErrorInvalidValue);
    if (!a || !b) return fail(cudaErrorInvalidResourceHandle);
    if (a->ms < 0 || b->ms < 0) return fail(cudaErrorInvalidResourceHandle); // never recorded
    *ms = (float)(b->ms - a->ms);
    return cudaSuccess;
}
