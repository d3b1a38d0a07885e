/* rope.c: rotary position embedding with parameter-golf's half-split pairing and sign, over the
 * first rd dims of each head (partial RoPE when rd < hd). */
#include "cpu.h"

/* Rotates every (x1, x2) pair of the first rd dims of x[B,T,H,hd] by the angle of its position;
 * sign = +1 forward, −1 for the inverse (the backward of a rotation is its transpose). */
static void rotate(pg_real *x, const pg_real *cos, const pg_real *sin, int b, int t, int h, int hd, int rd, int sign)
{
    int half = rd / 2;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)b * t * h * rd > PG_OMP_MIN)
    for (int bi = 0; bi < b; bi++)
        for (int ti = 0; ti < t; ti++) {
            const pg_real *c = cos + (size_t)ti * half, *s = sin + (size_t)ti * half;
            for (int hi = 0; hi < h; hi++) {
                pg_real *v = x + (((size_t)bi * t + ti) * h + hi) * hd;
                for (int i = 0; i < half; i++) {
                    pg_real x1 = v[i], x2 = v[i + half], si = sign * s[i];
                    v[i] = x1 * c[i] + x2 * si;
                    v[i + half] = -x1 * si + x2 * c[i];
                }
            }
        }
}

void pg_cpu_rope_fwd(pg_real *x, const pg_real *cos, const pg_real *sin, int b, int t, int h, int hd, int rd)
{
    rotate(x, cos, sin, b, t, h, hd, rd, 1);
}

void pg_cpu_rope_bwd(pg_real *dx, const pg_real *cos, const pg_real *sin, int b, int t, int h, int hd, int rd)
{
    rotate(dx, cos, sin, b, t, h, hd, rd, -1);
}
