/* test_audit.c: the legality audit (lib/audit.h) against fake modes: an honest scorer (a
 * normalized distribution from the two tokens before the target) passes; scorers that peek at
 * the target or at a later token, or that do not normalize, are caught; scoring a target twice or
 * never, and an update that reads targets before they are scored, are caught; the score-first
 * order of chunked test-time training passes. */
#include "../tap.h"

#include "../../lib/audit.h"
#include "../../lib/err.h"

#include <math.h>
#include <string.h>

#define V 16
#define N 200

enum { HONEST, PEEK_TARGET, PEEK_LATER, UNNORMALIZED };

static int scorer(void *ctx, const uint16_t *tok, int64_t p, double *logp)
{
    int mode = *(int *)ctx;
    double z[V], mx = -1e300, s = 0;
    for (int i = 0; i < V; i++) {
        z[i] = sin(0.7 * i + tok[p - 1]) + (p >= 2 ? cos(1.3 * i * tok[p - 2]) : 0);
        if (mode == PEEK_TARGET) z[i] += (i == tok[p]) ? 2.0 : 0; /* the look-ahead of a leaky cache */
        if (mode == PEEK_LATER && p + 3 < N) z[i] += 0.01 * i * tok[p + 3];
        mx = z[i] > mx ? z[i] : mx;
    }
    for (int i = 0; i < V; i++) s += exp(z[i] - mx);
    for (int i = 0; i < V; i++) logp[i] = z[i] - mx - (mode == UNNORMALIZED ? 0 : log(s));
    return 0;
}

static uint16_t tokens[N];

static struct pg_audit dists(int mode, int64_t reach)
{
    struct pg_audit a;
    if (pg_audit_init(&a, N - 1, V)) bail_out("init");
    uint16_t before[N];
    memcpy(before, tokens, sizeof before);
    if (pg_audit_check_dists(&a, scorer, &mode, tokens, N, reach, 40, 1e-12, 5)) bail_out("check");
    ok(memcmp(before, tokens, sizeof before) == 0, "mode %d: tokens restored after the check", mode);
    return a;
}

int main(void)
{
    for (int i = 0; i < N; i++) tokens[i] = (uint16_t)((i * 7 + i / 3) % V);

    struct pg_audit a = dists(HONEST, 64);
    ok(a.samples == 40 && a.lookahead == 0 && a.unnormalized == 0, "honest scorer: 40 samples, no violation");
    ok(a.worst_sum < 1e-12, "honest scorer: sums to 1 (%.1e)", a.worst_sum);
    pg_audit_free(&a);

    a = dists(PEEK_TARGET, 64);
    ok(a.lookahead == 40, "a scorer reading its target is caught at every sample (%lld)", (long long)a.lookahead);
    ok(strstr(a.first, "moved") != NULL, "the first violation is named: %s", a.first);
    pg_audit_free(&a);

    a = dists(PEEK_LATER, 64);
    ok(a.lookahead > 30, "a scorer reading 3 tokens ahead is caught (%lld of 40)", (long long)a.lookahead);
    pg_audit_free(&a);
    a = dists(PEEK_LATER, 2);
    ok(a.lookahead == 0, "... but not with a reach of 2 tokens (the reach must cover the window)");
    pg_audit_free(&a);

    a = dists(UNNORMALIZED, 64);
    ok(a.unnormalized == 40 && a.lookahead == 0, "an unnormalized distribution is caught (%lld)",
       (long long)a.unnormalized);
    pg_audit_finish(&a);
    ok(!pg_audit_passed(&a), "... and fails the audit");
    pg_audit_free(&a);

    /* Scoring bookkeeping. */
    pg_audit_init(&a, 100, V);
    pg_audit_scored(&a, 1, 101);
    pg_audit_finish(&a);
    ok(pg_audit_passed(&a), "every target once: pass");
    pg_audit_free(&a);

    pg_audit_init(&a, 100, V);
    pg_audit_scored(&a, 1, 60);
    pg_audit_scored(&a, 50, 101);
    pg_audit_finish(&a);
    ok(a.scored_twice == 10 && !pg_audit_passed(&a), "overlapping scores: 10 targets twice, caught");
    pg_audit_free(&a);

    pg_audit_init(&a, 100, V);
    pg_audit_scored(&a, 1, 50);
    pg_audit_scored(&a, 51, 101);
    pg_audit_finish(&a);
    ok(a.unscored == 1 && !pg_audit_passed(&a), "a gap: target 50 never scored, caught (%s)", a.first);
    pg_audit_free(&a);

    /* Score-first TTT: score chunk k, then train on it (reading tokens [k0-1, k1)), then go on. */
    pg_audit_init(&a, 100, V);
    for (int k = 0; k < 4; k++) {
        pg_audit_scored(&a, 1 + 25 * k, 26 + 25 * k);
        if (k < 3) pg_audit_updated(&a, 25 * k, 26 + 25 * k);
    }
    pg_audit_finish(&a);
    ok(pg_audit_passed(&a), "score-first chunks: pass");
    pg_audit_free(&a);

    pg_audit_init(&a, 100, V);
    for (int k = 0; k < 4; k++) {
        if (k < 3) pg_audit_updated(&a, 25 * k, 26 + 25 * k); /* trains first: the illegal order */
        pg_audit_scored(&a, 1 + 25 * k, 26 + 25 * k);
    }
    pg_audit_finish(&a);
    ok(a.update_first == 75 && !pg_audit_passed(&a), "train-then-score: 75 targets read before scoring, caught (%s)",
       a.first);
    pg_audit_free(&a);

    pg_audit_init(&a, 100, V);
    pg_audit_scored(&a, 1, 26);
    pg_audit_updated(&a, 0, 27); /* one token past the scored chunk */
    pg_audit_scored(&a, 26, 101);
    pg_audit_finish(&a);
    ok(a.update_first == 1 && !pg_audit_passed(&a), "an update reading one token too far is caught");
    pg_audit_free(&a);
    return done_testing();
}
