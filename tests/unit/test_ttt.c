/* test_ttt.c: score-first test-time training (lib/ttt.c) and its SGD (lib/sgd.c) on a tiny model
 * and a synthetic val stream:
 *   - SGD with momentum against a hand-computed trace; bad momentum is refused;
 *   - epochs 0 gives pg_eval_val's sums bit for bit (same windows, same summation);
 *   - causality, black box: changing the targets of a later chunk k leaves every loss before
 *     chunk k bit-identical, changes chunk k's, and (only when training) changes chunk k+1's;
 *   - instrumented: for every scored target, every update applied before it read only tokens at
 *     lower positions; every target is scored exactly once; the last chunk is never read by an
 *     update; the update count per chunk is as the schedule says;
 *   - the session refuses to train on a chunk that is not scored, is forged, or is the last,
 *     leaving the parameters unchanged;
 *   - adaptation happens: on a periodic stream the adapted score is lower than the plain one;
 *   - the live audit (hooks.audit) checks the distributions the run scores, on the trained model
 *     (its sampled nll is the run's losses at the sampled targets, not the untrained model's);
 *   - with a temperature: epochs 0 is pg_eval_sliding_ex's tempered score; trained, the live audit
 *     checks the tempered distributions the run scores;
 *   - with an n-gram mode (params.ngram): epochs 0 is pg_ngram_run bit for bit; with training the
 *     score moves, every earlier loss stays bit-identical when a later token changes, and the
 *     live audit passes. */
#include "../tap.h"

#include "../../lib/audit.h"
#include "../../lib/err.h"
#include "../../lib/ngram.h"
#include "../../lib/eval.h"
#include "../../lib/sgd.h"
#include "../../lib/tok.h"
#include "../../lib/ttt.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { V = 64, L = 16, NSEQ = 40, CHUNK_SEQS = 4 };

static void tiny(struct pg_config *c)
{
    pg_config_default(c);
    c->vocab_size = V, c->num_layers = 2, c->model_dim = 32, c->num_heads = 4, c->num_kv_heads = 2;
    c->mlp_mult = 2, c->train_seq_len = L;
}

/* A model whose every parameter is nonzero, so that each prediction depends on the context
 * (the baseline init zeroes the output projections). */
static int model(struct pg_model *m, int training, int max_b)
{
    struct pg_config c;
    tiny(&c);
    if (pg_model_init(m, &c, &pg_backend_cpu, training) || pg_model_alloc_acts(m, max_b, L)) return -1;
    pg_model_init_weights(m, 11);
    for (size_t i = 0; i < m->nparams; i++) m->params[i] += (pg_real)(0.02 * sin(0.7 * (double)i));
    return 0;
}

/* The val stream: BOS (id 1) then a pattern of period 7 over ids 4..63, with a few
 * pseudo-random tokens mixed in; usable = NSEQ·L. */
static void stream(struct pg_val_set *v)
{
    v->seq_len = L;
    v->usable = (int64_t)NSEQ * L;
    v->tokens = malloc(((size_t)v->usable + 1) * sizeof *v->tokens);
    unsigned r = 5;
    for (int64_t i = 0; i <= v->usable; i++) {
        r = r * 1103515245u + 12345u;
        v->tokens[i] = (uint16_t)(i == 0 ? 1 : (r >> 16) % 11 == 0 ? 4 + (r >> 8) % 60 : 4 + (i * 9) % 7 * 8);
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

/* ---- instrumentation: what each scored target had seen ---- */

struct audit {
    int64_t n;           /* usable */
    int64_t updates;     /* updates applied so far */
    int64_t max_read;    /* highest val position any applied update read; -1 before any */
    int64_t *seen_updates, *seen_max, *scored_count;
    int64_t per_chunk[NSEQ];
    int order_ok;        /* updates come for the chunk scored latest */
    int64_t last_scored_chunk;
};

static void on_scored(void *ctx, int64_t chunk, int64_t begin, int64_t end)
{
    struct audit *a = ctx;
    a->last_scored_chunk = chunk;
    for (int64_t p = begin; p < end; p++) {
        if (p < 1 || p > a->n) continue;
        a->scored_count[p - 1]++;
        a->seen_updates[p - 1] = a->updates;
        a->seen_max[p - 1] = a->max_read;
    }
}

static void on_updated(void *ctx, int64_t chunk, int64_t begin, int64_t end)
{
    struct audit *a = ctx;
    a->updates++;
    if (end - 1 > a->max_read) a->max_read = end - 1;
    if (chunk >= 0 && chunk < NSEQ) a->per_chunk[chunk]++;
    if (chunk != a->last_scored_chunk) a->order_ok = 0;
}

static void params_default(struct pg_ttt_params *p)
{
    pg_ttt_params_default(p);
    p->chunk_tokens = CHUNK_SEQS * L + L / 2; /* rounds down to CHUNK_SEQS windows */
    p->batch_seqs = 2;
    p->step_seqs = 3; /* steps of 3 and 1 windows per pass */
    p->epochs = 2;
    p->lr = 0.05;
}

/* Runs TTT from the same initial model; losses must hold NSEQ·L floats. */
static int run(const struct pg_val_set *v, const struct pg_bpb_lut *t, const struct pg_ttt_params *p, float *losses,
               struct pg_ttt_hooks *h, struct pg_ttt_result *r)
{
    struct pg_model m;
    if (model(&m, p->epochs > 0, p->batch_seqs)) return -1;
    struct pg_ttt_hooks none = {0};
    if (!h) h = &none;
    h->token_losses = losses;
    int rc = pg_ttt_run(&m, v, t, p, h, r);
    pg_model_free(&m);
    return rc;
}

static void test_sgd(void)
{
    pg_real p[3] = {1, 2, 3}, g[3] = {0.5f, -1, 0.25f};
    struct pg_opt_tensor t = {p, g, 3, 0, 3};
    struct pg_sgd s;
    is_int(pg_sgd_init(&s, &t, 1, 0.9), 0, "sgd: init");
    pg_sgd_step(&s, 0.1);
    /* buf = g; p = p − 0.1·g */
    ok(p[0] == (pg_real)1 - (pg_real)0.1 * (pg_real)0.5f && p[1] == (pg_real)2 + (pg_real)0.1,
       "sgd: first step is p − lr·g");
    pg_real want[3], buf[3];
    for (int i = 0; i < 3; i++) buf[i] = g[i];
    for (int i = 0; i < 3; i++) {
        buf[i] = (pg_real)0.9 * buf[i] + g[i];
        want[i] = p[i] - (pg_real)0.2 * buf[i];
    }
    pg_sgd_step(&s, 0.2);
    ok(memcmp(p, want, sizeof p) == 0, "sgd: second step is p − lr·(μ·buf + g), bit for bit");
    is_int(s.step, 2, "sgd: two steps counted");
    pg_sgd_reset(&s);
    ok(s.buf[0] == 0 && s.buf[2] == 0 && s.step == 0, "sgd: reset zeroes the momentum");
    pg_sgd_free(&s);
    pg_sgd_free(&s);
    is_int(pg_sgd_init(&s, &t, 1, 1.0), PG_E_INVAL, "sgd: momentum 1 is refused");
    is_int(pg_sgd_init(&s, &t, 1, NAN), PG_E_INVAL, "sgd: momentum NaN is refused");
}

static void test_eval_equal(const struct pg_val_set *v, const struct pg_bpb_lut *t)
{
    struct pg_model m;
    if (model(&m, 0, 2)) {
        ok(0, "set up an evaluation model");
        return;
    }
    struct pg_eval_result e;
    is_int(pg_eval_val(&m, v, t, 0, 1, 2, 0, &e), 0, "pg_eval_val runs");
    struct pg_ttt_params p;
    params_default(&p);
    p.epochs = 0;
    struct pg_ttt_result r;
    is_int(pg_ttt_run(&m, v, t, &p, NULL, &r), 0, "TTT with epochs 0 runs on an evaluation-only model");
    ok(r.nll_sum == e.nll_sum && r.bytes == e.bytes && r.tokens == e.tokens && r.val_bpb == e.val_bpb &&
           r.val_loss == e.val_loss,
       "epochs 0: Σnll, Σbytes, tokens, val_loss and val_bpb equal pg_eval_val's bit for bit (bpb %.10f)", r.val_bpb);
    is_int(r.chunks, NSEQ / CHUNK_SEQS, "chunk_tokens rounds down to whole windows: %d chunks", NSEQ / CHUNK_SEQS);
    is_int(r.steps, 0, "epochs 0: no SGD step");
    p.epochs = 1;
    is_int(pg_ttt_run(&m, v, t, &p, NULL, &r), PG_E_INVAL, "epochs 1 on a model without gradients is refused");
    p.epochs = 0;
    p.batch_seqs = 3;
    is_int(pg_ttt_run(&m, v, t, &p, NULL, &r), PG_E_INVAL, "a batch larger than the model's activations is refused");
    pg_model_free(&m);
}

static int same_bits(const float *a, const float *b, int64_t n) { return memcmp(a, b, (size_t)n * sizeof *a) == 0; }

static int64_t count_diff(const float *a, const float *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof *a) != 0;
    return d;
}

static void test_causality(const struct pg_val_set *v, const struct pg_bpb_lut *t)
{
    int64_t n = v->usable;
    float *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
    float *a0 = calloc((size_t)n, sizeof *a0), *b0 = calloc((size_t)n, sizeof *b0);
    struct pg_val_set w = *v;
    w.tokens = malloc(((size_t)n + 1) * sizeof *w.tokens);
    memcpy(w.tokens, v->tokens, ((size_t)n + 1) * sizeof *w.tokens);
    /* Chunk k's targets are positions [k·C·L + 1, (k+1)·C·L]. Change those of its second half
     * (windows k·C+2 and k·C+3, a forward of their own) but the very last, which is also the
     * first input of chunk k+1: so chunk k+1 reads exactly the same tokens. */
    int k = 5;
    int64_t chunk0 = (int64_t)k * CHUNK_SEQS * L + 1, first = ((int64_t)k * CHUNK_SEQS + 2) * L + 1,
            last = (int64_t)(k + 1) * CHUNK_SEQS * L, next = last + CHUNK_SEQS * L;
    for (int64_t pos = first; pos < last; pos++) w.tokens[pos] = (uint16_t)(4 + (w.tokens[pos] * 7 + 3) % 60);
    struct pg_ttt_params p;
    params_default(&p);
    struct pg_ttt_result r1, r2;
    int rc = run(v, t, &p, a, NULL, &r1) | run(&w, t, &p, b, NULL, &r2);
    p.epochs = 0;
    rc |= run(v, t, &p, a0, NULL, &r1) | run(&w, t, &p, b0, NULL, &r2);
    is_int(rc, 0, "four runs: the stream and a copy with targets of chunk %d changed, with and without training", k);
    ok(same_bits(a, b, chunk0 - 1), "training: the losses of the %lld targets before chunk %d are bit-identical",
       (long long)(chunk0 - 1), k);
    ok(same_bits(a + chunk0 - 1, b + chunk0 - 1, first - chunk0),
       "training: so are those of chunk %d before the change: it was scored before any update on it", k);
    int64_t dk = count_diff(a + first - 1, b + first - 1, last - first + 1);
    ok(dk > 0, "training: losses in chunk %d after the change differ (%lld of %lld)", k, (long long)dk,
       (long long)(last - first + 1));
    int64_t dn = count_diff(a + last, b + last, next - last);
    ok(dn > 0, "training: losses in chunk %d differ too (%lld of %lld): the model adapted on chunk %d", k + 1,
       (long long)dn, (long long)(next - last), k);
    ok(same_bits(a0, b0, first - 1) && same_bits(a0 + last, b0 + last, n - last) && count_diff(a0, b0, n) > 0,
       "control, epochs 0: only the changed windows' losses differ");
    ok(count_diff(a, a0, n) > 0 && same_bits(a, a0, CHUNK_SEQS * L),
       "training changes the losses after chunk 0, never in chunk 0");
    free(a), free(b), free(a0), free(b0), free(w.tokens);
}

static void test_instrumented(const struct pg_val_set *v, const struct pg_bpb_lut *t)
{
    int64_t n = v->usable;
    struct audit au = {.n = n, .max_read = -1, .order_ok = 1, .last_scored_chunk = -1};
    au.seen_updates = calloc((size_t)n, sizeof *au.seen_updates);
    au.seen_max = calloc((size_t)n, sizeof *au.seen_max);
    au.scored_count = calloc((size_t)n, sizeof *au.scored_count);
    struct pg_ttt_hooks h = {.ctx = &au, .scored = on_scored, .updated = on_updated};
    struct pg_ttt_params p;
    params_default(&p);
    struct pg_ttt_result r;
    is_int(run(v, t, &p, NULL, &h, &r), 0, "instrumented run");
    int64_t once = 0, causal = 0, bad = -1;
    for (int64_t i = 0; i < n; i++) {
        once += au.scored_count[i] == 1;
        if (au.seen_max[i] < i + 1) causal++;
        else if (bad < 0) bad = i + 1;
    }
    is_int(once, n, "every one of the %lld targets is scored exactly once", (long long)n);
    ok(causal == n, "every scored target: each update applied before it read only lower positions (first bad: %lld)",
       (long long)bad);
    int64_t last_first = (r.chunks - 1) * CHUNK_SEQS * L + 1;
    ok(au.max_read < last_first, "no update read the last chunk's targets (highest read %lld < %lld)",
       (long long)au.max_read, (long long)last_first);
    int64_t steps_per_chunk = p.epochs * ((CHUNK_SEQS + p.step_seqs - 1) / p.step_seqs), sched = 1;
    for (int c = 0; c < r.chunks; c++) sched &= au.per_chunk[c] == (c < r.chunks - 1 ? steps_per_chunk : 0);
    ok(sched, "%lld updates per chunk but the last, none on the last", (long long)steps_per_chunk);
    is_int(au.updates, r.steps, "the result counts %lld steps", (long long)au.updates);
    is_int(r.chunks_trained, r.chunks - 1, "chunks trained = chunks - 1");
    ok(au.order_ok, "each update belongs to the chunk scored latest");
    int64_t seen_ok = 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = i / (CHUNK_SEQS * L);
        seen_ok &= au.seen_updates[i] == c * steps_per_chunk;
    }
    ok(seen_ok, "a target of chunk c is scored after exactly c·%lld updates", (long long)steps_per_chunk);
    free(au.seen_updates), free(au.seen_max), free(au.scored_count);
}

static void test_refusals(const struct pg_val_set *v, const struct pg_bpb_lut *t)
{
    struct pg_model m;
    struct pg_ttt_params p;
    params_default(&p);
    if (model(&m, 1, p.batch_seqs)) {
        ok(0, "set up a training model");
        return;
    }
    pg_real *before = malloc(m.nparams * sizeof *before);
    memcpy(before, m.params, m.nparams * sizeof *before);
    struct pg_ttt *s;
    is_int(pg_ttt_open(&s, &m, v, t, &p, NULL), 0, "open a session");
    struct pg_ttt_chunk c0 = {0, 0, CHUNK_SEQS}, c1 = {1, CHUNK_SEQS, 2 * CHUNK_SEQS}, got;
    is_int(pg_ttt_train(s, &c0), PG_E_INVAL, "training on chunk 0 before it is scored is refused");
    is_int(pg_ttt_score_next(s, &got), 0, "score chunk 0");
    ok(got.index == 0 && got.seq_begin == 0 && got.seq_end == CHUNK_SEQS, "it reports chunk 0 = windows [0, %d)",
       CHUNK_SEQS);
    is_int(pg_ttt_train(s, &c1), PG_E_INVAL, "training on chunk 1, not scored yet, is refused");
    struct pg_ttt_chunk forged = {0, 0, CHUNK_SEQS + 1};
    is_int(pg_ttt_train(s, &forged), PG_E_INVAL, "a forged chunk 0 that reaches into chunk 1 is refused");
    ok(memcmp(before, m.params, m.nparams * sizeof *before) == 0, "the refusals left the parameters unchanged");
    is_int(pg_ttt_train(s, &got), 0, "training on the scored chunk 0 is accepted");
    ok(memcmp(before, m.params, m.nparams * sizeof *before) != 0, "and changes the parameters");
    int rc;
    while ((rc = pg_ttt_score_next(s, &got)) == 0) {}
    is_int(rc, 1, "pg_ttt_score_next returns 1 when every chunk is scored");
    memcpy(before, m.params, m.nparams * sizeof *before);
    is_int(pg_ttt_train(s, &got), PG_E_INVAL, "training on the last chunk is refused");
    ok(memcmp(before, m.params, m.nparams * sizeof *before) == 0, "and leaves the parameters unchanged");
    struct pg_ttt_result r;
    pg_ttt_result(s, &r);
    is_int((long long)r.tokens, v->usable, "the result counts every target");
    pg_ttt_close(s);
    pg_ttt_close(NULL);
    struct pg_ttt_params bad = p;
    bad.lr = -1;
    is_int(pg_ttt_open(&s, &m, v, t, &bad, NULL), PG_E_INVAL, "a negative learning rate is refused");
    bad = p, bad.momentum = 1;
    is_int(pg_ttt_open(&s, &m, v, t, &bad, NULL), PG_E_INVAL, "momentum 1 is refused");
    bad = p, bad.chunk_tokens = 0;
    is_int(pg_ttt_open(&s, &m, v, t, &bad, NULL), PG_E_INVAL, "a chunk of 0 tokens is refused");
    bad = p, bad.step_seqs = 0;
    is_int(pg_ttt_open(&s, &m, v, t, &bad, NULL), PG_E_INVAL, "a step of 0 windows is refused");
    free(before);
    pg_model_free(&m);
}

static void test_adapts(const struct pg_val_set *v, const struct pg_bpb_lut *t)
{
    struct pg_ttt_params p;
    params_default(&p);
    struct pg_ttt_result plain, adapted;
    p.epochs = 0;
    int rc = run(v, t, &p, NULL, NULL, &plain);
    p.epochs = 2;
    rc |= run(v, t, &p, NULL, NULL, &adapted);
    is_int(rc, 0, "plain and adapted runs");
    ok(adapted.val_bpb < plain.val_bpb, "on a periodic stream adaptation lowers val_bpb: %.4f -> %.4f", plain.val_bpb,
       adapted.val_bpb);
    ok(adapted.tokens == plain.tokens && adapted.bytes == plain.bytes, "the same targets and bytes are scored");
    /* chunk_tokens past the stream: one chunk, which is the last, so nothing is trained */
    p.chunk_tokens = 1 << 20;
    rc = run(v, t, &p, NULL, NULL, &adapted);
    ok(rc == 0 && adapted.chunks == 1 && adapted.steps == 0 && adapted.val_bpb == plain.val_bpb,
       "a single chunk is never trained on: the plain score");
    /* chunk_tokens below one window: one window per chunk */
    p.chunk_tokens = 3;
    rc = run(v, t, &p, NULL, NULL, &adapted);
    ok(rc == 0 && adapted.chunks == NSEQ && adapted.chunk_seqs == 1, "a chunk shorter than a window holds one window");
}

/* The audit's sampled targets, as pg_ngram_audit_open picks them (seed 0x5eed) */
static double losses_at_picks(const struct pg_audit *a, const float *losses, int samples)
{
    int64_t pick[64];
    struct pg_rng r;
    pg_rng_seed(&r, 0x5eed);
    int n = pg_audit_pick(a, a->usable + 1, samples, &r, pick);
    double s = 0;
    for (int k = 0; k < n; k++) s += losses[pick[k] - 1];
    return s;
}

static void test_live_audit(const struct pg_val_set *v, const struct pg_bpb_lut *t)
{
    int64_t n = v->usable;
    float *plain = calloc((size_t)n, sizeof *plain), *ttt = calloc((size_t)n, sizeof *ttt);
    struct pg_ttt_params p;
    params_default(&p);
    struct pg_ttt_result r;
    for (int polyak = 0; polyak < 2; polyak++) {
        p.polyak = polyak ? 0.5 : 0;
        struct pg_audit a;
        if (pg_audit_init(&a, n, V)) {
            ok(0, "audit init");
            break;
        }
        struct pg_ttt_hooks h = {.audit = &a, .audit_samples = 24};
        p.epochs = 0;
        int rc = run(v, t, &p, plain, NULL, &r);
        p.epochs = 2;
        rc |= run(v, t, &p, ttt, &h, &r);
        pg_audit_finish(&a);
        is_int(rc, 0, "TTT%s with the live audit runs", polyak ? " + Polyak" : "");
        double want = losses_at_picks(&a, ttt, 24), base = losses_at_picks(&a, plain, 24);
        ok(a.samples == 24 && a.lookahead == 0 && a.unnormalized == 0,
           "live audit%s: 24 samples, causal and normalized", polyak ? " + Polyak" : "");
        ok(fabs(a.sampled_nll - want) < 1e-3 && fabs(base - want) > 1e-2,
           "live audit%s: it checked the scored distributions (nll %.5f = the run's %.5f; untrained %.5f)",
           polyak ? " + Polyak" : "", a.sampled_nll, want, base);
        pg_audit_free(&a);
    }
    free(plain), free(ttt);
}

static void test_temperature(const struct pg_val_set *v, const struct pg_bpb_lut *t)
{
    int64_t n = v->usable;
    struct pg_ttt_params p;
    params_default(&p);
    p.temperature = 0.8, p.epochs = 0;
    struct pg_ttt_result r0, r1;
    struct pg_eval_result e;
    struct pg_model m;
    int rc = run(v, t, &p, NULL, NULL, &r0);
    if (model(&m, 0, 1) == 0) {
        rc |= pg_eval_sliding_ex(&m, v, t, L, 1, 0, 0.8, NULL, NULL, &e);
        pg_model_free(&m);
    }
    is_int(rc, 0, "TTT at temperature 0.8, epochs 0, and pg_eval_sliding_ex");
    ok(fabs(r0.nll_sum - e.nll_sum) < 1e-6 * e.nll_sum && r0.bytes == e.bytes,
       "epochs 0, T 0.8: pg-eval --temperature's score (%.8f vs %.8f)", r0.val_bpb, e.val_bpb);
    float *l = calloc((size_t)n, sizeof *l);
    struct pg_audit au;
    rc = pg_audit_init(&au, n, V);
    struct pg_ttt_hooks h = {.audit = &au, .audit_samples = 24};
    p.epochs = 2;
    rc |= run(v, t, &p, l, &h, &r1);
    pg_audit_finish(&au);
    double want = losses_at_picks(&au, l, 24);
    ok(rc == 0 && r1.val_bpb != r0.val_bpb && au.samples == 24 && au.lookahead == 0 && au.unnormalized == 0,
       "trained at T 0.8: the score moves, the live audit passes");
    ok(fabs(au.sampled_nll - want) < 1e-3, "trained at T 0.8: the audit checked the tempered distributions (%.5f = %.5f)",
       au.sampled_nll, want);
    pg_audit_free(&au);
    free(l);
    p.temperature = 0;
    is_int(run(v, t, &p, NULL, NULL, &r1), PG_E_INVAL, "temperature 0 is refused");
}

static void test_ngram(const struct pg_val_set *v, const struct pg_bpb_lut *t)
{
    int64_t n = v->usable;
    struct pg_ngram_params np;
    pg_ngram_params_default(&np);
    np.mix = 1, np.tilt = 1;
    struct pg_ttt_params p;
    params_default(&p);
    p.ngram = &np;
    p.epochs = 0;
    struct pg_ttt_result r0, r1, r2;
    struct pg_ngram_result nr;
    struct pg_model m;
    int rc = run(v, t, &p, NULL, NULL, &r0);
    if (model(&m, 0, 1) == 0) {
        rc |= pg_ngram_run(&m, v, t, &np, 0, NULL, NULL, 0, &nr);
        pg_model_free(&m);
    }
    is_int(rc, 0, "TTT with tilt + mixture, epochs 0, and pg_ngram_run");
    ok(r0.nll_sum == nr.nll_sum && r0.bytes == nr.bytes && r0.tokens == nr.tokens,
       "epochs 0 + n-gram: pg_ngram_run's sums bit for bit (%.8f)", r0.val_bpb);
    float *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
    p.epochs = 2;
    struct pg_audit au;
    rc = pg_audit_init(&au, n, V);
    struct pg_ttt_hooks h = {.audit = &au, .audit_samples = 24};
    rc |= run(v, t, &p, a, &h, &r1);
    pg_audit_finish(&au);
    ok(rc == 0 && r1.val_bpb != r0.val_bpb && r1.steps > 0, "training + n-gram: the score moves (%.6f -> %.6f)",
       r0.val_bpb, r1.val_bpb);
    ok(au.samples == 24 && au.lookahead == 0 && au.unnormalized == 0,
       "training + n-gram, live audit: 24 samples, causal and normalized");
    pg_audit_free(&au);
    struct pg_val_set w = *v;
    w.tokens = malloc(((size_t)n + 1) * sizeof *w.tokens);
    memcpy(w.tokens, v->tokens, ((size_t)n + 1) * sizeof *w.tokens);
    int64_t q = n / 2 + 3;
    w.tokens[q] = (uint16_t)(4 + (w.tokens[q] - 4 + 7) % 60);
    rc = run(&w, t, &p, b, NULL, &r2);
    ok(rc == 0 && same_bits(a, b, q - 1) && a[q - 1] != b[q - 1],
       "training + n-gram: changing the token at %lld leaves every earlier loss bit-identical", (long long)q);
    free(a), free(b), free(w.tokens);
}

/* #2086's control-only TTT moves the control tensors and nothing else; #826's Polyak average
 * scores with d·avg + (1 − d)·θ: d → 1 gives the untrained model's score, d → 0 plain TTT's. */
static void test_switches(const struct pg_val_set *v, const struct pg_bpb_lut *t)
{
    struct pg_model m, m0;
    if (model(&m, 1, 2) || model(&m0, 0, 2)) {
        ok(0, "set up");
        return;
    }
    struct pg_ttt_params p;
    params_default(&p);
    p.control_only = 1;
    struct pg_ttt_result r;
    is_int(pg_ttt_run(&m, v, t, &p, NULL, &r), 0, "control-only TTT runs");
    int others = 1, moved = 0;
    for (int i = 0; i < m.ntensors; i++) {
        const struct pg_tensor *x = &m.tensors[i];
        int same = memcmp(m.params + x->offset, m0.params + x->offset, x->numel * sizeof *m.params) == 0;
        if (x->kind == PG_TENSOR_CONTROL) moved += !same;
        else others &= same;
    }
    ok(others && moved > 0, "control-only: %d control tensors moved, every other tensor is unchanged", moved);
    pg_model_free(&m), pg_model_free(&m0);
    struct pg_ttt_result plain, ttt, near1, near0;
    params_default(&p);
    p.epochs = 0;
    int rc = run(v, t, &p, NULL, NULL, &plain);
    p.epochs = 2;
    rc |= run(v, t, &p, NULL, NULL, &ttt);
    p.polyak = 0.999999999;
    rc |= run(v, t, &p, NULL, NULL, &near1);
    p.polyak = 1e-12;
    rc |= run(v, t, &p, NULL, NULL, &near0);
    is_int(rc, 0, "Polyak runs");
    is_close(near1.val_bpb, plain.val_bpb, 1e-6, 0, "Polyak d -> 1: the untrained score (%.6f)", plain.val_bpb);
    is_close(near0.val_bpb, ttt.val_bpb, 1e-6, 0, "Polyak d -> 0: plain TTT's score (%.6f)", ttt.val_bpb);
    ok(fabs(ttt.val_bpb - plain.val_bpb) > 1e-4, "and those differ (%.6f vs %.6f)", ttt.val_bpb, plain.val_bpb);
    p.polyak = 1;
    is_int(run(v, t, &p, NULL, NULL, &near1), PG_E_INVAL, "Polyak decay 1 is refused");
}

int main(void)
{
    struct pg_val_set v;
    stream(&v);
    struct pg_bpb_lut t;
    if (!v.tokens || lut(&t)) return 1;
    test_sgd();
    test_eval_equal(&v, &t);
    test_causality(&v, &t);
    test_instrumented(&v, &t);
    test_refusals(&v, &t);
    test_adapts(&v, &t);
    test_live_audit(&v, &t);
    test_temperature(&v, &t);
    test_ngram(&v, &t);
    test_switches(&v, &t);
    pg_bpb_lut_free(&t);
    pg_val_close(&v);
    return done_testing();
}
