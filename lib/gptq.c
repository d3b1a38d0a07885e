/* gptq.c: GPTQ with the full Hessian (see gptq.h). */
#define _POSIX_C_SOURCE 200809L
#include "gptq.h"

#include "err.h"
#include "xio.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void pg_gptq_opts_default(struct pg_gptq_opts *o)
{
    o->damp = 0.01;
    o->act_order = 1;
    o->block = 128;
}

/* Column order: by descending diagonal, ties by index (so the order is total and portable). */
static const double *sort_diag;
static int by_diag_desc(const void *a, const void *b)
{
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    double di = sort_diag[i], dj = sort_diag[j];
    if (di != dj) return di > dj ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* U = upper Cholesky factor of (P (H + λI) Pᵀ)⁻¹ into u (n × n, upper triangle; the lower is
 * zeroed). @return 0, 1 when the matrix is not positive definite, or PG_E_LIB. */
static int inverse_cholesky(const double *hp, int64_t n, double lambda, double *u)
{
    memcpy(u, hp, (size_t)n * (size_t)n * sizeof *u);
    for (int64_t i = 0; i < n; i++) u[i * n + i] += lambda;
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, u, (lapack_int)n);
    if (info > 0) return 1;
    if (info == 0) info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, u, (lapack_int)n);
    if (info > 0) return 1;
    if (info == 0) info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, u, (lapack_int)n);
    if (info > 0) return 1;
    if (info < 0) return pg_error(PG_E_LIB, "LAPACK: argument %d of a Cholesky call is invalid", (int)-info);
    for (int64_t i = 1; i < n; i++)
        for (int64_t j = 0; j < i; j++) u[i * n + j] = 0;
    return 0;
}

/* One block [j0, j1) of columns for rows [r0, r1): quantize each column, spread its error over
 * the block's later columns, and keep the scaled errors for the lazy update. wt is cols × rows
 * (column j of W is the contiguous row j of wt), err is (j1 − j0) × rows. */
static void quantize_block(double *wt, int64_t rows, int64_t cols, const double *u, int64_t j0, int64_t j1, int64_t r0,
                           int64_t r1, const double *s, double qmax, int8_t *qt, double *err)
{
    for (int64_t j = j0; j < j1; j++) {
        double *wj = wt + j * rows, *ej = err + (j - j0) * rows, d = u[j * cols + j];
        int8_t *qj = qt + j * rows;
        for (int64_t r = r0; r < r1; r++) {
            double x = wj[r], qv = rint(x / s[r]);
            qv = qv > qmax ? qmax : qv < -qmax ? -qmax : qv;
            qj[r] = (int8_t)qv;
            ej[r] = (x - qv * s[r]) / d;
        }
        for (int64_t k = j + 1; k < j1; k++) {
            double ujk = u[j * cols + k], *wk = wt + k * rows;
            for (int64_t r = r0; r < r1; r++) wk[r] -= ej[r] * ujk;
        }
    }
}

int pg_gptq_quantize(const float *w, int64_t rows, int64_t cols, const double *h, const float *step, int qmax,
                     const struct pg_gptq_opts *o, int8_t *q, struct pg_gptq_report *rep)
{
    if (rows < 1 || cols < 1 || qmax < 1 || qmax > 127 || o->block < 1 || !(o->damp >= 0) || !isfinite(o->damp))
        return pg_error(PG_E_INVAL, "GPTQ: bad sizes or options (%lld x %lld, Q %d, block %d, damp %g)",
                        (long long)rows, (long long)cols, qmax, o->block, o->damp);
    size_t nn = (size_t)cols * (size_t)cols, nw = (size_t)rows * (size_t)cols;
    double *hp = pg_malloc(nn * sizeof *hp), *u = pg_malloc(nn * sizeof *u), *wt = pg_malloc(nw * sizeof *wt);
    double *err = pg_malloc((size_t)o->block * (size_t)rows * sizeof *err), *s = pg_malloc((size_t)rows * sizeof *s);
    double *diag = pg_malloc((size_t)cols * sizeof *diag);
    int64_t *perm = pg_malloc((size_t)cols * sizeof *perm);
    int8_t *qt = pg_malloc(nw);
    int rc = 0;
    if (!hp || !u || !wt || !err || !s || !diag || !perm || !qt) {
        rc = PG_E_NOMEM;
        goto out;
    }
    /* 1. dead columns, then the column order */
    int64_t dead = 0;
    double mean = 0;
    for (int64_t j = 0; j < cols; j++) {
        diag[j] = h[j * cols + j];
        if (!(diag[j] > 0)) diag[j] = 1, dead++; /* 0 (or a negative rounding residue): never seen */
        mean += diag[j];
    }
    mean /= (double)cols;
    for (int64_t j = 0; j < cols; j++) perm[j] = j;
    if (o->act_order) {
        sort_diag = diag;
        qsort(perm, (size_t)cols, sizeof *perm, by_diag_desc);
        sort_diag = NULL;
    }
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = 0; j < cols; j++)
            hp[i * cols + j] = i == j ? diag[perm[i]] : h[perm[i] * cols + perm[j]];
    for (int64_t j = 0; j < cols; j++) {
        int is_dead = !(h[perm[j] * cols + perm[j]] > 0);
        for (int64_t r = 0; r < rows; r++) wt[j * rows + r] = is_dead ? 0.0 : (double)w[r * cols + perm[j]];
    }
    for (int64_t r = 0; r < rows; r++) {
        s[r] = step[r];
        if (!(s[r] > 0) || !isfinite(s[r])) {
            rc = pg_error(PG_E_INVAL, "GPTQ: the step of row %lld is not a positive number", (long long)r);
            goto out;
        }
    }
    /* 2-3. U, damping harder while H is singular */
    double damp = o->damp;
    for (int tries = 0;; tries++) {
        int r = inverse_cholesky(hp, cols, damp * mean, u);
        if (r < 0) {
            rc = r;
            goto out;
        }
        if (r == 0) break;
        if (tries == 5) {
            rc = pg_error(PG_E_LIB, "GPTQ: the Hessian is not positive definite even with damping %g", damp);
            goto out;
        }
        damp = damp > 0 ? damp * 10 : 1e-6;
    }
    /* 5. blocks, rows in parallel, then the lazy update of the later columns */
    for (int64_t j0 = 0; j0 < cols; j0 += o->block) {
        int64_t j1 = j0 + o->block < cols ? j0 + o->block : cols;
        int64_t chunk = 64;
#pragma omp parallel for schedule(static)
        for (int64_t r0 = 0; r0 < rows; r0 += chunk)
            quantize_block(wt, rows, cols, u, j0, j1, r0, r0 + chunk < rows ? r0 + chunk : rows, s, (double)qmax, qt,
                           err);
        if (j1 < cols)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(cols - j1), (int)rows, (int)(j1 - j0), -1.0,
                        u + j0 * cols + j1, (int)cols, err, (int)rows, 1.0, wt + j1 * rows, (int)rows);
    }
    /* 6. back to W's column order */
    for (int64_t j = 0; j < cols; j++)
        for (int64_t r = 0; r < rows; r++) q[r * cols + perm[j]] = qt[j * rows + r];
    if (rep) {
        rep->dead = dead;
        rep->damp = damp;
    }
out:
    free(hp);
    free(u);
    free(wt);
    free(err);
    free(s);
    free(diag);
    free(perm);
    free(qt);
    return rc;
}

/* tr(ΔW H ΔWᵀ) with ΔW = W − (wq, or q·step), and tr(W H Wᵀ) into *ref. */
static double output_error(const float *w, const float *wq, const int8_t *q, const float *step, int64_t rows,
                           int64_t cols, const double *h, double *ref)
{
    size_t nw = (size_t)rows * (size_t)cols;
    double *d = pg_malloc(2 * nw * sizeof *d), *dh = pg_malloc(2 * nw * sizeof *dh);
    if (!d || !dh) {
        free(d);
        free(dh);
        return NAN;
    }
    /* rows 0..rows-1: the error ΔW; rows..2·rows-1: W itself; one product with H for both */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            size_t i = (size_t)(r * cols + c);
            double x = w[i];
            d[i] = x - (wq ? (double)wq[i] : (double)q[i] * (double)step[r]);
            d[nw + i] = x;
        }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(2 * rows), (int)cols, (int)cols, 1.0, d, (int)cols, h,
                (int)cols, 0.0, dh, (int)cols);
    double e = 0, wref = 0;
    for (size_t i = 0; i < nw; i++) e += d[i] * dh[i], wref += d[nw + i] * dh[nw + i];
    free(d);
    free(dh);
    if (ref) *ref = wref;
    return e;
}

double pg_gptq_output_error(const float *w, int64_t rows, int64_t cols, const double *h, const int8_t *q,
                            const float *step, double *ref)
{
    return output_error(w, NULL, q, step, rows, cols, h, ref);
}

double pg_output_error(const float *w, const float *wq, int64_t rows, int64_t cols, const double *h, double *ref)
{
    return output_error(w, wq, NULL, NULL, rows, cols, h, ref);
}
