/* test_cuda_bf16.c: the bf16 products (lib/backend.h set_bf16) of the CUDA backend against the
 * CPU reference in bf16 mode: matmul forward and backward, attention forward and backward (plain
 * and varlen), softcap_ce and logit_ce, on random inputs, through kernels/cuda/ops.h. Built twice
 * (Makefile): test_cuda_bf16_emu against the emulated kernels in every `make check`,
 * test_cuda_bf16_gpu on a real device (cuBLAS's tensor cores) under `make check-gpu`. The
 * attention here is the batched-product path (pg_cuda_attention_flash(0)); the fused kernels
 * are tests/emu/test_cuda_flash.c's.
 *
 * Tolerance. Both sides round the same fp32 operands to bf16 the same way (round to nearest
 * even), so a product of two test inputs is the same exact bf16 products summed in fp32 in
 * another order: the parity rule of the fp32 test, |gpu − cpu| ≤ 1e-5·(|cpu| + max(rms(cpu),
 * floor)) (parity.h), holds for matmul, the attention's lse and the cross-entropy's losses. Some
 * operands are computed by each side itself before being rounded: the attention's P and dS, the
 * logits' gradient in the cross-entropy. The two fp32 values differ by an ulp or two (exp, sum
 * order), and where a value lies that close to a midpoint between two bf16 numbers the two sides
 * round it to neighbours, one bf16 ulp (2^-8 to 2^-7 of the value) apart. Such a flip is rare
 * (an ulp or two of difference against the 2^16 fp32 ulps between bf16 neighbours: ~3e-5 of the
 * values; ~1e-5 seen under the emulator) but moves the one row of each output that the value
 * feeds (a row of O, dV, dQ or dK; of dh or dE) by up to 2^-7·|value|·|other operand|, far more
 * than 1e-5 of the scale. No fp32-level tolerance covers it, and a bf16-level one alone would not
 * see a missing rounding, so outputs downstream of such operands are checked by check_flips: every
 * element within FLIP_TOL (2^-6 of the scale: several flips' worth; ~2e-3 seen), and at most
 * 4 + FLIP_RATE·(values of the operand) rows holding an element outside the 1e-5 rule: a flip
 * moves a row, a missing or different rounding moves nearly all of them. Both parts prove they
 * can fail, with planted mismatches.
 *
 * The mode is really on: for each operation the bf16 result differs from the fp32 one of the
 * same backend by what bf16 rounding makes (relative rms difference in [1e-4, 3e-2]; the lse from
 * 1e-5, since log Σ exp averages the scores' rounding errors and adds log t), on both backends;
 * the totals differ too; and set_bf16(0) gives the fp32 results back bit for bit. */
#include "parity.h"

#define TOL 1e-5
#define FLIP_TOL 0x1p-6 /* ≈ 1.6e-2 of the scale: several flips' worth */
#define FLIP_RATE 4e-4  /* flips per computed operand value allowed for: >10x the expected rate */
#define BF16_LO 1e-4    /* the relative rms difference bf16 − fp32 of one backend lies in */
#define BF16_HI 3e-2    /* [BF16_LO, BF16_HI] (lse: from BF16_LO_LSE) */
#define BF16_LO_LSE 1e-5

static void set_both(int on)
{
    cpu->set_bf16(on);
    pg_cuda_set_bf16(on);
}

/* ---- checks --------------------------------------------------------------------------------- */

/* a[k] moved by 10x what the rule (tol, floor) allows there, and by one ulp at least (parity.h's
 * nudge, in place). */
static void nudge(float *a, const float *want, size_t k, double tol, double floor, double rms)
{
    double allowed = tol * parity_scale(want[k], fmax(rms, floor));
    float moved = (float)(a[k] + 10 * allowed);
    a[k] = moved != a[k] ? moved : nextafterf(a[k], INFINITY);
}

/* Rows of width w (of n values) holding a value that fails the rule (tol, floor). */
static size_t bad_rows(const float *got, const float *want, size_t n, size_t w, double tol, double floor)
{
    double rms = fmax(rms_of(want, n), floor);
    size_t bad = 0;
    for (size_t r = 0; r < n / w; r++) {
        int row_bad = 0;
        for (size_t c = 0; c < w; c++) {
            size_t i = r * w + c;
            row_bad |= !(fabs((double)got[i] - want[i]) <= tol * parity_scale(want[i], rms));
        }
        bad += row_bad;
    }
    return bad;
}

/* Outputs downstream of a rounded operand each side computes itself (see the top), in rows of
 * width w (one flip moves at most one row of each output), fed by `ops` values of that operand:
 * every value within FLIP_TOL, and at most 4 + FLIP_RATE·ops rows with values outside TOL.
 * Proves both parts can fail: one value nudged past FLIP_TOL, and one value in each of one more
 * rows than allowed nudged past TOL, must each be caught. */
static void check_flips(const char *op, const char *what, const float *got, const float *want, size_t n, size_t w,
                        size_t ops, double floor)
{
    double worst, w2, rms = rms_of(want, n);
    size_t rows = n / w, allowed = 4 + (size_t)(FLIP_RATE * (double)ops);
    if (allowed > rows / 2) allowed = rows / 2; /* never most of the rows */
    size_t loose = mismatches(got, want, n, FLIP_TOL, floor, &worst);
    size_t tight = bad_rows(got, want, n, w, TOL, floor);
    float *one = copy(got, n), *many = copy(got, n);
    nudge(one, want, n / 2, FLIP_TOL, floor, rms);
    int caught_loose = mismatches(one, want, n, FLIP_TOL, floor, &w2) > 0;
    for (size_t r = 0; r <= allowed && r < rows; r++)
        nudge(many, want, r * (rows / (allowed + 1)) * w, TOL, floor, rms);
    int caught_tight = bad_rows(many, want, n, w, TOL, floor) > allowed;
    if (!caught_loose || !caught_tight) diag("%s %s: a planted mismatch was not caught", op, what);
    ok(loose == 0 && tight <= allowed && caught_loose && caught_tight,
       "%s %s: %zu values within %g; %zu of %zu rows outside %g (at most %zu; worst %.2e)", op, what, n, FLIP_TOL,
       tight, rows, TOL, allowed, worst);
    if (tight) diag("%s %s: %zu rows outside %g: bf16 rounding flips of a computed operand", op, what, tight, TOL);
    if (worst > worst_seen) worst_seen = worst;
    compared++;
}

/* rms(a − b) / max(rms(b), floor) */
static double rel_rms_diff(const float *a, const float *b, size_t n, double floor)
{
    double dd = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        dd += d * d;
    }
    double scale = fmax(rms_of(b, n), floor);
    return n == 0 ? 0 : scale > 0 ? sqrt(dd / n) / scale : dd > 0 ? INFINITY : 0;
}

/* The bf16 result differs from the fp32 one of the same backend as bf16 rounding makes it: by a
 * relative rms difference in [lo, BF16_HI]. */
static void check_on(const char *side, const char *op, const char *name, const char *what, const float *bf,
                     const float *fp, size_t n, double floor, double lo)
{
    double r = rel_rms_diff(bf, fp, n, floor);
    ok(r >= lo && r <= BF16_HI, "%s %s %s: bf16 differs from fp32 by %.2e (relative rms, in [%g, %g]) %s", side, op,
       name, r, lo, BF16_HI, what);
}

/* ---- one operation on both backends, in fp32, bf16 and fp32 again ----------------------------- */

enum { MAXOUT = 5 };
/* An output: its name and values; when it is downstream of an operand each side computes
 * (check_flips), its row width w and the values of that operand (0, 0 otherwise); its floor (as
 * check_floor's); the least relative change bf16 must make (check_on; 0: none asked, as for the
 * dq and dk of a one-token softmax, zero in both modes). */
struct out {
    const char *name;
    size_t n, w, ops;
    double floor, lo;
};
/* The results of one run: out[0] the CPU's, out[1] the device's (downloaded); the returned totals. */
struct run {
    float *out[2][MAXOUT];
    double total[2];
};

/* The bf16 run's device results against its CPU results (parity); each backend's bf16 results
 * against its fp32 ones (the mode is on); the second fp32 run against the first (bits). */
static void compare(const char *op, const char *what, const struct out *o, int nout, const struct run *r, int has_total)
{
    const struct run *fp = &r[0], *bf = &r[1], *fp2 = &r[2];
    char name[96];
    for (int i = 0; i < nout; i++) {
        snprintf(name, sizeof name, "%s %s (bf16)", op, o[i].name);
        if (o[i].w)
            check_flips(name, what, bf->out[1][i], bf->out[0][i], o[i].n, o[i].w, o[i].ops, o[i].floor);
        else
            check_floor(name, what, bf->out[1][i], bf->out[0][i], o[i].n, TOL, o[i].floor);
    }
    if (has_total) is_close(bf->total[1], bf->total[0], 0, TOL, "%s total (bf16) %s (%.6f)", op, what, bf->total[1]);
    for (int i = 0; i < nout; i++)
        for (int s = 0; s < 2 && o[i].lo > 0; s++)
            check_on(s ? "cuda" : "cpu", op, o[i].name, what, bf->out[s][i], fp->out[s][i], o[i].n, o[i].floor,
                     o[i].lo);
    for (int s = 0; s < 2 && has_total; s++) {
        double rt = fabs(bf->total[s] - fp->total[s]) / fabs(fp->total[s]);
        ok(rt > 0 && rt <= BF16_HI, "%s %s total: bf16 differs from fp32 by %.2e (relative, in (0, %g]) %s",
           s ? "cuda" : "cpu", op, rt, BF16_HI, what);
    }
    int same = 1;
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < nout; i++) same &= same_bits(fp2->out[s][i], fp->out[s][i], o[i].n);
        if (has_total) same &= fp2->total[s] == fp->total[s];
    }
    ok(same, "%s %s: set_bf16(0) gives the fp32 results back bit for bit, on both backends", op, what);
}

static void test_matmul(int n, int in, int out)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d in=%d out=%d", n, in, out);
    size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = rnd(nx, 1), *w = rnd(nw, 0.5f), *dy = rnd(ny, 1), *dx0 = rnd(nx, 1), *dw0 = rnd(nw, 1);
    float *d_x = dev(x, nx), *d_w = dev(w, nw), *d_dy = dev(dy, ny), *d_y = dnew(ny * 4);
    struct run r[3];
    for (int m = 0; m < 3; m++) {
        set_both(m == 1);
        float *y = hnew(ny), *dx = copy(dx0, nx), *dw = copy(dw0, nw), *dx2 = hnew(nx);
        float *d_dx = dev(dx0, nx), *d_dw = dev(dw0, nw), *d_dx2 = dnew(nx * 4);
        cpu->matmul_fwd(y, x, w, n, in, out);
        cpu->matmul_bwd(dx, dw, dy, x, w, n, in, out, 1); /* dx accumulated: the beta = 1 path */
        cpu->matmul_bwd(dx2, NULL, dy, x, w, n, in, out, 0);
        pg_cuda_matmul_fwd(d_y, d_x, d_w, n, in, out);
        pg_cuda_matmul_bwd(d_dx, d_dw, d_dy, d_x, d_w, n, in, out, 1);
        pg_cuda_matmul_bwd(d_dx2, NULL, d_dy, d_x, d_w, n, in, out, 0);
        r[m] = (struct run){{{y, dx, dw, dx2}, {back(d_y, ny), back(d_dx, nx), back(d_dw, nw), back(d_dx2, nx)}},
                            {0, 0}};
    }
    /* dx and dw accumulate onto random starts of the gradients' own size, so bf16 still shows */
    const struct out o[] = {{"y", ny, 0, 0, 0, BF16_LO},
                            {"dx (accumulated)", nx, 0, 0, 0, BF16_LO},
                            {"dw (accumulates)", nw, 0, 0, 0, BF16_LO},
                            {"dx (dw NULL)", nx, 0, 0, 0, BF16_LO}};
    compare("matmul", what, o, 4, r, 0);
    set_both(0);
}

static void test_attention(int b, int t, int h, int kv, int hd, const int *lens, int nlens)
{
    char what[96];
    snprintf(what, sizeof what, "b=%d t=%d h=%d kv=%d hd=%d%s", b, t, h, kv, hd, lens ? " documents" : "");
    size_t nq = (size_t)b * t * h * hd, nk = (size_t)b * t * kv * hd, nl = (size_t)b * h * t;
    double scale = 1 / sqrt((double)hd);
    int32_t *ds = doc_starts(b, t, lens, nlens), *d_ds = ds ? dev_ids(ds, (size_t)b * t) : NULL;
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    float *work = hnew(cpu->attention_work(t)), *d_work = dnew(pg_cuda_attention_work(t) * 4);
    float *d_q = dev(q, nq), *d_k = dev(k, nk), *d_v = dev(v, nk), *d_dout = dev(dout, nq);
    struct run r[3];
    for (int m = 0; m < 3; m++) {
        set_both(m == 1);
        float *out = hnew(nq), *lse = hnew(nl), *dq = hnew(nq), *dk = hnew(nk), *dv = hnew(nk);
        float *d_out = dnew(nq * 4), *d_lse = dnew(nl * 4), *d_dq = dnew(nq * 4), *d_dk = dnew(nk * 4);
        float *d_dv = dnew(nk * 4);
        cpu->attention_varlen_fwd(out, lse, q, k, v, ds, b, t, h, kv, hd, scale, work);
        pg_cuda_attention_varlen_fwd(d_out, d_lse, d_q, d_k, d_v, d_ds, b, t, h, kv, hd, scale, d_work);
        /* the backward starts from the CPU's out and lse on both sides, as in test_cuda_ops */
        float *d_outc = dev(out, nq), *d_lsec = dev(lse, nl);
        cpu->attention_varlen_bwd(dq, dk, dv, dout, out, lse, q, k, v, ds, b, t, h, kv, hd, scale, work);
        pg_cuda_attention_varlen_bwd(d_dq, d_dk, d_dv, d_dout, d_outc, d_lsec, d_q, d_k, d_v, d_ds, b, t, h, kv, hd,
                                     scale, d_work);
        r[m] = (struct run){{{out, lse, dq, dk, dv},
                             {back(d_out, nq), back(d_lse, nl), back(d_dq, nq), back(d_dk, nk), back(d_dv, nk)}},
                            {0, 0}};
    }
    /* lse comes from S = scale·bf(q)·bf(k)ᵀ of the inputs alone; the rest passes through P or dS.
     * dq and dk are compared at the scale of dv, as in test_cuda_ops (a one-token softmax's are
     * zero up to cancellation, in both modes). */
    double fl = rms_of(r[1].out[0][4], nk), lo_dq = t > 1 ? BF16_LO : 0;
    size_t np = (size_t)b * h * t * (t + 1) / 2; /* P (and dS): the causal triangle of each head */
    const struct out o[] = {{"out", nq, (size_t)hd, np, 0, BF16_LO},
                            {"lse", nl, 0, 0, 0, BF16_LO_LSE}, /* log Σ exp: averages the scores' rounding */
                            {"dq", nq, (size_t)hd, np, fl, lo_dq},
                            {"dk", nk, (size_t)hd, np, fl, lo_dq},
                            {"dv", nk, (size_t)hd, np, 0, BF16_LO}};
    compare(lens ? "attention_varlen" : "attention", what, o, 5, r, 0);
    if (!lens) { /* doc_start NULL is plain attention in bf16 mode too, bit for bit */
        set_both(1);
        float *out = hnew(nq), *lse = hnew(nl), *d_out = dnew(nq * 4), *d_lse = dnew(nl * 4);
        cpu->attention_fwd(out, lse, q, k, v, b, t, h, kv, hd, scale, work);
        pg_cuda_attention_fwd(d_out, d_lse, d_q, d_k, d_v, b, t, h, kv, hd, scale, d_work);
        ok(same_bits(out, r[1].out[0][0], nq) && same_bits(lse, r[1].out[0][1], nl) &&
               same_bits(back(d_out, nq), r[1].out[1][0], nq) && same_bits(back(d_lse, nl), r[1].out[1][1], nl),
           "attention_fwd in bf16 equals attention_varlen_fwd with doc_start NULL bit for bit (%s)", what);
    }
    set_both(0);
}

/* plain: softcap_ce (poly5 and z_loss must be 0), else logit_ce. */
static void test_ce(int n, int d, int v, double cap, int poly5, double z_loss, int plain)
{
    char what[96];
    snprintf(what, sizeof what, "n=%d d=%d v=%d cap=%g poly5=%d z_loss=%g", n, d, v, cap, poly5, z_loss);
    const char *op = plain ? "softcap_ce" : "logit_ce";
    int32_t *y = hkeep(malloc((size_t)n * sizeof *y));
    for (int i = 0; i < n; i++) y[i] = (int32_t)((urand() + 1) / 2 * v) % v;
    /* dE accumulates onto a start of its own size (≈ 1/√n), so that bf16's change still shows */
    float *h = rnd((size_t)n * d, 2), *emb = rnd((size_t)v * d, 1), *demb0 = rnd((size_t)v * d, 0.05f);
    float *work = hnew(pg_ce_work(v)), *d_work = dnew(pg_ce_work(v) * 4);
    float *d_h = dev(h, (size_t)n * d), *d_emb = dev(emb, (size_t)v * d);
    int32_t *d_y = dev_ids(y, (size_t)n);
    double gs = 1.0 / n;
    struct run r[3];
    for (int m = 0; m < 3; m++) {
        set_both(m == 1);
        float *dh = hnew((size_t)n * d), *demb = copy(demb0, (size_t)v * d), *losses = hnew((size_t)n);
        float *d_dh = dnew((size_t)n * d * 4), *d_demb = dev(demb0, (size_t)v * d), *d_losses = dnew((size_t)n * 4);
        double want, got;
        if (plain) {
            want = cpu->softcap_ce(dh, demb, losses, h, emb, y, n, d, v, cap, gs, work);
            got = pg_cuda_softcap_ce(d_dh, d_demb, d_losses, d_h, d_emb, d_y, n, d, v, cap, gs, d_work);
        } else {
            want = cpu->logit_ce(dh, demb, losses, h, emb, y, n, d, v, cap, poly5, z_loss, gs, work);
            got = pg_cuda_logit_ce(d_dh, d_demb, d_losses, d_h, d_emb, d_y, n, d, v, cap, poly5, z_loss, gs, d_work);
        }
        r[m] = (struct run){{{losses, dh, demb},
                             {back(d_losses, (size_t)n), back(d_dh, (size_t)n * d), back(d_demb, (size_t)v * d)}},
                            {want, got}};
    }
    /* the losses come from x = bf(h)·bf(E)ᵀ of the inputs alone; dh and dE from the rounded ∂x */
    size_t nz = (size_t)n * v; /* ∂x */
    const struct out o[] = {{"losses", (size_t)n, 0, 0, 0, BF16_LO},
                            {"dh", (size_t)n * d, (size_t)d, nz, 0, BF16_LO},
                            {"demb (accumulates)", (size_t)v * d, (size_t)d, nz, 0, BF16_LO}};
    compare(op, what, o, 3, r, 1);
    set_both(0);
}

/* The checks' own rules on planted data: the "mode is on" range rejects equal results (bf16
 * off) and takes a bf16-sized perturbation; check_flips's two parts are exercised by each call. */
static void test_rules(void)
{
    enum { N = 256 };
    float a[N], b[N];
    for (int i = 0; i < N; i++) a[i] = b[i] = urand();
    ok(!(rel_rms_diff(a, b, N, 0) >= BF16_LO), "rule: equal results (bf16 not on) fall below the bf16 range");
    for (int i = 0; i < N; i++) b[i] = a[i] * (1 + 0x1p-8f * urand());
    double r = rel_rms_diff(b, a, N, 0);
    ok(r >= BF16_LO && r <= BF16_HI, "rule: a bf16-sized perturbation (%.2e) lies in the range", r);
    for (int i = 0; i < N; i++) b[i] = a[i] * (1 + 0.2f * urand());
    ok(!(rel_rms_diff(b, a, N, 0) <= BF16_HI), "rule: a 20%% perturbation lies above the range");
}

int main(void)
{
    parity_seed = 1616;
    parity_start();
    test_rules();

    test_matmul(1, 8, 5);
    test_matmul(3, 7, 5); /* operands of 21 and 35 floats: the general conversion, not the dense one */
    test_matmul(37, 64, 48);
    test_matmul(130, 96, 200);
    test_matmul(600, 40, 24);  /* dw sums 600 rows: two of the CPU's k tiles (512) */
    test_matmul(20, 1100, 30); /* y and dw over k = 1100: three */

    /* the batched-product attention, whose rounding points are the CPU's exactly; the fused
     * kernels that bf16 mode runs by default are test_cuda_flash's */
    pg_cuda_attention_flash(0);
    static const int docs[] = {5, 1, 12, 1, 1, 30}, longer[] = {100, 7, 1, 60};
    test_attention(2, 37, 4, 2, 16, NULL, 0);
    test_attention(1, 1, 2, 2, 8, NULL, 0);
    test_attention(1, 70, 3, 1, 12, NULL, 0);
    test_attention(1, 200, 2, 1, 16, NULL, 0); /* two of the CPU's row blocks (128) */
    test_attention(2, 37, 4, 2, 16, docs, 6);
    test_attention(1, 200, 3, 1, 12, longer, 4);

    test_ce(300, 32, 100, 30, 0, 0, 1); /* softcap_ce */
    test_ce(40, 16, 37, 2, 0, 0, 1);    /* a small cap: the tanh saturates */
    test_ce(300, 32, 100, 30, 0, 0, 0);
    test_ce(300, 32, 100, 30, 0, 1e-4, 0);
    test_ce(300, 32, 100, 3, 1, 0, 0);  /* poly5 at a small cap */
    test_ce(40, 16, 37, 2, 1, 1e-2, 0); /* poly5 + z-loss */
    return parity_done(TOL);
}
