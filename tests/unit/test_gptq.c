/* test_gptq.c: lib/gptq.c against an independent float64 GPTQ written here from the paper's
 * sequential form (Frantar et al. 2022, eq. 2-3 / OBQ): the inverse Hessian by Gauss-Jordan
 * elimination, one column at a time, w_k -= (w_j − q_j s)/[H⁻¹]_jj · [H⁻¹]_jk and the row/column
 * of j eliminated from H⁻¹ after each step; no Cholesky, no blocks, no lazy updates. Also: the
 * output-error formula against a direct sum, GPTQ's error below rounding's, dead columns, a
 * singular H, block sizes and thread counts that must not change the result, bad arguments. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/err.h"
#include "../../lib/gptq.h"
#include "../../lib/rng.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

/* ---- the reference ---- */

/* In-place inverse of the n × n matrix a by Gauss-Jordan with partial pivoting. */
static int gj_inverse(double *a, int n)
{
    double *b = calloc((size_t)n * n, sizeof *b);
    for (int i = 0; i < n; i++) b[i * n + i] = 1;
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(a[r * n + c]) > fabs(a[p * n + c])) p = r;
        if (a[p * n + c] == 0) {
            free(b);
            return -1;
        }
        for (int j = 0; j < n; j++) {
            double t = a[c * n + j];
            a[c * n + j] = a[p * n + j], a[p * n + j] = t;
            t = b[c * n + j];
            b[c * n + j] = b[p * n + j], b[p * n + j] = t;
        }
        double d = a[c * n + c];
        for (int j = 0; j < n; j++) a[c * n + j] /= d, b[c * n + j] /= d;
        for (int r = 0; r < n; r++) {
            if (r == c || a[r * n + c] == 0) continue;
            double f = a[r * n + c];
            for (int j = 0; j < n; j++) a[r * n + j] -= f * a[c * n + j], b[r * n + j] -= f * b[c * n + j];
        }
    }
    memcpy(a, b, (size_t)n * n * sizeof *a);
    free(b);
    return 0;
}

static void ref_gptq(const float *w, int rows, int cols, const double *h, const float *step, int qmax, double damp,
                     int act_order, int8_t *q)
{
    int *perm = malloc((size_t)cols * sizeof *perm);
    double *diag = malloc((size_t)cols * sizeof *diag), mean = 0;
    for (int j = 0; j < cols; j++) {
        diag[j] = h[j * cols + j] > 0 ? h[j * cols + j] : 1;
        mean += diag[j] / cols;
        perm[j] = j;
    }
    /* selection order: largest diagonal first, ties by the lower index */
    for (int i = 0; act_order && i < cols; i++) {
        int best = i;
        for (int j = i + 1; j < cols; j++)
            if (diag[perm[j]] > diag[perm[best]] || (diag[perm[j]] == diag[perm[best]] && perm[j] < perm[best]))
                best = j;
        int t = perm[i];
        perm[i] = perm[best], perm[best] = t;
    }
    double *hi = malloc((size_t)cols * cols * sizeof *hi), *wp = malloc((size_t)rows * cols * sizeof *wp);
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++)
            hi[i * cols + j] = (i == j ? diag[perm[i]] + damp * mean : h[perm[i] * cols + perm[j]]);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            wp[r * cols + j] = h[perm[j] * cols + perm[j]] > 0 ? w[r * cols + perm[j]] : 0;
    gj_inverse(hi, cols);
    for (int j = 0; j < cols; j++) {
        double d = hi[j * cols + j];
        for (int r = 0; r < rows; r++) {
            double x = wp[r * cols + j], v = rint(x / step[r]);
            v = v > qmax ? qmax : v < -qmax ? -qmax : v;
            q[r * cols + perm[j]] = (int8_t)v;
            double e = (x - v * step[r]) / d;
            for (int k = j + 1; k < cols; k++) wp[r * cols + k] -= e * hi[j * cols + k];
        }
        for (int a = j + 1; a < cols; a++)
            for (int b = j + 1; b < cols; b++) hi[a * cols + b] -= hi[a * cols + j] * hi[j * cols + b] / d;
    }
    free(perm);
    free(diag);
    free(hi);
    free(wp);
}

/* ---- data ---- */

/* H = XᵀX / n for n samples of correlated inputs x = z M (M random), some columns dead. */
static double *make_h(int cols, int n, const int *dead, int ndead, struct pg_rng *g)
{
    double *m = malloc((size_t)cols * cols * sizeof *m), *x = malloc((size_t)n * cols * sizeof *x);
    double *h = calloc((size_t)cols * cols, sizeof *h);
    for (int i = 0; i < cols * cols; i++) m[i] = pg_rng_normal(g) * (i % (cols + 1) == 0 ? 3.0 : 0.4);
    for (int s = 0; s < n; s++) {
        double z[512];
        for (int i = 0; i < cols; i++) z[i] = pg_rng_normal(g) * (1.0 + (i % 7));
        for (int j = 0; j < cols; j++) {
            double v = 0;
            for (int i = 0; i < cols; i++) v += z[i] * m[i * cols + j];
            for (int k = 0; k < ndead; k++)
                if (dead[k] == j) v = 0;
            x[(size_t)s * cols + j] = v;
        }
    }
    for (int s = 0; s < n; s++)
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++) h[i * cols + j] += x[(size_t)s * cols + i] * x[(size_t)s * cols + j] / n;
    free(m);
    free(x);
    return h;
}

static void make_w(float *w, float *step, int rows, int cols, int qmax, struct pg_rng *g)
{
    for (int r = 0; r < rows; r++) {
        float mx = 0;
        for (int c = 0; c < cols; c++) {
            w[r * cols + c] = (float)(pg_rng_normal(g) * 0.02 * (1 + r % 3));
            mx = fabsf(w[r * cols + c]) > mx ? fabsf(w[r * cols + c]) : mx;
        }
        step[r] = mx / qmax * 0.8f; /* some clipping, as SDClip does */
    }
}

static int count_diff(const int8_t *a, const int8_t *b, size_t n)
{
    int d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static double direct_error(const float *w, int rows, int cols, const double *h, const int8_t *q, const float *step,
                           double *ref)
{
    double e = 0, wr = 0;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < cols; i++)
            for (int j = 0; j < cols; j++) {
                double di = w[r * cols + i] - q[r * cols + i] * (double)step[r];
                double dj = w[r * cols + j] - q[r * cols + j] * (double)step[r];
                e += di * h[i * cols + j] * dj;
                wr += (double)w[r * cols + i] * h[i * cols + j] * w[r * cols + j];
            }
    *ref = wr;
    return e;
}

int main(void)
{
    struct pg_rng g;
    pg_rng_seed(&g, 1934);
    struct pg_gptq_opts o;
    pg_gptq_opts_default(&o);

    /* the reference, over sizes around the 128-column block, both orders and widths */
    static const struct { int rows, cols, qmax, act; } cases[] = {
        {37, 200, 31, 1}, {37, 200, 31, 0}, {16, 128, 7, 1}, {5, 300, 1, 1}, {64, 129, 63, 1}, {3, 1, 31, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int rows = cases[c].rows, cols = cases[c].cols, qmax = cases[c].qmax;
        double *h = make_h(cols, 2 * cols + 10, NULL, 0, &g);
        float *w = malloc((size_t)rows * cols * sizeof *w), *step = malloc((size_t)rows * sizeof *step);
        int8_t *q = malloc((size_t)rows * cols), *qr = malloc((size_t)rows * cols);
        make_w(w, step, rows, cols, qmax, &g);
        o.act_order = cases[c].act;
        struct pg_gptq_report rep;
        int rc = pg_gptq_quantize(w, rows, cols, h, step, qmax, &o, q, &rep);
        ref_gptq(w, rows, cols, h, step, qmax, o.damp, o.act_order, qr);
        int nd = count_diff(q, qr, (size_t)rows * cols);
        ok(rc == 0 && nd == 0, "%dx%d Q=%d act_order=%d: the float64 reference's integers (%d of %d differ)", rows,
           cols, qmax, cases[c].act, nd, rows * cols);
        free(h), free(w), free(step), free(q), free(qr);
    }
    o.act_order = 1;

    /* the output error: against a direct triple sum, and GPTQ well below rounding */
    {
        int rows = 24, cols = 96, qmax = 7;
        double *h = make_h(cols, 300, NULL, 0, &g);
        float *w = malloc((size_t)rows * cols * sizeof *w), *step = malloc((size_t)rows * sizeof *step);
        int8_t *q = malloc((size_t)rows * cols), *rtn = malloc((size_t)rows * cols);
        make_w(w, step, rows, cols, qmax, &g);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) {
                double v = rint(w[r * cols + j] / step[r]);
                rtn[r * cols + j] = (int8_t)(v > qmax ? qmax : v < -qmax ? -qmax : v);
            }
        pg_gptq_quantize(w, rows, cols, h, step, qmax, &o, q, NULL);
        double ref, ref2, e = pg_gptq_output_error(w, rows, cols, h, q, step, &ref);
        double e2 = direct_error(w, rows, cols, h, q, step, &ref2);
        is_close(e, e2, 0, 1e-9, "output error = the direct sum Σ_r δ_r H δ_rᵀ");
        is_close(ref, ref2, 0, 1e-9, "its reference = Σ_r w_r H w_rᵀ");
        double er = pg_gptq_output_error(w, rows, cols, h, rtn, step, NULL);
        ok(e < 0.7 * er, "GPTQ's output error %.4g is well below rounding's %.4g (same steps)", e, er);
        free(h), free(w), free(step), free(q), free(rtn);
    }

    /* dead columns: zero in the output, and the reference agrees */
    {
        int rows = 20, cols = 150, qmax = 31, dead[] = {0, 77, 149};
        double *h = make_h(cols, 400, dead, 3, &g);
        float *w = malloc((size_t)rows * cols * sizeof *w), *step = malloc((size_t)rows * sizeof *step);
        int8_t *q = malloc((size_t)rows * cols), *qr = malloc((size_t)rows * cols);
        make_w(w, step, rows, cols, qmax, &g);
        struct pg_gptq_report rep;
        int rc = pg_gptq_quantize(w, rows, cols, h, step, qmax, &o, q, &rep);
        ref_gptq(w, rows, cols, h, step, qmax, o.damp, 1, qr);
        int zero = 1;
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < 3; k++) zero &= q[r * cols + dead[k]] == 0;
        ok(rc == 0 && rep.dead == 3 && zero, "three dead columns found (%lld) and quantized to 0", (long long)rep.dead);
        is_int(count_diff(q, qr, (size_t)rows * cols), 0, "dead columns: the reference's integers");

        /* block size and thread count change nothing */
        int8_t *q2 = malloc((size_t)rows * cols);
        int same = 1;
        static const int blocks[] = {1, 7, 64, 1000};
        for (size_t b = 0; b < 4; b++) {
            struct pg_gptq_opts ob = o;
            ob.block = blocks[b];
            pg_gptq_quantize(w, rows, cols, h, step, qmax, &ob, q2, NULL);
            same &= memcmp(q, q2, (size_t)rows * cols) == 0;
        }
        ok(same, "blocks of 1, 7, 64 and 1000 columns give the same integers");
        int nth = omp_get_max_threads();
        omp_set_num_threads(1);
        pg_gptq_quantize(w, rows, cols, h, step, qmax, &o, q2, NULL);
        omp_set_num_threads(nth);
        ok(memcmp(q, q2, (size_t)rows * cols) == 0, "one thread gives the same integers as %d", nth);
        free(h), free(w), free(step), free(q), free(qr), free(q2);
    }

    /* a singular H without damping: damped harder, reported, and still the reference's answer */
    {
        int rows = 8, cols = 64, qmax = 31;
        double *h = make_h(cols, 20, NULL, 0, &g); /* rank 20 < 64 */
        float *w = malloc((size_t)rows * cols * sizeof *w), *step = malloc((size_t)rows * sizeof *step);
        int8_t *q = malloc((size_t)rows * cols), *qr = malloc((size_t)rows * cols);
        make_w(w, step, rows, cols, qmax, &g);
        struct pg_gptq_opts o0 = o;
        o0.damp = 0;
        struct pg_gptq_report rep;
        int rc = pg_gptq_quantize(w, rows, cols, h, step, qmax, &o0, q, &rep);
        ok(rc == 0 && rep.damp > 0, "rank-deficient H with damp 0: damped to %g instead of failing", rep.damp);
        ref_gptq(w, rows, cols, h, step, qmax, rep.damp, 1, qr);
        int nd = count_diff(q, qr, (size_t)rows * cols);
        ok(nd <= rows * cols / 200, "and the reference with that damping agrees (%d of %d differ)", nd, rows * cols);
        free(h), free(w), free(step), free(q), free(qr);
    }

    /* bad arguments */
    {
        double h[4] = {1, 0, 0, 1};
        float w[4] = {0.1f, 0.2f, 0.3f, 0.4f}, step[2] = {0.1f, 0}, good[2] = {0.1f, 0.1f};
        int8_t q[4];
        is_int(pg_gptq_quantize(w, 2, 2, h, step, 31, &o, q, NULL), PG_E_INVAL, "a zero step is refused");
        is_int(pg_gptq_quantize(w, 2, 2, h, good, 0, &o, q, NULL), PG_E_INVAL, "Q = 0 is refused");
        struct pg_gptq_opts ob = o;
        ob.block = 0;
        is_int(pg_gptq_quantize(w, 2, 2, h, good, 31, &ob, q, NULL), PG_E_INVAL, "block 0 is refused");
        double hn[4] = {-1, 0, 0, -1};
        ob = o;
        int rc = pg_gptq_quantize(w, 2, 2, hn, good, 31, &ob, q, NULL);
        ok(rc == 0 && q[0] == 0 && q[3] == 0, "an all-negative diagonal counts as dead, not as a failure");
    }
    return done_testing();
}
