/* lora.h: per-document LoRA test-time training, score first (spec/techniques.md §6.3; PR #1536).
 *
 * Documents. The val stream v->tokens[0 .. usable] is cut at every BOS (cfg.bos_id): document k
 * starts at b_k (a BOS position, or 0) and owns the targets at positions b_k+1 .. b_{k+1} (its
 * last target is the next document's BOS: the end of the document is predicted too), clipped to
 * 1 .. usable, so every target pg-eval scores is scored once, and the token and byte counts are
 * pg-eval's.
 *
 * Chunks and windows. A document's targets are taken in chunks of `chunk` positions (the last may
 * be shorter). Chunk (c0, c1] is scored by one forward over the window of inputs [st, c1),
 * st = max(b_k, c1 − window): the last <= window tokens of the document ending at the chunk's
 * end, so no token of another document is ever in the context. window is capped at the model's
 * activation length m->t, and chunk at window.
 *
 * Adapters. For every physical layer and target, a low-rank update of one linear weight W [out,
 * in]: W = W₀ + s·B·A, A [rank, in], B [out, rank], s = alpha/rank. The targets are the query,
 * key and value projections (c_q, c_k, c_v), the attention output projection (proj: "O"), the
 * MLP's output projection (mlp_proj: "MLP") and the untied output head ("head", refused on a tied
 * model, whose head is the input embedding too). The adapted weight is folded into the model
 * before each forward, so the forward is the model's own (every record-stack path included) and
 * with B = 0 the model is the base model bit for bit. The adapter gradients come from the merged
 * weight's gradient G = ∂L/∂W: ∂L/∂B = s·G·Aᵀ, ∂L/∂A = s·Bᵀ·G.
 *   This differs from the records in two ways, both documented in pg-ttt(1): "O" and "MLP" adapt
 * the output projections themselves (the records add a separate path from the block's normed
 * input), and a looped layer shares one adapter over its virtual slots (the records have one per
 * slot).
 *
 * Warm start (PR #1767): A ~ U(±1/√in) from the seed once; at each document's start B = 0 and
 * the AdamW state is zeroed, while A keeps what it learned (it was trained only on scored tokens).
 *
 * The order, per document, per chunk:
 *   (a) score: fold the adapters, forward the window, add the chunk's nll and bytes to the sums
 *       (in position order, in float64);
 *   (b) unless the chunk is the document's last (or lr = 0, or rank = 0): one AdamW step (β1,
 *       β2, eps, decoupled weight decay wd) on loss = the chunk's mean nll. Its gradient is one
 *       backward of the scoring forward with each position's loss weighted 1/(c1 − c0) on the
 *       chunk and 0 before it (the model's side loss_weight). With a head adapter, whose merged
 *       weight's gradient the loss forms before that weighting, it is instead the window's Σnll
 *       minus the prefix window [st, c0)'s (by causality the targets before the chunk have the
 *       same losses in both), both scaled by 1/(c1 − c0): a second forward and backward.
 * Every token an update reads lies in its own chunk's window, which has been scored whole
 * before the update; the hooks report both events for audits.
 */
#ifndef PG_LORA_H
#define PG_LORA_H

#include "bpb.h"
#include "loader.h"
#include "model.h"
#include "ngram.h"

#include <stdint.h>

enum pg_lora_target {
    PG_LORA_Q = 1 << 0,
    PG_LORA_K = 1 << 1,
    PG_LORA_V = 1 << 2,
    PG_LORA_O = 1 << 3,
    PG_LORA_MLP = 1 << 4,
    PG_LORA_HEAD = 1 << 5,
};

struct pg_lora_params {
    unsigned targets;    /* PG_LORA_* bits (Q|K|V|O|MLP) */
    int rank;            /* 0 = no adapter: plain per-document scoring (96) */
    double alpha;        /* s = alpha/rank (144) */
    double lr, beta1, beta2, eps, wd; /* AdamW (1e-4, 0, 0.999, 1e-10, 0.5) */
    int chunk;           /* target positions per chunk (64) */
    int window;          /* the most context tokens of a forward (2048; capped at the model's t) */
    uint64_t seed;       /* A's initialization (1) */
    /* Phased TTT (spec §6.4, PR #1934): 0 = off. The first prefix_docs documents are cut into
     * `phases` phases at documents floor(prefix_docs·k/phases), k = 1..phases; when that many
     * documents have been scored, the base model trains by SGD (momentum phase_momentum, gradient
     * clip phase_clip, lr phase_lr cosine-decayed over the phase's steps) for one pass over every
     * window of v->seq_len tokens that lies wholly in the scored documents (all of them, earlier
     * phases' included), phase_seqs windows per step; the adapters then fold into the new base. */
    int phases;          /* (0; the records: 3) */
    int64_t prefix_docs; /* (2000) */
    double phase_lr, phase_momentum, phase_clip; /* (0.001, 0.9, 1.0) */
    int phase_seqs;      /* (32) */
    /* NULL, or an n-gram mode (ngram.h: tilt, mixture, cache) applied to the scores: the chunk's
     * targets are scored from the model's distribution through it, in stream order */
    const struct pg_ngram_params *ngram;
    int progress;        /* draw a progress line on stderr */
    /* Documents batched by length (spec §6.3; lib/lora_batch.c): 1 = one document at a time, in
     * stream order, adapters folded into the weights (this file); N > 1 = the documents sorted by
     * length, longest first, in batches of N, each document of a batch with its own adapters run
     * beside the weights (the model's side paths), one forward per chunk index for the whole
     * batch. Not with phases, an n-gram mode or a head adapter. (1) */
    int batch_docs;
    /* Warm start (PR #1767): A keeps what it learned from one document to the next (in batches:
     * from the previous document of the same slot); 0 = A is its initial value at every
     * document, so that the documents are independent of each other. (1) */
    int warm_a;
};

/* Optional outputs for tests and audits; positions index v->tokens. */
struct pg_lora_hooks {
    float *token_losses; /* NULL, or v->usable entries: target p's nll goes to token_losses[p − 1] */
    void *ctx;
    /* after the targets at positions [begin, end) of document doc were scored */
    void (*scored)(void *ctx, int64_t doc, int64_t begin, int64_t end);
    /* after an update that read the val tokens at positions [begin, end) */
    void (*updated)(void *ctx, int64_t doc, int64_t begin, int64_t end);
    /* NULL, or an audit (lib/audit.h) in which audit_samples targets' distributions are checked
     * as the run reaches them (pg_ngram_audit_at): the adapted model's, through the n-gram mode
     * when there is one */
    struct pg_audit *audit;
    int audit_samples;
};

struct pg_lora_result {
    double nll_sum, tokens, bytes, val_loss, val_bpb;
    int64_t docs, chunks, steps;
    int64_t phases_run, phase_steps; /* phases taken, and their SGD steps */
    int adapters;        /* adapted weight matrices */
    size_t adapter_params;
    double seconds;
};

void pg_lora_params_default(struct pg_lora_params *p);

/* Parses a comma-separated target list ("q,k,v,o,mlp,head", or "all"). @return 0 and *targets,
 * or PG_E_INVAL naming the bad word. */
int pg_lora_parse_targets(const char *s, unsigned *targets);

/* Runs the whole pass. m must be a training model (gradients) on a host-memory backend with
 * activations for at least one sequence; its parameters are restored to the base weights on
 * return. @return 0, PG_E_INVAL (parameters, a device backend, a head adapter on a tied model),
 * PG_E_FORMAT (a token outside the vocabulary, a diverged loss) or PG_E_NOMEM. */
int pg_lora_run(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
                const struct pg_lora_params *p, const struct pg_lora_hooks *hooks, struct pg_lora_result *r);

/* The parameter and model checks pg_lora_run makes first. @return 0 or PG_E_INVAL. */
int pg_lora_check(const struct pg_model *m, const struct pg_lora_params *p);

/* pg_lora_run with p->batch_docs > 1 (lib/lora_batch.c; pg_lora_run calls it). */
int pg_lora_run_batched(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
                        const struct pg_lora_params *p, const struct pg_lora_hooks *hooks, struct pg_lora_result *r);

/* Shared by both runners: A's initialization, U(±1/√in) from a stream of (seed, adapter, slot),
 * and one AdamW step (p's betas, eps, lr and decoupled weight decay; t = steps so far, >= 1). */
void pg_lora_init_a(pg_real *a, int rank, int in, uint64_t seed, uint64_t adapter, int slot);
void pg_lora_adamw(const struct pg_lora_params *p, int64_t t, pg_real *x, const pg_real *g, pg_real *mo, pg_real *ve,
                   size_t n);

/* For tests: the adapters of a session, exposed so that a gradient can be checked. A session
 * holds the model with the adapters folded in. */
struct pg_lora;
int pg_lora_open(struct pg_lora **s, struct pg_model *m, const struct pg_lora_params *p);
/* Number of adapters, and adapter i's tensors: A [rank, in] and B [out, rank] (host memory). */
int pg_lora_count(const struct pg_lora *s);
void pg_lora_adapter(struct pg_lora *s, int i, pg_real **a, pg_real **b, int *in, int *out);
/* Folds the current A and B into the model's weights (W = W₀ + s·B·A). */
void pg_lora_fold(struct pg_lora *s);
/* From the model's gradients (of the merged weights), adapter i's ∂/∂A and ∂/∂B into da, db. */
void pg_lora_grad(struct pg_lora *s, int i, pg_real *da, pg_real *db);
/* Restores the base weights and frees the session. Safe on NULL. */
void pg_lora_close(struct pg_lora *s);

#endif
