// matmul.cu: the linear layers through cuBLAS, and pg_cuda_gemm, through which every matrix
// product of the backend goes (attention.cu too, and loss.cu through pg_cuda_matmul_fwd/bwd).
// cuBLAS is column-major; a row-major [r, c] matrix is the column-major [c, r] one, i.e. its
// transpose, so with X[n,in], W[out,in], Y[n,out] all row-major:
//   Y = X·Wᵀ    is  Yᵀ[out,n] = W·Xᵀ           gemm(T, N, m=out, n=n,   k=in,  W, X)
//   dX = dY·W   is  dXᵀ[in,n] = Wᵀ·dYᵀ         gemm(N, N, m=in,  n=n,   k=out, W, dY)
//   dW += dYᵀ·X is  dWᵀ[in,out] += Xᵀ·dY       gemm(N, T, m=in,  n=out, k=n,   X, dY)
//
// Precision (lib/backend.h set_bf16). Off (the default): cublasSgemm, true fp32
// (CUBLAS_DEFAULT_MATH: no TF32). On: the records' bf16 autocast. Both fp32 operands are
// converted to bfloat16 (round to nearest even, __float2bfloat16: the CPU's pg_bf16_round) into
// dense copies, and cublasGemmEx multiplies them with CUDA_R_16BF inputs, a CUDA_R_32F output and
// CUBLAS_COMPUTE_32F: tensor cores with fp32 accumulation. The output is not rounded (it stays
// the fp32 accumulator, as the CPU backend's; kernels/cpu/README.md says why), but where autocast
// stores it in bf16 and lib/model.c asks so (matmul_fwd_to16, matmul_fwd_qkv's q16 and k16:
// CUDA_R_16BF output). cublasGemmEx, not cuBLASLt: it takes exactly these types, picks tensor-core
// kernels itself for bf16 inputs, and the emulator implements it, so `make check` runs this path;
// cuBLASLt's extra (epilogue fusion) has no user here yet.
//
// The bf16 copies live in a scratch buffer of this file's own, not pg_cuda_scratch: callers hold
// pg_cuda_scratch across their products (loss.cu keeps its running total there while it calls
// pg_cuda_matmul_fwd/bwd), and a regrowth of either would free what the other still uses. This
// one is live only inside pg_cuda_gemm, from the conversions to the product that reads them;
// the next call's conversions are queued on the same stream after that product, so they cannot
// overwrite its operands early. A regrowth frees the old buffer with cudaFree, which waits for
// the device. (A captured CUDA graph will want the buffer sized before capture.)
#include "pg_cuda.cuh"

#include "ops.h"

int pg_cuda_bf16;
extern "C" void pg_cuda_set_bf16(int on) { pg_cuda_bf16 = on != 0; }
extern "C" int pg_cuda_get_bf16(void) { return pg_cuda_bf16; }

// dst (count dense column-major rows × cols matrices, ld rows, one after the other) = bf16 of
// src (count column-major matrices, ld lds, `stride` elements apart).
__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int rows, int cols, int lds, long long stride,
                               int count)
{
    size_t per = (size_t)rows * cols, n = per * (size_t)count;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t z = i / per, e = i - z * per, c = e / (size_t)rows, r = e - c * (size_t)rows;
        dst[i] = __float2bfloat16(src[(size_t)z * (size_t)stride + c * (size_t)lds + r]);
    }
}

// The dense case (every linear layer's operands): n floats one after the other, four at a time
// (src 16-byte aligned, n a multiple of 4): a pass at the memory's speed, with none of the general
// kernel's index divisions.
__global__ void to_bf16_dense_kernel(uint2 *dst, const float4 *src, size_t n4)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 v = src[i];
        uint2 o;
        o.x = (uint32_t)__bfloat16_as_ushort(__float2bfloat16(v.x)) |
              ((uint32_t)__bfloat16_as_ushort(__float2bfloat16(v.y)) << 16);
        o.y = (uint32_t)__bfloat16_as_ushort(__float2bfloat16(v.z)) |
              ((uint32_t)__bfloat16_as_ushort(__float2bfloat16(v.w)) << 16);
        dst[i] = o;
    }
}

// The bf16 operands' buffer: at least `elems` elements, grown on demand and kept; NULL when the
// device has not that much memory (the failure recorded): the caller then skips its product.
static __nv_bfloat16 *bf16_scratch(size_t elems)
{
    static void *buf;
    static size_t cap;
    return (__nv_bfloat16 *)pg_cuda_grow(&buf, &cap, elems * sizeof(__nv_bfloat16), "the bf16 operands of a product");
}

// The bf16 copies of count column-major rows × cols operands (ld lds, stride apart) at dst, dense.
static void convert(__nv_bfloat16 *dst, const float *src, int rows, int cols, int lds, long long stride, int count)
{
    size_t n = (size_t)rows * cols * (size_t)count;
    int dense = lds == rows && (count == 1 || stride == (long long)rows * cols);
    if (dense && n % 4 == 0 && (uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0) {
        PG_LAUNCH(to_bf16_dense_kernel, pg_cuda_blocks(n / 4, 256), 256, 0,
                  pg_cuda_stream())((uint2 *)dst, (const float4 *)src, n / 4);
        PG_CUDA_LAUNCHED();
        return;
    }
    PG_LAUNCH(to_bf16_kernel, pg_cuda_blocks(n, 256), 256, 0, pg_cuda_stream())(dst, src, rows, cols, lds, stride,
                                                                               count);
    PG_CUDA_LAUNCHED();
}

// count products C_z = alpha·op(A_z)·op(B_z) + beta·C_z, z < count, the operands sa, sb, sc
// elements apart (cublasSgemmStridedBatched's arguments), in fp32, or with bf16 operands when
// set_bf16 is on (see above; the batch's copies are dense, one after the other).
void pg_cuda_gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float *a,
                          int lda, long long sa, const float *b, int ldb, long long sb, float beta, float *c, int ldc,
                          long long sc, int count)
{
    pg_cuda_gemm_prec(pg_cuda_bf16, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, count);
}

void pg_cuda_gemm_prec(int bf16, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                       const float *a, int lda, long long sa, const float *b, int ldb, long long sb, float beta,
                       float *c, int ldc, long long sc, int count)
{
    if (count <= 0 || m <= 0 || n <= 0) return;
    cublasHandle_t blas = pg_cuda_blas();
    if (!bf16 || k <= 0) { // k = 0: C = beta·C, no operand is read
        if (count == 1)
            PG_CUBLAS_CHECK(cublasSgemm(blas, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc));
        else
            PG_CUBLAS_CHECK(cublasSgemmStridedBatched(blas, ta, tb, m, n, k, &alpha, a, lda, sa, b, ldb, sb, &beta, c,
                                                      ldc, sc, count));
        return;
    }
    int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    size_t na = ((size_t)ar * ac * (size_t)count + 127) / 128 * 128; // B starts 256-byte aligned
    __nv_bfloat16 *a16 = bf16_scratch(na + (size_t)br * bc * (size_t)count);
    if (!a16) return;
    __nv_bfloat16 *b16 = a16 + na;
    convert(a16, a, ar, ac, lda, sa, count);
    convert(b16, b, br, bc, ldb, sb, count);
    if (count == 1)
        PG_CUBLAS_CHECK(cublasGemmEx(blas, ta, tb, m, n, k, &alpha, a16, CUDA_R_16BF, ar, b16, CUDA_R_16BF, br, &beta,
                                     c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
        PG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(blas, ta, tb, m, n, k, &alpha, a16, CUDA_R_16BF, ar,
                                                   (long long)ar * ac, b16, CUDA_R_16BF, br, (long long)br * bc, &beta,
                                                   c, CUDA_R_32F, ldc, sc, count, CUBLAS_COMPUTE_32F,
                                                   CUBLAS_GEMM_DEFAULT));
}

void pg_cuda_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    pg_cuda_gemm_batched(ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

extern "C" void pg_cuda_matmul_fwd(float *y, const float *x, const float *w, int n, int in, int out)
{
    if (n <= 0 || out <= 0) return;
    int ld = in > 0 ? in : 1; // in = 0: y = 0 (beta 0), and cuBLAS wants a leading dimension of 1 at least
    pg_cuda_gemm(CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, 1, w, ld, x, ld, 0, y, out);
}

// A linear layer's products on bf16 operands already converted (dense, column-major as below),
// fp32 accumulation and output. Forward: y = x·wᵀ. Backward: dx = dy·w (beta_dx 0 overwrites,
// 1 accumulates; skipped when dx is NULL) and dw += dyᵀ·x (skipped when dw is NULL).
// The output fp32 (yt CUDA_R_32F), or rounded to bf16 (CUDA_R_16BF: matmul_fwd_to16).
static void fwd16_as(void *y, cudaDataType yt, const __nv_bfloat16 *x16, const __nv_bfloat16 *w16, int n, int in,
                     int out)
{
    float one = 1, zero = 0;
    PG_CUBLAS_CHECK(cublasGemmEx(pg_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w16, CUDA_R_16BF, in, x16,
                                 CUDA_R_16BF, in, &zero, y, yt, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void fwd16(float *y, const __nv_bfloat16 *x16, const __nv_bfloat16 *w16, int n, int in, int out)
{
    fwd16_as(y, CUDA_R_32F, x16, w16, n, in, out);
}

static void bwd16(float *dx, float *dw, const __nv_bfloat16 *dy16, const __nv_bfloat16 *x16,
                  const __nv_bfloat16 *w16, int n, int in, int out, float beta_dx)
{
    cublasHandle_t blas = pg_cuda_blas();
    float one = 1;
    if (dx)
        PG_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, w16, CUDA_R_16BF, in, dy16,
                                     CUDA_R_16BF, out, &beta_dx, dx, CUDA_R_32F, in, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
    if (dw)
        PG_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x16, CUDA_R_16BF, in, dy16,
                                     CUDA_R_16BF, out, &one, dw, CUDA_R_32F, in, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
}

// The attention's three products of one input (backend.h matmul_fwd_qkv/bwd_qkv): in bf16 mode x
// is converted once for the three instead of once per product (and once per product again in
// the backward); each product is the one pg_cuda_matmul_fwd / matmul_bwd makes, so the bits are
// theirs. fp32 mode (nothing to convert): the three plain calls. Given in bf16 already, and not
// converted again: x16, the input (the attention norm's bf16 copy, mix_norm_fwd_x16); dq16 and
// dk16 (qk_prep_bwd_x16) and dv16 (the flash backward). q16, k16 and v16, when given, get q, k
// and v rounded to bf16 by cuBLAS (matmul_fwd_to16's bits) instead.
extern "C" void pg_cuda_matmul_fwd_qkv(float *q, float *k, float *v, uint16_t *q16, uint16_t *k16, uint16_t *v16,
                                       const float *x, const uint16_t *x16, const float *wq, const float *wk,
                                       const float *wv, int n, int in, int outq, int outkv)
{
    const int outs[3] = {outq, outkv, outkv};
    float *const ys[3] = {q, k, v};
    uint16_t *const y16s[3] = {q16, k16, v16};
    const float *const ws[3] = {wq, wk, wv};
    if (!pg_cuda_bf16 || n <= 0 || in <= 0) {
        for (int i = 0; i < 3; i++)
            if (y16s[i]) pg_cuda_matmul_fwd_to16(y16s[i], x16 ? NULL : x, x16, ws[i], n, in, outs[i]);
            else if (x16) pg_cuda_matmul_fwd_x16(ys[i], x16, ws[i], n, in, outs[i]);
            else pg_cuda_matmul_fwd(ys[i], x, ws[i], n, in, outs[i]);
        return;
    }
    size_t nx = x16 ? 0 : ((size_t)n * in + 127) / 128 * 128;
    __nv_bfloat16 *a16 = bf16_scratch(nx + (size_t)(outq > outkv ? outq : outkv) * in);
    if (!a16) return;
    __nv_bfloat16 *w16 = a16 + nx;
    const __nv_bfloat16 *xa = x16 ? (const __nv_bfloat16 *)x16 : a16;
    if (!x16) convert(a16, x, in, n, in, 0, 1);
    for (int i = 0; i < 3; i++) {
        if (outs[i] <= 0) continue;
        convert(w16, ws[i], in, outs[i], in, 0, 1); // after the previous product, in stream order
        if (y16s[i]) fwd16_as(y16s[i], CUDA_R_16BF, xa, w16, n, in, outs[i]);
        else fwd16(ys[i], xa, w16, n, in, outs[i]);
    }
}

extern "C" void pg_cuda_matmul_bwd_qkv(float *dx, float *dwq, float *dwk, float *dwv, const float *dq, const float *dk,
                                       const float *dv, const uint16_t *dq16, const uint16_t *dk16,
                                       const uint16_t *dv16, const float *x, const uint16_t *x16, const float *wq,
                                       const float *wk, const float *wv, int n, int in, int outq, int outkv,
                                       int dx_accumulate)
{
    const int outs[3] = {outq, outkv, outkv};
    float *const dws[3] = {dwq, dwk, dwv};
    const float *const ws[3] = {wq, wk, wv}, *const dys[3] = {dq, dk, dv};
    const uint16_t *const given[3] = {dq16, dk16, dv16};
    if (!pg_cuda_bf16 || n <= 0 || in <= 0 || outq <= 0 || outkv <= 0 || !dx || !dwq || !dwk || !dwv) {
        for (int i = 0; i < 3; i++) {
            int acc = i > 0 || dx_accumulate;
            if (given[i] || x16)
                pg_cuda_matmul_bwd_16(dx, dws[i], given[i] ? NULL : dys[i], given[i], x16 ? NULL : x, x16, ws[i], n,
                                      in, outs[i], acc);
            else pg_cuda_matmul_bwd(dx, dws[i], dys[i], x, ws[i], n, in, outs[i], acc);
        }
        return;
    }
    const int most = outq > outkv ? outq : outkv;
    size_t nx = x16 ? 0 : ((size_t)n * in + 127) / 128 * 128, nw = ((size_t)most * in + 127) / 128 * 128;
    __nv_bfloat16 *a16 = bf16_scratch(nx + nw + (size_t)n * most);
    if (!a16) return;
    __nv_bfloat16 *w16 = a16 + nx, *dy16 = w16 + nw;
    const __nv_bfloat16 *xa = x16 ? (const __nv_bfloat16 *)x16 : a16;
    if (!x16) convert(a16, x, in, n, in, 0, 1);
    for (int i = 0; i < 3; i++) {
        convert(w16, ws[i], in, outs[i], in, 0, 1);
        if (!given[i]) convert(dy16, dys[i], outs[i], n, outs[i], 0, 1);
        const __nv_bfloat16 *g = given[i] ? (const __nv_bfloat16 *)given[i] : dy16;
        bwd16(dx, dws[i], g, xa, w16, n, in, outs[i], i > 0 || dx_accumulate ? 1.0f : 0.0f);
    }
}

// The products of a layer whose input x, or output gradient dy, comes in bf16 from the kernel
// that made it (backend.h matmul_fwd_x16 / matmul_bwd_16: the MLP's activation and its
// gradient), only the other operands converted; matmul_bwd_16 with neither given is also
// pg_cuda_matmul_bwd's bf16 path.
extern "C" void pg_cuda_matmul_fwd_x16(float *y, const uint16_t *x16, const float *w, int n, int in, int out)
{
    if (n <= 0 || out <= 0) return;
    if (in <= 0) { // an empty sum: y = 0, what the fp32 path's beta 0 gives
        PG_CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)n * out * sizeof *y, pg_cuda_stream()));
        return;
    }
    __nv_bfloat16 *w16 = bf16_scratch((size_t)out * in);
    if (!w16) return;
    convert(w16, w, in, out, in, 0, 1);
    fwd16(y, (const __nv_bfloat16 *)x16, w16, n, in, out);
}

// The MLP's first product as autocast stores it: the accumulator rounded to bf16 by cuBLAS on
// writing (the bits of the fp32 product and then round_bf16), from x or from x16 when given.
extern "C" void pg_cuda_matmul_fwd_to16(uint16_t *y16, const float *x, const uint16_t *x16, const float *w, int n,
                                        int in, int out)
{
    if (n <= 0 || out <= 0) return;
    if (in <= 0) { // an empty sum: y = 0 (bf16 +0 is all zero bits)
        PG_CUDA_CHECK(cudaMemsetAsync(y16, 0, (size_t)n * out * sizeof *y16, pg_cuda_stream()));
        return;
    }
    size_t nw = ((size_t)out * in + 127) / 128 * 128, nx = x16 ? 0 : (size_t)n * in;
    __nv_bfloat16 *w16 = bf16_scratch(nw + nx);
    if (!w16) return;
    convert(w16, w, in, out, in, 0, 1);
    const __nv_bfloat16 *a16 = (const __nv_bfloat16 *)x16;
    if (!x16) {
        convert(w16 + nw, x, in, n, in, 0, 1);
        a16 = w16 + nw;
    }
    fwd16_as(y16, CUDA_R_16BF, a16, w16, n, in, out);
}

extern "C" void pg_cuda_matmul_bwd_16(float *dx, float *dw, const float *dy, const uint16_t *dy16, const float *x,
                                      const uint16_t *x16, const float *w, int n, int in, int out, int dx_accumulate)
{
    if (n <= 0 || in <= 0 || out <= 0) return;
    // the operands to convert here, one scratch: w (for dx), dy unless given, x (for dw) unless given
    size_t nw = dx ? ((size_t)out * in + 127) / 128 * 128 : 0;
    size_t ndy = dy16 ? 0 : ((size_t)n * out + 127) / 128 * 128, nx = x16 || !dw ? 0 : (size_t)n * in;
    __nv_bfloat16 *w16 = bf16_scratch(nw + ndy + nx + 1);
    if (!w16) return;
    const __nv_bfloat16 *g16 = (const __nv_bfloat16 *)dy16, *a16 = (const __nv_bfloat16 *)x16;
    if (dx) convert(w16, w, in, out, in, 0, 1);
    if (!dy16) {
        convert(w16 + nw, dy, out, n, out, 0, 1);
        g16 = w16 + nw;
    }
    if (dw && !x16) {
        convert(w16 + nw + ndy, x, in, n, in, 0, 1);
        a16 = w16 + nw + ndy;
    }
    bwd16(dx, dw, g16, a16, w16, n, in, out, dx_accumulate ? 1.0f : 0.0f);
}

extern "C" void pg_cuda_matmul_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int n, int in,
                                   int out, int dx_accumulate)
{
    if (n <= 0 || in <= 0 || out <= 0) return;
    if (pg_cuda_bf16 && dx && dw) { // dy converted once for both products
        pg_cuda_matmul_bwd_16(dx, dw, dy, NULL, x, NULL, w, n, in, out, dx_accumulate);
        return;
    }
    if (dx) pg_cuda_gemm(CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, 1, w, in, dy, out, dx_accumulate ? 1 : 0, dx, in);
    if (dw) pg_cuda_gemm(CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, 1, x, in, dy, out, 1, dw, in);
}
