/* backend_select.c: --device NAME → a backend table (see backend.h). In a file of its own so
 * that programs which never ask for a device by name do not link the CUDA runtime's probe. */
#include "backend.h"
#include "err.h"

#include <string.h>

#ifdef PG_HAVE_CUDA
#include "../kernels/cuda/device.h"
#endif

int pg_backend_by_name(const char *name, const struct pg_backend **be)
{
    if (strcmp(name, "cpu") == 0) {
        *be = &pg_backend_cpu;
        return 0;
    }
    if (strcmp(name, "cuda") == 0) {
#ifdef PG_HAVE_CUDA
        if (pg_cuda_device_count() < 1) return pg_error(PG_E_UNSUPPORTED, "--device cuda: no CUDA device on this machine");
        *be = &pg_backend_cuda;
        return 0;
#else
        return pg_error(PG_E_UNSUPPORTED, "--device cuda: this pgolf was built without CUDA (nvcc not found)");
#endif
    }
    return pg_error(PG_E_INVAL, "--device %s: unknown device (cpu, cuda)", name);
}
