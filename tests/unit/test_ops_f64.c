/* test_ops_f64.c: every CPU backend operation's backward against central finite differences,
 * with the backend built in double (-DPG_REAL_DOUBLE, see lib/real.h), so the comparison is
 * tight: |analytic − numeric| <= 1e-6 + 1e-5·|numeric| for every element. Each check also
 * proves it can fail: the same comparison against a gradient with one element nudged by 1e-3
 * must report a mismatch. The softcapped cross-entropy's loss is also compared with a plain
 * float64 computation. */
#include "../tap.h"

#include "../../kernels/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

#define ATOL 1e-6
#define RTOL 1e-5
#define EPS 1e-5

static const struct pg_backend *B = &pg_backend_cpu;
static unsigned long long rng_state = 42;

static double urand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1.0p-53 * 2 - 1;
}

/* Every test allocation is kept here and freed at the end (the suite also runs under LSan). */
static void *kept[512];
static int nkept;
static void *keep(void *p)
{
    if (nkept < 512) kept[nkept++] = p;
    return p;
}

static double *rnd(size_t n, double scale)
{
    double *p = keep(malloc(n * sizeof *p));
    for (size_t i = 0; i < n; i++) p[i] = urand() * scale;
    return p;
}

static double *zeros(size_t n) { return keep(calloc(n, sizeof(double))); }

/* The objective: a fixed random projection of an op's output, L = Σ r ⊙ out. */
typedef double (*objective_fn)(void *ctx);

/* Compares grad[i] with (L(x+eps) − L(x−eps)) / 2eps for every i < n. @return mismatches. */
static int compare(const double *x_in, const double *grad, size_t n, objective_fn f, void *ctx, double *worst)
{
    double *x = (double *)x_in;
    int bad = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + EPS;
        double lp = f(ctx);
        x[i] = keep - EPS;
        double lm = f(ctx);
        x[i] = keep;
        double num = (lp - lm) / (2 * EPS), err = fabs(grad[i] - num);
        if (err > ATOL + RTOL * fabs(num)) bad++;
        if (err > *worst) *worst = err;
    }
    return bad;
}

/* Checks a gradient, then that the check notices a broken copy of it. */
static void check(const char *name, const double *x, const double *grad, size_t n, objective_fn f, void *ctx)
{
    double worst;
    int bad = compare(x, grad, n, f, ctx, &worst);
    ok(bad == 0, "%s: %zu gradients match finite differences (worst |err| %.2e)", name, n, worst);
    double *broken = malloc(n * sizeof *broken);
    memcpy(broken, grad, n * sizeof *broken);
    broken[n / 2] += 1e-3 + 1e-3 * fabs(broken[n / 2]);
    ok(compare(x, broken, n, f, ctx, &worst) > 0, "%s: a broken gradient is caught", name);
    free(broken);
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- matmul ---- */
struct mm { int n, in, out; double *x, *w, *y, *r; };
static double mm_f(void *c)
{
    struct mm *m = c;
    B->matmul_fwd(m->y, m->x, m->w, m->n, m->in, m->out);
    return dot(m->y, m->r, (size_t)m->n * m->out);
}
static void test_matmul(void)
{
    struct mm m = {.n = 5, .in = 7, .out = 3};
    m.x = rnd(35, 1), m.w = rnd(21, 1), m.y = zeros(15), m.r = rnd(15, 1);
    double *dx = rnd(35, 1), *dx0 = keep(malloc(35 * sizeof *dx0)), *dw = zeros(21);
    memcpy(dx0, dx, 35 * sizeof *dx);
    B->matmul_bwd(dx, dw, m.r, m.x, m.w, m.n, m.in, m.out, 1); /* accumulate onto dx0 */
    for (int i = 0; i < 35; i++) dx[i] -= dx0[i];
    check("matmul dx", m.x, dx, 35, mm_f, &m);
    check("matmul dw", m.w, dw, 21, mm_f, &m);
}

/* ---- embedding ---- */
struct emb { int n, d; double *e, *y, *r; int32_t ids[6]; };
static double emb_f(void *c)
{
    struct emb *m = c;
    B->embedding_fwd(m->y, m->e, m->ids, m->n, m->d);
    return dot(m->y, m->r, (size_t)m->n * m->d);
}
static void test_embedding(void)
{
    struct emb m = {6, 4, NULL, NULL, NULL, {3, 1, 3, 0, 4, 3}}; /* id 3 repeats, 2 unused */
    m.e = rnd(20, 1), m.y = zeros(24), m.r = rnd(24, 1);
    double *de = zeros(20);
    B->embedding_bwd(de, m.r, m.ids, m.n, m.d);
    check("embedding dE (repeated ids)", m.e, de, 20, emb_f, &m);
}

/* ---- rmsnorm ---- */
struct rn { int n, d; double scale, *x, *y, *rstd, *r; };
static double rn_f(void *c)
{
    struct rn *m = c;
    B->rmsnorm_fwd(m->y, m->rstd, m->x, m->n, m->d, 0x1p-23, m->scale);
    return dot(m->y, m->r, (size_t)m->n * m->d);
}
static void test_rmsnorm(void)
{
    struct rn m = {.n = 4, .d = 8, .scale = 1};
    m.x = rnd(32, 2), m.y = zeros(32), m.rstd = zeros(4), m.r = rnd(32, 1);
    rn_f(&m);
    double *dx = zeros(32);
    B->rmsnorm_bwd(dx, m.r, m.y, m.rstd, m.n, m.d, 1, 0);
    check("rmsnorm dx", m.x, dx, 32, rn_f, &m);
    double ms = 0;
    for (int c = 0; c < 8; c++) ms += m.y[c] * m.y[c];
    is_close(ms / 8, 1.0, 1e-6, 0, "rmsnorm output has mean square 1");
    /* The layerwise LN scale (spec §2.6): y = s·RMSNorm(x), s = 1/√3 as in block 2. */
    m.scale = 1 / sqrt(3.0);
    rn_f(&m);
    B->rmsnorm_bwd(dx, m.r, m.y, m.rstd, m.n, m.d, m.scale, 0);
    check("rmsnorm times 1/sqrt(3) (LN scale) dx", m.x, dx, 32, rn_f, &m);
    ms = 0;
    for (int c = 0; c < 8; c++) ms += m.y[c] * m.y[c];
    is_close(ms / 8, 1.0 / 3, 1e-6, 0, "rmsnorm times 1/sqrt(3) has mean square 1/3");
}

/* ---- rope ---- */
struct rp { int b, t, h, hd, rd; double *x, *y, *cos, *sin, *r; };
static double rp_f(void *c)
{
    struct rp *m = c;
    size_t n = (size_t)m->b * m->t * m->h * m->hd;
    memcpy(m->y, m->x, n * sizeof *m->y);
    B->rope_fwd(m->y, m->cos, m->sin, m->b, m->t, m->h, m->hd, m->rd);
    return dot(m->y, m->r, n);
}
/* Partial RoPE (spec §2.2): only the first rd of hd = 8 dims rotate, pairs (i, i + rd/2). */
static void test_rope_partial(void)
{
    struct rp m = {.b = 2, .t = 3, .h = 2, .hd = 8, .rd = 4};
    size_t n = 2 * 3 * 2 * 8;
    m.x = rnd(n, 1), m.y = zeros(n), m.r = rnd(n, 1), m.cos = zeros(6), m.sin = zeros(6);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 2; i++) {
            double ang = t * pow(10000.0, -2.0 * i / m.rd);
            m.cos[t * 2 + i] = cos(ang);
            m.sin[t * 2 + i] = sin(ang);
        }
    double *dx = keep(malloc(n * sizeof *dx));
    memcpy(dx, m.r, n * sizeof *dx);
    B->rope_bwd(dx, m.cos, m.sin, m.b, m.t, m.h, m.hd, m.rd);
    check("partial rope (4 of 8 dims) dx", m.x, dx, n, rp_f, &m);
    rp_f(&m);
    size_t o = (size_t)(1 * m.h + 1) * m.hd; /* b 0, t 1, h 1 */
    int untouched = 1;
    for (size_t k = 0; k < n; k++)
        if (k % (size_t)m.hd >= (size_t)m.rd) untouched &= m.y[k] == m.x[k];
    ok(untouched, "partial rope: dims rd..hd-1 are not touched");
    double c1 = m.cos[3], s1 = m.sin[3]; /* t 1, pair 1 = dims (1, 3) */
    is_close(m.y[o + 1], m.x[o + 1] * c1 + m.x[o + 3] * s1, 1e-12, 0, "partial rope: dim 1 pairs with dim 1 + rd/2");
    is_close(m.y[o + 3], -m.x[o + 1] * s1 + m.x[o + 3] * c1, 1e-12, 0, "partial rope: dim 3 = −x1·sin + x2·cos");
}
static void test_rope(void)
{
    struct rp m = {.b = 2, .t = 3, .h = 2, .hd = 4, .rd = 4};
    size_t n = 48;
    m.x = rnd(n, 1), m.y = zeros(n), m.r = rnd(n, 1), m.cos = zeros(6), m.sin = zeros(6);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 2; i++) {
            double ang = t * pow(10000.0, -2.0 * i / 4);
            m.cos[t * 2 + i] = cos(ang);
            m.sin[t * 2 + i] = sin(ang);
        }
    double *dx = keep(malloc(n * sizeof *dx));
    memcpy(dx, m.r, n * sizeof *dx);
    B->rope_bwd(dx, m.cos, m.sin, m.b, m.t, m.h, m.hd, m.rd);
    check("rope dx", m.x, dx, n, rp_f, &m);
    /* The sign convention: dims (0, 2) at t = 1 rotate as (x1 cos + x2 sin, −x1 sin + x2 cos). */
    rp_f(&m);
    size_t o = (size_t)1 * m.h * m.hd; /* b 0, t 1, h 0 */
    double c1 = m.cos[2], s1 = m.sin[2];
    is_close(m.y[o], m.x[o] * c1 + m.x[o + 2] * s1, 1e-12, 0, "rope: first half = x1·cos + x2·sin");
    is_close(m.y[o + 2], -m.x[o] * s1 + m.x[o + 2] * c1, 1e-12, 0, "rope: second half = −x1·sin + x2·cos");
}

/* ---- attention ---- */
struct at { int b, t, h, kv, hd; double *q, *k, *v, *o, *lse, *r, *work; };
static double at_f(void *c)
{
    struct at *m = c;
    B->attention_fwd(m->o, m->lse, m->q, m->k, m->v, m->b, m->t, m->h, m->kv, m->hd, 1 / sqrt(m->hd), m->work);
    return dot(m->o, m->r, (size_t)m->b * m->t * m->h * m->hd);
}
/* Plain causal GQA attention in float64 for one output element, independent of the backend. */
static double attn_ref(struct at *m, int bi, int ti, int hi, int c)
{
    int g = m->h / m->kv, kh = hi / g;
    static double s[512];
    double mx = -1e300, sum = 0, out = 0;
    for (int j = 0; j <= ti; j++) {
        double d = 0;
        for (int e = 0; e < m->hd; e++)
            d += m->q[(((size_t)bi * m->t + ti) * m->h + hi) * m->hd + e] *
                 m->k[(((size_t)bi * m->t + j) * m->kv + kh) * m->hd + e];
        s[j] = d / sqrt(m->hd);
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int j = 0; j <= ti; j++) sum += exp(s[j] - mx);
    for (int j = 0; j <= ti; j++) out += exp(s[j] - mx) / sum * m->v[(((size_t)bi * m->t + j) * m->kv + kh) * m->hd + c];
    return out;
}
static void test_attention(void)
{
    struct at m = {.b = 2, .t = 5, .h = 4, .kv = 2, .hd = 4};
    size_t nq = 2 * 5 * 4 * 4, nk = 2 * 5 * 2 * 4;
    m.q = rnd(nq, 1), m.k = rnd(nk, 1), m.v = rnd(nk, 1), m.o = zeros(nq), m.lse = zeros(2 * 4 * 5);
    m.r = rnd(nq, 1), m.work = zeros(B->attention_work(5));
    at_f(&m);
    double worst = 0;
    for (int bi = 0; bi < 2; bi++)
        for (int ti = 0; ti < 5; ti++)
            for (int hi = 0; hi < 4; hi++)
                for (int c = 0; c < 4; c++) {
                    double e = fabs(m.o[(((size_t)bi * 5 + ti) * 4 + hi) * 4 + c] - attn_ref(&m, bi, ti, hi, c));
                    worst = e > worst ? e : worst;
                }
    ok(worst < 1e-12, "attention forward equals a plain causal GQA softmax (worst %.1e)", worst);
    double *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    B->attention_bwd(dq, dk, dv, m.r, m.o, m.lse, m.q, m.k, m.v, m.b, m.t, m.h, m.kv, m.hd, 1 / sqrt(m.hd), m.work);
    check("attention dq", m.q, dq, nq, at_f, &m);
    check("attention dk (summed over the group)", m.k, dk, nk, at_f, &m);
    check("attention dv (summed over the group)", m.v, dv, nk, at_f, &m);
}

/* Sequences longer than the kernel's row block (128), with a partial last block: the forward
 * against the plain reference at sampled positions, and the backward along random directions
 * (Σ grad·u against the central difference of L along u; per-element differences would take
 * too long at this size), each also shown to catch a nudged gradient. */
static void test_attention_blocks(void)
{
    struct at m = {.b = 1, .t = 300, .h = 2, .kv = 1, .hd = 4};
    size_t nq = 300 * 2 * 4, nk = 300 * 1 * 4;
    m.q = rnd(nq, 1), m.k = rnd(nk, 1), m.v = rnd(nk, 1), m.o = zeros(nq), m.lse = zeros(2 * 300);
    m.r = rnd(nq, 1), m.work = zeros(B->attention_work(300));
    at_f(&m);
    double worst = 0;
    for (int ti = 0; ti < 300; ti += 13)
        for (int hi = 0; hi < 2; hi++)
            for (int c = 0; c < 4; c++) {
                double e = fabs(m.o[((size_t)ti * 2 + hi) * 4 + c] - attn_ref(&m, 0, ti, hi, c));
                worst = e > worst ? e : worst;
            }
    ok(worst < 1e-12, "attention forward, T = 300 (3 row blocks): equals the plain softmax (worst %.1e)", worst);
    double *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    B->attention_bwd(dq, dk, dv, m.r, m.o, m.lse, m.q, m.k, m.v, m.b, m.t, m.h, m.kv, m.hd, 1 / sqrt(m.hd), m.work);
    struct { const char *name; double *x, *g; size_t n; } in[3] = {{"dq", m.q, dq, nq}, {"dk", m.k, dk, nk},
                                                                  {"dv", m.v, dv, nk}};
    for (int a = 0; a < 3; a++) {
        int bad = 0, caught = 0;
        for (int trial = 0; trial < 3; trial++) {
            double *u = rnd(in[a].n, 1), *x = in[a].x;
            for (size_t i = 0; i < in[a].n; i++) x[i] += EPS * u[i];
            double lp = at_f(&m);
            for (size_t i = 0; i < in[a].n; i++) x[i] -= 2 * EPS * u[i];
            double lm = at_f(&m);
            for (size_t i = 0; i < in[a].n; i++) x[i] += EPS * u[i];
            double num = (lp - lm) / (2 * EPS), an = dot(in[a].g, u, in[a].n);
            bad += fabs(an - num) > ATOL + RTOL * fabs(num);
            /* a gradient nudged at one element in the last block, along u */
            double nudged = an + 1e-3 * u[in[a].n - 5];
            caught += fabs(nudged - num) > ATOL + RTOL * fabs(num);
        }
        ok(bad == 0, "attention %s, T = 300: 3 directional derivatives match central differences", in[a].name);
        ok(caught == 3, "attention %s, T = 300: a gradient nudged in the last block is caught", in[a].name);
    }
}

/* ---- pointwise ---- */
struct pw { int n, d, h, hd; double slope, *x, *x0, *m0, *m1, *y, *r, *s, *f, *g; };
static double relu2_f(void *c)
{
    struct pw *m = c;
    B->relu2_fwd(m->y, m->x, (size_t)m->n * m->d, m->slope);
    return dot(m->y, m->r, (size_t)m->n * m->d);
}
static double mix_f(void *c)
{
    struct pw *m = c;
    B->mix_fwd(m->y, m->x, m->x0, m->m0, m->m1, m->n, m->d);
    return dot(m->y, m->r, (size_t)m->n * m->d);
}
static double sadd_f(void *c)
{
    struct pw *m = c;
    size_t n = (size_t)m->n * m->d;
    memcpy(m->y, m->x, n * sizeof *m->y);
    B->scale_add_fwd(m->y, m->s, m->f, m->n, m->d);
    return dot(m->y, m->r, n);
}
static double gain_f(void *c)
{
    struct pw *m = c;
    size_t n = (size_t)m->n * m->h * m->hd;
    memcpy(m->y, m->x, n * sizeof *m->y);
    B->head_gain_fwd(m->y, m->g, m->n, m->h, m->hd);
    return dot(m->y, m->r, n);
}
static void test_pointwise(void)
{
    struct pw m = {.n = 6, .d = 4, .h = 2, .hd = 2};
    size_t n = 24;
    m.x = rnd(n, 1), m.x0 = rnd(n, 1), m.m0 = rnd(4, 1), m.m1 = rnd(4, 1), m.y = zeros(n), m.r = rnd(n, 1);
    m.s = rnd(4, 1), m.f = rnd(n, 1), m.g = rnd(2, 2);
    for (size_t i = 0; i < n; i++)
        if (fabs(m.x[i]) < 0.05) m.x[i] = 0.3; /* keep finite differences away from relu's kink */
    double *dx = zeros(n);
    B->relu2_bwd(dx, m.r, m.x, n, 0);
    check("relu2 dx", m.x, dx, n, relu2_f, &m);
    /* LeakyReLU(0.5)² (spec §2.5): φ(z) = z² (z > 0), 0.25·z² (z <= 0); φ' = 2z, 0.5z. */
    m.slope = 0.5;
    B->relu2_bwd(dx, m.r, m.x, n, m.slope);
    check("leaky relu2 (slope 0.5) dx", m.x, dx, n, relu2_f, &m);
    relu2_f(&m);
    int phi_ok = 1;
    for (size_t i = 0; i < n; i++) phi_ok &= m.y[i] == (m.x[i] > 0 ? m.x[i] * m.x[i] : 0.25 * m.x[i] * m.x[i]);
    ok(phi_ok, "leaky relu2 (slope 0.5) forward: z² above 0, 0.25·z² below");
    m.slope = 0;

    double *dx0 = rnd(n, 1), *dx0_before = keep(malloc(n * sizeof *dx0)), *dm0 = zeros(4), *dm1 = zeros(4);
    memcpy(dx0_before, dx0, n * sizeof *dx0);
    B->mix_bwd(dx, dx0, dm0, dm1, m.r, m.x, m.x0, m.m0, m.m1, m.n, m.d);
    for (size_t i = 0; i < n; i++) dx0[i] -= dx0_before[i]; /* dx0 accumulates */
    check("mix dx", m.x, dx, n, mix_f, &m);
    check("mix dx0", m.x0, dx0, n, mix_f, &m);
    check("mix dm0", m.m0, dm0, 4, mix_f, &m);
    check("mix dm1", m.m1, dm1, 4, mix_f, &m);

    double *df = zeros(n), *ds = zeros(4);
    B->scale_add_bwd(df, ds, m.r, m.s, m.f, m.n, m.d, 0);
    check("scale_add df", m.f, df, n, sadd_f, &m);
    check("scale_add ds", m.s, ds, 4, sadd_f, &m);

    double *dq = keep(malloc(n * sizeof *dq)), *dg = zeros(2);
    memcpy(dq, m.r, n * sizeof *dq);
    B->head_gain_bwd(dq, dg, m.x, m.g, m.n, m.h, m.hd);
    check("head_gain dq", m.x, dq, n, gain_f, &m);
    check("head_gain dg", m.g, dg, 2, gain_f, &m);
}

/* ---- softcapped cross-entropy ---- */
struct ce { int n, d, v; double cap, scale; double *h, *e, *work; int32_t y[300]; };
static double ce_f(void *c)
{
    struct ce *m = c;
    return m->scale * B->softcap_ce(NULL, NULL, NULL, m->h, m->e, m->y, m->n, m->d, m->v, m->cap, 0, m->work);
}
static void test_ce(void)
{
    /* 300 rows: more than one PG_CE_CHUNK, so the chunk loop is exercised. */
    struct ce m = {.n = 300, .d = 6, .v = 11, .cap = 3.0, .scale = 0.25};
    m.h = rnd((size_t)m.n * m.d, 2), m.e = rnd((size_t)m.v * m.d, 2), m.work = zeros(pg_ce_work(m.v));
    for (int i = 0; i < m.n; i++) m.y[i] = (int32_t)((i * 7) % m.v);
    /* The loss against a plain float64 computation. */
    double want = 0;
    for (int i = 0; i < m.n; i++) {
        double z[11], mx = -1e300, s = 0;
        for (int j = 0; j < m.v; j++) {
            double u = 0;
            for (int c = 0; c < m.d; c++) u += m.h[i * m.d + c] * m.e[j * m.d + c];
            z[j] = m.cap * tanh(u / m.cap);
            mx = z[j] > mx ? z[j] : mx;
        }
        for (int j = 0; j < m.v; j++) s += exp(z[j] - mx);
        want += mx + log(s) - z[m.y[i]];
    }
    float *losses = keep(malloc((size_t)m.n * sizeof *losses));
    double got = B->softcap_ce(NULL, NULL, losses, m.h, m.e, m.y, m.n, m.d, m.v, m.cap, 0, m.work);
    is_close(got, want, 0, 1e-12, "softcap CE total equals a float64 reference");
    double sum = 0;
    for (int i = 0; i < m.n; i++) sum += losses[i];
    is_close(sum, want, 0, 1e-6, "per-row losses add up to the total");
    double *dh = zeros((size_t)m.n * m.d), *de = zeros((size_t)m.v * m.d);
    B->softcap_ce(dh, de, NULL, m.h, m.e, m.y, m.n, m.d, m.v, m.cap, m.scale, m.work);
    check("softcap CE dh", m.h, dh, (size_t)m.n * m.d, ce_f, &m);
    check("softcap CE dE", m.e, de, (size_t)m.v * m.d, ce_f, &m);
}

int main(void)
{
    test_matmul();
    test_embedding();
    test_rmsnorm();
    test_rope();
    test_rope_partial();
    test_attention();
    test_attention_blocks();
    test_pointwise();
    test_ce();
    for (int i = 0; i < nkept; i++) free(kept[i]);
    return done_testing();
}
