/* bpb.c: val_bpb byte lookup tables (see bpb.h). */
#include "bpb.h"

#include "err.h"
#include "tok.h"
#include "xio.h"

#include <stdlib.h>
#include <string.h>

static int lut_alloc(struct pg_bpb_lut *lut, int n)
{
    memset(lut, 0, sizeof *lut);
    lut->n = n;
    lut->base_bytes = pg_calloc((size_t)n, sizeof *lut->base_bytes);
    lut->has_leading_space = pg_calloc((size_t)n, 1);
    lut->is_boundary = pg_malloc((size_t)n);
    if (!lut->base_bytes || !lut->has_leading_space || !lut->is_boundary) {
        pg_bpb_lut_free(lut);
        return PG_E_NOMEM;
    }
    memset(lut->is_boundary, 1, (size_t)n); /* ids past the tokenizer's vocab stay boundaries */
    return 0;
}

static void lut_set(struct pg_bpb_lut *lut, int id, const char *piece, int kind)
{
    if (kind == PG_PIECE_CONTROL || kind == PG_PIECE_UNKNOWN || kind == PG_PIECE_UNUSED) return;
    lut->is_boundary[id] = 0;
    if (kind == PG_PIECE_BYTE) {
        lut->base_bytes[id] = 1;
        return;
    }
    static const char space[] = "\xe2\x96\x81"; /* U+2581 LOWER ONE EIGHTH BLOCK */
    if (strncmp(piece, space, 3) == 0) {
        lut->has_leading_space[id] = 1;
        piece += 3;
    }
    lut->base_bytes[id] = (int16_t)strlen(piece);
}

int pg_bpb_lut_build(struct pg_bpb_lut *lut, int n_pieces, const char *const *pieces, const int *kinds, int vocab)
{
    if (n_pieces < 0 || vocab < 0) return pg_error(PG_E_INVAL, "negative vocabulary size");
    PG_TRY(lut_alloc(lut, n_pieces > vocab ? n_pieces : vocab));
    for (int i = 0; i < n_pieces; i++) lut_set(lut, i, pieces[i], kinds[i]);
    return 0;
}

int pg_bpb_lut_from_tok(struct pg_bpb_lut *lut, const struct pg_tok *tok, int vocab)
{
    int np = pg_tok_vocab_size(tok);
    PG_TRY(lut_alloc(lut, np > vocab ? np : vocab));
    for (int i = 0; i < np; i++) lut_set(lut, i, pg_tok_piece(tok, i), pg_tok_piece_kind(tok, i));
    return 0;
}

void pg_bpb_lut_free(struct pg_bpb_lut *lut)
{
    free(lut->base_bytes);
    free(lut->has_leading_space);
    free(lut->is_boundary);
    memset(lut, 0, sizeof *lut);
}

int64_t pg_bpb_count_bytes(const struct pg_bpb_lut *lut, const uint16_t *tokens, size_t n, int prev)
{
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        int y = tokens[i];
        if (y >= lut->n) {
            pg_error(PG_E_FORMAT, "token %d at position %zu is outside the vocabulary of %d", y, i, lut->n);
            return -1;
        }
        if (prev >= 0) sum += pg_bpb_token_bytes(lut, prev, y);
        prev = y;
    }
    return sum;
}
