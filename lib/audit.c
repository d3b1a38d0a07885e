/* audit.c: the legality audit (see audit.h). */
#include "audit.h"

#include "err.h"
#include "rng.h"
#include "xio.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SCORED_MASK 3u
#define READ_BIT 4u

int pg_audit_init(struct pg_audit *a, int64_t usable, int vocab)
{
    memset(a, 0, sizeof *a);
    a->usable = usable;
    a->vocab = vocab;
    a->state = pg_calloc((size_t)usable + 1, 1);
    return a->state ? 0 : PG_E_NOMEM;
}

void pg_audit_free(struct pg_audit *a)
{
    free(a->state);
    memset(a, 0, sizeof *a);
}

__attribute__((format(printf, 2, 3))) static void first(struct pg_audit *a, const char *fmt, ...)
{
    if (a->first[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->first, sizeof a->first, fmt, ap);
    va_end(ap);
}

void pg_audit_scored(struct pg_audit *a, int64_t begin, int64_t end)
{
    for (int64_t p = begin < 1 ? 1 : begin; p < end && p <= a->usable; p++) {
        uint8_t *s = &a->state[p];
        if ((*s & SCORED_MASK) >= 1) {
            a->scored_twice++;
            first(a, "target %lld scored twice", (long long)p);
        }
        if ((*s & SCORED_MASK) < SCORED_MASK) (*s)++;
    }
}

void pg_audit_updated(struct pg_audit *a, int64_t begin, int64_t end)
{
    for (int64_t p = begin < 1 ? 1 : begin; p < end && p <= a->usable; p++) {
        uint8_t *s = &a->state[p];
        if (!(*s & SCORED_MASK) && !(*s & READ_BIT)) { /* each target counted once */
            a->update_first++;
            first(a, "an update read target %lld before it was scored", (long long)p);
            *s |= READ_BIT;
        }
    }
}

int pg_audit_check_one(struct pg_audit *a, pg_audit_dist_fn fn, void *ctx, uint16_t *tokens, int64_t ntok, int64_t p,
                       int64_t reach, double tol, struct pg_rng *r)
{
    double *p0 = pg_malloc((size_t)a->vocab * sizeof *p0), *p1 = pg_malloc((size_t)a->vocab * sizeof *p1);
    uint16_t *keep = pg_malloc((size_t)(reach > 0 ? reach : 1) * sizeof *keep);
    int rc = p0 && p1 && keep ? 0 : PG_E_NOMEM;
    if (!rc) rc = fn(ctx, tokens, p, p0);
    if (!rc) {
        double s = 0;
        for (int i = 0; i < a->vocab; i++) s += exp(p0[i]);
        double se = fabs(s - 1);
        if (se > a->worst_sum) a->worst_sum = se;
        if (p < ntok) a->sampled_nll -= p0[tokens[p]];
        if (!(se <= 1e-4)) {
            a->unnormalized++;
            first(a, "the distribution of target %lld sums to %.6f", (long long)p, s);
        }
        int64_t n = p + reach <= ntok ? reach : ntok - p;
        memcpy(keep, tokens + p, (size_t)n * sizeof *keep);
        for (int64_t i = 0; i < n; i++) /* another id, never the same one */
            tokens[p + i] = (uint16_t)((keep[i] + 1 + pg_rng_below(r, (uint64_t)a->vocab - 1)) % (uint64_t)a->vocab);
        rc = fn(ctx, tokens, p, p1);
        memcpy(tokens + p, keep, (size_t)n * sizeof *keep);
        if (!rc) {
            double worst = 0;
            for (int i = 0; i < a->vocab; i++) {
                double dlt = fabs(p1[i] - p0[i]);
                if (!(dlt <= worst)) worst = dlt; /* NaN counts as the worst */
            }
            if (!(worst <= a->worst_future)) a->worst_future = worst;
            if (!(worst <= tol)) {
                a->lookahead++;
                first(a, "target %lld: its distribution moved by %.3g when tokens %lld..%lld changed", (long long)p,
                      worst, (long long)p, (long long)(p + n - 1));
            }
            a->samples++;
        }
    }
    free(p0), free(p1), free(keep);
    return rc;
}

/* The first target, the last one and window edges are where a mode slips: sample them too. */
static int64_t pick(struct pg_rng *r, int k, int64_t hi)
{
    return k == 0 ? 1 : k == 1 ? hi : 1 + (int64_t)pg_rng_below(r, (uint64_t)hi);
}

int pg_audit_check_dists(struct pg_audit *a, pg_audit_dist_fn fn, void *ctx, uint16_t *tokens, int64_t ntok,
                         int64_t reach, int samples, double tol, uint64_t seed)
{
    int64_t hi = a->usable < ntok - 1 ? a->usable : ntok - 1;
    if (hi < 1 || samples < 1) return 0;
    struct pg_rng r;
    pg_rng_seed(&r, seed);
    int rc = 0;
    for (int k = 0; k < samples && !rc; k++)
        rc = pg_audit_check_one(a, fn, ctx, tokens, ntok, pick(&r, k, hi), reach, tol, &r);
    return rc;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

int pg_audit_pick(const struct pg_audit *a, int64_t ntok, int samples, struct pg_rng *r, int64_t *out)
{
    int64_t hi = a->usable < ntok - 1 ? a->usable : ntok - 1;
    if (hi < 1 || samples < 1) return 0;
    for (int k = 0; k < samples; k++) out[k] = pick(r, k, hi);
    qsort(out, (size_t)samples, sizeof *out, cmp_i64);
    return samples;
}

void pg_audit_finish(struct pg_audit *a)
{
    a->unscored = 0;
    for (int64_t p = 1; p <= a->usable; p++)
        if (!(a->state[p] & SCORED_MASK)) {
            if (!a->unscored) first(a, "target %lld never scored", (long long)p);
            a->unscored++;
        }
}

int pg_audit_passed(const struct pg_audit *a)
{
    return !a->lookahead && !a->unnormalized && !a->scored_twice && !a->unscored && !a->update_first;
}

void pg_audit_print(const struct pg_audit *a, FILE *f, const char *prog)
{
    fprintf(f, "%s: audit: no look-ahead: %s (%lld sampled targets, largest change %.3g)\n", prog,
            a->lookahead ? "FAIL" : "pass", (long long)a->samples, a->worst_future);
    fprintf(f, "%s: audit: normalized: %s (largest |sum p - 1| %.3g)\n", prog, a->unnormalized ? "FAIL" : "pass",
            a->worst_sum);
    fprintf(f, "%s: audit: each target scored once: %s (%lld twice, %lld never, of %lld)\n", prog,
            a->scored_twice || a->unscored ? "FAIL" : "pass", (long long)a->scored_twice, (long long)a->unscored,
            (long long)a->usable);
    fprintf(f, "%s: audit: scored before any update read it: %s (%lld after)\n", prog,
            a->update_first ? "FAIL" : "pass", (long long)a->update_first);
    if (a->first[0]) fprintf(f, "%s: audit: first violation: %s\n", prog, a->first);
}
