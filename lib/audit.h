/* audit.h: a legality audit of an evaluation mode (issue 18 item 6; the challenge's rules as
 * spec/techniques.md §7 reads them): on a sample of targets, the distribution a mode gives target
 * p must not change when the tokens at positions >= p change (no look-ahead), and must sum to 1
 * over the vocabulary; over the whole run, every target must be scored exactly once, and before
 * any update (test-time training, a cache) that read it.
 *
 * A mode reports through pg_audit_scored and pg_audit_updated as it runs, and lends its scorer to
 * pg_audit_check_dists; pg_audit_finish then counts the targets never scored. The audit holds a
 * byte per target, so it costs one byte per val token.
 */
#ifndef PG_AUDIT_H
#define PG_AUDIT_H

#include "rng.h"

#include <stdint.h>
#include <stdio.h>

/* The mode's distribution for the target at stream position p (1 <= p < ntok): logp[0..vocab)
 * in natural log. It may read tokens[0..ntok) as it likes; the audit changes tokens[p..) to
 * catch a read of the future. @return 0 or an error (which stops the audit). */
typedef int (*pg_audit_dist_fn)(void *ctx, const uint16_t *tokens, int64_t p, double *logp);

struct pg_audit {
    int64_t usable;         /* targets 1..usable */
    int vocab;
    uint8_t *state;         /* per target: scored count (bits 0-1, saturating), bit 2 read unscored by an update */
    int64_t samples;        /* targets whose distribution was checked */
    int64_t lookahead;      /* sampled targets whose distribution moved with the future */
    int64_t unnormalized;   /* sampled targets whose distribution does not sum to 1 */
    /* targets scored more than once, never, or after an update read them */
    int64_t scored_twice, unscored, update_first;
    double worst_future;    /* the largest |Δ log p| seen when the future changed */
    double worst_sum;       /* the largest |Σp − 1| */
    double sampled_nll;     /* Σ −log p(target) over the checked targets' distributions: a test can
                             * compare it with the run's own losses there (the live state's) */
    char first[256];        /* the first violation, in words */
};

/* @return 0 or PG_E_NOMEM. */
int pg_audit_init(struct pg_audit *a, int64_t usable, int vocab);
void pg_audit_free(struct pg_audit *a);

/* The targets at positions [begin, end) were scored. */
void pg_audit_scored(struct pg_audit *a, int64_t begin, int64_t end);

/* An update (a training step, a cache insert) read the val tokens at positions [begin, end):
 * every target among them must have been scored already. */
void pg_audit_updated(struct pg_audit *a, int64_t begin, int64_t end);

/* Checks `samples` targets spread over 1..min(usable, ntok-1) (a fixed pseudo-random choice
 * from seed): each one's distribution sums to 1 within 1e-4, and is unchanged (within tol in
 * log p) after the tokens at positions [p, p+reach) are replaced by other ids. tokens is changed
 * and restored. @return 0 or the scorer's error. */
int pg_audit_check_dists(struct pg_audit *a, pg_audit_dist_fn fn, void *ctx, uint16_t *tokens, int64_t ntok,
                         int64_t reach, int samples, double tol, uint64_t seed);

/* One target's part of pg_audit_check_dists, for a mode that checks its distributions as it
 * runs (its live state): the sum and look-ahead checks on target p, r choosing the other ids.
 * @return 0 or the scorer's error. */
int pg_audit_check_one(struct pg_audit *a, pg_audit_dist_fn fn, void *ctx, uint16_t *tokens, int64_t ntok, int64_t p,
                       int64_t reach, double tol, struct pg_rng *r);

/* The targets such a mode checks, as pg_audit_check_dists chooses them (the first, the last,
 * random ones, drawn from r), ascending in out[samples]. @return how many (0 when none). */
int pg_audit_pick(const struct pg_audit *a, int64_t ntok, int samples, struct pg_rng *r, int64_t *out);

/* Counts the targets never scored; call once at the end. */
void pg_audit_finish(struct pg_audit *a);

/* @return 1 if no rule was broken. */
int pg_audit_passed(const struct pg_audit *a);

/* One line per rule, "audit: <rule>: pass|FAIL (...)", to f. */
void pg_audit_print(const struct pg_audit *a, FILE *f, const char *prog);

#endif
