/* test_pgac.c: the pgac coder (lib/pgac.c) on its own.
 *   - round trips: empty, one value, one row, one column, all zeros, the int8 extremes (-128
 *     included), random int6-like matrices with per-row and per-column scales;
 *   - the coder against the ideal: an i.i.d. source of a known distribution costs, in float64,
 *     -sum log2 p(v) bits; pgac's payload must come within a small learning overhead above that
 *     (and cannot go far below it), and its own model estimate must match its payload (the
 *     arithmetic coder loses almost nothing against the probabilities it was given);
 *   - determinism: the same bytes on every run and from every thread;
 *   - corruption: every truncation and seeded random bit flips are refused with a one-line
 *     error; damaged payloads with the checksum recomputed never crash and never write past
 *     the output. */
#define _POSIX_C_SOURCE 200809L
#include "../../lib/codec.h"
#include "../../lib/err.h"
#include "../../lib/pgac.h"
#include "../../lib/rng.h"
#include "../../lib/xio.h"
#include "../tap.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static int8_t *matrix(size_t rows, size_t cols, int qmax, uint64_t seed)
{
    struct pg_rng r;
    pg_rng_seed(&r, seed);
    int8_t *v = malloc(rows * cols + 1);
    double *colscale = malloc((cols + 1) * sizeof *colscale);
    for (size_t c = 0; c < cols; c++) colscale[c] = 0.5 + pg_rng_uniform(&r);
    for (size_t i = 0; i < rows; i++) {
        double rs = 0.05 + 0.25 * pg_rng_uniform(&r);
        for (size_t c = 0; c < cols; c++) {
            double x = pg_rng_normal(&r) * rs * colscale[c] * qmax;
            long q = lround(x);
            if (q > qmax) q = qmax;
            if (q < -qmax) q = -qmax;
            v[i * cols + c] = (int8_t)q;
        }
    }
    free(colscale);
    return v;
}

static int round_trip(const int8_t *v, size_t n, uint64_t cols, size_t *packed)
{
    unsigned char *z = NULL;
    size_t zn = 0;
    int rc = pg_pgac_encode(v, n, cols, &z, &zn, NULL);
    if (rc) return -1;
    int8_t *back = malloc(n + 1);
    back[n] = 0x5a;
    rc = pg_pgac_decode(z, zn, back, n);
    int same = !rc && (n == 0 || !memcmp(back, v, n)) && back[n] == 0x5a;
    if (packed) *packed = zn;
    free(back), free(z);
    return same ? 0 : -1;
}

static void test_round_trips(void)
{
    int8_t one = -5;
    is_int(round_trip(NULL, 0, 1, NULL), 0, "empty stream");
    is_int(round_trip(&one, 1, 1, NULL), 0, "a single value");
    int8_t *a = matrix(1, 700, 31, 1), *b = matrix(700, 1, 31, 2), *z = calloc(4096, 1);
    is_int(round_trip(a, 700, 700, NULL), 0, "a single row of 700");
    is_int(round_trip(b, 700, 1, NULL), 0, "a single column of 700");
    size_t zn = 0;
    is_int(round_trip(z, 4096, 64, &zn), 0, "all zeros");
    ok(zn <= PG_PGAC_HEADER + 4, "... in the header and the coder's 4 bytes (%zu)", zn);
    int8_t ext[512];
    for (int i = 0; i < 512; i++) ext[i] = (int8_t)(i % 2 ? -128 : (i * 37) % 256 - 128);
    is_int(round_trip(ext, 512, 32, NULL), 0, "every int8 value, -128 included");
    int8_t big[256];
    for (int i = 0; i < 256; i++) big[i] = (int8_t)(i - 128);
    is_int(round_trip(big, 256, 16, NULL), 0, "-128..127 in order");
    int bad = 0;
    for (int bits = 2; bits <= 8; bits++) {
        int qmax = (1 << (bits - 1)) - 1;
        int8_t *m = matrix(96, 80, qmax, 10 + (uint64_t)bits);
        bad += round_trip(m, 96 * 80, 80, NULL) != 0;
        free(m);
    }
    is_int(bad, 0, "random matrices at int2..int8 round-trip");
    unsigned char *o = NULL;
    size_t on = 0;
    is_int(pg_pgac_encode(a, 700, 300, &o, &on, NULL), PG_E_INVAL, "a size that is not whole rows is refused");
    is_int(pg_pgac_encode(a, 700, 0, &o, &on, NULL), PG_E_INVAL, "zero columns are refused");
    /* through the codec interface, with and without a row length */
    struct pg_codec_params p = pg_codec_defaults(PG_CODEC_PGAC);
    p.pgac_cols = 70;
    unsigned char *c1 = NULL;
    size_t c1n = 0;
    int rc = pg_compress(PG_CODEC_PGAC, &p, a, 700, &c1, &c1n);
    int8_t back[700];
    ok(!rc && !pg_decompress(PG_CODEC_PGAC, c1, c1n, back, 700) && !memcmp(back, a, 700),
       "pg_compress / pg_decompress with pgac_cols 70");
    is_int(pg_decompress(PG_CODEC_PGAC, c1, c1n, back, 699), PG_E_FORMAT, "a wrong expected size is refused");
    ok(strstr(pg_error_message(), "expected 699") != NULL, "... saying so: %s", pg_error_message());
    free(c1);
    rc = pg_compress(PG_CODEC_PGAC, NULL, a, 700, &c1, &c1n);
    ok(!rc && !pg_decompress(PG_CODEC_PGAC, c1, c1n, back, 700) && !memcmp(back, a, 700),
       "pg_compress without settings: one row");
    free(c1);
    free(a), free(b), free(z);
}

/* An i.i.d. source over -K..K with P(v) proportional to 2^(-|v| / 1.5) (a discrete Laplacian),
 * drawn by inverse CDF; its ideal code length is -sum log2 P(v_i), in float64. */
static void test_ideal(void)
{
    enum { K = 15, N = 240000, COLS = 600 };
    double p[2 * K + 1], sum = 0;
    for (int v = -K; v <= K; v++) sum += p[v + K] = pow(2.0, -fabs((double)v) / 1.5);
    for (int i = 0; i <= 2 * K; i++) p[i] /= sum;
    struct pg_rng r;
    pg_rng_seed(&r, 77);
    int8_t *v = malloc(N);
    double ideal = 0;
    for (size_t i = 0; i < N; i++) {
        double u = pg_rng_uniform(&r), acc = 0;
        int k = 0;
        while (k < 2 * K && (acc += p[k]) <= u) k++;
        v[i] = (int8_t)(k - K);
        ideal -= log2(p[k]);
    }
    unsigned char *z = NULL;
    size_t zn = 0;
    struct pg_pgac_stats st;
    is_int(pg_pgac_encode(v, N, COLS, &z, &zn, &st), 0, "encode %d i.i.d. Laplacian values", N);
    double got = 8.0 * (double)(zn - PG_PGAC_HEADER);
    diag("ideal %.0f bits, pgac payload %.0f bits (%.4f), model estimate %.0f, order-0 %.0f", ideal, got, got / ideal,
         st.model_bits, st.order0_bits);
    ok(got <= 1.01 * ideal, "payload within 1%% above the ideal code length (%.4f)", got / ideal);
    ok(got >= 0.995 * ideal, "... and not below it by more than sampling noise (%.4f)", got / ideal);
    ok(fabs(got - st.model_bits) <= 0.001 * st.model_bits + 64,
       "the arithmetic coder's bytes match its model's cost within 0.1%% + 8 bytes (%.0f vs %.0f bits)", got,
       st.model_bits);
    ok(st.values == N && st.payload_bytes == zn - PG_PGAC_HEADER, "stats: values and payload bytes");
    ok(fabs(st.order0_bits - ideal) < 0.01 * ideal, "stats: the order-0 entropy is near the ideal (%.0f)", st.order0_bits);
    int8_t *back = malloc(N);
    ok(!pg_pgac_decode(z, zn, back, N) && !memcmp(back, v, N), "... and decodes back");
    free(back), free(z), free(v);
}

static void test_determinism(void)
{
    int8_t *m = matrix(200, 256, 31, 5);
    size_t n = 200 * 256;
    unsigned char *ref = NULL;
    size_t refn = 0;
    pg_pgac_encode(m, n, 256, &ref, &refn, NULL);
    int differ = 0;
#pragma omp parallel for reduction(+ : differ)
    for (int k = 0; k < 8; k++) {
        unsigned char *z = NULL;
        size_t zn = 0;
        if (pg_pgac_encode(m, n, 256, &z, &zn, NULL) || zn != refn || memcmp(z, ref, zn)) differ++;
        free(z);
    }
    is_int(differ, 0, "8 encodes in parallel threads give the identical bytes");
    /* pinned: the stream's checksum, so that a change of the format shows here */
    diag("reference stream: %zu bytes, crc32 %08lx", refn, (unsigned long)crc32(0, ref, (uInt)refn));
    free(ref), free(m);
}

static void test_corruption(void)
{
    int8_t *m = matrix(12, 40, 31, 9);
    size_t n = 480;
    unsigned char *z = NULL;
    size_t zn = 0;
    pg_pgac_encode(m, n, 40, &z, &zn, NULL);
    int8_t *out = malloc(n + 1);
    int accepted = 0, multi_line = 0;
    for (size_t len = 0; len < zn; len++) {
        if (!pg_pgac_decode(z, len, out, n)) accepted++;
        else if (strchr(pg_error_message(), '\n')) multi_line++;
    }
    is_int(accepted, 0, "truncation at every length 0..%zu: all refused", zn - 1);
    is_int(multi_line, 0, "... each with a one-line message");
    unsigned char *b = malloc(zn + 1);
    memcpy(b, z, zn);
    b[zn] = 0;
    is_int(pg_pgac_decode(b, zn + 1, out, n), PG_E_FORMAT, "a trailing byte is refused");
    uint64_t s = 99;
    int passed = 0;
    for (int k = 0; k < 3000; k++) {
        memcpy(b, z, zn);
        size_t at = (size_t)(pg_splitmix64(&s) % zn);
        b[at] ^= (unsigned char)(1u << (pg_splitmix64(&s) % 8));
        if (!pg_pgac_decode(b, zn, out, n)) passed++;
    }
    is_int(passed, 0, "3000 seeded single-bit flips: all refused");
    /* with the checksum recomputed the payload may decode to other values, but safely */
    int crashed = 0, guard_hit = 0;
    for (int k = 0; k < 2000; k++) {
        memcpy(b, z, zn);
        size_t at = PG_PGAC_HEADER + (size_t)(pg_splitmix64(&s) % (zn - PG_PGAC_HEADER));
        b[at] ^= (unsigned char)(1u << (pg_splitmix64(&s) % 8));
        pg_le32_put(b + 24, (uint32_t)crc32(0, b + PG_PGAC_HEADER, (uInt)(zn - PG_PGAC_HEADER)));
        out[n] = 0x33;
        int rc = pg_pgac_decode(b, zn, out, n);
        if (rc && rc != PG_E_FORMAT) crashed++;
        if (out[n] != 0x33) guard_hit++;
    }
    ok(!crashed && !guard_hit, "2000 flips under a recomputed checksum: only PG_E_FORMAT or values, never past the output");
    memcpy(b, z, zn);
    b[4] = 9;
    is_int(pg_pgac_decode(b, zn, out, n), PG_E_FORMAT, "an unknown version is refused");
    ok(strstr(pg_error_message(), "version 9") != NULL, "... naming it: %s", pg_error_message());
    free(b), free(out), free(z), free(m);
}

int main(void)
{
    test_round_trips();
    test_ideal();
    test_determinism();
    test_corruption();
    return done_testing();
}
