/* bpb.c: val_bpb byte lookup tables (see bpb.h). */
#include "bpb.h"

#include "err.h"
#include "shard.h"
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

int pg_bpb_sidecar_exists(const char *dir, const char *prefix, int *have)
{
    char **paths;
    size_t np;
    *have = 0;
    PG_TRY(pg_shard_list(dir, prefix, "val_bytes", &paths, &np));
    pg_shard_list_free(paths, np);
    *have = np > 0;
    return 0;
}

int pg_bpb_lut_load_sidecar(struct pg_bpb_lut *lut, const char *dir, const char *prefix, const uint16_t *val_tokens,
                            uint64_t n, int bos_id)
{
    free(lut->val_bytes);
    lut->val_bytes = NULL;
    lut->val_bytes_n = 0;
    char **paths;
    size_t np;
    PG_TRY(pg_shard_list(dir, prefix, "val_bytes", &paths, &np));
    pg_shard_list_free(paths, np);
    if (np == 0)
        return pg_error(PG_E_IO, "%s: no val byte sidecar %s_val_bytes_*.bin (pg-tokenize encode --caseops writes it)",
                        dir, prefix);
    /* The val split's token count, from the shard headers. */
    PG_TRY(pg_shard_list(dir, prefix, "val", &paths, &np));
    uint64_t ntok = 0;
    int rc = 0;
    for (size_t i = 0; i < np && !rc; i++) {
        struct pg_shard sh;
        if ((rc = pg_shard_open(&sh, paths[i]))) break;
        ntok += sh.n;
        pg_shard_close(&sh);
    }
    pg_shard_list_free(paths, np);
    if (rc) return rc;
    uint16_t *b;
    uint64_t nb;
    PG_TRY(pg_split_read(dir, prefix, "val_bytes", &b, &nb));
    if (nb != ntok) {
        free(b);
        return pg_error(PG_E_FORMAT, "%s: the val byte sidecar holds %llu entries but the val shards %llu tokens", dir,
                        (unsigned long long)nb, (unsigned long long)ntok);
    }
    for (uint64_t i = 0; i < n && i < nb; i++)
        if (val_tokens[i] == bos_id && b[i] != 0) {
            int bad = b[i];
            free(b);
            return pg_error(PG_E_FORMAT, "%s: the val byte sidecar gives %d bytes to the BOS at val token %llu: it "
                            "belongs to other shards", dir, bad, (unsigned long long)i);
        }
    lut->val_bytes = b;
    lut->val_bytes_n = nb;
    return 0;
}

void pg_bpb_lut_free(struct pg_bpb_lut *lut)
{
    free(lut->val_bytes);
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
