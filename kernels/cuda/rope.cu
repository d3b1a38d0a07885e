// rope.cu: rotary position embedding in place on x[B,T,H,hd], parameter-golf's half-split
// pairing over the first rd dims of each head (rd < hd: partial RoPE, spec §2.2):
// (x1, x2) ← (x1·cos + x2·sin, −x1·sin + x2·cos) with x1 = dims [0, rd/2), x2 = [rd/2, rd); dims
// from rd on are not touched. One thread per pair; the backward is the inverse rotation (sin
// negated).
#include "pg_cuda.cuh"

#include "ops.h"

__global__ void rope_kernel(float *x, const float *cos, const float *sin, size_t pairs, int t, int h, int hd, int rd,
                            float sign)
{
    for (size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += (size_t)gridDim.x * blockDim.x) {
        int half = rd / 2, i = (int)(p % (size_t)half);
        size_t row = p / (size_t)half; // (b, t, h) flattened
        int ti = (int)(row / (size_t)h % (size_t)t);
        float *v = x + row * (size_t)hd;
        float c = cos[(size_t)ti * half + i], s = sign * sin[(size_t)ti * half + i];
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c + x2 * s;
        v[i + half] = -x1 * s + x2 * c;
    }
}

static void rope(float *x, const float *cos, const float *sin, int b, int t, int h, int hd, int rd, float sign)
{
    if (b <= 0 || t <= 0 || h <= 0 || rd < 2 || rd > hd) return;
    size_t pairs = (size_t)b * t * h * (rd / 2);
    PG_LAUNCH(rope_kernel, pg_cuda_blocks(pairs, 256), 256, 0, pg_cuda_stream())(x, cos, sin, pairs, t, h, hd, rd,
                                                                                 sign);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_rope_fwd(float *x, const float *cos, const float *sin, int b, int t, int h, int hd, int rd)
{
    rope(x, cos, sin, b, t, h, hd, rd, 1.0f);
}

extern "C" void pg_cuda_rope_bwd(float *dx, const float *cos, const float *sin, int b, int t, int h, int hd, int rd)
{
    rope(dx, cos, sin, b, t, h, hd, rd, -1.0f);
}
