/* bytes_xform.h: reversible byte transforms that make quantized weights compress better.
 *
 * These are the preprocessing steps of the records' packers (spec/techniques.md §5):
 *   - transpose: a row-major rows×cols byte matrix stored column-major, so that neighbouring bytes
 *     are the same column of neighbouring rows (§5.2 step 3);
 *   - shuffle: byte planes of stride s: every s-th byte starting at 0, then every s-th starting
 *     at 1, ... (the "BSHF" transform of §5.1, s = 2 for fp16/bf16);
 *   - greedy L1 nearest-neighbour row ordering: a permutation that puts similar rows next to
 *     each other (§5.2 step 2), stored as uint16, applied and undone separately.
 * Each transform has an exact inverse. Source and destination must not overlap.
 *
 * A struct pg_xform names a transform and its parameters as stored in a .pga stream: transpose
 * applies to k back-to-back matrices (k = size / (rows·cols)), so a group of same-shaped layers
 * is one stream.
 */
#ifndef PG_BYTES_XFORM_H
#define PG_BYTES_XFORM_H

#include <stddef.h>
#include <stdint.h>

/* The values are stored in .pga files: never renumber. */
enum pg_xform_id {
    PG_XFORM_NONE = 0,
    PG_XFORM_TRANSPOSE = 1, /* rows, cols */
    PG_XFORM_SHUFFLE = 2,   /* stride */
    PG_XFORM_COUNT
};

#define PG_XFORM_MAX_STRIDE 65535

struct pg_xform {
    enum pg_xform_id id;
    uint64_t rows, cols; /* transpose */
    uint64_t stride;     /* shuffle, 1..PG_XFORM_MAX_STRIDE */
};

/* @return "none", "transpose", "shuffle", or "?" out of range. */
const char *pg_xform_name(int id);

/* Checks that t is a known transform whose parameters fit a buffer of n bytes (transpose: rows,
 * cols ≥ 1 and n a multiple of rows·cols; shuffle: 1 ≤ stride ≤ PG_XFORM_MAX_STRIDE; unused
 * parameters zero). @return 0, or PG_E_INVAL / PG_E_FORMAT (with `code`) and a message without
 * any file name ("transpose 3x5 does not divide 16 bytes"). */
int pg_xform_check(const struct pg_xform *t, uint64_t n, int code);

/* Applies / undoes a checked transform on n bytes (PG_XFORM_NONE copies). */
void pg_xform_apply(const struct pg_xform *t, const void *src, void *dst, size_t n);
void pg_xform_undo(const struct pg_xform *t, const void *src, void *dst, size_t n);

/* ---- the transforms themselves ---- */

/* dst (cols×rows, row-major) = the transpose of src (rows×cols, row-major). Undo with
 * pg_transpose8(dst, src, cols, rows). */
void pg_transpose8(const void *src, void *dst, size_t rows, size_t cols);

/* Byte planes: plane j (0 ≤ j < stride) holds src[j], src[j+stride], ... in order; the planes
 * are written one after another, so when n is not a multiple of stride the first n % stride
 * planes are one byte longer. stride ≥ 1. */
void pg_shuffle8(const void *src, void *dst, size_t n, size_t stride);
void pg_unshuffle8(const void *src, void *dst, size_t n, size_t stride);

/* Greedy L1 nearest-neighbour ordering of the rows of an int8 matrix: perm[0] = 0, then each
 * next row is the unused row with the smallest sum of |r - current| over the columns (ties: the
 * lowest index). O(rows²·cols), parallel with OpenMP over the candidates; the result does not
 * depend on the thread count. @return 0, or PG_E_INVAL when rows > 65536 (or rows·cols overflows). */
int pg_nn_order(const int8_t *m, size_t rows, size_t cols, uint16_t *perm);

/* @return 1 if perm[0..n) is a permutation of 0..n-1, else 0. */
int pg_perm_valid(const uint16_t *perm, size_t n);

/* dst row i = src row perm[i] (rows of row_bytes bytes). */
void pg_rows_permute(const void *src, void *dst, size_t rows, size_t row_bytes, const uint16_t *perm);

/* The inverse: dst row perm[i] = src row i. */
void pg_rows_unpermute(const void *src, void *dst, size_t rows, size_t row_bytes, const uint16_t *perm);

/* @return the sum over i of L1(row i, row i+1): what the ordering tries to make small. */
uint64_t pg_adjacent_l1(const int8_t *m, size_t rows, size_t cols);

#endif
