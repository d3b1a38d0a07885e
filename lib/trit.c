/* trit.c: ternary and quinary weight codes (see trit.h). */
#define _POSIX_C_SOURCE 200809L
#include "trit.h"

#include "err.h"
#include "half.h"

#include <math.h>

#define F16_MIN_POS 0x0001u /* 2^-24, the scale of a group whose mean rounds to zero */
#define F16_INF 0x7c00u
#define POW5_10 9765625u    /* 5^10 < 2^24 */

static const char *name_of(const char *what) { return what ? what : "codes"; }

static int qmax_of(int levels) { return levels == 3 ? 1 : levels == 5 ? 2 : 0; }

int64_t pg_trit_ngroups(int64_t rows, int64_t cols)
{
    if (rows < 1 || cols < 1) return 0;
    return rows * ((cols + PG_TRIT_GROUP - 1) / PG_TRIT_GROUP);
}

/* ---- group quantization ---- */

int pg_trit_quantize(const float *w, int64_t rows, int64_t cols, int levels, int8_t *q, uint16_t *scales)
{
    int qmax = qmax_of(levels);
    if (rows < 1 || cols < 1 || !qmax)
        return pg_error(PG_E_INVAL, "trit: bad sizes or levels (%lld x %lld, %d levels)", (long long)rows,
                        (long long)cols, levels);
    int64_t per_row = (cols + PG_TRIT_GROUP - 1) / PG_TRIT_GROUP;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < per_row; g++) {
            int64_t c0 = g * PG_TRIT_GROUP, c1 = c0 + PG_TRIT_GROUP < cols ? c0 + PG_TRIT_GROUP : cols;
            const float *wg = w + r * cols;
            double sum = 0;
            for (int64_t c = c0; c < c1; c++) {
                if (!isfinite(wg[c]))
                    return pg_error(PG_E_INVAL, "trit: the weight at row %lld, column %lld is not finite",
                                    (long long)r, (long long)c);
                sum += fabs((double)wg[c]);
            }
            uint16_t h = pg_f32_to_f16((float)(sum / (double)(c1 - c0)));
            if (h == 0) h = F16_MIN_POS;
            if (h >= F16_INF)
                return pg_error(PG_E_INVAL, "trit: the scale of row %lld, group %lld (%g) is past fp16's range",
                                (long long)r, (long long)g, sum / (double)(c1 - c0));
            scales[r * per_row + g] = h;
            double s = pg_f16_to_f32(h);
            for (int64_t c = c0; c < c1; c++) {
                double v = rint((double)wg[c] / s);
                q[r * cols + c] = (int8_t)(v > qmax ? qmax : v < -qmax ? -qmax : v);
            }
        }
    return 0;
}

void pg_fake_quant_trit(const float *w, float *out, int64_t rows, int64_t cols, int levels)
{
    int qmax = levels == 5 ? 2 : 1;
    int64_t per_row = (cols + PG_TRIT_GROUP - 1) / PG_TRIT_GROUP;
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < per_row; g++) {
            int64_t c0 = g * PG_TRIT_GROUP, c1 = c0 + PG_TRIT_GROUP < cols ? c0 + PG_TRIT_GROUP : cols;
            const float *x = w + r * cols;
            float *y = out + r * cols;
            double sum = 0;
            for (int64_t c = c0; c < c1; c++) sum += fabs((double)x[c]);
            uint16_t h = pg_f32_to_f16((float)(sum / (double)(c1 - c0)));
            if (h == 0) h = F16_MIN_POS;
            if (!isfinite(sum) || h >= F16_INF) {
                for (int64_t c = c0; c < c1; c++) y[c] = x[c];
                continue;
            }
            double s = pg_f16_to_f32(h);
            int64_t nz = 0;
            for (int64_t c = c0; c < c1; c++) {
                double v = rint((double)x[c] / s);
                nz += (int64_t)fabs(v > qmax ? qmax : v < -qmax ? -qmax : v);
            }
            double f = levels == 5 ? s : nz ? s * (double)(c1 - c0) / (double)nz : 0;
            for (int64_t c = c0; c < c1; c++) {
                double v = rint((double)x[c] / s);
                v = v > qmax ? qmax : v < -qmax ? -qmax : v;
                y[c] = (float)((int8_t)v * f);
            }
        }
}

int pg_trit_dequantize(const int8_t *q, const uint16_t *scales, int64_t rows, int64_t cols, int levels, float *w,
                       const char *what)
{
    int qmax = qmax_of(levels);
    if (rows < 1 || cols < 1 || !qmax)
        return pg_error(PG_E_INVAL, "%s: bad sizes or levels (%lld x %lld, %d levels)", name_of(what),
                        (long long)rows, (long long)cols, levels);
    int64_t per_row = (cols + PG_TRIT_GROUP - 1) / PG_TRIT_GROUP;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < per_row; g++) {
            int64_t c0 = g * PG_TRIT_GROUP, c1 = c0 + PG_TRIT_GROUP < cols ? c0 + PG_TRIT_GROUP : cols;
            uint16_t h = scales[r * per_row + g];
            if (h == 0 || h >= F16_INF) /* zero, negative (sign bit), infinite or NaN */
                return pg_error(PG_E_FORMAT, "%s: the scale of row %lld, group %lld (fp16 0x%04x) is not positive",
                                name_of(what), (long long)r, (long long)g, h);
            const int8_t *qg = q + r * cols;
            int64_t nz = 0;
            for (int64_t c = c0; c < c1; c++) {
                if (qg[c] < -qmax || qg[c] > qmax)
                    return pg_error(PG_E_FORMAT, "%s: the code at row %lld, column %lld is %d, outside -%d..%d",
                                    name_of(what), (long long)r, (long long)c, qg[c], qmax, qmax);
                nz += qg[c] < 0 ? -qg[c] : qg[c];
            }
            double s = pg_f16_to_f32(h);
            /* ternary: the shrinkage fix q·s/mean|q| = q·s·n/Σ|q| (all-zero codes: zeros) */
            double f = levels == 5 ? s : nz ? s * (double)(c1 - c0) / (double)nz : 0;
            for (int64_t c = c0; c < c1; c++) w[r * cols + c] = (float)(qg[c] * f);
        }
    return 0;
}

/* ---- byte layouts ---- */

/* Digits per unit, units' bytes and radix of the three positional layouts. */
struct radix_layout {
    int digits, bytes, radix, offset; /* offset: code + offset is the digit */
    uint32_t full;                    /* radix^digits: the first value that is not a unit */
    const char *name;
};

static const struct radix_layout *radix_of(int layout)
{
    static const struct radix_layout base3 = {5, 1, 3, 1, 243, "base-3"};
    static const struct radix_layout quin3 = {3, 1, 5, 2, 125, "3-quins-per-byte"};
    static const struct radix_layout quin10 = {10, 3, 5, 2, POW5_10, "10-quins-per-3-bytes"};
    switch (layout) {
    case PG_TRIT_BASE3: return &base3;
    case PG_TRIT_QUIN3: return &quin3;
    case PG_TRIT_QUIN10: return &quin10;
    default: return NULL;
    }
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t pg_trit_packed_size(int layout, int64_t n, int64_t nnz)
{
    if (n < 0) return -1;
    if (layout == PG_TRIT_BITMASK) return nnz < 0 || nnz > n ? -1 : ceil_div(n, 8) + ceil_div(nnz, 8);
    const struct radix_layout *l = radix_of(layout);
    return l ? ceil_div(n, l->digits) * l->bytes : -1;
}

static int pack_radix(const int8_t *q, int64_t n, const struct radix_layout *l, uint8_t *out)
{
    int qmax = l->offset; /* the digit of code 0 is also the largest code */
    for (int64_t i0 = 0, u = 0; i0 < n; i0 += l->digits, u++) {
        int64_t m = n - i0 < l->digits ? n - i0 : l->digits;
        uint32_t v = 0;
        for (int64_t i = i0 + m - 1; i >= i0; i--) { /* Horner: the first code is the lowest digit */
            if (q[i] < -qmax || q[i] > qmax)
                return pg_error(PG_E_INVAL, "trit: code %lld is %d, outside the %s layout's -%d..%d", (long long)i,
                                q[i], l->name, qmax, qmax);
            v = v * (uint32_t)l->radix + (uint32_t)(q[i] + l->offset);
        }
        for (int b = 0; b < l->bytes; b++) out[u * l->bytes + b] = (uint8_t)(v >> (8 * b));
    }
    return 0;
}

static int unpack_radix(const uint8_t *in, int64_t n, const struct radix_layout *l, int8_t *q, const char *what)
{
    for (int64_t i0 = 0, u = 0; i0 < n; i0 += l->digits, u++) {
        int64_t m = n - i0 < l->digits ? n - i0 : l->digits;
        uint32_t v = 0, lim = 1;
        for (int b = 0; b < l->bytes; b++) v |= (uint32_t)in[u * l->bytes + b] << (8 * b);
        for (int64_t i = 0; i < m; i++) lim *= (uint32_t)l->radix;
        if (v >= l->full)
            return pg_error(PG_E_FORMAT, "%s: unit %lld of the %s codes is %u, not below %u", name_of(what),
                            (long long)u, l->name, v, l->full);
        if (v >= lim)
            return pg_error(PG_E_FORMAT, "%s: the last unit of the %s codes (%u) has nonzero padding digits",
                            name_of(what), l->name, v);
        for (int64_t i = i0; i < i0 + m; i++) {
            q[i] = (int8_t)((int)(v % (uint32_t)l->radix) - l->offset);
            v /= (uint32_t)l->radix;
        }
    }
    return 0;
}

static int pack_bitmask(const int8_t *q, int64_t n, uint8_t *out)
{
    int64_t nnz = 0, mbytes = ceil_div(n, 8);
    for (int64_t i = 0; i < n; i++) {
        if (q[i] < -1 || q[i] > 1)
            return pg_error(PG_E_INVAL, "trit: code %lld is %d, outside the bitmask layout's -1..1", (long long)i,
                            q[i]);
        nnz += q[i] != 0;
    }
    for (int64_t b = 0; b < mbytes + ceil_div(nnz, 8); b++) out[b] = 0;
    uint8_t *sign = out + mbytes;
    for (int64_t i = 0, k = 0; i < n; i++)
        if (q[i]) {
            out[i >> 3] |= (uint8_t)(0x80u >> (i & 7));
            if (q[i] < 0) sign[k >> 3] |= (uint8_t)(0x80u >> (k & 7));
            k++;
        }
    return 0;
}

/* @return whether the bits of `last`, the final byte of a packbits run of `bits` bits, past the
 * run's end are zero. */
static int pad_is_zero(uint8_t last, int64_t bits)
{
    int used = (int)(bits & 7);
    return used == 0 || (last & (0xffu >> used)) == 0;
}

static int unpack_bitmask(const uint8_t *in, int64_t len, int64_t n, int8_t *q, const char *what)
{
    int64_t mbytes = ceil_div(n, 8), nnz = 0;
    if (len < mbytes)
        return pg_error(PG_E_FORMAT, "%s: %lld packed bytes, the bitmask layout of %lld codes takes at least %lld",
                        name_of(what), (long long)len, (long long)n, (long long)mbytes);
    if (n > 0 && !pad_is_zero(in[mbytes - 1], n))
        return pg_error(PG_E_FORMAT, "%s: the nonzero mask has bits set past its %lld codes", name_of(what),
                        (long long)n);
    for (int64_t b = 0; b < mbytes; b++) nnz += __builtin_popcount(in[b]);
    int64_t want = mbytes + ceil_div(nnz, 8);
    if (len != want)
        return pg_error(PG_E_FORMAT,
                        "%s: %lld packed bytes, the bitmask layout of %lld codes with %lld nonzeros takes %lld",
                        name_of(what), (long long)len, (long long)n, (long long)nnz, (long long)want);
    const uint8_t *sign = in + mbytes;
    if (nnz > 0 && !pad_is_zero(sign[ceil_div(nnz, 8) - 1], nnz))
        return pg_error(PG_E_FORMAT, "%s: the sign bits have bits set past their %lld nonzeros", name_of(what),
                        (long long)nnz);
    for (int64_t i = 0, k = 0; i < n; i++) {
        if (!(in[i >> 3] & (0x80u >> (i & 7)))) {
            q[i] = 0;
            continue;
        }
        q[i] = sign[k >> 3] & (0x80u >> (k & 7)) ? -1 : 1;
        k++;
    }
    return 0;
}

int pg_trit_pack(const int8_t *q, int64_t n, int layout, uint8_t *out)
{
    if (n < 0) return pg_error(PG_E_INVAL, "trit: a negative code count (%lld)", (long long)n);
    if (layout == PG_TRIT_BITMASK) return pack_bitmask(q, n, out);
    const struct radix_layout *l = radix_of(layout);
    if (!l) return pg_error(PG_E_INVAL, "trit: unknown layout %d", layout);
    return pack_radix(q, n, l, out);
}

int pg_trit_unpack(const uint8_t *in, int64_t len, int64_t n, int layout, int8_t *q, const char *what)
{
    if (n < 0 || len < 0)
        return pg_error(PG_E_INVAL, "%s: a negative count (%lld codes, %lld bytes)", name_of(what), (long long)n,
                        (long long)len);
    if (layout == PG_TRIT_BITMASK) return unpack_bitmask(in, len, n, q, what);
    const struct radix_layout *l = radix_of(layout);
    if (!l) return pg_error(PG_E_INVAL, "%s: unknown layout %d", name_of(what), layout);
    int64_t want = pg_trit_packed_size(layout, n, 0);
    if (len != want)
        return pg_error(PG_E_FORMAT, "%s: %lld packed bytes, the %s layout of %lld codes takes %lld", name_of(what),
                        (long long)len, l->name, (long long)n, (long long)want);
    return unpack_radix(in, n, l, q, what);
}

int64_t pg_trit_pack_bound(int64_t n, int levels)
{
    if (n < 0 || !qmax_of(levels)) return -1;
    return 1 + pg_trit_packed_size(levels == 3 ? PG_TRIT_BASE3 : PG_TRIT_QUIN3, n, 0);
}

int pg_trit_pack_best(const int8_t *q, int64_t n, int levels, uint8_t *out, int64_t *len)
{
    if (n < 0 || !qmax_of(levels))
        return pg_error(PG_E_INVAL, "trit: bad count or levels (%lld codes, %d levels)", (long long)n, levels);
    int first = levels == 3 ? PG_TRIT_BASE3 : PG_TRIT_QUIN3, second = levels == 3 ? PG_TRIT_BITMASK : PG_TRIT_QUIN10;
    int64_t nnz = 0;
    for (int64_t i = 0; i < n; i++) nnz += q[i] != 0;
    int64_t a = pg_trit_packed_size(first, n, nnz), b = pg_trit_packed_size(second, n, nnz);
    int layout = b < a ? second : first;
    out[0] = (uint8_t)layout;
    PG_TRY(pg_trit_pack(q, n, layout, out + 1));
    *len = 1 + (b < a ? b : a);
    return 0;
}

int pg_trit_unpack_best(const uint8_t *in, int64_t len, int64_t n, int levels, int8_t *q, const char *what)
{
    if (!qmax_of(levels)) return pg_error(PG_E_INVAL, "%s: bad levels (%d)", name_of(what), levels);
    if (len < 1) return pg_error(PG_E_FORMAT, "%s: no layout byte", name_of(what));
    int layout = in[0];
    int fits = levels == 3 ? layout == PG_TRIT_BASE3 || layout == PG_TRIT_BITMASK
                           : layout == PG_TRIT_QUIN3 || layout == PG_TRIT_QUIN10;
    if (!fits)
        return pg_error(PG_E_FORMAT, "%s: layout byte %d is not a %s layout", name_of(what), layout,
                        levels == 3 ? "ternary" : "quinary");
    return pg_trit_unpack(in + 1, len - 1, n, layout, q, what);
}

/* ---- 5-bit log-delta scale codes ---- */

/* 2^(j/8), j = 0..7, correctly rounded. */
static const double pow2_eighths[8] = {1.0,
                                       1.0905077326652577,
                                       1.189207115002721,
                                       1.2968395546510096,
                                       1.4142135623730951,
                                       1.5422108254079407,
                                       1.681792830507429,
                                       1.8340080864093424};

/* Codes beyond this |k| decode past float's range for any fp16 base (2^±(128+24+…)). */
#define LOGDELTA_KMAX (8 * 200)

/* base · 2^(k/8) as a float (0 or inf when out of range). */
static float logdelta_value(double base, int64_t k)
{
    if (k > LOGDELTA_KMAX) return INFINITY;
    if (k < -LOGDELTA_KMAX) return 0;
    int64_t j = k & 7, e = (k - j) / 8;
    return (float)ldexp(base * pow2_eighths[j], (int)e);
}

int pg_trit_logdelta_encode(const float *s, int64_t n, uint16_t *base, uint8_t *codes)
{
    if (n < 1) return pg_error(PG_E_INVAL, "log-delta: no scales");
    for (int64_t i = 0; i < n; i++)
        if (!(s[i] > 0) || !isfinite(s[i]))
            return pg_error(PG_E_INVAL, "log-delta: scale %lld (%g) is not positive and finite", (long long)i,
                            (double)s[i]);
    uint16_t h = pg_f32_to_f16(s[0]);
    if (h == 0 || h >= F16_INF)
        return pg_error(PG_E_INVAL, "log-delta: the first scale %g is outside fp16's positive range", (double)s[0]);
    double b = pg_f16_to_f32(h);
    int64_t k = 0;
    for (int64_t i = 1; i < n; i++) {
        double t = rint(8 * log2((double)s[i] / b));
        int64_t want = t > LOGDELTA_KMAX ? LOGDELTA_KMAX + 1 : t < -LOGDELTA_KMAX ? -LOGDELTA_KMAX - 1 : (int64_t)t;
        int64_t d = want - k;
        d = d < -16 ? -16 : d > 15 ? 15 : d;
        k += d;
        float v = logdelta_value(b, k);
        if (!(v > 0) || !isfinite(v))
            return pg_error(PG_E_INVAL, "log-delta: scale %lld (%g) decodes past float's range", (long long)i,
                            (double)s[i]);
        codes[i - 1] = (uint8_t)(d + 16);
    }
    *base = h;
    return 0;
}

int pg_trit_logdelta_decode(uint16_t base, const uint8_t *codes, int64_t n, float *s, const char *what)
{
    if (n < 1) return pg_error(PG_E_INVAL, "%s: no scales", name_of(what));
    if (base == 0 || base >= F16_INF)
        return pg_error(PG_E_FORMAT, "%s: the log-delta base (fp16 0x%04x) is not positive and finite",
                        name_of(what), base);
    double b = pg_f16_to_f32(base);
    int64_t k = 0;
    s[0] = (float)b;
    for (int64_t i = 1; i < n; i++) {
        if (codes[i - 1] > 31)
            return pg_error(PG_E_FORMAT, "%s: log-delta code %lld is %d, not a 5-bit code", name_of(what),
                            (long long)(i - 1), codes[i - 1]);
        k += (int64_t)codes[i - 1] - 16;
        s[i] = logdelta_value(b, k);
        if (!(s[i] > 0) || !isfinite(s[i]))
            return pg_error(PG_E_FORMAT, "%s: log-delta scale %lld decodes past float's range", name_of(what),
                            (long long)i);
    }
    return 0;
}
