/* pointwise.c: the element- and channel-wise operations of a block: (leaky) relu², the residual mix
 * with x0, scaled residual adds, and the per-head q gain. Channel reductions (the gradients of
 * per-channel vectors) are parallel over channels and serial over rows, so their sums always run
 * in the same order: the CPU backend is deterministic. */
#include "cpu.h"

/* slope == 0 keeps the baseline's exact expressions (and bits): no multiply by a zero slope. */
void pg_cpu_relu2_fwd(pg_real *y, const pg_real *x, size_t n, double slope)
{
    pg_real s2 = (pg_real)(slope * slope);
#pragma omp parallel for schedule(static) if (n > PG_OMP_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] * x[i] : slope != 0 ? s2 * x[i] * x[i] : 0;
}

void pg_cpu_relu2_bwd(pg_real *dx, const pg_real *dy, const pg_real *x, size_t n, double slope)
{
    pg_real s2 = (pg_real)(slope * slope);
#pragma omp parallel for schedule(static) if (n > PG_OMP_MIN)
    for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? 2 * x[i] * dy[i] : slope != 0 ? 2 * s2 * x[i] * dy[i] : 0;
}

void pg_cpu_round_bf16(pg_real *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n > PG_OMP_MIN)
    for (size_t i = 0; i < n; i++) x[i] = pg_cpu_bf16_round(x[i]);
}

void pg_cpu_mix_fwd(pg_real *y, const pg_real *x, const pg_real *x0, const pg_real *m0, const pg_real *m1, int n, int d)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) {
            size_t k = (size_t)i * d + c;
            y[k] = m0[c] * x[k] + m1[c] * x0[k];
        }
}

void pg_cpu_mix_bwd(pg_real *dx, pg_real *dx0, pg_real *dm0, pg_real *dm1, const pg_real *dy, const pg_real *x,
                    const pg_real *x0, const pg_real *m0, const pg_real *m1, int n, int d)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int c = 0; c < d; c++) {
        double s0 = 0, s1 = 0;
        for (int i = 0; i < n; i++) {
            size_t k = (size_t)i * d + c;
            s0 += (double)dy[k] * x[k];
            s1 += (double)dy[k] * x0[k];
            dx0[k] += m1[c] * dy[k];
            dx[k] = m0[c] * dy[k];
        }
        dm0[c] += (pg_real)s0;
        dm1[c] += (pg_real)s1;
    }
}

void pg_cpu_scale_add_fwd(pg_real *x, const pg_real *s, const pg_real *f, int n, int d)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) x[(size_t)i * d + c] += s[c] * f[(size_t)i * d + c];
}

void pg_cpu_scale_add_bwd(pg_real *df, pg_real *ds, const pg_real *dy, const pg_real *s, const pg_real *f, int n, int d,
                          int df_accumulate)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int c = 0; c < d; c++) {
        double acc = 0;
        for (int i = 0; i < n; i++) {
            size_t k = (size_t)i * d + c;
            acc += (double)dy[k] * f[k];
            pg_real g = s[c] * dy[k];
            df[k] = df_accumulate ? df[k] + g : g;
        }
        ds[c] += (pg_real)acc;
    }
}

void pg_cpu_head_gain_fwd(pg_real *q, const pg_real *g, int n, int h, int hd)
{
#pragma omp parallel for schedule(static) if ((size_t)n * h * hd > PG_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int hi = 0; hi < h; hi++)
            for (int c = 0; c < hd; c++) q[((size_t)i * h + hi) * hd + c] *= g[hi];
}

void pg_cpu_head_gain_bwd(pg_real *dq, pg_real *dg, const pg_real *q_pre, const pg_real *g, int n, int h, int hd)
{
    for (int hi = 0; hi < h; hi++) {
        double acc = 0;
#pragma omp parallel for reduction(+ : acc) schedule(static) if ((size_t)n * hd > PG_OMP_MIN)
        for (int i = 0; i < n; i++)
            for (int c = 0; c < hd; c++) {
                size_t k = ((size_t)i * h + hi) * hd + c;
                acc += (double)dq[k] * q_pre[k];
                dq[k] *= g[hi];
            }
        dg[hi] += (pg_real)acc;
    }
}
