/* test_bf16.c: the CPU backend's bf16 products (lib/backend.h set_bf16) against an independent
 * computation: float64 products of the inputs rounded to bf16 (pg_bf16_round), which are exact
 * (8-bit by 8-bit significands), summed in double. The backend multiplies the same rounded
 * values in fp32 (OpenBLAS), so it must agree to fp32 accuracy: |cpu − ref| ≤ 1e-5·(|ref| +
 * rms(ref)) for every element (sums of up to 1100 terms: fp32 error ~√k·6e-8 of the scale).
 * Each comparison shows it can fail: the same rule rejects the float64 product of the unrounded
 * inputs (bf16 rounding moves the results by ~2e-3), and, where the mode is off, the fp32
 * result. Covered: pg_cpu_gemm in every transposition with leading dimensions wider than the
 * rows, alpha and beta, k beyond one k tile (512), and the tiling forced onto small tiles
 * (pg_cpu_bf16_tile_limit); matmul_fwd/bwd through the table, split over OpenMP threads; and
 * set_bf16(0) giving the fp32 bits back. Then the model: in bf16 mode the forward stores the
 * products' and the attention's outputs as autocast does, every element a bf16 value (the low
 * 16 bits zero), in every block; in fp32 mode they are not (the check can fail). The CUDA
 * backend's layouts are held to these CPU bits by test_cuda_model, so a rounding dropped from
 * lib/model.c would pass there and is caught here. */
#include "../tap.h"

#include "../../kernels/cpu/cpu.h"
#include "../../lib/config.h"
#include "../../lib/err.h"
#include "../../lib/model.h"

#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

static unsigned long long seed = 77;
static float urand(void)
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(seed >> 11) * 0x1.0p-53 * 2 - 1);
}

static float *rnd(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = urand() * scale;
    return p;
}

/* Elements of got (m × n, ld ldc) outside TOL·(|ref| + rms(ref)); ref dense m × n. */
static size_t misses(const float *got, int ldc, const double *ref, int m, int n, double *worst)
{
    double ss = 0;
    for (size_t i = 0; i < (size_t)m * n; i++) ss += ref[i] * ref[i];
    double rms = sqrt(ss / ((double)m * n));
    size_t bad = 0;
    *worst = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double want = ref[(size_t)i * n + j], d = fabs(got[(size_t)i * ldc + j] - want), s = fabs(want) + rms;
            if (!(d <= TOL * s)) bad++;
            if (d / s > *worst) *worst = d / s;
        }
    return bad;
}

static double at(const float *a, int ld, int trans, int r, int c, int round)
{
    float x = trans ? a[(size_t)c * ld + r] : a[(size_t)r * ld + c];
    return round ? pg_bf16_round(x) : x;
}

/* ref = alpha·op(A)·op(B) + beta·C0 in double, with A and B rounded to bf16 when `round`. */
static double *ref_gemm(int ta, int tb, int m, int n, int k, double alpha, const float *a, int lda, const float *b,
                        int ldb, double beta, const float *c0, int ldc, int round)
{
    double *r = malloc((size_t)m * n * sizeof *r);
    if (!r) exit(1);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int l = 0; l < k; l++) s += at(a, lda, ta, i, l, round) * at(b, ldb, tb, l, j, round);
            r[(size_t)i * n + j] = alpha * s + beta * c0[(size_t)i * ldc + j];
        }
    return r;
}

/* One pg_cpu_gemm in bf16 mode against the references. */
static void test_gemm(int ta, int tb, int m, int n, int k, float alpha, float beta, size_t tile_limit)
{
    char what[128];
    snprintf(what, sizeof what, "gemm %c%c m=%d n=%d k=%d alpha=%g beta=%g tiles %s", ta ? 'T' : 'N', tb ? 'T' : 'N',
             m, n, k, alpha, beta, tile_limit ? "small" : "default");
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int lda = ac + 3, ldb = bc + 5, ldc = n + 2; /* leading dimensions wider than the rows */
    float *a = rnd((size_t)ar * lda, 1), *b = rnd((size_t)br * ldb, 1), *c = rnd((size_t)m * ldc, 1);
    float *c0 = malloc((size_t)m * ldc * sizeof *c0);
    if (!c0) exit(1);
    memcpy(c0, c, (size_t)m * ldc * sizeof *c);
    double *ref = ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc, 1);
    double *raw = ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc, 0);
    pg_cpu_bf16_tile_limit(tile_limit);
    pg_cpu_set_bf16(1);
    pg_cpu_gemm(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
    pg_cpu_set_bf16(0);
    pg_cpu_bf16_tile_limit(0);
    double worst, w2;
    size_t bad = misses(c, ldc, ref, m, n, &worst);
    int caught = misses(c, ldc, raw, m, n, &w2) > 0;
    ok(bad == 0 && caught, "%s: equals the float64 product of bf16 inputs (worst %.2e), not that of the fp32 inputs "
       "(worst %.2e)", what, worst, w2);
    int untouched = 1; /* the columns past n of each row of C are not written */
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldc; j++) untouched &= c[(size_t)i * ldc + j] == c0[(size_t)i * ldc + j];
    ok(untouched, "%s: C's padding is left alone", what);
    free(a), free(b), free(c), free(c0), free(ref), free(raw);
}

/* matmul_fwd/bwd through the backend table, large enough to split over threads. */
static void test_matmul(int n, int in, int out)
{
    const struct pg_backend *be = &pg_backend_cpu;
    size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = rnd(nx, 1), *w = rnd(nw, 0.5f), *dy = rnd(ny, 1), *dw0 = rnd(nw, 1);
    float *y = malloc(ny * 4), *dx = malloc(nx * 4), *dw = malloc(nw * 4), *y32 = malloc(ny * 4);
    float *y32b = malloc(ny * 4), *dx32 = malloc(nx * 4), *dw32 = malloc(nw * 4);
    if (!y || !dx || !dw || !y32 || !y32b || !dx32 || !dw32) exit(1);
    be->init();
    memcpy(dw32, dw0, nw * 4);
    be->matmul_fwd(y32, x, w, n, in, out);
    be->matmul_bwd(dx32, dw32, dy, x, w, n, in, out, 0);
    be->set_bf16(1);
    memcpy(dw, dw0, nw * 4);
    be->matmul_fwd(y, x, w, n, in, out);
    be->matmul_bwd(dx, dw, dy, x, w, n, in, out, 0);
    be->set_bf16(0);
    /* y = x·wᵀ, dx = dy·w, dw = dw0 + dyᵀ·x */
    double *ry = ref_gemm(0, 1, n, out, in, 1, x, in, w, in, 0, y, out, 1);
    double *rdx = ref_gemm(0, 0, n, in, out, 1, dy, out, w, in, 0, dx, in, 1);
    double *rdw = ref_gemm(1, 0, out, in, n, 1, dy, out, x, in, 1, dw0, in, 1);
    double wy, wdx, wdw, w2;
    size_t bad = misses(y, out, ry, n, out, &wy) + misses(dx, in, rdx, n, in, &wdx);
    bad += misses(dw, in, rdw, out, in, &wdw);
    int caught = misses(y32, out, ry, n, out, &w2) > 0 && misses(dx32, in, rdx, n, in, &w2) > 0 &&
                 misses(dw32, in, rdw, out, in, &w2) > 0;
    ok(bad == 0 && caught, "matmul n=%d in=%d out=%d in bf16: y, dx, dw (accumulated) equal the float64 products of "
       "bf16 inputs (worst %.2e, %.2e, %.2e), the fp32 results do not", n, in, out, wy, wdx, wdw);
    be->matmul_fwd(y32b, x, w, n, in, out);
    ok(memcmp(y32b, y32, ny * 4) == 0, "matmul n=%d in=%d out=%d: set_bf16(0) gives the fp32 bits back", n, in, out);
    free(x), free(w), free(dy), free(dw0), free(y), free(dx), free(dw), free(y32), free(y32b), free(dx32), free(dw32);
    free(ry), free(rdx), free(rdw);
}

/* How many of x's n elements are not bf16 values. */
static size_t not_bf16(const float *x, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        bad += (u & 0xffff) != 0;
    }
    return bad;
}

/* One forward of a small model in bf16 mode (bf16 = 1) or fp32: for each stored output, the
 * elements over all blocks that are not bf16 values. */
enum { OUT_Q, OUT_K, OUT_V, OUT_O, OUT_AO, OUT_H, OUT_MO, OUTS };
static const char *const out_name[OUTS] = {"c_q", "c_k", "c_v", "attention", "proj", "fc", "mlp_proj"};

static void model_outputs(int bf16, size_t bad[OUTS], int *fused)
{
    enum { B = 2, T = 16 };
    struct pg_config c;
    pg_config_default(&c);
    c.vocab_size = 64, c.num_layers = 3, c.model_dim = 32, c.num_heads = 4, c.num_kv_heads = 2, c.mlp_mult = 2;
    c.train_seq_len = T;
    struct pg_model m;
    if (pg_config_validate(&c, 0) || pg_model_init(&m, &c, &pg_backend_cpu, 1) || pg_model_alloc_acts(&m, B, T) ||
        pg_model_init_weights(&m, 3))
        bail_out("model: %s", pg_error_message());
    for (size_t i = 0; i < m.nparams; i++) m.params[i] += 0.05f * urand(); /* the zero-initialized projections too */
    int32_t x[B * T], y[B * T];
    for (int i = 0; i < B * T; i++) x[i] = (int32_t)(i * 7 % 64), y[i] = (int32_t)((i * 7 + 3) % 64);
    pg_backend_cpu.set_bf16(bf16);
    pg_model_forward(&m, x, y, B, NULL);
    pg_backend_cpu.set_bf16(0);
    size_t n = (size_t)B * T, d = (size_t)m.d, kvd = (size_t)m.kvd, nh = n * (size_t)m.hid;
    memset(bad, 0, OUTS * sizeof *bad);
    *fused = m.fused;
    for (int l = 0; l < m.nl; l++) {
        const struct pg_block_acts *a = &m.acts[l];
        if (m.fused) { /* the q and k products are kept only by the fused forms (unfused: rotated in place) */
            bad[OUT_Q] += not_bf16(a->qr, n * d);
            bad[OUT_K] += not_bf16(a->kn, n * kvd);
        }
        bad[OUT_V] += not_bf16(a->v, n * kvd);
        bad[OUT_O] += not_bf16(a->o, n * d);
        bad[OUT_AO] += not_bf16(a->ao, n * d);
        bad[OUT_H] += not_bf16(a->hpre, nh);
        bad[OUT_MO] += not_bf16(a->mo, n * d);
    }
    pg_model_free(&m);
}

static void test_model_outputs(void)
{
    size_t in_bf16[OUTS], in_fp32[OUTS];
    int fused;
    model_outputs(1, in_bf16, &fused);
    model_outputs(0, in_fp32, &fused);
    for (int k = 0; k < OUTS; k++) {
        if (!fused && (k == OUT_Q || k == OUT_K)) continue;
        ok(in_bf16[k] == 0 && in_fp32[k] > 0,
           "the model's %s output is stored in bf16 in bf16 mode (%zu elements not bf16), not in fp32 mode (%zu)",
           out_name[k], in_bf16[k], in_fp32[k]);
    }
}

int main(void)
{
    test_model_outputs();
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_gemm(ta, tb, 7, 9, 13, 1, 0, 0);
            test_gemm(ta, tb, 33, 20, 1100, 0.5f, 1, 0); /* three k tiles, beta = 1 */
            test_gemm(ta, tb, 33, 20, 700, 1, 0.25f, 300); /* small tiles: m, n and k split */
        }
    test_gemm(0, 1, 1, 1, 1, 1, 0, 0);
    test_gemm(0, 0, 5, 4, 9, 1, 0, 2); /* the smallest buffer: one value of A and one of B */
    test_matmul(200, 96, 80);
    test_matmul(700, 24, 40); /* dw sums 700 rows */
    return done_testing();
}
