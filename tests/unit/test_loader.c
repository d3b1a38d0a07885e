/* test_loader.c: training batches and validation windows against a plain re-implementation of
 * parameter-golf's next_batch / load_validation_tokens / eval_val (spec/baseline.md §1.5, §1.6,
 * §2.2): the expected tokens come from formulas over the concatenated splits with wraparound,
 * never from the files the library reads. */
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
    remove_tree(dir);
    return done_testing();
}
