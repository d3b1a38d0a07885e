/* pgac.h: pgolf's own context-model arithmetic coder for quantized integer tensors (codec "pgac").
 *
 * The input is a row-major matrix of int8 values (a group of same-shaped integer tensors back to
 * back, cols values per row). Each value is binarized (zero flag; sign; the magnitude's
 * Exp-Golomb bucket in unary, then the bucket's low bits as a binary tree) and every binary
 * decision is coded with an adaptive binary arithmetic coder whose probability is a logistic mix
 * of four context models:
 *   - the expected magnitude E = (mean |v| of the row so far, with the previous row's mean as a
 *     prior) x (this column's running mean |v| over the rows above) / (the running mean of all),
 *     on a log scale: the row's scale and the column's (input feature's) size;
 *   - the row's mean alone and the two values to the left;
 *   - the column's mean alone and the value above (previous row, same column).
 *   - the column itself (each column's own adaptive distribution, learnt over the rows above).
 * The mixer's weights are chosen by the decision (which node of the binarization). A stream
 * adapts from scratch, so the tensor class and its bit width are in the context by construction
 * (pack.c codes one stream per group of one role and shape). Everything is integer arithmetic:
 * the output is a function of the input alone (no thread, platform or compiler dependence).
 *
 * Stream layout (little-endian), version 1:
 *   0   4  magic "PGAC"
 *   4   1  version (1)
 *   5   1  maxabs: the largest |v| in the stream (0..128); it bounds the binarization
 *   6   2  reserved, zero
 *   8   8  count of values
 *   16  8  cols (>= 1; count is a multiple of it)
 *   24  4  CRC32 of the payload
 *   28     payload: the arithmetic coder's bytes, exactly as many as the decoder reads
 * The decoder refuses a bad header, a payload CRC mismatch, a value past maxabs, a payload that
 * ends early or has bytes left over: corrupt or truncated data is an error, never a crash.
 */
#ifndef PG_PGAC_H
#define PG_PGAC_H

#include <stddef.h>
#include <stdint.h>

#define PG_PGAC_MAGIC "PGAC"
#define PG_PGAC_VERSION 1
#define PG_PGAC_HEADER 28

/* What the encoder measured (all in bits). */
struct pg_pgac_stats {
    uint64_t values;
    double model_bits;  /* sum of -log2 P(decision) under the coder's own model: its estimate of
                         * the conditional entropy; the payload is within a few bytes of it */
    double order0_bits; /* the empirical order-0 entropy of the values, times their count */
    uint64_t payload_bytes;
};

/* Encodes n int8 values (n a multiple of cols >= 1; n may be 0) into *out (malloc'd) of *out_n
 * bytes. stats may be NULL. @return 0, or PG_E_INVAL (cols), PG_E_NOMEM. */
int pg_pgac_encode(const int8_t *v, size_t n, uint64_t cols, unsigned char **out, size_t *out_n,
                   struct pg_pgac_stats *stats);

/* Decodes the n bytes of src into exactly raw values at dst. @return 0, or PG_E_FORMAT naming
 * what is wrong (bad magic or version, count not raw, checksum mismatch, truncated, trailing
 * bytes, a value out of range), PG_E_NOMEM. */
int pg_pgac_decode(const unsigned char *src, size_t n, int8_t *dst, size_t raw);

#endif
