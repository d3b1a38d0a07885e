/* test_pga.c: the .pga container: a mixed-codec round trip through a file, the exact layout,
 * listing, determinism, builder checks, every reader check with its message, and a corruption
 * loop (every truncation, thousands of random bit flips) in which every damaged file must be
 * refused and none may crash (make check SANITIZE=1 runs it under ASan/UBSan). */
#define _POSIX_C_SOURCE 200809L
#include "../../lib/rng.h"
#include "../tap.h"

#include "../../lib/bytes_xform.h"
#include "../../lib/codec.h"
#include "../../lib/err.h"
#include "../../lib/pga.h"
#include "../../lib/xio.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static char dir[64];
static uint64_t rng_state;

static uint64_t next_u64(void) { return pg_splitmix64(&rng_state); }

static unsigned char *int8_like(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p) abort();
    rng_state = seed;
    for (size_t i = 0; i < n; i++) {
        int s = 0;
        for (int k = 0; k < 4; k++) s += (int)(next_u64() % 21) - 10;
        p[i] = (unsigned char)(int8_t)(s / 2);
    }
    return p;
}

static int msg_has(const char *needle) { return strstr(pg_error_message(), needle) != NULL; }

/* Re-seals a patched artifact: table CRC, then header CRC, so that only the patched field is wrong. */
static void reseal(unsigned char *b)
{
    uint32_t n = pg_le32_get(b + 24);
    pg_le32_put(b + 28, (uint32_t)crc32_z(0, b + 64, (size_t)96 * n));
    pg_le32_put(b + 60, (uint32_t)crc32_z(0, b, 60));
}

/* Parses, verifies and decodes everything. @return 0 only if the whole artifact is good. */
static int full_check(const unsigned char *b, size_t n, const char *path)
{
    struct pg_pga a;
    int rc = pg_pga_parse(&a, b, n, path);
    if (rc) return rc;
    rc = pg_pga_verify(&a);
    if (!rc) {
        unsigned char **out = calloc(a.n ? a.n : 1, sizeof *out);
        rc = pg_pga_decode_all(&a, out);
        for (size_t i = 0; i < a.n; i++) free(out[i]);
        free(out);
    }
    pg_pga_close(&a);
    return rc;
}

/* ---- round trip ---- */

static void test_round_trip(void)
{
    size_t n_emb = 64 * 96, n_fc = 3 * 32 * 48, n_sc = 1001, n_lz = 16 * 40;
    unsigned char *emb = int8_like(n_emb, 1), *fc = int8_like(n_fc, 2), *lz = int8_like(n_lz, 4);
    unsigned char *scales = malloc(n_sc);
    rng_state = 3;
    for (size_t i = 0; i < n_sc; i++) scales[i] = (unsigned char)(i % 2 ? 0x3c + next_u64() % 3 : next_u64());
    const char *meta = "{\"vocab_size\":1024,\"model_dim\":512}";
    uint16_t perm[64];
    pg_nn_order((const int8_t *)emb, 64, 96, perm);
    int have_lrzip = pg_lrzip_available();

    struct pg_pga_input in[] = {
        {.name = "tok_emb", .data = emb, .size = n_emb, .codec = PG_CODEC_BROTLI,
         .xform = {.id = PG_XFORM_TRANSPOSE, .rows = 64, .cols = 96}},
        {.name = "mlp.fc", .data = fc, .size = n_fc, .codec = PG_CODEC_ZLIB,
         .xform = {.id = PG_XFORM_TRANSPOSE, .rows = 32, .cols = 48}},
        {.name = "scales", .data = scales, .size = n_sc, .codec = PG_CODEC_LZMA,
         .xform = {.id = PG_XFORM_SHUFFLE, .stride = 2}},
        {.name = "meta", .data = meta, .size = strlen(meta), .codec = PG_CODEC_RAW},
        {.name = "empty", .data = NULL, .size = 0, .codec = PG_CODEC_ZLIB},
        {.name = "order", .data = perm, .size = sizeof perm, .codec = PG_CODEC_BROTLI},
        {.name = "attn.c_q", .data = lz, .size = n_lz, .codec = PG_CODEC_LRZIP,
         .xform = {.id = PG_XFORM_TRANSPOSE, .rows = 16, .cols = 40}},
    };
    size_t n = sizeof in / sizeof in[0] - (have_lrzip ? 0 : 1);
    if (!have_lrzip) diag("lrzip is not installed: the round trip leaves out its stream");

    unsigned char *art = NULL;
    size_t size = 0;
    int rc = pg_pga_build(in, n, &art, &size);
    is_int(rc, 0, "build: %zu streams, mixed codecs and transforms", n);
    if (rc) {
        diag("%s", pg_error_message());
        return;
    }
    unsigned char *art2 = NULL;
    size_t size2 = 0;
    rc = pg_pga_build(in, n, &art2, &size2);
    ok(!rc && size2 == size && !memcmp(art, art2, size), "build is deterministic (same inputs, same bytes)");
    free(art2);

    /* layout */
    ok(!memcmp(art, "PGAR", 4) && pg_le32_get(art + 4) == 1, "layout: magic PGAR, version 1 (no stream needs version 2)");
    ok(pg_le64_get(art + 8) == size, "layout: file size field = %zu", size);
    ok(pg_le64_get(art + 16) == 64 + 96 * n && pg_le32_get(art + 24) == n, "layout: data offset 64 + 96n, n streams");
    ok(pg_le32_get(art + 60) == (uint32_t)crc32_z(0, art, 60), "layout: header CRC32 over bytes 0..59");
    ok(pg_le32_get(art + 28) == (uint32_t)crc32_z(0, art + 64, 96 * n), "layout: table CRC32");
    const unsigned char *e0 = art + 64, *e1 = art + 64 + 96;
    ok(!strcmp((const char *)e0, "tok_emb") && e0[32] == PG_CODEC_BROTLI && e0[33] == PG_XFORM_TRANSPOSE &&
           pg_le64_get(e0 + 40) == 64 && pg_le64_get(e0 + 48) == 96 && pg_le64_get(e0 + 56) == n_emb &&
           pg_le64_get(e0 + 72) == 64 + 96 * n && pg_le32_get(e0 + 36) == (uint32_t)crc32_z(0, emb, n_emb),
       "layout: entry 0 fields (name, codec, transform, rows, cols, raw size, offset, raw CRC)");
    ok(pg_le64_get(e1 + 72) == pg_le64_get(e0 + 72) + pg_le64_get(e0 + 64) &&
           pg_le32_get(e0 + 80) == (uint32_t)crc32_z(0, art + pg_le64_get(e0 + 72), pg_le64_get(e0 + 64)),
       "layout: streams back to back, packed CRC32");

    /* write, open, decode */
    char path[128];
    snprintf(path, sizeof path, "%s/model.pga", dir);
    is_int(pg_pga_write(path, art, size), 0, "write: atomically to %s", path);
    struct pg_pga a;
    rc = pg_pga_open(&a, path);
    is_int(rc, 0, "open: parses");
    if (rc) {
        diag("%s", pg_error_message());
        free(art);
        return;
    }
    ok(a.size == size && a.n == n && a.version == 1, "open: %zu streams, version 1", a.n);
    is_int(pg_pga_verify(&a), 0, "verify: every packed CRC matches");
    unsigned char *out[8] = {0};
    rc = pg_pga_decode_all(&a, out);
    is_int(rc, 0, "decode_all: succeeds");
    int same = !rc;
    for (size_t i = 0; i < n && same; i++) {
        same &= a.streams[i].raw_size == in[i].size && !strcmp(a.streams[i].name, in[i].name) &&
                a.streams[i].codec == in[i].codec && a.streams[i].xform.id == in[i].xform.id;
        if (in[i].size) same &= !memcmp(out[i], in[i].data, in[i].size);
    }
    ok(same, "decode_all: every stream byte-identical, with its name, codec and transform");
    for (size_t i = 0; i < n; i++) free(out[i]);
    long k = pg_pga_find(&a, "scales");
    unsigned char *one = NULL;
    ok(k == 2 && pg_pga_decode(&a, (size_t)k, &one) == 0 && !memcmp(one, scales, n_sc), "find + decode one stream");
    free(one);
    ok(pg_pga_find(&a, "nope") == -1, "find: a missing name is -1");
    is_int(pg_pga_decode(&a, 99, &one), PG_E_INVAL, "decode: index out of range rejected");
    ok(a.streams[0].packed_size < a.streams[0].raw_size, "tok_emb packs smaller than raw (%llu -> %llu)",
       (unsigned long long)a.streams[0].raw_size, (unsigned long long)a.streams[0].packed_size);

    /* listing */
    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    pg_pga_list(&a, f);
    fclose(f);
    char want[256];
    snprintf(want, sizeof want, "%12llu %12llu", (unsigned long long)a.streams[0].raw_size,
             (unsigned long long)a.streams[0].packed_size);
    ok(strstr(text, "tok_emb") && strstr(text, "brotli") && strstr(text, "transpose 64x96") && strstr(text, want),
       "list: name, codec, transform, raw and packed sizes");
    snprintf(want, sizeof want, "%.4f", (double)a.streams[0].packed_size / (double)a.streams[0].raw_size);
    ok(strstr(text, want) != NULL, "list: ratio %s", want);
    ok(strstr(text, "shuffle 2") && strstr(text, "meta") && strstr(text, "raw"), "list: every stream");
    snprintf(want, sizeof want, "file %zu bytes", size);
    ok(strstr(text, "total (") && strstr(text, want), "list: total line and file size");
    int lines = 0;
    for (char *p = text; *p; p++) lines += *p == '\n';
    is_int(lines, (long long)n + 3, "list: heading + one line per stream + total + file");
    free(text);
    pg_pga_close(&a);

    /* A brotli stream (no checksum of its own) altered with its packed CRC recomputed: the raw
     * CRC still refuses it. */
    unsigned char *b = malloc(size);
    memcpy(b, art, size);
    uint64_t off = pg_le64_get(e0 + 72), psz = pg_le64_get(e0 + 64);
    int caught = 1, tried = 0;
    for (uint64_t at = off + 2; at < off + psz - 1 && tried < 40; at += psz / 41 + 1, tried++) {
        memcpy(b, art, size);
        b[at] ^= 0x10;
        pg_le32_put(b + 64 + 80, (uint32_t)crc32_z(0, b + off, psz));
        reseal(b);
        struct pg_pga x;
        unsigned char *o = NULL;
        int r = pg_pga_parse(&x, b, size, "x.pga");
        if (!r) r = pg_pga_decode(&x, 0, &o);
        if (!r) caught = 0;
        free(o);
        pg_pga_close(&x);
    }
    ok(caught, "brotli data altered behind a valid packed CRC: %d cases, all refused", tried);
    ok(msg_has("tok_emb"), "... the message names the stream: %s", pg_error_message());
    free(b);
    free(art);
    free(emb), free(fc), free(lz), free(scales);
}

/* ---- builder checks ---- */

static void test_build_rejects(void)
{
    unsigned char d[12] = {0};
    unsigned char *art;
    size_t size;
    struct pg_pga_input in[2] = {{.name = "a", .data = d, .size = 12, .codec = PG_CODEC_ZLIB},
                                 {.name = "b", .data = d, .size = 12, .codec = PG_CODEC_ZLIB}};
    const char *bad_names[] = {"", "has space", "0123456789012345678901234567890123", "tab\there"};
    for (size_t i = 0; i < 4; i++) {
        in[1].name = bad_names[i];
        is_int(pg_pga_build(in, 2, &art, &size), PG_E_INVAL, "build: name '%s' rejected", bad_names[i]);
    }
    in[1].name = "a";
    is_int(pg_pga_build(in, 2, &art, &size), PG_E_INVAL, "build: duplicate name rejected");
    ok(msg_has("duplicate stream name 'a'"), "... %s", pg_error_message());
    in[1].name = "b";
    in[1].xform = (struct pg_xform){.id = PG_XFORM_TRANSPOSE, .rows = 5, .cols = 2};
    is_int(pg_pga_build(in, 2, &art, &size), PG_E_INVAL, "build: transpose 5x2 of 12 bytes rejected");
    ok(msg_has("'b'") && msg_has("5x2"), "... %s", pg_error_message());
    in[1].xform = (struct pg_xform){0};
    in[1].codec = (enum pg_codec)9;
    is_int(pg_pga_build(in, 2, &art, &size), PG_E_INVAL, "build: unknown codec rejected");
    in[1].codec = PG_CODEC_BROTLI;
    struct pg_codec_params p = pg_codec_defaults(PG_CODEC_BROTLI);
    p.level = 12;
    in[1].params = &p;
    is_int(pg_pga_build(in, 2, &art, &size), PG_E_INVAL, "build: a bad codec setting fails the build");
    ok(msg_has("stream 'b'") && msg_has("quality 12"), "... naming the stream: %s", pg_error_message());

    is_int(pg_pga_build(NULL, 0, &art, &size), 0, "build: zero streams is a valid artifact");
    struct pg_pga a;
    ok(size == 64 && pg_pga_parse(&a, art, size, "empty.pga") == 0 && a.n == 0, "... of 64 bytes that parses");
    pg_pga_close(&a);
    free(art);
}

/* ---- reader checks, one by one ---- */

static void expect_reject(const unsigned char *b, size_t n, const char *what, const char *needle)
{
    int rc = full_check(b, n, "bad.pga");
    is_int(rc, PG_E_FORMAT, "reject %s", what);
    ok(msg_has("bad.pga: ") && msg_has(needle) && !strchr(pg_error_message(), '\n'),
       "... one line naming the file and '%s': %s", needle, pg_error_message());
}

/* A field set to a value: width 1, 4 or 8 bytes at offset `at`; sealed: the CRCs recomputed
 * afterwards, so that only the field itself is wrong. */
struct patch {
    size_t at;
    int width;
    uint64_t value;
    int sealed;
    const char *what, *needle;
};

static void test_reader_rejects(const unsigned char *good, size_t size)
{
    const size_t e0 = 64; /* the first table entry; stream 0 is "w.zlib", transposed 8x12 */
    const struct patch patches[] = {
        {0, 1, 'X', 0, "wrong magic", "bad magic"},
        {4, 4, 7, 0, "version 7 (header CRC not updated)", "unsupported version 7 (this build reads versions 1 to 3)"},
        {4, 4, 7, 1, "version 7 (resealed)", "unsupported version 7"},
        {4, 4, 0, 1, "version 0", "unsupported version 0"},
        {4, 4, 1, 1, "version 1 with a pgac stream (codec 5 came in version 2)", "unknown codec 5 (in version 1)"},
        {40, 1, 1, 1, "nonzero reserved header byte", "reserved header field at offset 40 is not zero"},
        {59, 1, 0x80, 1, "nonzero last reserved header byte", "reserved header field at offset 59"},
        {33, 1, 1, 0, "a reserved byte set without resealing", "header checksum mismatch"},
        {e0 + 40, 1, 9, 0, "a changed table byte", "stream table checksum mismatch"},
        {size - 1, 1, 0x40, 0, "a changed data byte", "checksum mismatch in stream 'w.pgac'"},
        {16, 8, 64, 1, "a data offset that skips the table", "data offset 64"},
        {e0 + 34, 1, 1, 1, "nonzero reserved entry field", "reserved field at entry offset 34 is not zero"},
        {e0 + 95, 1, 1, 1, "nonzero reserved entry tail", "reserved field at entry offset 95 is not zero"},
        {e0 + 32, 1, 9, 1, "unknown codec id", "unknown codec 9"},
        {e0 + 33, 1, 5, 1, "unknown transform id", "unknown transform 5"},
        {e0 + 3, 1, ' ', 1, "a space in a name", "bad name"},
        {e0 + 56, 8, PG_PGA_MAX_RAW + 1, 1, "a raw size over the limit", "over the 1 GiB limit"},
        {e0 + 64, 8, size, 1, "a packed size past the end", "run past the end of the file"},
        {e0 + 40, 8, 7, 1, "transpose rows that do not divide", "transpose 7x12 does not divide 96 bytes"},
        {e0 + 48, 8, 1, 1, "transpose 8x1 (divides, but not how it was packed)", "after decoding"},
        {e0 + 96 + 48, 8, 3, 1, "a parameter p1 for shuffle", "parameter p1 is not zero"},
    };
    unsigned char *b = malloc(size + 1);
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        const struct patch *p = &patches[i];
        memcpy(b, good, size);
        if (p->width == 1) b[p->at] = p->value == b[p->at] ? (unsigned char)~p->value : (unsigned char)p->value;
        else if (p->width == 4) pg_le32_put(b + p->at, (uint32_t)p->value);
        else pg_le64_put(b + p->at, p->value);
        if (p->sealed) reseal(b);
        expect_reject(b, size, p->what, p->needle);
    }
    /* the cases that are not a single field */
    expect_reject(good, size - 1, "a file one byte short", "truncated at offset");
    expect_reject(good, 30, "a file cut inside the header", "truncated at offset 30");
    expect_reject(good, 0, "an empty file", "truncated at offset 0");
    memcpy(b, good, size);
    b[size] = 0;
    expect_reject(b, size + 1, "a trailing byte", "trailing data");
    memcpy(b, good, size);
    memcpy(b + e0 + 96, b + e0, 32);
    reseal(b);
    expect_reject(b, size, "two streams with one name", "duplicate stream name 'w.zlib'");
    memcpy(b, good, size);
    pg_le64_put(b + e0 + 72, pg_le64_get(b + e0 + 72) + 1);
    reseal(b);
    expect_reject(b, size, "a stream offset with a hole", "streams are back to back");
    memcpy(b, good, size);
    pg_le32_put(b + e0 + 36, pg_le32_get(b + e0 + 36) ^ 1);
    reseal(b);
    expect_reject(b, size, "a wrong raw CRC", "checksum mismatch in stream 'w.zlib' after decoding");
    free(b);
}

/* ---- corruption loop ---- */

static void test_corruption_loop(const unsigned char *good, size_t size)
{
    int accepted = 0, not_truncated_msg = 0;
    for (size_t len = 0; len < size; len++) {
        if (!full_check(good, len, "t.pga")) accepted++;
        else if (!msg_has("truncated")) not_truncated_msg++;
    }
    is_int(accepted, 0, "truncation at every offset 0..%zu: all refused", size - 1);
    is_int(not_truncated_msg, 0, "... each saying 'truncated'");

    unsigned char *b = malloc(size);
    rng_state = 20261123;
    int flips = 4000, passed = 0;
    for (int k = 0; k < flips; k++) {
        memcpy(b, good, size);
        size_t at = (size_t)(next_u64() % size);
        int nbits = 1 + (int)(next_u64() % 3); /* 1 to 3 bits, anywhere */
        for (int j = 0; j < nbits; j++) b[(at + (size_t)j * 7) % size] ^= (unsigned char)(1u << (next_u64() % 8));
        if (!memcmp(b, good, size)) continue; /* two flips undid each other */
        if (!full_check(b, size, "f.pga")) passed++;
    }
    is_int(passed, 0, "%d seeded random bit flips over %zu bytes: all refused", flips, size);
    free(b);
}

/* ---- files ---- */

static int count_entries(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

static void test_files(const unsigned char *good, size_t size)
{
    char path[128];
    snprintf(path, sizeof path, "%s/no/such/dir/x.pga", dir);
    ok(pg_pga_write(path, good, size) == PG_E_IO, "write into a missing folder is PG_E_IO");
    snprintf(path, sizeof path, "%s/missing.pga", dir);
    struct pg_pga a;
    is_int(pg_pga_open(&a, path), PG_E_IO, "open of a missing file is PG_E_IO");
    ok(msg_has("missing.pga"), "... naming it: %s", pg_error_message());
    snprintf(path, sizeof path, "%s/small.pga", dir);
    int before = count_entries();
    is_int(pg_pga_write(path, good, size), 0, "write small.pga");
    is_int(count_entries(), before + 1, "write leaves no temporary behind");
    FILE *f = fopen(path, "r+b");
    if (f) {
        fseek(f, 70, SEEK_SET);
        fputc('Z', f);
        fclose(f);
    }
    is_int(pg_pga_open(&a, path), PG_E_FORMAT, "open of a damaged file is PG_E_FORMAT");
    ok(msg_has(path) && msg_has("checksum mismatch"), "... naming it: %s", pg_error_message());
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pg_test_pga.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_build_rejects();

    /* A small valid artifact for the reader checks: one transposed 8x12 stream per fast codec, and
     * a pgac stream of 10 rows of 12. */
    unsigned char *d0 = int8_like(96, 11), *d1 = int8_like(200, 12), *d2 = int8_like(150, 13), *d4 = int8_like(120, 14);
    struct pg_codec_params pgac_rows = pg_codec_defaults(PG_CODEC_PGAC);
    pgac_rows.pgac_cols = 12;
    const char *d3 = "raw text stream";
    struct pg_pga_input in[] = {
        {.name = "w.zlib", .data = d0, .size = 96, .codec = PG_CODEC_ZLIB,
         .xform = {.id = PG_XFORM_TRANSPOSE, .rows = 8, .cols = 12}},
        {.name = "w.brotli", .data = d1, .size = 200, .codec = PG_CODEC_BROTLI, .xform = {.id = PG_XFORM_SHUFFLE, .stride = 2}},
        {.name = "w.lzma", .data = d2, .size = 150, .codec = PG_CODEC_LZMA},
        {.name = "note", .data = d3, .size = strlen(d3), .codec = PG_CODEC_RAW},
        {.name = "w.pgac", .data = d4, .size = 120, .codec = PG_CODEC_PGAC, .params = &pgac_rows},
    };
    unsigned char *good = NULL;
    size_t size = 0;
    int rc = pg_pga_build(in, 5, &good, &size);
    is_int(rc, 0, "build the small artifact for the reader checks (%zu bytes)", size);
    is_int(full_check(good, size, "good.pga"), 0, "... which reads back whole");
    is_int(size > 8 ? (long long)pg_le32_get(good + 4) : -1, 2, "... written as version 2: it has a pgac stream");
    if (!rc) {
        test_reader_rejects(good, size);
        test_corruption_loop(good, size);
        test_files(good, size);
    }
    free(good);
    free(d0), free(d1), free(d2), free(d4);
    if (!getenv("PG_KEEP")) remove_tree(dir); else diag("kept %s", dir);
    return done_testing();
}
