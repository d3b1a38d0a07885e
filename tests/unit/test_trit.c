/* test_trit.c: lib/trit.c against computations written here from the rules in trit.h.
 *
 *   quantization: a float64 reference (its own fp16 rounding by frexp/ldexp, its own half-to-even
 *         rounding) on shapes around the 128-element group (short last groups, one column),
 *         all-zero and tiny groups, hand-made ties; the shrinkage fix keeps mean|ŵ| = s_g; bad
 *         weights, codes and scales are refused.
 *   layouts: hand-computed bytes for each layout; a reference packer (sums of powers, bit by
 *         bit) for every length 0..200 and several densities; round trips; the size formulas;
 *         the best packer's choice; corrupt inputs refused with one line naming the stream.
 *   log-delta: a hand example; the 1/16-octave bound on random sequences; no drift over 100,000
 *         scales; recovery after a jump; a reference decoder; corrupt codes and bases.
 */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/err.h"
#include "../../lib/half.h"
#include "../../lib/rng.h"
#include "../../lib/trit.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the quantization reference ---- */

/* x ≥ 0 rounded to the nearest fp16 value, ties to even, in double (inf past 65504). */
static double ref_f16(double x)
{
    if (x == 0) return 0;
    int e;
    frexp(x, &e);                      /* x in [2^(e-1), 2^e) */
    int ex = e - 1 < -14 ? -14 : e - 1; /* fp16: 10 fraction bits; subnormals step 2^-24 */
    double ulp = ldexp(1, ex - 10), r = nearbyint(x / ulp) * ulp;
    return r > 65504 ? INFINITY : r;
}

/* Half to even, by hand. */
static double ref_round(double x)
{
    double f = floor(x), d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return fmod(f, 2) == 0 ? f : f + 1;
}

/* s[rows × groups] as doubles, q, and the dequantized values wd, from the rules. */
static void ref_quant(const float *w, int rows, int cols, int levels, int8_t *q, double *s, double *wd)
{
    int qmax = levels == 3 ? 1 : 2, per_row = (cols + 127) / 128;
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < per_row; g++) {
            int c0 = 128 * g, n = cols - c0 < 128 ? cols - c0 : 128;
            const float *x = w + (size_t)r * cols + c0;
            double sum = 0;
            for (int i = 0; i < n; i++) sum += fabs((double)x[i]);
            double sg = ref_f16((float)(sum / n));
            if (sg == 0) sg = ldexp(1, -24);
            s[r * per_row + g] = sg;
            double qabs = 0;
            for (int i = 0; i < n; i++) {
                double v = ref_round((double)x[i] / sg);
                v = v > qmax ? qmax : v < -qmax ? -qmax : v;
                q[(size_t)r * cols + c0 + i] = (int8_t)v;
                qabs += fabs(v);
            }
            for (int i = 0; i < n; i++) {
                double v = q[(size_t)r * cols + c0 + i];
                wd[(size_t)r * cols + c0 + i] = levels == 5 ? v * sg : qabs == 0 ? 0 : v * sg / (qabs / n);
            }
        }
}

/* Rows of normals with a per-row spread; in row 0 the second group is all zero, in the last row
 * the first group is tiny (its mean rounds to fp16 zero), some outliers. */
static void make_w(float *w, int rows, int cols, struct pg_rng *g)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double v = pg_rng_normal(g) * 0.02 * (1 + r % 4);
            if (pg_rng_below(g, 50) == 0) v *= 8;
            if (r == 0 && c >= 128 && c < 256) v = 0;
            if (r == rows - 1 && rows > 1 && c < 128) v = v * 1e-7;
            w[(size_t)r * cols + c] = (float)v;
        }
}

/* ---- the layout references ---- */

static int64_t ref_pack(const int8_t *q, int64_t n, int layout, uint8_t *out)
{
    int64_t len = 0;
    if (layout == PG_TRIT_BITMASK) {
        int64_t mb = (n + 7) / 8, nnz = 0;
        memset(out, 0, (size_t)mb);
        for (int64_t i = 0; i < n; i++)
            if (q[i] != 0) out[i / 8] |= (uint8_t)(1u << (7 - i % 8)), nnz++;
        memset(out + mb, 0, (size_t)((nnz + 7) / 8));
        for (int64_t i = 0, k = 0; i < n; i++)
            if (q[i] != 0) {
                if (q[i] < 0) out[mb + k / 8] |= (uint8_t)(1u << (7 - k % 8));
                k++;
            }
        return mb + (nnz + 7) / 8;
    }
    int per = layout == PG_TRIT_BASE3 ? 5 : layout == PG_TRIT_QUIN3 ? 3 : 10;
    int base = layout == PG_TRIT_BASE3 ? 3 : 5, off = layout == PG_TRIT_BASE3 ? 1 : 2;
    for (int64_t i0 = 0; i0 < n; i0 += per) {
        uint64_t v = 0, p = 1;
        for (int64_t i = i0; i < i0 + per && i < n; i++, p *= (uint64_t)base) v += (uint64_t)(q[i] + off) * p;
        out[len++] = (uint8_t)(v & 0xff);
        if (layout == PG_TRIT_QUIN10) out[len++] = (uint8_t)(v >> 8 & 0xff), out[len++] = (uint8_t)(v >> 16);
    }
    return len;
}

static int64_t count_nz(const int8_t *q, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += q[i] != 0;
    return k;
}

/* A stream of n codes in -qmax..qmax with about `dense` of them nonzero. */
static void make_codes(int8_t *q, int64_t n, int qmax, double dense, struct pg_rng *g)
{
    for (int64_t i = 0; i < n; i++) {
        if (pg_rng_uniform(g) >= dense) {
            q[i] = 0;
            continue;
        }
        int v = 1 + (int)pg_rng_below(g, (uint64_t)qmax);
        q[i] = (int8_t)(pg_rng_below(g, 2) ? -v : v);
    }
}

/* The call failed with PG_E_FORMAT and one line naming "layer7.codes". */
static void refused(int rc, const char *name)
{
    const char *m = pg_error_message();
    int good = rc == PG_E_FORMAT && strstr(m, "layer7.codes") && !strchr(m, '\n');
    ok(good, "%s is refused", name);
    if (!good) diag("rc %d, message: %s", rc, m);
    else diag("%s", m);
}

static const int layouts[4] = {PG_TRIT_BASE3, PG_TRIT_BITMASK, PG_TRIT_QUIN3, PG_TRIT_QUIN10};
static const char *layout_names[5] = {"", "base-3", "bitmask", "3-quins", "10-quins"};

/* ---- log-delta reference decoder and error ---- */

static double ref_decode(uint16_t base, const uint8_t *codes, int64_t i)
{
    int64_t k = 0;
    for (int64_t j = 0; j < i; j++) k += codes[j] - 16;
    return pg_f16_to_f32(base) * exp2((double)k / 8);
}

static double log_err(float got, float want) { return fabs(log2((double)got / (double)want)); }

/* pg_fake_quant_trit: the codes' dequantized values, bit for bit, in place too; a non-finite
 * group copied. */
static void test_fake_quant(void)
{
    for (int levels = 3; levels <= 5; levels += 2) {
        int64_t rows = 5, cols = 300, n = rows * cols, ng = pg_trit_ngroups(rows, cols);
        float *w = malloc((size_t)n * sizeof *w), *ref = malloc((size_t)n * sizeof *ref), *got = malloc((size_t)n * sizeof *got);
        int8_t *q = malloc((size_t)n);
        uint16_t *sc = malloc((size_t)ng * sizeof *sc);
        struct pg_rng r;
        pg_rng_seed(&r, 99 + (uint64_t)levels);
        for (int64_t i = 0; i < n; i++) w[i] = (float)(0.05 * pg_rng_normal(&r));
        for (int64_t i = 0; i < 128; i++) w[cols + i] = 0; /* an all-zero group */
        if (pg_trit_quantize(w, rows, cols, levels, q, sc) || pg_trit_dequantize(q, sc, rows, cols, levels, ref, "t"))
            bail_out("reference");
        pg_fake_quant_trit(w, got, rows, cols, levels);
        ok(!memcmp(ref, got, (size_t)n * sizeof *got), "fake quant, %d levels: pg_trit_dequantize(pg_trit_quantize(w))",
           levels);
        memcpy(got, w, (size_t)n * sizeof *got);
        pg_fake_quant_trit(got, got, rows, cols, levels);
        ok(!memcmp(ref, got, (size_t)n * sizeof *got), "fake quant, %d levels, in place: the same", levels);
        w[3 * cols + 200] = INFINITY;
        pg_fake_quant_trit(w, got, rows, cols, levels);
        int copied = 1, rest = 1;
        for (int64_t c = 128; c < 256; c++) copied &= got[3 * cols + c] == w[3 * cols + c];
        for (int64_t c = 0; c < 128; c++) rest &= got[3 * cols + c] == ref[3 * cols + c];
        ok(copied && rest, "fake quant, %d levels: a group with an infinity is copied, its neighbours quantized", levels);
        free(w), free(ref), free(got), free(q), free(sc);
    }
}

int main(void)
{
    test_fake_quant();
    struct pg_rng g;
    pg_rng_seed(&g, 2086);
    char what[] = "layer7.codes";

    /* ---- quantization against the reference ---- */
    static const struct { int rows, cols; } shapes[] = {{4, 300}, {3, 128}, {5, 129}, {2, 127}, {6, 1}, {3, 256}};
    for (int levels = 3; levels <= 5; levels += 2)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            int rows = shapes[k].rows, cols = shapes[k].cols;
            int64_t ng = pg_trit_ngroups(rows, cols);
            size_t nw = (size_t)rows * cols;
            float *w = malloc(nw * sizeof *w), *wd = malloc(nw * sizeof *wd);
            int8_t *q = malloc(nw), *qr = malloc(nw);
            uint16_t *sc = malloc((size_t)ng * sizeof *sc);
            double *sr = malloc((size_t)ng * sizeof *sr), *wr = malloc(nw * sizeof *wr);
            if (!w || !wd || !q || !qr || !sc || !sr || !wr) bail_out("out of memory");
            make_w(w, rows, cols, &g);
            is_int(ng, (int64_t)rows * ((cols + 127) / 128), "%d x %d: %lld groups", rows, cols, (long long)ng);
            int rc = pg_trit_quantize(w, rows, cols, levels, q, sc);
            ref_quant(w, rows, cols, levels, qr, sr, wr);
            int bad_s = 0, bad_q = 0, bad_w = 0;
            for (int64_t i = 0; i < ng; i++) bad_s += (double)pg_f16_to_f32(sc[i]) != sr[i];
            for (size_t i = 0; i < nw; i++) bad_q += q[i] != qr[i];
            int rd = pg_trit_dequantize(q, sc, rows, cols, levels, wd, what);
            for (size_t i = 0; i < nw; i++) bad_w += fabs(wd[i] - wr[i]) > fabs(wr[i]) * 0x1p-23;
            ok(rc == 0 && rd == 0 && !bad_s && !bad_q && !bad_w,
               "%d levels, %d x %d: scales, codes and dequantized values as the reference (%d, %d, %d differ)",
               levels, rows, cols, bad_s, bad_q, bad_w);
            if (cols == 300) {
                ok(sc[1] == 0x0001 && sr[1] == ldexp(1, -24), "an all-zero group stores 2^-24 (0x%04x)", sc[1]);
                int zero = 1;
                for (int c = 128; c < 256; c++) zero &= q[c] == 0 && wd[c] == 0;
                ok(zero, "and its codes and values are 0");
                ok(sc[(rows - 1) * 3] == 0x0001, "a group whose mean is below 2^-25 stores 2^-24 too (0x%04x)",
                   sc[(rows - 1) * 3]);
            }
            /* the rule's own properties: the ternary fix keeps each group's L1 norm, quinary is q·s */
            if (cols == 300 && levels == 3) {
                double worst = 0, worst_w = 0;
                for (int r = 0; r < rows; r++)
                    for (int gi = 0; gi < 3; gi++) {
                        int c0 = 128 * gi, n = gi == 2 ? 44 : 128;
                        double aq = 0, aw = 0, ax = 0, s = pg_f16_to_f32(sc[r * 3 + gi]);
                        for (int i = 0; i < n; i++)
                            aq += fabs(wd[r * cols + c0 + i]), aw += q[r * cols + c0 + i] != 0,
                                ax += fabs(w[r * cols + c0 + i]);
                        if (aw == 0 || s < 0x1p-14) continue;
                        worst = fmax(worst, fabs(aq / n - s) / s);
                        worst_w = fmax(worst_w, fabs(aq / n - ax / n) / (ax / n));
                    }
                ok(worst <= 1e-6, "ternary: mean|w^| = s_g in every group (worst relative gap %.2g)", worst);
                ok(worst_w <= 0x1p-11 + 1e-6, "and so mean|w^| = mean|w| up to fp16's rounding (worst %.2g)", worst_w);
            }
            if (levels == 5) {
                int exact = 1, ranged = 1;
                for (size_t i = 0; i < nw; i++) {
                    exact &= wd[i] == (float)(q[i] * pg_f16_to_f32(sc[(i / cols) * ((cols + 127) / 128) +
                                                                     (i % cols) / 128]));
                    ranged &= q[i] >= -2 && q[i] <= 2;
                }
                ok(exact && ranged, "quinary %d x %d: codes in -2..2, w^ = q * s_g", rows, cols);
            }
            free(w), free(wd), free(q), free(qr), free(sc), free(sr), free(wr);
        }

    /* ties, by hand: mean|w| = 1 exactly, w/s = ±0.5, ±1.5 */
    {
        float w[6] = {0.5f, 1.5f, -0.5f, -1.5f, 1.0f, 1.0f}, wd[6];
        int8_t q[6];
        uint16_t s;
        static const int8_t t3[6] = {0, 1, 0, -1, 1, 1}, t5[6] = {0, 2, 0, -2, 1, 1};
        static const float d3[6] = {0, 1.5f, 0, -1.5f, 1.5f, 1.5f};
        int rc = pg_trit_quantize(w, 1, 6, 3, q, &s);
        ok(rc == 0 && s == 0x3c00 && !memcmp(q, t3, 6), "ternary ties: 0.5 -> 0 (half to even), 1.5 -> 2 -> 1");
        rc = pg_trit_dequantize(q, &s, 1, 6, 3, wd, what);
        ok(rc == 0 && !memcmp(wd, d3, sizeof d3), "the fix: q * 1 / (4/6) = 1.5 q");
        rc = pg_trit_quantize(w, 1, 6, 5, q, &s);
        ok(rc == 0 && s == 0x3c00 && !memcmp(q, t5, 6), "quinary ties: 0.5 -> 0, 1.5 -> 2, -1.5 -> -2");
        float w2[4] = {2.5f, -0.5f, 0.5f, 0.5f};
        rc = pg_trit_quantize(w2, 1, 4, 5, q, &s);
        ok(rc == 0 && q[0] == 2 && q[1] == 0 && q[2] == 0, "2.5 -> 2 (even, and the clamp)");
    }

    /* refusals */
    {
        float w[4] = {0.1f, NAN, 0.3f, 0.4f}, big[2] = {70000.0f, -70000.0f}, wd[4];
        int8_t q[4] = {0, 1, -1, 0};
        uint16_t s[2] = {0x3c00, 0x3c00};
        is_int(pg_trit_quantize(w, 1, 4, 4, q, s), PG_E_INVAL, "4 levels are refused");
        is_int(pg_trit_quantize(w, 0, 4, 3, q, s), PG_E_INVAL, "0 rows are refused");
        is_int(pg_trit_quantize(w, 1, 4, 3, q, s), PG_E_INVAL, "a NaN weight is refused");
        is_int(pg_trit_quantize(big, 1, 2, 3, q, s), PG_E_INVAL, "a mean past fp16's range is refused");
        int8_t q2[4] = {0, 2, -1, 0};
        refused(pg_trit_dequantize(q2, s, 1, 4, 3, wd, what), "a ternary code of 2");
        int8_t q3[4] = {0, -3, -1, 0};
        refused(pg_trit_dequantize(q3, s, 1, 4, 5, wd, what), "a quinary code of -3");
        uint16_t s0 = 0, sn = 0xbc00, si = 0x7c00;
        refused(pg_trit_dequantize(q, &s0, 1, 4, 3, wd, what), "a zero scale");
        refused(pg_trit_dequantize(q, &sn, 1, 4, 3, wd, what), "a negative scale");
        refused(pg_trit_dequantize(q, &si, 1, 4, 5, wd, what), "an infinite scale");
    }

    /* ---- layouts: hand-computed bytes ---- */
    {
        uint8_t out[16];
        int8_t back[16];
        static const int8_t t[7] = {1, 0, -1, 1, 1, 0, -1};
        /* digits 2,1,0,2,2 -> 2 + 3 + 0 + 54 + 162 = 221; tail digits 1,0 -> 1 */
        int rc = pg_trit_pack(t, 7, PG_TRIT_BASE3, out);
        ok(rc == 0 && out[0] == 221 && out[1] == 1, "base-3 of 1 0 -1 1 1 0 -1: 221 1 (got %d %d)", out[0], out[1]);
        static const int8_t b[10] = {1, 0, -1, 0, 0, 0, 0, -1, 1, 0};
        /* mask 10100001 10(000000), signs of 1 -1 -1 1: 0110(0000) */
        rc = pg_trit_pack(b, 10, PG_TRIT_BITMASK, out);
        ok(rc == 0 && out[0] == 0xa1 && out[1] == 0x80 && out[2] == 0x60, "bitmask: a1 80 60 (got %02x %02x %02x)",
           out[0], out[1], out[2]);
        static const int8_t q3[4] = {2, -2, 0, 1};
        /* digits 4,0,2 -> 4 + 0 + 50 = 54; tail digit 3 */
        rc = pg_trit_pack(q3, 4, PG_TRIT_QUIN3, out);
        ok(rc == 0 && out[0] == 54 && out[1] == 3, "3 quins per byte of 2 -2 0 1: 54 3 (got %d %d)", out[0], out[1]);
        static const int8_t q10[11] = {-2, -1, 0, 1, 2, 2, 1, 0, -1, -2, 1};
        /* digits 0 1 2 3 4 4 3 2 1 0: 5 + 50 + 375 + 2500 + 12500 + 46875 + 156250 + 390625 = 609180
         * = 0x094b9c; tail digit 3 */
        static const uint8_t w10[6] = {0x9c, 0x4b, 0x09, 0x03, 0x00, 0x00};
        rc = pg_trit_pack(q10, 11, PG_TRIT_QUIN10, out);
        ok(rc == 0 && !memcmp(out, w10, 6), "10 quins per 3 bytes: 9c 4b 09 03 00 00");
        rc = pg_trit_unpack(w10, 6, 11, PG_TRIT_QUIN10, back, what);
        ok(rc == 0 && !memcmp(back, q10, 11), "and back");
        int8_t bad[1] = {2};
        is_int(pg_trit_pack(bad, 1, PG_TRIT_BASE3, out), PG_E_INVAL, "packing a 2 as base-3 is refused");
        is_int(pg_trit_pack(bad, 1, PG_TRIT_BITMASK, out), PG_E_INVAL, "and as a bitmask");
        bad[0] = -3;
        is_int(pg_trit_pack(bad, 1, PG_TRIT_QUIN10, out), PG_E_INVAL, "packing a -3 as quins is refused");
        is_int(pg_trit_pack(bad, 1, 9, out), PG_E_INVAL, "an unknown layout is refused");
    }

    /* ---- layouts: every length 0..200, several densities, against the reference packer ---- */
    {
        int8_t q[200], back[200];
        uint8_t got[200], want[200];
        for (int li = 0; li < 4; li++) {
            int layout = layouts[li], qmax = layout <= PG_TRIT_BITMASK ? 1 : 2, bad_bytes = 0, bad_size = 0,
                bad_trip = 0;
            for (int64_t n = 0; n <= 200; n++)
                for (int d = 0; d < 4; d++) {
                    make_codes(q, n, qmax, (double[]){0, 0.1, 0.6, 1}[d], &g);
                    int64_t nnz = count_nz(q, n), size = pg_trit_packed_size(layout, n, nnz);
                    int64_t formula = layout == PG_TRIT_BASE3     ? (n + 4) / 5
                                      : layout == PG_TRIT_BITMASK ? (n + 7) / 8 + (nnz + 7) / 8
                                      : layout == PG_TRIT_QUIN3   ? (n + 2) / 3
                                                                  : 3 * ((n + 9) / 10);
                    memset(got, 0xee, sizeof got);
                    int64_t wl = ref_pack(q, n, layout, want);
                    int rc = pg_trit_pack(q, n, layout, got);
                    bad_size += size != formula || wl != formula;
                    bad_bytes += rc != 0 || memcmp(got, want, (size_t)wl) != 0 || (wl < 200 && got[wl] != 0xee);
                    memset(back, 0x55, sizeof back);
                    rc = pg_trit_unpack(got, wl, n, layout, back, what);
                    if (rc && !bad_trip) diag("n %lld: %s", (long long)n, pg_error_message());
                    bad_trip += rc != 0 || memcmp(back, q, (size_t)n) != 0;
                }
            ok(!bad_size, "%s: the size is its formula for n = 0..200 (%d differ)", layout_names[layout], bad_size);
            ok(!bad_bytes, "%s: the bytes are the reference packer's (%d differ)", layout_names[layout], bad_bytes);
            ok(!bad_trip, "%s: unpack(pack(q)) = q (%d differ)", layout_names[layout], bad_trip);
        }
        is_int(pg_trit_packed_size(7, 10, 0), -1, "the size of an unknown layout is -1");
        is_int(pg_trit_packed_size(PG_TRIT_BITMASK, 10, 11), -1, "so is a bitmask with more nonzeros than codes");
    }

    /* ---- the best packer ---- */
    {
        enum { N = 1000 };
        int8_t q[N], back[N];
        uint8_t out[N + 1];
        int64_t len = 0;
        make_codes(q, N, 1, 0.1, &g);
        int rc = pg_trit_pack_best(q, N, 3, out, &len);
        ok(rc == 0 && out[0] == PG_TRIT_BITMASK && len == 1 + 125 + (count_nz(q, N) + 7) / 8,
           "mostly zeros: bitmask (%lld bytes against base-3's 200)", (long long)len - 1);
        make_codes(q, N, 1, 2.0 / 3, &g);
        rc = pg_trit_pack_best(q, N, 3, out, &len);
        ok(rc == 0 && out[0] == PG_TRIT_BASE3 && len == 201, "uniform trits: base-3 (bitmask would take %lld)",
           (long long)pg_trit_packed_size(PG_TRIT_BITMASK, N, count_nz(q, N)));
        make_codes(q, N, 2, 0.8, &g);
        rc = pg_trit_pack_best(q, N, 5, out, &len);
        ok(rc == 0 && out[0] == PG_TRIT_QUIN10 && len == 301, "1000 quins: 10 per 3 bytes (300 against 334)");
        rc = pg_trit_pack_best(q, 11, 5, out, &len);
        ok(rc == 0 && out[0] == PG_TRIT_QUIN3 && len == 5, "11 quins: 3 per byte (4 against 6)");
        rc = pg_trit_pack_best(q, 16, 5, out, &len);
        ok(rc == 0 && out[0] == PG_TRIT_QUIN3 && len == 7, "16 quins: a tie (6 and 6) keeps 3 per byte");
        int bad = 0;
        for (int levels = 3; levels <= 5; levels += 2)
            for (int64_t n = 0; n <= 200; n++)
                for (int d = 0; d < 3; d++) {
                    make_codes(q, n, levels / 2, (double[]){0.05, 0.5, 0.9}[d], &g);
                    int64_t nnz = count_nz(q, n);
                    int64_t a = pg_trit_packed_size(levels == 3 ? PG_TRIT_BASE3 : PG_TRIT_QUIN3, n, nnz);
                    int64_t b = pg_trit_packed_size(levels == 3 ? PG_TRIT_BITMASK : PG_TRIT_QUIN10, n, nnz);
                    rc = pg_trit_pack_best(q, n, levels, out, &len);
                    int r2 = pg_trit_unpack_best(out, len, n, levels, back, what);
                    bad += rc || r2 || len != 1 + (a < b ? a : b) || len > pg_trit_pack_bound(n, levels) ||
                           memcmp(back, q, (size_t)n) != 0;
                }
        ok(!bad, "n = 0..200, both levels: the smaller layout, within the bound, and back (%d wrong)", bad);
        is_int(pg_trit_pack_best(q, 10, 4, out, &len), PG_E_INVAL, "4 levels are refused");
    }

    /* ---- corrupt packed streams ---- */
    {
        int8_t q[40], back[40];
        uint8_t buf[64];
        int64_t len;
        make_codes(q, 12, 1, 0.5, &g);
        pg_trit_pack_best(q, 12, 3, buf, &len);
        buf[0] = 0;
        refused(pg_trit_unpack_best(buf, len, 12, 3, back, what), "layout byte 0");
        buf[0] = 99;
        refused(pg_trit_unpack_best(buf, len, 12, 3, back, what), "layout byte 99");
        buf[0] = PG_TRIT_QUIN3;
        refused(pg_trit_unpack_best(buf, len, 12, 3, back, what), "a quinary layout for ternary codes");
        refused(pg_trit_unpack_best(buf, 0, 12, 3, back, what), "an empty stream");

        pg_trit_pack(q, 12, PG_TRIT_BASE3, buf); /* 3 bytes */
        refused(pg_trit_unpack(buf, 2, 12, PG_TRIT_BASE3, back, what), "a base-3 stream one byte short");
        refused(pg_trit_unpack(buf, 4, 12, PG_TRIT_BASE3, back, what), "a base-3 stream one byte long");
        buf[1] = 243;
        refused(pg_trit_unpack(buf, 3, 12, PG_TRIT_BASE3, back, what), "base-3 byte 243");
        pg_trit_pack(q, 12, PG_TRIT_BASE3, buf);
        buf[2] = 9; /* 2 codes left: at most 3^2 - 1 = 8 */
        refused(pg_trit_unpack(buf, 3, 12, PG_TRIT_BASE3, back, what), "a base-3 tail with a padding digit");
        buf[2] = 8;
        is_int(pg_trit_unpack(buf, 3, 12, PG_TRIT_BASE3, back, what), 0, "while tail byte 8 is two digits 2 2");

        make_codes(q, 12, 2, 0.5, &g);
        pg_trit_pack(q, 12, PG_TRIT_QUIN3, buf);
        buf[0] = 125;
        refused(pg_trit_unpack(buf, 4, 12, PG_TRIT_QUIN3, back, what), "3-quin byte 125");
        pg_trit_pack(q, 13, PG_TRIT_QUIN3, buf);
        buf[4] = 5;
        refused(pg_trit_unpack(buf, 5, 13, PG_TRIT_QUIN3, back, what), "a 3-quin tail with a padding digit");
        pg_trit_pack(q, 12, PG_TRIT_QUIN10, buf); /* 6 bytes */
        refused(pg_trit_unpack(buf, 5, 12, PG_TRIT_QUIN10, back, what), "a 10-quin stream one byte short");
        buf[0] = 0xff, buf[1] = 0xff, buf[2] = 0xff;
        refused(pg_trit_unpack(buf, 6, 12, PG_TRIT_QUIN10, back, what), "10-quin word 0xffffff");
        buf[0] = 0xf8, buf[1] = 0x02, buf[2] = 0x95; /* 0x9502f8 = 5^10 - 1: ten digits 4 */
        ok(pg_trit_unpack(buf, 6, 12, PG_TRIT_QUIN10, back, what) == 0 && back[0] == 2 && back[9] == 2,
           "while word 5^10 - 1 is ten codes 2");
        buf[0] = 0xf9; /* 5^10 */
        refused(pg_trit_unpack(buf, 6, 12, PG_TRIT_QUIN10, back, what), "10-quin word 5^10");
        pg_trit_pack(q, 12, PG_TRIT_QUIN10, buf);
        buf[3] = 25, buf[4] = 0, buf[5] = 0; /* 2 codes left: at most 24 */
        refused(pg_trit_unpack(buf, 6, 12, PG_TRIT_QUIN10, back, what), "a 10-quin tail with a padding digit");

        static const int8_t t[10] = {1, 0, -1, 0, 0, 0, 0, -1, 1, 0}; /* a1 80 60 */
        pg_trit_pack(t, 10, PG_TRIT_BITMASK, buf);
        refused(pg_trit_unpack(buf, 2, 10, PG_TRIT_BITMASK, back, what), "a bitmask without its sign byte");
        refused(pg_trit_unpack(buf, 4, 10, PG_TRIT_BITMASK, back, what), "a bitmask with a byte too many");
        refused(pg_trit_unpack(buf, 1, 10, PG_TRIT_BITMASK, back, what), "a bitmask shorter than its mask");
        buf[1] = 0xa0;
        refused(pg_trit_unpack(buf, 3, 10, PG_TRIT_BITMASK, back, what), "a mask bit past the codes");
        buf[1] = 0x80, buf[2] = 0x68;
        refused(pg_trit_unpack(buf, 3, 10, PG_TRIT_BITMASK, back, what), "a sign bit past the nonzeros");
        buf[2] = 0x60;
        ok(pg_trit_unpack(buf, 3, 10, PG_TRIT_BITMASK, back, what) == 0 && !memcmp(back, t, 10),
           "the repaired bitmask decodes");
    }

    /* ---- log-delta scale codes ---- */
    {
        /* 1, 2, 2^(11/8), 2^(-3/8): k = 0, 8, 11, -3; steps 8, 3, -14; codes 24, 19, 2 */
        float s[4] = {1, 2, (float)exp2(11.0 / 8), (float)exp2(-3.0 / 8)}, d[4];
        uint16_t base = 0;
        uint8_t c[3];
        int rc = pg_trit_logdelta_encode(s, 4, &base, c);
        ok(rc == 0 && base == 0x3c00 && c[0] == 24 && c[1] == 19 && c[2] == 2, "hand example: base 1, codes %d %d %d",
           c[0], c[1], c[2]);
        rc = pg_trit_logdelta_decode(base, c, 4, d, what);
        int same = 1;
        for (int i = 0; i < 4; i++) same &= fabs(d[i] - s[i]) <= 0x1p-23 * s[i];
        ok(rc == 0 && same, "and back to the same scales");
        float j2[2] = {1, 1000};
        rc = pg_trit_logdelta_encode(j2, 2, &base, c);
        ok(rc == 0 && c[0] == 31, "a factor 1000 saturates at code 31 (+15/8 octave)");

        /* random sequences with every step within [2^-2, 2^1.875]: the bound, and the reference */
        enum { N = 100000 };
        float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
        uint8_t *codes = malloc(N);
        if (!x || !y || !codes) bail_out("out of memory");
        double worst = 0, worst_ref = 0;
        for (int t = 0; t < 20; t++) {
            x[0] = (float)(0.01 * (1 + pg_rng_uniform(&g)));
            for (int i = 1; i < 500; i++) { /* a step out of [1e-20, 1e20] becomes a factor 1 */
                double v = x[i - 1] * exp2(-2 + 3.875 * pg_rng_uniform(&g));
                x[i] = v > 1e20 || v < 1e-20 ? x[i - 1] : (float)v;
            }
            rc = pg_trit_logdelta_encode(x, 500, &base, codes);
            int r2 = pg_trit_logdelta_decode(base, codes, 500, y, what);
            if (rc || r2) {
                worst = INFINITY;
                break;
            }
            for (int i = 0; i < 500; i++) {
                worst = fmax(worst, log_err(y[i], x[i]));
                worst_ref = fmax(worst_ref, fabs((double)y[i] - ref_decode(base, codes, i)) / y[i]);
            }
        }
        ok(worst <= 1.0 / 16 + 1e-6, "steps within reach: every scale within 2^(+-1/16) (worst %.5f octave)", worst);
        ok(worst_ref <= 0x1p-23, "the decoder equals base * 2^(k/8) computed here (worst relative %.2g)", worst_ref);

        /* a long slow random walk: no drift */
        x[0] = 0.05f;
        for (int i = 1; i < N; i++) {
            double v = x[i - 1] * exp2(0.3 * (pg_rng_uniform(&g) - 0.5));
            x[i] = (float)(v > 10 ? 10 : v < 1e-3 ? 1e-3 : v);
        }
        rc = pg_trit_logdelta_encode(x, N, &base, codes);
        int r2 = pg_trit_logdelta_decode(base, codes, N, y, what);
        double first = 0, last = 0;
        for (int i = 0; i < N; i++) {
            double e = log_err(y[i], x[i]);
            if (i < N / 10) first = fmax(first, e);
            if (i >= N - N / 10) last = fmax(last, e);
        }
        ok(rc == 0 && r2 == 0 && first <= 1.0 / 16 + 1e-6 && last <= 1.0 / 16 + 1e-6,
           "100,000 scales: the error does not grow (worst %.5f in the first tenth, %.5f in the last)", first, last);

        /* a jump out of reach: saturated codes, then back within the bound */
        for (int i = 0; i < 30; i++) x[i] = i < 10 ? 1.0f : 1e4f; /* 106.3 eighths: 8 steps of 15 */
        rc = pg_trit_logdelta_encode(x, 30, &base, codes);
        r2 = pg_trit_logdelta_decode(base, codes, 30, y, what);
        double after = 0;
        for (int i = 18; i < 30; i++) after = fmax(after, log_err(y[i], x[i]));
        ok(rc == 0 && r2 == 0 && log_err(y[10], x[10]) > 1 && after <= 1.0 / 16 + 1e-6,
           "a factor 10^4 jump: off at the jump (%.2f octaves), within the bound 8 steps later (%.5f)",
           log_err(y[10], x[10]), after);
        free(x), free(y), free(codes);

        /* refusals */
        float bad[3] = {1, 0, 2};
        is_int(pg_trit_logdelta_encode(bad, 3, &base, c), PG_E_INVAL, "a zero scale is refused");
        bad[1] = NAN;
        is_int(pg_trit_logdelta_encode(bad, 3, &base, c), PG_E_INVAL, "a NaN scale is refused");
        bad[0] = 1e-9f, bad[1] = 1;
        is_int(pg_trit_logdelta_encode(bad, 3, &base, c), PG_E_INVAL, "a first scale below fp16 is refused");
        is_int(pg_trit_logdelta_encode(bad, 0, &base, c), PG_E_INVAL, "no scales are refused");
        uint8_t cc[3] = {16, 32, 16};
        refused(pg_trit_logdelta_decode(0x3c00, cc, 4, d, what), "log-delta code 32");
        cc[1] = 16;
        refused(pg_trit_logdelta_decode(0x0000, cc, 4, d, what), "a zero log-delta base");
        refused(pg_trit_logdelta_decode(0xbc00, cc, 4, d, what), "a negative log-delta base");
        refused(pg_trit_logdelta_decode(0x7e00, cc, 4, d, what), "a NaN log-delta base");
        uint8_t up[120];
        float big[121];
        memset(up, 31, sizeof up);
        refused(pg_trit_logdelta_decode(0x7bff, up, 121, big, what), "codes that climb past float's range");
    }
    return done_testing();
}
