/* quant.c: per-row quantization of a model's parameters (see quant.h). */
#define _POSIX_C_SOURCE 200809L
#include "quant.h"

#include "calib.h"
#include "err.h"
#include "half.h"
#include "opt.h"
#include "pgq.h"
#include "trit.h"
#include "xio.h"
#include "qxform.h"
#include "rng.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- options ---- */

void pg_quant_opts_default(struct pg_quant_opts *o, int scheme, int bits)
{
    memset(o, 0, sizeof *o);
    o->scheme = scheme;
    for (int c = 0; c < PG_QCLASS_N; c++) o->bits[c] = scheme == PG_QSCHEME_INT8_BASELINE ? 8 : bits;
    o->clip = scheme == PG_QSCHEME_INT8_BASELINE ? PG_QCLIP_QUANTILE : PG_QCLIP_SDCLIP;
    o->k[PG_QCLASS_ATTN] = 13.0;
    o->k[PG_QCLASS_MLP] = 11.5;
    o->k[PG_QCLASS_EMBED] = 14.0;
    o->keep_float_max = PG_QUANT_KEEP_FLOAT_MAX;
    o->method = PG_QMETHOD_RTN;
    pg_gptq_opts_default(&o->gptq);
    o->lqer_top = 3;
    o->lqer_mode = PG_LQER_ASYM;
}

int pg_quant_parse_scheme(const char *s, int *scheme, int *bits)
{
    if (strcmp(s, "int8-baseline") == 0) {
        *scheme = PG_QSCHEME_INT8_BASELINE;
        *bits = 8;
        return 0;
    }
    if (strcmp(s, "ternary") == 0 || strcmp(s, "quinary") == 0) {
        *scheme = s[0] == 't' ? PG_QSCHEME_TERNARY : PG_QSCHEME_QUINARY;
        *bits = 0;
        return 0;
    }
    if (strncmp(s, "int", 3) == 0 && s[3] >= '2' && s[3] <= '8' && !s[4]) {
        *scheme = PG_QSCHEME_INTN;
        *bits = s[3] - '0';
        return 0;
    }
    return pg_error(PG_E_INVAL, "--scheme: unknown scheme '%s' (int8-baseline, int2 ... int8, ternary, quinary)", s);
}

int pg_quant_parse_clip(const char *s, int *clip)
{
    static const int clips[] = {PG_QCLIP_SDCLIP, PG_QCLIP_MAXABS, PG_QCLIP_QUANTILE, PG_QCLIP_SEARCH};
    for (size_t i = 0; i < sizeof clips / sizeof clips[0]; i++)
        if (strcmp(s, pg_qclip_name(clips[i])) == 0) {
            *clip = clips[i];
            return 0;
        }
    return pg_error(PG_E_INVAL, "--clip: unknown clip rule '%s' (sdclip, maxabs, quantile, search)", s);
}

/* A tensor-name prefix for an override: letters, digits, '.', '_', no leading/trailing '.'. */
static int valid_prefix(const char *p, size_t n)
{
    if (n == 0 || n >= sizeof ((struct pg_quant_override *)0)->prefix || p[0] == '.' || p[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++)
        if (!(p[i] == '.' || p[i] == '_' || (p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'z') ||
              (p[i] >= 'A' && p[i] <= 'Z')))
            return 0;
    return 1;
}

static int parse_value(const char *what, const char *v, int is_k, int *bits, double *k)
{
    if (!is_k) return pg_parse_int(what, v, 2, 8, bits);
    PG_TRY(pg_parse_f64(what, v, 0, 1000, k));
    if (!(*k > 0)) return pg_error(PG_E_INVAL, "%s: k must be positive, not %s", what, v);
    return 0;
}

/* Applies "key=value,..." (or a bare value for every class) to o: a class key sets the class's
 * value, any other key adds a per-tensor override. */
static int parse_items(struct pg_quant_opts *o, const char *what, const char *spec, int is_k)
{
    if (!spec || !*spec) return pg_error(PG_E_INVAL, "%s: empty value", what);
    if (!strchr(spec, '=')) {
        for (int c = 0; c < PG_QCLASS_N; c++) PG_TRY(parse_value(what, spec, is_k, &o->bits[c], &o->k[c]));
        return 0;
    }
    char *copy = pg_strdup(spec);
    if (!copy) return PG_E_NOMEM;
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && !rc; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        size_t kl = eq ? (size_t)(eq - item) : 0;
        int cls = -1;
        for (int c = 0; c < PG_QCLASS_N && eq; c++)
            if (strlen(pg_qclass_name(c)) == kl && strncmp(item, pg_qclass_name(c), kl) == 0) cls = c;
        if (cls >= 0) {
            rc = parse_value(what, eq + 1, is_k, &o->bits[cls], &o->k[cls]);
        } else if (!eq || !valid_prefix(item, kl)) {
            rc = pg_error(PG_E_INVAL, "%s: '%s' is not KEY=VALUE with KEY a class (attn, mlp, embed) or a tensor-name "
                          "prefix (blocks.3.mlp)", what, item);
        } else if (o->nov == PG_QUANT_MAX_OVERRIDES) {
            rc = pg_error(PG_E_INVAL, "%s: more than %d per-tensor settings", what, PG_QUANT_MAX_OVERRIDES);
        } else {
            struct pg_quant_override *ov = &o->ov[o->nov];
            memset(ov, 0, sizeof *ov);
            memcpy(ov->prefix, item, kl);
            rc = parse_value(what, eq + 1, is_k, &ov->bits, &ov->k);
            if (!rc) o->nov++;
        }
    }
    free(copy);
    return rc;
}

int pg_quant_parse_bits(struct pg_quant_opts *o, const char *spec)
{
    struct pg_quant_opts t = *o;
    PG_TRY(parse_items(&t, "--bits", spec, 0));
    *o = t;
    return 0;
}

int pg_quant_parse_k(struct pg_quant_opts *o, const char *spec)
{
    struct pg_quant_opts t = *o;
    PG_TRY(parse_items(&t, "--k", spec, 1));
    *o = t;
    return 0;
}

int pg_quant_parse_method(const char *s, int *method)
{
    if (strcmp(s, "rtn") == 0) *method = PG_QMETHOD_RTN;
    else if (strcmp(s, "gptq") == 0) *method = PG_QMETHOD_GPTQ;
    else return pg_error(PG_E_INVAL, "--method: unknown method '%s' (rtn, gptq)", s);
    return 0;
}

const char *pg_qmethod_name(int method) { return method == PG_QMETHOD_GPTQ ? "gptq" : "rtn"; }

/* Does the override prefix cover the tensor name (the prefix, then '.' or the end)? */
static int covers(const char *prefix, const char *name)
{
    size_t n = strlen(prefix);
    return strncmp(prefix, name, n) == 0 && (name[n] == '.' || name[n] == 0);
}

/* ---- one row ---- */

/* torch.quantile's rank in fp32: rank = q·(n−1); below = (long)rank; weight = rank − below;
 * above = ceil(rank). */
static void torch_rank(int64_t n, float q, int64_t *lo, int64_t *hi, float *w)
{
    float rank = q * (float)(n - 1);
    *lo = (int64_t)rank;
    *w = rank - (float)*lo;
    *hi = (int64_t)ceilf(rank);
    /* fp32 cannot hold every n−1 past 2^24 (torch refuses such rows); stay inside the row */
    if (*lo > n - 1) *lo = n - 1;
    if (*hi > n - 1) *hi = n - 1;
}

/* torch.lerp(a, b, w) as ATen's vectorized CPU kernel computes it: fmadd(w, b−a, a) for |w| < 0.5,
 * else fmadd(w−1, b−a, b). */
static float torch_lerp(float a, float b, float w)
{
    float d = b - a;
    return fabsf(w) < 0.5f ? fmaf(w, d, a) : fmaf(w - 1.0f, d, b);
}

float pg_quant_torch_quantile(const float *sorted, int64_t n, float q)
{
    int64_t lo, hi;
    float w;
    torch_rank(n, q, &lo, &hi, &w);
    return torch_lerp(sorted[lo], sorted[hi], w);
}

/* Moves the k-th smallest of a[0..n) to a[k], smaller ones before it and larger or equal ones
 * after (quickselect, median of three). */
static void select_kth(float *a, int64_t n, int64_t k)
{
    int64_t l = 0, r = n - 1;
    while (r > l) {
        int64_t m = l + (r - l) / 2;
        /* order a[l], a[m], a[r]; pivot = the median, put at a[m] */
        float t;
#define SWAP(i, j) (t = a[i], a[i] = a[j], a[j] = t)
        if (a[m] < a[l]) SWAP(m, l);
        if (a[r] < a[l]) SWAP(r, l);
        if (a[r] < a[m]) SWAP(r, m);
        float piv = a[m];
        int64_t i = l, j = r;
        while (i <= j) {
            while (a[i] < piv) i++;
            while (a[j] > piv) j--;
            if (i <= j) {
                SWAP(i, j);
                i++;
                j--;
            }
        }
#undef SWAP
        /* now a[l..j] <= piv <= a[i..r], and a[j+1..i-1] == piv */
        if (k <= j) r = j;
        else if (k >= i) l = i;
        else return;
    }
}

/* The torch quantile of |w| over n values, with tmp as scratch. */
static float abs_quantile(const float *w, int64_t n, float q, float *tmp)
{
    for (int64_t i = 0; i < n; i++) tmp[i] = fabsf(w[i]);
    int64_t lo, hi;
    float wt;
    torch_rank(n, q, &lo, &hi, &wt);
    select_kth(tmp, n, lo);
    float below = tmp[lo], above = below;
    if (hi != lo) { /* the next order statistic: the smallest of what selection left above lo */
        above = tmp[lo + 1];
        for (int64_t i = lo + 2; i < n; i++)
            if (tmp[i] < above) above = tmp[i];
    }
    return torch_lerp(below, above, wt);
}

/* The step that dequantization will use: fp16 of s, kept positive and finite. */
static uint16_t step_f16(float s)
{
    uint16_t h = pg_f32_to_f16(s);
    if ((h & 0x7fffu) == 0) h = 1;               /* below fp16's range (a zero row): 2^-24 */
    else if ((h & 0x7fffu) >= 0x7c00u) h = 0x7bff; /* above it: 65504 */
    return h & 0x7fffu;
}

/* q = clamp(round(w / s16), ±Q) (into q unless NULL); @return Σ (w − q·s16)² in double. */
static double round_row(const float *w, int64_t n, float s16, int Q, int8_t *q)
{
    float lim = (float)Q;
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        float r = nearbyintf(w[i] / s16);
        r = r > lim ? lim : r < -lim ? -lim : r;
        if (q) q[i] = (int8_t)r;
        double d = (double)w[i] - (double)(r * s16);
        e += d * d;
    }
    return e;
}

uint16_t pg_quant_row(const float *w, int64_t n, int scheme, int clip, int bits, double k, int8_t *q, float *tmp)
{
    if (scheme == PG_QSCHEME_INT8_BASELINE) {
        /* clip_abs = quantile(|t|, q); scale = (clip_abs / 127.0).clamp_min(1.0 / 127.0);
         * q = clamp(round(clamp(t, -clip_abs, clip_abs) / scale), -127, 127) */
        float c = abs_quantile(w, n, (float)PG_QUANT_BASELINE_Q, tmp);
        float s = c / 127.0f, floor_s = (float)(1.0 / 127.0);
        if (s < floor_s) s = floor_s;
        for (int64_t i = 0; i < n; i++) {
            float x = w[i];
            x = x < c ? x : c;
            x = x > -c ? x : -c;
            float r = nearbyintf(x / s);
            q[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r);
        }
        return pg_f32_to_f16(s);
    }
    const int Q = (1 << (bits - 1)) - 1;
    if (clip == PG_QCLIP_SEARCH) { /* the candidate whose rounding error is lowest (ties: the first) */
        static const float ps[] = {0.999f, 0.9995f, 0.9999f, 0.99999f};
        float mx = 0;
        for (int64_t i = 0; i < n; i++) mx = fabsf(w[i]) > mx ? fabsf(w[i]) : mx;
        uint16_t best = 0;
        double best_err = INFINITY;
        for (int c = 0; c <= 4; c++) {
            float cl = c < 4 ? abs_quantile(w, n, ps[c], tmp) : mx;
            uint16_t h = step_f16(cl / (float)Q);
            double e = round_row(w, n, pg_f16_to_f32(h), Q, NULL);
            if (e < best_err) best_err = e, best = h;
        }
        round_row(w, n, pg_f16_to_f32(best), Q, q);
        return best;
    }
    float s;
    if (clip == PG_QCLIP_QUANTILE) {
        s = abs_quantile(w, n, (float)PG_QUANT_BASELINE_Q, tmp) / (float)Q;
    } else if (clip == PG_QCLIP_MAXABS) {
        float mx = 0;
        for (int64_t i = 0; i < n; i++) mx = fabsf(w[i]) > mx ? fabsf(w[i]) : mx;
        s = mx / (float)Q;
    } else { /* SDClip: k·std(row)/Q, std with correction 1 as torch.std */
        double mean = 0, ss = 0;
        for (int64_t i = 0; i < n; i++) mean += w[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) ss += (w[i] - mean) * (w[i] - mean);
        double sd = n > 1 ? sqrt(ss / (double)(n - 1)) : 0;
        s = (float)(k * sd / Q);
    }
    uint16_t h = step_f16(s);
    round_row(w, n, pg_f16_to_f32(h), Q, q);
    return h;
}

/* ---- whole models ---- */

const double *pg_qtensor_hessian(const struct pg_qtensor *t, const struct pg_calib *calib, const struct pg_model *m)
{
    int64_t cols = 0;
    const double *h = calib ? pg_calib_hessian(calib, m, t->name, &cols) : NULL;
    return h && cols == t->cols ? h : NULL; /* else not the layout the statistics describe */
}

/* Quantizes a TERN/QUIN tensor: codes and group scales (trit.h), the codes packed into d (which
 * has pg_trit_pack_bound bytes; data_len becomes the packed size), the scales into s. */
static int quantize_trit(struct pg_qtensor *t, const pg_real *w, unsigned char *d, unsigned char *s)
{
    int levels = t->kind == PG_QKIND_TERN ? 3 : 5;
    int64_t n = t->rows * t->cols, ng = pg_trit_ngroups(t->rows, t->cols), len = 0;
    int8_t *q = pg_malloc((size_t)n);
    uint16_t *sc = pg_malloc((size_t)ng * sizeof *sc);
    int rc = q && sc ? 0 : PG_E_NOMEM;
    if (!rc) rc = pg_trit_quantize(w, t->rows, t->cols, levels, q, sc);
    if (rc && rc != PG_E_NOMEM) rc = pg_error(PG_E_FORMAT, "tensor '%s': %s", t->name, pg_error_message());
    if (!rc) rc = pg_trit_pack_best(q, n, levels, d, &len);
    if (!rc) {
        t->data_len = (uint64_t)len;
        for (int64_t g = 0; g < ng; g++) pg_le16_put(s + 2 * g, sc[g]);
    }
    free(q);
    free(sc);
    return rc;
}

/* The storage decision for one tensor of m. */
static void plan_tensor(const struct pg_tensor *mt, const struct pg_quant_opts *o, struct pg_qtensor *t, double *k,
                        unsigned char *used)
{
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", mt->name);
    t->role = pg_qrole_of(mt->name);
    t->ndim = mt->ndim;
    t->shape[0] = mt->shape[0];
    t->shape[1] = mt->ndim == 2 ? mt->shape[1] : 0;
    t->rows = mt->ndim == 2 ? mt->shape[0] : 1;
    t->cols = mt->ndim == 2 ? mt->shape[1] : mt->shape[0];
    int cls = pg_qclass_of_role(t->role);
    int big = (int64_t)mt->numel > o->keep_float_max;
    if (o->scheme == PG_QSCHEME_INT8_BASELINE) {
        if (big) t->kind = PG_QKIND_INT, t->bits = 8, t->clip = PG_QCLIP_QUANTILE;
        else t->kind = mt->kind == PG_TENSOR_CONTROL ? PG_QKIND_F32 : PG_QKIND_F16;
    } else if (big && cls >= 0 && mt->kind != PG_TENSOR_CONTROL && o->scheme != PG_QSCHEME_INTN) {
        t->kind = o->scheme == PG_QSCHEME_TERNARY ? PG_QKIND_TERN : PG_QKIND_QUIN;
        t->bits = t->kind == PG_QKIND_TERN ? 2 : 3;
    } else if (big && cls >= 0 && mt->kind != PG_TENSOR_CONTROL) {
        t->kind = PG_QKIND_INT, t->bits = o->bits[cls], t->clip = o->clip;
        *k = o->k[cls];
        for (int i = 0; i < o->nov; i++)
            if (covers(o->ov[i].prefix, t->name)) {
                if (o->ov[i].bits) t->bits = o->ov[i].bits;
                if (o->ov[i].k > 0) *k = o->ov[i].k;
                used[i] = 1;
            }
    } else {
        t->kind = PG_QKIND_F16;
    }
    t->out_err = -1;
    t->method = PG_QMETHOD_RTN;
    if (t->kind == PG_QKIND_INT) {
        t->clip_param = t->clip == PG_QCLIP_QUANTILE ? (float)PG_QUANT_BASELINE_Q
                        : t->clip == PG_QCLIP_SDCLIP ? (float)*k : 0.0f;
        t->data_len = (uint64_t)mt->numel;
        t->scale_code = o->scheme == PG_QSCHEME_INTN ? o->scale_code : PG_QSCALE_FP16;
        t->scale_len = t->scale_code == PG_QSCALE_LOGDELTA ? 1 + (uint64_t)t->rows : 2 * (uint64_t)t->rows;
    } else if (t->kind == PG_QKIND_TERN || t->kind == PG_QKIND_QUIN) {
        /* room for the larger layout; the packed size is set once the codes are known */
        t->data_len = (uint64_t)pg_trit_pack_bound((int64_t)mt->numel, t->kind == PG_QKIND_TERN ? 3 : 5);
        t->scale_len = 2 * (uint64_t)pg_trit_ngroups(t->rows, t->cols);
    } else {
        t->bits = t->kind == PG_QKIND_F32 ? 32 : 16;
        t->data_len = (uint64_t)mt->numel * (uint64_t)(t->bits / 8);
    }
}

static int check_opts(const struct pg_quant_opts *o)
{
    if (o->scheme < PG_QSCHEME_INT8_BASELINE || o->scheme > PG_QSCHEME_QUINARY)
        return pg_error(PG_E_INVAL, "unknown quantization scheme %d", o->scheme);
    if (o->keep_float_max < 0) return pg_error(PG_E_INVAL, "keep_float_max must not be negative");
    if (o->scheme == PG_QSCHEME_INTN) {
        if (o->clip != PG_QCLIP_SDCLIP && o->clip != PG_QCLIP_MAXABS && o->clip != PG_QCLIP_QUANTILE &&
            o->clip != PG_QCLIP_SEARCH)
            return pg_error(PG_E_INVAL, "unknown clip rule %d", o->clip);
        for (int c = 0; c < PG_QCLASS_N; c++) {
            if (o->bits[c] < 2 || o->bits[c] > 8)
                return pg_error(PG_E_INVAL, "%s: %d bits, not 2 to 8", pg_qclass_name(c), o->bits[c]);
            if (!(o->k[c] > 0) || !isfinite(o->k[c]))
                return pg_error(PG_E_INVAL, "%s: SDClip k %g is not a positive number", pg_qclass_name(c), o->k[c]);
        }
    }
    if (o->lqer_rank < 0 || o->lqer_rank > PG_LQER_MAX_RANK || (o->lqer_rank && o->lqer_top < 1) ||
        (o->lqer_mode != PG_LQER_ASYM && o->lqer_mode != PG_LQER_SYM))
        return pg_error(PG_E_INVAL, "LQER: rank %d (0..%d), top %d, mode %d", o->lqer_rank, PG_LQER_MAX_RANK,
                        o->lqer_top, o->lqer_mode);
    if (o->lqer_rank && o->scheme != PG_QSCHEME_INTN) return pg_error(PG_E_INVAL, "LQER applies to the intN schemes");
    if (o->scale_code != PG_QSCALE_FP16 && (o->scale_code != PG_QSCALE_LOGDELTA || o->scheme != PG_QSCHEME_INTN))
        return pg_error(PG_E_INVAL, "log-delta steps apply to the intN schemes (scale code %d)", o->scale_code);
    if (o->nov && o->scheme != PG_QSCHEME_INTN)
        return pg_error(PG_E_INVAL, "per-tensor bits and k apply to the intN schemes");
    if (o->nov < 0 || o->nov > PG_QUANT_MAX_OVERRIDES) return pg_error(PG_E_INVAL, "bad override count %d", o->nov);
    for (int i = 0; i < o->nov; i++)
        if ((o->ov[i].bits && (o->ov[i].bits < 2 || o->ov[i].bits > 8)) || !(o->ov[i].k >= 0) || !isfinite(o->ov[i].k))
            return pg_error(PG_E_INVAL, "%s: bad per-tensor setting", o->ov[i].prefix);
    if (o->method != PG_QMETHOD_RTN && o->method != PG_QMETHOD_GPTQ)
        return pg_error(PG_E_INVAL, "unknown quantization method %d", o->method);
    if (o->xform < 0 || o->xform > (PG_QXFORM_AWQ | PG_QXFORM_HADAMARD) || (o->xform && o->scheme != PG_QSCHEME_INTN))
        return pg_error(PG_E_INVAL, "input transforms %d apply to the intN schemes", o->xform);
    if ((o->xform & PG_QXFORM_AWQ) && !o->calib) return pg_error(PG_E_INVAL, "AWQ needs calibration statistics");
    if (o->method == PG_QMETHOD_GPTQ && (o->scheme != PG_QSCHEME_INTN || !o->calib))
        return pg_error(PG_E_INVAL, "GPTQ needs an intN scheme and calibration statistics");
    return 0;
}

/* GPTQ over the rounded tensor's row steps: q rewritten, the method and damping recorded. */
static int with_hessian(struct pg_qtensor *t, const pg_real *w_in, const struct pg_quant_opts *o, const double *h,
                        unsigned char *q_out)
{
    int64_t rows = t->rows, cols = t->cols;
    float *w = pg_malloc((size_t)(rows * cols + rows) * sizeof *w);
    if (!w) return PG_E_NOMEM;
    float *step = w + rows * cols;
    for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)w_in[i];
    int rc = pg_qtensor_steps(t, step, "GPTQ");
    struct pg_gptq_report rep;
    if (!rc) rc = pg_gptq_quantize(w, rows, cols, h, step, (1 << (t->bits - 1)) - 1, &o->gptq, (int8_t *)q_out, &rep);
    if (rc) rc = pg_error(rc, "tensor '%s': %s", t->name, pg_error_message());
    else t->method = PG_QMETHOD_GPTQ, t->damp = rep.damp;
    free(w);
    return rc;
}

int pg_qtensor_measure(struct pg_qtensor *t, const pg_real *w, const double *h)
{
    int64_t rows = t->rows, cols = t->cols;
    float *wq = pg_malloc((size_t)(rows * cols) * sizeof *wq);
    if (!wq) return PG_E_NOMEM;
    int rc = pg_qtensor_dequantize(t, wq);
    double e = 0, nn = 0;
    for (int64_t r = 0; r < rows && !rc; r++) {
        double er = 0, nr = 0; /* per row, then in row order: the sum does not depend on anything else */
        for (int64_t c = 0; c < cols; c++) {
            double x = w[r * cols + c], d = x - (double)wq[r * cols + c];
            er += d * d;
            nr += x * x;
        }
        e += er, nn += nr;
    }
    t->err_norm = sqrt(e);
    t->rel_err = nn > 0 ? sqrt(e / nn) : 0;
    t->out_err = -1;
    if (!rc && h) {
        double ref, oe = pg_output_error(w, wq, rows, cols, h, &ref);
        if (isnan(oe)) rc = PG_E_NOMEM;
        else t->out_err = ref > 0 ? sqrt(oe / ref) : 0;
    }
    free(wq);
    return rc;
}

/* Quantizes one integer tensor from w, its rows in parallel (then by GPTQ when asked and h is
 * given), and measures it (pg_qtensor_measure); nothing depends on the thread count. */
static int quantize_int(struct pg_qtensor *t, const pg_real *w_in, int scheme, double k, unsigned char *q_out,
                        unsigned char *s_out, const struct pg_quant_opts *o, const double *h)
{
    int64_t rows = t->rows, cols = t->cols;
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    float *tmp = pg_malloc((size_t)nth * 2 * (size_t)cols * sizeof *tmp);
    uint16_t *h16 = pg_malloc((size_t)rows * sizeof *h16);
    float *steps = pg_malloc((size_t)rows * sizeof *steps);
    if (!tmp || !h16 || !steps) {
        free(tmp);
        free(h16);
        free(steps);
        return PG_E_NOMEM;
    }
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int64_t r = 0; r < rows; r++) {
        int th = 0;
#ifdef _OPENMP
        th = omp_get_thread_num();
#endif
        float *w = tmp + (size_t)th * 2 * (size_t)cols, *scratch = w + cols;
        for (int64_t c = 0; c < cols; c++) w[c] = (float)w_in[r * cols + c];
        h16[r] = pg_quant_row(w, cols, scheme, t->clip, t->bits, k, (int8_t *)q_out + r * cols, scratch);
    }
    int rc = 0;
    for (int64_t r = 0; r < rows && !rc; r++)
        if ((h16[r] & 0x7c00u) == 0x7c00u) /* int8-baseline: a step past fp16 */
            rc = pg_error(PG_E_FORMAT, "tensor '%s': the step of row %" PRId64 " is too large for fp16", t->name, r);
    if (!rc && t->scale_code == PG_QSCALE_LOGDELTA) {
        /* the clip rule's steps as a log-delta sequence, and the integers again with the decoded
         * steps, so that q·ŝ is what the rounding chose for the steps a reader will use */
        for (int64_t r = 0; r < rows; r++) steps[r] = pg_f16_to_f32(h16[r]);
        uint16_t base;
        rc = pg_trit_logdelta_encode(steps, rows, &base, s_out + 2);
        if (!rc) rc = pg_trit_logdelta_decode(base, s_out + 2, rows, steps, t->name);
        if (rc) rc = pg_error(PG_E_FORMAT, "tensor '%s': log-delta steps: %s", t->name, pg_error_message());
        pg_le16_put(s_out, base);
        if (!rc) {
            const int Q = (1 << (t->bits - 1)) - 1;
#pragma omp parallel for schedule(static) num_threads(nth)
            for (int64_t r = 0; r < rows; r++) round_row(w_in + r * cols, cols, steps[r], Q, (int8_t *)q_out + r * cols);
        }
    } else {
        for (int64_t r = 0; r < rows; r++) pg_le16_put(s_out + 2 * r, h16[r]);
    }
    if (!rc && h && o->method == PG_QMETHOD_GPTQ) rc = with_hessian(t, w_in, o, h, q_out);
    if (!rc) rc = pg_qtensor_measure(t, w_in, h);
    free(tmp);
    free(h16);
    free(steps);
    return rc;
}

/* Quantizes t in the basis of transform x (its blob written to t->xform_blob), and measures it in
 * the original one. */
static int quantize_in(struct pg_qtensor *t, const struct pg_qxform *x, const pg_real *w, int scheme, double k,
                       unsigned char *q_out, unsigned char *s_out, const struct pg_quant_opts *o, const double *h,
                       float *wt, double *ht)
{
    int64_t n = t->rows * t->cols;
    for (int64_t j = 0; j < n; j++) wt[j] = (float)w[j];
    PG_TRY(pg_qxform_forward(x, wt, t->rows));
    if (h) PG_TRY(pg_qxform_hessian(x, h, ht));
    t->xform = 0; /* quantize_int measures in the basis it is given: redone below */
    PG_TRY(quantize_int(t, wt, scheme, k, q_out, s_out, o, h ? ht : NULL));
    pg_qxform_encode(x, (unsigned char *)(uintptr_t)t->xform_blob);
    t->xform = x->flags;
    return pg_qtensor_measure(t, w, h);
}

/* An integer tensor under o->xform: the Hadamard signs from the seed; AWQ's scales
 * s_j = H_jj^(α/2) (over their geometric mean) with α from {0, 1/4, 1/2, 3/4, 1} the one whose
 * rounding gives the least output error (α = 0 is no scaling, so it never does worse on it). */
static int quantize_xform(struct pg_qtensor *t, int flags, uint64_t seed, const pg_real *w, int scheme, double k,
                          unsigned char *q_out, unsigned char *s_out, const struct pg_quant_opts *o, const double *h)
{
    int64_t rows = t->rows, cols = t->cols;
    float *wt = pg_malloc((size_t)(rows * cols) * sizeof *wt);
    double *ht = h ? pg_malloc((size_t)(cols * cols) * sizeof *ht) : NULL, *sc = pg_malloc((size_t)cols * sizeof *sc);
    if (!wt || (h && !ht) || !sc) {
        free(wt), free(ht), free(sc);
        return PG_E_NOMEM;
    }
    int rc = 0;
    double best_alpha = 0;
    struct pg_qxform x;
    if (flags & PG_QXFORM_AWQ) {
        struct pg_quant_opts rtn = *o;
        rtn.method = PG_QMETHOD_RTN;
        double best = INFINITY;
        for (int a = 0; a <= 4 && !rc; a++) {
            double alpha = a / 4.0, lg = 0;
            for (int64_t j = 0; j < cols; j++) lg += log(h[j * cols + j] + 1e-12);
            lg /= (double)cols;
            for (int64_t j = 0; j < cols; j++) sc[j] = exp(alpha / 2 * (log(h[j * cols + j] + 1e-12) - lg));
            if ((rc = pg_qxform_init(&x, flags, cols, seed, sc))) break;
            rc = quantize_in(t, &x, w, scheme, k, q_out, s_out, &rtn, h, wt, ht);
            pg_qxform_free(&x);
            if (!rc && t->out_err < best) best = t->out_err, best_alpha = alpha;
        }
        double lg = 0;
        for (int64_t j = 0; j < cols; j++) lg += log(h[j * cols + j] + 1e-12);
        lg /= (double)cols;
        for (int64_t j = 0; j < cols; j++) sc[j] = exp(best_alpha / 2 * (log(h[j * cols + j] + 1e-12) - lg));
    }
    if (!rc) rc = pg_qxform_init(&x, flags, cols, seed, flags & PG_QXFORM_AWQ ? sc : NULL);
    if (!rc) {
        rc = quantize_in(t, &x, w, scheme, k, q_out, s_out, o, h, wt, ht);
        pg_qxform_free(&x);
    }
    t->awq_alpha = best_alpha;
    free(wt), free(ht), free(sc);
    return rc;
}

/* The transform flags tensor t gets under o: AWQ where it has statistics, Hadamard where its
 * width is a power of two; 0 for anything but an integer matrix. */
static int xform_flags(const struct pg_qtensor *t, const struct pg_quant_opts *o, const double *h)
{
    if (!o->xform || t->kind != PG_QKIND_INT || t->ndim != 2) return 0;
    int f = o->xform;
    if (!h) f &= ~PG_QXFORM_AWQ;
    if ((f & PG_QXFORM_HADAMARD) && !pg_qxform_fits(PG_QXFORM_HADAMARD, t->cols)) f &= ~PG_QXFORM_HADAMARD;
    return f;
}

/* LQER (spec/techniques.md §4.6): the o->lqer_top matrices with the largest ‖W−Ŵ‖_F (ties: model
 * order) get a rank-o->lqer_rank correction of their residual; they are measured again after. */
static int add_lqer(const struct pg_model *m, const struct pg_quant_opts *o, struct pg_qmodel *qm)
{
    int n = qm->ntensors, top = o->lqer_top, chosen = 0;
    int *pick = pg_malloc((size_t)n * sizeof *pick);
    if (!pick) return PG_E_NOMEM;
    for (; chosen < top; chosen++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            const struct pg_qtensor *t = &qm->t[i];
            if (t->kind != PG_QKIND_INT || t->ndim != 2 || t->lqer_rank) continue;
            if (best < 0 || t->err_norm > qm->t[best].err_norm) best = i;
        }
        if (best < 0) break;
        pick[chosen] = best;
        struct pg_qtensor *t = &qm->t[best];
        int64_t mn = t->rows < t->cols ? t->rows : t->cols;
        t->lqer_mode = o->lqer_mode;
        t->lqer_rank = o->lqer_rank < mn ? o->lqer_rank : (int)mn;
        t->lqer_len = pg_lqer_bytes(t->lqer_mode, t->rows, t->cols, t->lqer_rank);
    }
    uint64_t total = 0;
    for (int c = 0; c < chosen; c++) total += qm->t[pick[c]].lqer_len;
    unsigned char *at = qm->lqer_arena = pg_malloc(total ? (size_t)total : 1);
    float *wq = NULL;
    int rc = at ? 0 : PG_E_NOMEM;
    for (int c = 0; c < chosen && !rc; c++) {
        int i = pick[c];
        struct pg_qtensor *t = &qm->t[i];
        const pg_real *w = m->params + m->tensors[i].offset;
        int rank = t->lqer_rank;
        t->lqer_rank = 0; /* the plain reconstruction first */
        free(wq);
        wq = pg_malloc((size_t)(t->rows * t->cols) * sizeof *wq);
        if (!wq) rc = PG_E_NOMEM;
        if (!rc) rc = pg_qtensor_dequantize(t, wq);
        struct pg_lqer l;
        if (!rc) rc = pg_lqer_fit(w, wq, t->rows, t->cols, rank, t->lqer_mode, &l);
        if (rc) {
            rc = pg_error(rc, "tensor '%s': LQER: %s", t->name, pg_error_message());
            break;
        }
        pg_lqer_serialize(&l, at);
        pg_lqer_free(&l);
        t->lqer = at;
        t->lqer_rank = rank;
        at += t->lqer_len;
        rc = pg_qtensor_measure(t, w, pg_qtensor_hessian(t, o->calib, m));
    }
    free(wq);
    free(pick);
    return rc;
}

int pg_quantize_model(const struct pg_model *m, const struct pg_quant_opts *o, struct pg_qmodel *qm)
{
    memset(qm, 0, sizeof *qm);
    PG_TRY(check_opts(o));
    /* non-finite weights have no quantization (the baseline's quantile would be NaN) */
    for (int i = 0; i < m->ntensors; i++) {
        const struct pg_tensor *mt = &m->tensors[i];
        for (size_t j = 0; j < mt->numel; j++)
            if (!isfinite(m->params[mt->offset + j]))
                return pg_error(PG_E_FORMAT, "tensor '%s' has a non-finite value at element %zu", mt->name, j);
    }
    qm->cfg = m->cfg;
    qm->scheme = o->scheme;
    qm->ntensors = m->ntensors;
    qm->t = pg_calloc((size_t)m->ntensors, sizeof *qm->t);
    if (!qm->t) return PG_E_NOMEM;
    uint64_t total = 0;
    double *k = pg_calloc((size_t)m->ntensors, sizeof *k);
    unsigned char used[PG_QUANT_MAX_OVERRIDES] = {0};
    if (!k) {
        pg_qmodel_free(qm);
        return PG_E_NOMEM;
    }
    for (int i = 0; i < m->ntensors; i++) {
        plan_tensor(&m->tensors[i], o, &qm->t[i], &k[i], used);
        total += qm->t[i].data_len + qm->t[i].scale_len;
    }
    for (int i = 0; i < o->nov; i++)
        if (!used[i]) {
            free(k);
            pg_qmodel_free(qm);
            return pg_error(PG_E_INVAL, "'%s' names no quantized tensor of this model", o->ov[i].prefix);
        }
    uint64_t xtotal = 0;
    for (int i = 0; i < m->ntensors; i++)
        xtotal += pg_qxform_bytes(xform_flags(&qm->t[i], o, pg_qtensor_hessian(&qm->t[i], o->calib, m)), qm->t[i].cols);
    unsigned char *arena = pg_malloc(total ? (size_t)total : 1), *xat = qm->xform_arena = pg_malloc(xtotal ? xtotal : 1);
    if (!arena || !xat) {
        free(arena);
        free(k);
        pg_qmodel_free(qm);
        return PG_E_NOMEM;
    }
    qm->arena = arena;
    int rc = 0;
    for (int i = 0; i < m->ntensors && !rc; i++) {
        struct pg_qtensor *t = &qm->t[i];
        const pg_real *w = m->params + m->tensors[i].offset;
        unsigned char *d = arena, *s = arena + t->data_len;
        t->data = d;
        arena += t->data_len + t->scale_len;
        int64_t n = t->rows * t->cols;
        if (t->kind == PG_QKIND_TERN || t->kind == PG_QKIND_QUIN) {
            t->scales = s;
            rc = quantize_trit(t, w, d, s);
            if (!rc) rc = pg_qtensor_measure(t, w, NULL);
            if (o->progress) o->progress(o->progress_ctx, i + 1, m->ntensors);
            continue;
        }
        if (t->kind == PG_QKIND_INT) {
            t->scales = s;
            const double *h = pg_qtensor_hessian(t, o->calib, m);
            int xf = xform_flags(t, o, h);
            if (xf) {
                uint64_t st = o->xform_seed + (uint64_t)i;
                t->xform_blob = xat, t->xform_len = pg_qxform_bytes(xf, t->cols);
                xat += t->xform_len;
                rc = quantize_xform(t, xf, pg_splitmix64(&st), w, o->scheme, k[i], d, s, o, h);
            } else {
                rc = quantize_int(t, w, o->scheme, k[i], d, s, o, h);
            }
            if (o->progress) o->progress(o->progress_ctx, i + 1, m->ntensors);
            continue;
        }
        double e = 0, nn = 0;
        for (int64_t j = 0; j < n; j++) {
            float v = (float)w[j], back = v;
            if (t->kind == PG_QKIND_F32) {
                memcpy(d + 4 * j, &v, 4);
            } else {
                uint16_t h = pg_f32_to_f16(v);
                d[2 * j] = (unsigned char)h;
                d[2 * j + 1] = (unsigned char)(h >> 8);
                back = pg_f16_to_f32(h);
            }
            e += ((double)v - back) * ((double)v - back);
            nn += (double)v * v;
        }
        t->rel_err = nn > 0 ? sqrt(e / nn) : 0;
    }
    free(k);
    if (!rc && o->lqer_rank) rc = add_lqer(m, o, qm);
    if (!rc) rc = pg_pgq_layout(qm);
    if (rc) pg_qmodel_free(qm);
    return rc;
}

void pg_fake_quant_rows(const pg_real *w, pg_real *out, int64_t rows, int64_t cols, int bits)
{
    const pg_real Q = (pg_real)((1 << (bits - 1)) - 1);
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        const pg_real *x = w + r * cols;
        pg_real *y = out + r * cols;
        pg_real amax = 0;
        for (int64_t j = 0; j < cols; j++) {
            pg_real a = x[j] < 0 ? -x[j] : x[j];
            if (a > amax) amax = a;
        }
        const pg_real s = amax / Q;
        if (!(s > 0)) {
            if (y != x) memcpy(y, x, (size_t)cols * sizeof *y); /* zeros */
            continue;
        }
        for (int64_t j = 0; j < cols; j++) {
            double q = rint((double)(x[j] / s)); /* the default rounding mode: half to even */
            q = q < -Q - 1 ? -Q - 1 : q > Q ? Q : q;
            y[j] = (pg_real)q * s;
        }
    }
}
