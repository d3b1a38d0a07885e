/* test_shard.c: the parameter-golf shard format: exact header bytes, the writer's splitting and
 * atomicity, every reader check, the wrapping training stream and the whole-split reader. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/err.h"
#include "../../lib/shard.h"
#include "../../lib/xio.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char dir[64];

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int write_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int count_files(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' || strstr(e->d_name, ".tmp.")) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

static void test_header_bytes(void)
{
    unsigned char h[PG_SHARD_HEADER_BYTES];
    pg_shard_make_header(h, 0x01020304);
    /* 20240520 = 0x0134D888, little-endian; version 1; count; zeros. */
    const unsigned char want[12] = {0x88, 0xD8, 0x34, 0x01, 1, 0, 0, 0, 0x04, 0x03, 0x02, 0x01};
    ok(memcmp(h, want, 12) == 0, "header: magic, version, count little-endian");
    int zero = 1;
    for (int i = 12; i < PG_SHARD_HEADER_BYTES; i++) zero &= h[i] == 0;
    ok(zero, "header: reserved bytes zero");
    uint64_t n;
    is_int(pg_shard_check_header(h, 1024 + 2ull * 0x01020304, "x", &n), 0, "header: accepted with matching size");
    is_int((long long)n, 0x01020304, "header: count read back");
}

static void check_reject(const unsigned char *data, size_t n, const char *what, const char *needle)
{
    char path[128];
    snprintf(path, sizeof path, "%s/bad_%s.bin", dir, what);
    write_raw(path, data, n);
    struct pg_shard s;
    int rc = pg_shard_open(&s, path);
    is_int(rc, PG_E_FORMAT, "reader rejects %s", what);
    ok(strstr(pg_error_message(), path) && strstr(pg_error_message(), needle), "message for %s names file and '%s': %s",
       what, needle, pg_error_message());
    remove(path);
}

static void test_reader_rejects(void)
{
    unsigned char buf[1024 + 20];
    pg_shard_make_header(buf, 10);
    for (int i = 0; i < 10; i++) buf[1024 + 2 * i] = (unsigned char)i, buf[1025 + 2 * i] = 0;
    unsigned char b[sizeof buf];
    memcpy(b, buf, sizeof b);
    b[0] ^= 1;
    check_reject(b, sizeof b, "magic", "magic");
    memcpy(b, buf, sizeof b);
    b[4] = 2;
    check_reject(b, sizeof b, "version", "version");
    memcpy(b, buf, sizeof b);
    b[100] = 1;
    check_reject(b, sizeof b, "reserved", "reserved");
    check_reject(buf, sizeof buf - 1, "truncated", "truncated");
    check_reject(buf, 500, "short header", "header");
    memcpy(b, buf, sizeof b);
    b[11] = 0x80; /* negative count */
    check_reject(b, sizeof b, "negative", "negative");
    unsigned char big[sizeof buf + 2];
    memcpy(big, buf, sizeof buf);
    big[sizeof buf] = big[sizeof buf + 1] = 0;
    check_reject(big, sizeof big, "extra bytes", "disagrees");
    struct pg_shard s;
    char path[128];
    snprintf(path, sizeof path, "%s/missing.bin", dir);
    is_int(pg_shard_open(&s, path), PG_E_IO, "reader: missing file is an I/O error");
}

/* Tokens 0..n-1 (mod 65536), written with shards of `per` tokens. */
static void test_writer(void)
{
    const size_t n = 100, per = 30;
    uint16_t tok[100];
    for (size_t i = 0; i < n; i++) tok[i] = (uint16_t)(i * 655 + 7);
    struct pg_shard_writer w;
    is_int(pg_shard_writer_open(&w, dir, "ds", "train", per), 0, "writer: open");
    is_int(pg_shard_writer_put(&w, tok, 45), 0, "writer: put 45");
    is_int(pg_shard_writer_put(&w, tok + 45, 55), 0, "writer: put 55");
    char **paths;
    size_t np;
    pg_shard_list(dir, "ds", "train", &paths, &np);
    is_int((long long)np, 0, "writer: nothing visible before commit");
    pg_shard_list_free(paths, np);
    size_t nf;
    is_int(pg_shard_writer_commit(&w, &nf), 0, "writer: commit");
    is_int((long long)nf, 4, "writer: 100 tokens / 30 per shard = 4 shards");
    is_int(count_files(), 4, "writer: exactly the 4 shards, no temporaries");
    pg_shard_list(dir, "ds", "train", &paths, &np);
    is_int((long long)np, 4, "list: 4 shards");
    const long long sizes[4] = {1024 + 60, 1024 + 60, 1024 + 60, 1024 + 20};
    for (size_t i = 0; i < np && i < 4; i++) {
        char want[128];
        snprintf(want, sizeof want, "%s/ds_train_%06zu.bin", dir, i);
        ok(strcmp(paths[i], want) == 0, "list: sorted name %s", want);
        is_int(file_size(paths[i]), sizes[i], "shard %zu size", i);
    }
    /* Read back through the stream: wrapping continues from the first shard. */
    struct pg_token_stream s;
    is_int(pg_stream_open(&s, paths, np), 0, "stream: open");
    uint16_t got[250];
    is_int(pg_stream_take(&s, got, 250), 0, "stream: take 250 across 4 shards and 2 wraps");
    int same = 1;
    for (size_t i = 0; i < 250; i++) same &= got[i] == tok[i % n];
    ok(same, "stream: tokens equal the input, wrapping");
    ok(s.file == 1 && s.pos == 20, "stream: 250 = 2 wraps + 50: shard 1, pos 20 (file %zu pos %llu)", s.file,
       (unsigned long long)s.pos);
    /* Resume: a stream seeked to a saved position continues identically. */
    size_t sf = s.file;
    uint64_t sp = s.pos;
    uint16_t a[77], b[77];
    pg_stream_take(&s, a, 77);
    struct pg_token_stream s2;
    pg_stream_open(&s2, paths, np);
    is_int(pg_stream_seek(&s2, sf, sp), 0, "stream: seek");
    pg_stream_take(&s2, b, 77);
    ok(memcmp(a, b, sizeof a) == 0, "stream: seek resumes the same tokens");
    is_int(pg_stream_seek(&s2, 9, 0), PG_E_INVAL, "stream: seek past the shards rejected");
    pg_stream_close(&s);
    pg_stream_close(&s2);
    uint16_t *all;
    uint64_t na;
    is_int(pg_split_read(dir, "ds", "train", &all, &na), 0, "split: read");
    ok(na == n && memcmp(all, tok, sizeof tok) == 0, "split: concatenation equals the input");
    free(all);
    is_int(pg_split_read(dir, "ds", "val", &all, &na), PG_E_IO, "split: missing split is a runtime error");
    pg_shard_list_free(paths, np);
}

static void test_writer_abort_and_empty(void)
{
    struct pg_shard_writer w;
    uint16_t t[5] = {1, 2, 3, 4, 5};
    int before = count_files();
    pg_shard_writer_open(&w, dir, "ab", "val", 2);
    pg_shard_writer_put(&w, t, 5);
    ok(count_files() > before, "abort: temporaries exist while writing");
    pg_shard_writer_abort(&w);
    is_int(count_files(), before, "abort: every temporary removed");
    size_t nf = 9;
    pg_shard_writer_open(&w, dir, "em", "val", 10);
    is_int(pg_shard_writer_commit(&w, &nf), 0, "empty split: commit");
    is_int((long long)nf, 0, "empty split: no file");
    is_int(pg_shard_writer_open(&w, dir, "x", "val", 0), PG_E_INVAL, "writer: 0 tokens per shard rejected");
    is_int(pg_shard_writer_open(&w, dir, "x", "val", 1ull << 31), PG_E_INVAL, "writer: 2^31 tokens per shard rejected");
    /* A stream over shards without any token is refused instead of spinning forever. */
    char path[128];
    snprintf(path, sizeof path, "%s/zero_train_000000.bin", dir);
    unsigned char h[PG_SHARD_HEADER_BYTES];
    pg_shard_make_header(h, 0);
    write_raw(path, h, sizeof h);
    struct pg_token_stream s;
    char *p[1] = {path};
    is_int(pg_stream_open(&s, p, 1), PG_E_INVAL, "stream: all-empty shards refused");
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pg-test-shard-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_header_bytes();
    test_reader_rejects();
    test_writer();
    test_writer_abort_and_empty();
    remove_tree(dir);
    return done_testing();
}
