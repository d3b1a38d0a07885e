/* optim.c: Adam, Muon (Newton–Schulz-5), the LR and momentum schedules and gradient clipping of
 * the parameter-golf baseline (see optim.h). */
#include "optim.h"

#include "err.h"
#include "xio.h"

#include <cblas.h>
#include <omp.h>

void openblas_set_num_threads(int); /* OpenBLAS's extension; cblas.h may not declare it */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PG_REAL_DOUBLE
#define pg_gemm cblas_dgemm
#else
#define pg_gemm cblas_sgemm
#endif

/* Below this many elements a loop runs on one thread: the fork costs more than the work (the
 * baseline's control tensors have a few hundred elements).
 * Muon's element loops stay serial on purpose: they are ~1/1000 of its matrix products, and an
 * OpenMP region just before a BLAS call leaves libgomp's threads spinning against OpenBLAS's own
 * (pthreads) threads; measured on 2 cores, that doubled the time of a baseline Muon step. */
#define PAR_MIN 16384

/* ---- helpers ---- */

/* pg_bf16_round is a static inline function of optim.h (the CPU backend's bf16 products use it too). */

static inline pg_real round_if(pg_real x, int bf16)
{
    return bf16 ? (pg_real)pg_bf16_round((float)x) : x;
}

/* Σ x², in double, over 64 fixed blocks summed in order: the result does not depend on the number
 * of threads (an OpenMP reduction combines partial sums in whatever order threads finish). */
static double sum_squares(const pg_real *x, size_t n, int parallel)
{
    enum { NB = 64 };
    double part[NB];
#pragma omp parallel for schedule(static) if (parallel && n >= PAR_MIN)
    for (int b = 0; b < NB; b++) {
        size_t lo = n / NB * b + (n % NB) * b / NB, hi = n / NB * (b + 1) + (n % NB) * (b + 1) / NB;
        double s = 0;
        for (size_t i = lo; i < hi; i++) s += (double)x[i] * (double)x[i];
        part[b] = s;
    }
    double s = 0;
    for (int b = 0; b < NB; b++) s += part[b];
    return s;
}

/* Copies the tensor list and lays the per-tensor state out in one block: off[i], *total. */
static int copy_list(struct pg_opt_tensor **list, size_t **off, size_t *total, const struct pg_opt_tensor *tensors,
                     size_t n, const char *who)
{
    if (n && !tensors) return pg_error(PG_E_INVAL, "%s: tensor list is NULL", who);
    size_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (tensors[i].n && (!tensors[i].param || !tensors[i].grad))
            return pg_error(PG_E_INVAL, "%s: tensor %zu has no parameter or gradient array", who, i);
        if (tensors[i].n > SIZE_MAX / 2 / sizeof(pg_real) - sum)
            return pg_error(PG_E_INVAL, "%s: %zu tensors are too large for this machine", who, n);
        sum += tensors[i].n;
    }
    *list = pg_malloc(n * sizeof **list);
    *off = pg_malloc(n * sizeof **off);
    if (!*list || !*off) return PG_E_NOMEM;
    if (n) memcpy(*list, tensors, n * sizeof **list);
    sum = 0;
    for (size_t i = 0; i < n; i++) (*off)[i] = sum, sum += tensors[i].n;
    *total = sum;
    return 0;
}

/* ---- Adam ---- */

/* Zeroed state of n elements in be's memory (NULL: the host's); NULL on failure. */
static void *state_alloc(const struct pg_backend *be, size_t n, size_t size)
{
    if (pg_on_device(be)) return be->alloc((n ? n : 1) * size);
    return pg_calloc(n ? n : 1, size);
}

/* PG_E_NOMEM for the state of n parameters; a device's own message (bytes asked and free) when
 * it has one. */
static int state_nomem(const struct pg_backend *be, const char *what, size_t n)
{
    if (pg_on_device(be) && be->status() == PG_E_NOMEM) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", pg_error_message());
        return pg_error(PG_E_NOMEM, "%s (%s %zu parameters)", msg, what, n);
    }
    return pg_error(PG_E_NOMEM, "out of memory for %s %zu parameters", what, n);
}

static void state_free(const struct pg_backend *be, void *p)
{
    if (pg_on_device(be)) {
        if (p) be->free(p);
    } else {
        free(p);
    }
}

/* Copies bytes of state out to (save) or in from (load) host memory. */
static void state_out(const struct pg_backend *be, void *host, const void *state, size_t bytes)
{
    if (!bytes) return;
    if (pg_on_device(be)) be->download(host, state, bytes);
    else memcpy(host, state, bytes);
}

static void state_in(const struct pg_backend *be, void *state, const void *host, size_t bytes)
{
    if (!bytes) return;
    if (pg_on_device(be)) be->upload(state, host, bytes);
    else memcpy(state, host, bytes);
}

int pg_adam_init(struct pg_adam *a, const struct pg_opt_tensor *tensors, size_t n, double beta1, double beta2,
                 double eps)
{
    return pg_adam_init_on(a, NULL, tensors, n, beta1, beta2, eps);
}

int pg_adam_init_on(struct pg_adam *a, const struct pg_backend *be, const struct pg_opt_tensor *tensors, size_t n,
                    double beta1, double beta2, double eps)
{
    memset(a, 0, sizeof *a);
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
        return pg_error(PG_E_INVAL, "adam: betas (%g, %g) must lie in [0, 1)", beta1, beta2);
    if (!(eps >= 0)) return pg_error(PG_E_INVAL, "adam: eps %g must be >= 0", eps);
    if (pg_on_device(be) && !be->adam_update)
        return pg_error(PG_E_UNSUPPORTED, "adam: the %s backend has no optimizer operations", be->name);
    a->be = be;
    int rc = copy_list(&a->t, &a->off, &a->total, tensors, n, "adam");
    if (!rc) {
        a->m = state_alloc(be, a->total, sizeof *a->m);
        a->v = state_alloc(be, a->total, sizeof *a->v);
        rc = a->m && a->v ? 0 : state_nomem(be, "adam: the moments of", a->total);
    }
    if (rc) {
        pg_adam_free(a);
        return rc;
    }
    a->nt = n;
    a->beta1 = beta1, a->beta2 = beta2, a->eps = eps;
    return 0;
}

int pg_adam_set_weight_decay(struct pg_adam *a, double wd)
{
    if (!(wd >= 0)) return pg_error(PG_E_INVAL, "adam: weight decay %g must be >= 0", wd);
    a->wd = wd;
    return 0;
}

void pg_adam_step(struct pg_adam *a, double lr)
{
    pg_adam_prepare(a, lr);
    pg_adam_launch(a);
}

void pg_adam_prepare(struct pg_adam *a, double lr)
{
    const double b1 = a->beta1, b2 = a->beta2;
    double t = (double)++a->step;
    /* The fused kernel keeps these in its opmath type (float for float tensors), computed from
     * double hyper-parameters; so do we, in pg_real. */
    const pg_real bc1 = (pg_real)(1 - pow(b1, t));
    const pg_real bc2 = (pg_real)(1 - pow(b2, t));
    /* The fused kernel's ADAMW mode: param -= lr * weight_decay * param with double hyper-
     * parameters, so the product is a double and the store rounds once. 0 at wd = 0: skipped,
     * where it would change nothing but the time. */
    a->sc[0] = a->wd != 0 ? lr * a->wd : 0;
    a->sc[1] = (pg_real)(lr / bc1);
    a->sc[2] = (pg_real)sqrt(bc2);
}

void pg_adam_launch(struct pg_adam *a)
{
    const double b1 = a->beta1, b2 = a->beta2, eps = a->eps, lr_wd = a->sc[0];
    const int decay = a->wd != 0; /* the device tests lr_wd: the same but for a -0 or infinite weight at lr 0 */
    const pg_real step_size = (pg_real)a->sc[1], bc2_sqrt = (pg_real)a->sc[2];
    if (pg_on_device(a->be)) {
        a->be->adam_update(a->t, a->nt, a->m, a->v, a->off, b1, b2, eps, lr_wd, step_size, bc2_sqrt, a->sc_dev);
        return;
    }
    for (size_t k = 0; k < a->nt; k++) {
        pg_real *p = a->t[k].param, *m = a->m + a->off[k], *v = a->v + a->off[k];
        const pg_real *g = a->t[k].grad;
        size_t n = a->t[k].n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            pg_real gi = g[i];
            if (decay) p[i] = (pg_real)(p[i] - lr_wd * p[i]);
            /* double · pg_real promotes: the moments are updated in double, stored rounded. */
            m[i] = (pg_real)(b1 * m[i] + (1 - b1) * gi);
            v[i] = (pg_real)(b2 * v[i] + (1 - b2) * gi * gi);
            pg_real denom = (pg_real)((pg_real)sqrt(v[i]) / bc2_sqrt + eps);
            p[i] -= step_size * m[i] / denom;
        }
    }
}

void pg_adam_free(struct pg_adam *a)
{
    free(a->t);
    free(a->off);
    state_free(a->be, a->m);
    state_free(a->be, a->v);
    memset(a, 0, sizeof *a);
}

/* ---- state serialization ---- */

#define STATE_VERSION 1u
#define STATE_HEAD 16u /* magic, version, scalar bytes, tensor count */

static unsigned char *put_head(unsigned char *p, const char *magic, size_t nt)
{
    memcpy(p, magic, 4);
    pg_le32_put(p + 4, STATE_VERSION);
    pg_le32_put(p + 8, (uint32_t)sizeof(pg_real));
    pg_le32_put(p + 12, (uint32_t)nt);
    return p + STATE_HEAD;
}

/* Checks what every state starts with, and the exact length (the layout follows from the
 * optimizer's own tensors, which the state must match). */
static int check_head(const unsigned char *p, size_t len, size_t want_len, const char *magic, size_t nt,
                      const char *what, const char *who)
{
    if (len < STATE_HEAD)
        return pg_error(PG_E_FORMAT, "%s: %s state is truncated (%zu bytes)", what, who, len);
    if (memcmp(p, magic, 4)) return pg_error(PG_E_FORMAT, "%s: bad magic, not a pgolf %s optimizer state", what, who);
    if (pg_le32_get(p + 4) != STATE_VERSION)
        return pg_error(PG_E_FORMAT, "%s: %s state version %u, this build reads version %u", what, who,
                        pg_le32_get(p + 4), STATE_VERSION);
    if (pg_le32_get(p + 8) != sizeof(pg_real))
        return pg_error(PG_E_FORMAT, "%s: %s state has %u-byte scalars, this build uses %zu", what, who,
                        pg_le32_get(p + 8), sizeof(pg_real));
    if (pg_le32_get(p + 12) != nt)
        return pg_error(PG_E_FORMAT, "%s: %s state holds %u tensors, the optimizer has %zu", what, who,
                        pg_le32_get(p + 12), nt);
    if (len != want_len)
        return pg_error(PG_E_FORMAT, "%s: %s state is %zu bytes, expected %zu", what, who, len, want_len);
    return 0;
}

size_t pg_adam_state_size(const struct pg_adam *a)
{
    return STATE_HEAD + 8 + 8 * a->nt + 2 * sizeof(pg_real) * a->total;
}

int pg_adam_state_save(const struct pg_adam *a, void *buf, size_t cap)
{
    size_t need = pg_adam_state_size(a);
    if (cap < need) return pg_error(PG_E_INVAL, "adam state needs %zu bytes, buffer has %zu", need, cap);
    unsigned char *p = put_head(buf, "PGAD", a->nt);
    pg_le64_put(p, (uint64_t)a->step), p += 8;
    for (size_t i = 0; i < a->nt; i++) pg_le64_put(p, a->t[i].n), p += 8;
    size_t bytes = sizeof(pg_real) * a->total;
    state_out(a->be, p, a->m, bytes);
    state_out(a->be, p + bytes, a->v, bytes);
    return 0;
}

int pg_adam_state_load(struct pg_adam *a, const void *buf, size_t len, const char *what)
{
    const unsigned char *p = buf;
    PG_TRY(check_head(p, len, pg_adam_state_size(a), "PGAD", a->nt, what, "adam"));
    p += STATE_HEAD;
    uint64_t step = pg_le64_get(p);
    if (step > INT64_MAX) return pg_error(PG_E_FORMAT, "%s: adam state step %llu is out of range", what,
                                          (unsigned long long)step);
    p += 8;
    for (size_t i = 0; i < a->nt; i++, p += 8)
        if (pg_le64_get(p) != a->t[i].n)
            return pg_error(PG_E_FORMAT, "%s: adam state tensor %zu has %llu elements, the optimizer's has %zu",
                            what, i, (unsigned long long)pg_le64_get(p), a->t[i].n);
    size_t bytes = sizeof(pg_real) * a->total;
    state_in(a->be, a->m, p, bytes);
    state_in(a->be, a->v, p + bytes, bytes);
    a->step = (int64_t)step;
    return 0;
}

/* ---- Newton–Schulz ---- */

size_t pg_newton_schulz5_work(int rows, int cols)
{
    size_t m = (size_t)(rows < cols ? rows : cols), k = (size_t)(rows < cols ? cols : rows);
    return 2 * m * k + 3 * m * m;
}

/* dst[c][r] = src[r][c] for src rows × cols. */
static void transpose(pg_real *dst, const pg_real *src, int rows, int cols)
{
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < rows; r++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
}

/* Polar Express (spec/techniques.md §3.1): iteration s uses row s. */
static const double polar_express[PG_NS_POLAR_EXPRESS_STEPS][3] = {
    {8.156554524902461, -22.48329292557795, 15.878769915207462},
    {4.042929935166739, -2.808917465908714, 0.5000178451051316},
    {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
    {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
    {2.3465413258596377, -1.7097828382687081, 0.42323551169305323},
};

void pg_newton_schulz_coeffs(int coeffs, int step, double abc[3])
{
    if (coeffs == PG_NS_POLAR_EXPRESS) {
        int s = step < 0 ? 0 : step < PG_NS_POLAR_EXPRESS_STEPS ? step : PG_NS_POLAR_EXPRESS_STEPS - 1;
        memcpy(abc, polar_express[s], 3 * sizeof *abc);
    } else {
        abc[0] = 3.4445, abc[1] = -4.7750, abc[2] = 2.0315;
    }
}

void pg_newton_schulz5(pg_real *x, int rows, int cols, int steps, int bf16, pg_real *work)
{
    pg_newton_schulz(x, rows, cols, steps, PG_NS_CLASSIC, bf16, work);
}

void pg_newton_schulz(pg_real *x, int rows, int cols, int steps, int coeffs, int bf16, pg_real *work)
{
    const int tr = rows > cols; /* work on the wide orientation: the Gram matrix A is m × m */
    const int m = tr ? cols : rows, k = tr ? rows : cols;
    const size_t mk = (size_t)m * k, mm = (size_t)m * m;
    pg_real *X = work, *Y = X + mk, *A = Y + mk, *T = A + mm, *B = T + mm;

    if (tr) transpose(X, x, rows, cols);
    else memcpy(X, x, mk * sizeof *X);
    /* X = G.bfloat16(); X /= X.norm() + eps: the norm is a bf16 tensor, the division one fused
     * fp32 expression rounded once. */
    for (size_t i = 0; i < mk; i++) X[i] = round_if(X[i], bf16);
    const pg_real denom = round_if((pg_real)sqrt(sum_squares(X, mk, 0)), bf16) + (pg_real)1e-7;
    for (size_t i = 0; i < mk; i++) X[i] = round_if(X[i] / denom, bf16);

    for (int s = 0; s < steps; s++) {
        /* Python floats meeting a float tensor become float scalars. */
        double abc[3];
        pg_newton_schulz_coeffs(coeffs, s, abc);
        const pg_real a = (pg_real)abc[0], b = (pg_real)abc[1], c = (pg_real)abc[2];
        /* A = X·Xᵀ */
        pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, m, k, 1, X, k, X, k, 0, A, m);
        /* B = b·A + (c·A)·A: `c * A @ A` parses as (c*A) @ A, and c·A is stored before the
         * product reads it. */
        for (size_t i = 0; i < mm; i++) A[i] = round_if(A[i], bf16), T[i] = round_if(c * A[i], bf16);
        pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1, T, m, A, m, 0, B, m);
        for (size_t i = 0; i < mm; i++) B[i] = round_if(b * A[i] + round_if(B[i], bf16), bf16);
        /* X = a·X + B·X */
        pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, m, 1, B, m, X, k, 0, Y, k);
        for (size_t i = 0; i < mk; i++) X[i] = round_if(a * X[i] + round_if(Y[i], bf16), bf16);
    }

    if (tr) transpose(x, X, m, k);
    else memcpy(x, X, mk * sizeof *X);
}

/* ---- Muon ---- */

int pg_muon_init(struct pg_muon *mu, const struct pg_opt_tensor *tensors, size_t n, int backend_steps, int nesterov,
                 int bf16)
{
    return pg_muon_init_on(mu, NULL, tensors, n, backend_steps, nesterov, bf16);
}

/* The largest g·(n + Newton–Schulz work) over the groups of g matrices of one shape. */
static size_t muon_group_work(const struct pg_opt_tensor *t, size_t n)
{
    size_t most = 0;
    for (size_t i = 0; i < n; i++) {
        size_t g = 0;
        for (size_t j = 0; j < n; j++) g += t[j].rows == t[i].rows && t[j].cols == t[i].cols;
        size_t need = g * (t[i].n + pg_newton_schulz5_work(t[i].rows, t[i].cols));
        if (need > most) most = need;
    }
    return most;
}

int pg_muon_init_on(struct pg_muon *mu, const struct pg_backend *be, const struct pg_opt_tensor *tensors, size_t n,
                    int backend_steps, int nesterov, int bf16)
{
    memset(mu, 0, sizeof *mu);
    if (backend_steps < 0) return pg_error(PG_E_INVAL, "muon: backend steps %d must be >= 0", backend_steps);
    if (pg_on_device(be) && !be->muon_step)
        return pg_error(PG_E_UNSUPPORTED, "muon: the %s backend has no optimizer operations", be->name);
    size_t max_n = 0, max_ns = 0;
    for (size_t i = 0; i < n && tensors; i++) {
        const struct pg_opt_tensor *t = &tensors[i];
        if (t->rows < 1 || t->cols < 1 || t->n != (size_t)t->rows * (size_t)t->cols)
            return pg_error(PG_E_INVAL, "muon: tensor %zu is %d x %d with %zu elements: not a matrix", i, t->rows,
                            t->cols, t->n);
        if (t->n > max_n) max_n = t->n;
        size_t w = pg_newton_schulz5_work(t->rows, t->cols);
        if (w > max_ns) max_ns = w;
    }
    mu->be = be;
    int rc = copy_list(&mu->t, &mu->off, &mu->total, tensors, n, "muon");
    if (!rc) {
        mu->buf = state_alloc(be, mu->total, sizeof *mu->buf);
        /* one scratch slice per OpenMP thread on the host, where matrices are orthogonalized in
         * parallel; on a device, room for the largest group of same-shape matrices, which its
         * step orthogonalizes together (kernels/cuda/optim_muon.c) */
        size_t work = pg_on_device(be) ? muon_group_work(tensors, n)
                                       : (max_n + max_ns) * (size_t)omp_get_max_threads();
        mu->work = state_alloc(be, work, sizeof *mu->work);
        rc = mu->buf && mu->work ? 0 : state_nomem(be, "muon: the state of", mu->total);
    }
    if (rc) {
        pg_muon_free(mu);
        return rc;
    }
    mu->nt = n;
    mu->max_n = max_n, mu->max_ns = max_ns;
    mu->backend_steps = backend_steps, mu->nesterov = nesterov != 0, mu->bf16 = bf16 != 0;
    mu->coeffs = PG_NS_CLASSIC, mu->row_norm = 0, mu->wd = 0;
    /* Matrices are orthogonalized in parallel by OpenMP threads, each calling BLAS: OpenBLAS's own
     * threads would then spin against OpenMP's, so it runs single-threaded (as pg_cpu_init sets). */
    openblas_set_num_threads(1);
    return 0;
}

int pg_muon_set_variant(struct pg_muon *mu, int coeffs, int row_norm, double wd)
{
    if (coeffs != PG_NS_CLASSIC && coeffs != PG_NS_POLAR_EXPRESS)
        return pg_error(PG_E_INVAL, "muon: unknown Newton-Schulz coefficient set %d", coeffs);
    /* Past its table Polar Express has no coefficients of its own: refuse rather than invent. */
    if (coeffs == PG_NS_POLAR_EXPRESS && mu->backend_steps > PG_NS_POLAR_EXPRESS_STEPS)
        return pg_error(PG_E_INVAL, "muon: Polar Express has %d coefficient tuples, not %d backend steps",
                        PG_NS_POLAR_EXPRESS_STEPS, mu->backend_steps);
    if (!(wd >= 0)) return pg_error(PG_E_INVAL, "muon: weight decay %g must be >= 0", wd);
    mu->coeffs = coeffs, mu->row_norm = row_norm != 0, mu->wd = wd;
    return 0;
}

int pg_muon_set_weight_decay(struct pg_muon *mu, double wd)
{
    if (!(wd >= 0)) return pg_error(PG_E_INVAL, "muon: weight decay %g must be >= 0", wd);
    mu->wd = wd;
    return 0;
}

void pg_muon_step(struct pg_muon *mu, double lr, double momentum)
{
    pg_muon_prepare(mu, lr, momentum);
    pg_muon_launch(mu);
}

void pg_muon_prepare(struct pg_muon *mu, double lr, double momentum)
{
    mu->sc[0] = momentum, mu->sc[1] = lr;
    mu->sc[2] = mu->wd != 0 ? 1 - lr * mu->wd : 1;
}

void pg_muon_launch(struct pg_muon *mu)
{
    if (pg_on_device(mu->be)) {
        mu->be->muon_step(mu);
        return;
    }
    const pg_real mom = (pg_real)mu->sc[0], lr_r = (pg_real)mu->sc[1], decay = (pg_real)mu->sc[2];
    const size_t max_n = mu->max_n, max_ns = mu->max_ns;
    /* Each matrix is updated whole by one thread, with its own scratch, so the result does not
     * depend on the thread count or the schedule (BLAS runs single-threaded inside, pg_cpu_init). */
#pragma omp parallel for schedule(dynamic, 1) if (mu->nt > 1)
    for (size_t k = 0; k < mu->nt; k++) {
        pg_real *G = mu->work + (max_n + max_ns) * (size_t)omp_get_thread_num(), *ns_work = G + max_n;
        const struct pg_opt_tensor *t = &mu->t[k];
        const pg_real *g = t->grad;
        pg_real *buf = mu->buf + mu->off[k], *p = t->param;
        const size_t n = t->n;
        const int nesterov = mu->nesterov;
        /* buf.mul_(μ).add_(g), then g.add(buf, alpha=μ): separate roundings, as PyTorch does.
         * Without Nesterov the baseline orthogonalizes the raw gradient (its buffer is kept
         * but unused), unlike modded-nanogpt's `else buf`; we follow the baseline. */
        for (size_t i = 0; i < n; i++) {
            pg_real decayed = mom * buf[i];
            buf[i] = decayed + g[i];
            G[i] = nesterov ? g[i] + mom * buf[i] : g[i];
        }
        if (mu->owner && mu->owner[k] != mu->rank) continue; /* another rank's matrix (pg_muon_shard) */
        if (mu->row_norm) {
            /* MuonEq-R: U / U.norm(dim=-1, keepdim=True).clamp_min(1e-7) on the rows of the matrix
             * as stored (before Newton–Schulz's transpose); the norm is a pg_real tensor. */
            const int cols = t->cols;
            for (int r = 0; r < t->rows; r++) {
                pg_real *row = G + (size_t)r * cols;
                pg_real nrm = (pg_real)sqrt(sum_squares(row, (size_t)cols, 0));
                if (nrm < (pg_real)1e-7) nrm = (pg_real)1e-7; /* clamp_min: a NaN stays NaN */
                for (int j = 0; j < cols; j++) row[j] /= nrm;
            }
        }
        pg_newton_schulz(G, t->rows, t->cols, mu->backend_steps, mu->coeffs, mu->bf16, ns_work);
        /* Decoupled decay, p.mul_(1 - lr * wd), before the update; skipped at a factor of 1 (wd = 0: a
         * no-op). */
        if (decay != 1)
            for (size_t i = 0; i < n; i++) p[i] *= decay;
        /* g *= max(1, rows/cols)**0.5 on the (bf16) update, then p.add_(update, alpha=-lr). */
        const pg_real scale = (pg_real)sqrt(fmax(1.0, (double)t->rows / t->cols));
        const int bf16 = mu->bf16;
        for (size_t i = 0; i < n; i++) p[i] -= lr_r * round_if(G[i] * scale, bf16);
    }
}

int pg_muon_shard(struct pg_muon *mu, int rank, int world)
{
    free(mu->owner);
    mu->owner = NULL, mu->rank = 0;
    if (world <= 1) return 0;
    int *owner = malloc((mu->nt ? mu->nt : 1) * sizeof *owner);
    double *load = calloc((size_t)world, sizeof *load);
    unsigned char *done = calloc(mu->nt ? mu->nt : 1, 1);
    int rc = owner && load && done ? 0 : pg_error(PG_E_NOMEM, "muon: no memory to divide %zu matrices", mu->nt);
    for (size_t taken = 0; !rc && taken < mu->nt; taken++) {
        size_t best = 0;
        double best_cost = -1;
        for (size_t k = 0; k < mu->nt; k++) { /* the largest left; ties to the first */
            double m = fmin(mu->t[k].rows, mu->t[k].cols), n = fmax(mu->t[k].rows, mu->t[k].cols);
            double cost = 4 * m * m * n + 2 * m * m * m; /* one iteration's products */
            if (!done[k] && cost > best_cost) best = k, best_cost = cost;
        }
        int r = 0; /* the least loaded rank; ties to the lowest */
        for (int q = 1; q < world; q++)
            if (load[q] < load[r]) r = q;
        owner[best] = r, load[r] += best_cost, done[best] = 1;
    }
    free(load), free(done);
    if (rc) {
        free(owner);
        return rc;
    }
    mu->owner = owner, mu->rank = rank;
    return 0;
}

void pg_muon_free(struct pg_muon *mu)
{
    free(mu->owner);
    free(mu->t);
    free(mu->off);
    state_free(mu->be, mu->buf);
    state_free(mu->be, mu->work);
    memset(mu, 0, sizeof *mu);
}

size_t pg_muon_state_size(const struct pg_muon *mu)
{
    return STATE_HEAD + 16 * mu->nt + sizeof(pg_real) * mu->total;
}

int pg_muon_state_save(const struct pg_muon *mu, void *buf, size_t cap)
{
    size_t need = pg_muon_state_size(mu);
    if (cap < need) return pg_error(PG_E_INVAL, "muon state needs %zu bytes, buffer has %zu", need, cap);
    unsigned char *p = put_head(buf, "PGMU", mu->nt);
    for (size_t i = 0; i < mu->nt; i++, p += 16)
        pg_le64_put(p, (uint64_t)mu->t[i].rows), pg_le64_put(p + 8, (uint64_t)mu->t[i].cols);
    state_out(mu->be, p, mu->buf, sizeof(pg_real) * mu->total);
    return 0;
}

int pg_muon_state_load(struct pg_muon *mu, const void *buf, size_t len, const char *what)
{
    const unsigned char *p = buf;
    PG_TRY(check_head(p, len, pg_muon_state_size(mu), "PGMU", mu->nt, what, "muon"));
    p += STATE_HEAD;
    for (size_t i = 0; i < mu->nt; i++, p += 16) {
        uint64_t r = pg_le64_get(p), c = pg_le64_get(p + 8);
        if (r != (uint64_t)mu->t[i].rows || c != (uint64_t)mu->t[i].cols)
            return pg_error(PG_E_FORMAT, "%s: muon state tensor %zu is %llu x %llu, the optimizer's is %d x %d",
                            what, i, (unsigned long long)r, (unsigned long long)c, mu->t[i].rows, mu->t[i].cols);
    }
    state_in(mu->be, mu->buf, p, sizeof(pg_real) * mu->total);
    return 0;
}

/* ---- schedules and clipping ---- */

double pg_muon_momentum(int64_t step, double start, double final, int64_t warmup_steps)
{
    double f = warmup_steps > 0 ? fmin((double)step / (double)warmup_steps, 1.0) : 1.0;
    return (1 - f) * start + f * final;
}

double pg_lr_mul_wallclock(int64_t step, double elapsed_ms, int64_t warmdown_iters, double max_wallclock_ms)
{
    if (warmdown_iters <= 0) return 1.0;
    double step_ms = elapsed_ms / (double)(step > 1 ? step : 1);
    double warmdown_ms = (double)warmdown_iters * step_ms;
    double remaining_ms = fmax(max_wallclock_ms - elapsed_ms, 0.0);
    return remaining_ms <= warmdown_ms ? remaining_ms / fmax(warmdown_ms, 1e-9) : 1.0;
}

double pg_lr_mul_iterations(int64_t step, int64_t iterations, int64_t warmdown_iters)
{
    if (warmdown_iters <= 0) return 1.0;
    int64_t start = iterations - warmdown_iters > 0 ? iterations - warmdown_iters : 0;
    if (step < start || step >= iterations) return 1.0; /* the reference's quirk: 1 at step >= iterations */
    return fmax((double)(iterations - step) / (double)warmdown_iters, 0.0);
}

double pg_train_frac(int64_t step, int64_t iterations, double elapsed_ms, double max_wallclock_ms)
{
    if (max_wallclock_ms > 0) return elapsed_ms / max_wallclock_ms;
    return iterations > 0 ? (double)step / (double)iterations : 0.0;
}

double pg_lr_mul_frac(double frac, double warmdown_frac, double min_lr)
{
    if (!(warmdown_frac > 0)) return 1.0;
    if (frac < 1 - warmdown_frac) return 1.0;
    return fmax((1 - frac) / warmdown_frac, min_lr);
}

double pg_wd_taper(double frac, double start, double final)
{
    if (!(start < 1) || frac < start) return 1.0;
    double t = fmin((frac - start) / (1 - start), 1.0);
    return 1 + (final - 1) * t;
}

void pg_ema_update(float *ema, const pg_real *theta, size_t n, double decay)
{
    const double keep = decay, take = 1 - decay;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) ema[i] = (float)(keep * ema[i] + take * (double)theta[i]);
}

void pg_swa_add(double *sum, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) sum[i] += x[i];
}

void pg_swa_add_real(double *sum, const pg_real *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) sum[i] += (double)x[i];
}

double pg_clip_grad_norm(const struct pg_opt_tensor *tensors, size_t n, double max_norm)
{
    double ss = 0;
    for (size_t k = 0; k < n; k++) ss += sum_squares(tensors[k].grad, tensors[k].n, 1);
    double total = sqrt(ss);
    double coef = max_norm / (total + 1e-6);
    if (coef < 1) {
        const pg_real c = (pg_real)coef; /* a float tensor times a float scalar */
        for (size_t k = 0; k < n; k++) {
            pg_real *g = tensors[k].grad;
            size_t m = tensors[k].n;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
            for (size_t i = 0; i < m; i++) g[i] *= c;
        }
    }
    return total;
}

void pg_clip_grad_norm_on(const struct pg_backend *be, const struct pg_opt_tensor *tensors, size_t n,
                          double max_norm)
{
    if (pg_on_device(be)) be->clip_grad_norm(tensors, n, max_norm);
    else pg_clip_grad_norm(tensors, n, max_norm);
}
