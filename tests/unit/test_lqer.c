/* test_lqer.c: lib/lqer.c against computations written here from spec/techniques.md §4.6.
 *
 * The SVD step against Eckart–Young: ‖E − AB‖²_F = Σ_{i>r} σ_i², the σ_i² found independently
 * as the eigenvalues of the Gram matrix of E (LAPACKE_dsyev), and no random rank-r alternative
 * doing better. The quantization rules against a reference written from the rules (fp16 scale
 * first, round half to even, clamp) on hand-built factors with ties, an all-zero group, a short
 * last group and a scale whose fp16 rounding changes a code, and on random factors. Dequantization
 * against a direct triple loop; the correction shrinking a low-rank-dominated residual; shapes
 * (wide, tall, rank 1, full rank, cols not a multiple of 64); bad arguments; the file checks;
 * determinism across runs and thread counts.
 */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/err.h"
#include "../../lib/half.h"
#include "../../lib/lqer.h"
#include "../../lib/rng.h"

#include <lapacke.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* ---- the reference rules ---- */

/* The fp16 step max/div (float32 division), an all-zero block's step the smallest fp16. */
static uint16_t ref_step(const float *x, int64_t n, float div)
{
    float mx = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) > mx) mx = fabsf(x[i]);
    uint16_t h = pg_f32_to_f16(mx / div);
    return h == 0 ? 1 : h;
}

static int8_t ref_code(float x, uint16_t h, int lo, int hi)
{
    float r = rintf(x / pg_f16_to_f32(h)); /* default rounding mode: half to even */
    return (int8_t)(r < lo ? lo : r > hi ? hi : r);
}

/* The packed form of factors a (rows × r) and b (r × cols) by the rules, into l (allocated). */
static void ref_pack(const float *a, const float *b, int64_t rows, int64_t cols, int r, int mode, struct pg_lqer *l)
{
    if (pg_lqer_alloc(l, mode, rows, cols, r)) bail_out("alloc: %s", pg_error_message());
    if (mode == PG_LQER_ASYM) {
        l->sa[0] = ref_step(a, rows * r, 1.5f);
        for (int64_t i = 0; i < rows * r; i++) l->qa[i] = ref_code(a[i], l->sa[0], -2, 1);
        for (int64_t i = 0; i < r * cols; i++) {
            int64_t g = i / 64, g0 = g * 64, n = r * cols - g0 < 64 ? r * cols - g0 : 64;
            l->sb[g] = ref_step(b + g0, n, 7.5f);
            l->qb[i] = ref_code(b[i], l->sb[g], -8, 7);
        }
    } else {
        for (int64_t i = 0; i < rows; i++) {
            l->sa[i] = ref_step(a + i * r, r, 7.0f);
            for (int k = 0; k < r; k++) l->qa[i * r + k] = ref_code(a[i * r + k], l->sa[i], -7, 7);
        }
        for (int k = 0; k < r; k++) {
            l->sb[k] = ref_step(b + k * cols, cols, 7.0f);
            for (int64_t j = 0; j < cols; j++) l->qb[k * cols + j] = ref_code(b[k * cols + j], l->sb[k], -7, 7);
        }
    }
}

static int same_lqer(const struct pg_lqer *x, const struct pg_lqer *y)
{
    if (x->mode != y->mode || x->rank != y->rank || x->rows != y->rows || x->cols != y->cols) return 0;
    int64_t na = x->rows * x->rank, nb = x->rank * x->cols;
    int64_t nsa = pg_lqer_nsa(x->mode, x->rows, x->cols, x->rank), nsb = pg_lqer_nsb(x->mode, x->rows, x->cols, x->rank);
    return !memcmp(x->qa, y->qa, (size_t)na) && !memcmp(x->qb, y->qb, (size_t)nb) &&
           !memcmp(x->sa, y->sa, (size_t)nsa * 2) && !memcmp(x->sb, y->sb, (size_t)nsb * 2);
}

/* w += Σ_k (q_A s_A)(q_B s_B), written directly from the rule. */
static void ref_apply(const struct pg_lqer *l, float *w)
{
    int r = l->rank;
    for (int64_t i = 0; i < l->rows; i++)
        for (int64_t j = 0; j < l->cols; j++) {
            float acc = 0;
            for (int k = 0; k < r; k++) {
                uint16_t ha = l->mode == PG_LQER_ASYM ? l->sa[0] : l->sa[i];
                uint16_t hb = l->mode == PG_LQER_ASYM ? l->sb[(k * l->cols + j) / 64] : l->sb[k];
                float av = l->qa[i * r + k] * pg_f16_to_f32(ha), bv = l->qb[k * l->cols + j] * pg_f16_to_f32(hb);
                acc += av * bv;
            }
            w[i * l->cols + j] += acc;
        }
}

/* ---- data ---- */

/* w random and wq = w − E with E = a rank-3 part of size `big` plus noise of size `small`. */
static void make_pair(float *w, float *wq, int rows, int cols, double big, double small, struct pg_rng *g)
{
    double u[3][512], v[3][512];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < rows; i++) u[k][i] = pg_rng_normal(g);
        for (int j = 0; j < cols; j++) v[k][j] = pg_rng_normal(g) / (1 + k);
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double e = small * pg_rng_normal(g);
            for (int k = 0; k < 3; k++) e += big * u[k][i] * v[k][j];
            w[i * cols + j] = (float)pg_rng_normal(g);
            wq[i * cols + j] = (float)(w[i * cols + j] - e);
        }
}

/* ‖x − y‖_F (float buffers, in double). */
static double dist(const float *x, const float *y, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return sqrt(s);
}

/* ‖E − AB‖²_F for E rows × cols and factors a (rows × r), b (r × cols). */
static double lr_err(const double *e, const double *a, const double *b, int rows, int cols, int r)
{
    double s = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double d = e[i * cols + j];
            for (int k = 0; k < r; k++) d -= a[i * r + k] * b[k * cols + j];
            s += d * d;
        }
    return s;
}

/* ---- tests ---- */

static void test_svd(int rows, int cols, int r, struct pg_rng *g)
{
    int mn = rows < cols ? rows : cols;
    float *w = malloc((size_t)rows * cols * sizeof *w), *wq = malloc((size_t)rows * cols * sizeof *wq);
    double *e = malloc((size_t)rows * cols * sizeof *e), *a = malloc((size_t)rows * r * sizeof *a);
    double *b = malloc((size_t)r * cols * sizeof *b), *sv = malloc((size_t)mn * sizeof *sv);
    double *gram = calloc((size_t)mn * mn, sizeof *gram), *ev = malloc((size_t)mn * sizeof *ev);
    double *a2 = malloc((size_t)rows * r * sizeof *a2), *b2 = malloc((size_t)r * cols * sizeof *b2);
    if (!w || !wq || !e || !a || !b || !sv || !gram || !ev || !a2 || !b2) bail_out("out of memory");
    make_pair(w, wq, rows, cols, 1.0, 0.3, g);
    double total = 0;
    for (int i = 0; i < rows * cols; i++) e[i] = (double)w[i] - (double)wq[i], total += e[i] * e[i];
    int rc = pg_lqer_svd(w, wq, rows, cols, r, a, b, sv);
    if (!is_int(rc, 0, "%dx%d rank %d: SVD", rows, cols, r)) diag("%s", pg_error_message());

    /* σ² independently: eigenvalues of EᵀE (or EEᵀ, the smaller), ascending */
    for (int p = 0; p < mn; p++)
        for (int q = 0; q < mn; q++)
            for (int t = 0; t < (rows < cols ? cols : rows); t++)
                gram[p * mn + q] += rows < cols ? e[p * cols + t] * e[q * cols + t] : e[t * cols + p] * e[t * cols + q];
    if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', mn, gram, mn, ev) != 0) bail_out("dsyev failed");
    double tail = 0, sig_err = 0;
    for (int i = 0; i < mn - r; i++) tail += ev[i] > 0 ? ev[i] : 0;
    for (int k = 0; k < mn; k++) sig_err = fmax(sig_err, fabs(sv[k] * sv[k] - ev[mn - 1 - k]));
    ok(sig_err <= 1e-10 * total, "%dx%d: σ² = eigenvalues of the Gram matrix (max diff %.3g)", rows, cols, sig_err);
    double opt = lr_err(e, a, b, rows, cols, r);
    is_close(opt, tail, 1e-10 * total, 1e-9, "%dx%d rank %d: ‖E − AB‖² = Σ_{i>r} σ_i² (Eckart–Young)", rows, cols, r);

    /* A's columns have norms σ_k, B's rows are orthonormal, B's largest |entry| positive */
    double worst = 0;
    int signs = 1;
    for (int k = 0; k < r; k++) {
        double na = 0, big = 0;
        for (int i = 0; i < rows; i++) na += a[i * r + k] * a[i * r + k];
        worst = fmax(worst, fabs(sqrt(na) - sv[k]) / sv[0]);
        for (int l = 0; l < r; l++) {
            double d = 0;
            for (int j = 0; j < cols; j++) d += b[k * cols + j] * b[l * cols + j];
            worst = fmax(worst, fabs(d - (k == l)));
        }
        for (int j = 0; j < cols; j++)
            if (fabs(b[k * cols + j]) > fabs(big)) big = b[k * cols + j];
        signs &= big > 0;
    }
    ok(worst < 1e-10, "%dx%d: |A_k| = σ_k and B orthonormal (max dev %.3g)", rows, cols, worst);
    ok(signs, "%dx%d: each row of B has its largest |entry| positive", rows, cols);

    /* random rank-r alternatives: Gaussian factors, the best fit on a random row space (exact too at
     * full rank, so "better" allows rounding), the optimum perturbed */
    int better = 0;
    double lim = opt - 1e-12 * total;
    for (int trial = 0; trial < 3; trial++) {
        for (int i = 0; i < rows * r; i++) a2[i] = pg_rng_normal(g);
        for (int i = 0; i < r * cols; i++) b2[i] = pg_rng_normal(g) * 0.2;
        better += lr_err(e, a2, b2, rows, cols, r) < lim;
        /* Gram–Schmidt rows of b2, then a2 = E b2ᵀ */
        for (int k = 0; k < r; k++) {
            for (int l = 0; l < k; l++) {
                double d = 0;
                for (int j = 0; j < cols; j++) d += b2[k * cols + j] * b2[l * cols + j];
                for (int j = 0; j < cols; j++) b2[k * cols + j] -= d * b2[l * cols + j];
            }
            double nn = 0;
            for (int j = 0; j < cols; j++) nn += b2[k * cols + j] * b2[k * cols + j];
            for (int j = 0; j < cols; j++) b2[k * cols + j] /= sqrt(nn);
        }
        for (int i = 0; i < rows; i++)
            for (int k = 0; k < r; k++) {
                double d = 0;
                for (int j = 0; j < cols; j++) d += e[i * cols + j] * b2[k * cols + j];
                a2[i * r + k] = d;
            }
        better += lr_err(e, a2, b2, rows, cols, r) < lim;
        for (int i = 0; i < rows * r; i++) a2[i] = a[i] + 0.01 * pg_rng_normal(g);
        better += lr_err(e, a2, b, rows, cols, r) < lim;
    }
    is_int(better, 0, "%dx%d rank %d: none of 9 random rank-r alternatives does better", rows, cols, r);
    free(w), free(wq), free(e), free(a), free(b), free(sv), free(gram), free(ev), free(a2), free(b2);
}

static void test_rules(struct pg_rng *g)
{
    /* asym: A 3 × 2 with max 1.5 (s_A = 1 exactly), B 2 × 70: groups 0..63, 64..127 (all zero), 128..139 */
    enum { R = 3, K = 2, C = 70 };
    float a[R * K] = {1.5f, -1.5f, 0.5f, -0.5f, 1.0f, 0.25f}, b[K * C];
    static const int8_t qa_want[R * K] = {1, -2, 0, 0, 1, 0};
    for (int i = 0; i < 64; i++) b[i] = (float)(pg_rng_uniform(g) * 14 - 7);
    static const float ties[] = {0.5f, 1.5f, 2.5f, -2.5f, 7.5f, -7.5f, 3.49f, 6.5f};
    static const int8_t ties_q[] = {0, 2, 2, -2, 7, -8, 3, 6};
    memcpy(b, ties, sizeof ties);
    for (int i = 64; i < 128; i++) b[i] = 0;
    for (int i = 128; i < 140; i++) b[i] = (float)(pg_rng_uniform(g) * 1.6 - 0.8);
    b[139] = -1.0f; /* max 1: s = 1/7.5, not an fp16 value */
    double s_exact = 1.0 / 7.5;
    float s16 = pg_f16_round((float)s_exact);
    b[130] = (float)(3.5 * (s16 + s_exact) / 2); /* between the two scales' rounding boundaries */
    ok(rint(b[130] / s_exact) != rintf(b[130] / s16), "the case distinguishes the fp16 scale from the exact one");

    struct pg_lqer l, ref;
    int rc = pg_lqer_pack(a, b, R, C, K, PG_LQER_ASYM, &l);
    if (rc) bail_out("asym pack: %s", pg_error_message());
    is_int(l.sa[0], 0x3c00, "asym: s_A = fp16(1.5/1.5) = 1.0");
    ok(!memcmp(l.qa, qa_want, sizeof qa_want), "asym: A's codes clamp to -2..1, ties to even (1.5→1, -1.5→-2, ±0.5→0)");
    is_int(l.sb[0], 0x3c00, "asym: group 0's scale fp16(7.5/7.5) = 1.0");
    ok(!memcmp(l.qb, ties_q, sizeof ties_q), "asym: B's ties to even, clamp to -8..7 (7.5→7, -7.5→-8)");
    is_int(l.sb[1], 1, "asym: an all-zero group's scale is the smallest fp16 step");
    int zero = 1;
    for (int i = 64; i < 128; i++) zero &= l.qb[i] == 0;
    ok(zero, "asym: an all-zero group's codes are 0");
    is_int(pg_lqer_nsb(PG_LQER_ASYM, R, C, K), 3, "asym: 140 values of B make 3 groups");
    is_int(l.sb[2], pg_f32_to_f16(1.0f / 7.5f), "asym: the short last group's scale is fp16(max/7.5)");
    is_int(l.qb[130], (int)rintf(b[130] / s16), "asym: codes use the fp16-rounded scale");
    ref_pack(a, b, R, C, K, PG_LQER_ASYM, &ref);
    ok(same_lqer(&l, &ref), "asym: every code and scale as the reference rules");
    pg_lqer_free(&l), pg_lqer_free(&ref);

    /* sym: rows {7, 3.5} (s 1), {0, 0} (s tiny), {-3.5, 1.75} (s 0.5); B row 0 max 7, row 1 random */
    float sa_[R * K] = {7, 3.5f, 0, 0, -3.5f, 1.75f};
    static const int8_t sqa_want[R * K] = {7, 4, 0, 0, -7, 4};
    for (int i = 0; i < K * C; i++) b[i] = (float)(pg_rng_uniform(g) * 2 - 1);
    static const float sties[] = {7, -7, 2.5f, -0.5f, 6.5f, -6.5f, 1.5f};
    static const int8_t sties_q[] = {7, -7, 2, 0, 6, -6, 2};
    memcpy(b, sties, sizeof sties);
    rc = pg_lqer_pack(sa_, b, R, C, K, PG_LQER_SYM, &l);
    if (rc) bail_out("sym pack: %s", pg_error_message());
    ok(l.sa[0] == 0x3c00 && l.sa[1] == 1 && l.sa[2] == 0x3800, "sym: A's row scales 1.0, smallest step, 0.5");
    ok(!memcmp(l.qa, sqa_want, sizeof sqa_want), "sym: A's codes (3.5→4 and 1.75/0.5→4 ties to even)");
    is_int(l.sb[0], 0x3c00, "sym: B's row 0 scale fp16(7/7) = 1.0");
    ok(!memcmp(l.qb, sties_q, sizeof sties_q), "sym: B's codes (2.5→2, -0.5→0, ±6.5→±6)");
    ref_pack(sa_, b, R, C, K, PG_LQER_SYM, &ref);
    ok(same_lqer(&l, &ref), "sym: every code and scale as the reference rules");
    pg_lqer_free(&l), pg_lqer_free(&ref);

    /* random factors of mixed magnitudes, both modes */
    for (int mode = 0; mode < 2; mode++) {
        int rows = 50, r = 3, cols = 100;
        float *ra = malloc((size_t)rows * r * sizeof *ra), *rb = malloc((size_t)r * cols * sizeof *rb);
        for (int i = 0; i < rows * r; i++) ra[i] = (float)(pg_rng_normal(g) * exp(pg_rng_normal(g)));
        for (int i = 0; i < r * cols; i++) rb[i] = (float)(pg_rng_normal(g) * 0.1 * exp(pg_rng_normal(g)));
        if (pg_lqer_pack(ra, rb, rows, cols, r, mode, &l)) bail_out("pack: %s", pg_error_message());
        ref_pack(ra, rb, rows, cols, r, mode, &ref);
        ok(same_lqer(&l, &ref), "%s: random factors 50x3 / 3x100 as the reference rules", mode ? "sym" : "asym");
        is_int(pg_lqer_check(&l, "random"), 0, "%s: the packed factors pass the file checks", mode ? "sym" : "asym");
        pg_lqer_free(&l), pg_lqer_free(&ref);
        free(ra), free(rb);
    }
}

/* Fit, the reference packing of the SVD factors, the triple loop and the error reduction. */
static void test_fit(int rows, int cols, int r, int mode, double min_gain, struct pg_rng *g)
{
    const char *mn = mode ? "sym" : "asym";
    size_t n = (size_t)rows * cols;
    float *w = malloc(n * sizeof *w), *wq = malloc(n * sizeof *wq), *w1 = malloc(n * sizeof *w1),
          *w2 = malloc(n * sizeof *w2);
    double *a = malloc((size_t)rows * r * sizeof *a), *b = malloc((size_t)r * cols * sizeof *b);
    float *fa = malloc((size_t)rows * r * sizeof *fa), *fb = malloc((size_t)r * cols * sizeof *fb);
    if (!w || !wq || !w1 || !w2 || !a || !b || !fa || !fb) bail_out("out of memory");
    make_pair(w, wq, rows, cols, 0.05, 0.002, g);
    struct pg_lqer l, ref;
    int rc = pg_lqer_fit(w, wq, rows, cols, r, mode, &l);
    if (!is_int(rc, 0, "%s %dx%d rank %d: fit", mn, rows, cols, r)) bail_out("%s", pg_error_message());
    ok(l.mode == mode && l.rank == r && l.rows == rows && l.cols == cols, "%s %dx%d: the header fields", mn, rows, cols);
    int64_t nsa = mode ? rows : 1, nsb = mode ? r : (r * cols + 63) / 64;
    ok(pg_lqer_nsa(mode, rows, cols, r) == nsa && pg_lqer_nsb(mode, rows, cols, r) == nsb,
       "%s %dx%d rank %d: %lld and %lld scales", mn, rows, cols, r, (long long)nsa, (long long)nsb);
    is_int(pg_lqer_check(&l, "fit"), 0, "%s %dx%d: passes the file checks", mn, rows, cols);

    if (pg_lqer_svd(w, wq, rows, cols, r, a, b, NULL)) bail_out("svd: %s", pg_error_message());
    for (int i = 0; i < rows * r; i++) fa[i] = (float)a[i];
    for (int i = 0; i < r * cols; i++) fb[i] = (float)b[i];
    ref_pack(fa, fb, rows, cols, r, mode, &ref);
    ok(same_lqer(&l, &ref), "%s %dx%d: fit = the rules applied to the SVD's fp32 factors", mn, rows, cols);

    memcpy(w1, wq, n * sizeof *w1);
    memcpy(w2, wq, n * sizeof *w2);
    pg_lqer_apply(&l, w1);
    ref_apply(&l, w2);
    ok(!memcmp(w1, w2, n * sizeof *w1), "%s %dx%d: apply = the direct triple loop, bit for bit", mn, rows, cols);
    double before = dist(w, wq, (int64_t)n), after = dist(w, w1, (int64_t)n);
    ok(after < min_gain * before, "%s %dx%d rank %d: ‖W − Ŵ‖ %.4g → %.4g (below %.2g×)", mn, rows, cols, r, before,
       after, min_gain);
    pg_lqer_free(&l), pg_lqer_free(&ref);
    free(w), free(wq), free(w1), free(w2), free(a), free(b), free(fa), free(fb);
}

static void test_bad(void)
{
    float w[4 * 6] = {0}, wq[4 * 6] = {0};
    double a[4 * 4], b[4 * 6];
    struct pg_lqer l;
    is_int(pg_lqer_fit(w, wq, 0, 6, 1, PG_LQER_ASYM, &l), PG_E_INVAL, "rows 0 refused");
    ok(strchr(pg_error_message(), '\n') == NULL && strstr(pg_error_message(), "rank"), "one-line message: %s",
       pg_error_message());
    is_int(pg_lqer_fit(w, wq, 4, -6, 1, PG_LQER_ASYM, &l), PG_E_INVAL, "negative cols refused");
    is_int(pg_lqer_fit(w, wq, 4, 6, 0, PG_LQER_ASYM, &l), PG_E_INVAL, "rank 0 refused");
    is_int(pg_lqer_fit(w, wq, 4, 6, 5, PG_LQER_ASYM, &l), PG_E_INVAL, "rank above min(rows, cols) refused");
    is_int(pg_lqer_fit(w, wq, 4, 6, 2, 2, &l), PG_E_INVAL, "mode 2 refused");
    is_int(pg_lqer_fit(NULL, wq, 4, 6, 2, PG_LQER_ASYM, &l), PG_E_INVAL, "no W refused");
    ok(l.qa == NULL && l.sb == NULL, "a refused fit leaves a zeroed struct");
    pg_lqer_free(&l);
    is_int(pg_lqer_svd(w, wq, 100, 100, 65, a, b, NULL), PG_E_INVAL, "rank 65 refused (cap %d)", PG_LQER_MAX_RANK);
    ok(pg_lqer_nsa(PG_LQER_ASYM, 4, 6, 5) == 0 && pg_lqer_nsb(PG_LQER_SYM, 4, 6, 0) == 0 &&
           pg_lqer_nsb(7, 4, 6, 1) == 0,
       "scale counts of bad shapes are 0");
    w[7] = NAN;
    is_int(pg_lqer_fit(w, wq, 4, 6, 2, PG_LQER_SYM, &l), PG_E_INVAL, "a NaN in W refused");
    ok(strstr(pg_error_message(), "(1, 1)") != NULL, "the message names the element: %s", pg_error_message());
    w[7] = 0;
    wq[3] = INFINITY;
    is_int(pg_lqer_svd(w, wq, 4, 6, 2, a, b, NULL), PG_E_INVAL, "an infinite Wq refused");
    float fa[4] = {1, 2, INFINITY, 0}, fb[6] = {0};
    is_int(pg_lqer_pack(fa, fb, 2, 3, 2, PG_LQER_ASYM, &l), PG_E_INVAL, "an infinite factor refused");
    is_int(pg_lqer_alloc(&l, PG_LQER_SYM, 3, 2, 3), PG_E_INVAL, "alloc of rank 3 for 3x2 refused");

    /* an all-zero residual: a zero correction */
    memset(wq, 0, sizeof wq);
    is_int(pg_lqer_fit(w, wq, 4, 6, 2, PG_LQER_ASYM, &l), 0, "a zero residual fits");
    float w2[4 * 6];
    memcpy(w2, w, sizeof w2);
    pg_lqer_apply(&l, w2);
    ok(!memcmp(w, w2, sizeof w) && l.sa[0] == 1, "and its correction is zero (s_A the smallest step)");
    pg_lqer_free(&l);
}

static void test_check(struct pg_rng *g)
{
    enum { R = 20, C = 70 };
    float *w = malloc(R * C * sizeof *w), *wq = malloc(R * C * sizeof *wq);
    make_pair(w, wq, R, C, 0.05, 0.002, g);
    struct pg_lqer l;
    for (int mode = 0; mode < 2; mode++) {
        const char *mn = mode ? "sym" : "asym";
        if (pg_lqer_fit(w, wq, R, C, 4, mode, &l)) bail_out("fit: %s", pg_error_message());
        is_int(pg_lqer_check(&l, "t.lqer"), 0, "%s: a fit passes", mn);
        struct {
            int8_t *p, v;
            const char *what;
        } codes[] = {{&l.qa[5], mode ? 8 : 2, "A above its range"}, {&l.qa[5], mode ? -8 : -3, "A below"},
                     {&l.qb[77], mode ? -8 : 8, "B outside"}, {&l.qb[0], mode ? 8 : -9, "B outside (first)"}};
        for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
            int8_t keep = *codes[i].p;
            *codes[i].p = codes[i].v;
            int rc = pg_lqer_check(&l, "t.lqer");
            const char *m = pg_error_message();
            ok(rc == PG_E_FORMAT && strstr(m, "t.lqer") && !strchr(m, '\n'), "%s: code %d of %s refused: %s", mn,
               codes[i].v, codes[i].what, m);
            *codes[i].p = keep;
        }
        if (!mode) {
            l.qb[3] = -8;
            is_int(pg_lqer_check(&l, "t.lqer"), 0, "asym: B's code -8 is in range");
        }
        static const uint16_t bad[] = {0, 0x8000, 0xbc00, 0x7c00, 0xfc00, 0x7e00};
        for (int f = 0; f < 2; f++)
            for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                uint16_t *p = f ? &l.sb[pg_lqer_nsb(mode, R, C, 4) - 1] : &l.sa[0], keep = *p;
                *p = bad[i];
                int rc = pg_lqer_check(&l, "t.lqer");
                const char *m = pg_error_message();
                ok(rc == PG_E_FORMAT && strstr(m, "t.lqer") && !strchr(m, '\n'), "%s: %c scale 0x%04x refused: %s", mn,
                   f ? 'B' : 'A', bad[i], m);
                *p = keep;
            }
        l.rank = 21;
        is_int(pg_lqer_check(&l, "t.lqer"), PG_E_FORMAT, "%s: a rank above min(rows, cols) refused", mn);
        l.rank = 4;
        l.mode = 3;
        is_int(pg_lqer_check(&l, "t.lqer"), PG_E_FORMAT, "%s: an unknown mode refused", mn);
        l.mode = mode;
        pg_lqer_free(&l);
    }
    free(w), free(wq);
}

static void test_determinism(struct pg_rng *g)
{
    enum { R = 96, C = 200 };
    float *w = malloc(R * C * sizeof *w), *wq = malloc(R * C * sizeof *wq);
    float *w1 = malloc(R * C * sizeof *w1), *w2 = malloc(R * C * sizeof *w2);
    make_pair(w, wq, R, C, 0.05, 0.002, g);
    for (int mode = 0; mode < 2; mode++) {
        struct pg_lqer x, y;
        if (pg_lqer_fit(w, wq, R, C, 4, mode, &x) || pg_lqer_fit(w, wq, R, C, 4, mode, &y))
            bail_out("fit: %s", pg_error_message());
        ok(same_lqer(&x, &y), "%s: two fits give identical bytes", mode ? "sym" : "asym");
        pg_lqer_free(&y);
        int nth = omp_get_max_threads();
        omp_set_num_threads(1);
        int rc = pg_lqer_fit(w, wq, R, C, 4, mode, &y);
        memcpy(w1, wq, R * C * sizeof *w1);
        pg_lqer_apply(&x, w1);
        omp_set_num_threads(nth);
        memcpy(w2, wq, R * C * sizeof *w2);
        pg_lqer_apply(&x, w2);
        ok(rc == 0 && same_lqer(&x, &y) && !memcmp(w1, w2, R * C * sizeof *w1),
           "%s: one thread fits and applies as %d do", mode ? "sym" : "asym", nth);
        pg_lqer_free(&x), pg_lqer_free(&y);
    }
    free(w), free(wq), free(w1), free(w2);
}

int main(void)
{
    struct pg_rng g;
    pg_rng_seed(&g, 1797);

    test_svd(40, 24, 4, &g);
    test_svd(24, 100, 4, &g);
    test_svd(33, 70, 1, &g);
    test_svd(12, 20, 12, &g);
    test_svd(100, 24, 24, &g);

    test_rules(&g);

    /* the error a rank-3-dominated residual keeps: INT2 A is coarse, INT4 per row less so */
    test_fit(96, 80, 4, PG_LQER_ASYM, 0.7, &g);
    test_fit(96, 80, 4, PG_LQER_SYM, 0.5, &g);
    test_fit(24, 100, 4, PG_LQER_ASYM, 0.7, &g);
    test_fit(100, 24, 4, PG_LQER_SYM, 0.5, &g);
    test_fit(40, 70, 1, PG_LQER_ASYM, 0.9, &g);
    test_fit(40, 70, 1, PG_LQER_SYM, 0.9, &g);
    test_fit(12, 20, 12, PG_LQER_ASYM, 0.9, &g);
    test_fit(20, 12, 12, PG_LQER_SYM, 0.9, &g);

    test_bad();
    test_check(&g);
    test_determinism(&g);
    return done_testing();
}
