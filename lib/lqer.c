/* lqer.c: low-rank quantization error reconstruction (see lqer.h). */
#define _POSIX_C_SOURCE 200809L
#include "lqer.h"

#include "err.h"
#include "half.h"
#include "xio.h"

#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The code range of each factor: asym A INT2 [−2, 1], asym B INT4 [−8, 7], sym both [−7, 7]. */
static void code_range(int mode, int factor_b, int *lo, int *hi)
{
    if (mode == PG_LQER_SYM) *lo = -7, *hi = 7;
    else if (factor_b) *lo = -8, *hi = 7;
    else *lo = -2, *hi = 1;
}

/* Whether a mode, shape and rank make a correction (and the sizes fit LAPACK's ints and size_t). */
static int shape_ok(int mode, int64_t rows, int64_t cols, int rank)
{
    if (mode != PG_LQER_ASYM && mode != PG_LQER_SYM) return 0;
    if (rows < 1 || cols < 1 || rows > INT_MAX || cols > INT_MAX) return 0;
    if ((uint64_t)rows * (uint64_t)cols > SIZE_MAX / sizeof(double)) return 0;
    int64_t mn = rows < cols ? rows : cols;
    return rank >= 1 && rank <= PG_LQER_MAX_RANK && rank <= mn;
}

int64_t pg_lqer_nsa(int mode, int64_t rows, int64_t cols, int rank)
{
    if (!shape_ok(mode, rows, cols, rank)) return 0;
    return mode == PG_LQER_ASYM ? 1 : rows;
}

int64_t pg_lqer_nsb(int mode, int64_t rows, int64_t cols, int rank)
{
    if (!shape_ok(mode, rows, cols, rank)) return 0;
    return mode == PG_LQER_ASYM ? (rank * cols + PG_LQER_GROUP - 1) / PG_LQER_GROUP : rank;
}

static int bad_shape(const char *fn, int mode, int64_t rows, int64_t cols, int rank)
{
    return pg_error(PG_E_INVAL, "LQER %s: bad mode, shape or rank (mode %d, %lld x %lld, rank %d; rank 1..%d)", fn,
                    mode, (long long)rows, (long long)cols, rank, PG_LQER_MAX_RANK);
}

void pg_lqer_free(struct pg_lqer *l)
{
    free(l->qa);
    free(l->qb);
    free(l->sa);
    free(l->sb);
    memset(l, 0, sizeof *l);
}

int pg_lqer_alloc(struct pg_lqer *l, int mode, int64_t rows, int64_t cols, int rank)
{
    memset(l, 0, sizeof *l);
    if (!shape_ok(mode, rows, cols, rank)) return bad_shape("alloc", mode, rows, cols, rank);
    l->mode = mode, l->rank = rank, l->rows = rows, l->cols = cols;
    l->qa = pg_calloc((size_t)rows * (size_t)rank, 1);
    l->qb = pg_calloc((size_t)rank * (size_t)cols, 1);
    l->sa = pg_calloc((size_t)pg_lqer_nsa(mode, rows, cols, rank), sizeof *l->sa);
    l->sb = pg_calloc((size_t)pg_lqer_nsb(mode, rows, cols, rank), sizeof *l->sb);
    if (!l->qa || !l->qb || !l->sa || !l->sb) {
        pg_lqer_free(l);
        return PG_E_NOMEM;
    }
    return 0;
}

/* ---- step 1: the SVD ---- */

int pg_lqer_svd(const float *w, const float *wq, int64_t rows, int64_t cols, int rank, double *a, double *b,
                double *sv)
{
    if (!w || !wq || !a || !b || !shape_ok(PG_LQER_ASYM, rows, cols, rank))
        return bad_shape("svd", PG_LQER_ASYM, rows, cols, rank);
    int64_t mn = rows < cols ? rows : cols;
    size_t n = (size_t)rows * (size_t)cols;
    double *e = pg_malloc(n * sizeof *e), *s = pg_malloc((size_t)mn * sizeof *s);
    double *u = pg_malloc((size_t)rows * (size_t)mn * sizeof *u), *vt = pg_malloc((size_t)mn * (size_t)cols * sizeof *vt);
    int rc = 0;
    if (!e || !s || !u || !vt) {
        rc = PG_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        e[i] = (double)w[i] - (double)wq[i];
        if (!isfinite(e[i])) { /* dgesdd may not return on a NaN */
            rc = pg_error(PG_E_INVAL, "LQER: the residual at (%lld, %lld) is not finite", (long long)(i / (size_t)cols),
                          (long long)(i % (size_t)cols));
            goto out;
        }
    }
    lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)rows, (lapack_int)cols, e, (lapack_int)cols, s, u,
                                     (lapack_int)mn, vt, (lapack_int)cols);
    if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR) {
        rc = pg_error(PG_E_NOMEM, "LQER: out of memory in LAPACKE_dgesdd (%lld x %lld)", (long long)rows,
                      (long long)cols);
        goto out;
    }
    if (info < 0) {
        rc = pg_error(PG_E_LIB, "LAPACK: argument %d of dgesdd is invalid", (int)-info);
        goto out;
    }
    if (info > 0) {
        rc = pg_error(PG_E_LIB, "LQER: the SVD of the %lld x %lld residual did not converge (dgesdd info %d)",
                      (long long)rows, (long long)cols, (int)info);
        goto out;
    }
    /* A = U_r Σ_r, B = V_rᵀ, each pair's sign fixed by B's largest |entry| (the first on ties) */
    for (int k = 0; k < rank; k++) {
        const double *vk = vt + (size_t)k * (size_t)cols;
        int64_t jmax = 0;
        for (int64_t j = 1; j < cols; j++)
            if (fabs(vk[j]) > fabs(vk[jmax])) jmax = j;
        double sg = vk[jmax] < 0 ? -1.0 : 1.0;
        for (int64_t i = 0; i < rows; i++) a[i * rank + k] = sg * u[i * mn + k] * s[k];
        for (int64_t j = 0; j < cols; j++) b[(int64_t)k * cols + j] = sg * vk[j];
    }
    if (sv) memcpy(sv, s, (size_t)mn * sizeof *sv);
out:
    free(e);
    free(s);
    free(u);
    free(vt);
    return rc;
}

/* ---- step 2: quantization ---- */

/* The fp16 step max/div, kept positive and finite as pg_quant_row keeps its steps. */
static uint16_t step16(float mx, float div)
{
    uint16_t h = pg_f32_to_f16(mx / div);
    if ((h & 0x7fffu) == 0) h = 1;                  /* below fp16's range (an all-zero block): 2^-24 */
    else if ((h & 0x7fffu) >= 0x7c00u) h = 0x7bff; /* above it: 65504 */
    return h & 0x7fffu;
}

static float max_abs(const float *x, int64_t n)
{
    float mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fabsf(x[i]) > mx ? fabsf(x[i]) : mx;
    return mx;
}

/* q[i] = clamp(round_half_even(x[i] / s), lo, hi) with the fp16 step h. */
static void quantize(const float *x, int64_t n, uint16_t h, int lo, int hi, int8_t *q)
{
    float s = pg_f16_to_f32(h), flo = (float)lo, fhi = (float)hi;
    for (int64_t i = 0; i < n; i++) {
        float r = nearbyintf(x[i] / s);
        q[i] = (int8_t)(r > fhi ? fhi : r < flo ? flo : r);
    }
}

static int finite_all(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

int pg_lqer_pack(const float *a, const float *b, int64_t rows, int64_t cols, int rank, int mode, struct pg_lqer *out)
{
    memset(out, 0, sizeof *out);
    if (!a || !b || !shape_ok(mode, rows, cols, rank)) return bad_shape("pack", mode, rows, cols, rank);
    int64_t na = rows * rank, nb = (int64_t)rank * cols;
    if (!finite_all(a, na) || !finite_all(b, nb))
        return pg_error(PG_E_INVAL, "LQER: a factor of the %lld x %lld rank-%d correction is not finite",
                        (long long)rows, (long long)cols, rank);
    PG_TRY(pg_lqer_alloc(out, mode, rows, cols, rank));
    int alo, ahi, blo, bhi;
    code_range(mode, 0, &alo, &ahi);
    code_range(mode, 1, &blo, &bhi);
    if (mode == PG_LQER_ASYM) {
        out->sa[0] = step16(max_abs(a, na), 1.5f);
        quantize(a, na, out->sa[0], alo, ahi, out->qa);
        for (int64_t g = 0, i0 = 0; i0 < nb; g++, i0 += PG_LQER_GROUP) {
            int64_t len = nb - i0 < PG_LQER_GROUP ? nb - i0 : PG_LQER_GROUP;
            out->sb[g] = step16(max_abs(b + i0, len), 7.5f);
            quantize(b + i0, len, out->sb[g], blo, bhi, out->qb + i0);
        }
    } else {
        for (int64_t i = 0; i < rows; i++) {
            out->sa[i] = step16(max_abs(a + i * rank, rank), 7.0f);
            quantize(a + i * rank, rank, out->sa[i], alo, ahi, out->qa + i * rank);
        }
        for (int k = 0; k < rank; k++) {
            out->sb[k] = step16(max_abs(b + (int64_t)k * cols, cols), 7.0f);
            quantize(b + (int64_t)k * cols, cols, out->sb[k], blo, bhi, out->qb + (int64_t)k * cols);
        }
    }
    return 0;
}

int pg_lqer_fit(const float *w, const float *wq, int64_t rows, int64_t cols, int rank, int mode,
                struct pg_lqer *out)
{
    memset(out, 0, sizeof *out);
    if (!shape_ok(mode, rows, cols, rank)) return bad_shape("fit", mode, rows, cols, rank);
    int64_t na = rows * rank, nb = (int64_t)rank * cols;
    double *a = pg_malloc((size_t)na * sizeof *a), *b = pg_malloc((size_t)nb * sizeof *b);
    float *fa = pg_malloc((size_t)na * sizeof *fa), *fb = pg_malloc((size_t)nb * sizeof *fb);
    int rc = !a || !b || !fa || !fb ? PG_E_NOMEM : pg_lqer_svd(w, wq, rows, cols, rank, a, b, NULL);
    if (rc == 0) {
        for (int64_t i = 0; i < na; i++) fa[i] = (float)a[i];
        for (int64_t i = 0; i < nb; i++) fb[i] = (float)b[i];
        rc = pg_lqer_pack(fa, fb, rows, cols, rank, mode, out);
    }
    free(a);
    free(b);
    free(fa);
    free(fb);
    return rc;
}

/* ---- step 3: dequantization ---- */

void pg_lqer_apply(const struct pg_lqer *l, float *w)
{
    int64_t rows = l->rows, cols = l->cols;
    int r = l->rank, asym = l->mode == PG_LQER_ASYM;
    float sbk[PG_LQER_MAX_RANK]; /* sym: B's row scales */
    for (int k = 0; !asym && k < r; k++) sbk[k] = pg_f16_to_f32(l->sb[k]);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        float ai[PG_LQER_MAX_RANK], sa = pg_f16_to_f32(l->sa[asym ? 0 : i]);
        for (int k = 0; k < r; k++) ai[k] = (float)l->qa[i * r + k] * sa;
        float *wi = w + i * cols;
        for (int64_t j = 0; j < cols; j++) {
            float acc = 0;
            for (int k = 0; k < r; k++) {
                int64_t f = (int64_t)k * cols + j;
                float sb = asym ? pg_f16_to_f32(l->sb[f / PG_LQER_GROUP]) : sbk[k];
                acc += ai[k] * ((float)l->qb[f] * sb);
            }
            wi[j] += acc;
        }
    }
}

/* ---- reading ---- */

int pg_lqer_check(const struct pg_lqer *l, const char *what)
{
    if (!what) what = "LQER";
    if (!shape_ok(l->mode, l->rows, l->cols, l->rank))
        return pg_error(PG_E_FORMAT, "%s: bad LQER mode, shape or rank (mode %d, %lld x %lld, rank %d)", what, l->mode,
                        (long long)l->rows, (long long)l->cols, l->rank);
    if (!l->qa || !l->qb || !l->sa || !l->sb) return pg_error(PG_E_FORMAT, "%s: an LQER factor is missing", what);
    int r = l->rank;
    for (int f = 0; f < 2; f++) {
        int lo, hi;
        code_range(l->mode, f, &lo, &hi);
        const int8_t *q = f ? l->qb : l->qa;
        int64_t n = f ? (int64_t)r * l->cols : l->rows * r, w = f ? l->cols : r;
        for (int64_t i = 0; i < n; i++)
            if (q[i] < lo || q[i] > hi)
                return pg_error(PG_E_FORMAT, "%s: LQER code %d of %c at (%lld, %lld) is outside %d..%d", what, q[i],
                                f ? 'B' : 'A', (long long)(i / w), (long long)(i % w), lo, hi);
        const uint16_t *s = f ? l->sb : l->sa;
        int64_t ns = f ? pg_lqer_nsb(l->mode, l->rows, l->cols, r) : pg_lqer_nsa(l->mode, l->rows, l->cols, r);
        for (int64_t i = 0; i < ns; i++)
            if ((s[i] & 0x8000u) || s[i] == 0 || (s[i] & 0x7c00u) == 0x7c00u)
                return pg_error(PG_E_FORMAT, "%s: LQER scale %lld of %c is not a positive finite fp16 (0x%04x)", what,
                                (long long)i, f ? 'B' : 'A', (unsigned)s[i]);
    }
    return 0;
}

/* ---- the file form ---- */

uint64_t pg_lqer_bytes(int mode, int64_t rows, int64_t cols, int rank)
{
    if (!shape_ok(mode, rows, cols, rank)) return 0;
    return (uint64_t)rows * (uint64_t)rank + (uint64_t)rank * (uint64_t)cols +
           2 * (uint64_t)(pg_lqer_nsa(mode, rows, cols, rank) + pg_lqer_nsb(mode, rows, cols, rank));
}

void pg_lqer_serialize(const struct pg_lqer *l, unsigned char *out)
{
    size_t na = (size_t)l->rows * (size_t)l->rank, nb = (size_t)l->rank * (size_t)l->cols;
    memcpy(out, l->qa, na);
    memcpy(out + na, l->qb, nb);
    out += na + nb;
    int64_t nsa = pg_lqer_nsa(l->mode, l->rows, l->cols, l->rank), nsb = pg_lqer_nsb(l->mode, l->rows, l->cols, l->rank);
    for (int64_t i = 0; i < nsa; i++, out += 2) pg_le16_put(out, l->sa[i]);
    for (int64_t i = 0; i < nsb; i++, out += 2) pg_le16_put(out, l->sb[i]);
}

int pg_lqer_deserialize(struct pg_lqer *l, int mode, int64_t rows, int64_t cols, int rank, const unsigned char *p)
{
    PG_TRY(pg_lqer_alloc(l, mode, rows, cols, rank));
    size_t na = (size_t)rows * (size_t)rank, nb = (size_t)rank * (size_t)cols;
    memcpy(l->qa, p, na);
    memcpy(l->qb, p + na, nb);
    p += na + nb;
    int64_t nsa = pg_lqer_nsa(mode, rows, cols, rank), nsb = pg_lqer_nsb(mode, rows, cols, rank);
    for (int64_t i = 0; i < nsa; i++, p += 2) l->sa[i] = pg_le16_get(p);
    for (int64_t i = 0; i < nsb; i++, p += 2) l->sb[i] = pg_le16_get(p);
    return 0;
}
