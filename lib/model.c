/* model.c: the parameter-golf GPT over the backend table (see model.h and spec/baseline.md §3.2).
 *
 *   x = RMSNorm(E[ids]); x0 = x
 *   encoder blocks 0..n_enc-1: x = Block(x, x0), each output kept for a skip
 *   decoder blocks: x = x + skip_w[j] ⊙ (the encoder outputs in reverse); x = Block(x, x0)
 *   loss = CE(30·tanh(RMSNorm(x)·Eᵀ / 30), y)
 *   Block l(x, x0): xm = m0 ⊙ x + m1 ⊙ x0
 *                 xm + attn_scale ⊙ proj(Attn(s_l·RMSNorm(xm)))  → x1
 *                 x1 + mlp_scale ⊙ proj(φ(fc(s_l·RMSNorm(x1))))
 *   s_l = 1, or 1/√(l+1) with ln_scale (spec §2.6)
 *   φ = relu² (baseline) or leaky_relu(·, mlp_leaky_slope)² (spec §2.5)
 *   Attn: q, k RMSNorm'd per head, RoPE'd, q ⊙ q_gain[head]; causal GQA with scale 1/√hd.
 */
#include "model.h"

#include "err.h"
#include "rng.h"
#include "xio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tensor table ---- */

static int add_tensor(struct pg_model *m, int *cap, int kind, int64_t r, int64_t c, const char *fmt, int layer)
{
    if (m->ntensors == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        struct pg_tensor *t = pg_realloc(m->tensors, (size_t)*cap * sizeof *t);
        if (!t) return -1;
        m->tensors = t;
    }
    struct pg_tensor *t = &m->tensors[m->ntensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->kind = kind;
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    t->numel = (size_t)r * (size_t)(c ? c : 1);
    t->offset = m->nparams;
    m->nparams += t->numel;
    return m->ntensors++;
}

/* parameter-golf's state_dict order: tok_emb, blocks in order, skip_weights (lm_head last). */
static int build_table(struct pg_model *m)
{
    int cap = 0, d = m->d;
    if ((m->t_emb = add_tensor(m, &cap, PG_TENSOR_EMBED, m->v, d, "tok_emb.weight", 0)) < 0) return PG_E_NOMEM;
    m->blk = pg_calloc((size_t)m->nl, sizeof *m->blk);
    if (!m->blk) return PG_E_NOMEM;
    for (int l = 0; l < m->nl; l++) {
        struct pg_block_params *b = &m->blk[l];
        b->c_q = add_tensor(m, &cap, PG_TENSOR_MATRIX, d, d, "blocks.%d.attn.c_q.weight", l);
        b->c_k = add_tensor(m, &cap, PG_TENSOR_MATRIX, m->kvd, d, "blocks.%d.attn.c_k.weight", l);
        b->c_v = add_tensor(m, &cap, PG_TENSOR_MATRIX, m->kvd, d, "blocks.%d.attn.c_v.weight", l);
        b->proj = add_tensor(m, &cap, PG_TENSOR_MATRIX, d, d, "blocks.%d.attn.proj.weight", l);
        b->q_gain = add_tensor(m, &cap, PG_TENSOR_CONTROL, m->h, 0, "blocks.%d.attn.q_gain", l);
        b->fc = add_tensor(m, &cap, PG_TENSOR_MATRIX, m->hid, d, "blocks.%d.mlp.fc.weight", l);
        b->mlp_proj = add_tensor(m, &cap, PG_TENSOR_MATRIX, d, m->hid, "blocks.%d.mlp.proj.weight", l);
        b->attn_scale = add_tensor(m, &cap, PG_TENSOR_CONTROL, d, 0, "blocks.%d.attn_scale", l);
        b->mlp_scale = add_tensor(m, &cap, PG_TENSOR_CONTROL, d, 0, "blocks.%d.mlp_scale", l);
        b->resid_mix = add_tensor(m, &cap, PG_TENSOR_CONTROL, 2, d, "blocks.%d.resid_mix", l);
        if (b->resid_mix < 0) return PG_E_NOMEM;
    }
    m->t_skip = m->n_skip ? add_tensor(m, &cap, PG_TENSOR_CONTROL, m->n_skip, d, "skip_weights", 0) : -1;
    m->t_head = m->cfg.tie_embeddings ? -1 : add_tensor(m, &cap, PG_TENSOR_HEAD, m->v, d, "lm_head.weight", 0);
    /* add_tensor returns -1 (and adds nothing) when it cannot grow the table */
    if (m->ntensors != 1 + 10 * m->nl + (m->n_skip > 0) + !m->cfg.tie_embeddings) return PG_E_NOMEM;
    /* resid_mix is 2-D but a control tensor (parameter-golf's CONTROL_TENSOR_NAME_PATTERNS). */
    return 0;
}

int pg_model_find(const struct pg_model *m, const char *name)
{
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}

int pg_model_init(struct pg_model *m, const struct pg_config *cfg, const struct pg_backend *be, int training)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    be->init();
    m->training = training;
    m->d = cfg->model_dim;
    m->h = cfg->num_heads;
    m->kv = cfg->num_kv_heads;
    m->hd = m->d / m->h;
    m->rd = pg_config_rope_dims(cfg);
    m->kvd = m->kv * m->hd;
    m->hid = cfg->mlp_mult * m->d;
    m->v = cfg->vocab_size;
    m->nl = cfg->num_layers;
    m->n_enc = m->nl / 2;
    m->n_dec = m->nl - m->n_enc;
    m->n_skip = m->n_enc < m->n_dec ? m->n_enc : m->n_dec;
    int rc = build_table(m);
    if (!rc) {
        m->params = pg_calloc(m->nparams, sizeof *m->params);
        if (!m->params) rc = PG_E_NOMEM;
    }
    if (!rc && training) {
        m->grads = pg_calloc(m->nparams, sizeof *m->grads);
        if (!m->grads) rc = PG_E_NOMEM;
    }
    if (rc) pg_model_free(m);
    return rc;
}

#define P(i) (m->params + m->tensors[i].offset)
#define G(i) (m->grads + m->tensors[i].offset)

/* ---- initialization ---- */

/* Rounds to the nearest bfloat16 value (ties to even), in float. */
static float bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

void pg_model_init_weights(struct pg_model *m, uint64_t seed)
{
    struct pg_rng rng;
    pg_rng_seed(&rng, seed);
    for (int i = 0; i < m->ntensors; i++) {
        struct pg_tensor *t = &m->tensors[i];
        pg_real *p = P(i);
        const char *n = t->name;
        size_t len = strlen(n);
        if (t->kind == PG_TENSOR_EMBED) {
            /* tied: N(0, tied_embed_init_std²); untied: nn.Embedding's own N(0, 1) (spec §3.4) */
            double std = m->cfg.tie_embeddings ? m->cfg.tied_embed_init_std : 1.0;
            for (size_t k = 0; k < t->numel; k++) p[k] = bf16_round((float)(std * pg_rng_normal(&rng)));
        } else if (t->kind == PG_TENSOR_HEAD) {
            for (size_t k = 0; k < t->numel; k++) p[k] = 0; /* lm_head is zero-initialized like the projections */
        } else if (t->kind == PG_TENSOR_MATRIX) {
            int zero = strstr(n, "attn.proj.") || strstr(n, "mlp.proj.");
            double bound = 1.0 / sqrt((double)t->shape[1]);
            for (size_t k = 0; k < t->numel; k++)
                p[k] = zero ? 0 : bf16_round((float)(bound * (2 * pg_rng_uniform(&rng) - 1)));
        } else if (len > 6 && strcmp(n + len - 6, "q_gain") == 0) {
            for (size_t k = 0; k < t->numel; k++) p[k] = (pg_real)m->cfg.qk_gain_init;
        } else if (strstr(n, "resid_mix")) {
            for (int64_t c = 0; c < t->shape[1]; c++) {
                p[c] = 1;
                p[t->shape[1] + c] = 0;
            }
        } else {
            for (size_t k = 0; k < t->numel; k++) p[k] = 1; /* attn_scale, mlp_scale, skip_weights */
        }
    }
}

/* ---- activations ---- */

static pg_real *arena_take(pg_real **cur, size_t n)
{
    pg_real *p = *cur;
    *cur += n;
    return p;
}

int pg_model_alloc_acts(struct pg_model *m, int max_b, int t)
{
    size_t n = (size_t)max_b * (size_t)t, d = (size_t)m->d, kvd = (size_t)m->kvd, hid = (size_t)m->hid;
    size_t hn = n * (size_t)m->h, kn = n * (size_t)m->kv;
    /* per layer: 10 [n,d] + 3 [n,kvd] + 2 [n,hid] buffers, 2 row norms, q/k norms, lse (b·h·t) */
    size_t per_layer = n * (10 * d + 3 * kvd + 2 * hid) + 2 * n + hn + kn + hn;
    int layers = m->training ? m->nl : 1;
    size_t total = per_layer * (size_t)layers + n * (3 * d) + 2 * n + (size_t)m->n_enc * n * d +
                   (size_t)t * (size_t)m->hd + m->be->attention_work(t) + pg_ce_work(m->v);
    if (m->training) total += n * (6 * d + 3 * kvd + 2 * hid) + (size_t)m->n_enc * n * d;
    m->max_b = max_b;
    m->t = t;
    m->acts = pg_calloc((size_t)layers, sizeof *m->acts);
    m->enc_out = pg_calloc((size_t)(m->n_enc ? m->n_enc : 1), sizeof *m->enc_out);
    m->denc = pg_calloc((size_t)(m->n_enc ? m->n_enc : 1), sizeof *m->denc);
    m->targets = pg_malloc(n * sizeof *m->targets);
    m->ids = pg_malloc(n * sizeof *m->ids);
    pg_real *arena = pg_malloc(total * sizeof *arena);
    if (!m->acts || !m->enc_out || !m->denc || !m->targets || !m->ids || !arena) {
        free(arena);
        return PG_E_NOMEM;
    }
    pg_real *c = arena;
    for (int l = 0; l < layers; l++) {
        struct pg_block_acts *a = &m->acts[l];
        a->xin = arena_take(&c, n * d), a->xm = arena_take(&c, n * d), a->ya = arena_take(&c, n * d);
        a->rs_a = arena_take(&c, n);
        a->qn = arena_take(&c, n * d), a->rs_q = arena_take(&c, hn), a->qr = arena_take(&c, n * d);
        a->q = arena_take(&c, n * d);
        a->kn = arena_take(&c, n * kvd), a->rs_k = arena_take(&c, kn), a->k = arena_take(&c, n * kvd);
        a->v = arena_take(&c, n * kvd);
        a->o = arena_take(&c, n * d), a->lse = arena_take(&c, hn), a->ao = arena_take(&c, n * d);
        a->ym = arena_take(&c, n * d), a->rs_m = arena_take(&c, n), a->hpre = arena_take(&c, n * hid);
        a->r = arena_take(&c, n * hid), a->mo = arena_take(&c, n * d);
    }
    m->x = arena_take(&c, n * d), m->x0 = arena_take(&c, n * d), m->yf = arena_take(&c, n * d);
    m->rs0 = arena_take(&c, n), m->rsf = arena_take(&c, n);
    for (int i = 0; i < m->n_enc; i++) m->enc_out[i] = arena_take(&c, n * d);
    /* RoPE tables for positions 0..t-1 over the rd rotated dims: theta = pos · base^(−2i/rd)
     * (partial RoPE's frequencies span its own slice, spec §2.2), computed in double. With
     * rope_bf16, as the PyTorch baseline after .bfloat16() (spec §3.3): inv_freq, the positions
     * (integers above 256 snap to even, above 512 to multiples of 4), their product and cos/sin
     * are each rounded to bf16. */
    int half = m->rd / 2;
    m->cos = arena_take(&c, (size_t)t * half), m->sin = arena_take(&c, (size_t)t * half);
    for (int p = 0; p < t; p++)
        for (int i = 0; i < half; i++) {
            size_t k = (size_t)p * half + i;
            if (m->cfg.rope_bf16) {
                float inv = bf16_round((float)(1.0 / pow(m->cfg.rope_base, (double)(2 * i) / m->rd)));
                float ang = bf16_round(bf16_round((float)p) * inv);
                m->cos[k] = bf16_round(cosf(ang));
                m->sin[k] = bf16_round(sinf(ang));
            } else {
                double ang = p * pow(m->cfg.rope_base, -2.0 * i / m->rd);
                m->cos[k] = (pg_real)cos(ang);
                m->sin[k] = (pg_real)sin(ang);
            }
        }
    m->attn_work = arena_take(&c, m->be->attention_work(t));
    m->ce_work = arena_take(&c, pg_ce_work(m->v));
    if (m->training) {
        m->dx = arena_take(&c, n * d), m->dx0 = arena_take(&c, n * d), m->dxm = arena_take(&c, n * d);
        m->dya = arena_take(&c, n * d), m->dym = arena_take(&c, n * d), m->dtmp = arena_take(&c, n * d);
        m->dk = arena_take(&c, n * kvd), m->dv = arena_take(&c, n * kvd), m->dkn = arena_take(&c, n * kvd);
        m->dh = arena_take(&c, n * hid), m->dr = arena_take(&c, n * hid);
        for (int i = 0; i < m->n_enc; i++) m->denc[i] = arena_take(&c, n * d);
    }
    return 0;
}

/* ---- forward ---- */

/* The factor on block l's two norm outputs: 1/√(l+1) with ln_scale (spec §2.6), else 1. */
static double ln_scale(const struct pg_model *m, int l) { return m->cfg.ln_scale ? 1.0 / sqrt(l + 1.0) : 1.0; }

static void block_forward(struct pg_model *m, int l, struct pg_block_acts *a, const pg_real *xin, pg_real *xout, int b)
{
    const struct pg_backend *be = m->be;
    const struct pg_block_params *p = &m->blk[l];
    int n = b * m->t, d = m->d;
    double eps = m->cfg.rms_norm_eps;
    if (a->xin != xin) memcpy(a->xin, xin, (size_t)n * d * sizeof *xin);
    const pg_real *mix = P(p->resid_mix);
    be->mix_fwd(a->xm, a->xin, m->x0, mix, mix + d, n, d);
    double s = ln_scale(m, l);
    be->rmsnorm_fwd(a->ya, a->rs_a, a->xm, n, d, eps, s);
    be->matmul_fwd(a->qr, a->ya, P(p->c_q), n, d, d);
    be->matmul_fwd(a->k, a->ya, P(p->c_k), n, d, m->kvd);
    be->matmul_fwd(a->v, a->ya, P(p->c_v), n, d, m->kvd);
    be->rmsnorm_fwd(a->qn, a->rs_q, a->qr, n * m->h, m->hd, eps, 1);
    be->rmsnorm_fwd(a->kn, a->rs_k, a->k, n * m->kv, m->hd, eps, 1);
    memcpy(a->qr, a->qn, (size_t)n * d * sizeof *a->qr);
    memcpy(a->k, a->kn, (size_t)n * m->kvd * sizeof *a->k);
    be->rope_fwd(a->qr, m->cos, m->sin, b, m->t, m->h, m->hd, m->rd);
    be->rope_fwd(a->k, m->cos, m->sin, b, m->t, m->kv, m->hd, m->rd);
    memcpy(a->q, a->qr, (size_t)n * d * sizeof *a->q);
    be->head_gain_fwd(a->q, P(p->q_gain), n, m->h, m->hd);
    be->attention_fwd(a->o, a->lse, a->q, a->k, a->v, b, m->t, m->h, m->kv, m->hd, 1.0 / sqrt((double)m->hd),
                      m->attn_work);
    be->matmul_fwd(a->ao, a->o, P(p->proj), n, d, d);
    memcpy(xout, a->xm, (size_t)n * d * sizeof *xout);
    be->scale_add_fwd(xout, P(p->attn_scale), a->ao, n, d); /* xout = x1 */
    be->rmsnorm_fwd(a->ym, a->rs_m, xout, n, d, eps, s);
    be->matmul_fwd(a->hpre, a->ym, P(p->fc), n, d, m->hid);
    be->relu2_fwd(a->r, a->hpre, (size_t)n * m->hid, m->cfg.mlp_leaky_slope);
    be->matmul_fwd(a->mo, a->r, P(p->mlp_proj), n, m->hid, d);
    be->scale_add_fwd(xout, P(p->mlp_scale), a->mo, n, d);
}

double pg_model_forward(struct pg_model *m, const int32_t *x, const int32_t *y, int b, float *losses)
{
    const struct pg_backend *be = m->be;
    int n = b * m->t, d = m->d;
    size_t nd = (size_t)n * d;
    m->b = b;
    memcpy(m->targets, y, (size_t)n * sizeof *y);
    memcpy(m->ids, x, (size_t)n * sizeof *x);
    be->embedding_fwd(m->x, P(m->t_emb), x, n, d);
    be->rmsnorm_fwd(m->x0, m->rs0, m->x, n, d, m->cfg.rms_norm_eps, 1);
    memcpy(m->x, m->x0, nd * sizeof *m->x);
    for (int l = 0; l < m->nl; l++) {
        struct pg_block_acts *a = &m->acts[m->training ? l : 0];
        if (l >= m->n_enc) {
            int j = l - m->n_enc;
            if (j < m->n_skip) be->scale_add_fwd(m->x, P(m->t_skip) + (size_t)j * d, m->enc_out[m->n_enc - 1 - j], n, d);
        }
        block_forward(m, l, a, m->x, m->x, b);
        if (l < m->n_enc) memcpy(m->enc_out[l], m->x, nd * sizeof *m->x);
    }
    be->rmsnorm_fwd(m->yf, m->rsf, m->x, n, d, m->cfg.rms_norm_eps, 1); /* no LN scale on the final norm */
    const pg_real *head = m->t_head >= 0 ? P(m->t_head) : P(m->t_emb);
    return be->softcap_ce(NULL, NULL, losses, m->yf, head, m->targets, n, d, m->v, m->cfg.logit_softcap, 0,
                          m->ce_work);
}

/* ---- backward ---- */

/* dy: gradient of the block output (consumed); on return dx holds the gradient of the block
 * input, and m->dx0 has accumulated the x0 path. */
static void block_backward(struct pg_model *m, int l, struct pg_block_acts *a, pg_real *dy, pg_real *dx)
{
    const struct pg_backend *be = m->be;
    const struct pg_block_params *p = &m->blk[l];
    int b = m->b, n = b * m->t, d = m->d, hid = m->hid, kvd = m->kvd;
    /* x2 = x1 + mlp_scale ⊙ mo */
    be->scale_add_bwd(m->dtmp, G(p->mlp_scale), dy, P(p->mlp_scale), a->mo, n, d, 0);
    be->matmul_bwd(m->dr, G(p->mlp_proj), m->dtmp, a->r, P(p->mlp_proj), n, hid, d, 0);
    be->relu2_bwd(m->dh, m->dr, a->hpre, (size_t)n * hid, m->cfg.mlp_leaky_slope);
    be->matmul_bwd(m->dym, G(p->fc), m->dh, a->ym, P(p->fc), n, d, hid, 0);
    double s = ln_scale(m, l);
    be->rmsnorm_bwd(dy, m->dym, a->ym, a->rs_m, n, d, s, 1); /* dy is now d(x1) */
    /* x1 = xm + attn_scale ⊙ ao */
    be->scale_add_bwd(m->dtmp, G(p->attn_scale), dy, P(p->attn_scale), a->ao, n, d, 0);
    be->matmul_bwd(m->dxm, G(p->proj), m->dtmp, a->o, P(p->proj), n, d, d, 0); /* dxm = d(o) for now */
    pg_real *dq = m->dtmp;
    be->attention_bwd(dq, m->dk, m->dv, m->dxm, a->o, a->lse, a->q, a->k, a->v, b, m->t, m->h, m->kv, m->hd,
                      1.0 / sqrt((double)m->hd), m->attn_work);
    be->head_gain_bwd(dq, G(p->q_gain), a->qr, P(p->q_gain), n, m->h, m->hd);
    be->rope_bwd(dq, m->cos, m->sin, b, m->t, m->h, m->hd, m->rd);
    be->rope_bwd(m->dk, m->cos, m->sin, b, m->t, m->kv, m->hd, m->rd);
    be->rmsnorm_bwd(m->dxm, dq, a->qn, a->rs_q, n * m->h, m->hd, 1, 0);      /* d(q before norm) */
    be->rmsnorm_bwd(m->dkn, m->dk, a->kn, a->rs_k, n * m->kv, m->hd, 1, 0); /* d(k before norm) */
    be->matmul_bwd(m->dya, G(p->c_q), m->dxm, a->ya, P(p->c_q), n, d, d, 0);
    be->matmul_bwd(m->dya, G(p->c_k), m->dkn, a->ya, P(p->c_k), n, d, kvd, 1);
    be->matmul_bwd(m->dya, G(p->c_v), m->dv, a->ya, P(p->c_v), n, d, kvd, 1);
    /* dxm = d(x1) (residual) + RMSNorm backward of dya */
    memcpy(m->dxm, dy, (size_t)n * d * sizeof *dy);
    be->rmsnorm_bwd(m->dxm, m->dya, a->ya, a->rs_a, n, d, s, 1);
    /* xm = m0 ⊙ x + m1 ⊙ x0 */
    const pg_real *mix = P(p->resid_mix);
    pg_real *gmix = G(p->resid_mix);
    be->mix_bwd(dx, m->dx0, gmix, gmix + d, m->dxm, a->xin, m->x0, mix, mix + d, n, d);
}

void pg_model_backward(struct pg_model *m, double grad_scale)
{
    const struct pg_backend *be = m->be;
    int n = m->b * m->t, d = m->d;
    size_t nd = (size_t)n * d;
    const pg_real *head = m->t_head >= 0 ? P(m->t_head) : P(m->t_emb);
    pg_real *dhead = m->t_head >= 0 ? G(m->t_head) : G(m->t_emb);
    /* m->dx: gradient flowing down the residual stream */
    be->softcap_ce(m->dya, dhead, NULL, m->yf, head, m->targets, n, d, m->v, m->cfg.logit_softcap, grad_scale,
                   m->ce_work);
    be->rmsnorm_bwd(m->dx, m->dya, m->yf, m->rsf, n, d, 1, 0);
    memset(m->dx0, 0, nd * sizeof *m->dx0);
    for (int i = 0; i < m->n_enc; i++) memset(m->denc[i], 0, nd * sizeof *m->denc[i]);
    for (int l = m->nl - 1; l >= 0; l--) {
        struct pg_block_acts *a = &m->acts[l];
        if (l < m->n_enc) /* an encoder output also fed a decoder skip */
            for (size_t k = 0; k < nd; k++) m->dx[k] += m->denc[l][k];
        block_backward(m, l, a, m->dx, m->dym);
        memcpy(m->dx, m->dym, nd * sizeof *m->dx);
        if (l >= m->n_enc) {
            int j = l - m->n_enc;
            if (j < m->n_skip) /* x_in = x_prev + w_j ⊙ enc_out[n_enc-1-j]: x_prev's gradient is dx itself */
                be->scale_add_bwd(m->denc[m->n_enc - 1 - j], G(m->t_skip) + (size_t)j * d, m->dx,
                                  P(m->t_skip) + (size_t)j * d, m->enc_out[m->n_enc - 1 - j], n, d, 1);
        }
    }
    /* The first block's input is x0 itself. */
    for (size_t k = 0; k < nd; k++) m->dx0[k] += m->dx[k];
    be->rmsnorm_bwd(m->dx, m->dx0, m->x0, m->rs0, n, d, 1, 0);
    be->embedding_bwd(G(m->t_emb), m->dx, m->ids, n, d);
}

void pg_model_zero_grad(struct pg_model *m)
{
    if (m->grads) memset(m->grads, 0, m->nparams * sizeof *m->grads);
}

void pg_model_free(struct pg_model *m)
{
    free(m->tensors);
    free(m->blk);
    free(m->params);
    free(m->grads);
    if (m->acts) free(m->acts[0].xin); /* the arena starts with layer 0's first buffer */
    free(m->acts);
    free(m->enc_out);
    free(m->denc);
    free(m->targets);
    free(m->ids);
    memset(m, 0, sizeof *m);
}

int pg_model_check_ids(const struct pg_model *m, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->v)
            return pg_error(PG_E_FORMAT, "token %d at position %zu is outside the model's vocabulary of %d", ids[i], i,
                            m->v);
    return 0;
}
