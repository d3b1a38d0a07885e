/* qxform.c: AWQ scales and Hadamard rotations undone at dequantization (see qxform.h). */
#define _POSIX_C_SOURCE 200809L
#include "qxform.h"

#include "err.h"
#include "half.h"
#include "rng.h"
#include "xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int pow2(int64_t n) { return n >= 2 && (n & (n - 1)) == 0; }

uint64_t pg_qxform_bytes(int flags, int64_t cols)
{
    return (flags & PG_QXFORM_HADAMARD ? 8u : 0u) + (flags & PG_QXFORM_AWQ ? 2 * (uint64_t)cols : 0u);
}

int pg_qxform_fits(int flags, int64_t cols)
{
    return flags > 0 && flags <= (PG_QXFORM_AWQ | PG_QXFORM_HADAMARD) && cols > 0 &&
           (!(flags & PG_QXFORM_HADAMARD) || pow2(cols));
}

void pg_qxform_fwht(double *v, int64_t n)
{
    for (int64_t h = 1; h < n; h *= 2)
        for (int64_t i = 0; i < n; i += 2 * h)
            for (int64_t j = i; j < i + h; j++) {
                double a = v[j], b = v[j + h];
                v[j] = a + b, v[j + h] = a - b;
            }
}

static int setup(struct pg_qxform *x, int flags, int64_t cols, uint64_t seed)
{
    memset(x, 0, sizeof *x);
    if (!pg_qxform_fits(flags, cols)) return pg_error(PG_E_INVAL, "transform %d for %lld columns", flags, (long long)cols);
    x->flags = flags, x->cols = cols, x->seed = seed;
    if (flags & PG_QXFORM_HADAMARD) {
        if (!(x->sign = pg_malloc((size_t)cols * sizeof *x->sign))) return PG_E_NOMEM;
        struct pg_rng r;
        pg_rng_seed(&r, seed);
        for (int64_t j = 0; j < cols; j++) x->sign[j] = pg_rng_u64(&r) >> 63 ? -1.0 : 1.0;
    }
    if ((flags & PG_QXFORM_AWQ) && !(x->s = pg_malloc((size_t)cols * sizeof *x->s))) {
        pg_qxform_free(x);
        return PG_E_NOMEM;
    }
    return 0;
}

int pg_qxform_init(struct pg_qxform *x, int flags, int64_t cols, uint64_t seed, const double *s)
{
    PG_TRY(setup(x, flags, cols, seed));
    for (int64_t j = 0; x->s && j < cols; j++) {
        float f = pg_f16_round((float)s[j]);
        if (!(f > 0) || !isfinite(f)) {
            pg_qxform_free(x);
            return pg_error(PG_E_INVAL, "AWQ scale %g of channel %lld is not a positive fp16 number", s[j],
                            (long long)j);
        }
        x->s[j] = f;
    }
    return 0;
}

int pg_qxform_decode(struct pg_qxform *x, int flags, int64_t cols, const unsigned char *blob, const char *what)
{
    if (!pg_qxform_fits(flags, cols))
        return pg_error(PG_E_FORMAT, "%s: transform flags %d for %lld columns (1 AWQ, 2 Hadamard over a power of two)",
                        what, flags, (long long)cols);
    uint64_t seed = flags & PG_QXFORM_HADAMARD ? pg_le64_get(blob) : 0;
    PG_TRY(setup(x, flags, cols, seed));
    const unsigned char *p = blob + (flags & PG_QXFORM_HADAMARD ? 8 : 0);
    for (int64_t j = 0; x->s && j < cols; j++) {
        uint16_t h = pg_le16_get(p + 2 * j);
        if ((h & 0x8000u) || (h & 0x7c00u) == 0x7c00u || h == 0) {
            pg_qxform_free(x);
            return pg_error(PG_E_FORMAT, "%s: AWQ scale of channel %lld (fp16 0x%04x) is not a positive finite number",
                            what, (long long)j, h);
        }
        x->s[j] = pg_f16_to_f32(h);
    }
    return 0;
}

void pg_qxform_encode(const struct pg_qxform *x, unsigned char *blob)
{
    if (x->flags & PG_QXFORM_HADAMARD) pg_le64_put(blob, x->seed), blob += 8;
    for (int64_t j = 0; x->s && j < x->cols; j++) pg_le16_put(blob + 2 * j, pg_f32_to_f16((float)x->s[j]));
}

/* one row v (double) ← v diag(s) D Hₙ/√n, or its inverse */
static void row_forward(const struct pg_qxform *x, double *v)
{
    int64_t n = x->cols;
    for (int64_t j = 0; x->s && j < n; j++) v[j] *= x->s[j];
    if (x->sign) {
        for (int64_t j = 0; j < n; j++) v[j] *= x->sign[j];
        pg_qxform_fwht(v, n);
        double k = 1 / sqrt((double)n);
        for (int64_t j = 0; j < n; j++) v[j] *= k;
    }
}

static void row_inverse(const struct pg_qxform *x, double *v)
{
    int64_t n = x->cols;
    if (x->sign) { /* Rᵀ = Hₙ D/√n */
        pg_qxform_fwht(v, n);
        double k = 1 / sqrt((double)n);
        for (int64_t j = 0; j < n; j++) v[j] *= k * x->sign[j];
    }
    for (int64_t j = 0; x->s && j < n; j++) v[j] /= x->s[j];
}

/* Transforms rows of w in place, exactly one of wf (float) and wr (pg_real) given: the forward
 * map quantization works in, or its inverse at dequantization. Each thread keeps one row in
 * double. @return 0 or PG_E_NOMEM (a thread's row buffer). */
static int transform_rows(const struct pg_qxform *x, float *wf, pg_real *wr, int64_t rows, int inverse)
{
    int64_t n = x->cols;
    int failed = 0;
#pragma omp parallel
    {
        double *v = malloc((size_t)n * sizeof *v);
        if (!v) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!v) continue; /* failed is set: the caller gets PG_E_NOMEM */
            for (int64_t j = 0; j < n; j++) v[j] = wf ? (double)wf[r * n + j] : (double)wr[r * n + j];
            if (inverse) row_inverse(x, v);
            else row_forward(x, v);
            for (int64_t j = 0; wf && j < n; j++) wf[r * n + j] = (float)v[j];
            for (int64_t j = 0; wr && j < n; j++) wr[r * n + j] = (pg_real)v[j];
        }
        free(v);
    }
    return failed ? PG_E_NOMEM : 0;
}

int pg_qxform_forward(const struct pg_qxform *x, float *w, int64_t rows)
{
    return transform_rows(x, w, NULL, rows, 0);
}

int pg_qxform_inverse(const struct pg_qxform *x, pg_real *w, int64_t rows)
{
    return transform_rows(x, NULL, w, rows, 1);
}

/* A = Mᵀ H M with M = diag(1/s) R: rows of H transformed as x'' = x diag(1/s) R are, for a
 * symmetric H, (H M)ᵀ = Mᵀ H, so transforming every row and then every column gives Mᵀ H M. */
int pg_qxform_hessian(const struct pg_qxform *x, const double *h, double *out)
{
    int64_t n = x->cols;
    double *v = pg_malloc((size_t)n * sizeof *v);
    if (!v) return PG_E_NOMEM;
    struct pg_qxform inv = *x; /* x'' = x diag(1/s) R: the forward map with 1/s */
    double *si = NULL;
    if (x->s) {
        if (!(si = pg_malloc((size_t)n * sizeof *si))) {
            free(v);
            return PG_E_NOMEM;
        }
        for (int64_t j = 0; j < n; j++) si[j] = 1 / x->s[j];
        inv.s = si;
    }
    for (int64_t i = 0; i < n; i++) { /* rows: out[i] = row i of H M */
        memcpy(v, h + i * n, (size_t)n * sizeof *v);
        row_forward(&inv, v);
        memcpy(out + i * n, v, (size_t)n * sizeof *v);
    }
    for (int64_t j = 0; j < n; j++) { /* columns: out[:, j] ← Mᵀ out[:, j] */
        for (int64_t i = 0; i < n; i++) v[i] = out[i * n + j];
        row_forward(&inv, v);
        for (int64_t i = 0; i < n; i++) out[i * n + j] = v[i];
    }
    free(v);
    free(si);
    return 0;
}

void pg_qxform_free(struct pg_qxform *x)
{
    free(x->sign);
    free(x->s);
    memset(x, 0, sizeof *x);
}
