// cublas.cc: the cuBLAS subset of cublas_emu.h through CBLAS (OpenBLAS): cuBLAS's
// column-major GEMM maps one to one onto cblas_sgemm(CblasColMajor, ...). bf16 operands are
// widened to float first (exact), so a bf16 GEMM is "bf16 inputs, fp32 accumulate" like the
// tensor-core path on the GPU, up to the order of the sums.
#include "cublas_emu.h"

#include <cblas.h>
#include <stdio.h>

#include <new>
#include <vector>

struct pg_emu_cublas {
    cudaStream_t stream;
    cublasMath_t math;
};

namespace {

size_t elem_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

// Checks that a column-major rows×cols operand with leading dimension ld, repeated batch times
// stride elements apart, lies inside one device (or pinned host) allocation; reports and fails
// if not (a GPU would fault).
bool operand_ok(const char *what, const void *p, int rows, int cols, int ld, long long stride, int batch,
                size_t esize)
{
    if (rows == 0 || cols == 0 || batch == 0) return true;
    if (!p || stride < 0) return false;
    size_t last = (size_t)stride * (size_t)(batch - 1) + (size_t)(cols - 1) * (size_t)ld + (size_t)rows;
    if (pg_emu::is_accessible_range(p, last * esize)) return true;
    fprintf(stderr, "cuda-emu: cuBLAS operand %s (%p, %d x %d, ld %d, %d batch(es) %lld apart) is not inside one "
                    "device or pinned allocation\n",
            what, p, rows, cols, ld, batch, stride);
    return false;
}

struct Gemm {
    cublasOperation_t ta, tb;
    int m, n, k;
    float alpha, beta;
    const void *A, *B;
    void *C;
    cudaDataType at, bt, ct;
    int lda, ldb, ldc;
    long long sa, sb, sc;
    int batch;
};

CBLAS_TRANSPOSE cblas_op(cublasOperation_t op) { return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }

// Widens `count` elements of type t at p to float.
void widen(std::vector<float> &out, const void *p, cudaDataType t, size_t count)
{
    out.resize(count);
    if (t == CUDA_R_32F) {
        memcpy(out.data(), p, count * sizeof(float));
        return;
    }
    const __nv_bfloat16 *b = static_cast<const __nv_bfloat16 *>(p);
    for (size_t i = 0; i < count; i++) out[i] = __bfloat162float(b[i]);
}

// Checks g, then (unless only checking) computes it.
cublasStatus_t gemm_now(cublasHandle_t h, const Gemm &g, bool check_only)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (g.ta > CUBLAS_OP_C || g.tb > CUBLAS_OP_C || g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    int ar = g.ta == CUBLAS_OP_N ? g.m : g.k, ac = g.ta == CUBLAS_OP_N ? g.k : g.m;
    int br = g.tb == CUBLAS_OP_N ? g.k : g.n, bc = g.tb == CUBLAS_OP_N ? g.n : g.k;
    if (g.lda < (ar > 1 ? ar : 1) || g.ldb < (br > 1 ? br : 1) || g.ldc < (g.m > 1 ? g.m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    for (cudaDataType t : {g.at, g.bt, g.ct})
        if (t != CUDA_R_32F && t != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (g.at != g.bt || (g.at == CUDA_R_32F && g.ct != CUDA_R_32F)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (g.m == 0 || g.n == 0 || g.batch == 0) return CUBLAS_STATUS_SUCCESS;
    bool reads_ab = g.k > 0 && g.alpha != 0;
    if ((reads_ab && (!operand_ok("A", g.A, ar, ac, g.lda, g.sa, g.batch, elem_size(g.at)) ||
                      !operand_ok("B", g.B, br, bc, g.ldb, g.sb, g.batch, elem_size(g.bt)))) ||
        !operand_ok("C", g.C, g.m, g.n, g.ldc, g.sc, g.batch, elem_size(g.ct)))
        return CUBLAS_STATUS_EXECUTION_FAILED;
    if (check_only) return CUBLAS_STATUS_SUCCESS;
    std::vector<float> a, b, c;
    size_t an = (size_t)(ac - 1) * g.lda + ar, bn = (size_t)(bc - 1) * g.ldb + br, cn = (size_t)(g.n - 1) * g.ldc + g.m;
    for (int i = 0; i < g.batch; i++) {
        const char *ap = (const char *)g.A + (size_t)i * g.sa * elem_size(g.at);
        const char *bp = (const char *)g.B + (size_t)i * g.sb * elem_size(g.bt);
        char *cp = (char *)g.C + (size_t)i * g.sc * elem_size(g.ct);
        float *cf = (float *)cp;
        if (g.ct != CUDA_R_32F) {
            if (g.beta != 0)
                widen(c, cp, g.ct, cn);
            else
                c.assign(cn, 0.0f);
            cf = c.data();
        }
        if (!reads_ab) {
            // C = beta·C; beta = 0 writes zeros without reading C (which may hold NaNs), as BLAS does
            for (int j = 0; j < g.n; j++)
                for (int r = 0; r < g.m; r++) {
                    float &x = cf[(size_t)j * g.ldc + r];
                    x = g.beta == 0 ? 0.0f : g.beta * x;
                }
        } else {
            const float *af = (const float *)ap, *bf = (const float *)bp;
            if (g.at != CUDA_R_32F) {
                widen(a, ap, g.at, an);
                widen(b, bp, g.bt, bn);
                af = a.data();
                bf = b.data();
            }
            cblas_sgemm(CblasColMajor, cblas_op(g.ta), cblas_op(g.tb), g.m, g.n, g.k, g.alpha, af, g.lda, bf, g.ldb,
                        g.beta, cf, g.ldc);
        }
        if (g.ct != CUDA_R_32F) {
            __nv_bfloat16 *co = (__nv_bfloat16 *)cp;
            for (int j = 0; j < g.n; j++)
                for (int r = 0; r < g.m; r++) co[(size_t)j * g.ldc + r] = __float2bfloat16(cf[(size_t)j * g.ldc + r]);
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

// A product now, or, on a captured stream, checked now and recorded for the graph's replay.
cublasStatus_t gemm(cublasHandle_t h, const Gemm &g)
{
    if (!h || !pg_emu::capturing(h->stream)) {
        pg_emu::count_run();
        return gemm_now(h, g, false);
    }
    cublasStatus_t s = gemm_now(h, g, true);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    cudaError_t e = pg_emu::submit(h->stream, [h, g] {
        return gemm_now(h, g, false) == CUBLAS_STATUS_SUCCESS ? cudaSuccess : cudaErrorLaunchFailure;
    });
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

bool compute_ok(cublasComputeType_t t)
{
    return t == CUBLAS_COMPUTE_32F || t == CUBLAS_COMPUTE_32F_FAST_16F || t == CUBLAS_COMPUTE_32F_FAST_16BF ||
           t == CUBLAS_COMPUTE_32F_FAST_TF32;
}

} // namespace

cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new (std::nothrow) pg_emu_cublas{nullptr, CUBLAS_DEFAULT_MATH};
    return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *stream)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream) return CUBLAS_STATUS_INVALID_VALUE;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void *workspace, size_t bytes)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes && !pg_emu::is_device_range(workspace, bytes)) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    }
    return "unknown error";
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc)
{
    return cublasSgemmStridedBatched(handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0,
                                     1);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float *alpha, const float *A, int lda,
                                         long long strideA, const float *B, int ldb, long long strideB,
                                         const float *beta, float *C, int ldc, long long strideC, int batchCount)
{
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    return gemm(handle, Gemm{transa, transb, m, n, k, *alpha, *beta, A, B, C, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, lda,
                             ldb, ldc, strideA, strideB, strideC, batchCount});
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
    return cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0,
                                      beta, C, Ctype, ldc, 0, 1, computeType, algo);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long strideB, const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo)
{
    (void)algo; // the algorithm choice changes speed, not the result's definition
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if (!compute_ok(computeType)) return CUBLAS_STATUS_NOT_SUPPORTED;
    // CUBLAS_COMPUTE_32F*: alpha and beta are floats.
    return gemm(handle, Gemm{transa, transb, m, n, k, *(const float *)alpha, *(const float *)beta, A, B, C, Atype,
                             Btype, Ctype, lda, ldb, ldc, strideA, strideB, strideC, batchCount});
}
