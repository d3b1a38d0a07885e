/* eval.c: the standard val_bpb evaluation (see eval.h). */
#include "eval.h"

#include "audit.h"
#include "err.h"
#include "progress.h"
#include "xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int pg_eval_windows(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut, int64_t s, int b,
                    int32_t *x, int32_t *y, float *losses, struct pg_eval_result *r)
{
    size_t nt = (size_t)b * (size_t)v->seq_len;
    PG_TRY(pg_val_windows(v, s, b, x, y));
    /* The model's vocabulary covers the byte tables (lut->n = max(tokenizer, model)), so one check
     * guards both the embedding and the tables. */
    PG_TRY(pg_model_check_ids(m, x, nt));
    PG_TRY(pg_model_check_ids(m, y, nt));
    pg_model_forward(m, x, y, b, losses);
    /* A synchronization point: the losses are on the host now. A device backend's failure in this
     * batch (or before it) is reported here, before its losses are summed (lib/backend.h status). */
    if (m->be->status) PG_TRY(m->be->status());
    uint64_t pos0 = (uint64_t)s * (uint64_t)v->seq_len + 1; /* the stream position of y[0] */
    for (size_t i = 0; i < nt; i++) {
        r->nll_sum += losses[i];
        r->bytes += pg_bpb_target_bytes(lut, pos0 + i, x[i], y[i]);
    }
    r->tokens += (double)nt;
    return 0;
}

int pg_eval_head_open(struct pg_eval_head *h, struct pg_model *m)
{
    memset(h, 0, sizeof *h);
    if (m->cfg.softcap_poly5) return pg_error(PG_E_INVAL, "host distributions support the tanh softcap only, not poly5");
    h->v = m->v, h->d = m->d, h->cap = m->cfg.logit_softcap;
    size_t n = (size_t)h->v * (size_t)h->d;
    h->w = pg_malloc(n * sizeof *h->w);
    if (!h->w) return PG_E_NOMEM;
    int t = m->t_head >= 0 ? m->t_head : m->t_emb;
    pg_real *tmp = sizeof(pg_real) == sizeof(float) ? (pg_real *)h->w : pg_malloc(n * sizeof *tmp);
    if (!tmp) return PG_E_NOMEM;
    m->be->download(tmp, m->params + m->tensors[t].offset, n * sizeof *tmp);
    if ((void *)tmp != (void *)h->w) {
        for (size_t i = 0; i < n; i++) h->w[i] = (float)tmp[i];
        free(tmp);
    }
    return 0;
}

void pg_eval_head_close(struct pg_eval_head *h)
{
    free(h->w);
    memset(h, 0, sizeof *h);
}

int pg_eval_logdist(struct pg_model *m, const struct pg_eval_head *h, int row, int j, double temperature,
                    double *logp)
{
    int d = h->d;
    pg_real *y = pg_malloc((size_t)d * sizeof *y);
    if (!y) return PG_E_NOMEM;
    m->be->download(y, m->yf + ((size_t)row * (size_t)m->t + (size_t)j) * (size_t)d, (size_t)d * sizeof *y);
    double mx = -INFINITY;
    for (int k = 0; k < h->v; k++) {
        const float *e = h->w + (size_t)k * (size_t)d;
        double z = 0;
        for (int i = 0; i < d; i++) z += (double)y[i] * (double)e[i];
        if (h->cap > 0) z = h->cap * tanh(z / h->cap);
        logp[k] = z / temperature;
        if (logp[k] > mx) mx = logp[k];
    }
    double s = 0;
    for (int k = 0; k < h->v; k++) s += exp(logp[k] - mx);
    double lse = mx + log(s);
    for (int k = 0; k < h->v; k++) logp[k] -= lse;
    free(y);
    return 0;
}

void pg_slide_init(struct pg_slide *sl, int64_t usable, int L, int S)
{
    *sl = (struct pg_slide){.usable = usable, .ws = 0, .L = L, .S = S, .done = 0};
}

int pg_slide_next(struct pg_slide *sl, int64_t *ws, int *j0)
{
    if (sl->done >= sl->usable) return 0;
    int64_t w = sl->ws;
    if (w + sl->L > sl->usable) w = sl->usable - sl->L; /* the last window ends at the last target */
    *ws = w;
    *j0 = (int)(sl->done - w); /* targets w+1..done were scored by earlier windows */
    sl->done = w + sl->L;
    sl->ws += sl->S;
    return 1;
}

int64_t pg_slide_count(int64_t usable, int L, int S)
{
    struct pg_slide sl;
    pg_slide_init(&sl, usable, L, S);
    int64_t n = 0, ws;
    int j0;
    while (pg_slide_next(&sl, &ws, &j0)) n++;
    return n;
}

int pg_eval_sliding(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut, int stride,
                    int batch_seqs, int progress, float *losses_out, struct pg_eval_result *r)
{
    return pg_eval_sliding_ex(m, v, lut, stride, batch_seqs, progress, 1.0, NULL, losses_out, r);
}

int pg_eval_sliding_ex(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut, int stride,
                       int batch_seqs, int progress, double temperature, struct pg_audit *audit, float *losses_out,
                       struct pg_eval_result *r)
{
    memset(r, 0, sizeof *r);
    if (!(temperature > 0)) return pg_error(PG_E_INVAL, "temperature %g: must be positive", temperature);
    int L = v->seq_len;
    if (batch_seqs < 1 || batch_seqs > m->max_b || L != m->t)
        return pg_error(PG_E_INVAL, "evaluation batch of %d x %d tokens does not fit the model's %d x %d", batch_seqs,
                        L, m->max_b, m->t);
    if (stride < 1 || stride > L) return pg_error(PG_E_INVAL, "--stride %d is outside [1, %d]", stride, L);
    size_t n = (size_t)batch_seqs * (size_t)L;
    int32_t *x = pg_malloc(n * sizeof *x), *y = pg_malloc(n * sizeof *y);
    float *losses = pg_malloc(n * sizeof *losses);
    int64_t *wss = pg_malloc((size_t)batch_seqs * sizeof *wss);
    int *j0s = pg_malloc((size_t)batch_seqs * sizeof *j0s);
    struct pg_eval_head head = {0};
    double *logp = NULL;
    if (!x || !y || !losses || !wss || !j0s) {
        free(x), free(y), free(losses), free(wss), free(j0s);
        return PG_E_NOMEM;
    }
    int rc = 0;
    if (temperature != 1.0) {
        rc = pg_eval_head_open(&head, m);
        if (!rc && !(logp = pg_malloc((size_t)m->v * sizeof *logp))) rc = PG_E_NOMEM;
        if (rc) {
            free(x), free(y), free(losses), free(wss), free(j0s), free(logp);
            pg_eval_head_close(&head);
            return rc;
        }
    }
    double t0 = pg_now();
    struct pg_progress prog;
    pg_progress_init(&prog, "eval", "tok", (uint64_t)v->usable, progress);
    struct pg_slide sl;
    pg_slide_init(&sl, v->usable, L, stride);
    for (;;) {
        int b = 0;
        while (b < batch_seqs && pg_slide_next(&sl, &wss[b], &j0s[b])) {
            for (int j = 0; j < L; j++) {
                x[(size_t)b * L + j] = v->tokens[wss[b] + j];
                y[(size_t)b * L + j] = v->tokens[wss[b] + j + 1];
            }
            b++;
        }
        if (!b) break;
        size_t nt = (size_t)b * (size_t)L;
        if ((rc = pg_model_check_ids(m, x, nt)) || (rc = pg_model_check_ids(m, y, nt))) break;
        pg_model_forward(m, x, y, b, losses);
        if (m->be->status && (rc = m->be->status())) break;
        for (int w = 0; w < b && !rc; w++)
            for (int j = j0s[w]; j < L; j++) {
                size_t i = (size_t)w * L + j;
                uint64_t p = (uint64_t)wss[w] + (uint64_t)j + 1; /* the target's stream position */
                if (logp) {
                    if ((rc = pg_eval_logdist(m, &head, w, j, temperature, logp))) break;
                    losses[i] = (float)-logp[y[i]];
                }
                if (audit) pg_audit_scored(audit, (int64_t)p, (int64_t)p + 1);
                r->nll_sum += losses[i];
                r->bytes += pg_bpb_target_bytes(lut, p, x[i], y[i]);
                r->tokens += 1;
                if (losses_out) losses_out[p - 1] = losses[i];
            }
        if (rc) break;
        pg_progress_update(&prog, (uint64_t)r->tokens);
    }
    pg_progress_finish(&prog);
    free(x), free(y), free(losses), free(wss), free(j0s), free(logp);
    pg_eval_head_close(&head);
    if (rc) return rc;
    r->val_loss = r->tokens > 0 ? r->nll_sum / r->tokens : 0;
    r->val_bpb = r->bytes > 0 ? r->nll_sum / (log(2.0) * r->bytes) : 0;
    r->seconds = pg_now() - t0;
    return 0;
}

struct audit_ctx {
    struct pg_model *m;
    struct pg_eval_head head;
    int64_t usable;
    int L, S;
    double temperature;
    int32_t *x, *y;
};

static int audit_dist(void *ctx, const uint16_t *tokens, int64_t p, double *logp)
{
    struct audit_ctx *c = ctx;
    int L = c->L;
    int64_t k = p <= L ? 0 : (p - L + c->S - 1) / c->S; /* the first window that holds p */
    int64_t ws = k * c->S;
    if (ws > c->usable - L) ws = c->usable - L;
    for (int j = 0; j < L; j++) c->x[j] = tokens[ws + j], c->y[j] = tokens[ws + j + 1];
    PG_TRY(pg_model_check_ids(c->m, c->x, (size_t)L));
    PG_TRY(pg_model_check_ids(c->m, c->y, (size_t)L));
    pg_model_forward(c->m, c->x, c->y, 1, NULL);
    if (c->m->be->status) PG_TRY(c->m->be->status());
    return pg_eval_logdist(c->m, &c->head, 0, (int)(p - 1 - ws), c->temperature, logp);
}

int pg_eval_audit_dists(struct pg_model *m, struct pg_val_set *v, int stride, double temperature,
                        struct pg_audit *a, int samples, uint64_t seed)
{
    struct audit_ctx c = {.m = m, .usable = v->usable, .L = v->seq_len, .S = stride, .temperature = temperature};
    PG_TRY(pg_eval_head_open(&c.head, m));
    c.x = pg_malloc((size_t)c.L * sizeof *c.x);
    c.y = pg_malloc((size_t)c.L * sizeof *c.y);
    int rc = c.x && c.y ? 0 : PG_E_NOMEM;
    /* The tokens the window holds from p on: reach L covers them all. */
    if (!rc) rc = pg_audit_check_dists(a, audit_dist, &c, v->tokens, v->usable + 1, c.L, samples, 1e-6, seed);
    free(c.x), free(c.y);
    pg_eval_head_close(&c.head);
    return rc;
}

int pg_eval_val(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut, int rank, int world,
                int batch_seqs, int progress, struct pg_eval_result *r)
{
    memset(r, 0, sizeof *r);
    int t = v->seq_len;
    if (batch_seqs < 1 || batch_seqs > m->max_b || t != m->t)
        return pg_error(PG_E_INVAL, "evaluation batch of %d x %d tokens does not fit the model's %d x %d", batch_seqs,
                        t, m->max_b, m->t);
    int64_t s0, s1;
    PG_TRY(pg_val_rank_range(v, rank, world, &s0, &s1));
    size_t n = (size_t)batch_seqs * (size_t)t;
    int32_t *x = pg_malloc(n * sizeof *x), *y = pg_malloc(n * sizeof *y);
    float *losses = pg_malloc(n * sizeof *losses);
    if (!x || !y || !losses) {
        free(x), free(y), free(losses);
        return PG_E_NOMEM;
    }
    double t0 = pg_now();
    struct pg_progress prog;
    pg_progress_init(&prog, "eval", "tok", (uint64_t)(s1 - s0) * (uint64_t)t, progress);
    int rc = 0;
    for (int64_t s = s0; s < s1 && !rc; s += batch_seqs) {
        int b = (int)(s1 - s < batch_seqs ? s1 - s : batch_seqs);
        if ((rc = pg_eval_windows(m, v, lut, s, b, x, y, losses, r))) break;
        pg_progress_update(&prog, (uint64_t)r->tokens);
    }
    pg_progress_finish(&prog);
    free(x), free(y), free(losses);
    if (rc) return rc;
    r->val_loss = r->tokens > 0 ? r->nll_sum / r->tokens : 0;
    r->val_bpb = r->bytes > 0 ? r->nll_sum / (log(2.0) * r->bytes) : 0;
    r->seconds = pg_now() - t0;
    return 0;
}
