/* test_record_ops_f64.c: the record stack's pointwise operations of the CPU backend
 * (kernels/cpu/record.c), built in double (-DPG_REAL_DOUBLE, lib/real.h).
 *
 * Forward: each operation against a straightforward double computation written here, to 1e-12
 * of the result's scale. Backward: every input gradient and every parameter gradient against
 * central finite differences of L = Σ r ⊙ out (r a fixed random projection), to
 * |analytic − numeric| <= 1e-6 + 1e-5·|numeric| (the tolerances of test_ops_f64.c). Gradients
 * documented as accumulating are pre-filled with random values and compared after subtracting
 * them; overwritten ones are pre-filled with garbage. Every check also proves it can fail: a copy
 * with one element nudged must be reported. */
#include "../tap.h"

#include "../../kernels/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

#define ATOL 1e-6
#define RTOL 1e-5
#define EPS 1e-5
#define FWD_TOL 1e-12

static const struct pg_backend *B = &pg_backend_cpu;
static unsigned long long rng_state = 1234;

static double urand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1.0p-53 * 2 - 1;
}

/* Every test allocation is kept here and freed at the end (the suite also runs under LSan). */
static void *kept[1024];
static int nkept;
static void *keep(void *p)
{
    if (!p || nkept == 1024) {
        printf("Bail out! out of memory or of slots\n");
        exit(1);
    }
    return kept[nkept++] = p;
}

static double *rnd(size_t n, double scale)
{
    double *p = keep(malloc((n ? n : 1) * sizeof *p));
    for (size_t i = 0; i < n; i++) p[i] = urand() * scale;
    return p;
}

static double *zeros(size_t n) { return keep(calloc(n ? n : 1, sizeof(double))); }

static double *dup(const double *a, size_t n)
{
    double *p = keep(malloc((n ? n : 1) * sizeof *p));
    memcpy(p, a, n * sizeof *p);
    return p;
}

/* a − b, elementwise, in a new array: the increment an accumulating gradient received. */
static double *minus(const double *a, const double *b, size_t n)
{
    double *p = keep(malloc((n ? n : 1) * sizeof *p));
    for (size_t i = 0; i < n; i++) p[i] = a[i] - b[i];
    return p;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double sig(double z) { return 1 / (1 + exp(-z)); }

static int checks; /* gradient and forward checks made (each is two TAP lines) */

/* ---- comparisons ------------------------------------------------------------------------------ */

typedef double (*objective_fn)(void *ctx);

/* Compares grad[i] with (L(x+eps) − L(x−eps)) / 2eps for every i < n. @return mismatches. */
static int compare(double *x, const double *grad, size_t n, objective_fn f, void *ctx, double *worst)
{
    int bad = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double keep_ = x[i];
        x[i] = keep_ + EPS;
        double lp = f(ctx);
        x[i] = keep_ - EPS;
        double lm = f(ctx);
        x[i] = keep_;
        double num = (lp - lm) / (2 * EPS), err = fabs(grad[i] - num);
        if (!(err <= ATOL + RTOL * fabs(num))) bad++;
        if (err > *worst || err != err) *worst = err;
    }
    return bad;
}

/* Checks a gradient, then that the check notices a copy of it with one element nudged. */
static void check(const char *name, double *x, const double *grad, size_t n, objective_fn f, void *ctx)
{
    double worst;
    int bad = compare(x, grad, n, f, ctx, &worst);
    ok(bad == 0, "%s: %zu gradients match finite differences (worst |err| %.2e)", name, n, worst);
    double *broken = dup(grad, n);
    broken[n / 2] += 1e-4 + 1e-4 * fabs(broken[n / 2]);
    ok(compare(x, broken, n, f, ctx, &worst) > 0, "%s: a nudged gradient is caught", name);
    checks++;
}

static int fwd_bad(const double *got, const double *want, size_t n, double *worst)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    int bad = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - want[i]);
        if (!(err <= FWD_TOL * (1 + scale))) bad++;
        if (err > *worst || err != err) *worst = err;
    }
    return bad;
}

/* A forward result against the test's own computation; a nudged copy must fail. */
static void check_fwd(const char *name, const double *got, const double *want, size_t n)
{
    double worst;
    int bad = fwd_bad(got, want, n, &worst);
    ok(bad == 0, "%s: %zu values match the direct computation (worst |err| %.2e)", name, n, worst);
    double *broken = dup(got, n);
    broken[n / 2] += 1e-9 * (1 + fabs(broken[n / 2]));
    ok(fwd_bad(broken, want, n, &worst) > 0, "%s: a nudged value is caught", name);
    checks++;
}

/* ---- XSA -------------------------------------------------------------------------------------- */

struct xsa { int n, h, kv, hd; double *y, *v, *out, *r; };
static double xsa_f(void *c)
{
    struct xsa *m = c;
    size_t ny = (size_t)m->n * m->h * m->hd;
    memcpy(m->out, m->y, ny * sizeof *m->out);
    B->xsa_fwd(m->out, m->v, m->n, m->h, m->kv, m->hd);
    return dot(m->out, m->r, ny);
}

static void test_xsa(int n, int h, int kv, int hd)
{
    char name[96];
    struct xsa m = {n, h, kv, hd, NULL, NULL, NULL, NULL};
    size_t ny = (size_t)n * h * hd, nv = (size_t)n * kv * hd;
    m.y = rnd(ny, 1), m.v = rnd(nv, 1), m.out = zeros(ny), m.r = rnd(ny, 1);
    /* forward: y_h − (y_h·v̂)v̂ with v̂ = v/‖v‖, head h reading kv head h/(H/KV) */
    double *want = zeros(ny);
    for (int i = 0; i < n; i++)
        for (int hh = 0; hh < h; hh++) {
            const double *vr = m.v + ((size_t)i * kv + hh / (h / kv)) * hd, *yr = m.y + ((size_t)i * h + hh) * hd;
            double nv2 = 0, yv = 0;
            for (int c = 0; c < hd; c++) nv2 += vr[c] * vr[c], yv += yr[c] * vr[c];
            for (int c = 0; c < hd; c++) want[((size_t)i * h + hh) * hd + c] = yr[c] - yv / nv2 * vr[c];
        }
    xsa_f(&m);
    snprintf(name, sizeof name, "xsa_fwd n=%d h=%d kv=%d hd=%d", n, h, kv, hd);
    check_fwd(name, m.out, want, ny);
    /* the result is orthogonal to the token's own value */
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int hh = 0; hh < h; hh++)
            worst = fmax(worst, fabs(dot(m.out + ((size_t)i * h + hh) * hd,
                                         m.v + ((size_t)i * kv + hh / (h / kv)) * hd, (size_t)hd)));
    ok(worst < 1e-12, "xsa_fwd: every output row is orthogonal to its v (worst %.1e)", worst);

    double *dy = dup(m.r, ny), *dv0 = rnd(nv, 1), *dv = dup(dv0, nv);
    B->xsa_bwd(dy, dv, m.y, m.v, n, h, kv, hd);
    snprintf(name, sizeof name, "xsa_bwd dy (in place) h=%d kv=%d", h, kv);
    check(name, m.y, dy, ny, xsa_f, &m);
    snprintf(name, sizeof name, "xsa_bwd dv (accumulates) h=%d kv=%d", h, kv);
    check(name, m.v, minus(dv, dv0, nv), nv, xsa_f, &m);
}

/* A zero value vector (v̂ = 0 under the 1e-12 clamp): y passes unchanged, and so does dy; dv
 * receives nothing. */
static void test_xsa_zero_v(void)
{
    int n = 2, h = 2, kv = 1, hd = 4;
    double *y = rnd(16, 1), *v = rnd(8, 1), *y0 = dup(y, 16), *dy = rnd(16, 1), *dy0 = dup(dy, 16);
    for (int c = 0; c < hd; c++) v[hd + c] = 0; /* row 1 */
    double *dv = rnd(8, 1), *dv0 = dup(dv, 8);
    B->xsa_fwd(y, v, n, h, kv, hd);
    B->xsa_bwd(dy, dv, y0, v, n, h, kv, hd);
    ok(memcmp(y + 8, y0 + 8, 8 * sizeof *y) == 0 && memcmp(y, y0, 8 * sizeof *y) != 0,
       "xsa_fwd: a row whose v is zero passes unchanged (and the other row does not)");
    ok(memcmp(dy + 8, dy0 + 8, 8 * sizeof *dy) == 0 && memcmp(dv + 4, dv0 + 4, 4 * sizeof *dv) == 0,
       "xsa_bwd: a row whose v is zero passes dy unchanged and adds nothing to dv");
}

/* ---- per-head output gate ---------------------------------------------------------------------- */

struct hg { int n, h, hd, ld, win; double scale, mult, *y, *u, *w, *out, *g, *r; };
static double hg_f(void *c)
{
    struct hg *m = c;
    size_t ny = (size_t)m->n * m->h * m->hd;
    memcpy(m->out, m->y, ny * sizeof *m->out);
    B->head_gate_fwd(m->out, m->g, m->u, m->w, m->n, m->h, m->hd, m->ld, m->win, m->scale, m->mult);
    return dot(m->out, m->r, ny);
}

static void test_head_gate(const char *label, int n, int h, int hd, int ld, int win, double scale, double mult)
{
    char name[128];
    struct hg m = {n, h, hd, ld, win, scale, mult, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t ny = (size_t)n * h * hd, nu = (size_t)n * ld, nw = (size_t)h * win;
    m.y = rnd(ny, 1), m.u = rnd(nu, 1), m.w = rnd(nw, 1), m.out = zeros(ny), m.g = zeros((size_t)n * h);
    m.r = rnd(ny, 1);
    double *want = zeros(ny), *gwant = zeros((size_t)n * h);
    for (int i = 0; i < n; i++)
        for (int hh = 0; hh < h; hh++) {
            double z = 0;
            for (int j = 0; j < win; j++) z += m.w[(size_t)hh * win + j] * m.u[(size_t)i * ld + j];
            double g = mult / (1 + exp(-scale * z));
            gwant[(size_t)i * h + hh] = g;
            for (int c = 0; c < hd; c++) want[((size_t)i * h + hh) * hd + c] = g * m.y[((size_t)i * h + hh) * hd + c];
        }
    hg_f(&m);
    snprintf(name, sizeof name, "head_gate_fwd y %s", label);
    check_fwd(name, m.out, want, ny);
    snprintf(name, sizeof name, "head_gate_fwd g %s", label);
    check_fwd(name, m.g, gwant, (size_t)n * h);

    double *dy = dup(m.r, ny), *dw0 = rnd(nw, 1), *dw = dup(dw0, nw), *du0 = rnd(nu, 1), *du = dup(du0, nu);
    B->head_gate_bwd(dy, dw, du, m.y, m.g, m.u, m.w, n, h, hd, ld, win, scale, mult);
    snprintf(name, sizeof name, "head_gate_bwd dy (in place) %s", label);
    check(name, m.y, dy, ny, hg_f, &m);
    snprintf(name, sizeof name, "head_gate_bwd dw (accumulates) %s", label);
    check(name, m.w, minus(dw, dw0, nw), nw, hg_f, &m);
    snprintf(name, sizeof name, "head_gate_bwd du (accumulates; 0 past win) %s", label);
    check(name, m.u, minus(du, du0, nu), nu, hg_f, &m);
    /* du = NULL: the same dy and dw (g again from the unperturbed inputs: the checks moved it) */
    hg_f(&m);
    double *dy2 = dup(m.r, ny), *dw2 = dup(dw0, nw);
    B->head_gate_bwd(dy2, dw2, NULL, m.y, m.g, m.u, m.w, n, h, hd, ld, win, scale, mult);
    ok(memcmp(dy2, dy, ny * sizeof *dy) == 0 && memcmp(dw2, dw, nw * sizeof *dw) == 0,
       "head_gate_bwd with du = NULL: the same dy and dw, bit for bit (%s)", label);
}

/* ---- SmearGate v2 ------------------------------------------------------------------------------ */

enum { SB = 2, ST = 6, BOS = 1 };
/* BOS at the start of sequence 0, in the middle of both, and id 1 nowhere else. */
static const int32_t smear_ids[SB * ST] = {BOS, 5, 7, BOS, 2, 3, 4, 9, BOS, 6, 8, 0};

static int on(int i) { return i % ST != 0 && smear_ids[i] != BOS; }

struct sm { int d, win; double *x, *w, *lam, *y, *gate, *r; };
static double sm_f(void *c)
{
    struct sm *m = c;
    B->smear_fwd(m->y, m->gate, m->x, smear_ids, m->w, m->lam, SB, ST, m->d, m->win, BOS);
    return dot(m->y, m->r, (size_t)SB * ST * m->d);
}

static void test_smear(int d, int win)
{
    char name[96];
    int n = SB * ST;
    size_t nx = (size_t)n * d;
    struct sm m = {d, win, rnd(nx, 1), rnd((size_t)win, 1), rnd(1, 1), zeros(nx), zeros((size_t)n), rnd(nx, 1)};
    m.lam[0] = 0.7;
    double *want = zeros(nx), *gwant = zeros((size_t)n);
    for (int i = 0; i < n; i++) {
        double g = 0;
        if (on(i)) g = m.lam[0] * sig(dot(m.w, m.x + (size_t)i * d, (size_t)win));
        gwant[i] = g;
        for (int c = 0; c < d; c++)
            want[(size_t)i * d + c] = m.x[(size_t)i * d + c] + (g != 0 ? g * m.x[(size_t)(i - 1) * d + c] : 0);
    }
    sm_f(&m);
    snprintf(name, sizeof name, "smear_fwd y (BOS mask) d=%d win=%d", d, win);
    check_fwd(name, m.y, want, nx);
    snprintf(name, sizeof name, "smear_fwd gate d=%d win=%d", d, win);
    check_fwd(name, m.gate, gwant, (size_t)n);
    int zeros_ok = 1;
    for (int i = 0; i < n; i++) zeros_ok &= on(i) ? m.gate[i] != 0 : m.gate[i] == 0;
    ok(zeros_ok, "smear_fwd: the gate is 0 exactly at t = 0 and at every BOS, and only there");

    double *dx = rnd(nx, 1e3), *dw0 = rnd((size_t)win, 1), *dw = dup(dw0, (size_t)win), dl0 = 0.3, dl = dl0;
    B->smear_bwd(dx, dw, &dl, m.r, m.x, m.gate, smear_ids, m.w, m.lam, SB, ST, d, win, BOS);
    snprintf(name, sizeof name, "smear_bwd dx (overwritten) d=%d win=%d", d, win);
    check(name, m.x, dx, nx, sm_f, &m);
    snprintf(name, sizeof name, "smear_bwd dw (accumulates) d=%d win=%d", d, win);
    check(name, m.w, minus(dw, dw0, (size_t)win), (size_t)win, sm_f, &m);
    double inc = dl - dl0;
    snprintf(name, sizeof name, "smear_bwd dlam (accumulates) d=%d win=%d", d, win);
    check(name, m.lam, &inc, 1, sm_f, &m);
}

/* ---- SmearGate v1 ------------------------------------------------------------------------------ */

struct s1 { int d; double *x, *gamma, *y, *r; };
static double s1_f(void *c)
{
    struct s1 *m = c;
    B->smear1_fwd(m->y, m->x, smear_ids, m->gamma, SB, ST, m->d, BOS);
    return dot(m->y, m->r, (size_t)SB * ST * m->d);
}

static void test_smear1(int d)
{
    char name[96];
    int n = SB * ST;
    size_t nx = (size_t)n * d;
    struct s1 m = {d, rnd(nx, 1), rnd((size_t)d, 2), zeros(nx), rnd(nx, 1)};
    double *want = zeros(nx);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) {
            double s = sig(m.gamma[c]), prev = on(i) ? m.x[(size_t)(i - 1) * d + c] : 0;
            want[(size_t)i * d + c] = (1 - s) * m.x[(size_t)i * d + c] + s * prev;
        }
    s1_f(&m);
    snprintf(name, sizeof name, "smear1_fwd (BOS mask) d=%d", d);
    check_fwd(name, m.y, want, nx);
    double *dx = rnd(nx, 1e3), *dg0 = rnd((size_t)d, 1), *dg = dup(dg0, (size_t)d);
    B->smear1_bwd(dx, dg, m.r, m.x, smear_ids, m.gamma, SB, ST, d, BOS);
    snprintf(name, sizeof name, "smear1_bwd dx (overwritten) d=%d", d);
    check(name, m.x, dx, nx, s1_f, &m);
    snprintf(name, sizeof name, "smear1_bwd dgamma (accumulates) d=%d", d);
    check(name, m.gamma, minus(dg, dg0, (size_t)d), (size_t)d, s1_f, &m);
}

/* ---- gated U-Net skip -------------------------------------------------------------------------- */

struct sg { int n, d; double *x, *skip, *w, *gamma, *out, *r; };
static double sg_f(void *c)
{
    struct sg *m = c;
    size_t nx = (size_t)m->n * m->d;
    memcpy(m->out, m->x, nx * sizeof *m->out);
    B->skip_gate_fwd(m->out, m->skip, m->w, m->gamma, m->n, m->d);
    return dot(m->out, m->r, nx);
}

static void test_skip_gate(int n, int d)
{
    char name[96];
    size_t nx = (size_t)n * d;
    struct sg m = {n, d, rnd(nx, 1), rnd(nx, 1), rnd((size_t)d, 1.5), rnd((size_t)d, 2), zeros(nx), rnd(nx, 1)};
    double *want = zeros(nx);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) {
            size_t k = (size_t)i * d + c;
            double s = sig(m.gamma[c]);
            want[k] = s * m.x[k] + (1 - s) * m.w[c] * m.skip[k];
        }
    sg_f(&m);
    snprintf(name, sizeof name, "skip_gate_fwd n=%d d=%d", n, d);
    check_fwd(name, m.out, want, nx);
    double *dx = dup(m.r, nx), *ds0 = rnd(nx, 1), *ds = dup(ds0, nx);
    double *dw0 = rnd((size_t)d, 1), *dw = dup(dw0, (size_t)d), *dg0 = rnd((size_t)d, 1), *dg = dup(dg0, (size_t)d);
    B->skip_gate_bwd(dx, ds, dw, dg, m.x, m.skip, m.w, m.gamma, n, d);
    check("skip_gate_bwd dx (in place)", m.x, dx, nx, sg_f, &m);
    check("skip_gate_bwd dskip (accumulates)", m.skip, minus(ds, ds0, nx), nx, sg_f, &m);
    check("skip_gate_bwd dw (accumulates)", m.w, minus(dw, dw0, (size_t)d), (size_t)d, sg_f, &m);
    check("skip_gate_bwd dgamma (accumulates)", m.gamma, minus(dg, dg0, (size_t)d), (size_t)d, sg_f, &m);
}

/* ---- two-lane write-back ----------------------------------------------------------------------- */

struct ln { size_t n; double *l0, *l1, *a, *m, *rr, *p, *o0, *o1, *q0, *q1; };
static double ln_f(void *c)
{
    struct ln *m = c;
    memcpy(m->o0, m->l0, m->n * sizeof *m->o0);
    memcpy(m->o1, m->l1, m->n * sizeof *m->o1);
    B->lanes_fwd(m->o0, m->o1, m->a, m->m, m->rr, m->p, m->n);
    return dot(m->o0, m->q0, m->n) + dot(m->o1, m->q1, m->n);
}

static void test_lanes(size_t n)
{
    char name[96];
    struct ln m = {n, rnd(n, 1), rnd(n, 1), rnd(n, 1), rnd(n, 1), rnd(2, 1.5), rnd(4, 1.5),
                   zeros(n), zeros(n), rnd(n, 1), rnd(n, 1)};
    double *w0 = zeros(n), *w1 = zeros(n);
    for (size_t i = 0; i < n; i++) { /* P[0] the attention output's weights, P[1] the MLP's */
        w0[i] = m.rr[0] * m.l0[i] + m.p[0] * m.a[i] + m.p[2] * m.m[i];
        w1[i] = m.rr[1] * m.l1[i] + m.p[1] * m.a[i] + m.p[3] * m.m[i];
    }
    ln_f(&m);
    snprintf(name, sizeof name, "lanes_fwd lane 0 n=%zu", n);
    check_fwd(name, m.o0, w0, n);
    snprintf(name, sizeof name, "lanes_fwd lane 1 n=%zu", n);
    check_fwd(name, m.o1, w1, n);
    double *d0 = dup(m.q0, n), *d1 = dup(m.q1, n), *da = rnd(n, 1e3), *dm = rnd(n, 1e3);
    double *dr0 = rnd(2, 1), *dr = dup(dr0, 2), *dp0 = rnd(4, 1), *dp = dup(dp0, 4);
    B->lanes_bwd(d0, d1, da, dm, dr, dp, m.l0, m.l1, m.a, m.m, m.rr, m.p, n);
    check("lanes_bwd dl0 (in place)", m.l0, d0, n, ln_f, &m);
    check("lanes_bwd dl1 (in place)", m.l1, d1, n, ln_f, &m);
    check("lanes_bwd da (overwritten)", m.a, da, n, ln_f, &m);
    check("lanes_bwd dm (overwritten)", m.m, dm, n, ln_f, &m);
    check("lanes_bwd dr (accumulates)", m.rr, minus(dr, dr0, 2), 2, ln_f, &m);
    check("lanes_bwd dp (accumulates)", m.p, minus(dp, dp0, 4), 4, ln_f, &m);
}

/* ---- scalar residual scale ---------------------------------------------------------------------- */

struct sa { size_t n; double *x, *s1, *s2, *f, *out, *r; };
static double sa_f(void *c)
{
    struct sa *m = c;
    memcpy(m->out, m->x, m->n * sizeof *m->out);
    B->scalar_add_fwd(m->out, m->s1, m->s2, m->f, m->n);
    return dot(m->out, m->r, m->n);
}

static void test_scalar_add(size_t n, int with_s2)
{
    char name[96];
    const char *tag = with_s2 ? "s1·s2" : "s2 = NULL";
    struct sa m = {n, rnd(n, 1), rnd(1, 2), with_s2 ? rnd(1, 2) : NULL, rnd(n, 1), zeros(n), rnd(n, 1)};
    double *want = zeros(n), k = m.s1[0] * (with_s2 ? m.s2[0] : 1);
    for (size_t i = 0; i < n; i++) want[i] = m.x[i] + k * m.f[i];
    sa_f(&m);
    snprintf(name, sizeof name, "scalar_add_fwd (%s) n=%zu", tag, n);
    check_fwd(name, m.out, want, n);
    for (int acc = 0; acc < 2; acc++) {
        double *df0 = rnd(n, acc ? 1 : 1e3), *df = dup(df0, n), ds10 = 0.25, ds1 = ds10, ds20 = -0.5, ds2 = ds20;
        B->scalar_add_bwd(df, &ds1, with_s2 ? &ds2 : NULL, m.r, m.s1, m.s2, m.f, n, acc);
        snprintf(name, sizeof name, "scalar_add_bwd df (%s, %s)", acc ? "accumulated" : "overwritten", tag);
        check(name, m.f, acc ? minus(df, df0, n) : df, n, sa_f, &m);
        double inc1 = ds1 - ds10, inc2 = ds2 - ds20;
        snprintf(name, sizeof name, "scalar_add_bwd ds1 (accumulates; %s)", tag);
        check(name, m.s1, &inc1, 1, sa_f, &m);
        if (with_s2) {
            snprintf(name, sizeof name, "scalar_add_bwd ds2 (accumulates; %s)", tag);
            check(name, m.s2, &inc2, 1, sa_f, &m);
        }
    }
}

/* Reductions over many chunks: the parameter gradients of lanes_bwd and scalar_add_bwd against
 * plain double sums (at n past one chunk, where the chunked order matters). */
static void test_long_sums(void)
{
    size_t n = 100003;
    double *l0 = rnd(n, 1), *l1 = rnd(n, 1), *a = rnd(n, 1), *m = rnd(n, 1), r[2] = {1.1, 0.9};
    double p[4] = {1, 0.5, -0.5, 2}, *g0 = rnd(n, 1), *g1 = rnd(n, 1), *da = zeros(n), *dm = zeros(n);
    double want[6] = {0}, dr[2] = {0}, dp[4] = {0};
    for (size_t i = 0; i < n; i++) {
        want[0] += g0[i] * l0[i], want[1] += g1[i] * l1[i];
        want[2] += g0[i] * a[i], want[3] += g1[i] * a[i], want[4] += g0[i] * m[i], want[5] += g1[i] * m[i];
    }
    B->lanes_bwd(g0, g1, da, dm, dr, dp, l0, l1, a, m, r, p, n);
    double got[6] = {dr[0], dr[1], dp[0], dp[1], dp[2], dp[3]};
    check_fwd("lanes_bwd dr, dp over 100003 elements (many chunks) = plain sums", got, want, 6);
    double s1 = 0.5, ds1 = 0, sw = 0, *df = zeros(n), *dy = rnd(n, 1);
    for (size_t i = 0; i < n; i++) sw += dy[i] * a[i];
    B->scalar_add_bwd(df, &ds1, NULL, dy, &s1, NULL, a, n, 0);
    is_close(ds1, sw, 1e-10, 1e-12, "scalar_add_bwd ds1 over 100003 elements (many chunks) = plain sum");
}

int main(void)
{
    B->init();
    test_xsa(5, 4, 2, 8); /* GQA: two query heads per kv head */
    test_xsa(3, 2, 2, 6); /* one query head per kv head */
    test_xsa(2, 3, 1, 5); /* multi-query */
    test_xsa_zero_v();
    test_head_gate("AttnOutGate (mult 2, win 3 < ld 7)", 4, 3, 5, 7, 3, 1, 2);
    test_head_gate("dense (win = ld = 6)", 4, 2, 4, 6, 6, 1, 1);
    test_head_gate("sparse (scale 0.5, win 4 < ld 9)", 3, 4, 3, 9, 4, 0.5, 1);
    test_smear(5, 3);
    test_smear(4, 4); /* win = d */
    test_smear1(5);
    test_skip_gate(4, 5);
    test_lanes(13);
    test_scalar_add(11, 0);
    test_scalar_add(11, 1);
    test_long_sums();
    diag("%d forward and gradient checks, each also shown to catch a nudged value", checks);
    for (int i = 0; i < nkept; i++) free(kept[i]);
    return done_testing();
}
