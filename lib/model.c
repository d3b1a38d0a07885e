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

static int add_tensor(struct pg_model *m, int *cap, int kind, int64_t r, int64_t c, const char *fmt, int layer, int init,
                      double init_val)
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
    t->init = init;
    t->init_val = init_val;
    m->nparams += t->numel;
    return m->ntensors++;
}

/* parameter-golf's state_dict order: tok_emb, blocks in order, skip_weights (lm_head last); the
 * record stack's tensors go next to the module they belong to. Two of them are stored 2-D where
 * PyTorch has 3-D: parallel_post_lambdas [L, 2·2]. */
static int build_table(struct pg_model *m)
{
    const struct pg_config *c = &m->cfg;
    int cap = 0, d = m->d, bad = 0;
#define ADD(...) (bad |= (last = add_tensor(m, &cap, __VA_ARGS__)) < 0, last)
    int last;
    m->t_emb = ADD(PG_TENSOR_EMBED, m->v, d, "tok_emb.weight", 0, PG_INIT_NORMAL,
                   c->tie_embeddings ? c->tied_embed_init_std : 1.0); /* untied: nn.Embedding's N(0, 1) */
    m->t_bigram_emb = m->t_bigram_proj = m->t_bigram_scale = -1;
    if (c->bigram_vocab) { /* spec §2.11: table zero, projection a normal linear (orthogonal with OrthoInit) */
        m->t_bigram_emb = ADD(PG_TENSOR_EMBED, c->bigram_vocab, c->bigram_dim, "bigram.embed.weight", 0, PG_INIT_ZERO, 0);
        m->t_bigram_proj = ADD(PG_TENSOR_MATRIX, d, c->bigram_dim, "bigram.proj.weight", 0, PG_INIT_LINEAR, 0);
        m->t_bigram_scale = ADD(PG_TENSOR_CONTROL, 1, 0, "bigram.scale", 0, PG_INIT_CONST, 0.05);
    }
    m->t_ve_emb = m->t_ve_proj = m->t_ve_scale = m->t_ve_layer = -1;
    if (c->ve_last_n) { /* spec §2.12 */
        m->t_ve_emb = ADD(PG_TENSOR_EMBED, m->v, c->ve_dim, "ve_shared.embed.weight", 0, PG_INIT_NORMAL, 0.01);
        m->t_ve_proj = ADD(PG_TENSOR_MATRIX, m->kvd, c->ve_dim, "ve_shared.proj.weight", 0, PG_INIT_ZERO, 0);
        m->t_ve_scale = ADD(PG_TENSOR_CONTROL, 1, 0, "ve_shared.scale", 0, PG_INIT_CONST, 0.1);
        m->t_ve_layer = ADD(PG_TENSOR_CONTROL, c->ve_last_n, 0, "ve_layer_scales", 0, PG_INIT_CONST, 1.0);
    }
    m->t_smear_w = m->t_smear_lam = m->t_smear1 = -1;
    if (c->smear_gate) { /* spec §2.10 v2: identity at init */
        m->t_smear_w = ADD(PG_TENSOR_CONTROL, 1, c->gate_window, "smear_gate.weight", 0, PG_INIT_ZERO, 0);
        m->t_smear_lam = ADD(PG_TENSOR_CONTROL, 1, 0, "smear_lambda", 0, PG_INIT_ZERO, 0);
    }
    if (c->smear_gate_v1) m->t_smear1 = ADD(PG_TENSOR_CONTROL, d, 0, "smear.gate", 0, PG_INIT_ZERO, 0);
    m->blk = pg_calloc((size_t)m->nl, sizeof *m->blk);
    if (!m->blk) return PG_E_NOMEM;
    for (int l = 0; l < m->nl; l++) {
        struct pg_block_params *b = &m->blk[l];
        b->c_q = ADD(PG_TENSOR_MATRIX, d, d, "blocks.%d.attn.c_q.weight", l, PG_INIT_LINEAR, 0);
        b->c_k = ADD(PG_TENSOR_MATRIX, m->kvd, d, "blocks.%d.attn.c_k.weight", l, PG_INIT_LINEAR, 0);
        b->c_v = ADD(PG_TENSOR_MATRIX, m->kvd, d, "blocks.%d.attn.c_v.weight", l, PG_INIT_LINEAR, 0);
        b->proj = ADD(PG_TENSOR_MATRIX, d, d, "blocks.%d.attn.proj.weight", l, PG_INIT_ZERO, 0);
        b->q_gain = ADD(PG_TENSOR_CONTROL, m->h, 0, "blocks.%d.attn.q_gain", l, PG_INIT_CONST, c->qk_gain_init);
        b->attn_gate = -1;
        if (c->attn_out_gate || c->sparse_attn_gate)
            b->attn_gate = ADD(PG_TENSOR_CONTROL, m->h, c->gate_window, "blocks.%d.attn.attn_gate_w", l, PG_INIT_ZERO, 0);
        else if (c->gated_attn)
            b->attn_gate = ADD(PG_TENSOR_CONTROL, m->h, d, "blocks.%d.attn.attn_gate_w", l, PG_INIT_NORMAL,
                               c->gated_attn_init_std);
        b->fc = ADD(PG_TENSOR_MATRIX, m->hid, d, "blocks.%d.mlp.fc.weight", l, PG_INIT_LINEAR, 0);
        b->mlp_proj = ADD(PG_TENSOR_MATRIX, d, m->hid, "blocks.%d.mlp.proj.weight", l, PG_INIT_ZERO, 0);
        b->attn_scale = ADD(PG_TENSOR_CONTROL, d, 0, "blocks.%d.attn_scale", l, PG_INIT_CONST, 1.0);
        b->mlp_scale = ADD(PG_TENSOR_CONTROL, d, 0, "blocks.%d.mlp_scale", l, PG_INIT_CONST, 1.0);
        /* resid_mix is 2-D but a control tensor (parameter-golf's CONTROL_TENSOR_NAME_PATTERNS). */
        b->resid_mix = ADD(PG_TENSOR_CONTROL, 2, d, "blocks.%d.resid_mix", l, PG_INIT_RESID_MIX, 0);
    }
    m->t_skip = m->n_skip ? ADD(PG_TENSOR_CONTROL, m->n_skip, d, "skip_weights", 0, PG_INIT_CONST, 1.0) : -1;
    m->t_skip_gates = m->n_skip && c->skip_gates ? ADD(PG_TENSOR_CONTROL, m->n_skip, d, "skip_gates", 0, PG_INIT_ZERO, 0)
                                                  : -1;
    m->t_lane_post = m->t_lane_resid = -1;
    if (pg_config_two_lanes(c)) { /* spec §2.9: post P init 1, lane residual r init 1.1 */
        m->t_lane_post = ADD(PG_TENSOR_CONTROL, m->nl, 4, "parallel_post_lambdas", 0, PG_INIT_CONST, 1.0);
        m->t_lane_resid = ADD(PG_TENSOR_CONTROL, m->nl, 2, "parallel_resid_lambdas", 0, PG_INIT_CONST, 1.1);
    }
    m->t_head = c->tie_embeddings ? -1 : ADD(PG_TENSOR_HEAD, m->v, d, "lm_head.weight", 0, PG_INIT_ZERO, 0);
#undef ADD
    return bad ? PG_E_NOMEM : 0; /* add_tensor returns -1 (and adds nothing) when it cannot grow the table */
}

int pg_model_find(const struct pg_model *m, const char *name)
{
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}

/* A NULL from be->alloc as the function's result: PG_E_NOMEM with a message. A device backend has
 * recorded why (out of memory, naming the bytes asked and the device's free and total, or an
 * earlier failure of the device), and its status reports that, told what the memory was for;
 * otherwise the message names the bytes here. */
static int alloc_failed(const struct pg_backend *be, size_t bytes, const char *what)
{
    int rc = be->status ? be->status() : 0;
    if (rc == PG_E_NOMEM) {
        char why[768];
        snprintf(why, sizeof why, "%s", pg_error_message());
        return pg_error(rc, "%s (the model's %s)", why, what);
    }
    if (rc < 0) return rc;
    return pg_error(PG_E_NOMEM, "out of memory: %zu bytes of %s memory for the model's %s", bytes, be->name, what);
}

int pg_model_init_shape(struct pg_model *m, const struct pg_config *cfg)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
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
    m->n_skip = pg_config_num_skip_weights(cfg);
    /* The looped virtual list (spec §2.8); without loops it is the physical layers. */
    m->nv = pg_config_num_virtual(cfg);
    m->n_venc = m->nv / 2;
    m->looping = cfg->num_loops > 0;
    int rc = (m->vlist = pg_malloc((size_t)m->nv * sizeof *m->vlist)) ? 0 : PG_E_NOMEM;
    if (!rc) {
        int k = 0;
        for (int l = 0; l < m->nl; l++) {
            m->vlist[k++] = l;
            if (cfg->num_loops && l == cfg->loop_end)
                for (int r = 0; r < cfg->num_loops; r++)
                    for (int j = cfg->loop_start; j <= cfg->loop_end; j++) m->vlist[k++] = j;
        }
        rc = build_table(m);
    }
    if (rc) pg_model_free(m);
    return rc;
}

int pg_model_count_params(const struct pg_config *cfg, size_t *nparams)
{
    struct pg_model m;
    int rc = pg_model_init_shape(&m, cfg);
    *nparams = rc ? 0 : m.nparams;
    pg_model_free(&m);
    return rc;
}

int pg_model_init(struct pg_model *m, const struct pg_config *cfg, const struct pg_backend *be, int training)
{
    int rc = pg_model_init_shape(m, cfg);
    m->be = be;
    be->init();
    m->training = training;
    const char *fz = getenv("PG_FUSED");
    m->fused = be->qk_prep_fwd && be->qk_prep_bwd && be->mix_norm_fwd && be->add_norm_fwd && !(fz && !strcmp(fz, "0"));
    if (!rc) {
        m->params = be->alloc(m->nparams * sizeof *m->params);
        if (!m->params) rc = alloc_failed(be, m->nparams * sizeof *m->params, "parameters");
    }
    if (!rc && training) {
        m->grads = be->alloc(m->nparams * sizeof *m->grads);
        if (!m->grads) rc = alloc_failed(be, m->nparams * sizeof *m->grads, "gradients");
    }
    if (rc) pg_model_free(m);
    return rc;
}

#define P(i) (m->params + m->tensors[i].offset)
#define G(i) (m->grads + m->tensors[i].offset)
/* A weight matrix's gradient, or NULL (the product skips it) when the caller trains none */
#define GW(i) (m->side && m->side->no_weight_grads ? NULL : G(i))

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

/* Orthogonal init with gain 1, as torch.nn.init.orthogonal_ (spec §2.14): a Gaussian matrix,
 * made orthonormal along its shorter side by modified Gram-Schmidt in double, rounded to bf16. */
static int orthogonal(pg_real *p, int64_t rows, int64_t cols, struct pg_rng *rng)
{
    int64_t n = rows >= cols ? rows : cols, k = rows >= cols ? cols : rows; /* k vectors of length n */
    double *a = pg_malloc((size_t)(n * k) * sizeof *a);
    if (!a) return pg_error(PG_E_NOMEM, "out of memory for the orthogonal init of a %lld x %lld matrix",
                            (long long)rows, (long long)cols);
    for (int64_t i = 0; i < n * k; i++) a[i] = pg_rng_normal(rng);
    for (int64_t j = 0; j < k; j++) {
        double *v = a + j * n;
        for (int pass = 0; pass < 2; pass++) /* twice is enough for orthogonality to rounding error */
            for (int64_t i = 0; i < j; i++) {
                double *u = a + i * n, dot = 0;
                for (int64_t e = 0; e < n; e++) dot += u[e] * v[e];
                for (int64_t e = 0; e < n; e++) v[e] -= dot * u[e];
            }
        double nrm = 0;
        for (int64_t e = 0; e < n; e++) nrm += v[e] * v[e];
        nrm = sqrt(nrm);
        for (int64_t e = 0; e < n; e++) v[e] /= nrm;
    }
    /* rows >= cols: column j of p is vector j; else row j of p is vector j */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            p[r * cols + c] = bf16_round((float)(rows >= cols ? a[c * n + r] : a[r * n + c]));
    free(a);
    return 0;
}

int pg_model_init_weights(struct pg_model *m, uint64_t seed)
{
    struct pg_rng rng;
    pg_rng_seed(&rng, seed);
    /* computed in place on a host backend; on a device one in host memory, then uploaded */
    int staged = !m->be->host_memory;
    pg_real *host = staged ? pg_malloc((m->nparams ? m->nparams : 1) * sizeof *host) : m->params;
    if (!host) return pg_error(PG_E_NOMEM, "out of memory initializing %zu parameters", m->nparams);
    int rc = 0;
    for (int i = 0; i < m->ntensors && !rc; i++) {
        struct pg_tensor *t = &m->tensors[i];
        pg_real *p = host + t->offset;
        switch (t->init) {
        case PG_INIT_NORMAL:
            for (size_t k = 0; k < t->numel; k++) p[k] = bf16_round((float)(t->init_val * pg_rng_normal(&rng)));
            break;
        case PG_INIT_LINEAR:
            if (m->cfg.ortho_init && t->ndim == 2 && t->shape[0] >= 64 && t->shape[1] >= 64) {
                rc = orthogonal(p, t->shape[0], t->shape[1], &rng);
            } else {
                double bound = 1.0 / sqrt((double)t->shape[1]);
                for (size_t k = 0; k < t->numel; k++) p[k] = bf16_round((float)(bound * (2 * pg_rng_uniform(&rng) - 1)));
            }
            break;
        case PG_INIT_RESID_MIX:
            for (int64_t c = 0; c < t->shape[1]; c++) {
                p[c] = 1;
                p[t->shape[1] + c] = 0;
            }
            break;
        case PG_INIT_CONST:
            for (size_t k = 0; k < t->numel; k++) p[k] = (pg_real)t->init_val;
            break;
        default:
            for (size_t k = 0; k < t->numel; k++) p[k] = 0;
        }
    }
    if (staged) {
        if (!rc) m->be->upload(m->params, host, m->nparams * sizeof *host);
        free(host);
        if (!rc) rc = m->be->status(); /* the upload's failure, if any */
    }
    return rc;
}

/* ---- activations ---- */

static pg_real *arena_take(pg_real **cur, size_t n)
{
    if (!n) return NULL;
    pg_real *p = *cur;
    *cur += n;
    return p;
}

/* Whether physical layer l has XSA, a head-output gate, value embeddings (spec §2.3, §2.4, §2.12). */
static int has_xsa(const struct pg_model *m, int l) { return l >= m->nl - m->cfg.xsa_last_n; }
static int has_gate(const struct pg_model *m, int l) { return m->blk[l].attn_gate >= 0; }
static int ve_index(const struct pg_model *m, int l) { return m->cfg.ve_last_n ? l - (m->nl - m->cfg.ve_last_n) : -1; }

/* The floats that hold k bf16 values, a multiple of 4 (16 bytes: what follows stays aligned). */
static size_t bf16_floats(size_t k) { return ((k + 1) / 2 + 3) / 4 * 4; }

/* Whether the backend has every form m->x16 takes (lib/backend.h relu2_fwd_x16 ...). */
static int has_x16_forms(const struct pg_backend *be)
{
    return be->relu2_fwd_x16 && be->relu2_bwd_x16 && be->matmul_fwd_x16 && be->matmul_fwd_to16 && be->matmul_bwd_16 &&
           be->matmul_fwd_qkv && be->matmul_bwd_qkv && be->qk_prep_fwd && be->qk_prep_bwd &&
           be->scale_add_fwd_x16 && be->scale_add_bwd_x16 && be->add_norm_fwd_x16 && be->add_norm_bwd_x16 &&
           be->mix_norm_fwd_x16 && be->mix_norm_bwd_x16 && be->qk_prep_bwd_x16;
}

/* Whether the backend has every form m->qk16 takes (backend.h attention_x16 ...). */
static int has_qk16_forms(const struct pg_backend *be)
{
    return be->attention_x16 && be->qk_prep_fwd_x16 && be->attention_fwd_x16 && be->attention_bwd_x16;
}

/* Carves the activation arena; with base NULL it only counts. @return elements used. */
static size_t carve(struct pg_model *m, pg_real *base, size_t n, int t)
{
    const struct pg_config *c = &m->cfg;
    size_t d = (size_t)m->d, kvd = (size_t)m->kvd, hid = (size_t)m->hid, hn = n * (size_t)m->h,
           kn = n * (size_t)m->kv;
    int any_xsa = c->xsa_last_n > 0, any_gate = c->attn_out_gate || c->gated_attn || c->sparse_attn_gate;
    int lanes = c->parallel_start_layer > 0, gated_skip = c->skip_gates;
    int slots = m->training ? m->nv : 1, encs = m->n_venc > m->n_enc ? m->n_venc : m->n_enc;
    pg_real *cur = base;
    size_t used = 0;
#define TAKE(dst, cnt)                                                                                           \
    do {                                                                                                         \
        size_t cnt_ = (cnt);                                                                                     \
        used += cnt_;                                                                                            \
        if (base) dst = arena_take(&cur, cnt_);                                                                  \
    } while (0)
    /* The mixed input is read only within its block's forward (the backward takes xin and the
     * norm's output): one buffer serves every slot (n·d floats a layer less to keep). */
    pg_real *xm = NULL;
    TAKE(xm, n * d);
    for (int s = 0; s < slots; s++) {
        struct pg_block_acts *a = base ? &m->acts[s] : NULL, dummy;
        if (!a) a = &dummy;
        a->xm = xm;
        TAKE(a->xin, n * d); TAKE(a->ya, m->ya16 ? bf16_floats(n * d) : n * d); TAKE(a->rs_a, n);
        TAKE(a->qn, m->fused ? 0 : n * d); /* the plain chain's normed q: qk_prep_fwd writes q at once */
        TAKE(a->rs_q, hn); TAKE(a->qr, m->acts16 ? bf16_floats(n * d) : n * d); TAKE(a->q, n * d);
        TAKE(a->kn, m->acts16 ? bf16_floats(n * kvd) : n * kvd); TAKE(a->rs_k, kn);
        TAKE(a->k, m->acts_qk16 ? bf16_floats(n * kvd) : n * kvd);
        TAKE(a->v, m->acts_qk16 && !any_xsa && !c->ve_last_n ? bf16_floats(n * kvd) : n * kvd); /* see v16_of */
        /* the lean layout with q and k in bf16 keeps the attention output in bf16 only (in a->q)
         * where nothing reads it in fp32 (XSA and the gates do) */
        TAKE(a->o, m->acts_qk16 && !any_xsa && !any_gate ? 0 : n * d); TAKE(a->lse, hn);
        TAKE(a->ao, m->acts16 ? bf16_floats(n * d) : n * d);
        /* the MLP norm's fp32 output: the lean layout's sequential blocks recompute it for the
         * backward (add_norm_bwd_x16) and their MLP reads ym16 */
        TAKE(a->ym, m->acts16 && !lanes ? 0 : n * d); TAKE(a->rs_m, n);
        if (m->acts16) { /* bf16 only (x16): the fc output; ym16 (the activation: act16) */
            TAKE(a->hpre, bf16_floats(n * hid)); TAKE(a->r, bf16_floats(n * d));
        } else {
            TAKE(a->hpre, n * hid); TAKE(a->r, n * hid);
        }
        TAKE(a->mo, m->acts16 ? bf16_floats(n * d) : n * d);
        TAKE(a->ox, any_xsa ? n * d : 0); TAKE(a->oy, any_gate ? n * d : 0); TAKE(a->gate, any_gate ? hn : 0);
        TAKE(a->xskip, gated_skip ? n * d : 0);
        TAKE(a->xin1, lanes ? n * d : 0); TAKE(a->as, lanes ? n * d : 0); TAKE(a->ms, lanes ? n * d : 0);
    }
    TAKE(m->x, n * d); TAKE(m->x0, n * d); TAKE(m->yf, n * d); TAKE(m->rs0, n); TAKE(m->rsf, n);
    /* the embedding's output is read by the norm that makes x0 and, with the smear gate, by its
     * backward: without it, x's buffer holds it until x0 is copied there */
    TAKE(m->emb, c->smear_gate ? n * d : 0);
    if (base && !c->smear_gate) m->emb = m->x;
    TAKE(m->emb2, c->smear_gate ? n * d : 0); TAKE(m->xn, c->smear_gate_v1 ? n * d : 0);
    TAKE(m->smear_gate, c->smear_gate ? n : 0); TAKE(m->lane1, lanes ? n * d : 0);
    TAKE(m->bg_t, c->bigram_vocab ? n * (size_t)c->bigram_dim : 0); TAKE(m->bg_p, c->bigram_vocab ? n * d : 0);
    TAKE(m->ve_t, c->ve_last_n ? n * (size_t)c->ve_dim : 0); TAKE(m->ve, c->ve_last_n ? n * kvd : 0);
    for (int i = 0; i < encs; i++) TAKE(m->enc_out[base ? i : 0], n * d);
    int half = m->rd / 2;
    TAKE(m->cos, (size_t)t * half); TAKE(m->sin, (size_t)t * half);
    TAKE(m->attn_work, m->be->attention_work(t)); TAKE(m->ce_work, pg_ce_work(m->v));
    if (base && m->be->attention_work(t) == 0) m->attn_work = NULL; /* the backend keeps its own */
    if (m->training) {
        TAKE(m->dx, n * d); TAKE(m->dx0, n * d); TAKE(m->dxm, n * d); TAKE(m->dya, n * d); TAKE(m->dym, n * d);
        TAKE(m->dtmp, n * d); TAKE(m->dtmp2, n * d); TAKE(m->dtmp3, lanes ? n * d : 0);
        TAKE(m->dk, n * kvd); TAKE(m->dv, n * kvd); TAKE(m->dkn, n * kvd);
        TAKE(m->dh, n * hid); TAKE(m->dr, n * hid); TAKE(m->dl1, lanes ? n * d : 0);
        TAKE(m->dgu, any_gate ? n * d : 0); TAKE(m->dvx, any_xsa ? n * kvd : 0); TAKE(m->dve, c->ve_last_n ? n * kvd : 0);
        int small = c->bigram_vocab ? c->bigram_dim : 0;
        if (c->ve_last_n && c->ve_dim > small) small = c->ve_dim;
        TAKE(m->dsmall, n * (size_t)small);
        for (int i = 0; i < encs; i++) TAKE(m->denc[base ? i : 0], n * d);
    }
#undef TAKE
    return used;
}

/* The activations and their token buffers (what pg_model_alloc_acts allocates), freed. */
static void free_acts(struct pg_model *m)
{
    const struct pg_backend *be = m->be;
    if (be) {
        void *dev[] = {m->arena, m->in_dev, m->losses, m->stage_dev[0], m->stage_dev[1]};
        for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
            if (dev[i]) be->free(dev[i]);
        for (int s = 0; s < 2; s++)
            if (be->host_free) be->host_free(m->stage_host[s]);
            else free(m->stage_host[s]);
    }
    free(m->acts), free(m->enc_out), free(m->denc);
    m->arena = NULL, m->arena_bytes = 0, m->in_dev = NULL;
    m->targets = NULL, m->ids = NULL, m->doc_start = NULL, m->bg_idx = NULL;
    m->losses = NULL, m->acts = NULL, m->enc_out = NULL, m->denc = NULL;
    for (int s = 0; s < 2; s++) m->stage_host[s] = NULL, m->stage_dev[s] = NULL;
}

int pg_model_alloc_acts(struct pg_model *m, int max_b, int t)
{
    free_acts(m); /* a second call replaces the first's buffers */
    size_t n = (size_t)max_b * (size_t)t;
    int slots = m->training ? m->nv : 1, encs = m->n_venc > m->n_enc ? m->n_venc : m->n_enc;
    m->max_b = max_b;
    m->t = t;
    /* a lean training model in bf16 mode on a backend with the x16 forms keeps the products'
     * outputs in bf16 only and recomputes what is cheap to (model.h acts16; forward_body then
     * always takes those forms) */
    m->acts16 = m->lean && m->training && m->fused && has_x16_forms(m->be) && m->be->get_bf16 && m->be->get_bf16();
    m->acts_qk16 = m->acts16 && has_qk16_forms(m->be) && m->be->attention_x16(m->hd); /* and q, k in bf16 */
    const struct pg_config *c = &m->cfg; /* and the attention norm's output, where no gate reads it in fp32 */
    m->ya16 = m->acts16 && !(c->attn_out_gate || c->gated_attn || c->sparse_attn_gate);
    size_t total = carve(m, NULL, n, t);
    m->acts = pg_calloc((size_t)slots, sizeof *m->acts);
    m->enc_out = pg_calloc((size_t)(encs ? encs : 1), sizeof *m->enc_out);
    m->denc = pg_calloc((size_t)(encs ? encs : 1), sizeof *m->denc);
    /* the inputs in backend memory (targets, ids, document starts, bigram buckets), staged from
     * two host buffers laid out alike (pinned on a device, zeroed: a copy may cover unused rows) */
    const struct pg_backend *be = m->be;
    size_t in_bytes = 4 * n * sizeof *m->in_dev;
    m->in_stride = n;
    int host_ok = 1, dev_ok = (m->in_dev = be->alloc(in_bytes)) != NULL;
    if (dev_ok)
        m->targets = m->in_dev, m->ids = m->in_dev + n, m->doc_start = m->in_dev + 2 * n, m->bg_idx = m->in_dev + 3 * n;
    for (int s = 0; s < 2 && host_ok && dev_ok; s++) {
        m->stage_host[s] = be->host_alloc ? be->host_alloc(in_bytes) : pg_malloc(in_bytes);
        if ((host_ok = m->stage_host[s] != NULL)) memset(m->stage_host[s], 0, in_bytes);
        if (be->stage_in) dev_ok = (m->stage_dev[s] = be->alloc(in_bytes)) != NULL;
    }
    m->losses = be->alloc(n * sizeof *m->losses);
    m->arena = be->alloc(total * sizeof *m->arena);
    pg_real *tables = pg_malloc(((size_t)t * (m->rd / 2) + 1) * 2 * sizeof *tables);
    if (!host_ok && be->host_alloc) { /* pinned memory refused: the backend says why */
        free(tables);
        int rc = be->status();
        return rc ? rc : pg_error(PG_E_NOMEM, "cannot allocate %zu bytes of pinned host memory", in_bytes);
    }
    if (!dev_ok || !m->losses || !m->arena) {
        free(tables);
        return alloc_failed(be, total * sizeof *m->arena + (be->stage_in ? 3 : 1) * in_bytes + n * sizeof *m->losses,
                            "activations");
    }
    if (!m->acts || !m->enc_out || !m->denc || !host_ok || !tables) {
        free(tables);
        return PG_E_NOMEM; /* pg_malloc and pg_calloc named the bytes */
    }
    carve(m, m->arena, n, t);
    m->arena_bytes = total * sizeof *m->arena;
    /* RoPE tables for positions 0..t-1 over the rd rotated dims: theta = pos · base^(−2i/rd)
     * (partial RoPE's frequencies span its own slice, spec §2.2), computed in double. With
     * rope_bf16, as the PyTorch baseline after .bfloat16() (spec §3.3): inv_freq, the positions
     * (integers above 256 snap to even, above 512 to multiples of 4), their product and cos/sin
     * are each rounded to bf16. */
    int half = m->rd / 2;
    size_t nt = (size_t)t * half;
    pg_real *cs = tables, *sn = tables + nt;
    for (int p = 0; p < t; p++)
        for (int i = 0; i < half; i++) {
            size_t k = (size_t)p * half + i;
            if (m->cfg.rope_bf16) {
                float inv = bf16_round((float)(1.0 / pow(m->cfg.rope_base, (double)(2 * i) / m->rd)));
                float ang = bf16_round(bf16_round((float)p) * inv);
                cs[k] = bf16_round(cosf(ang));
                sn[k] = bf16_round(sinf(ang));
            } else {
                double ang = p * pow(m->cfg.rope_base, -2.0 * i / m->rd);
                cs[k] = (pg_real)cos(ang);
                sn[k] = (pg_real)sin(ang);
            }
        }
    be->upload(m->cos, cs, nt * sizeof *cs);
    be->upload(m->sin, sn, nt * sizeof *sn);
    free(tables);
    return 0;
}

/* ---- forward ---- */

/* The factor on block l's two norm outputs: 1/√(l+1) with ln_scale (spec §2.6), else 1. */
static double ln_scale(const struct pg_model *m, int l) { return m->cfg.ln_scale ? 1.0 / sqrt(l + 1.0) : 1.0; }

/* The slots of the current pass: the looped virtual list once the loop is on, else the layers. */
static int slot_count(const struct pg_model *m) { return m->looping ? m->nv : m->nl; }
static int slot_layer(const struct pg_model *m, int s) { return m->looping ? m->vlist[s] : s; }
static int slot_encoders(const struct pg_model *m) { return m->looping ? m->n_venc : m->n_enc; }
/* Decoder slots that pop an encoder output (LIFO): min(encoders, decoders, skip weight rows). */
static int active_skips(const struct pg_model *m)
{
    int e = slot_encoders(m), dec = slot_count(m) - e, k = e < dec ? e : dec;
    return k < m->n_skip ? k : m->n_skip;
}
/* The first decoder slot whose physical layer is >= parallel_start_layer (spec §2.9); it and every
 * later slot run as parallel blocks. slot_count when parallel residuals are off. */
static int parallel_from(const struct pg_model *m)
{
    int ns = slot_count(m);
    if (!m->cfg.parallel_start_layer) return ns;
    for (int s = slot_encoders(m); s < ns; s++)
        if (slot_layer(m, s) >= m->cfg.parallel_start_layer) return s;
    return ns;
}

enum block_mode { BLOCK_SEQ, BLOCK_GPTJ, BLOCK_LANES };

static void tap(const struct pg_model *m, int layer, int site, const pg_real *x, int n, int cols)
{
    if (m->tap) m->tap->fn(m->tap->ctx, layer, site, x, n, cols);
}

static void side_fwd(const struct pg_model *m, int tensor, const pg_real *x, pg_real *y, int in, int out)
{
    if (m->side && m->side->fwd) m->side->fwd(m->side->ctx, tensor, x, y, m->b, m->t, in, out);
}

static void side_bwd(const struct pg_model *m, int tensor, const pg_real *x, const pg_real *dy, pg_real *dx, int in,
                     int out)
{
    if (m->side && m->side->bwd) m->side->bwd(m->side->ctx, tensor, x, dy, dx, m->b, m->t, in, out);
}

/* q, k and v from one call (backend.h matmul_fwd_qkv: their input converted once in bf16 mode)
 * with the fused forms, when no side path runs beside them. */
static int qkv_together(const struct pg_model *m) { return m->fused && m->be->matmul_fwd_qkv && !m->side; }

/* The attention output in bf16, made by the attention itself with q and k in bf16 (m->qk16), in
 * the second half of a->q (q takes the first): its backward reads it so. NULL without qk16. */
static uint16_t *attn_out16(const struct pg_model *m, const struct pg_block_acts *a)
{
    return m->qk16 ? (uint16_t *)a->q + (size_t)m->b * m->t * m->d : NULL;
}

/* attn_out16 where it is the projection's input (no XSA, no gate in layer l), else NULL. */
static uint16_t *proj_in16(const struct pg_model *m, int l, const struct pg_block_acts *a)
{
    return has_xsa(m, l) || has_gate(m, l) ? NULL : attn_out16(m, a);
}

/* In bf16 mode, a product's output rounded as autocast stores it (a linear layer's output and
 * the attention's are bf16 there): the block's products and the attention. The x16 forms write
 * those in bf16 (matmul_fwd_to16, matmul_fwd_qkv's q16, k16 and v16, the flash forward). */
static void store_bf16(const struct pg_model *m, pg_real *y, size_t n)
{
    if (m->be->get_bf16 && m->be->get_bf16()) m->be->round_bf16(y, n);
}

/* The MLP activation in bf16 (x16): first in its slot's r buffer, or, in the lean layout, in the
 * second half of m->dh (the backward's scratch, whose first half holds the activation's
 * gradient): not kept between the forward and the backward, which recomputes it from h for the
 * projection's weight gradient (before the attention's backward takes m->dh). */
static uint16_t *act16(const struct pg_model *m, const struct pg_block_acts *a)
{
    return m->acts16 ? (uint16_t *)m->dh + (size_t)m->b * m->t * m->hid : (uint16_t *)a->r;
}

/* The v product in bf16 (first in a->v) where the fused attention is its one reader (q and k in
 * bf16; no XSA, no value embedding in layer l, which read or modify it in fp32), else NULL. */
static uint16_t *v16_of(const struct pg_model *m, int l, const struct pg_block_acts *a)
{
    return m->qk16 && !has_xsa(m, l) && ve_index(m, l) < 0 ? (uint16_t *)a->v : NULL;
}

/* The attention norm's output in bf16 (the lean layout keeps it so, in a->ya), else NULL. */
static const uint16_t *ya16(const struct pg_model *m, const struct pg_block_acts *a)
{
    return m->ya16 ? (const uint16_t *)a->ya : NULL;
}

/* p as the bf16 values the x16 forms keep there (a product's output), else NULL. */
static const uint16_t *as16(const struct pg_model *m, const pg_real *p)
{
    return m->x16 ? (const uint16_t *)p : NULL;
}

/* x += s ⊙ f for a branch output f (a->ao, a->mo: bf16 with the x16 forms), s parameter si. */
static void branch_add(const struct pg_model *m, pg_real *x, int si, const pg_real *f, int n)
{
    if (m->x16) m->be->scale_add_fwd_x16(x, P(si), (const uint16_t *)f, n, m->d);
    else m->be->scale_add_fwd(x, P(si), f, n, m->d);
}

/* Attention of layer l on the normed input a->ya: a->ao = proj(gate(xsa(attn(q, k, v)))). */
static void attn_forward(struct pg_model *m, int l, struct pg_block_acts *a, int b)
{
    const struct pg_backend *be = m->be;
    const struct pg_block_params *p = &m->blk[l];
    const struct pg_config *c = &m->cfg;
    int n = b * m->t, d = m->d;
    double eps = c->rms_norm_eps;
    tap(m, l, PG_TAP_QKV, a->ya, n, d);
    pg_real *kp = m->fused ? a->kn : a->k; /* fused: kn keeps the product */
    uint16_t *v16 = v16_of(m, l, a);
    if (m->x16) { /* the q and k products (and v for the fused attention) in bf16, from ya's bf16 copy */
        be->matmul_fwd_qkv(NULL, NULL, v16 ? NULL : a->v, (uint16_t *)a->qr, (uint16_t *)kp, v16,
                           m->ya16 ? NULL : a->ya, ya16(m, a), P(p->c_q), P(p->c_k), P(p->c_v), n, d, d, m->kvd);
    } else if (qkv_together(m)) {
        be->matmul_fwd_qkv(a->qr, kp, a->v, NULL, NULL, NULL, a->ya, NULL, P(p->c_q), P(p->c_k), P(p->c_v), n, d, d,
                           m->kvd);
    } else {
        be->matmul_fwd(a->qr, a->ya, P(p->c_q), n, d, d);
        side_fwd(m, p->c_q, a->ya, a->qr, d, d);
        be->matmul_fwd(kp, a->ya, P(p->c_k), n, d, m->kvd);
        side_fwd(m, p->c_k, a->ya, kp, d, m->kvd);
        be->matmul_fwd(a->v, a->ya, P(p->c_v), n, d, m->kvd);
        side_fwd(m, p->c_v, a->ya, a->v, d, m->kvd);
    }
    if (!m->x16) store_bf16(m, a->qr, (size_t)n * d), store_bf16(m, kp, (size_t)n * m->kvd);
    if (!v16) store_bf16(m, a->v, (size_t)n * m->kvd); /* v as autocast stores it, before a value embedding */
    const uint16_t *qr16 = as16(m, a->qr), *kp16 = as16(m, kp); /* the x16 forms' */
    const pg_real *qr = qr16 ? NULL : a->qr, *kpf = kp16 ? NULL : kp;
    int vi = ve_index(m, l);
    if (vi >= 0) be->scalar_add_fwd(a->v, P(m->t_ve_layer) + vi, P(m->t_ve_scale), m->ve, (size_t)n * m->kvd);
    if (m->qk16) { /* as below, q and k in bf16 for the attention, which reads them so */
        be->qk_prep_fwd_x16((uint16_t *)a->q, a->rs_q, qr, qr16, m->cos, m->sin, P(p->q_gain), b, m->t, m->h, m->hd,
                            m->rd, eps);
        be->qk_prep_fwd_x16((uint16_t *)a->k, a->rs_k, kpf, kp16, m->cos, m->sin, NULL, b, m->t, m->kv, m->hd, m->rd,
                            eps);
    } else if (m->fused) { /* qr and kn keep the products, which the backward recomputes from */
        be->qk_prep_fwd(a->q, a->rs_q, qr, qr16, m->cos, m->sin, P(p->q_gain), b, m->t, m->h, m->hd, m->rd, eps);
        be->qk_prep_fwd(a->k, a->rs_k, kpf, kp16, m->cos, m->sin, NULL, b, m->t, m->kv, m->hd, m->rd, eps);
    } else {
        be->rmsnorm_fwd(a->qn, a->rs_q, a->qr, n * m->h, m->hd, eps, 1);
        be->rmsnorm_fwd(a->kn, a->rs_k, a->k, n * m->kv, m->hd, eps, 1);
        be->copy(a->qr, a->qn, (size_t)n * d);
        be->copy(a->k, a->kn, (size_t)n * m->kvd);
        be->rope_fwd(a->qr, m->cos, m->sin, b, m->t, m->h, m->hd, m->rd);
        be->rope_fwd(a->k, m->cos, m->sin, b, m->t, m->kv, m->hd, m->rd);
        be->copy(a->q, a->qr, (size_t)n * d);
        be->head_gain_fwd(a->q, P(p->q_gain), n, m->h, m->hd);
    }
    double sc = 1.0 / sqrt((double)m->hd);
    if (m->qk16) { /* the output in bf16, and in a->o (rounded so) unless the lean layout has none */
        be->attention_fwd_x16(a->o, attn_out16(m, a), a->lse, (const uint16_t *)a->q, (const uint16_t *)a->k,
                              v16 ? NULL : a->v, v16, c->varlen_attn ? m->doc_start : NULL, b, m->t, m->h, m->kv,
                              m->hd, sc);
    } else {
        if (c->varlen_attn)
            be->attention_varlen_fwd(a->o, a->lse, a->q, a->k, a->v, m->doc_start, b, m->t, m->h, m->kv, m->hd, sc,
                                     m->attn_work);
        else
            be->attention_fwd(a->o, a->lse, a->q, a->k, a->v, b, m->t, m->h, m->kv, m->hd, sc, m->attn_work);
        store_bf16(m, a->o, (size_t)n * d);
    }
    const pg_real *o = a->o;
    if (has_xsa(m, l)) {
        be->copy(a->ox, o, (size_t)n * d);
        be->xsa_fwd(a->ox, a->v, n, m->h, m->kv, m->hd);
        o = a->ox;
    }
    if (has_gate(m, l)) {
        be->copy(a->oy, o, (size_t)n * d);
        be->head_gate_fwd(a->oy, a->gate, a->ya, P(p->attn_gate), n, m->h, m->hd, d, c->gated_attn ? d : c->gate_window,
                          c->sparse_attn_gate ? c->sparse_attn_gate_scale : 1.0, c->attn_out_gate ? 2.0 : 1.0);
        o = a->oy;
    }
    tap(m, l, PG_TAP_PROJ, o, n, d);
    if (m->x16) { /* the output in bf16 (from the attention's own bf16 copy when it made one) */
        const uint16_t *o16 = proj_in16(m, l, a);
        be->matmul_fwd_to16((uint16_t *)a->ao, o16 ? NULL : o, o16, P(p->proj), n, d, d);
        return;
    }
    be->matmul_fwd(a->ao, o, P(p->proj), n, d, d);
    side_fwd(m, p->proj, o, a->ao, d, d);
    store_bf16(m, a->ao, (size_t)n * d);
}

/* The MLP of layer l on the normed input a->ym: a->mo (h and relu²(h) and mo in bf16 with the
 * x16 forms, each first in its buffer). */
static void mlp_forward(struct pg_model *m, int l, struct pg_block_acts *a, int n)
{
    const struct pg_block_params *p = &m->blk[l];
    const struct pg_backend *be = m->be;
    size_t nh = (size_t)n * m->hid;
    tap(m, l, PG_TAP_FC, a->ym, n, m->d);
    if (m->x16) {
        uint16_t *h16 = (uint16_t *)a->hpre, *r16 = act16(m, a);
        be->matmul_fwd_to16(h16, a->ym16 ? NULL : a->ym, a->ym16, P(p->fc), n, m->d, m->hid);
        be->relu2_fwd_x16(r16, h16, nh, m->cfg.mlp_leaky_slope);
        be->matmul_fwd_to16((uint16_t *)a->mo, NULL, r16, P(p->mlp_proj), n, m->hid, m->d);
        return;
    }
    be->matmul_fwd(a->hpre, a->ym, P(p->fc), n, m->d, m->hid);
    store_bf16(m, a->hpre, nh);
    be->relu2_fwd(a->r, a->hpre, nh, m->cfg.mlp_leaky_slope);
    tap(m, l, PG_TAP_MLP_PROJ, a->r, n, m->hid);
    m->be->matmul_fwd(a->mo, a->r, P(p->mlp_proj), n, m->hid, m->d);
    side_fwd(m, p->mlp_proj, a->r, a->mo, m->hid, m->d);
    store_bf16(m, a->mo, (size_t)n * m->d);
}

/* One block (physical layer l) in place on m->x (and the second lane m->lane1). */
static void block_forward(struct pg_model *m, int l, struct pg_block_acts *a, int mode, int b)
{
    const struct pg_backend *be = m->be;
    const struct pg_block_params *p = &m->blk[l];
    int n = b * m->t, d = m->d;
    size_t nd = (size_t)n * d;
    double eps = m->cfg.rms_norm_eps, s = ln_scale(m, l);
    const pg_real *mix = P(p->resid_mix);
    /* with bf16 operands, a sequential block's MLP input is made in bf16 too, into r's buffer after
     * the activation (r takes n·hid of its bf16 places, ym n·d: room at d <= hid), or the lean
     * layout's r buffer, which holds it alone */
    uint16_t *ym16 = m->x16 && mode == BLOCK_SEQ && be->add_norm_fwd_x16 && (m->acts16 || m->d <= m->hid)
                         ? (uint16_t *)a->r + (m->acts16 ? 0 : (size_t)n * m->hid)
                         : NULL;
    a->ym16 = NULL;
    if (m->fused) { /* xin is read only by the backward */
        if (m->ya16) /* the lean layout: the norm's output in bf16 only, for the three products */
            be->mix_norm_fwd_x16(a->xin, a->xm, NULL, (uint16_t *)a->ya, a->rs_a, m->x, m->x0, mix, mix + d, n, d, eps,
                                 s);
        else
            be->mix_norm_fwd(m->training ? a->xin : NULL, a->xm, a->ya, a->rs_a, m->x, m->x0, mix, mix + d, n, d, eps,
                             s);
    } else {
        be->copy(a->xin, m->x, nd);
        be->mix_fwd(a->xm, a->xin, m->x0, mix, mix + d, n, d);
        be->rmsnorm_fwd(a->ya, a->rs_a, a->xm, n, d, eps, s);
    }
    attn_forward(m, l, a, b);
    if (mode == BLOCK_SEQ) { /* x1 = xm + as ⊙ ao; x = x1 + ms ⊙ MLP(norm(x1)) */
        if (m->x16) { /* ao in bf16; the MLP input also in bf16 where there is room, for its product */
            be->add_norm_fwd_x16(m->x, a->ym, ym16, a->rs_m, a->xm, P(p->attn_scale), (const uint16_t *)a->ao, n, d,
                                 eps, s);
            a->ym16 = ym16;
        } else if (m->fused) {
            be->add_norm_fwd(m->x, a->ym, a->rs_m, a->xm, P(p->attn_scale), a->ao, n, d, eps, s);
        } else {
            be->copy(m->x, a->xm, nd);
            be->scale_add_fwd(m->x, P(p->attn_scale), a->ao, n, d);
            be->rmsnorm_fwd(a->ym, a->rs_m, m->x, n, d, eps, s);
        }
        mlp_forward(m, l, a, n);
        branch_add(m, m->x, p->mlp_scale, a->mo, n);
    } else if (mode == BLOCK_GPTJ) { /* x = xm + as ⊙ ao + ms ⊙ MLP(norm(xm)) */
        be->rmsnorm_fwd(a->ym, a->rs_m, a->xm, n, d, eps, s);
        mlp_forward(m, l, a, n);
        be->copy(m->x, a->xm, nd);
        branch_add(m, m->x, p->attn_scale, a->ao, n);
        branch_add(m, m->x, p->mlp_scale, a->mo, n);
    } else { /* lanes: attention reads mix(lane0, x0), the MLP lane1; a 2x2 write-back */
        be->copy(a->xin1, m->lane1, nd);
        be->rmsnorm_fwd(a->ym, a->rs_m, a->xin1, n, d, eps, s);
        mlp_forward(m, l, a, n);
        be->zero(a->as, nd);
        branch_add(m, a->as, p->attn_scale, a->ao, n);
        be->zero(a->ms, nd);
        branch_add(m, a->ms, p->mlp_scale, a->mo, n);
        be->lanes_fwd(m->x, m->lane1, a->as, a->ms, P(m->t_lane_resid) + 2 * l, P(m->t_lane_post) + 4 * l, nd);
    }
}

/* The first position of each token's document in its sequence (varlen attention, spec §2.2). */
static void find_doc_starts(const struct pg_model *m, int32_t *doc, const int32_t *ids, int b)
{
    for (int r = 0; r < b; r++) {
        int32_t start = 0;
        for (int t = 0; t < m->t; t++) {
            size_t i = (size_t)r * m->t + t;
            if (ids[i] == m->cfg.bos_id) start = t;
            doc[i] = start;
        }
    }
}

/* BigramHash buckets (spec §2.11): the first token of a sequence gets the last bucket. */
static void bigram_buckets(const struct pg_model *m, int32_t *bg, const int32_t *ids, int b)
{
    int32_t mod = m->cfg.bigram_vocab - 1;
    for (int r = 0; r < b; r++)
        for (int t = 0; t < m->t; t++) {
            size_t i = (size_t)r * m->t + t;
            uint32_t h = t ? ((uint32_t)36313 * (uint32_t)ids[i]) ^ ((uint32_t)27191 * (uint32_t)ids[i - 1]) : 0;
            bg[i] = t ? (int32_t)(h % (uint32_t)mod) : mod;
        }
}

void pg_model_stage(struct pg_model *m, const int32_t *x, const int32_t *y, int b)
{
    const struct pg_backend *be = m->be;
    size_t n = (size_t)b * m->t, all = m->in_stride; /* (m->t may be lowered since: TTT windows) */
    int s = m->stage_slot = be->stage_in ? m->stage_slot ^ 1 : 0;
    if (be->stage_wait) be->stage_wait(s); /* the slot's previous copy has left it */
    int32_t *h = m->stage_host[s];
    memcpy(h, y, n * sizeof *h);
    memcpy(h + all, x, n * sizeof *h);
    size_t used = all + n; /* the prefix of the layout this batch fills */
    if (m->cfg.varlen_attn) find_doc_starts(m, h + 2 * all, h + all, b), used = 2 * all + n;
    if (m->cfg.bigram_vocab) bigram_buckets(m, h + 3 * all, h + all, b), used = 3 * all + n;
    if (be->stage_in) {
        be->stage_in(m->stage_dev[s], h, used * sizeof *h, s);
        be->stage_take(m->in_dev, m->stage_dev[s], used * sizeof *h, s);
    } else {
        be->upload(m->in_dev, h, used * sizeof *h);
    }
    m->b = b;
}

/* x0 = [smear1](RMSNorm([smear](E[ids] + bigram))) (spec §2.10-2.11); m->x = x0. */
static void embed_forward(struct pg_model *m, int b)
{
    const struct pg_backend *be = m->be;
    const struct pg_config *c = &m->cfg;
    int n = b * m->t, d = m->d;
    be->embedding_fwd(m->emb, P(m->t_emb), m->ids, n, d);
    if (c->bigram_vocab) {
        be->embedding_fwd(m->bg_t, P(m->t_bigram_emb), m->bg_idx, n, c->bigram_dim);
        be->matmul_fwd(m->bg_p, m->bg_t, P(m->t_bigram_proj), n, c->bigram_dim, d);
        be->scalar_add_fwd(m->emb, P(m->t_bigram_scale), NULL, m->bg_p, (size_t)n * d);
    }
    const pg_real *e = m->emb;
    if (c->smear_gate) {
        be->smear_fwd(m->emb2, m->smear_gate, m->emb, m->ids, P(m->t_smear_w), P(m->t_smear_lam), b, m->t, d,
                      c->gate_window, c->bos_id);
        e = m->emb2;
    }
    if (c->smear_gate_v1) {
        be->rmsnorm_fwd(m->xn, m->rs0, e, n, d, c->rms_norm_eps, 1);
        be->smear1_fwd(m->x0, m->xn, m->ids, P(m->t_smear1), b, m->t, d, -1); /* v1: no BOS mask (§2.10) */
    } else {
        be->rmsnorm_fwd(m->x0, m->rs0, e, n, d, c->rms_norm_eps, 1);
    }
    be->copy(m->x, m->x0, (size_t)n * d);
    if (c->ve_last_n) { /* the value embedding shared by the VE layers: W·E_ve[ids] */
        be->embedding_fwd(m->ve_t, P(m->t_ve_emb), m->ids, n, c->ve_dim);
        be->matmul_fwd(m->ve, m->ve_t, P(m->t_ve_proj), n, c->ve_dim, m->kvd);
    }
}

/* The output head's weights: its own, or the tied embedding's. */
static const pg_real *head_weights(const struct pg_model *m)
{
    return m->t_head >= 0 ? P(m->t_head) : P(m->t_emb);
}

/* The forward of the staged batch up to the final norm's output m->yf (the loss's input). */
static void forward_body(struct pg_model *m)
{
    const struct pg_backend *be = m->be;
    const struct pg_config *c = &m->cfg;
    int b = m->b, n = b * m->t, d = m->d;
    size_t nd = (size_t)n * d;
    /* bf16 operands made by their producers where nothing but the next product reads them */
    m->x16 = m->acts16 || (m->fused && has_x16_forms(be) && be->get_bf16 && be->get_bf16() && !m->tap && !m->side);
    m->qk16 = m->acts_qk16 || (m->x16 && has_qk16_forms(be) && be->attention_x16(m->hd));
    embed_forward(m, b);
    int ns = slot_count(m), ne = slot_encoders(m), nskip = active_skips(m), pf = parallel_from(m);
    m->nslots = ns;
    for (int s = 0; s < ns; s++) {
        struct pg_block_acts *a = &m->acts[m->training ? s : 0];
        int l = slot_layer(m, s);
        if (s == pf) be->copy(m->lane1, m->x, nd); /* both lanes start as x */
        if (s >= ne && s - ne < nskip) { /* the U-Net skip (into lane 0 in parallel blocks) */
            int j = s - ne;
            const pg_real *enc = m->enc_out[ne - 1 - j];
            if (m->t_skip_gates >= 0) {
                if (m->training) be->copy(a->xskip, m->x, nd);
                be->skip_gate_fwd(m->x, enc, P(m->t_skip) + (size_t)j * d, P(m->t_skip_gates) + (size_t)j * d, n, d);
            } else {
                be->scale_add_fwd(m->x, P(m->t_skip) + (size_t)j * d, enc, n, d);
            }
        }
        block_forward(m, l, a, s < pf ? BLOCK_SEQ : c->parallel_gptj ? BLOCK_GPTJ : BLOCK_LANES, b);
        if (s < ne) be->copy(m->enc_out[s], m->x, nd);
    }
    if (pf < ns && !c->parallel_gptj) { /* h = (lane0 + lane1) / 2 */
        be->axpy(m->x, 1, m->lane1, nd);
        be->scale(m->x, 0.5, nd);
    }
    be->rmsnorm_fwd(m->yf, m->rsf, m->x, n, d, c->rms_norm_eps, 1); /* no LN scale on the final norm */
    tap(m, -1, PG_TAP_HEAD, m->yf, n, d);
}

double pg_model_forward(struct pg_model *m, const int32_t *x, const int32_t *y, int b, float *losses)
{
    pg_model_stage(m, x, y, b);
    return pg_model_forward_staged(m, losses);
}

void pg_model_forward_deferred(struct pg_model *m, double *acc, double scale)
{
    const struct pg_config *c = &m->cfg;
    forward_body(m);
    const pg_real *head = head_weights(m);
    m->be->logit_ce_to(acc, scale, NULL, NULL, NULL, m->yf, head, m->targets, m->b * m->t, m->d, m->v,
                       c->logit_softcap, c->softcap_poly5, c->z_loss, 0, m->ce_work);
}

double pg_model_forward_staged(struct pg_model *m, float *losses)
{
    const struct pg_backend *be = m->be;
    const struct pg_config *c = &m->cfg;
    int n = m->b * m->t, d = m->d;
    forward_body(m);
    const pg_real *head = head_weights(m);
    float *dl = losses ? m->losses : NULL; /* per-token losses in backend memory, then copied out */
    double total = !c->softcap_poly5 && c->z_loss == 0 /* the baseline's path, the same call as always */
                       ? be->softcap_ce(NULL, NULL, dl, m->yf, head, m->targets, n, d, m->v, c->logit_softcap, 0,
                                        m->ce_work)
                       : be->logit_ce(NULL, NULL, dl, m->yf, head, m->targets, n, d, m->v, c->logit_softcap,
                                      c->softcap_poly5, c->z_loss, 0, m->ce_work);
    if (losses) be->download(losses, m->losses, (size_t)n * sizeof *losses);
    return total;
}

/* ---- backward ---- */

/* From dao, the gradient of a->ao: the attention's parameter gradients, dk/dv scratch, and
 * m->dya = the gradient of the normed input a->ya. */
static void attn_backward(struct pg_model *m, int l, struct pg_block_acts *a, const pg_real *dao)
{
    const struct pg_backend *be = m->be;
    const struct pg_block_params *p = &m->blk[l];
    const struct pg_config *c = &m->cfg;
    int b = m->b, n = b * m->t, d = m->d, kvd = m->kvd;
    int xsa = has_xsa(m, l), gate = has_gate(m, l);
    const pg_real *o_in = gate ? a->oy : xsa ? a->ox : a->o; /* what proj multiplied */
    if (m->x16) { /* dao in bf16 (branch_grad); the output too when the attention made it so */
        const uint16_t *o16 = proj_in16(m, l, a);
        be->matmul_bwd_16(m->dxm, G(p->proj), NULL, (const uint16_t *)dao, o16 ? NULL : o_in, o16, P(p->proj), n, d,
                          d, 0);
    } else {
        be->matmul_bwd(m->dxm, GW(p->proj), dao, o_in, P(p->proj), n, d, d, 0); /* dxm = d(o_in) for now */
        side_bwd(m, p->proj, o_in, dao, m->dxm, d, d);
    }
    if (gate) {
        be->zero(m->dgu, (size_t)n * d);
        be->head_gate_bwd(m->dxm, G(p->attn_gate), m->dgu, xsa ? a->ox : a->o, a->gate, a->ya, P(p->attn_gate), n,
                          m->h, m->hd, d, c->gated_attn ? d : c->gate_window,
                          c->sparse_attn_gate ? c->sparse_attn_gate_scale : 1.0, c->attn_out_gate ? 2.0 : 1.0);
    }
    if (xsa) {
        be->zero(m->dvx, (size_t)n * kvd);
        be->xsa_bwd(m->dxm, m->dvx, a->o, a->v, n, m->h, m->kv, m->hd);
    }
    pg_real *dq = m->dtmp;
    double sc = 1.0 / sqrt((double)m->hd);
    /* bf16 mode with the three products together: the gradients of the q, k and v products made in
     * bf16 by their producers (their one reader rounds them so), in m->dh, free since the MLP's
     * backward (which runs first in every block): q's and k's by their norms' backward (room at
     * 2·hid >= d + kvd), v's by the fused attention (room at 2·hid >= d + 2·kvd) where nothing
     * else reads it (no XSA, no value embedding) */
    uint16_t *dq16 = NULL, *dk16 = NULL, *dv16 = NULL;
    const uint16_t *v16 = v16_of(m, l, a); /* v's one reader is the fused attention: so is its gradient's */
    size_t room = 2 * (size_t)m->hid;
    if (m->x16 && qkv_together(m) && room >= (size_t)d + kvd) {
        dq16 = (uint16_t *)m->dh, dk16 = dq16 + (size_t)n * d;
        if (v16 && room >= (size_t)d + 2 * (size_t)kvd) dv16 = dk16 + (size_t)n * kvd;
    }
    if (m->qk16)
        be->attention_bwd_x16(dq, m->dk, m->dv, dv16, m->dxm, attn_out16(m, a), a->lse, (const uint16_t *)a->q,
                              (const uint16_t *)a->k, v16 ? NULL : a->v, v16, c->varlen_attn ? m->doc_start : NULL, b,
                              m->t, m->h, m->kv, m->hd, sc);
    else if (c->varlen_attn)
        be->attention_varlen_bwd(dq, m->dk, m->dv, m->dxm, a->o, a->lse, a->q, a->k, a->v, m->doc_start, b, m->t, m->h,
                                 m->kv, m->hd, sc, m->attn_work);
    else
        be->attention_bwd(dq, m->dk, m->dv, m->dxm, a->o, a->lse, a->q, a->k, a->v, b, m->t, m->h, m->kv, m->hd, sc,
                          m->attn_work);
    if (xsa) be->axpy(m->dv, 1, m->dvx, (size_t)n * kvd);
    const uint16_t *qr16 = as16(m, a->qr), *kn16 = as16(m, a->kn); /* the q and k products, x16 */
    if (dq16) {
        be->qk_prep_bwd_x16(dq16, G(p->q_gain), dq, NULL, qr16, a->rs_q, m->cos, m->sin, P(p->q_gain), b, m->t, m->h,
                            m->hd, m->rd);
        be->qk_prep_bwd_x16(dk16, NULL, m->dk, NULL, kn16, a->rs_k, m->cos, m->sin, NULL, b, m->t, m->kv, m->hd,
                            m->rd);
    } else if (m->fused) {
        be->qk_prep_bwd(m->dxm, G(p->q_gain), dq, qr16 ? NULL : a->qr, qr16, a->rs_q, m->cos, m->sin, P(p->q_gain), b,
                        m->t, m->h, m->hd, m->rd);
        be->qk_prep_bwd(m->dkn, NULL, m->dk, kn16 ? NULL : a->kn, kn16, a->rs_k, m->cos, m->sin, NULL, b, m->t,
                        m->kv, m->hd, m->rd);
    } else {
        be->head_gain_bwd(dq, G(p->q_gain), a->qr, P(p->q_gain), n, m->h, m->hd);
        be->rope_bwd(dq, m->cos, m->sin, b, m->t, m->h, m->hd, m->rd);
        be->rope_bwd(m->dk, m->cos, m->sin, b, m->t, m->kv, m->hd, m->rd);
        be->rmsnorm_bwd(m->dxm, dq, a->qn, a->rs_q, n * m->h, m->hd, 1, 0);      /* d(q before norm) */
        be->rmsnorm_bwd(m->dkn, m->dk, a->kn, a->rs_k, n * m->kv, m->hd, 1, 0); /* d(k before norm) */
    }
    int vi = ve_index(m, l);
    if (vi >= 0)
        be->scalar_add_bwd(m->dve, G(m->t_ve_layer) + vi, G(m->t_ve_scale), m->dv, P(m->t_ve_layer) + vi,
                           P(m->t_ve_scale), m->ve, (size_t)n * kvd, 1);
    if (qkv_together(m)) {
        be->matmul_bwd_qkv(m->dya, G(p->c_q), G(p->c_k), G(p->c_v), m->dxm, m->dkn, m->dv, dq16, dk16, dv16,
                           m->ya16 ? NULL : a->ya, ya16(m, a), P(p->c_q), P(p->c_k), P(p->c_v), n, d, d, kvd, 0);
    } else {
        be->matmul_bwd(m->dya, GW(p->c_q), m->dxm, a->ya, P(p->c_q), n, d, d, 0);
        side_bwd(m, p->c_q, a->ya, m->dxm, m->dya, d, d);
        be->matmul_bwd(m->dya, GW(p->c_k), m->dkn, a->ya, P(p->c_k), n, d, kvd, 1);
        side_bwd(m, p->c_k, a->ya, m->dkn, m->dya, d, kvd);
        be->matmul_bwd(m->dya, GW(p->c_v), m->dv, a->ya, P(p->c_v), n, d, kvd, 1);
        side_bwd(m, p->c_v, a->ya, m->dv, m->dya, d, kvd);
    }
    if (gate) be->axpy(m->dya, 1, m->dgu, (size_t)n * d);
}

/* From dmo, the gradient of a->mo: the MLP's parameter gradients and m->dym = d(a->ym). */
static void mlp_backward(struct pg_model *m, int l, struct pg_block_acts *a, const pg_real *dmo)
{
    const struct pg_backend *be = m->be;
    const struct pg_block_params *p = &m->blk[l];
    int n = m->b * m->t, d = m->d, hid = m->hid;
    if (m->x16) { /* dmo (branch_grad), the activation and its gradient dh (in m->dh's first half) in bf16 */
        uint16_t *dh16 = (uint16_t *)m->dh, *r16 = act16(m, a);
        const uint16_t *h16 = (const uint16_t *)a->hpre;
        if (m->acts16) be->relu2_fwd_x16(r16, h16, (size_t)n * hid, m->cfg.mlp_leaky_slope); /* recomputed */
        be->matmul_bwd_16(m->dr, G(p->mlp_proj), NULL, (const uint16_t *)dmo, NULL, r16, P(p->mlp_proj), n, hid, d, 0);
        be->relu2_bwd_x16(dh16, m->dr, h16, (size_t)n * hid, m->cfg.mlp_leaky_slope);
        be->matmul_bwd_16(m->dym, G(p->fc), NULL, dh16, a->ym16 ? NULL : a->ym, a->ym16, P(p->fc), n, d, hid, 0);
        return;
    }
    be->matmul_bwd(m->dr, GW(p->mlp_proj), dmo, a->r, P(p->mlp_proj), n, hid, d, 0);
    side_bwd(m, p->mlp_proj, a->r, dmo, m->dr, hid, d);
    be->relu2_bwd(m->dh, m->dr, a->hpre, (size_t)n * hid, m->cfg.mlp_leaky_slope);
    be->matmul_bwd(m->dym, GW(p->fc), m->dh, a->ym, P(p->fc), n, d, hid, 0);
}

/* The gradient of a scaled branch's output (x += s ⊙ f, s = parameter si): ds accumulated, and
 * s ⊙ dy into m->dtmp for the branch's backward; with m->x16, f comes in bf16 and s ⊙ dy is made
 * so (its one reader, the branch's last product, would round it so). */
static void branch_grad(struct pg_model *m, int si, const pg_real *dy, const pg_real *f)
{
    int n = m->b * m->t, d = m->d;
    if (m->x16) m->be->scale_add_bwd_x16((uint16_t *)m->dtmp, G(si), dy, P(si), (const uint16_t *)f, n, d);
    else m->be->scale_add_bwd(m->dtmp, G(si), dy, P(si), f, n, d, 0);
}

/* dst = base + the backward of the norm y = norm(x)·s from dy (rstd the forward's): one fused
 * pass where the backend has it, else a copy and the accumulating backward (the same bits). */
static void norm_bwd_add(struct pg_model *m, pg_real *dst, const pg_real *base, const pg_real *dy, const pg_real *y,
                         const pg_real *rstd, double s)
{
    const struct pg_backend *be = m->be;
    int n = m->b * m->t, d = m->d;
    if (m->fused && be->rmsnorm_bwd_add) {
        be->rmsnorm_bwd_add(dst, base, dy, y, rstd, n, d, s);
    } else {
        be->copy(dst, base, (size_t)n * d);
        be->rmsnorm_bwd(dst, dy, y, rstd, n, d, s, 1);
    }
}

/* dst = base + the backward of the attention's norm from m->dya (base NULL: nothing; base may be
 * dst), its output stored or, in the lean layout, recomputed from the block's input. */
static void attn_norm_bwd(struct pg_model *m, int l, struct pg_block_acts *a, pg_real *dst, const pg_real *base)
{
    const struct pg_backend *be = m->be;
    const pg_real *mix = P(m->blk[l].resid_mix);
    int n = m->b * m->t, d = m->d;
    double s = ln_scale(m, l);
    if (m->ya16) be->mix_norm_bwd_x16(dst, base, m->dya, a->xin, m->x0, mix, mix + d, a->rs_a, n, d, s);
    else if (!base || base == dst) be->rmsnorm_bwd(dst, m->dya, a->ya, a->rs_a, n, d, s, base != NULL);
    else norm_bwd_add(m, dst, base, m->dya, a->ya, a->rs_a, s);
}

/* In place on m->dx (and m->dl1 for lanes): the gradient of the block output becomes that of
 * its input; m->dx0 accumulates the x0 path. */
static void block_backward(struct pg_model *m, int l, struct pg_block_acts *a, int mode)
{
    const struct pg_backend *be = m->be;
    const struct pg_block_params *p = &m->blk[l];
    int n = m->b * m->t, d = m->d;
    size_t nd = (size_t)n * d;
    double s = ln_scale(m, l);
    const pg_real *mix = P(p->resid_mix);
    pg_real *gmix = G(p->resid_mix), *dy = m->dx;
    if (mode == BLOCK_SEQ) {
        branch_grad(m, p->mlp_scale, dy, a->mo);
        mlp_backward(m, l, a, m->dtmp);
        if (a->ym) be->rmsnorm_bwd(dy, m->dym, a->ym, a->rs_m, n, d, s, 1); /* dy is now d(x1) */
        else be->add_norm_bwd_x16(dy, m->dym, a->xin, m->x0, mix, mix + d, P(p->attn_scale), (const uint16_t *)a->ao,
                                  a->rs_m, n, d, s); /* the lean layout: the norm's output recomputed */
        branch_grad(m, p->attn_scale, dy, a->ao);
        attn_backward(m, l, a, m->dtmp);
        attn_norm_bwd(m, l, a, m->dtmp2, dy); /* d(xm) = d(x1) + the norm's backward */
        be->mix_bwd(m->dx, m->dx0, gmix, gmix + d, m->dtmp2, a->xin, m->x0, mix, mix + d, n, d);
    } else if (mode == BLOCK_GPTJ) {
        branch_grad(m, p->mlp_scale, dy, a->mo);
        mlp_backward(m, l, a, m->dtmp);
        norm_bwd_add(m, m->dtmp2, dy, m->dym, a->ym, a->rs_m, s);
        branch_grad(m, p->attn_scale, dy, a->ao);
        attn_backward(m, l, a, m->dtmp);
        attn_norm_bwd(m, l, a, m->dtmp2, m->dtmp2);
        be->mix_bwd(m->dx, m->dx0, gmix, gmix + d, m->dtmp2, a->xin, m->x0, mix, mix + d, n, d);
    } else {
        pg_real *da = m->dtmp2, *dm = m->dtmp3;
        be->lanes_bwd(m->dx, m->dl1, da, dm, G(m->t_lane_resid) + 2 * l, G(m->t_lane_post) + 4 * l, a->xin, a->xin1,
                      a->as, a->ms, P(m->t_lane_resid) + 2 * l, P(m->t_lane_post) + 4 * l, nd);
        branch_grad(m, p->mlp_scale, dm, a->mo);
        mlp_backward(m, l, a, m->dtmp);
        be->rmsnorm_bwd(m->dl1, m->dym, a->ym, a->rs_m, n, d, s, 1);
        branch_grad(m, p->attn_scale, da, a->ao);
        attn_backward(m, l, a, m->dtmp);
        attn_norm_bwd(m, l, a, dm, NULL); /* dm is free again: d(xm) */
        be->mix_bwd(da, m->dx0, gmix, gmix + d, dm, a->xin, m->x0, mix, mix + d, n, d);
        be->axpy(m->dx, 1, da, nd);
    }
}

/* From m->dx0 (the gradient of x0): the embedding-side parameter gradients. */
static void embed_backward(struct pg_model *m)
{
    const struct pg_backend *be = m->be;
    const struct pg_config *c = &m->cfg;
    int b = m->b, n = b * m->t, d = m->d;
    const pg_real *dn = m->dx0; /* gradient of the norm's output */
    if (c->smear_gate_v1) {
        be->smear1_bwd(m->dtmp, G(m->t_smear1), m->dx0, m->xn, m->ids, P(m->t_smear1), b, m->t, d, -1);
        dn = m->dtmp;
    }
    be->rmsnorm_bwd(m->dx, dn, c->smear_gate_v1 ? m->xn : m->x0, m->rs0, n, d, 1, 0); /* dx = d(norm input) */
    if (c->smear_gate) {
        be->smear_bwd(m->dtmp2, G(m->t_smear_w), G(m->t_smear_lam), m->dx, m->emb, m->smear_gate, m->ids,
                      P(m->t_smear_w), P(m->t_smear_lam), b, m->t, d, c->gate_window, c->bos_id);
        be->copy(m->dx, m->dtmp2, (size_t)n * d);
    }
    if (c->bigram_vocab) {
        be->scalar_add_bwd(m->dtmp, G(m->t_bigram_scale), NULL, m->dx, P(m->t_bigram_scale), NULL, m->bg_p,
                           (size_t)n * d, 0);
        be->matmul_bwd(m->dsmall, G(m->t_bigram_proj), m->dtmp, m->bg_t, P(m->t_bigram_proj), n, c->bigram_dim, d, 0);
        be->embedding_bwd(G(m->t_bigram_emb), m->dsmall, m->bg_idx, n, c->bigram_dim);
    }
    be->embedding_bwd(G(m->t_emb), m->dx, m->ids, n, d);
    if (c->ve_last_n) {
        be->matmul_bwd(m->dsmall, G(m->t_ve_proj), m->dve, m->ve_t, P(m->t_ve_proj), n, c->ve_dim, m->kvd, 0);
        be->embedding_bwd(G(m->t_ve_emb), m->dsmall, m->ids, n, c->ve_dim);
    }
}

void pg_model_backward(struct pg_model *m, double grad_scale)
{
    const struct pg_backend *be = m->be;
    const struct pg_config *c = &m->cfg;
    int n = m->b * m->t, d = m->d;
    size_t nd = (size_t)n * d;
    const pg_real *head = head_weights(m);
    pg_real *dhead = m->t_head >= 0 ? GW(m->t_head) : GW(m->t_emb);
    /* m->dx: gradient flowing down the residual stream (lane 0 in parallel blocks; m->dl1 lane 1) */
    if (be->logit_ce_to) /* the total is not needed: no wait for it */
        be->logit_ce_to(NULL, 0, m->dya, dhead, NULL, m->yf, head, m->targets, n, d, m->v, c->logit_softcap,
                        c->softcap_poly5, c->z_loss, grad_scale, m->ce_work);
    else if (!c->softcap_poly5 && c->z_loss == 0)
        be->softcap_ce(m->dya, dhead, NULL, m->yf, head, m->targets, n, d, m->v, c->logit_softcap, grad_scale,
                       m->ce_work);
    else
        be->logit_ce(m->dya, dhead, NULL, m->yf, head, m->targets, n, d, m->v, c->logit_softcap, c->softcap_poly5,
                     c->z_loss, grad_scale, m->ce_work);
    if (m->side && m->side->loss_weight) /* host memory: the side paths' condition */
        for (size_t k = 0; k < (size_t)n; k++)
            for (int j = 0; j < d; j++) m->dya[k * d + j] *= (pg_real)m->side->loss_weight[k];
    be->rmsnorm_bwd(m->dx, m->dya, m->yf, m->rsf, n, d, 1, 0);
    int ns = m->nslots, ne = slot_encoders(m), nskip = active_skips(m), pf = parallel_from(m);
    if (pf < ns && !c->parallel_gptj)
    {
        be->scale(m->dx, 0.5, nd);
        be->copy(m->dl1, m->dx, nd);
    }
    be->zero(m->dx0, nd);
    if (c->ve_last_n) be->zero(m->dve, (size_t)n * m->kvd);
    for (int i = 0; i < ne; i++) be->zero(m->denc[i], nd);
    for (int s = ns - 1; s >= 0; s--) {
        struct pg_block_acts *a = &m->acts[s];
        int l = slot_layer(m, s);
        if (s < ne) /* an encoder output also fed a decoder skip */
            be->axpy(m->dx, 1, m->denc[s], nd);
        block_backward(m, l, a, s < pf ? BLOCK_SEQ : c->parallel_gptj ? BLOCK_GPTJ : BLOCK_LANES);
        if (s >= ne && s - ne < nskip) {
            int j = s - ne;
            pg_real *denc = m->denc[ne - 1 - j];
            const pg_real *enc = m->enc_out[ne - 1 - j];
            if (m->t_skip_gates >= 0)
                be->skip_gate_bwd(m->dx, denc, G(m->t_skip) + (size_t)j * d, G(m->t_skip_gates) + (size_t)j * d,
                                  a->xskip, enc, P(m->t_skip) + (size_t)j * d, P(m->t_skip_gates) + (size_t)j * d, n,
                                  d);
            else /* x_in = x_prev + w_j ⊙ enc: x_prev's gradient is dx itself */
                be->scale_add_bwd(denc, G(m->t_skip) + (size_t)j * d, m->dx, P(m->t_skip) + (size_t)j * d, enc, n, d,
                                  1);
        }
        if (s == pf && !c->parallel_gptj) /* both lanes started as this slot's input */
            be->axpy(m->dx, 1, m->dl1, nd);
    }
    /* The first block's input is x0 itself. */
    be->axpy(m->dx0, 1, m->dx, nd);
    embed_backward(m);
}

void pg_model_zero_grad(struct pg_model *m)
{
    if (m->grads) m->be->zero(m->grads, m->nparams);
}

void pg_model_free(struct pg_model *m)
{
    free(m->tensors);
    free(m->blk);
    free_acts(m);
    if (m->be) {
        if (m->params) m->be->free(m->params);
        if (m->grads) m->be->free(m->grads);
    }
    free(m->vlist);
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
