/* test_lora.c: per-document LoRA test-time training (lib/lora.c) on a tiny model:
 *   - with rank 0, and with lr 0, on a stream whose documents are exactly pg-eval's windows, the
 *     sums are pg_eval_val's bit for bit (every adapter path then leaves the base weights alone);
 *   - on irregular documents, every target is scored once (tokens and bytes equal pg-eval's);
 *   - causality, black box, with training on: changing the token at position q leaves every
 *     loss of a target before q bit-identical, and changes later ones;
 *   - instrumented: every update read only positions of already-scored targets (and their
 *     inputs), and never the last chunk of a document;
 *   - the model's weights are the base weights again after a run;
 *   - adaptation: on a document repeating a pattern longer than the window, LoRA lowers the loss;
 *   - the live audit (hooks.audit, no n-gram mode) checks the adapted distributions the run
 *     scores: its sampled nll is the run's losses at the sampled targets, not the base model's;
 *   - refusals: a head adapter on a tied model, bad targets, negative rank;
 *   - documents batched by length (batch_docs 3, lib/lora_batch.c): without warm start every
 *     target's loss is the one-at-a-time run's to float rounding; every target is scored once
 *     and before any update reads it, though not in stream order; with warm start it runs and
 *     differs; the live audit checks the distributions scored; phases, n-gram modes, a head
 *     adapter and too few activations are refused. */
#include "../tap.h"

#include "../../lib/audit.h"
#include "../../lib/err.h"
#include "../../lib/eval.h"
#include "../../lib/lora.h"
#include "../../lib/tok.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { V = 64, L = 16, NSEQ = 12, BOS = 1 };

static int model(struct pg_model *m, int training, int tie)
{
    struct pg_config c;
    pg_config_default(&c);
    c.vocab_size = V, c.num_layers = 2, c.model_dim = 32, c.num_heads = 4, c.num_kv_heads = 2;
    c.mlp_mult = 2, c.train_seq_len = L, c.tie_embeddings = tie;
    if (pg_model_init(m, &c, &pg_backend_cpu, training) || pg_model_alloc_acts(m, 4, L)) return -1; /* 4: batches */
    pg_model_init_weights(m, 11);
    for (size_t i = 0; i < m->nparams; i++) m->params[i] += (pg_real)(0.02 * sin(0.7 * (double)i));
    return 0;
}

/* aligned: BOS at every multiple of L (documents = pg-eval's windows); else documents of
 * irregular lengths. Other tokens are 4..63. */
static void stream(struct pg_val_set *v, int aligned)
{
    v->seq_len = L;
    v->usable = (int64_t)NSEQ * L;
    v->tokens = malloc(((size_t)v->usable + 1) * sizeof *v->tokens);
    unsigned r = 9;
    int64_t next = 0;
    for (int64_t i = 0; i <= v->usable; i++) {
        r = r * 1103515245u + 12345u;
        int bos = aligned ? i % L == 0 : i == next;
        if (!aligned && bos) next = i + 3 + (r >> 16) % 40;
        v->tokens[i] = (uint16_t)(bos ? BOS : 4 + (r >> 16) % 60);
    }
}

static int lut(struct pg_bpb_lut *t)
{
    static char names[V][16];
    const char *pieces[V];
    int kinds[V];
    for (int i = 0; i < V; i++) {
        if (i < 4) snprintf(names[i], sizeof names[i], "<c%d>", i);
        else snprintf(names[i], sizeof names[i], "%sw%d", i % 3 ? "\xe2\x96\x81" : "", i);
        pieces[i] = names[i];
        kinds[i] = i < 4 ? PG_PIECE_CONTROL : PG_PIECE_NORMAL;
    }
    return pg_bpb_lut_build(t, V, pieces, kinds, V);
}

static void params(struct pg_lora_params *p)
{
    pg_lora_params_default(p);
    p->rank = 4, p->alpha = 8, p->lr = 3e-3, p->chunk = 5, p->window = L;
}

static int run(const struct pg_val_set *v, const struct pg_bpb_lut *t, const struct pg_lora_params *p, float *losses,
               struct pg_lora_hooks *h, struct pg_lora_result *r)
{
    struct pg_model m;
    if (model(&m, 1, 1)) return -1;
    struct pg_lora_hooks none = {0};
    if (!h) h = &none;
    h->token_losses = losses;
    int rc = pg_lora_run(&m, v, t, p, h, r);
    pg_model_free(&m);
    return rc;
}

static void test_plain_equal(const struct pg_bpb_lut *t)
{
    struct pg_val_set v;
    stream(&v, 1);
    struct pg_model m;
    if (!v.tokens || model(&m, 1, 1)) {
        ok(0, "set up");
        return;
    }
    struct pg_eval_result e;
    is_int(pg_eval_val(&m, &v, t, 0, 1, 1, 0, &e), 0, "pg_eval_val runs");
    struct pg_lora_params p;
    params(&p);
    p.chunk = L;
    struct pg_lora_result r;
    const char *what[] = {"rank 0", "lr 0"};
    for (int k = 0; k < 2; k++) {
        p.rank = k ? 4 : 0, p.lr = k ? 0 : 3e-3;
        is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), 0, "%s runs", what[k]);
        ok(r.nll_sum == e.nll_sum && r.bytes == e.bytes && r.tokens == e.tokens && r.val_bpb == e.val_bpb,
           "%s: Σnll, Σbytes, tokens, val_bpb equal pg_eval_val's bit for bit (%.10f vs %.10f)", what[k], r.val_bpb,
           e.val_bpb);
        is_int(r.docs, NSEQ, "%s: one document per window", what[k]);
        is_int(r.steps, 0, "%s: no step", what[k]);
    }
    p.chunk = 100;
    is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), 0, "lr 0, chunk 100 > window runs");
    ok(r.nll_sum == e.nll_sum && r.tokens == e.tokens, "a chunk longer than the window is cut to it: pg-eval's sums");
    struct pg_ngram_params np;
    pg_ngram_params_default(&np);
    np.tilt = np.mix = 1;
    struct pg_ngram_result nr;
    p.chunk = L, p.rank = 0, p.ngram = &np;
    is_int(pg_ngram_run(&m, &v, t, &np, 0, NULL, NULL, 0, &nr), 0, "pg_ngram_run, tilt + mixture");
    is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), 0, "rank 0 with the tilt and mixture");
    ok(r.nll_sum == nr.nll_sum && r.tokens == nr.tokens && nr.nll_sum != e.nll_sum,
       "rank 0 + tilt + mixture: pg_ngram_run's sums bit for bit (%.8f vs %.8f; plain %.8f)", r.val_bpb, nr.val_bpb,
       e.val_bpb);
    p.ngram = NULL;
    /* smaller chunks: the same windows cut shorter; the same numbers up to rounding */
    p.chunk = 3;
    is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), 0, "lr 0, chunk 3 runs");
    is_close(r.nll_sum, e.nll_sum, 0, 1e-5, "chunk 3: the same Σnll up to rounding");
    pg_model_free(&m);
    pg_val_close(&v);
}

struct audit {
    int64_t n, scored_to; /* targets (p) scored so far are exactly 1 .. scored_to, in order */
    int64_t *count;       /* times each target was scored */
    int bad_order, bad_update;
    int64_t updates;
};

static void on_scored(void *ctx, int64_t doc, int64_t begin, int64_t end)
{
    struct audit *a = ctx;
    (void)doc;
    if (begin != a->scored_to + 1) a->bad_order++;
    for (int64_t p = begin; p < end; p++) a->count[p]++;
    a->scored_to = end - 1;
}

static void on_updated(void *ctx, int64_t doc, int64_t begin, int64_t end)
{
    struct audit *a = ctx;
    (void)doc;
    /* the update read tokens [begin, end): as inputs up to end − 2 and as targets up to end − 1,
     * each of which must have been scored */
    if (end - 1 > a->scored_to || begin < 0) a->bad_update++;
    a->updates++;
}

static void test_irregular(const struct pg_bpb_lut *t)
{
    struct pg_val_set v;
    stream(&v, 0);
    struct pg_model m;
    if (!v.tokens || model(&m, 1, 1)) {
        ok(0, "set up");
        return;
    }
    struct pg_eval_result e;
    is_int(pg_eval_val(&m, &v, t, 0, 1, 1, 0, &e), 0, "pg_eval_val runs");
    pg_real *before = malloc(m.nparams * sizeof *before);
    memcpy(before, m.params, m.nparams * sizeof *before);
    struct pg_lora_params p;
    params(&p);
    struct audit a = {.n = v.usable, .count = calloc((size_t)v.usable + 1, sizeof *a.count)};
    struct pg_lora_hooks h = {.ctx = &a, .scored = on_scored, .updated = on_updated};
    struct pg_lora_result r;
    is_int(pg_lora_run(&m, &v, t, &p, &h, &r), 0, "irregular documents, training on: runs");
    ok(r.tokens == e.tokens && r.bytes == e.bytes, "every target is scored: tokens %.0f, bytes %.0f as pg-eval",
       r.tokens, r.bytes);
    int once = 1;
    for (int64_t q = 1; q <= v.usable; q++) once &= a.count[q] == 1;
    ok(once && a.bad_order == 0, "each target scored exactly once, in order");
    ok(a.bad_update == 0 && a.updates == r.steps && r.steps > 0,
       "every update (%lld) read only scored positions", (long long)a.updates);
    ok(r.docs > 3, "%lld documents", (long long)r.docs);
    ok(memcmp(before, m.params, m.nparams * sizeof *before) == 0, "the model has its base weights after the run");
    free(before);
    free(a.count);
    pg_model_free(&m);

    /* causality: change the token at q; losses of targets < q must not move */
    float *l0 = malloc((size_t)v.usable * sizeof *l0), *l1 = malloc((size_t)v.usable * sizeof *l1);
    int rc = run(&v, t, &p, l0, NULL, &r);
    int64_t q = v.usable / 2;
    while (v.tokens[q] == BOS) q++;
    v.tokens[q] = (uint16_t)(4 + (v.tokens[q] - 4 + 17) % 60);
    rc |= run(&v, t, &p, l1, NULL, &r);
    is_int(rc, 0, "two runs");
    ok(memcmp(l0, l1, (size_t)(q - 1) * sizeof *l0) == 0, "changing the token at %lld leaves the %lld losses before it "
       "bit-identical", (long long)q, (long long)(q - 1));
    ok(l0[q - 1] != l1[q - 1], "and changes its own loss");
    free(l0), free(l1);
    pg_val_close(&v);
}

static void test_phased(const struct pg_bpb_lut *t)
{
    struct pg_val_set v;
    stream(&v, 0);
    if (!v.tokens) return;
    struct pg_lora_params p;
    params(&p);
    struct pg_lora_result plain, r;
    int rc = run(&v, t, &p, NULL, NULL, &plain);
    p.phases = 2, p.prefix_docs = 6, p.phase_lr = 0.05, p.phase_seqs = 2;
    struct audit a = {.n = v.usable, .count = calloc((size_t)v.usable + 1, sizeof *a.count)};
    struct pg_lora_hooks h = {.ctx = &a, .scored = on_scored, .updated = on_updated};
    float *l0 = malloc((size_t)v.usable * sizeof *l0), *l1 = malloc((size_t)v.usable * sizeof *l1);
    rc |= run(&v, t, &p, l0, &h, &r);
    is_int(rc, 0, "phased: runs");
    ok(r.phases_run == 2 && r.phase_steps > 0, "2 phases after documents 3 and 6: %lld SGD steps",
       (long long)r.phase_steps);
    ok(a.bad_update == 0 && a.bad_order == 0 && a.updates == r.steps + r.phase_steps,
       "every update, phases' included, read only scored positions");
    ok(r.val_bpb != plain.val_bpb && r.tokens == plain.tokens, "the phases change the score: %.6f -> %.6f",
       plain.val_bpb, r.val_bpb);
    /* black box: a token changed after the first boundary moves nothing before it */
    int64_t q = v.usable - 20;
    while (v.tokens[q] == BOS) q++;
    v.tokens[q] = (uint16_t)(4 + (v.tokens[q] - 4 + 17) % 60);
    h.updated = NULL, h.scored = NULL;
    rc = run(&v, t, &p, l1, &h, &r);
    ok(rc == 0 && memcmp(l0, l1, (size_t)(q - 1) * sizeof *l0) == 0 && l0[q - 1] != l1[q - 1],
       "phased: changing token %lld leaves every earlier loss bit-identical", (long long)q);
    free(l0), free(l1), free(a.count);
    pg_val_close(&v);
}

static void test_adapts(const struct pg_bpb_lut *t)
{
    /* one long document repeating 23 random tokens: longer than the window, so only the adapters can learn it */
    struct pg_val_set v;
    v.seq_len = L;
    v.usable = 20 * L;
    v.tokens = malloc(((size_t)v.usable + 1) * sizeof *v.tokens);
    unsigned r = 3, pat[23];
    for (int i = 0; i < 23; i++) r = r * 1103515245u + 12345u, pat[i] = 4 + (r >> 16) % 60;
    for (int64_t i = 0; i <= v.usable; i++) v.tokens[i] = (uint16_t)(i == 0 ? BOS : pat[i % 23]);
    struct pg_lora_params p;
    params(&p);
    p.lr = 0;
    struct pg_lora_result plain, adapted;
    int rc = run(&v, t, &p, NULL, NULL, &plain);
    p.lr = 1e-2;
    rc |= run(&v, t, &p, NULL, NULL, &adapted);
    struct pg_ngram_params np;
    pg_ngram_params_default(&np);
    np.mix = 1;
    p.ngram = &np;
    struct pg_lora_result mixed;
    rc |= run(&v, t, &p, NULL, NULL, &mixed);
    ok(mixed.val_loss < adapted.val_loss, "LoRA + n-gram mixture: lower still (%.4f)", mixed.val_loss);
    is_int(rc, 0, "plain and adapted runs");
    ok(adapted.val_loss < plain.val_loss - 0.05, "a repeated document: LoRA lowers the loss %.4f -> %.4f",
       plain.val_loss, adapted.val_loss);
    ok(adapted.tokens == plain.tokens && adapted.bytes == plain.bytes, "the same targets and bytes");

    /* the live audit, without an n-gram mode */
    float *l0 = malloc((size_t)v.usable * sizeof *l0), *l1 = malloc((size_t)v.usable * sizeof *l1);
    struct pg_audit a;
    p.ngram = NULL, p.lr = 0;
    rc = run(&v, t, &p, l0, NULL, &plain) | pg_audit_init(&a, v.usable, V);
    p.lr = 1e-2;
    struct pg_lora_hooks h = {.audit = &a, .audit_samples = 24};
    rc |= run(&v, t, &p, l1, &h, &adapted);
    is_int(rc, 0, "LoRA with the live audit runs");
    int64_t pick[24];
    struct pg_rng rg;
    pg_rng_seed(&rg, 0x5eed);
    int np_ = pg_audit_pick(&a, v.usable + 1, 24, &rg, pick);
    double want = 0, base = 0;
    for (int k = 0; k < np_; k++) want += l1[pick[k] - 1], base += l0[pick[k] - 1];
    ok(a.samples == 24 && a.lookahead == 0 && a.unnormalized == 0, "live audit: 24 samples, causal and normalized");
    ok(fabs(a.sampled_nll - want) < 1e-3 && fabs(base - want) > 1e-2,
       "live audit: it checked the adapted distributions (nll %.5f = the run's %.5f; base model %.5f)", a.sampled_nll,
       want, base);
    pg_audit_free(&a);
    free(l0), free(l1);
    pg_val_close(&v);
}

/* instrumentation for the batched runner, whose order is not the stream's */
struct any_order {
    int64_t *count;
    int64_t bad_update, updates;
};

static void on_scored_any(void *ctx, int64_t doc, int64_t begin, int64_t end)
{
    struct any_order *a = ctx;
    (void)doc;
    for (int64_t p = begin; p < end; p++) a->count[p]++;
}

static void on_updated_any(void *ctx, int64_t doc, int64_t begin, int64_t end)
{
    struct any_order *a = ctx;
    (void)doc;
    for (int64_t p = begin + 1; p < end; p++) a->bad_update += a->count[p] == 0; /* read as a target, unscored */
    a->updates++;
}

static void test_batched(const struct pg_bpb_lut *t)
{
    struct pg_val_set v;
    stream(&v, 0);
    if (!v.tokens) return;
    struct pg_lora_params p;
    params(&p);
    p.warm_a = 0;
    float *l0 = malloc((size_t)v.usable * sizeof *l0), *l1 = malloc((size_t)v.usable * sizeof *l1);
    struct pg_lora_result r0, r1, rw;
    int rc = run(&v, t, &p, l0, NULL, &r0);
    p.batch_docs = 3;
    struct any_order a = {calloc((size_t)v.usable + 2, sizeof *a.count), 0, 0};
    struct pg_lora_hooks h = {.ctx = &a, .scored = on_scored_any, .updated = on_updated_any};
    rc |= run(&v, t, &p, l1, &h, &r1);
    is_int(rc, 0, "one at a time and 3 documents a batch, no warm start: run");
    double worst = 0;
    for (int64_t i = 0; i < v.usable; i++)
        if (fabs(l0[i] - l1[i]) > worst) worst = fabs(l0[i] - l1[i]);
    ok(worst < 1e-5 && r1.steps == r0.steps && r1.steps > 0 && r1.docs == r0.docs,
       "batched: every target's loss is the one-at-a-time run's (worst %.2e over %lld; %lld steps, %lld documents)",
       worst, (long long)v.usable, (long long)r1.steps, (long long)r1.docs);
    ok(r1.tokens == r0.tokens && r1.bytes == r0.bytes && fabs(r1.val_bpb - r0.val_bpb) < 1e-5,
       "batched: the same targets and bytes, val_bpb %.6f vs %.6f", r1.val_bpb, r0.val_bpb);
    int once = 1;
    for (int64_t q = 1; q <= v.usable; q++) once &= a.count[q] == 1;
    ok(once && a.bad_update == 0 && a.updates == r1.steps,
       "batched: each target scored once, every update (%lld) read only scored targets", (long long)a.updates);
    /* warm start: A carries within a slot, so the scores move */
    p.warm_a = 1;
    rc = run(&v, t, &p, NULL, NULL, &rw);
    ok(rc == 0 && rw.val_bpb != r1.val_bpb && rw.tokens == r1.tokens, "batched with warm start: %.6f", rw.val_bpb);

    /* the live audit: the distributions it checks are the ones scored */
    struct pg_audit au;
    if (pg_audit_init(&au, v.usable, V) == 0) {
        struct pg_lora_hooks ha = {.audit = &au, .audit_samples = 24};
        rc = run(&v, t, &p, l1, &ha, &rw);
        int64_t pick[24];
        struct pg_rng rg;
        pg_rng_seed(&rg, 0x5eed);
        int np_ = pg_audit_pick(&au, v.usable + 1, 24, &rg, pick);
        double want = 0;
        for (int k = 0; k < np_; k++) want += l1[pick[k] - 1];
        ok(rc == 0 && au.samples == 24 && au.lookahead == 0 && au.unnormalized == 0,
           "batched live audit: %lld samples, causal and normalized", (long long)au.samples);
        ok(fabs(au.sampled_nll - want) < 1e-3, "batched live audit: the scored distributions (nll %.5f = %.5f)",
           au.sampled_nll, want);
        pg_audit_free(&au);
    }

    /* refusals */
    struct pg_model m;
    if (model(&m, 1, 0) == 0) {
        struct pg_lora_result r;
        p.phases = 1;
        is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), PG_E_INVAL, "batched: phases refused");
        p.phases = 0;
        struct pg_ngram_params np;
        pg_ngram_params_default(&np);
        np.mix = 1;
        p.ngram = &np;
        is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), PG_E_INVAL, "batched: an n-gram mode refused");
        p.ngram = NULL;
        p.targets |= PG_LORA_HEAD;
        is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), PG_E_INVAL, "batched: a head adapter refused");
        /* one at a time, a head adapter takes the other gradient (the window's minus its
         * prefix's, lora.h): it learns, and stays causal */
        p.batch_docs = 1, p.warm_a = 1;
        float *h0 = malloc((size_t)v.usable * sizeof *h0), *h1 = malloc((size_t)v.usable * sizeof *h1);
        struct pg_lora_result rh, rq;
        rc = pg_lora_run(&m, &v, t, &p, NULL, &rh);
        p.targets &= ~(unsigned)PG_LORA_HEAD;
        rc |= pg_lora_run(&m, &v, t, &p, NULL, &rq);
        ok(rc == 0 && rh.adapters == rq.adapters + 1 && rh.steps == rq.steps && rh.val_bpb != rq.val_bpb,
           "one at a time with a head adapter: runs, and the head adapter moves the score (%.6f vs %.6f)", rh.val_bpb,
           rq.val_bpb);
        p.targets |= PG_LORA_HEAD;
        struct pg_lora_hooks hh = {.token_losses = h0};
        rc = pg_lora_run(&m, &v, t, &p, &hh, &rh);
        int64_t q = v.usable / 2;
        while (v.tokens[q] == BOS) q++;
        uint16_t keep = v.tokens[q];
        v.tokens[q] = (uint16_t)(4 + (keep - 4 + 17) % 60);
        hh.token_losses = h1;
        rc |= pg_lora_run(&m, &v, t, &p, &hh, &rh);
        v.tokens[q] = keep;
        ok(rc == 0 && memcmp(h0, h1, (size_t)(q - 1) * sizeof *h0) == 0 && h0[q - 1] != h1[q - 1],
           "with a head adapter: changing token %lld leaves every earlier loss bit-identical", (long long)q);
        free(h0), free(h1);
        p.targets &= ~(unsigned)PG_LORA_HEAD;
        p.batch_docs = 5;
        is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), PG_E_INVAL, "batched: 5 documents, activations for 4: refused");
        pg_model_free(&m);
    }
    free(l0), free(l1), free(a.count);
    pg_val_close(&v);
}

static void test_refusals(const struct pg_bpb_lut *t)
{
    struct pg_val_set v;
    stream(&v, 1);
    struct pg_model m;
    if (!v.tokens || model(&m, 1, 1)) {
        ok(0, "set up");
        return;
    }
    struct pg_lora_params p;
    params(&p);
    struct pg_lora_result r;
    p.targets = PG_LORA_HEAD;
    is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), PG_E_INVAL, "a head adapter on a tied model is refused");
    params(&p);
    p.rank = -1;
    is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), PG_E_INVAL, "rank -1 is refused");
    unsigned tg = 0;
    is_int(pg_lora_parse_targets("q,x", &tg), PG_E_INVAL, "target 'x' is refused");
    is_int(pg_lora_parse_targets("q,v,head", &tg), 0, "q,v,head parses");
    is_int(tg, PG_LORA_Q | PG_LORA_V | PG_LORA_HEAD, "to its bits");
    pg_model_free(&m);
    /* an untied model takes a head adapter */
    if (model(&m, 1, 0)) {
        ok(0, "untied model");
        return;
    }
    params(&p);
    p.targets = PG_LORA_HEAD | PG_LORA_Q;
    is_int(pg_lora_run(&m, &v, t, &p, NULL, &r), 0, "an untied model takes q and head adapters");
    is_int(r.adapters, 3, "2 layers of q + the head");
    pg_model_free(&m);
    pg_val_close(&v);
}

int main(void)
{
    struct pg_bpb_lut t;
    if (lut(&t)) return 1;
    test_plain_equal(&t);
    test_irregular(&t);
    test_adapts(&t);
    test_phased(&t);
    test_refusals(&t);
    test_batched(&t);
    pg_bpb_lut_free(&t);
    return done_testing();
}
