/* test_util.c: error messages, number parsing, UTF-8 validation, the RNG, atomic output and
 * mapped input. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/err.h"
#include "../../lib/mapfile.h"
#include "../../lib/opt.h"
#include "../../lib/outfile.h"
#include "../../lib/rng.h"
#include "../../lib/utf8.h"
#include "../../lib/xio.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_parse(void)
{
    int64_t v;
    int i;
    double d;
    is_int(pg_parse_i64("--n", "42", 0, 100, &v), 0, "parse 42");
    is_int(v, 42, "value 42");
    is_int(pg_parse_i64("--n", "100M", 0, INT64_MAX, &v), 0, "parse 100M");
    is_int(v, 100000000, "100M is 10^8");
    is_int(pg_parse_i64("--n", "2Ki", 0, INT64_MAX, &v), 0, "parse 2Ki");
    is_int(v, 2048, "2Ki is 2048");
    is_int(pg_parse_i64("--n", "12x", 0, 100, &v), PG_E_INVAL, "trailing garbage rejected");
    ok(strstr(pg_error_message(), "--n") && strstr(pg_error_message(), "12x"), "message names option and value: %s",
       pg_error_message());
    is_int(pg_parse_i64("--n", "", 0, 100, &v), PG_E_INVAL, "empty rejected");
    is_int(pg_parse_i64("--n", "101", 0, 100, &v), PG_E_INVAL, "above max rejected");
    is_int(pg_parse_i64("--n", "-1", 0, 100, &v), PG_E_INVAL, "below min rejected");
    is_int(pg_parse_i64("--n", "99999999999999999999", 0, INT64_MAX, &v), PG_E_INVAL, "overflow rejected");
    is_int(pg_parse_i64("--n", "9999999999T", 0, INT64_MAX, &v), PG_E_INVAL, "suffix overflow rejected");
    is_int(pg_parse_int("--k", "7", 1, 8, &i), 0, "int parse");
    is_int(i, 7, "int value");
    is_int(pg_parse_f64("--f", "0.999", 0, 1, &d), 0, "float parse");
    is_close(d, 0.999, 0, 0, "float value");
    is_int(pg_parse_f64("--f", "nan", 0, 1, &d), PG_E_INVAL, "nan rejected");
    is_int(pg_parse_f64("--f", "1.5", 0, 1, &d), PG_E_INVAL, "float out of range rejected");
    is_int(pg_exit_status(PG_E_INVAL), 2, "usage errors exit 2");
    is_int(pg_exit_status(PG_E_IO), 1, "runtime errors exit 1");
    is_int(pg_exit_status(PG_E_UNSUPPORTED), 3, "missing features exit 3");
}

static void test_utf8(void)
{
    struct { const char *s; size_t valid; const char *name; } cases[] = {
        {"plain ascii", 11, "ascii"},
        {"caf\xc3\xa9", 5, "2-byte"},
        {"\xe2\x96\x81x", 4, "3-byte (U+2581)"},
        {"\xf0\x9f\x99\x82", 4, "4-byte emoji"},
        {"a\xff", 1, "0xFF invalid"},
        {"a\xc0\xaf", 1, "overlong 2-byte"},
        {"a\xe0\x80\xaf", 1, "overlong 3-byte"},
        {"a\xed\xa0\x80", 1, "surrogate"},
        {"a\xf4\x90\x80\x80", 1, "above U+10FFFF"},
        {"ab\xe2\x96", 2, "truncated sequence"},
        {"a\x80", 1, "lone continuation"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        is_int((long long)pg_utf8_valid_prefix((const unsigned char *)cases[k].s, strlen(cases[k].s)),
               (long long)cases[k].valid, "utf8: %s", cases[k].name);
}

static void test_rng(void)
{
    /* splitmix64 from state 0: the published reference outputs. */
    uint64_t st = 0;
    ok(pg_splitmix64(&st) == 0xe220a8397b1dcdafull, "splitmix64 first output");
    ok(pg_splitmix64(&st) == 0x6e789e6aa1b965f4ull, "splitmix64 second output");
    ok(pg_splitmix64(&st) == 0x06c45d188009454full, "splitmix64 third output");
    struct pg_rng a, b;
    pg_rng_seed(&a, 1337);
    pg_rng_seed(&b, 1337);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= pg_rng_u64(&a) == pg_rng_u64(&b);
    ok(same, "same seed, same stream");
    pg_rng_seed(&b, 1338);
    ok(pg_rng_u64(&a) != pg_rng_u64(&b), "different seed, different stream");
    /* Moments over 200k draws: uniform mean 1/2, var 1/12; normal mean 0, var 1 (5 sigma bounds). */
    const int n = 200000;
    double su = 0, su2 = 0, sn = 0, sn2 = 0;
    int below_ok = 1, uni_ok = 1;
    for (int i = 0; i < n; i++) {
        double u = pg_rng_uniform(&a);
        uni_ok &= u >= 0 && u < 1;
        su += u;
        su2 += u * u;
        double z = pg_rng_normal(&a);
        sn += z;
        sn2 += z * z;
        below_ok &= pg_rng_below(&a, 7) < 7;
    }
    ok(uni_ok, "uniform in [0,1)");
    ok(below_ok, "below(7) in range");
    is_close(su / n, 0.5, 5 * sqrt(1.0 / 12 / n), 0, "uniform mean");
    is_close(su2 / n - (su / n) * (su / n), 1.0 / 12, 0.002, 0, "uniform variance");
    is_close(sn / n, 0.0, 5 / sqrt(n), 0, "normal mean");
    is_close(sn2 / n, 1.0, 5 * sqrt(2.0 / n), 0, "normal variance");
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

static void test_outfile(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    struct pg_out o;
    is_int(pg_out_open(&o, path), 0, "out: open");
    ok(!pg_exists(path), "out: final name absent while writing");
    is_int(count_entries(dir), 1, "out: one temporary");
    is_int(pg_out_write(&o, "hello world", 11), 0, "out: write");
    is_int(pg_out_pwrite(&o, "J", 1, 0), 0, "out: pwrite at 0");
    is_int((long long)pg_out_size(&o), 11, "out: size");
    is_int(pg_out_commit(&o), 0, "out: commit");
    struct pg_map m;
    is_int(pg_map_open(&m, path), 0, "map: open");
    ok(m.size == 11 && memcmp(m.data, "Jello world", 11) == 0, "map: committed content");
    pg_map_close(&m);
    is_int(count_entries(dir), 1, "out: no temporary left after commit");

    snprintf(path, sizeof path, "%s/aborted.bin", dir);
    is_int(pg_out_open(&o, path), 0, "out: open second");
    pg_out_write(&o, "x", 1);
    pg_out_abort(&o);
    ok(!pg_exists(path), "out: abort leaves no final file");
    is_int(count_entries(dir), 1, "out: abort removes the temporary");

    is_int(pg_out_open(&o, "/nonexistent-dir/x.bin"), PG_E_IO, "out: unwritable folder fails");
    ok(strstr(pg_error_message(), "/nonexistent-dir/x.bin") != NULL, "out: message names the file");

    snprintf(path, sizeof path, "%s/empty", dir);
    is_int(pg_out_open(&o, path), 0, "out: open empty");
    is_int(pg_out_commit(&o), 0, "out: commit empty");
    is_int(pg_map_open(&m, path), 0, "map: empty file");
    ok(m.size == 0, "map: empty size 0");
    pg_map_close(&m);
    is_int(pg_map_open(&m, "/nonexistent-file"), PG_E_IO, "map: missing file fails");
    ok(strstr(pg_error_message(), "/nonexistent-file") != NULL, "map: message names the file");
}

int main(void)
{
    test_parse();
    test_utf8();
    test_rng();
    char dir[] = "/tmp/pg-test-util-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_outfile(dir);
    remove_tree(dir);
    return done_testing();
}
