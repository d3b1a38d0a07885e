/* sgd.c: SGD with momentum (see sgd.h). */
#include "sgd.h"

#include "err.h"
#include "xio.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements a tensor's loop runs on one thread. */
#define PAR_MIN 16384

int pg_sgd_init(struct pg_sgd *s, const struct pg_opt_tensor *tensors, size_t n, double momentum)
{
    return pg_sgd_init_on(s, NULL, tensors, n, momentum);
}

int pg_sgd_init_on(struct pg_sgd *s, const struct pg_backend *be, const struct pg_opt_tensor *tensors, size_t n,
                   double momentum)
{
    memset(s, 0, sizeof *s);
    if (pg_on_device(be) && !be->sgd_update)
        return pg_error(PG_E_UNSUPPORTED, "SGD: the %s backend has no optimizer operations", be->name);
    if (!(momentum >= 0 && momentum < 1)) return pg_error(PG_E_INVAL, "SGD momentum %g: must be in [0, 1)", momentum);
    if (n && !tensors) return pg_error(PG_E_INVAL, "SGD: tensor list is NULL");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (tensors[i].n && (!tensors[i].param || !tensors[i].grad))
            return pg_error(PG_E_INVAL, "SGD: tensor %zu has no parameter or gradient array", i);
        if (tensors[i].n > SIZE_MAX / sizeof(pg_real) - total)
            return pg_error(PG_E_INVAL, "SGD: %zu tensors are too large for this machine", n);
        total += tensors[i].n;
    }
    s->t = pg_malloc((n ? n : 1) * sizeof *s->t);
    s->off = pg_malloc((n ? n : 1) * sizeof *s->off);
    s->be = be;
    s->buf = pg_on_device(be) ? be->alloc((total ? total : 1) * sizeof *s->buf)
                              : pg_calloc(total ? total : 1, sizeof *s->buf);
    if (!s->t || !s->off || !s->buf) {
        int dev = pg_on_device(be) && s->t && s->off; /* the device's own message says how much */
        pg_sgd_free(s);
        if (dev && be->status() == PG_E_NOMEM) return PG_E_NOMEM;
        return pg_error(PG_E_NOMEM, "SGD: out of memory for the momentum of %zu parameters", total);
    }
    if (n) memcpy(s->t, tensors, n * sizeof *s->t);
    for (size_t i = 0, o = 0; i < n; o += tensors[i].n, i++) s->off[i] = o;
    s->nt = n;
    s->total = total;
    s->momentum = momentum;
    return 0;
}

void pg_sgd_step(struct pg_sgd *s, double lr)
{
    const pg_real mu = (pg_real)s->momentum, a = (pg_real)lr;
    if (pg_on_device(s->be)) {
        for (size_t k = 0; k < s->nt; k++)
            s->be->sgd_update(s->t[k].param, s->t[k].grad, s->buf + s->off[k], s->t[k].n, mu, a);
        s->step++;
        return;
    }
    for (size_t k = 0; k < s->nt; k++) {
        pg_real *p = s->t[k].param, *b = s->buf + s->off[k];
        const pg_real *g = s->t[k].grad;
        size_t n = s->t[k].n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            b[i] = mu * b[i] + g[i];
            p[i] -= a * b[i];
        }
    }
    s->step++;
}

void pg_sgd_reset(struct pg_sgd *s)
{
    if (s->buf && pg_on_device(s->be)) s->be->zero(s->buf, s->total);
    else if (s->buf) memset(s->buf, 0, (s->total ? s->total : 1) * sizeof *s->buf);
    s->step = 0;
}

void pg_sgd_free(struct pg_sgd *s)
{
    free(s->t);
    free(s->off);
    if (pg_on_device(s->be)) {
        if (s->buf) s->be->free(s->buf);
    } else {
        free(s->buf);
    }
    memset(s, 0, sizeof *s);
}
