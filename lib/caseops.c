/* caseops.c: the CaseOps transform, its decoder and piece surfaces (see caseops.h). */
#include "caseops.h"

#include "err.h"
#include "tok.h"
#include "xio.h"

#include <string.h>

const char *const pg_caseops_symbol[5] = {"", "\xee\x80\x81", "\xee\x80\x82", "\xee\x80\x83", "\xee\x80\x84"};

static int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static int is_letter(unsigned char c) { return is_upper(c) || is_lower(c); }

/* @return the operator (1..4) whose bytes start at s (n bytes left), else 0. */
static int op_at(const unsigned char *s, size_t n)
{
    return n >= 3 && s[0] == 0xEE && s[1] == 0x80 && s[2] >= 0x81 && s[2] <= 0x84 ? s[2] - 0x80 : 0;
}

static int put(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    PG_TRY(pg_grow((void **)buf, cap, *len + n + 1, 1));
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

int pg_caseops_encode(const char *in, size_t n, char **buf, size_t *len, size_t *cap)
{
    const unsigned char *u = (const unsigned char *)in;
    /* Worst case: every byte an escaped operator (x 2) or an uppercase letter after CAPNEXT (x 4). */
    PG_TRY(pg_grow((void **)buf, cap, *len + 4 * n + 1, 1));
    char *o = *buf + *len;
    size_t i = 0;
    while (i < n) {
        int k = op_at(u + i, n - i);
        if (k) {
            memcpy(o, pg_caseops_symbol[PG_CASEOPS_ESC], 3);
            memcpy(o + 3, u + i, 3);
            o += 6, i += 3;
            continue;
        }
        if (!is_letter(u[i])) {
            *o++ = (char)u[i++];
            continue;
        }
        size_t j = i, upper = 0;
        while (j < n && is_letter(u[j])) upper += is_upper(u[j++]);
        size_t wl = j - i;
        if (upper == 0) {
            memcpy(o, u + i, wl), o += wl;
        } else if (wl >= 2 && upper == wl) {
            memcpy(o, pg_caseops_symbol[PG_CASEOPS_ALLCAPS], 3), o += 3;
            for (size_t q = i; q < j; q++) *o++ = (char)(u[q] | 0x20);
        } else {
            /* TITLE for an uppercase first letter, CAPNEXT before each later one: a Title word is
             * the case with no CAPNEXT. */
            for (size_t q = i; q < j; q++) {
                if (is_upper(u[q])) {
                    memcpy(o, pg_caseops_symbol[q == i ? PG_CASEOPS_TITLE : PG_CASEOPS_CAPNEXT], 3);
                    o += 3;
                }
                *o++ = (char)(u[q] | 0x20);
            }
        }
        i = j;
    }
    *len = (size_t)(o - *buf);
    (*buf)[*len] = 0;
    return 0;
}

/* ---- decoder ---- */

void pg_caseops_dec_init(struct pg_caseops_dec *d) { memset(d, 0, sizeof *d); }

struct sink {
    char **buf;
    size_t *len, *cap;
    uint64_t *emitted;
};

static int emit(struct sink *s, const void *p, size_t n)
{
    *s->emitted += n;
    return s->buf ? put(s->buf, s->len, s->cap, p, n) : 0;
}

static const char *op_name(int k)
{
    static const char *names[] = {"", "TITLE", "ALLCAPS", "CAPNEXT", "ESC"};
    return names[k];
}

static int bad(const struct pg_caseops_dec *d, const char *what)
{
    return pg_error(PG_E_FORMAT, "malformed CaseOps stream at byte %llu: %s", (unsigned long long)d->pos, what);
}

static int end_word(struct pg_caseops_dec *d)
{
    if (d->word_len) {
        if (d->word_allcaps && d->word_len < 2) return bad(d, "ALLCAPS word of one letter");
        if (!d->word_allcaps && d->word_len >= 2 && d->word_upper == d->word_len)
            return bad(d, "all-uppercase word not written with ALLCAPS");
    }
    d->word_len = d->word_upper = d->word_allcaps = 0;
    return 0;
}

static int unit_byte(struct pg_caseops_dec *d, struct sink *s, unsigned char c)
{
    if (d->pending == PG_CASEOPS_ESC) return bad(d, "ESC not followed by an operator");
    if (is_upper(c)) return bad(d, "uppercase ASCII letter");
    if (!is_lower(c)) {
        if (d->pending) return pg_error(PG_E_FORMAT, "malformed CaseOps stream at byte %llu: %s not followed by a letter",
                                        (unsigned long long)d->pos, op_name(d->pending));
        PG_TRY(end_word(d));
        return emit(s, &c, 1);
    }
    int up = d->word_allcaps;
    switch (d->pending) {
    case PG_CASEOPS_TITLE:
    case PG_CASEOPS_ALLCAPS:
        if (d->word_len) return bad(d, d->pending == PG_CASEOPS_TITLE ? "TITLE inside a word" : "ALLCAPS inside a word");
        d->word_allcaps = d->pending == PG_CASEOPS_ALLCAPS;
        up = 1;
        break;
    case PG_CASEOPS_CAPNEXT:
        if (!d->word_len) return bad(d, "CAPNEXT on a word's first letter");
        if (d->word_allcaps) return bad(d, "CAPNEXT in an ALLCAPS word");
        up = 1;
        break;
    default: break;
    }
    d->pending = 0;
    d->word_len++;
    d->word_upper += up;
    unsigned char o = up ? (unsigned char)(c & ~0x20) : c;
    return emit(s, &o, 1);
}

static int unit_op(struct pg_caseops_dec *d, struct sink *s, int k)
{
    if (d->pending == PG_CASEOPS_ESC) {
        d->pending = 0;
        PG_TRY(end_word(d));
        return emit(s, pg_caseops_symbol[k], 3);
    }
    if (d->pending)
        return pg_error(PG_E_FORMAT, "malformed CaseOps stream at byte %llu: %s not followed by a letter",
                        (unsigned long long)d->pos, op_name(d->pending));
    d->pending = k;
    return 0;
}

/* Releases held bytes as literals (they did not become an operator). */
static int release(struct pg_caseops_dec *d, struct sink *s)
{
    int n = d->nhold;
    d->nhold = 0;
    for (int i = 0; i < n; i++) PG_TRY(unit_byte(d, s, d->hold[i]));
    return 0;
}

static int feed_byte(struct pg_caseops_dec *d, struct sink *s, unsigned char c)
{
    if (d->nhold == 2) {
        if (c >= 0x81 && c <= 0x84) {
            d->nhold = 0;
            return unit_op(d, s, c - 0x80);
        }
        PG_TRY(release(d, s));
    } else if (d->nhold == 1) {
        if (c == 0x80) {
            d->hold[d->nhold++] = c;
            return 0;
        }
        PG_TRY(release(d, s));
    }
    if (c == 0xEE) {
        d->hold[0] = c;
        d->nhold = 1;
        return 0;
    }
    return unit_byte(d, s, c);
}

int pg_caseops_dec_feed(struct pg_caseops_dec *d, const char *in, size_t n, char **buf, size_t *len, size_t *cap,
                        uint64_t *emitted)
{
    struct sink s = {buf, len, cap, emitted};
    for (size_t i = 0; i < n; i++, d->pos++) PG_TRY(feed_byte(d, &s, (unsigned char)in[i]));
    return 0;
}

int pg_caseops_dec_finish(struct pg_caseops_dec *d, char **buf, size_t *len, size_t *cap, uint64_t *emitted)
{
    struct sink s = {buf, len, cap, emitted};
    PG_TRY(release(d, &s));
    if (d->pending)
        return pg_error(PG_E_FORMAT, "malformed CaseOps stream at byte %llu: it ends with %s",
                        (unsigned long long)d->pos, op_name(d->pending));
    return end_word(d);
}

int pg_caseops_decode(const char *in, size_t n, char **buf, size_t *len, size_t *cap)
{
    struct pg_caseops_dec d;
    pg_caseops_dec_init(&d);
    uint64_t emitted = 0;
    PG_TRY(pg_grow((void **)buf, cap, *len + n + 1, 1));
    PG_TRY(pg_caseops_dec_feed(&d, in, n, buf, len, cap, &emitted));
    PG_TRY(pg_caseops_dec_finish(&d, buf, len, cap, &emitted));
    (*buf)[*len] = 0;
    return 0;
}

/* ---- with a tokenizer ---- */

int pg_caseops_tok_is(const struct pg_tok *tok)
{
    /* pg-tokenize train --caseops puts them at ids 4-7, right after pad, bos, eos and unk (where a
     * plain tokenizer has its first byte pieces). SentencePiece's API reads user-defined pieces as
     * normal ones, so the kind cannot tell. */
    if (pg_tok_vocab_size(tok) < 8) return 0;
    for (int k = 1; k <= 4; k++) {
        int kind = pg_tok_piece_kind(tok, 3 + k);
        if ((kind != PG_PIECE_NORMAL && kind != PG_PIECE_USER_DEFINED) || strcmp(pg_tok_piece(tok, 3 + k), pg_caseops_symbol[k]))
            return 0;
    }
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

void pg_caseops_piece_surface(const struct pg_tok *tok, int id, char *scratch, const char **s, size_t *n)
{
    const char *p = pg_tok_piece(tok, id);
    *s = scratch;
    *n = 0;
    switch (pg_tok_piece_kind(tok, id)) {
    case PG_PIECE_BYTE:
        /* "<0xNN>" */
        if (strlen(p) == 6 && hexval(p[3]) >= 0 && hexval(p[4]) >= 0) {
            scratch[0] = (char)(hexval(p[3]) << 4 | hexval(p[4]));
            *n = 1;
        }
        return;
    case PG_PIECE_NORMAL:
    case PG_PIECE_USER_DEFINED: break;
    default: return;
    }
    size_t k = 0;
    for (size_t i = 0; p[i];) {
        if ((unsigned char)p[i] == 0xE2 && (unsigned char)p[i + 1] == 0x96 && (unsigned char)p[i + 2] == 0x81) {
            scratch[k++] = ' ';
            i += 3;
        } else {
            scratch[k++] = p[i++];
        }
    }
    *n = k;
}
