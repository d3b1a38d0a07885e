/* test_ngram.c: the evaluation-time n-gram modes (lib/ngram.c):
 *   - the model's log-probabilities from the head tap match the model's own losses;
 *   - tilt, mixture and both: at every position the distribution sums to 1 over the vocabulary
 *     (float64), is positive, and the score is −log of its value at the target;
 *   - causality, black box: changing the token at q leaves every earlier loss bit-identical;
 *   - on a repetitive stream the mixture (and the tilt) beat the model alone;
 *   - #826's cache: its values over the vocabulary do not sum to 1 (the ruling's point), it has
 *     no distribution, and it does not combine with the compliant modes;
 *   - with sliding windows (stride S): every target once, the model's own sum equal to
 *     pg_eval_sliding's over the same windows, stride L the plain windows bit for bit, and
 *     still causal;
 *   - pg_model_alloc_acts called again replaces the buffers (a larger batch runs; under ASan the
 *     first call's buffers would show as a leak). */
#include "../tap.h"

#include "../../lib/err.h"
#include "../../lib/eval.h"
#include "../../lib/ngram.h"
#include "../../lib/tok.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { V = 48, L = 16, NSEQ = 20, BOS = 1 };

static int model(struct pg_model *m)
{
    struct pg_config c;
    pg_config_default(&c);
    c.vocab_size = V, c.num_layers = 2, c.model_dim = 32, c.num_heads = 4, c.num_kv_heads = 2;
    c.mlp_mult = 2, c.train_seq_len = L;
    if (pg_model_init(m, &c, &pg_backend_cpu, 0) || pg_model_alloc_acts(m, 1, L)) return -1;
    pg_model_init_weights(m, 3);
    for (size_t i = 0; i < m->nparams; i++) m->params[i] += (pg_real)(0.05 * sin(0.3 * (double)i));
    return 0;
}

/* period 0: random tokens; else a random pattern of that period, with a few random tokens */
static void stream(struct pg_val_set *v, int period)
{
    v->seq_len = L;
    v->usable = (int64_t)NSEQ * L;
    v->tokens = malloc(((size_t)v->usable + 1) * sizeof *v->tokens);
    unsigned r = 7, pat[64];
    for (int i = 0; i < 64; i++) r = r * 1103515245u + 12345u, pat[i] = 4 + (r >> 16) % (V - 4);
    for (int64_t i = 0; i <= v->usable; i++) {
        r = r * 1103515245u + 12345u;
        v->tokens[i] = (uint16_t)(i == 0 ? BOS : period && (r >> 16) % 13 ? pat[i % period] : 4 + (r >> 16) % (V - 4));
    }
}

static int lut(struct pg_bpb_lut *t)
{
    static char names[V][16];
    const char *pieces[V];
    int kinds[V];
    for (int i = 0; i < V; i++) {
        if (i < 4) snprintf(names[i], sizeof names[i], "<c%d>", i);
        else snprintf(names[i], sizeof names[i], "\xe2\x96\x81w%d", i);
        pieces[i] = names[i];
        kinds[i] = i < 4 ? PG_PIECE_CONTROL : PG_PIECE_NORMAL;
    }
    return pg_bpb_lut_build(t, V, pieces, kinds, V);
}

static void test_logp(void)
{
    struct pg_model m;
    struct pg_val_set v;
    stream(&v, 0);
    if (model(&m) || !v.tokens) {
        ok(0, "set up");
        return;
    }
    int32_t x[L], y[L];
    float losses[L];
    double logp[L * V];
    pg_val_window(&v, 3, x, y);
    pg_model_forward(&m, x, y, 1, losses);
    is_int(pg_ngram_model_logp(&m, x, y, L, logp), 0, "model log-probabilities");
    double worst = 0, sum_err = 0;
    for (int j = 0; j < L; j++) {
        double s = 0;
        for (int i = 0; i < V; i++) s += exp(logp[j * V + i]);
        if (fabs(s - 1) > sum_err) sum_err = fabs(s - 1);
        if (fabs(-logp[j * V + y[j]] - losses[j]) > worst) worst = fabs(-logp[j * V + y[j]] - losses[j]);
    }
    ok(worst < 2e-5, "−logp at the targets = the model's losses (worst %.2e)", worst);
    ok(sum_err < 1e-12, "and the model's distribution sums to 1 (%.1e)", sum_err);
    pg_model_free(&m);
    pg_val_close(&v);
}

/* Synthetic model distributions: a fixed softmax per position from a hash. */
static void fake_logp(double *lp, int64_t t)
{
    double mx = -1e300, s = 0;
    for (int i = 0; i < V; i++) {
        lp[i] = 3 * sin(0.37 * (double)(i * 7 + t * 13)) + (i == (int)(t % V) ? 2 : 0);
        if (lp[i] > mx) mx = lp[i];
    }
    for (int i = 0; i < V; i++) s += exp(lp[i] - mx);
    for (int i = 0; i < V; i++) lp[i] -= mx + log(s);
}

static void test_normalized(void)
{
    struct pg_val_set v;
    stream(&v, 11);
    const char *names[] = {"tilt", "mix", "tilt+mix"};
    for (int mode = 0; mode < 3; mode++) {
        struct pg_ngram_params p;
        pg_ngram_params_default(&p);
        p.tilt = mode != 1, p.mix = mode != 0;
        struct pg_ngram *s;
        if (pg_ngram_open(&s, V, &p)) {
            ok(0, "open");
            continue;
        }
        double lp[V], d[V], worst = 0, worst_score = 0;
        int positive = 1, tilted = 0;
        pg_ngram_push(s, NULL, v.tokens[0]);
        for (int64_t t = 1; t <= v.usable; t++) {
            fake_logp(lp, t);
            pg_ngram_dist(s, lp, d);
            double sum = 0;
            for (int i = 0; i < V; i++) sum += d[i], positive &= d[i] > 0;
            if (fabs(sum - 1) > worst) worst = fabs(sum - 1);
            tilted += fabs(d[v.tokens[t]] - exp(lp[v.tokens[t]])) > 1e-3;
            double sc = pg_ngram_score(s, lp, v.tokens[t]);
            if (fabs(sc + log(d[v.tokens[t]])) > worst_score) worst_score = fabs(sc + log(d[v.tokens[t]]));
            pg_ngram_push(s, lp, v.tokens[t]);
        }
        ok(worst < 1e-12 && positive, "%s: the distribution sums to 1 at all %lld positions (worst %.1e), all > 0",
           names[mode], (long long)v.usable, worst);
        ok(worst_score < 1e-12, "%s: the score is −log of the distribution at the target", names[mode]);
        ok(tilted > 50, "%s: and it differs from the model's at %d positions", names[mode], tilted);
        pg_ngram_close(s);
    }
    pg_val_close(&v);
}

/* the model and a stream of period 11; 0, or -1 after a failed check */
static int fixture(struct pg_model *m, struct pg_val_set *v)
{
    stream(v, 11);
    if (model(m) || !v->tokens) {
        ok(0, "set up");
        return -1;
    }
    return 0;
}

static void test_run(const struct pg_bpb_lut *t)
{
    struct pg_model m;
    struct pg_val_set v;
    if (fixture(&m, &v)) return;
    const char *names[] = {"tilt", "mix", "tilt+mix"};
    float *l0 = malloc((size_t)v.usable * sizeof *l0), *l1 = malloc((size_t)v.usable * sizeof *l1);
    for (int mode = 0; mode < 3; mode++) {
        struct pg_ngram_params p;
        pg_ngram_params_default(&p);
        p.tilt = mode != 1, p.mix = mode != 0;
        struct pg_ngram_result r;
        is_int(pg_ngram_run(&m, &v, t, &p, 0, l0, NULL, 0, &r), 0, "%s runs", names[mode]);
        ok(r.nll_sum < r.model_nll - 0.1 * r.tokens, "%s: on a repetitive stream, val_loss %.4f < the model's %.4f",
           names[mode], r.val_loss, r.model_nll / r.tokens);
        int64_t q = v.usable / 2 + mode;
        uint16_t keep = v.tokens[q];
        v.tokens[q] = (uint16_t)(4 + (keep - 4 + 5) % (V - 4));
        pg_ngram_run(&m, &v, t, &p, 0, l1, NULL, 0, &r);
        v.tokens[q] = keep;
        ok(memcmp(l0, l1, (size_t)(q - 1) * sizeof *l0) == 0 && l0[q - 1] != l1[q - 1],
           "%s: changing the token at %lld leaves every earlier loss bit-identical, and changes its own",
           names[mode], (long long)q);
    }
    free(l0), free(l1);
    pg_model_free(&m);
    pg_val_close(&v);
}

static void test_stride(const struct pg_bpb_lut *t)
{
    struct pg_model m;
    struct pg_val_set v;
    if (fixture(&m, &v)) return;
    struct pg_ngram_params p;
    pg_ngram_params_default(&p);
    p.mix = 1;
    struct pg_ngram_result plain, r;
    pg_ngram_run(&m, &v, t, &p, 0, NULL, NULL, 0, &plain);
    is_int(pg_ngram_run(&m, &v, t, &p, L, NULL, NULL, 0, &r), 0, "stride L runs");
    ok(r.nll_sum == plain.nll_sum && r.bytes == plain.bytes, "stride L: the plain windows' sums bit for bit");
    float *l0 = malloc((size_t)v.usable * sizeof *l0), *l1 = malloc((size_t)v.usable * sizeof *l1);
    const int strides[] = {1, 5, 12};
    for (int i = 0; i < 3; i++) {
        int S = strides[i];
        struct pg_eval_result e;
        is_int(pg_ngram_run(&m, &v, t, &p, S, l0, NULL, 0, &r), 0, "stride %d runs", S);
        is_int(pg_eval_sliding(&m, &v, t, S, 1, 0, NULL, &e), 0, "pg_eval_sliding, stride %d", S);
        ok(r.tokens == (double)v.usable && r.bytes == e.bytes, "stride %d: every target once (%.0f of %lld), bytes %.0f",
           S, r.tokens, (long long)v.usable, r.bytes);
        ok(fabs(r.model_nll - e.nll_sum) < 1e-6 * e.nll_sum,
           "stride %d: the model's own sum %.6f is pg_eval_sliding's %.6f (the same windows and contexts)", S,
           r.model_nll, e.nll_sum);
        if (S == 5) {
            ok(r.model_nll != plain.model_nll, "stride 5: other contexts than the plain windows' (%.6f vs %.6f)",
               r.model_nll / r.tokens, plain.model_nll / plain.tokens);
            int64_t q = v.usable / 2 + 3;
            uint16_t keep = v.tokens[q];
            v.tokens[q] = (uint16_t)(4 + (keep - 4 + 5) % (V - 4));
            pg_ngram_run(&m, &v, t, &p, S, l1, NULL, 0, &r);
            v.tokens[q] = keep;
            ok(memcmp(l0, l1, (size_t)(q - 1) * sizeof *l0) == 0 && l0[q - 1] != l1[q - 1],
               "stride 5: changing the token at %lld leaves every earlier loss bit-identical", (long long)q);
        }
    }
    is_int(pg_ngram_run(&m, &v, t, &p, L + 1, NULL, NULL, 0, &r), PG_E_INVAL, "a stride longer than the window");
    free(l0), free(l1);
    pg_model_free(&m);
    pg_val_close(&v);
}

static void test_realloc_acts(void)
{
    struct pg_model m;
    struct pg_val_set v;
    if (fixture(&m, &v)) return;
    int32_t x[3 * L], y[3 * L];
    float l1[L], l3[3 * L];
    for (int j = 0; j < 3 * L; j++) x[j] = v.tokens[j], y[j] = v.tokens[j + 1];
    pg_model_forward(&m, x, y, 1, l1);
    is_int(pg_model_alloc_acts(&m, 3, L), 0, "activations allocated again, for 3 sequences");
    pg_model_forward(&m, x, y, 3, l3);
    double worst = 0;
    for (int j = 0; j < L; j++) worst = fmax(worst, fabs((double)l1[j] - l3[j]));
    ok(m.max_b == 3 && worst < 1e-5, "a batch of 3 runs on them; its first sequence's losses as before (%.1e)", worst);
    pg_model_free(&m);
    pg_val_close(&v);
}

static void test_cache(void)
{
    struct pg_val_set v;
    stream(&v, 11);
    struct pg_ngram_params p;
    pg_ngram_params_default(&p);
    p.cache = 1, p.cache_bits = 5; /* few buckets: the collisions show */
    struct pg_ngram *s;
    if (!v.tokens || pg_ngram_open(&s, V, &p)) {
        ok(0, "open the cache");
        return;
    }
    double lp[V], d[V], worst = 0;
    is_int(pg_ngram_dist(s, lp, d), PG_E_INVAL, "the cache has no distribution");
    pg_ngram_push(s, NULL, v.tokens[0]);
    for (int64_t t = 1; t <= v.usable; t++) {
        fake_logp(lp, t);
        double sum = 0;
        for (int y = 0; y < V; y++) sum += exp(-pg_ngram_score(s, lp, y));
        if (sum > worst) worst = sum;
        pg_ngram_score(s, lp, v.tokens[t]);
        pg_ngram_push(s, lp, v.tokens[t]);
    }
    ok(worst > 1.2, "#826's cache: its probabilities over the vocabulary sum to %.2f somewhere (not 1)", worst);
    pg_ngram_close(s);
    p.tilt = 1;
    is_int(pg_ngram_open(&s, V, &p), PG_E_INVAL, "the cache with the tilt is refused");
    pg_val_close(&v);
}

int main(void)
{
    struct pg_bpb_lut t;
    if (lut(&t)) return 1;
    test_logp();
    test_normalized();
    test_run(&t);
    test_stride(&t);
    test_realloc_acts();
    test_cache();
    pg_bpb_lut_free(&t);
    return done_testing();
}
