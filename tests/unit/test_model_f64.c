/* test_model_f64.c: the whole model's gradient against central finite differences, for every
 * parameter of every tensor, with the model and the CPU backend built in float64
 * (-DPG_REAL_DOUBLE). The configuration is tiny but has every part: 3 layers (1 encoder, 2
 * decoders, so one decoder gets a skip and one does not), GQA (4 heads over 2 kv heads), RoPE,
 * q/k norms and gains, the softcap, resid mixes and scales, all set to random values so no
 * gradient is trivially zero. Tolerance: |analytic − numeric| <= 1e-6 + 1e-5·|numeric|. The test
 * also breaks one gradient of each tensor on purpose and requires the check to notice. It runs
 * twice: with the baseline's switches, and with the record-stack techniques on (LeakyReLU(0.5)²,
 * partial RoPE over 2 of 4 head dims, layerwise LN scale; spec/techniques.md §2.2, §2.5, §2.6). */
#include "../tap.h"

#include "../../lib/config.h"
#include "../../lib/err.h"
#include "../../lib/model.h"
#include "../../lib/rng.h"

#include <stdlib.h>
#include <string.h>

#define B 2
#define T 6

static struct pg_model M;
static int32_t X[B * T], Y[B * T];

static double loss(void) { return pg_model_forward(&M, X, Y, B, NULL) / (B * T); }

/* Checks every gradient of the model cfg describes; label names the variant in the TAP lines. */
static void check_model(struct pg_config cfg, const char *label)
{
    cfg.vocab_size = 32, cfg.num_layers = 3, cfg.model_dim = 16, cfg.num_heads = 4, cfg.num_kv_heads = 2;
    cfg.mlp_mult = 2, cfg.train_seq_len = T, cfg.logit_softcap = 3.0; /* a small cap makes tanh matter */
    cfg.grad_accum_steps = 1, cfg.train_batch_tokens = cfg.val_batch_size = B * T;
    if (pg_config_validate(&cfg, 0) || pg_model_init(&M, &cfg, &pg_backend_cpu, 1) || pg_model_alloc_acts(&M, B, T)) {
        printf("Bail out! model setup (%s): %s\n", label, pg_error_message());
        exit(1);
    }
    is_int(M.ntensors, 1 + 10 * 3 + 1, "%s: tensor table: tok_emb, 10 per block, skip_weights", label);
    ok(M.t_skip >= 0 && M.tensors[M.t_skip].shape[0] == 1, "%s: one skip weight row (min(1 encoder, 2 decoders))",
       label);
    struct pg_rng rng;
    pg_rng_seed(&rng, 7);
    for (size_t i = 0; i < M.nparams; i++) M.params[i] = 0.5 * (2 * pg_rng_uniform(&rng) - 1);
    for (int i = 0; i < B * T; i++) {
        X[i] = (int32_t)pg_rng_below(&rng, 32);
        Y[i] = (int32_t)pg_rng_below(&rng, 32);
    }
    pg_model_zero_grad(&M);
    double l0 = loss();
    pg_model_backward(&M, 1.0 / (B * T));
    ok(isfinite(l0) && l0 > 0, "%s: forward gives a finite positive loss (%.6f)", label, l0);

    double *grad = malloc(M.nparams * sizeof *grad);
    if (!grad) {
        printf("Bail out! out of memory\n");
        exit(1);
    }
    memcpy(grad, M.grads, M.nparams * sizeof *grad);
    const double eps = 1e-5;
    for (int ti = 0; ti < M.ntensors; ti++) {
        struct pg_tensor *t = &M.tensors[ti];
        double *p = M.params + t->offset, *g = grad + t->offset, worst = 0, gmax = 0;
        int bad = 0, broken_caught = 0;
        size_t broken_at = t->numel / 2;
        for (size_t k = 0; k < t->numel; k++) {
            double keep = p[k];
            p[k] = keep + eps;
            double lp = loss();
            p[k] = keep - eps;
            double lm = loss();
            p[k] = keep;
            double num = (lp - lm) / (2 * eps), err = fabs(g[k] - num), tol = 1e-6 + 1e-5 * fabs(num);
            if (err > tol) bad++;
            worst = err > worst ? err : worst;
            gmax = fabs(num) > gmax ? fabs(num) : gmax;
            if (k == broken_at) broken_caught = fabs(g[k] + 1e-3 - num) > tol;
        }
        ok(bad == 0 && gmax > 0, "%s: %s: %zu gradients match (worst |err| %.1e, max |g| %.1e)", label, t->name,
           t->numel, worst, gmax);
        ok(broken_caught, "%s: %s: a gradient off by 1e-3 would be caught", label, t->name);
    }
    /* Gradients accumulate: a second backward of the same forward doubles them. */
    pg_model_zero_grad(&M);
    loss();
    pg_model_backward(&M, 1.0);
    pg_model_backward(&M, 1.0);
    double worst = 0;
    for (size_t i = 0; i < M.nparams; i++) worst = fmax(worst, fabs(M.grads[i] - 2 * grad[i] * (B * T)));
    ok(worst < 1e-9, "%s: two backward passes accumulate to twice the gradient (worst %.1e)", label, worst);
    free(grad);
    pg_model_free(&M);
}

/* The loss of the same weights and tokens under cfg (the switches must change the function). */
static double loss_with(struct pg_config cfg)
{
    cfg.vocab_size = 32, cfg.num_layers = 3, cfg.model_dim = 16, cfg.num_heads = 4, cfg.num_kv_heads = 2;
    cfg.mlp_mult = 2, cfg.train_seq_len = T, cfg.logit_softcap = 3.0;
    if (pg_model_init(&M, &cfg, &pg_backend_cpu, 1) || pg_model_alloc_acts(&M, B, T)) {
        printf("Bail out! model setup: %s\n", pg_error_message());
        exit(1);
    }
    struct pg_rng rng;
    pg_rng_seed(&rng, 7);
    for (size_t i = 0; i < M.nparams; i++) M.params[i] = 0.5 * (2 * pg_rng_uniform(&rng) - 1);
    double l = loss();
    pg_model_free(&M);
    return l;
}

int main(void)
{
    struct pg_config cfg;
    pg_config_default(&cfg);
    check_model(cfg, "baseline");
    struct pg_config rec = cfg;
    rec.mlp_leaky_slope = 0.5, rec.rope_dims = 2, rec.ln_scale = 1;
    check_model(rec, "leaky 0.5 + rope_dims 2/4 + ln_scale");
    /* each switch on its own changes the loss, so each is really part of what was checked */
    double base = loss_with(cfg);
    struct pg_config one = cfg;
    one.mlp_leaky_slope = 0.5;
    ok(loss_with(one) != base, "mlp_leaky_slope 0.5 changes the loss");
    one = cfg, one.rope_dims = 2;
    ok(loss_with(one) != base, "rope_dims 2 changes the loss");
    one = cfg, one.ln_scale = 1;
    ok(loss_with(one) != base, "ln_scale changes the loss");
    one = cfg, one.rope_dims = 4; /* = head_dim: the same model as 0 */
    ok(loss_with(one) == base, "rope_dims = head_dim is exactly full RoPE");
    return done_testing();
}
