// attention.cu: causal grouped-query attention, forward and backward, as the CPU reference
// computes it (kernels/cpu/attention.c): per (batch, query head), through cuBLAS,
//   S = scale·Q·Kᵀ,  P = causal softmax of S by rows (saving each row's log-sum-exp),  O = P·V;
// the backward recomputes P from Q, K and the log-sum-exp:
//   dV += Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dO ⊙ O)),  dQ = scale·dS·K,  dK += scale·dSᵀ·Q.
// Query head h reads kv head h / (H/KV). The [T,T] matrices live in the caller's scratch
// (pg_cuda_attention_work): one head at a time, for up to chunk_seqs(T) sequences at once (about
// 256 MiB of P and dP), each product one strided-batched cuBLAS call over those sequences and
// each row kernel one launch over all their rows, so a micro-batch of 64 sequences of 1024
// tokens and 8 heads takes 16 rounds per layer instead of 512. In bf16 mode, with a head dim
// of 16, 32, 64 or 128, the operations run the fused kernels of flash.cu instead, which never
// store P; this path stays for fp32 and the other head dims, and for comparison (PG_FLASH=0).
// Varlen attention (spec §2.2) masks each row i to its document's keys [doc_start[i], i] inside
// the softmax kernels (the products stay full [T,T]); plain attention is doc_start NULL.
//
// Row-major [r, c] is column-major [c, r] for cuBLAS; with Q, K, V, O rows strided by
// ldq = H·hd and ldk = KV·hd, and P, dP row-major [T queries, T keys] (column-major [keys,
// queries], ld T):
//   S      = K·Qᵀ in column-major: gemm(T, N, m=T, n=T, k=hd, A=K, B=Q)
//   O      = P·V                  gemm(N, N, m=hd, n=T, k=T, A=V, B=P)
//   dV    += Pᵀ·dO                gemm(N, T, m=hd, n=T, k=T, A=dO, B=P)
//   dP     = dO·Vᵀ                gemm(T, N, m=T, n=T, k=hd, A=V, B=dO)
//   dQ     = dS·K                 gemm(N, N, m=hd, n=T, k=T, A=K, B=dS)
//   dK    += dSᵀ·Q                gemm(N, T, m=hd, n=T, k=T, A=Q, B=dS)
//
// Every product goes through pg_cuda_gemm (matmul.cu), so in bf16 mode (lib/backend.h set_bf16)
// each takes bf16 copies of its two operands, as PyTorch's bf16 SDPA (flash attention) does and
// as the CPU reference rounds them: S = scale·bf(Q)·bf(K)ᵀ accumulated in fp32, the softmax and
// lse in fp32, O = bf(P)·bf(V); backward dV += bf(P)ᵀ·bf(dO), dP = bf(dO)·bf(V)ᵀ, dS = P ⊙ (dP −
// rowsum(bf(dO) ⊙ O)) from the fp32 P, dP and O (dO rounded as dP's product saw it, so Σ_j dS_ij
// stays 0 up to rounding), dQ = scale·bf(dS)·bf(K), dK += scale·bf(dS)ᵀ·bf(Q). P and dS stay
// fp32 in the caller's work; their bf16 copies are pg_cuda_gemm's.
#include "pg_cuda.cuh"

#include "ops.h"

#include <stdlib.h>
#include <string.h>

// Sequences whose [t,t] P and dP the scratch holds at once: about 2^26 floats (256 MiB) of them,
// 1 to 64 sequences.
static int chunk_cap; // pg_cuda_attention_max_chunk (tests): 0, or fewer sequences per round

static int chunk_seqs(int t)
{
    size_t per = 2 * (size_t)t * (size_t)t, g = ((size_t)1 << 26) / (per ? per : 1);
    int n = g < 1 ? 1 : g > 64 ? 64 : (int)g;
    return chunk_cap > 0 && chunk_cap < n ? chunk_cap : n;
}

extern "C" void pg_cuda_attention_max_chunk(int seqs) { chunk_cap = seqs > 0 ? seqs : 0; }

// Flash attention (flash.cu) in bf16 mode: on unless pg_cuda_attention_flash(0) or PG_FLASH=0.
static int flash_choice = -1; // -1: not decided yet (the environment decides)

extern "C" void pg_cuda_attention_flash(int on) { flash_choice = on != 0; }

static int use_flash(int hd)
{
    if (flash_choice < 0) {
        const char *e = getenv("PG_FLASH");
        flash_choice = !(e && strcmp(e, "0") == 0);
    }
    return pg_cuda_bf16 && flash_choice && pg_cuda_flash_supported(hd);
}

extern "C" int pg_cuda_attention_x16(int hd) { return use_flash(hd); }

extern "C" size_t pg_cuda_attention_work(int t) { return (size_t)chunk_seqs(t) * 2 * (size_t)t * (size_t)t; }

extern "C" size_t pg_cuda_attention_table_work(int t)
{
    (void)t;
    return 0;
}

// The batched products' scratch: the caller's, or (work NULL: the model's, which keeps none)
// the backend's shared scratch, grown on demand; NULL with the failure recorded.
static float *work_or_scratch(float *work, int t)
{
    return work ? work : (float *)pg_cuda_scratch(pg_cuda_attention_work(t) * sizeof(float));
}

// Row i (blockIdx.x) of sequence z (blockIdx.y) of a chunk: p is [t, t] per sequence, t·t apart;
// the row's log-sum-exp at lse[z·lse_stride + i]; its document starts at ds[z·t + i] (ds NULL:
// plain causal rows). The softmax of the scores [lo, i], their log-sum-exp computed into lse when
// `compute`, else taken from it; the rest of the row is zeroed (keys of other documents:
// probability exactly 0).
__global__ void softmax_rows_kernel(float *p, float *lse, size_t lse_stride, const int32_t *ds, int t, int compute)
{
    int i = blockIdx.x, z = blockIdx.y, lo = ds ? ds[(size_t)z * t + i] : 0;
    float *row = p + ((size_t)z * t + i) * t;
    float *l_out = lse + (size_t)z * lse_stride + i;
    if (compute) {
        float m = -INFINITY;
        for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) m = fmaxf(m, row[j]);
        m = pg_block_max(m);
        double sum = 0;
        for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) {
            float e = expf(row[j] - m);
            row[j] = e;
            sum += e;
        }
        sum = pg_block_sum(sum);
        float inv = (float)(1.0 / sum);
        for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) row[j] *= inv; // the thread's own entries
        if (threadIdx.x == 0) *l_out = m + (float)log(sum);
    } else {
        float l = *l_out;
        for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) row[j] = expf(row[j] - l);
    }
    for (int j = threadIdx.x; j < lo; j += blockDim.x) row[j] = 0;
    for (int j = i + 1 + threadIdx.x; j < t; j += blockDim.x) row[j] = 0;
}

// Row i of sequence z: p becomes dS = P ⊙ (dP − Σ_c dO_ic·O_ic) over its keys [lo, i] (lo as
// above), 0 elsewhere; dO and O rows are ld apart, sequences t·ld apart. bf16: dO as the bf16
// products see it (rounded), as the CPU's.
__global__ void softmax_bwd_rows_kernel(float *p, const float *dp, const float *dout, const float *out,
                                        const int32_t *ds, int t, int hd, int ld, int bf16)
{
    int i = blockIdx.x, z = blockIdx.y, lo = ds ? ds[(size_t)z * t + i] : 0;
    size_t r = (size_t)z * t + i;
    const float *o = out + r * ld, *g = dout + r * ld;
    double d = 0;
    for (int c = threadIdx.x; c < hd; c += blockDim.x)
        d += (double)(bf16 ? __bfloat162float(__float2bfloat16(g[c])) : g[c]) * o[c];
    float delta = (float)pg_block_sum(d);
    float *pr = p + r * t;
    const float *dr = dp + r * t;
    for (int j = threadIdx.x; j < t; j += blockDim.x) pr[j] = j >= lo && j <= i ? pr[j] * (dr[j] - delta) : 0.0f;
}

static unsigned row_threads(int t)
{
    unsigned n = ((unsigned)t + 31) / 32 * 32;
    return n > 256 ? 256 : n;
}

// One round: head hi of sequences b0 .. b0 + g − 1.
struct round_ {
    size_t qo, ko;         // the first sequence's offsets into q/out/dq and k/v/dk/dv
    long long sq, sk, spp; // sequence strides: q rows, k rows, a [t,t] matrix
    const int32_t *ds;     // the first sequence's doc_start, or NULL
    float *lse;            // the first sequence's log-sum-exp row of head hi
    size_t lse_stride;     // between sequences: h·t
    int g;
};

static round_ round_at(int b0, int g, int hi, int t, int h, int group, int hd, int ldq, int ldk,
                       const int32_t *doc_start, float *lse)
{
    round_ r;
    r.qo = (size_t)b0 * t * ldq + (size_t)hi * hd;
    r.ko = (size_t)b0 * t * ldk + (size_t)(hi / group) * hd;
    r.sq = (long long)t * ldq, r.sk = (long long)t * ldk, r.spp = (long long)t * t;
    r.ds = doc_start ? doc_start + (size_t)b0 * t : nullptr;
    r.lse = lse + ((size_t)b0 * h + hi) * t;
    r.lse_stride = (size_t)h * t;
    r.g = g;
    return r;
}

// p = softmax(scale·q·kᵀ) for one round, each row over its document's keys.
static void probs(float *p, const round_ &r, int compute, const float *q, int ldq, const float *k, int ldk, int t,
                  int hd, float scale)
{
    pg_cuda_gemm_batched(CUBLAS_OP_T, CUBLAS_OP_N, t, t, hd, scale, k + r.ko, ldk, r.sk, q + r.qo, ldq, r.sq, 0, p, t,
                         r.spp, r.g);
    PG_LAUNCH(softmax_rows_kernel, dim3((unsigned)t, (unsigned)r.g), row_threads(t), 0,
              pg_cuda_stream())(p, r.lse, r.lse_stride, r.ds, t, compute);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_attention_varlen_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                                             const int32_t *doc_start, int b, int t, int h, int kv, int hd,
                                             double scale, float *work)
{
    if (b <= 0 || t <= 0 || h <= 0 || kv <= 0 || hd <= 0) return;
    if (use_flash(hd)) return pg_cuda_flash_fwd(out, lse, q, k, v, doc_start, b, t, h, kv, hd, scale);
    int group = h / kv, ldq = h * hd, ldk = kv * hd, chunk = chunk_seqs(t);
    if (!(work = work_or_scratch(work, t))) return;
    for (int b0 = 0; b0 < b; b0 += chunk)
        for (int hi = 0; hi < h; hi++) {
            int g = b - b0 < chunk ? b - b0 : chunk;
            round_ r = round_at(b0, g, hi, t, h, group, hd, ldq, ldk, doc_start, lse);
            probs(work, r, 1, q, ldq, k, ldk, t, hd, (float)scale);
            pg_cuda_gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, hd, t, t, 1, v + r.ko, ldk, r.sk, work, t, r.spp, 0,
                                 out + r.qo, ldq, r.sq, g);
        }
}

extern "C" void pg_cuda_attention_varlen_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                             const float *lse, const float *q, const float *k, const float *v,
                                             const int32_t *doc_start, int b, int t, int h, int kv, int hd,
                                             double scale, float *work)
{
    if (b <= 0 || t <= 0 || h <= 0 || kv <= 0 || hd <= 0) return;
    if (use_flash(hd)) return pg_cuda_flash_bwd(dq, dk, dv, dout, out, lse, q, k, v, doc_start, b, t, h, kv, hd, scale);
    int group = h / kv, ldq = h * hd, ldk = kv * hd, chunk = chunk_seqs(t);
    if (!(work = work_or_scratch(work, t))) return;
    const float sc = (float)scale;
    float *p = work, *dp = work + (size_t)chunk * t * t;
    for (int b0 = 0; b0 < b; b0 += chunk)
        for (int hi = 0; hi < h; hi++) {
            int g = b - b0 < chunk ? b - b0 : chunk;
            round_ r = round_at(b0, g, hi, t, h, group, hd, ldq, ldk, doc_start, (float *)lse);
            const float beta = hi % group == 0 ? 0 : 1; // dK, dV: the group's first head overwrites
            probs(p, r, 0, q, ldq, k, ldk, t, hd, sc);
            pg_cuda_gemm_batched(CUBLAS_OP_N, CUBLAS_OP_T, hd, t, t, 1, dout + r.qo, ldq, r.sq, p, t, r.spp, beta,
                                 dv + r.ko, ldk, r.sk, g);
            pg_cuda_gemm_batched(CUBLAS_OP_T, CUBLAS_OP_N, t, t, hd, 1, v + r.ko, ldk, r.sk, dout + r.qo, ldq, r.sq, 0,
                                 dp, t, r.spp, g);
            PG_LAUNCH(softmax_bwd_rows_kernel, dim3((unsigned)t, (unsigned)g), row_threads(hd), 0, pg_cuda_stream())(
                p, dp, dout + r.qo, out + r.qo, r.ds, t, hd, ldq, pg_cuda_bf16);
            PG_CUDA_LAUNCHED();
            pg_cuda_gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, hd, t, t, sc, k + r.ko, ldk, r.sk, p, t, r.spp, 0,
                                 dq + r.qo, ldq, r.sq, g);
            pg_cuda_gemm_batched(CUBLAS_OP_N, CUBLAS_OP_T, hd, t, t, sc, q + r.qo, ldq, r.sq, p, t, r.spp, beta,
                                 dk + r.ko, ldk, r.sk, g);
        }
}

// Plain causal attention is varlen attention with one document per sequence.
extern "C" void pg_cuda_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int b,
                                      int t, int h, int kv, int hd, double scale, float *work)
{
    pg_cuda_attention_varlen_fwd(out, lse, q, k, v, nullptr, b, t, h, kv, hd, scale, work);
}

extern "C" void pg_cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                      const float *lse, const float *q, const float *k, const float *v, int b, int t,
                                      int h, int kv, int hd, double scale, float *work)
{
    pg_cuda_attention_varlen_bwd(dq, dk, dv, dout, out, lse, q, k, v, nullptr, b, t, h, kv, hd, scale, work);
}
