/* ttt.c: score-first global test-time training (see ttt.h).
 *
 * The two halves are separate functions on purpose: score_chunk() only runs forwards and adds
 * to the sums, and is the only code that advances the frontier `scored_seqs`; train_chunk()
 * only ever sees a chunk that lies wholly below that frontier. */
#include "ttt.h"

#include "err.h"
#include "ngram.h"
#include "progress.h"
#include "sgd.h"
#include "xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct pg_ttt {
    struct pg_model *m;
    const struct pg_val_set *v;
    const struct pg_bpb_lut *lut;
    struct pg_ttt_params p;
    struct pg_ttt_hooks h;
    int L;
    int64_t nseq, chunk_seqs, chunks;
    int64_t scored_seqs;  /* the frontier: windows [0, scored_seqs) have been scored, and no other */
    int64_t next_chunk;   /* the chunk pg_ttt_score_next scores next */
    int64_t trained, steps;
    struct pg_eval_result sums; /* nll_sum, tokens, bytes over the targets scored so far */
    double score_s, train_s;
    int32_t *x, *y;
    float *losses;
    struct pg_opt_tensor *all; /* the trained tensors (all, or the control ones), for clipping and SGD */
    size_t nall;
    pg_real *avg, *keep;       /* Polyak: the average, and the trained weights while avg is scored */
    struct pg_sgd sgd;
    struct pg_progress prog;
    uint64_t work;        /* tokens through a forward so far (scored + trained), for the ETA */
    struct pg_ngram_audit au; /* hooks.audit's live checks */
    struct pg_ngram *ng;      /* params.ngram's state, or NULL */
    double *logp;             /* with ng: [L, V] */
};

void pg_ttt_params_default(struct pg_ttt_params *p)
{
    p->chunk_tokens = 32768;
    p->epochs = 3;
    p->lr = 0.005;
    p->momentum = 0.9;
    p->grad_clip = 1.0;
    p->batch_seqs = 8;
    p->step_seqs = 32;
    p->progress = 0;
    p->control_only = 0;
    p->polyak = 0;
    p->ngram = NULL;
    p->temperature = 1.0;
}

static void chunk_range(const struct pg_ttt *s, int64_t c, int64_t *q0, int64_t *q1)
{
    *q0 = c * s->chunk_seqs;
    *q1 = *q0 + s->chunk_seqs < s->nseq ? *q0 + s->chunk_seqs : s->nseq;
}

int pg_ttt_open(struct pg_ttt **out, struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
                const struct pg_ttt_params *p, const struct pg_ttt_hooks *hooks)
{
    *out = NULL;
    int L = v->seq_len;
    if (p->chunk_tokens < 1)
        return pg_error(PG_E_INVAL, "TTT chunk of %lld tokens: must be at least 1", (long long)p->chunk_tokens);
    if (p->epochs < 0) return pg_error(PG_E_INVAL, "TTT epochs %d: must be at least 0", p->epochs);
    if (!(p->lr >= 0) || !isfinite(p->lr)) return pg_error(PG_E_INVAL, "TTT learning rate %g: must be >= 0", p->lr);
    if (!(p->momentum >= 0 && p->momentum < 1))
        return pg_error(PG_E_INVAL, "TTT momentum %g: must be in [0, 1)", p->momentum);
    if (!(p->grad_clip >= 0) || !isfinite(p->grad_clip))
        return pg_error(PG_E_INVAL, "TTT gradient clip %g: must be >= 0", p->grad_clip);
    if (!(p->polyak >= 0 && p->polyak < 1))
        return pg_error(PG_E_INVAL, "TTT Polyak decay %g: must be in [0, 1)", p->polyak);
    if (p->step_seqs < 1) return pg_error(PG_E_INVAL, "TTT step of %d windows: must be at least 1", p->step_seqs);
    if (!(p->temperature > 0) || !isfinite(p->temperature))
        return pg_error(PG_E_INVAL, "TTT temperature %g: must be positive", p->temperature);
    if (p->temperature != 1.0 && p->ngram && (p->ngram->tilt || p->ngram->mix || p->ngram->cache))
        return pg_error(PG_E_INVAL, "TTT: a temperature with an n-gram mode (which scores the model's own distribution)");
    if (p->batch_seqs < 1 || p->batch_seqs > m->max_b || L != m->t)
        return pg_error(PG_E_INVAL, "TTT batch of %d x %d tokens does not fit the model's %d x %d", p->batch_seqs, L,
                        m->max_b, m->t);
    if (p->epochs > 0 && !m->grads)
        return pg_error(PG_E_INVAL, "TTT with epochs > 0 needs a model set up for training");
    if (pg_val_num_seqs(v) < 1) return pg_error(PG_E_INVAL, "TTT: the val set holds no window");
    struct pg_ttt *s = pg_calloc(1, sizeof *s);
    if (!s) return PG_E_NOMEM;
    s->m = m, s->v = v, s->lut = lut, s->p = *p, s->L = L;
    if (hooks) s->h = *hooks;
    s->nseq = pg_val_num_seqs(v);
    s->chunk_seqs = p->chunk_tokens / L > 0 ? p->chunk_tokens / L : 1;
    s->chunks = (s->nseq + s->chunk_seqs - 1) / s->chunk_seqs;
    size_t n = (size_t)p->batch_seqs * (size_t)L;
    s->x = pg_malloc(n * sizeof *s->x);
    s->y = pg_malloc(n * sizeof *s->y);
    s->losses = pg_malloc(n * sizeof *s->losses);
    int rc = s->x && s->y && s->losses ? 0 : PG_E_NOMEM;
    if (!rc && p->epochs > 0) {
        if (!(s->all = pg_calloc((size_t)m->ntensors, sizeof *s->all))) rc = PG_E_NOMEM;
        for (int i = 0; i < m->ntensors && !rc; i++) {
            const struct pg_tensor *t = &m->tensors[i];
            if (p->control_only && t->kind != PG_TENSOR_CONTROL) continue;
            s->all[s->nall++] = (struct pg_opt_tensor){m->params + t->offset, m->grads + t->offset, (int)t->shape[0],
                                               t->ndim == 2 ? (int)t->shape[1] : 0, t->numel};
        }
        if (!rc && s->nall == 0) rc = pg_error(PG_E_INVAL, "TTT --control-only: the model has no control tensor");
        if (!rc) rc = pg_sgd_init_on(&s->sgd, m->be, s->all, s->nall, p->momentum);
        if (!rc && p->polyak > 0) {
            s->avg = m->be->alloc(m->nparams * sizeof *s->avg);
            s->keep = m->be->alloc(m->nparams * sizeof *s->keep);
            if (!s->avg || !s->keep) rc = pg_error(PG_E_NOMEM, "TTT Polyak average: out of memory");
            else m->be->copy(s->avg, m->params, m->nparams);
        }
    }
    if (!rc && (s->h.audit || p->ngram) && !m->be->host_memory)
        rc = pg_error(PG_E_INVAL, "TTT: the live audit and the n-gram modes run on the CPU backend only");
    if (!rc && p->ngram && (p->ngram->tilt || p->ngram->mix || p->ngram->cache)) {
        if (!(rc = pg_ngram_open(&s->ng, m->v, p->ngram)) && !(s->logp = pg_malloc((size_t)L * m->v * sizeof *s->logp)))
            rc = PG_E_NOMEM;
        if (!rc) rc = pg_ngram_push(s->ng, NULL, v->tokens[0]); /* the stream's first token: an input only */
        if (!rc && s->h.updated) s->h.updated(s->h.ctx, -1, 0, 1);
    }
    if (!rc && s->h.audit)
        rc = pg_ngram_audit_open(&s->au, s->h.audit, v->usable + 1, s->h.audit_samples, 0x5eed, L, m->v);
    s->au.temperature = p->temperature; /* what the run scores */
    if (rc) {
        pg_ttt_close(s);
        return rc;
    }
    /* Work for the ETA: every target is scored once, and every window but the last chunk's is
     * trained on `epochs` times. */
    int64_t q0, q1;
    chunk_range(s, s->chunks - 1, &q0, &q1);
    uint64_t total = (uint64_t)v->usable + (uint64_t)p->epochs * (uint64_t)q0 * (uint64_t)L;
    pg_progress_init(&s->prog, "ttt", "tok", total, p->progress);
    *out = s;
    return 0;
}

/* The live audit's samples among the targets of windows [f, f + b), from forwards of their own
 * windows: before the scoring forward, whose activations they would replace. */
static int audit_windows(struct pg_ttt *s, int64_t f, int b)
{
    int L = s->L;
    for (int64_t q = f; q < f + b && s->h.audit; q++)
        for (int j = 0; j < L; j++)
            PG_TRY(pg_ngram_audit_at(&s->au, NULL, s->m, s->v->tokens, q * L, L, q * L + j + 1, NULL));
    return 0;
}

/* (a) with an n-gram mode: window q's targets, one by one through the tables, from the model's
 * distribution (as pg_ngram_run) */
static int score_window_ngram(struct pg_ttt *s, int64_t c, int64_t q)
{
    struct pg_model *m = s->m;
    int L = s->L, V = m->v;
    PG_TRY(pg_val_window(s->v, q, s->x, s->y));
    PG_TRY(pg_model_check_ids(m, s->x, (size_t)L));
    PG_TRY(pg_model_check_ids(m, s->y, (size_t)L));
    PG_TRY(pg_ngram_model_logp(m, s->x, s->y, L, s->logp));
    for (int j = 0; j < L; j++) {
        int64_t pos = q * L + j + 1;
        PG_TRY(pg_ngram_audit_at(&s->au, s->ng, m, s->v->tokens, q * L, L, pos, NULL));
        double nll = pg_ngram_score(s->ng, s->logp + (size_t)j * V, s->y[j]);
        s->sums.nll_sum += nll;
        s->sums.bytes += pg_bpb_target_bytes(s->lut, (uint64_t)pos, s->x[j], s->y[j]);
        if (s->h.token_losses) s->h.token_losses[pos - 1] = (float)nll;
        if (s->h.scored) s->h.scored(s->h.ctx, c, pos, pos + 1);
        PG_TRY(pg_ngram_push(s->ng, s->logp + (size_t)j * V, s->y[j])); /* only now do the tables see y */
        if (s->h.updated) s->h.updated(s->h.ctx, c, pos - 16, pos + 1); /* the contexts, and y */
    }
    s->sums.tokens += L;
    s->work += (uint64_t)L;
    pg_progress_update(&s->prog, s->work);
    return 0;
}

/* (a) with a temperature: the forward's final hidden states give each target's tempered
 * distribution on the host (eval.h's pg_eval_logdist, with the head as the model now holds it) */
static int score_chunk_tempered(struct pg_ttt *s, int64_t c, int64_t q0, int64_t q1)
{
    struct pg_model *m = s->m;
    int L = s->L;
    struct pg_eval_head head;
    PG_TRY(pg_eval_head_open(&head, m));
    double *logp = pg_malloc((size_t)m->v * sizeof *logp);
    int rc = logp ? 0 : PG_E_NOMEM;
    for (int64_t f = q0; f < q1 && !rc; f += s->p.batch_seqs) {
        int b = (int)(q1 - f < s->p.batch_seqs ? q1 - f : s->p.batch_seqs);
        size_t nt = (size_t)b * (size_t)L;
        if ((rc = audit_windows(s, f, b)) || (rc = pg_val_windows(s->v, f, b, s->x, s->y)) || (rc = pg_model_check_ids(m, s->x, nt)) ||
            (rc = pg_model_check_ids(m, s->y, nt)))
            break;
        pg_model_forward(m, s->x, s->y, b, NULL);
        if (m->be->status && (rc = m->be->status())) break;
        int64_t begin = f * L + 1;
        for (size_t i = 0; i < nt && !rc; i++) {
            if ((rc = pg_eval_logdist(m, &head, (int)(i / (size_t)L), (int)(i % (size_t)L), s->p.temperature, logp)))
                break;
            double nll = -logp[s->y[i]];
            s->sums.nll_sum += nll;
            s->sums.bytes += pg_bpb_target_bytes(s->lut, (uint64_t)begin + i, s->x[i], s->y[i]);
            if (s->h.token_losses) s->h.token_losses[begin - 1 + (int64_t)i] = (float)nll;
        }
        if (rc) break;
        s->sums.tokens += (double)nt;
        if (s->h.scored) s->h.scored(s->h.ctx, c, begin, begin + (int64_t)nt);
        s->work += nt;
        pg_progress_update(&s->prog, s->work);
    }
    free(logp);
    pg_eval_head_close(&head);
    return rc;
}

/* (a) Scores windows [q0, q1) with the model as it is, adding to the sums in window order. */
static int score_chunk(struct pg_ttt *s, int64_t c, int64_t q0, int64_t q1)
{
    struct pg_model *m = s->m;
    int L = s->L;
    if (s->ng) {
        for (int64_t q = q0; q < q1; q++) PG_TRY(score_window_ngram(s, c, q));
        return 0;
    }
    if (s->p.temperature != 1.0) return score_chunk_tempered(s, c, q0, q1);
    for (int64_t f = q0; f < q1; f += s->p.batch_seqs) {
        int b = (int)(q1 - f < s->p.batch_seqs ? q1 - f : s->p.batch_seqs);
        size_t nt = (size_t)b * (size_t)L;
        PG_TRY(audit_windows(s, f, b));
        PG_TRY(pg_eval_windows(m, s->v, s->lut, f, b, s->x, s->y, s->losses, &s->sums));
        int64_t begin = f * L + 1;
        if (s->h.token_losses) memcpy(s->h.token_losses + (begin - 1), s->losses, nt * sizeof *s->losses);
        if (s->h.scored) s->h.scored(s->h.ctx, c, begin, begin + (int64_t)nt);
        s->work += nt;
        pg_progress_update(&s->prog, s->work);
    }
    return 0;
}

int pg_ttt_score_next(struct pg_ttt *s, struct pg_ttt_chunk *c)
{
    if (s->next_chunk >= s->chunks) return 1;
    int64_t q0, q1;
    chunk_range(s, s->next_chunk, &q0, &q1);
    double t0 = pg_now();
    struct pg_model *m = s->m;
    if (s->avg && s->trained > 0) { /* score with the average, keep the trained weights aside */
        m->be->copy(s->keep, m->params, m->nparams);
        m->be->copy(m->params, s->avg, m->nparams);
    }
    int rc = score_chunk(s, s->next_chunk, q0, q1);
    if (s->avg && s->trained > 0) m->be->copy(m->params, s->keep, m->nparams);
    if (rc) return rc;
    s->score_s += pg_now() - t0;
    /* Only now, with every target of the chunk counted, may training see it. */
    s->scored_seqs = q1;
    *c = (struct pg_ttt_chunk){s->next_chunk++, q0, q1};
    return 0;
}

/* (b) `epochs` passes over windows [q0, q1), which lie below the frontier (checked by the caller). */
static int train_chunk(struct pg_ttt *s, int64_t c, int64_t q0, int64_t q1, double lr)
{
    struct pg_model *m = s->m;
    int L = s->L;
    for (int e = 0; e < s->p.epochs; e++)
        for (int64_t s0 = q0; s0 < q1; s0 += s->p.step_seqs) {
            int64_t s1 = q1 - s0 < s->p.step_seqs ? q1 : s0 + s->p.step_seqs;
            double scale = 1.0 / ((double)(s1 - s0) * L), loss = 0;
            pg_model_zero_grad(m);
            for (int64_t f = s0; f < s1; f += s->p.batch_seqs) {
                int b = (int)(s1 - f < s->p.batch_seqs ? s1 - f : s->p.batch_seqs);
                size_t nt = (size_t)b * (size_t)L;
                PG_TRY(pg_val_windows(s->v, f, b, s->x, s->y));
                PG_TRY(pg_model_check_ids(m, s->x, nt));
                PG_TRY(pg_model_check_ids(m, s->y, nt));
                loss += pg_model_forward(m, s->x, s->y, b, NULL) * scale;
                pg_model_backward(m, scale);
                s->work += nt;
                pg_progress_update(&s->prog, s->work);
            }
            PG_TRY(m->be->status()); /* a device's failure before a NaN it may have caused */
            if (!isfinite(loss))
                return pg_error(PG_E_FORMAT, "TTT chunk %lld, epoch %d: the training loss is %g: diverged (lower --lr)",
                                (long long)c, e + 1, loss);
            if (s->p.grad_clip > 0) pg_clip_grad_norm_on(m->be, s->all, s->nall, s->p.grad_clip);
            pg_sgd_step(&s->sgd, lr);
            if (s->avg) { /* avg = d·avg + (1 − d)·θ */
                m->be->scale(s->avg, s->p.polyak, m->nparams);
                m->be->axpy(s->avg, 1 - s->p.polyak, m->params, m->nparams);
            }
            s->steps++;
            if (s->h.updated) s->h.updated(s->h.ctx, c, s0 * L, s1 * L + 1);
        }
    return 0;
}

int pg_ttt_train(struct pg_ttt *s, const struct pg_ttt_chunk *c)
{
    int64_t q0, q1;
    if (c->index < 0 || c->index >= s->chunks)
        return pg_error(PG_E_INVAL, "TTT: no chunk %lld (there are %lld)", (long long)c->index, (long long)s->chunks);
    chunk_range(s, c->index, &q0, &q1);
    if (c->seq_begin != q0 || c->seq_end != q1)
        return pg_error(PG_E_INVAL, "TTT: windows [%lld, %lld) are not chunk %lld", (long long)c->seq_begin,
                        (long long)c->seq_end, (long long)c->index);
    if (q1 > s->scored_seqs)
        return pg_error(PG_E_INVAL, "TTT: chunk %lld has not been scored: training on it would train on the future",
                        (long long)c->index);
    if (c->index == s->chunks - 1)
        return pg_error(PG_E_INVAL, "TTT: chunk %lld is the last: no token is left to benefit", (long long)c->index);
    if (s->p.epochs == 0) return 0;
    const double pi = 3.14159265358979323846;
    double lr = s->p.lr * 0.5 * (1 + cos(pi * (double)c->index / (double)(s->chunks > 1 ? s->chunks - 1 : 1)));
    double t0 = pg_now();
    int rc = train_chunk(s, c->index, q0, q1, lr);
    s->train_s += pg_now() - t0;
    if (!rc) s->trained++;
    return rc;
}

void pg_ttt_result(const struct pg_ttt *s, struct pg_ttt_result *r)
{
    memset(r, 0, sizeof *r);
    const struct pg_eval_result *e = &s->sums;
    r->nll_sum = e->nll_sum, r->tokens = e->tokens, r->bytes = e->bytes;
    r->val_loss = e->tokens > 0 ? e->nll_sum / e->tokens : 0;
    r->val_bpb = e->bytes > 0 ? e->nll_sum / (log(2.0) * e->bytes) : 0;
    r->chunks = s->chunks, r->chunk_seqs = s->chunk_seqs;
    r->chunks_scored = s->next_chunk, r->chunks_trained = s->trained, r->steps = s->steps;
    r->score_seconds = s->score_s, r->train_seconds = s->train_s;
}

void pg_ttt_close(struct pg_ttt *s)
{
    if (!s) return;
    pg_progress_finish(&s->prog); /* a no-op unless drawing */
    pg_sgd_free(&s->sgd);
    free(s->all);
    if (s->avg) s->m->be->free(s->avg);
    if (s->keep) s->m->be->free(s->keep);
    free(s->x), free(s->y), free(s->losses);
    pg_ngram_audit_close(&s->au);
    pg_ngram_close(s->ng);
    free(s->logp);
    free(s);
}

int pg_ttt_run(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
               const struct pg_ttt_params *p, const struct pg_ttt_hooks *hooks, struct pg_ttt_result *r)
{
    memset(r, 0, sizeof *r);
    struct pg_ttt *s;
    PG_TRY(pg_ttt_open(&s, m, v, lut, p, hooks));
    struct pg_ttt_chunk c;
    int rc;
    while ((rc = pg_ttt_score_next(s, &c)) == 0)
        if (c.index < s->chunks - 1 && p->epochs > 0 && (rc = pg_ttt_train(s, &c))) break;
    pg_ttt_result(s, r);
    pg_ttt_close(s);
    return rc < 0 ? rc : 0;
}
