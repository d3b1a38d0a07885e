/* vexp.c: exp over an array, vectorized, for the softmax rows of attention.
 *
 * libm's expf is a scalar call per element; over the T²/2 scores of every attention head it was
 * the largest cost of a training step outside BLAS (15% of the cycles at the baseline shape). This
 * is the Cody–Waite reduction with Cephes' degree-6 polynomial, written as branch-free lane
 * arithmetic so the compiler vectorizes it: exp(x) = 2ⁿ · p(r), n = round(x·log2 e),
 * r = x − n·ln 2 in two parts. Relative error ≤ 2 ulp on [−87.3, 88.3] (test_vexp checks it
 * against double exp over the whole range); below −87.3 it returns 0, above 88.3 it saturates
 * at exp(88.3) (softmax arguments are ≤ 0). Built for AVX2+FMA and for the baseline ISA, picked at
 * load time (target_clones), so one binary runs everywhere.
 *
 * The double build (gradient checks) uses libm: its exactness matters more there than speed.
 */
#include "cpu.h"

#include <string.h>

#ifdef PG_REAL_DOUBLE

void pg_cpu_exp_shift(pg_real *y, const pg_real *x, pg_real shift, int n)
{
    for (int j = 0; j < n; j++) y[j] = exp(x[j] - shift);
}

#else

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define PG_VEXP_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PG_VEXP_CLONES
#endif

PG_VEXP_CLONES
void pg_cpu_exp_shift(pg_real *y, const pg_real *x, pg_real shift, int n)
{
    const float lo = -87.3f, hi = 88.3f, log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
#pragma omp simd
    for (int j = 0; j < n; j++) {
        float v = x[j] - shift;
        float xc = v < lo ? lo : v; /* selects between plain values: if-converted */
        xc = xc > hi ? hi : xc;
        /* round to nearest by the 1.5·2²³ trick: exact for |x·log2 e| < 2²² */
        float t = xc * log2e + 12582912.0f;
        float nf = t - 12582912.0f;
        float r = xc - nf * ln2_hi - nf * ln2_lo;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        int32_t bits = ((int32_t)nf + 127) << 23;
        float scale;
        memcpy(&scale, &bits, sizeof scale);
        float e2 = p * scale; /* computed unconditionally so the select below has no trapping arm */
        y[j] = v < lo ? 0.0f : e2;
    }
}

#endif
