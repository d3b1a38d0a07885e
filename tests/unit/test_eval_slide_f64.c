/* test_eval_slide_f64.c: sliding-window scoring (pg_eval_sliding) against a direct per-position
 * computation, with the model and CPU backend in float64. For every target p the test works out
 * on its own which context the records' rule gives it (the first window that holds p, windows
 * starting every S tokens, the last one ending at the last target: p-1-ws tokens; with document
 * masking, from p's BOS on) and computes p's loss from a sequence holding just that context
 * followed by filler tokens, without document masking. The sliding pass must give each target
 * exactly that loss, score each target once, charge the sidecar's bytes of each target, and with
 * S = L equal pg_eval_val bit for bit. A context one token shorter must change the losses (the
 * check can fail). --temperature: the host distribution at T = 1 gives the forward's losses, and
 * T = 2 the renormalized softmax(log p / 2). */
#include "../tap.h"

#include "../../lib/bpb.h"
#include "../../lib/config.h"
#include "../../lib/err.h"
#include "../../lib/eval.h"
#include "../../lib/model.h"
#include "../../lib/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define L 8
#define USABLE (5 * L + 3 * L) /* 64 targets */
#define V 32
#define BATCH 3

static struct pg_model M;
static uint16_t tokens[USABLE + 1];
static uint16_t side[USABLE + 1];

/* The loss of target p given the c tokens before it (plus p-1 itself: x holds tokens[p-1-c..p-1]). */
static double direct_loss(int64_t p, int64_t c)
{
    int32_t x[L], y[L];
    float loss[L];
    for (int j = 0; j < L; j++) x[j] = y[j] = 5 + j; /* filler after the context (never BOS) */
    for (int64_t j = 0; j <= c; j++) x[j] = tokens[p - 1 - c + j];
    y[c] = tokens[p];
    pg_model_forward(&M, x, y, 1, loss);
    return loss[c];
}

static int64_t first_window(int64_t p, int S)
{
    int64_t k = p <= L ? 0 : (p - L + S - 1) / S; /* the smallest k with k·S + L >= p */
    int64_t ws = k * S;
    return ws > USABLE - L ? USABLE - L : ws;
}

static void check_stride(int S, int doc_mask, const struct pg_val_set *v, const struct pg_bpb_lut *lut)
{
    M.cfg.varlen_attn = doc_mask;
    float *got = malloc(USABLE * sizeof *got);
    for (int i = 0; i < USABLE; i++) got[i] = NAN;
    struct pg_eval_result r;
    int rc = pg_eval_sliding(&M, v, lut, S, BATCH, 0, got, &r);
    is_int(rc, 0, "stride %d%s: scores", S, doc_mask ? ", doc-masked" : "");
    int missing = 0, bad = 0, shorter_same = 0, shorter_n = 0;
    double worst = 0, bytes = 0, nll = 0;
    for (int64_t p = 1; p <= USABLE; p++) {
        int64_t ws = first_window(p, S), start = ws;
        if (doc_mask)
            for (int64_t q = p - 1; q >= ws; q--)
                if (tokens[q] == 1) {
                    start = q;
                    break;
                }
        int64_t c = p - 1 - start;
        M.cfg.varlen_attn = 0;
        double want = direct_loss(p, c);
        if (c > 0) {
            shorter_n++;
            shorter_same += fabs(direct_loss(p, c - 1) - want) <= 1e-6 * fabs(want);
        }
        M.cfg.varlen_attn = doc_mask;
        if (isnan(got[p - 1])) {
            missing++;
            continue;
        }
        double err = fabs(got[p - 1] - want);
        worst = err > worst ? err : worst;
        bad += err > 1e-6 * fabs(want) + 1e-9;
        bytes += side[p];
        nll += got[p - 1];
    }
    is_int(missing, 0, "stride %d%s: every one of the %d targets scored", S, doc_mask ? ", doc-masked" : "", USABLE);
    ok(bad == 0, "stride %d%s: each loss equals the direct computation with its longest context (worst %.1e)", S,
       doc_mask ? ", doc-masked" : "", worst);
    ok(shorter_same < shorter_n / 4, "stride %d: one token less context changes the loss (%d of %d unchanged)", S,
       shorter_same, shorter_n);
    ok(r.tokens == USABLE && r.bytes == bytes, "stride %d: %g tokens, %g sidecar bytes (want %d, %g)", S, r.tokens,
       r.bytes, USABLE, bytes);
    ok(fabs(r.nll_sum - nll) <= 1e-9 * nll, "stride %d: the nll sum is the sum of the target losses", S);
    free(got);
}

int main(void)
{
    struct pg_config cfg;
    pg_config_default(&cfg);
    cfg.vocab_size = V, cfg.num_layers = 2, cfg.model_dim = 16, cfg.num_heads = 4, cfg.num_kv_heads = 2;
    cfg.mlp_mult = 2, cfg.train_seq_len = L, cfg.logit_softcap = 3.0;
    cfg.grad_accum_steps = 1, cfg.train_batch_tokens = cfg.val_batch_size = BATCH * L;
    if (pg_config_validate(&cfg, 0) || pg_model_init(&M, &cfg, &pg_backend_cpu, 0) ||
        pg_model_alloc_acts(&M, BATCH, L))
        bail_out("model setup: %s", pg_error_message());
    struct pg_rng rng;
    pg_rng_seed(&rng, 3);
    for (size_t i = 0; i < M.nparams; i++) M.params[i] = 0.5 * (2 * pg_rng_uniform(&rng) - 1);
    for (int i = 0; i <= USABLE; i++) {
        tokens[i] = (uint16_t)(pg_rng_below(&rng, 9) == 0 ? 1 : 2 + pg_rng_below(&rng, V - 2));
        side[i] = tokens[i] == 1 ? 0 : (uint16_t)pg_rng_below(&rng, 7);
    }
    tokens[0] = 1, side[0] = 0;
    struct pg_val_set v = {tokens, USABLE, L};
    int16_t base[V];
    uint8_t space[V], boundary[V];
    for (int i = 0; i < V; i++) base[i] = 1, space[i] = 0, boundary[i] = 0;
    struct pg_bpb_lut lut = {.n = V, .base_bytes = base, .has_leading_space = space, .is_boundary = boundary,
                             .val_bytes = side, .val_bytes_n = USABLE + 1};

    is_int(pg_slide_count(USABLE, L, L), USABLE / L, "stride L: %d windows", USABLE / L);
    is_int(pg_slide_count(USABLE, L, 1), USABLE - L + 1, "stride 1: one window per start");
    is_int(pg_slide_count(USABLE, L, 3), 1 + (USABLE - L + 2) / 3, "stride 3: the last window moved back");
    int strides[] = {1, 3, 5, L};
    for (int doc = 0; doc < 2; doc++)
        for (size_t i = 0; i < sizeof strides / sizeof *strides; i++) check_stride(strides[i], doc, &v, &lut);

    /* Temperature: the host's distribution at T = 1 is the forward's, and at T = 2 each loss is
     * -log softmax(log p1 / 2)[y], renormalized from the T = 1 distribution. */
    M.cfg.varlen_attn = 0;
    {
        float *l1 = malloc(USABLE * sizeof *l1), *l2 = malloc(USABLE * sizeof *l2);
        struct pg_eval_result r1, r2;
        is_int(pg_eval_sliding_ex(&M, &v, &lut, 3, BATCH, 0, 1.0, NULL, l1, &r1), 0, "temperature 1");
        is_int(pg_eval_sliding_ex(&M, &v, &lut, 3, BATCH, 0, 2.0, NULL, l2, &r2), 0, "temperature 2");
        struct pg_eval_head h;
        is_int(pg_eval_head_open(&h, &M), 0, "the head on the host");
        double lp[V], worst1 = 0, worst2 = 0;
        for (int64_t p = 1; p <= USABLE; p++) {
            int64_t ws = first_window(p, 3);
            int32_t x[L], y[L];
            for (int j = 0; j < L; j++) x[j] = tokens[ws + j], y[j] = tokens[ws + j + 1];
            pg_model_forward(&M, x, y, 1, NULL);
            pg_eval_logdist(&M, &h, 0, (int)(p - 1 - ws), 1.0, lp);
            double e1 = fabs(-lp[tokens[p]] - l1[p - 1]);
            worst1 = e1 <= worst1 ? worst1 : e1; /* a NaN becomes the worst */
            double mx = -1e300, s = 0;
            for (int i = 0; i < V; i++) mx = fmax(mx, lp[i] / 2);
            for (int i = 0; i < V; i++) s += exp(lp[i] / 2 - mx);
            double e2 = fabs(-(lp[tokens[p]] / 2 - mx - log(s)) - l2[p - 1]);
            worst2 = e2 <= worst2 ? worst2 : e2;

        }
        ok(worst1 < 1e-6, "T = 1: the host distribution gives the forward's losses (worst %.1e)", worst1);
        ok(worst2 < 1e-6 && r2.nll_sum != r1.nll_sum, "T = 2: softmax(log p / 2) (worst %.1e)", worst2);
        is_int(pg_eval_sliding_ex(&M, &v, &lut, 3, BATCH, 0, 0.0, NULL, NULL, &r2), PG_E_INVAL, "T = 0 refused");
        pg_eval_head_close(&h);
        free(l1), free(l2);
    }
    struct pg_eval_result a, b;
    is_int(pg_eval_val(&M, &v, &lut, 0, 1, BATCH, 0, &a), 0, "pg_eval_val");
    is_int(pg_eval_sliding(&M, &v, &lut, L, BATCH, 0, NULL, &b), 0, "pg_eval_sliding, stride L");
    ok(a.nll_sum == b.nll_sum && a.bytes == b.bytes && a.tokens == b.tokens && a.val_bpb == b.val_bpb,
       "stride L is the non-overlapping score bit for bit (%.17g vs %.17g)", a.val_bpb, b.val_bpb);
    is_int(pg_eval_sliding(&M, &v, &lut, L + 1, BATCH, 0, NULL, &b), PG_E_INVAL, "a stride past L is refused");
    pg_model_free(&M);
    return done_testing();
}
