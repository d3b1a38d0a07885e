// graph.cc: stream capture and CUDA graphs on the emulator (cuda_emu.h). A graph is the list of
// the operations captured on its stream, each a closure holding its arguments as they were at
// capture; a launch of the graph runs them in order. What the rules of capture forbid on a GPU
// fails here too, so code that would break its capture on a device breaks it in `make check`:
// a synchronization, an allocation or a free by the capturing thread, or its use of the legacy
// stream, invalidates the capture. PG_EMU_CAPTURE_FAIL=k makes the k-th capture of the process
// (1 the first) fail as an invalidated one, so that callers' way on without graphs is tested.
// PG_EMU_COUNT=1 counts what the device is asked to do (the launch counts of docs/BENCH.md): each
// capture's size when it ends, and at exit the operations run as issued, those captured, and
// the graph launches, on standard error.
#include "cuda_emu.h"

#include <stdio.h>
#include <stdlib.h>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

struct pg_emu_graph {
    std::vector<std::function<cudaError_t()>> ops;
};

namespace pg_emu {

void set_last_error(cudaError_t e); // runtime.cc
bool valid_stream(cudaStream_t s);

namespace {

struct Capture {
    pg_emu_graph *graph;
    bool invalid; // a forbidden call happened: cudaStreamEndCapture fails
};

// PG_EMU_COUNT's tallies: operations (launches, copies, memsets, event records, cuBLAS
// products) run as issued and captured; captures made; graph launches.
std::atomic<long> n_run, n_captured, n_graphs, n_launches;

bool counting()
{
    static const bool on = [] {
        const char *e = getenv("PG_EMU_COUNT");
        bool yes = e && *e && *e != '0';
        if (yes)
            atexit([] {
                fprintf(stderr, "pg-emu: %ld operations run as issued, %ld captured into %ld graphs, %ld graph launches\n",
                        n_run.load(), n_captured.load(), n_graphs.load(), n_launches.load());
            });
        return yes;
    }();
    return on;
}

std::mutex mu;                              // guards captures
std::map<const void *, Capture *> captures; // captured stream → its capture
thread_local Capture *mine;                 // the capture this host thread began, if any

cudaError_t fail(cudaError_t e)
{
    set_last_error(e);
    return e;
}

Capture *capture_of(cudaStream_t s)
{
    std::lock_guard<std::mutex> g(mu);
    auto it = captures.find(s);
    return it == captures.end() ? nullptr : it->second;
}

} // namespace

bool capturing(cudaStream_t stream) { return stream && capture_of(stream); }

void count_run()
{
    if (counting()) ++n_run;
}

cudaError_t submit(cudaStream_t stream, std::function<cudaError_t()> op)
{
    if (!stream && mine) { // the legacy stream waits for every blocking stream: the captured one too
        mine->invalid = true;
        return fail(cudaErrorStreamCaptureImplicit);
    }
    Capture *c = stream ? capture_of(stream) : nullptr;
    if (counting()) ++(c ? n_captured : n_run);
    if (!c) return op();
    if (c->invalid) return fail(cudaErrorStreamCaptureInvalidated);
    c->graph->ops.push_back(std::move(op));
    return cudaSuccess;
}

bool capture_forbids()
{
    if (!mine) return false;
    mine->invalid = true;
    set_last_error(cudaErrorStreamCaptureUnsupported);
    return true;
}

} // namespace pg_emu

using pg_emu::fail;

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode)
{
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal)
        return fail(cudaErrorNotSupported); // Relaxed: not emulated
    if (!stream) return fail(cudaErrorStreamCaptureUnsupported); // the legacy stream cannot be captured
    if (!pg_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (pg_emu::mine || pg_emu::capture_of(stream)) return fail(cudaErrorIllegalState);
    pg_emu::Capture *c = new pg_emu::Capture{new pg_emu_graph, false};
    std::lock_guard<std::mutex> g(pg_emu::mu);
    pg_emu::captures[stream] = c;
    pg_emu::mine = c;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    if (!graph) return fail(cudaErrorInvalidValue);
    *graph = nullptr;
    pg_emu::Capture *c = stream ? pg_emu::capture_of(stream) : nullptr;
    if (!c) return fail(cudaErrorIllegalState);
    if (c != pg_emu::mine) return fail(cudaErrorStreamCaptureWrongThread);
    {
        std::lock_guard<std::mutex> g(pg_emu::mu);
        pg_emu::captures.erase(stream);
    }
    pg_emu::mine = nullptr;
    static long ended;                              // captures ended so far (the tests' hook)
    static const char *fail_env = getenv("PG_EMU_CAPTURE_FAIL");
    bool invalid = c->invalid || (fail_env && ++ended == atol(fail_env));
    pg_emu_graph *made = c->graph;
    delete c;
    if (invalid) {
        delete made;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    if (pg_emu::counting())
        fprintf(stderr, "pg-emu: graph %ld captured, %zu operations\n", ++pg_emu::n_graphs, made->ops.size());
    *graph = made;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status)
{
    if (!status) return fail(cudaErrorInvalidValue);
    if (!pg_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    pg_emu::Capture *c = stream ? pg_emu::capture_of(stream) : nullptr;
    *status = !c ? cudaStreamCaptureStatusNone : c->invalid ? cudaStreamCaptureStatusInvalidated
                                                             : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
    if (!exec || !graph || flags) return fail(cudaErrorInvalidValue);
    if (pg_emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
    *exec = new pg_emu_graph(*graph);
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    if (!exec) return fail(cudaErrorInvalidValue);
    if (!pg_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
    if (pg_emu::capturing(stream) || (!stream && pg_emu::mine)) return fail(cudaErrorStreamCaptureUnsupported);
    if (pg_emu::counting()) ++pg_emu::n_launches;
    cudaError_t first = cudaSuccess;
    for (auto &op : exec->ops) {
        cudaError_t e = op();
        if (e != cudaSuccess && first == cudaSuccess) first = e;
    }
    return first == cudaSuccess ? cudaSuccess : fail(first);
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    if (!graph) return fail(cudaErrorInvalidValue);
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) { return cudaGraphDestroy(exec); }
