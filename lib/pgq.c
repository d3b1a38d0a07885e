/* pgq.c: the .pgq quantized model file (see pgq.h and man/pg-formats.5, QUANTIZED MODEL). */
#define _POSIX_C_SOURCE 200809L
#include "pgq.h"

#include "err.h"
#include "half.h"
#include "mapfile.h"
#include "outfile.h"
#include "tok.h"
#include "trit.h"
#include "qxform.h"
#include "xio.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Header fields (byte offsets). */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_RESERVED0 = 12, H_FILE_SIZE = 16, H_CONFIG_OFF = 24, H_CONFIG_SIZE = 32,
    H_TABLE_OFF = 40, H_TABLE_SIZE = 48, H_DATA_OFF = 56, H_DATA_SIZE = 64, H_NTENSORS = 72, H_SCHEME = 76,
    H_TOK_VOCAB = 80, H_TOK_CRC = 84, H_TOK_SIZE = 88, H_RESERVED1 = 96,
};
/* Tensor entry fields. */
enum {
    E_NAME = 0, E_KIND = 48, E_BITS = 49, E_CLIP = 50, E_ROLE = 51, E_NDIM = 52, E_SHAPE0 = 56, E_SHAPE1 = 64,
    E_DATA_OFF = 72, E_DATA_SIZE = 80, E_SCALE_OFF = 88, E_SCALE_SIZE = 96, E_CLIP_PARAM = 104,
    /* version 1: bytes 108.. are reserved (zero); version 2 adds the LQER correction */
    E_RESERVED_V1 = 108, E_LQER_MODE = 108, E_LQER_RANK = 109, E_SCALE_CODE = 110, E_RESERVED_V2 = 111,
    E_XFORM = 111 /* version 3 */, E_LQER_OFF = 112,
    E_LQER_SIZE = 120,
};
#define NAME_LEN 48
#define CONFIG_MAX (1u << 20) /* a configuration is ~1 KB; anything near this is not one */

static const uint32_t accepted_versions[] = {1, 2, 3};

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), p, n);
}

int pg_pgq_sniff(const void *buf, size_t len)
{
    return len >= 8 && memcmp(buf, PG_PGQ_MAGIC, 8) == 0;
}

/* ---- the configuration as text ---- */

struct text {
    char *p;
    size_t len, cap;
};

static int add_kv(void *ctx, const char *key, const char *value)
{
    struct text *t = ctx;
    size_t n = strlen(key) + strlen(value) + 2;
    PG_TRY(pg_grow((void **)&t->p, &t->cap, t->len + n + 1, 1));
    t->len += (size_t)snprintf(t->p + t->len, t->cap - t->len, "%s=%s\n", key, value);
    return 0;
}

static int config_text(const struct pg_config *cfg, struct text *t)
{
    memset(t, 0, sizeof *t);
    int rc = pg_config_to_kv(cfg, add_kv, t);
    if (rc) {
        free(t->p);
        memset(t, 0, sizeof *t);
    }
    return rc;
}

/* ---- layout and writing ---- */

/* The canonical layout: header, config, table, then each tensor's values and scales. */
static void place(struct pg_qmodel *qm, uint64_t config_size, uint64_t *table_off, uint64_t *data_off,
                  uint64_t *data_size)
{
    *table_off = PG_PGQ_HEADER_SIZE + config_size;
    *data_off = *table_off + (uint64_t)qm->ntensors * PG_PGQ_ENTRY_SIZE;
    uint64_t at = *data_off;
    for (int i = 0; i < qm->ntensors; i++) {
        struct pg_qtensor *t = &qm->t[i];
        t->data_off = at;
        at += t->data_len;
        t->scale_off = t->scale_len ? at : 0;
        at += t->scale_len;
        t->xform_off = t->xform ? at : 0;
        at += t->xform ? t->xform_len : 0;
        t->lqer_off = t->lqer_rank ? at : 0;
        at += t->lqer_rank ? t->lqer_len : 0;
    }
    *data_size = at - *data_off;
}

int pg_pgq_layout(struct pg_qmodel *qm)
{
    struct text ct;
    PG_TRY(config_text(&qm->cfg, &ct));
    uint64_t a, b, c;
    place(qm, ct.len, &a, &b, &c);
    free(ct.p);
    return 0;
}

int pg_pgq_serialize(const struct pg_qmodel *qm_in, unsigned char **buf, size_t *len)
{
    struct text ct;
    PG_TRY(config_text(&qm_in->cfg, &ct));
    /* lay out a copy of the table, so that a const model serializes */
    struct pg_qmodel qm = *qm_in;
    qm.t = pg_malloc((size_t)(qm.ntensors ? qm.ntensors : 1) * sizeof *qm.t);
    if (!qm.t) {
        free(ct.p);
        return PG_E_NOMEM;
    }
    memcpy(qm.t, qm_in->t, (size_t)qm.ntensors * sizeof *qm.t);
    uint64_t table_off, data_off, data_size;
    place(&qm, ct.len, &table_off, &data_off, &data_size);
    uint64_t total = data_off + data_size + 4;
    unsigned char *p = total <= SIZE_MAX ? pg_calloc(1, (size_t)total) : NULL;
    if (!p) {
        free(ct.p);
        free(qm.t);
        return total <= SIZE_MAX ? PG_E_NOMEM : pg_error(PG_E_NOMEM, "a .pgq of %" PRIu64 " bytes", total);
    }
    /* the lowest version that expresses the model, so that older readers take what they can */
    uint32_t version = qm.scheme == PG_QSCHEME_TERNARY || qm.scheme == PG_QSCHEME_QUINARY ? 2 : 1;
    for (int i = 0; i < qm.ntensors; i++)
        if (qm.t[i].lqer_rank || qm.t[i].scale_code || (qm.t[i].kind == PG_QKIND_INT && qm.t[i].clip == PG_QCLIP_SEARCH))
            version = 2;
    for (int i = 0; i < qm.ntensors; i++)
        if (qm.t[i].xform) version = 3;
    memcpy(p + H_MAGIC, PG_PGQ_MAGIC, 8);
    pg_le32_put(p + H_VERSION, version);
    pg_le64_put(p + H_FILE_SIZE, total);
    pg_le64_put(p + H_CONFIG_OFF, PG_PGQ_HEADER_SIZE);
    pg_le64_put(p + H_CONFIG_SIZE, ct.len);
    pg_le64_put(p + H_TABLE_OFF, table_off);
    pg_le64_put(p + H_TABLE_SIZE, (uint64_t)qm.ntensors * PG_PGQ_ENTRY_SIZE);
    pg_le64_put(p + H_DATA_OFF, data_off);
    pg_le64_put(p + H_DATA_SIZE, data_size);
    pg_le32_put(p + H_NTENSORS, (uint32_t)qm.ntensors);
    pg_le32_put(p + H_SCHEME, (uint32_t)qm.scheme);
    pg_le32_put(p + H_TOK_VOCAB, qm.tok.vocab);
    pg_le32_put(p + H_TOK_CRC, qm.tok.crc32);
    pg_le64_put(p + H_TOK_SIZE, qm.tok.size);
    memcpy(p + PG_PGQ_HEADER_SIZE, ct.p, ct.len);
    for (int i = 0; i < qm.ntensors; i++) {
        const struct pg_qtensor *t = &qm.t[i];
        unsigned char *e = p + table_off + (uint64_t)i * PG_PGQ_ENTRY_SIZE;
        memcpy(e + E_NAME, t->name, strnlen(t->name, NAME_LEN - 1));
        e[E_KIND] = (unsigned char)t->kind;
        e[E_BITS] = (unsigned char)t->bits;
        e[E_CLIP] = (unsigned char)t->clip;
        e[E_ROLE] = (unsigned char)t->role;
        pg_le32_put(e + E_NDIM, (uint32_t)t->ndim);
        pg_le64_put(e + E_SHAPE0, (uint64_t)t->shape[0]);
        pg_le64_put(e + E_SHAPE1, (uint64_t)t->shape[1]);
        pg_le64_put(e + E_DATA_OFF, t->data_off);
        pg_le64_put(e + E_DATA_SIZE, t->data_len);
        pg_le64_put(e + E_SCALE_OFF, t->scale_off);
        pg_le64_put(e + E_SCALE_SIZE, t->scale_len);
        uint32_t cp;
        memcpy(&cp, &t->clip_param, 4);
        pg_le32_put(e + E_CLIP_PARAM, cp);
        memcpy(p + t->data_off, t->data, t->data_len);
        if (t->scale_len) memcpy(p + t->scale_off, t->scales, t->scale_len);
        e[E_SCALE_CODE] = (unsigned char)t->scale_code;
        if (t->xform) {
            e[E_XFORM] = (unsigned char)t->xform;
            memcpy(p + t->xform_off, t->xform_blob, t->xform_len);
        }
        if (t->lqer_rank) {
            e[E_LQER_MODE] = (unsigned char)(t->lqer_mode + 1);
            e[E_LQER_RANK] = (unsigned char)t->lqer_rank;
            pg_le64_put(e + E_LQER_OFF, t->lqer_off);
            pg_le64_put(e + E_LQER_SIZE, t->lqer_len);
            memcpy(p + t->lqer_off, t->lqer, t->lqer_len);
        }
    }
    pg_le32_put(p + total - 4, crc32_of(p, (size_t)total - 4));
    free(ct.p);
    free(qm.t);
    *buf = p;
    *len = (size_t)total;
    return 0;
}

int pg_pgq_write(const struct pg_qmodel *qm, const char *path)
{
    unsigned char *buf;
    size_t len;
    PG_TRY(pg_pgq_serialize(qm, &buf, &len));
    int rc = pg_out_save(path, buf, len);
    free(buf);
    return rc;
}

/* ---- reading ---- */

/* Parses the "key=value\n" configuration text over the defaults. */
static int parse_config(const unsigned char *p, size_t n, const char *name, struct pg_config *cfg)
{
    if (n == 0 || p[n - 1] != '\n')
        return pg_error(PG_E_FORMAT, "%s: the configuration text does not end with a newline", name);
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\n' && (p[i] < 0x20 || p[i] > 0x7e))
            return pg_error(PG_E_FORMAT, "%s: byte %zu of the configuration text is not printable ASCII", name, i);
    char *text = pg_malloc(n + 1);
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) lines += p[i] == '\n';
    const char **keys = pg_calloc(lines, sizeof *keys), **vals = pg_calloc(lines, sizeof *vals);
    int rc = 0;
    if (!text || !keys || !vals) rc = PG_E_NOMEM;
    size_t k = 0;
    if (!rc) {
        memcpy(text, p, n);
        text[n] = 0;
        for (char *line = text; *line && !rc; k++) {
            char *nl = strchr(line, '\n'), *eq;
            *nl = 0;
            if (!(eq = strchr(line, '=')) || eq == line)
                rc = pg_error(PG_E_FORMAT, "%s: configuration line %zu is not key=value", name, k + 1);
            else {
                *eq = 0;
                keys[k] = line;
                vals[k] = eq + 1;
            }
            line = nl + 1;
        }
    }
    pg_config_default(cfg);
    if (!rc && (rc = pg_config_from_kv(cfg, k, keys, vals)) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", pg_error_message());
        rc = pg_error(PG_E_FORMAT, "%s: bad configuration: %s", name, msg);
    }
    free(text);
    free(keys);
    free(vals);
    return rc;
}

/* Checks one table entry against the model's tensor mt and sets t; *at is the running offset. */
static int parse_entry(const unsigned char *e, int i, const struct pg_tensor *mt, int scheme, uint32_t version,
                       const char *name, uint64_t *at, uint64_t end, struct pg_qtensor *t)
{
    memset(t, 0, sizeof *t);
    size_t nl = strnlen((const char *)e + E_NAME, NAME_LEN);
    if (nl == NAME_LEN) return pg_error(PG_E_FORMAT, "%s: tensor %d: name is not NUL-terminated", name, i);
    for (size_t j = nl; j < NAME_LEN; j++)
        if (e[E_NAME + j]) return pg_error(PG_E_FORMAT, "%s: tensor %d: bytes after the name are not zero", name, i);
    memcpy(t->name, e + E_NAME, nl);
    if (strcmp(t->name, mt->name) != 0)
        return pg_error(PG_E_FORMAT, "%s: tensor %d is '%.47s', the configuration's model has '%s'", name, i, t->name,
                        mt->name);
    int first_reserved = version == 1 ? E_RESERVED_V1 : version == 2 ? E_RESERVED_V2 : E_LQER_OFF;
    for (int j = first_reserved; j < (version == 1 ? PG_PGQ_ENTRY_SIZE : E_LQER_OFF); j++)
        if (e[j]) return pg_error(PG_E_FORMAT, "%s: tensor '%s': reserved byte %d is not zero", name, t->name, j);
    t->kind = e[E_KIND], t->bits = e[E_BITS], t->clip = e[E_CLIP], t->role = e[E_ROLE];
    uint32_t cp = pg_le32_get(e + E_CLIP_PARAM);
    memcpy(&t->clip_param, &cp, 4);
    if (t->role != pg_qrole_of(t->name))
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': role %d, expected %d (%s)", name, t->name, t->role,
                        pg_qrole_of(t->name), pg_qrole_name(pg_qrole_of(t->name)));
    int good;
    switch (t->kind) {
    case PG_QKIND_INT:
        good = t->bits >= 2 && t->bits <= 8 && t->clip >= PG_QCLIP_QUANTILE &&
               t->clip <= (version >= 2 ? PG_QCLIP_SEARCH : PG_QCLIP_MAXABS) &&
               isfinite(t->clip_param) && t->clip_param >= 0 &&
               (scheme != PG_QSCHEME_INT8_BASELINE || (t->bits == 8 && t->clip == PG_QCLIP_QUANTILE));
        break;
    case PG_QKIND_TERN:
    case PG_QKIND_QUIN:
        good = version >= 2 && t->bits == (t->kind == PG_QKIND_TERN ? 2 : 3) && t->clip == 0 && cp == 0 &&
               scheme == (t->kind == PG_QKIND_TERN ? PG_QSCHEME_TERNARY : PG_QSCHEME_QUINARY);
        break;
    case PG_QKIND_F32: good = t->bits == 32 && t->clip == 0 && cp == 0; break;
    case PG_QKIND_F16: good = t->bits == 16 && t->clip == 0 && cp == 0; break;
    default:
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': unknown kind %d (1 int, 2 f32, 3 f16, 4 tern, 5 quin)", name,
                        t->name, t->kind);
    }
    if (!good)
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': bad bits %d, clip %d or clip parameter %g for kind %s",
                        name, t->name, t->bits, t->clip, (double)t->clip_param, pg_qkind_name(t->kind));
    t->ndim = (int)pg_le32_get(e + E_NDIM);
    uint64_t s0 = pg_le64_get(e + E_SHAPE0), s1 = pg_le64_get(e + E_SHAPE1);
    if (t->ndim != mt->ndim || s0 != (uint64_t)mt->shape[0] || s1 != (mt->ndim == 2 ? (uint64_t)mt->shape[1] : 0))
        return pg_error(PG_E_FORMAT, "%s: tensor '%s' has the wrong shape for the configuration", name, t->name);
    t->shape[0] = mt->shape[0];
    t->shape[1] = mt->ndim == 2 ? mt->shape[1] : 0;
    t->rows = mt->ndim == 2 ? mt->shape[0] : 1;
    t->cols = mt->ndim == 2 ? mt->shape[1] : mt->shape[0];
    uint64_t n = (uint64_t)mt->numel;
    int trit = t->kind == PG_QKIND_TERN || t->kind == PG_QKIND_QUIN;
    t->scale_code = version >= 2 ? e[E_SCALE_CODE] : 0;
    if (t->scale_code > PG_QSCALE_LOGDELTA || (t->scale_code && (t->kind != PG_QKIND_INT || scheme != PG_QSCHEME_INTN)))
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': scale code %d for a %s tensor", name, t->name, t->scale_code,
                        pg_qkind_name(t->kind));
    uint64_t want_data = t->kind == PG_QKIND_INT ? n : n * (uint64_t)(t->bits / 8);
    uint64_t want_scale = t->kind == PG_QKIND_INT ? (t->scale_code ? 1 + (uint64_t)t->rows : 2 * (uint64_t)t->rows)
                          : trit ? 2 * (uint64_t)pg_trit_ngroups(t->rows, t->cols) : 0;
    t->data_off = pg_le64_get(e + E_DATA_OFF);
    t->data_len = pg_le64_get(e + E_DATA_SIZE);
    if (trit) { /* packed codes: their size depends on them (checked when they are unpacked) */
        uint64_t bound = (uint64_t)pg_trit_pack_bound((int64_t)n, t->kind == PG_QKIND_TERN ? 3 : 5);
        if (t->data_len < 1 || t->data_len > bound)
            return pg_error(PG_E_FORMAT, "%s: tensor '%s': %" PRIu64 " bytes of packed codes, not 1 to %" PRIu64, name,
                            t->name, t->data_len, bound);
        want_data = t->data_len;
    }
    t->scale_off = pg_le64_get(e + E_SCALE_OFF);
    t->scale_len = pg_le64_get(e + E_SCALE_SIZE);
    if (want_data > end - *at || want_scale > end - *at - want_data)
        return pg_error(PG_E_FORMAT, "%s: tensor '%s' (%" PRIu64 " bytes at %" PRIu64 ") runs past the data section, "
                        "which ends at %" PRIu64, name, t->name, want_data + want_scale, *at, end);
    if (t->data_off != *at || t->data_len != want_data)
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': data at %" PRIu64 " (%" PRIu64 " bytes), expected %" PRIu64
                        " (%" PRIu64 " bytes)", name, t->name, t->data_off, t->data_len, *at, want_data);
    *at += want_data;
    uint64_t want_soff = want_scale ? *at : 0;
    if (t->scale_off != want_soff || t->scale_len != want_scale)
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': scales at %" PRIu64 " (%" PRIu64 " bytes), expected %" PRIu64
                        " (%" PRIu64 " bytes)", name, t->name, t->scale_off, t->scale_len, want_soff, want_scale);
    *at += want_scale;
    t->xform = version >= 3 ? e[E_XFORM] : 0;
    if (t->xform) {
        if (t->kind != PG_QKIND_INT || t->ndim != 2 || !pg_qxform_fits(t->xform, t->cols))
            return pg_error(PG_E_FORMAT, "%s: tensor '%s': transform %d for a %s tensor of %" PRId64 " columns (1 AWQ, "
                            "2 Hadamard over a power of two, on integer matrices)", name, t->name, t->xform,
                            pg_qkind_name(t->kind), t->cols);
        uint64_t want = pg_qxform_bytes(t->xform, t->cols);
        if (want > end - *at)
            return pg_error(PG_E_FORMAT, "%s: tensor '%s': the transform (%" PRIu64 " bytes at %" PRIu64
                            ") runs past the data section, which ends at %" PRIu64, name, t->name, want, *at, end);
        t->xform_off = *at, t->xform_len = want;
        *at += want;
    }
    if (version >= 2) {
        int mode = e[E_LQER_MODE];
        uint64_t loff = pg_le64_get(e + E_LQER_OFF), llen = pg_le64_get(e + E_LQER_SIZE);
        t->lqer_rank = e[E_LQER_RANK];
        if (mode == 0) {
            if (t->lqer_rank || loff || llen)
                return pg_error(PG_E_FORMAT, "%s: tensor '%s': LQER rank, offset or size without an LQER mode", name,
                                t->name);
        } else {
            int64_t mn = t->rows < t->cols ? t->rows : t->cols;
            if (mode > 2 || t->kind != PG_QKIND_INT || t->ndim != 2 || t->lqer_rank < 1 || t->lqer_rank > mn ||
                t->lqer_rank > PG_LQER_MAX_RANK)
                return pg_error(PG_E_FORMAT, "%s: tensor '%s': bad LQER mode %d or rank %d for a %s tensor of %" PRId64
                                " x %" PRId64, name, t->name, mode, t->lqer_rank, pg_qkind_name(t->kind), t->rows, t->cols);
            t->lqer_mode = mode - 1;
            uint64_t want = pg_lqer_bytes(t->lqer_mode, t->rows, t->cols, t->lqer_rank);
            if (want > end - *at)
                return pg_error(PG_E_FORMAT, "%s: tensor '%s': the LQER correction (%" PRIu64 " bytes at %" PRIu64
                                ") runs past the data section, which ends at %" PRIu64, name, t->name, want, *at, end);
            if (loff != *at || llen != want)
                return pg_error(PG_E_FORMAT, "%s: tensor '%s': LQER correction at %" PRIu64 " (%" PRIu64 " bytes), "
                                "expected %" PRIu64 " (%" PRIu64 " bytes)", name, t->name, loff, llen, *at, want);
            t->lqer_off = loff, t->lqer_len = llen;
            *at += want;
        }
    }
    t->rel_err = -1;
    return 0;
}

/* Checks the values of an integer tensor: q within ±(2^(bits−1) − 1), scales positive finite. */
static int check_int_values(const struct pg_qtensor *t, const char *name)
{
    int lim = (1 << (t->bits - 1)) - 1;
    const int8_t *q = (const int8_t *)t->data;
    for (uint64_t j = 0; j < t->data_len; j++)
        if (q[j] > lim || q[j] < -lim)
            return pg_error(PG_E_FORMAT, "%s: tensor '%s': value %d at element %" PRIu64 " is outside ±%d (%d bits)",
                            name, t->name, q[j], j, lim, t->bits);
    if (t->scale_code == PG_QSCALE_LOGDELTA) { /* the decoder checks the base and every code */
        float *s = pg_malloc((size_t)t->rows * sizeof *s);
        if (!s) return PG_E_NOMEM;
        int rc = pg_qtensor_steps(t, s, name);
        free(s);
        return rc;
    }
    for (int64_t r = 0; r < t->rows; r++) {
        uint16_t h = (uint16_t)(t->scales[2 * r] | t->scales[2 * r + 1] << 8);
        if ((h & 0x8000u) || (h & 0x7c00u) == 0x7c00u || h == 0)
            return pg_error(PG_E_FORMAT, "%s: tensor '%s': the scale of row %" PRId64 " (fp16 0x%04x) is not a "
                            "positive finite number", name, t->name, r, h);
    }
    return 0;
}

/* Checks an LQER correction's codes and scales (lqer.h), naming the tensor. */
static int check_lqer(const struct pg_qtensor *t, const char *name)
{
    struct pg_lqer l;
    PG_TRY(pg_lqer_deserialize(&l, t->lqer_mode, t->rows, t->cols, t->lqer_rank, t->lqer));
    char what[600];
    snprintf(what, sizeof what, "%s: tensor '%s'", name, t->name);
    int rc = pg_lqer_check(&l, what);
    pg_lqer_free(&l);
    return rc;
}

int pg_pgq_parse(const unsigned char *buf, size_t len, const char *name, struct pg_qmodel *qm)
{
    memset(qm, 0, sizeof *qm);
    if (len < 8 && (len == 0 || memcmp(buf, PG_PGQ_MAGIC, len) == 0))
        return pg_error(PG_E_FORMAT, "%s: truncated at offset %zu: the .pgq header is %d bytes", name, len,
                        PG_PGQ_HEADER_SIZE);
    if (len < 8 || memcmp(buf, PG_PGQ_MAGIC, 8) != 0)
        return pg_error(PG_E_FORMAT, "%s: not a pgolf quantized model (bad magic)", name);
    if (len < PG_PGQ_HEADER_SIZE)
        return pg_error(PG_E_FORMAT, "%s: truncated at offset %zu: the .pgq header is %d bytes", name, len,
                        PG_PGQ_HEADER_SIZE);
    uint32_t version = pg_le32_get(buf + H_VERSION);
    int known = 0;
    for (size_t i = 0; i < sizeof accepted_versions / sizeof accepted_versions[0]; i++)
        known |= version == accepted_versions[i];
    if (!known)
        return pg_error(PG_E_FORMAT, "%s: unsupported .pgq version %u (this build reads versions 1 to 3)", name, version);
    for (int j = H_RESERVED0; j < H_RESERVED0 + 4; j++)
        if (buf[j]) return pg_error(PG_E_FORMAT, "%s: reserved header byte %d is not zero", name, j);
    for (int j = H_RESERVED1; j < PG_PGQ_HEADER_SIZE; j++)
        if (buf[j]) return pg_error(PG_E_FORMAT, "%s: reserved header byte %d is not zero", name, j);
    uint64_t file_size = pg_le64_get(buf + H_FILE_SIZE);
    if (file_size > len)
        return pg_error(PG_E_FORMAT, "%s: truncated at offset %zu: the header says %" PRIu64 " bytes", name, len,
                        file_size);
    if (file_size < len)
        return pg_error(PG_E_FORMAT, "%s: %zu bytes, the header says %" PRIu64 " (trailing data)", name, len, file_size);
    if (file_size < PG_PGQ_HEADER_SIZE + 4)
        return pg_error(PG_E_FORMAT, "%s: file size %" PRIu64 " in the header is too small", name, file_size);
    uint32_t stored = pg_le32_get(buf + len - 4), computed = crc32_of(buf, len - 4);
    if (stored != computed)
        return pg_error(PG_E_FORMAT, "%s: checksum mismatch (stored %08x, computed %08x)", name, stored, computed);

    /* the sections: contiguous, in order, ending at the checksum */
    uint64_t coff = pg_le64_get(buf + H_CONFIG_OFF), csize = pg_le64_get(buf + H_CONFIG_SIZE);
    uint64_t toff = pg_le64_get(buf + H_TABLE_OFF), tsize = pg_le64_get(buf + H_TABLE_SIZE);
    uint64_t doff = pg_le64_get(buf + H_DATA_OFF), dsize = pg_le64_get(buf + H_DATA_SIZE);
    uint32_t nt = pg_le32_get(buf + H_NTENSORS);
    uint64_t end = file_size - 4;
    if (coff != PG_PGQ_HEADER_SIZE || csize > CONFIG_MAX || toff != coff + csize || nt > 1000000 ||
        tsize != (uint64_t)nt * PG_PGQ_ENTRY_SIZE || toff > end || tsize > end - toff || doff != toff + tsize ||
        dsize != end - doff)
        return pg_error(PG_E_FORMAT, "%s: the section offsets and sizes disagree (config %" PRIu64 "+%" PRIu64
                        ", table %" PRIu64 "+%" PRIu64 ", data %" PRIu64 "+%" PRIu64 ", file %" PRIu64 ")",
                        name, coff, csize, toff, tsize, doff, dsize, file_size);
    uint32_t scheme = pg_le32_get(buf + H_SCHEME);
    if (scheme < PG_QSCHEME_INT8_BASELINE || scheme > (version >= 2 ? PG_QSCHEME_QUINARY : PG_QSCHEME_INTN))
        return pg_error(PG_E_FORMAT, "%s: unknown scheme %u (1 int8-baseline, 2 intN%s)", name, scheme,
                        version >= 2 ? ", 3 ternary, 4 quinary" : "");
    qm->scheme = (int)scheme;
    qm->tok.vocab = pg_le32_get(buf + H_TOK_VOCAB);
    qm->tok.crc32 = pg_le32_get(buf + H_TOK_CRC);
    qm->tok.size = pg_le64_get(buf + H_TOK_SIZE);
    if (!qm->tok.vocab && (qm->tok.crc32 || qm->tok.size))
        return pg_error(PG_E_FORMAT, "%s: tokenizer checksum or size without a tokenizer vocabulary", name);

    PG_TRY(parse_config(buf + coff, (size_t)csize, name, &qm->cfg));
    if (pg_config_validate(&qm->cfg, (int)(qm->tok.vocab > 65536 ? 65537 : qm->tok.vocab))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", pg_error_message());
        return pg_error(PG_E_FORMAT, "%s: bad configuration: %s", name, msg);
    }
    /* the configuration's model gives the names and shapes the table must have (its table only);
     * every value takes a bit at least, so a configuration too large for the data section is
     * refused before anything is built from it */
    size_t np;
    PG_TRY(pg_model_count_params(&qm->cfg, &np));
    if ((np + 7) / 8 > dsize)
        return pg_error(PG_E_FORMAT, "%s: the configuration's model has %zu parameters, more than the %" PRIu64
                        "-byte data section can hold", name, np, dsize);
    struct pg_model m;
    PG_TRY(pg_model_init_shape(&m, &qm->cfg));
    int rc = 0;
    if ((int)nt != m.ntensors)
        rc = pg_error(PG_E_FORMAT, "%s: %u tensors, the configuration's model has %d", name, nt, m.ntensors);
    if (!rc && !(qm->t = pg_calloc(nt, sizeof *qm->t))) rc = PG_E_NOMEM;
    uint64_t at = doff;
    for (uint32_t i = 0; i < nt && !rc; i++) {
        struct pg_qtensor *t = &qm->t[i];
        rc = parse_entry(buf + toff + (uint64_t)i * PG_PGQ_ENTRY_SIZE, (int)i, &m.tensors[i], qm->scheme, version,
                         name, &at, end, t);
        if (!rc) {
            t->data = buf + t->data_off;
            t->scales = t->scale_len ? buf + t->scale_off : NULL;
            t->lqer = t->lqer_rank ? buf + t->lqer_off : NULL;
            t->xform_blob = t->xform ? buf + t->xform_off : NULL;
            if (t->kind == PG_QKIND_INT) rc = check_int_values(t, name);
            if (!rc && t->xform) {
                char what[600];
                struct pg_qxform x;
                snprintf(what, sizeof what, "%s: tensor '%s'", name, t->name);
                if (!(rc = pg_qxform_decode(&x, t->xform, t->cols, t->xform_blob, what))) pg_qxform_free(&x);
            }
            if (t->kind == PG_QKIND_TERN || t->kind == PG_QKIND_QUIN) rc = pg_qtensor_check_trit(t, name);
            if (!rc && t->lqer_rank) rc = check_lqer(t, name);
        }
    }
    if (!rc && at != end)
        rc = pg_error(PG_E_FORMAT, "%s: the tensors end at %" PRIu64 ", the data section at %" PRIu64, name, at, end);
    pg_model_free(&m);
    if (rc) {
        free(qm->t);
        memset(qm, 0, sizeof *qm);
        return rc;
    }
    qm->ntensors = (int)nt;
    return 0;
}

int pg_pgq_read(const char *path, struct pg_qmodel *qm)
{
    memset(qm, 0, sizeof *qm);
    struct pg_map *map = pg_calloc(1, sizeof *map);
    if (!map) return PG_E_NOMEM;
    int rc = pg_map_open(map, path);
    if (rc) {
        free(map);
        return rc;
    }
    static const unsigned char empty[1];
    rc = pg_pgq_parse(map->data ? map->data : empty, map->size, path, qm);
    if (rc) {
        pg_map_close(map);
        free(map);
        return rc;
    }
    qm->map = map;
    return 0;
}

void pg_pgq_unmap(struct pg_qmodel *qm)
{
    if (!qm->map) return;
    pg_map_close(qm->map);
    free(qm->map);
    qm->map = NULL;
}

/* ---- tokenizer identity ---- */

int pg_pgq_tok_identity(const char *path, struct pg_tok_id *id)
{
    struct pg_map map;
    PG_TRY(pg_map_open(&map, path));
    uint32_t crc = crc32_of(map.data, map.size); /* an empty file maps to NULL: crc32 0 */
    uint64_t size = map.size;
    pg_map_close(&map);
    struct pg_tok *tok;
    PG_TRY(pg_tok_load(&tok, path));
    id->vocab = (uint32_t)pg_tok_vocab_size(tok);
    id->crc32 = crc;
    id->size = size;
    pg_tok_free(tok);
    return 0;
}

int pg_pgq_check_tokenizer(const struct pg_qmodel *qm, const char *what, const char *tok_path)
{
    if (!qm->tok.vocab) return 0;
    struct pg_tok_id id;
    PG_TRY(pg_pgq_tok_identity(tok_path, &id));
    if (id.vocab == qm->tok.vocab && id.crc32 == qm->tok.crc32 && id.size == qm->tok.size) return 0;
    return pg_error(PG_E_FORMAT,
                    "%s: quantized for another tokenizer (vocab %u, crc32 %08x, %" PRIu64 " bytes), not %s (vocab %u, "
                    "crc32 %08x, %" PRIu64 " bytes)",
                    what, qm->tok.vocab, qm->tok.crc32, qm->tok.size, tok_path, id.vocab, id.crc32, id.size);
}
