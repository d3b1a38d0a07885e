/* test_ops_f64.c: every CPU backend operation's backward against central finite differences,
 * with the backend built in double (-DPG_REAL_DOUBLE, see lib/real.h), so the comparison is
 * tight: |analytic − numeric| <= 1e-6 + 1e-5·|numeric| for every element. Each check also
 * proves it can fail: the same comparison against a gradient with one element nudged by 1e-3
 * must report a mismatch. The softcapped cross-entropy's loss is also compared with a plain
 * float64 computation, and so are varlen attention (document-masked, spec §2.2) and logit_ce
 * (poly5 softcap, z-loss, spec §2.13); each of those forward comparisons is paired with one
 * showing it rejects the unmasked or tanh result. */
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

/* A gradient g of input x (n values), checked along 3 random directions u against central
 * differences of f; a gradient nudged at one element near the end (the last row block) along u
 * must be caught each time. */
struct dir_grad {
    const char *name;
    double *x, *g;
    size_t n;
};

static void check_directional(const char *what, const struct dir_grad *in, int nin, double (*f)(void *), void *ctx)
{
    for (int a = 0; a < nin; a++) {
        int bad = 0, caught = 0;
        for (int trial = 0; trial < 3; trial++) {
            double *u = rnd(in[a].n, 1), *x = in[a].x;
            for (size_t i = 0; i < in[a].n; i++) x[i] += EPS * u[i];
            double lp = f(ctx);
            for (size_t i = 0; i < in[a].n; i++) x[i] -= 2 * EPS * u[i];
            double lm = f(ctx);
            for (size_t i = 0; i < in[a].n; i++) x[i] += EPS * u[i];
            double num = (lp - lm) / (2 * EPS), an = dot(in[a].g, u, in[a].n);
            bad += fabs(an - num) > ATOL + RTOL * fabs(num);
            double nudged = an + 1e-3 * u[in[a].n - 5];
            caught += fabs(nudged - num) > ATOL + RTOL * fabs(num);
        }
        ok(bad == 0, "%s %s, T = 300: 3 directional derivatives match central differences", what, in[a].name);
        ok(caught == 3, "%s %s, T = 300: a gradient nudged in the last block is caught", what, in[a].name);
    }
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
    struct dir_grad in[3] = {{"dq", m.q, dq, nq}, {"dk", m.k, dk, nk}, {"dv", m.v, dv, nk}};
    check_directional("attention", in, 3, at_f, &m);
}

/* ---- varlen attention (spec §2.2) ---- */
struct vat { struct at a; const int32_t *ds; };
static double vat_f(void *c)
{
    struct vat *m = c;
    struct at *a = &m->a;
    B->attention_varlen_fwd(a->o, a->lse, a->q, a->k, a->v, m->ds, a->b, a->t, a->h, a->kv, a->hd, 1 / sqrt(a->hd),
                            a->work);
    return dot(a->o, a->r, (size_t)a->b * a->t * a->h * a->hd);
}
/* Document-masked causal GQA attention in float64 for one output element and its row's
 * log-sum-exp, written out plainly: query ti sees keys [lo, ti]. */
static double varlen_ref(const struct at *m, int lo, int bi, int ti, int hi, int c, double *lse)
{
    int g = m->h / m->kv, kh = hi / g;
    static double s[512];
    double mx = -1e300, sum = 0, out = 0;
    for (int j = lo; j <= ti; j++) {
        double d = 0;
        for (int e = 0; e < m->hd; e++)
            d += m->q[(((size_t)bi * m->t + ti) * m->h + hi) * m->hd + e] *
                 m->k[(((size_t)bi * m->t + j) * m->kv + kh) * m->hd + e];
        s[j] = d / sqrt(m->hd);
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int j = lo; j <= ti; j++) sum += exp(s[j] - mx);
    for (int j = lo; j <= ti; j++)
        out += exp(s[j] - mx) / sum * m->v[(((size_t)bi * m->t + j) * m->kv + kh) * m->hd + c];
    *lse = mx + log(sum);
    return out;
}
/* The worst |out − ref| and |lse − ref| over the rows with ti % step == 0 (every head and dim),
 * the reference masked by ds (NULL: plain causal). */
static void varlen_worst(const struct at *m, const int32_t *ds, int step, double *wo, double *wl)
{
    *wo = *wl = 0;
    for (int bi = 0; bi < m->b; bi++)
        for (int ti = 0; ti < m->t; ti += step)
            for (int hi = 0; hi < m->h; hi++)
                for (int c = 0; c < m->hd; c++) {
                    double l, r = varlen_ref(m, ds ? ds[bi * m->t + ti] : 0, bi, ti, hi, c, &l);
                    double eo = fabs(m->o[(((size_t)bi * m->t + ti) * m->h + hi) * m->hd + c] - r);
                    double el = fabs(m->lse[((size_t)bi * m->h + hi) * m->t + ti] - l);
                    *wo = eo > *wo ? eo : *wo;
                    *wl = el > *wl ? el : *wl;
                }
}
static int same(const double *a, const double *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

static void test_attention_varlen(void)
{
    /* b = 2, t = 9: sequence 0 holds documents [0, 3), [3, 4), [4, 9); sequence 1 [0], [1, 4),
     * [4], [5, 7), [7], [8]: documents of length 1 at 3 and at 0, 4, 7, 8. */
    static const int32_t ds[18] = {0, 0, 0, 3, 4, 4, 4, 4, 4, 0, 1, 1, 1, 4, 5, 5, 7, 8};
    struct vat m = {{.b = 2, .t = 9, .h = 4, .kv = 2, .hd = 4}, ds};
    struct at *a = &m.a;
    size_t nq = 2 * 9 * 4 * 4, nk = 2 * 9 * 2 * 4, nl = 2 * 4 * 9;
    a->q = rnd(nq, 1), a->k = rnd(nk, 1), a->v = rnd(nk, 1), a->o = zeros(nq), a->lse = zeros(nl);
    a->r = rnd(nq, 1), a->work = zeros(B->attention_work(9));
    double wo, wl;
    vat_f(&m);
    varlen_worst(a, ds, 1, &wo, &wl);
    ok(wo < 1e-12 && wl < 1e-12, "varlen attention forward equals a float64 document-masked softmax "
       "(worst out %.1e, lse %.1e)", wo, wl);
    double *o_var = keep(malloc(nq * sizeof *o_var)), *l_var = keep(malloc(nl * sizeof *l_var));
    memcpy(o_var, a->o, nq * sizeof *o_var);
    memcpy(l_var, a->lse, nl * sizeof *l_var);
    /* the same comparison fails for plain causal attention: the mask is what is being checked */
    at_f(a);
    varlen_worst(a, ds, 1, &wo, &wl);
    ok(wo > 1e-3 && wl > 1e-3, "the document-masked reference rejects plain causal attention (out off by %.1e)", wo);
    /* a document's first query (and the whole of a document of length 1) sees only itself:
     * out = v_t and lse = scale·q_t·k_t */
    double w1 = 0;
    int singles = 0;
    for (int bi = 0; bi < 2; bi++)
        for (int ti = 0; ti < 9; ti++) {
            if (ds[bi * 9 + ti] != ti) continue;
            singles++;
            for (int hi = 0; hi < 4; hi++) {
                int kh = hi / 2;
                double qk = 0;
                for (int c = 0; c < 4; c++) {
                    size_t oq = (((size_t)bi * 9 + ti) * 4 + hi) * 4 + c;
                    size_t okv = (((size_t)bi * 9 + ti) * 2 + kh) * 4 + c;
                    double e = fabs(o_var[oq] - a->v[okv]);
                    w1 = e > w1 ? e : w1;
                    qk += a->q[oq] * a->k[okv];
                }
                double e = fabs(l_var[((size_t)bi * 4 + hi) * 9 + ti] - qk / 2);
                w1 = e > w1 ? e : w1;
            }
        }
    ok(singles == 9 && w1 < 1e-14, "varlen: the %d queries with doc_start == t (5 of them documents of length 1) "
       "see only themselves (out = v_t, lse = scale·q·k; worst %.1e)", singles, w1);
    double wp = 0; /* while plain attention mixes in earlier keys at those positions */
    for (int c = 0; c < 4; c++) wp = fmax(wp, fabs(a->o[((9 + 7) * 4 + 0) * 4 + c] - a->v[((9 + 7) * 2 + 0) * 4 + c]));
    ok(wp > 1e-3, "varlen: plain attention at a length-1 document's position is not v_t (off by %.1e)", wp);

    /* doc_start NULL is attention_fwd/bwd, bit for bit; a real doc_start is not */
    double *o_plain = keep(malloc(nq * sizeof *o_plain)), *l_plain = keep(malloc(nl * sizeof *l_plain));
    memcpy(o_plain, a->o, nq * sizeof *o_plain);
    memcpy(l_plain, a->lse, nl * sizeof *l_plain);
    m.ds = NULL;
    vat_f(&m);
    ok(same(a->o, o_plain, nq) && same(a->lse, l_plain, nl), "varlen forward with doc_start NULL equals "
       "attention_fwd bit for bit");
    ok(!same(o_var, o_plain, nq), "varlen forward with documents differs from attention_fwd");
    double *dq0 = zeros(nq), *dk0 = zeros(nk), *dv0 = zeros(nk), *dq1 = zeros(nq), *dk1 = zeros(nk), *dv1 = zeros(nk);
    B->attention_bwd(dq0, dk0, dv0, a->r, a->o, a->lse, a->q, a->k, a->v, 2, 9, 4, 2, 4, 0.5, a->work);
    B->attention_varlen_bwd(dq1, dk1, dv1, a->r, a->o, a->lse, a->q, a->k, a->v, NULL, 2, 9, 4, 2, 4, 0.5, a->work);
    ok(same(dq0, dq1, nq) && same(dk0, dk1, nk) && same(dv0, dv1, nk), "varlen backward with doc_start NULL equals "
       "attention_bwd bit for bit");
    B->attention_varlen_bwd(dq1, dk1, dv1, a->r, o_var, l_var, a->q, a->k, a->v, ds, 2, 9, 4, 2, 4, 0.5, a->work);
    ok(!same(dq0, dq1, nq) && !same(dk0, dk1, nk) && !same(dv0, dv1, nk), "varlen backward with documents differs "
       "from attention_bwd");

    /* the backward with documents against central differences of the masked forward */
    m.ds = ds;
    check("varlen attention dq", a->q, dq1, nq, vat_f, &m);
    check("varlen attention dk (summed over the group)", a->k, dk1, nk, vat_f, &m);
    check("varlen attention dv (summed over the group)", a->v, dv1, nk, vat_f, &m);
}

/* T = 300 (three row blocks) with documents starting at 0, 50, 140, 200, 290 and 299 (the last of
 * length 1): the block [128, 256) starts its keys at 50 and [256, 300) at 140, so keys below
 * those are skipped, not only masked. Forward against the reference at sampled rows, skipping
 * proven by NaN keys that must not reach those blocks, the backward by directional derivatives. */
static void test_attention_varlen_blocks(void)
{
    static int32_t ds[300];
    static const int starts[] = {0, 50, 140, 200, 290, 299};
    for (int i = 0, d = 0; i < 300; i++) {
        while (d + 1 < 6 && starts[d + 1] <= i) d++;
        ds[i] = starts[d];
    }
    struct vat m = {{.b = 1, .t = 300, .h = 2, .kv = 1, .hd = 4}, ds};
    struct at *a = &m.a;
    size_t nq = 300 * 2 * 4, nk = 300 * 1 * 4;
    a->q = rnd(nq, 1), a->k = rnd(nk, 1), a->v = rnd(nk, 1), a->o = zeros(nq), a->lse = zeros(2 * 300);
    a->r = rnd(nq, 1), a->work = zeros(B->attention_work(300));
    vat_f(&m);
    double wo, wl;
    varlen_worst(a, ds, 7, &wo, &wl);
    ok(wo < 1e-12 && wl < 1e-12, "varlen forward, T = 300, 6 documents: equals the masked reference (worst out "
       "%.1e, lse %.1e)", wo, wl);
    double l299 = 0;
    for (int c = 0; c < 4; c++) l299 += a->q[299 * 8 + c] * a->k[299 * 4 + c];
    ok(same(a->o + 299 * 8, a->v + 299 * 4, 4) && fabs(a->lse[299] - l299 / 2) < 1e-14,
       "varlen, T = 300: the last token, a document of length 1, gets exactly its own value");

    /* keys [0, 50) made NaN: rows from 128 on never read them, so they keep their bits; plain
     * attention (which reads every earlier key) turns them NaN, so the check can fail */
    double *o_ref = keep(malloc(nq * sizeof *o_ref)), *kk = keep(malloc(nk * sizeof *kk));
    double *vv = keep(malloc(nk * sizeof *vv));
    memcpy(o_ref, a->o, nq * sizeof *o_ref);
    memcpy(kk, a->k, nk * sizeof *kk);
    memcpy(vv, a->v, nk * sizeof *vv);
    for (size_t i = 0; i < 50 * 4; i++) a->k[i] = a->v[i] = NAN;
    vat_f(&m);
    ok(same(a->o + 128 * 8, o_ref + 128 * 8, (300 - 128) * 8), "varlen, T = 300: row blocks after 128 skip the "
       "keys before their first document (NaN keys there leave them unchanged)");
    at_f(a);
    int nan_seen = 0;
    for (size_t i = 128 * 8; i < nq; i++) nan_seen |= a->o[i] != a->o[i];
    ok(nan_seen, "plain attention does read those keys (NaN reaches rows after 128)");
    memcpy(a->k, kk, nk * sizeof *kk);
    memcpy(a->v, vv, nk * sizeof *vv);

    vat_f(&m);
    double *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    B->attention_varlen_bwd(dq, dk, dv, a->r, a->o, a->lse, a->q, a->k, a->v, ds, 1, 300, 2, 1, 4, 0.5, a->work);
    struct dir_grad in[3] = {{"dq", a->q, dq, nq}, {"dk", a->k, dk, nk}, {"dv", a->v, dv, nk}};
    check_directional("varlen attention", in, 3, vat_f, &m);
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

/* ---- logit_ce: poly5 softcap and z-loss (spec §2.13) ---- */
struct lce { int n, d, v, poly5; double cap, zl, scale; double *h, *e, *work; int32_t y[300]; };
static double lce_f(void *c)
{
    struct lce *m = c;
    return m->scale * B->logit_ce(NULL, NULL, NULL, m->h, m->e, m->y, m->n, m->d, m->v, m->cap, m->poly5, m->zl, 0,
                                  m->work);
}
/* p(u) = u − u³/3 + u⁵/15 written out, and the softcaps in float64. */
static double p5(double u) { return u - u * u * u / 3 + u * u * u * u * u / 15; }
static double cap_ref(double x, double c, int poly5)
{
    if (!poly5) return c * tanh(x / c);
    double u = fmin(fmax(x / c, -2), 2);
    return c * fmin(fmax(p5(u), -1), 1);
}
/* The objective Σ (lse_i − z_i[y_i] + zl·lse_i²) in float64; per-row cross-entropies into ce. */
static double lce_ref(const struct lce *m, double *ce)
{
    double total = 0;
    for (int i = 0; i < m->n; i++) {
        double z[64], mx = -1e300, s = 0;
        for (int j = 0; j < m->v; j++) {
            double x = 0;
            for (int c = 0; c < m->d; c++) x += m->h[i * m->d + c] * m->e[j * m->d + c];
            z[j] = cap_ref(x, m->cap, m->poly5);
            mx = z[j] > mx ? z[j] : mx;
        }
        for (int j = 0; j < m->v; j++) s += exp(z[j] - mx);
        double lse = mx + log(s);
        ce[i] = lse - z[m->y[i]];
        total += ce[i] + m->zl * lse * lse;
    }
    return total;
}
static double lce_total(struct lce *m, double *dh, double *de, float *losses, double gs)
{
    return B->logit_ce(dh, de, losses, m->h, m->e, m->y, m->n, m->d, m->v, m->cap, m->poly5, m->zl, gs, m->work);
}

static void test_logit_ce(void)
{
    /* 300 rows (two chunks), logits x = h·e with a spread of about 3.3 against cap 3: the poly5
     * clamp |p(u)| = 1 starts at |x| = u*·cap ≈ 5.1, the u clamp at |x| = 6. */
    struct lce m = {.n = 300, .d = 6, .v = 11, .poly5 = 1, .cap = 3.0, .scale = 0.25};
    size_t nh = (size_t)m.n * m.d, ne = (size_t)m.v * m.d;
    m.h = rnd(nh, 2), m.e = rnd(ne, 2), m.work = zeros(pg_ce_work(m.v));
    for (int i = 0; i < m.n; i++) m.y[i] = (int32_t)((i * 5) % m.v);
    double lo = 1, hi = 2; /* u*: p(u*) = 1 */
    for (int it = 0; it < 200; it++) {
        double mid = (lo + hi) / 2;
        if (p5(mid) < 1) lo = mid;
        else hi = mid;
    }
    int in_p = 0, in_u = 0;
    double margin = 1e300; /* the closest |x|/cap comes to a kink (u* or 2) */
    for (int i = 0; i < m.n; i++)
        for (int j = 0; j < m.v; j++) {
            double x = 0;
            for (int c = 0; c < m.d; c++) x += m.h[i * m.d + c] * m.e[j * m.d + c];
            double au = fabs(x) / m.cap;
            in_p += au >= lo && au < 2;
            in_u += au >= 2;
            margin = fmin(margin, fmin(fabs(au - lo), fabs(au - 2)));
        }
    ok(in_p > 50 && in_u > 50 && margin > 1e-4, "logit_ce test data: %d logits clamped by |p(u)| <= 1, %d also by "
       "|u| <= 2 (of %d; none within %.1e of a kink)", in_p, in_u, m.n * m.v, margin);

    double *ce = zeros((size_t)m.n), *dh = zeros(nh), *de = zeros(ne);
    float *losses = keep(malloc((size_t)m.n * sizeof *losses)), *losses0 = keep(malloc((size_t)m.n * sizeof *losses0));
    for (int zi = 0; zi < 2; zi++) {
        m.zl = zi ? 0.3 : 0; /* 0.3, not the records' 1e-4, so the term is far above the tolerance */
        const char *tag = zi ? "poly5 + z-loss" : "poly5";
        double want = lce_ref(&m, ce), got = lce_total(&m, NULL, NULL, losses, 0);
        is_close(got, want, 0, 1e-12, "logit_ce %s: total equals a float64 reference (%.6f)", tag, got);
        double werr = 0;
        for (int i = 0; i < m.n; i++) werr = fmax(werr, fabs(losses[i] - ce[i]) / fabs(ce[i]));
        ok(werr < 1e-6, "logit_ce %s: losses[] are the plain cross-entropies (worst rel. %.1e)", tag, werr);
        m.poly5 = 0;
        double tanh_total = lce_total(&m, NULL, NULL, NULL, 0);
        m.poly5 = 1;
        ok(fabs(tanh_total - want) > 1e-6 * fabs(want), "logit_ce %s: the tanh softcap misses that reference "
           "(%.6f)", tag, tanh_total);
        memset(dh, 0, nh * sizeof *dh);
        memset(de, 0, ne * sizeof *de);
        lce_total(&m, dh, de, NULL, m.scale);
        char name[64];
        snprintf(name, sizeof name, "logit_ce %s dh", tag);
        check(name, m.h, dh, nh, lce_f, &m);
        snprintf(name, sizeof name, "logit_ce %s dE", tag);
        check(name, m.e, de, ne, lce_f, &m);
        if (!zi) memcpy(losses0, losses, (size_t)m.n * sizeof *losses);
    }
    ok(memcmp(losses, losses0, (size_t)m.n * sizeof *losses) == 0, "logit_ce: losses[] with z-loss 0.3 equal those "
       "without, bit for bit");
    double sum = 0, zsum = lce_ref(&m, ce);
    for (int i = 0; i < m.n; i++) sum += losses[i], zsum -= ce[i];
    double got = lce_total(&m, NULL, NULL, NULL, 0);
    is_close(got - sum, zsum, 0, 1e-5, "logit_ce: the total exceeds Σ losses[] by z_loss·Σ lse² (%.4f)", zsum);
    /* the z-loss term of the gradient matters: a gradient without it fails against this total */
    double *dh0 = zeros(nh), worst;
    m.zl = 0;
    lce_total(&m, dh0, de, NULL, m.scale);
    m.zl = 0.3;
    int missed = compare(m.h, dh0, nh, lce_f, &m, &worst);
    ok(missed > 0, "logit_ce: dh without the z-loss term is caught (%d of %zu off, by up to %.1e)", missed, nh, worst);

    /* the tanh softcap with the z-loss: total and gradients */
    m.poly5 = 0;
    double want = lce_ref(&m, ce);
    is_close(lce_total(&m, NULL, NULL, NULL, 0), want, 0, 1e-12, "logit_ce tanh + z-loss: total equals a float64 "
             "reference");
    memset(dh, 0, nh * sizeof *dh);
    memset(de, 0, ne * sizeof *de);
    lce_total(&m, dh, de, NULL, m.scale);
    check("logit_ce tanh + z-loss dh", m.h, dh, nh, lce_f, &m);
    check("logit_ce tanh + z-loss dE", m.e, de, ne, lce_f, &m);

    /* poly5 0 and z-loss 0 is softcap_ce, bit for bit (total, losses, dh, dE); poly5 1 is not */
    m.zl = 0;
    double *dh2 = zeros(nh), *de2 = zeros(ne);
    float *losses2 = keep(malloc((size_t)m.n * sizeof *losses2));
    memset(dh, 0, nh * sizeof *dh);
    memset(de, 0, ne * sizeof *de);
    double t1 = lce_total(&m, dh, de, losses, m.scale);
    double t2 = B->softcap_ce(dh2, de2, losses2, m.h, m.e, m.y, m.n, m.d, m.v, m.cap, m.scale, m.work);
    ok(t1 == t2 && memcmp(losses, losses2, (size_t)m.n * sizeof *losses) == 0 && same(dh, dh2, nh) &&
           same(de, de2, ne), "logit_ce with poly5 0, z-loss 0 equals softcap_ce bit for bit");
    m.poly5 = 1;
    ok(lce_total(&m, NULL, NULL, NULL, 0) != t2, "logit_ce with poly5 1 does not");
}

/* One row, three logits placed by hand: x0 in the p clamp only (u* < u < 2), x1 in both
 * (u < −2), x2 inside. Their softcapped values are ±cap, and their gradient is exactly 0: dE rows
 * 0 and 1 stay 0, and finite differences (which move x by ~1e-5) agree everywhere. */
static void test_logit_ce_clamped(void)
{
    struct lce m = {.n = 1, .d = 2, .v = 3, .poly5 = 1, .cap = 2.0, .zl = 0.1, .scale = 1};
    static double h[2] = {1.0, 0.5}, e[6] = {3.6, 0.2, -5.0, 0.4, 0.7, -0.6}; /* x = 3.7, −4.8, 0.4 */
    m.h = h, m.e = e, m.work = zeros(pg_ce_work(3));
    m.y[0] = 0;
    double *dh = zeros(2), *de = zeros(6), ce[1];
    float loss;
    double got = lce_total(&m, dh, de, &loss, 1), want = lce_ref(&m, ce);
    is_close(got, want, 0, 1e-12, "logit_ce poly5, clamped logits: total equals the reference");
    ok(de[0] == 0 && de[1] == 0 && de[2] == 0 && de[3] == 0 && de[4] != 0 && de[5] != 0,
       "logit_ce poly5: the clamped logits' embedding rows get exactly 0 gradient, the inside one does not");
    check("logit_ce poly5 dh, clamped logits", m.h, dh, 2, lce_f, &m);
    check("logit_ce poly5 dE, clamped logits", m.e, de, 6, lce_f, &m);
    /* tanh keeps a non-zero slope there: the same rows are not 0 (the exact-zero check can fail) */
    m.poly5 = 0;
    memset(de, 0, 6 * sizeof *de);
    lce_total(&m, dh, de, NULL, 1);
    ok(de[0] != 0 && de[2] != 0, "logit_ce tanh: the same logits have a non-zero gradient");
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
    test_attention_varlen();
    test_attention_varlen_blocks();
    test_logit_ce();
    test_logit_ce_clamped();
    for (int i = 0; i < nkept; i++) free(kept[i]);
    return done_testing();
}
