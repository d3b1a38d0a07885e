/* lqer.h: LQER, low-rank quantization error reconstruction (spec/techniques.md §4.6).
 *
 * A quantized weight Wq leaves the residual E = W − Wq. LQER stores a small quantized rank-r
 * approximation of E next to Wq, and dequantization adds it back: Ŵ = Wq + Â B̂.
 *
 *   1. E = W − Wq in double; thin SVD E = U Σ Vᵀ (LAPACKE_dgesdd); A = U_r Σ_r (rows × r),
 *      B = V_rᵀ (r × cols), the best rank-r approximation of E (Eckart–Young). Each singular
 *      pair's sign is fixed so that the largest |entry| of its row of B (the first on ties) is
 *      positive, so the factors do not depend on the LAPACK build's sign choice.
 *   2. The factors are rounded to float32 (the records' fp32 factors) and quantized in float32,
 *      each scale rounded to fp16 first and the integers computed with the rounded scale,
 *      q = clamp(round_half_even(x / s16), lo, hi), as pg_quant_row does. A scale below fp16's
 *      range (an all-zero block) becomes the smallest positive fp16 step (2^-24), one above it
 *      65504.
 *        asym (the records' default): A is INT2 with one scale for all of A, s_A = max|A| / 1.5,
 *             q ∈ [−2, 1]; B is INT4 in groups of 64 over the flattened (row-major r × cols) B,
 *             the last group shorter when r·cols is not a multiple of 64, s_g = max|group| / 7.5,
 *             q ∈ [−8, 7].
 *        sym  (LQER_FACTOR_BITS = 4): per-row INT4 for both factors, s = max|row| / 7,
 *             q ∈ [−7, 7]; A has `rows` rows of r values, B has r rows of `cols` values.
 *   3. Dequantization: W[i][j] += Σ_k (q_A[i][k] s_A) (q_B[k][j] s_B), the scales as float32,
 *      every product and the sum over k = 0..r−1 (in that order, from 0) in float32, the sum then
 *      added to W[i][j]. Elements are independent, so the result does not depend on threads.
 *
 * Integers are kept one per int8 byte, scales as fp16 bit patterns in host order (a file format
 * chooses its own byte order).
 */
#ifndef PG_LQER_H
#define PG_LQER_H

#include <stdint.h>

enum pg_lqer_mode { PG_LQER_ASYM = 0, PG_LQER_SYM = 1 };

#define PG_LQER_GROUP 64    /* asym: B's group size over its flattened values */
#define PG_LQER_MAX_RANK 64 /* a larger rank costs more than it reconstructs */

struct pg_lqer {
    int mode;             /* PG_LQER_ASYM or PG_LQER_SYM */
    int rank;             /* 1..min(rows, cols, PG_LQER_MAX_RANK) */
    int64_t rows, cols;   /* W's shape */
    int8_t *qa;           /* rows × rank, row-major */
    int8_t *qb;           /* rank × cols, row-major */
    uint16_t *sa;         /* pg_lqer_nsa() fp16 scales: asym 1, sym one per row of A (rows) */
    uint16_t *sb;         /* pg_lqer_nsb() fp16 scales: asym one per group, sym one per row of B (rank) */
};

/* The number of A's and B's scales for a mode and shape: asym 1 and ceil(rank·cols / 64), sym
 * rows and rank. @return the count, or 0 for a bad mode, shape or rank. */
int64_t pg_lqer_nsa(int mode, int64_t rows, int64_t cols, int rank);
int64_t pg_lqer_nsb(int mode, int64_t rows, int64_t cols, int rank);

/* Step 1: the unquantized factors of E = W − Wq (w and wq rows × cols, row-major): a (rows ×
 * rank) and b (rank × cols), row-major, and when sv is not NULL all min(rows, cols) singular
 * values of E, descending. @return 0, PG_E_INVAL (bad shape or rank, a non-finite residual),
 * PG_E_NOMEM, or PG_E_LIB when the SVD fails. */
int pg_lqer_svd(const float *w, const float *wq, int64_t rows, int64_t cols, int rank, double *a, double *b,
                double *sv);

/* Step 2: quantizes given factors a (rows × rank) and b (rank × cols) in `mode` into *out, which
 * owns its arrays afterwards (release with pg_lqer_free). @return 0, PG_E_INVAL (bad mode, shape
 * or rank, a non-finite factor) or PG_E_NOMEM; *out is zeroed on failure. */
int pg_lqer_pack(const float *a, const float *b, int64_t rows, int64_t cols, int rank, int mode, struct pg_lqer *out);

/* Steps 1 and 2: the LQER correction of wq towards w. @return as pg_lqer_svd and pg_lqer_pack. */
int pg_lqer_fit(const float *w, const float *wq, int64_t rows, int64_t cols, int rank, int mode,
                struct pg_lqer *out);

/* Allocates the arrays of *l for a mode and shape (zeroed), for a reader that fills them.
 * @return 0, PG_E_INVAL or PG_E_NOMEM; *l is zeroed on failure. */
int pg_lqer_alloc(struct pg_lqer *l, int mode, int64_t rows, int64_t cols, int rank);

/* Step 3: w (l->rows × l->cols, row-major) += the dequantized A·B. */
void pg_lqer_apply(const struct pg_lqer *l, float *w);

/* Validates a correction read from a file: mode, shape and rank, every code in its mode's
 * range, every scale a positive finite fp16. @return 0, or PG_E_FORMAT with one line naming
 * `what` and the first bad value. */
int pg_lqer_check(const struct pg_lqer *l, const char *what);

/* The file form of a correction (.pgq version 2, pg-formats(5)): A's codes (rows × rank int8),
 * B's codes (rank × cols int8), then A's and B's fp16 scales, little-endian.
 * pg_lqer_bytes: its size for a mode and shape, 0 when they are bad. */
uint64_t pg_lqer_bytes(int mode, int64_t rows, int64_t cols, int rank);
void pg_lqer_serialize(const struct pg_lqer *l, unsigned char *out);
/* Reads the file form at p (pg_lqer_bytes of them) into *l, allocated here; the values are not
 * checked (pg_lqer_check does that). @return 0, PG_E_INVAL or PG_E_NOMEM. */
int pg_lqer_deserialize(struct pg_lqer *l, int mode, int64_t rows, int64_t cols, int rank, const unsigned char *p);

/* Releases the arrays pg_lqer_pack / _fit / _alloc made and zeroes *l. Safe on a zeroed struct. */
void pg_lqer_free(struct pg_lqer *l);

#endif
