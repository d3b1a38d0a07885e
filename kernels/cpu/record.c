/* record.c: the record stack's pointwise operations (spec/techniques.md §2): XSA, the per-head
 * output gates, SmearGate v1 and v2, the gated U-Net skip, the two-lane write-back and the scalar
 * residual scales, forward and backward (semantics: lib/backend.h).
 *
 * Every sum runs in double in a fixed order, so the CPU backend stays deterministic: a row's own
 * dot products serially; per-channel (and per-weight) gradients in parallel over channels,
 * serially over rows; scalar gradients over a fixed number of chunks that depends only on n
 * (never on the thread count), each summed serially, then the chunks in order. Gate scalars
 * (σ of a dot product) are computed in double and rounded once. */
#include "cpu.h"

#include <stdio.h>
#include <stdlib.h>

static inline double sigm(double z) { return 1 / (1 + exp(-z)); }

/* Scratch for per-row intermediate values. These operations return nothing: a failed allocation
 * is recorded for the backend's status (mem.c) and the operation skips its work. */
static double *scratch(size_t n)
{
    double *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) pg_cpu_fail_nomem(n * sizeof *p, "record-stack scratch");
    return p;
}

/* Scalar reductions: n elements in at most RED_MAX_CHUNKS chunks of *len (at least RED_MIN_LEN). */
enum { RED_MAX_CHUNKS = 256, RED_MIN_LEN = 4096 };

static size_t red_chunks(size_t n, size_t *len)
{
    if (n == 0) return *len = 1, 0;
    size_t c = (n + RED_MIN_LEN - 1) / RED_MIN_LEN;
    if (c > RED_MAX_CHUNKS) c = RED_MAX_CHUNKS;
    *len = (n + c - 1) / c;
    return (n + *len - 1) / *len;
}

/* ---- XSA (§2.3) -------------------------------------------------------------------------------- */

/* 1/max(‖v‖, 1e-12) of an hd-vector; *ok: ‖v‖ > 1e-12 (v̂ = v/‖v‖, not the clamped branch). */
static double inv_norm(const pg_real *v, int hd, int *ok)
{
    double ss = 0;
    for (int c = 0; c < hd; c++) ss += (double)v[c] * v[c];
    double nrm = sqrt(ss);
    *ok = nrm > 1e-12;
    return 1 / (*ok ? nrm : 1e-12);
}

void pg_cpu_xsa_fwd(pg_real *y, const pg_real *v, int n, int h, int kv, int hd)
{
    int group = h / kv;
#pragma omp parallel for schedule(static) if ((size_t)n * h * hd > PG_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int g = 0; g < kv; g++) {
            const pg_real *vr = v + ((size_t)i * kv + g) * hd;
            int ok;
            double inv = inv_norm(vr, hd, &ok);
            for (int hh = g * group; hh < (g + 1) * group; hh++) {
                pg_real *yr = y + ((size_t)i * h + hh) * hd;
                double a = 0;
                for (int c = 0; c < hd; c++) a += (double)yr[c] * vr[c];
                a *= inv * inv; /* (y·v̂)·v̂ = (y·v)/‖v‖² · v */
                for (int c = 0; c < hd; c++) yr[c] = (pg_real)(yr[c] - a * vr[c]);
            }
        }
}

/* With a = y_pre·v̂, b = dy·v̂ per head: dy ← dy − b·v̂; dv̂ = −Σ_heads (a·dy + b·y_pre), whose
 * component along v̂ is −2·Σ a·b; dv += (dv̂ − (dv̂·v̂)v̂)/‖v‖, added head by head. */
void pg_cpu_xsa_bwd(pg_real *dy, pg_real *dv, const pg_real *y_pre, const pg_real *v, int n, int h, int kv, int hd)
{
    int group = h / kv;
#pragma omp parallel for schedule(static) if ((size_t)n * h * hd > PG_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int g = 0; g < kv; g++) {
            const pg_real *vr = v + ((size_t)i * kv + g) * hd;
            pg_real *dvr = dv + ((size_t)i * kv + g) * hd;
            int ok;
            double inv = inv_norm(vr, hd, &ok);
            for (int hh = g * group; hh < (g + 1) * group; hh++) {
                pg_real *dyr = dy + ((size_t)i * h + hh) * hd;
                const pg_real *yr = y_pre + ((size_t)i * h + hh) * hd;
                double a = 0, b = 0;
                for (int c = 0; c < hd; c++) {
                    a += (double)yr[c] * vr[c];
                    b += (double)dyr[c] * vr[c];
                }
                a *= inv, b *= inv;
                double along = ok ? 2 * a * b : 0;
                for (int c = 0; c < hd; c++) {
                    double vh = vr[c] * inv, t = dyr[c];
                    dvr[c] = (pg_real)(dvr[c] + (along * vh - a * t - b * yr[c]) * inv);
                    dyr[c] = (pg_real)(t - b * vh);
                }
            }
        }
}

/* ---- per-head output gate (§2.4) ------------------------------------------------------------- */

void pg_cpu_head_gate_fwd(pg_real *y, pg_real *g, const pg_real *u, const pg_real *w, int n, int h, int hd, int ld,
                          int win, double scale, double mult)
{
#pragma omp parallel for schedule(static) if ((size_t)n * h * (hd + win) > PG_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int hh = 0; hh < h; hh++) {
            const pg_real *ur = u + (size_t)i * ld, *wr = w + (size_t)hh * win;
            double z = 0;
            for (int j = 0; j < win; j++) z += (double)wr[j] * ur[j];
            pg_real gv = (pg_real)(mult * sigm(scale * z));
            g[(size_t)i * h + hh] = gv;
            pg_real *yr = y + ((size_t)i * h + hh) * hd;
            for (int c = 0; c < hd; c++) yr[c] *= gv;
        }
}

/* dz[i,h] = scale·(Σ dy·y_pre)·g·(1 − g/mult) (the gradient of the dot product w·u, times scale),
 * kept per row, then du rows and dw columns from it. */
void pg_cpu_head_gate_bwd(pg_real *dy, pg_real *dw, pg_real *du, const pg_real *y_pre, const pg_real *g,
                          const pg_real *u, const pg_real *w, int n, int h, int hd, int ld, int win, double scale,
                          double mult)
{
    if (n <= 0 || h <= 0) return;
    double *dz = scratch((size_t)n * h);
    if (!dz) return;
#pragma omp parallel for schedule(static) if ((size_t)n * h * (hd + win) > PG_OMP_MIN)
    for (int i = 0; i < n; i++) {
        for (int hh = 0; hh < h; hh++) {
            pg_real *dyr = dy + ((size_t)i * h + hh) * hd;
            const pg_real *yr = y_pre + ((size_t)i * h + hh) * hd;
            double dg = 0, gv = g[(size_t)i * h + hh];
            for (int c = 0; c < hd; c++) dg += (double)dyr[c] * yr[c];
            dz[(size_t)i * h + hh] = scale * dg * gv * (1 - gv / mult);
            for (int c = 0; c < hd; c++) dyr[c] *= g[(size_t)i * h + hh];
        }
        if (du)
            for (int j = 0; j < win; j++) {
                double acc = 0;
                for (int hh = 0; hh < h; hh++) acc += dz[(size_t)i * h + hh] * w[(size_t)hh * win + j];
                du[(size_t)i * ld + j] = (pg_real)(du[(size_t)i * ld + j] + acc);
            }
    }
#pragma omp parallel for schedule(static) if ((size_t)n * h * win > PG_OMP_MIN)
    for (int k = 0; k < h * win; k++) {
        int hh = k / win, j = k % win;
        double acc = 0;
        for (int i = 0; i < n; i++) acc += dz[(size_t)i * h + hh] * u[(size_t)i * ld + j];
        dw[k] = (pg_real)(dw[k] + acc);
    }
    free(dz);
}

/* ---- SmearGate (§2.10) ----------------------------------------------------------------------- */

/* Row i (of b·t) takes the previous token: not the first of its sequence, not a BOS. */
static inline int smear_on(const int32_t *ids, int i, int t, int bos) { return i % t != 0 && ids[i] != bos; }

void pg_cpu_smear_fwd(pg_real *y, pg_real *gate, const pg_real *x, const int32_t *ids, const pg_real *w,
                      const pg_real *lam, int b, int t, int d, int win, int bos)
{
    int n = b * t;
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++) {
        const pg_real *xr = x + (size_t)i * d;
        pg_real *yr = y + (size_t)i * d;
        if (!smear_on(ids, i, t, bos)) {
            gate[i] = 0;
            for (int c = 0; c < d; c++) yr[c] = xr[c];
            continue;
        }
        double z = 0;
        for (int j = 0; j < win; j++) z += (double)w[j] * xr[j];
        pg_real gv = (pg_real)(lam[0] * sigm(z));
        gate[i] = gv;
        for (int c = 0; c < d; c++) yr[c] = xr[c] + gv * xr[c - d];
    }
}

void pg_cpu_smear_bwd(pg_real *dx, pg_real *dw, pg_real *dlam, const pg_real *dy, const pg_real *x,
                      const pg_real *gate, const int32_t *ids, const pg_real *w, const pg_real *lam, int b, int t,
                      int d, int win, int bos)
{
    int n = b * t;
    if (n <= 0) return;
    double *dz = scratch(2 * (size_t)n); /* per row: d(w·x[:win]) and dλ terms */
    if (!dz) return;
    double *dl = dz + n;
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++) {
        const pg_real *xr = x + (size_t)i * d, *dyr = dy + (size_t)i * d;
        double z_grad = 0, l_grad = 0;
        if (smear_on(ids, i, t, bos)) {
            double dgate = 0, z = 0;
            for (int c = 0; c < d; c++) dgate += (double)dyr[c] * xr[c - d];
            for (int j = 0; j < win; j++) z += (double)w[j] * xr[j];
            double s = sigm(z);
            l_grad = dgate * s;
            z_grad = dgate * lam[0] * s * (1 - s);
        }
        dz[i] = z_grad, dl[i] = l_grad;
        double gnext = (i + 1) % t != 0 ? gate[i + 1] : 0; /* 0 at a BOS too */
        pg_real *dxr = dx + (size_t)i * d;
        for (int c = 0; c < d; c++) {
            double v = dyr[c] + (gnext != 0 ? gnext * dyr[c + d] : 0) + (c < win ? z_grad * w[c] : 0);
            dxr[c] = (pg_real)v;
        }
    }
#pragma omp parallel for schedule(static) if ((size_t)n * win > PG_OMP_MIN)
    for (int j = 0; j < win; j++) {
        double acc = 0;
        for (int i = 0; i < n; i++) acc += dz[i] * x[(size_t)i * d + j];
        dw[j] = (pg_real)(dw[j] + acc);
    }
    double acc = 0;
    for (int i = 0; i < n; i++) acc += dl[i];
    dlam[0] = (pg_real)(dlam[0] + acc);
    free(dz);
}

void pg_cpu_smear1_fwd(pg_real *y, const pg_real *x, const int32_t *ids, const pg_real *gamma, int b, int t, int d,
                       int bos)
{
    int n = b * t;
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++) {
        int on = smear_on(ids, i, t, bos);
        for (int c = 0; c < d; c++) {
            size_t k = (size_t)i * d + c;
            pg_real s = 1 / (1 + exp(-gamma[c]));
            y[k] = on ? (1 - s) * x[k] + s * x[k - d] : (1 - s) * x[k];
        }
    }
}

void pg_cpu_smear1_bwd(pg_real *dx, pg_real *dgamma, const pg_real *dy, const pg_real *x, const int32_t *ids,
                       const pg_real *gamma, int b, int t, int d, int bos)
{
    int n = b * t;
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int c = 0; c < d; c++) {
        pg_real s = 1 / (1 + exp(-gamma[c]));
        double sd = sigm((double)gamma[c]), acc = 0;
        for (int i = 0; i < n; i++) {
            size_t k = (size_t)i * d + c;
            acc += (double)dy[k] * ((smear_on(ids, i, t, bos) ? (double)x[k - d] : 0) - x[k]);
            int next = (i + 1) % t != 0 && smear_on(ids, i + 1, t, bos);
            dx[k] = next ? (1 - s) * dy[k] + s * dy[k + d] : (1 - s) * dy[k];
        }
        dgamma[c] = (pg_real)(dgamma[c] + acc * sd * (1 - sd));
    }
}

/* ---- gated U-Net skip (§2.7) ------------------------------------------------------------------ */

void pg_cpu_skip_gate_fwd(pg_real *x, const pg_real *skip, const pg_real *w, const pg_real *gamma, int n, int d)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) {
            size_t k = (size_t)i * d + c;
            pg_real s = 1 / (1 + exp(-gamma[c]));
            x[k] = s * x[k] + (1 - s) * (w[c] * skip[k]);
        }
}

void pg_cpu_skip_gate_bwd(pg_real *dx, pg_real *dskip, pg_real *dw, pg_real *dgamma, const pg_real *x_pre,
                          const pg_real *skip, const pg_real *w, const pg_real *gamma, int n, int d)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int c = 0; c < d; c++) {
        pg_real s = 1 / (1 + exp(-gamma[c])), ws = (1 - s) * w[c];
        double sd = sigm((double)gamma[c]), accw = 0, accg = 0;
        for (int i = 0; i < n; i++) {
            size_t k = (size_t)i * d + c;
            pg_real g = dx[k];
            accw += (double)g * skip[k];
            accg += (double)g * ((double)x_pre[k] - (double)w[c] * skip[k]);
            dx[k] = s * g;
            dskip[k] += ws * g;
        }
        dw[c] = (pg_real)(dw[c] + accw * (1 - sd));
        dgamma[c] = (pg_real)(dgamma[c] + accg * sd * (1 - sd));
    }
}

/* ---- two-lane write-back (§2.9) --------------------------------------------------------------- */

void pg_cpu_lanes_fwd(pg_real *l0, pg_real *l1, const pg_real *a, const pg_real *m, const pg_real *r,
                      const pg_real *p, size_t n)
{
    pg_real r0 = r[0], r1 = r[1], p00 = p[0], p01 = p[1], p10 = p[2], p11 = p[3];
#pragma omp parallel for schedule(static) if (n > PG_OMP_MIN)
    for (size_t i = 0; i < n; i++) {
        l0[i] = r0 * l0[i] + p00 * a[i] + p10 * m[i];
        l1[i] = r1 * l1[i] + p01 * a[i] + p11 * m[i];
    }
}

/* dr[0] += Σ dl0·l0_pre, dr[1] += Σ dl1·l1_pre, dp[0] += Σ dl0·a, dp[1] += Σ dl1·a,
 * dp[2] += Σ dl0·m, dp[3] += Σ dl1·m. */
void pg_cpu_lanes_bwd(pg_real *dl0, pg_real *dl1, pg_real *da, pg_real *dm, pg_real *dr, pg_real *dp,
                      const pg_real *l0_pre, const pg_real *l1_pre, const pg_real *a, const pg_real *m,
                      const pg_real *r, const pg_real *p, size_t n)
{
    pg_real r0 = r[0], r1 = r[1], p00 = p[0], p01 = p[1], p10 = p[2], p11 = p[3];
    double part[RED_MAX_CHUNKS][6];
    size_t len, chunks = red_chunks(n, &len);
#pragma omp parallel for schedule(static) if (n > PG_OMP_MIN)
    for (size_t ch = 0; ch < chunks; ch++) {
        double s[6] = {0, 0, 0, 0, 0, 0};
        size_t end = (ch + 1) * len < n ? (ch + 1) * len : n;
        for (size_t i = ch * len; i < end; i++) {
            pg_real g0 = dl0[i], g1 = dl1[i];
            s[0] += (double)g0 * l0_pre[i];
            s[1] += (double)g1 * l1_pre[i];
            s[2] += (double)g0 * a[i];
            s[3] += (double)g1 * a[i];
            s[4] += (double)g0 * m[i];
            s[5] += (double)g1 * m[i];
            da[i] = p00 * g0 + p01 * g1;
            dm[i] = p10 * g0 + p11 * g1;
            dl0[i] = r0 * g0;
            dl1[i] = r1 * g1;
        }
        for (int k = 0; k < 6; k++) part[ch][k] = s[k];
    }
    double s[6] = {0, 0, 0, 0, 0, 0};
    for (size_t ch = 0; ch < chunks; ch++)
        for (int k = 0; k < 6; k++) s[k] += part[ch][k];
    dr[0] = (pg_real)(dr[0] + s[0]);
    dr[1] = (pg_real)(dr[1] + s[1]);
    for (int k = 0; k < 4; k++) dp[k] = (pg_real)(dp[k] + s[2 + k]);
}

/* ---- scalar residual scales (§2.11-2.12) ------------------------------------------------------- */

void pg_cpu_scalar_add_fwd(pg_real *x, const pg_real *s1, const pg_real *s2, const pg_real *f, size_t n)
{
    pg_real k = s2 ? s1[0] * s2[0] : s1[0];
#pragma omp parallel for schedule(static) if (n > PG_OMP_MIN)
    for (size_t i = 0; i < n; i++) x[i] += k * f[i];
}

void pg_cpu_scalar_add_bwd(pg_real *df, pg_real *ds1, pg_real *ds2, const pg_real *dy, const pg_real *s1,
                           const pg_real *s2, const pg_real *f, size_t n, int df_accumulate)
{
    pg_real k = s2 ? s1[0] * s2[0] : s1[0];
    double part[RED_MAX_CHUNKS];
    size_t len, chunks = red_chunks(n, &len);
#pragma omp parallel for schedule(static) if (n > PG_OMP_MIN)
    for (size_t ch = 0; ch < chunks; ch++) {
        double s = 0;
        size_t end = (ch + 1) * len < n ? (ch + 1) * len : n;
        for (size_t i = ch * len; i < end; i++) {
            s += (double)dy[i] * f[i];
            df[i] = df_accumulate ? df[i] + k * dy[i] : k * dy[i];
        }
        part[ch] = s;
    }
    double s = 0;
    for (size_t ch = 0; ch < chunks; ch++) s += part[ch];
    ds1[0] = (pg_real)(ds1[0] + s * (s2 ? (double)s2[0] : 1));
    if (s2) ds2[0] = (pg_real)(ds2[0] + s * s1[0]);
}
