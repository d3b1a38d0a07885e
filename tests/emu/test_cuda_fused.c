/* test_cuda_fused.c: the CUDA backend's fused forms (lib/backend.h qk_prep_fwd/bwd, mix_norm_fwd,
 * add_norm_fwd; kernels/cuda/fused.cu) against the chains of plain CPU operations they replace,
 * on random inputs. Built as test_cuda_fused_emu (every make check, the emulator) and
 * test_cuda_fused_gpu (make check-gpu).
 *
 * References, on the CPU backend (pg_backend_cpu):
 *   qk_prep_fwd:  rmsnorm_fwd (scale 1), rope_fwd, head_gain_fwd (skipped without a gain);
 *   qk_prep_bwd:  head_gain_bwd (from the rotated rows), rope_bwd, rmsnorm_bwd;
 *   mix_norm_fwd: copy, mix_fwd, rmsnorm_fwd;  add_norm_fwd: copy, scale_add_fwd, rmsnorm_fwd;
 *   relu2_fwd/bwd_x16, matmul_fwd_x16, matmul_bwd_16: relu2_fwd/bwd, bf16 rounding, matmul_fwd/bwd
 *   in bf16 mode;
 *   matmul_fwd_qkv/bwd_qkv: three matmul_fwd/bwd (and the device's own three, bit for bit);
 *   scale_add_bwd_x16: scale_add_bwd, bf16 rounding of df (ds: the device's scale_add_bwd's bits).
 * Tolerance: parity.h's rule at 1e-5, as test_cuda_ops.c (the fused kernels do the chain's float
 * operations; the sums of squares run in another order). Every output is poisoned (NaN) before
 * the call, so an element the kernel does not write fails. Shapes: one token, odd lengths, head
 * dims 10 to 128 (more than 32 pairs: a lane takes several), partial RoPE (rd < hd, down to 0),
 * GQA's k rows (no gain), and the gain gradient's accumulation. Each reduction must give the same
 * bits when run again. */
#include "parity.h"

#include "../../lib/optim.h" /* pg_bf16_round */

#define TOL 1e-5

static const struct pg_backend *gpu = &pg_backend_cuda;

/* A device array of n NaNs: an output the kernel must overwrite. */
static float *poisoned(size_t n)
{
    float *h = hnew(n);
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    return dev(h, n);
}

/* dst[i] = the bf16 bit pattern of src[i] rounded to nearest even (pg_bf16_round's value, whose
 * low 16 bits are then zero: its upper half, on a little-endian host). */
static void bf16_bits(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = pg_bf16_round(src[i]);
        memcpy(&dst[i], (const char *)&v + 2, 2);
    }
}

/* f rounded to bf16 in place (a product's output as lib/model.c keeps it in bf16 mode), and a
 * device copy of its bf16 bits. */
static uint16_t *dev16(float *f, size_t n)
{
    uint16_t *bits = hkeep(malloc((n ? n : 1) * sizeof *bits)), *d = dnew((n ? n : 1) * sizeof *d);
    cpu->round_bf16(f, n);
    bf16_bits(bits, f, n);
    pg_cuda_upload(d, bits, n * sizeof *bits);
    return d;
}

/* cos/sin tables [t, rd/2] as lib/model.c makes them (any angles do). */
static void tables(float **cs, float **sn, int t, int rd)
{
    int half = rd / 2;
    *cs = hnew((size_t)t * (half ? half : 1));
    *sn = hnew((size_t)t * (half ? half : 1));
    for (int ti = 0; ti < t; ti++)
        for (int i = 0; i < half; i++) {
            double a = ti * pow(10000.0, -2.0 * i / rd);
            (*cs)[(size_t)ti * half + i] = (float)cos(a);
            (*sn)[(size_t)ti * half + i] = (float)sin(a);
        }
}

/* with_gain 0: the k rows (gain NULL). */
static void test_qk_prep(int b, int t, int h, int hd, int rd, int with_gain)
{
    char what[96];
    snprintf(what, sizeof what, "b=%d t=%d h=%d hd=%d rd=%d%s", b, t, h, hd, rd, with_gain ? "" : " no gain");
    size_t rows = (size_t)b * t * h, nx = rows * hd;
    double eps = 1e-6;
    float *x = rnd(nx, 2), *dy = rnd(nx, 1), *gain = rnd((size_t)h, 1.5f), *dg0 = rnd((size_t)h, 0.1f);
    float *cs, *sn;
    tables(&cs, &sn, t, rd);
    size_t nt = (size_t)t * (rd / 2 ? rd / 2 : 1);

    /* the CPU chain */
    float *qn = hnew(nx), *rstd = hnew(rows), *qr = hnew(nx), *y = hnew(nx);
    cpu->rmsnorm_fwd(qn, rstd, x, (int)rows, hd, eps, 1);
    memcpy(qr, qn, nx * sizeof *qr);
    cpu->rope_fwd(qr, cs, sn, b, t, h, hd, rd);
    memcpy(y, qr, nx * sizeof *y);
    if (with_gain) cpu->head_gain_fwd(y, gain, b * t, h, hd);
    float *dq = copy(dy, nx), *dg = copy(dg0, (size_t)h), *dx = hnew(nx);
    if (with_gain) cpu->head_gain_bwd(dq, dg, qr, gain, b * t, h, hd);
    cpu->rope_bwd(dq, cs, sn, b, t, h, hd, rd);
    cpu->rmsnorm_bwd(dx, dq, qn, rstd, (int)rows, hd, 1, 0);

    /* the fused kernels */
    float *d_x = dev(x, nx), *d_cs = dev(cs, nt), *d_sn = dev(sn, nt), *d_g = dev(gain, (size_t)h);
    float *d_y = poisoned(nx), *d_rstd = poisoned(rows);
    pg_cuda_qk_prep_fwd(d_y, d_rstd, d_x, NULL, d_cs, d_sn, with_gain ? d_g : NULL, b, t, h, hd, rd, eps);
    check("qk_prep_fwd y", what, back(d_y, nx), y, nx, TOL);
    check("qk_prep_fwd rstd", what, back(d_rstd, rows), rstd, rows, TOL);
    check("qk_prep_fwd x unchanged", what, back(d_x, nx), x, nx, 0);
    { /* the x16 form: y rounded to bf16 (the device's fp32 y, rounded), rstd the same bits */
        uint16_t *want = hkeep(malloc(nx * sizeof *want)), *got = hkeep(malloc(nx * sizeof *got));
        bf16_bits(want, back(d_y, nx), nx);
        memset(got, 0xff, nx * sizeof *got);
        uint16_t *d_y16 = dnew(nx * sizeof *d_y16);
        pg_cuda_upload(d_y16, got, nx * sizeof *got); /* poisoned: NaN patterns */
        float *d_r16 = poisoned(rows);
        pg_cuda_qk_prep_fwd_x16(d_y16, d_r16, d_x, NULL, d_cs, d_sn, with_gain ? d_g : NULL, b, t, h, hd, rd, eps);
        pg_cuda_download(got, d_y16, nx * sizeof *got);
        ok(memcmp(got, want, nx * sizeof *got) == 0 && same_bits(back(d_r16, rows), back(d_rstd, rows), rows),
           "qk_prep_fwd_x16 %s: qk_prep_fwd's y rounded to bf16 and its rstd, bit for bit", what);
    }

    /* the backward from the CPU's rstd, so that only the backward is compared */
    float *d_dy = dev(dy, nx), *d_r = dev(rstd, rows), *d_dx = poisoned(nx), *d_dg = dev(dg0, (size_t)h);
    pg_cuda_qk_prep_bwd(d_dx, with_gain ? d_dg : NULL, d_dy, d_x, NULL, d_r, d_cs, d_sn, with_gain ? d_g : NULL, b, t,
                        h, hd, rd);
    float *gdx = back(d_dx, nx), *gdg = back(d_dg, (size_t)h);
    check("qk_prep_bwd dx", what, gdx, dx, nx, TOL);
    if (with_gain) check("qk_prep_bwd dgain (accumulates)", what, gdg, dg, (size_t)h, TOL);
    else ok(same_bits(gdg, dg0, (size_t)h), "qk_prep_bwd %s: no gain, no gain gradient written", what);

    /* the same bits again */
    float *d_dx2 = poisoned(nx), *d_dg2 = dev(dg0, (size_t)h);
    pg_cuda_qk_prep_bwd(d_dx2, with_gain ? d_dg2 : NULL, d_dy, d_x, NULL, d_r, d_cs, d_sn, with_gain ? d_g : NULL, b,
                        t, h, hd, rd);
    ok(same_bits(back(d_dx2, nx), gdx, nx) && same_bits(back(d_dg2, (size_t)h), gdg, (size_t)h),
       "qk_prep_bwd %s: the same bits when run again", what);

    /* the x16 form: dx rounded to bf16 (the device's fp32 dx, rounded), the gain's gradient as ever */
    uint16_t *want16 = hkeep(malloc(nx * sizeof *want16)), *got16 = hkeep(malloc(nx * sizeof *got16));
    bf16_bits(want16, gdx, nx);
    memset(got16, 0xff, nx * sizeof *got16);
    uint16_t *d_dx16 = dnew(nx * sizeof *d_dx16);
    pg_cuda_upload(d_dx16, got16, nx * sizeof *got16); /* poisoned: NaN patterns */
    float *d_dg3 = dev(dg0, (size_t)h);
    pg_cuda_qk_prep_bwd_x16(d_dx16, with_gain ? d_dg3 : NULL, d_dy, d_x, NULL, d_r, d_cs, d_sn, with_gain ? d_g : NULL,
                            b, t, h, hd, rd);
    pg_cuda_download(got16, d_dx16, nx * sizeof *got16);
    ok(memcmp(got16, want16, nx * sizeof *got16) == 0 && same_bits(back(d_dg3, (size_t)h), gdg, (size_t)h),
       "qk_prep_bwd_x16 %s: qk_prep_bwd's dx rounded to bf16 and its gain gradient, bit for bit", what);

    /* the product given in bf16 (x16, as autocast stores it): the bits of the fp32 entries on the
     * same values, forward (y, rstd; y in bf16 too) and backward (dx, dx in bf16, dgain) */
    float *xr = copy(x, nx), *o[2][4];
    uint16_t *d_xr16 = dev16(xr, nx), *d_o16[2][2];
    for (int from16 = 0; from16 < 2; from16++) {
        const float *fx = from16 ? NULL : dev(xr, nx);
        const uint16_t *hx = from16 ? d_xr16 : NULL;
        float *d_oy = poisoned(nx), *d_or = poisoned(rows), *d_odx = poisoned(nx), *d_odg = dev(dg0, (size_t)h);
        d_o16[from16][0] = dnew(nx * 2), d_o16[from16][1] = dnew(nx * 2);
        pg_cuda_qk_prep_fwd(d_oy, d_or, fx, hx, d_cs, d_sn, with_gain ? d_g : NULL, b, t, h, hd, rd, eps);
        pg_cuda_qk_prep_fwd_x16(d_o16[from16][0], d_or, fx, hx, d_cs, d_sn, with_gain ? d_g : NULL, b, t, h, hd, rd,
                                eps);
        pg_cuda_qk_prep_bwd(d_odx, with_gain ? d_odg : NULL, d_dy, fx, hx, d_r, d_cs, d_sn, with_gain ? d_g : NULL, b,
                            t, h, hd, rd);
        pg_cuda_qk_prep_bwd_x16(d_o16[from16][1], NULL, d_dy, fx, hx, d_r, d_cs, d_sn, with_gain ? d_g : NULL, b, t, h,
                                hd, rd);
        o[from16][0] = back(d_oy, nx), o[from16][1] = back(d_or, rows), o[from16][2] = back(d_odx, nx);
        o[from16][3] = back(d_odg, (size_t)h);
    }
    uint16_t *a16 = hkeep(malloc(nx * 2)), *b16 = hkeep(malloc(nx * 2)), *c16 = hkeep(malloc(nx * 2)),
             *e16 = hkeep(malloc(nx * 2));
    pg_cuda_download(a16, d_o16[0][0], nx * 2), pg_cuda_download(b16, d_o16[1][0], nx * 2);
    pg_cuda_download(c16, d_o16[0][1], nx * 2), pg_cuda_download(e16, d_o16[1][1], nx * 2);
    ok(same_bits(o[0][0], o[1][0], nx) && same_bits(o[0][1], o[1][1], rows) && same_bits(o[0][2], o[1][2], nx) &&
           same_bits(o[0][3], o[1][3], (size_t)h) && !memcmp(a16, b16, nx * 2) && !memcmp(c16, e16, nx * 2),
       "qk_prep %s: x given in bf16, the bits of the fp32 x of the same values (all four entries)", what);
}

static void test_mix_norm(int n, int d, double scale, int keep_xin)
{
    char what[80];
    snprintf(what, sizeof what, "n=%d d=%d scale=%g%s", n, d, scale, keep_xin ? "" : " no xin");
    size_t nd = (size_t)n * d;
    double eps = 1e-6;
    float *x = rnd(nd, 2), *x0 = rnd(nd, 1), *m0 = rnd((size_t)d, 1), *m1 = rnd((size_t)d, 1);
    float *xm = hnew(nd), *y = hnew(nd), *rstd = hnew((size_t)n);
    cpu->mix_fwd(xm, x, x0, m0, m1, n, d);
    cpu->rmsnorm_fwd(y, rstd, xm, n, d, eps, scale);
    float *d_x = dev(x, nd), *d_x0 = dev(x0, nd), *d_m0 = dev(m0, (size_t)d), *d_m1 = dev(m1, (size_t)d);
    float *d_xin = poisoned(nd), *d_xm = poisoned(nd), *d_y = poisoned(nd), *d_r = poisoned((size_t)n);
    pg_cuda_mix_norm_fwd(keep_xin ? d_xin : NULL, d_xm, d_y, d_r, d_x, d_x0, d_m0, d_m1, n, d, eps, scale);
    if (keep_xin) check("mix_norm_fwd xin (a copy of x)", what, back(d_xin, nd), x, nd, 0);
    check("mix_norm_fwd xm", what, back(d_xm, nd), xm, nd, TOL);
    check("mix_norm_fwd y", what, back(d_y, nd), y, nd, TOL);
    check("mix_norm_fwd rstd", what, back(d_r, (size_t)n), rstd, (size_t)n, TOL);
}

/* in_place: x_in is x itself (x += s ⊙ f). */
static void test_add_norm(int n, int d, double scale, int in_place)
{
    char what[80];
    snprintf(what, sizeof what, "n=%d d=%d scale=%g%s", n, d, scale, in_place ? " in place" : "");
    size_t nd = (size_t)n * d;
    double eps = 1e-6;
    float *xin = rnd(nd, 2), *s = rnd((size_t)d, 1), *f = rnd(nd, 1);
    uint16_t *d_f16 = dev16(f, nd); /* f in bf16 for the x16 form: the same values */
    float *x = copy(xin, nd), *y = hnew(nd), *rstd = hnew((size_t)n);
    cpu->scale_add_fwd(x, s, f, n, d);
    cpu->rmsnorm_fwd(y, rstd, x, n, d, eps, scale);
    float *d_xin = dev(xin, nd), *d_s = dev(s, (size_t)d), *d_f = dev(f, nd);
    float *d_x = in_place ? d_xin : poisoned(nd), *d_y = poisoned(nd), *d_r = poisoned((size_t)n);
    pg_cuda_add_norm_fwd(d_x, d_y, d_r, d_xin, d_s, d_f, n, d, eps, scale);
    check("add_norm_fwd x", what, back(d_x, nd), x, nd, TOL);
    check("add_norm_fwd y", what, back(d_y, nd), y, nd, TOL);
    check("add_norm_fwd rstd", what, back(d_r, (size_t)n), rstd, (size_t)n, TOL);
    /* the x16 form, f given in bf16: the same x, y and rstd bits, and y16 = y rounded to bf16
     * (pg_bf16_round's) */
    float *gx = back(d_x, nd), *gy = back(d_y, nd), *gr = back(d_r, (size_t)n);
    float *d_x2 = in_place ? dev(xin, nd) : poisoned(nd), *d_y2 = poisoned(nd), *d_r2 = poisoned((size_t)n);
    uint16_t *d_y16 = dnew(nd * sizeof(uint16_t)), *y16 = hkeep(malloc(nd * sizeof *y16)),
             *want16 = hkeep(malloc(nd * sizeof *want16));
    pg_cuda_add_norm_fwd_x16(d_x2, d_y2, d_y16, d_r2, in_place ? d_x2 : d_xin, d_s, d_f16, n, d, eps, scale);
    pg_cuda_download(y16, d_y16, nd * sizeof *y16);
    bf16_bits(want16, gy, nd);
    ok(same_bits(back(d_x2, nd), gx, nd) && same_bits(back(d_y2, nd), gy, nd) &&
           same_bits(back(d_r2, (size_t)n), gr, (size_t)n) && memcmp(y16, want16, nd * sizeof *y16) == 0,
       "add_norm_fwd_x16 %s: add_norm_fwd's bits, and y in bf16", what);
}

/* add_norm_bwd_x16: the MLP norm's backward with its output recomputed from the block's input
 * (mix_norm_fwd, then add_norm_fwd_x16 with a bf16 branch and no fp32 y): the bits of the
 * accumulating rmsnorm_bwd on the y add_norm_fwd_x16 writes when asked. And the attention
 * norm's (mix_norm_fwd_x16, mix_norm_bwd_x16), likewise. */
static void test_add_norm_bwd16(int n, int d, double scale)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d d=%d scale=%g", n, d, scale);
    size_t nd = (size_t)n * d;
    double eps = 1e-6;
    float *x = rnd(nd, 2), *x0 = rnd(nd, 1), *m0 = rnd((size_t)d, 1), *m1 = rnd((size_t)d, 1), *s = rnd((size_t)d, 1);
    float *f = rnd(nd, 1), *dy = rnd(nd, 1), *base = rnd(nd, 1);
    uint16_t *d_f16 = dev16(f, nd), *d_y16 = dnew(nd * 2 + 2), *d_y16b = dnew(nd * 2 + 2);
    float *d_xin = poisoned(nd), *d_xm = poisoned(nd), *d_ya = poisoned(nd), *d_ra = poisoned((size_t)n);
    float *d_m0 = dev(m0, (size_t)d), *d_m1 = dev(m1, (size_t)d), *d_s = dev(s, (size_t)d), *d_x0 = dev(x0, nd);
    pg_cuda_mix_norm_fwd(d_xin, d_xm, d_ya, d_ra, dev(x, nd), d_x0, d_m0, d_m1, n, d, eps, scale);
    { /* the x16 form without y (the lean layout's): the same xin, xm, rstd, and y in bf16 */
        float *d_xin2 = poisoned(nd), *d_xm2 = poisoned(nd), *d_ra2 = poisoned((size_t)n);
        uint16_t *d_ya16 = dnew(nd * 2 + 2), *ga = hkeep(malloc(nd * 2 + 2)), *wa = hkeep(malloc(nd * 2 + 2));
        pg_cuda_mix_norm_fwd_x16(d_xin2, d_xm2, NULL, d_ya16, d_ra2, dev(x, nd), d_x0, d_m0, d_m1, n, d, eps, scale);
        pg_cuda_download(ga, d_ya16, nd * 2);
        bf16_bits(wa, back(d_ya, nd), nd);
        ok(same_bits(back(d_xin2, nd), back(d_xin, nd), nd) && same_bits(back(d_xm2, nd), back(d_xm, nd), nd) &&
               same_bits(back(d_ra2, (size_t)n), back(d_ra, (size_t)n), n) && !memcmp(ga, wa, nd * 2),
           "mix_norm_fwd_x16 %s: without y, mix_norm_fwd's xin, xm and rstd, and y in bf16", what);
        /* its backward with y recomputed: rmsnorm_bwd_add's bits on the stored y, and with no base
         * rmsnorm_bwd's (overwriting) */
        float *dyb = rnd(nd, 1), *bb = rnd(nd, 1), *d_dyb = dev(dyb, nd);
        float *d_e1 = poisoned(nd), *d_e2 = poisoned(nd), *d_e3 = poisoned(nd), *d_e4 = poisoned(nd);
        float *d_bb = dev(bb, nd);
        pg_cuda_rmsnorm_bwd_add(d_e1, d_bb, d_dyb, d_ya, d_ra, n, d, scale);
        pg_cuda_mix_norm_bwd_x16(d_e2, d_bb, d_dyb, d_xin, d_x0, d_m0, d_m1, d_ra, n, d, scale);
        pg_cuda_rmsnorm_bwd(d_e3, d_dyb, d_ya, d_ra, n, d, scale, 0);
        pg_cuda_mix_norm_bwd_x16(d_e4, NULL, d_dyb, d_xin, d_x0, d_m0, d_m1, d_ra, n, d, scale);
        ok(same_bits(back(d_e1, nd), back(d_e2, nd), nd) && same_bits(back(d_e3, nd), back(d_e4, nd), nd),
           "mix_norm_bwd_x16 %s: the bits of rmsnorm_bwd_add and rmsnorm_bwd on the stored y", what);
    }
    /* the forward twice: with the fp32 y, and without (the lean layout's) */
    float *d_x1 = poisoned(nd), *d_y = poisoned(nd), *d_r = poisoned((size_t)n), *d_x1b = poisoned(nd);
    float *d_rb = poisoned((size_t)n);
    pg_cuda_add_norm_fwd_x16(d_x1, d_y, d_y16, d_r, d_xm, d_s, d_f16, n, d, eps, scale);
    pg_cuda_add_norm_fwd_x16(d_x1b, NULL, d_y16b, d_rb, d_xm, d_s, d_f16, n, d, eps, scale);
    uint16_t *a16 = hkeep(malloc(nd * 2 + 2)), *b16 = hkeep(malloc(nd * 2 + 2));
    pg_cuda_download(a16, d_y16, nd * 2), pg_cuda_download(b16, d_y16b, nd * 2);
    ok(same_bits(back(d_x1, nd), back(d_x1b, nd), nd) && same_bits(back(d_r, (size_t)n), back(d_rb, (size_t)n), n) &&
           !memcmp(a16, b16, nd * 2),
       "add_norm_fwd_x16 %s: without y, the same x, rstd and y16", what);
    float *d_dy = dev(dy, nd), *d_da = dev(base, nd), *d_db = dev(base, nd);
    pg_cuda_rmsnorm_bwd(d_da, d_dy, d_y, d_r, n, d, scale, 1);
    pg_cuda_add_norm_bwd_x16(d_db, d_dy, d_xin, d_x0, d_m0, d_m1, d_s, d_f16, d_r, n, d, scale);
    ok(same_bits(back(d_da, nd), back(d_db, nd), nd),
       "add_norm_bwd_x16 %s: the bits of rmsnorm_bwd (accumulating) on the stored y", what);
}

/* rmsnorm_bwd_add: dx = base + the norm's backward, against the CPU's copy + accumulating
 * rmsnorm_bwd, and bit for bit the device's own copy + rmsnorm_bwd (in_place: base is dx). */
static void test_norm_bwd_add(int n, int d, double scale, int in_place)
{
    char what[80];
    snprintf(what, sizeof what, "n=%d d=%d scale=%g%s", n, d, scale, in_place ? " in place" : "");
    size_t nd = (size_t)n * d;
    float *x = rnd(nd, 2), *dy = rnd(nd, 1), *base = rnd(nd, 1), *y = hnew(nd), *rstd = hnew((size_t)n);
    cpu->rmsnorm_fwd(y, rstd, x, n, d, 1e-6, scale);
    float *dx = copy(base, nd);
    cpu->rmsnorm_bwd(dx, dy, y, rstd, n, d, scale, 1);
    float *d_base = dev(base, nd), *d_dy = dev(dy, nd), *d_y = dev(y, nd), *d_r = dev(rstd, (size_t)n);
    float *d_dx = in_place ? d_base : poisoned(nd), *d_two = dev(base, nd);
    pg_cuda_rmsnorm_bwd_add(d_dx, d_base, d_dy, d_y, d_r, n, d, scale);
    float *got = back(d_dx, nd);
    check("rmsnorm_bwd_add", what, got, dx, nd, TOL);
    pg_cuda_rmsnorm_bwd(d_two, d_dy, d_y, d_r, n, d, scale, 1); /* d_two held base: the unfused pair */
    ok(same_bits(got, back(d_two, nd), nd), "rmsnorm_bwd_add %s: the bits of copy + accumulating rmsnorm_bwd", what);
}

/* The MLP activation and its gradient kept in bf16 (relu2_fwd_x16, relu2_bwd_x16, matmul_fwd_x16,
 * matmul_bwd_16), from the fc output kept in bf16 (its bits widened: what relu2_fwd reads in
 * bf16 mode after round_bf16), against the CPU in bf16 mode: relu2_fwd then pg_bf16_round, bit
 * for bit (the same float expression, rounded once); the products against matmul_fwd/bwd on
 * the CPU in bf16 mode from the fp32 activation (which round it to the same bf16 values), at the
 * parity rule's 1e-5 (the same exact bf16 products, summed in another order). The products would
 * differ from the fp32 ones by bf16's rounding; that the x16 path rounds is checked against the
 * fp32 mode's result. */
static void test_mlp16(int n, int in, int out, double slope, int with_dx)
{
    char what[80];
    snprintf(what, sizeof what, "n=%d in=%d out=%d slope=%g%s", n, in, out, slope, with_dx ? "" : " no dx");
    size_t ni = (size_t)n * in, no = (size_t)n * out, nw = (size_t)out * in;
    float *h = rnd(ni, 2), *r = hnew(ni), *w = rnd(nw, 0.5f), *dy = rnd(no, 1), *dw0 = rnd(nw, 0.1f);
    uint16_t *h16 = hkeep(malloc((ni ? ni : 1) * sizeof *h16)), *d_h16 = dnew((ni ? ni : 1) * sizeof *d_h16);
    cpu->round_bf16(h, ni);
    bf16_bits(h16, h, ni);
    pg_cuda_upload(d_h16, h16, ni * sizeof *h16);
    cpu->relu2_fwd(r, h, ni, slope);
    uint16_t *want16 = hkeep(malloc((ni ? ni : 1) * sizeof *want16));
    bf16_bits(want16, r, ni);
    uint16_t *d_r16 = dnew((ni ? ni : 1) * sizeof *d_r16), *got16 = hkeep(malloc((ni ? ni : 1) * sizeof *got16));
    memset(got16, 0xff, (ni ? ni : 1) * sizeof *got16);
    pg_cuda_upload(d_r16, got16, ni * sizeof *got16); /* poisoned: NaN patterns */
    pg_cuda_relu2_fwd_x16(d_r16, d_h16, ni, slope);
    pg_cuda_download(got16, d_r16, ni * sizeof *got16);
    ok(memcmp(got16, want16, ni * sizeof *got16) == 0, "relu2_fwd_x16 %s: relu2_fwd rounded to bf16, bit for bit",
       what);
    /* the products, against the CPU's bf16 mode on the fp32 activation */
    float *y = hnew(no), *dx = hnew(ni), *dw = copy(dw0, nw), *yf = hnew(no);
    cpu->set_bf16(0);
    cpu->matmul_fwd(yf, r, w, n, in, out);
    cpu->set_bf16(1);
    cpu->matmul_fwd(y, r, w, n, in, out);
    cpu->matmul_bwd(with_dx ? dx : NULL, dw, dy, r, w, n, in, out, 0);
    cpu->set_bf16(0);
    float *d_w = dev(w, nw), *d_y = poisoned(no), *d_dx = poisoned(ni), *d_dw = dev(dw0, nw);
    gpu->set_bf16(1);
    pg_cuda_matmul_fwd_x16(d_y, d_r16, d_w, n, in, out);
    pg_cuda_matmul_bwd_16(with_dx ? d_dx : NULL, d_dw, dev(dy, no), NULL, NULL, d_r16, d_w, n, in, out, 0);
    gpu->set_bf16(0);
    float *gy = back(d_y, no);
    check("matmul_fwd_x16 y", what, gy, y, no, TOL);
    if (with_dx) check("matmul_bwd_16 dx", what, back(d_dx, ni), dx, ni, TOL);
    else ok(isnan(back(d_dx, ni)[0]), "matmul_bwd_16 %s: dx NULL, nothing written", what);
    check("matmul_bwd_16 dw (accumulated)", what, back(d_dw, nw), dw, nw, TOL);
    /* the gradient side: relu2_bwd_x16 (dh = relu2_bwd rounded to bf16) and a product whose
     * dy comes in bf16 (the fc layer's backward: dx = dh·w, dw += dhᵀ·x) */
    float *g = rnd(ni, 1), *dh = hnew(ni);
    cpu->relu2_bwd(dh, g, h, ni, slope);
    bf16_bits(want16, dh, ni);
    pg_cuda_upload(d_r16, got16, 0);
    pg_cuda_relu2_bwd_x16(d_r16, dev(g, ni), d_h16, ni, slope);
    pg_cuda_download(got16, d_r16, ni * sizeof *got16);
    ok(memcmp(got16, want16, ni * sizeof *got16) == 0, "relu2_bwd_x16 %s: relu2_bwd rounded to bf16, bit for bit",
       what);
    /* fc's shapes: x[n,out] (the MLP input, width `out` here), w[in,out], dy = dh [n,in] */
    float *xf = rnd(no, 1), *wf = rnd(nw, 0.5f), *dxf = hnew(no), *dwf = copy(dw0, nw);
    cpu->set_bf16(1);
    cpu->matmul_bwd(with_dx ? dxf : NULL, dwf, dh, xf, wf, n, out, in, 0);
    cpu->set_bf16(0);
    float *d_dxf = poisoned(no), *d_dwf = dev(dw0, nw);
    gpu->set_bf16(1);
    pg_cuda_matmul_bwd_16(with_dx ? d_dxf : NULL, d_dwf, NULL, d_r16, dev(xf, no), NULL, dev(wf, nw), n, out, in, 0);
    gpu->set_bf16(0);
    if (with_dx) check("matmul_bwd_16 (dy in bf16) dx", what, back(d_dxf, no), dxf, no, TOL);
    check("matmul_bwd_16 (dy in bf16) dw (accumulated)", what, back(d_dwf, nw), dwf, nw, TOL);
    double diff = 0, ref = 0;
    for (size_t i = 0; i < no; i++) diff += (double)(gy[i] - yf[i]) * (gy[i] - yf[i]), ref += (double)yf[i] * yf[i];
    ok(no == 0 || sqrt(diff / (ref > 0 ? ref : 1)) > 1e-5,
       "matmul_fwd_x16 %s: bf16's rounding is there (relative rms %.2e from fp32)", what, sqrt(diff / (ref > 0 ? ref : 1)));
}

/* The MLP's first product kept in bf16 (matmul_fwd_to16, from x in fp32 or in bf16): the bits
 * of the device's own matmul_fwd in bf16 mode and then round_bf16, whose rounding is the CPU's
 * bit for bit; against the CPU's bf16 product rounded, within one bf16 step of the largest
 * value (the two fp32 sums differ in their last bits, and a value near a midpoint rounds to a
 * neighbour). in = 0: zeros. */
static void test_fwd_to16(int n, int in, int out)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d in=%d out=%d", n, in, out);
    size_t nx = (size_t)n * in, ny = (size_t)n * out, nw = (size_t)out * in;
    float *x = rnd(nx, 1), *w = rnd(nw, 0.5f), *y = hnew(ny);
    uint16_t *x16 = hkeep(malloc((nx ? nx : 1) * sizeof *x16)), *d_x16 = dnew((nx ? nx : 1) * sizeof *d_x16);
    bf16_bits(x16, x, nx);
    pg_cuda_upload(d_x16, x16, nx * sizeof *x16);
    cpu->set_bf16(1);
    cpu->matmul_fwd(y, x, w, n, in, out);
    cpu->set_bf16(0);
    cpu->round_bf16(y, ny);
    float *d_x = dev(x, nx), *d_w = dev(w, nw), *d_y = poisoned(ny);
    gpu->set_bf16(1);
    pg_cuda_matmul_fwd(d_y, d_x, d_w, n, in, out);
    float *unrounded = back(d_y, ny), *host_rounded = copy(unrounded, ny);
    cpu->round_bf16(host_rounded, ny);
    pg_cuda_round_bf16(d_y, ny);
    float *rounded = back(d_y, ny);
    ok(same_bits(rounded, host_rounded, ny), "round_bf16 %s: the CPU's rounding, bit for bit", what);
    uint16_t *want = hkeep(malloc((ny ? ny : 1) * sizeof *want)), *got = hkeep(malloc((ny ? ny : 1) * sizeof *got));
    bf16_bits(want, rounded, ny);
    for (int from16 = 0; from16 < 2; from16++) {
        uint16_t *d_y16 = dnew((ny ? ny : 1) * sizeof *d_y16);
        memset(got, 0xff, (ny ? ny : 1) * sizeof *got);
        pg_cuda_upload(d_y16, got, ny * sizeof *got); /* poisoned: NaN patterns */
        pg_cuda_matmul_fwd_to16(d_y16, from16 ? NULL : d_x, from16 ? d_x16 : NULL, d_w, n, in, out);
        pg_cuda_download(got, d_y16, ny * sizeof *got);
        ok(memcmp(got, want, ny * sizeof *got) == 0, "matmul_fwd_to16 %s from %s: matmul_fwd then round_bf16", what,
           from16 ? "bf16 x" : "fp32 x");
    }
    gpu->set_bf16(0);
    double scale = 0, worst = 0;
    for (size_t i = 0; i < ny; i++) {
        if (fabs(y[i]) > scale) scale = fabs(y[i]);
        if (fabs(rounded[i] - y[i]) > worst) worst = fabs(rounded[i] - y[i]);
    }
    ok(worst <= scale / 128 && (in > 0 || scale == 0),
       "matmul_fwd_to16 %s: the CPU's within a bf16 step (%.3g of %.3g)", what, worst, scale);
}

/* The attention's three products of one input (matmul_fwd_qkv / matmul_bwd_qkv), in fp32 and in
 * bf16 mode: the bits of the device's own three matmul_fwd / matmul_bwd calls (the same products,
 * x converted once instead of three times), and the CPU's chain at the parity rule. */
static void test_qkv(int n, int in, int outq, int outkv, int bf16, int dx_accumulate)
{
    char what[96];
    snprintf(what, sizeof what, "n=%d in=%d q %d kv %d %s%s", n, in, outq, outkv, bf16 ? "bf16" : "fp32",
             dx_accumulate ? " dx +=" : "");
    size_t nx = (size_t)n * in, nq = (size_t)n * outq, nk = (size_t)n * outkv;
    size_t nwq = (size_t)outq * in, nwk = (size_t)outkv * in;
    float *x = rnd(nx, 1), *wq = rnd(nwq, 0.5f), *wk = rnd(nwk, 0.5f), *wv = rnd(nwk, 0.5f);
    float *dq = rnd(nq, 1), *dk = rnd(nk, 1), *dv = rnd(nk, 1), *dx0 = rnd(nx, 1), *g0 = rnd(nwq, 0.1f);
    /* the CPU's chain */
    float *q = hnew(nq), *k = hnew(nk), *v = hnew(nk), *dx = copy(dx0, nx);
    float *gq = copy(g0, nwq), *gk = copy(g0, nwk), *gv = copy(g0, nwk);
    cpu->set_bf16(bf16);
    cpu->matmul_fwd(q, x, wq, n, in, outq);
    cpu->matmul_fwd(k, x, wk, n, in, outkv);
    cpu->matmul_fwd(v, x, wv, n, in, outkv);
    cpu->matmul_bwd(dx, gq, dq, x, wq, n, in, outq, dx_accumulate);
    cpu->matmul_bwd(dx, gk, dk, x, wk, n, in, outkv, 1);
    cpu->matmul_bwd(dx, gv, dv, x, wv, n, in, outkv, 1);
    cpu->set_bf16(0);
    /* the device: the fused call, and its own three calls */
    float *d_x = dev(x, nx), *d_wq = dev(wq, nwq), *d_wk = dev(wk, nwk), *d_wv = dev(wv, nwk);
    float *d_dq = dev(dq, nq), *d_dk = dev(dk, nk), *d_dv = dev(dv, nk);
    /* dq, dk and dv handed over in bf16 (qk_prep_bwd_x16's and the flash backward's form): the
     * rounding the product makes */
    uint16_t *dq16 = hkeep(malloc(nq * sizeof *dq16)), *dk16 = hkeep(malloc(nk * sizeof *dk16));
    bf16_bits(dq16, dq, nq);
    bf16_bits(dk16, dk, nk);
    uint16_t *d_dq16 = dnew(nq * sizeof *d_dq16), *d_dk16 = dnew(nk * sizeof *d_dk16);
    uint16_t *d_dv16 = dev16(copy(dv, nk), nk);
    pg_cuda_upload(d_dq16, dq16, nq * sizeof *dq16);
    pg_cuda_upload(d_dk16, dk16, nk * sizeof *dk16);
    uint16_t *d_x16 = dev16(copy(x, nx), nx); /* x as the attention norm's bf16 copy (way 2) */
    float *out[3][7];
    for (int way = 0; way < 3 && (way < 2 || bf16); way++) {
        float *d_q = poisoned(nq), *d_k = poisoned(nk), *d_v = poisoned(nk), *d_dx = dev(dx0, nx);
        float *d_gq = dev(g0, nwq), *d_gk = dev(g0, nwk), *d_gv = dev(g0, nwk);
        gpu->set_bf16(bf16);
        if (way != 1) {
            const float *xf = way ? NULL : d_x;
            const uint16_t *xh = way ? d_x16 : NULL;
            pg_cuda_matmul_fwd_qkv(d_q, d_k, d_v, NULL, NULL, NULL, xf, xh, d_wq, d_wk, d_wv, n, in, outq, outkv);
            pg_cuda_matmul_bwd_qkv(d_dx, d_gq, d_gk, d_gv, d_dq, d_dk, d_dv, way ? d_dq16 : NULL, way ? d_dk16 : NULL,
                                   way ? d_dv16 : NULL, xf, xh, d_wq, d_wk, d_wv, n, in, outq, outkv, dx_accumulate);
        } else {
            pg_cuda_matmul_fwd(d_q, d_x, d_wq, n, in, outq);
            pg_cuda_matmul_fwd(d_k, d_x, d_wk, n, in, outkv);
            pg_cuda_matmul_fwd(d_v, d_x, d_wv, n, in, outkv);
            pg_cuda_matmul_bwd(d_dx, d_gq, d_dq, d_x, d_wq, n, in, outq, dx_accumulate);
            pg_cuda_matmul_bwd(d_dx, d_gk, d_dk, d_x, d_wk, n, in, outkv, 1);
            pg_cuda_matmul_bwd(d_dx, d_gv, d_dv, d_x, d_wv, n, in, outkv, 1);
        }
        gpu->set_bf16(0);
        out[way][0] = back(d_q, nq), out[way][1] = back(d_k, nk), out[way][2] = back(d_v, nk);
        out[way][3] = back(d_dx, nx), out[way][4] = back(d_gq, nwq), out[way][5] = back(d_gk, nwk);
        out[way][6] = back(d_gv, nwk);
    }
    const size_t sizes[7] = {nq, nk, nk, nx, nwq, nwk, nwk};
    int same = 1;
    for (int i = 0; i < 7; i++) same = same && same_bits(out[0][i], out[1][i], sizes[i]);
    ok(same, "matmul_qkv %s: the bits of the device's three separate products, forward and backward", what);
    if (bf16) {
        same = 1;
        for (int i = 0; i < 7; i++) same = same && same_bits(out[0][i], out[2][i], sizes[i]);
        ok(same, "matmul_qkv %s: x given in bf16, and dq, dk and dv in the backward, the same bits", what);
        /* q and k made in bf16 (q16, k16): the fp32 outputs rounded, bit for bit; v as before; then
         * v too (v16) */
        uint16_t *d_q16 = dnew(nq * 2 + 2), *d_k16 = dnew(nk * 2 + 2), *gq16 = hkeep(malloc(nq * 2 + 2));
        uint16_t *gk16 = hkeep(malloc(nk * 2 + 2)), *wq16 = hkeep(malloc(nq * 2 + 2));
        uint16_t *wk16 = hkeep(malloc(nk * 2 + 2));
        uint16_t *d_v16 = dnew(nk * 2 + 2), *gv16 = hkeep(malloc(nk * 2 + 2)), *wv16 = hkeep(malloc(nk * 2 + 2));
        float *d_v2 = poisoned(nk);
        gpu->set_bf16(1);
        pg_cuda_matmul_fwd_qkv(NULL, NULL, d_v2, d_q16, d_k16, NULL, d_x, NULL, d_wq, d_wk, d_wv, n, in, outq, outkv);
        pg_cuda_download(gq16, d_q16, nq * 2), pg_cuda_download(gk16, d_k16, nk * 2);
        bf16_bits(wq16, out[0][0], nq), bf16_bits(wk16, out[0][1], nk), bf16_bits(wv16, out[0][2], nk);
        ok(!memcmp(gq16, wq16, nq * 2) && !memcmp(gk16, wk16, nk * 2) && same_bits(back(d_v2, nk), out[0][2], nk),
           "matmul_fwd_qkv %s: q and k in bf16, the fp32 ones rounded, bit for bit", what);
        pg_cuda_matmul_fwd_qkv(NULL, NULL, NULL, d_q16, d_k16, d_v16, d_x, NULL, d_wq, d_wk, d_wv, n, in, outq, outkv);
        gpu->set_bf16(0);
        pg_cuda_download(gv16, d_v16, nk * 2);
        ok(!memcmp(gv16, wv16, nk * 2), "matmul_fwd_qkv %s: v in bf16, the fp32 one rounded, bit for bit", what);
    }
    check("matmul_fwd_qkv q", what, out[0][0], q, nq, TOL);
    check("matmul_fwd_qkv k", what, out[0][1], k, nk, TOL);
    check("matmul_fwd_qkv v", what, out[0][2], v, nk, TOL);
    check("matmul_bwd_qkv dx", what, out[0][3], dx, nx, TOL);
    check("matmul_bwd_qkv dwq", what, out[0][4], gq, nwq, TOL);
    check("matmul_bwd_qkv dwk", what, out[0][5], gk, nwk, TOL);
    check("matmul_bwd_qkv dwv", what, out[0][6], gv, nwk, TOL);
}

/* scale_add_bwd_x16: df = s ⊙ dy rounded to bf16, bit for bit the CPU's fp32 df rounded; ds the
 * device's own scale_add_bwd's, bit for bit (the same reduction), and the CPU's at the rule. */
static void test_scale_add_x16(int n, int d)
{
    char what[64];
    snprintf(what, sizeof what, "n=%d d=%d", n, d);
    size_t nd = (size_t)n * d;
    float *dy = rnd(nd, 1), *s = rnd((size_t)d, 1), *f = rnd(nd, 1), *ds0 = rnd((size_t)d, 0.1f);
    uint16_t *d_f16 = dev16(f, nd); /* the branch output in bf16, as the x16 forms keep it */
    float *df = hnew(nd), *ds = copy(ds0, (size_t)d);
    cpu->scale_add_bwd(df, ds, dy, s, f, n, d, 0);
    uint16_t *want = hkeep(malloc((nd ? nd : 1) * 2)), *got = hkeep(malloc((nd ? nd : 1) * 2));
    bf16_bits(want, df, nd);
    float *d_dy = dev(dy, nd), *d_s = dev(s, (size_t)d), *d_f = dev(f, nd);
    float *d_ds = dev(ds0, (size_t)d), *d_ds2 = dev(ds0, (size_t)d), *d_df = poisoned(nd);
    uint16_t *d_df16 = dnew((nd ? nd : 1) * 2);
    pg_cuda_scale_add_bwd_x16(d_df16, d_ds, d_dy, d_s, d_f16, n, d);
    pg_cuda_scale_add_bwd(d_df, d_ds2, d_dy, d_s, d_f, n, d, 0);
    pg_cuda_download(got, d_df16, nd * 2);
    ok(memcmp(got, want, nd * 2) == 0, "scale_add_bwd_x16 %s: s ⊙ dy rounded to bf16, bit for bit", what);
    float *gds = back(d_ds, (size_t)d);
    ok(same_bits(gds, back(d_ds2, (size_t)d), (size_t)d), "scale_add_bwd_x16 %s: ds as scale_add_bwd's, bit for bit",
       what);
    check("scale_add_bwd_x16 ds (accumulated)", what, gds, ds, (size_t)d, TOL);
    /* the forward: x += s ⊙ f with f in bf16, scale_add_fwd's bits on the widened values */
    float *x0 = rnd(nd, 1), *x = copy(x0, nd), *d_x = dev(x0, nd), *d_x16 = dev(x0, nd);
    cpu->scale_add_fwd(x, s, f, n, d);
    pg_cuda_scale_add_fwd(d_x, d_s, d_f, n, d);
    pg_cuda_scale_add_fwd_x16(d_x16, d_s, d_f16, n, d);
    float *gx = back(d_x16, nd);
    ok(same_bits(gx, back(d_x, nd), nd), "scale_add_fwd_x16 %s: scale_add_fwd's bits", what);
    check("scale_add_fwd_x16", what, gx, x, nd, TOL);
}

/* Empty calls write nothing and record no failure. */
static void test_empty(void)
{
    float *d = poisoned(4);
    pg_cuda_qk_prep_fwd(d, d, d, NULL, d, d, d, 0, 3, 2, 8, 8, 1e-6);
    pg_cuda_qk_prep_bwd(d, d, d, d, NULL, d, d, d, d, 2, 0, 2, 8, 8);
    pg_cuda_mix_norm_fwd(d, d, d, d, d, d, d, d, 0, 8, 1e-6, 1);
    pg_cuda_add_norm_fwd(d, d, d, d, d, d, 4, 0, 1e-6, 1);
    pg_cuda_rmsnorm_bwd_add(d, d, d, d, d, 0, 8, 1);
    pg_cuda_add_norm_fwd_x16(d, d, (uint16_t *)d, d, d, d, (uint16_t *)d, 0, 8, 1e-6, 1);
    pg_cuda_scale_add_fwd_x16(d, d, (uint16_t *)d, 0, 8);
    float *h = back(d, 4);
    ok(pg_cuda_status() == 0 && isnan(h[0]) && isnan(h[3]), "empty shapes: nothing written, no failure");
}

int main(void)
{
    parity_start();
    gpu->init();
    parity_seed = 77;
    test_qk_prep(2, 5, 3, 16, 16, 1);   /* full RoPE */
    test_qk_prep(1, 1, 2, 16, 16, 1);   /* one token */
    test_qk_prep(2, 7, 4, 64, 64, 1);   /* the baseline's head dim */
    test_qk_prep(2, 7, 2, 64, 64, 0);   /* its k rows: no gain */
    test_qk_prep(1, 9, 2, 64, 16, 1);   /* partial RoPE (rope_dims 16) */
    test_qk_prep(1, 3, 3, 10, 4, 1);    /* odd head dim, 2 pairs */
    test_qk_prep(1, 4, 2, 128, 128, 1); /* 64 pairs: two per lane */
    test_qk_prep(1, 3, 2, 96, 80, 0);   /* 40 pairs and 16 unrotated dims */
    test_qk_prep(1, 5, 2, 16, 0, 1);    /* no rotation at all */
    test_mix_norm(5, 16, 1, 1);
    test_mix_norm(1, 37, 0.7071, 1);
    test_mix_norm(9, 512, 0.5, 1);
    test_mix_norm(3, 700, 1, 0); /* more channels than threads */
    test_add_norm(5, 16, 1, 0);
    test_add_norm(1, 37, 0.7071, 1);
    test_add_norm(9, 512, 0.5, 0);
    test_add_norm(3, 700, 1, 1);
    test_norm_bwd_add(5, 16, 1, 0);
    test_norm_bwd_add(1, 37, 0.7071, 1);
    test_norm_bwd_add(9, 512, 0.5, 0);
    test_norm_bwd_add(3, 700, 1, 1);
    test_add_norm_bwd16(5, 16, 1);
    test_add_norm_bwd16(1, 37, 0.7071);
    test_add_norm_bwd16(9, 512, 0.5);
    test_add_norm_bwd16(3, 700, 1); /* more channels than threads */
    test_mlp16(5, 24, 16, 0, 1);
    test_mlp16(1, 40, 8, 0.5, 1); /* one token, LeakyReLU(0.5)² */
    test_mlp16(33, 64, 48, 0.5, 0);
    test_mlp16(7, 1024, 512, 0, 1); /* the baseline's MLP projection */
    test_fwd_to16(5, 24, 16);
    test_fwd_to16(1, 40, 8);
    test_fwd_to16(9, 512, 1024); /* the baseline's fc */
    test_fwd_to16(3, 0, 8);
    test_qkv(6, 32, 32, 16, 1, 0);
    test_qkv(1, 24, 24, 8, 1, 1); /* one token, dx accumulated */
    test_qkv(17, 64, 64, 32, 0, 0);
    test_qkv(9, 512, 512, 256, 1, 0); /* the baseline's shapes */
    test_scale_add_x16(1, 16);
    test_scale_add_x16(37, 512);
    test_scale_add_x16(300, 33);
    test_empty();
    return parity_done(TOL);
}
