/* test_bpb.c: val_bpb byte accounting on a hand-made vocabulary, against hand-computed counts
 * (parameter-golf's build_sentencepiece_luts rule, spec/baseline.md §2.1). */
#include "../tap.h"

#include "../../lib/bpb.h"
#include "../../lib/err.h"
#include "../../lib/tok.h"

#include <string.h>

#define SP "\xe2\x96\x81" /* ▁ */

static const char *pieces[] = {
    "<pad>", "<s>", "</s>", "<unk>", /* 0-3 */
    "<0x41>", "<0xE2>",              /* 4-5 byte fallback */
    SP "the", "the", SP,             /* 6-8: bare ▁ is 8 */
    "\xc3\xa9", SP "\xc3\xa9",       /* 9-10: é, ▁é */
    "a" SP "b",                      /* 11: an inner ▁ counts its 3 UTF-8 bytes */
    "\xf0\x9f\x99\x82",              /* 12: 🙂 */
    "<unused>",                      /* 13 */
};
static const int kinds[] = {
    PG_PIECE_CONTROL, PG_PIECE_CONTROL, PG_PIECE_CONTROL, PG_PIECE_UNKNOWN, PG_PIECE_BYTE, PG_PIECE_BYTE,
    PG_PIECE_NORMAL,  PG_PIECE_NORMAL,  PG_PIECE_NORMAL,  PG_PIECE_NORMAL,  PG_PIECE_NORMAL, PG_PIECE_NORMAL,
    PG_PIECE_NORMAL,  PG_PIECE_UNUSED,
};

int main(void)
{
    struct pg_bpb_lut L;
    is_int(pg_bpb_lut_build(&L, 14, pieces, kinds, 16), 0, "build a 16-entry table over 14 pieces");
    is_int(L.n, 16, "table covers max(tokenizer, model) vocab");
    const int BOS = 1, THE = 7;
    struct { int x, y, want; const char *what; } c[] = {
        {THE, 6, 4, "▁the after a word: 3 + the space"},
        {BOS, 6, 3, "▁the after BOS: no space byte"},
        {THE, 8, 1, "bare ▁ after a word: the space only"},
        {BOS, 8, 0, "bare ▁ after BOS: nothing"},
        {THE, 4, 1, "byte fallback <0x41>: 1 byte"},
        {BOS, 5, 1, "byte fallback <0xE2> after BOS: still 1"},
        {4, 6, 4, "a byte piece is not a boundary"},
        {THE, 9, 2, "é: 2 UTF-8 bytes"},
        {THE, 10, 3, "▁é after a word: 2 + 1"},
        {BOS, 10, 2, "▁é after BOS: 2"},
        {THE, 11, 5, "a▁b: inner ▁ counts 3 bytes"},
        {THE, 12, 4, "emoji: 4 bytes"},
        {THE, BOS, 0, "BOS target: 0 bytes"},
        {THE, 3, 0, "unknown: 0 bytes"},
        {3, 6, 3, "after <unk> (a boundary): no space byte"},
        {THE, 13, 0, "unused: 0 bytes"},
        {THE, 14, 0, "id past the tokenizer: 0 bytes"},
        {15, 6, 3, "after an id past the tokenizer: boundary"},
        {0, 6, 3, "after <pad>: boundary"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        is_int(pg_bpb_token_bytes(&L, c[i].x, c[i].y), c[i].want, "%s", c[i].what);

    /* A stream of two documents: BOS the ▁the ▁ <0x41> | BOS ▁the. Targets after the first token:
     * the(3) ▁the(4) ▁(1) <0x41>(1) BOS(0) ▁the(3) = 12. */
    const uint16_t s[] = {1, 7, 6, 8, 4, 1, 6};
    is_int(pg_bpb_count_bytes(&L, s, 7, -1), 12, "stream count, first token unscored");
    /* ▁the ▁ <0x41> BOS ▁the continued after "the": 4 + 1 + 1 + 0 + 3 = 9. */
    is_int(pg_bpb_count_bytes(&L, s + 2, 5, 7), 9, "continued stream: the first token scored after prev");
    is_int(pg_bpb_count_bytes(&L, s, 0, -1), 0, "empty stream");
    const uint16_t bad[] = {1, 16};
    is_int(pg_bpb_count_bytes(&L, bad, 2, -1), -1, "a token outside the table is an error");
    ok(strstr(pg_error_message(), "16") != NULL, "message names the token: %s", pg_error_message());
    pg_bpb_lut_free(&L);

    /* Multi-byte UTF-8 check of the UTF-8 length rule: "▁日本" = 1 + 6. */
    const char *p2[] = {"<s>", SP "\xe6\x97\xa5\xe6\x9c\xac"};
    const int k2[] = {PG_PIECE_CONTROL, PG_PIECE_NORMAL};
    pg_bpb_lut_build(&L, 2, p2, k2, 2);
    is_int(pg_bpb_token_bytes(&L, 1, 1), 7, "▁日本 after a word: 6 + 1");
    is_int(pg_bpb_token_bytes(&L, 0, 1), 6, "▁日本 after <s>: 6");
    pg_bpb_lut_free(&L);
    return done_testing();
}
