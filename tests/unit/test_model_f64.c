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
#include "../record_configs.h"

#define B 2
#define T 6

static struct pg_model M;
static int32_t X[B * T], Y[B * T];

static double loss(void) { return pg_model_forward(&M, X, Y, B, NULL) / (B * T); }

/* Checks every gradient of the model cfg describes; label names the variant in the TAP lines. */
static void check_model(struct pg_config cfg, const char *label, int looping)
{
    cfg.vocab_size = 32, cfg.num_layers = 3, cfg.model_dim = 16, cfg.num_heads = 4, cfg.num_kv_heads = 2;
    cfg.mlp_mult = 2, cfg.train_seq_len = T, cfg.logit_softcap = 3.0; /* a small cap makes tanh matter */
    cfg.grad_accum_steps = 1, cfg.train_batch_tokens = cfg.val_batch_size = B * T;
    if (pg_config_validate(&cfg, 0) || pg_model_init(&M, &cfg, &pg_backend_cpu, 1) || pg_model_alloc_acts(&M, B, T)) {
        printf("Bail out! model setup (%s): %s\n", label, pg_error_message());
        exit(1);
    }
    if (pg_config_num_virtual(&cfg) == 3 && cfg.attn_out_gate + cfg.gated_attn + cfg.sparse_attn_gate == 0) {
        int extra = (cfg.skip_gates > 0) + 2 * pg_config_two_lanes(&cfg) + 2 * (cfg.smear_gate > 0) +
                    (cfg.smear_gate_v1 > 0) + 3 * (cfg.bigram_vocab > 0) + 4 * (cfg.ve_last_n > 0);
        is_int(M.ntensors, 1 + 10 * 3 + 1 + extra, "%s: tensor table: tok_emb, 10 per block, skip_weights, extras",
               label);
        ok(M.t_skip >= 0 && M.tensors[M.t_skip].shape[0] == 1,
           "%s: one skip weight row (min(1 encoder, 2 decoders))", label);
    }
    is_int((long long)M.nparams, (long long)pg_config_num_params(&cfg), "%s: %zu parameters, as pg_config_num_params",
           label, M.nparams);
    M.looping = looping;
    struct pg_rng rng;
    pg_rng_seed(&rng, 7);
    for (size_t i = 0; i < M.nparams; i++) M.params[i] = 0.5 * (2 * pg_rng_uniform(&rng) - 1);
    for (int i = 0; i < B * T; i++) { /* ids below 8 are common, so bos_id 1 starts documents */
        X[i] = (int32_t)pg_rng_below(&rng, i % 3 ? 32 : 4);
        Y[i] = (int32_t)pg_rng_below(&rng, 32);
    }
    X[3] = X[T + 2] = X[T + 3] = 1; /* documents start mid-sequence (bos_id 1), one of a single token */
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

/* OrthoInit (spec §2.14): with ortho_init the >= 64x64 linear weights are orthogonal along
 * their shorter side (to bf16 rounding), the output projections stay zero; without it they are
 * the baseline's uniform init, which is far from orthogonal. */
static double ortho_error(const struct pg_model *m, const char *name)
{
    int i = pg_model_find(m, name);
    const struct pg_tensor *t = &m->tensors[i];
    int64_t r = t->shape[0], c = t->shape[1], k = r < c ? r : c;
    const double *p = m->params + t->offset;
    double worst = 0;
    for (int64_t a = 0; a < k; a++)
        for (int64_t b = 0; b < k; b++) {
            double dot = 0;
            for (int64_t e = 0; e < (r < c ? c : r); e++)
                dot += r < c ? p[a * c + e] * p[b * c + e] : p[e * c + a] * p[e * c + b];
            worst = fmax(worst, fabs(dot - (a == b)));
        }
    return worst;
}

static void test_ortho_init(void)
{
    struct pg_config c;
    pg_config_default(&c);
    c.vocab_size = 64, c.num_layers = 2, c.model_dim = 64, c.num_heads = 4, c.num_kv_heads = 2, c.mlp_mult = 2;
    c.ortho_init = 1;
    struct pg_model m;
    if (pg_model_init(&m, &c, &pg_backend_cpu, 0)) {
        printf("Bail out! model setup: %s\n", pg_error_message());
        exit(1);
    }
    pg_model_init_weights(&m, 5);
    double eq = ortho_error(&m, "blocks.1.attn.c_q.weight"), efc = ortho_error(&m, "blocks.0.mlp.fc.weight");
    ok(eq < 2e-2 && efc < 2e-2, "ortho_init: c_q (64x64) and fc (128x64) orthonormal to bf16 rounding (%.1e, %.1e)", eq,
       efc);
    const struct pg_tensor *t = &m.tensors[pg_model_find(&m, "blocks.0.attn.proj.weight")];
    double mx = 0;
    for (size_t k = 0; k < t->numel; k++) mx = fmax(mx, fabs(m.params[t->offset + k]));
    ok(mx == 0, "ortho_init: the output projection stays zero");
    pg_model_free(&m);
    c.ortho_init = 0;
    if (pg_model_init(&m, &c, &pg_backend_cpu, 0)) exit(1);
    pg_model_init_weights(&m, 5);
    eq = ortho_error(&m, "blocks.1.attn.c_q.weight");
    ok(eq > 0.5, "without it c_q is the uniform init, not orthogonal (%.2f)", eq);
    pg_model_free(&m);
}

int main(void)
{
    struct pg_config cfg;
    pg_config_default(&cfg);
    test_ortho_init();
    check_model(cfg, "baseline", 0);
    struct pg_config rec = cfg;
    rec.mlp_leaky_slope = 0.5, rec.rope_dims = 2, rec.ln_scale = 1;
    check_model(rec, "leaky 0.5 + rope_dims 2/4 + ln_scale", 0);
    check_model(record_a(cfg), "xsa + sparse gate + skip gates + smear v2 + varlen", 0);
    check_model(record_b(cfg), "loop + lanes + VE + bigram + out gate + smear v1 + poly5 + z-loss", 1);
    check_model(record_b(cfg), "the same before the loop switches on", 0);
    check_model(record_c(cfg), "loop x2 + GPT-J parallel + dense gate + varlen + smear v2", 1);
    /* each switch on its own changes the loss, so each is really part of what was checked */
    double base = loss_with(cfg);
    struct pg_config one = cfg;
    one.mlp_leaky_slope = 0.5;
    ok(loss_with(one) != base, "mlp_leaky_slope 0.5 changes the loss");
    one = cfg, one.rope_dims = 2;
    ok(loss_with(one) != base, "rope_dims 2 changes the loss");
    one = cfg, one.ln_scale = 1;
    ok(loss_with(one) != base, "ln_scale changes the loss");
    /* parameter-free switches: the same weights, another function */
    one = cfg, one.xsa_last_n = 1;
    ok(loss_with(one) != base, "xsa_last_n 1 changes the loss");
    one = cfg, one.varlen_attn = 1;
    ok(loss_with(one) != base, "varlen_attn changes the loss (documents start at bos_id 1)");
    one = cfg, one.softcap_poly5 = 1;
    ok(loss_with(one) != base, "softcap_poly5 changes the loss");
    one = cfg, one.z_loss = 0.1;
    ok(loss_with(one) > base, "z_loss adds to the training objective");
    one = cfg, one.num_loops = 1, one.loop_start = 1, one.loop_end = 1;
    ok(loss_with(one) != base, "a loop over layer 1 changes the loss");
    one = cfg, one.rope_dims = 4; /* = head_dim: the same model as 0 */
    ok(loss_with(one) == base, "rope_dims = head_dim is exactly full RoPE");
    return done_testing();
}
