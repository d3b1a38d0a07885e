/* test_cuda_device.c: the CUDA backend links into C programs and reports "no device" cleanly on
 * a machine without a GPU or driver (every CI machine) instead of crashing. On a GPU machine
 * (make check-gpu) it must find at least one device. */
#include "../tap.h"

#include <stdlib.h>
#include <string.h>

#ifdef PG_HAVE_CUDA
#include "../../kernels/cuda/device.h"
#endif

int main(void)
{
#ifndef PG_HAVE_CUDA
    skip_all("built without CUDA (nvcc not found)");
#else
    int n = pg_cuda_device_count();
    ok(n >= 0 && n <= 64, "device count is sane (%d)", n);
    is_int(pg_cuda_device_count(), n, "a second call agrees (the no-driver error is not sticky)");
    const char *want = getenv("PG_EXPECT_GPU");
    if (want && strcmp(want, "1") == 0) ok(n >= 1, "a GPU is expected here (PG_EXPECT_GPU=1) and found");
    return done_testing();
#endif
}
