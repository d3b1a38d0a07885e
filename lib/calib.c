/* calib.c: calibration statistics for GPTQ (see calib.h). */
#define _POSIX_C_SOURCE 200809L
#include "calib.h"

#include "err.h"
#include "quant.h"
#include "shard.h"
#include "xio.h"

#include <cblas.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(pg_real) == sizeof(float), "calibration sums fp32 activations (libpg's pg_real)");

static int site_cols(const struct pg_calib *c, int site) { return site == PG_TAP_MLP_PROJ ? c->hid : c->d; }
static int site_mats(const struct pg_calib *c, int site) { return site == PG_TAP_HEAD ? 1 : c->nl; }

/* The tap: H[layer][site] += XᵀX, as an fp32 SYRK of the batch added into the double sums. */
static void accumulate(void *ctx, int layer, int site, const pg_real *x, int n, int cols)
{
    struct pg_calib *c = ctx;
    int mat = site == PG_TAP_HEAD ? 0 : layer;
    if (c->dev_be) { /* dev += xᵀx on the device: the weight gradient of y = x·wᵀ with dy = x */
        c->dev_be->matmul_bwd(NULL, c->dev[site] + (size_t)mat * (size_t)cols * (size_t)cols, x, x, NULL, n, cols,
                              cols, 0);
        c->rows[site][mat] += n;
        return;
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, n, 1.0f, x, cols, 0.0f, c->gram, cols);
    double *h = c->h[site] + (size_t)mat * (size_t)cols * (size_t)cols;
    for (int i = 0; i < cols; i++)
        for (int j = i; j < cols; j++) h[(size_t)i * cols + j] += c->gram[(size_t)i * cols + j];
    c->rows[site][mat] += n;
}

int pg_calib_init(struct pg_calib *c, const struct pg_model *m)
{
    memset(c, 0, sizeof *c);
    c->nl = m->nl;
    c->d = m->d;
    c->hid = m->hid;
    int maxc = c->hid > c->d ? c->hid : c->d;
    for (int s = 0; s < PG_TAP_N; s++) {
        size_t cols = (size_t)site_cols(c, s), mats = (size_t)site_mats(c, s);
        c->h[s] = pg_calloc(mats * cols * cols, sizeof *c->h[s]);
        c->rows[s] = pg_calloc(mats, sizeof *c->rows[s]);
        if (!c->h[s] || !c->rows[s]) break;
    }
    c->gram = pg_malloc((size_t)maxc * (size_t)maxc * sizeof *c->gram);
    for (int s = 0; s < PG_TAP_N; s++)
        if (!c->h[s] || !c->rows[s]) c->gram = (free(c->gram), NULL);
    if (!c->gram) {
        pg_calib_free(c);
        return pg_error(PG_E_NOMEM, "calibration statistics for %d layers of width %d/%d", m->nl, m->d, m->hid);
    }
    c->tap.fn = accumulate;
    c->tap.ctx = c;
    return 0;
}

int pg_calib_add_tokens(struct pg_calib *c, struct pg_model *m, const int32_t *ids, int64_t nseq,
                        struct pg_progress *pr)
{
    if (c->finished) return pg_error(PG_E_INVAL, "calibration statistics are already finished");
    int t = m->t;
    PG_TRY(pg_model_check_ids(m, ids, (size_t)nseq * (size_t)t));
    if (!m->be->host_memory && !c->dev_be) {
        for (int s = 0; s < PG_TAP_N; s++) {
            size_t k = (size_t)site_mats(c, s) * (size_t)site_cols(c, s) * (size_t)site_cols(c, s);
            if (!(c->dev[s] = m->be->alloc(k * sizeof *c->dev[s]))) {
                for (int j = 0; j < s; j++) m->be->free(c->dev[j]), c->dev[j] = NULL;
                return pg_error(PG_E_NOMEM, "calibration sums on the device (%zu values)", k);
            }
            m->be->zero(c->dev[s], k);
        }
        c->dev_be = m->be;
    }
    int32_t *y = pg_malloc((size_t)m->max_b * (size_t)t * sizeof *y);
    if (!y) return PG_E_NOMEM;
    m->tap = &c->tap;
    for (int64_t s = 0; s < nseq; s += m->max_b) {
        int b = (int)(nseq - s < m->max_b ? nseq - s : m->max_b);
        const int32_t *x = ids + (size_t)s * (size_t)t;
        /* targets: the next token (the loss is not used; any id in range would do) */
        for (size_t i = 0; i < (size_t)b * (size_t)t; i++) y[i] = i + 1 < (size_t)b * (size_t)t ? x[i + 1] : x[0];
        pg_model_forward(m, x, y, b, NULL);
        c->tokens += (int64_t)b * t;
        if (pr) pg_progress_update(pr, (uint64_t)c->tokens);
    }
    m->tap = NULL;
    free(y);
    return m->be->status ? m->be->status() : 0;
}

int pg_calib_from_shards(struct pg_calib *c, struct pg_model *m, const char *dir, const char *prefix, int64_t tokens,
                         struct pg_progress *pr)
{
    char **paths = NULL;
    size_t n = 0;
    PG_TRY(pg_shard_list(dir, prefix, "train", &paths, &n));
    if (n == 0) {
        pg_shard_list_free(paths, n);
        return pg_error(PG_E_IO, "%s: no training shards %s_train_*.bin for calibration", dir, prefix);
    }
    struct pg_token_stream st;
    int rc = pg_stream_open(&st, paths, n);
    pg_shard_list_free(paths, n);
    if (rc) return rc;
    int64_t per = (int64_t)m->max_b * m->t, done = 0;
    uint16_t *raw = pg_malloc((size_t)per * sizeof *raw);
    int32_t *ids = pg_malloc((size_t)per * sizeof *ids);
    if (!raw || !ids) rc = PG_E_NOMEM;
    while (!rc && done < tokens) {
        int64_t want = tokens - done, nseq = (want + m->t - 1) / m->t;
        if (nseq > m->max_b) nseq = m->max_b;
        size_t k = (size_t)nseq * (size_t)m->t;
        rc = pg_stream_take(&st, raw, k);
        for (size_t i = 0; !rc && i < k; i++) ids[i] = raw[i];
        if (!rc) rc = pg_calib_add_tokens(c, m, ids, nseq, pr);
        done += (int64_t)k;
    }
    free(raw);
    free(ids);
    pg_stream_close(&st);
    return rc;
}

void pg_calib_finish(struct pg_calib *c)
{
    if (c->finished) return;
    /* device sums: downloaded (into the scratch, a matrix at a time) and added to the host's */
    for (int s = 0; c->dev_be && s < PG_TAP_N; s++) {
        size_t cols = (size_t)site_cols(c, s);
        for (int mat = 0; mat < site_mats(c, s); mat++) {
            c->dev_be->download(c->gram, c->dev[s] + (size_t)mat * cols * cols, cols * cols * sizeof *c->gram);
            double *h = c->h[s] + (size_t)mat * cols * cols;
            for (size_t i = 0; i < cols; i++)
                for (size_t j = i; j < cols; j++) h[i * cols + j] += c->gram[i * cols + j];
        }
    }
    for (int s = 0; s < PG_TAP_N; s++) {
        size_t cols = (size_t)site_cols(c, s);
        for (int mat = 0; mat < site_mats(c, s); mat++) {
            double *h = c->h[s] + (size_t)mat * cols * cols;
            double inv = c->rows[s][mat] ? 1.0 / (double)c->rows[s][mat] : 0.0;
            for (size_t i = 0; i < cols; i++)
                for (size_t j = i; j < cols; j++) h[j * cols + i] = h[i * cols + j] *= inv;
        }
    }
    c->finished = 1;
}

/* The layer number of "blocks.<l>.…", or -1. */
static int block_of(const char *name)
{
    if (strncmp(name, "blocks.", 7) != 0) return -1;
    char *end;
    long l = strtol(name + 7, &end, 10);
    return end != name + 7 && *end == '.' && l >= 0 && l < 1 << 20 ? (int)l : -1;
}

const double *pg_calib_hessian(const struct pg_calib *c, const struct pg_model *m, const char *name, int64_t *cols)
{
    int role = pg_qrole_of(name), site = -1, mat = 0;
    switch (role) {
    case PG_QROLE_C_Q:
    case PG_QROLE_C_K:
    case PG_QROLE_C_V: site = PG_TAP_QKV; break;
    case PG_QROLE_ATTN_PROJ: site = PG_TAP_PROJ; break;
    case PG_QROLE_MLP_FC: site = PG_TAP_FC; break;
    case PG_QROLE_MLP_PROJ: site = PG_TAP_MLP_PROJ; break;
    case PG_QROLE_LM_HEAD: site = m->t_head >= 0 ? PG_TAP_HEAD : -1; break;
    case PG_QROLE_TOK_EMB: site = m->t_head < 0 ? PG_TAP_HEAD : -1; break; /* tied: it is the head */
    default: break;
    }
    if (site < 0 || !c->finished || pg_model_find(m, name) < 0) return NULL;
    if (site != PG_TAP_HEAD) {
        mat = block_of(name);
        if (mat < 0 || mat >= c->nl) return NULL;
    }
    if (!c->rows[site][mat]) return NULL;
    *cols = site_cols(c, site);
    return c->h[site] + (size_t)mat * (size_t)*cols * (size_t)*cols;
}

void pg_calib_free(struct pg_calib *c)
{
    for (int s = 0; s < PG_TAP_N; s++) {
        free(c->h[s]);
        free(c->rows[s]);
    }
    free(c->gram);
    for (int s = 0; c->dev_be && s < PG_TAP_N; s++) c->dev_be->free(c->dev[s]);
    memset(c, 0, sizeof *c);
}
