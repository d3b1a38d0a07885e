/* test_loader.c: training batches and validation windows against a plain re-implementation of
 * parameter-golf's next_batch / load_validation_tokens / eval_val (spec/baseline.md §1.5, §1.6,
 * §2.2): the expected tokens come from formulas over the concatenated splits with wraparound,
 * never from the files the library reads. The coprime-stride mode (spec/techniques.md §1.1) is
 * checked against the shard files read back here with stdio, and against its defining properties. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/err.h"
#include "../../lib/loader.h"
#include "../../lib/shard.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

/* Three train shards of odd sizes; token i of the split is i mod 65521, so the values wrap too. */
static const uint64_t train_sizes[3] = {70001, 50003, 30011};
#define TRAIN_TOTAL (70001u + 50003u + 30011u)
static uint16_t train_tok(uint64_t i) { return (uint16_t)(i % 65521); }
static uint16_t val_tok(uint64_t i) { return (uint16_t)(60000 - 7 * i); }

/* Writes <dir>/<name> holding tokens f(first .. first+n-1). */
static int write_shard(const char *name, uint64_t first, uint64_t n, uint16_t (*f)(uint64_t))
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    unsigned char h[PG_SHARD_HEADER_BYTES];
    pg_shard_make_header(h, n);
    int bad = fwrite(h, 1, sizeof h, fp) != sizeof h;
    for (uint64_t i = 0; i < n && !bad; i++) {
        uint16_t t = f(first + i);
        unsigned char b[2] = {(unsigned char)t, (unsigned char)(t >> 8)};
        bad = fwrite(b, 1, 2, fp) != 2;
    }
    return fclose(fp) || bad ? -1 : 0;
}

static void write_train(void)
{
    uint64_t first = 0;
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "tr_train_%06d.bin", i);
        bad |= write_shard(name, first, train_sizes[i], train_tok);
        first += train_sizes[i];
    }
    /* Decoys the loader must not pick up: another split and another prefix. */
    bad |= write_shard("tr_val_000000.bin", 0, 100, val_tok);
    bad |= write_shard("trx_train_000000.bin", 0, 100, val_tok);
    ok(!bad, "wrote 3 train shards (%u tokens) and 2 decoys", TRAIN_TOTAL);
}

/* The reference: every call takes world·(local+1) stream tokens from offset `off`; rank r's span
 * starts at off + r·(local+1); x = span[:-1], y = span[1:]. */
static void check_loader(int world, int accum, int seq_len, int64_t global)
{
    int64_t local = global / (world * accum);
    uint64_t chunk = (uint64_t)world * (uint64_t)(local + 1);
    int calls = (int)((5 * (uint64_t)TRAIN_TOTAL / 2 + chunk - 1) / chunk); /* wraps at least twice */
    int32_t *x = malloc((size_t)local * sizeof *x), *y = malloc((size_t)local * sizeof *y);
    for (int r = 0; r < world; r++) {
        struct pg_train_loader l;
        int rc = pg_train_loader_open(&l, dir, "tr", r, world, global, seq_len, accum);
        if (!is_int(rc, 0, "W=%d accum=%d rank %d: open", world, accum, r)) {
            diag("%s", pg_error_message());
            continue;
        }
        is_int(l.local_tokens, local, "W=%d accum=%d rank %d: %lld tokens per micro-batch", world, accum, r,
               (long long)local);
        uint64_t off = 0, bad = 0, first_bad = 0;
        for (int c = 0; c < calls; c++, off += chunk) {
            if (pg_train_loader_next(&l, x, y)) {
                bad++;
                break;
            }
            uint64_t base = off + (uint64_t)r * (uint64_t)(local + 1);
            for (int64_t j = 0; j < local; j++)
                if (x[j] != train_tok((base + (uint64_t)j) % TRAIN_TOTAL) ||
                    y[j] != train_tok((base + (uint64_t)j + 1) % TRAIN_TOTAL))
                    if (!bad++) first_bad = base + (uint64_t)j;
        }
        ok(bad == 0 && off >= 2ull * TRAIN_TOTAL,
           "W=%d accum=%d rank %d: %d calls (%llu stream tokens, %.2f passes) equal the reference slices", world,
           accum, r, calls, (unsigned long long)off, (double)off / TRAIN_TOTAL);
        if (bad) diag("%llu mismatches, first at stream offset %llu", (unsigned long long)bad,
                      (unsigned long long)first_bad);
        pg_train_loader_close(&l);
    }
    free(x);
    free(y);
}

/* The baseline's shapes: 8 ranks × accum 1 and 1 rank × accum 8 both give 65,536-token
 * micro-batches, and every micro-step takes 65,537 tokens per rank from the stream. */
static void test_baseline_shape(void)
{
    int64_t local;
    is_int(pg_train_batch_shape(524288, 8, 1, 1024, &local), 0, "shape: 524288 tokens, 8 ranks, accum 1");
    is_int(local, 65536, "shape: 8 ranks: 65536 tokens = 64 x 1024 per rank");
    is_int(pg_train_batch_shape(524288, 1, 8, 1024, &local), 0, "shape: 524288 tokens, 1 rank, accum 8");
    is_int(local, 65536, "shape: accum 8: 65536 tokens per micro-step");
    struct pg_train_loader l;
    if (!is_int(pg_train_loader_open(&l, dir, "tr", 0, 1, 524288, 1024, 8), 0, "1 rank, accum 8: open")) return;
    int32_t *x = malloc(65536 * sizeof *x), *y = malloc(65536 * sizeof *y);
    size_t f;
    uint64_t p;
    pg_train_loader_next(&l, x, y);
    pg_train_loader_state(&l, &f, &p);
    ok(f == 0 && p == 65537, "one micro-step takes 65537 tokens (file %zu pos %llu)", f, (unsigned long long)p);
    for (int i = 1; i < 8; i++) pg_train_loader_next(&l, x, y);
    /* 8 × 65537 = 524296 = 3 × 150015 + 74251, and 74251 = 70001 + 4250: shard 1, token 4250. */
    pg_train_loader_state(&l, &f, &p);
    ok(f == 1 && p == 4250, "one optimizer step (8 micro-steps) takes 524296 tokens (file %zu pos %llu)", f,
       (unsigned long long)p);
    ok(x[0] == train_tok((7 * 65537ull) % TRAIN_TOTAL) && y[65535] == train_tok(524295ull % TRAIN_TOTAL),
       "micro-step 8: first x and last y");
    pg_train_loader_close(&l);
    free(x);
    free(y);
}

static void test_resume(void)
{
    const int world = 2, rank = 1, seq = 64;
    const int64_t global = 8192, local = 4096;
    struct pg_train_loader a, b;
    int32_t xa[4096], ya[4096], xb[4096], yb[4096];
    if (pg_train_loader_open(&a, dir, "tr", rank, world, global, seq, 1) ||
        pg_train_loader_open(&b, dir, "tr", rank, world, global, seq, 1)) {
        ok(0, "resume: open: %s", pg_error_message());
        return;
    }
    for (int i = 0; i < 10; i++) pg_train_loader_next(&a, xa, ya);
    size_t f;
    uint64_t p;
    pg_train_loader_state(&a, &f, &p);
    ok(f == 1 && p == 10 * 8194 - 70001, "resume: state after 10 calls is shard 1, token %llu",
       (unsigned long long)p);
    is_int(pg_train_loader_restore(&b, f, p), 0, "resume: restore into a fresh loader");
    int same = 1;
    for (int i = 0; i < 40; i++) { /* 40 more calls cross every shard boundary and wrap */
        pg_train_loader_next(&a, xa, ya);
        pg_train_loader_next(&b, xb, yb);
        same &= !memcmp(xa, xb, sizeof xa) && !memcmp(ya, yb, sizeof ya);
    }
    ok(same, "resume: the restored loader gives the same 40 next batches as continuing");
    /* The end of a shard is a valid saved position: the next tokens start the following shard. */
    is_int(pg_train_loader_restore(&b, 0, train_sizes[0]), 0, "resume: restore at the very end of shard 0");
    pg_train_loader_next(&b, xb, yb);
    ok(xb[0] == train_tok(70001 + local + 1) && yb[local - 1] == train_tok(70001 + 2 * local + 1),
       "resume: from the end of shard 0, rank 1 reads from token 70001 + 4097");
    /* (0, 0) is a fresh start, as the reference's re-created loader after warmup. */
    struct pg_train_loader c;
    pg_train_loader_open(&c, dir, "tr", rank, world, global, seq, 1);
    pg_train_loader_restore(&b, 0, 0);
    pg_train_loader_next(&b, xb, yb);
    pg_train_loader_next(&c, xa, ya);
    ok(!memcmp(xa, xb, sizeof xa) && !memcmp(ya, yb, sizeof ya), "resume: restore (0, 0) equals a fresh loader");
    is_int(pg_train_loader_restore(&b, 3, 0), PG_E_INVAL, "resume: shard index past the split rejected");
    is_int(pg_train_loader_restore(&b, 2, train_sizes[2] + 1), PG_E_INVAL, "resume: position past a shard rejected");
    pg_train_loader_close(&a);
    pg_train_loader_close(&b);
    pg_train_loader_close(&c);
}

static void reject(int rank, int world, int64_t global, int seq, int accum, const char *what, const char *needle)
{
    struct pg_train_loader l;
    int rc = pg_train_loader_open(&l, dir, "tr", rank, world, global, seq, accum);
    is_int(rc, PG_E_INVAL, "rejects %s", what);
    ok(strstr(pg_error_message(), needle) != NULL, "message for %s: %s", what, pg_error_message());
    if (rc == 0) pg_train_loader_close(&l);
}

static void test_bad_params(void)
{
    reject(0, 0, 8192, 64, 1, "world size 0", "world size 0");
    reject(-1, 2, 8192, 64, 1, "rank -1", "rank -1");
    reject(2, 2, 8192, 64, 1, "rank == world", "rank 2");
    reject(0, 1, 8192, 64, 0, "grad_accum 0", "grad_accum 0");
    reject(0, 1, 8192, 0, 1, "sequence length 0", "sequence length 0");
    reject(0, 1, 0, 64, 1, "an empty batch", "must be positive");
    reject(0, 1, 1000, 64, 1, "1000 tokens per micro-batch with seq 64", "1000 tokens per micro-batch");
    reject(0, 2, 8192, 3000, 4, "a micro-batch shorter than one sequence", "1024 tokens per micro-batch");
    reject(0, 4, 3, 1, 1, "0 tokens per rank", "0 tokens per micro-batch");
    /* The reference floors global/(world·accum): 8193 over 2 ranks is 4096 each, 1 token unused. */
    int64_t local;
    is_int(pg_train_batch_shape(8193, 2, 1, 64, &local), 0, "shape: a remainder is dropped as the reference does");
    is_int(local, 4096, "shape: floor(8193 / 2) = 4096");
}

static void test_missing(void)
{
    struct pg_train_loader l;
    struct pg_val_set v;
    is_int(pg_train_loader_open(&l, dir, "nope", 0, 1, 8192, 64, 1), PG_E_IO, "train: no shard is a runtime error");
    ok(strstr(pg_error_message(), dir) && strstr(pg_error_message(), "nope_train_"), "train: message names %s: %s",
       dir, pg_error_message());
    is_int(pg_val_open(&v, dir, "nope", 64), PG_E_IO, "val: no shard is a runtime error");
    ok(strstr(pg_error_message(), dir) && strstr(pg_error_message(), "nope_val_"), "val: message names %s: %s", dir,
       pg_error_message());
    char gone[128];
    snprintf(gone, sizeof gone, "%s/absent", dir);
    is_int(pg_train_loader_open(&l, gone, "tr", 0, 1, 8192, 64, 1), PG_E_IO, "train: missing directory is an I/O error");
    ok(strstr(pg_error_message(), gone) != NULL, "train: message names the directory: %s", pg_error_message());
    is_int(pg_val_open(&v, gone, "va", 64), PG_E_IO, "val: missing directory is an I/O error");
    ok(strstr(pg_error_message(), gone) != NULL, "val: message names the directory: %s", pg_error_message());
}

/* Val split "va": shards of 50 and 27 tokens, N = 77. */
static void test_val(void)
{
    ok(!write_shard("va_val_000000.bin", 0, 50, val_tok) && !write_shard("va_val_000001.bin", 50, 27, val_tok),
       "val: wrote shards of 50 + 27 tokens");
    /* usable = floor((77 − 1) / L) · L, by hand. */
    const struct { int seq; int64_t usable; } cases[] = {{10, 70}, {11, 66}, {38, 76}, {76, 76}, {1, 76}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct pg_val_set v;
        int rc = pg_val_open(&v, dir, "va", cases[i].seq);
        is_int(rc, 0, "val seq %d: open", cases[i].seq);
        if (rc) continue;
        is_int(v.usable, cases[i].usable, "val seq %d: usable = floor(76 / %d) * %d", cases[i].seq, cases[i].seq,
               cases[i].seq);
        pg_val_close(&v);
    }
    struct pg_val_set v;
    is_int(pg_val_open(&v, dir, "va", 77), PG_E_INVAL, "val seq 77: usable 0 is an error");
    ok(strstr(pg_error_message(), "77 tokens") != NULL, "val: too-short message: %s", pg_error_message());
    is_int(pg_val_open(&v, dir, "va", 0), PG_E_INVAL, "val seq 0 rejected");

    if (!is_int(pg_val_open(&v, dir, "va", 10), 0, "val seq 10: open")) return;
    is_int(pg_val_num_seqs(&v), 7, "val seq 10: 7 windows");
    int32_t x[30], y[30], x1[10], y1[10];
    int good = 1;
    for (int s = 0; s < 7; s++) {
        good &= pg_val_window(&v, s, x, y) == 0;
        for (int j = 0; j < 10; j++) good &= x[j] == val_tok(10 * s + j) && y[j] == val_tok(10 * s + j + 1);
    }
    ok(good, "val windows: x = tokens[10s, 10s+10), y shifted by one, across the shard boundary");
    is_int(pg_val_windows(&v, 4, 3, x, y), 0, "val windows 4..6 as one batch");
    good = 1;
    for (int s = 0; s < 3; s++) {
        pg_val_window(&v, 4 + s, x1, y1);
        good &= !memcmp(x + 10 * s, x1, sizeof x1) && !memcmp(y + 10 * s, y1, sizeof y1);
    }
    ok(good, "val batch rows equal the single windows; the last target is token 70");
    is_int(y[29], val_tok(70), "val: the final target is token usable = 70");
    is_int(pg_val_window(&v, 7, x, y), PG_E_INVAL, "val window 7 of 7 rejected");
    is_int(pg_val_windows(&v, 5, 3, x, y), PG_E_INVAL, "val windows 5..7 rejected");
    is_int(pg_val_window(&v, -1, x, y), PG_E_INVAL, "val window -1 rejected");
    pg_val_close(&v);
}

/* Rank ranges [floor(total·r/W), floor(total·(r+1)/W)) partition [0, total). */
static void test_rank_ranges(void)
{
    const int64_t totals[] = {1, 3, 7, 64, 1000003, 4000000000000000000ll};
    for (size_t t = 0; t < sizeof totals / sizeof *totals; t++) {
        struct pg_val_set v = {NULL, totals[t], 1};
        for (int w = 1; w <= 5; w++) {
            int good = 1;
            int64_t prev_end = 0, b, e;
            for (int r = 0; r < w; r++) {
                good &= pg_val_rank_range(&v, r, w, &b, &e) == 0;
                /* unsigned 64-bit products do not overflow for these totals and w <= 5 */
                good &= b == prev_end && (uint64_t)b == (uint64_t)totals[t] * (uint64_t)r / (uint64_t)w;
                good &= e >= b && e - b <= totals[t] / w + 1;
                prev_end = e;
            }
            ok(good && prev_end == totals[t], "rank ranges of %lld windows over %d rank(s) partition [0, total)",
               (long long)totals[t], w);
        }
    }
    struct pg_val_set v = {NULL, 70, 10};
    int64_t b, e;
    is_int(pg_val_rank_range(&v, 3, 3, &b, &e), PG_E_INVAL, "rank range: rank 3 of 3 rejected");
    is_int(pg_val_rank_range(&v, 0, 0, &b, &e), PG_E_INVAL, "rank range: world 0 rejected");
    pg_val_rank_range(&v, 1, 5, &b, &e);
    ok(b == 1 && e == 2, "rank range: 7 windows, rank 1 of 5: [1, 2)");

    int64_t n;
    is_int(pg_val_batch_seqs(524288, 8, 1, 1024, &n), 0, "val batch: baseline on 8 ranks");
    is_int(n, 64, "val batch: 524288 / 8 / 1024 = 64 windows");
    pg_val_batch_seqs(524288, 1, 8, 1024, &n);
    is_int(n, 64, "val batch: 1 rank, accum 8: also 64 windows");
    pg_val_batch_seqs(1000, 2, 1, 300, &n);
    is_int(n, 1, "val batch: floor(floor(1000 / 2) / 300) = 1");
    is_int(pg_val_batch_seqs(100, 2, 1, 64, &n), PG_E_INVAL, "val batch: 50 tokens per rank < one window rejected");
    ok(strstr(pg_error_message(), "at least one sequence") != NULL, "val batch message: %s", pg_error_message());
    is_int(pg_val_batch_seqs(524288, 0, 1, 1024, &n), PG_E_INVAL, "val batch: world 0 rejected");
}

/* ---- coprime-stride mode ---- */

static uint16_t pos_tok(uint64_t i) { return (uint16_t)i; }
static uint16_t mx_tok(uint64_t i) { return (uint16_t)(i / 3000 + 40 * (i % 3000 % 1600)); } /* shard = tok % 40 */

/* Split "uq": four shards whose tokens are the global index, so a row's x[0] says where it is. */
static const uint64_t uq_sizes[4] = {16000, 20011, 9001, 18000};
static uint16_t *uq_data[4]; /* the files as read back with stdio */

static uint16_t *read_back(const char *name, uint64_t n)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    uint16_t *t = malloc(n * sizeof *t);
    unsigned char b[2];
    int bad = !fp || !t || fseek(fp, PG_SHARD_HEADER_BYTES, SEEK_SET);
    for (uint64_t i = 0; i < n && !bad; i++) {
        bad = fread(b, 1, 2, fp) != 2;
        t[i] = (uint16_t)(b[0] | b[1] << 8);
    }
    if (fp) fclose(fp);
    if (bad) {
        free(t);
        return NULL;
    }
    return t;
}

static void write_coprime_splits(void)
{
    int bad = 0;
    uint64_t first = 0;
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "uq_train_%06d.bin", i);
        bad |= write_shard(name, first, uq_sizes[i], pos_tok);
        bad |= !(uq_data[i] = read_back(name, uq_sizes[i]));
        first += uq_sizes[i];
    }
    for (int i = 0; i < 40; i++) {
        char name[64];
        snprintf(name, sizeof name, "mx_train_%06d.bin", i);
        bad |= write_shard(name, 3000ull * i, 3000, mx_tok);
    }
    bad |= write_shard("one_train_000000.bin", 0, 1000, pos_tok);
    bad |= write_shard("two_train_000000.bin", 0, 20, pos_tok);
    bad |= write_shard("sh_train_000000.bin", 0, 500, pos_tok);
    bad |= write_shard("sh_train_000001.bin", 0, 20, pos_tok);
    ok(!bad, "coprime: wrote and read back the uq, mx, one, two and sh splits");
}

static int open_cp(struct pg_train_loader *l, const char *prefix, int rank, int world, int64_t global, int seq,
                   int accum, uint64_t seed)
{
    int rc = pg_train_loader_open(l, dir, prefix, rank, world, global, seq, accum);
    if (!rc && (rc = pg_train_loader_use_coprime(l, seed))) pg_train_loader_close(l);
    if (rc) diag("open %s rank %d/%d seed %llu: %s", prefix, rank, world, (unsigned long long)seed,
                 pg_error_message());
    return rc;
}

static void test_coprime_stride(void)
{
    struct pg_rng r;
    pg_rng_seed(&r, 1);
    int good = 1;
    uint64_t first_bad = 0;
    for (uint64_t n = 1; n <= 3000 && good; n++)
        for (int d = 0; d < 4 && good; d++) {
            uint64_t s = pg_coprime_stride(&r, n), a = s, b = n;
            while (b) {
                uint64_t t = a % b;
                a = b;
                b = t;
            }
            good = a == 1 && (n <= 2 ? s == 1 : s >= 2 && s < n);
            if (!good) first_bad = n;
        }
    ok(good, "stride: gcd(s, n) = 1 and s in [2, n) (1 when n <= 2) for n = 1..3000");
    if (!good) diag("first bad n %llu", (unsigned long long)first_bad);
    int seen[12] = {0};
    for (int d = 0; d < 200; d++) seen[pg_coprime_stride(&r, 12)]++;
    ok(seen[5] && seen[7] && seen[11] && seen[5] + seen[7] + seen[11] == 200,
       "stride: n = 12 draws each of 5, 7, 11 and nothing else (%d %d %d)", seen[5], seen[7], seen[11]);
    pg_rng_seed(&r, 1);
    struct pg_rng r2 = r;
    pg_coprime_stride(&r, 2);
    ok(!memcmp(&r, &r2, sizeof r), "stride: n <= 2 draws no number");
}

static void test_coprime_schedule(void)
{
    const struct { uint64_t batch; int world, k; double alpha; } c[] = {
        {0, 1, 8, 0.9},      {900, 1, 20, 0.7},   {1800, 1, 32, 0.5}, {5000, 1, 32, 0.5}, {450, 1, 14, 0.8},
        {0, 8, 8, 0.9},      {900, 8, 36, 0.7},   {1800, 8, 64, 0.5}, {99999, 8, 64, 0.5}, {0, 16, 16, 0.9},
        {900, 16, 72, 0.7},  {1800, 16, 128, 0.5}, {1799, 1, 31, 0.5 + 0.4 / 1800},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        int k;
        double a;
        pg_coprime_schedule(c[i].batch, c[i].world, &k, &a);
        ok(k == c[i].k && fabs(a - c[i].alpha) < 1e-12, "ramp: batch %llu, W=%d: k %d (want %d), alpha %.6f (want %.6f)",
           (unsigned long long)c[i].batch, c[i].world, k, c[i].k, a, c[i].alpha);
    }
}

/* One shard, one mixing choice: the row offsets, walked epoch by epoch, must each be a coprime
 * walk over all the blocks of the epoch's phase. */
static void check_epochs(const char *prefix, uint64_t n, int seq, int want_epochs)
{
    struct pg_train_loader l;
    const int rows = 4;
    if (open_cp(&l, prefix, 0, 1, (int64_t)rows * seq, seq, 1, 11)) {
        ok(0, "epochs %s: open", prefix);
        return;
    }
    uint64_t B = (uint64_t)seq + 1;
    int32_t x[4 * 64], y[4 * 64];
    uint64_t *offs = NULL;
    size_t noffs = 0, cap = 0;
    int real = 1;
    /* enough rows for want_epochs epochs of at most n / B blocks */
    size_t need = (size_t)(want_epochs * (n / B) + rows);
    while (noffs < need) {
        pg_train_loader_next(&l, x, y);
        if (noffs + rows > cap) offs = realloc(offs, (cap = 2 * cap + rows) * sizeof *offs);
        for (int r = 0; r < rows; r++) {
            uint64_t o = (uint64_t)x[r * seq];
            offs[noffs++] = o;
            for (int j = 0; j < seq; j++)
                real &= o + B <= n && x[r * seq + j] == (int32_t)(o + j) && y[r * seq + j] == (int32_t)(o + j + 1);
        }
    }
    ok(real, "epochs %s seq %d: every row is a window inside the shard, y = x shifted by one", prefix, seq);
    int epochs = 0, good = 1, coprime = 1, distinct_phase = 0, distinct_stride = 0;
    uint64_t prev_phase = UINT64_MAX, prev_stride = UINT64_MAX;
    unsigned char *seen = calloc(n / B + 1, 1);
    for (size_t at = 0; good && at < noffs; epochs++) {
        uint64_t phase = offs[at] % B, nb = (n - phase) / B;
        if (at + nb > noffs) break; /* the last epoch is incomplete */
        memset(seen, 0, n / B + 1);
        uint64_t stride = 0;
        for (uint64_t j = 0; j < nb; j++) {
            uint64_t o = offs[at + j], b = (o - phase) / B;
            good &= o % B == phase && b < nb && !seen[b];
            if (!good) break;
            seen[b] = 1;
            if (j == 1) stride = (b + nb - (offs[at] - phase) / B) % nb;
            if (j >= 1) good &= (b + nb - (offs[at + j - 1] - phase) / B) % nb == stride;
        }
        if (nb >= 2) {
            uint64_t a = stride, c = nb;
            while (c) {
                uint64_t t = a % c;
                a = c;
                c = t;
            }
            coprime &= a == 1 && (nb <= 2 ? stride == 1 : stride >= 2);
        }
        distinct_phase += phase != prev_phase;
        distinct_stride += stride != prev_stride;
        prev_phase = phase;
        prev_stride = stride;
        at += nb;
        if (!good) diag("epoch %d (phase %llu, %llu blocks) is not a permutation with one stride", epochs,
                        (unsigned long long)phase, (unsigned long long)nb);
    }
    ok(good && epochs >= want_epochs, "epochs %s seq %d: each of %d epochs visits every block exactly once, one step apart",
       prefix, seq, epochs);
    ok(coprime, "epochs %s seq %d: every epoch's stride is coprime with its block count (>= 2 when there are 3+)",
       prefix, seq);
    if (n / B > 2)
        ok(distinct_phase > epochs / 3 && distinct_stride > epochs / 3,
           "epochs %s seq %d: re-armed epochs change phase (%d changes) and stride (%d changes)", prefix, seq,
           distinct_phase, distinct_stride);
    free(seen);
    free(offs);
    pg_train_loader_close(&l);
}

/* Where a uq row comes from: shard and offset; -1 if it is not a window of the files. */
static int uq_locate(const int32_t *x, const int32_t *y, int seq, uint64_t *off)
{
    uint64_t g = (uint64_t)x[0];
    for (int s = 0; s < 4; s++) {
        if (g >= uq_sizes[s]) {
            g -= uq_sizes[s];
            continue;
        }
        if (g + (uint64_t)seq + 1 > uq_sizes[s]) return -1;
        for (int j = 0; j < seq; j++)
            if (x[j] != uq_data[s][g + j] || y[j] != uq_data[s][g + j + 1]) return -1;
        *off = g;
        return s;
    }
    return -1;
}

static void test_coprime_windows(void)
{
    struct pg_train_loader l;
    const int seq = 16, rows = 8;
    if (open_cp(&l, "uq", 0, 1, rows * seq, seq, 1, 3)) {
        ok(0, "uq: open");
        return;
    }
    int32_t x[8 * 16], y[8 * 16];
    int real = 1, per_shard[4] = {0}, calls = 600; /* 4800 rows > the 3706 blocks: shards re-arm */
    for (int c = 0; c < calls; c++) {
        pg_train_loader_next(&l, x, y);
        for (int r = 0; r < rows; r++) {
            uint64_t off;
            int s = uq_locate(x + r * seq, y + r * seq, seq, &off);
            real &= s >= 0;
            if (s >= 0) per_shard[s]++;
        }
    }
    ok(real, "uq: %d calls x %d rows are all windows of the shard files (x, and y shifted by one)", calls, rows);
    ok(per_shard[0] && per_shard[1] && per_shard[2] && per_shard[3], "uq: every shard is used (%d %d %d %d rows)",
       per_shard[0], per_shard[1], per_shard[2], per_shard[3]);
    size_t f;
    uint64_t p;
    pg_train_loader_state(&l, &f, &p);
    ok(f == PG_TRAIN_LOADER_COPRIME_FILE && p == (uint64_t)calls, "uq: state is (coprime marker, %d calls): (%zu, %llu)",
       calls, f, (unsigned long long)p);
    pg_train_loader_close(&l);
}

/* The k shards of a call: distinct shards = min(k, shards, rows), rows spread within one. */
static void test_coprime_mixing(void)
{
    const int seq = 8;
    const struct { int rows; uint64_t at; int want; } c[] = {
        {64, 0, 8}, {64, 900, 20}, {64, 1800, 32}, {64, 2500, 32}, {16, 900, 16}, {16, 0, 8}, {4, 0, 4},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        struct pg_train_loader l;
        if (open_cp(&l, "mx", 0, 1, (int64_t)c[i].rows * seq, seq, 1, 5)) {
            ok(0, "mix: open");
            continue;
        }
        int32_t *x = malloc((size_t)c[i].rows * seq * sizeof *x), *y = malloc((size_t)c[i].rows * seq * sizeof *y);
        pg_train_loader_restore(&l, PG_TRAIN_LOADER_COPRIME_FILE, c[i].at);
        pg_train_loader_next(&l, x, y);
        int count[40] = {0}, same = 1;
        for (int r = 0; r < c[i].rows; r++) {
            int s = x[r * seq] % 40;
            count[s]++;
            for (int j = 0; j < seq; j++) same &= x[r * seq + j] % 40 == s && y[r * seq + j] % 40 == s;
        }
        int k = 0, lo = c[i].rows, hi = 0;
        for (int s = 0; s < 40; s++)
            if (count[s]) {
                k++;
                lo = count[s] < lo ? count[s] : lo;
                hi = count[s] > hi ? count[s] : hi;
            }
        ok(same && k == c[i].want && hi - lo <= 1,
           "mix: %d rows at call %llu come from %d shards (want %d), %d..%d rows each", c[i].rows,
           (unsigned long long)c[i].at, k, c[i].want, lo, hi);
        free(x);
        free(y);
        pg_train_loader_close(&l);
    }
}

/* Ranks of W split the global batch: their rows, in rank order, are the 1-rank batch. */
static void test_coprime_ranks(void)
{
    const int seq = 16, rows = 12, calls = 200;
    const int64_t global = rows * seq;
    int32_t x1[12 * 16], y1[12 * 16];
    for (int w = 2; w <= 4; w++) {
        struct pg_train_loader one, r[4];
        int bad = open_cp(&one, "uq", 0, 1, global, seq, 1, 9);
        for (int i = 0; i < w; i++) bad |= open_cp(&r[i], "uq", i, w, global, seq, 1, 9);
        if (bad) {
            ok(0, "ranks W=%d: open", w);
            continue;
        }
        int local = rows / w, equal = 1, disjoint = 1;
        int32_t xr[12 * 16], yr[12 * 16];
        for (int c = 0; c < calls; c++) {
            pg_train_loader_next(&one, x1, y1);
            for (int i = 0; i < w; i++) {
                pg_train_loader_next(&r[i], xr + i * local * seq, yr + i * local * seq);
                equal &= !memcmp(xr + i * local * seq, x1 + i * local * seq, (size_t)local * seq * sizeof *xr) &&
                         !memcmp(yr + i * local * seq, y1 + i * local * seq, (size_t)local * seq * sizeof *yr);
            }
            /* no row is on two ranks (uq rows are unique by their first token) */
            for (int a = 0; a < rows; a++)
                for (int b = a + 1; b < rows; b++)
                    if (a / local != b / local && xr[a * seq] == xr[b * seq]) disjoint = 0;
        }
        ok(disjoint, "ranks W=%d: %d calls: no row on two ranks", w, calls);
        ok(equal, "ranks W=%d: %d calls: rank r's rows are rows [r*%d, (r+1)*%d) of the 1-rank batch", w, calls, local,
           local);
        pg_train_loader_close(&one);
        for (int i = 0; i < w; i++) pg_train_loader_close(&r[i]);
    }
}

static int same_calls(struct pg_train_loader *a, struct pg_train_loader *b, int calls, int32_t *xa, int32_t *ya,
                      int32_t *xb, int32_t *yb)
{
    size_t n = (size_t)a->local_tokens;
    int same = 1;
    for (int c = 0; c < calls; c++) {
        pg_train_loader_next(a, xa, ya);
        pg_train_loader_next(b, xb, yb);
        same &= !memcmp(xa, xb, n * sizeof *xa) && !memcmp(ya, yb, n * sizeof *ya);
    }
    return same;
}

static void test_coprime_resume(void)
{
    const int seq = 16, world = 2, rank = 1;
    const int64_t global = 16 * seq; /* 8 rows per rank */
    int32_t xa[128], ya[128], xb[128], yb[128];
    struct pg_train_loader a, b, c, s;
    if (open_cp(&a, "uq", rank, world, global, seq, 1, 21) || open_cp(&b, "uq", rank, world, global, seq, 1, 21) ||
        open_cp(&c, "uq", rank, world, global, seq, 1, 22)) {
        ok(0, "coprime resume: open");
        return;
    }
    int differ = 0;
    for (int i = 0; i < 50; i++) {
        pg_train_loader_next(&b, xa, ya);
        pg_train_loader_next(&c, xb, yb);
        differ += memcmp(xa, xb, sizeof xa) != 0;
    }
    ok(differ == 50, "coprime: seeds 21 and 22 differ in %d of the first 50 calls", differ);
    pg_train_loader_restore(&b, 0, 0);
    ok(same_calls(&a, &b, 50, xa, ya, xb, yb), "coprime: the same seed gives the same 50 calls");
    for (int i = 0; i < 450; i++) pg_train_loader_next(&a, xa, ya); /* 500 calls: 8000 global rows, shards re-armed */
    size_t f;
    uint64_t p;
    pg_train_loader_state(&a, &f, &p);
    ok(f == PG_TRAIN_LOADER_COPRIME_FILE && p == 500, "coprime resume: state (%zu, %llu)", f, (unsigned long long)p);
    /* c has another seed and has drawn calls: restore re-seeds from its seed, so use b's */
    is_int(pg_train_loader_restore(&b, f, p), 0, "coprime resume: restore 500 calls into a loader 50 calls in");
    ok(same_calls(&a, &b, 300, xa, ya, xb, yb), "coprime resume: the restored loader gives the same 300 next calls");
    struct pg_train_loader d;
    if (!open_cp(&d, "uq", rank, world, global, seq, 1, 21)) {
        pg_train_loader_state(&a, &f, &p);
        is_int(pg_train_loader_restore(&d, f, p), 0, "coprime resume: restore 800 calls into a fresh loader");
        ok(same_calls(&a, &d, 100, xa, ya, xb, yb), "coprime resume: fresh + restore gives the same 100 next calls");
        pg_train_loader_close(&d);
    }
    if (!open_cp(&d, "uq", rank, world, global, seq, 1, 21)) {
        pg_train_loader_restore(&b, 0, 0);
        ok(same_calls(&b, &d, 20, xa, ya, xb, yb), "coprime resume: restore (0, 0) is call 0 again");
        pg_train_loader_close(&d);
    }
    is_int(pg_train_loader_restore(&b, 1, 5), PG_E_INVAL, "coprime resume: a sequential state is rejected");
    ok(strstr(pg_error_message(), "sequential") != NULL, "coprime resume: message: %s", pg_error_message());
    if (!pg_train_loader_open(&s, dir, "uq", rank, world, global, seq, 1)) {
        is_int(pg_train_loader_restore(&s, PG_TRAIN_LOADER_COPRIME_FILE, 5), PG_E_INVAL,
               "sequential: a coprime state is rejected");
        ok(strstr(pg_error_message(), "coprime") != NULL, "sequential: message: %s", pg_error_message());
        pg_train_loader_close(&s);
    }
    pg_train_loader_close(&a);
    pg_train_loader_close(&b);
    pg_train_loader_close(&c);
}

static void test_coprime_bad(void)
{
    struct pg_train_loader l;
    if (!is_int(pg_train_loader_open(&l, dir, "sh", 0, 1, 128, 64, 1), 0, "short shard: the sequential loader opens"))
        return;
    int rc = pg_train_loader_use_coprime(&l, 1);
    is_int(rc, PG_E_INVAL, "short shard: the coprime loader refuses a 20-token shard with seq 64");
    const char *m = pg_error_message();
    ok(strstr(m, "sh_train_000001.bin") && strstr(m, "20 tokens") && !strchr(m, '\n'),
       "short shard: one line naming the shard: %s", m);
    /* still the sequential loader it was */
    int32_t x[128], y[128];
    size_t f;
    uint64_t p;
    is_int(pg_train_loader_next(&l, x, y), 0, "short shard: the sequential loader still works");
    pg_train_loader_state(&l, &f, &p);
    ok(f == 0 && p == 129 && x[0] == 0 && y[127] == 128, "short shard: it read tokens 0..128 (file %zu pos %llu)", f,
       (unsigned long long)p);
    pg_train_loader_close(&l);
    is_int(pg_train_loader_open(&l, dir, "sh", 0, 1, 16, 16, 1), 0, "short shard: seq 16 opens");
    is_int(pg_train_loader_use_coprime(&l, 1), 0, "short shard: seq 16 fits both shards (17 <= 20)");
    pg_train_loader_close(&l);
}

/* Split "wt": nine shards of 50 blocks of 9 tokens and one of 5000 (whatever the phase), a token
 * says its shard. At call 0 (α = 0.9, k = 8) with 8 rows, row p comes from the p-th pick, so over
 * many seeds the first two rows' shards follow the draw without replacement ∝ blocks^0.9. */
static uint16_t wt_tok(uint64_t i) { return (uint16_t)(i / 100000 + 10 * (i % 100000 % 6000)); }

static void test_coprime_weights(void)
{
    int bad = 0;
    for (int i = 0; i < 10; i++) {
        char name[64];
        snprintf(name, sizeof name, "wt_train_%06d.bin", i);
        bad |= write_shard(name, 100000ull * i, i < 9 ? 50 * 9 + 8 : 5000 * 9 + 8, wt_tok);
    }
    struct pg_train_loader l;
    if (bad || pg_train_loader_open(&l, dir, "wt", 0, 1, 64, 8, 1)) {
        ok(0, "weights: write and open the wt split: %s", pg_error_message());
        return;
    }
    double w[10], S = 0, p1[10], p2[10] = {0};
    for (int i = 0; i < 10; i++) S += w[i] = pow(i < 9 ? 50 : 5000, 0.9);
    for (int i = 0; i < 10; i++) p1[i] = w[i] / S;
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < 10; j++)
            if (j != i) p2[j] += p1[i] * w[j] / (S - w[i]);
    enum { N = 3000 };
    int n1[10] = {0}, n2[10] = {0}, distinct = 1;
    int32_t x[64], y[64];
    for (uint64_t seed = 0; seed < N && !bad; seed++) {
        bad |= pg_train_loader_use_coprime(&l, seed) || pg_train_loader_next(&l, x, y);
        n1[x[0] % 10]++;
        n2[x[8] % 10]++;
        int seen[10] = {0};
        for (int r = 0; r < 8; r++) distinct &= !seen[x[8 * r] % 10]++;
    }
    int fit = !bad;
    for (int i = 0; i < 10; i++) {
        /* within 4.5 standard deviations of the binomial count */
        fit &= fabs(n1[i] - N * p1[i]) <= 4.5 * sqrt(N * p1[i] * (1 - p1[i])) + 1;
        fit &= fabs(n2[i] - N * p2[i]) <= 4.5 * sqrt(N * p2[i] * (1 - p2[i])) + 1;
    }
    ok(distinct, "weights: the 8 rows of call 0 come from 8 different shards (%d seeds)", N);
    ok(fit, "weights: first pick of the big shard %d / %d (expected %.0f), second pick %d (expected %.0f)", n1[9], N,
       N * p1[9], n2[9], N * p2[9]);
    if (!fit)
        for (int i = 0; i < 10; i++)
            diag("shard %d: first %d (%.1f), second %d (%.1f)", i, n1[i], N * p1[i], n2[i], N * p2[i]);
    /* the same with blocks^1 or ^0.5 would be far off: 0.917 or 0.526 of first picks */
    ok(fabs(n1[9] / (double)N - 0.917) > 0.025 && fabs(n1[9] / (double)N - 0.526) > 0.2,
       "weights: the big shard's share %.3f tells alpha 0.9 from 1 and 0.5", n1[9] / (double)N);
    pg_train_loader_close(&l);
}

static void test_coprime(void)
{
    write_coprime_splits();
    test_coprime_stride();
    test_coprime_schedule();
    check_epochs("one", 1000, 8, 30);
    check_epochs("one", 1000, 1, 6);
    check_epochs("one", 1000, 64, 30);
    check_epochs("two", 20, 8, 30); /* 1 or 2 blocks an epoch */
    test_coprime_windows();
    test_coprime_mixing();
    test_coprime_weights();
    test_coprime_ranks();
    test_coprime_resume();
    test_coprime_bad();
    for (int i = 0; i < 4; i++) free(uq_data[i]);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pg-test-loader-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    write_train();
    for (int w = 1; w <= 2; w++)
        for (int a = 1; a <= 4; a += 3) check_loader(w, a, 64, 8192);
    check_loader(2, 1, 1, 2 * 997); /* seq 1, odd local: chunk boundaries fall everywhere */
    test_baseline_shape();
    test_resume();
    test_bad_params();
    test_missing();
    test_val();
    test_rank_ranges();
    test_coprime();
    remove_tree(dir);
    return done_testing();
}
