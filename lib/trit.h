/* trit.h: ternary and quinary weight codes: group quantization, byte layouts, 5-bit log-delta
 * scale codes (spec/techniques.md §4.7; the quinary and log-delta parts after PR #2086).
 *
 * Group quantization. A rows × cols weight is cut into groups of PG_TRIT_GROUP (128) consecutive
 * elements along each row; a row's last group is shorter when cols is not a multiple of 128, and
 * groups never cross rows (the record pads rows to a multiple of 128 with zeros, so its last
 * group's mean counts the pads; ours is the mean over the group's own n elements).
 * Scales are stored rows × ceil(cols/128), row-major, as fp16 bit patterns.
 *
 *   ternary (levels 3), §4.7: s_g = fp16(mean|w|), q = clamp(round(w/s_g), −1, 1), and the
 *       shrinkage fix at dequantization: ŵ = q·s_g / mean|q_g| = q·s_g·n/Σ|q|, mean over the
 *       group's n codes; a group whose codes are all 0 dequantizes to 0. The file stores s_g
 *       (as the record does), not s_g/mean|q_g|: mean|q_g| is computed from the codes at load.
 *       The fix makes the dequantized group keep its L1 norm: mean|ŵ| = s_g ≈ mean|w| exactly
 *       (up to the fp32 rounding of ŵ).
 *   quinary (levels 5), our design: PR #2086's card states quinary codes {−2..2} but no scale
 *       rule and no shrinkage fix, so the step is the same s_g = fp16(mean|w|) and ŵ = q·s_g
 *       (no fix). Why mean|w| (divisor 1): for a Gaussian group, mean|w| = 0.798σ and the
 *       MSE-optimal uniform 5-level step is 0.842σ (error 0.0822σ²); s_g = mean|w| gives 0.0832σ²,
 *       1.2% above the optimum, while ŵ with the ternary-style fix would give 0.0866σ².
 *
 *   Common to both: mean|w| is summed in double over the group, divided by n, rounded to float
 *   and then to fp16 (ties to even, lib/half.h); a group whose mean rounds to fp16 zero (all
 *   zeros, or values below 2^-25) stores the smallest positive fp16, 2^-24 (0x0001), so every
 *   stored scale is positive; a mean above fp16's range (65504) and non-finite weights are
 *   refused. round() is half to even (torch.round) of w/s_g computed in double.
 *
 * Byte layouts of a code stream (one int8 per code, n codes; the unpacker is told n). A padding
 * position contributes digit 0 (nothing): the last byte / word holds only the real codes'
 * digits, and the unpacker refuses nonzero padding, so every stream has exactly one encoding.
 *
 *   PG_TRIT_BASE3   (1) ternary, 5 trits per byte: byte = Σ_{i=0..4} (q_i+1)·3^i ≤ 242;
 *                       ceil(n/5) bytes.
 *   PG_TRIT_BITMASK (2) ternary: packbits(q ≠ 0), then packbits(q < 0) over the nonzeros only
 *                       (1 = negative), both MSB-first as numpy.packbits (code 0 of a byte is its
 *                       bit 7), each zero-padded to whole bytes; ceil(n/8) + ceil(nnz/8) bytes.
 *   PG_TRIT_QUIN3   (3) quinary, 3 quins per byte: byte = Σ_{i=0..2} (q_i+2)·5^i ≤ 124;
 *                       ceil(n/3) bytes.
 *   PG_TRIT_QUIN10  (4) quinary, 10 quins per 3 bytes: word = Σ_{i=0..9} (q_i+2)·5^i < 5^10
 *                       < 2^24, stored little-endian; the tail takes a whole word:
 *                       3·ceil(n/10) bytes.
 *
 * The "best" packing writes one layout byte and then the smaller of the two layouts of its levels
 * (ternary: base-3 vs bitmask; quinary: 3-per-byte vs 10-per-3-bytes; a tie keeps the first).
 * Bitmask wins when fewer than about 60% of the codes are nonzero (1/8 + f/8 < 1/5 bits a code);
 * 10-per-3-bytes wins for every n ≥ 82 (2.4 against 2.67 bits a code), and for short streams
 * only where its whole tail word does not cost more (n = 10, 19, 20, 28..30, ...).
 *
 * 5-bit log-delta scale codes, our design: PR #2086's card names "5-bit log-delta scale
 * quantization" without defining it. A positive scale sequence s_0..s_{n−1} is stored as
 * base = fp16(s_0) and n−1 codes c_i ∈ 0..31 (one per byte); the decoded scales are
 *
 *     ŝ_i = base · 2^(k_i/8),   k_0 = 0,   k_i = k_{i−1} + (c_i − 16)
 *
 * (an exact integer state: 8 codes per octave, each step −16..+15, i.e. a factor 2^−2 .. 2^1.875).
 * The encoder chooses k_i = clamp(round(8·log2(s_i/base)), k_{i−1} − 16, k_{i−1} + 15): the
 * nearest decodable value to s_i given the decoded previous one, so errors never accumulate.
 * Bound: whenever s_i/s_{i−1} ∈ [2^−2, 2^1.875], |log2(ŝ_i/s_i)| ≤ 1/16 (relative error ≤ 4.4%);
 * ŝ_0 = base has fp16's rounding only. After a larger jump the codes saturate and the error is back
 * within the bound as soon as the sequence is within reach again. Decoding is
 * ŝ_i = ldexp(base·2^(j/8), e) with k_i = 8e + j, 0 ≤ j < 8, from a table of 2^(j/8) in double,
 * rounded to float: the same bits on every IEEE platform.
 */
#ifndef PG_TRIT_H
#define PG_TRIT_H

#include <stdint.h>

#define PG_TRIT_GROUP 128

enum pg_trit_layout { PG_TRIT_BASE3 = 1, PG_TRIT_BITMASK = 2, PG_TRIT_QUIN3 = 3, PG_TRIT_QUIN10 = 4 };

/* @return the number of scales of a rows × cols weight: rows · ceil(cols/128) (0 for a bad size). */
int64_t pg_trit_ngroups(int64_t rows, int64_t cols);

/* Quantizes w (rows × cols, row-major) to codes q (rows × cols) in −1..1 (levels 3) or −2..2
 * (levels 5) and the fp16 scales (pg_trit_ngroups entries) by the rules above.
 * @return 0 or PG_E_INVAL (bad sizes or levels, a non-finite weight, a scale past fp16). */
int pg_trit_quantize(const float *w, int64_t rows, int64_t cols, int levels, int8_t *q, uint16_t *scales);

/* Dequantizes codes and scales (as pg_trit_quantize wrote them) into w (rows × cols): the
 * shrinkage fix for levels 3, q·s_g for levels 5. @return 0, PG_E_INVAL (bad sizes or levels), or
 * PG_E_FORMAT naming `what` when a code is out of range or a scale is not a positive finite fp16. */
int pg_trit_dequantize(const int8_t *q, const uint16_t *scales, int64_t rows, int64_t cols, int levels, float *w,
                       const char *what);

/* Fake quantization for training (pg-train's qat_levels): each group of w (rows × cols) becomes
 * what pg_trit_quantize then pg_trit_dequantize give, bit for bit, written to out (which may be
 * w). A group with a non-finite weight or a scale past fp16 is copied unchanged (training goes
 * on; the export refuses such weights). kernels/cuda/optim.cu has the device twin. */
void pg_fake_quant_trit(const float *w, float *out, int64_t rows, int64_t cols, int levels);

/* @return the packed size in bytes of n codes in `layout` with nnz nonzero codes (nnz is used by
 * PG_TRIT_BITMASK only), or −1 for a bad layout or a negative count. */
int64_t pg_trit_packed_size(int layout, int64_t n, int64_t nnz);

/* Packs the n codes q into out (pg_trit_packed_size bytes). @return 0, or PG_E_INVAL for a bad
 * layout or a code outside the layout's range. */
int pg_trit_pack(const int8_t *q, int64_t n, int layout, uint8_t *out);

/* Unpacks len bytes of `layout` into the n codes q. @return 0, PG_E_INVAL (bad layout or n), or
 * PG_E_FORMAT with a one-line message naming `what`: a wrong length, a byte (or word) that is not
 * a group of digits, nonzero padding. */
int pg_trit_unpack(const uint8_t *in, int64_t len, int64_t n, int layout, int8_t *q, const char *what);

/* @return the most bytes pg_trit_pack_best writes for n codes: 1 + ceil(n/5) (levels 3) or
 * 1 + ceil(n/3) (levels 5); −1 for bad arguments. */
int64_t pg_trit_pack_bound(int64_t n, int levels);

/* Writes the layout byte and the smaller layout of n codes of `levels` (3 or 5) into out
 * (pg_trit_pack_bound bytes suffice) and their count, layout byte included, into *len.
 * @return 0 or PG_E_INVAL (bad levels, a code out of range). */
int pg_trit_pack_best(const int8_t *q, int64_t n, int levels, uint8_t *out, int64_t *len);

/* Unpacks what pg_trit_pack_best wrote (len bytes, layout byte first) into n codes.
 * @return 0, PG_E_INVAL, or PG_E_FORMAT naming `what`: a missing or bad layout byte (0, unknown,
 * or a layout of the other levels), then as pg_trit_unpack. */
int pg_trit_unpack_best(const uint8_t *in, int64_t len, int64_t n, int levels, int8_t *q, const char *what);

/* Encodes the n ≥ 1 positive finite scales s into *base (fp16 of s[0]) and n − 1 codes (0..31).
 * @return 0 or PG_E_INVAL (n < 1, a scale that is not positive and finite, s[0] outside fp16's
 * positive range, a scale whose code would decode past float's range). */
int pg_trit_logdelta_encode(const float *s, int64_t n, uint16_t *base, uint8_t *codes);

/* Decodes base and the n − 1 codes into the n scales s. @return 0, PG_E_INVAL (n < 1), or
 * PG_E_FORMAT naming `what`: a base that is not a positive finite fp16, a code above 31, a
 * decoded scale that overflows or underflows float. */
int pg_trit_logdelta_decode(uint16_t base, const uint8_t *codes, int64_t n, float *s, const char *what);

#endif
