/* test_lora_batch_f64.c: the batched LoRA runner's gradients (lib/lora_batch.c), in double (the
 * model, the CPU backend and both LoRA files built again with PG_REAL_DOUBLE).
 *
 * Two documents' windows of different lengths share one forward (the shorter padded at the
 * end), each with its own adapters (slots 0 and 1, nonzero A and B) run beside the weights
 * through the model's side paths, and one backward with the per-position loss weights (1/k on
 * each window's last k positions, 0 elsewhere and on the padding) gives every slot's ∂A and ∂B.
 * The reference is independent of the batching: the loss Σ_q (F_q(n_q) − F_q(n_q − k_q))/k_q,
 * where F_q(J) is the summed loss of a forward of document q's first J tokens alone (causal: the
 * sum over its first J positions), differentiated by central finite differences. Every adapter of
 * both slots is checked, so a side path that leaked into the other sequence, lost its dx (the
 * lower layers' gradients), or ignored a weight would fail. */
#include "../tap.h"

#include "../../lib/lora.c"
#include "../../lib/lora_batch.c"
#include "../../lib/model.h"

#include <stdlib.h>

enum { T = 9, NB = 2 };

static struct pg_model M;
static struct batch S;
static int32_t X[NB][T], Y[NB][T];
static const int N[NB] = {T, 6}, K[NB] = {4, 3}; /* window lengths and chunk sizes */

/* the loss of document q's first J positions, from a forward of them alone with its slot */
static double prefix_loss(int q, int J)
{
    if (J == 0) return 0;
    int t = M.t;
    M.t = J;
    S.seq_slot[0] = q;
    double l = pg_model_forward(&M, X[q], Y[q], 1, NULL);
    M.t = t;
    return l;
}

static double loss(void)
{
    double l = 0;
    for (int q = 0; q < NB; q++) l += (prefix_loss(q, N[q]) - prefix_loss(q, N[q] - K[q])) / K[q];
    return l;
}

int main(void)
{
    struct pg_config cfg;
    pg_config_default(&cfg);
    cfg.vocab_size = 24, cfg.num_layers = 2, cfg.model_dim = 16, cfg.num_heads = 4, cfg.num_kv_heads = 2;
    cfg.mlp_mult = 2, cfg.train_seq_len = T, cfg.logit_softcap = 3.0, cfg.tie_embeddings = 1;
    cfg.grad_accum_steps = 1, cfg.train_batch_tokens = cfg.val_batch_size = T;
    if (pg_config_validate(&cfg, 0) || pg_model_init(&M, &cfg, &pg_backend_cpu, 1) ||
        pg_model_alloc_acts(&M, NB, T)) {
        printf("Bail out! model setup: %s\n", pg_error_message());
        return 1;
    }
    struct pg_rng rng;
    pg_rng_seed(&rng, 9);
    for (size_t i = 0; i < M.nparams; i++) M.params[i] = 0.4 * (2 * pg_rng_uniform(&rng) - 1);
    for (int q = 0; q < NB; q++)
        for (int i = 0; i < T; i++) X[q][i] = (int32_t)pg_rng_below(&rng, 24), Y[q][i] = (int32_t)pg_rng_below(&rng, 24);
    struct pg_lora_params p;
    pg_lora_params_default(&p);
    p.rank = 3, p.alpha = 5, p.batch_docs = NB;
    if (batch_open(&S, &M, &p, NB, T)) {
        printf("Bail out! batch: %s\n", pg_error_message());
        return 1;
    }
    is_int(S.n, 5 * 2, "five targets in each of 2 layers");
    for (int q = 0; q < NB; q++) {
        S.live[q] = 1;
        for (int i = 0; i < S.n; i++) {
            struct slot_adapter *a = slot_ad(&S, q, i);
            for (int k = 0; k < S.out[i] * S.r; k++) a->b[k] = 0.3 * (2 * pg_rng_uniform(&rng) - 1);
            for (int k = 0; k < S.r * S.in[i]; k++) a->a[k] += 0.1 * (2 * pg_rng_uniform(&rng) - 1);
        }
    }
    struct pg_model_side side = {&S, side_fwd, side_bwd, S.weight, 1};
    M.side = &side;

    /* the batched forward and backward, as the runner does it */
    int32_t x[NB * T], y[NB * T];
    for (int q = 0; q < NB; q++) {
        for (int j = 0; j < T; j++) {
            x[q * T + j] = j < N[q] ? X[q][j] : 0, y[q * T + j] = j < N[q] ? Y[q][j] : 0;
            S.weight[q * T + j] = j >= N[q] - K[q] && j < N[q] ? 1.0f / K[q] : 0.0f;
        }
        S.seq_slot[q] = q;
        slot_clear_grads(&S, q);
    }
    pg_model_zero_grad(&M);
    pg_model_forward(&M, x, y, NB, NULL);
    pg_model_backward(&M, 1.0);

    for (int q = 0; q < NB; q++)
        for (int i = 0; i < S.n; i++) {
            struct slot_adapter *a = slot_ad(&S, q, i);
            double worst = 0, scale = 0;
            for (int w = 0; w < 2; w++) {
                pg_real *v = w ? a->b : a->a;
                const pg_real *g = w ? a->gb : a->ga;
                int n = w ? S.out[i] * S.r : S.r * S.in[i];
                for (int k = 0; k < n; k += 1 + n / 10) { /* ten entries of each */
                    double keep = v[k], h = 1e-5;
                    v[k] = keep + h;
                    double up = loss();
                    v[k] = keep - h;
                    double dn = loss();
                    v[k] = keep;
                    double fd = (up - dn) / (2 * h);
                    if (fabs(fd - g[k]) > worst) worst = fabs(fd - g[k]);
                    if (fabs(fd) > scale) scale = fabs(fd);
                }
            }
            /* 1e-7 relative: the float weights (1/3 to 3e-8) against the exact 1/k of the reference */
            ok(worst <= 1e-9 + 1e-6 * scale && scale > 0,
               "slot %d, adapter %d (%d -> %d): dA and dB match finite differences (worst %.2e, scale %.2e)", q, i,
               S.in[i], S.out[i], worst, scale);
        }
    M.side = NULL;
    batch_free(&S);
    pg_model_free(&M);
    return done_testing();
}
