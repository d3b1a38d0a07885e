/* test_codec.c: every codec round-trips, zlib is plain zlib, sizes make sense, corrupt or
 * truncated or wrongly-sized data is an error (never a crash, never wrong bytes), lrzip's
 * program handling (absent, deterministic), and the byte transforms invert exactly. */
#define _POSIX_C_SOURCE 200809L
#include "../../lib/rng.h"
#include "../tap.h"

#include "../../lib/bytes_xform.h"
#include "../../lib/codec.h"
#include "../../lib/err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static uint64_t rng_state;

static uint64_t next_u64(void) { return pg_splitmix64(&rng_state); }

struct input {
    const char *name;
    unsigned char *data;
    size_t n;
};

/* Small signed integers, roughly Gaussian (sum of 4 uniforms), like quantized weights. */
static void fill_int8_like(unsigned char *p, size_t n, int spread)
{
    for (size_t i = 0; i < n; i++) {
        int s = 0;
        for (int k = 0; k < 4; k++) s += (int)(next_u64() % (uint64_t)(2 * spread + 1)) - spread;
        p[i] = (unsigned char)(int8_t)(s / 2);
    }
}

static struct input make_input(const char *name, size_t n, int kind)
{
    struct input in = {name, malloc(n ? n : 1), n};
    if (!in.data) abort();
    rng_state = 1234 + n;
    for (size_t i = 0; i < n; i++) {
        if (kind == 0) in.data[i] = (unsigned char)next_u64();                 /* random */
        else if (kind == 1) in.data[i] = (unsigned char)("pgolf packs weights. "[i % 21]); /* repetitive */
    }
    if (kind == 2) fill_int8_like(in.data, n, 15);
    return in;
}

/* Decompresses into an exact-size buffer with a guard byte after it. @return rc; *same: output equals want. */
static int decode_check(enum pg_codec c, const unsigned char *z, size_t zn, const unsigned char *want, size_t n,
                        int *same)
{
    unsigned char *out = malloc(n + 1);
    if (!out) abort();
    out[n] = 0xA5;
    int rc = pg_decompress(c, z, zn, out, n);
    *same = !rc && (n == 0 || memcmp(out, want, n) == 0) && out[n] == 0xA5;
    free(out);
    return rc;
}

static void test_names(void)
{
    int good = 1;
    for (int c = 0; c < PG_CODEC_COUNT; c++) {
        enum pg_codec back;
        good &= pg_codec_from_name(pg_codec_name(c), &back) == 0 && (int)back == c;
    }
    ok(good, "codec names round-trip");
    ok(!strcmp(pg_codec_name(PG_CODEC_ZLIB), "zlib") && !strcmp(pg_codec_name(PG_CODEC_LZMA), "lzma") &&
           !strcmp(pg_codec_name(PG_CODEC_BROTLI), "brotli") && !strcmp(pg_codec_name(PG_CODEC_LRZIP), "lrzip") &&
           !strcmp(pg_codec_name(PG_CODEC_RAW), "raw"),
       "codec names are zlib, lzma, brotli, lrzip, raw");
    enum pg_codec c;
    is_int(pg_codec_from_name("zstd", &c), PG_E_INVAL, "unknown codec name rejected");
    ok(strstr(pg_error_message(), "zstd") && strstr(pg_error_message(), "brotli"), "message names it and the choices: %s",
       pg_error_message());
    ok(!strcmp(pg_codec_name(99), "?"), "out-of-range codec name is '?'");
}

static void test_params(void)
{
    unsigned char *z;
    size_t zn;
    struct pg_codec_params p = pg_codec_defaults(PG_CODEC_ZLIB);
    is_int(p.level, 9, "zlib default level 9");
    p = pg_codec_defaults(PG_CODEC_BROTLI);
    ok(p.level == 11 && p.brotli_lgwin == 24, "brotli defaults quality 11, lgwin 24");
    p = pg_codec_defaults(PG_CODEC_LZMA);
    ok(p.level == 9 && p.lzma_extreme, "lzma defaults preset 9 extreme");
    p = pg_codec_defaults(PG_CODEC_LRZIP);
    ok(p.level == 9 && p.lrzip_zpaq && p.lrzip_threads == 1, "lrzip defaults -z -L 9 -p 1");
    p = pg_codec_defaults(PG_CODEC_ZLIB);
    p.level = 10;
    is_int(pg_compress(PG_CODEC_ZLIB, &p, "x", 1, &z, &zn), PG_E_INVAL, "zlib level 10 rejected");
    p = pg_codec_defaults(PG_CODEC_BROTLI);
    p.brotli_lgwin = 25;
    is_int(pg_compress(PG_CODEC_BROTLI, &p, "x", 1, &z, &zn), PG_E_INVAL, "brotli lgwin 25 rejected");
    is_int(pg_compress((enum pg_codec)7, NULL, "x", 1, &z, &zn), PG_E_INVAL, "unknown codec rejected by compress");
    unsigned char o[1];
    is_int(pg_decompress((enum pg_codec)7, "x", 1, o, 1), PG_E_INVAL, "unknown codec rejected by decompress");

    /* Non-default settings still round-trip. */
    struct input in = make_input("int8", 50000, 2);
    struct { enum pg_codec c; int level; } alt[] = {{PG_CODEC_ZLIB, 1}, {PG_CODEC_LZMA, 2}, {PG_CODEC_BROTLI, 5}};
    for (size_t k = 0; k < sizeof alt / sizeof alt[0]; k++) {
        p = pg_codec_defaults(alt[k].c);
        p.level = alt[k].level;
        p.lzma_extreme = 0;
        p.brotli_lgwin = 18;
        int same = 0;
        int rc = pg_compress(alt[k].c, &p, in.data, in.n, &z, &zn);
        if (!rc) rc = decode_check(alt[k].c, z, zn, in.data, in.n, &same);
        ok(!rc && same, "%s level %d round-trips", pg_codec_name(alt[k].c), alt[k].level);
        if (!rc) free(z);
    }
    free(in.data);
}

/* Corruption: flips, truncations, a trailing byte and wrong sizes; none may crash. Codecs with a
 * checksum (zlib's adler32, xz's CRC64) must never return wrong bytes: a flip they cannot see
 * (deflate ignores the padding bits of its last byte) may decode, but only to the right bytes.
 * Brotli has no checksum, so a flipped literal can decode to other bytes of the right size: the
 * .pga container's CRC32 of the raw bytes is what catches that (test_pga). */
static void corrupt_checks(enum pg_codec c, const unsigned char *z, size_t zn, const struct input *in, int flips,
                           int truncs)
{
    const char *name = pg_codec_name(c);
    unsigned char *b = malloc(zn + 1);
    if (!b) abort();
    int wrong = 0, errors = 0, tried = 0, same;
    rng_state = 99;
    for (int k = 0; k < flips && zn; k++) {
        memcpy(b, z, zn);
        size_t at = k < 8 && (size_t)k < zn ? (size_t)k : (size_t)(next_u64() % zn); /* the header, then anywhere */
        b[at] ^= (unsigned char)(1 + next_u64() % 255);
        int rc = decode_check(c, b, zn, in->data, in->n, &same);
        tried++;
        if (rc) errors++;
        else if (!same) wrong++;
    }
    if (flips && c != PG_CODEC_BROTLI) {
        ok(wrong == 0, "%s/%s: %d byte flips: none decodes to wrong bytes", name, in->name, tried);
        ok(errors >= tried * 9 / 10, "%s/%s: %d of %d flips are errors", name, in->name, errors, tried);
    } else if (flips) {
        ok(errors + wrong > 0, "%s/%s: %d byte flips: no crash; %d errors, %d wrong outputs (no checksum)", name,
           in->name, tried, errors, wrong);
    }
    int trunc_ok = 1, ntr = 0;
    for (int k = 0; k < truncs; k++) {
        size_t len = truncs >= (int)zn ? (size_t)k : (size_t)(next_u64() % zn);
        if (len >= zn) continue;
        ntr++;
        if (!decode_check(c, z, len, in->data, in->n, &same)) trunc_ok = 0;
    }
    if (truncs) ok(trunc_ok, "%s/%s: %d truncations are errors", name, in->name, ntr);
    memcpy(b, z, zn);
    b[zn] = 0;
    ok(decode_check(c, b, zn + 1, in->data, in->n, &same) == PG_E_FORMAT, "%s/%s: a trailing byte is an error", name,
       in->name);
    if (in->n) {
        unsigned char *o = malloc(in->n + 1);
        if (!o) abort();
        int r1 = pg_decompress(c, z, zn, o, in->n - 1), r2 = pg_decompress(c, z, zn, o, in->n + 1);
        ok(r1 == PG_E_FORMAT && r2 == PG_E_FORMAT, "%s/%s: expected size off by one either way is an error (%s)", name,
           in->name, pg_error_message());
        free(o);
    }
    free(b);
}

static void test_library_codecs(struct input *ins, size_t nin)
{
    const enum pg_codec codecs[] = {PG_CODEC_RAW, PG_CODEC_ZLIB, PG_CODEC_LZMA, PG_CODEC_BROTLI};
    for (size_t ci = 0; ci < 4; ci++) {
        enum pg_codec c = codecs[ci];
        const char *name = pg_codec_name(c);
        for (size_t i = 0; i < nin; i++) {
            unsigned char *z = NULL;
            size_t zn = 0;
            int rc = pg_compress(c, NULL, ins[i].data, ins[i].n, &z, &zn);
            int same = 0;
            if (!rc) rc = decode_check(c, z, zn, ins[i].data, ins[i].n, &same);
            ok(!rc && same, "%s round-trips %s (%zu -> %zu bytes)", name, ins[i].name, ins[i].n, zn);
            if (rc) diag("%s", pg_error_message());
            if (!z) continue;
            const struct input *in = &ins[i];
            if (c == PG_CODEC_ZLIB) {
                uLongf dl = in->n;
                unsigned char *o = malloc(in->n + 1);
                int zr = o ? uncompress(o, &dl, z, zn) : -99;
                ok(zr == Z_OK && dl == in->n && (in->n == 0 || !memcmp(o, in->data, in->n)),
                   "zlib/%s decodes with plain uncompress()", in->name);
                ok(zn >= 2 && z[0] == 0x78 && z[1] == 0xDA, "zlib/%s has the level-9 zlib header 78 DA (Python's)",
                   in->name);
                free(o);
            }
            if (c == PG_CODEC_LZMA) ok(zn >= 6 && !memcmp(z, "\xFD" "7zXZ\0", 6), "lzma/%s is an .xz stream", in->name);
            if (!strcmp(in->name, "repetitive") && c != PG_CODEC_RAW)
                ok(zn * 50 < in->n, "%s shrinks repetitive text over 50x (%zu -> %zu)", name, in->n, zn);
            if (!strcmp(in->name, "random") && c != PG_CODEC_RAW)
                ok(zn <= in->n + in->n / 100 + 64, "%s expands random bytes by at most 1%% (%zu -> %zu)", name, in->n,
                   zn);
            if (!strcmp(in->name, "int8-1MB") && c != PG_CODEC_RAW)
                ok(zn < in->n * 3 / 4, "%s compresses int8-like data below 0.75 (%.3f)", name, (double)zn / (double)in->n);
            if (!strcmp(in->name, "int8-16KB")) corrupt_checks(c, z, zn, in, c == PG_CODEC_RAW ? 0 : 300, 200);
            if (!strcmp(in->name, "1 byte")) corrupt_checks(c, z, zn, in, c == PG_CODEC_RAW ? 0 : 40, 64);
            free(z);
        }
    }
}

static void test_lrzip(void)
{
    /* Absent program: a clean one-line error. */
    setenv("PG_LRZIP", "/nonexistent/lrzip", 1);
    unsigned char *z = NULL;
    size_t zn;
    ok(!pg_lrzip_available(), "lrzip: PG_LRZIP pointing nowhere is not available");
    int rc = pg_compress(PG_CODEC_LRZIP, NULL, "abc", 3, &z, &zn);
    is_int(rc, PG_E_UNSUPPORTED, "lrzip: missing program is PG_E_UNSUPPORTED");
    ok(strstr(pg_error_message(), "lrzip not found") && strstr(pg_error_message(), "install the Debian package lrzip") &&
           !strchr(pg_error_message(), '\n'),
       "lrzip: one-line message: %s", pg_error_message());
    unsetenv("PG_LRZIP");

    if (!pg_lrzip_available()) {
        ok(1, "lrzip tests # SKIP lrzip is not installed");
        return;
    }
    struct input ins[] = {make_input("empty", 0, 0), make_input("1 byte", 1, 0), make_input("random", 3000, 0),
                          make_input("repetitive", 8000, 1), make_input("int8", 8000, 2)};
    for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++) {
        struct input *in = &ins[i];
        rc = pg_compress(PG_CODEC_LRZIP, NULL, in->data, in->n, &z, &zn);
        int same = 0;
        if (!rc) rc = decode_check(PG_CODEC_LRZIP, z, zn, in->data, in->n, &same);
        ok(!rc && same, "lrzip round-trips %s (%zu -> %zu bytes)", in->name, in->n, zn);
        if (rc) {
            diag("%s", pg_error_message());
            continue;
        }
        if (!strcmp(in->name, "repetitive")) ok(zn * 20 < in->n, "lrzip shrinks repetitive text over 20x (%zu)", zn);
        if (!strcmp(in->name, "int8")) {
            ok(zn < in->n * 3 / 4, "lrzip compresses int8-like data below 0.75 (%.3f)", (double)zn / (double)in->n);
            unsigned char *z2;
            size_t zn2;
            rc = pg_compress(PG_CODEC_LRZIP, NULL, in->data, in->n, &z2, &zn2);
            ok(!rc && zn2 == zn && !memcmp(z, z2, zn), "lrzip is deterministic: same input, same bytes");
            if (!rc) free(z2);
            /* Corruption: the header checks (ours), then lrzip's own (magic, chunks, MD5). */
            unsigned char *b = malloc(zn + 1);
            const size_t at[] = {0, 6, 22, 30, zn / 2, zn - 20, zn - 1};
            int all = 1;
            for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
                memcpy(b, z, zn);
                b[at[k]] ^= 0x5A;
                if (!decode_check(PG_CODEC_LRZIP, b, zn, in->data, in->n, &same)) {
                    all = 0;
                    diag("flip at %zu decoded", at[k]);
                }
            }
            ok(all, "lrzip: byte flips in the header, chunks, data and MD5 are errors");
            ok(strchr(pg_error_message(), '\n') == NULL, "lrzip: error is one line: %s", pg_error_message());
            int tr = decode_check(PG_CODEC_LRZIP, z, zn / 2, in->data, in->n, &same) &&
                     decode_check(PG_CODEC_LRZIP, z, 10, in->data, in->n, &same) &&
                     decode_check(PG_CODEC_LRZIP, z, zn - 1, in->data, in->n, &same);
            ok(tr, "lrzip: truncations are errors");
            unsigned char o[1];
            is_int(pg_decompress(PG_CODEC_LRZIP, z, zn, o, 1), PG_E_FORMAT, "lrzip: wrong expected size is an error");
            ok(strstr(pg_error_message(), "expected 1") != NULL, "lrzip: ... caught by the header check: %s",
               pg_error_message());
            free(b);
        }
        free(z);
    }
    for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++) free(ins[i].data);
    struct pg_codec_params p = pg_codec_defaults(PG_CODEC_LRZIP);
    p.level = 0;
    is_int(pg_compress(PG_CODEC_LRZIP, &p, "x", 1, &z, &zn), PG_E_INVAL, "lrzip level 0 rejected");
}

/* ---- transforms ---- */

static void test_transpose(void)
{
    const size_t shapes[][2] = {{1, 1}, {1, 7}, {7, 1}, {3, 5}, {17, 33}, {64, 64}, {65, 130}, {130, 65}};
    int good = 1, inv = 1;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t r = shapes[s][0], c = shapes[s][1], n = r * c;
        unsigned char *a = malloc(n), *t = malloc(n), *back = malloc(n);
        rng_state = n;
        for (size_t i = 0; i < n; i++) a[i] = (unsigned char)next_u64();
        pg_transpose8(a, t, r, c);
        for (size_t i = 0; i < r; i++)
            for (size_t j = 0; j < c; j++) good &= t[j * r + i] == a[i * c + j];
        pg_transpose8(t, back, c, r);
        inv &= !memcmp(a, back, n);
        free(a), free(t), free(back);
    }
    ok(good, "transpose: dst[j][i] = src[i][j] for odd and tile-crossing shapes");
    ok(inv, "transpose: transposing back restores the matrix");

    /* Through struct pg_xform: 3 matrices of 5x7 back to back. */
    struct pg_xform t = {.id = PG_XFORM_TRANSPOSE, .rows = 5, .cols = 7};
    unsigned char a[105], b[105], c[105];
    for (int i = 0; i < 105; i++) a[i] = (unsigned char)i;
    is_int(pg_xform_check(&t, 105, PG_E_INVAL), 0, "xform: transpose 5x7 fits 105 bytes (3 matrices)");
    pg_xform_apply(&t, a, b, 105);
    ok(b[0] == 0 && b[1] == 7 && b[5] == 1 && b[35] == 35 && b[36] == 42, "xform: each matrix transposed in place");
    pg_xform_undo(&t, b, c, 105);
    ok(!memcmp(a, c, 105), "xform: transpose undone exactly");
    is_int(pg_xform_check(&t, 100, PG_E_FORMAT), PG_E_FORMAT, "xform: transpose 5x7 does not fit 100 bytes");
    struct pg_xform bad = {.id = PG_XFORM_TRANSPOSE, .rows = 0, .cols = 7};
    is_int(pg_xform_check(&bad, 0, PG_E_INVAL), PG_E_INVAL, "xform: zero rows rejected");
    bad = (struct pg_xform){.id = PG_XFORM_TRANSPOSE, .rows = 1ull << 40, .cols = 1ull << 40};
    is_int(pg_xform_check(&bad, 0, PG_E_INVAL), PG_E_INVAL, "xform: rows*cols overflow rejected");
    bad = (struct pg_xform){.id = PG_XFORM_NONE, .stride = 2};
    is_int(pg_xform_check(&bad, 0, PG_E_INVAL), PG_E_INVAL, "xform: none with a parameter rejected");
    bad = (struct pg_xform){.id = (enum pg_xform_id)9};
    is_int(pg_xform_check(&bad, 0, PG_E_INVAL), PG_E_INVAL, "xform: unknown id rejected");
}

static void test_shuffle(void)
{
    unsigned char five[5] = {10, 11, 12, 13, 14}, out[5];
    pg_shuffle8(five, out, 5, 2);
    const unsigned char want[5] = {10, 12, 14, 11, 13};
    ok(!memcmp(out, want, 5), "shuffle: stride 2 over 5 bytes gives even bytes then odd bytes");
    const size_t strides[] = {1, 2, 3, 4, 7, 8, 300};
    const size_t lens[] = {0, 1, 5, 16, 17, 1001, 4099};
    int good = 1, moved = 1;
    for (size_t s = 0; s < sizeof strides / sizeof strides[0]; s++)
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            size_t n = lens[l], st = strides[s];
            unsigned char *a = malloc(n + 1), *b = malloc(n + 1), *c = malloc(n + 1);
            rng_state = n * 31 + st;
            for (size_t i = 0; i < n; i++) a[i] = (unsigned char)next_u64();
            pg_shuffle8(a, b, n, st);
            pg_unshuffle8(b, c, n, st);
            good &= n == 0 || !memcmp(a, c, n);
            /* plane j starts at j*(n/st) + min(j, n%st) and holds a[j], a[j+st], ... */
            if (st > 1 && st < n) {
                size_t j = st - 1, start = j * (n / st) + (j < n % st ? j : n % st);
                moved &= b[start] == a[j];
            }
            free(a), free(b), free(c);
        }
    ok(good, "shuffle: unshuffle inverts it for 7 strides x 7 lengths (not multiples of the stride too)");
    ok(moved, "shuffle: the last plane starts where the layout says");
    struct pg_xform t = {.id = PG_XFORM_SHUFFLE, .stride = 0};
    is_int(pg_xform_check(&t, 10, PG_E_INVAL), PG_E_INVAL, "xform: stride 0 rejected");
    t.stride = PG_XFORM_MAX_STRIDE + 1;
    is_int(pg_xform_check(&t, 10, PG_E_INVAL), PG_E_INVAL, "xform: stride over the maximum rejected");
}

static void test_nn_order(void)
{
    /* Rows are constant vectors of these values: from row 0 (0) the greedy walk is 10, 20, 30, 40,
     * 50, i.e. rows 2, 4, 5, 3, 1; adjacent L1 goes from (50+40+30+20+10)*8 to 5*10*8. */
    const int vals[6] = {0, 50, 10, 40, 20, 30};
    int8_t m[6 * 8], sorted[6 * 8], back[6 * 8];
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 8; c++) m[r * 8 + c] = (int8_t)vals[r];
    uint16_t perm[6];
    is_int(pg_nn_order(m, 6, 8, perm), 0, "nn: ordering succeeds");
    const uint16_t want[6] = {0, 2, 4, 5, 3, 1};
    ok(!memcmp(perm, want, sizeof want), "nn: the greedy order is 0 2 4 5 3 1 (got %u %u %u %u %u %u)", perm[0],
       perm[1], perm[2], perm[3], perm[4], perm[5]);
    ok(pg_perm_valid(perm, 6), "nn: the result is a permutation");
    is_int((long long)pg_adjacent_l1(m, 6, 8), 1200, "nn: adjacent L1 before is 1200");
    pg_rows_permute(m, sorted, 6, 8, perm);
    is_int((long long)pg_adjacent_l1(sorted, 6, 8), 400, "nn: adjacent L1 after ordering is 400");
    pg_rows_unpermute(sorted, back, 6, 8, perm);
    ok(!memcmp(m, back, sizeof m), "nn: unpermute restores the rows");

    /* Ties go to the lower row index. */
    int8_t t[4] = {0, 5, 5, 5};
    uint16_t tp[4];
    pg_nn_order(t, 4, 1, tp);
    ok(tp[1] == 1 && tp[2] == 2 && tp[3] == 3, "nn: ties are broken by the lower index");

    /* A larger matrix (long rows, so the first steps take the parallel path): valid, reduces
     * adjacent L1, independent of the thread count. */
    size_t rows = 400, cols = 4096;
    int8_t *big = malloc(rows * cols), *bs = malloc(rows * cols), *bb = malloc(rows * cols);
    uint16_t *p1 = malloc(rows * sizeof *p1), *p2 = malloc(rows * sizeof *p2);
    rng_state = 7;
    /* Clustered rows: 20 centres, each row a centre plus noise, shuffled by construction. */
    static int8_t centres[20][4096];
    for (int k = 0; k < 20; k++)
        for (size_t c = 0; c < cols; c++) centres[k][c] = (int8_t)((int)(next_u64() % 61) - 30);
    for (size_t r = 0; r < rows; r++) {
        int k = (int)(next_u64() % 20);
        for (size_t c = 0; c < cols; c++) big[r * cols + c] = (int8_t)(centres[k][c] + (int)(next_u64() % 5) - 2);
    }
    int rc = pg_nn_order(big, rows, cols, p1);
    ok(!rc && pg_perm_valid(p1, rows), "nn: 400x4096 gives a valid permutation");
    uint64_t before = pg_adjacent_l1(big, rows, cols);
    pg_rows_permute(big, bs, rows, cols, p1);
    uint64_t after = pg_adjacent_l1(bs, rows, cols);
    ok(after * 2 < before, "nn: clustered rows: adjacent L1 %llu -> %llu (more than halved)",
       (unsigned long long)before, (unsigned long long)after);
    pg_rows_unpermute(bs, bb, rows, cols, p1);
    ok(!memcmp(big, bb, rows * cols), "nn: 400x4096 unpermutes exactly");
#ifdef _OPENMP
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    pg_nn_order(big, rows, cols, p2);
    omp_set_num_threads(nt > 1 ? nt : 3);
    uint16_t *p3 = malloc(rows * sizeof *p3);
    pg_nn_order(big, rows, cols, p3);
    omp_set_num_threads(nt);
    ok(!memcmp(p1, p2, rows * sizeof *p1) && !memcmp(p1, p3, rows * sizeof *p1),
       "nn: the same order with 1 thread and with several");
    free(p3);
#else
    (void)p2;
#endif
    uint16_t q[3] = {0, 2, 2};
    ok(!pg_perm_valid(q, 3), "nn: a repeated index is not a permutation");
    q[2] = 3;
    ok(!pg_perm_valid(q, 3), "nn: an index out of range is not a permutation");
    is_int(pg_nn_order(m, 65537, 0, p1), PG_E_INVAL, "nn: more than 65536 rows rejected");
    is_int(pg_nn_order(m, 0, 8, p1), 0, "nn: zero rows is fine");
    free(big), free(bs), free(bb), free(p1), free(p2);
}

int main(void)
{
    test_names();
    test_params();
    struct input ins[] = {make_input("empty", 0, 0), make_input("1 byte", 1, 0), make_input("random", 100000, 0),
                          make_input("repetitive", 200000, 1), make_input("int8-16KB", 16384, 2),
                          make_input("int8-1MB", 1 << 20, 2)};
    size_t nin = sizeof ins / sizeof ins[0];
    test_library_codecs(ins, nin);
    for (size_t i = 0; i < nin; i++) free(ins[i].data);
    test_lrzip();
    test_transpose();
    test_shuffle();
    test_nn_order();
    return done_testing();
}
