/* test_cuda_record.c: the record stack's CUDA operations (kernels/cuda/record.cu) against the
 * CPU reference (pg_backend_cpu, kernels/cpu/record.c) on random inputs, forward and backward,
 * through the C API of kernels/cuda/ops.h. Built twice (Makefile): test_cuda_record_emu links the
 * kernels compiled for the host emulator and runs in every `make check`; test_cuda_record_gpu
 * links the nvcc-built kernels and runs them on the GPU (it skips without one, and fails under
 * PG_EXPECT_GPU=1, i.e. `make check-gpu`).
 *
 * Tolerance: |gpu − cpu| ≤ 1e-5·(|cpu| + rms(cpu)) for every element, as test_cuda_ops.c. Both
 * sides compute in float from the same inputs, sum in double (in different orders: ~1e-16), and
 * compute a gate's σ in double, rounded once. What can differ: fused multiply-adds on the GPU
 * (1 float ulp ≈ 6e-8 per operation) and expf (≤ 2 ulp) in the per-channel σ(γ) of SmearGate v1
 * and the skip gate. 1e-5 keeps a wide margin over these, while a wrong index, a missed term or
 * a wrong mask errs by 1e-2 or more. Every comparison also proves it can fail: one element nudged
 * by 1e-4 of its scale must be caught. Every reduction must give the same bits when run twice.
 * Backward passes start from the CPU's forward results (g, gate) on both sides, so only the
 * backward is compared. */
#include "parity.h"

#define TOL 1e-5

/* ids of b·t tokens in [0, vocab), BOS (id 1) about one in `every`. */
static int32_t *random_ids(size_t n, int vocab)
{
    int32_t *ids = hkeep(malloc((n ? n : 1) * sizeof *ids));
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)((urand() + 1) / 2 * vocab) % vocab;
    return ids;
}

/* ---- operations ---------------------------------------------------------------------------- */

/* zero_row >= 0: that row's value vectors are all zero (the 1e-12 clamp). */
static void test_xsa(int n, int h, int kv, int hd, int zero_row)
{
    char what[80];
    snprintf(what, sizeof what, "n=%d h=%d kv=%d hd=%d%s", n, h, kv, hd, zero_row >= 0 ? " (a zero v row)" : "");
    size_t ny = (size_t)n * h * hd, nv = (size_t)n * kv * hd;
    float *y = rnd(ny, 1), *v = rnd(nv, 1), *dy = rnd(ny, 1), *dv = rnd(nv, 1);
    if (zero_row >= 0) memset(v + (size_t)zero_row * kv * hd, 0, (size_t)kv * hd * sizeof *v);
    float *d_y = dev(y, ny), *d_v = dev(v, nv), *d_ypre = dev(y, ny), *d_dy = dev(dy, ny), *d_dv = dev(dv, nv);
    float *y_pre = copy(y, ny);
    cpu->xsa_fwd(y, v, n, h, kv, hd);
    pg_cuda_xsa_fwd(d_y, d_v, n, h, kv, hd);
    check("xsa_fwd", what, back(d_y, ny), y, ny, TOL);
    cpu->xsa_bwd(dy, dv, y_pre, v, n, h, kv, hd);
    pg_cuda_xsa_bwd(d_dy, d_dv, d_ypre, d_v, n, h, kv, hd);
    check("xsa_bwd dy", what, back(d_dy, ny), dy, ny, TOL);
    check("xsa_bwd dv (accumulates)", what, back(d_dv, nv), dv, nv, TOL);
}

static void test_head_gate(const char *label, int n, int h, int hd, int ld, int win, double scale, double mult)
{
    char what[96];
    snprintf(what, sizeof what, "%s n=%d h=%d hd=%d ld=%d win=%d", label, n, h, hd, ld, win);
    size_t ny = (size_t)n * h * hd, nu = (size_t)n * ld, nw = (size_t)h * win, ng = (size_t)n * h;
    float *y = rnd(ny, 1), *u = rnd(nu, 1), *w = rnd(nw, 1), *g = hnew(ng), *y_pre = copy(y, ny);
    float *d_y = dev(y, ny), *d_u = dev(u, nu), *d_w = dev(w, nw), *d_g = dnew(ng * 4), *d_ypre = dev(y, ny);
    cpu->head_gate_fwd(y, g, u, w, n, h, hd, ld, win, scale, mult);
    pg_cuda_head_gate_fwd(d_y, d_g, d_u, d_w, n, h, hd, ld, win, scale, mult);
    check("head_gate_fwd y", what, back(d_y, ny), y, ny, TOL);
    check("head_gate_fwd g", what, back(d_g, ng), g, ng, TOL);
    for (int with_du = 1; with_du >= 0; with_du--) {
        float *dy = rnd(ny, 1), *dw = rnd(nw, 1), *du = rnd(nu, 1);
        float *d_dy = dev(dy, ny), *d_dw = dev(dw, nw), *d_du = dev(du, nu), *d_gc = dev(g, ng);
        cpu->head_gate_bwd(dy, dw, with_du ? du : NULL, y_pre, g, u, w, n, h, hd, ld, win, scale, mult);
        pg_cuda_head_gate_bwd(d_dy, d_dw, with_du ? d_du : NULL, d_ypre, d_gc, d_u, d_w, n, h, hd, ld, win, scale,
                              mult);
        check("head_gate_bwd dy", what, back(d_dy, ny), dy, ny, TOL);
        check(with_du ? "head_gate_bwd dw (accumulates)" : "head_gate_bwd dw with du = NULL", what, back(d_dw, nw), dw,
              nw, TOL);
        if (with_du) check("head_gate_bwd du (accumulates)", what, back(d_du, nu), du, nu, TOL);
        else ok(same_bits(back(d_du, nu), du, nu), "head_gate_bwd with du = NULL leaves du alone (%s)", what);
    }
}

static void test_smear(int b, int t, int d, int win, int vocab)
{
    char what[80];
    snprintf(what, sizeof what, "b=%d t=%d d=%d win=%d vocab=%d", b, t, d, win, vocab);
    int n = b * t, bos = 1;
    size_t nx = (size_t)n * d;
    int32_t *ids = random_ids((size_t)n, vocab);
    ids[0] = bos; /* a BOS at t = 0, and one mid-sequence */
    if (t > 3) ids[3] = bos;
    float *x = rnd(nx, 1), *w = rnd((size_t)win, 1), lam[1] = {0.6f}, *y = hnew(nx), *gate = hnew((size_t)n);
    float *d_x = dev(x, nx), *d_w = dev(w, (size_t)win), *d_lam = dev(lam, 1), *d_y = dnew(nx * 4);
    float *d_gate = dnew((size_t)n * 4);
    int32_t *d_ids = dev_ids(ids, (size_t)n);
    cpu->smear_fwd(y, gate, x, ids, w, lam, b, t, d, win, bos);
    pg_cuda_smear_fwd(d_y, d_gate, d_x, d_ids, d_w, d_lam, b, t, d, win, bos);
    check("smear_fwd y", what, back(d_y, nx), y, nx, TOL);
    float *got_gate = back(d_gate, (size_t)n);
    check("smear_fwd gate", what, got_gate, gate, (size_t)n, TOL);
    int zeros_ok = 1;
    for (int i = 0; i < n; i++)
        if (i % t == 0 || ids[i] == bos) zeros_ok &= got_gate[i] == 0;
    ok(zeros_ok, "smear_fwd: the gate is exactly 0 at t = 0 and at every BOS (%s)", what);
    float *dy = rnd(nx, 1), *dx = rnd(nx, 1), *dw = rnd((size_t)win, 1), dlam[1] = {0.25f};
    float *d_dy = dev(dy, nx), *d_dx = dnew(nx * 4), *d_dw = dev(dw, (size_t)win), *d_dlam = dev(dlam, 1);
    float *d_gc = dev(gate, (size_t)n);
    cpu->smear_bwd(dx, dw, dlam, dy, x, gate, ids, w, lam, b, t, d, win, bos);
    pg_cuda_smear_bwd(d_dx, d_dw, d_dlam, d_dy, d_x, d_gc, d_ids, d_w, d_lam, b, t, d, win, bos);
    check("smear_bwd dx", what, back(d_dx, nx), dx, nx, TOL);
    check("smear_bwd dw (accumulates)", what, back(d_dw, (size_t)win), dw, (size_t)win, TOL);
    check("smear_bwd dlam (accumulates)", what, back(d_dlam, 1), dlam, 1, TOL);
}

static void test_smear1(int b, int t, int d, int vocab)
{
    char what[80];
    snprintf(what, sizeof what, "b=%d t=%d d=%d vocab=%d", b, t, d, vocab);
    int n = b * t, bos = 1;
    size_t nx = (size_t)n * d;
    int32_t *ids = random_ids((size_t)n, vocab);
    ids[0] = bos;
    if (t > 3) ids[3] = bos;
    float *x = rnd(nx, 1), *gamma = rnd((size_t)d, 3), *y = hnew(nx);
    float *d_x = dev(x, nx), *d_gamma = dev(gamma, (size_t)d), *d_y = dnew(nx * 4);
    int32_t *d_ids = dev_ids(ids, (size_t)n);
    cpu->smear1_fwd(y, x, ids, gamma, b, t, d, bos);
    pg_cuda_smear1_fwd(d_y, d_x, d_ids, d_gamma, b, t, d, bos);
    check("smear1_fwd", what, back(d_y, nx), y, nx, TOL);
    float *dy = rnd(nx, 1), *dx = rnd(nx, 1), *dg = rnd((size_t)d, 1);
    float *d_dy = dev(dy, nx), *d_dx = dnew(nx * 4), *d_dg = dev(dg, (size_t)d);
    cpu->smear1_bwd(dx, dg, dy, x, ids, gamma, b, t, d, bos);
    pg_cuda_smear1_bwd(d_dx, d_dg, d_dy, d_x, d_ids, d_gamma, b, t, d, bos);
    check("smear1_bwd dx", what, back(d_dx, nx), dx, nx, TOL);
    check("smear1_bwd dgamma (accumulates)", what, back(d_dg, (size_t)d), dg, (size_t)d, TOL);
}

static void test_skip_gate(int n, int d)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d d=%d", n, d);
    size_t nx = (size_t)n * d;
    float *x = rnd(nx, 1), *skip = rnd(nx, 1), *w = rnd((size_t)d, 1.5f), *gamma = rnd((size_t)d, 3);
    float *x_pre = copy(x, nx);
    float *d_x = dev(x, nx), *d_skip = dev(skip, nx), *d_w = dev(w, (size_t)d), *d_gamma = dev(gamma, (size_t)d);
    float *d_xpre = dev(x, nx);
    cpu->skip_gate_fwd(x, skip, w, gamma, n, d);
    pg_cuda_skip_gate_fwd(d_x, d_skip, d_w, d_gamma, n, d);
    check("skip_gate_fwd", what, back(d_x, nx), x, nx, TOL);
    float *dx = rnd(nx, 1), *ds = rnd(nx, 1), *dw = rnd((size_t)d, 1), *dg = rnd((size_t)d, 1);
    float *d_dx = dev(dx, nx), *d_ds = dev(ds, nx), *d_dw = dev(dw, (size_t)d), *d_dg = dev(dg, (size_t)d);
    cpu->skip_gate_bwd(dx, ds, dw, dg, x_pre, skip, w, gamma, n, d);
    pg_cuda_skip_gate_bwd(d_dx, d_ds, d_dw, d_dg, d_xpre, d_skip, d_w, d_gamma, n, d);
    check("skip_gate_bwd dx", what, back(d_dx, nx), dx, nx, TOL);
    check("skip_gate_bwd dskip (accumulates)", what, back(d_ds, nx), ds, nx, TOL);
    check("skip_gate_bwd dw (accumulates)", what, back(d_dw, (size_t)d), dw, (size_t)d, TOL);
    check("skip_gate_bwd dgamma (accumulates)", what, back(d_dg, (size_t)d), dg, (size_t)d, TOL);
}

static void test_lanes(size_t n)
{
    char what[64];
    snprintf(what, sizeof what, "n=%zu", n);
    float *l0 = rnd(n, 1), *l1 = rnd(n, 1), *a = rnd(n, 1), *m = rnd(n, 1), *r = rnd(2, 1.5f), *p = rnd(4, 1.5f);
    float *l0p = copy(l0, n), *l1p = copy(l1, n);
    float *d_l0 = dev(l0, n), *d_l1 = dev(l1, n), *d_a = dev(a, n), *d_m = dev(m, n), *d_r = dev(r, 2);
    float *d_p = dev(p, 4), *d_l0p = dev(l0, n), *d_l1p = dev(l1, n);
    cpu->lanes_fwd(l0, l1, a, m, r, p, n);
    pg_cuda_lanes_fwd(d_l0, d_l1, d_a, d_m, d_r, d_p, n);
    check("lanes_fwd lane 0", what, back(d_l0, n), l0, n, TOL);
    check("lanes_fwd lane 1", what, back(d_l1, n), l1, n, TOL);
    float *g0 = rnd(n, 1), *g1 = rnd(n, 1), *da = hnew(n), *dm = hnew(n), *dr = rnd(2, 1), *dp = rnd(4, 1);
    float *d_g0 = dev(g0, n), *d_g1 = dev(g1, n), *d_da = dnew(n * 4), *d_dm = dnew(n * 4), *d_dr = dev(dr, 2);
    float *d_dp = dev(dp, 4);
    cpu->lanes_bwd(g0, g1, da, dm, dr, dp, l0p, l1p, a, m, r, p, n);
    pg_cuda_lanes_bwd(d_g0, d_g1, d_da, d_dm, d_dr, d_dp, d_l0p, d_l1p, d_a, d_m, d_r, d_p, n);
    check("lanes_bwd dl0", what, back(d_g0, n), g0, n, TOL);
    check("lanes_bwd dl1", what, back(d_g1, n), g1, n, TOL);
    check("lanes_bwd da", what, back(d_da, n), da, n, TOL);
    check("lanes_bwd dm", what, back(d_dm, n), dm, n, TOL);
    check("lanes_bwd dr (accumulates)", what, back(d_dr, 2), dr, 2, TOL);
    check("lanes_bwd dp (accumulates)", what, back(d_dp, 4), dp, 4, TOL);
}

static void test_scalar_add(size_t n, int with_s2)
{
    char what[64];
    snprintf(what, sizeof what, "n=%zu %s", n, with_s2 ? "s1·s2" : "s2 = NULL");
    float *x = rnd(n, 1), *f = rnd(n, 1), s1[1] = {0.7f}, s2[1] = {-1.3f};
    float *d_x = dev(x, n), *d_f = dev(f, n), *d_s1 = dev(s1, 1), *d_s2 = with_s2 ? dev(s2, 1) : NULL;
    cpu->scalar_add_fwd(x, s1, with_s2 ? s2 : NULL, f, n);
    pg_cuda_scalar_add_fwd(d_x, d_s1, d_s2, d_f, n);
    check("scalar_add_fwd", what, back(d_x, n), x, n, TOL);
    for (int acc = 0; acc < 2; acc++) {
        float *dy = rnd(n, 1), *df = rnd(n, 1), ds1[1] = {0.5f}, ds2[1] = {-0.25f};
        float *d_dy = dev(dy, n), *d_df = dev(df, n), *d_ds1 = dev(ds1, 1), *d_ds2 = dev(ds2, 1);
        cpu->scalar_add_bwd(df, ds1, with_s2 ? ds2 : NULL, dy, s1, with_s2 ? s2 : NULL, f, n, acc);
        pg_cuda_scalar_add_bwd(d_df, d_ds1, with_s2 ? d_ds2 : NULL, d_dy, d_s1, d_s2, d_f, n, acc);
        check(acc ? "scalar_add_bwd df (accumulated)" : "scalar_add_bwd df", what, back(d_df, n), df, n, TOL);
        check("scalar_add_bwd ds1 (accumulates)", what, back(d_ds1, 1), ds1, 1, TOL);
        if (with_s2) check("scalar_add_bwd ds2 (accumulates)", what, back(d_ds2, 1), ds2, 1, TOL);
        else ok(back(d_ds2, 1)[0] == -0.25f, "scalar_add_bwd with s2 = NULL leaves ds2 alone (%s)", what);
    }
}

/* ---- properties: empty calls, reproducible reductions ------------------------------------------ */

static void test_empty(void)
{
    float *d = dnew(64);
    int32_t *ids = dev_ids((const int32_t[]){0}, 1);
    pg_cuda_xsa_fwd(d, d, 0, 2, 1, 4);
    pg_cuda_xsa_bwd(d, d, d, d, 0, 2, 1, 4);
    pg_cuda_head_gate_fwd(d, d, d, d, 0, 2, 4, 4, 2, 1, 2);
    pg_cuda_head_gate_bwd(d, d, d, d, d, d, d, 0, 2, 4, 4, 2, 1, 2);
    pg_cuda_smear_fwd(d, d, d, ids, d, d, 0, 4, 4, 2, 1);
    pg_cuda_smear_bwd(d, d, d, d, d, d, ids, d, d, 0, 4, 4, 2, 1);
    pg_cuda_smear1_fwd(d, d, ids, d, 0, 4, 4, 1);
    pg_cuda_smear1_bwd(d, d, d, d, ids, d, 0, 4, 4, 1);
    pg_cuda_skip_gate_fwd(d, d, d, d, 0, 4);
    pg_cuda_skip_gate_bwd(d, d, d, d, d, d, d, d, 0, 4);
    pg_cuda_lanes_fwd(d, d, d, d, d, d, 0);
    pg_cuda_lanes_bwd(d, d, d, d, d, d, d, d, d, d, d, d, 0);
    pg_cuda_scalar_add_fwd(d, d, NULL, d, 0);
    pg_cuda_scalar_add_bwd(d, d, NULL, d, d, NULL, d, 0, 0);
    pg_cuda_sync();
    ok(1, "every record operation accepts n = 0 (no launch, so no invalid-configuration error)");
}

/* Each backward's reductions run twice from the same inputs: the results must be the same bits. */
static void test_reproducible(void)
{
    int b = 3, t = 111, d = 96, h = 4, hd = 24, win = 12, n = b * t, bos = 1;
    size_t nd = (size_t)n * d, nh = (size_t)n * h;
    int32_t *ids = random_ids((size_t)n, 7);
    float *x = rnd(nd, 1), *dy = rnd(nd, 1), *w = rnd((size_t)d, 1), *gamma = rnd((size_t)d, 2), *g = rnd(nh, 1);
    float *lam = rnd(1, 1), *r = rnd(2, 1), *p = rnd(4, 1), *zero = hnew(nd);
    memset(zero, 0, nd * sizeof *zero);
    float *d_x = dev(x, nd), *d_dy = dev(dy, nd), *d_w = dev(w, (size_t)d), *d_gamma = dev(gamma, (size_t)d);
    float *d_g = dev(g, nh), *d_lam = dev(lam, 1), *d_r = dev(r, 2), *d_p = dev(p, 4), *d_tmp = dnew(nd * 4);
    float *d_tmp2 = dnew(nd * 4), *d_tmp3 = dnew(nd * 4), *d_tmp4 = dnew(nd * 4);
    int32_t *d_ids = dev_ids(ids, (size_t)n);
    enum { NR = 10 };
    float *res[2][NR];
    size_t len[NR] = {(size_t)h * win, (size_t)win, 1, (size_t)d, (size_t)d, (size_t)d, 2, 4, 1, 1};
    for (int run = 0; run < 2; run++) {
        float *o[NR];
        for (int k = 0; k < NR; k++) {
            o[k] = dnew(len[k] * 4);
            pg_cuda_upload(o[k], zero, len[k] * 4);
        }
        /* x as [n, h, hd] (h·hd = d) and as the gate input u of width ld = d */
        pg_cuda_upload(d_tmp, dy, nd * 4);
        pg_cuda_head_gate_bwd(d_tmp, o[0], NULL, d_x, d_g, d_x, d_w, n, h, hd, d, win, 1, 2);
        pg_cuda_smear_bwd(d_tmp, o[1], o[2], d_dy, d_x, d_g, d_ids, d_w, d_lam, b, t, d, win, bos);
        pg_cuda_smear1_bwd(d_tmp, o[3], d_dy, d_x, d_ids, d_gamma, b, t, d, bos);
        pg_cuda_upload(d_tmp, dy, nd * 4);
        pg_cuda_skip_gate_bwd(d_tmp, d_tmp2, o[4], o[5], d_x, d_x, d_w, d_gamma, n, d);
        pg_cuda_upload(d_tmp, dy, nd * 4);
        pg_cuda_upload(d_tmp2, x, nd * 4);
        pg_cuda_lanes_bwd(d_tmp, d_tmp2, d_tmp3, d_tmp4, o[6], o[7], d_x, d_dy, d_dy, d_x, d_r, d_p, nd);
        pg_cuda_scalar_add_bwd(d_tmp, o[8], o[9], d_dy, d_r, d_p, d_x, nd, 1);
        for (int k = 0; k < NR; k++) res[run][k] = back(o[k], len[k]);
    }
    int same = 1;
    for (int k = 0; k < NR; k++) same &= same_bits(res[0][k], res[1][k], len[k]);
    ok(same, "head_gate_bwd, smear_bwd, smear1_bwd, skip_gate_bwd, lanes_bwd, scalar_add_bwd reductions give the "
             "same bits on a second run");
}

int main(void)
{
    parity_seed = 2026;
    parity_start();

    test_xsa(37, 4, 2, 16, -1); /* GQA: two query heads per kv head */
    test_xsa(20, 3, 1, 40, 7);  /* multi-query, hd past a warp's width, a zero v */
    test_xsa(5, 2, 2, 64, -1);
    test_head_gate("AttnOutGate", 37, 4, 16, 48, 12, 1, 2);
    test_head_gate("dense", 130, 8, 8, 64, 64, 1, 1);
    test_head_gate("sparse", 300, 3, 20, 40, 12, 0.5, 1);
    test_smear(3, 50, 48, 12, 8);
    test_smear(2, 70, 40, 40, 5); /* win = d */
    test_smear(4, 3, 16, 4, 3);   /* short sequences: many t = 0 rows */
    test_smear1(3, 50, 48, 8);
    test_smear1(1, 300, 100, 6);
    test_skip_gate(37, 48);
    test_skip_gate(300, 160);
    test_lanes(1000);
    test_lanes(100003); /* several chunks */
    test_scalar_add(1000, 0);
    test_scalar_add(1000, 1);
    test_scalar_add(50001, 1);
    test_empty();
    test_reproducible();
    return parity_done(TOL);
}
