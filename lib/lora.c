/* lora.c: per-document LoRA test-time training (see lora.h).
 *
 * The adapters are folded into the model's weights (W = W₀ + s·B·A) rather than run beside
 * them: the model's forward and backward then serve unchanged, and the adapter gradients follow
 * from the merged weight's gradient by the chain rule. The window forwards use m->t lowered to
 * the window's length (b = 1): every activation buffer is sized for max_b·t tokens and the RoPE
 * tables hold t positions, so a shorter sequence fits them, and the causal forward of a prefix is
 * the prefix of the forward. */
#include "lora.h"

#include "ngram.h"

#include "err.h"
#include "progress.h"
#include "rng.h"
#include "sgd.h"
#include "xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct adapter {
    int tensor, in, out;
    pg_real *a, *at, *b;      /* A [r,in], Aᵀ [in,r], B [out,r] */
    pg_real *ma, *va, *mb, *vb; /* AdamW moments */
    pg_real *w0;              /* the base weight [out,in] */
    pg_real *a0;              /* without warm start: A's initial value, restored at each document */
};

struct pg_lora {
    struct pg_model *m;
    struct pg_lora_params p;
    int n, r;
    double s;
    struct adapter *ad;
    pg_real *dw, *da, *db;    /* scratch: [out,in] of the largest weight, and one adapter's gradients */
    int live;                 /* B may be nonzero (else the weights are W₀ exactly) */
    int64_t adam_t;           /* AdamW steps since the last reset */
};

void pg_lora_params_default(struct pg_lora_params *p)
{
    p->targets = PG_LORA_Q | PG_LORA_K | PG_LORA_V | PG_LORA_O | PG_LORA_MLP;
    p->rank = 96;
    p->alpha = 144;
    p->lr = 1e-4;
    p->beta1 = 0;
    p->beta2 = 0.999;
    p->eps = 1e-10;
    p->wd = 0.5;
    p->chunk = 64;
    p->window = 2048;
    p->seed = 1;
    p->phases = 0;
    p->prefix_docs = 2000;
    p->phase_lr = 0.001;
    p->phase_momentum = 0.9;
    p->phase_clip = 1.0;
    p->phase_seqs = 32;
    p->ngram = NULL;
    p->progress = 0;
    p->batch_docs = 1;
    p->warm_a = 1;
}

int pg_lora_parse_targets(const char *s, unsigned *targets)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        {"q", PG_LORA_Q}, {"k", PG_LORA_K}, {"v", PG_LORA_V}, {"o", PG_LORA_O}, {"mlp", PG_LORA_MLP},
        {"head", PG_LORA_HEAD}, {"all", PG_LORA_Q | PG_LORA_K | PG_LORA_V | PG_LORA_O | PG_LORA_MLP | PG_LORA_HEAD},
    };
    unsigned t = 0;
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        size_t i;
        for (i = 0; i < sizeof names / sizeof *names; i++)
            if (strlen(names[i].name) == len && strncmp(names[i].name, p, len) == 0) break;
        if (i == sizeof names / sizeof *names)
            return pg_error(PG_E_INVAL, "LoRA target '%.*s': not one of q, k, v, o, mlp, head, all", (int)len, p);
        t |= names[i].bit;
        p += len;
        if (*p == ',') p++;
    }
    if (!t) return pg_error(PG_E_INVAL, "LoRA targets '%s': none given", s);
    *targets = t;
    return 0;
}

static pg_real *P(struct pg_model *m, int t) { return m->params + m->tensors[t].offset; }
static pg_real *G(struct pg_model *m, int t) { return m->grads + m->tensors[t].offset; }

int pg_lora_count(const struct pg_lora *s) { return s->n; }

void pg_lora_adapter(struct pg_lora *s, int i, pg_real **a, pg_real **b, int *in, int *out)
{
    *a = s->ad[i].a, *b = s->ad[i].b, *in = s->ad[i].in, *out = s->ad[i].out;
}

void pg_lora_fold(struct pg_lora *s)
{
    struct pg_model *m = s->m;
    for (int i = 0; i < s->n; i++) {
        struct adapter *a = &s->ad[i];
        pg_real *w = P(m, a->tensor);
        size_t nw = (size_t)a->out * a->in;
        if (!s->live) {
            memcpy(w, a->w0, nw * sizeof *w);
            continue;
        }
        for (int k = 0; k < s->r; k++)
            for (int j = 0; j < a->in; j++) a->at[(size_t)j * s->r + k] = a->a[(size_t)k * a->in + j];
        /* ΔW[out,in] = B[out,r]·(Aᵀ[in,r])ᵀ */
        m->be->matmul_fwd(s->dw, a->b, a->at, a->out, s->r, a->in);
        for (size_t k = 0; k < nw; k++) w[k] = (pg_real)((double)a->w0[k] + s->s * (double)s->dw[k]);
    }
}

void pg_lora_grad(struct pg_lora *s, int i, pg_real *da, pg_real *db)
{
    struct adapter *a = &s->ad[i];
    const pg_real *g = G(s->m, a->tensor);
    /* ∂L/∂B[out,r] = s·G[out,in]·Aᵀ;  ∂L/∂A[r,in] = s·Bᵀ·G (matmul_bwd's dw += dyᵀ·x with dy = B) */
    s->m->be->matmul_fwd(db, g, a->a, a->out, a->in, s->r);
    memset(da, 0, (size_t)s->r * a->in * sizeof *da);
    s->m->be->matmul_bwd(NULL, da, a->b, g, NULL, a->out, a->in, s->r, 0);
    for (size_t k = 0; k < (size_t)a->out * s->r; k++) db[k] = (pg_real)(s->s * db[k]);
    for (size_t k = 0; k < (size_t)s->r * a->in; k++) da[k] = (pg_real)(s->s * da[k]);
}

void pg_lora_init_a(pg_real *a, int rank, int in, uint64_t seed, uint64_t adapter, int slot)
{
    /* A ~ U(±1/√in), one stream per adapter (and per slot of a document batch) */
    struct pg_rng rng;
    pg_rng_seed(&rng, seed * 0x9E3779B97F4A7C15ull + adapter + ((uint64_t)slot << 32));
    double bound = 1.0 / sqrt((double)in);
    for (size_t k = 0; k < (size_t)rank * in; k++) a[k] = (pg_real)((2 * pg_rng_uniform(&rng) - 1) * bound);
}

static int add(struct pg_lora *s, int tensor)
{
    struct pg_model *m = s->m;
    struct adapter *a = &s->ad[s->n++];
    const struct pg_tensor *t = &m->tensors[tensor];
    a->tensor = tensor, a->out = (int)t->shape[0], a->in = (int)t->shape[1];
    size_t na = (size_t)s->r * a->in, nb = (size_t)a->out * s->r, nw = (size_t)a->out * a->in;
    a->a = pg_calloc(na, sizeof *a->a), a->at = pg_calloc(na, sizeof *a->at), a->ma = pg_calloc(na, sizeof *a->ma);
    a->va = pg_calloc(na, sizeof *a->va), a->b = pg_calloc(nb, sizeof *a->b), a->mb = pg_calloc(nb, sizeof *a->mb);
    a->vb = pg_calloc(nb, sizeof *a->vb), a->w0 = pg_malloc(nw * sizeof *a->w0);
    if (!a->a || !a->at || !a->ma || !a->va || !a->b || !a->mb || !a->vb || !a->w0) return PG_E_NOMEM;
    memcpy(a->w0, P(m, tensor), nw * sizeof *a->w0);
    pg_lora_init_a(a->a, s->r, a->in, s->p.seed, (uint64_t)s->n, 0);
    if (!s->p.warm_a && !(a->a0 = pg_malloc(na * sizeof *a->a0))) return PG_E_NOMEM;
    if (a->a0) memcpy(a->a0, a->a, na * sizeof *a->a0);
    return 0;
}

static void free_adapter(struct adapter *a)
{
    free(a->a), free(a->at), free(a->ma), free(a->va), free(a->b), free(a->mb), free(a->vb), free(a->w0), free(a->a0);
}

void pg_lora_close(struct pg_lora *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        struct adapter *a = &s->ad[i];
        if (a->w0) memcpy(P(s->m, a->tensor), a->w0, (size_t)a->out * a->in * sizeof *a->w0);
        free_adapter(a);
    }
    free(s->ad), free(s->dw), free(s->da), free(s->db);
    free(s);
}

int pg_lora_check(const struct pg_model *m, const struct pg_lora_params *p)
{
    if (!m->be->host_memory)
        return pg_error(PG_E_INVAL, "LoRA TTT runs on the CPU backend only (--device cpu): its adapters fold into "
                                    "host-memory weights");
    if (p->rank < 0) return pg_error(PG_E_INVAL, "LoRA rank %d: must be >= 0", p->rank);
    if (p->chunk < 1) return pg_error(PG_E_INVAL, "LoRA chunk of %d tokens: must be at least 1", p->chunk);
    if (p->window < 1) return pg_error(PG_E_INVAL, "LoRA window of %d tokens: must be at least 1", p->window);
    if (!(p->lr >= 0 && isfinite(p->lr)) || !(p->alpha > 0 && isfinite(p->alpha)) || !(p->wd >= 0) ||
        !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0))
        return pg_error(PG_E_INVAL, "LoRA: lr %g, alpha %g, betas (%g, %g), eps %g, wd %g: out of range", p->lr,
                        p->alpha, p->beta1, p->beta2, p->eps, p->wd);
    if ((p->targets & PG_LORA_HEAD) && m->t_head < 0)
        return pg_error(PG_E_INVAL, "LoRA target head: the model ties its head to the input embedding, which an "
                                    "adapter folded into it would change too");
    int train = (p->rank > 0 && p->lr > 0) || p->phases > 0;
    if (p->phases < 0 || p->prefix_docs < 1 || p->phase_seqs < 1 || !(p->phase_lr >= 0) || !(p->phase_clip >= 0) ||
        !(p->phase_momentum >= 0 && p->phase_momentum < 1))
        return pg_error(PG_E_INVAL, "phased TTT: %d phases over %lld documents, lr %g, momentum %g, clip %g, %d "
                                    "windows per step: out of range", p->phases, (long long)p->prefix_docs, p->phase_lr,
                        p->phase_momentum, p->phase_clip, p->phase_seqs);
    if (train && !m->grads) return pg_error(PG_E_INVAL, "LoRA TTT needs a model set up for training");
    if (p->batch_docs < 1) return pg_error(PG_E_INVAL, "LoRA: %d documents per batch: must be at least 1", p->batch_docs);
    return 0;
}

int pg_lora_open(struct pg_lora **out, struct pg_model *m, const struct pg_lora_params *p)
{
    *out = NULL;
    PG_TRY(pg_lora_check(m, p));
    struct pg_lora *s = pg_calloc(1, sizeof *s);
    if (!s) return PG_E_NOMEM;
    s->m = m, s->p = *p, s->r = p->rank, s->s = p->rank > 0 ? p->alpha / p->rank : 0;
    int rc = 0, maxn = 6 * m->nl + 1;
    size_t big = 0, bigr = 0;
    if (p->rank > 0 && !(s->ad = pg_calloc((size_t)maxn, sizeof *s->ad))) rc = PG_E_NOMEM;
    for (int l = 0; l < m->nl && p->rank > 0 && !rc; l++) {
        const struct pg_block_params *bp = &m->blk[l];
        if (!rc && (p->targets & PG_LORA_Q)) rc = add(s, bp->c_q);
        if (!rc && (p->targets & PG_LORA_K)) rc = add(s, bp->c_k);
        if (!rc && (p->targets & PG_LORA_V)) rc = add(s, bp->c_v);
        if (!rc && (p->targets & PG_LORA_O)) rc = add(s, bp->proj);
        if (!rc && (p->targets & PG_LORA_MLP)) rc = add(s, bp->mlp_proj);
    }
    if (!rc && p->rank > 0 && (p->targets & PG_LORA_HEAD)) rc = add(s, m->t_head);
    for (int i = 0; i < s->n; i++) {
        size_t nw = (size_t)s->ad[i].out * s->ad[i].in;
        if (nw > big) big = nw;
        size_t nr = (size_t)p->rank * (size_t)(s->ad[i].in > s->ad[i].out ? s->ad[i].in : s->ad[i].out);
        if (nr > bigr) bigr = nr;
    }
    if (!rc && s->n) {
        s->dw = pg_malloc(big * sizeof *s->dw);
        s->da = pg_malloc(bigr * sizeof *s->da);
        s->db = pg_malloc(bigr * sizeof *s->db);
        if (!s->dw || !s->da || !s->db) rc = PG_E_NOMEM;
    }
    if (rc) {
        pg_lora_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* A new document: B = 0 and fresh AdamW moments; A keeps what it learned (warm start), or
 * without warm start is its initial value again. */
static void reset(struct pg_lora *s)
{
    for (int i = 0; i < s->n; i++) {
        struct adapter *a = &s->ad[i];
        size_t na = (size_t)s->r * a->in, nb = (size_t)a->out * s->r;
        memset(a->b, 0, nb * sizeof *a->b), memset(a->mb, 0, nb * sizeof *a->mb), memset(a->vb, 0, nb * sizeof *a->vb);
        memset(a->ma, 0, na * sizeof *a->ma), memset(a->va, 0, na * sizeof *a->va);
        if (a->a0) memcpy(a->a, a->a0, na * sizeof *a->a);
    }
    s->live = 0, s->adam_t = 0;
}

void pg_lora_adamw(const struct pg_lora_params *p, int64_t t, pg_real *x, const pg_real *g, pg_real *mo, pg_real *ve,
                   size_t n)
{
    double bc1 = 1 - pow(p->beta1, (double)t), bc2 = 1 - pow(p->beta2, (double)t);
    for (size_t k = 0; k < n; k++) {
        double gk = g[k];
        double mk = p->beta1 * mo[k] + (1 - p->beta1) * gk, vk = p->beta2 * ve[k] + (1 - p->beta2) * gk * gk;
        mo[k] = (pg_real)mk, ve[k] = (pg_real)vk;
        double xk = x[k] * (1 - p->lr * p->wd);
        x[k] = (pg_real)(xk - p->lr * (mk / bc1) / (sqrt(vk / bc2) + p->eps));
    }
}

/* One AdamW step on every adapter from the model's gradients. */
static void step(struct pg_lora *s)
{
    s->adam_t++;
    for (int i = 0; i < s->n; i++) {
        struct adapter *a = &s->ad[i];
        pg_lora_grad(s, i, s->da, s->db);
        pg_lora_adamw(&s->p, s->adam_t, a->a, s->da, a->ma, a->va, (size_t)s->r * a->in);
        pg_lora_adamw(&s->p, s->adam_t, a->b, s->db, a->mb, a->vb, (size_t)a->out * s->r);
    }
    s->live = 1;
}

/* A forward over the inputs [st, st + n) of the stream (b = 1, m->t lowered to n). */
static double window_forward(struct pg_model *m, const struct pg_val_set *v, int64_t st, int n, int32_t *x,
                             int32_t *y, float *losses)
{
    for (int j = 0; j < n; j++) x[j] = v->tokens[st + j], y[j] = v->tokens[st + j + 1];
    int t = m->t;
    m->t = n;
    double sum = pg_model_forward(m, x, y, 1, losses);
    m->t = t;
    return sum;
}

static void window_backward(struct pg_model *m, int n, double scale)
{
    int t = m->t;
    m->t = n;
    pg_model_backward(m, scale);
    m->t = t;
}

/* A phase (spec §6.4): SGD on the base model over every window of L = v->seq_len tokens lying
 * wholly below `frontier` (the first position not yet scored as a target: the window's targets
 * end at s·L + L <= frontier), one pass in order, then the adapters re-base on the new weights.
 * The adapters are at B = 0 (between documents), so the model holds the base weights. */
static int phase(struct pg_lora *s, const struct pg_val_set *v, int64_t frontier, int32_t *x, int32_t *y,
                 const struct pg_lora_hooks *h, struct pg_lora_result *r)
{
    struct pg_model *m = s->m;
    const struct pg_lora_params *p = &s->p;
    int L = v->seq_len;
    int64_t nwin = frontier / L, nsteps = (nwin + p->phase_seqs - 1) / p->phase_seqs;
    if (nwin < 1) return 0;
    struct pg_opt_tensor *all = pg_calloc((size_t)m->ntensors, sizeof *all);
    if (!all) return PG_E_NOMEM;
    for (int i = 0; i < m->ntensors; i++) {
        const struct pg_tensor *t = &m->tensors[i];
        all[i] = (struct pg_opt_tensor){m->params + t->offset, m->grads + t->offset, (int)t->shape[0],
                                        t->ndim == 2 ? (int)t->shape[1] : 0, t->numel};
    }
    struct pg_sgd sgd;
    int rc = pg_sgd_init_on(&sgd, m->be, all, (size_t)m->ntensors, p->phase_momentum);
    const double pi = 3.14159265358979323846;
    for (int64_t k = 0; k < nsteps && !rc; k++) {
        int64_t w0 = k * p->phase_seqs, w1 = w0 + p->phase_seqs < nwin ? w0 + p->phase_seqs : nwin;
        double loss = 0, scale = 1.0 / ((double)(w1 - w0) * L);
        pg_model_zero_grad(m);
        for (int64_t w = w0; w < w1; w++) {
            loss += window_forward(m, v, w * L, L, x, y, NULL) * scale;
            pg_model_backward(m, scale);
        }
        if (!isfinite(loss)) {
            rc = pg_error(PG_E_FORMAT, "phased TTT, phase %lld: the training loss is %g: diverged (lower the phase lr)",
                          (long long)r->phases_run + 1, loss);
            break;
        }
        if (p->phase_clip > 0) pg_clip_grad_norm_on(m->be, all, (size_t)m->ntensors, p->phase_clip);
        pg_sgd_step(&sgd, p->phase_lr * 0.5 * (1 + cos(pi * (double)k / (double)(nsteps > 1 ? nsteps - 1 : 1))));
        r->phase_steps++;
        if (h->updated) h->updated(h->ctx, -1, w0 * L, w1 * L + 1);
    }
    pg_sgd_free(&sgd);
    free(all);
    for (int i = 0; i < s->n && !rc; i++) /* the adapters fold into the new base from now on */
        memcpy(s->ad[i].w0, P(m, s->ad[i].tensor), (size_t)s->ad[i].out * s->ad[i].in * sizeof *s->ad[i].w0);
    r->phases_run++;
    return rc;
}

int pg_lora_run(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
                const struct pg_lora_params *p, const struct pg_lora_hooks *hooks, struct pg_lora_result *r)
{
    memset(r, 0, sizeof *r);
    if (p->batch_docs > 1) return pg_lora_run_batched(m, v, lut, p, hooks, r);
    struct pg_lora_hooks h = {0};
    if (hooks) h = *hooks;
    if (m->max_b < 1) return pg_error(PG_E_INVAL, "LoRA TTT: the model has no activations");
    if (p->phases > 0 && v->seq_len > m->t)
        return pg_error(PG_E_INVAL, "phased TTT: windows of %d tokens do not fit the model's %d", v->seq_len, m->t);
    struct pg_lora *s;
    PG_TRY(pg_lora_open(&s, m, p));
    int W = p->window < m->t ? p->window : m->t, train = p->rank > 0 && p->lr > 0;
    int C = p->chunk < W ? p->chunk : W; /* a chunk is scored by one window */
    int32_t *x = pg_malloc((size_t)m->t * sizeof *x), *y = pg_malloc((size_t)m->t * sizeof *y); /* phases: m->t */
    float *losses = pg_malloc((size_t)W * sizeof *losses), *chunk_w = pg_malloc((size_t)W * sizeof *chunk_w);
    int rc = x && y && losses && chunk_w ? 0 : PG_E_NOMEM;
    struct pg_model_side weigh = {.loss_weight = chunk_w};
    struct pg_ngram *ng = NULL;
    double *logp = NULL;
    if (!rc && p->ngram && (p->ngram->tilt || p->ngram->mix || p->ngram->cache)) {
        if (!(rc = pg_ngram_open(&ng, m->v, p->ngram)) && !(logp = pg_malloc((size_t)W * m->v * sizeof *logp)))
            rc = PG_E_NOMEM;
        if (!rc) rc = pg_ngram_push(ng, NULL, v->tokens[0]); /* the stream's first token: an input only */
        if (!rc && h.updated) h.updated(h.ctx, -1, 0, 1);
    }
    struct pg_ngram_audit au; /* the distributions (adapters and n-gram state), checked as the run goes */
    if (!rc) rc = pg_ngram_audit_open(&au, h.audit, v->usable + 1, h.audit_samples, 0x5eed, W, m->v);
    else memset(&au, 0, sizeof au);
    /* every token of the stream must be inside the vocabulary (the forward does not check) */
    for (int64_t i = 0; i <= v->usable && !rc; i++)
        if (v->tokens[i] >= m->v)
            rc = pg_error(PG_E_FORMAT, "val token %lld is %d: outside the model's vocabulary of %d", (long long)i,
                          v->tokens[i], m->v);
    r->adapters = s->n;
    for (int i = 0; i < s->n; i++) r->adapter_params += (size_t)s->r * (s->ad[i].in + s->ad[i].out);
    struct pg_progress prog;
    pg_progress_init(&prog, "lora", "tok", (uint64_t)v->usable, p->progress);
    double t0 = pg_now();
    int bos = m->cfg.bos_id;
    int64_t b0 = 0; /* the current document's start */
    while (b0 < v->usable && !rc) {
        /* a phase boundary: r->docs documents have been scored whole */
        for (int k = 1; k <= p->phases && !rc; k++)
            if (r->docs == p->prefix_docs * k / p->phases && r->docs > 0) {
                reset(s);
                pg_lora_fold(s);
                rc = phase(s, v, b0, x, y, &h, r);
            }
        if (rc) break;
        int64_t b1 = b0 + 1; /* the next BOS (its position is this document's last target), or the end */
        while (b1 < v->usable && v->tokens[b1] != bos) b1++;
        reset(s);
        pg_lora_fold(s);
        for (int64_t c0 = b0; c0 < b1 && !rc; c0 += C) {
            int64_t c1 = c0 + C < b1 ? c0 + C : b1;
            int64_t st = c1 - W > b0 ? c1 - W : b0;
            int n = (int)(c1 - st), k = (int)(c1 - c0);
            /* (a) score the chunk's targets (c0, c1] */
            if (ng) { /* the n-gram mode scores from the model's distribution; its forward serves the backward */
                for (int j = 0; j < n; j++) x[j] = v->tokens[st + j], y[j] = v->tokens[st + j + 1];
                if ((rc = pg_ngram_model_logp(m, x, y, n, logp))) break;
                int fwd = 0;
                for (int j = n - k; j < n && !rc; j++) {
                    int64_t pos = st + j + 1; /* the target's stream position */
                    if ((rc = pg_ngram_audit_at(&au, ng, m, v->tokens, st, n, pos, &fwd))) break;
                    double nll = pg_ngram_score(ng, logp + (size_t)j * m->v, y[j]);
                    r->nll_sum += nll; /* summed in double, as pg_ngram_run */
                    losses[j] = (float)nll;
                    /* target by target: the tables take y only after it is scored */
                    if (h.scored) h.scored(h.ctx, r->docs, pos, pos + 1);
                    rc = pg_ngram_push(ng, NULL, y[j]);
                    if (h.updated) h.updated(h.ctx, r->docs, pos - 16, pos + 1); /* the contexts, and y */
                }
                /* the audit's forwards replaced the activations the adapters' backward reads */
                if (!rc && fwd && train) rc = pg_ngram_model_logp(m, x, y, n, logp);
                if (rc) break;
            } else {
                /* the audit's samples first: their forwards replace the activations */
                for (int64_t pos = c0 + 1; pos <= c1 && !rc; pos++)
                    rc = pg_ngram_audit_at(&au, NULL, m, v->tokens, st, n, pos, NULL);
                if (rc) break;
                window_forward(m, v, st, n, x, y, losses);
            }
            for (int j = n - k; j < n; j++) {
                if (!ng) r->nll_sum += losses[j];
                r->bytes += pg_bpb_target_bytes(lut, (uint64_t)(st + j + 1), x[j], y[j]);
            }
            r->tokens += k;
            if (h.token_losses) memcpy(h.token_losses + c0, losses + (n - k), (size_t)k * sizeof *losses);
            if (h.scored && !ng) h.scored(h.ctx, r->docs, c0 + 1, c1 + 1);
            r->chunks++;
            pg_progress_update(&prog, (uint64_t)r->tokens);
            /* (b) adapt on it, unless nothing of this document is left to benefit */
            if (!train || c1 >= b1) continue;
            double sc = 1.0 / k;
            pg_model_zero_grad(m);
            if (!(p->targets & PG_LORA_HEAD)) {
                /* the window's forward serves: the loss weighted 1/k on the chunk, 0 before it */
                for (int j = 0; j < n; j++) chunk_w[j] = j >= n - k ? (float)sc : 0.0f;
                m->side = &weigh;
                window_backward(m, n, 1.0);
                m->side = NULL;
            } else { /* the head's own gradient is formed before the weighting: subtract instead */
                window_backward(m, n, sc);
                if (c0 > st) {
                    window_forward(m, v, st, (int)(c0 - st), x, y, losses);
                    window_backward(m, (int)(c0 - st), -sc);
                }
            }
            step(s);
            for (int i = 0; i < s->n && !rc; i++) {
                const struct adapter *a = &s->ad[i];
                for (size_t q = 0; q < (size_t)a->out * s->r; q++)
                    if (!isfinite(a->b[q])) {
                        rc = pg_error(PG_E_FORMAT, "LoRA TTT document %lld: the adapters diverged (lower --lr)",
                                      (long long)r->docs);
                        break;
                    }
            }
            pg_lora_fold(s);
            r->steps++;
            if (h.updated) h.updated(h.ctx, r->docs, st, c1 + 1);
        }
        r->docs++;
        b0 = b1;
    }
    pg_progress_finish(&prog);
    r->seconds = pg_now() - t0;
    r->val_loss = r->tokens > 0 ? r->nll_sum / r->tokens : 0;
    r->val_bpb = r->bytes > 0 ? r->nll_sum / (log(2.0) * r->bytes) : 0;
    free(logp);
    pg_ngram_audit_close(&au);
    pg_ngram_close(ng);
    free(x), free(y), free(losses), free(chunk_w);
    pg_lora_close(s);
    return rc;
}
