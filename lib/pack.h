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

/* Which groups get the nearest-neighbour row ordering (pack_perm.h): none, the records' "hot"
 * groups (tok_emb, attn.c_q, mlp.fc), or all. With lrzip the groups it names are reordered; with
 * pgac and PG_PACK_BEST they are tried both ways and keep the smaller (the permutations'
 * compressed bytes counted). */
enum pg_pack_reorder { PG_REORDER_NONE = 0, PG_REORDER_HOT = 1, PG_REORDER_ALL = 2 };

struct pg_pack_opts {
    int mode;                   /* PG_PACK_* */
    enum pg_codec codec;        /* whole: the codec of the single stream */
    enum pg_codec group_codec;  /* per-group: the integer groups' codec (lrzip); best: unused */
    enum pg_codec rest_codec;   /* per-group and best: the rest's codec (brotli) */
    int reorder;                /* per-group and best: PG_REORDER_* */
    unsigned shuffle;           /* whole: byte-shuffle stride before the codec (the records' "BSHF"
                                 * + brotli uses 2); 0: none */
};

/* The reordering --pgac uses: every group, each kept only where it pays (docs/BENCH.md,
 * packing: on the demo model int6 it pays for tok_emb alone). */
#define PG_PACK_PGAC_REORDER PG_REORDER_ALL

/* The modes by name, as pg-quantize --target-pack and scripts name them: zlib, lzma, brotli,
 * lrzip (whole), brotli+shuffle (whole, stride 2), lrzip+brotli (per-group, hot groups
 * reordered), pgac, pgac+lzma (per-group, pgac groups, PG_PACK_PGAC_REORDER), best (all groups
 * tried both ways), each as pg-pack's flags set it. @return 0, or PG_E_INVAL for another name. */
int pg_pack_opts_from_name(const char *name, struct pg_pack_opts *o);

/* The name of o's mode ("lrzip+brotli per-group", "brotli"), for messages. */
const char *pg_pack_mode_name(const struct pg_pack_opts *o);

/* The names pg_pack_opts_from_name accepts, for usage messages. */
#define PG_PACK_MODE_NAMES "zlib, lzma, brotli, lrzip, brotli+shuffle, lrzip+brotli, pgac, pgac+lzma or best"

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
