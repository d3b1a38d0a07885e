/* config.h: the model + training configuration (parameter-golf's Hyperparameters, spec/baseline.md
 * §3.1 and §4.5) and the one table that names, bounds and describes every field.
 *
 * The table is the single source of truth: config-file keys, command-line flags, help text,
 * checkpoint metadata and the start-of-training printout are all generated from it, so a new
 * hyperparameter is one struct field plus one table row. Values are set from strings only through
 * checked parsing (opt.h); pg_config_validate then rejects shapes the model cannot be built with.
 */
#ifndef PG_CONFIG_H
#define PG_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Field names are the parameter-golf names lower-cased; defaults are the baseline's. */
struct pg_config {
    /* model shape (§3.1) */
    int vocab_size;              /* 1024 */
    int num_layers;              /* 9 */
    int model_dim;               /* 512 */
    int num_heads;               /* 8 */
    int num_kv_heads;            /* 4 */
    int mlp_mult;                /* 2 */
    int tie_embeddings;          /* 1 (0 or 1) */
    int train_seq_len;           /* 1024 */
    double rope_base;            /* 10000 */
    double logit_softcap;        /* 30 */
    double qk_gain_init;         /* 1.5 */
    double tied_embed_init_std;  /* 0.005 */
    /* run */
    uint64_t seed;               /* 1337 */
    int iterations;              /* 20000 */
    int warmdown_iters;          /* 1200 */
    int warmup_steps;            /* 20 */
    int64_t train_batch_tokens;  /* 524288 */
    int64_t val_batch_size;      /* 524288 (tokens) */
    double max_wallclock_seconds; /* 600; <= 0 means no cap */
    int val_loss_every;          /* 1000; 0 = only at the end */
    int train_log_every;         /* 200 */
    int grad_accum_steps;        /* 8 (= 8 / WORLD_SIZE in parameter-golf) */
    /* optimizers (§4.1, §4.2) */
    double embed_lr;             /* 0.6 */
    double head_lr;              /* 0.008 */
    double tied_embed_lr;        /* 0.05 */
    double matrix_lr;            /* 0.04 */
    double scalar_lr;            /* 0.04 */
    double muon_momentum;        /* 0.95 */
    int muon_backend_steps;      /* 5 */
    double muon_momentum_warmup_start; /* 0.85 */
    int muon_momentum_warmup_steps;    /* 500 */
    double beta1;                /* 0.9 */
    double beta2;                /* 0.95 */
    double adam_eps;             /* 1e-8 */
    double grad_clip_norm;       /* 0 = off */
    /* numerics (§3.3) */
    double rms_norm_eps;         /* 0x1p-23 = FLT_EPSILON, PyTorch's eps=None for fp32 */
    int rope_bf16;               /* 0; 1: bf16 RoPE positions and tables, as the PyTorch baseline (§3.3) */
    /* record-stack techniques (spec/techniques.md §2); each default is the baseline's behaviour */
    double mlp_leaky_slope;      /* 0 = relu²; 0.5 = LeakyReLU(0.5)² (§2.5) */
    int rope_dims;               /* 0 = all head dims; 16 = partial RoPE 16/64 (§2.2) */
    int ln_scale;                /* 0; 1: block l's norm outputs times 1/√(l+1) (§2.6) */
    int muon_polar_express;      /* 0 = classic NS coefficients; 1: Polar Express, one tuple per step (§3.1) */
    int muon_row_norm;           /* 0; 1: MuonEq-R, rows of the update normalized before NS (§3.1) */
    double muon_wd;              /* 0; decoupled Muon weight decay W ← W·(1 − lr·wd) (§3.1) */
    double embed_wd;             /* 0; AdamW decoupled weight decay of tok_emb (§3.2) */
    double scalar_wd;            /* 0; AdamW decoupled weight decay of the control tensors (§3.2) */
    /* the rest of the record stack (spec/techniques.md §2-§3); 0 = off unless noted */
    int skip_gates;              /* 0; 1: sigmoid-gated U-Net skips (§2.7) */
    int num_loops, loop_start, loop_end; /* depth recurrence (§2.8): 0 = off */
    double enable_looping_at;    /* training fraction from which the loop runs */
    int parallel_start_layer;    /* parallel residuals from this physical layer (§2.9); 0 = off */
    int parallel_gptj;           /* 0: two lanes; 1: GPT-J single lane */
    int smear_gate;              /* SmearGate v2 (§2.10) */
    int smear_gate_v1;           /* SmearGate v1 */
    int gate_window;             /* 12 */
    int attn_out_gate, gated_attn, sparse_attn_gate; /* head-output gates (§2.4), at most one */
    double gated_attn_init_std;  /* 0.005 */
    double sparse_attn_gate_scale; /* 1.0 */
    int xsa_last_n;              /* XSA in the last N layers (§2.3) */
    int bigram_vocab, bigram_dim; /* BigramHash (§2.11): 0 = off; 128 */
    int ve_last_n, ve_dim;       /* value embeddings (§2.12): 0 = off; 128 */
    int varlen_attn;             /* document-masked attention (§2.2) */
    int bos_id;                  /* 1 */
    int ortho_init;              /* OrthoInit (§2.14) */
    int softcap_poly5;           /* poly5 softcap (§2.13) */
    double z_loss;               /* z-loss weight (§2.13) */
    double wd_taper_start, wd_taper_final; /* Muon WD taper (§1.3): 1.0 (off), 0.5 */
    double warmdown_frac, min_lr; /* §3.3: 0 = warmdown_iters; 0 */
    double ema_decay;            /* §3.3: 0 = off */
    int swa_every;               /* §3.3: 0 = off */
    double swa_start_lr;         /* 0.5 */
    double qat_start_lr;         /* late QAT (§4.2): 0 = off */
    int qat_bits;                /* 6 */
    int qat_levels;              /* 0: intN (qat_bits); 3 ternary, 5 quinary (trit.h) */
    int coprime_loader;          /* §1.1 */
};

enum pg_config_type {
    PG_CONFIG_INT,  /* int */
    PG_CONFIG_BOOL, /* int holding 0 or 1; parses 0/1/true/false/yes/no/on/off */
    PG_CONFIG_I64,  /* int64_t */
    PG_CONFIG_U64,  /* uint64_t (bounded by imin/imax, so at most INT64_MAX) */
    PG_CONFIG_F64,  /* double */
};

/* One row of the field table. */
struct pg_config_field {
    const char *key;   /* config-file and checkpoint key = the struct field name: "num_layers" */
    const char *flag;  /* long option without the dashes: "layers" */
    const char *env;   /* parameter-golf environment variable ("NUM_LAYERS"), or NULL where
                        * parameter-golf has none (grad_accum_steps, rms_norm_eps) */
    enum pg_config_type type;
    size_t offset;     /* offsetof(struct pg_config, key) */
    int64_t imin, imax; /* valid range of integer types, inclusive */
    double fmin, fmax;  /* valid range of PG_CONFIG_F64, inclusive unless fmin_open/fmax_open */
    int fmin_open, fmax_open;
    const char *help;  /* one line, for --help and man pages */
};

/* The field table in struct order. @return the table; *n = its length. */
const struct pg_config_field *pg_config_fields(size_t *n);

/* Finds a field by key ("num_layers"), flag with or without leading dashes ("layers",
 * "--layers") or parameter-golf environment name ("NUM_LAYERS"). @return the row, or NULL. */
const struct pg_config_field *pg_config_find(const char *name);

/* Sets *cfg to the parameter-golf baseline (the defaults above). */
void pg_config_default(struct pg_config *cfg);

/* Sets *cfg to a named preset ("baseline"). @return 0, or PG_E_INVAL naming the unknown preset and
 * listing the known ones (*cfg is then unchanged). */
int pg_config_preset(struct pg_config *cfg, const char *name);

/* Sets one field from a string, with checked parsing against the field's range. `name` is
 * anything pg_config_find accepts. @return 0, or PG_E_INVAL naming the key and the value (*cfg is
 * then unchanged). Cross-field rules are pg_config_validate's job. */
int pg_config_set(struct pg_config *cfg, const char *name, const char *value);

/* Applies a config file ("-" = stdin): lines `key = value`, '#' starts a comment, blank lines are
 * skipped, later lines win. @return 0, PG_E_IO, or PG_E_INVAL with "path:line: ..." (*cfg is then
 * unchanged: the file applies entirely or not at all). */
int pg_config_load_file(struct pg_config *cfg, const char *path);

/* Checks every field's range and the rules that make a model buildable: heads divide model_dim,
 * kv heads divide heads, head_dim even (RoPE rotates half-pairs), vocab_size in [tokenizer_vocab,
 * 65536] (tokens are uint16), batch tokens divisible into whole sequences per micro-step, at least
 * one validation sequence per micro-step. tokenizer_vocab = 0 when unknown.
 * @return 0, or PG_E_INVAL with a message naming the fields. */
int pg_config_validate(const struct pg_config *cfg, int tokenizer_vocab);

/* Formats one field's value so that pg_config_set parses it back to the same bits (integers
 * exactly, doubles with %.17g). @return 0, or PG_E_INVAL if buf (n bytes) is too small. */
int pg_config_format(const struct pg_config *cfg, const struct pg_config_field *f, char *buf, size_t n);

/* Receives one key/value pair; a negative return stops pg_config_to_kv and is passed on. */
typedef int (*pg_config_kv_fn)(void *ctx, const char *key, const char *value);

/* Calls fn once per field, in table order, with the key and pg_config_format's value (strings
 * valid only during the call): checkpoint metadata. Every config that passes pg_config_validate
 * reads back through pg_config_from_kv to the same bits. @return 0, or fn's negative result. */
int pg_config_to_kv(const struct pg_config *cfg, pg_config_kv_fn fn, void *ctx);

/* Reads key/value pairs written by pg_config_to_kv over *cfg: keys must be exact field keys
 * (unknown ones are rejected), missing keys keep their current value. Does not validate.
 * @return 0, or PG_E_INVAL naming the key (*cfg is then unchanged). */
int pg_config_from_kv(struct pg_config *cfg, size_t n, const char *const *keys, const char *const *values);

/* Prints an aligned "key  value  [default X]" table, one field per line, the default shown only
 * where it differs from the baseline. @return 0, or PG_E_IO if the stream reports an error. */
int pg_config_print_table(const struct pg_config *cfg, FILE *out);

/* @return the number of trainable parameters of the model cfg describes (17,059,912 for the
 * baseline): tok_emb, per-block c_q/c_k/c_v/proj, fc/proj, q_gain, attn/mlp scales, resid_mix,
 * skip_weights, and lm_head when untied. */
int64_t pg_config_num_params(const struct pg_config *cfg);

/* Derived shapes (§3.1, §3.2); meaningful once pg_config_validate has passed. */
static inline int pg_config_head_dim(const struct pg_config *c) { return c->model_dim / c->num_heads; }
static inline int pg_config_kv_dim(const struct pg_config *c) { return c->num_kv_heads * pg_config_head_dim(c); }
/* The dims of each head that RoPE rotates: rope_dims, or the whole head when it is 0. */
static inline int pg_config_rope_dims(const struct pg_config *c) { return c->rope_dims ? c->rope_dims : pg_config_head_dim(c); }
static inline int pg_config_mlp_hidden(const struct pg_config *c) { return c->mlp_mult * c->model_dim; }
static inline int pg_config_num_encoder_layers(const struct pg_config *c) { return c->num_layers / 2; }
static inline int pg_config_num_decoder_layers(const struct pg_config *c)
{
    return c->num_layers - pg_config_num_encoder_layers(c);
}
/* Virtual layers (depth recurrence, spec/techniques.md §2.8): [0, s) + [s, e] x (num_loops + 1) +
 * (e, L); without loops, the physical layers. The encoder is the first half of that list. */
static inline int pg_config_num_virtual(const struct pg_config *c)
{
    return c->num_loops ? c->num_layers + c->num_loops * (c->loop_end - c->loop_start + 1) : c->num_layers;
}
/* min(encoder, decoder) of the (looped) virtual list: the U-Net pairs each encoder output with one
 * decoder block; before the loop is switched on fewer pairs are used, from the same weights. */
static inline int pg_config_num_skip_weights(const struct pg_config *c)
{
    int nv = pg_config_num_virtual(c), e = nv / 2, d = nv - e;
    return e < d ? e : d;
}
/* Whether the parallel blocks have two lanes with learned mixing (not the GPT-J single lane). */
static inline int pg_config_two_lanes(const struct pg_config *c) { return c->parallel_start_layer > 0 && !c->parallel_gptj; }

#endif
