/* test_calib.c: the calibration statistics GPTQ reads (lib/calib.h) and the model tap they come
 * from (lib/model.h).
 *
 * Independent computations: a recording tap sums XᵀX in double from the same forward passes, and
 * counts the calls per layer, against which pg_calib's fp32-batched sums and row counts are
 * checked (and the counts against the virtual layer list the configuration implies); the tapped
 * tensors are checked to be the layers' real inputs by recomputing the MLP activation from the
 * tapped fc input and the fc weight, and the loss from the tapped head input and the embedding;
 * the output error pg_quantize_model reports is recomputed from the dequantized tensor and H.
 * Shards: calibration reads the train split only (a corrupt val shard beside it is never opened)
 * and gives the same statistics as the same tokens passed in directly.
 * Self-generated sequences (pg_calib_generate): at temperature 0 every token is the argmax of the
 * model's distribution, found independently by scoring each vocabulary entry as the target (the
 * per-token losses of pg_model_forward), on the baseline and on record b (poly5 softcap, bigram,
 * SmearGate); a near-zero temperature samples the same; a seed gives the same sequences again,
 * another seed others, and batching does not matter. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"
#include "../record_configs.h"
#include "../../lib/calib.h"
#include "../../lib/backend.h"
#include "../../lib/err.h"
#include "../../lib/quant.h"
#include "../../lib/rng.h"
#include "../../lib/shard.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T = 8, NSEQ = 5, MAXL = 4 };

static char dir[64];

/* ---- the recording tap ---- */

struct rec {
    int nl, d, hid;
    double *sum[PG_TAP_N][MAXL];
    long long rows[PG_TAP_N][MAXL], calls[PG_TAP_N][MAXL];
    /* the latest fc input and MLP activation of the last layer, and every head input */
    float *fc_in, *act;
    int fc_n;
    float *head_in;
    int head_n;
};

static int cols_of(const struct rec *r, int site) { return site == PG_TAP_MLP_PROJ ? r->hid : r->d; }

static void record(void *ctx, int layer, int site, const pg_real *x, int n, int cols)
{
    struct rec *r = ctx;
    int mat = site == PG_TAP_HEAD ? 0 : layer;
    if (mat < 0 || mat >= MAXL || cols != cols_of(r, site)) {
        r->calls[site][0] = -1000000; /* an impossible layer or width: poison the counts */
        return;
    }
    double *s = r->sum[site][mat];
    for (int t = 0; t < n; t++)
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++) s[i * cols + j] += (double)x[t * cols + i] * x[t * cols + j];
    r->rows[site][mat] += n;
    r->calls[site][mat]++;
    if (site == PG_TAP_FC && layer == r->nl - 1) {
        memcpy(r->fc_in, x, (size_t)n * cols * sizeof *x);
        r->fc_n = n;
    }
    if (site == PG_TAP_MLP_PROJ && layer == r->nl - 1) memcpy(r->act, x, (size_t)n * cols * sizeof *x);
    if (site == PG_TAP_HEAD) {
        memcpy(r->head_in, x, (size_t)n * cols * sizeof *x);
        r->head_n = n;
    }
}

static void rec_init(struct rec *r, const struct pg_model *m)
{
    memset(r, 0, sizeof *r);
    r->nl = m->nl, r->d = m->d, r->hid = m->hid;
    for (int s = 0; s < PG_TAP_N; s++)
        for (int l = 0; l < MAXL; l++) r->sum[s][l] = calloc((size_t)cols_of(r, s) * cols_of(r, s), sizeof(double));
    r->fc_in = malloc((size_t)m->max_b * T * m->d * sizeof(float));
    r->act = malloc((size_t)m->max_b * T * m->hid * sizeof(float));
    r->head_in = malloc((size_t)m->max_b * T * m->d * sizeof(float));
}

static void rec_free(struct rec *r)
{
    for (int s = 0; s < PG_TAP_N; s++)
        for (int l = 0; l < MAXL; l++) free(r->sum[s][l]);
    free(r->fc_in);
    free(r->act);
    free(r->head_in);
}

/* ---- a small model ---- */

static struct pg_config base_config(void)
{
    struct pg_config c;
    pg_config_default(&c);
    c.vocab_size = 32, c.num_layers = 3, c.model_dim = 16, c.num_heads = 4, c.num_kv_heads = 2, c.mlp_mult = 2;
    c.train_seq_len = T;
    return c;
}

static void make_model(struct pg_model *m, const struct pg_config *c)
{
    if (pg_config_validate(c, 0) || pg_model_init(m, c, &pg_backend_cpu, 0) || pg_model_alloc_acts(m, 2, T))
        bail_out("model: %s", pg_error_message());
    if (pg_model_init_weights(m, 5)) bail_out("weights");
    /* the output projections start at zero: give every parameter some signal */
    struct pg_rng r;
    pg_rng_seed(&r, 8);
    for (size_t i = 0; i < m->nparams; i++) m->params[i] += (pg_real)(0.05 * pg_rng_normal(&r));
}

static void make_ids(int32_t *ids, int n, int vocab, uint64_t seed)
{
    struct pg_rng r;
    pg_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(pg_rng_below(&r, (uint64_t)vocab));
}

static const float *weights(const struct pg_model *m, const char *name)
{
    int i = pg_model_find(m, name);
    if (i < 0) bail_out("no tensor %s", name);
    return m->params + m->tensors[i].offset;
}

/* How many times each physical layer runs in one forward, from the configuration alone. */
static int runs_of(const struct pg_config *c, int l)
{
    return c->num_loops > 0 && l >= c->loop_start && l <= c->loop_end ? 1 + c->num_loops : 1;
}

/* ---- H against the recording ---- */

static void check_config(const char *label, struct pg_config c)
{
    struct pg_model m;
    make_model(&m, &c);
    int32_t ids[NSEQ * T], y[2 * T];
    make_ids(ids, NSEQ * T, c.vocab_size, 11);
    struct rec r;
    rec_init(&r, &m);
    struct pg_model_tap rt = {record, &r};
    m.tap = &rt;
    for (int s = 0; s < NSEQ; s += 2) {
        int b = NSEQ - s < 2 ? NSEQ - s : 2;
        const int32_t *x = ids + s * T;
        for (int i = 0; i < b * T; i++) y[i] = x[(i + 1) % (b * T)];
        pg_model_forward(&m, x, y, b, NULL);
    }
    m.tap = NULL;

    struct pg_calib cal;
    if (pg_calib_init(&cal, &m)) bail_out("calib init");
    is_int(pg_calib_add_tokens(&cal, &m, ids, NSEQ, NULL), 0, "%s: calibrate on %d sequences", label, NSEQ);
    ok(m.tap == NULL, "%s: the tap is removed afterwards", label);
    pg_calib_finish(&cal);
    pg_calib_finish(&cal); /* idempotent */
    ok(cal.tokens == NSEQ * T, "%s: %lld tokens counted", label, (long long)cal.tokens);

    int counts = 1, rows = 1;
    double worst = 0;
    for (int s = 0; s < PG_TAP_N; s++) {
        int nm = s == PG_TAP_HEAD ? 1 : m.nl, cols = cols_of(&r, s);
        for (int l = 0; l < nm; l++) {
            long long want = s == PG_TAP_HEAD ? 1 : runs_of(&c, l);
            /* forwards: ceil(NSEQ/2) batches, each calling the layer `want` times */
            if (r.calls[s][l] != want * ((NSEQ + 1) / 2)) counts = 0;
            if (r.rows[s][l] != want * NSEQ * T || cal.rows[s][l] != r.rows[s][l]) rows = 0;
            const double *h = cal.h[s] + (size_t)l * cols * cols, *ref = r.sum[s][l];
            double big = 0;
            for (int i = 0; i < cols * cols; i++) big = fmax(big, fabs(ref[i]));
            for (int i = 0; i < cols; i++)
                for (int j = 0; j < cols; j++) {
                    double want_h = ref[i * cols + j] / (double)r.rows[s][l];
                    double e = fabs(h[i * cols + j] - want_h) / (big / (double)r.rows[s][l]);
                    worst = fmax(worst, e);
                    if (h[i * cols + j] != h[j * cols + i]) worst = INFINITY;
                }
        }
    }
    ok(counts, "%s: each layer's tap runs once per virtual call (looped layers %d times)", label,
       c.num_loops ? 1 + c.num_loops : 1);
    ok(rows, "%s: rows per H = tokens × virtual calls", label);
    ok(worst < 1e-5, "%s: every H = mean XᵀX of the recorded inputs, symmetric (worst %.2e of its largest entry)",
       label, worst);

    /* the mapping from tensor names to statistics */
    int64_t cols = 0;
    const double *h1 = pg_calib_hessian(&cal, &m, "blocks.1.attn.c_k.weight", &cols);
    ok(h1 == cal.h[PG_TAP_QKV] + (size_t)m.d * m.d && cols == m.d, "%s: blocks.1.attn.c_k reads layer 1's attention input",
       label);
    ok(pg_calib_hessian(&cal, &m, "blocks.1.attn.c_q.weight", &cols) == h1 &&
           pg_calib_hessian(&cal, &m, "blocks.1.attn.c_v.weight", &cols) == h1,
       "%s: c_q, c_k and c_v share it", label);
    ok(pg_calib_hessian(&cal, &m, "blocks.2.attn.proj.weight", &cols) == cal.h[PG_TAP_PROJ] + 2 * (size_t)m.d * m.d,
       "%s: blocks.2.attn.proj reads layer 2's attention output", label);
    ok(pg_calib_hessian(&cal, &m, "blocks.0.mlp.fc.weight", &cols) == cal.h[PG_TAP_FC] && cols == m.d,
       "%s: blocks.0.mlp.fc reads layer 0's MLP input", label);
    ok(pg_calib_hessian(&cal, &m, "blocks.2.mlp.proj.weight", &cols) == cal.h[PG_TAP_MLP_PROJ] + 2 * (size_t)m.hid * m.hid &&
           cols == m.hid,
       "%s: blocks.2.mlp.proj reads layer 2's activation (%d wide)", label, m.hid);
    const double *he = pg_calib_hessian(&cal, &m, "tok_emb.weight", &cols);
    const double *hl = pg_calib_hessian(&cal, &m, "lm_head.weight", &cols);
    if (c.tie_embeddings)
        ok(he == cal.h[PG_TAP_HEAD] && !hl, "%s (tied): tok_emb is the head and reads the final norm", label);
    else
        ok(!he && hl == cal.h[PG_TAP_HEAD], "%s (untied): lm_head reads the final norm, tok_emb has no H", label);
    ok(!pg_calib_hessian(&cal, &m, "blocks.1.attn.q_gain", &cols) &&
           !pg_calib_hessian(&cal, &m, "blocks.7.attn.c_q.weight", &cols) &&
           !pg_calib_hessian(&cal, &m, "blocks.x.mlp.fc.weight", &cols),
       "%s: no H for a gain, a layer past the last, or a malformed name", label);

    /* the tapped tensors are the layers' real inputs (plain configurations: relu² and the head) */
    if (c.mlp_leaky_slope == 0 && !c.softcap_poly5 && c.z_loss == 0) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.mlp.fc.weight", m.nl - 1);
        const float *fc = weights(&m, name);
        double e = 0, big = 0;
        for (int t = 0; t < r.fc_n; t++)
            for (int o = 0; o < m.hid; o++) {
                double z = 0;
                for (int i = 0; i < m.d; i++) z += (double)fc[o * m.d + i] * r.fc_in[t * m.d + i];
                double a = z > 0 ? z * z : 0;
                e = fmax(e, fabs(a - r.act[t * m.hid + o]));
                big = fmax(big, fabs(a));
            }
        ok(e <= 1e-5 * big && big > 0, "%s: the MLP projection's input is relu²(fc · the fc input) (worst %.2e of %.2e)",
           label, e, big);
        /* the last forward (one sequence): its loss from the tapped head input */
        const int32_t *x = ids + (NSEQ - 1) * T;
        for (int i = 0; i < T; i++) y[i] = x[(i + 1) % T];
        m.tap = &rt;
        double loss = pg_model_forward(&m, x, y, 1, NULL);
        m.tap = NULL;
        const float *w = c.tie_embeddings ? weights(&m, "tok_emb.weight") : weights(&m, "lm_head.weight");
        double ref = 0;
        for (int t = 0; t < r.head_n; t++) {
            double mx = -INFINITY, z[64], se = 0;
            for (int v = 0; v < m.v; v++) {
                double s = 0;
                for (int i = 0; i < m.d; i++) s += (double)w[v * m.d + i] * r.head_in[t * m.d + i];
                z[v] = c.logit_softcap * tanh(s / c.logit_softcap);
                mx = fmax(mx, z[v]);
            }
            for (int v = 0; v < m.v; v++) se += exp(z[v] - mx);
            ref += mx + log(se) - z[y[t]];
        }
        ok(r.head_n == T && fabs(loss - ref) <= 1e-5 * fabs(ref), "%s: the loss from the tapped head input %.9g = the model's %.9g",
           label, ref, loss);
    }

    /* the reported output error, recomputed from the dequantized tensor and H */
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, PG_QSCHEME_INTN, 3);
    o.keep_float_max = 64;
    o.calib = &cal;
    struct pg_qmodel rtn, gq;
    is_int(pg_quantize_model(&m, &o, &rtn), 0, "%s: int3 rounding with statistics", label);
    o.method = PG_QMETHOD_GPTQ;
    is_int(pg_quantize_model(&m, &o, &gq), 0, "%s: int3 GPTQ", label);
    int methods = 1, nint = 0, nbetter = 0;
    double worst_rel = 0, sum_rtn = 0, sum_gptq = 0;
    for (int i = 0; i < gq.ntensors; i++) {
        const struct pg_qtensor *t = &gq.t[i];
        if (t->kind != PG_QKIND_INT) continue;
        nint++;
        int64_t hc = 0;
        const double *h = pg_calib_hessian(&cal, &m, t->name, &hc);
        if ((h != NULL) != (t->method == PG_QMETHOD_GPTQ) || rtn.t[i].method != PG_QMETHOD_RTN ||
            (h && (rtn.t[i].out_err < 0 || t->out_err < 0)) || (!h && t->out_err != -1))
            methods = 0, diag("%s: H %s, method %d, out_err %g", t->name, h ? "yes" : "no", t->method, t->out_err);
        if (!h) continue;
        sum_rtn += rtn.t[i].out_err, sum_gptq += t->out_err;
        nbetter += t->out_err <= rtn.t[i].out_err;
        float *wq = malloc((size_t)t->rows * t->cols * sizeof *wq);
        pg_qtensor_dequantize(t, wq);
        const float *w = weights(&m, t->name);
        double num = 0, den = 0;
        for (int64_t rr = 0; rr < t->rows; rr++)
            for (int64_t a = 0; a < hc; a++)
                for (int64_t b = 0; b < hc; b++) {
                    double da = w[rr * hc + a] - (double)wq[rr * hc + a], db = w[rr * hc + b] - (double)wq[rr * hc + b];
                    num += da * h[a * hc + b] * db;
                    den += (double)w[rr * hc + a] * h[a * hc + b] * w[rr * hc + b];
                }
        free(wq);
        worst_rel = fmax(worst_rel, fabs(sqrt(num / den) - t->out_err) / t->out_err);
    }
    ok(methods && nint > 0, "%s: GPTQ exactly where a tensor has H; every such tensor reports an output error", label);
    ok(worst_rel < 1e-6, "%s: the output error = sqrt(tr(ΔW H ΔWᵀ)/tr(W H Wᵀ)) of the dequantized tensor (worst %.1e)",
       label, worst_rel);
    ok(sum_gptq < sum_rtn && nbetter * 4 >= nint * 3,
       "%s: GPTQ's output error below rounding's (sum %.4f vs %.4f; lower or equal on %d tensors)", label, sum_gptq,
       sum_rtn, nbetter);
    pg_qmodel_free(&rtn);
    pg_qmodel_free(&gq);

    pg_calib_free(&cal);
    rec_free(&r);
    pg_model_free(&m);
}

/* ---- shards ---- */

static void write_file(const char *name, const void *a, size_t na, const void *b, size_t nb)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb) || fclose(f)) bail_out("write %s", path);
}

static void test_shards(void)
{
    struct pg_config c = base_config();
    struct pg_model m;
    make_model(&m, &c);
    /* two train shards of 21 and 30 tokens: 5 sequences of 8 cross the boundary */
    uint16_t tok[51];
    int32_t ids[48];
    struct pg_rng r;
    pg_rng_seed(&r, 21);
    for (int i = 0; i < 51; i++) tok[i] = (uint16_t)(pg_rng_below(&r, 32));
    for (int i = 0; i < 48; i++) ids[i] = tok[i];
    unsigned char hdr[1024];
    pg_shard_make_header(hdr, 21);
    write_file("d_train_000000.bin", hdr, sizeof hdr, tok, 21 * 2);
    pg_shard_make_header(hdr, 30);
    write_file("d_train_000001.bin", hdr, sizeof hdr, tok + 21, 30 * 2);
    write_file("d_val_000000.bin", "not a shard", 11, NULL, 0); /* opening it would fail */

    struct pg_calib a, b;
    if (pg_calib_init(&a, &m) || pg_calib_init(&b, &m)) bail_out("calib init");
    int rc = pg_calib_from_shards(&a, &m, dir, "d", 37, NULL); /* rounds up to 5 sequences */
    ok(rc == 0, "calibration from the train shards beside a corrupt val shard: %s", rc ? pg_error_message() : "ok");
    is_int(pg_calib_add_tokens(&b, &m, ids, 5, NULL), 0, "the same 40 tokens passed directly");
    pg_calib_finish(&a);
    pg_calib_finish(&b);
    int same = a.tokens == 40 && b.tokens == 40;
    for (int s = 0; s < PG_TAP_N; s++) {
        size_t n = (size_t)(s == PG_TAP_HEAD ? 1 : m.nl) * (s == PG_TAP_MLP_PROJ ? m.hid * m.hid : m.d * m.d);
        same &= memcmp(a.h[s], b.h[s], n * sizeof(double)) == 0;
    }
    ok(same, "... give identical statistics (40 tokens across the shard boundary, in order)");
    pg_calib_free(&a);
    pg_calib_free(&b);

    if (pg_calib_init(&a, &m)) bail_out("calib init");
    rc = pg_calib_from_shards(&a, &m, dir, "none", 16, NULL);
    ok(rc == PG_E_IO && strstr(pg_error_message(), "no training shards"), "no train shard: '%s'", pg_error_message());
    pg_calib_free(&a);
    write_file("e_train_000000.bin", "short", 5, NULL, 0);
    if (pg_calib_init(&a, &m)) bail_out("calib init");
    rc = pg_calib_from_shards(&a, &m, dir, "e", 16, NULL);
    ok(rc != 0 && strstr(pg_error_message(), "e_train_000000.bin"), "a corrupt train shard is named: '%s'",
       pg_error_message());
    pg_calib_free(&a);

    /* an id outside the vocabulary is refused, GPTQ without statistics too */
    if (pg_calib_init(&a, &m)) bail_out("calib init");
    ids[3] = 32;
    ok(pg_calib_add_tokens(&a, &m, ids, 1, NULL) == PG_E_FORMAT, "an id outside the vocabulary: '%s'", pg_error_message());
    pg_calib_free(&a);
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, PG_QSCHEME_INTN, 6);
    o.method = PG_QMETHOD_GPTQ;
    struct pg_qmodel q;
    rc = pg_quantize_model(&m, &o, &q);
    ok(rc == PG_E_INVAL, "GPTQ without calibration statistics: '%s'", rc ? pg_error_message() : "(accepted)");
    if (!rc) pg_qmodel_free(&q);
    pg_model_free(&m);
}

/* ---- self-generated sequences ---- */

/* best[s·T + p]: the token v minimizing the loss at position p of sequence s when v is its
 * target, i.e. the argmax of the model's logits there, from V forwards with every target v. */
static void argmax_tokens(struct pg_model *m, const int32_t *ids, int nseq, int32_t *best, float *gap)
{
    float loss[2 * T], *lo = malloc(sizeof(float) * (size_t)nseq * T);
    int32_t y[2 * T];
    for (int i = 0; i < nseq * T; i++) lo[i] = INFINITY, gap[i] = INFINITY;
    for (int v = 0; v < m->v; v++) {
        for (int s0 = 0; s0 < nseq; s0 += 2) {
            int b = nseq - s0 < 2 ? nseq - s0 : 2;
            for (int i = 0; i < b * T; i++) y[i] = v;
            pg_model_forward(m, ids + s0 * T, y, b, loss);
            for (int i = 0; i < b * T; i++) {
                int k = s0 * T + i;
                if (loss[i] < lo[k]) gap[k] = lo[k] - loss[i], lo[k] = loss[i], best[k] = v;
                else if (loss[i] - lo[k] < gap[k]) gap[k] = loss[i] - lo[k];
            }
        }
    }
    free(lo);
}

static void check_greedy(const char *label, struct pg_config c)
{
    struct pg_model m;
    make_model(&m, &c);
    int32_t ids[NSEQ * T], best[NSEQ * T], low[NSEQ * T];
    float gap[NSEQ * T];
    is_int(pg_calib_generate(&m, ids, NSEQ, 0, 1, NULL), 0, "%s: greedy generation", label);
    argmax_tokens(&m, ids, NSEQ, best, gap);
    int agree = 1, starts = 1, checked = 0;
    for (int s = 0; s < NSEQ; s++) {
        starts &= ids[s * T] == c.bos_id;
        for (int p = 0; p + 1 < T; p++) {
            int k = s * T + p;
            if (gap[k] < 1e-4f) continue; /* a near tie: either token is the argmax */
            checked++;
            agree &= ids[k + 1] == best[k];
        }
    }
    ok(starts, "%s: every sequence starts with bos_id %d", label, c.bos_id);
    ok(agree && checked > NSEQ * (T - 1) / 2, "%s: each token is the argmax of the model's distribution (%d checked)",
       label, checked);
    is_int(pg_calib_generate(&m, low, NSEQ, 1e-4, 9, NULL), 0, "%s: temperature 1e-4", label);
    ok(memcmp(ids, low, sizeof ids) == 0, "%s: ... samples the argmax too", label);
    pg_model_free(&m);
}

static void test_self(void)
{
    /* untied: a random head makes the next token depend on the context (the tied embedding of a
     * random model mostly predicts its input again, bos after bos) */
    struct pg_config c = base_config(), u = c, rb = record_b(base_config());
    u.tie_embeddings = 0, rb.tie_embeddings = 0;
    check_greedy("baseline untied", u);
    check_greedy("record b untied", rb);
    check_greedy("baseline tied", c);

    struct pg_model m, m1;
    make_model(&m, &c);
    enum { N = 6 };
    int32_t a[N * T], b[N * T], d[N * T], e[N * T];
    is_int(pg_calib_generate(&m, a, N, 1, 42, NULL), 0, "temperature 1, seed 42");
    is_int(pg_calib_generate(&m, b, N, 1, 42, NULL), 0, "... again");
    ok(memcmp(a, b, sizeof a) == 0, "the same seed gives the same sequences");
    is_int(pg_calib_generate(&m, d, N, 1, 43, NULL), 0, "seed 43");
    ok(memcmp(a, d, sizeof a) != 0, "another seed gives other sequences");
    int32_t g[N * T];
    pg_calib_generate(&m, g, N, 0, 42, NULL);
    ok(memcmp(a, g, sizeof a) != 0, "temperature 1 does not only take the argmax");
    /* the same weights with activations for one sequence at a time */
    if (pg_model_init(&m1, &c, &pg_backend_cpu, 0) || pg_model_alloc_acts(&m1, 1, T)) bail_out("model");
    memcpy(m1.params, m.params, m.nparams * sizeof *m.params);
    is_int(pg_calib_generate(&m1, e, N, 1, 42, NULL), 0, "one sequence per forward");
    ok(memcmp(a, e, sizeof a) == 0, "... gives the same sequences (each has its own stream)");
    ok(pg_calib_generate(&m, e, N, -1, 42, NULL) == PG_E_INVAL, "a negative temperature is refused");

    /* statistics from them: symmetric, positive diagonals, every site seen */
    struct pg_calib cal;
    if (pg_calib_init(&cal, &m)) bail_out("calib init");
    is_int(pg_calib_add_tokens(&cal, &m, a, N, NULL), 0, "calibration on the generated tokens");
    pg_calib_finish(&cal);
    int good = cal.tokens == N * T;
    for (int s = 0; s < PG_TAP_N; s++) {
        int cols = s == PG_TAP_MLP_PROJ ? m.hid : m.d;
        const double *h = cal.h[s];
        for (int i = 0; i < cols; i++) {
            good &= h[(size_t)i * cols + i] >= 0 && isfinite(h[(size_t)i * cols + i]);
            for (int j = 0; j < cols; j++) good &= h[(size_t)i * cols + j] == h[(size_t)j * cols + i];
        }
        good &= cal.rows[s][0] > 0;
    }
    ok(good, "... symmetric finite statistics with non-negative diagonals at every site");
    pg_calib_free(&cal);
    pg_model_free(&m1);
    pg_model_free(&m);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pg-test-calib-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    struct pg_config c = base_config();
    check_config("baseline", c);
    c.tie_embeddings = 0;
    check_config("untied", c);
    check_config("record b (layer 1 looped)", record_b(base_config()));
    check_config("record c (layers 0-1 looped twice)", record_c(base_config()));
    test_shards();
    test_self();
    remove_tree(dir);
    return done_testing();
}
