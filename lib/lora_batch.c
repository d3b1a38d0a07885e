/* lora_batch.c: per-document LoRA TTT with the documents batched by length (spec §6.3: the
 * records sort the documents by length and run 64 at a time, each with its own adapters).
 *
 * The documents, chunks, windows and update rule are lora.h's; what changes is the schedule.
 * The documents are sorted by length, longest first (ties in stream order), and taken in
 * batches of N = batch_docs. Each document of a batch has a slot: its own A, B and AdamW state.
 * For chunk index c = 0, 1, ... the batch's documents that have a chunk c form one forward of
 * b sequences: row q holds its document's window [st, c1), left-aligned and padded at the end to
 * the longest window of the step (causal attention: the padding changes nothing before it). The
 * chunk's targets are scored from that forward; then every document whose chunk was not its
 * last takes one AdamW step on the mean nll of its chunk, whose gradient the same forward gives:
 * the backward weights each position's loss by 1/k on the chunk's k targets of a training
 * document and 0 everywhere else (the model's side loss_weight), and the sequences of a batch
 * touch each other nowhere (attention stays in its row), so slot q's gradient is its document's
 * alone. One forward and one backward a chunk, against lora.c's two and two.
 *
 * The adapters cannot fold into shared weights here; they run beside them through the model's
 * side paths (model.h): y_q += s·(x_q·Aᵀ)·Bᵀ for each sequence q, and in the backward
 * ∂B += s·dyᵀ·(x·Aᵀ), du = s·dy·B, ∂A += duᵀ·x, dx += du·A. The base weights stay W₀.
 *
 * Warm start: a slot's A carries from its previous document (warm_a), as the records' batched
 * adapters do; with warm_a = 0 every document starts from the same A and the documents are
 * independent, so the scores equal lora.c's to rounding (the test's check).
 *
 * The order in which targets are scored is no longer the stream's; each is still scored once,
 * before any update that reads it (the hooks report both, per document). The live audit checks
 * its sampled targets as their chunk comes up, with their own document's adapters. */
#include "lora.h"

#include "audit.h"
#include "err.h"
#include "progress.h"
#include "rng.h"
#include "xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct slot_adapter {
    pg_real *a, *b, *ma, *va, *mb, *vb, *ga, *gb; /* A [r,in], B [out,r], moments, gradients */
};

struct batch {
    struct pg_model *m;
    struct pg_lora_params p;
    int n, r, nslots;
    double s;
    int *adapter_of;          /* [m->ntensors]: the adapter index of a tensor, or -1 */
    int *in, *out;            /* [n] */
    pg_real *a0;              /* [n] x A's initial value, one after the other (warm_a = 0) */
    size_t *a0_at;
    struct slot_adapter *sa;  /* [slot·n + i] */
    int *live;                /* [slot]: B may be nonzero */
    int64_t *adam_t;          /* [slot] */
    int *seq_slot;            /* [sequence of the current forward]: its slot */
    float *weight;            /* [sequence·t + j]: the loss weight of each position (backward) */
    pg_real *u, *tmp;         /* scratch [window, max(r, out)] */
};

static struct slot_adapter *slot_ad(struct batch *s, int slot, int i) { return &s->sa[(size_t)slot * s->n + i]; }

/* ---- the model's side paths ---- */

static void side_fwd(void *ctx, int tensor, const pg_real *x, pg_real *y, int b, int t, int in, int out)
{
    struct batch *s = ctx;
    int i = s->adapter_of[tensor];
    if (i < 0) return;
    const struct pg_backend *be = s->m->be;
    for (int q = 0; q < b; q++) {
        int slot = s->seq_slot[q];
        if (!s->live[slot]) continue; /* B = 0: nothing to add */
        struct slot_adapter *a = slot_ad(s, slot, i);
        be->matmul_fwd(s->u, x + (size_t)q * t * in, a->a, t, in, s->r);      /* u = x·Aᵀ [t,r] */
        be->matmul_fwd(s->tmp, s->u, a->b, t, s->r, out);                     /* u·Bᵀ [t,out] */
        be->axpy(y + (size_t)q * t * out, s->s, s->tmp, (size_t)t * out);
    }
}

static void side_bwd(void *ctx, int tensor, const pg_real *x, const pg_real *dy, pg_real *dx, int b, int t, int in,
                     int out)
{
    struct batch *s = ctx;
    int i = s->adapter_of[tensor];
    if (i < 0) return;
    const struct pg_backend *be = s->m->be;
    for (int q = 0; q < b; q++) {
        int slot = s->seq_slot[q];
        struct slot_adapter *a = slot_ad(s, slot, i);
        const pg_real *xq = x + (size_t)q * t * in, *dyq = dy + (size_t)q * t * out;
        be->matmul_fwd(s->u, xq, a->a, t, in, s->r); /* u = x·Aᵀ */
        be->scale(s->u, s->s, (size_t)t * s->r);
        be->matmul_bwd(NULL, a->gb, dyq, s->u, NULL, t, s->r, out, 0); /* ∂B += dyᵀ·(s·u) */
        if (!s->live[slot]) continue;                                  /* B = 0: du = 0 */
        be->matmul_bwd(s->tmp, NULL, dyq, NULL, a->b, t, s->r, out, 0); /* du = dy·B [t,r] */
        be->scale(s->tmp, s->s, (size_t)t * s->r);
        be->matmul_bwd(NULL, a->ga, s->tmp, xq, NULL, t, in, s->r, 0);                      /* ∂A += duᵀ·x */
        be->matmul_bwd(dx + (size_t)q * t * in, NULL, s->tmp, NULL, a->a, t, in, s->r, 1); /* dx += du·A */
    }
}

/* ---- the session ---- */

static void batch_free(struct batch *s)
{
    if (s->sa)
        for (size_t k = 0; k < (size_t)s->nslots * s->n; k++) {
            struct slot_adapter *a = &s->sa[k];
            free(a->a), free(a->b), free(a->ma), free(a->va), free(a->mb), free(a->vb), free(a->ga), free(a->gb);
        }
    free(s->sa), free(s->adapter_of), free(s->in), free(s->out), free(s->a0), free(s->a0_at), free(s->live);
    free(s->adam_t), free(s->seq_slot), free(s->weight), free(s->u), free(s->tmp);
}

static int batch_open(struct batch *s, struct pg_model *m, const struct pg_lora_params *p, int slots, int window)
{
    memset(s, 0, sizeof *s);
    s->m = m, s->p = *p, s->r = p->rank, s->nslots = slots, s->s = p->rank > 0 ? p->alpha / p->rank : 0;
    int maxn = 5 * m->nl;
    s->adapter_of = pg_malloc((size_t)m->ntensors * sizeof *s->adapter_of);
    s->in = pg_calloc((size_t)maxn, sizeof *s->in), s->out = pg_calloc((size_t)maxn, sizeof *s->out);
    s->a0_at = pg_calloc((size_t)maxn + 1, sizeof *s->a0_at);
    s->live = pg_calloc((size_t)slots, sizeof *s->live), s->adam_t = pg_calloc((size_t)slots, sizeof *s->adam_t);
    s->seq_slot = pg_calloc((size_t)slots, sizeof *s->seq_slot);
    s->weight = pg_calloc((size_t)slots * window, sizeof *s->weight);
    if (!s->adapter_of || !s->in || !s->out || !s->a0_at || !s->live || !s->adam_t || !s->seq_slot || !s->weight)
        return PG_E_NOMEM;
    for (int k = 0; k < m->ntensors; k++) s->adapter_of[k] = -1;
    if (p->rank == 0) return 0;
    unsigned bits[] = {PG_LORA_Q, PG_LORA_K, PG_LORA_V, PG_LORA_O, PG_LORA_MLP};
    int widest = 1;
    for (int l = 0; l < m->nl; l++) {
        const struct pg_block_params *bp = &m->blk[l];
        int tensors[] = {bp->c_q, bp->c_k, bp->c_v, bp->proj, bp->mlp_proj};
        for (int k = 0; k < 5; k++) {
            if (!(p->targets & bits[k])) continue;
            const struct pg_tensor *t = &m->tensors[tensors[k]];
            s->adapter_of[tensors[k]] = s->n;
            s->out[s->n] = (int)t->shape[0], s->in[s->n] = (int)t->shape[1];
            if (s->out[s->n] > widest) widest = s->out[s->n];
            s->a0_at[s->n + 1] = s->a0_at[s->n] + (size_t)s->r * s->in[s->n];
            s->n++;
        }
    }
    s->a0 = pg_malloc(s->a0_at[s->n] * sizeof *s->a0);
    s->sa = pg_calloc((size_t)slots * s->n, sizeof *s->sa);
    s->u = pg_malloc((size_t)window * (s->r > widest ? s->r : widest) * sizeof *s->u);
    s->tmp = pg_malloc((size_t)window * (s->r > widest ? s->r : widest) * sizeof *s->tmp);
    if (!s->a0 || !s->sa || !s->u || !s->tmp) return PG_E_NOMEM;
    for (int i = 0; i < s->n; i++) pg_lora_init_a(s->a0 + s->a0_at[i], s->r, s->in[i], p->seed, (uint64_t)i + 1, 0);
    for (int slot = 0; slot < slots; slot++)
        for (int i = 0; i < s->n; i++) {
            struct slot_adapter *a = slot_ad(s, slot, i);
            size_t na = (size_t)s->r * s->in[i], nb = (size_t)s->out[i] * s->r;
            a->a = pg_malloc(na * sizeof *a->a), a->ma = pg_calloc(na, sizeof *a->ma);
            a->va = pg_calloc(na, sizeof *a->va), a->ga = pg_calloc(na, sizeof *a->ga);
            a->b = pg_calloc(nb, sizeof *a->b), a->mb = pg_calloc(nb, sizeof *a->mb);
            a->vb = pg_calloc(nb, sizeof *a->vb), a->gb = pg_calloc(nb, sizeof *a->gb);
            if (!a->a || !a->ma || !a->va || !a->ga || !a->b || !a->mb || !a->vb || !a->gb) return PG_E_NOMEM;
            /* slot 0 starts as lora.c's adapters; the others from streams of their own (warm
             * start), or all from the same A (documents independent) */
            if (p->warm_a && slot > 0) pg_lora_init_a(a->a, s->r, s->in[i], p->seed, (uint64_t)i + 1, slot);
            else memcpy(a->a, s->a0 + s->a0_at[i], na * sizeof *a->a);
        }
    return 0;
}

/* A new document in `slot`: B = 0, fresh moments; A as warm_a says. */
static void slot_reset(struct batch *s, int slot)
{
    for (int i = 0; i < s->n; i++) {
        struct slot_adapter *a = slot_ad(s, slot, i);
        size_t na = (size_t)s->r * s->in[i], nb = (size_t)s->out[i] * s->r;
        memset(a->b, 0, nb * sizeof *a->b), memset(a->mb, 0, nb * sizeof *a->mb), memset(a->vb, 0, nb * sizeof *a->vb);
        memset(a->ma, 0, na * sizeof *a->ma), memset(a->va, 0, na * sizeof *a->va);
        if (!s->p.warm_a) memcpy(a->a, s->a0 + s->a0_at[i], na * sizeof *a->a);
    }
    s->live[slot] = 0, s->adam_t[slot] = 0;
}

/* One AdamW step on the slot's adapters from the gradients the backward left, which it clears.
 * @return 0, or PG_E_FORMAT when B is no longer finite. */
static int slot_step(struct batch *s, int slot, int64_t doc)
{
    int64_t t = ++s->adam_t[slot];
    int finite = 1;
    for (int i = 0; i < s->n; i++) {
        struct slot_adapter *a = slot_ad(s, slot, i);
        size_t na = (size_t)s->r * s->in[i], nb = (size_t)s->out[i] * s->r;
        pg_lora_adamw(&s->p, t, a->a, a->ga, a->ma, a->va, na);
        pg_lora_adamw(&s->p, t, a->b, a->gb, a->mb, a->vb, nb);
        memset(a->ga, 0, na * sizeof *a->ga), memset(a->gb, 0, nb * sizeof *a->gb);
        for (size_t k = 0; k < nb && finite; k++) finite = isfinite(a->b[k]);
    }
    s->live[slot] = 1;
    if (!finite)
        return pg_error(PG_E_FORMAT, "LoRA TTT document %lld: the adapters diverged (lower --lr)", (long long)doc);
    return 0;
}

static void slot_clear_grads(struct batch *s, int slot)
{
    for (int i = 0; i < s->n; i++) {
        struct slot_adapter *a = slot_ad(s, slot, i);
        memset(a->ga, 0, (size_t)s->r * s->in[i] * sizeof *a->ga);
        memset(a->gb, 0, (size_t)s->out[i] * s->r * sizeof *a->gb);
    }
}

/* ---- the audit's distributions: one window, one document's adapters ---- */

struct audit_ctx {
    struct batch *s;
    int slot, n;
    int64_t st;
    int32_t *x, *y;
    double *logp;
};

static int audit_dist(void *ctx, const uint16_t *tokens, int64_t p, double *out)
{
    struct audit_ctx *u = ctx;
    struct pg_model *m = u->s->m;
    for (int j = 0; j < u->n; j++) u->x[j] = tokens[u->st + j], u->y[j] = tokens[u->st + j + 1];
    PG_TRY(pg_model_check_ids(m, u->x, (size_t)u->n));
    PG_TRY(pg_model_check_ids(m, u->y, (size_t)u->n));
    int keep = u->s->seq_slot[0];
    u->s->seq_slot[0] = u->slot; /* a forward of one sequence: this document's */
    int rc = pg_ngram_model_logp(m, u->x, u->y, u->n, u->logp);
    u->s->seq_slot[0] = keep;
    if (!rc) memcpy(out, u->logp + (size_t)(p - 1 - u->st) * m->v, (size_t)m->v * sizeof *out);
    return rc;
}

/* ---- the run ---- */

struct doc {
    int64_t b0, b1, index; /* targets (b0, b1], the document's place in the stream */
};

static int by_length(const void *x, const void *y)
{
    const struct doc *a = x, *b = y;
    int64_t la = a->b1 - a->b0, lb = b->b1 - b->b0;
    if (la != lb) return la > lb ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

int pg_lora_run_batched(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
                        const struct pg_lora_params *p, const struct pg_lora_hooks *hooks, struct pg_lora_result *r)
{
    memset(r, 0, sizeof *r);
    struct pg_lora_hooks h = {0};
    if (hooks) h = *hooks;
    PG_TRY(pg_lora_check(m, p));
    if (p->phases > 0 || (p->ngram && (p->ngram->tilt || p->ngram->mix || p->ngram->cache)))
        return pg_error(PG_E_INVAL, "LoRA with %d documents per batch: phases and the n-gram modes need the stream "
                                    "order (one document at a time)", p->batch_docs);
    if (p->rank > 0 && (p->targets & PG_LORA_HEAD))
        return pg_error(PG_E_INVAL, "LoRA with %d documents per batch: no head adapter (the head's product is fused "
                                    "into the loss)", p->batch_docs);
    if (m->side) return pg_error(PG_E_INVAL, "LoRA TTT: the model already has side paths");
    int B = p->batch_docs;
    if (m->max_b < B)
        return pg_error(PG_E_INVAL, "LoRA with %d documents per batch: the model has activations for %d sequences", B,
                        m->max_b);
    int W = p->window < m->t ? p->window : m->t, train = p->rank > 0 && p->lr > 0;
    int C = p->chunk < W ? p->chunk : W;
    for (int64_t i = 0; i <= v->usable; i++)
        if (v->tokens[i] >= m->v)
            return pg_error(PG_E_FORMAT, "val token %lld is %d: outside the model's vocabulary of %d", (long long)i,
                            v->tokens[i], m->v);
    /* the documents, as lora.c cuts them */
    int64_t ndocs = 0, cap = 64;
    struct doc *docs = pg_malloc((size_t)cap * sizeof *docs);
    int rc = docs ? 0 : PG_E_NOMEM;
    for (int64_t b0 = 0; b0 < v->usable && !rc;) {
        int64_t b1 = b0 + 1;
        while (b1 < v->usable && v->tokens[b1] != m->cfg.bos_id) b1++;
        if (ndocs == cap) {
            struct doc *d2 = pg_realloc(docs, (size_t)(cap *= 2) * sizeof *docs);
            if (!d2) {
                rc = PG_E_NOMEM;
                break;
            }
            docs = d2;
        }
        docs[ndocs] = (struct doc){b0, b1, ndocs};
        ndocs++;
        b0 = b1;
    }
    if (!rc) qsort(docs, (size_t)ndocs, sizeof *docs, by_length);
    struct batch s;
    if (!rc) rc = batch_open(&s, m, p, B, W);
    else memset(&s, 0, sizeof s);
    int32_t *x = pg_malloc((size_t)B * W * sizeof *x), *y = pg_malloc((size_t)B * W * sizeof *y);
    float *losses = pg_malloc((size_t)B * W * sizeof *losses);
    /* the step's sequences: chunk (c0, c1] of the document in slot[q], window [st, c1) */
    int64_t *c0s = pg_malloc((size_t)B * sizeof *c0s), *c1s = pg_malloc((size_t)B * sizeof *c1s);
    int64_t *sts = pg_malloc((size_t)B * sizeof *sts);
    int *slot = pg_malloc((size_t)B * sizeof *slot);
    struct audit_ctx ac = {&s, 0, 0, 0, pg_malloc((size_t)W * sizeof *ac.x), pg_malloc((size_t)W * sizeof *ac.y),
                           h.audit ? pg_malloc((size_t)W * m->v * sizeof *ac.logp) : NULL};
    int64_t *pick = h.audit ? pg_malloc((size_t)(h.audit_samples > 0 ? h.audit_samples : 1) * sizeof *pick) : NULL;
    if (!rc && (!x || !y || !losses || !c0s || !c1s || !sts || !slot || !ac.x || !ac.y || (h.audit && (!ac.logp || !pick)))) rc = PG_E_NOMEM;
    struct pg_rng arng;
    pg_rng_seed(&arng, 0x5eed);
    int npick = !rc && h.audit ? pg_audit_pick(h.audit, v->usable + 1, h.audit_samples, &arng, pick) : 0;
    struct pg_model_side side = {&s, side_fwd, side_bwd, s.weight, 1};
    if (!rc) m->side = &side;
    r->adapters = s.n;
    for (int i = 0; i < s.n; i++) r->adapter_params += (size_t)s.r * (s.in[i] + s.out[i]);
    struct pg_progress prog;
    pg_progress_init(&prog, "lora", "tok", (uint64_t)v->usable, p->progress);
    double t0 = pg_now();
    int T0 = m->t;
    for (int64_t d0 = 0; d0 < ndocs && !rc; d0 += B) {
        int nb = (int)(ndocs - d0 < B ? ndocs - d0 : B);
        const struct doc *bd = docs + d0;
        for (int q = 0; q < nb; q++) slot_reset(&s, q);
        /* chunk index c for every document of the batch that has one (the first is the longest) */
        for (int64_t c = 0; bd[0].b0 + c * C < bd[0].b1 && !rc; c++) {
            int b = 0, T = 1;
            for (int q = 0; q < nb; q++) {
                int64_t c0 = bd[q].b0 + c * C;
                if (c0 >= bd[q].b1) continue;
                int64_t c1 = c0 + C < bd[q].b1 ? c0 + C : bd[q].b1, st = c1 - W > bd[q].b0 ? c1 - W : bd[q].b0;
                c0s[b] = c0, c1s[b] = c1, sts[b] = st, slot[b] = q;
                if (c1 - st > T) T = (int)(c1 - st);
                b++;
            }
            /* the audit's samples among these targets, before the forward whose activations
             * their own forwards would replace */
            for (int q = 0; q < b && h.audit && !rc; q++) {
                int64_t lo = 0, hi = npick; /* the first pick > c0 */
                while (lo < hi) {
                    int64_t mid = (lo + hi) / 2;
                    if (pick[mid] <= c0s[q]) lo = mid + 1;
                    else hi = mid;
                }
                ac.slot = slot[q], ac.st = sts[q], ac.n = (int)(c1s[q] - sts[q]);
                for (int64_t k = lo; k < npick && pick[k] <= c1s[q] && !rc; k++) /* a repeated pick: twice, as lora.c */
                    rc = pg_audit_check_one(h.audit, audit_dist, &ac, v->tokens, v->usable + 1, pick[k], ac.n, 1e-6,
                                            &arng);
            }
            if (rc) break;
            for (int q = 0; q < b; q++) {
                int n = (int)(c1s[q] - sts[q]);
                for (int j = 0; j < T; j++) {
                    int in = j < n;
                    x[(size_t)q * T + j] = in ? v->tokens[sts[q] + j] : 0;
                    y[(size_t)q * T + j] = in ? v->tokens[sts[q] + j + 1] : 0;
                }
                s.seq_slot[q] = slot[q];
            }
            m->t = T;
            pg_model_forward(m, x, y, b, losses);
            m->t = T0;
            /* (a) score each document's chunk */
            int any = 0;
            for (int q = 0; q < b; q++) {
                int n = (int)(c1s[q] - sts[q]), k = (int)(c1s[q] - c0s[q]);
                for (int j = n - k; j < n; j++) {
                    size_t at = (size_t)q * T + j;
                    r->nll_sum += losses[at];
                    r->bytes += pg_bpb_target_bytes(lut, (uint64_t)(sts[q] + j + 1), x[at], y[at]);
                    if (h.token_losses) h.token_losses[sts[q] + j] = losses[at];
                }
                r->tokens += k;
                r->chunks++;
                if (h.scored) h.scored(h.ctx, bd[slot[q]].index, c0s[q] + 1, c1s[q] + 1);
                /* the loss weights of the update: 1/k on the chunk of a document with more to come */
                int learn = train && c1s[q] < bd[slot[q]].b1;
                any |= learn;
                for (int j = 0; j < T; j++)
                    s.weight[(size_t)q * T + j] = learn && j >= n - k && j < n ? (float)(1.0 / k) : 0.0f;
            }
            pg_progress_update(&prog, (uint64_t)r->tokens);
            if (!any) continue;
            /* (b) one backward for the whole batch, then each learning document's step */
            for (int q = 0; q < b; q++) slot_clear_grads(&s, slot[q]);
            pg_model_zero_grad(m); /* the small tensors' gradients are formed, and not used */
            m->t = T;
            pg_model_backward(m, 1.0);
            m->t = T0;
            for (int q = 0; q < b && !rc; q++) {
                if (!(c1s[q] < bd[slot[q]].b1)) continue;
                rc = slot_step(&s, slot[q], bd[slot[q]].index);
                r->steps++;
                /* the tokens read: the window's inputs and targets, but for the document's opening
                 * BOS, which is the cut that defines the document (read, as by lora.c, before any
                 * scoring), not a prediction learnt from; as a target it is the previous
                 * document's last, which this order may not have scored yet */
                int64_t from = sts[q] == bd[slot[q]].b0 && v->tokens[sts[q]] == m->cfg.bos_id ? sts[q] + 1 : sts[q];
                if (h.updated) h.updated(h.ctx, bd[slot[q]].index, from, c1s[q] + 1);
            }
        }
        r->docs += nb;
    }
    m->side = NULL;
    m->t = T0;
    pg_progress_finish(&prog);
    r->seconds = pg_now() - t0;
    r->val_loss = r->tokens > 0 ? r->nll_sum / r->tokens : 0;
    r->val_bpb = r->bytes > 0 ? r->nll_sum / (log(2.0) * r->bytes) : 0;
    batch_free(&s);
    free(docs), free(x), free(y), free(losses), free(c0s), free(c1s), free(sts), free(slot), free(ac.x), free(ac.y), free(ac.logp), free(pick);
    return rc;
}
