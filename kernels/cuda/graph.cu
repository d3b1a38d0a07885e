// graph.cu: CUDA graphs and batch staging, for the training step (lib/train.c, lib/model.c).
//
// Graphs. A micro-batch's forward and backward are several hundred launches (kernels and cuBLAS
// products); captured once and replayed, they cost the host one launch and leave the device no
// gap between them. A capture records the launches' arguments, so nothing in the captured region
// may depend on host work a replay would have to redo: lib/model.c stages a batch's inputs (and
// the host work on them) before it and reads the loss after it. What a capture forbids (a
// synchronization, an allocation) fails it: pg_cuda_graph_end then returns NULL with the first
// failed call recorded, and the caller goes on without graphs. Scratch buffers outgrown while a
// graph lives are kept until the last graph is freed (pg_cuda_retire).
//
// Staging. A batch's inputs cross from pinned host memory on a copy stream of their own into one
// of two device slots, while the compute stream is still busy with the previous micro-batch;
// the compute stream then waits for that copy and takes the slot into the model's input buffer.
// Per slot, `copied` says the copy is done (the host may refill its half, the compute stream may
// take it) and `taken` that the compute stream has taken it (the copy stream may overwrite it).
#include "pg_cuda.cuh"

#include "../../lib/err.h"
#include "ops.h"

#include <mutex>

namespace {

// PG_CUDA_CHECK that also says whether the call succeeded.
bool checked(cudaError_t e, const char *what, const char *file, int line)
{
    pg_cuda_check_(e, what, file, line);
    return e == cudaSuccess;
}
#define CHECKED(call) checked((call), #call, __FILE__, __LINE__)

cudaStream_t copy_stream;
cudaEvent_t copied[2], taken[2];

// The copy stream and the events, made at the first use; false (the failure recorded) if not.
bool staging(int slot)
{
    static std::once_flag made;
    static bool ok;
    std::call_once(made, [] {
        bool good = CHECKED(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
        for (int s = 0; s < 2; s++)
            good = good && CHECKED(cudaEventCreate(&copied[s])) && CHECKED(cudaEventCreate(&taken[s]));
        ok = good;
    });
    return ok && (slot == 0 || slot == 1);
}

} // namespace

extern "C" void *pg_cuda_host_alloc(size_t bytes)
{
    void *p = nullptr;
    return CHECKED(cudaMallocHost(&p, bytes ? bytes : 1)) ? p : nullptr;
}

extern "C" void pg_cuda_host_free(void *p)
{
    if (p) PG_CUDA_CHECK(cudaFreeHost(p));
}

extern "C" void pg_cuda_stage_wait(int slot)
{
    if (staging(slot)) PG_CUDA_CHECK(cudaEventSynchronize(copied[slot]));
}

extern "C" void pg_cuda_stage_in(void *dev, const void *host, size_t bytes, int slot)
{
    if (!staging(slot)) return;
    PG_CUDA_CHECK(cudaStreamWaitEvent(copy_stream, taken[slot], 0));
    PG_CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, copy_stream));
    PG_CUDA_CHECK(cudaEventRecord(copied[slot], copy_stream));
}

extern "C" void pg_cuda_stage_take(void *dst, const void *dev, size_t bytes, int slot)
{
    if (!staging(slot)) return;
    cudaStream_t st = pg_cuda_stream();
    PG_CUDA_CHECK(cudaStreamWaitEvent(st, copied[slot], 0));
    PG_CUDA_CHECK(cudaMemcpyAsync(dst, dev, bytes, cudaMemcpyDeviceToDevice, st));
    PG_CUDA_CHECK(cudaEventRecord(taken[slot], st));
}

extern "C" int pg_cuda_graph_begin(void)
{
    cudaStream_t st = pg_cuda_stream();
    if (!st) return pg_error(PG_E_LIB, "cuda: no stream of pgolf's own to capture (the legacy stream cannot be)");
    cudaError_t e = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
    if (e == cudaSuccess) return 0;
    (void)cudaGetLastError();
    return pg_error(PG_E_LIB, "cuda: cudaStreamBeginCapture failed: %s (%s)", cudaGetErrorName(e),
                    cudaGetErrorString(e));
}

extern "C" void *pg_cuda_graph_end(void)
{
    cudaGraph_t g = nullptr;
    cudaGraphExec_t x = nullptr;
    bool ok = CHECKED(cudaStreamEndCapture(pg_cuda_stream(), &g)) && CHECKED(cudaGraphInstantiate(&x, g, 0));
    if (g) PG_CUDA_CHECK(cudaGraphDestroy(g)); // the instantiated graph does not need it
    if (!ok) return nullptr;
    pg_cuda_graphs_alive(1);
    return (void *)x;
}

extern "C" void pg_cuda_graph_launch(void *graph)
{
    PG_CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, pg_cuda_stream()));
}

extern "C" void pg_cuda_graph_free(void *graph)
{
    if (!graph) return;
    PG_CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)graph));
    pg_cuda_graphs_alive(-1);
}

// ---- the step's phase clocks (backend.h mark, elapsed_ms) ----------------------------------

namespace {
enum { MARKS = 4 };
cudaEvent_t marks[MARKS];

bool marks_made(void)
{
    static std::once_flag made;
    static bool ok;
    std::call_once(made, [] {
        bool good = true;
        for (int k = 0; k < MARKS && good; k++) good = CHECKED(cudaEventCreate(&marks[k]));
        ok = good;
    });
    return ok;
}
} // namespace

extern "C" void pg_cuda_mark(int k)
{
    if (k >= 0 && k < MARKS && marks_made()) PG_CUDA_CHECK(cudaEventRecord(marks[k], pg_cuda_stream()));
}

extern "C" double pg_cuda_elapsed_ms(int a, int b)
{
    float ms = 0;
    if (a < 0 || a >= MARKS || b < 0 || b >= MARKS || !marks_made()) return 0;
    if (!CHECKED(cudaEventSynchronize(marks[b])) || !CHECKED(cudaEventElapsedTime(&ms, marks[a], marks[b]))) return 0;
    return ms;
}
