// mma.cuh: one warp's tensor-core product D[16,8] += A[16,16]·B[16,8], bf16 inputs and fp32
// accumulation (PTX mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, sm_80 and later), with
// the fragment layout PTX documents, so that kernels can build and read fragments in registers.
//
// Lane l of the warp, g = l / 4 (its group) and c = l % 4 (its place in the group), holds
//   A: a[0] = A[g][2c, 2c+1]    a[1] = A[g+8][2c, 2c+1]
//      a[2] = A[g][2c+8, 2c+9]  a[3] = A[g+8][2c+8, 2c+9]
//   B: b[0] = B[2c, 2c+1][g]    b[1] = B[2c+8, 2c+9][g]
//   D: d[0], d[1] = D[g][2c, 2c+1]   d[2], d[3] = D[g+8][2c, 2c+1]
// two bf16 to a 32-bit register, the lower index in the low half (pg_pack_bf16).
//
// A consequence kernels use (flash attention): the D fragments of two neighbouring 8-column
// tiles n and n+1 of a row block are, rounded to bf16 pairwise, exactly the A fragment of the
// 16 columns they cover: a[0] = (d_n[0], d_n[1]), a[1] = (d_n[2], d_n[3]), a[2] = (d_n+1[0],
// d_n+1[1]), a[3] = (d_n+1[2], d_n+1[3]); a product's output feeds the next product without
// leaving the registers.
//
// Without the instruction (the emulator, or nvcc with -DPG_CUDA_NO_HW) the same product is
// computed from the same fragments through warp shuffles: each lane gathers the two rows of A
// and the two columns of B its four outputs need, in the layout above, so the emulated tests
// check the kernels' fragment bookkeeping, not just their arithmetic. Products of bf16 values
// are exact in fp32; the sums run in k order here, in an order of the hardware's choosing on a
// GPU. Every lane of the warp must call it (it is a warp-collective operation on both paths).
#ifndef PG_MMA_CUH
#define PG_MMA_CUH

#include "pg_cuda.cuh"

__device__ __forceinline__ uint32_t pg_pack_bf16(float lo, float hi)
{
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16(lo)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16(hi)) << 16);
}

__device__ __forceinline__ float pg_bf16_lo(uint32_t r) { return __uint_as_float(r << 16); }
__device__ __forceinline__ float pg_bf16_hi(uint32_t r) { return __uint_as_float(r & 0xffff0000u); }

__device__ __forceinline__ void pg_mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2])
{
#if PG_CUDA_HW
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    const unsigned all = 0xffffffffu;
    int lane = (int)(threadIdx.x & 31), g = lane >> 2, c = lane & 3;
    float s00 = d[0], s01 = d[1], s10 = d[2], s11 = d[3];
#ifdef PG_CUDA_EMU
    // The emulator's fibers switch at every shuffle (32 lanes x 32 shuffles a product): one
    // gather of the warp's fragments instead, each lane then reading the same lanes' registers.
    const uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
    const unsigned char *warp = (const unsigned char *)pg_emu::warp_gather(mine, sizeof mine);
    auto reg = [warp](int src, int i) {
        uint32_t r;
        memcpy(&r, warp + (size_t)src * pg_emu::GATHER_BYTES + 4 * i, 4);
        return r;
    };
    (void)all;
#else
    auto reg = [all, a, b](int src, int i) { return __shfl_sync(all, i < 4 ? a[i] : b[i - 4], src); };
#endif
    for (int j = 0; j < 4; j++) { // the group member j holds k = 2j, 2j+1 and 2j+8, 2j+9
        int ra = 4 * g + j, rb0 = 4 * (2 * c) + j, rb1 = 4 * (2 * c + 1) + j;
        uint32_t a0 = reg(ra, 0), a1 = reg(ra, 1), a2 = reg(ra, 2), a3 = reg(ra, 3);
        uint32_t b00 = reg(rb0, 4), b01 = reg(rb0, 5); // column 2c
        uint32_t b10 = reg(rb1, 4), b11 = reg(rb1, 5); // column 2c+1
        // k = 2j, 2j+1 (a0/a1 · b?0), then k = 2j+8, 2j+9 (a2/a3 · b?1)
        s00 += pg_bf16_lo(a0) * pg_bf16_lo(b00) + pg_bf16_hi(a0) * pg_bf16_hi(b00);
        s01 += pg_bf16_lo(a0) * pg_bf16_lo(b10) + pg_bf16_hi(a0) * pg_bf16_hi(b10);
        s10 += pg_bf16_lo(a1) * pg_bf16_lo(b00) + pg_bf16_hi(a1) * pg_bf16_hi(b00);
        s11 += pg_bf16_lo(a1) * pg_bf16_lo(b10) + pg_bf16_hi(a1) * pg_bf16_hi(b10);
        s00 += pg_bf16_lo(a2) * pg_bf16_lo(b01) + pg_bf16_hi(a2) * pg_bf16_hi(b01);
        s01 += pg_bf16_lo(a2) * pg_bf16_lo(b11) + pg_bf16_hi(a2) * pg_bf16_hi(b11);
        s10 += pg_bf16_lo(a3) * pg_bf16_lo(b01) + pg_bf16_hi(a3) * pg_bf16_hi(b01);
        s11 += pg_bf16_lo(a3) * pg_bf16_lo(b11) + pg_bf16_hi(a3) * pg_bf16_hi(b11);
    }
    d[0] = s00, d[1] = s01, d[2] = s10, d[3] = s11;
#endif
}

#endif
