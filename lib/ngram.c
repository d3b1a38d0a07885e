/* ngram.c: the tilt, the Witten-Bell mixture and #826's cache (see ngram.h).
 *
 * One context store serves the tilt and the mixture: a hash table from (length, the last
 * `length` tokens) to the context's count, its followers and their counts, and its most frequent
 * follower. Contexts are keyed by a 64-bit hash of their tokens; a collision (about 2^-64 per pair)
 * would merge two contexts' counts, never read the target. */
#include "ngram.h"

#include "audit.h"
#include "err.h"
#include "eval.h"
#include "progress.h"
#include "rng.h"
#include "xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { HIST = 16, CACHE_LO = 2, CACHE_HI = 9 };

struct ctx {
    uint64_t key;
    int32_t count, nf, cap, best_tok, best_count;
    int32_t *ftok, *fcnt;
};

struct pg_ngram {
    struct pg_ngram_params p;
    int v;
    int32_t hist[HIST]; /* the last tokens pushed, hist[(n − 1) % HIST] the latest */
    int64_t n;          /* tokens pushed */
    struct ctx *ctx;    /* contexts; ctx[0] unused */
    int64_t nctx, capctx;
    int64_t *slot;      /* open addressing: index into ctx, 0 = empty */
    uint64_t mask;
    double theta[HIST + 1]; /* the mixture's logit weights, by the longest seen context */
    double *scratch;    /* v */
    /* the latest score, for the learning step in push */
    int last_k, scored;
    double last_pm, last_pn, last_lam;
    uint32_t *cache_ctx, *cache_full; /* #826: per order, 2^CACHE_BITS buckets */
};

void pg_ngram_params_default(struct pg_ngram_params *p)
{
    p->tilt = 0, p->mix = 0, p->order = 6, p->mix_lr = 0.02, p->cache = 0, p->cache_bits = 22;
}

static uint64_t mix64(uint64_t h, uint64_t x)
{
    h ^= x + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 31);
}

/* The key of the context of the last len tokens (len <= min(n, HIST)). */
static uint64_t ctx_key(const struct pg_ngram *s, int len)
{
    uint64_t h = mix64(0x1234567ull, (uint64_t)len);
    for (int k = 1; k <= len; k++) h = mix64(h, (uint64_t)(uint32_t)s->hist[(s->n - k) % HIST]);
    return h | 1; /* never 0 */
}

static struct ctx *find(const struct pg_ngram *s, uint64_t key)
{
    for (uint64_t i = key & s->mask;; i = (i + 1) & s->mask) {
        int64_t j = s->slot[i];
        if (!j) return NULL;
        if (s->ctx[j].key == key) return &s->ctx[j];
    }
}

static int grow(struct pg_ngram *s)
{
    uint64_t cap = (s->mask + 1) * 2;
    int64_t *slot = pg_calloc(cap, sizeof *slot);
    if (!slot) return PG_E_NOMEM;
    for (int64_t j = 1; j < s->nctx; j++)
        for (uint64_t i = s->ctx[j].key & (cap - 1);; i = (i + 1) & (cap - 1))
            if (!slot[i]) {
                slot[i] = j;
                break;
            }
    free(s->slot);
    s->slot = slot, s->mask = cap - 1;
    return 0;
}

static struct ctx *find_or_add(struct pg_ngram *s, uint64_t key)
{
    struct ctx *c = find(s, key);
    if (c) return c;
    if ((uint64_t)s->nctx * 2 >= s->mask + 1 && grow(s)) return NULL;
    if (s->nctx == s->capctx) {
        int64_t cap = s->capctx * 2;
        struct ctx *n = realloc(s->ctx, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        s->ctx = n, s->capctx = cap;
    }
    int64_t j = s->nctx++;
    memset(&s->ctx[j], 0, sizeof s->ctx[j]);
    s->ctx[j].key = key;
    for (uint64_t i = key & s->mask;; i = (i + 1) & s->mask)
        if (!s->slot[i]) {
            s->slot[i] = j;
            break;
        }
    return &s->ctx[j];
}

static int add_follower(struct ctx *c, int y)
{
    int32_t i;
    for (i = 0; i < c->nf && c->ftok[i] != y; i++) {}
    if (i == c->nf) {
        if (c->nf == c->cap) {
            int32_t cap = c->cap ? 2 * c->cap : 2;
            int32_t *t = realloc(c->ftok, (size_t)cap * sizeof *t), *n;
            if (!t) return PG_E_NOMEM;
            c->ftok = t;
            if (!(n = realloc(c->fcnt, (size_t)cap * sizeof *n))) return PG_E_NOMEM;
            c->fcnt = n, c->cap = cap;
        }
        c->ftok[i] = y, c->fcnt[i] = 0, c->nf++;
    }
    c->fcnt[i]++, c->count++;
    if (c->fcnt[i] > c->best_count) c->best_count = c->fcnt[i], c->best_tok = y;
    return 0;
}

int pg_ngram_open(struct pg_ngram **out, int v, const struct pg_ngram_params *p)
{
    *out = NULL;
    if (p->order < 1 || p->order > HIST)
        return pg_error(PG_E_INVAL, "n-gram order %d: must be 1 to %d", p->order, HIST);
    if (!(p->mix_lr >= 0)) return pg_error(PG_E_INVAL, "n-gram mixing step %g: must be >= 0", p->mix_lr);
    if (p->cache && (p->cache_bits < 1 || p->cache_bits > 26))
        return pg_error(PG_E_INVAL, "n-gram cache of 2^%d buckets: must be 2^1 to 2^26", p->cache_bits);
    if (p->cache && (p->tilt || p->mix))
        return pg_error(PG_E_INVAL, "the n-gram cache does not combine with the tilt or the mixture");
    struct pg_ngram *s = pg_calloc(1, sizeof *s);
    if (!s) return PG_E_NOMEM;
    s->p = *p, s->v = v, s->mask = 1023, s->capctx = 1024, s->nctx = 1;
    s->slot = pg_calloc(s->mask + 1, sizeof *s->slot);
    s->ctx = pg_calloc((size_t)s->capctx, sizeof *s->ctx);
    s->scratch = pg_calloc((size_t)v, sizeof *s->scratch);
    for (int k = 0; k <= HIST; k++) s->theta[k] = -2.0; /* λ = 0.12 at the start */
    int rc = s->slot && s->ctx && s->scratch ? 0 : PG_E_NOMEM;
    if (!rc && p->cache) {
        size_t n = (size_t)(CACHE_HI - CACHE_LO + 1) << s->p.cache_bits;
        s->cache_ctx = pg_calloc(n, sizeof *s->cache_ctx);
        s->cache_full = pg_calloc(n, sizeof *s->cache_full);
        if (!s->cache_ctx || !s->cache_full) rc = PG_E_NOMEM;
    }
    if (rc) {
        pg_ngram_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void pg_ngram_close(struct pg_ngram *s)
{
    if (!s) return;
    for (int64_t j = 1; j < s->nctx; j++) free(s->ctx[j].ftok), free(s->ctx[j].fcnt);
    free(s->ctx), free(s->slot), free(s->scratch), free(s->cache_ctx), free(s->cache_full);
    free(s);
}

/* The tilt's hint: the token and β, or −1. */
static int hint(const struct pg_ngram *s, double *beta)
{
    for (int len = 16; len >= 8; len -= 2) {
        if (s->n < len) continue;
        const struct ctx *c = find(s, ctx_key(s, len));
        if (!c) continue;
        double th = len <= 10 ? 0.70 : len <= 13 ? 0.60 : 0.50;
        int mn = len <= 10 ? 3 : 2;
        double conf = (double)c->best_count / c->count;
        if (c->count >= mn && conf >= th) {
            *beta = 2.0 * conf;
            return c->best_tok;
        }
    }
    return -1;
}

int pg_ngram_dist(struct pg_ngram *s, const double *logp, double *out)
{
    if (s->p.cache) return pg_error(PG_E_INVAL, "the n-gram cache has no distribution: it is not compliant");
    int v = s->v;
    for (int i = 0; i < v; i++) out[i] = exp(logp[i]);
    double beta;
    int h = s->p.tilt ? hint(s, &beta) : -1;
    if (h >= 0) {
        double z = 1 + out[h] * (exp(beta) - 1);
        for (int i = 0; i < v; i++) out[i] /= z;
        out[h] *= exp(beta);
    }
    s->last_k = -1;
    if (!s->p.mix) return 0;
    /* Witten-Bell from the uniform distribution up through the seen contexts */
    double *q = s->scratch;
    for (int i = 0; i < v; i++) q[i] = 1.0 / v;
    int k = 0;
    for (int len = 0; len < s->p.order && len <= s->n; len++) {
        const struct ctx *c = find(s, ctx_key(s, len));
        if (!c) break; /* a longer context cannot have been seen either */
        double den = (double)c->count + c->nf, keep = c->nf / den;
        for (int i = 0; i < v; i++) q[i] *= keep;
        for (int32_t f = 0; f < c->nf; f++) q[c->ftok[f]] += c->fcnt[f] / den;
        k = len + 1;
    }
    double lam = 1 / (1 + exp(-s->theta[k]));
    s->last_k = k, s->last_lam = lam;
    for (int i = 0; i < v; i++) out[i] = (1 - lam) * out[i] + lam * q[i];
    return 0;
}

static uint64_t cache_hash(const struct pg_ngram *s, int n)
{
    uint64_t h = 0;
    for (int k = 1; k < n; k++) h ^= (uint64_t)(uint32_t)s->hist[(s->n - k) % HIST] * (0x9E3779B1ull + 2 * k + 1);
    return h;
}

double pg_ngram_score(struct pg_ngram *s, const double *logp, int y)
{
    s->scored = 1;
    if (s->p.cache) {
        double pm = exp(logp[y]), ent = 0;
        for (int i = 0; i < s->v; i++) ent -= exp(logp[i]) * logp[i];
        double alpha = 0.05 + 0.55 / (1 + exp(-2 * (ent - 3)));
        uint64_t mask = ((uint64_t)1 << s->p.cache_bits) - 1;
        for (int n = CACHE_HI; n >= CACHE_LO; n--) {
            if (s->n < n - 1) continue;
            uint64_t h = cache_hash(s, n), base = (uint64_t)(n - CACHE_LO) << s->p.cache_bits;
            uint32_t cc = s->cache_ctx[base + (h & mask)];
            /* the key holds the target: what the PR #779 ruling forbids */
            uint32_t fc = s->cache_full[base + ((h ^ ((uint64_t)y * 0x85EBCA77ull)) & mask)];
            if (cc >= 2) {
                double png = fc < cc ? (double)fc / cc : 1.0;
                return -log((1 - alpha) * pm + alpha * png);
            }
        }
        return -logp[y];
    }
    double *d = malloc((size_t)s->v * sizeof *d);
    if (!d) return NAN;
    pg_ngram_dist(s, logp, d);
    double py = d[y];
    if (s->last_k >= 0) { /* for the learning step: the two parts at y */
        double pt = (py - s->last_lam * s->scratch[y]) / (1 - s->last_lam);
        s->last_pm = pt, s->last_pn = s->scratch[y];
    }
    free(d);
    return -log(py);
}

int pg_ngram_push(struct pg_ngram *s, const double *logp, int y)
{
    (void)logp;
    if (s->scored && s->last_k >= 0 && s->p.mix) {
        /* d(−log((1−λ)pm + λpn))/dθ = −(pn − pm)·λ(1−λ) / mix */
        double lam = s->last_lam, mixp = (1 - lam) * s->last_pm + lam * s->last_pn;
        double g = -(s->last_pn - s->last_pm) * lam * (1 - lam) / (mixp > 1e-300 ? mixp : 1e-300);
        s->theta[s->last_k] -= s->p.mix_lr * g;
    }
    s->scored = 0;
    if (s->p.cache) {
        uint64_t mask = ((uint64_t)1 << s->p.cache_bits) - 1;
        for (int n = CACHE_LO; n <= CACHE_HI; n++) {
            if (s->n < n - 1) continue;
            uint64_t h = cache_hash(s, n), base = (uint64_t)(n - CACHE_LO) << s->p.cache_bits;
            s->cache_ctx[base + (h & mask)]++;
            s->cache_full[base + ((h ^ ((uint64_t)y * 0x85EBCA77ull)) & mask)]++;
        }
    } else {
        int top = s->p.tilt ? 16 : 0;
        if (s->p.mix && s->p.order - 1 > top) top = s->p.order - 1;
        for (int len = 0; len <= top && len <= s->n; len++) {
            if (!(s->p.mix && len < s->p.order) && !(s->p.tilt && len >= 8 && len % 2 == 0)) continue;
            struct ctx *c = find_or_add(s, ctx_key(s, len));
            if (!c || add_follower(c, y)) return pg_error(PG_E_NOMEM, "n-gram tables: out of memory");
        }
    }
    s->hist[s->n % HIST] = y;
    s->n++;
    return 0;
}

/* ---- the model's distributions ---- */

struct head_tap {
    double *h; /* n·d */
    int ok;
};

static void on_tap(void *ctx, int layer, int site, const pg_real *x, int n, int cols)
{
    (void)layer;
    struct head_tap *t = ctx;
    if (site != PG_TAP_HEAD) return;
    for (size_t i = 0; i < (size_t)n * cols; i++) t->h[i] = x[i];
    t->ok = 1;
}

int pg_ngram_model_logp(struct pg_model *m, const int32_t *x, const int32_t *y, int n, double *logp)
{
    if (!m->be->host_memory) return pg_error(PG_E_INVAL, "n-gram modes run on the CPU backend only");
    int d = m->d, V = m->v;
    struct head_tap t = {pg_malloc((size_t)n * d * sizeof *t.h), 0};
    if (!t.h) return PG_E_NOMEM;
    struct pg_model_tap tap = {on_tap, &t};
    const struct pg_model_tap *keep = m->tap;
    int T = m->t;
    m->tap = &tap, m->t = n;
    pg_model_forward(m, x, y, 1, NULL);
    m->tap = keep, m->t = T;
    const pg_real *E = m->params + m->tensors[m->t_head >= 0 ? m->t_head : m->t_emb].offset;
    double c = m->cfg.logit_softcap;
    for (int i = 0; i < n; i++) {
        double *z = logp + (size_t)i * V, mx = -INFINITY, sum = 0;
        const double *h = t.h + (size_t)i * d;
        for (int j = 0; j < V; j++) {
            const pg_real *e = E + (size_t)j * d;
            double a = 0;
            for (int k = 0; k < d; k++) a += h[k] * e[k];
            if (c > 0 && m->cfg.softcap_poly5) {
                double u = a / c;
                u = u < -2 ? -2 : u > 2 ? 2 : u;
                double p5 = u - u * u * u / 3 + u * u * u * u * u / 15;
                a = c * (p5 < -1 ? -1 : p5 > 1 ? 1 : p5);
            } else if (c > 0) {
                a = c * tanh(a / c);
            }
            z[j] = a;
            if (a > mx) mx = a;
        }
        for (int j = 0; j < V; j++) sum += exp(z[j] - mx);
        double lse = mx + log(sum);
        for (int j = 0; j < V; j++) z[j] -= lse;
    }
    free(t.h);
    return 0;
}

int pg_ngram_run(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
                 const struct pg_ngram_params *p, int stride, float *token_losses, struct pg_audit *audit,
                 int audit_samples, struct pg_ngram_result *r)
{
    memset(r, 0, sizeof *r);
    int L = v->seq_len, V = m->v;
    if (L > m->t || m->max_b < 1)
        return pg_error(PG_E_INVAL, "n-gram scoring: windows of %d tokens do not fit the model's %d", L, m->t);
    if (stride == 0) stride = L;
    if (stride < 1 || stride > L)
        return pg_error(PG_E_INVAL, "n-gram scoring: stride %d: must be 1 .. %d (the window)", stride, L);
    struct pg_ngram *s;
    PG_TRY(pg_ngram_open(&s, V, p));
    int32_t *x = pg_malloc((size_t)L * sizeof *x), *y = pg_malloc((size_t)L * sizeof *y);
    double *logp = pg_malloc((size_t)L * V * sizeof *logp);
    int rc = x && y && logp ? 0 : PG_E_NOMEM;
    double t0 = pg_now();
    struct pg_ngram_audit au;
    if (!rc) rc = pg_ngram_audit_open(&au, audit, v->usable + 1, audit_samples, 0x5eed, L, V);
    else memset(&au, 0, sizeof au);
    if (!rc) rc = pg_ngram_push(s, NULL, v->tokens[0]); /* the stream's first token: an input only */
    if (audit) pg_audit_updated(audit, 0, 1);
    /* the windows of pg-eval's sliding rule (stride L: the plain windows), each scoring the
     * targets the windows before it did not, so the targets come in stream order */
    struct pg_slide sl;
    pg_slide_init(&sl, v->usable, L, stride);
    int64_t ws;
    int j0;
    while (!rc && pg_slide_next(&sl, &ws, &j0)) {
        for (int j = 0; j < L; j++) x[j] = v->tokens[ws + j], y[j] = v->tokens[ws + j + 1];
        if ((rc = pg_model_check_ids(m, x, (size_t)L)) || (rc = pg_model_check_ids(m, y, (size_t)L)) ||
            (rc = pg_ngram_model_logp(m, x, y, L, logp)))
            break;
        for (int j = j0; j < L && !rc; j++) {
            const double *lp = logp + (size_t)j * V;
            int64_t pos = ws + j + 1; /* the target's stream position */
            if ((rc = pg_ngram_audit_at(&au, s, m, v->tokens, ws, L, pos, NULL))) break;
            double nll = pg_ngram_score(s, lp, y[j]);
            if (audit) pg_audit_scored(audit, pos, pos + 1);
            r->model_nll -= lp[y[j]];
            r->nll_sum += nll;
            r->bytes += pg_bpb_target_bytes(lut, (uint64_t)pos, x[j], y[j]);
            if (token_losses) token_losses[pos - 1] = (float)nll;
            rc = pg_ngram_push(s, lp, y[j]); /* only now does the table see y */
            if (audit) pg_audit_updated(audit, pos - HIST, pos + 1); /* the contexts it extends, and y */
        }
        r->tokens += L - j0;
    }
    r->seconds = pg_now() - t0;
    r->val_loss = r->tokens > 0 ? r->nll_sum / r->tokens : 0;
    r->val_bpb = r->bytes > 0 ? r->nll_sum / (log(2.0) * r->bytes) : 0;
    free(x), free(y), free(logp);
    pg_ngram_audit_close(&au);
    pg_ngram_close(s);
    return rc;
}

/* ---- the audit, on the live state ---- */

/* Target p's log-distribution as the run forms it: the model's forward over p's window, read
 * from tokens (which the audit changes from p on), and the tables as they stand before p is
 * scored (with no n-gram state, the model's distribution as it is). Every candidate token is scored through pg_ngram_score, the path the run scores with,
 * so that for the cache, whose probability reads the target, the values so formed sum to more
 * than one. (Scoring candidates sets only the per-score fields the run's own score of p sets
 * again.) */
static int live_dist(void *ctx, const uint16_t *tokens, int64_t p, double *out)
{
    struct pg_ngram_audit *u = ctx;
    struct pg_model *m = u->m;
    int V = m->v, n = u->n;
    for (int j = 0; j < n; j++) u->x[j] = tokens[u->st + j], u->y[j] = tokens[u->st + j + 1];
    PG_TRY(pg_model_check_ids(m, u->x, (size_t)n));
    PG_TRY(pg_model_check_ids(m, u->y, (size_t)n));
    PG_TRY(pg_ngram_model_logp(m, u->x, u->y, n, u->logp));
    const double *lp = u->logp + (size_t)(p - 1 - u->st) * V;
    if (!u->s) { /* no n-gram mode: the model's distribution, tempered: log softmax(logp / T) */
        double T = u->temperature > 0 ? u->temperature : 1.0, mx = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++) out[i] = lp[i] / T, mx = out[i] > mx ? out[i] : mx;
        for (int i = 0; i < V; i++) sum += exp(out[i] - mx);
        for (int i = 0; i < V; i++) out[i] -= mx + log(sum);
        return 0;
    }
    if (!u->s->p.cache) {
        PG_TRY(pg_ngram_dist(u->s, lp, out));
        for (int i = 0; i < V; i++) out[i] = log(out[i]);
        return 0;
    }
    for (int i = 0; i < V; i++) out[i] = -pg_ngram_score(u->s, lp, i);
    return 0;
}

int pg_ngram_audit_open(struct pg_ngram_audit *u, struct pg_audit *a, int64_t ntok, int samples, uint64_t seed,
                        int max_n, int vocab)
{
    memset(u, 0, sizeof *u);
    if (!a) return 0;
    u->a = a, u->ntok = ntok;
    pg_rng_seed(&u->r, seed);
    u->pick = pg_malloc((size_t)(samples > 0 ? samples : 1) * sizeof *u->pick);
    u->x = pg_malloc((size_t)max_n * sizeof *u->x);
    u->y = pg_malloc((size_t)max_n * sizeof *u->y);
    u->logp = pg_malloc((size_t)max_n * vocab * sizeof *u->logp);
    if (!u->pick || !u->x || !u->y || !u->logp) {
        pg_ngram_audit_close(u);
        return PG_E_NOMEM;
    }
    u->npick = pg_audit_pick(a, ntok, samples, &u->r, u->pick);
    return 0;
}

int pg_ngram_audit_at(struct pg_ngram_audit *u, struct pg_ngram *s, struct pg_model *m, uint16_t *tokens, int64_t st,
                      int n, int64_t p, int *forwarded)
{
    if (!u->a) return 0;
    while (u->next < u->npick && u->pick[u->next] < p) u->next++; /* a target the run does not score */
    u->s = s, u->m = m, u->st = st, u->n = n;
    for (; u->next < u->npick && u->pick[u->next] == p; u->next++) {
        PG_TRY(pg_audit_check_one(u->a, live_dist, u, tokens, u->ntok, p, n, 1e-6, &u->r));
        if (forwarded) *forwarded = 1;
    }
    return 0;
}

void pg_ngram_audit_close(struct pg_ngram_audit *u)
{
    free(u->pick), free(u->x), free(u->y), free(u->logp);
    memset(u, 0, sizeof *u);
}
