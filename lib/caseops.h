/* caseops.h: CaseOps, the records' bijective case transform (spec/techniques.md §1.3, PR #1729).
 *
 * Four private-use code points, SentencePiece user-defined symbols of a CaseOps tokenizer:
 * TITLE U+E001, ALLCAPS U+E002, CAPNEXT U+E003, ESC U+E004. The encoder rewrites each maximal
 * run of ASCII letters [A-Za-z]: all lowercase stays; length >= 2 and all uppercase becomes
 * ALLCAPS + lowercase; uppercase first and lowercase rest (the single "I" too) becomes TITLE +
 * lowercase; any other mix gets TITLE if its first letter is uppercase and CAPNEXT before each later
 * uppercase letter, every letter lowercased. An operator's own bytes in the input become ESC + them.
 * Everything else passes through byte for byte (invalid UTF-8 too), so decode(encode(s)) = s.
 *
 * The decoder is a byte-level state machine that accepts exactly the encoder's outputs: it
 * rejects an uppercase ASCII letter, an operator not followed by a letter (ESC: by an operator),
 * TITLE or ALLCAPS inside a word, CAPNEXT on a word's first letter or in an ALLCAPS word, a
 * one-letter ALLCAPS word, and an all-uppercase word of two or more letters not written with
 * ALLCAPS. It can be fed piece by piece, counting the original bytes each piece stands for: the
 * byte sidecar of the val split (pg-formats(5)).
 */
#ifndef PG_CASEOPS_H
#define PG_CASEOPS_H

#include <stddef.h>
#include <stdint.h>

enum { PG_CASEOPS_TITLE = 1, PG_CASEOPS_ALLCAPS, PG_CASEOPS_CAPNEXT, PG_CASEOPS_ESC };

/* The UTF-8 of operator k (1..4): "\xEE\x80\x80" + k. */
extern const char *const pg_caseops_symbol[5];

/* Appends the encoding of in[0..n) to *buf (length *len, capacity *cap; pg_grow'n).
 * @return 0 or PG_E_NOMEM. */
int pg_caseops_encode(const char *in, size_t n, char **buf, size_t *len, size_t *cap);

struct pg_caseops_dec {
    unsigned char hold[2]; /* a possible operator's first bytes, EE or EE 80 */
    int nhold;
    int pending;           /* the operator waiting for its letter (ESC: for its operator), 0 none */
    int word_len, word_upper, word_allcaps;
    uint64_t pos;          /* bytes fed, for messages */
};

void pg_caseops_dec_init(struct pg_caseops_dec *d);

/* Feeds n stream bytes. Decoded bytes are appended to *buf as pg_caseops_encode does (buf NULL:
 * only counted) and added to *emitted. Bytes that may begin an operator are held until the next
 * feed. @return 0, or PG_E_FORMAT (the message names the stream offset and the fault). */
int pg_caseops_dec_feed(struct pg_caseops_dec *d, const char *in, size_t n, char **buf, size_t *len, size_t *cap,
                        uint64_t *emitted);

/* Ends the stream: releases held bytes and checks that nothing is left pending. */
int pg_caseops_dec_finish(struct pg_caseops_dec *d, char **buf, size_t *len, size_t *cap, uint64_t *emitted);

/* Decodes a whole stream, appending to *buf. @return 0, PG_E_FORMAT or PG_E_NOMEM. */
int pg_caseops_decode(const char *in, size_t n, char **buf, size_t *len, size_t *cap);

/* ---- with a tokenizer ---- */

struct pg_tok;

/* @return 1 if the tokenizer has the four operators as pieces 4-7 (a CaseOps tokenizer). */
int pg_caseops_tok_is(const struct pg_tok *tok);

/* The text a piece stands for in the transformed stream: "▁" as a space, a byte piece <0xNN> as
 * that byte, control, unknown and unused pieces as nothing. scratch holds the piece's length + 1.
 * Sets *s (scratch or the piece) and *n. */
void pg_caseops_piece_surface(const struct pg_tok *tok, int id, char *scratch, const char **s, size_t *n);

#endif
