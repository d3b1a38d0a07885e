/* half.h: IEEE 754 binary16 (fp16) <-> binary32 conversion, in portable C (header-only).
 *
 * The quantized formats store their scales and small passthrough tensors as fp16, as PyTorch's
 * tensor.to(torch.float16) does: round to nearest, ties to even, overflow to infinity, gradual
 * underflow through the subnormals, NaN kept a (quiet) NaN. fp16 -> fp32 is exact.
 */
#ifndef PG_HALF_H
#define PG_HALF_H

#include <stdint.h>
#include <string.h>

/* Callable from CUDA kernels too (kernels/cuda/optim.cu's ternary fake quantization), so that
 * the device rounds scales to fp16 with these very bits. */
#if defined(__CUDACC__)
#define PG_HALF_FN static inline __host__ __device__
#else
#define PG_HALF_FN static inline
#endif

/* @return x rounded to the nearest fp16 value (ties to even), as its bit pattern. */
PG_HALF_FN uint16_t pg_f32_to_f16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000u, ax = u & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf, or NaN (quiet, with the top payload bits) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds past 65504 */
    if (ax < 0x38800000u) {                                  /* below 2^-14: subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign;          /* <= 2^-25 rounds to zero (tie: even 0) */
        uint32_t e = ax >> 23, man = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                             /* 14..24: man >> shift is the fp16 mantissa */
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    /* normal: rebias the exponent (127 -> 15), round the 13 dropped bits to nearest even; a carry
     * into the exponent is the correct result (up to 0x7bff + 1 = infinity is excluded above) */
    uint32_t h = ((ax - 0x38000000u) >> 13), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

/* @return the fp16 value h as a float (exact). */
PG_HALF_FN float pg_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (!man) bits = sign;
        else { /* subnormal: normalize */
            exp = 113;
            while (!(man & 0x400u)) {
                man <<= 1;
                exp--;
            }
            bits = sign | exp << 23 | (man & 0x3ffu) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

/* @return x rounded to fp16 precision, as a float. */
static inline float pg_f16_round(float x) { return pg_f16_to_f32(pg_f32_to_f16(x)); }

#endif
