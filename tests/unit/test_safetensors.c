/* test_safetensors.c: the safetensors reader and writer: exact bytes against the reference
 * writer's own test vectors and a hand-built multi-dtype file, a full write/read/re-write round
 * trip over every dtype, every malformed header the reader must refuse, every truncation of a
 * valid file, and random single-byte corruptions (which must load or fail, never crash). */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/err.h"
#include "../../lib/safetensors.h"
#include "../../lib/xio.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

static char *tpath(const char *name)
{
    static char buf[4][256];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static int write_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* Reads a whole file into a malloc'd buffer. @return NULL on failure. */
static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = malloc(1 << 20);
    *n = buf ? fread(buf, 1, 1 << 20, f) : 0;
    fclose(f);
    return buf;
}

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *pa = slurp(a, &na), *pb = slurp(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* `json` (NUL-terminated), padded with `pad` spaces, after its 8-byte length, then `data`. */
static size_t build(unsigned char *out, const char *json, size_t pad, const void *data, size_t ndata)
{
    size_t n = strlen(json);
    pg_le64_put(out, n + pad);
    memcpy(out + 8, json, n);
    memset(out + 8 + n, ' ', pad);
    if (ndata) memcpy(out + 8 + n + pad, data, ndata);
    return 8 + n + pad + ndata;
}

static int file_is(const char *path, const unsigned char *want, size_t n)
{
    size_t got;
    unsigned char *p = slurp(path, &got);
    int same = p && got == n && memcmp(p, want, n) == 0;
    if (!same && p) diag("got %zu bytes: %.*s", got, (int)(got > 8 ? got - 8 : 0), p + 8);
    free(p);
    return same;
}

static void test_dtypes(void)
{
    const char *names[] = {"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"};
    const int sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    int good = 1;
    for (int i = 0; i < PG_ST_NDTYPES; i++)
        good &= pg_st_dtype_parse(names[i]) == i && strcmp(pg_st_dtype_name(i), names[i]) == 0 &&
                (int)pg_st_dtype_size(i) == sizes[i];
    ok(good, "dtypes: 13 names, sizes and parse agree");
    is_int(pg_st_dtype_parse("F8_E4M3"), PG_E_INVAL, "dtypes: unknown name refused");
    is_int((long long)pg_st_dtype_size(PG_ST_NDTYPES), 0, "dtypes: size of an invalid dtype is 0");
}

/* The reference's own unit tests (safetensors/src/tensor.rs: test_empty, test_serialization,
 * test_serialization_forced_alignement) give these exact files. */
static void test_reference_vectors(void)
{
    unsigned char want[256];
    size_t n;
    struct pg_st_writer w;
    float v[6] = {0, 1, 2, 3, 4, 5};

    pg_st_writer_init(&w);
    is_int(pg_st_write(&w, tpath("empty.st")), 0, "reference: write an empty file");
    n = build(want, "{}", 6, NULL, 0);
    ok(file_is(tpath("empty.st"), want, n), "reference: empty file is 8,0..0 \"{}\" + 6 spaces");
    pg_st_set_meta(&w, "framework", "pt");
    pg_st_write(&w, tpath("emptymeta.st"));
    n = build(want, "{\"__metadata__\":{\"framework\":\"pt\"}}", 5, NULL, 0);
    ok(file_is(tpath("emptymeta.st"), want, n), "reference: metadata only, 40-byte header");
    pg_st_writer_free(&w);

    pg_st_writer_init(&w);
    pg_st_add(&w, "attn.0", PG_ST_F32, 3, (int64_t[]){1, 2, 3}, v);
    pg_st_write(&w, tpath("attn.st"));
    n = build(want, "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", 0, v, sizeof v);
    ok(file_is(tpath("attn.st"), want, n), "reference: attn.0, 64-byte header, no padding");
    pg_st_writer_free(&w);

    pg_st_writer_init(&w);
    pg_st_add(&w, "attn0", PG_ST_F32, 4, (int64_t[]){1, 1, 2, 3}, v);
    pg_st_write(&w, tpath("attn0.st"));
    n = build(want, "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}", 7, v, sizeof v);
    ok(file_is(tpath("attn0.st"), want, n), "reference: attn0, 65 bytes of JSON padded to 72");
    pg_st_writer_free(&w);
}

/* Six dtypes whose layout order exercises the reference's Dtype order (I64 before F64, BF16
 * before F16), a scalar, a zero-size tensor, and metadata needing every kind of escape. */
static const char hand_json[] =
    "{\"__metadata__\":{\"a\\tb\":\"q\\\"/\xc3\xa9\\u001f\",\"step\":\"7\"},"
    "\"v\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
    "\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},"
    "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[16,20]},"
    "\"a\":{\"dtype\":\"BF16\",\"shape\":[1,0],\"data_offsets\":[20,20]},"
    "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[20,24]},"
    "\"x\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[24,27]}}";

static void add_hand(struct pg_st_writer *w, const unsigned char *data)
{
    /* Added out of layout order on purpose: the writer sorts. */
    pg_st_add(w, "x", PG_ST_I8, 1, (int64_t[]){3}, data + 24);
    pg_st_add(w, "b", PG_ST_F16, 1, (int64_t[]){2}, data + 20);
    pg_st_add(w, "a", PG_ST_BF16, 2, (int64_t[]){1, 0}, NULL);
    pg_st_add(w, "w", PG_ST_F64, 1, (int64_t[]){1}, data + 8);
    pg_st_add(w, "s", PG_ST_F32, 0, NULL, data + 16);
    pg_st_add(w, "v", PG_ST_I64, 1, (int64_t[]){1}, data);
    pg_st_set_meta(w, "step", "7");
    pg_st_set_meta(w, "a\tb", "q\"/\xc3\xa9\x1f");
}

static void test_hand_built(void)
{
    unsigned char data[27];
    for (int i = 0; i < 27; i++) data[i] = (unsigned char)(0xA0 + i);
    ok(strlen(hand_json) == 379, "hand: the expected JSON is 379 bytes (%zu), so 5 spaces pad it to 384",
       strlen(hand_json));
    unsigned char want[512];
    size_t n = build(want, hand_json, 5, data, sizeof data);
    ok(n == 8 + 384 + 27 && want[0] == 0x80 && want[1] == 0x01 && !memcmp(want + 8 + 379, "     ", 5),
       "hand: length 384 = 0x180 little-endian, padding is spaces");
    struct pg_st_writer w;
    pg_st_writer_init(&w);
    add_hand(&w, data);
    is_int(pg_st_write(&w, tpath("hand.st")), 0, "hand: write");
    ok(file_is(tpath("hand.st"), want, n), "hand: file equals the hand-built bytes");
    pg_st_writer_free(&w);

    /* And the reader decodes the hand-built file into what was written. */
    write_raw(tpath("hand2.st"), want, n);
    struct pg_st_file f;
    is_int(pg_st_open(&f, tpath("hand2.st")), 0, "hand: read");
    const char *order[6] = {"v", "w", "s", "a", "b", "x"};
    int good = f.ntensors == 6 && f.data_start == 392;
    for (size_t i = 0; good && i < 6; i++) good &= strcmp(f.t[i].name, order[i]) == 0;
    ok(good, "hand: six tensors in data order, data at 392");
    const struct pg_st_tensor *s = pg_st_find(&f, "s"), *a = pg_st_find(&f, "a");
    ok(s && s->ndim == 0 && s->dtype == PG_ST_F32 && pg_st_nbytes(s) == 4 && !memcmp(s->data, data + 16, 4),
       "hand: scalar s");
    ok(a && a->ndim == 2 && a->shape[0] == 1 && a->shape[1] == 0 && a->begin == 20 && a->end == 20,
       "hand: zero-size a");
    ok(f.nmeta == 2 && !strcmp(f.meta_keys[0], "a\tb") && pg_st_meta(&f, "a\tb") &&
           !strcmp(pg_st_meta(&f, "a\tb"), "q\"/\xc3\xa9\x1f") && !strcmp(pg_st_meta(&f, "step"), "7"),
       "hand: metadata unescaped");
    ok(!pg_st_find(&f, "nope") && !pg_st_meta(&f, "nope"), "hand: missing names give NULL");
    pg_st_close(&f);
}

/* Every dtype, shapes from 0 to 8 dimensions, random bytes. */
static void test_roundtrip(void)
{
    enum { NT = 16 };
    static unsigned char bufs[NT][4096];
    uint64_t seed = 12345;
    for (int i = 0; i < NT; i++)
        for (int j = 0; j < 4096; j++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            bufs[i][j] = (unsigned char)(seed >> 56);
        }
    struct {
        const char *name;
        int dtype, ndim;
        int64_t shape[8];
    } spec[NT] = {
        {"tok_emb.weight", PG_ST_BF16, 2, {16, 8}}, {"blocks.0.attn.q", PG_ST_F32, 2, {8, 8}},
        {"scalar", PG_ST_F32, 0, {0}},             {"empty", PG_ST_F16, 3, {4, 0, 2}},
        {"f64", PG_ST_F64, 1, {5}},                 {"i64", PG_ST_I64, 2, {2, 3}},
        {"u64", PG_ST_U64, 1, {1}},                 {"u32", PG_ST_U32, 1, {7}},
        {"i32", PG_ST_I32, 1, {3}},                 {"i16", PG_ST_I16, 2, {3, 3}},
        {"u16", PG_ST_U16, 1, {9}},                 {"i8", PG_ST_I8, 1, {11}},
        {"u8", PG_ST_U8, 1, {13}},                  {"mask", PG_ST_BOOL, 1, {5}},
        {"deep", PG_ST_F16, 8, {1, 2, 1, 2, 1, 2, 1, 3}}, {"\xe2\x82\xac.name", PG_ST_I8, 1, {1}},
    };
    struct pg_st_writer w, w2;
    pg_st_writer_init(&w);
    int rc = 0;
    for (int i = 0; i < NT; i++) rc |= pg_st_add(&w, spec[i].name, spec[i].dtype, spec[i].ndim, spec[i].shape, bufs[i]);
    rc |= pg_st_set_meta(&w, "config", "{\"n_layer\": 9, \"vocab\": 1024}");
    rc |= pg_st_set_meta(&w, "format", "pt");
    rc |= pg_st_set_meta(&w, "step", "1");
    rc |= pg_st_set_meta(&w, "step", "2000"); /* replaces */
    is_int(rc, 0, "roundtrip: add 16 tensors and 3 metadata keys");
    is_int(pg_st_write(&w, tpath("rt1.st")), 0, "roundtrip: write");

    struct pg_st_file f;
    is_int(pg_st_open(&f, tpath("rt1.st")), 0, "roundtrip: open");
    is_int((long long)f.ntensors, NT, "roundtrip: tensor count");
    ok(f.data_start % 8 == 0, "roundtrip: data section starts 8-aligned (%llu)", (unsigned long long)f.data_start);
    int fields = 1, bytes = 1, aligned = 1;
    for (int i = 0; i < NT; i++) {
        const struct pg_st_tensor *t = pg_st_find(&f, spec[i].name);
        if (!t) {
            fields = 0;
            continue;
        }
        uint64_t nb = pg_st_dtype_size(spec[i].dtype);
        for (int d = 0; d < spec[i].ndim; d++) nb *= (uint64_t)spec[i].shape[d];
        fields &= t->dtype == spec[i].dtype && t->ndim == spec[i].ndim && pg_st_nbytes(t) == nb;
        for (int d = 0; d < spec[i].ndim; d++) fields &= t->shape[d] == spec[i].shape[d];
        bytes &= nb == 0 || memcmp(t->data, bufs[i], nb) == 0;
        aligned &= (uintptr_t)t->data % pg_st_dtype_size(t->dtype) == 0;
    }
    ok(fields, "roundtrip: every name, dtype, shape and size read back");
    ok(bytes, "roundtrip: every data byte read back");
    ok(aligned, "roundtrip: every tensor's data aligned to its dtype size");
    ok(f.nmeta == 3 && !strcmp(pg_st_meta(&f, "step"), "2000") && !strcmp(pg_st_meta(&f, "format"), "pt") &&
           !strcmp(pg_st_meta(&f, "config"), "{\"n_layer\": 9, \"vocab\": 1024}"),
       "roundtrip: metadata read back, the later 'step' kept");
    int sorted = 1;
    for (size_t i = 1; i < f.ntensors; i++)
        sorted &= f.t[i - 1].dtype > f.t[i].dtype ||
                  (f.t[i - 1].dtype == f.t[i].dtype && strcmp(f.t[i - 1].name, f.t[i].name) < 0);
    ok(sorted, "roundtrip: data layout is dtype-descending, then by name");

    /* Re-write what was read, in reverse order: the layout, hence the bytes, must not change. */
    pg_st_writer_init(&w2);
    rc = 0;
    for (size_t i = f.ntensors; i-- > 0;)
        rc |= pg_st_add(&w2, f.t[i].name, f.t[i].dtype, f.t[i].ndim, f.t[i].shape, f.t[i].data);
    for (size_t i = 0; i < f.nmeta; i++) rc |= pg_st_set_meta(&w2, f.meta_keys[i], f.meta_values[i]);
    is_int(rc, 0, "roundtrip: re-add what was read");
    is_int(pg_st_write(&w2, tpath("rt2.st")), 0, "roundtrip: re-write");
    ok(same_file(tpath("rt1.st"), tpath("rt2.st")), "roundtrip: re-written file is byte for byte the same");
    pg_st_writer_free(&w2);
    pg_st_close(&f);
    pg_st_close(&f); /* twice is safe */

    /* Writer refusals. */
    is_int(pg_st_add(&w, "scalar", PG_ST_F32, 0, NULL, bufs[0]), PG_E_INVAL, "writer: duplicate name refused");
    is_int(pg_st_add(&w, "__metadata__", PG_ST_F32, 0, NULL, bufs[0]), PG_E_INVAL, "writer: __metadata__ refused");
    is_int(pg_st_add(&w, "bad", PG_ST_NDTYPES, 0, NULL, bufs[0]), PG_E_INVAL, "writer: invalid dtype refused");
    is_int(pg_st_add(&w, "bad", PG_ST_F32, 9, (int64_t[9]){1}, bufs[0]), PG_E_INVAL, "writer: 9 dimensions refused");
    is_int(pg_st_add(&w, "bad", PG_ST_F32, 1, (int64_t[]){-1}, bufs[0]), PG_E_INVAL, "writer: negative dim refused");
    is_int(pg_st_add(&w, "bad", PG_ST_F32, 2, (int64_t[]){INT64_MAX, 2}, bufs[0]), PG_E_INVAL,
           "writer: size overflow refused");
    is_int(pg_st_add(&w, "bad", PG_ST_F32, 1, (int64_t[]){1}, NULL), PG_E_INVAL, "writer: missing data refused");
    is_int(pg_st_add(&w, "bad\xff", PG_ST_F32, 0, NULL, bufs[0]), PG_E_INVAL, "writer: non-UTF-8 name refused");
    is_int(pg_st_set_meta(&w, "k", "\xc0\x80"), PG_E_INVAL, "writer: non-UTF-8 metadata refused");
    is_int((long long)w.ntensors, NT, "writer: refusals added nothing");
    is_int(pg_st_write(&w, tpath("no/such/dir/x.st")), PG_E_IO, "writer: unwritable path is an I/O error");
    pg_st_writer_free(&w);
    pg_st_writer_free(&w);
}

static void reject(const char *what, const char *json, const void *data, size_t ndata, const char *needle)
{
    unsigned char buf[1024];
    size_t n = build(buf, json, 0, data, ndata);
    char name[96];
    snprintf(name, sizeof name, "bad-%s.st", what);
    for (char *c = name; *c; c++)
        if (*c == ' ' || *c == '/') *c = '_';
    const char *path = tpath(name);
    write_raw(path, buf, n);
    struct pg_st_file f;
    is_int(pg_st_open(&f, path), PG_E_FORMAT, "reject %s", what);
    const char *m = pg_error_message();
    ok(strstr(m, path) && strstr(m, needle), "message for %s names the file and '%s': %s", what, needle, m);
    ok(f.t == NULL && f.map.data == NULL, "reject %s: nothing left open", what);
}

#define T(dt, sh, off) "{\"dtype\":\"" dt "\",\"shape\":" sh ",\"data_offsets\":" off "}"

static void test_rejects(void)
{
    unsigned char z[64] = {0};
    /* Raw framing. */
    const char *path = tpath("short.st");
    write_raw(path, "\x02\0\0\0\0", 5);
    struct pg_st_file f;
    is_int(pg_st_open(&f, path), PG_E_FORMAT, "reject a 5-byte file");
    ok(strstr(pg_error_message(), path) && strstr(pg_error_message(), "8-byte"), "message: %s", pg_error_message());
    unsigned char big[16] = {0};
    pg_le64_put(big, 100000001);
    write_raw(tpath("huge.st"), big, sizeof big);
    is_int(pg_st_open(&f, tpath("huge.st")), PG_E_FORMAT, "reject header length 100000001");
    ok(strstr(pg_error_message(), "limit") != NULL, "message: %s", pg_error_message());
    pg_le64_put(big, UINT64_MAX);
    write_raw(tpath("huge2.st"), big, sizeof big);
    is_int(pg_st_open(&f, tpath("huge2.st")), PG_E_FORMAT, "reject header length 2^64-1");
    pg_le64_put(big, 9);
    write_raw(tpath("past.st"), big, sizeof big);
    is_int(pg_st_open(&f, tpath("past.st")), PG_E_FORMAT, "reject header length past the end");
    ok(strstr(pg_error_message(), "truncated") != NULL, "message: %s", pg_error_message());
    is_int(pg_st_open(&f, tpath("missing.st")), PG_E_IO, "missing file is an I/O error");

    /* Header text. */
    reject("utf8", "{\"a\xff\":" T("U8", "[1]", "[0,1]") "}", z, 1, "UTF-8");
    reject("not json", "{not json}", NULL, 0, "not valid JSON");
    reject("trailing garbage", "{} x", NULL, 0, "not valid JSON");
    reject("array", "[1,2]", NULL, 0, "not a JSON object");
    reject("duplicate", "{\"a\":" T("U8", "[1]", "[0,1]") ",\"a\":" T("U8", "[1]", "[1,2]") "}", z, 2, "duplicate");
    reject("entry not object", "{\"a\":5}", NULL, 0, "not a JSON object");
    reject("missing field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", z, 4, "missing field 'data_offsets'");
    reject("extra field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", z, 4,
           "unexpected field 'x'");
    reject("unknown dtype", "{\"a\":" T("F17", "[1]", "[0,4]") "}", z, 4, "unknown dtype 'F17'");
    reject("dtype not string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", z, 4, "unknown dtype");
    reject("shape not array", "{\"a\":" T("F32", "1", "[0,4]") "}", z, 4, "shape is not an array");
    reject("negative dim", "{\"a\":" T("F32", "[-1]", "[0,4]") "}", z, 4, "shape[0]");
    reject("real dim", "{\"a\":" T("F32", "[1.0]", "[0,4]") "}", z, 4, "shape[0]");
    reject("string dim", "{\"a\":" T("F32", "[1,\"2\"]", "[0,8]") "}", z, 8, "shape[1]");
    reject("nine dims", "{\"a\":" T("U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", z, 1, "9 dimensions");
    reject("shape overflow", "{\"a\":" T("F32", "[4294967296,4294967296]", "[0,0]") "}", NULL, 0, "overflows");
    reject("offsets not array", "{\"a\":" T("F32", "[1]", "4") "}", z, 4, "data_offsets");
    reject("one offset", "{\"a\":" T("F32", "[1]", "[4]") "}", z, 4, "data_offsets");
    reject("three offsets", "{\"a\":" T("F32", "[1]", "[0,4,4]") "}", z, 4, "data_offsets");
    reject("negative offset", "{\"a\":" T("F32", "[0]", "[-1,-1]") "}", NULL, 0, "data_offsets");
    reject("real offset", "{\"a\":" T("F32", "[1]", "[0,4.0]") "}", z, 4, "data_offsets");
    reject("reversed offsets", "{\"a\":" T("F32", "[0]", "[4,0]") "}", z, 4, "end before");
    reject("end past data", "{\"a\":" T("F32", "[2]", "[0,8]") "}", z, 4, "truncated");
    reject("size mismatch", "{\"a\":" T("F32", "[2]", "[0,4]") "}", z, 4, "needs 8");
    reject("overlap", "{\"a\":" T("F32", "[1]", "[0,4]") ",\"b\":" T("I16", "[2]", "[2,6]") "}", z, 6, "overlaps");
    reject("hole", "{\"a\":" T("F32", "[1]", "[0,4]") ",\"b\":" T("F32", "[1]", "[8,12]") "}", z, 12, "hole");
    reject("hole at start", "{\"a\":" T("F32", "[1]", "[4,8]") "}", z, 8, "hole");
    reject("trailing bytes", "{\"a\":" T("F32", "[1]", "[0,4]") "}", z, 6, "2 bytes after the last tensor");
    reject("data without tensors", "{}", z, 1, "1 bytes after");
    reject("metadata not object", "{\"__metadata__\":[\"a\"]}", NULL, 0, "__metadata__ is not");
    reject("metadata value", "{\"__metadata__\":{\"k\":1}}", NULL, 0, "value for 'k'");

    /* What the reference accepts, we accept. */
    unsigned char buf[512];
    struct {
        const char *what, *json;
        size_t ndata;
    } okc[] = {
        {"unpadded header and null metadata", "{\"__metadata__\":null,\"a\":" T("U16", "[3]", "[0,6]") "}", 6},
        {"whitespace and offset-unordered entries",
         "\n{ \"b\" : " T("U8", "[2]", "[4,6]") ",\t\"a\":" T("U16", "[2]", "[0,4]") ",\"e\":" T("F64", "[0]", "[6,6]")
         ",\"d\":" T("F64", "[0]", "[6,6]") "}\r\n",
         6},
    };
    for (size_t i = 0; i < sizeof okc / sizeof *okc; i++) {
        size_t n = build(buf, okc[i].json, 0, "\1\2\3\4\5\6", okc[i].ndata);
        write_raw(tpath("okc.st"), buf, n);
        int rc = pg_st_open(&f, tpath("okc.st"));
        is_int(rc, 0, "accept %s", okc[i].what);
        if (rc) diag("%s", pg_error_message());
        ok(f.nmeta == 0 && f.ntensors >= 1 && f.t[0].begin == 0 && f.t[f.ntensors - 1].end == okc[i].ndata &&
               !memcmp(f.t[0].data, "\1\2", 2),
           "accept %s: tensors in data order, data found", okc[i].what);
        pg_st_close(&f);
    }
}

/* Every proper prefix of a valid file is refused cleanly. */
static void test_truncation(void)
{
    size_t n;
    unsigned char *full = slurp(tpath("hand.st"), &n);
    if (!ok(full && n > 400, "truncation: source file read")) return;
    const char *path = tpath("trunc.st");
    int all = 1;
    for (size_t len = 0; len < n; len++) {
        write_raw(path, full, len);
        struct pg_st_file f;
        int rc = pg_st_open(&f, path);
        if (rc != PG_E_FORMAT || !strstr(pg_error_message(), path)) {
            if (all) diag("prefix of %zu bytes: rc %d: %s", len, rc, pg_error_message());
            all = 0;
            if (!rc) pg_st_close(&f);
        }
    }
    ok(all, "truncation: all %zu prefixes refused with PG_E_FORMAT naming the file", n);
    free(full);
}

/* Random single-byte corruptions: load (and then every tensor must lie inside the file) or fail
 * with PG_E_FORMAT; a crash or sanitizer report fails the program. */
static void test_corruption(void)
{
    size_t n;
    unsigned char *full = slurp(tpath("hand.st"), &n);
    if (!ok(full != NULL, "corruption: source file read")) return;
    unsigned char *buf = malloc(n);
    const char *path = tpath("fuzz.st");
    uint64_t seed = 42;
    int bad = 0, loaded = 0, refused = 0;
    for (int it = 0; it < 600; it++) {
        memcpy(buf, full, n);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t pos = (size_t)(seed >> 33) % (it < 100 ? 8 + 384 : n); /* the first 100 hit the header */
        unsigned char val = (unsigned char)(seed >> 20);
        buf[pos] = val == buf[pos] ? (unsigned char)(val ^ 0x5a) : val;
        write_raw(path, buf, n);
        struct pg_st_file f;
        int rc = pg_st_open(&f, path);
        if (rc == 0) {
            loaded++;
            unsigned sum = 0;
            for (size_t i = 0; i < f.ntensors; i++) {
                const unsigned char *p = f.t[i].data;
                if (p < f.map.data || p + pg_st_nbytes(&f.t[i]) > f.map.data + f.map.size) bad++;
                else
                    for (uint64_t k = 0; k < pg_st_nbytes(&f.t[i]); k++) sum += p[k];
            }
            (void)sum;
            pg_st_close(&f);
        } else if (rc == PG_E_FORMAT && strstr(pg_error_message(), path)) {
            refused++;
        } else {
            if (!bad) diag("byte %zu = 0x%02x: rc %d: %s", pos, val, rc, pg_error_message());
            bad++;
        }
    }
    ok(bad == 0, "corruption: 600 single-byte corruptions: %d loaded, %d refused, %d wrong", loaded, refused, bad);
    ok(loaded > 0 && refused > 0, "corruption: both outcomes occur (data bytes load, header bytes mostly refuse)");
    free(buf);
    free(full);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pg-test-st-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_dtypes();
    test_reference_vectors();
    test_hand_built();
    test_roundtrip();
    test_rejects();
    test_truncation();
    test_corruption();
    remove_tree(dir);
    return done_testing();
}
