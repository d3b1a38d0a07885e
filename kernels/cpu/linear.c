/* linear.c: matrix products (CBLAS) and the embedding lookup, forward and backward.
 *
 * One thread pool: OpenBLAS is asked for one thread (pg_cpu_init) and the products are split
 * over OpenMP threads by blocks of rows (forward, dx) or of output features (dw, whose sum runs
 * over all rows), so BLAS threads never spin against OpenMP ones and every split is
 * deterministic. */
#include "cpu.h"

#include <omp.h>
#include <string.h>

void openblas_set_num_threads(int);

int pg_cpu_bf16;
void pg_cpu_set_bf16(int on) { pg_cpu_bf16 = on != 0; }

void pg_cpu_init(void)
{
    static int done;
    if (!done) openblas_set_num_threads(1);
    done = 1;
}

/* [begin, end) of part k of n split into p nearly equal parts. */
static void part(int n, int p, int k, int *begin, int *end)
{
    *begin = (int)((long long)n * k / p);
    *end = (int)((long long)n * (k + 1) / p);
}

void pg_cpu_matmul_fwd(pg_real *y, const pg_real *x, const pg_real *w, int n, int in, int out)
{
    /* y[n,out] = x[n,in] · w[out,in]ᵀ, rows split over threads */
#pragma omp parallel if ((size_t)n * in * out > 4 * PG_OMP_MIN)
    {
        int r0, r1;
        part(n, omp_get_num_threads(), omp_get_thread_num(), &r0, &r1);
        if (r1 > r0)
            pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, out, in, 1, x + (size_t)r0 * in, in, w, in, 0,
                    y + (size_t)r0 * out, out);
    }
}

void pg_cpu_matmul_bwd(pg_real *dx, pg_real *dw, const pg_real *dy, const pg_real *x, const pg_real *w, int n, int in,
                       int out, int dx_accumulate)
{
#pragma omp parallel if ((size_t)n * in * out > 4 * PG_OMP_MIN)
    {
        int p = omp_get_num_threads(), k = omp_get_thread_num(), r0, r1;
        /* dx[n,in] (+)= dy[n,out] · w[out,in], rows split */
        part(n, p, k, &r0, &r1);
        if (dx && r1 > r0)
            pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, in, out, 1, dy + (size_t)r0 * out, out, w, in,
                    dx_accumulate ? 1 : 0, dx + (size_t)r0 * in, in);
        /* dw[out,in] += dy[n,out]ᵀ · x[n,in], output features split */
        part(out, p, k, &r0, &r1);
        if (dw && r1 > r0)
            pg_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, in, n, 1, dy + r0, out, x, in, 1,
                    dw + (size_t)r0 * in, in);
    }
}

void pg_cpu_embedding_fwd(pg_real *y, const pg_real *emb, const int32_t *ids, int n, int d)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++) memcpy(y + (size_t)i * d, emb + (size_t)ids[i] * d, (size_t)d * sizeof *y);
}

void pg_cpu_embedding_bwd(pg_real *demb, const pg_real *dy, const int32_t *ids, int n, int d)
{
    /* Serial over rows: the same id may repeat, and the order of the sums stays fixed
     * (deterministic). Parallel over the channels instead. */
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int c = 0; c < d; c++)
        for (int i = 0; i < n; i++) demb[(size_t)ids[i] * d + c] += dy[(size_t)i * d + c];
}
