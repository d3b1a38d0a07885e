// attention.cu: causal grouped-query attention, forward and backward, as the CPU reference
// computes it (kernels/cpu/attention.c): per (batch, query head), through cuBLAS,
//   S = scale·Q·Kᵀ,  P = causal softmax of S by rows (saving each row's log-sum-exp),  O = P·V;
// the backward recomputes P from Q, K and the log-sum-exp:
//   dV += Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dO ⊙ O)),  dQ = scale·dS·K,  dK += scale·dSᵀ·Q.
// Query head h reads kv head h / (H/KV). The [T,T] matrices live in the caller's scratch
// (pg_cuda_attention_work), one head at a time. This is the plain version the emulator tests
// against the CPU; a fused (flash) kernel that never stores P is the fast path to come.
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
#include "pg_cuda.cuh"

#include "ops.h"

static unsigned row_threads(int t)
{
    unsigned n = ((unsigned)t + 31) / 32 * 32;
    return n > 256 ? 256 : n;
}

// Row i of p [t, t]: the softmax of its scores [lo, i], lo = ds[i] (the first key of the row's
// document; 0 when ds is NULL), their log-sum-exp computed into lse[i] when `compute`, else taken
// from lse[i]; the rest of the row is zeroed (keys of other documents: probability exactly 0).
__global__ void softmax_rows_kernel(float *p, float *lse, const int32_t *ds, int t, int compute)
{
    int i = blockIdx.x, lo = ds ? ds[i] : 0;
    float *row = p + (size_t)i * t;
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
        if (threadIdx.x == 0) lse[i] = m + (float)log(sum);
    } else {
        float l = lse[i];
        for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) row[j] = expf(row[j] - l);
    }
    for (int j = threadIdx.x; j < lo; j += blockDim.x) row[j] = 0;
    for (int j = i + 1 + threadIdx.x; j < t; j += blockDim.x) row[j] = 0;
}

// Row i of p becomes dS = P ⊙ (dP − Σ_c dO_ic·O_ic) over its keys [lo, i] (lo as above), 0 elsewhere.
__global__ void softmax_bwd_rows_kernel(float *p, const float *dp, const float *dout, const float *out,
                                        const int32_t *ds, int t, int hd, int ld)
{
    int i = blockIdx.x, lo = ds ? ds[i] : 0;
    const float *o = out + (size_t)i * ld, *g = dout + (size_t)i * ld;
    double d = 0;
    for (int c = threadIdx.x; c < hd; c += blockDim.x) d += (double)g[c] * o[c];
    float delta = (float)pg_block_sum(d);
    float *pr = p + (size_t)i * t;
    const float *dr = dp + (size_t)i * t;
    for (int j = threadIdx.x; j < t; j += blockDim.x) pr[j] = j >= lo && j <= i ? pr[j] * (dr[j] - delta) : 0.0f;
}

extern "C" size_t pg_cuda_attention_work(int t) { return 2 * (size_t)t * (size_t)t; }

// p = softmax(scale·q·kᵀ) for one head, each row over its document's keys (ds: the sequence's
// doc_start, or NULL for plain causal rows); rows of q and k strided by ldq, ldk.
static void probs(float *p, float *lse, int compute, const float *q, int ldq, const float *k, int ldk,
                  const int32_t *ds, int t, int hd, float scale)
{
    const float zero = 0;
    PG_CUBLAS_CHECK(cublasSgemm(pg_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, t, t, hd, &scale, k, ldk, q, ldq, &zero, p,
                                t));
    PG_LAUNCH(softmax_rows_kernel, t, row_threads(t), 0, pg_cuda_stream())(p, lse, ds, t, compute);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_attention_varlen_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                                             const int32_t *doc_start, int b, int t, int h, int kv, int hd,
                                             double scale, float *work)
{
    if (b <= 0 || t <= 0 || h <= 0 || kv <= 0 || hd <= 0) return;
    int group = h / kv, ldq = h * hd, ldk = kv * hd;
    const float one = 1, zero = 0;
    for (int bi = 0; bi < b; bi++)
        for (int hi = 0; hi < h; hi++) {
            size_t qo = (size_t)bi * t * ldq + (size_t)hi * hd, ko = (size_t)bi * t * ldk + (size_t)(hi / group) * hd;
            const int32_t *ds = doc_start ? doc_start + (size_t)bi * t : nullptr;
            probs(work, lse + ((size_t)bi * h + hi) * t, 1, q + qo, ldq, k + ko, ldk, ds, t, hd, (float)scale);
            PG_CUBLAS_CHECK(cublasSgemm(pg_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_N, hd, t, t, &one, v + ko, ldk, work, t,
                                        &zero, out + qo, ldq));
        }
}

extern "C" void pg_cuda_attention_varlen_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                             const float *lse, const float *q, const float *k, const float *v,
                                             const int32_t *doc_start, int b, int t, int h, int kv, int hd,
                                             double scale, float *work)
{
    if (b <= 0 || t <= 0 || h <= 0 || kv <= 0 || hd <= 0) return;
    int group = h / kv, ldq = h * hd, ldk = kv * hd;
    float *p = work, *dp = work + (size_t)t * t;
    const float one = 1, zero = 0, sc = (float)scale;
    cublasHandle_t blas = pg_cuda_blas();
    for (int bi = 0; bi < b; bi++)
        for (int hi = 0; hi < h; hi++) {
            size_t qo = (size_t)bi * t * ldq + (size_t)hi * hd, ko = (size_t)bi * t * ldk + (size_t)(hi / group) * hd;
            const int32_t *ds = doc_start ? doc_start + (size_t)bi * t : nullptr;
            const float *beta = hi % group == 0 ? &zero : &one; // dK, dV: the group's first head overwrites
            probs(p, (float *)lse + ((size_t)bi * h + hi) * t, 0, q + qo, ldq, k + ko, ldk, ds, t, hd, sc);
            PG_CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, hd, t, t, &one, dout + qo, ldq, p, t, beta,
                                        dv + ko, ldk));
            PG_CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, t, t, hd, &one, v + ko, ldk, dout + qo, ldq,
                                        &zero, dp, t));
            PG_LAUNCH(softmax_bwd_rows_kernel, t, row_threads(hd), 0, pg_cuda_stream())(p, dp, dout + qo, out + qo, ds,
                                                                                        t, hd, ldq);
            PG_CUDA_LAUNCHED();
            PG_CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, t, t, &sc, k + ko, ldk, p, t, &zero,
                                        dq + qo, ldq));
            PG_CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, hd, t, t, &sc, q + qo, ldq, p, t, beta, dk + ko,
                                        ldk));
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
