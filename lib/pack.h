/* pack.h: a quantized model (.pgq bytes) into a .pga artifact and back, byte for byte.
 *
 * Two ways to pack (man/pg-pack.1):
 *   whole      one stream "pgq": the whole .pgq through one codec (zlib, lzma, brotli, lrzip)
 *   per-group  the records' pipeline (spec/techniques.md §5.2): the integer tensors are cut out of
 *              the .pgq and grouped by role and shape (tok_emb, attn.c_q, ..., mlp.proj; layers
 *              back to back in model order), each group transposed (column-major, so neighbouring
 *              bytes are one column of neighbouring rows) and compressed with the group codec
 *              (lrzip ZPAQ by default); what remains of the .pgq (header, configuration, tensor
 *              table, fp16 scales, passthrough tensors, checksum) is one stream "rest" with the
 *              rest codec (brotli by default), and a small stream "cuts" says where each group's
 *              bytes go back.
 * The artifact holds exactly the .pgq's bytes: unpacking rebuilds the identical file (its CRC is
 * checked again when it is parsed).
 *
 * The "cuts" stream (all little-endian): u32 magic "PGCT", u32 count n, then n entries of 28
 * bytes: u64 offset in the .pgq, u64 length, u32 index of the artifact stream holding the bytes,
 * u64 offset inside that stream's decoded bytes. Entries are in increasing .pgq offset and do not
 * overlap; every byte of every group stream is used exactly once.
 */
#ifndef PG_PACK_H
#define PG_PACK_H

#include "codec.h"
#include "pga.h"
#include "pgac.h"

#include <stddef.h>

/* PG_PACK_BEST: per-group, each group with whichever of pgac (rows as they are), lrzip (when
 * installed), brotli and lzma (transposed) gives it the fewest bytes; the stream table records
 * the choice (codec and transform per stream), so unpacking needs nothing else. */
enum pg_pack_mode { PG_PACK_WHOLE = 0, PG_PACK_PER_GROUP = 1, PG_PACK_BEST = 2 };

struct pg_pack_opts {
    int mode;                   /* PG_PACK_* */
    enum pg_codec codec;        /* whole: the codec of the single stream */
    enum pg_codec group_codec;  /* per-group: the integer groups' codec (lrzip); best: unused */
    enum pg_codec rest_codec;   /* per-group and best: the rest's codec (brotli) */
};

/* Packs the n bytes of a serialized .pgq (checked with pg_pgq_parse first; name names it in
 * errors) into an artifact in memory: *art (malloc'd) of *art_n bytes.
 * @return 0, or PG_E_FORMAT (not a valid .pgq), PG_E_NOMEM, a codec's error. */
int pg_pack_pgq(const unsigned char *pgq, size_t n, const char *name, const struct pg_pack_opts *o,
                unsigned char **art, size_t *art_n);

/* pg_pack_pgq, and for the per-group mode with pgac: if stats is not NULL, it gets the sums of
 * what the encoder measured over the groups (pgac.h); zero otherwise. */
int pg_pack_pgq_stats(const unsigned char *pgq, size_t n, const char *name, const struct pg_pack_opts *o,
                      unsigned char **art, size_t *art_n, struct pg_pgac_stats *stats);

/* Rebuilds the .pgq bytes held by an artifact: *pgq (malloc'd) of *n bytes. The result is not
 * parsed here (pg_pgq_parse checks it). @return 0, or PG_E_FORMAT naming the artifact and what
 * is wrong (a missing stream, a cut outside its stream, a checksum mismatch), PG_E_NOMEM. */
int pg_unpack_pgq(const struct pg_pga *a, unsigned char **pgq, size_t *n);

#endif
