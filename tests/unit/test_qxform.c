/* test_qxform.c: the input transforms undone at dequantization (lib/qxform.h: AWQ scales and
 * the seeded Hadamard rotation) and their .pgq version-3 form.
 *
 * Independent computations: the fast Walsh-Hadamard transform against Sylvester's matrix built
 * by its recursion and multiplied out in float64; the rotation's matrix (the transform of the
 * identity's rows) is orthogonal; the transformed statistics H'' against Mᵀ H M multiplied out;
 * the float model with every matrix transformed and transformed back (the folding, nothing
 * quantized) gives the same per-token losses to 1e-5; on a model with outlier channels (a few
 * embedding channels 10x: activation outliers; a few weight columns 10x: weight outliers), AWQ
 * and the rotation lower int4 rounding's summed output error against the plain rounding's; the
 * .pgq round trip is byte-identical and dequantizes bit for bit; broken transform fields,
 * truncations and bit flips are refused with one line. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"
#include "../../lib/calib.h"
#include "../../lib/backend.h"
#include "../../lib/err.h"
#include "../../lib/pgq.h"
#include "../../lib/quant.h"
#include "../../lib/qxform.h"
#include "../../lib/rng.h"
#include "../../lib/xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum { T = 8, NSEQ = 8 };

/* ---- the transform itself ---- */

static void test_fwht(void)
{
    enum { N = 16 };
    double h[N][N], v[N], ref[N];
    h[0][0] = 1; /* Sylvester: H_2n = [[H, H], [H, -H]] */
    for (int n = 1; n < N; n *= 2)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                h[i][j + n] = h[i][j];
                h[i + n][j] = h[i][j];
                h[i + n][j + n] = -h[i][j];
            }
    struct pg_rng r;
    pg_rng_seed(&r, 3);
    for (int i = 0; i < N; i++) v[i] = pg_rng_normal(&r);
    for (int i = 0; i < N; i++) {
        ref[i] = 0;
        for (int j = 0; j < N; j++) ref[i] += h[i][j] * v[j];
    }
    pg_qxform_fwht(v, N);
    double e = 0;
    for (int i = 0; i < N; i++) e = fmax(e, fabs(v[i] - ref[i]));
    ok(e < 1e-12, "the fast Walsh-Hadamard transform = Sylvester's matrix times v (max diff %.1e)", e);
}

static void test_algebra(void)
{
    enum { C = 32, R = 6 };
    double s[C];
    struct pg_rng r;
    pg_rng_seed(&r, 5);
    for (int j = 0; j < C; j++) s[j] = exp(pg_rng_normal(&r));
    /* R's matrix: the transformed identity rows, scales off */
    struct pg_qxform had, both;
    if (pg_qxform_init(&had, PG_QXFORM_HADAMARD, C, 11, NULL) ||
        pg_qxform_init(&both, PG_QXFORM_AWQ | PG_QXFORM_HADAMARD, C, 11, s))
        bail_out("init: %s", pg_error_message());
    static float rot[C * C];
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) rot[i * C + j] = i == j;
    if (pg_qxform_forward(&had, rot, C)) bail_out("qxform forward");
    double orth = 0;
    int signs = 0;
    for (int i = 0; i < C; i++) {
        for (int j = 0; j < C; j++) {
            double d = 0;
            for (int k = 0; k < C; k++) d += (double)rot[i * C + k] * rot[j * C + k];
            orth = fmax(orth, fabs(d - (i == j)));
        }
        signs += had.sign[i] < 0;
    }
    ok(orth < 1e-6, "R = D H/sqrt(n) is orthogonal (max |R R^T - I| %.1e)", orth);
    ok(signs > 4 && signs < C - 4, "the seed's signs are mixed (%d of %d negative)", signs, C);
    struct pg_qxform other;
    pg_qxform_init(&other, PG_QXFORM_HADAMARD, C, 12, NULL);
    ok(memcmp(other.sign, had.sign, C * sizeof(double)) != 0, "another seed, other signs");
    pg_qxform_free(&other);

    /* forward then inverse gives W back; the forward is W diag(s) R */
    float w[R * C], fw[R * C];
    for (int i = 0; i < R * C; i++) w[i] = fw[i] = (float)pg_rng_normal(&r);
    if (pg_qxform_forward(&both, fw, R)) bail_out("qxform forward");
    double fe = 0;
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double ref = 0;
            for (int k = 0; k < C; k++) ref += (double)w[i * C + k] * both.s[k] * rot[k * C + j];
            fe = fmax(fe, fabs(ref - fw[i * C + j]));
        }
    ok(fe < 1e-4, "forward = W diag(s) R multiplied out (max diff %.1e)", fe);
    if (pg_qxform_inverse(&both, fw, R)) bail_out("qxform inverse");
    double ie = 0;
    for (int i = 0; i < R * C; i++) ie = fmax(ie, fabs(fw[i] - w[i]));
    ok(ie < 1e-5, "inverse(forward(W)) = W (max diff %.1e)", ie);

    /* H'' = Mᵀ H M, M = diag(1/s) R, and tr(W H Wᵀ) = tr(W'' H'' W''ᵀ) */
    static double h[C * C], hh[C * C];
    double x[4 * C];
    for (int i = 0; i < 4 * C; i++) x[i] = pg_rng_normal(&r);
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            h[i * C + j] = 0;
            for (int k = 0; k < 4; k++) h[i * C + j] += x[k * C + i] * x[k * C + j];
        }
    if (pg_qxform_hessian(&both, h, hh)) bail_out("hessian");
    double he = 0, hmax = 0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            double ref = 0;
            for (int a = 0; a < C; a++)
                for (int b = 0; b < C; b++)
                    ref += rot[a * C + i] / both.s[a] * h[a * C + b] * rot[b * C + j] / both.s[b];
            he = fmax(he, fabs(ref - hh[i * C + j]));
            hmax = fmax(hmax, fabs(ref));
        }
    ok(he < 1e-6 * hmax, "H'' = M^T H M multiplied out (max diff %.1e of %.1e)", he, hmax);
    unsigned char blob[8 + 2 * C];
    ok(pg_qxform_bytes(PG_QXFORM_AWQ | PG_QXFORM_HADAMARD, C) == sizeof blob, "the blob: 8 bytes of seed, 2 a scale");
    pg_qxform_encode(&both, blob);
    struct pg_qxform dec;
    is_int(pg_qxform_decode(&dec, both.flags, C, blob, "t"), 0, "the blob decodes");
    ok(dec.seed == 11 && !memcmp(dec.s, both.s, sizeof s) && !memcmp(dec.sign, both.sign, sizeof s),
       "... to the same seed, signs and (fp16) scales");
    pg_qxform_free(&dec);
    ok(!pg_qxform_fits(PG_QXFORM_HADAMARD, 24) && pg_qxform_fits(PG_QXFORM_AWQ, 24),
       "the rotation needs a power-of-two width, AWQ does not");
    pg_qxform_free(&had);
    pg_qxform_free(&both);
}

/* ---- on a model ---- */

static struct pg_config small_config(void)
{
    struct pg_config c;
    pg_config_default(&c);
    c.vocab_size = 32, c.num_layers = 2, c.model_dim = 32, c.num_heads = 4, c.num_kv_heads = 2, c.mlp_mult = 2;
    c.train_seq_len = T;
    return c;
}

/* a model with outlier channels: embedding channels 3 and 17 at 10x (activation outliers after
 * every norm) and c_q's input columns 5 and 20 at 10x (weight outliers) */
static void make_model(struct pg_model *m)
{
    struct pg_config c = small_config();
    if (pg_config_validate(&c, 0) || pg_model_init(m, &c, &pg_backend_cpu, 0) || pg_model_alloc_acts(m, NSEQ, T) ||
        pg_model_init_weights(m, 5))
        bail_out("model: %s", pg_error_message());
    struct pg_rng r;
    pg_rng_seed(&r, 8);
    for (size_t i = 0; i < m->nparams; i++) m->params[i] += (pg_real)(0.05 * pg_rng_normal(&r));
    pg_real *emb = m->params + m->tensors[m->t_emb].offset;
    for (int v = 0; v < m->v; v++) emb[v * m->d + 3] *= 10, emb[v * m->d + 17] *= 10;
    for (int l = 0; l < m->nl; l++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.attn.c_q.weight", l);
        pg_real *q = m->params + m->tensors[pg_model_find(m, name)].offset;
        for (int o = 0; o < m->d; o++) q[o * m->d + 5] *= 10, q[o * m->d + 20] *= 10;
    }
}

static void losses_of(struct pg_model *m, const int32_t *ids, float *loss)
{
    int32_t y[NSEQ * T];
    for (int i = 0; i < NSEQ * T; i++) y[i] = ids[(i + 1) % (NSEQ * T)];
    pg_model_forward(m, ids, y, NSEQ, loss);
}

static double out_err_sum(const struct pg_qmodel *q)
{
    double s = 0;
    for (int i = 0; i < q->ntensors; i++)
        if (q->t[i].kind == PG_QKIND_INT) s += q->t[i].out_err;
    return s;
}

static void fix_crc(unsigned char *b, size_t len)
{
    pg_le32_put(b + len - 4, (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(len - 4)));
}

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

static void test_model(void)
{
    struct pg_model m, f;
    make_model(&m);
    make_model(&f);
    int32_t ids[NSEQ * T];
    struct pg_rng r;
    pg_rng_seed(&r, 4);
    for (int i = 0; i < NSEQ * T; i++) ids[i] = (int32_t)pg_rng_below(&r, 32);

    /* the folding alone: every matrix transformed and back, nothing quantized */
    float ref[NSEQ * T], got[NSEQ * T];
    losses_of(&m, ids, ref);
    for (int i = 0; i < f.ntensors; i++) {
        struct pg_tensor *t = &f.tensors[i];
        if (t->ndim != 2) continue;
        int64_t cols = t->shape[1];
        double *s = malloc((size_t)cols * sizeof *s);
        for (int64_t j = 0; j < cols; j++) s[j] = 0.25 + pg_rng_uniform(&r) * 4;
        struct pg_qxform x;
        if (pg_qxform_init(&x, PG_QXFORM_AWQ | PG_QXFORM_HADAMARD, cols, 100 + (uint64_t)i, s)) bail_out("init");
        if (pg_qxform_forward(&x, f.params + t->offset, t->shape[0])) bail_out("qxform forward");
        if (pg_qxform_inverse(&x, f.params + t->offset, t->shape[0])) bail_out("qxform inverse");
        pg_qxform_free(&x);
        free(s);
    }
    losses_of(&f, ids, got);
    double le = 0;
    for (int i = 0; i < NSEQ * T; i++) le = fmax(le, fabs((double)got[i] - ref[i]));
    ok(le < 1e-5, "the float model folded (AWQ + Hadamard on every matrix, unquantized) gives the same losses "
       "(max diff %.1e)", le);

    /* calibration on the outlier model */
    struct pg_calib cal;
    if (pg_calib_init(&cal, &m) || pg_calib_add_tokens(&cal, &m, ids, NSEQ, NULL)) bail_out("calib");
    pg_calib_finish(&cal);
    struct pg_quant_opts o;
    struct pg_qmodel plain, had, awq, both;
    for (int bits = 4; bits <= 5; bits++) {
        pg_quant_opts_default(&o, PG_QSCHEME_INTN, bits);
        o.keep_float_max = 100;
        o.clip = PG_QCLIP_MAXABS;
        o.calib = &cal;
        o.xform_seed = 1;
        if (pg_quantize_model(&m, &o, &plain)) bail_out("quantize: %s", pg_error_message());
        o.xform = PG_QXFORM_HADAMARD;
        if (pg_quantize_model(&m, &o, &had)) bail_out("quantize: %s", pg_error_message());
        o.xform = PG_QXFORM_AWQ;
        if (pg_quantize_model(&m, &o, &awq)) bail_out("quantize: %s", pg_error_message());
        o.xform = PG_QXFORM_AWQ | PG_QXFORM_HADAMARD;
        if (pg_quantize_model(&m, &o, &both)) bail_out("quantize: %s", pg_error_message());
        double ep = out_err_sum(&plain), eh = out_err_sum(&had), ea = out_err_sum(&awq), eb = out_err_sum(&both);
        ok(eh < ep, "int%d rounding (max-abs) on outlier channels: Hadamard's output error %.4f < plain %.4f", bits, eh, ep);
        ok(ea < ep, "int%d: AWQ's output error %.4f < plain %.4f", bits, ea, ep);
        ok(eb < ep, "int%d: both %.4f < plain %.4f", bits, eb, ep);
        int marked = 1;
        for (int i = 0; i < both.ntensors; i++)
            if (both.t[i].kind == PG_QKIND_INT) marked &= both.t[i].xform == (PG_QXFORM_AWQ | PG_QXFORM_HADAMARD);
        ok(marked, "int%d: every integer matrix carries both transforms", bits);
        if (bits == 5) break;
        pg_qmodel_free(&plain), pg_qmodel_free(&had), pg_qmodel_free(&awq), pg_qmodel_free(&both);
    }

    /* the file: version 3, parse → serialize identical, the same weights; broken fields refused */
    unsigned char *b1, *b2, *b3;
    size_t n1, n2, n3;
    if (pg_pgq_serialize(&plain, &b1, &n1) || pg_pgq_serialize(&both, &b2, &n2)) bail_out("serialize");
    uint64_t extra = 0;
    int first = -1;
    for (int i = 0; i < both.ntensors; i++)
        if (both.t[i].xform) {
            extra += both.t[i].xform_len;
            if (first < 0) first = i;
        }
    ok(pg_le32_get(b1 + 8) == 1 && pg_le32_get(b2 + 8) == 3 && n2 == n1 + extra,
       "plain: version 1; transformed: version 3, larger by the %llu bytes of the transforms", (unsigned long long)extra);
    struct pg_qmodel back;
    is_int(pg_pgq_parse(b2, n2, "x.pgq", &back), 0, "parse the version-3 file");
    if (pg_pgq_serialize(&back, &b3, &n3)) bail_out("serialize back");
    ok(n3 == n2 && !memcmp(b2, b3, n2), "parse → serialize is byte-identical");
    int same = 1;
    for (int i = 0; i < back.ntensors && same; i++) {
        size_t n = (size_t)(back.t[i].rows * back.t[i].cols);
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        same = !pg_qtensor_dequantize(&back.t[i], x) && !pg_qtensor_dequantize(&both.t[i], y) &&
               !memcmp(x, y, n * sizeof *x);
        free(x), free(y);
    }
    ok(same, "the parsed file dequantizes to the same weights, bit for bit");
    uint64_t e = pg_le64_get(b2 + 40) + (uint64_t)first * 128, xo = back.t[first].xform_off;
    pg_qmodel_free(&back);
    expect_error(b2, n2, e + 111, 4, "transform 4", "an unknown transform flag");
    expect_error(b2, n2, xo + 8 + 1, 0x80, "AWQ scale of channel 0", "a negative AWQ scale");
    expect_error(b2, n2, xo + 8 + 1, 0x7c, "AWQ scale of channel 0", "... and an infinite one");
    expect_error(b2, n2, 8, 2, "reserved byte 111", "the transform in a file labelled version 2");
    int acc = 0;
    for (size_t k = 0; k < n2; k++) {
        struct pg_qmodel q;
        if (!pg_pgq_parse(b2, k, "t.pgq", &q)) acc++, pg_qmodel_free(&q);
    }
    struct pg_rng fr;
    pg_rng_seed(&fr, 78);
    unsigned char *fb = malloc(n2);
    for (int trial = 0; trial < 500; trial++) {
        memcpy(fb, b2, n2);
        uint64_t bit = pg_rng_below(&fr, (uint64_t)n2 * 8);
        fb[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        struct pg_qmodel q;
        if (!pg_pgq_parse(fb, n2, "f.pgq", &q)) acc++, pg_qmodel_free(&q);
    }
    free(fb);
    is_int(acc, 0, "version 3: all %zu truncations and 500 bit flips refused", n2);

    /* options: AWQ without statistics, a transform on int8-baseline */
    struct pg_qmodel q;
    pg_quant_opts_default(&o, PG_QSCHEME_INTN, 4);
    o.xform = PG_QXFORM_AWQ;
    ok(pg_quantize_model(&m, &o, &q) == PG_E_INVAL, "AWQ without calibration statistics: '%s'", pg_error_message());
    pg_quant_opts_default(&o, PG_QSCHEME_INT8_BASELINE, 8);
    o.xform = PG_QXFORM_HADAMARD;
    ok(pg_quantize_model(&m, &o, &q) == PG_E_INVAL, "Hadamard on int8-baseline: '%s'", pg_error_message());
    free(b1), free(b2), free(b3);
    pg_qmodel_free(&plain), pg_qmodel_free(&had), pg_qmodel_free(&awq), pg_qmodel_free(&both);
    pg_calib_free(&cal);
    pg_model_free(&m);
    pg_model_free(&f);
}

int main(void)
{
    test_fwht();
    test_algebra();
    test_model();
    return done_testing();
}
