// flash.cu: fused causal grouped-query attention (FlashAttention-2's algorithm) on tensor cores,
// the attention of bf16 mode (lib/backend.h set_bf16): Q, K, V, dO are read in fp32 and rounded
// to bf16 on their way into shared memory, every product is a warp's mma.sync m16n8k16 (bf16 in,
// fp32 accumulate; mma.cuh), the softmax, its log-sum-exp and every output stay fp32 (but O
// from the _x16 entries: rounded to bf16 as autocast stores it, and read so by their backward),
// and the T×T scores are never stored: a block keeps one 64×64 tile of them in registers.
//
// The same rounding points as the CPU's bf16 mode (kernels/cpu/attention.c), with one exception:
//   forward   S = scale·bf(Q)·bf(K)ᵀ, online softmax by rows in fp32 (running max m, sum l of
//             the unrounded exponentials), O = Σ bf(exp(S − m))·bf(V) / l. The CPU rounds the
//             normalized P instead; both round each probability once to bf16, to different
//             neighbours, so O differs from the CPU's by bf16 rounding, not by a few fp32 ulps
//             (tests/emu/test_cuda_flash.c measures both against fp32 attention).
//   backward  P = exp(S − lse) (normalized, as the CPU's), dV = Σ bf(P)ᵀ·bf(dO), dP =
//             bf(dO)·bf(V)ᵀ, dS = P ⊙ (dP − rowsum(bf(dO) ⊙ O)), dQ = scale·bf(dS)·bf(K), dK =
//             scale·Σ bf(dS)ᵀ·bf(Q): the CPU's rounding points exactly.
//
// Kernels (64-row tiles, 4 warps of 16 rows each, head dims 16, 32, 64 and 128):
//   flash_fwd       a block per (query tile, head, sequence): loops over the key tiles from the
//                   tile's first document start to its diagonal.
//   flash_bwd_dq    a block per (query tile, head, sequence): the same loop; dQ in registers.
//   flash_bwd_dkdv  a block per (key tile, kv head, sequence): loops over the group's query
//                   heads and the query tiles that can see its keys; dK and dV in registers,
//                   written once (the outputs are overwritten, as the cuBLAS path's).
// No atomics: every output element is summed by one thread in a fixed order, so a rerun gives
// the same bits. The backward recomputes the scores twice (once per kernel) to stay so: 2.5x the
// forward's products instead of FlashAttention-2's 2x with atomic dQ.
//
// Documents (varlen attention, spec §2.2): query i sees keys [doc_start[i], i]; a query tile
// starts at the smallest doc_start of its rows, and a key tile skips query tiles whose rows all
// start after its last key. Masked scores are −∞ before the softmax; a row that has seen no key
// yet keeps m = −∞ and contributes nothing (its exponentials are taken against 0).
#include "pg_cuda.cuh"

#include "mma.cuh"
#include "ops.h"

#include <limits.h>
#include <string.h>
#include <type_traits>

enum { FA_BM = 64, FA_BN = 64, FA_THREADS = 128 };
#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f

// Two neighbouring bf16 of a shared tile as one 32-bit register (an even index: 4-byte aligned).
__device__ __forceinline__ uint32_t fa_pair(const uint16_t *p)
{
#ifdef __CUDACC__
    return *reinterpret_cast<const uint32_t *>(p);
#else
    uint32_t r; // the host compiler: no type punning through pointers
    memcpy(&r, p, sizeof r);
    return r;
#endif
}

__device__ __forceinline__ int fa_min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int fa_max(int a, int b) { return a > b ? a : b; }

__device__ __forceinline__ uint16_t fa_bf16(float x) { return __bfloat16_as_ushort(__float2bfloat16(x)); }

// An input element as bf16 bits: a float rounded, or bf16 bits as they come (q and k made in bf16
// by their preparation, flash_*_x16).
__device__ __forceinline__ uint16_t fa_in(float x) { return fa_bf16(x); }
__device__ __forceinline__ uint16_t fa_in(uint16_t x) { return x; }
// An element as a float: as it is, or from its bf16 bits (the output O given in bf16 to the
// backward of the _x16 entries).
__device__ __forceinline__ float fa_f32(float x) { return x; }
__device__ __forceinline__ float fa_f32(uint16_t x) { return __bfloat162float(__ushort_as_bfloat16(x)); }

// Rows [r0, r0 + 64) of a [t, HD] slice (rows ld elements apart) into shared memory as bf16:
// row-major into rm (row stride HD + 8) and/or transposed into tr (row stride 64 + 8), rows at
// or past t as zeros. Every thread of the block takes part.
template <int HD, class E>
__device__ __forceinline__ void fa_load(uint16_t *rm, uint16_t *tr, const E *src, size_t ld, int r0, int t)
{
    for (int i = threadIdx.x; i < 64 * HD; i += FA_THREADS) {
        int r = i / HD, c = i % HD;
        uint16_t x = r0 + r < t ? fa_in(src[(size_t)(r0 + r) * ld + c]) : (uint16_t)0;
        if (rm) rm[r * (HD + 8) + c] = x;
        if (tr) tr[c * (64 + 8) + r] = x;
    }
}

// A fragments of a warp's 16 rows (from row r0 of a row-major tile, stride ld) over the 16
// columns from k0: see mma.cuh.
__device__ __forceinline__ void fa_frag_a(uint32_t a[4], const uint16_t *tile, int ld, int r0, int k0)
{
    int lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const uint16_t *p = tile + (r0 + g) * ld + k0 + 2 * c;
    a[0] = fa_pair(p), a[1] = fa_pair(p + 8 * ld), a[2] = fa_pair(p + 8), a[3] = fa_pair(p + 8 * ld + 8);
}

// B fragment of 8 columns n0.. over k0.. (16 values of k) from a tile stored with the column
// index as its row (B[k][n] at tile[n·ld + k]): row-major K for Kᵀ, a transposed tile for V.
__device__ __forceinline__ void fa_frag_b(uint32_t b[2], const uint16_t *tile, int ld, int n0, int k0)
{
    int lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const uint16_t *p = tile + (n0 + g) * ld + k0 + 2 * c;
    b[0] = fa_pair(p), b[1] = fa_pair(p + 8);
}

// The A fragment (16 columns from 16·j) of the bf16-rounded D fragments of a 16-row block.
__device__ __forceinline__ void fa_frag_from_d(uint32_t a[4], const float (*d)[4], int j)
{
    a[0] = pg_pack_bf16(d[2 * j][0], d[2 * j][1]), a[1] = pg_pack_bf16(d[2 * j][2], d[2 * j][3]);
    a[2] = pg_pack_bf16(d[2 * j + 1][0], d[2 * j + 1][1]), a[3] = pg_pack_bf16(d[2 * j + 1][2], d[2 * j + 1][3]);
}

// The smallest doc_start of rows [r0, r1] (0 without documents); every thread gets it.
__device__ __forceinline__ int fa_first_key(const int32_t *ds, int r0, int r1)
{
    if (!ds) return 0;
    int v = INT_MIN; // the maximum of −doc_start
    for (int i = r0 + (int)threadIdx.x; i <= r1; i += FA_THREADS) v = fa_max(v, -ds[i]);
    return -pg_block_reduce(v, pg_max_op(), INT_MIN);
}

// Sum over the 4 lanes of a group (the lanes holding one row of a D fragment), and max.
__device__ __forceinline__ float fa_quad_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
__device__ __forceinline__ float fa_quad_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

template <int HD> struct fa_smem {
    static constexpr int LD = HD + 8, LDT = 64 + 8;
    static constexpr size_t TILE = 64 * LD, TILE_T = (size_t)HD * LDT; // elements
    static constexpr size_t fwd = (2 * TILE + TILE_T) * 2;               // Q, K, Vᵀ (bytes)
    static constexpr size_t dq = (3 * TILE + TILE_T) * 2;                // Q/dO staging, K, V, Kᵀ
    static constexpr size_t dkdv = (4 * TILE + 2 * TILE_T) * 2 + 3 * 64 * 4; // K, V, Q, dO, Qᵀ, dOᵀ; lse, δ, lo
};

// ---- forward ---------------------------------------------------------------------------------

// QK: the type q and k come in (float, or uint16_t bf16 bits), V v's (likewise: the _x16 entries
// take v in bf16 where nothing else reads it in fp32); dO is float, and O is QK (the _x16 entries
// take it in bf16 in the backward, and write it rounded: autocast's storage). out16, when not
// null, gets O rounded to bf16 too (the projection's operand, flash_fwd_x16).
template <int HD, class QK, class V>
__global__ void __launch_bounds__(FA_THREADS)
    flash_fwd_kernel(float *out, uint16_t *out16, float *lse, const QK *q, const QK *k, const V *v, const int32_t *ds,
                     int t, int h, int kv, float scale)
{
    typedef fa_smem<HD> S;
    PG_DYNAMIC_SMEM(uint16_t, sm);
    uint16_t *sq = sm, *sk = sq + S::TILE, *svt = sk + S::TILE;
    int hi = blockIdx.y, b = blockIdx.z, q0 = blockIdx.x * FA_BM, q_last = fa_min(q0 + FA_BM, t) - 1;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    size_t ldq = (size_t)h * HD, ldk = (size_t)kv * HD;
    const QK *qb = q + (size_t)b * t * ldq + (size_t)hi * HD;
    const QK *kb = k + (size_t)b * t * ldk + (size_t)(hi / (h / kv)) * HD;
    const V *vb = v + (kb - k);
    const int32_t *dsb = ds ? ds + (size_t)b * t : nullptr;
    int first = fa_first_key(dsb, q0, q_last);

    fa_load<HD>(sq, nullptr, qb, ldq, q0, t);
    __syncthreads();
    uint32_t qa[HD / 16][4];
    for (int ks = 0; ks < HD / 16; ks++) fa_frag_a(qa[ks], sq, S::LD, warp * 16, ks * 16);
    int qi[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8}, lo[2];
    for (int r = 0; r < 2; r++) lo[r] = dsb && qi[r] < t ? dsb[qi[r]] : 0;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0, 0}, o[HD / 8][4];
    for (int nt = 0; nt < HD / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0;

    for (int k0 = first / FA_BN * FA_BN; k0 <= q_last; k0 += FA_BN) {
        __syncthreads(); // the previous tile's readers are done with sk, svt
        fa_load<HD>(sk, nullptr, kb, ldk, k0, t);
        fa_load<HD>(nullptr, svt, vb, ldk, k0, t);
        __syncthreads();
        float s[FA_BN / 8][4];
        for (int nt = 0; nt < FA_BN / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0;
            for (int ks = 0; ks < HD / 16; ks++) {
                uint32_t bf[2];
                fa_frag_b(bf, sk, S::LD, nt * 8, ks * 16);
                pg_mma_bf16_16816(s[nt], qa[ks], bf);
            }
        }
        float mx[2] = {-INFINITY, -INFINITY};
        for (int nt = 0; nt < FA_BN / 8; nt++)
            for (int e = 0; e < 4; e++) {
                int r = e >> 1, key = k0 + nt * 8 + 2 * c + (e & 1);
                float x = key <= qi[r] && key >= lo[r] && key < t ? s[nt][e] * scale * FA_LOG2E : -INFINITY;
                s[nt][e] = x;
                mx[r] = fmaxf(mx[r], x);
            }
        float base[2], alpha[2];
        for (int r = 0; r < 2; r++) {
            float mn = fmaxf(m[r], fa_quad_max(mx[r]));
            base[r] = mn == -INFINITY ? 0.0f : mn; // no key yet: every exponential is 0
            alpha[r] = exp2f(m[r] - base[r]);
            m[r] = mn;
            l[r] *= alpha[r];
        }
        for (int nt = 0; nt < FA_BN / 8; nt++)
            for (int e = 0; e < 4; e++) {
                float p = exp2f(s[nt][e] - base[e >> 1]);
                s[nt][e] = p;
                l[e >> 1] += p;
            }
        for (int nt = 0; nt < HD / 8; nt++) o[nt][0] *= alpha[0], o[nt][1] *= alpha[0], o[nt][2] *= alpha[1], o[nt][3] *= alpha[1];
        for (int j = 0; j < FA_BN / 16; j++) {
            uint32_t pa[4];
            fa_frag_from_d(pa, s, j);
            for (int nt = 0; nt < HD / 8; nt++) {
                uint32_t bf[2];
                fa_frag_b(bf, svt, S::LDT, nt * 8, j * 16);
                pg_mma_bf16_16816(o[nt], pa, bf);
            }
        }
    }
    for (int r = 0; r < 2; r++) {
        float sum = fa_quad_sum(l[r]);
        if (qi[r] >= t) continue;
        float inv = 1.0f / sum;
        size_t row = ((size_t)b * t + qi[r]) * ldq + (size_t)hi * HD;
        for (int nt = 0; nt < HD / 8; nt++) {
            float o0 = o[nt][2 * r] * inv, o1 = o[nt][2 * r + 1] * inv;
            if (std::is_same<QK, uint16_t>::value) // the output as autocast stores it (bf16 values)
                o0 = fa_f32(fa_bf16(o0)), o1 = fa_f32(fa_bf16(o1));
            if (out) out[row + nt * 8 + 2 * c] = o0, out[row + nt * 8 + 2 * c + 1] = o1;
            if (out16) out16[row + nt * 8 + 2 * c] = fa_bf16(o0), out16[row + nt * 8 + 2 * c + 1] = fa_bf16(o1);
        }
        if (c == 0) lse[((size_t)b * h + hi) * t + qi[r]] = (m[r] + log2f(sum)) * FA_LN2;
    }
}

// ---- backward: dQ --------------------------------------------------------------------------

// δ of a warp's 16 rows from row r0 (global rows q0 + r0 ..): rowsum(bf(dO) ⊙ O), two lanes a
// row; each lane of the calling warp gets the δ of its fragment rows g and g + 8.
template <int HD, class O>
__device__ __forceinline__ void fa_delta(float dl[2], const float *dob, const O *ob, size_t ld, int row0, int t)
{
    int lane = threadIdx.x & 31, g = lane >> 2, row = row0 + (lane >> 1), half = lane & 1;
    float d = 0;
    if (row < t)
        for (int c = half * (HD / 2); c < (half + 1) * (HD / 2); c++) {
            size_t i = (size_t)row * ld + c;
            d += __bfloat162float(__float2bfloat16(dob[i])) * fa_f32(ob[i]);
        }
    d += __shfl_xor_sync(0xffffffffu, d, 1);
    dl[0] = __shfl_sync(0xffffffffu, d, 2 * g);
    dl[1] = __shfl_sync(0xffffffffu, d, 2 * (g + 8));
}

template <int HD, class QK, class V>
__global__ void __launch_bounds__(FA_THREADS)
    flash_bwd_dq_kernel(float *dq, const float *dout, const QK *out, const float *lse, const QK *q, const QK *k,
                        const V *v, const int32_t *ds, int t, int h, int kv, float scale)
{
    typedef fa_smem<HD> S;
    PG_DYNAMIC_SMEM(uint16_t, sm);
    uint16_t *sst = sm, *sk = sst + S::TILE, *sv = sk + S::TILE, *skt = sv + S::TILE;
    int hi = blockIdx.y, b = blockIdx.z, q0 = blockIdx.x * FA_BM, q_last = fa_min(q0 + FA_BM, t) - 1;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    size_t ldq = (size_t)h * HD, ldk = (size_t)kv * HD, qoff = (size_t)b * t * ldq + (size_t)hi * HD;
    const QK *kb = k + (size_t)b * t * ldk + (size_t)(hi / (h / kv)) * HD;
    const V *vb = v + (kb - k);
    const int32_t *dsb = ds ? ds + (size_t)b * t : nullptr;
    int first = fa_first_key(dsb, q0, q_last);

    uint32_t qa[HD / 16][4], da[HD / 16][4];
    fa_load<HD>(sst, nullptr, q + qoff, ldq, q0, t);
    __syncthreads();
    for (int ks = 0; ks < HD / 16; ks++) fa_frag_a(qa[ks], sst, S::LD, warp * 16, ks * 16);
    __syncthreads();
    fa_load<HD>(sst, nullptr, dout + qoff, ldq, q0, t);
    __syncthreads();
    for (int ks = 0; ks < HD / 16; ks++) fa_frag_a(da[ks], sst, S::LD, warp * 16, ks * 16);
    float dl[2], l2[2];
    fa_delta<HD>(dl, dout + qoff, out + qoff, ldq, q0 + warp * 16, t);
    int qi[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8}, lo[2];
    for (int r = 0; r < 2; r++) {
        lo[r] = dsb && qi[r] < t ? dsb[qi[r]] : 0;
        l2[r] = qi[r] < t ? lse[((size_t)b * h + hi) * t + qi[r]] * FA_LOG2E : 0.0f;
    }
    float acc[HD / 8][4];
    for (int nt = 0; nt < HD / 8; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0;

    for (int k0 = first / FA_BN * FA_BN; k0 <= q_last; k0 += FA_BN) {
        __syncthreads();
        fa_load<HD>(sk, skt, kb, ldk, k0, t);
        fa_load<HD>(sv, nullptr, vb, ldk, k0, t);
        __syncthreads();
        float s[FA_BN / 8][4], dp[FA_BN / 8][4];
        for (int nt = 0; nt < FA_BN / 8; nt++) {
            for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0;
            for (int ks = 0; ks < HD / 16; ks++) {
                uint32_t bf[2];
                fa_frag_b(bf, sk, S::LD, nt * 8, ks * 16);
                pg_mma_bf16_16816(s[nt], qa[ks], bf);
                fa_frag_b(bf, sv, S::LD, nt * 8, ks * 16);
                pg_mma_bf16_16816(dp[nt], da[ks], bf);
            }
            for (int e = 0; e < 4; e++) { // dS = P ⊙ (dP − δ), 0 off the row's keys
                int r = e >> 1, key = k0 + nt * 8 + 2 * c + (e & 1);
                float p = key <= qi[r] && key >= lo[r] && key < t ? exp2f(s[nt][e] * scale * FA_LOG2E - l2[r]) : 0.0f;
                s[nt][e] = p * (dp[nt][e] - dl[r]);
            }
        }
        for (int j = 0; j < FA_BN / 16; j++) {
            uint32_t sa[4];
            fa_frag_from_d(sa, s, j);
            for (int nt = 0; nt < HD / 8; nt++) {
                uint32_t bf[2];
                fa_frag_b(bf, skt, S::LDT, nt * 8, j * 16);
                pg_mma_bf16_16816(acc[nt], sa, bf);
            }
        }
    }
    for (int r = 0; r < 2; r++) {
        if (qi[r] >= t) continue;
        float *row = dq + qoff + (size_t)qi[r] * ldq;
        for (int nt = 0; nt < HD / 8; nt++) {
            row[nt * 8 + 2 * c] = scale * acc[nt][2 * r];
            row[nt * 8 + 2 * c + 1] = scale * acc[nt][2 * r + 1];
        }
    }
}

// ---- backward: dK, dV ------------------------------------------------------------------------

template <int HD, class QK, class V>
__global__ void __launch_bounds__(FA_THREADS)
    flash_bwd_dkdv_kernel(float *dk, float *dv, uint16_t *dv16, const float *dout, const QK *out, const float *lse,
                          const QK *q, const QK *k, const V *v, const int32_t *ds, int t, int h, int kv,
                          float scale)
{
    typedef fa_smem<HD> S;
    PG_DYNAMIC_SMEM(uint16_t, sm);
    uint16_t *sk = sm, *sv = sk + S::TILE, *sq = sv + S::TILE, *sdo = sq + S::TILE, *sqt = sdo + S::TILE;
    uint16_t *sdot = sqt + S::TILE_T;
    float *s_l2 = reinterpret_cast<float *>(sdot + S::TILE_T), *s_dl = s_l2 + 64;
    int *s_lo = reinterpret_cast<int *>(s_dl + 64);
    int kh = blockIdx.y, b = blockIdx.z, k0 = blockIdx.x * FA_BN, k_last = fa_min(k0 + FA_BN, t) - 1, group = h / kv;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    size_t ldq = (size_t)h * HD, ldk = (size_t)kv * HD, koff = (size_t)b * t * ldk + (size_t)kh * HD;
    const int32_t *dsb = ds ? ds + (size_t)b * t : nullptr;

    fa_load<HD>(sk, nullptr, k + koff, ldk, k0, t);
    fa_load<HD>(sv, nullptr, v + koff, ldk, k0, t);
    int key[2] = {k0 + warp * 16 + g, k0 + warp * 16 + g + 8};
    float dka[HD / 8][4], dva[HD / 8][4];
    for (int nt = 0; nt < HD / 8; nt++)
        for (int e = 0; e < 4; e++) dka[nt][e] = dva[nt][e] = 0;

    for (int gi = 0; gi < group; gi++) {
        int hq = kh * group + gi;
        size_t qoff = (size_t)b * t * ldq + (size_t)hq * HD;
        for (int q0 = k0 / FA_BM * FA_BM; q0 < t; q0 += FA_BM) {
            __syncthreads(); // the previous tile's readers are done
            fa_load<HD>(sq, sqt, q + qoff, ldq, q0, t);
            fa_load<HD>(sdo, sdot, dout + qoff, ldq, q0, t);
            { // lse and δ of the tile's 64 rows: two threads a row
                int row = threadIdx.x >> 1, half = threadIdx.x & 1, qr = q0 + row;
                float d = 0;
                if (qr < t)
                    for (int cc = half * (HD / 2); cc < (half + 1) * (HD / 2); cc++) {
                        size_t i = qoff + (size_t)qr * ldq + cc;
                        d += __bfloat162float(__float2bfloat16(dout[i])) * fa_f32(out[i]);
                    }
                d += __shfl_xor_sync(0xffffffffu, d, 1);
                if (!half) {
                    s_dl[row] = d;
                    s_l2[row] = qr < t ? lse[((size_t)b * h + hq) * t + qr] * FA_LOG2E : 0.0f;
                    s_lo[row] = qr >= t ? INT_MAX : dsb ? dsb[qr] : 0; // rows past t see no key
                }
            }
            __syncthreads();
            int tile_lo = INT_MAX; // every row of the tile starts after the last key: skip it
            for (int r = 0; r < FA_BM; r++) tile_lo = fa_min(tile_lo, s_lo[r]);
            if (tile_lo > k_last) continue;
            float st[FA_BM / 8][4], dpt[FA_BM / 8][4];
            for (int nt = 0; nt < FA_BM / 8; nt++) {
                for (int e = 0; e < 4; e++) st[nt][e] = dpt[nt][e] = 0;
                for (int ks = 0; ks < HD / 16; ks++) {
                    uint32_t af[4], bf[2];
                    fa_frag_b(bf, sq, S::LD, nt * 8, ks * 16);
                    fa_frag_a(af, sk, S::LD, warp * 16, ks * 16);
                    pg_mma_bf16_16816(st[nt], af, bf); // Sᵀ = K·Qᵀ
                    fa_frag_b(bf, sdo, S::LD, nt * 8, ks * 16);
                    fa_frag_a(af, sv, S::LD, warp * 16, ks * 16);
                    pg_mma_bf16_16816(dpt[nt], af, bf); // dPᵀ = V·dOᵀ
                }
                for (int e = 0; e < 4; e++) { // Pᵀ in st, dSᵀ = Pᵀ ⊙ (dPᵀ − δ) in dpt
                    int r = e >> 1, col = nt * 8 + 2 * c + (e & 1), qr = q0 + col;
                    float p = key[r] <= qr && key[r] >= s_lo[col] && key[r] < t
                                  ? exp2f(st[nt][e] * scale * FA_LOG2E - s_l2[col])
                                  : 0.0f;
                    st[nt][e] = p;
                    dpt[nt][e] = p * (dpt[nt][e] - s_dl[col]);
                }
            }
            for (int j = 0; j < FA_BM / 16; j++) {
                uint32_t pa[4], sa[4];
                fa_frag_from_d(pa, st, j);
                fa_frag_from_d(sa, dpt, j);
                for (int nt = 0; nt < HD / 8; nt++) {
                    uint32_t bf[2];
                    fa_frag_b(bf, sdot, S::LDT, nt * 8, j * 16);
                    pg_mma_bf16_16816(dva[nt], pa, bf); // dV += Pᵀ·dO
                    fa_frag_b(bf, sqt, S::LDT, nt * 8, j * 16);
                    pg_mma_bf16_16816(dka[nt], sa, bf); // dK += dSᵀ·Q
                }
            }
        }
    }
    for (int r = 0; r < 2; r++) {
        if (key[r] >= t) continue;
        size_t row = koff + (size_t)key[r] * ldk;
        float *kr = dk + row;
        for (int nt = 0; nt < HD / 8; nt++) {
            kr[nt * 8 + 2 * c] = scale * dka[nt][2 * r];
            kr[nt * 8 + 2 * c + 1] = scale * dka[nt][2 * r + 1];
            if (dv16) { // dV in bf16 for its one reader, the v product's backward (which rounds it so)
                dv16[row + nt * 8 + 2 * c] = fa_bf16(dva[nt][2 * r]);
                dv16[row + nt * 8 + 2 * c + 1] = fa_bf16(dva[nt][2 * r + 1]);
            } else {
                dv[row + nt * 8 + 2 * c] = dva[nt][2 * r];
                dv[row + nt * 8 + 2 * c + 1] = dva[nt][2 * r + 1];
            }
        }
    }
}

// ---- launches --------------------------------------------------------------------------------

extern "C" int pg_cuda_flash_supported(int hd) { return hd == 16 || hd == 32 || hd == 64 || hd == 128; }

// Raises a kernel's dynamic shared memory limit past the default 48 KiB, once per kernel.
template <class K> static void fa_allow(K *kernel, size_t bytes, int *done)
{
    if (*done) return;
    PG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    *done = 1;
}

template <int HD, class QK, class V>
static void fa_fwd(float *out, uint16_t *out16, float *lse, const QK *q, const QK *k, const V *v, const int32_t *ds,
                   int b, int t, int h, int kv, float scale)
{
    static int allowed;
    void (*kernel)(float *, uint16_t *, float *, const QK *, const QK *, const V *, const int32_t *, int, int, int,
                   float) = flash_fwd_kernel<HD, QK, V>;
    fa_allow(kernel, fa_smem<HD>::fwd, &allowed);
    dim3 grid((unsigned)((t + FA_BM - 1) / FA_BM), (unsigned)h, (unsigned)b);
    PG_LAUNCH(kernel, grid, FA_THREADS, fa_smem<HD>::fwd, pg_cuda_stream())(out, out16, lse, q, k, v, ds, t, h, kv,
                                                                            scale);
    PG_CUDA_LAUNCHED();
}

template <int HD, class QK, class V>
static void fa_bwd(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const QK *out, const float *lse,
                   const QK *q, const QK *k, const V *v, const int32_t *ds, int b, int t, int h, int kv, float scale)
{
    static int allowed_dq, allowed_dkdv;
    void (*dq_kernel)(float *, const float *, const QK *, const float *, const QK *, const QK *, const V *,
                      const int32_t *, int, int, int, float) = flash_bwd_dq_kernel<HD, QK, V>;
    void (*dkdv_kernel)(float *, float *, uint16_t *, const float *, const QK *, const float *, const QK *, const QK *,
                        const V *, const int32_t *, int, int, int, float) = flash_bwd_dkdv_kernel<HD, QK, V>;
    fa_allow(dq_kernel, fa_smem<HD>::dq, &allowed_dq);
    fa_allow(dkdv_kernel, fa_smem<HD>::dkdv, &allowed_dkdv);
    unsigned tiles = (unsigned)((t + FA_BM - 1) / FA_BM);
    PG_LAUNCH(dq_kernel, dim3(tiles, (unsigned)h, (unsigned)b), FA_THREADS, fa_smem<HD>::dq, pg_cuda_stream())(
        dq, dout, out, lse, q, k, v, ds, t, h, kv, scale);
    PG_CUDA_LAUNCHED();
    PG_LAUNCH(dkdv_kernel, dim3(tiles, (unsigned)kv, (unsigned)b), FA_THREADS, fa_smem<HD>::dkdv, pg_cuda_stream())(
        dk, dv, dv16, dout, out, lse, q, k, v, ds, t, h, kv, scale);
    PG_CUDA_LAUNCHED();
}

// f(std::integral_constant<int, HD>()) for the head dims the kernels are built for, else a
// recorded failure naming the caller.
template <class F> static void by_head_dim(int hd, const char *who, F f)
{
    switch (hd) {
    case 16: f(std::integral_constant<int, 16>()); break;
    case 32: f(std::integral_constant<int, 32>()); break;
    case 64: f(std::integral_constant<int, 64>()); break;
    case 128: f(std::integral_constant<int, 128>()); break;
    default: pg_cuda_failed(cudaErrorInvalidValue, who, __FILE__, __LINE__);
    }
}

template <class QK, class V>
static void flash_fwd(float *out, uint16_t *out16, float *lse, const QK *q, const QK *k, const V *v,
                      const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale, const char *who)
{
    if (b <= 0 || t <= 0 || h <= 0 || kv <= 0) return;
    by_head_dim(hd, who, [&](auto d) {
        fa_fwd<decltype(d)::value>(out, out16, lse, q, k, v, doc_start, b, t, h, kv, (float)scale);
    });
}

template <class QK, class V>
static void flash_bwd(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const QK *out,
                      const float *lse, const QK *q, const QK *k, const V *v, const int32_t *doc_start, int b,
                      int t, int h, int kv, int hd, double scale, const char *who)
{
    if (b <= 0 || t <= 0 || h <= 0 || kv <= 0) return;
    by_head_dim(hd, who, [&](auto d) {
        fa_bwd<decltype(d)::value>(dq, dk, dv, dv16, dout, out, lse, q, k, v, doc_start, b, t, h, kv, (float)scale);
    });
}

extern "C" void pg_cuda_flash_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                                  const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale)
{
    flash_fwd(out, nullptr, lse, q, k, v, doc_start, b, t, h, kv, hd, scale,
              "pg_cuda_flash_fwd: head dim not 16, 32, 64 or 128");
}

extern "C" void pg_cuda_flash_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                  const float *lse, const float *q, const float *k, const float *v,
                                  const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale)
{
    flash_bwd(dq, dk, dv, nullptr, dout, out, lse, q, k, v, doc_start, b, t, h, kv, hd, scale,
              "pg_cuda_flash_bwd: head dim not 16, 32, 64 or 128");
}

// v16, when given, replaces v (the v product kept in bf16 where nothing reads it in fp32).
extern "C" void pg_cuda_flash_fwd_x16(float *out, uint16_t *out16, float *lse, const uint16_t *q16,
                                      const uint16_t *k16, const float *v, const uint16_t *v16,
                                      const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale)
{
    const char *who = "pg_cuda_flash_fwd_x16: head dim not 16, 32, 64 or 128";
    if (v16) flash_fwd(out, out16, lse, q16, k16, v16, doc_start, b, t, h, kv, hd, scale, who);
    else flash_fwd(out, out16, lse, q16, k16, v, doc_start, b, t, h, kv, hd, scale, who);
}

extern "C" void pg_cuda_flash_bwd_x16(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout,
                                      const uint16_t *out16, const float *lse, const uint16_t *q16,
                                      const uint16_t *k16, const float *v, const uint16_t *v16,
                                      const int32_t *doc_start, int b, int t, int h, int kv, int hd, double scale)
{
    const char *who = "pg_cuda_flash_bwd_x16: head dim not 16, 32, 64 or 128";
    if (v16) flash_bwd(dq, dk, dv, dv16, dout, out16, lse, q16, k16, v16, doc_start, b, t, h, kv, hd, scale, who);
    else flash_bwd(dq, dk, dv, dv16, dout, out16, lse, q16, k16, v, doc_start, b, t, h, kv, hd, scale, who);
}
