/* test_config.c: the configuration: baseline defaults and parameter count against the spec, the
 * field table, checked setting by key / flag / env name, config files, every validation rule, the
 * bit-exact key/value round trip used by checkpoints, and the printed table. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/config.h"
#include "../../lib/err.h"
#include "../../lib/model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int has(const char *needle) { return strstr(pg_error_message(), needle) != NULL; }

static size_t field_size(const struct pg_config_field *f)
{
    switch (f->type) {
    case PG_CONFIG_INT:
    case PG_CONFIG_BOOL: return sizeof(int);
    case PG_CONFIG_I64: return sizeof(int64_t);
    case PG_CONFIG_U64: return sizeof(uint64_t);
    case PG_CONFIG_F64: return sizeof(double);
    }
    return 0;
}

/* Field-by-field byte comparison: struct assignment need not copy padding, fields must match bits. */
static int same_config(const struct pg_config *a, const struct pg_config *b, const char **differs)
{
    size_t n;
    const struct pg_config_field *t = pg_config_fields(&n);
    for (size_t i = 0; i < n; i++)
        if (memcmp((const char *)a + t[i].offset, (const char *)b + t[i].offset, field_size(&t[i])) != 0) {
            if (differs) *differs = t[i].key;
            return 0;
        }
    return 1;
}

static void test_defaults(void)
{
    struct pg_config c;
    memset(&c, 0xAB, sizeof c);
    pg_config_default(&c);
    is_int(c.vocab_size, 1024, "default vocab_size");
    is_int(c.num_layers, 9, "default num_layers");
    is_int(c.model_dim, 512, "default model_dim");
    is_int(c.num_heads, 8, "default num_heads");
    is_int(c.num_kv_heads, 4, "default num_kv_heads");
    is_int(c.mlp_mult, 2, "default mlp_mult");
    is_int(c.tie_embeddings, 1, "default tie_embeddings");
    is_int(c.train_seq_len, 1024, "default train_seq_len");
    ok(c.rope_base == 10000.0 && c.logit_softcap == 30.0 && c.qk_gain_init == 1.5, "default rope_base, softcap, qk gain");
    ok(c.tied_embed_init_std == 0.005, "default tied_embed_init_std");
    is_int((long long)c.seed, 1337, "default seed");
    ok(c.iterations == 20000 && c.warmdown_iters == 1200 && c.warmup_steps == 20, "default iterations/warmdown/warmup");
    ok(c.train_batch_tokens == 524288 && c.val_batch_size == 524288, "default batch sizes");
    ok(c.max_wallclock_seconds == 600.0, "default max_wallclock_seconds");
    ok(c.val_loss_every == 1000 && c.train_log_every == 200 && c.grad_accum_steps == 8, "default val/log every, accum");
    ok(c.embed_lr == 0.6 && c.head_lr == 0.008 && c.tied_embed_lr == 0.05, "default embedding / head LRs");
    ok(c.matrix_lr == 0.04 && c.scalar_lr == 0.04, "default matrix / scalar LRs");
    ok(c.muon_momentum == 0.95 && c.muon_backend_steps == 5, "default Muon momentum and steps");
    ok(c.muon_momentum_warmup_start == 0.85 && c.muon_momentum_warmup_steps == 500, "default Muon warmup");
    ok(c.beta1 == 0.9 && c.beta2 == 0.95 && c.adam_eps == 1e-8 && c.grad_clip_norm == 0.0, "default Adam, clip");
    ok(c.rms_norm_eps == (double)1.1920928955078125e-07, "default rms_norm_eps = 2^-23");
    ok(c.mlp_leaky_slope == 0 && c.rope_dims == 0 && c.ln_scale == 0,
       "record-stack switches off: relu^2, full RoPE, no LN scale");
    ok(c.muon_polar_express == 0 && c.muon_row_norm == 0 && c.muon_wd == 0 && c.embed_wd == 0 && c.scalar_wd == 0,
       "optimizer switches off: classic Newton-Schulz, no row norm, no weight decay");
    is_int(pg_config_validate(&c, 1024), 0, "baseline validates against a 1024 tokenizer");
    is_int(pg_config_validate(&c, 0), 0, "baseline validates with an unknown tokenizer");

    is_int(pg_config_head_dim(&c), 64, "baseline head_dim");
    is_int(pg_config_kv_dim(&c), 256, "baseline kv_dim");
    is_int(pg_config_mlp_hidden(&c), 1024, "baseline mlp_hidden");
    is_int(pg_config_num_encoder_layers(&c), 4, "baseline encoder layers");
    is_int(pg_config_num_decoder_layers(&c), 5, "baseline decoder layers");
    is_int(pg_config_num_skip_weights(&c), 4, "baseline skip weights");
    c.num_layers = 1;
    ok(pg_config_num_encoder_layers(&c) == 0 && pg_config_num_decoder_layers(&c) == 1 &&
       pg_config_num_skip_weights(&c) == 0, "1 layer: 0 encoder, 1 decoder, no skips");

    struct pg_config p, d;
    pg_config_default(&d);
    memset(&p, 0, sizeof p);
    is_int(pg_config_preset(&p, "baseline"), 0, "preset baseline");
    ok(same_config(&p, &d, NULL), "preset baseline = defaults");
    struct pg_config before = p;
    is_int(pg_config_preset(&p, "huge"), PG_E_INVAL, "unknown preset rejected");
    ok(has("'huge'") && has("baseline"), "message names the preset and lists known ones: %s", pg_error_message());
    ok(same_config(&p, &before, NULL), "unknown preset leaves the config unchanged");
}

static void test_num_params(void)
{
    struct pg_config c;
    pg_config_default(&c);
    is_int(pg_config_num_params(&c), 17059912, "baseline parameter count (spec 3.1, log model_params)");
    c.tie_embeddings = 0;
    is_int(pg_config_num_params(&c), 17059912 + 1024 * 512, "untied baseline adds lm_head 1024x512");

    /* The top record (spec/techniques.md §0): 35,945,671 = tok_emb 8192·512 + 11 blocks of
     * 2,885,640 (MLP 4x) + sparse gates 11·8·12 + skip weights and gates 2·8·512 (8 pairs of the
     * 17 looped virtual layers) + lanes 11·(2 + 4) + SmearGate 12 + 1. */
    struct pg_config r;
    is_int(pg_config_preset(&r, "record"), 0, "preset record");
    is_int(pg_config_validate(&r, 8192), 0, "the record preset is valid (%s)", pg_error_message());
    is_int(pg_config_num_params(&r), 35945671, "record parameter count (the record's log: 35,945,671)");
    is_int(8192 * 512 + 11 * 2885640 + 11 * 8 * 12 + 2 * 8 * 512 + 11 * 6 + 13, 35945671, "which is the sum above");
    is_int(pg_config_num_virtual(&r), 17, "record: 17 virtual layers");
    struct pg_model m;
    is_int(pg_model_init(&m, &r, &pg_backend_cpu, 0), 0, "the record model builds");
    is_int((long long)m.nparams, 35945671, "and its tensor table holds 35,945,671 parameters");
    is_int(m.ntensors, 128, "in 128 tensors (pg-formats(5))");
    int enc[8] = {0, 1, 2, 3, 4, 5, 3, 4}, dec[9] = {5, 3, 4, 5, 6, 7, 8, 9, 10}, same = m.n_venc == 8 && m.nv == 17;
    for (int i = 0; i < 17 && same; i++) same = m.vlist[i] == (i < 8 ? enc[i] : dec[i - 8]);
    ok(same, "virtual layers: encoder 0 1 2 3 4 5 3 4, decoder 5 3 4 5 6 7 8 9 10 (spec §0)");
    ok(pg_model_find(&m, "skip_gates") >= 0 && pg_model_find(&m, "blocks.10.attn.attn_gate_w") >= 0 &&
           pg_model_find(&m, "parallel_post_lambdas") >= 0 && pg_model_find(&m, "smear_lambda") >= 0,
       "skip gates, head-output gates, lane lambdas and the smear gate are in the table");
    pg_model_free(&m);

    /* Tiny: 2 layers, d 64, 4 heads (head_dim 16), 2 kv heads (kv_dim 32), vocab 256, mlp_mult 2.
     *   tok_emb       256*64               = 16384
     *   per block: c_q 64*64 = 4096, c_k 32*64 = 2048, c_v 2048, proj 4096  = 12288
     *              fc 128*64 = 8192, mlp proj 64*128 = 8192                 = 16384
     *              q_gain 4, attn/mlp scale 2*64 = 128, resid_mix 2*64 = 128 =   260
     *              block total                                              = 28932
     *   2 blocks                           = 57864
     *   skips: encoder 1, decoder 1 -> 1*64 =    64
     *   total 16384 + 57864 + 64           = 74312; untied + 256*64 = 90696 */
    c.tie_embeddings = 1;
    c.num_layers = 2, c.model_dim = 64, c.num_heads = 4, c.num_kv_heads = 2, c.vocab_size = 256, c.mlp_mult = 2;
    is_int(pg_config_num_params(&c), 74312, "tiny config parameter count (hand-computed)");
    c.tie_embeddings = 0;
    is_int(pg_config_num_params(&c), 90696, "tiny untied parameter count");
    c.num_heads = 0;
    ok(pg_config_num_params(&c) < 0, "num_params refuses num_heads = 0 instead of dividing by zero");
}

static void test_table(void)
{
    static const char *const flags[] = {
        "vocab", "layers", "dim", "heads", "kv-heads", "mlp-mult", "tie-embeddings", "seq-len", "rope-base",
        "logit-softcap", "qk-gain-init", "tied-embed-init-std", "seed", "iterations", "warmdown-iters",
        "warmup-steps", "batch-tokens", "val-batch-tokens", "max-wallclock", "val-every", "log-every", "grad-accum",
        "embed-lr", "head-lr", "tied-embed-lr", "matrix-lr", "scalar-lr", "muon-momentum", "muon-steps",
        "muon-momentum-warmup-start", "muon-momentum-warmup-steps", "beta1", "beta2", "adam-eps", "grad-clip",
        "rms-eps", "rope-bf16", "mlp-leaky-slope", "rope-dims", "ln-scale", "muon-polar-express", "muon-row-norm",
        "muon-wd", "embed-wd", "scalar-wd", "skip-gates", "num-loops", "loop-start", "loop-end", "enable-looping-at",
        "parallel-start-layer", "parallel-gptj", "smear-gate", "smear-gate-v1", "gate-window", "attn-out-gate",
        "gated-attn", "sparse-attn-gate", "gated-attn-init-std", "sparse-attn-gate-scale", "xsa-last-n",
        "bigram-vocab", "bigram-dim", "ve-last-n", "ve-dim", "varlen-attn", "bos-id", "ortho-init", "softcap-poly5",
        "z-loss", "wd-taper-start", "wd-taper-final", "warmdown-frac", "min-lr", "ema-decay", "swa-every",
        "swa-start-lr", "qat-start-lr", "qat-bits", "qat-levels", "coprime-loader"};
    size_t n;
    const struct pg_config_field *t = pg_config_fields(&n);
    is_int((long long)n, (long long)(sizeof flags / sizeof flags[0]), "one table row per hyperparameter");
    int all = 1, uniq = 1, found = 1, help = 1, covered = 1;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        all &= i < sizeof flags / sizeof flags[0] && strcmp(t[i].flag, flags[i]) == 0;
        help &= t[i].help && *t[i].help && t[i].key && *t[i].key;
        found &= pg_config_find(t[i].key) == &t[i] && pg_config_find(t[i].flag) == &t[i];
        if (t[i].env) found &= pg_config_find(t[i].env) == &t[i];
        for (size_t j = 0; j < i; j++)
            uniq &= strcmp(t[i].key, t[j].key) && strcmp(t[i].flag, t[j].flag) && t[i].offset != t[j].offset;
        bytes += field_size(&t[i]);
    }
    /* Lay the rows out as the compiler would (naturally aligned, in order): if a struct member had
     * no row, an offset or the total size would not match. */
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sz = field_size(&t[i]);
        at = (at + sz - 1) / sz * sz;
        if (t[i].offset != at) covered = 0, diag("row %s at offset %zu, expected %zu", t[i].key, t[i].offset, at);
        at += sz;
    }
    at = (at + 7) / 8 * 8;
    covered &= at == sizeof(struct pg_config);
    ok(all, "flags are the documented long options, in order");
    ok(uniq, "keys, flags and offsets unique");
    ok(found, "every key, flag and env name finds its row");
    ok(help, "every row has a key and a help line");
    ok(covered, "the table covers the whole struct, in order (%zu bytes of fields in %zu)", bytes, sizeof(struct pg_config));
    ok(pg_config_find("--dim") == pg_config_find("model_dim"), "find accepts --flag");
    ok(pg_config_find("MODEL_DIM") == pg_config_find("model_dim"), "find accepts the env name");
    ok(pg_config_find("nope") == NULL && pg_config_find(NULL) == NULL, "find: unknown names are NULL");
    ok(strcmp(pg_config_find("model_dim")->env, "MODEL_DIM") == 0 &&
       strcmp(pg_config_find("val_batch_size")->env, "VAL_BATCH_SIZE") == 0, "env names are parameter-golf's");
}

static void test_set(void)
{
    struct pg_config c;
    pg_config_default(&c);
    is_int(pg_config_set(&c, "num_layers", "11"), 0, "set by key");
    is_int(c.num_layers, 11, "num_layers = 11");
    is_int(pg_config_set(&c, "dim", "768"), 0, "set by flag name");
    is_int(c.model_dim, 768, "model_dim = 768");
    is_int(pg_config_set(&c, "--kv-heads", "2"), 0, "set by --flag");
    is_int(c.num_kv_heads, 2, "num_kv_heads = 2");
    is_int(pg_config_set(&c, "MATRIX_LR", "0.02"), 0, "set by env name");
    ok(c.matrix_lr == 0.02, "matrix_lr = 0.02");
    is_int(pg_config_set(&c, "batch-tokens", "512Ki"), 0, "integer suffixes accepted");
    is_int(c.train_batch_tokens, 524288, "512Ki = 524288");
    is_int(pg_config_set(&c, "seed", "9223372036854775807"), 0, "seed up to INT64_MAX");
    ok(c.seed == UINT64_C(9223372036854775807), "seed = INT64_MAX");
    is_int(pg_config_set(&c, "tie_embeddings", "false"), 0, "boolean word");
    is_int(c.tie_embeddings, 0, "tie_embeddings = 0");
    is_int(pg_config_set(&c, "tie-embeddings", "1"), 0, "boolean digit");
    is_int(c.tie_embeddings, 1, "tie_embeddings = 1");
    is_int(pg_config_set(&c, "rms-eps", "0x1p-20"), 0, "hex float");
    ok(c.rms_norm_eps == 0x1p-20, "rms_norm_eps = 2^-20");
    is_int(pg_config_set(&c, "max-wallclock", "0"), 0, "max_wallclock 0 (no cap)");

    struct pg_config before = c;
    is_int(pg_config_set(&c, "num_layers", "9x"), PG_E_INVAL, "trailing garbage rejected");
    ok(has("num_layers") && has("9x"), "message names key and value: %s", pg_error_message());
    is_int(pg_config_set(&c, "layers", "nine"), PG_E_INVAL, "non-number via flag rejected");
    ok(has("--layers") && has("num_layers") && has("nine"), "flag message names flag, key, value: %s",
       pg_error_message());
    is_int(pg_config_set(&c, "num_heads", "0"), PG_E_INVAL, "out of range integer rejected");
    ok(has("num_heads") && has("0"), "message: %s", pg_error_message());
    is_int(pg_config_set(&c, "vocab_size", "65537"), PG_E_INVAL, "vocab above 65536 rejected");
    ok(has("vocab_size") && has("65536"), "message: %s", pg_error_message());
    is_int(pg_config_set(&c, "matrix_lr", "0.04abc"), PG_E_INVAL, "double with garbage rejected");
    ok(has("matrix_lr") && has("0.04abc"), "message: %s", pg_error_message());
    is_int(pg_config_set(&c, "matrix_lr", "-1"), PG_E_INVAL, "negative learning rate rejected");
    is_int(pg_config_set(&c, "beta1", "1"), PG_E_INVAL, "beta1 = 1 rejected (open bound)");
    ok(has("beta1") && has("1)"), "message shows the open bound: %s", pg_error_message());
    is_int(pg_config_set(&c, "logit_softcap", "0"), PG_E_INVAL, "logit_softcap = 0 rejected (open bound)");
    ok(has("logit_softcap") && has("(0"), "message: %s", pg_error_message());
    is_int(pg_config_set(&c, "rope_base", "nan"), PG_E_INVAL, "NaN rejected");
    is_int(pg_config_set(&c, "warmup_steps", ""), PG_E_INVAL, "empty value rejected");
    ok(has("warmup_steps"), "message: %s", pg_error_message());
    is_int(pg_config_set(&c, "seed", "-1"), PG_E_INVAL, "negative seed rejected");
    is_int(pg_config_set(&c, "tie_embeddings", "2"), PG_E_INVAL, "boolean 2 rejected");
    ok(has("tie_embeddings") && has("'2'"), "message: %s", pg_error_message());
    is_int(pg_config_set(&c, "num_layerz", "3"), PG_E_INVAL, "unknown key rejected");
    ok(has("num_layerz") && has("'3'"), "message names the unknown key and value: %s", pg_error_message());
    is_int(pg_config_set(&c, "-layers", "3"), PG_E_INVAL, "single-dash flag is not a name");
    ok(same_config(&c, &before, NULL), "failed sets leave the config unchanged");
}

static char dir[64];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_file(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/run.conf", dir);
    write_file(path, "# a small run\n"
                     "\n"
                     "num_layers = 4\n"
                     "  dim=256   # flag names work too\n"
                     "\tmatrix_lr = 0.02\r\n"
                     "TIE_EMBEDDINGS = 0\n"
                     "seed = 42 # trailing comment\n"
                     "   # indented comment\n"
                     "num_layers = 6\n");
    struct pg_config c;
    pg_config_default(&c);
    is_int(pg_config_load_file(&c, path), 0, "config file loads");
    ok(c.num_layers == 6 && c.model_dim == 256 && c.matrix_lr == 0.02 && c.tie_embeddings == 0 && c.seed == 42,
       "values applied, later lines win, CRLF and tabs tolerated");
    ok(c.num_heads == 8 && c.scalar_lr == 0.04, "unmentioned fields keep their values");

    struct pg_config before = c;
    char want[160];
    write_file(path, "num_heads = 4\n# comment\n\nlayers = nine\n");
    is_int(pg_config_load_file(&c, path), PG_E_INVAL, "bad value in file rejected");
    snprintf(want, sizeof want, "%s:4:", path);
    ok(has(want) && has("num_layers") && has("nine"), "message names path:line, key, value: %s", pg_error_message());
    ok(same_config(&c, &before, NULL), "a failed file applies nothing (line 1 not kept)");

    write_file(path, "num_heads = 4\nnum_heads 4\n");
    is_int(pg_config_load_file(&c, path), PG_E_INVAL, "line without '=' rejected");
    snprintf(want, sizeof want, "%s:2:", path);
    ok(has(want) && has("key = value"), "message: %s", pg_error_message());

    write_file(path, "bogus_key = 1\n");
    is_int(pg_config_load_file(&c, path), PG_E_INVAL, "unknown key in file rejected");
    snprintf(want, sizeof want, "%s:1:", path);
    ok(has(want) && has("bogus_key"), "message: %s", pg_error_message());

    write_file(path, "num_heads =\n");
    is_int(pg_config_load_file(&c, path), PG_E_INVAL, "empty value in file rejected");
    remove(path);

    snprintf(path, sizeof path, "%s/missing.conf", dir);
    is_int(pg_config_load_file(&c, path), PG_E_IO, "missing file is an I/O error");
    ok(has(path), "message names the file: %s", pg_error_message());
}

static void check_invalid(const struct pg_config *c, int tok_vocab, const char *what, const char *needle1,
                          const char *needle2)
{
    is_int(pg_config_validate(c, tok_vocab), PG_E_INVAL, "validate rejects %s", what);
    ok(has(needle1) && has(needle2), "message for %s has '%s' and '%s': %s", what, needle1, needle2,
       pg_error_message());
}

static void test_validate(void)
{
    struct pg_config b, c;
    pg_config_default(&b);

    c = b, c.model_dim = 500;
    check_invalid(&c, 0, "model_dim % num_heads", "model_dim = 500", "not divisible by num_heads = 8");
    c = b, c.num_kv_heads = 3;
    check_invalid(&c, 0, "num_heads % num_kv_heads", "num_heads = 8", "not divisible by num_kv_heads = 3");
    c = b, c.num_kv_heads = 16;
    check_invalid(&c, 0, "more kv heads than heads", "num_heads = 8", "num_kv_heads = 16");
    c = b, c.model_dim = 72; /* head_dim 9 */
    check_invalid(&c, 0, "odd head_dim", "head_dim", "= 9 is odd");
    c = b, c.rope_dims = 15;
    check_invalid(&c, 0, "odd rope_dims", "rope_dims = 15", "even");
    c = b, c.qat_levels = 4;
    check_invalid(&c, 0, "qat_levels 4", "qat_levels = 4", "3 (ternary) or 5 (quinary)");
    c = b, c.qat_levels = 3;
    is_int(pg_config_validate(&c, 0), 0, "qat_levels 3 validates");
    c = b, c.rope_dims = 66;
    check_invalid(&c, 0, "rope_dims above head_dim", "rope_dims = 66", "head_dim = 64");
    c = b, c.rope_dims = 16, c.mlp_leaky_slope = 0.5, c.ln_scale = 1;
    is_int(pg_config_validate(&c, 0), 0, "the records' rope_dims 16, slope 0.5, ln_scale 1 validate");
    c = b, c.muon_polar_express = 1, c.muon_row_norm = 1, c.muon_wd = 0.095, c.embed_wd = 0.085, c.scalar_wd = 0.02;
    is_int(pg_config_validate(&c, 0), 0, "the records' Polar Express, MuonEq-R and weight decays validate");
    c.muon_backend_steps = 6;
    is_int(pg_config_validate(&c, 0), PG_E_INVAL, "Polar Express with 6 backend steps rejected");
    ok(strstr(pg_error_message(), "muon_backend_steps = 6") != NULL, "  and named: %s", pg_error_message());
    c = b, c.muon_wd = -0.1;
    is_int(pg_config_validate(&c, 0), PG_E_INVAL, "negative muon_wd rejected");
    is_int(pg_config_num_params(&c), 17059912, "and add no parameters");
    c = b, c.vocab_size = 512;
    check_invalid(&c, 1024, "vocab below the tokenizer's", "vocab_size = 512", "tokenizer's vocabulary (1024");
    is_int(pg_config_validate(&c, 0), 0, "vocab 512 is fine when the tokenizer is unknown");
    c = b, c.vocab_size = 2048;
    is_int(pg_config_validate(&c, 1024), 0, "vocab above the tokenizer's is allowed (padding rows)");
    c = b, c.vocab_size = 70000;
    check_invalid(&c, 0, "vocab above 65536", "vocab_size = 70000", "uint16");
    c = b, c.train_batch_tokens = 524288 + 1024;
    check_invalid(&c, 0, "batch not divisible", "train_batch_tokens = 525312", "1024 * 8 = 8192");
    c = b, c.grad_accum_steps = 3;
    check_invalid(&c, 0, "batch not divisible by accum", "train_batch_tokens", "grad_accum_steps");
    c = b, c.val_batch_size = 4096;
    check_invalid(&c, 0, "val batch under one sequence per micro-step", "val_batch_size = 4096", "8192");
    c = b, c.val_batch_size = 8192 + 5;
    is_int(pg_config_validate(&c, 0), 0, "val batch need not be a multiple (eval floors it)");

    c = b, c.num_heads = 0;
    check_invalid(&c, 0, "zero heads", "num_heads = 0", "must be positive");
    c = b, c.model_dim = -64;
    check_invalid(&c, 0, "negative model_dim", "model_dim = -64", "must be positive");
    c = b, c.num_layers = 0;
    check_invalid(&c, 0, "zero layers", "num_layers = 0", "positive");
    c = b, c.train_seq_len = 0;
    check_invalid(&c, 0, "zero seq len", "train_seq_len = 0", "positive");
    c = b, c.grad_accum_steps = 0;
    check_invalid(&c, 0, "zero grad accum", "grad_accum_steps = 0", "positive");
    c = b, c.train_batch_tokens = 0;
    check_invalid(&c, 0, "zero batch", "train_batch_tokens = 0", "positive");
    c = b, c.vocab_size = 0;
    check_invalid(&c, 0, "zero vocab", "vocab_size = 0", "positive");
    c = b, c.iterations = -1;
    check_invalid(&c, 0, "negative iterations", "iterations = -1", "out of range");
    c = b, c.logit_softcap = 0.0;
    check_invalid(&c, 0, "zero softcap", "logit_softcap = 0", "(0, ");
    c = b, c.rope_base = NAN;
    check_invalid(&c, 0, "NaN rope_base", "rope_base", "out of range");
    c = b, c.beta2 = 1.0;
    check_invalid(&c, 0, "beta2 = 1", "beta2 = 1", "1)");
    c = b, c.adam_eps = 1e-310;
    check_invalid(&c, 0, "subnormal adam_eps (strtod could not read it back)", "adam_eps", "subnormal");
    c = b, c.tie_embeddings = 2;
    check_invalid(&c, 0, "tie_embeddings = 2", "tie_embeddings = 2", "[0, 1]");
    c = b, c.seed = UINT64_MAX;
    check_invalid(&c, 0, "seed above INT64_MAX", "seed = 18446744073709551615", "out of range");
    c = b, c.mlp_mult = 0;
    check_invalid(&c, 0, "zero mlp_mult", "mlp_mult = 0", "positive");

    c = b, c.num_layers = 2, c.model_dim = 64, c.num_heads = 4, c.num_kv_heads = 2, c.vocab_size = 256;
    c.train_seq_len = 128, c.train_batch_tokens = 4096, c.grad_accum_steps = 1, c.val_batch_size = 4096;
    is_int(pg_config_validate(&c, 256), 0, "a tiny consistent config validates");
}

/* to_kv collector */
struct kv {
    size_t n;
    char *keys[256], *values[256];
};

static int collect(void *ctx, const char *key, const char *value)
{
    struct kv *kv = ctx;
    if (kv->n >= 256) return PG_E_INVAL;
    kv->keys[kv->n] = strdup(key);
    kv->values[kv->n] = strdup(value);
    kv->n++;
    return 0;
}

static void kv_free(struct kv *kv)
{
    for (size_t i = 0; i < kv->n; i++) free(kv->keys[i]), free(kv->values[i]);
    kv->n = 0;
}

static int stop_at_third(void *ctx, const char *key, const char *value)
{
    return ++*(int *)ctx == 3 ? -99 : 0;
}

/* xorshift64*: the test's own deterministic values. */
static uint64_t rnd_state = 0x9E3779B97F4A7C15u;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state >> 12, rnd_state ^= rnd_state << 25, rnd_state ^= rnd_state >> 27;
    return rnd_state * 0x2545F4914F6CDD1Du;
}

/* Fills every field with a random in-range value: doubles get all 53 bits of mantissa noise. */
static void randomize(struct pg_config *c)
{
    size_t n;
    const struct pg_config_field *t = pg_config_fields(&n);
    for (size_t i = 0; i < n; i++) {
        char *p = (char *)c + t[i].offset;
        const struct pg_config_field *f = &t[i];
        if (f->type == PG_CONFIG_F64) {
            double u = (double)(rnd() >> 11) * 0x1p-53, hi = f->fmax > 1e6 ? 1e6 : f->fmax;
            double v = f->fmin + (hi - f->fmin) * u;
            if (rnd() % 4 == 0) v = f->fmin + (hi - f->fmin) * u * u * u * u; /* small magnitudes too */
            if (v <= f->fmin && f->fmin_open) v = hi / 3;
            memcpy(p, &v, sizeof v);
        } else {
            uint64_t span = (uint64_t)(f->imax - f->imin) + 1;
            int64_t v = f->imin + (int64_t)(rnd() % span);
            if (f->type == PG_CONFIG_I64 || f->type == PG_CONFIG_U64) memcpy(p, &v, sizeof v);
            else {
                int iv = (int)v;
                memcpy(p, &iv, sizeof iv);
            }
        }
    }
}

static void test_kv(void)
{
    size_t nf;
    pg_config_fields(&nf);
    struct pg_config c, back;
    struct kv kv = {0};
    pg_config_default(&c);
    is_int(pg_config_to_kv(&c, collect, &kv), 0, "to_kv of the baseline");
    is_int((long long)kv.n, (long long)nf, "one pair per field");
    int i_lr = -1, i_eps = -1, i_rope = -1;
    for (size_t i = 0; i < kv.n; i++) {
        if (strcmp(kv.keys[i], "rope_base") == 0) i_rope = (int)i;
        if (strcmp(kv.keys[i], "tied_embed_lr") == 0) i_lr = (int)i;
        if (strcmp(kv.keys[i], "rms_norm_eps") == 0) i_eps = (int)i;
    }
    ok(i_lr >= 0 && strcmp(kv.values[i_lr], "0.05") == 0, "doubles print short when exact: tied_embed_lr = %s",
       i_lr >= 0 ? kv.values[i_lr] : "?");
    ok(i_rope >= 0 && strcmp(kv.values[i_rope], "10000") == 0, "whole doubles print whole: rope_base = %s",
       i_rope >= 0 ? kv.values[i_rope] : "?");
    ok(i_eps >= 0 && strcmp(kv.values[i_eps], "1.1920928955078125e-07") == 0, "rms_norm_eps = %s",
       i_eps >= 0 ? kv.values[i_eps] : "?");
    memset(&back, 0, sizeof back);
    is_int(pg_config_from_kv(&back, kv.n, (const char *const *)kv.keys, (const char *const *)kv.values), 0,
           "from_kv of the baseline");
    const char *differs = "";
    ok(same_config(&c, &back, &differs), "baseline round trip is exact (first difference: %s)", differs);
    kv_free(&kv);

    int rounds_ok = 1;
    for (int r = 0; r < 200 && rounds_ok; r++) {
        pg_config_default(&c);
        randomize(&c);
        pg_config_default(&back);
        int rc = pg_config_to_kv(&c, collect, &kv);
        rc = rc ? rc : pg_config_from_kv(&back, kv.n, (const char *const *)kv.keys, (const char *const *)kv.values);
        if (rc || !same_config(&c, &back, &differs)) {
            rounds_ok = 0;
            diag("round %d: rc %d (%s), differs at %s", r, rc, pg_error_message(), differs);
        }
        kv_free(&kv);
    }
    ok(rounds_ok, "200 random in-range configs round-trip bit-exactly through to_kv/from_kv");

    /* Values at the edges: the largest integers, doubles that need all 17 digits, -0. */
    pg_config_default(&c);
    c.seed = UINT64_C(9223372036854775807), c.train_batch_tokens = INT64_C(1) << 50, c.iterations = 2147483647;
    c.matrix_lr = 0.1 + 0.2, c.scalar_lr = 1.0 / 3.0, c.adam_eps = 2.2250738585072014e-308, c.grad_clip_norm = -0.0;
    c.beta2 = 0.99999999999999989; /* the largest double below 1 */
    pg_config_default(&back);
    int rc = pg_config_to_kv(&c, collect, &kv);
    rc = rc ? rc : pg_config_from_kv(&back, kv.n, (const char *const *)kv.keys, (const char *const *)kv.values);
    is_int(rc, 0, "edge values serialize and parse (%s)", rc ? pg_error_message() : "ok");
    ok(same_config(&c, &back, &differs), "edge values round-trip bit-exactly (first difference: %s)", differs);
    kv_free(&kv);

    const char *keys[] = {"num_layers", "matrix_lr"}, *vals[] = {"3", "0.125"};
    pg_config_default(&back);
    is_int(pg_config_from_kv(&back, 2, keys, vals), 0, "partial kv");
    ok(back.num_layers == 3 && back.matrix_lr == 0.125 && back.model_dim == 512 && back.seed == 1337,
       "missing keys keep defaults");
    struct pg_config before = back;
    const char *bad_keys[] = {"num_layers", "layers"}, *bad_vals[] = {"5", "5"};
    is_int(pg_config_from_kv(&back, 2, bad_keys, bad_vals), PG_E_INVAL, "from_kv takes exact keys only");
    ok(has("'layers'"), "message names the key: %s", pg_error_message());
    const char *k2[] = {"num_layers", "model_dim"}, *v2[] = {"5", "5.5"};
    is_int(pg_config_from_kv(&back, 2, k2, v2), PG_E_INVAL, "from_kv rejects bad values");
    ok(has("model_dim") && has("5.5"), "message names key and value: %s", pg_error_message());
    ok(same_config(&back, &before, NULL), "failed from_kv leaves the config unchanged");

    int count = 0;
    is_int(pg_config_to_kv(&c, stop_at_third, &count), -99, "to_kv stops at and returns the callback's error");
    is_int(count, 3, "no calls after the error");
}

static void test_print_table(void)
{
    struct pg_config c;
    pg_config_default(&c);
    c.num_layers = 11;
    FILE *f = tmpfile();
    if (!ok(f != NULL, "tmpfile")) return;
    is_int(pg_config_print_table(&c, f), 0, "print_table");
    long len = ftell(f);
    rewind(f);
    char *text = calloc(1, (size_t)len + 1);
    size_t got = text ? fread(text, 1, (size_t)len, f) : 0;
    fclose(f);
    if (!ok(text && got == (size_t)len, "read the table back")) {
        free(text);
        return;
    }
    size_t n;
    const struct pg_config_field *t = pg_config_fields(&n);
    int all = 1, lines = 0;
    for (size_t i = 0; i < n; i++) {
        char want[96];
        snprintf(want, sizeof want, "\n%s ", t[i].key);
        if (!(strstr(text, want) || (i == 0 && strncmp(text, want + 1, strlen(want) - 1) == 0))) {
            all = 0;
            diag("missing %s", t[i].key);
        }
    }
    for (char *p = text; *p; p++) lines += *p == '\n';
    ok(all, "every key starts a line");
    is_int(lines, (long long)n, "one line per field");
    ok(strstr(text, "num_layers") && strstr(text, "11") && strstr(text, "(default 9)"), "changed field shows default");
    ok(!strstr(text, "(default 512)"), "unchanged fields show no default");
    /* Values line up: "model_dim" and "muon_momentum_warmup_steps" values start in the same column. */
    char *a = strstr(text, "\nmodel_dim "), *b = strstr(text, "\nmuon_momentum_warmup_steps ");
    ok(a && b && strspn(a + 1 + 9, " ") + 9 == strspn(b + 1 + 26, " ") + 26, "values aligned");
    free(text);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pg_test_config.XXXXXX");
    if (!mkdtemp(dir)) skip_all("cannot create a temporary directory");
    test_defaults();
    test_num_params();
    test_table();
    test_set();
    test_file();
    test_validate();
    test_kv();
    test_print_table();
    rmdir(dir);
    return done_testing();
}
