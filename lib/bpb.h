/* bpb.h: the byte accounting of val_bpb, exactly as parameter-golf's build_sentencepiece_luts.
 *
 * val_bpb = Σ nll / (ln 2 · Σ bytes), where each scored target token y with preceding stream
 * token x is charged
 *     bytes(y) = base_bytes[y] + (has_leading_space[y] && !is_boundary[x])
 * Tables cover max(tokenizer vocab, model vocab) ids. Control, unknown and unused pieces (and ids
 * past the tokenizer's vocab) are boundaries worth 0 bytes; byte-fallback pieces <0xNN> are worth 1;
 * any other piece is worth the UTF-8 length of its text after dropping one leading "▁" (U+2581),
 * which sets has_leading_space. Further "▁" inside a piece count 3 bytes each, as in the reference.
 * The loss side (nll) is not here: see pg-eval.
 */
#ifndef PG_BPB_H
#define PG_BPB_H

#include <stddef.h>
#include <stdint.h>

struct pg_tok;

struct pg_bpb_lut {
    int n;                      /* table size */
    int16_t *base_bytes;
    uint8_t *has_leading_space;
    uint8_t *is_boundary;
    /* The val byte sidecar (CaseOps, pg-formats(5)) when loaded: val_bytes[i] is the number of
     * original UTF-8 bytes val token i stands for; scoring then charges target i that, not the
     * tables' count. NULL: the tables. */
    uint16_t *val_bytes;
    uint64_t val_bytes_n;
};

/* Builds the tables from an explicit piece list: pieces[i] (UTF-8) and kinds[i] (pg_piece_kind)
 * for i < n_pieces; table size max(n_pieces, vocab). @return 0, PG_E_INVAL or PG_E_NOMEM. */
int pg_bpb_lut_build(struct pg_bpb_lut *lut, int n_pieces, const char *const *pieces, const int *kinds, int vocab);

/* Builds the tables from a loaded tokenizer, table size max(tokenizer vocab, vocab).
 * @return 0 or PG_E_NOMEM. */
int pg_bpb_lut_from_tok(struct pg_bpb_lut *lut, const struct pg_tok *tok, int vocab);

void pg_bpb_lut_free(struct pg_bpb_lut *lut);

/* Sets *have to whether "<dir>/<prefix>_val_bytes_*.bin" exist. @return 0 or PG_E_IO. */
int pg_bpb_sidecar_exists(const char *dir, const char *prefix, int *have);

/* Loads "<dir>/<prefix>_val_bytes_*.bin" into lut->val_bytes and checks it against the val
 * split: as many entries as the val shards hold tokens, and 0 at every BOS (bos_id) among
 * val_tokens[0..n) (the head of the val stream that will be scored). @return 0, PG_E_IO (no
 * sidecar: the message names the files), PG_E_FORMAT (the sidecar does not fit), PG_E_NOMEM. */
int pg_bpb_lut_load_sidecar(struct pg_bpb_lut *lut, const char *dir, const char *prefix, const uint16_t *val_tokens,
                            uint64_t n, int bos_id);

/* @return the bytes charged to the target at val stream position pos (>= 1) whose previous token
 * is x and which is y: the sidecar's count when one is loaded, else the tables'. */
static inline int pg_bpb_target_bytes(const struct pg_bpb_lut *lut, uint64_t pos, int x, int y)
{
    return lut->val_bytes ? lut->val_bytes[pos] : lut->base_bytes[y] + (lut->has_leading_space[y] && !lut->is_boundary[x]);
}

/* @return the bytes charged to target y after previous token x (both < lut->n). */
static inline int pg_bpb_token_bytes(const struct pg_bpb_lut *lut, int x, int y)
{
    return lut->base_bytes[y] + (lut->has_leading_space[y] && !lut->is_boundary[x]);
}

/* Sums bytes over the targets tokens[1..n-1] (each with its predecessor). `prev` is the token
 * before tokens[0] when the array continues a stream (it makes tokens[0] a target too), or -1.
 * @return the byte count, or -1 (with a message) if a token is outside the tables. */
int64_t pg_bpb_count_bytes(const struct pg_bpb_lut *lut, const uint16_t *tokens, size_t n, int prev);

#endif
