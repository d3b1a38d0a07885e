/* test_vexp: the vectorized exp of the attention softmax (kernels/cpu/vexp.c) against double
 * exp: every float argument on a fine grid of [−87.3, 88.3] within 2 ulp of the correctly
 * rounded value, 0 below −87.3, the shift applied, and odd lengths (vector tails) handled. */
#include "../../kernels/cpu/cpu.h"
#include "../tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Distance in units in the last place between two positive floats. */
static long ulp_diff(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, 4), memcpy(&ib, &b, 4);
    return labs((long)ia - (long)ib);
}

int main(void)
{
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    if (!x || !y) return 1;
    const double lo = -87.3, hi = 88.3;
    for (int i = 0; i < N; i++) x[i] = (float)(lo + (hi - lo) * i / (N - 1));
    pg_cpu_exp_shift(y, x, 0.0f, N);
    long worst = 0;
    int worst_i = 0;
    for (int i = 0; i < N; i++) {
        long u = ulp_diff(y[i], (float)exp((double)x[i]));
        if (u > worst) worst = u, worst_i = i;
    }
    diag("worst error %ld ulp at x = %.9g", worst, (double)x[worst_i]);
    ok(worst <= 2, "exp over [-87.3, 88.3] within 2 ulp of double exp (worst %ld)", worst);

    /* small arguments, where relative error matters most for softmax sums */
    worst = 0;
    for (int i = 0; i < 20001; i++) x[i] = (float)(-1.0 + i * 1e-4);
    pg_cpu_exp_shift(y, x, 0.0f, 20001);
    for (int i = 0; i < 20001; i++) {
        long u = ulp_diff(y[i], (float)exp((double)x[i]));
        if (u > worst) worst = u;
    }
    ok(worst <= 2, "exp over [-1, 1] within 2 ulp (worst %ld)", worst);
    is_int((long long)(y[10000] == 1.0f), 1, "exp(0) is exactly 1");

    /* the shift: exp(x − s) equals exp of the shifted value; in place (y == x) */
    for (int i = 0; i < 37; i++) x[i] = (float)(i * 0.37 - 3.0);
    float s = 2.5f, want[37];
    for (int i = 0; i < 37; i++) want[i] = (float)exp((double)(x[i] - s));
    pg_cpu_exp_shift(x, x, s, 37);
    int bad = 0;
    for (int i = 0; i < 37; i++) bad += ulp_diff(x[i], want[i]) > 2;
    is_int(bad, 0, "in place with a shift, odd length 37: every element within 2 ulp");

    /* underflow: zero below the range, and nothing written past n */
    x[0] = -88.0f, x[1] = -1000.0f, x[2] = -INFINITY, x[3] = 123.0f;
    pg_cpu_exp_shift(y, x, 0.0f, 3);
    ok(y[0] == 0.0f && y[1] == 0.0f && y[2] == 0.0f, "arguments below -87.3 give 0 (-88, -1000, -inf)");
    y[3] = 7.0f;
    pg_cpu_exp_shift(y, x, 0.0f, 3);
    ok(y[3] == 7.0f, "nothing written past n");
    free(x), free(y);
    return done_testing();
}
