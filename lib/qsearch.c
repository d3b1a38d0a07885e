/* qsearch.c: bit widths per tensor by sensitivity under a byte budget (see qsearch.h). */
#define _POSIX_C_SOURCE 200809L
#include "qsearch.h"

#include "calib.h"
#include "err.h"
#include "xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* tr(W H Wᵀ) over the rows of w (rows × cols), or ‖W‖² without H; per row, summed in row order. */
static double weighted_norm(const pg_real *w, int64_t rows, int64_t cols, const double *h)
{
    double *row = pg_malloc((size_t)rows * sizeof *row);
    if (!row) return NAN;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const pg_real *x = w + r * cols;
        double s = 0;
        for (int64_t i = 0; i < cols; i++) {
            if (!h) {
                s += (double)x[i] * x[i];
                continue;
            }
            double hx = 0;
            for (int64_t j = 0; j < cols; j++) hx += h[i * cols + j] * x[j];
            s += x[i] * hx;
        }
        row[r] = s;
    }
    double s = 0;
    for (int64_t r = 0; r < rows; r++) s += row[r];
    free(row);
    return s;
}

/* Estimated packed bytes of an integer tensor: the empirical entropy of its codes, plus its steps. */
static double est_bytes(const struct pg_qtensor *t)
{
    uint64_t hist[256] = {0};
    for (uint64_t i = 0; i < t->data_len; i++) hist[(uint8_t)t->data[i]]++;
    double bits = 0, n = (double)t->data_len;
    for (int v = 0; v < 256; v++)
        if (hist[v]) bits -= (double)hist[v] * log2((double)hist[v] / n);
    return bits / 8 + (double)t->scale_len;
}

struct search {
    int nb, nint, min, steps;
    int *idx;               /* the integer tensors' indices */
    struct pg_qmodel *q;    /* nb models: q[b − min]; q[nb − 1] is the working one */
    struct pg_qtensor *orig;/* the working model's integer tensors as quantized (max bits) */
    unsigned char **saved;  /* ... and their codes and steps */
    double *cost, *size;    /* [tensor · nb + b − min] */
    int *path;              /* steps: which integer tensor goes down one bit */
    int *cur;
};

/* Puts the working model at point k of the path: every tensor at its width there. */
static void set_point(struct search *s, int k)
{
    int max = s->min + s->nb - 1;
    for (int j = 0; j < s->nint; j++) s->cur[j] = max;
    for (int p = 0; p < k; p++) s->cur[s->path[p]]--;
    struct pg_qmodel *w = &s->q[s->nb - 1];
    for (int j = 0; j < s->nint; j++) {
        int i = s->idx[j];
        struct pg_qtensor *t = &w->t[i], keep = *t;
        const struct pg_qtensor *src = s->cur[j] == max ? &s->orig[j] : &s->q[s->cur[j] - s->min].t[i];
        const unsigned char *d = s->cur[j] == max ? s->saved[j] : src->data;
        const unsigned char *sc = s->cur[j] == max ? s->saved[j] + keep.data_len : src->scales;
        const unsigned char *xf = s->cur[j] == max ? sc + keep.scale_len : src->xform_blob;
        *t = *src;
        t->data = keep.data, t->scales = keep.scales, t->data_off = keep.data_off, t->scale_off = keep.scale_off;
        t->xform_blob = keep.xform_blob, t->xform_off = keep.xform_off;
        memcpy((void *)(uintptr_t)t->data, d, t->data_len);
        if (t->scale_len) memcpy((void *)(uintptr_t)t->scales, sc, t->scale_len);
        if (t->xform_len) memcpy((void *)(uintptr_t)t->xform_blob, xf, t->xform_len); /* AWQ's scales differ */
    }
}

static void search_free(struct search *s)
{
    for (int b = 0; s->q && b < s->nb; b++) pg_qmodel_free(&s->q[b]);
    for (int j = 0; s->saved && j < s->nint; j++) free(s->saved[j]);
    free(s->q), free(s->saved), free(s->orig), free(s->idx), free(s->cost), free(s->size), free(s->path), free(s->cur);
}

/* The greedy path: each step lowers the tensor whose next bit costs least per byte saved. */
static void build_path(struct search *s)
{
    int max = s->min + s->nb - 1;
    for (int j = 0; j < s->nint; j++) s->cur[j] = max;
    for (int p = 0; p < s->steps; p++) {
        int best = -1;
        double best_r = 0;
        for (int j = 0; j < s->nint; j++) {
            int b = s->cur[j] - s->min;
            if (b == 0) continue;
            double de = s->cost[j * s->nb + b - 1] - s->cost[j * s->nb + b];
            double ds = s->size[j * s->nb + b] - s->size[j * s->nb + b - 1];
            double r = (de > 0 ? de : 0) / (ds > 1e-9 ? ds : 1e-9); /* a step that saves nothing goes last */
            if (best < 0 || r < best_r) best = j, best_r = r;
        }
        s->path[p] = best;
        s->cur[best]--;
    }
}

int pg_bits_search(const struct pg_model *m, const struct pg_quant_opts *o, int min_bits, int max_bits,
                   uint64_t target, const struct pg_pack_opts *po, struct pg_qmodel *qm,
                   struct pg_bits_search_report *rep, void (*progress)(void *ctx, int done, int total), void *ctx)
{
    memset(rep, 0, sizeof *rep);
    memset(qm, 0, sizeof *qm);
    if (o->scheme != PG_QSCHEME_INTN) return pg_error(PG_E_INVAL, "the bit-width search needs an intN scheme");
    if (min_bits < 2 || max_bits > 8 || min_bits >= max_bits)
        return pg_error(PG_E_INVAL, "bit-width search range %d-%d (2 <= min < max <= 8)", min_bits, max_bits);
    if (o->lqer_rank) return pg_error(PG_E_INVAL, "the bit-width search does not combine with LQER");
    for (int i = 0; i < o->nov; i++)
        if (o->ov[i].bits)
            return pg_error(PG_E_INVAL, "the bit-width search sets every width: no per-tensor bits (%s)", o->ov[i].prefix);
    struct search s = {.nb = max_bits - min_bits + 1, .min = min_bits};
    rep->min_bits = min_bits, rep->max_bits = max_bits;
    s.q = pg_calloc((size_t)s.nb, sizeof *s.q);
    if (!s.q) return PG_E_NOMEM;
    int rc = 0;
    for (int b = 0; b < s.nb && !rc; b++) {
        struct pg_quant_opts ob = *o;
        for (int c = 0; c < PG_QCLASS_N; c++) ob.bits[c] = min_bits + b;
        ob.progress = NULL;
        rc = pg_quantize_model(m, &ob, &s.q[b]);
        if (progress) progress(ctx, b + 1, s.nb);
    }
    if (rc) {
        for (int b = 0; b < s.nb; b++) pg_qmodel_free(&s.q[b]);
        free(s.q);
        return rc;
    }
    struct pg_qmodel *w = &s.q[s.nb - 1];
    for (int i = 0; i < w->ntensors; i++) s.nint += w->t[i].kind == PG_QKIND_INT;
    size_t ni = (size_t)(s.nint ? s.nint : 1);
    s.idx = pg_malloc(ni * sizeof *s.idx);
    s.orig = pg_malloc(ni * sizeof *s.orig);
    s.saved = pg_calloc(ni, sizeof *s.saved);
    s.cost = pg_malloc(ni * (size_t)s.nb * sizeof *s.cost);
    s.size = pg_malloc(ni * (size_t)s.nb * sizeof *s.size);
    s.cur = pg_malloc(ni * sizeof *s.cur);
    s.steps = s.nint * (s.nb - 1);
    s.path = pg_malloc((size_t)(s.steps ? s.steps : 1) * sizeof *s.path);
    if (!s.idx || !s.orig || !s.saved || !s.cost || !s.size || !s.cur || !s.path) rc = PG_E_NOMEM;
    for (int i = 0, j = 0; !rc && i < w->ntensors; i++) {
        const struct pg_qtensor *t = &w->t[i];
        if (t->kind != PG_QKIND_INT) continue;
        s.idx[j] = i;
        s.orig[j] = *t;
        if (!(s.saved[j] = pg_malloc(t->data_len + t->scale_len + t->xform_len + 1))) {
            rc = PG_E_NOMEM;
            break;
        }
        memcpy(s.saved[j], t->data, t->data_len);
        if (t->scale_len) memcpy(s.saved[j] + t->data_len, t->scales, t->scale_len);
        if (t->xform_len) memcpy(s.saved[j] + t->data_len + t->scale_len, t->xform_blob, t->xform_len);
        int ti = pg_model_find(m, t->name);
        int64_t cols = 0;
        const double *h = o->calib && ti >= 0 ? pg_calib_hessian(o->calib, m, t->name, &cols) : NULL;
        if (h && cols != t->cols) h = NULL;
        double norm = ti >= 0 && h ? weighted_norm(m->params + m->tensors[ti].offset, t->rows, t->cols, h) : 0;
        if (isnan(norm)) rc = PG_E_NOMEM;
        for (int b = 0; b < s.nb && !rc; b++) {
            const struct pg_qtensor *tb = &s.q[b].t[i];
            if (tb->kind != PG_QKIND_INT || tb->data_len != t->data_len || tb->scale_len != t->scale_len ||
                tb->xform != t->xform) {
                rc = pg_error(PG_E_INVAL, "%s: quantized differently at %d bits", t->name, min_bits + b);
                break;
            }
            s.cost[j * s.nb + b] = h && tb->out_err >= 0 ? tb->out_err * tb->out_err * norm : tb->err_norm * tb->err_norm;
            s.size[j * s.nb + b] = est_bytes(tb);
        }
        j++;
    }
    if (rc) {
        search_free(&s);
        return rc;
    }
    build_path(&s);
    rep->steps = s.steps;

    /* the first point of the path whose artifact fits */
    uint64_t bytes;
    int lo = 0, hi = s.steps, fits_hi = -1;
    set_point(&s, hi);
    rc = pg_fit_packed_bytes(w, po, &bytes);
    rep->packs++;
    if (!rc && bytes <= target) fits_hi = 1;
    if (!rc && fits_hi < 0) lo = hi; /* nothing fits: the last point, for the pruning to try */
    while (!rc && fits_hi > 0 && lo < hi) {
        int mid = lo + (hi - lo) / 2;
        set_point(&s, mid);
        rc = pg_fit_packed_bytes(w, po, &bytes);
        rep->packs++;
        if (rc) break;
        if (bytes <= target) hi = mid;
        else lo = mid + 1;
    }
    int k = lo;
    /* the point before it, pruned down to the target, when the pruning can reach it */
    if (!rc && k > 0 && fits_hi > 0) {
        set_point(&s, k - 1);
        rc = pg_fit_prune(w, m, o->calib, target, po, &rep->fit, NULL, NULL);
        if (rc == 0 && rep->fit.final_bytes <= target) {
            rep->chosen = k - 1, rep->pruned_point = 1;
        } else if (rc == PG_E_INVAL || rc == 0) {
            rc = 0;
            /* keep the first fitting point */
        }
    }
    if (!rc && !rep->pruned_point) {
        set_point(&s, k);
        rep->chosen = k;
        rc = pg_fit_prune(w, m, o->calib, target, po, &rep->fit, NULL, NULL); /* a no-op unless nothing fit */
    }
    if (!rc) {
        for (int j = 0; j < s.nint; j++) rep->cost += s.cost[j * s.nb + s.cur[j] - s.min];
        /* the working model becomes the caller's; the others go */
        *qm = *w;
        memset(w, 0, sizeof *w);
    }
    search_free(&s);
    return rc;
}
