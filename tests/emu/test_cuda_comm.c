/* test_cuda_comm.c: the CUDA backend's communicator for data-parallel GPU ranks (backend.h
 * comm_*, kernels/cuda/nccl.cu) with one rank: an id is made, the rank joins, a sum over the one
 * rank leaves the values as they are, bit for bit; a second join and a sum without a
 * communicator are refused. test_cuda_comm_emu checks the emulator's one-rank communicator,
 * test_cuda_comm_gpu NCCL's itself (make check-gpu). Several ranks: tests/cli/test-dist.sh. */
#include "parity.h"

#include "../../lib/err.h"

int main(void)
{
    parity_seed = 99;
    parity_start();
    const struct pg_backend *gpu = &pg_backend_cuda;
    unsigned char id[PG_COMM_ID_BYTES];
    is_int(gpu->comm_sum(dnew(4), 1), PG_E_INVAL, "a sum before joining is refused");
    int rc = gpu->comm_id(id);
    if (rc) diag("%s", pg_error_message());
    is_int(rc, 0, "rank 0 makes the communicator's id");
    rc = gpu->comm_init(id, 0, 1);
    if (rc) diag("%s", pg_error_message());
    is_int(rc, 0, "rank 0 of 1 joins");
    is_int(gpu->comm_init(id, 0, 1), PG_E_INVAL, "a second join is refused");
    size_t n = 1000;
    float *x = rnd(n, 3), *d = dev(x, n);
    is_int(gpu->comm_sum(d, n), 0, "a sum over the one rank");
    is_int(gpu->status(), 0, "and the device reports no failure");
    ok(same_bits(back(d, n), x, n), "the sum over one rank is its own values, bit for bit");
    gpu->comm_free();
    is_int(gpu->comm_sum(d, n), PG_E_INVAL, "after comm_free a sum is refused");
    return parity_done(0);
}
