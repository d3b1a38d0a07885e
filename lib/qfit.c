/* qfit.c: selective ±1 pruning to a packed-size target (see qfit.h). */
#define _POSIX_C_SOURCE 200809L
#include "qfit.h"

#include "err.h"
#include "pgq.h"
#include "xio.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int pg_fit_packed_bytes(const struct pg_qmodel *qm, const struct pg_pack_opts *o, uint64_t *bytes)
{
    unsigned char *pgq = NULL, *art = NULL;
    size_t n = 0, an = 0;
    PG_TRY(pg_pgq_serialize(qm, &pgq, &n));
    int rc = pg_pack_pgq(pgq, n, "the quantized model", o, &art, &an);
    free(pgq);
    free(art);
    if (!rc) *bytes = an;
    return rc;
}

struct cand {
    double cost;
    int32_t tensor;
    int8_t sign; /* the value before pruning, ±1 */
    int64_t elem;
};

static int by_cost(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    if (a->cost != b->cost) return a->cost < b->cost ? -1 : 1;
    if (a->tensor != b->tensor) return a->tensor < b->tensor ? -1 : 1;
    return a->elem < b->elem ? -1 : a->elem > b->elem;
}

/* The writable integers of tensor t: qm was quantized in memory, so they live in its own arena. */
static int8_t *ints(const struct pg_qtensor *t)
{
    return (int8_t *)(uintptr_t)t->data;
}

/* Moves the pruned prefix from *cur candidates to k: zeroes or restores the ones between. */
static void set_count(const struct pg_qmodel *qm, const struct cand *c, int64_t *cur, int64_t k)
{
    for (; *cur < k; ++*cur) ints(&qm->t[c[*cur].tensor])[c[*cur].elem] = 0;
    for (; *cur > k; --*cur) ints(&qm->t[c[*cur - 1].tensor])[c[*cur - 1].elem] = c[*cur - 1].sign;
}

int pg_fit_prune(struct pg_qmodel *qm, const struct pg_model *m, const struct pg_calib *calib, uint64_t target,
                 const struct pg_pack_opts *o, struct pg_fit_report *rep,
                 void (*progress)(void *ctx, int64_t pruned, uint64_t bytes), void *ctx)
{
    memset(rep, 0, sizeof *rep);
    if (!qm->arena) return pg_error(PG_E_INVAL, "pruning needs a model quantized here, not one read from a file");
    uint64_t bytes;
    PG_TRY(pg_fit_packed_bytes(qm, o, &bytes));
    rep->packs = 1;
    rep->start_bytes = rep->final_bytes = bytes;
    if (progress) progress(ctx, 0, bytes);
    if (bytes <= target) return 0;

    int64_t n = 0;
    for (int i = 0; i < qm->ntensors; i++) {
        const struct pg_qtensor *t = &qm->t[i];
        if (t->kind != PG_QKIND_INT) continue;
        for (uint64_t j = 0; j < t->data_len; j++) n += ((const int8_t *)t->data)[j] == 1 || ((const int8_t *)t->data)[j] == -1;
    }
    rep->candidates = n;
    struct cand *c = pg_malloc((size_t)(n ? n : 1) * sizeof *c);
    if (!c) return PG_E_NOMEM;
    int64_t k = 0;
    for (int i = 0; i < qm->ntensors; i++) {
        const struct pg_qtensor *t = &qm->t[i];
        if (t->kind != PG_QKIND_INT) continue;
        const double *h = pg_qtensor_hessian(t, calib, m);
        const int8_t *q = (const int8_t *)t->data;
        float *steps = pg_malloc((size_t)t->rows * sizeof *steps);
        int src = steps ? pg_qtensor_steps(t, steps, "the quantized model") : PG_E_NOMEM;
        if (src) {
            free(steps);
            free(c);
            return src;
        }
        for (int64_t r = 0; r < t->rows; r++) {
            double s = steps[r];
            for (int64_t j = 0; j < t->cols; j++) {
                int8_t v = q[r * t->cols + j];
                if (v != 1 && v != -1) continue;
                c[k++] = (struct cand){s * s * (h ? h[j * t->cols + j] : 1.0), i, v, r * t->cols + j};
            }
        }
        free(steps);
    }
    qsort(c, (size_t)n, sizeof *c, by_cost);

    /* every candidate pruned must fit, else nothing will */
    int64_t cur = 0;
    set_count(qm, c, &cur, n);
    int rc = pg_fit_packed_bytes(qm, o, &bytes);
    rep->packs++;
    if (!rc && progress) progress(ctx, n, bytes);
    if (!rc && bytes > target)
        rc = pg_error(PG_E_INVAL, "%" PRIu64 " bytes cannot be reached by pruning: with all %" PRId64 " weights at ±1 "
                      "set to 0 the artifact is %" PRIu64 " bytes (use fewer bits)", target, n, bytes);
    /* lo: over the target; hi: within it */
    int64_t lo = 0, hi = n;
    uint64_t hi_bytes = bytes;
    while (!rc && hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        set_count(qm, c, &cur, mid);
        rc = pg_fit_packed_bytes(qm, o, &bytes);
        rep->packs++;
        if (rc) break;
        if (progress) progress(ctx, mid, bytes);
        if (bytes <= target) hi = mid, hi_bytes = bytes;
        else lo = mid;
    }
    if (!rc) {
        set_count(qm, c, &cur, hi);
        rep->pruned = hi;
        rep->final_bytes = hi_bytes;
        /* A codec whose size jumps (brotli, lzma) can leave the count found well under the target
         * while one fewer is over it. Then give back pruned weights other than the last, the
         * costliest first, while the artifact stays within the target: at most 8 more packs,
         * until within 0.1% of it. */
        for (int64_t i = hi - 2, tries = 0; i >= 0 && tries < 8 && target - rep->final_bytes > target / 1000; i--, tries++) {
            int8_t *q = ints(&qm->t[c[i].tensor]) + c[i].elem;
            *q = c[i].sign;
            rc = pg_fit_packed_bytes(qm, o, &bytes);
            rep->packs++;
            if (rc) break;
            if (progress) progress(ctx, rep->pruned - 1, bytes);
            if (bytes <= target) rep->final_bytes = bytes, rep->pruned--, c[i].sign = 0; /* kept: no longer pruned */
            else *q = 0;
        }
        /* the tensors that lost weights are measured again */
        unsigned char *touched = pg_calloc((size_t)qm->ntensors, 1);
        if (!touched) rc = PG_E_NOMEM;
        for (int64_t i = 0; !rc && i < hi; i++) touched[c[i].tensor] |= c[i].sign != 0;
        for (int i = 0; !rc && i < qm->ntensors; i++) {
            if (!touched[i]) continue;
            rc = pg_qtensor_measure(&qm->t[i], m->params + m->tensors[i].offset, pg_qtensor_hessian(&qm->t[i], calib, m));
        }
        free(touched);
    } else {
        set_count(qm, c, &cur, 0);
    }
    free(c);
    return rc;
}
