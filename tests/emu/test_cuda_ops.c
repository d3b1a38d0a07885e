/* test_cuda_ops.c: every CUDA operation against the CPU reference (pg_backend_cpu) on random
 * inputs, forward and backward, through the C API of kernels/cuda/ops.h. Built twice
 * (Makefile): test_cuda_ops_emu links the kernels compiled for the host emulator and runs in
 * every `make check`; test_cuda_ops_gpu links the nvcc-built kernels and runs them on the GPU
 * (it skips without one, and fails under PG_EXPECT_GPU=1, i.e. `make check-gpu`).
 *
 * Tolerance: |gpu − cpu| ≤ 1e-5·(|cpu| + max(rms(cpu), floor)) for every element. Both sides compute in
 * float from the same inputs and sum reductions in double (matrix products: in float, by
 * OpenBLAS and cuBLAS). What can differ: the order of double sums (~1e-16), fused multiply-adds
 * on the GPU (1 float ulp ≈ 6e-8 per operation), and the order of the float sums in a matrix
 * product (≈ sqrt(k)·6e-8 of the result's scale, ≤ 2e-6 at these sizes). 1e-5 keeps a margin
 * of 5 over the worst of these, while a wrong index or a missed term errs by 1e-2 or more.
 * Every comparison also proves it can fail: one element of the result nudged by 10x what the
 * rule allows must be caught (parity.h). dq and dk of attention are compared with a floor, the
 * rms of dv: at t = 1 they are exact zeros up to cancellation residue (~1e-8 on either side).
 * test_rule checks the rule itself on planted mismatches, zeros against small values included. The embedding gradient is required to be bit-exact (its sums run in
 * the CPU's order), and every reduction must give the same bits when run twice. Attention and
 * the cross-entropy add exp/tanh (CUDA's expf and tanhf: ≤ 2 ulp, like the CPU's vectorized exp)
 * under the same tolerance; so do varlen attention (with and without doc_start, which without
 * must give the plain operations' bits) and logit_ce (poly5 on/off, z-loss on/off). */
#include "parity.h"

#define TOL 1e-5

/* ---- the tolerance rule itself --------------------------------------------------------------- */

/* Planted mismatches, host arrays only: each must be judged as stated. */
static void test_rule(void)
{
    enum { N = 64 };
    float zero[N] = {0}, small[N], residue[N], big[N], ones[N];
    for (int i = 0; i < N; i++) {
        small[i] = (i % 2 ? 1 : -1) * 1e-6f * (1 + i % 5);
        residue[i] = (i % 3 - 1) * 2e-8f;
        big[i] = (i % 2 ? 1 : -1) * 1e-3f;
        ones[i] = 1 + urand() * 0.5f;
    }
    double worst;
    ok(mismatches(zero, small, N, TOL, 0, &worst) == N, "rule: zeros where the reference has small values fail");
    ok(mismatches(small, zero, N, TOL, 0, &worst) == N, "rule: small values where the reference is zero fail");
    ok(mismatches(residue, zero, N, TOL, 0, &worst) > 0, "rule: without a floor, residue against zeros fails");
    ok(mismatches(residue, zero, N, TOL, 1, &worst) == 0, "rule: residue 2e-8 within a floor of 1 passes");
    ok(mismatches(big, zero, N, TOL, 1, &worst) == N, "rule: 1e-3 against zeros fails even with a floor of 1");
    ok(mismatches(zero, big, N, TOL, 1, &worst) == N, "rule: zeros against 1e-3 fail even with a floor of 1");
    ok(mismatches(zero, zero, N, 0, 0, &worst) == 0 && mismatches(ones, ones, N, 0, 0, &worst) == 0,
       "rule: equal arrays pass at tolerance 0");
    float *ulp = copy(ones, N);
    ulp[N / 2] = nextafterf(ulp[N / 2], INFINITY);
    ok(mismatches(ulp, ones, N, 0, 0, &worst) == 1, "rule: one ulp off fails at tolerance 0");
    /* the nudge always exceeds what the rule allows: zero references, tolerance 0, floors */
    const float *refs[] = {zero, small, big, ones};
    const double tols[] = {0, TOL, 1e-2}, floors[] = {0, 1e-9, 1};
    int caught = 0, tried = 0;
    for (int r = 0; r < 4; r++)
        for (int t = 0; t < 3; t++)
            for (int f = 0; f < 3; f++, tried++)
                caught += mismatches(nudged(refs[r], refs[r], N, N / 2, tols[t], floors[f]), refs[r], N, tols[t],
                                     floors[f], &worst) == 1;
    ok(caught == tried, "rule: the nudge is caught for every reference, tolerance and floor (%d of %d)", caught,
       tried);
}

/* ---- operations ---------------------------------------------------------------------------- */

static void test_matmul(int n, int in, int out)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d in=%d out=%d", n, in, out);
    float *x = rnd((size_t)n * in, 1), *w = rnd((size_t)out * in, 0.5f), *dy = rnd((size_t)n * out, 1);
    float *y = hnew((size_t)n * out), *d_y = dnew((size_t)n * out * 4);
    cpu->matmul_fwd(y, x, w, n, in, out);
    float *d_x = dev(x, (size_t)n * in), *d_w = dev(w, (size_t)out * in), *d_dy = dev(dy, (size_t)n * out);
    pg_cuda_matmul_fwd(d_y, d_x, d_w, n, in, out);
    check("matmul_fwd", what, back(d_y, (size_t)n * out), y, (size_t)n * out, TOL);
    for (int acc = 0; acc < 2; acc++) {
        float *dx = rnd((size_t)n * in, 1), *dw = rnd((size_t)out * in, 1);
        float *d_dx = dev(dx, (size_t)n * in), *d_dw = dev(dw, (size_t)out * in);
        cpu->matmul_bwd(dx, dw, dy, x, w, n, in, out, acc);
        pg_cuda_matmul_bwd(d_dx, d_dw, d_dy, d_x, d_w, n, in, out, acc);
        check(acc ? "matmul_bwd dx (accumulated)" : "matmul_bwd dx", what, back(d_dx, (size_t)n * in), dx,
              (size_t)n * in, TOL);
        check("matmul_bwd dw (accumulates)", what, back(d_dw, (size_t)out * in), dw, (size_t)out * in, TOL);
    }
    float *dw = rnd((size_t)out * in, 1), *d_dw = dev(dw, (size_t)out * in);
    cpu->matmul_bwd(NULL, dw, dy, x, w, n, in, out, 0);
    pg_cuda_matmul_bwd(NULL, d_dw, d_dy, d_x, d_w, n, in, out, 0);
    check("matmul_bwd dw with dx = NULL", what, back(d_dw, (size_t)out * in), dw, (size_t)out * in, TOL);
}

static void test_embedding(int n, int d, int vocab)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d d=%d vocab=%d", n, d, vocab);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) exit(1);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((urand() + 1) / 2 * vocab) % vocab; /* rows repeat */
    float *emb = rnd((size_t)vocab * d, 1), *dy = rnd((size_t)n * d, 1), *demb = rnd((size_t)vocab * d, 1);
    float *y = hnew((size_t)n * d), *d_y = dnew((size_t)n * d * 4);
    int32_t *d_ids = dev_ids(ids, (size_t)n);
    float *d_emb = dev(emb, (size_t)vocab * d), *d_dy = dev(dy, (size_t)n * d), *d_demb = dev(demb, (size_t)vocab * d);
    cpu->embedding_fwd(y, emb, ids, n, d);
    pg_cuda_embedding_fwd(d_y, d_emb, d_ids, n, d);
    check("embedding_fwd", what, back(d_y, (size_t)n * d), y, (size_t)n * d, 0);
    cpu->embedding_bwd(demb, dy, ids, n, d);
    pg_cuda_embedding_bwd(d_demb, d_dy, d_ids, n, d);
    check("embedding_bwd (bit-exact)", what, back(d_demb, (size_t)vocab * d), demb, (size_t)vocab * d, 0);
    free(ids);
}

/* scale: the layerwise LN scale on the output (1 = plain RMSNorm). */
static void test_rmsnorm(int n, int d, double scale)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d d=%d scale=%g", n, d, scale);
    size_t nd = (size_t)n * d;
    float *x = rnd(nd, 3), *y = hnew(nd), *rstd = hnew((size_t)n), *dy = rnd(nd, 1);
    float *d_x = dev(x, nd), *d_y = dnew(nd * 4), *d_rstd = dnew((size_t)n * 4), *d_dy = dev(dy, nd);
    cpu->rmsnorm_fwd(y, rstd, x, n, d, 1e-6, scale);
    pg_cuda_rmsnorm_fwd(d_y, d_rstd, d_x, n, d, 1e-6, scale);
    check("rmsnorm_fwd y", what, back(d_y, nd), y, nd, TOL);
    check("rmsnorm_fwd rstd", what, back(d_rstd, (size_t)n), rstd, (size_t)n, TOL);
    for (int acc = 0; acc < 2; acc++) {
        /* both sides start from the CPU's y and rstd, so only the backward is compared */
        float *dx = rnd(nd, 1), *d_dx = dev(dx, nd), *d_yc = dev(y, nd), *d_rc = dev(rstd, (size_t)n);
        cpu->rmsnorm_bwd(dx, dy, y, rstd, n, d, scale, acc);
        pg_cuda_rmsnorm_bwd(d_dx, d_dy, d_yc, d_rc, n, d, scale, acc);
        check(acc ? "rmsnorm_bwd (accumulated)" : "rmsnorm_bwd", what, back(d_dx, nd), dx, nd, TOL);
    }
}

/* rd: the rotated dims (rd < hd: partial RoPE; the rest must come back untouched). */
static void test_rope(int b, int t, int h, int hd, int rd)
{
    char what[64];
    snprintf(what, sizeof what, "b=%d t=%d h=%d hd=%d rd=%d", b, t, h, hd, rd);
    size_t nx = (size_t)b * t * h * hd, nt = (size_t)t * (rd / 2);
    float *x = rnd(nx, 1), *cs = hnew(nt), *sn = hnew(nt);
    for (int ti = 0; ti < t; ti++)
        for (int i = 0; i < rd / 2; i++) {
            double ang = ti * pow(10000.0, -2.0 * i / rd);
            cs[(size_t)ti * (rd / 2) + i] = (float)cos(ang);
            sn[(size_t)ti * (rd / 2) + i] = (float)sin(ang);
        }
    float *d_x = dev(x, nx), *d_c = dev(cs, nt), *d_s = dev(sn, nt);
    cpu->rope_fwd(x, cs, sn, b, t, h, hd, rd);
    pg_cuda_rope_fwd(d_x, d_c, d_s, b, t, h, hd, rd);
    check("rope_fwd", what, back(d_x, nx), x, nx, TOL);
    float *g = rnd(nx, 1), *d_g = dev(g, nx);
    cpu->rope_bwd(g, cs, sn, b, t, h, hd, rd);
    pg_cuda_rope_bwd(d_g, d_c, d_s, b, t, h, hd, rd);
    check("rope_bwd", what, back(d_g, nx), g, nx, TOL);
}

static void test_relu2(size_t n, double slope)
{
    char what[64];
    snprintf(what, sizeof what, "n=%zu slope=%g", n, slope);
    float *x = rnd(n, 2), *dy = rnd(n, 1), *y = hnew(n), *dx = hnew(n);
    /* one positive input, so that even n = 1 under relu² has a non-zero result to compare (an
     * all-zero result has no scale, and a nudge of it could not be told from rounding) */
    x[0] = 1.25f;
    float *d_x = dev(x, n), *d_dy = dev(dy, n), *d_y = dnew(n * 4), *d_dx = dnew(n * 4);
    cpu->relu2_fwd(y, x, n, slope);
    pg_cuda_relu2_fwd(d_y, d_x, n, slope);
    check("relu2_fwd", what, back(d_y, n), y, n, TOL);
    cpu->relu2_bwd(dx, dy, x, n, slope);
    pg_cuda_relu2_bwd(d_dx, d_dy, d_x, n, slope);
    check("relu2_bwd", what, back(d_dx, n), dx, n, TOL);
}

static void test_mix(int n, int d)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d d=%d", n, d);
    size_t nd = (size_t)n * d;
    float *x = rnd(nd, 1), *x0 = rnd(nd, 1), *m0 = rnd((size_t)d, 1), *m1 = rnd((size_t)d, 1), *dy = rnd(nd, 1);
    float *y = hnew(nd), *dx = hnew(nd), *dx0 = rnd(nd, 1), *dm0 = rnd((size_t)d, 1), *dm1 = rnd((size_t)d, 1);
    float *d_x = dev(x, nd), *d_x0 = dev(x0, nd), *d_m0 = dev(m0, (size_t)d), *d_m1 = dev(m1, (size_t)d);
    float *d_dy = dev(dy, nd), *d_y = dnew(nd * 4), *d_dx = dnew(nd * 4), *d_dx0 = dev(dx0, nd);
    float *d_dm0 = dev(dm0, (size_t)d), *d_dm1 = dev(dm1, (size_t)d);
    cpu->mix_fwd(y, x, x0, m0, m1, n, d);
    pg_cuda_mix_fwd(d_y, d_x, d_x0, d_m0, d_m1, n, d);
    check("mix_fwd", what, back(d_y, nd), y, nd, TOL);
    cpu->mix_bwd(dx, dx0, dm0, dm1, dy, x, x0, m0, m1, n, d);
    pg_cuda_mix_bwd(d_dx, d_dx0, d_dm0, d_dm1, d_dy, d_x, d_x0, d_m0, d_m1, n, d);
    check("mix_bwd dx", what, back(d_dx, nd), dx, nd, TOL);
    check("mix_bwd dx0 (accumulates)", what, back(d_dx0, nd), dx0, nd, TOL);
    check("mix_bwd dm0 (accumulates)", what, back(d_dm0, (size_t)d), dm0, (size_t)d, TOL);
    check("mix_bwd dm1 (accumulates)", what, back(d_dm1, (size_t)d), dm1, (size_t)d, TOL);
}

static void test_scale_add(int n, int d)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d d=%d", n, d);
    size_t nd = (size_t)n * d;
    float *x = rnd(nd, 1), *s = rnd((size_t)d, 1), *f = rnd(nd, 1), *dy = rnd(nd, 1);
    float *d_x = dev(x, nd), *d_s = dev(s, (size_t)d), *d_f = dev(f, nd), *d_dy = dev(dy, nd);
    cpu->scale_add_fwd(x, s, f, n, d);
    pg_cuda_scale_add_fwd(d_x, d_s, d_f, n, d);
    check("scale_add_fwd", what, back(d_x, nd), x, nd, TOL);
    for (int acc = 0; acc < 2; acc++) {
        float *df = rnd(nd, 1), *ds = rnd((size_t)d, 1), *d_df = dev(df, nd), *d_ds = dev(ds, (size_t)d);
        cpu->scale_add_bwd(df, ds, dy, s, f, n, d, acc);
        pg_cuda_scale_add_bwd(d_df, d_ds, d_dy, d_s, d_f, n, d, acc);
        check(acc ? "scale_add_bwd df (accumulated)" : "scale_add_bwd df", what, back(d_df, nd), df, nd, TOL);
        check("scale_add_bwd ds (accumulates)", what, back(d_ds, (size_t)d), ds, (size_t)d, TOL);
    }
}

static void test_head_gain(int n, int h, int hd)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d h=%d hd=%d", n, h, hd);
    size_t nq = (size_t)n * h * hd;
    float *q = rnd(nq, 1), *g = rnd((size_t)h, 2), *dq = rnd(nq, 1), *dg = rnd((size_t)h, 1);
    float *d_q = dev(q, nq), *d_g = dev(g, (size_t)h), *d_dq = dev(dq, nq), *d_dg = dev(dg, (size_t)h);
    float *q_pre = copy(q, nq), *d_qpre = dev(q, nq);
    cpu->head_gain_fwd(q, g, n, h, hd);
    pg_cuda_head_gain_fwd(d_q, d_g, n, h, hd);
    check("head_gain_fwd", what, back(d_q, nq), q, nq, TOL);
    cpu->head_gain_bwd(dq, dg, q_pre, g, n, h, hd);
    pg_cuda_head_gain_bwd(d_dq, d_dg, d_qpre, d_g, n, h, hd);
    check("head_gain_bwd dq", what, back(d_dq, nq), dq, nq, TOL);
    check("head_gain_bwd dg (accumulates)", what, back(d_dg, (size_t)h), dg, (size_t)h, TOL);
}

static void test_attention(int b, int t, int h, int kv, int hd)
{
    char what[64];
    snprintf(what, sizeof what, "b=%d t=%d h=%d kv=%d hd=%d", b, t, h, kv, hd);
    size_t nq = (size_t)b * t * h * hd, nk = (size_t)b * t * kv * hd, nl = (size_t)b * h * t;
    double scale = 1 / sqrt((double)hd);
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    float *out = hnew(nq), *lse = hnew(nl), *work = hnew(cpu->attention_work(t));
    float *d_q = dev(q, nq), *d_k = dev(k, nk), *d_v = dev(v, nk), *d_dout = dev(dout, nq);
    float *d_out = dnew(nq * 4), *d_lse = dnew(nl * 4), *d_work = dnew(pg_cuda_attention_work(t) * 4);
    cpu->attention_fwd(out, lse, q, k, v, b, t, h, kv, hd, scale, work);
    pg_cuda_attention_fwd(d_out, d_lse, d_q, d_k, d_v, b, t, h, kv, hd, scale, d_work);
    check("attention_fwd out", what, back(d_out, nq), out, nq, TOL);
    check("attention_fwd lse", what, back(d_lse, nl), lse, nl, TOL);
    /* the backward starts from the CPU's out and lse on both sides */
    float *dq = hnew(nq), *dk = hnew(nk), *dv = hnew(nk), *d_dq = dnew(nq * 4), *d_dk = dnew(nk * 4);
    float *d_dv = dnew(nk * 4), *d_outc = dev(out, nq), *d_lsec = dev(lse, nl);
    cpu->attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, b, t, h, kv, hd, scale, work);
    pg_cuda_attention_bwd(d_dq, d_dk, d_dv, d_dout, d_outc, d_lsec, d_q, d_k, d_v, b, t, h, kv, hd, scale, d_work);
    /* dq and dk of a one-token softmax are exact zeros up to cancellation: compared at the scale
     * of dv, the gradient of the same loss beside them */
    check_floor("attention_bwd dq", what, back(d_dq, nq), dq, nq, TOL, rms_of(dv, nk));
    check_floor("attention_bwd dk", what, back(d_dk, nk), dk, nk, TOL, rms_of(dv, nk));
    check("attention_bwd dv", what, back(d_dv, nk), dv, nk, TOL);
}

static void test_softcap_ce(int n, int d, int v, double cap)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d d=%d v=%d cap=%g", n, d, v, cap);
    int32_t *y = malloc((size_t)n * sizeof *y);
    if (!y) exit(1);
    for (int i = 0; i < n; i++) y[i] = (int32_t)((urand() + 1) / 2 * v) % v;
    float *h = rnd((size_t)n * d, 2), *emb = rnd((size_t)v * d, 1), *dh = hnew((size_t)n * d);
    float *demb = rnd((size_t)v * d, 1), *losses = hnew((size_t)n), *work = hnew(pg_ce_work(v));
    float *d_h = dev(h, (size_t)n * d), *d_emb = dev(emb, (size_t)v * d), *d_dh = dnew((size_t)n * d * 4);
    float *d_demb = dev(demb, (size_t)v * d), *d_losses = dnew((size_t)n * 4), *d_work = dnew(pg_ce_work(v) * 4);
    int32_t *d_y = dev_ids(y, (size_t)n);
    double gs = 1.0 / n;
    double want = cpu->softcap_ce(dh, demb, losses, h, emb, y, n, d, v, cap, gs, work);
    double got = pg_cuda_softcap_ce(d_dh, d_demb, d_losses, d_h, d_emb, d_y, n, d, v, cap, gs, d_work);
    is_close(got, want, 0, TOL, "softcap_ce total %s (%.6f)", what, got);
    check("softcap_ce losses", what, back(d_losses, (size_t)n), losses, (size_t)n, TOL);
    check("softcap_ce dh", what, back(d_dh, (size_t)n * d), dh, (size_t)n * d, TOL);
    check("softcap_ce demb (accumulates)", what, back(d_demb, (size_t)v * d), demb, (size_t)v * d, TOL);
    double eval = pg_cuda_softcap_ce(NULL, NULL, NULL, d_h, d_emb, d_y, n, d, v, cap, gs, d_work);
    ok(eval == got, "softcap_ce without gradients or losses gives the same total, bit for bit (%s)", what);
    free(y);
}

/* Varlen attention (spec §2.2): documents of lengths cycling through `lens` (1 = a document of
 * length 1), restarting in each sequence; lens NULL passes doc_start NULL, which must also give
 * the plain operations' bits. */
static void test_attention_varlen(int b, int t, int h, int kv, int hd, const int *lens, int nlens)
{
    char what[96];
    snprintf(what, sizeof what, "b=%d t=%d h=%d kv=%d hd=%d %s", b, t, h, kv, hd,
             lens ? "documents" : "doc_start NULL");
    size_t nq = (size_t)b * t * h * hd, nk = (size_t)b * t * kv * hd, nl = (size_t)b * h * t;
    double scale = 1 / sqrt((double)hd);
    int32_t *ds = doc_starts(b, t, lens, nlens), *d_ds = ds ? dev_ids(ds, (size_t)b * t) : NULL;
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    float *out = hnew(nq), *lse = hnew(nl), *work = hnew(cpu->attention_work(t));
    float *d_q = dev(q, nq), *d_k = dev(k, nk), *d_v = dev(v, nk), *d_dout = dev(dout, nq);
    float *d_out = dnew(nq * 4), *d_lse = dnew(nl * 4), *d_work = dnew(pg_cuda_attention_work(t) * 4);
    cpu->attention_varlen_fwd(out, lse, q, k, v, ds, b, t, h, kv, hd, scale, work);
    pg_cuda_attention_varlen_fwd(d_out, d_lse, d_q, d_k, d_v, d_ds, b, t, h, kv, hd, scale, d_work);
    float *g_out = back(d_out, nq), *g_lse = back(d_lse, nl);
    check("attention_varlen_fwd out", what, g_out, out, nq, TOL);
    check("attention_varlen_fwd lse", what, g_lse, lse, nl, TOL);
    /* the backward starts from the CPU's out and lse on both sides */
    float *dq = hnew(nq), *dk = hnew(nk), *dv = hnew(nk), *d_dq = dnew(nq * 4), *d_dk = dnew(nk * 4);
    float *d_dv = dnew(nk * 4), *d_outc = dev(out, nq), *d_lsec = dev(lse, nl);
    cpu->attention_varlen_bwd(dq, dk, dv, dout, out, lse, q, k, v, ds, b, t, h, kv, hd, scale, work);
    pg_cuda_attention_varlen_bwd(d_dq, d_dk, d_dv, d_dout, d_outc, d_lsec, d_q, d_k, d_v, d_ds, b, t, h, kv, hd, scale,
                                 d_work);
    float *g_dq = back(d_dq, nq), *g_dk = back(d_dk, nk), *g_dv = back(d_dv, nk);
    check_floor("attention_varlen_bwd dq", what, g_dq, dq, nq, TOL, rms_of(dv, nk)); /* as test_attention */
    check_floor("attention_varlen_bwd dk", what, g_dk, dk, nk, TOL, rms_of(dv, nk));
    check("attention_varlen_bwd dv", what, g_dv, dv, nk, TOL);
    /* against the plain operations on the device: the same bits without documents, not with */
    pg_cuda_attention_fwd(d_out, d_lse, d_q, d_k, d_v, b, t, h, kv, hd, scale, d_work);
    pg_cuda_attention_bwd(d_dq, d_dk, d_dv, d_dout, d_outc, d_lsec, d_q, d_k, d_v, b, t, h, kv, hd, scale, d_work);
    int eq = same_bits(back(d_out, nq), g_out, nq) && same_bits(back(d_lse, nl), g_lse, nl) &&
             same_bits(back(d_dq, nq), g_dq, nq) && same_bits(back(d_dk, nk), g_dk, nk) &&
             same_bits(back(d_dv, nk), g_dv, nk);
    int masked = 0; /* some query has a document start after 0 (not so for t = 1) */
    for (size_t i = 0; lens && i < (size_t)b * t; i++) masked |= ds[i] != 0;
    if (masked)
        ok(!eq, "attention_varlen with documents differs from plain attention (%s)", what);
    else if (lens)
        ok(eq, "attention_varlen with every doc_start 0 equals plain attention bit for bit (%s)", what);
    else
        ok(eq, "attention_varlen with doc_start NULL equals attention_fwd/bwd bit for bit (%s)", what);
}

static void test_logit_ce(int n, int d, int v, double cap, int poly5, double z_loss)
{
    char what[96];
    snprintf(what, sizeof what, "n=%d d=%d v=%d cap=%g poly5=%d z_loss=%g", n, d, v, cap, poly5, z_loss);
    int32_t *y = malloc((size_t)n * sizeof *y);
    if (!y) exit(1);
    for (int i = 0; i < n; i++) y[i] = (int32_t)((urand() + 1) / 2 * v) % v;
    /* h spread 2 against cap: with a small cap many logits fall in poly5's clamped regions */
    float *h = rnd((size_t)n * d, 2), *emb = rnd((size_t)v * d, 1), *dh = hnew((size_t)n * d);
    float *demb = rnd((size_t)v * d, 1), *losses = hnew((size_t)n), *work = hnew(pg_ce_work(v));
    float *d_h = dev(h, (size_t)n * d), *d_emb = dev(emb, (size_t)v * d), *d_dh = dnew((size_t)n * d * 4);
    float *d_demb = dev(demb, (size_t)v * d), *d_losses = dnew((size_t)n * 4), *d_work = dnew(pg_ce_work(v) * 4);
    int32_t *d_y = dev_ids(y, (size_t)n);
    double gs = 1.0 / n;
    double want = cpu->logit_ce(dh, demb, losses, h, emb, y, n, d, v, cap, poly5, z_loss, gs, work);
    double got = pg_cuda_logit_ce(d_dh, d_demb, d_losses, d_h, d_emb, d_y, n, d, v, cap, poly5, z_loss, gs, d_work);
    is_close(got, want, 0, TOL, "logit_ce total %s (%.6f)", what, got);
    float *g_losses = back(d_losses, (size_t)n), *g_dh = back(d_dh, (size_t)n * d);
    check("logit_ce losses", what, g_losses, losses, (size_t)n, TOL);
    check("logit_ce dh", what, g_dh, dh, (size_t)n * d, TOL);
    check("logit_ce demb (accumulates)", what, back(d_demb, (size_t)v * d), demb, (size_t)v * d, TOL);
    double eval = pg_cuda_logit_ce(NULL, NULL, NULL, d_h, d_emb, d_y, n, d, v, cap, poly5, z_loss, gs, d_work);
    ok(eval == got, "logit_ce without gradients or losses gives the same total, bit for bit (%s)", what);
    if (z_loss != 0) {
        /* losses[] stay the plain cross-entropies: those of the same call without the z-loss */
        pg_cuda_logit_ce(NULL, NULL, d_losses, d_h, d_emb, d_y, n, d, v, cap, poly5, 0, gs, d_work);
        ok(same_bits(back(d_losses, (size_t)n), g_losses, (size_t)n), "logit_ce losses[] do not include the z-loss "
           "(%s)", what);
    }
    if (!poly5 && z_loss == 0) {
        float *d_dh2 = dnew((size_t)n * d * 4), *d_l2 = dnew((size_t)n * 4);
        float *d_de2 = dev(demb, (size_t)v * d), *d_de3 = dev(demb, (size_t)v * d);
        double t1 = pg_cuda_softcap_ce(d_dh2, d_de2, d_l2, d_h, d_emb, d_y, n, d, v, cap, gs, d_work);
        double t2 = pg_cuda_logit_ce(d_dh, d_de3, d_losses, d_h, d_emb, d_y, n, d, v, cap, 0, 0, gs, d_work);
        ok(t1 == t2 && same_bits(back(d_l2, (size_t)n), back(d_losses, (size_t)n), (size_t)n) &&
               same_bits(back(d_dh2, (size_t)n * d), back(d_dh, (size_t)n * d), (size_t)n * d) &&
               same_bits(back(d_de2, (size_t)v * d), back(d_de3, (size_t)v * d), (size_t)v * d),
           "logit_ce with poly5 0, z_loss 0 equals softcap_ce bit for bit (%s)", what);
    }
    free(y);
}

/* ---- properties: empty calls, reproducible reductions ------------------------------------------ */

static void test_empty(void)
{
    float *d = dnew(64);
    int32_t *ids = dev_ids((const int32_t[]){0}, 1);
    pg_cuda_matmul_fwd(d, d, d, 0, 4, 4);
    pg_cuda_matmul_bwd(d, d, d, d, d, 0, 4, 4, 0);
    pg_cuda_embedding_fwd(d, d, ids, 0, 4);
    pg_cuda_embedding_bwd(d, d, ids, 0, 4);
    pg_cuda_rmsnorm_fwd(d, d, d, 0, 4, 1e-6, 1);
    pg_cuda_rmsnorm_bwd(d, d, d, d, 0, 4, 1, 0);
    pg_cuda_rope_fwd(d, d, d, 0, 1, 1, 4, 4);
    pg_cuda_relu2_fwd(d, d, 0, 0.5);
    pg_cuda_mix_bwd(d, d, d, d, d, d, d, d, d, 0, 4);
    pg_cuda_scale_add_bwd(d, d, d, d, d, 0, 4, 0);
    pg_cuda_head_gain_bwd(d, d, d, d, 0, 2, 2);
    pg_cuda_attention_fwd(d, d, d, d, d, 0, 4, 2, 2, 2, 1, d);
    pg_cuda_attention_varlen_fwd(d, d, d, d, d, ids, 0, 4, 2, 2, 2, 1, d);
    pg_cuda_attention_varlen_bwd(d, d, d, d, d, d, d, d, d, ids, 0, 4, 2, 2, 2, 1, d);
    ok(pg_cuda_logit_ce(d, d, d, d, d, ids, 0, 4, 4, 30, 1, 1e-4, 1, d) == 0, "logit_ce of no rows is 0");
    ok(pg_cuda_softcap_ce(d, d, d, d, d, ids, 0, 4, 4, 30, 1, d) == 0, "softcap_ce of no rows is 0");
    pg_cuda_sync();
    ok(1, "every operation accepts n = 0 (no launch, so no invalid-configuration error)");
}

static void test_reproducible(void)
{
    int n = 333, d = 96, vocab = 17;
    size_t nd = (size_t)n * d;
    float *x = rnd(nd, 1), *dy = rnd(nd, 1), *m = rnd((size_t)d, 1);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) exit(1);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(i * 7 % vocab);
    float *d_x = dev(x, nd), *d_dy = dev(dy, nd), *d_m = dev(m, (size_t)d), *d_tmp = dnew(nd * 4);
    int32_t *d_ids = dev_ids(ids, (size_t)n);
    float *r[2][4];
    for (int run = 0; run < 2; run++) {
        float *z = hnew(nd), *d_a = dnew((size_t)vocab * d * 4), *d_b = dnew((size_t)d * 4), *d_c = dnew((size_t)d * 4);
        float *d_e = dnew((size_t)d * 4);
        memset(z, 0, nd * sizeof *z);
        pg_cuda_upload(d_a, z, (size_t)vocab * d * 4);
        pg_cuda_upload(d_b, z, (size_t)d * 4);
        pg_cuda_upload(d_c, z, (size_t)d * 4);
        pg_cuda_upload(d_e, z, (size_t)d * 4);
        pg_cuda_upload(d_tmp, z, nd * 4);
        pg_cuda_embedding_bwd(d_a, d_dy, d_ids, n, d);
        pg_cuda_mix_bwd(d_tmp, d_tmp, d_b, d_c, d_dy, d_x, d_x, d_m, d_m, n, d);
        pg_cuda_scale_add_bwd(d_tmp, d_e, d_dy, d_m, d_x, n, d, 1);
        r[run][0] = back(d_a, (size_t)vocab * d);
        r[run][1] = back(d_b, (size_t)d);
        r[run][2] = back(d_c, (size_t)d);
        r[run][3] = back(d_e, (size_t)d);
    }
    ok(same_bits(r[0][0], r[1][0], (size_t)vocab * d) && same_bits(r[0][1], r[1][1], (size_t)d) &&
           same_bits(r[0][2], r[1][2], (size_t)d) && same_bits(r[0][3], r[1][3], (size_t)d),
       "embedding_bwd, mix_bwd, scale_add_bwd reductions give the same bits on a second run");
    free(ids);
}

int main(void)
{
    parity_seed = 2024;
    parity_start();

    test_rule();

    test_matmul(1, 8, 5);
    test_matmul(37, 64, 48);
    test_matmul(130, 96, 200);
    test_embedding(1, 8, 3);
    test_embedding(300, 40, 50);
    test_embedding(1500, 8, 20); /* 2048 keys: the sort's global-memory stages too */
    test_rmsnorm(1, 32, 1);
    test_rmsnorm(37, 48, 1);
    test_rmsnorm(64, 512, 1);
    test_rmsnorm(5, 1000, 1);
    test_rmsnorm(37, 48, 1 / sqrt(3.0)); /* the layerwise LN scale of block 2 (spec §2.6) */
    test_rmsnorm(64, 512, 1 / sqrt(11.0));
    test_rope(2, 5, 3, 16, 16);
    test_rope(1, 7, 2, 10, 10);
    test_rope(2, 3, 2, 7, 6); /* odd head size: the last dimension is left alone */
    test_rope(2, 5, 3, 64, 16); /* partial RoPE 16/64, as the records (spec §2.2) */
    test_rope(1, 4, 2, 12, 2);
    test_relu2(1, 0);
    test_relu2(1000, 0);
    test_relu2(1000, 0.5); /* LeakyReLU(0.5)² (spec §2.5) */
    test_relu2(777, 0.3);
    test_mix(1, 32);
    test_mix(37, 48);
    test_mix(300, 160);
    test_scale_add(1, 32);
    test_scale_add(37, 48);
    test_scale_add(300, 160);
    test_head_gain(37, 4, 16);
    test_head_gain(300, 3, 20);
    test_attention(2, 37, 4, 2, 16);
    test_attention(1, 1, 2, 2, 8);
    test_attention(1, 70, 3, 1, 12);
    pg_cuda_attention_max_chunk(2); /* 5 sequences in rounds of 2, 2 and 1 */
    test_attention(5, 19, 4, 2, 8);
    pg_cuda_attention_max_chunk(0);
    test_softcap_ce(300, 32, 100, 30); /* one chunk on the device, two on the CPU */
    test_softcap_ce(40, 16, 37, 2);    /* a small cap: the tanh saturates */
    pg_cuda_ce_max_chunk(64);          /* 300 rows in chunks of 64, 64, 64, 64 and 44 */
    test_softcap_ce(300, 32, 100, 30);
    pg_cuda_ce_max_chunk(0);
    {
        static const int docs[] = {5, 1, 12, 1, 1, 30}, longer[] = {100, 7, 1, 60};
        test_attention_varlen(2, 37, 4, 2, 16, NULL, 0);
        test_attention_varlen(2, 37, 4, 2, 16, docs, 6);
        test_attention_varlen(1, 1, 2, 2, 8, docs + 1, 1); /* one token, its own document */
        test_attention_varlen(1, 200, 3, 1, 12, longer, 4);
        pg_cuda_attention_max_chunk(2);
        test_attention_varlen(5, 23, 4, 2, 8, docs, 6);
        pg_cuda_attention_max_chunk(0);
    }
    test_logit_ce(300, 32, 100, 30, 0, 0);
    test_logit_ce(300, 32, 100, 30, 0, 1e-4);
    test_logit_ce(300, 32, 100, 3, 1, 0);  /* poly5 at a small cap: many logits clamped */
    test_logit_ce(40, 16, 37, 2, 1, 1e-2); /* poly5 + z-loss */
    test_logit_ce(40, 16, 37, 2, 0, 1e-2); /* tanh saturated + z-loss */
    pg_cuda_ce_max_chunk(64);
    test_logit_ce(300, 32, 100, 3, 1, 1e-4);
    pg_cuda_ce_max_chunk(0);
    test_empty();
    test_reproducible();
    return parity_done(TOL);
}
