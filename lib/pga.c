/* pga.c: build, write, parse, verify, decode and list .pga artifacts (see pga.h). */
#include "pga.h"

#include "err.h"
#include "outfile.h"
#include "xio.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const uint32_t pg_pga_versions[] = {1, 2, 3};
const size_t pg_pga_nversions = sizeof pg_pga_versions / sizeof pg_pga_versions[0];

/* Header fields (byte offsets). */
enum {
    H_MAGIC = 0, H_VERSION = 4, H_FILE_SIZE = 8, H_DATA_OFFSET = 16, H_NSTREAMS = 24, H_TABLE_CRC = 28,
    H_RESERVED = 32, H_CRC = 60
};
/* Table entry fields. */
enum {
    E_NAME = 0, E_CODEC = 32, E_XFORM = 33, E_RESERVED1 = 34, E_CRC_RAW = 36, E_P0 = 40, E_P1 = 48, E_RAW = 56,
    E_PACKED = 64, E_OFFSET = 72, E_CRC_PACKED = 80, E_RESERVED2 = 84
};

static uint32_t crc32_of(const void *p, size_t n)
{
    return (uint32_t)crc32_z(0, n ? p : Z_NULL, n);
}

/* Sets "PATH: message" as the error (PG_E_FORMAT unless code says otherwise). */
__attribute__((format(printf, 3, 4))) static int fail(const char *path, int code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pg_error(code, "%s: %s", path, msg);
}

/* Re-raises this thread's message with a prefix (the message may be the prefix's argument). */
static int prefix_error(int code, const char *fmt, const char *a, const char *b)
{
    char msg[768];
    snprintf(msg, sizeof msg, "%s", pg_error_message());
    char pre[256];
    snprintf(pre, sizeof pre, fmt, a, b);
    return pg_error(code, "%s%s", pre, msg);
}

static int name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len < 1 || len >= PG_PGA_NAME_BYTES) return 0;
    for (size_t i = 0; i < len; i++)
        if (name[i] < 0x21 || name[i] > 0x7e) return 0;
    return 1;
}

static int cmp_name_ptr(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

/* @return the first name that appears twice, or NULL (names[] is sorted in place). */
static const char *find_duplicate(const char **names, size_t n)
{
    if (n > 1) qsort(names, n, sizeof *names, cmp_name_ptr);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) return names[i];
    return NULL;
}

/* A failure inside a parallel loop: the message is per thread, so keep a copy per item. */
struct item_err {
    int rc;
    char msg[1024];
};

static void keep_error(struct item_err *e, int rc)
{
    e->rc = rc;
    snprintf(e->msg, sizeof e->msg, "%s", pg_error_message());
}

/* @return the first failure in item order, re-raised in this thread, or 0. */
static int first_error(const struct item_err *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (e[i].rc) return pg_error(e[i].rc, "%s", e[i].msg);
    return 0;
}

/* ---- building ---- */

struct packed {
    unsigned char *data;
    size_t size;
    uint32_t crc_raw, crc_packed;
};

static int pack_one(const struct pg_pga_input *in, struct packed *p)
{
    const void *src = in->data;
    unsigned char *tmp = NULL;
    p->crc_raw = crc32_of(in->data, in->size);
    if (in->xform.id != PG_XFORM_NONE) {
        if (!(tmp = pg_malloc(in->size ? in->size : 1))) return PG_E_NOMEM;
        pg_xform_apply(&in->xform, in->data, tmp, in->size);
        src = tmp;
    }
    int rc = pg_compress(in->codec, in->params, src, in->size, &p->data, &p->size);
    free(tmp);
    if (rc) return prefix_error(rc, "stream '%s' (%s): ", in->name, pg_codec_name(in->codec));
    p->crc_packed = crc32_of(p->data, p->size);
    return 0;
}

static int check_inputs(const struct pg_pga_input *in, size_t n)
{
    if (n > PG_PGA_MAX_STREAMS) return pg_error(PG_E_INVAL, "pga: %zu streams, at most %d", n, PG_PGA_MAX_STREAMS);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in[i].name || !name_ok(in[i].name))
            return pg_error(PG_E_INVAL, "pga: stream %zu: name '%s' is not 1 to %d printable ASCII characters without spaces",
                            i, in[i].name ? in[i].name : "(null)", PG_PGA_NAME_BYTES - 1);
        if (in[i].size > PG_PGA_MAX_RAW)
            return pg_error(PG_E_INVAL, "pga: stream '%s': %zu bytes, over the 1 GiB limit", in[i].name, in[i].size);
        if ((total += in[i].size) > PG_PGA_MAX_RAW)
            return pg_error(PG_E_INVAL, "pga: the streams add up to %llu bytes, over the 1 GiB limit",
                            (unsigned long long)total);
        if (in[i].size && !in[i].data) return pg_error(PG_E_INVAL, "pga: stream '%s': no data", in[i].name);
        if ((unsigned)in[i].codec >= PG_CODEC_COUNT)
            return pg_error(PG_E_INVAL, "pga: stream '%s': unknown codec %d", in[i].name, (int)in[i].codec);
        if (pg_xform_check(&in[i].xform, in[i].size, PG_E_INVAL))
            return prefix_error(PG_E_INVAL, "pga: stream '%s': %s", in[i].name, "");
    }
    const char **names = pg_malloc((n ? n : 1) * sizeof *names);
    if (!names) return PG_E_NOMEM;
    for (size_t i = 0; i < n; i++) names[i] = in[i].name;
    const char *dup = find_duplicate(names, n);
    int rc = dup ? pg_error(PG_E_INVAL, "pga: duplicate stream name '%s'", dup) : 0;
    free(names);
    return rc;
}

/* The oldest version that can describe these streams: 3 for a packed model with sorted rows (a
 * "perms" stream: pack_perm.h), 2 for a pgac stream, else 1 (so what an older version could hold
 * stays byte-identical to what it was, and an older reader refuses what it would misread by
 * number). */
static uint32_t version_for(const struct pg_pga_input *in, size_t n)
{
    uint32_t v = 1;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(in[i].name, "perms")) return 3;
        if (in[i].codec == PG_CODEC_PGAC) v = 2;
    }
    return v;
}

/* @return 1 if codec c exists in artifact version v. */
static int codec_in_version(int c, uint32_t v) { return c < PG_CODEC_COUNT && (c != PG_CODEC_PGAC || v >= 2); }

static void put_header(unsigned char *h, uint32_t version, uint64_t file_size, uint64_t data_offset, uint32_t n,
                       uint32_t table_crc)
{
    memset(h, 0, PG_PGA_HEADER_BYTES);
    memcpy(h + H_MAGIC, PG_PGA_MAGIC, 4);
    pg_le32_put(h + H_VERSION, version);
    pg_le64_put(h + H_FILE_SIZE, file_size);
    pg_le64_put(h + H_DATA_OFFSET, data_offset);
    pg_le32_put(h + H_NSTREAMS, n);
    pg_le32_put(h + H_TABLE_CRC, table_crc);
    pg_le32_put(h + H_CRC, crc32_of(h, H_CRC));
}

static void put_entry(unsigned char *e, const struct pg_pga_input *in, const struct packed *p, uint64_t offset)
{
    memset(e, 0, PG_PGA_ENTRY_BYTES);
    memcpy(e + E_NAME, in->name, strlen(in->name));
    e[E_CODEC] = (unsigned char)in->codec;
    e[E_XFORM] = (unsigned char)in->xform.id;
    pg_le32_put(e + E_CRC_RAW, p->crc_raw);
    uint64_t p0 = in->xform.id == PG_XFORM_TRANSPOSE ? in->xform.rows : in->xform.stride;
    uint64_t p1 = in->xform.id == PG_XFORM_TRANSPOSE ? in->xform.cols : 0;
    pg_le64_put(e + E_P0, p0);
    pg_le64_put(e + E_P1, p1);
    pg_le64_put(e + E_RAW, in->size);
    pg_le64_put(e + E_PACKED, p->size);
    pg_le64_put(e + E_OFFSET, offset);
    pg_le32_put(e + E_CRC_PACKED, p->crc_packed);
}

int pg_pga_build(const struct pg_pga_input *in, size_t n, unsigned char **out, size_t *out_size)
{
    *out = NULL;
    *out_size = 0;
    PG_TRY(check_inputs(in, n));
    struct packed *p = pg_calloc(n ? n : 1, sizeof *p);
    struct item_err *errs = pg_calloc(n ? n : 1, sizeof *errs);
    int rc = p && errs ? 0 : PG_E_NOMEM;
    if (!rc) {
        /* One stream per thread: lrzip streams are separate processes, so this is where the
         * per-group compression gets its parallelism. */
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t i = 0; i < n; i++) {
            int r = pack_one(&in[i], &p[i]);
            if (r) keep_error(&errs[i], r);
        }
        rc = first_error(errs, n);
    }
    uint64_t data_offset = PG_PGA_HEADER_BYTES + (uint64_t)PG_PGA_ENTRY_BYTES * n, total = data_offset;
    for (size_t i = 0; i < n && !rc; i++) total += p[i].size;
    unsigned char *buf = NULL;
    if (!rc && !(buf = pg_malloc((size_t)total))) rc = PG_E_NOMEM;
    if (!rc) {
        uint64_t off = data_offset;
        for (size_t i = 0; i < n; i++) {
            put_entry(buf + PG_PGA_HEADER_BYTES + (size_t)PG_PGA_ENTRY_BYTES * i, &in[i], &p[i], off);
            if (p[i].size) memcpy(buf + off, p[i].data, p[i].size);
            off += p[i].size;
        }
        uint32_t table_crc = crc32_of(buf + PG_PGA_HEADER_BYTES, (size_t)(data_offset - PG_PGA_HEADER_BYTES));
        put_header(buf, version_for(in, n), total, data_offset, (uint32_t)n, table_crc);
        *out = buf;
        *out_size = (size_t)total;
    }
    for (size_t i = 0; p && i < n; i++) free(p[i].data);
    free(p);
    free(errs);
    return rc;
}

int pg_pga_write(const char *path, const void *data, size_t size) { return pg_out_save(path, data, size); }

/* ---- reading ---- */

static int accepted_version(uint32_t v)
{
    for (size_t i = 0; i < pg_pga_nversions; i++)
        if (pg_pga_versions[i] == v) return 1;
    return 0;
}

static int truncated(const char *path, size_t size, const char *what)
{
    return fail(path, PG_E_FORMAT, "truncated at offset %zu: %s", size, what);
}

static int parse_header(struct pg_pga *a, const unsigned char *h, size_t size, uint64_t *data_offset)
{
    const char *path = a->path;
    if (size < 4) return truncated(path, size, "the header is 64 bytes");
    if (memcmp(h + H_MAGIC, PG_PGA_MAGIC, 4)) return fail(path, PG_E_FORMAT, "not a .pga artifact (bad magic)");
    if (size < 8) return truncated(path, size, "the header is 64 bytes");
    uint32_t version = pg_le32_get(h + H_VERSION);
    if (!accepted_version(version))
        return fail(path, PG_E_FORMAT, "unsupported version %u (this build reads versions 1 to 3)", version);
    a->version = version;
    if (size < PG_PGA_HEADER_BYTES) return truncated(path, size, "the header is 64 bytes");
    if (pg_le32_get(h + H_CRC) != crc32_of(h, H_CRC)) return fail(path, PG_E_FORMAT, "header checksum mismatch");
    for (int i = H_RESERVED; i < H_CRC; i++)
        if (h[i]) return fail(path, PG_E_FORMAT, "reserved header field at offset %d is not zero", i);
    uint64_t file_size = pg_le64_get(h + H_FILE_SIZE);
    if (size < file_size)
        return fail(path, PG_E_FORMAT, "truncated at offset %zu: the header says %llu bytes", size,
                    (unsigned long long)file_size);
    if (size > file_size)
        return fail(path, PG_E_FORMAT, "%zu bytes, but the header says %llu: trailing data", size,
                    (unsigned long long)file_size);
    uint32_t n = pg_le32_get(h + H_NSTREAMS);
    if (n > PG_PGA_MAX_STREAMS) return fail(path, PG_E_FORMAT, "%u streams, at most %d", n, PG_PGA_MAX_STREAMS);
    *data_offset = pg_le64_get(h + H_DATA_OFFSET);
    uint64_t want = PG_PGA_HEADER_BYTES + (uint64_t)PG_PGA_ENTRY_BYTES * n;
    if (*data_offset != want)
        return fail(path, PG_E_FORMAT, "data offset %llu, but %u streams put it at %llu",
                    (unsigned long long)*data_offset, n, (unsigned long long)want);
    if (want > file_size) return fail(path, PG_E_FORMAT, "the stream table runs past the end of the file");
    if (pg_le32_get(h + H_TABLE_CRC) != crc32_of(h + PG_PGA_HEADER_BYTES, (size_t)(want - PG_PGA_HEADER_BYTES)))
        return fail(path, PG_E_FORMAT, "stream table checksum mismatch");
    a->n = n;
    return 0;
}

static int parse_entry(struct pg_pga *a, size_t i, const unsigned char *e, uint64_t expect_offset)
{
    const char *path = a->path;
    struct pg_pga_stream *s = &a->streams[i];
    /* name: 1..31 printable characters, then NULs only */
    size_t len = 0;
    while (len < PG_PGA_NAME_BYTES && e[E_NAME + len]) len++;
    int good = len >= 1 && len < PG_PGA_NAME_BYTES;
    for (size_t k = 0; k < len && good; k++) good = e[E_NAME + k] >= 0x21 && e[E_NAME + k] <= 0x7e;
    for (size_t k = len; k < PG_PGA_NAME_BYTES && good; k++) good = e[E_NAME + k] == 0;
    if (!good) return fail(path, PG_E_FORMAT, "stream %zu: bad name (1 to 31 printable ASCII characters, NUL-padded)", i);
    memcpy(s->name, e + E_NAME, len);
    s->name[len] = 0;
    const char *nm = s->name;
    if (e[E_RESERVED1] || e[E_RESERVED1 + 1])
        return fail(path, PG_E_FORMAT, "stream '%s': reserved field at entry offset %d is not zero", nm, E_RESERVED1);
    for (int k = E_RESERVED2; k < PG_PGA_ENTRY_BYTES; k++)
        if (e[k]) return fail(path, PG_E_FORMAT, "stream '%s': reserved field at entry offset %d is not zero", nm, k);
    if (!codec_in_version(e[E_CODEC], a->version))
        return fail(path, PG_E_FORMAT, "stream '%s': unknown codec %u (in version %u)", nm, e[E_CODEC], a->version);
    if (e[E_XFORM] >= PG_XFORM_COUNT) return fail(path, PG_E_FORMAT, "stream '%s': unknown transform %u", nm, e[E_XFORM]);
    s->codec = (enum pg_codec)e[E_CODEC];
    s->xform.id = (enum pg_xform_id)e[E_XFORM];
    uint64_t p0 = pg_le64_get(e + E_P0), p1 = pg_le64_get(e + E_P1);
    if (s->xform.id == PG_XFORM_TRANSPOSE) {
        s->xform.rows = p0;
        s->xform.cols = p1;
    } else {
        s->xform.stride = p0;
        if (p1) return fail(path, PG_E_FORMAT, "stream '%s': transform parameter p1 is not zero", nm);
    }
    s->raw_size = pg_le64_get(e + E_RAW);
    s->packed_size = pg_le64_get(e + E_PACKED);
    s->offset = pg_le64_get(e + E_OFFSET);
    s->crc_raw = pg_le32_get(e + E_CRC_RAW);
    s->crc_packed = pg_le32_get(e + E_CRC_PACKED);
    if (s->raw_size > PG_PGA_MAX_RAW)
        return fail(path, PG_E_FORMAT, "stream '%s': raw size %llu is over the 1 GiB limit", nm,
                    (unsigned long long)s->raw_size);
    if (pg_xform_check(&s->xform, s->raw_size, PG_E_FORMAT))
        return prefix_error(PG_E_FORMAT, "%s: stream '%s': ", path, nm);
    if (s->codec == PG_CODEC_RAW && s->packed_size != s->raw_size)
        return fail(path, PG_E_FORMAT, "stream '%s': raw codec with %llu packed bytes for %llu raw bytes", nm,
                    (unsigned long long)s->packed_size, (unsigned long long)s->raw_size);
    if (s->offset != expect_offset)
        return fail(path, PG_E_FORMAT, "stream '%s': offset %llu, expected %llu (streams are back to back)", nm,
                    (unsigned long long)s->offset, (unsigned long long)expect_offset);
    if (s->packed_size > a->size - s->offset)
        return fail(path, PG_E_FORMAT, "stream '%s': %llu packed bytes at offset %llu run past the end of the file",
                    nm, (unsigned long long)s->packed_size, (unsigned long long)s->offset);
    return 0;
}

int pg_pga_parse(struct pg_pga *a, const void *data, size_t size, const char *path)
{
    memset(a, 0, sizeof *a);
    if (!(a->path = pg_strdup(path))) return PG_E_NOMEM;
    a->data = data;
    a->size = size;
    uint64_t data_offset = 0;
    int rc = parse_header(a, data, size, &data_offset);
    if (!rc && !(a->streams = pg_calloc(a->n ? a->n : 1, sizeof *a->streams))) rc = PG_E_NOMEM;
    uint64_t off = data_offset;
    uint64_t raw_total = 0; /* a reader may hold every stream decoded at once: capped in total too */
    for (size_t i = 0; i < a->n && !rc; i++) {
        rc = parse_entry(a, i, a->data + PG_PGA_HEADER_BYTES + (size_t)PG_PGA_ENTRY_BYTES * i, off);
        if (!rc) off += a->streams[i].packed_size;
        if (!rc && (raw_total += a->streams[i].raw_size) > PG_PGA_MAX_RAW)
            rc = fail(a->path, PG_E_FORMAT, "the raw sizes of streams 0 to %zu add up to %llu bytes, over the 1 GiB "
                      "limit", i, (unsigned long long)raw_total);
    }
    if (!rc && off != size)
        rc = fail(a->path, PG_E_FORMAT, "%llu bytes after the last stream", (unsigned long long)(size - off));
    if (!rc && a->n > 1) {
        const char **names = pg_malloc(a->n * sizeof *names);
        if (!names) {
            rc = PG_E_NOMEM;
        } else {
            for (size_t i = 0; i < a->n; i++) names[i] = a->streams[i].name;
            const char *dup = find_duplicate(names, a->n);
            if (dup) rc = fail(a->path, PG_E_FORMAT, "duplicate stream name '%s'", dup);
            free(names);
        }
    }
    if (rc) pg_pga_close(a);
    return rc;
}

int pg_pga_open(struct pg_pga *a, const char *path)
{
    memset(a, 0, sizeof *a);
    struct pg_map m;
    PG_TRY(pg_map_open(&m, path));
    int rc = pg_pga_parse(a, m.data, m.size, path);
    if (rc) {
        pg_map_close(&m);
        return rc;
    }
    a->map = m;
    return 0;
}

void pg_pga_close(struct pg_pga *a)
{
    free(a->path);
    free(a->streams);
    pg_map_close(&a->map);
    memset(a, 0, sizeof *a);
}

long pg_pga_find(const struct pg_pga *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->streams[i].name, name)) return (long)i;
    return -1;
}

static int check_packed(const struct pg_pga *a, size_t i)
{
    const struct pg_pga_stream *s = &a->streams[i];
    if (crc32_of(a->data + s->offset, (size_t)s->packed_size) != s->crc_packed)
        return fail(a->path, PG_E_FORMAT, "checksum mismatch in stream '%s'", s->name);
    return 0;
}

int pg_pga_verify(const struct pg_pga *a)
{
    for (size_t i = 0; i < a->n; i++) PG_TRY(check_packed(a, i));
    return 0;
}

int pg_pga_decode(const struct pg_pga *a, size_t i, unsigned char **out)
{
    *out = NULL;
    if (i >= a->n) return pg_error(PG_E_INVAL, "%s: no stream %zu (it has %zu)", a->path, i, a->n);
    PG_TRY(check_packed(a, i));
    const struct pg_pga_stream *s = &a->streams[i];
    size_t raw = (size_t)s->raw_size;
    unsigned char *buf = pg_malloc(raw ? raw : 1), *tmp = NULL;
    if (!buf) return PG_E_NOMEM;
    if (s->xform.id != PG_XFORM_NONE && !(tmp = pg_malloc(raw ? raw : 1))) {
        free(buf);
        return PG_E_NOMEM;
    }
    int rc = pg_decompress(s->codec, a->data + s->offset, (size_t)s->packed_size, tmp ? tmp : buf, raw);
    if (rc) {
        rc = prefix_error(rc, "%s: stream '%s': ", a->path, s->name);
    } else {
        if (tmp) pg_xform_undo(&s->xform, tmp, buf, raw);
        if (crc32_of(buf, raw) != s->crc_raw)
            rc = fail(a->path, PG_E_FORMAT, "checksum mismatch in stream '%s' after decoding", s->name);
    }
    free(tmp);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

int pg_pga_decode_all(const struct pg_pga *a, unsigned char **out)
{
    for (size_t i = 0; i < a->n; i++) out[i] = NULL;
    struct item_err *errs = pg_calloc(a->n ? a->n : 1, sizeof *errs);
    if (!errs) return PG_E_NOMEM;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < a->n; i++) {
        int r = pg_pga_decode(a, i, &out[i]);
        if (r) keep_error(&errs[i], r);
    }
    int rc = first_error(errs, a->n);
    free(errs);
    if (rc)
        for (size_t i = 0; i < a->n; i++) {
            free(out[i]);
            out[i] = NULL;
        }
    return rc;
}

/* ---- listing ---- */

static void print_ratio(FILE *f, uint64_t packed, uint64_t raw)
{
    if (raw) fprintf(f, " %7.4f\n", (double)packed / (double)raw);
    else fprintf(f, " %7s\n", "-");
}

void pg_pga_list(const struct pg_pga *a, FILE *f)
{
    fprintf(f, "%-31s %-6s %-20s %12s %12s %7s\n", "name", "codec", "transform", "raw", "packed", "ratio");
    uint64_t raw = 0, packed = 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct pg_pga_stream *s = &a->streams[i];
        char xf[64];
        if (s->xform.id == PG_XFORM_TRANSPOSE)
            snprintf(xf, sizeof xf, "transpose %llux%llu", (unsigned long long)s->xform.rows,
                     (unsigned long long)s->xform.cols);
        else if (s->xform.id == PG_XFORM_SHUFFLE)
            snprintf(xf, sizeof xf, "shuffle %llu", (unsigned long long)s->xform.stride);
        else
            snprintf(xf, sizeof xf, "none");
        fprintf(f, "%-31s %-6s %-20s %12llu %12llu", s->name, pg_codec_name(s->codec), xf,
                (unsigned long long)s->raw_size, (unsigned long long)s->packed_size);
        print_ratio(f, s->packed_size, s->raw_size);
        raw += s->raw_size;
        packed += s->packed_size;
    }
    char total[64];
    snprintf(total, sizeof total, "total (%zu streams)", a->n);
    fprintf(f, "%-31s %-6s %-20s %12llu %12llu", total, "", "", (unsigned long long)raw, (unsigned long long)packed);
    print_ratio(f, packed, raw);
    fprintf(f, "file %zu bytes: %zu of header and stream table, %llu of streams\n", a->size, a->size - (size_t)packed,
            (unsigned long long)packed);
}
