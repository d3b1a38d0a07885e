/* qxform.h: invertible input-dimension transforms applied before quantization and undone at
 * dequantization (issue 16 §5; #1732's Hadamard rotation and AWQ, spec/techniques.md §4).
 *
 * A linear layer y = x Wᵀ (W: rows × cols) computes the same function as x'' W''ᵀ with
 * W'' = W diag(s) R and x'' = x diag(1/s) R, for per-input-channel scales s > 0 (AWQ) and an
 * orthogonal R = D Hₙ/√n (Hadamard: D a diagonal of random signs from a seed, Hₙ Sylvester's
 * Hadamard matrix, n = cols a power of two). The models here have no learnable gain before every
 * linear layer to fold s and R into, so the quantizer quantizes W'' (its rows see smaller outliers:
 * AWQ enlarges the salient channels' weights, the rotation spreads every column's over all) and
 * the .pgq keeps what undoes it (the seed, the scales as fp16; .pgq version 3, pg-formats(5)):
 * dequantization returns Ŵ = Ŵ'' Rᵀ diag(1/s), so every reader gets the float function back with
 * only the quantization error left. GPTQ works in the transformed basis with
 * H'' = Rᵀ diag(1/s) H diag(1/s) R, the statistics of x''.
 * The blob of a transform: the seed (8 bytes, little-endian) when Hadamard, then cols fp16
 * scales when AWQ. */
#ifndef PG_QXFORM_H
#define PG_QXFORM_H

#include "real.h"

#include <stdint.h>

enum { PG_QXFORM_AWQ = 1, PG_QXFORM_HADAMARD = 2 };

struct pg_qxform {
    int flags;
    int64_t cols;
    uint64_t seed;
    double *sign;  /* HADAMARD: cols values ±1, else NULL */
    double *s;     /* AWQ: cols scales (fp16 values), else NULL */
};

/* The blob's bytes for flags over cols input channels. */
uint64_t pg_qxform_bytes(int flags, int64_t cols);

/* Whether flags can transform a tensor of cols columns (Hadamard: a power of two, at least 2). */
int pg_qxform_fits(int flags, int64_t cols);

/* Sets up x from its parts: the seed's signs, and the scales s (NULL unless AWQ; rounded to fp16
 * here, so that x is what its blob decodes to). @return 0, PG_E_INVAL, or PG_E_NOMEM. */
int pg_qxform_init(struct pg_qxform *x, int flags, int64_t cols, uint64_t seed, const double *s);

/* Reads a blob: @return 0, or PG_E_FORMAT naming what (a scale not positive finite, bad flags). */
int pg_qxform_decode(struct pg_qxform *x, int flags, int64_t cols, const unsigned char *blob, const char *what);
void pg_qxform_encode(const struct pg_qxform *x, unsigned char *blob);

/* In place over rows of cols values: W diag(s) R, and its inverse W'' Rᵀ diag(1/s).
 * @return 0 or PG_E_NOMEM (then w is partly transformed). */
int pg_qxform_forward(const struct pg_qxform *x, float *w, int64_t rows);
int pg_qxform_inverse(const struct pg_qxform *x, pg_real *w, int64_t rows);

/* out (cols²) = Rᵀ diag(1/s) H diag(1/s) R. @return 0 or PG_E_NOMEM. */
int pg_qxform_hessian(const struct pg_qxform *x, const double *h, double *out);

/* The unnormalized fast Walsh-Hadamard transform of v (n a power of two): v ← Hₙ v. */
void pg_qxform_fwht(double *v, int64_t n);

void pg_qxform_free(struct pg_qxform *x);

#endif
