/* test_quant.c: quantization and the .pgq format, against independent computations.
 *
 *   fp16: pg_f32_to_f16 against a nearest-value search over every finite fp16 (in double), ties
 *         to even, overflow and the subnormal edges; pg_f16_to_f32 inverts it on every pattern.
 *   int8-baseline: hand-made rows whose quantile, step, stored scale and integers are computed
 *         here in double with torch.quantile's definition; half-to-even ties; the 1/127 floor;
 *         the selection-based quantile against a sort; the baseline's 17,178,912-byte payload.
 *   intN: SDClip and max-abs for N = 2..8: |q| <= Q, the step is fp16(k·std/Q) or fp16(max/Q),
 *         the error is within half a step (inside the clip), and falls with N.
 *   .pgq: write → read → serialize is byte-identical; pg-pack's byte ranges; every truncation
 *         and thousands of seeded bit flips are refused (never crash, never accepted); version,
 *         reserved fields, values and the table are checked one by one (with the CRC fixed up).
 */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/ckpt.h"
#include "../../lib/err.h"
#include "../../lib/half.h"
#include "../../lib/mapfile.h"
#include "../../lib/modelfile.h"
#include "../../lib/pgq.h"
#include "../../lib/quant.h"
#include "../../lib/rng.h"
#include "../../lib/trit.h"
#include "../../lib/xio.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char dir[64];

/* ---- an independent fp16 reference: every finite non-negative fp16 value, in double ---- */

static double f16val[0x7c00];

static void init_f16_table(void)
{
    for (int h = 0; h < 0x7c00; h++) {
        int e = h >> 10, m = h & 0x3ff;
        f16val[h] = e ? ldexp(1024.0 + m, e - 25) : ldexp((double)m, -24);
    }
}

/* Nearest fp16 to x (finite), ties to the even pattern, overflow to infinity. */
static uint16_t ref_f16(double x)
{
    uint16_t sign = x < 0 || (x == 0 && signbit(x)) ? 0x8000 : 0;
    double a = fabs(x);
    if (a >= 65520.0) return sign | 0x7c00;
    int lo = 0, hi = 0x7bff; /* largest h with f16val[h] <= a */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (f16val[mid] <= a) lo = mid;
        else hi = mid - 1;
    }
    int h = lo;
    if (h < 0x7bff) {
        double dlo = a - f16val[h], dhi = f16val[h + 1] - a;
        if (dhi < dlo || (dhi == dlo && (h & 1))) h++;
    }
    return (uint16_t)(sign | h);
}

static void test_half(void)
{
    init_f16_table();
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = pg_f16_to_f32((uint16_t)h);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan ? !isnan(f) : pg_f32_to_f16(f) != h) bad++;
        if (!nan && (h & 0x7fff) < 0x7c00 && (double)fabsf(f) != f16val[h & 0x7fff]) bad++;
    }
    is_int(bad, 0, "fp16: every pattern converts to its exact value and back");
    /* ties: the midpoint of each pair of neighbours rounds to the even one; just off it, to the nearer */
    bad = 0;
    for (int h = 0; h < 0x7bff; h++) {
        double mid = (f16val[h] + f16val[h + 1]) / 2;
        float fm = (float)mid; /* exact: fp16 midpoints need at most 12 significant bits */
        if ((double)fm != mid) continue;
        uint16_t want = (uint16_t)(h & 1 ? h + 1 : h);
        if (pg_f32_to_f16(fm) != want || pg_f32_to_f16(-fm) != (0x8000 | want)) bad++;
        if (pg_f32_to_f16(nextafterf(fm, 0)) != h || pg_f32_to_f16(nextafterf(fm, INFINITY)) != h + 1) bad++;
    }
    is_int(bad, 0, "fp16: midpoints round half to even, their neighbours to the nearer value");
    struct pg_rng r;
    pg_rng_seed(&r, 7);
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)pg_rng_u64(&r);
        float f;
        memcpy(&f, &u, 4);
        if (!isfinite(f)) continue;
        if (pg_f32_to_f16(f) != ref_f16(f)) bad++;
    }
    is_int(bad, 0, "fp16: 200,000 random floats round as the nearest-value search says");
    is_int(pg_f32_to_f16(65504.0f), 0x7bff, "fp16: 65504 is the largest finite value");
    is_int(pg_f32_to_f16(nextafterf(65520.0f, 0)), 0x7bff, "fp16: just below 65520 stays finite");
    is_int(pg_f32_to_f16(65520.0f), 0x7c00, "fp16: 65520 (the tie past 65504) overflows to infinity");
    is_int(pg_f32_to_f16(ldexpf(1, -25)), 0, "fp16: 2^-25 (half the smallest subnormal) ties to zero");
    is_int(pg_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 1, "fp16: just above 2^-25 rounds to 2^-24");
    is_int(pg_f32_to_f16(ldexpf(3, -25)), 2, "fp16: 1.5·2^-24 ties to the even 2·2^-24");
    is_int(pg_f32_to_f16(ldexpf(1, -14) - ldexpf(1, -25)), 0x400, "fp16: a subnormal rounding up carries into 2^-14");
    is_int(pg_f32_to_f16(-0.0f), 0x8000, "fp16: -0 keeps its sign");
    ok(pg_f32_to_f16(NAN) > 0x7c00 && (pg_f32_to_f16(NAN) & 0x3ff), "fp16: NaN stays NaN");
}

/* ---- int8-baseline, by hand ---- */

/* torch.quantile(|row|, 0.9999984) with the definition in double (the code works in fp32). */
static double ref_quantile(const float *w, int n)
{
    double *a = malloc((size_t)n * sizeof *a);
    for (int i = 0; i < n; i++) a[i] = fabs((double)w[i]);
    for (int i = 1; i < n; i++) /* insertion sort: independent of the code's selection */
        for (int j = i; j > 0 && a[j - 1] > a[j]; j--) {
            double t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
    double rank = 0.9999984 * (n - 1), lo = floor(rank);
    double v = a[(int)lo] + (rank - lo) * (a[(int)ceil(rank)] - a[(int)lo]);
    free(a);
    return v;
}

/* Half-to-even rounding of a double, by hand. */
static double ref_round(double x)
{
    double f = floor(x), d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return fmod(f, 2) == 0 ? f : f + 1;
}

/* Checks one baseline row against the reference: the quantile, the step, the stored scale and
 * every integer (skipping integers within 1e-4 of a rounding tie, where fp32 and double may
 * legitimately differ). */
static void check_baseline_row(const char *what, const float *w, int n, double want_c)
{
    int8_t *q = malloc((size_t)n);
    float *tmp = malloc((size_t)n * sizeof *tmp);
    uint16_t h = pg_quant_row(w, n, PG_QSCHEME_INT8_BASELINE, PG_QCLIP_QUANTILE, 8, 0, q, tmp);
    double c = ref_quantile(w, n);
    if (want_c > 0) is_close(c, want_c, 1e-12, 1e-9, "%s: the reference quantile is %.9g", what, want_c);
    double s = fmax(c / 127, 1.0 / 127);
    /* the stored scale is fp16 of the fp32 step: equal to the reference's unless the step sits
     * within fp32 rounding of an fp16 midpoint (not the case for these rows) */
    is_int(h, ref_f16(s), "%s: stored scale fp16(%.9g) = 0x%04x", what, s, ref_f16(s));
    int bad = 0, skipped = 0;
    for (int i = 0; i < n; i++) {
        double x = fmin(fmax((double)w[i], -c), c) / s;
        if (fabs(fabs(x - floor(x)) - 0.5) < 1e-4) {
            skipped++;
            continue;
        }
        double want = fmin(fmax(ref_round(x), -127), 127);
        if (q[i] != (int)want) bad++;
    }
    is_int(bad, 0, "%s: every integer = round(clamp(w, ±c)/s) (%d near-ties skipped)", what, skipped);
    free(q);
    free(tmp);
}

static void test_baseline_rows(void)
{
    enum { N = 512 };
    float w[N];
    /* |w| = 0.001 ... 0.512, signs alternating: c < 1, so the step is the 1/127 floor */
    for (int i = 0; i < N; i++) w[i] = (float)((i + 1) / 1000.0) * (i % 2 ? -1 : 1);
    /* rank = 0.9999984·511 = 510.9991824: between the two largest, 0.511 and 0.512 (as floats) */
    double c = (double)0.511f + 0.9991824 * ((double)0.512f - (double)0.511f);
    check_baseline_row("small row", w, N, 0);
    is_close(ref_quantile(w, N), c, 1e-8, 0, "small row: quantile between 0.511 and 0.512 (%.9f)", c);
    {
        int8_t q[N];
        float tmp[N];
        uint16_t h = pg_quant_row(w, N, PG_QSCHEME_INT8_BASELINE, 0, 8, 0, q, tmp);
        is_int(h, ref_f16(1.0 / 127), "small row: the step is the floor 1/127 (fp16 0x%04x)", ref_f16(1.0 / 127));
        is_int(q[N - 1], -65, "small row: -0.512·127 = -65.02 → -65");
        is_int(q[0], 0, "small row: 0.001·127 = 0.127 → 0");
    }
    /* a zero row: c = 0, step 1/127, all zero */
    {
        float z[64] = {0};
        int8_t q[64];
        float tmp[64];
        uint16_t h = pg_quant_row(z, 64, PG_QSCHEME_INT8_BASELINE, 0, 8, 0, q, tmp);
        int nz = 0;
        for (int i = 0; i < 64; i++) nz += q[i] != 0;
        ok(h == ref_f16(1.0 / 127) && nz == 0, "zero row: step 1/127, every integer 0");
    }
    /* large values: w = (i − 256)·0.05, |w| up to 12.8; the largest is clipped to −c → −127 */
    for (int i = 0; i < N; i++) w[i] = (float)((i - 256) * 0.05);
    double c2 = ref_quantile(w, N);
    check_baseline_row("large row", w, N, (double)w[N - 1] + 0.9991824 * (-(double)w[0] - (double)w[N - 1]));
    {
        int8_t q[N];
        float tmp[N];
        uint16_t h = pg_quant_row(w, N, PG_QSCHEME_INT8_BASELINE, 0, 8, 0, q, tmp);
        is_int(q[0], -127, "large row: -12.8 is clipped to -c (%.7f) → -127", c2);
        is_int(q[N - 1], 127, "large row: 12.75 → 127");
        is_close(pg_f16_to_f32(h), c2 / 127, 0, 1.0 / 2048, "large row: scale ≈ c/127 within fp16 precision");
    }
    /* exact ties: the two largest |w| are 127, so c = 127 exactly and the step is exactly 1 */
    {
        float t[16] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.5f, 126.5f, -126.5f, 0.49999997f, 7.5f, 8.5f,
                       -3.5f, 0.0f, 127.0f, -127.0f};
        int want[16] = {0, 2, 2, 0, -2, -2, 4, 126, -126, 0, 8, 8, -4, 0, 127, -127};
        int8_t q[16];
        float tmp[16];
        uint16_t h = pg_quant_row(t, 16, PG_QSCHEME_INT8_BASELINE, 0, 8, 0, q, tmp);
        is_int(h, 0x3c00, "ties row: c = 127, step exactly 1 (fp16 0x3c00)");
        int bad = 0;
        for (int i = 0; i < 16; i++)
            if (q[i] != want[i]) {
                bad++;
                diag("t=%g: got %d, want %d", (double)t[i], q[i], want[i]);
            }
        is_int(bad, 0, "ties row: x.5 rounds half to even (0.5→0, 1.5→2, 2.5→2, -2.5→-2, 126.5→126)");
    }
    /* the 1/127 floor against a step just above it */
    {
        float a[8] = {1.5f, -1.5f, 0.1f, 0.2f, 0.3f, -0.4f, 0.5f, 0.6f};
        int8_t q[8];
        float tmp[8];
        uint16_t h = pg_quant_row(a, 8, PG_QSCHEME_INT8_BASELINE, 0, 8, 0, q, tmp);
        is_int(h, ref_f16(1.5 / 127), "c = 1.5 > 1: the step is c/127, not the floor");
        is_int(q[0], 127, "c = 1.5: 1.5 → 127");
    }
    /* torch's quantile for small n, in double */
    {
        float s4[4] = {1, 2, 3, 10};
        double rank = (double)(float)0.9999984 * 3; /* 2.9999952 */
        is_close(pg_quant_torch_quantile(s4, 4, (float)0.9999984), 3 + (rank - 2) * 7, 0, 1e-6,
                 "n = 4: quantile = 3 + 0.9999952·7");
        float s1[1] = {4};
        is_close(pg_quant_torch_quantile(s1, 1, (float)0.9999984), 4, 0, 0, "n = 1: the only value");
        float s2[3] = {1, 5, 5};
        is_close(pg_quant_torch_quantile(s2, 3, 0.5f), 5, 0, 0, "n = 3, q = 0.5: the middle value");
        is_close(pg_quant_torch_quantile(s2, 3, 0.25f), 3, 0, 0, "n = 3, q = 0.25: halfway between 1 and 5");
    }
    /* the selection inside pg_quant_row equals a sort, on random rows with repeated values */
    {
        struct pg_rng r;
        pg_rng_seed(&r, 11);
        int bad = 0;
        for (int trial = 0; trial < 300; trial++) {
            int n = 1 + (int)pg_rng_below(&r, 700);
            float *x = malloc((size_t)n * sizeof *x), *srt = malloc((size_t)n * sizeof *srt), *tmp = malloc((size_t)n * 4);
            int8_t *q = malloc((size_t)n), *q2 = malloc((size_t)n);
            double scale = trial % 3 == 0 ? 10 : 0.05;
            for (int i = 0; i < n; i++)
                x[i] = trial % 5 == 0 ? (float)((int)pg_rng_below(&r, 7) - 3) : (float)(scale * pg_rng_normal(&r));
            for (int i = 0; i < n; i++) srt[i] = fabsf(x[i]);
            for (int i = 1; i < n; i++)
                for (int j = i; j > 0 && srt[j - 1] > srt[j]; j--) {
                    float t = srt[j];
                    srt[j] = srt[j - 1];
                    srt[j - 1] = t;
                }
            float cq = pg_quant_torch_quantile(srt, n, (float)0.9999984);
            float s = cq / 127.0f;
            if (s < (float)(1.0 / 127)) s = (float)(1.0 / 127);
            for (int i = 0; i < n; i++) {
                float v = fminf(fmaxf(x[i], -cq), cq);
                float rr = nearbyintf(v / s);
                q2[i] = (int8_t)fminf(fmaxf(rr, -127), 127);
            }
            uint16_t h = pg_quant_row(x, n, PG_QSCHEME_INT8_BASELINE, 0, 8, 0, q, tmp);
            if (h != pg_f32_to_f16(s) || memcmp(q, q2, (size_t)n) != 0) bad++;
            free(x), free(srt), free(tmp), free(q), free(q2);
        }
        is_int(bad, 0, "300 random rows: quantile by selection = quantile of the sorted row, same integers");
    }
}

/* ---- intN ---- */

static void test_intn(void)
{
    enum { N = 1024 };
    static float w[N], tmp[N];
    static int8_t q[N];
    struct pg_rng r;
    pg_rng_seed(&r, 3);
    for (int i = 0; i < N; i++) w[i] = (float)(0.02 * pg_rng_normal(&r));
    w[5] = 0.5f, w[900] = -0.4f; /* outliers, beyond any SDClip */
    double mean = 0, ss = 0, mx = 0, nn = 0;
    for (int i = 0; i < N; i++) mean += w[i], mx = fmax(mx, fabs(w[i])), nn += (double)w[i] * w[i];
    mean /= N;
    for (int i = 0; i < N; i++) ss += (w[i] - mean) * (w[i] - mean);
    double sd = sqrt(ss / (N - 1));
    double k[] = {13, 11.5, 14};
    for (int clip = PG_QCLIP_SDCLIP; clip <= PG_QCLIP_MAXABS; clip++) {
        double prev_err = INFINITY;
        int all_ok = 1, bounded = 1, monotone = 1, scales = 1, reach = 1;
        for (int bits = 2; bits <= 8; bits++) {
            int Q = (1 << (bits - 1)) - 1;
            double kk = k[bits % 3];
            uint16_t h = pg_quant_row(w, N, PG_QSCHEME_INTN, clip, bits, kk, q, tmp);
            double s = clip == PG_QCLIP_SDCLIP ? kk * sd / Q : mx / Q;
            if (h != ref_f16(s)) {
                scales = 0;
                diag("%s int%d: scale 0x%04x, want fp16(%.9g) = 0x%04x", pg_qclip_name(clip), bits, h, s, ref_f16(s));
            }
            double s16 = pg_f16_to_f32(h), e = 0;
            int maxq = 0;
            for (int i = 0; i < N; i++) {
                if (q[i] > Q || q[i] < -Q) all_ok = 0;
                maxq = abs(q[i]) > maxq ? abs(q[i]) : maxq;
                double d = w[i] - q[i] * s16;
                e += d * d;
                /* inside the clip the error is at most half a step */
                if (fabs(w[i]) <= (Q - 0.5) * s16 && fabs(d) > 0.5 * s16 * (1 + 1e-6)) bounded = 0;
                if (clip == PG_QCLIP_MAXABS && fabs(d) > 0.5 * s16 + Q * fabs(s - s16) + 1e-9) bounded = 0;
            }
            if (maxq != Q) reach = 0; /* the outliers (or the max) land on ±Q */
            double rel = sqrt(e / nn);
            if (clip == PG_QCLIP_MAXABS && !(rel < prev_err)) monotone = 0;
            prev_err = rel;
        }
        const char *name = pg_qclip_name(clip);
        ok(all_ok, "%s, N = 2..8: every q within [-Q, Q]", name);
        ok(scales, "%s, N = 2..8: the stored step is fp16 of %s", name,
           clip == PG_QCLIP_SDCLIP ? "k·std(row, correction 1)/Q" : "max|row|/Q");
        ok(bounded, "%s, N = 2..8: |w − q·s| <= s/2 inside the clip range", name);
        ok(reach, "%s, N = 2..8: the extreme values reach ±Q", name);
        if (clip == PG_QCLIP_MAXABS) ok(monotone, "maxabs: the relative error falls with every added bit");
    }
    /* a zero row: the step is the smallest positive fp16, the integers 0 */
    float z[32] = {0};
    int8_t qz[32];
    float tz[32];
    uint16_t h = pg_quant_row(z, 32, PG_QSCHEME_INTN, PG_QCLIP_SDCLIP, 6, 13, qz, tz);
    int nz = 0;
    for (int i = 0; i < 32; i++) nz += qz[i] != 0;
    ok(h == 1 && nz == 0, "intN zero row: step 2^-24 (positive, finite), every integer 0");
    h = pg_quant_row(z, 32, PG_QSCHEME_INTN, PG_QCLIP_MAXABS, 4, 0, qz, tz);
    ok(h == 1, "intN zero row, maxabs: step 2^-24");
}

/* ---- options, names ---- */

static void test_options(void)
{
    struct pg_quant_opts o;
    int scheme, bits;
    pg_quant_opts_default(&o, PG_QSCHEME_INTN, 6);
    ok(o.bits[0] == 6 && o.bits[1] == 6 && o.bits[2] == 6 && o.clip == PG_QCLIP_SDCLIP && o.k[PG_QCLASS_ATTN] == 13 &&
           o.k[PG_QCLASS_MLP] == 11.5 && o.k[PG_QCLASS_EMBED] == 14 && o.keep_float_max == 65536,
       "intN defaults: SDClip, k attn 13 / mlp 11.5 / embed 14, keep floats up to 65536 elements");
    is_int(pg_quant_parse_bits(&o, "attn=5,embed=8"), 0, "--bits attn=5,embed=8");
    ok(o.bits[PG_QCLASS_ATTN] == 5 && o.bits[PG_QCLASS_MLP] == 6 && o.bits[PG_QCLASS_EMBED] == 8, "... sets two classes");
    is_int(pg_quant_parse_bits(&o, "7"), 0, "--bits 7");
    ok(o.bits[0] == 7 && o.bits[1] == 7 && o.bits[2] == 7, "... sets every class");
    ok(pg_quant_parse_bits(&o, "attn=9") == PG_E_INVAL && pg_quant_parse_bits(&o, "mlp=1") == PG_E_INVAL &&
           pg_quant_parse_bits(&o, "blocks.0=9") == PG_E_INVAL && pg_quant_parse_bits(&o, "attn=6,mlp") == PG_E_INVAL &&
           pg_quant_parse_bits(&o, "") == PG_E_INVAL && pg_quant_parse_bits(&o, "attn=x") == PG_E_INVAL &&
           pg_quant_parse_bits(&o, "=6") == PG_E_INVAL && pg_quant_parse_bits(&o, "a b=6") == PG_E_INVAL,
       "--bits refuses 9 (class or tensor), 1, missing values, empty, non-numbers, empty and spaced keys");
    ok(o.nov == 0, "... and keeps no per-tensor setting from a refused list");
    ok(o.bits[0] == 7 && o.bits[1] == 7 && o.bits[2] == 7, "a refused --bits changes nothing");
    is_int(pg_quant_parse_k(&o, "mlp=12.5"), 0, "--k mlp=12.5");
    ok(o.k[PG_QCLASS_MLP] == 12.5 && o.k[PG_QCLASS_ATTN] == 13, "... sets mlp only");
    ok(pg_quant_parse_k(&o, "attn=0") == PG_E_INVAL && pg_quant_parse_k(&o, "attn=-1") == PG_E_INVAL &&
           pg_quant_parse_k(&o, "embed=nan") == PG_E_INVAL,
       "--k refuses 0, negatives and NaN");
    ok(pg_quant_parse_scheme("int8-baseline", &scheme, &bits) == 0 && scheme == PG_QSCHEME_INT8_BASELINE,
       "--scheme int8-baseline");
    ok(pg_quant_parse_scheme("int5", &scheme, &bits) == 0 && scheme == PG_QSCHEME_INTN && bits == 5, "--scheme int5");
    ok(pg_quant_parse_scheme("int9", &scheme, &bits) && pg_quant_parse_scheme("int1", &scheme, &bits) &&
           pg_quant_parse_scheme("int", &scheme, &bits) && pg_quant_parse_scheme("int66", &scheme, &bits),
       "--scheme refuses int9, int1, int, int66");
    int clip;
    ok(pg_quant_parse_clip("maxabs", &clip) == 0 && clip == PG_QCLIP_MAXABS && pg_quant_parse_clip("max", &clip),
       "--clip maxabs, not max");
    ok(pg_qrole_of("tok_emb.weight") == PG_QROLE_TOK_EMB && pg_qrole_of("blocks.10.attn.c_k.weight") == PG_QROLE_C_K &&
           pg_qrole_of("blocks.0.mlp.proj.weight") == PG_QROLE_MLP_PROJ &&
           pg_qrole_of("blocks.3.attn.proj.weight") == PG_QROLE_ATTN_PROJ &&
           pg_qrole_of("blocks.3.attn.q_gain") == PG_QROLE_OTHER && pg_qrole_of("blocks.x.mlp.fc.weight") == PG_QROLE_OTHER &&
           pg_qrole_of("lm_head.weight") == PG_QROLE_LM_HEAD,
       "roles from parameter-golf names");
    is_int(pg_quant_parse_bits(&o, "blocks.1.mlp=4,mlp=5"), 0, "--bits blocks.1.mlp=4,mlp=5");
    is_int(pg_quant_parse_k(&o, "blocks.1.mlp.fc=9"), 0, "--k blocks.1.mlp.fc=9");
    ok(o.nov == 2 && strcmp(o.ov[0].prefix, "blocks.1.mlp") == 0 && o.ov[0].bits == 4 && o.ov[0].k == 0 &&
           o.bits[PG_QCLASS_MLP] == 5 && strcmp(o.ov[1].prefix, "blocks.1.mlp.fc") == 0 && o.ov[1].bits == 0 &&
           o.ov[1].k == 9,
       "... a tensor prefix becomes a per-tensor setting, a class key sets the class");
    int method = -1;
    ok(pg_quant_parse_method("gptq", &method) == 0 && method == PG_QMETHOD_GPTQ &&
           pg_quant_parse_method("rtn", &method) == 0 && method == PG_QMETHOD_RTN &&
           pg_quant_parse_method("GPTQ", &method) == PG_E_INVAL && strcmp(pg_qmethod_name(PG_QMETHOD_GPTQ), "gptq") == 0,
       "--method rtn|gptq");
    ok(strcmp(pg_qrole_name(PG_QROLE_C_Q), "attn.c_q") == 0 && strcmp(pg_qrole_name(PG_QROLE_MLP_FC), "mlp.fc") == 0,
       "role names as pg-pack groups them");
}

/* ---- the baseline's payload ---- */

static int same_bytes(const unsigned char *a, size_t na, const char *path)
{
    struct pg_map m;
    if (pg_map_open(&m, path)) return 0;
    int same = m.size == na && memcmp(m.data, a, na) == 0;
    pg_map_close(&m);
    return same;
}

static void test_baseline_payload(void)
{
    struct pg_config c;
    pg_config_default(&c);
    struct pg_model m;
    if (pg_model_init(&m, &c, &pg_backend_cpu, 0)) {
        ok(0, "baseline model: %s", pg_error_message());
        return;
    }
    pg_model_init_weights(&m, 1);
    /* trained weights are not zero: give the output projections some values too */
    struct pg_rng r;
    pg_rng_seed(&r, 2);
    for (size_t i = 0; i < m.nparams; i++)
        if (m.params[i] == 0) m.params[i] = (pg_real)(0.01 * pg_rng_normal(&r));
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, PG_QSCHEME_INT8_BASELINE, 8);
    struct pg_qmodel qm;
    is_int(pg_quantize_model(&m, &o, &qm), 0, "baseline: quantize int8-baseline");
    uint64_t ints = 0, scales = 0, f32 = 0, other = 0;
    int nint = 0, nf32 = 0;
    for (int i = 0; i < qm.ntensors; i++) {
        const struct pg_qtensor *t = &qm.t[i];
        if (t->kind == PG_QKIND_INT) ints += t->data_len, scales += t->scale_len, nint++;
        else if (t->kind == PG_QKIND_F32) f32 += t->data_len, nf32++;
        else other += t->data_len;
    }
    is_int(nint, 55, "baseline: 55 int8 matrices (tok_emb + 54 block matrices)");
    is_int((long long)ints, 17039360, "baseline: int8 bytes 17,039,360");
    is_int((long long)scales, 28672 * 2, "baseline: 28,672 fp16 row scales");
    is_int((long long)f32, 82208, "baseline: fp32 passthrough 82,208 bytes (20,552 control values)");
    is_int((long long)other, 0, "baseline: no fp16 passthrough");
    is_int((long long)(ints + scales + f32 + other), 17178912, "baseline: payload = 17,178,912 bytes (baseline.md §5.1)");
    is_int((long long)pg_qmodel_payload_bytes(&qm), 17178912, "pg_qmodel_payload_bytes agrees");
    (void)nf32;
    /* the whole-model loop (rows in parallel) equals the row primitive, and its error report is
     * ‖W − Ŵ‖/‖W‖ over the dequantized values */
    int ti = m.blk[4].fc;
    const struct pg_qtensor *t = &qm.t[ti];
    int64_t cols = t->cols;
    float *row = malloc((size_t)cols * 4), *tmp = malloc((size_t)cols * 4);
    int8_t *q = malloc((size_t)cols);
    int bad = 0;
    for (int64_t rr = 0; rr < t->rows; rr++) {
        for (int64_t j = 0; j < cols; j++) row[j] = (float)m.params[m.tensors[ti].offset + rr * cols + j];
        uint16_t h = pg_quant_row(row, cols, PG_QSCHEME_INT8_BASELINE, 0, 8, 0, q, tmp);
        if (memcmp(q, t->data + rr * cols, (size_t)cols) || h != (t->scales[2 * rr] | t->scales[2 * rr + 1] << 8)) bad++;
    }
    is_int(bad, 0, "baseline: blocks.4.mlp.fc rows equal pg_quant_row's");
    pg_real *deq = malloc(m.tensors[ti].numel * sizeof *deq);
    pg_qtensor_dequantize(t, deq);
    double e = 0, n2 = 0;
    for (size_t j = 0; j < m.tensors[ti].numel; j++) {
        double w = m.params[m.tensors[ti].offset + j];
        e += (w - deq[j]) * (w - deq[j]);
        n2 += w * w;
    }
    is_close(t->rel_err, sqrt(e / n2), 0, 1e-9, "baseline: reported rel_err = ‖W − Ŵ‖/‖W‖ (%.4g)", t->rel_err);
    free(row), free(tmp), free(q), free(deq);

    /* write → read → serialize: the same bytes */
    char path[128];
    snprintf(path, sizeof path, "%s/baseline.pgq", dir);
    is_int(pg_pgq_write(&qm, path), 0, "baseline: write .pgq");
    struct pg_qmodel back;
    is_int(pg_pgq_read(path, &back), 0, "baseline: read it back");
    unsigned char *buf = NULL;
    size_t len = 0;
    is_int(pg_pgq_serialize(&back, &buf, &len), 0, "baseline: serialize what was read");
    ok(same_bytes(buf, len, path), "baseline: re-serialized bytes = the file (%zu bytes)", len);
    free(buf);
    pg_qmodel_free(&back);
    pg_qmodel_free(&qm);
    pg_model_free(&m);
}

/* ---- the .pgq format on a small model ---- */

static void small_config(struct pg_config *c)
{
    pg_config_default(c);
    c->vocab_size = 24, c->num_layers = 2, c->model_dim = 8, c->num_heads = 2, c->num_kv_heads = 1;
    c->mlp_mult = 2, c->train_seq_len = 16;
}

/* The small model with its initialization plus N(0, 0.1²) noise, so that no tensor is zero. */
static int small_model(struct pg_model *m)
{
    struct pg_config c;
    small_config(&c);
    if (pg_model_init(m, &c, &pg_backend_cpu, 0)) return -1;
    pg_model_init_weights(m, 9);
    struct pg_rng r;
    pg_rng_seed(&r, 4);
    for (size_t i = 0; i < m->nparams; i++) m->params[i] += (pg_real)(0.1 * pg_rng_normal(&r));
    return 0;
}

/* A small model quantized with `scheme`, every tensor above `keep` elements an integer one. */
static int small_pgq(int scheme, int bits, int clip, int64_t keep, struct pg_model *m, unsigned char **buf, size_t *len)
{
    if (small_model(m)) return -1;
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, scheme, bits);
    o.clip = scheme == PG_QSCHEME_INTN ? clip : o.clip;
    o.keep_float_max = keep;
    struct pg_qmodel qm;
    int rc = pg_quantize_model(m, &o, &qm);
    qm.tok = (struct pg_tok_id){24, 0x12345678u, 999};
    if (!rc) rc = pg_pgq_serialize(&qm, buf, len);
    pg_qmodel_free(&qm);
    return rc;
}

static void fix_crc(unsigned char *b, size_t len)
{
    pg_le32_put(b + len - 4, (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(len - 4)));
}

/* Parses a modified copy (CRC fixed up) and expects an error containing `needle`. */
static void expect_error(const unsigned char *good, size_t len, size_t off, unsigned char val, const char *needle,
                         const char *what)
{
    unsigned char *b = malloc(len);
    memcpy(b, good, len);
    b[off] = val;
    fix_crc(b, len);
    struct pg_qmodel qm;
    int rc = pg_pgq_parse(b, len, "x.pgq", &qm);
    const char *msg = pg_error_message();
    ok(rc == PG_E_FORMAT && strstr(msg, needle) && strncmp(msg, "x.pgq: ", 7) == 0 && !strchr(msg, '\n'),
       "%s: refused with '%s'", what, msg);
    if (!rc) pg_qmodel_free(&qm);
    free(b);
}

static void test_format(void)
{
    struct pg_model m;
    unsigned char *buf = NULL;
    size_t len = 0;
    is_int(small_pgq(PG_QSCHEME_INT8_BASELINE, 8, 0, 30, &m, &buf, &len), 0,
           "small model: quantize and serialize (the 13 matrices above 30 elements as int8)");
    struct pg_qmodel qm;
    is_int(pg_pgq_parse(buf, len, "small.pgq", &qm), 0, "small model: parse (%zu bytes)", len);
    ok(memcmp(&qm.cfg, &m.cfg, sizeof m.cfg) == 0, "the configuration round-trips");
    ok(qm.tok.vocab == 24 && qm.tok.crc32 == 0x12345678u && qm.tok.size == 999, "the tokenizer identity round-trips");
    unsigned char *buf2 = NULL;
    size_t len2 = 0;
    is_int(pg_pgq_serialize(&qm, &buf2, &len2), 0, "serialize the parsed model");
    ok(len2 == len && memcmp(buf, buf2, len) == 0, "parse → serialize is byte-identical");
    free(buf2);
    /* pg-pack's view: the integer ranges, disjoint and in order, hold the tensors' bytes */
    int nint = 0, ranges_ok = 1;
    uint64_t prev_end = 0;
    unsigned char *cut = malloc(len);
    memcpy(cut, buf, len);
    for (int i = 0; i < qm.ntensors; i++) {
        const struct pg_qtensor *t = &qm.t[i];
        if (t->kind != PG_QKIND_INT) continue;
        nint++;
        if (t->data_off < prev_end || t->data_off + t->data_len > len - 4 || t->data != buf + t->data_off ||
            t->data_len != (uint64_t)(t->rows * t->cols) || t->role != pg_qrole_of(t->name))
            ranges_ok = 0;
        prev_end = t->data_off + t->data_len;
        memset(cut + t->data_off, 0, t->data_len);
    }
    ok(nint == 13 && ranges_ok, "%d integer tensors: byte ranges in order, inside the data, rows × cols long", nint);
    for (int i = 0; i < qm.ntensors; i++)
        if (qm.t[i].kind == PG_QKIND_INT) memcpy(cut + qm.t[i].data_off, qm.t[i].data, qm.t[i].data_len);
    ok(memcmp(cut, buf, len) == 0, "cutting the ranges out and putting them back rebuilds the file");
    free(cut);
    /* dequantization into a model */
    struct pg_model m2;
    pg_model_init(&m2, &qm.cfg, &pg_backend_cpu, 0);
    is_int(pg_qmodel_dequantize(&qm, &m2, "small.pgq"), 0, "dequantize into a model");
    int bad = 0;
    for (int i = 0; i < qm.ntensors; i++) {
        const struct pg_qtensor *t = &qm.t[i];
        for (int64_t r = 0; r < t->rows; r++)
            for (int64_t cc = 0; cc < t->cols; cc++) {
                double want;
                size_t j = (size_t)(r * t->cols + cc);
                if (t->kind == PG_QKIND_INT) want = (double)(int8_t)t->data[j] * pg_f16_to_f32((uint16_t)(t->scales[2 * r] | t->scales[2 * r + 1] << 8));
                else if (t->kind == PG_QKIND_F32) want = m.params[m.tensors[i].offset + j];
                else want = f16val[ref_f16(m.params[m.tensors[i].offset + j]) & 0x7fff] * (m.params[m.tensors[i].offset + j] < 0 ? -1 : 1);
                if ((double)m2.params[m2.tensors[i].offset + j] != want) bad++;
            }
    }
    is_int(bad, 0, "dequantized values: q·fp16 scale, fp32 exactly, fp16-rounded");
    pg_model_free(&m2);
    pg_qmodel_free(&qm);

    /* every truncation is refused, naming the file; an exact-size copy lets ASan see overreads */
    int accepted = 0, unnamed = 0, trunc_msg = 0;
    for (size_t n = 0; n < len; n++) {
        unsigned char *b = malloc(n ? n : 1);
        memcpy(b, buf, n);
        int rc = pg_pgq_parse(b, n, "t.pgq", &qm);
        if (!rc) {
            accepted++;
            pg_qmodel_free(&qm);
        } else if (strncmp(pg_error_message(), "t.pgq: ", 7) != 0) unnamed++;
        else if (strstr(pg_error_message(), "truncated at offset")) trunc_msg++;
        free(b);
    }
    is_int(accepted, 0, "all %zu truncations refused", len);
    is_int(unnamed, 0, "every refusal names the file");
    is_int(trunc_msg, (long long)len, "every truncation says 'truncated at offset N'");
    /* seeded random bit flips: 1 to 3 bits anywhere; every one refused */
    struct pg_rng r;
    pg_rng_seed(&r, 12345);
    int crc_msgs = 0;
    accepted = 0;
    unsigned char *b = malloc(len);
    for (int trial = 0; trial < 4000; trial++) {
        memcpy(b, buf, len);
        int nflip = 1 + (int)pg_rng_below(&r, 3);
        for (int f = 0; f < nflip; f++) {
            uint64_t bit = pg_rng_below(&r, (uint64_t)len * 8);
            b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        }
        if (memcmp(b, buf, len) == 0) continue; /* two flips of the same bit */
        int rc = pg_pgq_parse(b, len, "f.pgq", &qm);
        if (!rc) {
            accepted++;
            pg_qmodel_free(&qm);
        } else if (strstr(pg_error_message(), "checksum mismatch")) crc_msgs++;
    }
    free(b);
    is_int(accepted, 0, "4000 random 1-3 bit flips: none accepted");
    ok(crc_msgs > 3000, "most flips are caught by the checksum (%d), the rest by the header checks", crc_msgs);

    /* field checks, each with the CRC made right so the check itself must catch it */
    expect_error(buf, len, 8, 4, "unsupported .pgq version 4", "version 4");
    {
        /* a version-1 file relabelled as version 2 is a valid version-2 file: its entries' new
         * fields are zero (no LQER) */
        unsigned char *b2 = malloc(len);
        memcpy(b2, buf, len);
        b2[8] = 2;
        fix_crc(b2, len);
        struct pg_qmodel q2;
        int rc = pg_pgq_parse(b2, len, "v2.pgq", &q2);
        ok(rc == 0, "a version-1 file relabelled version 2 parses: %s", rc ? pg_error_message() : "ok");
        if (!rc) pg_qmodel_free(&q2);
        free(b2);
    }
    expect_error(buf, len, 0, 'X', "bad magic", "magic");
    expect_error(buf, len, 13, 1, "reserved header byte 13", "reserved header field (offset 12)");
    expect_error(buf, len, 127, 1, "reserved header byte 127", "reserved header field (offset 96..127)");
    uint64_t table = pg_le64_get(buf + 40), data = pg_le64_get(buf + 56);
    expect_error(buf, len, table + 120, 1, "reserved byte 120", "reserved byte of a tensor entry");
    expect_error(buf, len, table + 48, 7, "unknown kind 7", "tensor kind");
    expect_error(buf, len, table + 49, 7, "bad bits", "int8-baseline tensor with 7 bits");
    expect_error(buf, len, table + 51, 3, "role", "wrong role");
    expect_error(buf, len, table + 0, 'T', "configuration's model has", "wrong tensor name");
    expect_error(buf, len, table + 56, 25, "wrong shape", "wrong shape");
    expect_error(buf, len, table + 72, (unsigned char)(buf[table + 72] + 1), "data at", "data offset off by one");
    expect_error(buf, len, 128, 'X', "bad configuration", "unknown configuration key");
    expect_error(buf, len, 128 + 3, '\t', "not printable", "control character in the configuration");
    expect_error(buf, len, data, 0x80, "outside", "int8 value -128 (outside ±127)");
    expect_error(buf, len, 80, 0, "without a tokenizer", "tokenizer crc without a vocabulary");
    expect_error(buf, len, 76, 9, "unknown scheme 9", "scheme");
    expect_error(buf, len, 72, (unsigned char)(buf[72] + 1), "offsets and sizes disagree", "tensor count");
    {
        const struct pg_qtensor *t0;
        struct pg_qmodel q2;
        pg_pgq_parse(buf, len, "small.pgq", &q2);
        t0 = &q2.t[0];
        uint64_t soff = t0->scale_off;
        pg_qmodel_free(&q2);
        expect_error(buf, len, soff + 1, 0x80, "not a positive finite", "negative scale");
        expect_error(buf, len, soff + 1, 0x7c, "not a positive finite", "infinite scale");
    }
    /* trailing bytes and a header size that lies */
    {
        unsigned char *big = malloc(len + 1);
        memcpy(big, buf, len);
        big[len] = 0;
        ok(pg_pgq_parse(big, len + 1, "x.pgq", &qm) == PG_E_FORMAT && strstr(pg_error_message(), "trailing data"),
           "a byte past the end: '%s'", pg_error_message());
        free(big);
        unsigned char *cp = malloc(len);
        memcpy(cp, buf, len);
        cp[len - 1] ^= 1;
        ok(pg_pgq_parse(cp, len, "x.pgq", &qm) == PG_E_FORMAT && strstr(pg_error_message(), "checksum mismatch"),
           "a flipped checksum bit: '%s'", pg_error_message());
        free(cp);
    }
    /* a consistent header whose data section is too short for the tensors (CRC right): the
     * tensors must not be read past it */
    {
        size_t cutlen = len - 100;
        unsigned char *sh = malloc(cutlen);
        memcpy(sh, buf, cutlen - 4);
        pg_le64_put(sh + 16, cutlen);
        pg_le64_put(sh + 64, pg_le64_get(buf + 64) - 100);
        fix_crc(sh, cutlen);
        ok(pg_pgq_parse(sh, cutlen, "x.pgq", &qm) == PG_E_FORMAT && strstr(pg_error_message(), "runs past the data"),
           "a data section too short for the table: '%s'", pg_error_message());
        free(sh);
    }
    free(buf);
    pg_model_free(&m);

    /* intN round trip, and the value check for its bit width */
    is_int(small_pgq(PG_QSCHEME_INTN, 4, PG_QCLIP_SDCLIP, 40, &m, &buf, &len), 0, "int4 SDClip small model");
    is_int(pg_pgq_parse(buf, len, "int4.pgq", &qm), 0, "int4: parse");
    int maxq = 0, four = 1;
    uint64_t d0 = 0;
    for (int i = 0; i < qm.ntensors; i++) {
        const struct pg_qtensor *t = &qm.t[i];
        if (t->kind != PG_QKIND_INT) continue;
        four &= t->bits == 4 && t->clip == PG_QCLIP_SDCLIP;
        if (!d0) d0 = t->data_off;
        for (uint64_t j = 0; j < t->data_len; j++) maxq = abs((int8_t)t->data[j]) > maxq ? abs((int8_t)t->data[j]) : maxq;
    }
    ok(four && maxq <= 7 && maxq > 0, "int4: every integer tensor 4-bit SDClip, 0 < max |q| <= 7 (%d)", maxq);
    pg_qmodel_free(&qm);
    expect_error(buf, len, d0, 8, "outside ±7", "int4 value 8");
    free(buf);
    pg_model_free(&m);
}

/* ---- modelfile: sniff and load either format ---- */

static void test_modelfile(void)
{
    struct pg_model m;
    unsigned char *buf;
    size_t len;
    if (small_pgq(PG_QSCHEME_INTN, 6, PG_QCLIP_MAXABS, 0, &m, &buf, &len)) {
        ok(0, "modelfile: small model");
        return;
    }
    char pq[128], st[128];
    snprintf(pq, sizeof pq, "%s/m.pgq", dir);
    snprintf(st, sizeof st, "%s/m.safetensors", dir);
    FILE *f = fopen(pq, "wb");
    ok(f && fwrite(buf, 1, len, f) == len && fclose(f) == 0, "modelfile: write a .pgq");
    is_int(pg_ckpt_save(&m, st, 0, NULL, NULL), 0, "modelfile: write a checkpoint");
    int fmt1 = 0, fmt2 = 0;
    ok(!pg_modelfile_sniff(pq, &fmt1) && fmt1 == PG_MODELFILE_PGQ && !pg_modelfile_sniff(st, &fmt2) &&
           fmt2 == PG_MODELFILE_SAFETENSORS,
       "sniffed by content: pgq and safetensors");
    struct pg_config c1, c2;
    ok(!pg_modelfile_read_config(pq, &c1) && !pg_modelfile_read_config(st, &c2) && !memcmp(&c1, &c2, sizeof c1),
       "both give the same configuration");
    struct pg_model a, b;
    pg_model_init(&a, &c1, &pg_backend_cpu, 0);
    pg_model_init(&b, &c1, &pg_backend_cpu, 0);
    ok(!pg_modelfile_load(&a, pq) && !pg_modelfile_load(&b, st), "both load");
    double e = 0, n2 = 0;
    for (size_t i = 0; i < a.nparams; i++) e += (a.params[i] - b.params[i]) * (a.params[i] - b.params[i]), n2 += b.params[i] * b.params[i];
    ok(e > 0 && sqrt(e / n2) < 0.05, "the .pgq loads dequantized: close to the float weights (rel %.3g)", sqrt(e / n2));
    /* dequantized weights saved as a checkpoint load back bit for bit */
    char dq[128];
    snprintf(dq, sizeof dq, "%s/dq.safetensors", dir);
    struct pg_model d;
    pg_model_init(&d, &c1, &pg_backend_cpu, 0);
    ok(!pg_ckpt_save(&a, dq, 0, NULL, NULL) && !pg_modelfile_load(&d, dq) &&
           memcmp(a.params, d.params, a.nparams * sizeof *a.params) == 0,
       "dequantized weights → checkpoint → load: bit for bit");
    ok(pg_modelfile_check_tokenizer(st, "/nonexistent") == 0, "a checkpoint records no tokenizer: nothing to check");
    ok(pg_modelfile_check_tokenizer(pq, "/nonexistent/tok.model") == PG_E_IO,
       "a .pgq with a tokenizer identity checks the -m file (missing: I/O error)");
    /* a model of another shape is refused by name */
    struct pg_config c3 = c1;
    c3.num_layers = 3;
    struct pg_model e3;
    pg_model_init(&e3, &c3, &pg_backend_cpu, 0);
    ok(pg_modelfile_load(&e3, pq) == PG_E_FORMAT && strstr(pg_error_message(), "m.pgq"),
       "loading into a model of another shape: '%s'", pg_error_message());
    /* non-finite weights are refused */
    m.params[3] = NAN;
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, PG_QSCHEME_INT8_BASELINE, 8);
    struct pg_qmodel qm;
    ok(pg_quantize_model(&m, &o, &qm) == PG_E_FORMAT && strstr(pg_error_message(), "non-finite"),
       "a NaN weight is refused: '%s'", pg_error_message());
    /* a step that fp16 cannot hold (|w| ~ 1e7 under int8-baseline) is refused, not written as inf */
    m.params[3] = 1e7f;
    o.keep_float_max = 0;
    ok(pg_quantize_model(&m, &o, &qm) == PG_E_FORMAT && strstr(pg_error_message(), "too large for fp16"),
       "a step past fp16's range is refused: '%s'", pg_error_message());
    pg_model_free(&e3), pg_model_free(&d), pg_model_free(&a), pg_model_free(&b), pg_model_free(&m);
    free(buf);
}

/* Per-tensor settings: a prefix covers whole name components, the latest match wins, and one
 * that covers nothing is an error rather than a silent no-op. */
static void test_overrides(void)
{
    struct pg_config c;
    small_config(&c);
    struct pg_model m;
    if (pg_model_init(&m, &c, &pg_backend_cpu, 0)) bail_out("model init");
    pg_model_init_weights(&m, 9);
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, PG_QSCHEME_INTN, 6);
    o.keep_float_max = 30;
    if (pg_quant_parse_bits(&o, "blocks.1.mlp=3,blocks.1.mlp.proj=4") || pg_quant_parse_k(&o, "blocks.0.attn.c_q=2"))
        bail_out("parse");
    struct pg_qmodel qm;
    is_int(pg_quantize_model(&m, &o, &qm), 0, "quantize with three per-tensor settings");
    int right = 1, nint = 0;
    const struct pg_qtensor *cq = NULL, *ck = NULL;
    for (int i = 0; i < qm.ntensors; i++) {
        const struct pg_qtensor *t = &qm.t[i];
        if (!strcmp(t->name, "blocks.0.attn.c_q.weight")) cq = t;
        if (!strcmp(t->name, "blocks.0.attn.c_k.weight")) ck = t;
        if (t->kind != PG_QKIND_INT) continue;
        nint++;
        int want = !strcmp(t->name, "blocks.1.mlp.fc.weight") ? 3 : !strcmp(t->name, "blocks.1.mlp.proj.weight") ? 4 : 6;
        if (t->bits != want) right = 0, diag("%s: int%d, want int%d", t->name, t->bits, want);
    }
    ok(right && nint > 4, "blocks.1.mlp.fc int3, blocks.1.mlp.proj int4 (the later setting), the rest int6");
    /* the same tensors with k = 2 for the whole attn class: c_q must come out identical, c_k not */
    struct pg_quant_opts o2;
    pg_quant_opts_default(&o2, PG_QSCHEME_INTN, 6);
    o2.keep_float_max = 30;
    struct pg_qmodel q2;
    if (!cq || !ck || pg_quant_parse_k(&o2, "attn=2") || pg_quantize_model(&m, &o2, &q2)) bail_out("k = 2 run");
    const struct pg_qtensor *cq2 = NULL, *ck2 = NULL;
    for (int i = 0; i < q2.ntensors; i++) {
        if (!strcmp(q2.t[i].name, "blocks.0.attn.c_q.weight")) cq2 = &q2.t[i];
        if (!strcmp(q2.t[i].name, "blocks.0.attn.c_k.weight")) ck2 = &q2.t[i];
    }
    ok(cq2 && ck2 && !memcmp(cq->data, cq2->data, cq->data_len) && !memcmp(cq->scales, cq2->scales, cq->scale_len) &&
           memcmp(ck->scales, ck2->scales, ck->scale_len),
       "--k blocks.0.attn.c_q=2 quantizes c_q as --k attn=2 does, and leaves c_k at the class's k");
    pg_qmodel_free(&q2);
    pg_qmodel_free(&qm);
    const char *bad[] = {"blocks.1.ml=3", "blocks.7=3", "blocks.1.mlp.fc.weight.x=3"};
    for (int i = 0; i < 3; i++) {
        pg_quant_opts_default(&o, PG_QSCHEME_INTN, 6);
        o.keep_float_max = 30;
        if (pg_quant_parse_bits(&o, bad[i])) bail_out("parse %s", bad[i]);
        int rc = pg_quantize_model(&m, &o, &qm);
        ok(rc == PG_E_INVAL && strstr(pg_error_message(), "names no quantized tensor"), "--bits %s: refused with '%s'",
           bad[i], rc ? pg_error_message() : "(accepted)");
        if (!rc) pg_qmodel_free(&qm);
    }
    pg_quant_opts_default(&o, PG_QSCHEME_INT8_BASELINE, 8);
    if (pg_quant_parse_bits(&o, "blocks.0=6")) bail_out("parse");
    int rc = pg_quantize_model(&m, &o, &qm);
    ok(rc == PG_E_INVAL, "per-tensor settings need an intN scheme: %s", rc ? pg_error_message() : "(accepted)");
    if (!rc) pg_qmodel_free(&qm);
    pg_model_free(&m);
}

/* ---- LQER and .pgq version 2 ---- */

/* 1 when every tensor of a and b dequantizes to the same bits. */
static int same_weights(const struct pg_qmodel *a, const struct pg_qmodel *b)
{
    int same = a->ntensors == b->ntensors;
    for (int i = 0; same && i < a->ntensors; i++) {
        size_t n = (size_t)(a->t[i].rows * a->t[i].cols);
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        same = !pg_qtensor_dequantize(&a->t[i], x) && !pg_qtensor_dequantize(&b->t[i], y) &&
               !memcmp(x, y, n * sizeof *x);
        free(x), free(y);
    }
    return same;
}

static void test_lqer(void)
{
    struct pg_model m;
    if (small_model(&m)) bail_out("model init");
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, PG_QSCHEME_INTN, 3);
    o.keep_float_max = 30;
    struct pg_qmodel plain, lq;
    if (pg_quantize_model(&m, &o, &plain)) bail_out("plain: %s", pg_error_message());
    o.lqer_rank = 2, o.lqer_top = 2;
    is_int(pg_quantize_model(&m, &o, &lq), 0, "int3 with LQER rank 2 on the top 2 tensors");
    /* the two 2-D integer tensors with the largest ‖W − Ŵ‖ of the plain run, computed here */
    int first = -1, second = -1;
    double e1 = -1, e2 = -1;
    for (int i = 0; i < plain.ntensors; i++) {
        const struct pg_qtensor *t = &plain.t[i];
        if (t->kind != PG_QKIND_INT || t->ndim != 2) continue;
        float *wq = malloc((size_t)(t->rows * t->cols) * sizeof *wq);
        pg_qtensor_dequantize(t, wq);
        const float *w = m.params + m.tensors[i].offset;
        double e = 0;
        for (int64_t j = 0; j < t->rows * t->cols; j++) e += ((double)w[j] - wq[j]) * ((double)w[j] - wq[j]);
        free(wq);
        if (e > e1) second = first, e2 = e1, first = i, e1 = e;
        else if (e > e2) second = i, e2 = e;
    }
    int right = 1, exact = 1, better = 1;
    for (int i = 0; i < lq.ntensors; i++) {
        const struct pg_qtensor *t = &lq.t[i], *p = &plain.t[i];
        int want = i == first || i == second;
        if ((t->lqer_rank != 0) != want || (want && (t->lqer_rank != 2 || t->lqer_mode != PG_LQER_ASYM))) right = 0;
        if (t->data_len != p->data_len || memcmp(t->data, p->data, t->data_len) ||
            (t->scale_len && memcmp(t->scales, p->scales, t->scale_len)))
            exact = 0; /* LQER leaves the integers and steps alone */
        if (!want) continue;
        /* the dequantized tensor = q·s + the correction pg_lqer_fit gives for this residual */
        size_t n = (size_t)(t->rows * t->cols);
        float *wq = malloc(n * sizeof *wq), *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
        pg_qtensor_dequantize(p, wq);
        memcpy(ref, wq, n * sizeof *ref);
        struct pg_lqer l;
        if (pg_lqer_fit(m.params + m.tensors[i].offset, wq, t->rows, t->cols, 2, PG_LQER_ASYM, &l)) bail_out("fit");
        pg_lqer_apply(&l, ref);
        pg_lqer_free(&l);
        pg_qtensor_dequantize(t, got);
        if (memcmp(ref, got, n * sizeof *got)) exact = 0;
        if (!(t->rel_err < p->rel_err)) better = 0;
        diag("%s: rel_err %.4f -> %.4f with LQER", t->name, p->rel_err, t->rel_err);
        free(wq), free(ref), free(got);
    }
    ok(right && first >= 0 && second >= 0, "LQER on exactly the two matrices with the largest residual (%s, %s)",
       first >= 0 ? plain.t[first].name : "?", second >= 0 ? plain.t[second].name : "?");
    ok(exact, "integers and steps unchanged; dequantization = q·s + pg_lqer_fit's correction, bit for bit");
    ok(better, "the corrected tensors' errors are lower");
    unsigned char *b1, *b2, *b3;
    size_t n1, n2, n3;
    if (pg_pgq_serialize(&plain, &b1, &n1) || pg_pgq_serialize(&lq, &b2, &n2)) bail_out("serialize");
    ok(pg_le32_get(b1 + 8) == 1 && pg_le32_get(b2 + 8) == 2, "without LQER the file is version 1, with it version 2");
    uint64_t extra = pg_lqer_bytes(PG_LQER_ASYM, lq.t[first].rows, lq.t[first].cols, 2) +
                     pg_lqer_bytes(PG_LQER_ASYM, lq.t[second].rows, lq.t[second].cols, 2);
    ok(n2 == n1 + extra && pg_qmodel_payload_bytes(&lq) == pg_qmodel_payload_bytes(&plain) + extra,
       "the corrections add their %" PRIu64 " bytes to the file and the payload", extra);
    struct pg_qmodel back;
    is_int(pg_pgq_parse(b2, n2, "lqer.pgq", &back), 0, "parse the version-2 file");
    if (pg_pgq_serialize(&back, &b3, &n3)) bail_out("serialize back");
    ok(n3 == n2 && !memcmp(b2, b3, n2), "parse → serialize is byte-identical");
    ok(same_weights(&back, &lq), "the parsed file dequantizes to the same weights");
    /* the version-2 fields, each broken with the CRC made right */
    const struct pg_qtensor *t = &back.t[first];
    uint64_t table = pg_le64_get(b2 + 40), e = table + (uint64_t)first * 128, plain_e = table;
    uint64_t lo = t->lqer_off, rows = (uint64_t)t->rows, cols = (uint64_t)t->cols;
    pg_qmodel_free(&back);
    expect_error(b2, n2, e + 108, 3, "bad LQER mode 3", "LQER mode 3");
    expect_error(b2, n2, e + 109, 0, "bad LQER mode", "LQER rank 0");
    expect_error(b2, n2, e + 109, 9, "bad LQER mode", "LQER rank above min(rows, cols)");
    expect_error(b2, n2, e + 111, 1, "reserved byte 111", "reserved byte of a version-2 entry");
    expect_error(b2, n2, e + 110, 2, "scale code 2", "an unknown scale code");
    expect_error(b2, n2, e + 112, (unsigned char)(b2[e + 112] + 1), "LQER correction at", "LQER offset off by one");
    expect_error(b2, n2, e + 120, (unsigned char)(b2[e + 120] + 1), "LQER correction at", "LQER size off by one");
    expect_error(b2, n2, plain_e + 109, 1, "without an LQER mode", "an LQER rank without a mode");
    expect_error(b2, n2, lo, 2, "outside -2..1", "an INT2 code of A outside -2..1");
    expect_error(b2, n2, lo + rows * 2 + 2 * cols + 1, 0x80, "not a positive finite", "a negative scale of A");
    /* every truncation and 2000 random bit flips of the version-2 file are refused */
    int acc = 0;
    for (size_t k = 0; k < n2; k++) {
        unsigned char *b = malloc(k ? k : 1);
        memcpy(b, b2, k);
        struct pg_qmodel q;
        if (!pg_pgq_parse(b, k, "t.pgq", &q)) acc++, pg_qmodel_free(&q);
        free(b);
    }
    struct pg_rng fr;
    pg_rng_seed(&fr, 77);
    unsigned char *fb = malloc(n2);
    for (int trial = 0; trial < 2000; trial++) {
        memcpy(fb, b2, n2);
        uint64_t bit = pg_rng_below(&fr, (uint64_t)n2 * 8);
        fb[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        struct pg_qmodel q;
        if (!pg_pgq_parse(fb, n2, "f.pgq", &q)) acc++, pg_qmodel_free(&q);
    }
    free(fb);
    is_int(acc, 0, "version 2: all %zu truncations and 2000 bit flips refused", n2);
    /* an older version-1 reader's view: a version-2 file's LQER fields in a version-1 file */
    expect_error(b2, n2, 8, 1, "reserved byte 108", "the LQER fields in a file labelled version 1");
    free(b1), free(b2), free(b3);
    pg_qmodel_free(&plain);
    pg_qmodel_free(&lq);
    /* options */
    o.lqer_rank = 65;
    ok(pg_quantize_model(&m, &o, &lq) == PG_E_INVAL, "LQER rank 65 refused: '%s'", pg_error_message());
    pg_quant_opts_default(&o, PG_QSCHEME_INT8_BASELINE, 8);
    o.lqer_rank = 2;
    ok(pg_quantize_model(&m, &o, &lq) == PG_E_INVAL, "LQER with int8-baseline refused: '%s'", pg_error_message());
    pg_model_free(&m);
}

/* ---- ternary and quinary tensors (.pgq version 2) ---- */

static void test_trit_scheme(void)
{
    for (int scheme = PG_QSCHEME_TERNARY; scheme <= PG_QSCHEME_QUINARY; scheme++) {
        const char *name = pg_qscheme_name(scheme);
        int levels = scheme == PG_QSCHEME_TERNARY ? 3 : 5, kind = scheme == PG_QSCHEME_TERNARY ? PG_QKIND_TERN : PG_QKIND_QUIN;
        struct pg_model m;
        unsigned char *buf;
        size_t len;
        is_int(small_pgq(scheme, 0, 0, 30, &m, &buf, &len), 0, "%s: quantize and serialize the small model", name);
        struct pg_qmodel qm;
        is_int(pg_pgq_parse(buf, len, "t.pgq", &qm), 0, "%s: parse", name);
        ok(pg_le32_get(buf + 8) == 2 && pg_le32_get(buf + 76) == (uint32_t)scheme, "%s: version 2, scheme %d", name,
           scheme);
        /* every class matrix is a packed tensor whose weights are pg_trit_quantize's, dequantized */
        int nk = 0, same = 1, small = 1;
        for (int i = 0; i < qm.ntensors; i++) {
            const struct pg_qtensor *t = &qm.t[i];
            if (t->kind != kind) continue;
            nk++;
            int64_t n = t->rows * t->cols, ng = pg_trit_ngroups(t->rows, t->cols);
            float *w = malloc((size_t)n * sizeof *w), *ref = malloc((size_t)n * sizeof *ref), *got = malloc((size_t)n * sizeof *got);
            int8_t *q = malloc((size_t)n);
            uint16_t *sc = malloc((size_t)ng * sizeof *sc);
            for (int64_t j = 0; j < n; j++) w[j] = m.params[m.tensors[i].offset + (size_t)j];
            if (pg_trit_quantize(w, t->rows, t->cols, levels, q, sc) ||
                pg_trit_dequantize(q, sc, t->rows, t->cols, levels, ref, "ref") || pg_qtensor_dequantize(t, got))
                bail_out("trit");
            same &= !memcmp(ref, got, (size_t)n * sizeof *got);
            for (int64_t g = 0; g < ng; g++) same &= t->scales[2 * g] == (sc[g] & 0xff) && t->scales[2 * g + 1] == sc[g] >> 8;
            small &= t->data_len <= (uint64_t)pg_trit_pack_bound(n, levels) && t->data_len * 8 <= (uint64_t)n * 3 + 8;
            free(w), free(ref), free(got), free(q), free(sc);
        }
        ok(nk == 13 && same, "%s: the 13 matrices are %s tensors holding pg_trit_quantize's codes and scales", name,
           pg_qkind_name(kind));
        ok(small, "%s: packed in at most 3 bits a weight (and the layout byte)", name);
        unsigned char *b2;
        size_t n2;
        if (pg_pgq_serialize(&qm, &b2, &n2)) bail_out("serialize");
        ok(n2 == len && !memcmp(b2, buf, len), "%s: parse → serialize is byte-identical", name);
        free(b2);
        const struct pg_qtensor *t0 = &qm.t[0];
        uint64_t table = pg_le64_get(buf + 40), doff = t0->data_off, soff = t0->scale_off;
        pg_qmodel_free(&qm);
        expect_error(buf, len, doff, 9, "layout", "a bad layout byte");
        expect_error(buf, len, doff, scheme == PG_QSCHEME_TERNARY ? 3 : 1, "layout", "a layout of the other levels");
        /* base-3 bytes go to 242; a 10-quin word's top byte past 5^10 >> 16 = 149 is no word */
        expect_error(buf, len, doff + (scheme == PG_QSCHEME_TERNARY ? 1 : 3), 0xff, "tok_emb",
                     "a packed byte that is no digit group");
        expect_error(buf, len, soff + 1, 0x80, "tok_emb", "a negative group scale");
        expect_error(buf, len, table + 49, 4, "bad bits", "a packed tensor with 4 bits");
        expect_error(buf, len, 8, 1, "unknown scheme", "the scheme in a file labelled version 1");
        expect_error(buf, len, 76, scheme == PG_QSCHEME_TERNARY ? 4 : 3, "bad bits", "the other scheme's tensors");
        {
            /* a packed size one byte short, the CRC right: the codes do not unpack */
            unsigned char *b = malloc(len);
            memcpy(b, buf, len);
            pg_le64_put(b + table + 80, pg_le64_get(buf + table + 80) - 1);
            fix_crc(b, len);
            struct pg_qmodel q3;
            int rc = pg_pgq_parse(b, len, "x.pgq", &q3);
            ok(rc == PG_E_FORMAT, "%s: a packed size one byte short: '%s'", name, pg_error_message());
            if (!rc) pg_qmodel_free(&q3);
            free(b);
        }
        free(buf);
        pg_model_free(&m);
    }
    int scheme, bits;
    ok(pg_quant_parse_scheme("ternary", &scheme, &bits) == 0 && scheme == PG_QSCHEME_TERNARY &&
           pg_quant_parse_scheme("quinary", &scheme, &bits) == 0 && scheme == PG_QSCHEME_QUINARY &&
           pg_quant_parse_scheme("binary", &scheme, &bits) == PG_E_INVAL,
       "--scheme ternary, quinary; not binary");
}

/* ---- log-delta steps (.pgq version 2) ---- */

static void test_logdelta(void)
{
    struct pg_model m;
    if (small_model(&m)) bail_out("model init");
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, PG_QSCHEME_INTN, 6);
    o.keep_float_max = 30;
    struct pg_qmodel plain, ld;
    if (pg_quantize_model(&m, &o, &plain)) bail_out("plain");
    o.scale_code = PG_QSCALE_LOGDELTA;
    is_int(pg_quantize_model(&m, &o, &ld), 0, "int6 with log-delta steps");
    int sizes = 1, rounding = 1, close = 1, nint = 0;
    for (int i = 0; i < ld.ntensors; i++) {
        const struct pg_qtensor *t = &ld.t[i], *p = &plain.t[i];
        if (t->kind != PG_QKIND_INT) continue;
        nint++;
        if (t->scale_code != PG_QSCALE_LOGDELTA || t->scale_len != (uint64_t)t->rows + 1) sizes = 0;
        /* decoded independently with pg_trit_logdelta_decode; the integers round w by them */
        float *st = malloc((size_t)t->rows * sizeof *st);
        if (pg_trit_logdelta_decode((uint16_t)(t->scales[0] | t->scales[1] << 8), t->scales + 2, t->rows, st, "t"))
            bail_out("decode");
        int Q = 31;
        for (int64_t rr = 0; rr < t->rows; rr++) {
            /* the decoded step within 2^(1/16) of the fp16 step rounding chose */
            double ratio = st[rr] / pg_qtensor_scale(p, rr);
            if (ratio > 1.0443 || ratio < 1 / 1.0443) close = 0;
            for (int64_t cc = 0; cc < t->cols; cc++) {
                double v = nearbyint((double)(float)(m.params[m.tensors[i].offset + (size_t)(rr * t->cols + cc)] / st[rr]));
                v = v > Q ? Q : v < -Q ? -Q : v;
                if ((int8_t)t->data[rr * t->cols + cc] != (int8_t)v) rounding = 0;
            }
        }
        free(st);
        if (!(t->rel_err < 1.2 * p->rel_err)) close = 0;
    }
    ok(nint > 0 && sizes, "every integer tensor stores rows + 1 bytes of steps (an fp16 base, a code a row)");
    ok(rounding, "the integers round w by the decoded steps");
    ok(close, "each decoded step within 2^(1/16) of the fp16 one; errors within 1.2x of fp16 steps'");
    unsigned char *b, *b2;
    size_t n, n2;
    if (pg_pgq_serialize(&ld, &b, &n)) bail_out("serialize");
    struct pg_qmodel back;
    is_int(pg_pgq_parse(b, n, "ld.pgq", &back), 0, "parse the log-delta file");
    ok(pg_le32_get(b + 8) == 2, "... version 2");
    if (pg_pgq_serialize(&back, &b2, &n2)) bail_out("serialize back");
    ok(n2 == n && !memcmp(b, b2, n), "parse → serialize is byte-identical");
    ok(same_weights(&back, &ld), "the parsed file dequantizes to the same weights");
    uint64_t soff = back.t[0].scale_off;
    pg_qmodel_free(&back);
    expect_error(b, n, soff + 2, 32, "not a 5-bit code", "a log-delta code of 32");
    expect_error(b, n, soff + 1, 0x80, "log-delta", "a negative base");
    expect_error(b, n, 8, 1, "reserved byte 110", "log-delta steps in a file labelled version 1");
    free(b), free(b2);
    pg_qmodel_free(&plain);
    pg_qmodel_free(&ld);
    pg_quant_opts_default(&o, PG_QSCHEME_INT8_BASELINE, 8);
    o.scale_code = PG_QSCALE_LOGDELTA;
    ok(pg_quantize_model(&m, &o, &ld) == PG_E_INVAL, "log-delta with int8-baseline refused: '%s'", pg_error_message());
    pg_model_free(&m);
}

/* ---- GPTQ-lite clip search ---- */

/* torch.quantile(|w|, p) in double, by sorting (independent of the code's selection). */
static double ref_quantile_p(const float *w, int n, double p)
{
    double *a = malloc((size_t)n * sizeof *a);
    for (int i = 0; i < n; i++) a[i] = fabs((double)w[i]);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && a[j - 1] > a[j]; j--) {
            double t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
    double rank = p * (n - 1), lo = floor(rank);
    double v = a[(int)lo] + (rank - lo) * (a[(int)ceil(rank)] - a[(int)lo]);
    free(a);
    return v;
}

/* Σ (w − clamp(round(w/s), ±Q)·s)², in double. */
static double ref_row_err(const float *w, int n, double s, int Q)
{
    double e = 0;
    for (int i = 0; i < n; i++) {
        double r = ref_round(w[i] / s);
        r = r > Q ? Q : r < -Q ? -Q : r;
        e += (w[i] - r * s) * (w[i] - r * s);
    }
    return e;
}

static void test_clip_search(void)
{
    enum { N = 512 };
    static float w[N], tmp[N];
    static int8_t q[N];
    struct pg_rng r;
    pg_rng_seed(&r, 31);
    const double ps[] = {0.999, 0.9995, 0.9999, 0.99999, 1.0};
    int lowest = 1, from_set = 1, consistent = 1;
    for (int row = 0; row < 40; row++) {
        int bits = 3 + row % 5, Q = (1 << (bits - 1)) - 1;
        for (int i = 0; i < N; i++) w[i] = (float)(0.02 * pg_rng_normal(&r));
        for (int k = 0; k < row % 4; k++) w[pg_rng_below(&r, N)] *= 20; /* 0 to 3 outliers */
        uint16_t h = pg_quant_row(w, N, PG_QSCHEME_INTN, PG_QCLIP_SEARCH, bits, 0, q, tmp);
        double s = pg_f16_to_f32(h), got = 0;
        for (int i = 0; i < N; i++) got += (w[i] - q[i] * s) * (w[i] - q[i] * s);
        if (fabs(got - ref_row_err(w, N, s, Q)) > 1e-12 * (got + 1e-30)) consistent = 0;
        double best = INFINITY;
        int near = 0;
        for (int c = 0; c < 5; c++) {
            uint16_t hc = ref_f16(ref_quantile_p(w, N, ps[c]) / Q);
            best = fmin(best, ref_row_err(w, N, pg_f16_to_f32(hc), Q));
            near |= abs((int)hc - (int)h) <= 1; /* the code's fp32 quantile may land one fp16 step off */
        }
        if (got > best * (1 + 1e-3)) lowest = 0, diag("row %d int%d: error %.6g, best candidate %.6g", row, bits, got, best);
        if (!near) from_set = 0;
    }
    ok(consistent, "search: q and the step are a plain rounding of the row");
    ok(from_set, "search: the step is one of the five candidates' (quantiles 0.999 .. 0.99999, max)");
    ok(lowest, "search: its error is the lowest of the five, on 40 rows of 3 to 7 bits with outliers");
    int clip;
    ok(pg_quant_parse_clip("search", &clip) == 0 && clip == PG_QCLIP_SEARCH, "--clip search");
    /* in a file: version 2, and refused by a version-1 reading */
    struct pg_model m;
    unsigned char *buf;
    size_t len;
    is_int(small_pgq(PG_QSCHEME_INTN, 5, PG_QCLIP_SEARCH, 30, &m, &buf, &len), 0, "small model, int5 with clip search");
    ok(pg_le32_get(buf + 8) == 2, "... written as version 2");
    struct pg_qmodel qm;
    is_int(pg_pgq_parse(buf, len, "s.pgq", &qm), 0, "... and read back");
    if (!qm.t) bail_out("parse");
    pg_qmodel_free(&qm);
    expect_error(buf, len, 8, 1, "clip 4", "clip search in a file labelled version 1");
    free(buf);
    pg_model_free(&m);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pg-test-quant-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_half();
    test_baseline_rows();
    test_intn();
    test_options();
    test_format();
    test_overrides();
    test_lqer();
    test_trit_scheme();
    test_logdelta();
    test_clip_search();
    test_modelfile();
    test_baseline_payload();
    remove_tree(dir);
    return done_testing();
}
