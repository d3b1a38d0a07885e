/* linear.c: matrix products (through CBLAS) and the embedding lookup, forward and backward. */
#include "cpu.h"

#include <string.h>

void pg_cpu_matmul_fwd(pg_real *y, const pg_real *x, const pg_real *w, int n, int in, int out)
{
    /* y[n,out] = x[n,in] · w[out,in]ᵀ */
    pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1, x, in, w, in, 0, y, out);
}

void pg_cpu_matmul_bwd(pg_real *dx, pg_real *dw, const pg_real *dy, const pg_real *x, const pg_real *w, int n, int in,
                       int out, int dx_accumulate)
{
    /* dx[n,in] (+)= dy[n,out] · w[out,in] */
    if (dx) pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1, dy, out, w, in, dx_accumulate ? 1 : 0, dx, in);
    /* dw[out,in] += dy[n,out]ᵀ · x[n,in] */
    if (dw) pg_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1, dy, out, x, in, 1, dw, in);
}

void pg_cpu_embedding_fwd(pg_real *y, const pg_real *emb, const int32_t *ids, int n, int d)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) memcpy(y + (size_t)i * d, emb + (size_t)ids[i] * d, (size_t)d * sizeof *y);
}

void pg_cpu_embedding_bwd(pg_real *demb, const pg_real *dy, const int32_t *ids, int n, int d)
{
    /* Serial over rows: the same id may repeat, and the order of the sums stays fixed
     * (deterministic). Parallel over the channels instead. */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < d; c++)
        for (int i = 0; i < n; i++) demb[(size_t)ids[i] * d + c] += dy[(size_t)i * d + c];
}
