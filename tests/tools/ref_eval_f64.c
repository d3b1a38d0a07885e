/* ref_eval_f64: an independent float64 evaluation of a checkpoint, for tests/cli/test-train.sh.
 *
 *   ref_eval_f64 CKPT DATA_DIR PREFIX TOKENIZER.model
 *
 * Built with the model and the CPU backend in double (-DPG_REAL_DOUBLE): the parameters are read
 * straight from the safetensors file (F32 widened to double, not through ckpt.c), every window of
 * the val split is scored one sequence at a time in its own loop, and the bytes come from the
 * tokenizer's tables. Prints "val_loss val_bpb" with 12 decimals. pg-eval (float) must agree to
 * 1e-4 relative. */
#include "../../lib/bpb.h"
#include "../../lib/ckpt.h"
#include "../../lib/err.h"
#include "../../lib/loader.h"
#include "../../lib/model.h"
#include "../../lib/safetensors.h"
#include "../../lib/tok.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what)
{
    fprintf(stderr, "ref_eval_f64: %s: %s\n", what, pg_error_message());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: ref_eval_f64 CKPT DATA_DIR PREFIX TOKENIZER.model\n");
        return 2;
    }
    struct pg_config cfg;
    if (pg_ckpt_read_config(argv[1], &cfg)) return fail("config");
    struct pg_tok *tok;
    if (pg_tok_load(&tok, argv[4])) return fail("tokenizer");
    struct pg_bpb_lut lut;
    if (pg_bpb_lut_from_tok(&lut, tok, cfg.vocab_size)) return fail("lut");
    struct pg_val_set v;
    if (pg_val_open(&v, argv[2], argv[3], cfg.train_seq_len)) return fail("val");
    struct pg_model m;
    if (pg_model_init(&m, &cfg, &pg_backend_cpu, 0) || pg_model_alloc_acts(&m, 1, cfg.train_seq_len)) return fail("model");
    struct pg_st_file f;
    if (pg_st_open(&f, argv[1])) return fail("checkpoint");
    for (int i = 0; i < m.ntensors; i++) {
        const struct pg_st_tensor *t = pg_st_find(&f, m.tensors[i].name);
        if (!t || t->dtype != PG_ST_F32 || pg_st_nbytes(t) != 4 * m.tensors[i].numel) {
            fprintf(stderr, "ref_eval_f64: %s: tensor %s missing or not F32\n", argv[1], m.tensors[i].name);
            return 1;
        }
        const float *src = t->data;
        for (size_t k = 0; k < m.tensors[i].numel; k++) m.params[m.tensors[i].offset + k] = src[k];
    }
    int t = cfg.train_seq_len;
    int32_t *x = malloc((size_t)t * sizeof *x), *y = malloc((size_t)t * sizeof *y);
    float *loss = malloc((size_t)t * sizeof *loss);
    double nll = 0, bytes = 0;
    for (int64_t s = 0; s < pg_val_num_seqs(&v); s++) {
        pg_val_window(&v, s, x, y);
        double sum = pg_model_forward(&m, x, y, 1, loss); /* the float64 total, not the float per-token copies */
        nll += sum;
        for (int i = 0; i < t; i++) bytes += pg_bpb_token_bytes(&lut, x[i], y[i]);
    }
    double tokens = (double)pg_val_num_seqs(&v) * t;
    printf("%.12f %.12f\n", nll / tokens, nll / (log(2.0) * bytes));
    free(x), free(y), free(loss);
    pg_st_close(&f);
    pg_model_free(&m);
    pg_val_close(&v);
    pg_bpb_lut_free(&lut);
    pg_tok_free(tok);
    return 0;
}
