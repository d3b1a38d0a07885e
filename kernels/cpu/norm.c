/* norm.c: weightless RMSNorm over rows, times a constant scale (1, or the layerwise LN scale),
 * forward and backward (float64 sums per row). At scale 1 every multiply and divide by it is
 * exact, so the results are plain RMSNorm's bits. */
#include "cpu.h"

void pg_cpu_rmsnorm_fwd(pg_real *y, pg_real *rstd, const pg_real *x, int n, int d, double eps, double scale)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++) {
        const pg_real *xi = x + (size_t)i * d;
        pg_real *yi = y + (size_t)i * d;
        double ss = 0;
        for (int c = 0; c < d; c++) ss += (double)xi[c] * xi[c];
        pg_real r = (pg_real)(1.0 / sqrt(ss / d + eps)), rs = r * (pg_real)scale;
        for (int c = 0; c < d; c++) yi[c] = xi[c] * rs;
        rstd[i] = r;
    }
}

void pg_cpu_rmsnorm_bwd(pg_real *dx, const pg_real *dy, const pg_real *y, const pg_real *rstd, int n, int d,
                        double scale, int dx_accumulate)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++) {
        const pg_real *yi = y + (size_t)i * d, *gi = dy + (size_t)i * d;
        pg_real *dxi = dx + (size_t)i * d;
        double dot = 0;
        for (int c = 0; c < d; c++) dot += (double)gi[c] * yi[c];
        pg_real m = (pg_real)(dot / d / scale), r = rstd[i], s = (pg_real)scale;
        for (int c = 0; c < d; c++) {
            pg_real g = r * (s * gi[c] - yi[c] * m);
            dxi[c] = dx_accumulate ? dxi[c] + g : g;
        }
    }
}
