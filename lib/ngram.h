/* ngram.h: evaluation-time n-gram modes over pg-eval's windows (spec/techniques.md §7):
 *
 *   - tilt (§7.3, the accepted causal token tilt of 04-09 A2): a table of the contexts of orders
 *     8, 10, 12, 14, 16 over the tokens already scored gives a hint h for position t (the highest
 *     order whose most frequent follower has confidence c = best/count >= θ with count >= m; θ, m:
 *     orders 8-10 0.70, 3; 11-13 0.60, 2; 14-16 0.50, 2), and the model's distribution is tilted
 *     towards it, normalized: p'(v) = p(v)·e^{β[v=h]}/Z, β = 2c, Z = 1 + p(h)(e^β − 1). (The
 *     record's 0.1 agreement bonus is left out.)
 *   - mix (legal, none of the records has it): an interpolated Witten-Bell n-gram distribution of
 *     orders 1..order over the tokens already scored (uniform below order 1), which sums to 1 over
 *     the vocabulary by construction: P_n(w) = (c(h,w) + T(h)·P_{n−1}(w)) / (c(h) + T(h)), T(h) the
 *     distinct followers of h; the model's (tilted) distribution p and it are mixed as
 *     (1 − λ)·p + λ·P, λ = σ(θ_k), one θ per k = the longest order whose context has been seen,
 *     and θ_k learns online by a gradient step on the mixture's log loss after each token is scored.
 *   - cache (NOT compliant; PR #826's order-9 backoff cache, for comparison only): orders 2..9,
 *     hashed counts of contexts and of (context, target) pairs in 2^22 buckets per order; the
 *     highest order with a context count >= 2 gives p_ng = min(1, full/ctx) and the score uses
 *     (1 − α)·p(y) + α·p_ng, α = 0.05 + 0.55·σ(2(H − 3)), H the model's entropy (nats). It reads
 *     the target to form its probability (the PR #779 ruling: condition 1) and its values over the
 *     vocabulary do not sum to 1 (RFC PR #886: condition 2).
 * Every mode is score-first: the tables take token t only after t has been scored.
 *
 * For audits, pg_ngram_dist gives the full distribution at the next position (compliant modes),
 * and the per-position order is: pg_ngram_dist/score, then pg_ngram_push.
 */
#ifndef PG_NGRAM_H
#define PG_NGRAM_H

#include "audit.h"
#include "bpb.h"
#include "loader.h"
#include "model.h"
#include "rng.h"

#include <stdint.h>

struct pg_ngram_params {
    int tilt;        /* the causal token tilt */
    int mix;         /* the Witten-Bell mixture */
    int order;       /* the mixture's highest order, 1..16 (6) */
    double mix_lr;   /* the mixing weights' online step (0.02) */
    int cache;       /* #826's cache (non-compliant) */
    int cache_bits;  /* its buckets per order: 2^cache_bits (22, as #826) */
};

struct pg_ngram;

void pg_ngram_params_default(struct pg_ngram_params *p);

/* A state over a vocabulary of v tokens. @return 0, PG_E_INVAL or PG_E_NOMEM. */
int pg_ngram_open(struct pg_ngram **s, int v, const struct pg_ngram_params *p);
void pg_ngram_close(struct pg_ngram *s);

/* The context: the tokens scored so far are those given to pg_ngram_push, in order. */

/* The distribution at the next position from the model's log-probabilities logp[v] (double):
 * out[v] (probabilities). Not for the cache, which has none (PG_E_INVAL). */
int pg_ngram_dist(struct pg_ngram *s, const double *logp, double *out);

/* The nll of target y at the next position (the mode's score), from the model's logp[v]. */
double pg_ngram_score(struct pg_ngram *s, const double *logp, int y);

/* After scoring: learns from y (the mixing weights) and adds it to the context. @return 0 or
 * PG_E_NOMEM. */
int pg_ngram_push(struct pg_ngram *s, const double *logp, int y);

/* Model log-probabilities for a window: a forward of x[n] (b = 1, m->t lowered to n, n <= m->t)
 * whose final hidden states give logp[n·V] (double: log-softmax of the soft-capped logits).
 * Scratch is allocated inside. @return 0 or PG_E_NOMEM. */
int pg_ngram_model_logp(struct pg_model *m, const int32_t *x, const int32_t *y, int n, double *logp);

struct pg_ngram_result {
    double nll_sum, tokens, bytes, val_loss, val_bpb, seconds;
    double model_nll; /* the model's own Σnll over the same targets (from logp) */
};

/* Scores pg-eval's windows of L = v->seq_len tokens (<= m->t) with the mode: the sliding windows
 * of stride S (eval.h's pg_slide: each target scored once, by the window that gives it the longest
 * context; 0 or L = the plain non-overlapping windows), the targets in stream order; token_losses (NULL, or
 * v->usable floats) receives each target's nll; audit (NULL or lib/audit.h's) is told of every
 * scored target and every table update, and checks audit_samples targets' distributions as the
 * run reaches them (pg_ngram_audit_at). Bytes are counted as pg-eval does (the CaseOps sidecar
 * when the val set has one). @return 0 or an error. */
int pg_ngram_run(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
                 const struct pg_ngram_params *p, int stride, float *token_losses, struct pg_audit *audit,
                 int audit_samples, struct pg_ngram_result *r);

/* The audit of a run, on its live state: the distribution of each sampled target (chosen as
 * pg_audit_check_dists does, from seed) is checked just before the run scores it, from the
 * tables as they stand and the model as it is, by pg_audit_check_one. With a NULL audit every
 * call does nothing. */
struct pg_ngram_audit {
    struct pg_audit *a;
    int64_t ntok, *pick;
    int npick, next;
    struct pg_rng r;
    /* the window being checked */
    struct pg_ngram *s;
    struct pg_model *m;
    int64_t st;
    int n;
    int32_t *x, *y;
    double *logp;
    double temperature; /* with no n-gram state: the model's distribution at this temperature (0 or 1: its own) */
};

/* ntok: the stream's tokens; windows of at most max_n tokens. @return 0 or PG_E_NOMEM. */
int pg_ngram_audit_open(struct pg_ngram_audit *u, struct pg_audit *a, int64_t ntok, int samples, uint64_t seed,
                        int max_n, int vocab);

/* Just before target p is scored from state s (NULL: the model alone, for the modes that adapt
 * the model itself: LoRA and global TTT), in the window whose inputs are tokens[st, st+n):
 * checks p if it was sampled (the model runs forwards of the window: *forwarded, when not NULL,
 * is set to 1 then). @return 0 or an error. */
int pg_ngram_audit_at(struct pg_ngram_audit *u, struct pg_ngram *s, struct pg_model *m, uint16_t *tokens, int64_t st,
                      int n, int64_t p, int *forwarded);
void pg_ngram_audit_close(struct pg_ngram_audit *u);

#endif
