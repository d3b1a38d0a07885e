/* test_cuda_comm.c: the CUDA backend's communicator for data-parallel GPU ranks (backend.h
 * comm_*, kernels/cuda/nccl.cu) with one rank: an id is made, the rank joins, a sum over the one
 * rank leaves the values as they are, bit for bit, and so does sharing arrays from their owner
 * (rank 0; an owner outside the communicator is refused); a second join and a sum without a
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
    /* Muon's matrices from their owners: with one rank, rank 0 owns them all */
    float *y = rnd(37, 2), *e = dev(y, 37);
    float *ptrs[2] = {d, e};
    size_t sizes[2] = {n, 37};
    int owners[2] = {0, 0}, stranger[2] = {0, 1};
    is_int(gpu->comm_share(ptrs, sizes, owners, 2), 0, "sharing two arrays owned by rank 0");
    is_int(gpu->status(), 0, "and the device reports no failure");
    ok(same_bits(back(d, n), x, n) && same_bits(back(e, 37), y, 37), "the shared arrays are rank 0's, bit for bit");
    rc = gpu->comm_share(ptrs, sizes, stranger, 2);
    ok(rc != 0, "an array owned by rank 1 of a one-rank communicator is refused (%s)", rc ? pg_error_message() : "");
    pg_error_clear();
    gpu->comm_free();
    is_int(gpu->comm_sum(d, n), PG_E_INVAL, "after comm_free a sum is refused");
    is_int(gpu->comm_share(ptrs, sizes, owners, 2), PG_E_INVAL, "and so is a share");
    return parity_done(0);
}
