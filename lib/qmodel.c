/* qmodel.c: the quantized model as it is read (quant.h): the names of schemes, kinds, roles and
 * classes, a tensor's row steps, dequantization, and freeing. Apart from the quantizer (quant.c,
 * with GPTQ and the calibration it needs), so that what scores a .pgq or an artifact, pg-eval and
 * pg-ttt, links none of that (pg-pack --code-self counts only the sources the scorers link). */
#define _POSIX_C_SOURCE 200809L
#include "quant.h"

#include "err.h"
#include "half.h"
#include "pgq.h"
#include "qxform.h"
#include "trit.h"
#include "xio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ---- */

static const char *const role_names[PG_QROLE_N] = {"other",     "tok_emb", "attn.c_q", "attn.c_k", "attn.c_v",
                                                   "attn.proj", "mlp.fc",  "mlp.proj", "lm_head"};
static const char *const class_names[PG_QCLASS_N] = {"attn", "mlp", "embed"};

const char *pg_qrole_name(int role) { return role >= 0 && role < PG_QROLE_N ? role_names[role] : "?"; }
const char *pg_qclass_name(int cls) { return cls >= 0 && cls < PG_QCLASS_N ? class_names[cls] : "-"; }

const char *pg_qscheme_name(int scheme)
{
    return scheme == PG_QSCHEME_INT8_BASELINE ? "int8-baseline"
           : scheme == PG_QSCHEME_INTN       ? "intN"
           : scheme == PG_QSCHEME_TERNARY    ? "ternary"
           : scheme == PG_QSCHEME_QUINARY    ? "quinary"
                                              : "?";
}

const char *pg_qclip_name(int clip)
{
    switch (clip) {
    case PG_QCLIP_NONE: return "-";
    case PG_QCLIP_QUANTILE: return "quantile";
    case PG_QCLIP_SDCLIP: return "sdclip";
    case PG_QCLIP_MAXABS: return "maxabs";
    case PG_QCLIP_SEARCH: return "search";
    default: return "?";
    }
}

const char *pg_qkind_name(int kind)
{
    return kind == PG_QKIND_INT    ? "int"
           : kind == PG_QKIND_F32  ? "f32"
           : kind == PG_QKIND_F16  ? "f16"
           : kind == PG_QKIND_TERN ? "tern"
           : kind == PG_QKIND_QUIN ? "quin"
                                   : "?";
}

int pg_qrole_of(const char *name)
{
    if (strcmp(name, "tok_emb.weight") == 0) return PG_QROLE_TOK_EMB;
    if (strcmp(name, "lm_head.weight") == 0) return PG_QROLE_LM_HEAD;
    if (strncmp(name, "blocks.", 7) != 0) return PG_QROLE_OTHER;
    const char *p = name + 7;
    if (*p < '0' || *p > '9') return PG_QROLE_OTHER;
    while (*p >= '0' && *p <= '9') p++;
    static const struct { const char *suffix; int role; } map[] = {
        {".attn.c_q.weight", PG_QROLE_C_Q},       {".attn.c_k.weight", PG_QROLE_C_K},
        {".attn.c_v.weight", PG_QROLE_C_V},       {".attn.proj.weight", PG_QROLE_ATTN_PROJ},
        {".mlp.fc.weight", PG_QROLE_MLP_FC},      {".mlp.proj.weight", PG_QROLE_MLP_PROJ},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(p, map[i].suffix) == 0) return map[i].role;
    return PG_QROLE_OTHER;
}

int pg_qclass_of_role(int role)
{
    switch (role) {
    case PG_QROLE_TOK_EMB:
    case PG_QROLE_LM_HEAD: return PG_QCLASS_EMBED;
    case PG_QROLE_C_Q:
    case PG_QROLE_C_K:
    case PG_QROLE_C_V:
    case PG_QROLE_ATTN_PROJ: return PG_QCLASS_ATTN;
    case PG_QROLE_MLP_FC:
    case PG_QROLE_MLP_PROJ: return PG_QCLASS_MLP;
    default: return -1;
    }
}

float pg_qtensor_scale(const struct pg_qtensor *t, int64_t r)
{
    if (t->scale_code == PG_QSCALE_LOGDELTA) { /* a sequence: decoded up to r (loops use pg_qtensor_steps) */
        float *s = pg_malloc((size_t)(r + 1) * sizeof *s);
        float v = s && !pg_trit_logdelta_decode(pg_le16_get(t->scales), t->scales + 2, r + 1, s,
                                                t->name) ? s[r] : NAN;
        free(s);
        return v;
    }
    return pg_f16_to_f32(pg_le16_get(t->scales + 2 * r));
}

int pg_qtensor_steps(const struct pg_qtensor *t, float *steps, const char *what)
{
    if (t->scale_code == PG_QSCALE_LOGDELTA) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: tensor '%s': log-delta steps", what, t->name);
        return pg_trit_logdelta_decode(pg_le16_get(t->scales), t->scales + 2, t->rows, steps, msg);
    }
    for (int64_t r = 0; r < t->rows; r++) steps[r] = pg_f16_to_f32(pg_le16_get(t->scales + 2 * r));
    return 0;
}

/* A TERN/QUIN tensor's codes unpacked and its scales read, dequantized into out (trit.h). */
static int trit_dequantize(const struct pg_qtensor *t, float *out, const char *what)
{
    int levels = t->kind == PG_QKIND_TERN ? 3 : 5;
    int64_t n = t->rows * t->cols, ng = pg_trit_ngroups(t->rows, t->cols);
    int8_t *q = pg_malloc((size_t)(n ? n : 1));
    uint16_t *sc = pg_malloc((size_t)(ng ? ng : 1) * sizeof *sc);
    int rc = q && sc ? 0 : PG_E_NOMEM;
    char msg[600];
    snprintf(msg, sizeof msg, "%s: tensor '%s'", what, t->name);
    if (!rc) rc = pg_trit_unpack_best(t->data, (int64_t)t->data_len, n, levels, q, msg);
    for (int64_t g = 0; !rc && g < ng; g++) sc[g] = pg_le16_get(t->scales + 2 * g);
    if (!rc) rc = pg_trit_dequantize(q, sc, t->rows, t->cols, levels, out, msg);
    free(q);
    free(sc);
    return rc;
}

int pg_qtensor_check_trit(const struct pg_qtensor *t, const char *what)
{
    int64_t n = t->rows * t->cols;
    float *w = pg_malloc((size_t)(n > 0 ? n : 1) * sizeof *w);
    if (!w) return PG_E_NOMEM;
    int rc = trit_dequantize(t, w, what);
    free(w);
    return rc;
}

int pg_qtensor_dequantize(const struct pg_qtensor *t, pg_real *out)
{
    if (t->kind == PG_QKIND_INT) {
        float *steps = pg_malloc((size_t)t->rows * sizeof *steps);
        if (!steps) return PG_E_NOMEM;
        int rc = pg_qtensor_steps(t, steps, "the quantized model");
        for (int64_t r = 0; r < t->rows && !rc; r++) {
            float s = steps[r];
            const int8_t *q = (const int8_t *)t->data + r * t->cols;
            for (int64_t c = 0; c < t->cols; c++) out[r * t->cols + c] = (pg_real)((float)q[c] * s);
        }
        free(steps);
        if (rc) return rc;
        if (t->xform) { /* undo the input transform the integers were chosen in */
            struct pg_qxform x;
            PG_TRY(pg_qxform_decode(&x, t->xform, t->cols, t->xform_blob, t->name));
            int xr = pg_qxform_inverse(&x, out, t->rows);
            pg_qxform_free(&x);
            if (xr) return xr;
        }
        if (t->lqer_rank) {
            struct pg_lqer l;
            PG_TRY(pg_lqer_deserialize(&l, t->lqer_mode, t->rows, t->cols, t->lqer_rank, t->lqer));
            pg_lqer_apply(&l, out);
            pg_lqer_free(&l);
        }
    } else if (t->kind == PG_QKIND_TERN || t->kind == PG_QKIND_QUIN) {
        PG_TRY(trit_dequantize(t, out, "the quantized model"));
    } else if (t->kind == PG_QKIND_F32) {
        for (int64_t i = 0; i < t->rows * t->cols; i++) {
            float v;
            memcpy(&v, t->data + 4 * i, 4);
            out[i] = (pg_real)v;
        }
    } else {
        for (int64_t i = 0; i < t->rows * t->cols; i++)
            out[i] = (pg_real)pg_f16_to_f32(pg_le16_get(t->data + 2 * i));
    }
    return 0;
}

int pg_qmodel_dequantize(const struct pg_qmodel *qm, struct pg_model *m, const char *what)
{
    if (qm->ntensors != m->ntensors)
        return pg_error(PG_E_FORMAT, "%s: %d tensors, the model has %d", what, qm->ntensors, m->ntensors);
    for (int i = 0; i < m->ntensors; i++) {
        const struct pg_tensor *mt = &m->tensors[i];
        const struct pg_qtensor *t = &qm->t[i];
        if (strcmp(t->name, mt->name) != 0)
            return pg_error(PG_E_FORMAT, "%s: tensor %d is '%s', the model's is '%s'", what, i, t->name, mt->name);
        if (t->ndim != mt->ndim || t->shape[0] != mt->shape[0] || (mt->ndim == 2 && t->shape[1] != mt->shape[1]))
            return pg_error(PG_E_FORMAT, "%s: tensor '%s' has the wrong shape for this configuration", what, t->name);
    }
    for (int i = 0; i < m->ntensors; i++) PG_TRY(pg_qtensor_dequantize(&qm->t[i], m->params + m->tensors[i].offset));
    return 0;
}

uint64_t pg_qmodel_payload_bytes(const struct pg_qmodel *qm)
{
    uint64_t n = 0;
    for (int i = 0; i < qm->ntensors; i++)
        n += qm->t[i].data_len + qm->t[i].scale_len + qm->t[i].lqer_len + qm->t[i].xform_len;
    return n;
}

void pg_qmodel_free(struct pg_qmodel *qm)
{
    free(qm->t);
    free(qm->arena);
    free(qm->lqer_arena);
    free(qm->xform_arena);
    pg_pgq_unmap(qm);
    memset(qm, 0, sizeof *qm);
}
