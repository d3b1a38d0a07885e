/* pack_perm.h: the records' nearest-neighbour row ordering in the per-group packing
 * (spec/techniques.md §5.2 step 2), and the "perms" stream that lets unpacking undo it.
 *
 * A group stream is k same-shaped int8 matrices back to back (rows x cols each). Reordering
 * sorts the rows of each matrix by the greedy L1 nearest-neighbour walk of bytes_xform.h, so
 * that neighbouring rows are alike: after the transpose, a column's bytes change slowly (what
 * lrzip and brotli exploit), and pgac's "value above" context predicts better. The permutations
 * go in one stream "perms" of the artifact (brotli, like the rest), little-endian:
 *   u32 magic "PGPM", u32 count m, then m entries:
 *     u32 index of the group stream (in the stream table), u32 rows, u32 k (matrices),
 *     k x rows u16: matrix i's permutation, perm[r] = the original row stored at row r.
 * A stream appears at most once; rows x k divides its raw size (cols = size / (rows x k)).
 * Unpacking decodes every stream, then puts each listed stream's rows back before the cuts
 * (pack.h) are applied. An artifact without reordering has no "perms" stream.
 */
#ifndef PG_PACK_PERM_H
#define PG_PACK_PERM_H

#include "pga.h"

#include <stddef.h>
#include <stdint.h>

#define PG_PERMS_MAGIC "PGPM"

/* One reordered group stream. */
struct pg_pack_perm {
    uint32_t stream;  /* index in the artifact's stream table */
    uint32_t rows, k; /* rows per matrix, matrices */
    uint16_t *perm;   /* k x rows */
};

/* Orders the rows of each of the k matrices of src (k x rows x cols int8, rows <= 65536) and
 * writes the reordered bytes to dst (the same size) and the permutations to perm (k x rows).
 * The matrices are ordered in parallel (OpenMP); the result does not depend on the thread count.
 * @return 0, or PG_E_INVAL (rows over 65536), PG_E_NOMEM. */
int pg_pack_perm_order(const int8_t *src, int8_t *dst, size_t k, size_t rows, size_t cols, uint16_t *perm);

/* Serializes m entries as the "perms" stream: *out (malloc'd) of *out_n bytes.
 * @return 0 or PG_E_NOMEM. */
int pg_pack_perm_write(const struct pg_pack_perm *e, size_t m, unsigned char **out, size_t *out_n);

/* Undoes the reordering on the decoded streams raw[] of artifact a: ip is the "perms" stream;
 * ic and ir (cuts, rest) and ip itself may not be named by an entry. Checks everything against
 * the stream table first (magic, sizes, indices, each permutation a permutation, no stream
 * twice, no bytes left over) and changes nothing on an error.
 * @return 0, or PG_E_FORMAT "PATH: stream 'perms': ..." naming the problem, PG_E_NOMEM. */
int pg_pack_perm_undo(const struct pg_pga *a, unsigned char **raw, long ip, long ic, long ir);

#endif
