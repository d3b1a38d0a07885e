/* mem.c: the CPU backend's memory operations: host memory, plain copies and vector updates. */
#include "cpu.h"

#include "../../lib/err.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void *pg_cpu_alloc(size_t bytes) { return calloc(bytes ? bytes : 1, 1); }
void pg_cpu_free(void *p) { free(p); }
/* The first failed allocation of an operation since the last status call (bytes, what). */
static _Atomic size_t failed_bytes;
static const char *_Atomic failed_what;

void pg_cpu_fail_nomem(size_t bytes, const char *what)
{
    const char *none = NULL;
    if (atomic_compare_exchange_strong(&failed_what, &none, what)) failed_bytes = bytes ? bytes : 1;
}

size_t pg_cpu_mem_peak(void) { return 0; }

int pg_cpu_status(void)
{
    const char *what = atomic_exchange(&failed_what, NULL);
    if (!what) return 0;
    return pg_error(PG_E_NOMEM, "cpu backend: out of memory: %zu bytes of %s", (size_t)failed_bytes, what);
}
void pg_cpu_memcpy(void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
}
void pg_cpu_copy(pg_real *dst, const pg_real *src, size_t n)
{
    if (n) memcpy(dst, src, n * sizeof *dst);
}
void pg_cpu_zero(pg_real *x, size_t n)
{
    if (n) memset(x, 0, n * sizeof *x);
}

void pg_cpu_axpy(pg_real *y, double a, const pg_real *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n > PG_OMP_MIN)
    for (size_t i = 0; i < n; i++) y[i] = (pg_real)((double)y[i] + a * x[i]);
}

void pg_cpu_scale(pg_real *x, double a, size_t n)
{
#pragma omp parallel for schedule(static) if (n > PG_OMP_MIN)
    for (size_t i = 0; i < n; i++) x[i] = (pg_real)(a * x[i]);
}
