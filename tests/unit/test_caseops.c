/* test_caseops.c: the CaseOps transform (spec/techniques.md §1.3): the spec's examples, exact
 * round trips on random bytes and random Unicode, a letter-by-letter reference of the case rules,
 * piecewise decoding (any split of the stream gives the same text and byte count: what the val
 * sidecar relies on), and malformed streams rejected. */
#include "../tap.h"

#include "../../lib/caseops.h"
#include "../../lib/err.h"
#include "../../lib/rng.h"

#include <stdlib.h>
#include <string.h>

#define T "\xee\x80\x81"
#define A "\xee\x80\x82"
#define C "\xee\x80\x83"
#define E "\xee\x80\x84"

static char *enc(const char *s, size_t n, size_t *len)
{
    char *b = NULL;
    size_t cap = 0;
    *len = 0;
    if (pg_caseops_encode(s, n, &b, len, &cap)) bail_out("encode failed");
    return b;
}

static int dec(const char *s, size_t n, char **out, size_t *len)
{
    size_t cap = 0;
    *out = NULL;
    *len = 0;
    return pg_caseops_decode(s, n, out, len, &cap);
}

/* The case rules, written letter by letter from the spec as an independent reference. */
static size_t ref_encode(const unsigned char *s, size_t n, unsigned char *o)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + 2 < n && s[i] == 0xEE && s[i + 1] == 0x80 && s[i + 2] >= 0x81 && s[i + 2] <= 0x84) {
            memcpy(o + k, E, 3), k += 3;
            memcpy(o + k, s + i, 3), k += 3, i += 3;
            continue;
        }
        int letter = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z');
        if (!letter) {
            o[k++] = s[i++];
            continue;
        }
        size_t j = i;
        while (j < n && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z'))) j++;
        int all_lower = 1, all_upper = 1, title = s[i] <= 'Z';
        for (size_t q = i; q < j; q++) {
            if (s[q] <= 'Z') all_lower = 0;
            else all_upper = 0;
            if (q > i && s[q] <= 'Z') title = 0;
        }
        if (all_lower) {
            memcpy(o + k, s + i, j - i), k += j - i;
        } else if (all_upper && j - i >= 2) {
            memcpy(o + k, A, 3), k += 3;
            for (size_t q = i; q < j; q++) o[k++] = (unsigned char)(s[q] + 32 * (s[q] <= 'Z'));
        } else if (title) {
            memcpy(o + k, T, 3), k += 3;
            for (size_t q = i; q < j; q++) o[k++] = (unsigned char)(s[q] + 32 * (s[q] <= 'Z'));
        } else {
            for (size_t q = i; q < j; q++) {
                if (s[q] <= 'Z') memcpy(o + k, q == i ? T : C, 3), k += 3;
                o[k++] = (unsigned char)(s[q] + 32 * (s[q] <= 'Z'));
            }
        }
        i = j;
    }
    return k;
}

/* One UTF-8 code point, biased towards ASCII letters, spaces, the operators and multi-byte text. */
static size_t rand_cp(struct pg_rng *r, unsigned char *o)
{
    static const char alpha[] = "aAbBzZiIqQ  \n.,'-";
    unsigned cp;
    switch (pg_rng_u64(r) % 8) {
    case 0: case 1: case 2: case 3: o[0] = (unsigned char)alpha[pg_rng_u64(r) % (sizeof alpha - 1)]; return 1;
    case 4: cp = 0xE000 + (unsigned)(pg_rng_u64(r) % 6); break; /* the operators and neighbours */
    case 5: cp = 0x80 + (unsigned)(pg_rng_u64(r) % 0x780); break;
    case 6: cp = 0x800 + (unsigned)(pg_rng_u64(r) % 0xD000); break;
    default: cp = 0x10000 + (unsigned)(pg_rng_u64(r) % 0x100000); break;
    }
    if (cp >= 0xD800 && cp < 0xE000) cp = 0x2581; /* no surrogates; ▁ instead */
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | cp >> 6); o[1] = (unsigned char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12), o[1] = (unsigned char)(0x80 | (cp >> 6 & 63));
        o[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18), o[1] = (unsigned char)(0x80 | (cp >> 12 & 63));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 63)), o[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

/* Decodes s in random pieces, as the sidecar feeds token surfaces; *counts gets the per-piece
 * emitted bytes' sum. @return 0 and the text, or the error. */
static int dec_pieces(struct pg_rng *r, const char *s, size_t n, char **out, size_t *len, uint64_t *total)
{
    struct pg_caseops_dec d;
    pg_caseops_dec_init(&d);
    size_t cap = 0;
    *out = NULL;
    *len = 0;
    *total = 0;
    for (size_t i = 0; i < n;) {
        size_t k = 1 + pg_rng_u64(r) % 5;
        if (k > n - i) k = n - i;
        uint64_t em = 0;
        PG_TRY(pg_caseops_dec_feed(&d, s + i, k, out, len, &cap, &em));
        *total += em;
        i += k;
    }
    uint64_t em = 0;
    PG_TRY(pg_caseops_dec_finish(&d, out, len, &cap, &em));
    *total += em;
    return 0;
}

static void examples(void)
{
    struct { const char *in, *out; } ex[] = {
        {"The NASA Launch", T "the " A "nasa " T "launch"},
        {"iPhone", "i" C "phone"},
        {"I am", T "i am"},
        {"McDonald's ABCs", T "mc" C "donald's " T "a" C "b" C "cs"},
        {"x" T "y", "x" E T "y"},
        {"caf\xc3\xa9 Caf\xc3\xa9", "caf\xc3\xa9 " T "caf\xc3\xa9"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof ex / sizeof *ex; i++) {
        size_t n;
        char *e = enc(ex[i].in, strlen(ex[i].in), &n);
        ok(n == strlen(ex[i].out) && memcmp(e, ex[i].out, n) == 0, "encode \"%s\"", ex[i].in);
        char *d;
        size_t dn;
        int rc = dec(e, n, &d, &dn);
        ok(rc == 0 && dn == strlen(ex[i].in) && memcmp(d, ex[i].in, dn) == 0, "decode back \"%s\"", ex[i].in);
        free(e), free(d);
    }
}

static void round_trips(int unicode)
{
    struct pg_rng r;
    pg_rng_seed(&r, unicode ? 7 : 11);
    int bad_rt = 0, bad_ref = 0, bad_piece = 0;
    unsigned char in[512], ref[4 * 512];
    for (int it = 0; it < 20000; it++) {
        size_t n = 0, want = pg_rng_u64(&r) % 120;
        while (n < want) {
            if (unicode) n += rand_cp(&r, in + n);
            else in[n++] = pg_rng_u64(&r) % 4 ? (unsigned char)"\xee\x80\x81\x84" "Ab z"[pg_rng_u64(&r) % 8]
                                               : (unsigned char)pg_rng_u64(&r);
        }
        size_t en;
        char *e = enc((const char *)in, n, &en);
        size_t rn = ref_encode(in, n, ref);
        bad_ref += rn != en || memcmp(ref, e, en) != 0;
        char *d;
        size_t dn;
        bad_rt += dec(e, en, &d, &dn) != 0 || dn != n || memcmp(d, in, n) != 0;
        free(d);
        uint64_t total;
        bad_piece += dec_pieces(&r, e, en, &d, &dn, &total) != 0 || dn != n || total != n || (n && memcmp(d, in, n) != 0);
        free(d);
        free(e);
    }
    const char *what = unicode ? "random Unicode" : "random bytes";
    is_int(bad_ref, 0, "%s: encode matches the letter-by-letter reference (20000 strings)", what);
    is_int(bad_rt, 0, "%s: decode(encode(s)) = s", what);
    is_int(bad_piece, 0, "%s: decoding in random pieces gives s and counts |s| bytes", what);
}

static void malformed(void)
{
    struct { const char *s, *why; } bad[] = {
        {"Abc", "uppercase letter"},
        {T " x", "TITLE before a space"},
        {T, "TITLE at the end"},
        {"ab" T "c", "TITLE inside a word"},
        {A "a", "one-letter ALLCAPS"},
        {"a" A "bc", "ALLCAPS inside a word"},
        {C "ab", "CAPNEXT on a first letter"},
        {A "ab" C "c", "CAPNEXT in an ALLCAPS word"},
        {T "a" C "b", "all-uppercase word without ALLCAPS"},
        {E "x", "ESC before a non-operator"},
        {E, "ESC at the end"},
        {T C "a", "two operators in a row"},
        {"x " T "\xee\x80", "TITLE before held bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *d;
        size_t dn;
        int rc = dec(bad[i].s, strlen(bad[i].s), &d, &dn);
        ok(rc == PG_E_FORMAT && strstr(pg_error_message(), "malformed CaseOps"), "rejects %s (%s)", bad[i].why,
           rc ? pg_error_message() : "accepted");
        free(d);
    }
    /* Held bytes that never become an operator are literals. */
    char *d;
    size_t dn;
    ok(dec("a\xee\x80", 3, &d, &dn) == 0 && dn == 3 && memcmp(d, "a\xee\x80", 3) == 0, "EE 80 at the end: literal bytes");
    free(d);
}

int main(void)
{
    examples();
    round_trips(0);
    round_trips(1);
    malformed();
    return done_testing();
}
