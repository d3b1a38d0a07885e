// nccl.cu: the GPU ranks' gradient sums through NCCL (ops.h pg_cuda_comm_*), for pg-train's
// data-parallel jobs (lib/dist.h): rank 0 makes the communicator's id, lib/train.c broadcasts it
// through MPI, every rank joins, and each step's gradients are summed in place on the device
// (ncclAllReduce on the backend's stream) instead of through the host; Muon's matrices, divided
// between the ranks, reach the others by a broadcast from each one's owner (comm_share).
//
// NCCL is loaded with dlopen at the first use (libnccl.so.2: the toolkit's, or the one beside
// PyTorch when LD_LIBRARY_PATH names it), like cuBLAS (cublas_lazy.cu), so that no command pays
// for it at start and a machine without it still runs everything else: joining then fails with
// the reason, and lib/train.c falls back to summing through the host.
//
// The emulator has no NCCL between processes: its build implements a communicator of one rank
// (the sum is the rank's own values, as NCCL's is) and refuses more, so the same fallback runs
// there; tests/emu/test_cuda_comm.c checks both builds' one-rank communicator.
#include "pg_cuda.cuh"

#include "../../lib/backend.h" /* PG_COMM_ID_BYTES */
#include "../../lib/err.h"
#include "ops.h"

#include <string.h>

#if defined(__CUDACC__)
#include <dlfcn.h>
#include <mutex>
#include <nccl.h>

namespace {
struct table {
    decltype(&ncclGetUniqueId) unique_id;
    decltype(&ncclCommInitRank) init_rank;
    decltype(&ncclAllReduce) all_reduce;
    decltype(&ncclBroadcast) broadcast;
    decltype(&ncclGroupStart) group_start;
    decltype(&ncclGroupEnd) group_end;
    decltype(&ncclCommDestroy) destroy;
    decltype(&ncclGetErrorString) error_string;
};
table fn;
std::once_flag loaded;
char why[512];
ncclComm_t comm;
int comm_world; // its ranks: comm_share checks each owner against it

template <class F> bool find(void *lib, const char *name, F &f)
{
    f = (F)dlsym(lib, name);
    if (!f) snprintf(why, sizeof why, "libnccl.so.2 has no %s", name);
    return f != nullptr;
}

void load()
{
    void *lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) lib = dlopen("libnccl.so", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "cannot load libnccl.so.2: %s", e ? e : "not found");
        return;
    }
    table t;
    if (find(lib, "ncclGetUniqueId", t.unique_id) && find(lib, "ncclCommInitRank", t.init_rank) &&
        find(lib, "ncclAllReduce", t.all_reduce) && find(lib, "ncclBroadcast", t.broadcast) &&
        find(lib, "ncclGroupStart", t.group_start) && find(lib, "ncclGroupEnd", t.group_end) &&
        find(lib, "ncclCommDestroy", t.destroy) &&
        find(lib, "ncclGetErrorString", t.error_string))
        fn = t;
}

int ready(void)
{
    std::call_once(loaded, load);
    return fn.unique_id ? 0 : pg_error(PG_E_UNSUPPORTED, "nccl: %s", why);
}

int failed(ncclResult_t r, const char *call)
{
    return pg_error(PG_E_LIB, "nccl: %s failed: %s", call, fn.error_string ? fn.error_string(r) : "unknown error");
}
} // namespace

static_assert(sizeof(ncclUniqueId) == PG_COMM_ID_BYTES, "ops.h's communicator id size is NCCL's");

extern "C" int pg_cuda_comm_id(unsigned char *id)
{
    PG_TRY(ready());
    ncclUniqueId u;
    ncclResult_t r = fn.unique_id(&u);
    if (r != ncclSuccess) return failed(r, "ncclGetUniqueId");
    memcpy(id, &u, sizeof u);
    return 0;
}

extern "C" int pg_cuda_comm_init(const unsigned char *id, int rank, int world)
{
    PG_TRY(ready());
    if (comm) return pg_error(PG_E_INVAL, "nccl: a communicator is open already");
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclResult_t r = fn.init_rank(&comm, world, u, rank);
    if (r != ncclSuccess) {
        comm = nullptr;
        return failed(r, "ncclCommInitRank");
    }
    comm_world = world;
    return 0;
}

extern "C" int pg_cuda_comm_sum(float *x, size_t n)
{
    if (!comm) return pg_error(PG_E_INVAL, "nccl: no communicator");
    if (n == 0) return 0;
    ncclResult_t r = fn.all_reduce(x, x, n, ncclFloat32, ncclSum, comm, pg_cuda_stream());
    return r == ncclSuccess ? 0 : failed(r, "ncclAllReduce");
}

// One broadcast per array from its owner, in place, grouped so that NCCL runs them as one
// operation (a broadcast copies the root's bits: every rank ends with the owner's values).
extern "C" int pg_cuda_comm_share(float *const *ptrs, const size_t *sizes, const int *owner, size_t n)
{
    if (!comm) return pg_error(PG_E_INVAL, "nccl: no communicator");
    for (size_t k = 0; k < n; k++)
        if (owner[k] < 0 || owner[k] >= comm_world)
            return pg_error(PG_E_INVAL, "nccl: array %zu's owner %d is not a rank of %d", k, owner[k], comm_world);
    if (n == 0) return 0;
    ncclResult_t r = fn.group_start();
    if (r != ncclSuccess) return failed(r, "ncclGroupStart");
    int rc = 0;
    for (size_t k = 0; k < n && !rc; k++) {
        if (sizes[k] == 0) continue;
        r = fn.broadcast(ptrs[k], ptrs[k], sizes[k], ncclFloat32, owner[k], comm, pg_cuda_stream());
        if (r != ncclSuccess) rc = failed(r, "ncclBroadcast");
    }
    r = fn.group_end(); // ends the group even after a failed call, as NCCL asks
    if (!rc && r != ncclSuccess) rc = failed(r, "ncclGroupEnd");
    return rc;
}

extern "C" void pg_cuda_comm_free(void)
{
    if (comm) fn.destroy(comm);
    comm = nullptr;
}

#else // the emulator: a communicator of one rank

static int emu_open;

extern "C" int pg_cuda_comm_id(unsigned char *id)
{
    memset(id, 0x5a, PG_COMM_ID_BYTES);
    return 0;
}

extern "C" int pg_cuda_comm_init(const unsigned char *id, int rank, int world)
{
    (void)id;
    if (world != 1 || rank != 0)
        return pg_error(PG_E_UNSUPPORTED, "nccl: the CUDA emulator has no communicator of %d ranks", world);
    if (emu_open) return pg_error(PG_E_INVAL, "nccl: a communicator is open already");
    emu_open = 1;
    return 0;
}

extern "C" int pg_cuda_comm_sum(float *x, size_t n)
{
    (void)x, (void)n; // one rank: the sum is its own values
    return emu_open ? 0 : pg_error(PG_E_INVAL, "nccl: no communicator");
}

// One rank owns everything: the arrays are its own already.
extern "C" int pg_cuda_comm_share(float *const *ptrs, const size_t *sizes, const int *owner, size_t n)
{
    (void)ptrs, (void)sizes;
    if (!emu_open) return pg_error(PG_E_INVAL, "nccl: no communicator");
    for (size_t k = 0; k < n; k++)
        if (owner[k] != 0) return pg_error(PG_E_INVAL, "nccl: array %zu's owner %d is not a rank of 1", k, owner[k]);
    return 0;
}

extern "C" void pg_cuda_comm_free(void) { emu_open = 0; }

#endif
