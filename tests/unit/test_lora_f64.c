/* test_lora_f64.c: the LoRA adapter gradients (lib/lora.c's pg_lora_grad, from the merged
 * weights' gradient) against central finite differences of the loss, in double (the model, the
 * CPU backend and lora.c are built again with PG_REAL_DOUBLE), on a tiny untied model with every
 * target adapted and nonzero A and B. */
#include "../tap.h"

#include "../../lib/lora.c"
#include "../../lib/model.h"

#include <stdlib.h>

#define T 7

static struct pg_model M;
static struct pg_lora *S;
static int32_t X[T], Y[T];

static double loss(void)
{
    pg_lora_fold(S);
    return pg_model_forward(&M, X, Y, 1, NULL) / T;
}

int main(void)
{
    struct pg_config cfg;
    pg_config_default(&cfg);
    cfg.vocab_size = 24, cfg.num_layers = 2, cfg.model_dim = 16, cfg.num_heads = 4, cfg.num_kv_heads = 2;
    cfg.mlp_mult = 2, cfg.train_seq_len = T, cfg.logit_softcap = 3.0, cfg.tie_embeddings = 0;
    cfg.grad_accum_steps = 1, cfg.train_batch_tokens = cfg.val_batch_size = T;
    if (pg_config_validate(&cfg, 0) || pg_model_init(&M, &cfg, &pg_backend_cpu, 1) || pg_model_alloc_acts(&M, 1, T)) {
        printf("Bail out! model setup: %s\n", pg_error_message());
        return 1;
    }
    struct pg_rng rng;
    pg_rng_seed(&rng, 5);
    for (size_t i = 0; i < M.nparams; i++) M.params[i] = 0.4 * (2 * pg_rng_uniform(&rng) - 1);
    for (int i = 0; i < T; i++) X[i] = (int32_t)pg_rng_below(&rng, 24), Y[i] = (int32_t)pg_rng_below(&rng, 24);
    struct pg_lora_params p;
    pg_lora_params_default(&p);
    p.targets = PG_LORA_Q | PG_LORA_K | PG_LORA_V | PG_LORA_O | PG_LORA_MLP | PG_LORA_HEAD;
    p.rank = 3, p.alpha = 5;
    if (pg_lora_open(&S, &M, &p)) {
        printf("Bail out! lora: %s\n", pg_error_message());
        return 1;
    }
    is_int(pg_lora_count(S), 5 * 2 + 1, "five targets in each of 2 layers, and the head");
    S->live = 1;
    for (int i = 0; i < pg_lora_count(S); i++) {
        pg_real *a, *b;
        int in, out;
        pg_lora_adapter(S, i, &a, &b, &in, &out);
        for (int k = 0; k < out * p.rank; k++) b[k] = 0.3 * (2 * pg_rng_uniform(&rng) - 1);
    }
    pg_model_zero_grad(&M);
    loss();
    pg_model_backward(&M, 1.0 / T);
    for (int i = 0; i < pg_lora_count(S); i++) {
        pg_real *a, *b;
        int in, out;
        pg_lora_adapter(S, i, &a, &b, &in, &out);
        double *da = malloc((size_t)p.rank * in * sizeof *da), *db = malloc((size_t)out * p.rank * sizeof *db);
        pg_lora_grad(S, i, da, db);
        double worst = 0, scale = 0;
        for (int w = 0; w < 2; w++) {
            pg_real *x = w ? b : a;
            const double *g = w ? db : da;
            int n = w ? out * p.rank : p.rank * in;
            for (int k = 0; k < n; k += 1 + n / 12) { /* a dozen entries of each */
                double keep = x[k], h = 1e-5;
                x[k] = keep + h;
                double up = loss();
                x[k] = keep - h;
                double dn = loss();
                x[k] = keep;
                double fd = (up - dn) / (2 * h);
                if (fabs(fd - g[k]) > worst) worst = fabs(fd - g[k]);
                if (fabs(fd) > scale) scale = fabs(fd);
            }
        }
        ok(worst <= 1e-7 + 1e-5 * scale && scale > 0, "adapter %d (%d -> %d): dA and dB match finite differences "
           "(worst %.2e, scale %.2e)", i, in, out, worst, scale);
        free(da), free(db);
    }
    pg_lora_close(S);
    pg_model_free(&M);
    return done_testing();
}
