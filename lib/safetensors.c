/* safetensors.c: read, validate and write safetensors files (see safetensors.h). */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include "err.h"
#include "outfile.h"
#include "utf8.h"
#include "xio.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dtypes ---- */

static const char *const dtype_names[PG_ST_NDTYPES] = {
    "BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
};
static const unsigned char dtype_sizes[PG_ST_NDTYPES] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};

size_t pg_st_dtype_size(int dtype) { return dtype >= 0 && dtype < PG_ST_NDTYPES ? dtype_sizes[dtype] : 0; }

const char *pg_st_dtype_name(int dtype)
{
    return dtype >= 0 && dtype < PG_ST_NDTYPES ? dtype_names[dtype] : "invalid";
}

int pg_st_dtype_parse(const char *s)
{
    for (int i = 0; i < PG_ST_NDTYPES; i++)
        if (strcmp(s, dtype_names[i]) == 0) return i;
    return pg_error(PG_E_INVAL, "unknown safetensors dtype '%s'", s);
}

/* product(shape) x dtype size. @return 0, or -1 on overflow of 64 bits. */
static int tensor_bytes(int dtype, int ndim, const int64_t *shape, uint64_t *out)
{
    uint64_t n = pg_st_dtype_size(dtype);
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return -1;
    *out = n;
    return 0;
}

/* ---- reading ---- */

static const char *const fields[3] = {"dtype", "shape", "data_offsets"};

/* A JSON integer in [0, INT64_MAX] (jansson's json_int_t is 64-bit here). */
static int get_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Fills *t from one tensor entry, checking everything that concerns it alone. */
static int parse_tensor(const char *path, const char *name, json_t *v, uint64_t data_len, struct pg_st_tensor *t)
{
    if (!json_is_object(v)) return pg_error(PG_E_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (strcmp(k, fields[0]) && strcmp(k, fields[1]) && strcmp(k, fields[2]))
            return pg_error(PG_E_FORMAT, "%s: tensor '%s': unexpected field '%s'", path, name, k);
    }
    for (int i = 0; i < 3; i++)
        if (!json_object_get(v, fields[i]))
            return pg_error(PG_E_FORMAT, "%s: tensor '%s': missing field '%s'", path, name, fields[i]);

    json_t *dt = json_object_get(v, "dtype");
    t->dtype = -1;
    for (int i = 0; json_is_string(dt) && i < PG_ST_NDTYPES; i++)
        if (strcmp(json_string_value(dt), dtype_names[i]) == 0) t->dtype = i;
    if (t->dtype < 0)
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': unknown dtype %s%s%s", path, name, json_is_string(dt) ? "'" : "",
                        json_is_string(dt) ? json_string_value(dt) : "(not a string)", json_is_string(dt) ? "'" : "");

    json_t *sh = json_object_get(v, "shape");
    if (!json_is_array(sh)) return pg_error(PG_E_FORMAT, "%s: tensor '%s': shape is not an array", path, name);
    if (json_array_size(sh) > PG_ST_MAX_DIMS)
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': %zu dimensions, more than the %d supported", path, name,
                        json_array_size(sh), PG_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d;
        if (get_uint(json_array_get(sh, (size_t)i), &d))
            return pg_error(PG_E_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        t->shape[i] = (int64_t)d;
    }

    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2 || get_uint(json_array_get(off, 0), &t->begin) ||
        get_uint(json_array_get(off, 1), &t->end))
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': data_offsets is not two non-negative integers", path, name);
    if (t->begin > t->end)
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, name,
                        (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_len)
        return pg_error(PG_E_FORMAT, "%s: tensor '%s' ends at byte %llu of a %llu-byte data section: truncated", path,
                        name, (unsigned long long)t->end, (unsigned long long)data_len);
    uint64_t want;
    if (tensor_bytes(t->dtype, t->ndim, t->shape, &want))
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': the size of its shape overflows 64 bits", path, name);
    if (t->end - t->begin != want)
        return pg_error(PG_E_FORMAT, "%s: tensor '%s': data_offsets span %llu bytes but %s x shape needs %llu", path,
                        name, (unsigned long long)(t->end - t->begin), dtype_names[t->dtype],
                        (unsigned long long)want);
    return 0;
}

static int parse_meta(struct pg_st_file *f, json_t *v)
{
    if (json_is_null(v)) return 0; /* the reference reads null as "no metadata" */
    if (!json_is_object(v)) return pg_error(PG_E_FORMAT, "%s: __metadata__ is not a JSON object", f->path);
    size_t n = json_object_size(v);
    f->meta_keys = pg_calloc(n, sizeof *f->meta_keys);
    f->meta_values = pg_calloc(n, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) return PG_E_NOMEM;
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (!json_is_string(x))
            return pg_error(PG_E_FORMAT, "%s: __metadata__ value for '%s' is not a string", f->path, k);
        /* Count each pair only once both copies exist, so pg_st_close frees exactly these. */
        char *kc = pg_strdup(k), *vc = pg_strdup(json_string_value(x));
        if (!kc || !vc) {
            free(kc);
            free(vc);
            return PG_E_NOMEM;
        }
        f->meta_keys[f->nmeta] = kc;
        f->meta_values[f->nmeta++] = vc;
    }
    return 0;
}

/* Data order; zero-byte tensors sharing an offset are ordered by name so the result is fixed. */
static int cmp_offsets(const void *pa, const void *pb)
{
    const struct pg_st_tensor *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int parse_header(struct pg_st_file *f)
{
    const char *path = f->path;
    const unsigned char *d = f->map.data;
    size_t size = f->map.size;
    if (size < 8)
        return pg_error(PG_E_FORMAT, "%s: not a safetensors file: %zu bytes, shorter than the 8-byte header length",
                        path, size);
    uint64_t n = pg_le64_get(d);
    if (n > PG_ST_MAX_HEADER)
        return pg_error(PG_E_FORMAT, "%s: header length %llu is over the %llu-byte limit (not a safetensors file?)",
                        path, (unsigned long long)n, PG_ST_MAX_HEADER);
    if (n > size - 8)
        return pg_error(PG_E_FORMAT, "%s: header length %llu runs past the end of the %zu-byte file: truncated", path,
                        (unsigned long long)n, size);
    size_t valid = pg_utf8_valid_prefix(d + 8, (size_t)n);
    if (valid != n) return pg_error(PG_E_FORMAT, "%s: header is not valid UTF-8 (byte %zu)", path, 8 + valid);
    f->data_start = 8 + n;
    uint64_t data_len = size - f->data_start;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)d + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return pg_error(PG_E_FORMAT, "%s: header is not valid JSON: %s (header byte %d)", path, jerr.text,
                        jerr.position);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = pg_error(PG_E_FORMAT, "%s: header is not a JSON object", path);
        goto out;
    }
    if (!(f->t = pg_calloc(json_object_size(root), sizeof *f->t))) {
        rc = PG_E_NOMEM;
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0) {
            if ((rc = parse_meta(f, v))) goto out;
            continue;
        }
        struct pg_st_tensor *t = &f->t[f->ntensors];
        if ((rc = parse_tensor(path, k, v, data_len, t))) goto out;
        if (!(t->name = pg_strdup(k))) {
            rc = PG_E_NOMEM;
            goto out;
        }
        f->ntensors++;
    }

    /* The reference rule: in offset order, each tensor starts where the previous one ended,
     * the first at 0, and the last ends at the end of the file. */
    qsort(f->t, f->ntensors, sizeof *f->t, cmp_offsets);
    uint64_t at = 0;
    for (size_t i = 0; i < f->ntensors; i++) {
        const struct pg_st_tensor *t = &f->t[i];
        if (t->begin < at) {
            rc = pg_error(PG_E_FORMAT, "%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (..%llu)", path, t->name,
                          (unsigned long long)t->begin, (unsigned long long)t->end, f->t[i - 1].name,
                          (unsigned long long)at);
            goto out;
        }
        if (t->begin > at) {
            rc = pg_error(PG_E_FORMAT, "%s: hole in the data section: bytes %llu..%llu belong to no tensor", path,
                          (unsigned long long)at, (unsigned long long)t->begin);
            goto out;
        }
        at = t->end;
    }
    if (at != data_len) {
        rc = pg_error(PG_E_FORMAT, "%s: %llu bytes after the last tensor (data section %llu bytes, tensors %llu)", path,
                      (unsigned long long)(data_len - at), (unsigned long long)data_len, (unsigned long long)at);
        goto out;
    }
    for (size_t i = 0; i < f->ntensors; i++) f->t[i].data = d + f->data_start + f->t[i].begin;
out:
    json_decref(root);
    return rc;
}

int pg_st_open(struct pg_st_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    if (!(f->path = pg_strdup(path))) return PG_E_NOMEM;
    int rc = pg_map_open(&f->map, path);
    if (!rc) rc = parse_header(f);
    if (rc) pg_st_close(f);
    return rc;
}

const struct pg_st_tensor *pg_st_find(const struct pg_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->ntensors; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *pg_st_meta(const struct pg_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

static void free_meta(size_t n, char **keys, char **values)
{
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
        free(values[i]);
    }
    free(keys);
    free(values);
}

void pg_st_close(struct pg_st_file *f)
{
    if (f->t)
        for (size_t i = 0; i < f->ntensors; i++) free(f->t[i].name);
    free(f->t);
    free_meta(f->nmeta, f->meta_keys, f->meta_values);
    pg_map_close(&f->map);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* ---- writing ---- */

void pg_st_writer_init(struct pg_st_writer *w) { memset(w, 0, sizeof *w); }

static int check_utf8(const char *s, const char *what)
{
    size_t n = strlen(s);
    if (pg_utf8_valid_prefix((const unsigned char *)s, n) != n)
        return pg_error(PG_E_INVAL, "safetensors %s '%s' is not valid UTF-8", what, s);
    return 0;
}

int pg_st_add(struct pg_st_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
              const void *data)
{
    PG_TRY(check_utf8(name, "tensor name"));
    if (strcmp(name, "__metadata__") == 0)
        return pg_error(PG_E_INVAL, "'__metadata__' is reserved and cannot name a tensor");
    if (dtype < 0 || dtype >= PG_ST_NDTYPES) return pg_error(PG_E_INVAL, "tensor '%s': invalid dtype %d", name, dtype);
    if (ndim < 0 || ndim > PG_ST_MAX_DIMS)
        return pg_error(PG_E_INVAL, "tensor '%s': %d dimensions, outside 0..%d", name, ndim, PG_ST_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return pg_error(PG_E_INVAL, "tensor '%s': negative dimension %d", name, i);
    uint64_t nbytes;
    if (tensor_bytes(dtype, ndim, shape, &nbytes) || nbytes > INT64_MAX)
        return pg_error(PG_E_INVAL, "tensor '%s': its size overflows", name);
    if (nbytes && !data) return pg_error(PG_E_INVAL, "tensor '%s': no data", name);
    for (size_t i = 0; i < w->ntensors; i++)
        if (strcmp(w->t[i].name, name) == 0) return pg_error(PG_E_INVAL, "tensor '%s' added twice", name);
    PG_TRY(pg_grow((void **)&w->t, &w->cap, w->ntensors + 1, sizeof *w->t));
    struct pg_st_tensor *t = &w->t[w->ntensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = pg_strdup(name))) return PG_E_NOMEM;
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->end = nbytes; /* the size; the offsets are assigned by pg_st_write */
    t->data = data;
    w->ntensors++;
    return 0;
}

int pg_st_set_meta(struct pg_st_writer *w, const char *key, const char *value)
{
    PG_TRY(check_utf8(key, "metadata key"));
    PG_TRY(check_utf8(value, "metadata value"));
    char *v = pg_strdup(value);
    if (!v) return PG_E_NOMEM;
    for (size_t i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_values[i]);
            w->meta_values[i] = v;
            return 0;
        }
    size_t kcap = w->metacap;
    char *k = pg_strdup(key);
    int rc = k ? pg_grow((void **)&w->meta_keys, &kcap, w->nmeta + 1, sizeof *w->meta_keys) : PG_E_NOMEM;
    if (!rc) rc = pg_grow((void **)&w->meta_values, &w->metacap, w->nmeta + 1, sizeof *w->meta_values);
    if (rc) {
        free(k);
        free(v);
        return rc;
    }
    w->meta_keys[w->nmeta] = k;
    w->meta_values[w->nmeta++] = v;
    return 0;
}

/* A growing JSON text; the first failure sticks, so appends need no checks. */
struct sbuf {
    char *p;
    size_t len, cap;
    int rc;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->rc || (b->rc = pg_grow((void **)&b->p, &b->cap, b->len + n, 1))) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(struct sbuf *b, uint64_t v)
{
    char tmp[24];
    sb_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v));
}

/* A quoted string escaped exactly as serde_json does (so our headers equal the reference's):
 * '"' and '\\', the five short control escapes, other controls as \u00xx in lower case, and
 * every other byte (UTF-8 included, '/' and DEL too) as is. */
static void sb_str(struct sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        const char *e = NULL;
        char tmp[8];
        switch (*c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default:
            if (*c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", *c);
                e = tmp;
            }
        }
        if (e) sb_puts(b, e);
        else sb_put(b, (const char *)c, 1);
    }
    sb_put(b, "\"", 1);
}

/* The reference layout order: larger dtype (in its enum order) first, then name bytewise. */
static int cmp_layout(const void *pa, const void *pb)
{
    const struct pg_st_tensor *a = *(const struct pg_st_tensor *const *)pa, *b = *(const struct pg_st_tensor *const *)pb;
    if (a->dtype != b->dtype) return a->dtype > b->dtype ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int cmp_key(const void *pa, const void *pb) { return strcmp(*(char *const *)pa, *(char *const *)pb); }

int pg_st_write(const struct pg_st_writer *w, const char *path)
{
    /* order[i]: the i-th tensor in data order; meta[2i], meta[2i+1]: sorted key, its value. */
    const struct pg_st_tensor **order = pg_calloc(w->ntensors, sizeof *order);
    char **meta = pg_calloc(2 * w->nmeta, sizeof *meta);
    struct sbuf b = {0};
    int rc = order && meta ? 0 : PG_E_NOMEM;
    if (rc) goto out;
    for (size_t i = 0; i < w->ntensors; i++) order[i] = &w->t[i];
    qsort(order, w->ntensors, sizeof *order, cmp_layout);
    for (size_t i = 0; i < w->nmeta; i++) meta[2 * i] = w->meta_keys[i], meta[2 * i + 1] = w->meta_values[i];
    qsort(meta, w->nmeta, 2 * sizeof *meta, cmp_key);

    sb_puts(&b, "{");
    if (w->nmeta) {
        sb_puts(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nmeta; i++) {
            if (i) sb_puts(&b, ",");
            sb_str(&b, meta[2 * i]);
            sb_puts(&b, ":");
            sb_str(&b, meta[2 * i + 1]);
        }
        sb_puts(&b, "}");
    }
    uint64_t at = 0;
    for (size_t i = 0; i < w->ntensors; i++) {
        const struct pg_st_tensor *t = order[i];
        if (w->nmeta || i) sb_puts(&b, ",");
        sb_str(&b, t->name);
        sb_puts(&b, ":{\"dtype\":");
        sb_str(&b, dtype_names[t->dtype]);
        sb_puts(&b, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) sb_puts(&b, ",");
            sb_u64(&b, (uint64_t)t->shape[d]);
        }
        sb_puts(&b, "],\"data_offsets\":[");
        sb_u64(&b, at);
        sb_puts(&b, ",");
        if (__builtin_add_overflow(at, t->end, &at) || at > INT64_MAX) {
            rc = pg_error(PG_E_INVAL, "%s: the tensors' total size overflows", path);
            goto out;
        }
        sb_u64(&b, at);
        sb_puts(&b, "]}");
    }
    sb_puts(&b, "}");
    while (!b.rc && b.len % 8) sb_puts(&b, " "); /* data starts 8-aligned, as the reference pads */
    if ((rc = b.rc)) goto out;
    if (b.len > PG_ST_MAX_HEADER) {
        rc = pg_error(PG_E_INVAL, "%s: the safetensors header would be %zu bytes, over the %llu-byte limit", path,
                      b.len, PG_ST_MAX_HEADER);
        goto out;
    }

    struct pg_out o;
    if ((rc = pg_out_open(&o, path))) goto out;
    unsigned char len8[8];
    pg_le64_put(len8, b.len);
    rc = pg_out_write(&o, len8, sizeof len8);
    if (!rc) rc = pg_out_write(&o, b.p, b.len);
    for (size_t i = 0; i < w->ntensors && !rc; i++)
        if (order[i]->end) rc = pg_out_write(&o, order[i]->data, (size_t)order[i]->end);
    if (!rc) rc = pg_out_commit(&o);
    else pg_out_abort(&o);
out:
    free(order);
    free(meta);
    free(b.p);
    return rc;
}

void pg_st_writer_free(struct pg_st_writer *w)
{
    if (w->t)
        for (size_t i = 0; i < w->ntensors; i++) free(w->t[i].name);
    free(w->t);
    free_meta(w->nmeta, w->meta_keys, w->meta_values);
    memset(w, 0, sizeof *w);
}
