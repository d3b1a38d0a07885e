// matmul.cu: the linear layers through cuBLAS (fp32 for now: CUBLAS_DEFAULT_MATH is true fp32,
// no TF32). cuBLAS is column-major; a row-major [r, c] matrix is the column-major [c, r] one,
// i.e. its transpose, so with X[n,in], W[out,in], Y[n,out] all row-major:
//   Y = X·Wᵀ    is  Yᵀ[out,n] = W·Xᵀ           gemm(T, N, m=out, n=n,   k=in,  W, X)
//   dX = dY·W   is  dXᵀ[in,n] = Wᵀ·dYᵀ         gemm(N, N, m=in,  n=n,   k=out, W, dY)
//   dW += dYᵀ·X is  dWᵀ[in,out] += Xᵀ·dY       gemm(N, T, m=in,  n=out, k=n,   X, dY)
#include "pg_cuda.cuh"

#include "ops.h"

extern "C" void pg_cuda_matmul_fwd(float *y, const float *x, const float *w, int n, int in, int out)
{
    if (n <= 0 || out <= 0) return;
    const float one = 1, zero = 0;
    PG_CUBLAS_CHECK(cublasSgemm(pg_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, in, x, in, &zero, y,
                                out));
}

extern "C" void pg_cuda_matmul_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int n, int in,
                                   int out, int dx_accumulate)
{
    if (n <= 0 || in <= 0 || out <= 0) return;
    const float one = 1, zero = 0;
    if (dx)
        PG_CUBLAS_CHECK(cublasSgemm(pg_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, w, in, dy, out,
                                    dx_accumulate ? &one : &zero, dx, in));
    if (dw)
        PG_CUBLAS_CHECK(cublasSgemm(pg_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x, in, dy, out, &one,
                                    dw, in));
}

// Not yet used: every product is fp32 (lib/backend.h set_bf16).
int pg_cuda_bf16;
extern "C" void pg_cuda_set_bf16(int on) { pg_cuda_bf16 = on != 0; }
