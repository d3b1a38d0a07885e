/* ckpt.c: model <-> safetensors (see ckpt.h). */
#define _POSIX_C_SOURCE 200809L
#include "ckpt.h"

#include "half.h"

#include "err.h"
#include "safetensors.h"
#include "xio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(pg_real) == 4, "checkpoints are written from float parameters");

#define CKPT_VERSION "1"

struct meta_ctx {
    struct pg_st_writer *w;
};

static int add_meta(void *ctx, const char *key, const char *value)
{
    return pg_st_set_meta(((struct meta_ctx *)ctx)->w, key, value);
}

int pg_ckpt_save(const struct pg_model *m, const char *path, size_t n_extra, const char *const *extra_keys,
                 const char *const *extra_values)
{
    /* a device model's parameters are read through one host copy */
    const pg_real *params = m->params;
    pg_real *host = NULL;
    if (!m->be->host_memory) {
        if (!(host = pg_malloc((m->nparams ? m->nparams : 1) * sizeof *host))) return PG_E_NOMEM;
        m->be->download(host, m->params, m->nparams * sizeof *host);
        params = host;
        int rc = m->be->status();
        if (rc) {
            free(host);
            return rc;
        }
    }
    struct pg_st_writer w;
    pg_st_writer_init(&w);
    int rc = 0;
    for (int i = 0; i < m->ntensors && !rc; i++) {
        const struct pg_tensor *t = &m->tensors[i];
        rc = pg_st_add(&w, t->name, PG_ST_F32, t->ndim, t->shape, params + t->offset);
    }
    struct meta_ctx mc = {&w};
    if (!rc) rc = pg_config_to_kv(&m->cfg, add_meta, &mc);
    if (!rc) rc = pg_st_set_meta(&w, "format", "pt");
    if (!rc) rc = pg_st_set_meta(&w, "pgolf", CKPT_VERSION);
    for (size_t i = 0; i < n_extra && !rc; i++) rc = pg_st_set_meta(&w, extra_keys[i], extra_values[i]);
    if (!rc) rc = pg_st_write(&w, path);
    pg_st_writer_free(&w);
    free(host);
    return rc;
}

/* ---- reading ---- */

static const struct pg_st_tensor *need(const struct pg_st_file *f, const char *name, int ndim, int *rc)
{
    const struct pg_st_tensor *t = pg_st_find(f, name);
    if (!t || t->ndim != ndim) {
        *rc = pg_error(PG_E_FORMAT, "%s: %s tensor '%s'", f->path, t ? "wrongly shaped" : "no", name);
        return NULL;
    }
    return t;
}

/* The shape of a checkpoint without pgolf metadata, from its tensors. */
static int infer_config(const struct pg_st_file *f, struct pg_config *cfg)
{
    int rc = 0;
    const struct pg_st_tensor *emb = need(f, "tok_emb.weight", 2, &rc);
    if (!emb) return rc;
    int layers = 0;
    char name[64];
    for (;; layers++) {
        snprintf(name, sizeof name, "blocks.%d.attn.c_q.weight", layers);
        if (!pg_st_find(f, name)) break;
    }
    if (!layers) return pg_error(PG_E_FORMAT, "%s: no blocks.0.attn.c_q.weight: not a parameter-golf model", f->path);
    const struct pg_st_tensor *gain = need(f, "blocks.0.attn.q_gain", 1, &rc);
    const struct pg_st_tensor *ck = gain ? need(f, "blocks.0.attn.c_k.weight", 2, &rc) : NULL;
    const struct pg_st_tensor *fc = ck ? need(f, "blocks.0.mlp.fc.weight", 2, &rc) : NULL;
    if (!fc) return rc;
    cfg->vocab_size = (int)emb->shape[0];
    cfg->model_dim = (int)emb->shape[1];
    cfg->num_layers = layers;
    cfg->num_heads = (int)gain->shape[0];
    int hd = cfg->num_heads ? cfg->model_dim / cfg->num_heads : 0;
    cfg->num_kv_heads = hd ? (int)(ck->shape[0] / hd) : 0;
    cfg->mlp_mult = cfg->model_dim ? (int)(fc->shape[0] / cfg->model_dim) : 0;
    cfg->tie_embeddings = pg_st_find(f, "lm_head.weight") == NULL;
    return 0;
}

int pg_ckpt_read_config(const char *path, struct pg_config *cfg)
{
    struct pg_st_file f;
    PG_TRY(pg_st_open(&f, path));
    pg_config_default(cfg);
    int rc = 0;
    if (pg_st_meta(&f, "pgolf")) {
        /* Only the configuration's own keys: "format", "pgolf", "step" and the like are not. */
        const char **keys = pg_calloc(f.nmeta + 1, sizeof *keys), **vals = pg_calloc(f.nmeta + 1, sizeof *vals);
        size_t n = 0;
        if (!keys || !vals) rc = PG_E_NOMEM;
        for (size_t i = 0; i < f.nmeta && !rc; i++)
            if (pg_config_find(f.meta_keys[i]) && strcmp(pg_config_find(f.meta_keys[i])->key, f.meta_keys[i]) == 0) {
                keys[n] = f.meta_keys[i];
                vals[n++] = f.meta_values[i];
            }
        if (!rc && (rc = pg_config_from_kv(cfg, n, keys, vals))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", pg_error_message());
            rc = pg_error(PG_E_FORMAT, "%s: bad configuration in metadata: %s", path, msg);
        }
        free(keys);
        free(vals);
    } else {
        rc = infer_config(&f, cfg);
    }
    /* Every parameter takes 2 bytes at least (F16, BF16): a configuration whose model the tensors
     * cannot hold is refused here, before a caller allocates that model. */
    size_t np;
    uint64_t data = f.map.size - f.data_start;
    if (!rc && pg_config_validate(cfg, 0) == 0 && !(rc = pg_model_count_params(cfg, &np)) && np > data / 2)
        rc = pg_error(PG_E_FORMAT, "%s: the configuration's model has %zu parameters, more than the %llu bytes of "
                      "tensors hold", path, np, (unsigned long long)data);
    else if (!rc)
        pg_error_clear(); /* an invalid configuration is the caller's to report */
    pg_st_close(&f);
    return rc;
}

static int convert(pg_real *dst, const struct pg_st_tensor *t, size_t n, const char *path)
{
    const unsigned char *s = t->data;
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case PG_ST_F32: memcpy(&dst[i], s + 4 * i, 4); break;
        case PG_ST_F64: {
            double v;
            memcpy(&v, s + 8 * i, 8);
            dst[i] = (pg_real)v;
            break;
        }
        case PG_ST_BF16: {
            uint32_t b = (uint32_t)(s[2 * i] | s[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &b, 4);
            break;
        }
        case PG_ST_F16: dst[i] = pg_f16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8)); break;
        default:
            return pg_error(PG_E_FORMAT, "%s: tensor '%s' has dtype %s, not a float type", path, t->name,
                            pg_st_dtype_name(t->dtype));
        }
    }
    return 0;
}

int pg_ckpt_load(struct pg_model *m, const char *path)
{
    /* a device model's parameters are converted into one host copy, then uploaded */
    pg_real *params = m->params, *host = NULL;
    if (!m->be->host_memory) {
        if (!(host = pg_malloc((m->nparams ? m->nparams : 1) * sizeof *host))) return PG_E_NOMEM;
        params = host;
    }
    struct pg_st_file f;
    int rc = pg_st_open(&f, path);
    if (rc) {
        free(host);
        return rc;
    }
    if (f.ntensors != (size_t)m->ntensors)
        rc = pg_error(PG_E_FORMAT, "%s: %zu tensors, the model has %d", path, f.ntensors, m->ntensors);
    for (int i = 0; i < m->ntensors && !rc; i++) {
        const struct pg_tensor *mt = &m->tensors[i];
        const struct pg_st_tensor *t = pg_st_find(&f, mt->name);
        if (!t) {
            rc = pg_error(PG_E_FORMAT, "%s: no tensor '%s'", path, mt->name);
            break;
        }
        int same = t->ndim == mt->ndim;
        for (int k = 0; k < mt->ndim && same; k++) same = t->shape[k] == mt->shape[k];
        if (!same) {
            rc = pg_error(PG_E_FORMAT, "%s: tensor '%s' has the wrong shape for this configuration", path, mt->name);
            break;
        }
        rc = convert(params + mt->offset, t, mt->numel, path);
    }
    pg_st_close(&f);
    if (!rc && host) {
        m->be->upload(m->params, host, m->nparams * sizeof *host);
        rc = m->be->status();
    }
    free(host);
    return rc;
}
