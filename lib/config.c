/* config.c: the model + training configuration and its field table (see config.h). */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include "err.h"
#include "opt.h"
#include "optim.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Table rows. Bounds say what the code can run, not what is sensible: validation of shapes that
 * involve several fields is pg_config_validate's job. */
#define ROW(k, fl, ev, ty, lo, hi, flo, fhi, flo_open, fhi_open, h)                                \
    { #k, fl, ev, ty, offsetof(struct pg_config, k), lo, hi, flo, fhi, flo_open, fhi_open, h }
#define INT(k, fl, ev, lo, hi, h) ROW(k, fl, ev, PG_CONFIG_INT, lo, hi, 0, 0, 0, 0, h)
#define BOOL(k, fl, ev, h) ROW(k, fl, ev, PG_CONFIG_BOOL, 0, 1, 0, 0, 0, 0, h)
#define I64(k, fl, ev, lo, hi, h) ROW(k, fl, ev, PG_CONFIG_I64, lo, hi, 0, 0, 0, 0, h)
#define U64(k, fl, ev, lo, hi, h) ROW(k, fl, ev, PG_CONFIG_U64, lo, hi, 0, 0, 0, 0, h)
#define F64(k, fl, ev, lo, hi, h) ROW(k, fl, ev, PG_CONFIG_F64, 0, 0, lo, hi, 0, 0, h)
/* (lo, hi]: a zero would divide by zero or make the feature meaningless. */
#define F64_POS(k, fl, ev, hi, h) ROW(k, fl, ev, PG_CONFIG_F64, 0, 0, 0.0, hi, 1, 0, h)
/* [0, 1): a momentum or Adam beta of 1 never forgets, and torch rejects it. */
#define F64_UNIT(k, fl, ev, h) ROW(k, fl, ev, PG_CONFIG_F64, 0, 0, 0.0, 1.0, 0, 1, h)

static const struct pg_config_field fields[] = {
    INT(vocab_size, "vocab", "VOCAB_SIZE", 1, 65536, "vocabulary size (>= the tokenizer's; tokens are uint16)"),
    INT(num_layers, "layers", "NUM_LAYERS", 1, 1024, "transformer blocks (first half encoder, rest decoder)"),
    INT(model_dim, "dim", "MODEL_DIM", 1, 65536, "model width d_model"),
    INT(num_heads, "heads", "NUM_HEADS", 1, 65536, "query heads (must divide model_dim)"),
    INT(num_kv_heads, "kv-heads", "NUM_KV_HEADS", 1, 65536, "key/value heads (must divide num_heads; GQA)"),
    INT(mlp_mult, "mlp-mult", "MLP_MULT", 1, 64, "MLP hidden size = mlp_mult * model_dim"),
    BOOL(tie_embeddings, "tie-embeddings", "TIE_EMBEDDINGS", "1: logits use tok_emb; 0: separate lm_head"),
    INT(train_seq_len, "seq-len", "TRAIN_SEQ_LEN", 1, 1 << 24, "tokens per training and validation sequence"),
    F64_POS(rope_base, "rope-base", "ROPE_BASE", 1e12, "RoPE frequency base"),
    F64_POS(logit_softcap, "logit-softcap", "LOGIT_SOFTCAP", 1e6, "logits = c * tanh(logits / c)"),
    F64(qk_gain_init, "qk-gain-init", "QK_GAIN_INIT", 0.0, 1e6, "initial per-head query gain"),
    F64(tied_embed_init_std, "tied-embed-init-std", "TIED_EMBED_INIT_STD", 0.0, 1e3,
        "std of the normal init of tok_emb"),
    U64(seed, "seed", "SEED", 0, INT64_MAX, "random seed for initialization"),
    INT(iterations, "iterations", "ITERATIONS", 0, INT_MAX, "maximum training steps"),
    INT(warmdown_iters, "warmdown-iters", "WARMDOWN_ITERS", 0, INT_MAX, "steps of linear LR decay to 0 at the end"),
    INT(warmup_steps, "warmup-steps", "WARMUP_STEPS", 0, INT_MAX,
        "PyTorch compile-priming steps, undone; kept for compatibility, pg-train skips them"),
    I64(train_batch_tokens, "batch-tokens", "TRAIN_BATCH_TOKENS", 1, INT64_C(1) << 50, "tokens per optimizer step"),
    I64(val_batch_size, "val-batch-tokens", "VAL_BATCH_SIZE", 1, INT64_C(1) << 50, "tokens per validation batch (pg-train uses its micro-batch)"),
    F64(max_wallclock_seconds, "max-wallclock", "MAX_WALLCLOCK_SECONDS", 0.0, 1e9,
        "training time cap in seconds; 0 = none (warmdown by steps)"),
    INT(val_loss_every, "val-every", "VAL_LOSS_EVERY", 0, INT_MAX, "validate every N steps; 0 = only at the end"),
    INT(train_log_every, "log-every", "TRAIN_LOG_EVERY", 0, INT_MAX, "log train loss every N steps; 0 = never"),
    /* parameter-golf derives this from WORLD_SIZE (8 / world); one process here runs all 8. */
    INT(grad_accum_steps, "grad-accum", NULL, 1, 65536, "micro-batches per optimizer step"),
    F64(embed_lr, "embed-lr", "EMBED_LR", 0.0, 1e3, "Adam LR of tok_emb when untied"),
    F64(head_lr, "head-lr", "HEAD_LR", 0.0, 1e3, "Adam LR of lm_head when untied"),
    F64(tied_embed_lr, "tied-embed-lr", "TIED_EMBED_LR", 0.0, 1e3, "Adam LR of tok_emb when tied"),
    F64(matrix_lr, "matrix-lr", "MATRIX_LR", 0.0, 1e3, "Muon LR of the block matrices"),
    F64(scalar_lr, "scalar-lr", "SCALAR_LR", 0.0, 1e3, "Adam LR of scales, gains, resid_mix, skip weights"),
    F64_UNIT(muon_momentum, "muon-momentum", "MUON_MOMENTUM", "Muon momentum after warmup"),
    INT(muon_backend_steps, "muon-steps", "MUON_BACKEND_STEPS", 1, 100, "Newton-Schulz iterations per Muon step"),
    F64_UNIT(muon_momentum_warmup_start, "muon-momentum-warmup-start", "MUON_MOMENTUM_WARMUP_START",
             "Muon momentum at step 0"),
    INT(muon_momentum_warmup_steps, "muon-momentum-warmup-steps", "MUON_MOMENTUM_WARMUP_STEPS", 0, INT_MAX,
        "steps to ramp Muon momentum linearly"),
    F64_UNIT(beta1, "beta1", "BETA1", "Adam beta1"),
    F64_UNIT(beta2, "beta2", "BETA2", "Adam beta2"),
    F64(adam_eps, "adam-eps", "ADAM_EPS", 0.0, 1.0, "Adam epsilon"),
    F64(grad_clip_norm, "grad-clip", "GRAD_CLIP_NORM", 0.0, 1e12, "clip the global gradient norm; 0 = off"),
    /* PyTorch's eps=None for fp32 RMSNorm (spec §3.3); parameter-golf has no variable for it. */
    F64_POS(rms_norm_eps, "rms-eps", NULL, 1.0, "RMSNorm epsilon"),
    BOOL(rope_bf16, "rope-bf16", NULL, "1: RoPE positions, frequencies and tables rounded to bf16 as the PyTorch baseline"),
    /* The record stack's switches (spec/techniques.md §2): parameter-golf's baseline script has no
     * variables for them, and each default reproduces the baseline exactly. */
    F64(mlp_leaky_slope, "mlp-leaky-slope", NULL, 0.0, 1.0,
        "MLP activation leaky_relu(x, slope)^2; 0 = relu^2 (baseline), 0.5 as the records"),
    INT(rope_dims, "rope-dims", NULL, 0, 65536, "RoPE rotates the first N dims of each head (even); 0 = all"),
    BOOL(ln_scale, "ln-scale", NULL, "1: block l scales both its norm outputs by 1/sqrt(l+1)"),
    BOOL(muon_polar_express, "muon-polar-express", NULL,
         "1: Newton-Schulz with the Polar Express coefficients (at most 5 steps); 0 = classic"),
    BOOL(muon_row_norm, "muon-row-norm", NULL, "1: MuonEq-R, each row of the Muon update divided by its 2-norm"),
    F64(muon_wd, "muon-wd", NULL, 0.0, 1e3, "Muon decoupled weight decay, W *= 1 - lr*wd each step; 0 = none"),
    F64(embed_wd, "embed-wd", NULL, 0.0, 1e3, "AdamW decoupled weight decay of tok_emb; 0 = none (Adam)"),
    F64(scalar_wd, "scalar-wd", NULL, 0.0, 1e3, "AdamW decoupled weight decay of the control tensors; 0 = none"),
    /* The rest of the record stack (spec/techniques.md §2-§3); every default is off. */
    BOOL(skip_gates, "skip-gates", "SKIP_GATES_ENABLED",
         "1: U-Net skips as sigmoid-gated lerps x = s*x + (1-s)*(w*skip), s = sigmoid(gamma)"),
    INT(num_loops, "num-loops", "NUM_LOOPS", 0, 64, "depth recurrence: extra passes over layers loop_start..loop_end; 0 = off"),
    INT(loop_start, "loop-start", "LOOP_START", 0, 1023, "first physical layer of the looped range"),
    INT(loop_end, "loop-end", "LOOP_END", 0, 1023, "last physical layer of the looped range (inclusive)"),
    F64(enable_looping_at, "enable-looping-at", "ENABLE_LOOPING_AT", 0.0, 1.0,
        "training fraction from which the looped layers run (evaluation always loops)"),
    INT(parallel_start_layer, "parallel-start-layer", "PARALLEL_START_LAYER", 0, 1024,
        "decoder blocks of physical layer >= N run attention and MLP in parallel residual lanes; 0 = off"),
    BOOL(parallel_gptj, "parallel-gptj", NULL, "1: the parallel blocks use the GPT-J single-lane form x + a + m"),
    BOOL(smear_gate, "smear-gate", "SMEAR_GATE_ENABLED",
         "1: SmearGate v2, x_t += lambda*sigmoid(w.x_t[:gate_window])*x_(t-1) on the raw embedding"),
    BOOL(smear_gate_v1, "smear-gate-v1", NULL, "1: SmearGate v1, a static per-dim blend with the previous token"),
    INT(gate_window, "gate-window", "GATE_WINDOW", 1, 65536, "input dims of the smear and sparse/out attention gates"),
    BOOL(attn_out_gate, "attn-out-gate", "ATTN_OUT_GATE_ENABLED", "1: AttnOutGate, head outputs times 2*sigmoid(w_h.u[:gate_window])"),
    BOOL(gated_attn, "gated-attn", "GATED_ATTN_ENABLED", "1: dense gated attention, head outputs times sigmoid(W_g[h].u)"),
    BOOL(sparse_attn_gate, "sparse-attn-gate", "SPARSE_ATTN_GATE_ENABLED",
         "1: sparse head-output gate, sigmoid(scale*w_h.u[:gate_window])"),
    F64(gated_attn_init_std, "gated-attn-init-std", "GATED_ATTN_INIT_STD", 0.0, 1e3, "std of the normal init of W_g"),
    F64(sparse_attn_gate_scale, "sparse-attn-gate-scale", "SPARSE_ATTN_GATE_SCALE", 0.0, 1e6, "the sparse gate's scale c"),
    INT(xsa_last_n, "xsa-last-n", "XSA_LAST_N", 0, 1024, "exclusive self-attention (XSA) in the last N layers"),
    INT(bigram_vocab, "bigram-vocab", "BIGRAM_VOCAB_SIZE", 0, 1 << 24, "BigramHash embedding buckets (>= 2); 0 = off"),
    INT(bigram_dim, "bigram-dim", "BIGRAM_DIM", 1, 65536, "BigramHash embedding width"),
    INT(ve_last_n, "ve-last-n", NULL, 0, 1024, "value embeddings added to v in the last N layers; 0 = off"),
    INT(ve_dim, "ve-dim", "VE_DIM", 1, 65536, "value embedding table width"),
    BOOL(varlen_attn, "varlen-attn", NULL, "1: attention stays inside documents (segments start at bos_id)"),
    INT(bos_id, "bos-id", NULL, 0, 65535, "the token that starts a document (varlen attention, SmearGate BOS fix)"),
    BOOL(ortho_init, "ortho-init", NULL, "1: orthogonal init of c_q/c_k/c_v/fc (and other >= 64x64 matrices)"),
    BOOL(softcap_poly5, "softcap-poly5", NULL, "1: the poly5 softcap c*clamp(u - u^3/3 + u^5/15, -1, 1), u = clamp(z/c, -2, 2)"),
    F64(z_loss, "z-loss", NULL, 0.0, 1e3, "training adds z_loss * mean(logsumexp^2); 0 = off"),
    F64(wd_taper_start, "wd-taper-start", NULL, 0.0, 1.0, "Muon weight decay tapers linearly from this training fraction"),
    F64(wd_taper_final, "wd-taper-final", NULL, 0.0, 1e3, "Muon weight decay multiplier reached at the end of training"),
    F64(warmdown_frac, "warmdown-frac", "WARMDOWN_FRAC", 0.0, 1.0,
        "LR decays over this final fraction of training (wall clock or steps); 0 = warmdown_iters"),
    F64(min_lr, "min-lr", "MIN_LR", 0.0, 1.0, "floor of the LR multiplier during warmdown"),
    F64_UNIT(ema_decay, "ema-decay", "EMA_DECAY", "EMA of the weights, saved as the final model; 0 = off"),
    INT(swa_every, "swa-every", NULL, 0, INT_MAX, "SWA: average a snapshot every N steps once lr_mul < swa_start_lr; 0 = off"),
    F64(swa_start_lr, "swa-start-lr", NULL, 0.0, 1.0, "SWA collects snapshots while the LR multiplier is below this"),
    F64(qat_start_lr, "qat-start-lr", "LATE_QAT_THRESHOLD", 0.0, 2.0,
        "late QAT: fake int quantization of the matrices once lr_mul < this; 0 = off, above 1 = every step"),
    INT(qat_bits, "qat-bits", NULL, 2, 8, "bits of late QAT's fake quantization"),
    INT(qat_levels, "qat-levels", NULL, 0, 5,
        "late QAT to ternary (3) or quinary (5) groups of 128 instead of qat_bits; 0 = per-row intN"),
    BOOL(coprime_loader, "coprime-loader", NULL, "1: the coprime-stride shard loader instead of the sequential stream"),
};

#define NFIELDS (sizeof fields / sizeof fields[0])

const struct pg_config_field *pg_config_fields(size_t *n)
{
    if (n) *n = NFIELDS;
    return fields;
}

const struct pg_config_field *pg_config_find(const char *name)
{
    if (!name) return NULL;
    const char *flag = strncmp(name, "--", 2) == 0 ? name + 2 : name;
    for (size_t i = 0; i < NFIELDS; i++) {
        const struct pg_config_field *f = &fields[i];
        if (strcmp(name, f->key) == 0 || strcmp(flag, f->flag) == 0 || (f->env && strcmp(name, f->env) == 0))
            return f;
    }
    return NULL;
}

void pg_config_default(struct pg_config *cfg)
{
    /* memset first so padding is zero too: configs compare and hash byte-wise. */
    memset(cfg, 0, sizeof *cfg);
    cfg->vocab_size = 1024;
    cfg->num_layers = 9;
    cfg->model_dim = 512;
    cfg->num_heads = 8;
    cfg->num_kv_heads = 4;
    cfg->mlp_mult = 2;
    cfg->tie_embeddings = 1;
    cfg->train_seq_len = 1024;
    cfg->rope_base = 10000.0;
    cfg->logit_softcap = 30.0;
    cfg->qk_gain_init = 1.5;
    cfg->tied_embed_init_std = 0.005;
    cfg->seed = 1337;
    cfg->iterations = 20000;
    cfg->warmdown_iters = 1200;
    cfg->warmup_steps = 20;
    cfg->train_batch_tokens = 524288;
    cfg->val_batch_size = 524288;
    cfg->max_wallclock_seconds = 600.0;
    cfg->val_loss_every = 1000;
    cfg->train_log_every = 200;
    cfg->grad_accum_steps = 8;
    cfg->embed_lr = 0.6;
    cfg->head_lr = 0.008;
    cfg->tied_embed_lr = 0.05;
    cfg->matrix_lr = 0.04;
    cfg->scalar_lr = 0.04;
    cfg->muon_momentum = 0.95;
    cfg->muon_backend_steps = 5;
    cfg->muon_momentum_warmup_start = 0.85;
    cfg->muon_momentum_warmup_steps = 500;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.95;
    cfg->adam_eps = 1e-8;
    cfg->grad_clip_norm = 0.0;
    cfg->rms_norm_eps = 0x1p-23;
    cfg->rope_bf16 = 0;
    cfg->mlp_leaky_slope = 0.0;
    cfg->rope_dims = 0;
    cfg->ln_scale = 0;
    cfg->muon_polar_express = 0;
    cfg->muon_row_norm = 0;
    cfg->muon_wd = 0.0;
    cfg->embed_wd = 0.0;
    cfg->scalar_wd = 0.0;
    cfg->gate_window = 12;
    cfg->gated_attn_init_std = 0.005;
    cfg->sparse_attn_gate_scale = 1.0;
    cfg->bigram_dim = 128;
    cfg->ve_dim = 128;
    cfg->bos_id = 1;
    cfg->wd_taper_start = 1.0;
    cfg->wd_taper_final = 0.5;
    cfg->swa_start_lr = 0.5;
    cfg->qat_bits = 6;
}

/* A preset is the baseline plus overrides in config-file syntax, so it is checked like user input. */
static const struct {
    const char *name;
    const char *overrides[64]; /* "key=value", NULL-terminated */
} presets[] = {
    {"baseline", {NULL}},
    /* The top record (spec/techniques.md §0, PR #1855): SP8192, 11 layers looped to 17 virtual. */
    {"record",
     {"vocab_size=8192", "num_layers=11", "mlp_mult=4", "train_seq_len=2048", "train_batch_tokens=786432",
      "val_batch_size=786432", "qk_gain_init=5.0", "tied_embed_lr=0.03", "matrix_lr=0.026", "scalar_lr=0.02",
      "muon_momentum=0.97", "muon_momentum_warmup_start=0.92", "muon_momentum_warmup_steps=1500", "beta2=0.99",
      "grad_clip_norm=0.3", "mlp_leaky_slope=0.5", "rope_dims=16", "ln_scale=1", "muon_polar_express=1",
      "muon_row_norm=1", "muon_wd=0.095", "embed_wd=0.085", "scalar_wd=0.02", "skip_gates=1", "num_loops=2",
      "loop_start=3", "loop_end=5", "enable_looping_at=0.35", "parallel_start_layer=8", "smear_gate=1",
      "sparse_attn_gate=1", "sparse_attn_gate_scale=0.5", "xsa_last_n=11", "varlen_attn=1", "ortho_init=1",
      "warmdown_frac=0.85", "min_lr=0.1", "ema_decay=0.9965", NULL}},
};

#define NPRESETS (sizeof presets / sizeof presets[0])

static int set_field(struct pg_config *cfg, const struct pg_config_field *f, const char *what, const char *value);

int pg_config_preset(struct pg_config *cfg, const char *name)
{
    for (size_t i = 0; i < NPRESETS; i++) {
        if (!name || strcmp(name, presets[i].name) != 0) continue;
        struct pg_config tmp;
        pg_config_default(&tmp);
        for (const char *const *o = presets[i].overrides; *o; o++) {
            char key[64];
            const char *eq = strchr(*o, '=');
            size_t kn = eq ? (size_t)(eq - *o) : 0;
            if (!eq || kn >= sizeof key) return pg_error(PG_E_INVAL, "preset '%s': bad override '%s'", name, *o);
            memcpy(key, *o, kn);
            key[kn] = 0;
            int rc = pg_config_set(&tmp, key, eq + 1);
            if (rc < 0) return rc;
        }
        *cfg = tmp;
        return 0;
    }
    char known[256] = "";
    for (size_t i = 0; i < NPRESETS; i++) {
        size_t len = strlen(known);
        snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", presets[i].name);
    }
    return pg_error(PG_E_INVAL, "unknown preset '%s' (known: %s)", name ? name : "(null)", known);
}

/* Accepts the spellings people use for booleans in config files and environment variables. */
static int parse_bool(const char *what, const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (s && strcmp(s, yes[i]) == 0) return *out = 1, 0;
        if (s && strcmp(s, no[i]) == 0) return *out = 0, 0;
    }
    return pg_error(PG_E_INVAL, "%s: '%s' is not a boolean (0/1, true/false, yes/no, on/off)", what, s ? s : "");
}

/* Parses value into f's slot of cfg; the slot is written only on success. */
static int set_field(struct pg_config *cfg, const struct pg_config_field *f, const char *what, const char *value)
{
    char *p = (char *)cfg + f->offset;
    switch (f->type) {
    case PG_CONFIG_INT: {
        int v = 0;
        PG_TRY(pg_parse_int(what, value, (int)f->imin, (int)f->imax, &v));
        memcpy(p, &v, sizeof v);
        return 0;
    }
    case PG_CONFIG_BOOL: {
        int v = 0;
        PG_TRY(parse_bool(what, value, &v));
        memcpy(p, &v, sizeof v);
        return 0;
    }
    case PG_CONFIG_I64:
    case PG_CONFIG_U64: {
        int64_t v = 0;
        PG_TRY(pg_parse_i64(what, value, f->imin, f->imax, &v));
        if (f->type == PG_CONFIG_U64) {
            uint64_t u = (uint64_t)v; /* imin >= 0 for every U64 row */
            memcpy(p, &u, sizeof u);
        } else {
            memcpy(p, &v, sizeof v);
        }
        return 0;
    }
    case PG_CONFIG_F64: {
        double v = 0;
        PG_TRY(pg_parse_f64(what, value, f->fmin, f->fmax, &v));
        if ((f->fmin_open && v == f->fmin) || (f->fmax_open && v == f->fmax))
            return pg_error(PG_E_INVAL, "%s: %s is out of range %c%g, %g%c", what, value, f->fmin_open ? '(' : '[',
                            f->fmin, f->fmax, f->fmax_open ? ')' : ']');
        memcpy(p, &v, sizeof v);
        return 0;
    }
    }
    return pg_error(PG_E_INVAL, "%s: field has an unknown type", what);
}

int pg_config_set(struct pg_config *cfg, const char *name, const char *value)
{
    const struct pg_config_field *f = pg_config_find(name);
    if (!f) return pg_error(PG_E_INVAL, "unknown config key '%s' (value '%s')", name ? name : "", value ? value : "");
    /* Name what the user typed, and the key when they typed something else, so a message about
     * --layers still says which config-file key it is. */
    char what[128];
    if (strcmp(name, f->key) == 0) snprintf(what, sizeof what, "%s", f->key);
    else if (f->env && strcmp(name, f->env) == 0) snprintf(what, sizeof what, "%s (%s)", f->env, f->key);
    else snprintf(what, sizeof what, "--%s (%s)", f->flag, f->key);
    return set_field(cfg, f, what, value);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

int pg_config_load_file(struct pg_config *cfg, const char *path)
{
    int from_stdin = strcmp(path, "-") == 0;
    FILE *in = from_stdin ? stdin : fopen(path, "r");
    if (!in) return pg_error_errno(PG_E_IO, "cannot open config '%s'", path);
    struct pg_config tmp = *cfg;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    long lineno = 0;
    errno = 0;
    while (getline(&line, &cap, in) >= 0) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = pg_error(PG_E_INVAL, "%s:%ld: expected 'key = value', got '%s'", path, lineno, s);
            break;
        }
        *eq = 0;
        char *key = trim(s), *value = trim(eq + 1);
        if ((rc = pg_config_set(&tmp, key, value)) < 0) {
            /* pg_error formats into the buffer pg_error_message points at: copy it first. */
            char msg[900];
            snprintf(msg, sizeof msg, "%s", pg_error_message());
            rc = pg_error(rc, "%s:%ld: %s", path, lineno, msg);
            break;
        }
    }
    if (rc == 0 && ferror(in)) rc = pg_error_errno(PG_E_IO, "cannot read config '%s'", path);
    free(line);
    if (!from_stdin) fclose(in);
    if (rc == 0) *cfg = tmp;
    return rc;
}

int pg_config_format(const struct pg_config *cfg, const struct pg_config_field *f, char *buf, size_t n)
{
    const char *p = (const char *)cfg + f->offset;
    int len = -1;
    switch (f->type) {
    case PG_CONFIG_INT:
    case PG_CONFIG_BOOL: {
        int v;
        memcpy(&v, p, sizeof v);
        len = snprintf(buf, n, "%d", v);
        break;
    }
    case PG_CONFIG_I64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        len = snprintf(buf, n, "%" PRId64, v);
        break;
    }
    case PG_CONFIG_U64: {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        len = snprintf(buf, n, "%" PRIu64, v);
        break;
    }
    case PG_CONFIG_F64: {
        double v;
        memcpy(&v, p, sizeof v);
        /* The shortest %g that reads back to the same bits ("0.05", not 0.050000000000000003);
         * 17 significant digits always do. Whole numbers print whole ("10000", not "1e+04"). */
        int first = 1;
        if (v == floor(v) && fabs(v) < 1e15) first = fabs(v) < 1 ? 1 : (int)floor(log10(fabs(v))) + 1;
        char digits[64]; /* "%.17g" of any double fits */
        for (int prec = first; prec <= 17; prec++) {
            snprintf(digits, sizeof digits, "%.*g", prec, v);
            double back = strtod(digits, NULL);
            if (memcmp(&back, &v, sizeof v) == 0) break;
        }
        len = snprintf(buf, n, "%s", digits);
        break;
    }
    }
    if (len < 0 || (size_t)len >= n) return pg_error(PG_E_INVAL, "%s: value does not fit in %zu bytes", f->key, n);
    return 0;
}

/* Large enough for any formatted value: 20 digits of an int64, or "-d.dddddddddddddddde-308". */
#define VALUE_MAX 48

int pg_config_to_kv(const struct pg_config *cfg, pg_config_kv_fn fn, void *ctx)
{
    char buf[VALUE_MAX];
    for (size_t i = 0; i < NFIELDS; i++) {
        PG_TRY(pg_config_format(cfg, &fields[i], buf, sizeof buf));
        int rc = fn(ctx, fields[i].key, buf);
        if (rc < 0) return rc;
    }
    return 0;
}

int pg_config_from_kv(struct pg_config *cfg, size_t n, const char *const *keys, const char *const *values)
{
    struct pg_config tmp = *cfg;
    for (size_t i = 0; i < n; i++) {
        const struct pg_config_field *f = NULL;
        /* Exact keys only: metadata is written by pg_config_to_kv, so anything else is a
         * different program's or version's file and must not be half-understood. */
        for (size_t j = 0; keys[i] && j < NFIELDS && !f; j++)
            if (strcmp(keys[i], fields[j].key) == 0) f = &fields[j];
        if (!f) return pg_error(PG_E_INVAL, "unknown config key '%s'", keys[i] ? keys[i] : "(null)");
        PG_TRY(set_field(&tmp, f, f->key, values[i]));
    }
    *cfg = tmp;
    return 0;
}

/* Range check of a value already in the struct (which callers may fill directly). */
static int check_range(const struct pg_config *cfg, const struct pg_config_field *f)
{
    const char *p = (const char *)cfg + f->offset;
    char buf[VALUE_MAX];
    PG_TRY(pg_config_format(cfg, f, buf, sizeof buf));
    if (f->type == PG_CONFIG_F64) {
        double v;
        memcpy(&v, p, sizeof v);
        /* Negated comparisons so that NaN fails too. */
        int ok = (f->fmin_open ? v > f->fmin : v >= f->fmin) && (f->fmax_open ? v < f->fmax : v <= f->fmax);
        if (!ok)
            return pg_error(PG_E_INVAL, "%s = %s is out of range %c%g, %g%c", f->key, buf, f->fmin_open ? '(' : '[',
                            f->fmin, f->fmax, f->fmax_open ? ')' : ']');
        /* strtod reports ERANGE for subnormals, so pg_parse_f64 could not read one back from a
         * checkpoint: refuse them here, and every valid config round-trips through to_kv. */
        if (v != 0 && fabs(v) < DBL_MIN)
            return pg_error(PG_E_INVAL, "%s = %s is too small (subnormal)", f->key, buf);
        return 0;
    }
    int ok;
    if (f->type == PG_CONFIG_U64) {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        ok = v <= (uint64_t)f->imax && (f->imin <= 0 || v >= (uint64_t)f->imin);
    } else {
        int64_t v;
        if (f->type == PG_CONFIG_I64) {
            memcpy(&v, p, sizeof v);
        } else {
            int iv;
            memcpy(&iv, p, sizeof iv);
            v = iv;
        }
        ok = v >= f->imin && v <= f->imax;
        if (!ok && f->imin == 1 && v < 1) return pg_error(PG_E_INVAL, "%s = %s must be positive", f->key, buf);
    }
    if (!ok)
        return pg_error(PG_E_INVAL, "%s = %s is out of range [%" PRId64 ", %" PRId64 "]", f->key, buf, f->imin,
                        f->imax);
    return 0;
}

int pg_config_validate(const struct pg_config *c, int tokenizer_vocab)
{
    if (c->vocab_size > 65536)
        return pg_error(PG_E_INVAL, "vocab_size = %d exceeds 65536: tokens are stored as uint16", c->vocab_size);
    for (size_t i = 0; i < NFIELDS; i++) PG_TRY(check_range(c, &fields[i]));
    if (tokenizer_vocab > 0 && c->vocab_size < tokenizer_vocab)
        return pg_error(PG_E_INVAL, "vocab_size = %d is smaller than the tokenizer's vocabulary (%d tokens)",
                        c->vocab_size, tokenizer_vocab);
    if (c->qat_levels != 0 && c->qat_levels != 3 && c->qat_levels != 5)
        return pg_error(PG_E_INVAL, "qat_levels = %d: 0 (intN), 3 (ternary) or 5 (quinary)", c->qat_levels);
    if (c->model_dim % c->num_heads)
        return pg_error(PG_E_INVAL, "model_dim = %d is not divisible by num_heads = %d", c->model_dim, c->num_heads);
    if (c->num_heads % c->num_kv_heads)
        return pg_error(PG_E_INVAL, "num_heads = %d is not divisible by num_kv_heads = %d (each KV head serves a "
                        "whole group of query heads)", c->num_heads, c->num_kv_heads);
    if (pg_config_head_dim(c) % 2)
        return pg_error(PG_E_INVAL, "head_dim = model_dim / num_heads = %d / %d = %d is odd: RoPE rotates the two "
                        "halves of each head as pairs", c->model_dim, c->num_heads, pg_config_head_dim(c));
    if (c->rope_dims % 2 || c->rope_dims > pg_config_head_dim(c))
        return pg_error(PG_E_INVAL, "rope_dims = %d must be even and at most head_dim = %d (0: all of them): RoPE "
                        "rotates pairs of dims", c->rope_dims, pg_config_head_dim(c));
    if (c->muon_polar_express && c->muon_backend_steps > PG_NS_POLAR_EXPRESS_STEPS)
        return pg_error(PG_E_INVAL, "muon_polar_express = 1 has %d coefficient tuples, but muon_backend_steps = %d",
                        PG_NS_POLAR_EXPRESS_STEPS, c->muon_backend_steps);
    if (c->num_loops && (c->loop_start > c->loop_end || c->loop_end >= c->num_layers))
        return pg_error(PG_E_INVAL, "loop_start = %d and loop_end = %d must satisfy loop_start <= loop_end < "
                        "num_layers = %d (the looped range is inclusive)", c->loop_start, c->loop_end, c->num_layers);
    if (c->parallel_start_layer > c->num_layers)
        return pg_error(PG_E_INVAL, "parallel_start_layer = %d is beyond num_layers = %d", c->parallel_start_layer,
                        c->num_layers);
    if (c->attn_out_gate + c->gated_attn + c->sparse_attn_gate > 1)
        return pg_error(PG_E_INVAL, "attn_out_gate, gated_attn and sparse_attn_gate are alternatives: set at most one");
    if (c->smear_gate && c->smear_gate_v1)
        return pg_error(PG_E_INVAL, "smear_gate (v2) and smear_gate_v1 are alternatives: set at most one");
    if ((c->smear_gate || c->attn_out_gate || c->sparse_attn_gate) && c->gate_window > c->model_dim)
        return pg_error(PG_E_INVAL, "gate_window = %d is wider than model_dim = %d", c->gate_window, c->model_dim);
    if (c->xsa_last_n > c->num_layers || c->ve_last_n > c->num_layers)
        return pg_error(PG_E_INVAL, "xsa_last_n = %d and ve_last_n = %d may not exceed num_layers = %d", c->xsa_last_n,
                        c->ve_last_n, c->num_layers);
    if (c->bigram_vocab == 1)
        return pg_error(PG_E_INVAL, "bigram_vocab = 1: BigramHash needs at least 2 buckets (the last is the first "
                        "token's), or 0 for off");
    if (c->bos_id >= c->vocab_size)
        return pg_error(PG_E_INVAL, "bos_id = %d is outside the vocabulary of %d", c->bos_id, c->vocab_size);
    int64_t per_step = (int64_t)c->train_seq_len * c->grad_accum_steps;
    if (c->train_batch_tokens % per_step)
        return pg_error(PG_E_INVAL, "train_batch_tokens = %" PRId64 " is not divisible by train_seq_len * "
                        "grad_accum_steps = %d * %d = %" PRId64 " (whole sequences per micro-step)",
                        c->train_batch_tokens, c->train_seq_len, c->grad_accum_steps, per_step);
    if (c->val_batch_size < per_step)
        return pg_error(PG_E_INVAL, "val_batch_size = %" PRId64 " is less than one sequence per micro-step: need at "
                        "least train_seq_len * grad_accum_steps = %d * %d = %" PRId64,
                        c->val_batch_size, c->train_seq_len, c->grad_accum_steps, per_step);
    return 0;
}

int pg_config_print_table(const struct pg_config *cfg, FILE *out)
{
    struct pg_config def;
    pg_config_default(&def);
    int kw = 0, vw = 0;
    char val[VALUE_MAX], dval[VALUE_MAX];
    for (size_t i = 0; i < NFIELDS; i++) {
        int n = (int)strlen(fields[i].key);
        if (n > kw) kw = n;
        PG_TRY(pg_config_format(cfg, &fields[i], val, sizeof val));
        n = (int)strlen(val);
        if (n > vw) vw = n;
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        PG_TRY(pg_config_format(cfg, &fields[i], val, sizeof val));
        PG_TRY(pg_config_format(&def, &fields[i], dval, sizeof dval));
        if (strcmp(val, dval) == 0) fprintf(out, "%-*s  %s\n", kw, fields[i].key, val);
        else fprintf(out, "%-*s  %-*s  (default %s)\n", kw, fields[i].key, vw, val, dval);
    }
    if (ferror(out)) return pg_error(PG_E_IO, "cannot write the configuration table");
    return 0;
}

int64_t pg_config_num_params(const struct pg_config *c)
{
    if (c->num_heads <= 0) return pg_error(PG_E_INVAL, "num_heads = %d must be positive", c->num_heads);
    int64_t d = c->model_dim, v = c->vocab_size, kv = pg_config_kv_dim(c), hidden = pg_config_mlp_hidden(c);
    int64_t attn = d * d + kv * d + kv * d + d * d; /* c_q, c_k, c_v, proj */
    int64_t mlp = hidden * d + d * hidden;          /* fc, proj */
    int64_t per_block = attn + mlp + c->num_heads /* q_gain */ + 2 * d /* attn/mlp scale */ + 2 * d /* resid_mix */;
    if (c->attn_out_gate || c->sparse_attn_gate) per_block += (int64_t)c->num_heads * c->gate_window;
    if (c->gated_attn) per_block += (int64_t)c->num_heads * d;
    int64_t skips = pg_config_num_skip_weights(c);
    int64_t total = v * d + c->num_layers * per_block + skips * d * (c->skip_gates ? 2 : 1);
    if (!c->tie_embeddings) total += v * d; /* lm_head */
    if (pg_config_two_lanes(c)) total += 6 * (int64_t)c->num_layers; /* lane residual [L,2] and post [L,2,2] */
    if (c->smear_gate) total += c->gate_window + 1;
    if (c->smear_gate_v1) total += d;
    if (c->bigram_vocab) total += (int64_t)c->bigram_vocab * c->bigram_dim + d * c->bigram_dim + 1;
    if (c->ve_last_n) total += v * c->ve_dim + kv * c->ve_dim + 1 + c->ve_last_n;
    return total;
}
