// cublas_lazy.h: cuBLAS through dlopen, for nvcc's builds (pg_cuda.cuh includes it there).
//
// Why: libcublasLt, which libcublas loads, is hundreds of megabytes; a program linked against it
// spends ~0.4 s loading it at every start (twice when the CPU tuning re-executes the command),
// although a command on the CPU never calls it. The commands therefore do not link cuBLAS: the
// first cuBLAS call of the CUDA backend (pg_cuda_blas's cublasCreate) loads it, and every call
// goes through a pointer looked up then (cublas_lazy.cu). A machine without the library gets the
// backend's usual failure report (pg_cuda_status: "cuda: cannot load libcublas.so.13: ...").
//
// The names below replace the ones the kernels call, with cuBLAS's own prototypes, so calls are
// checked as before. The emulator (make check) has its own cuBLAS and does not include this.
#ifndef PG_CUBLAS_LAZY_H
#define PG_CUBLAS_LAZY_H

#include <cublas_v2.h>

cublasStatus_t pg_lazy_cublasCreate(cublasHandle_t *handle);
cublasStatus_t pg_lazy_cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t pg_lazy_cublasSetWorkspace(cublasHandle_t handle, void *workspace, size_t bytes);
cublasStatus_t pg_lazy_cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                   int n, int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                                   const float *beta, float *C, int ldc);
cublasStatus_t pg_lazy_cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                 cublasOperation_t transb, int m, int n, int k, const float *alpha,
                                                 const float *A, int lda, long long strideA, const float *B, int ldb,
                                                 long long strideB, const float *beta, float *C, int ldc,
                                                 long long strideC, int batchCount);
cublasStatus_t pg_lazy_cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                    int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
                                    const void *B, cudaDataType Btype, int ldb, const void *beta, void *C,
                                    cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                                    cublasGemmAlgo_t algo);
cublasStatus_t pg_lazy_cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                                  cublasOperation_t transb, int m, int n, int k, const void *alpha,
                                                  const void *A, cudaDataType Atype, int lda, long long strideA,
                                                  const void *B, cudaDataType Btype, int ldb, long long strideB,
                                                  const void *beta, void *C, cudaDataType Ctype, int ldc,
                                                  long long strideC, int batchCount, cublasComputeType_t computeType,
                                                  cublasGemmAlgo_t algo);
const char *pg_lazy_cublasGetStatusName(cublasStatus_t status);
const char *pg_lazy_cublasGetStatusString(cublasStatus_t status);

#ifndef PG_CUBLAS_LAZY_IMPL
#undef cublasCreate
#undef cublasSetStream
#undef cublasSetWorkspace
#undef cublasSgemm
#define cublasCreate pg_lazy_cublasCreate
#define cublasSetStream pg_lazy_cublasSetStream
#define cublasSetWorkspace pg_lazy_cublasSetWorkspace
#define cublasSgemm pg_lazy_cublasSgemm
#define cublasSgemmStridedBatched pg_lazy_cublasSgemmStridedBatched
#define cublasGemmEx pg_lazy_cublasGemmEx
#define cublasGemmStridedBatchedEx pg_lazy_cublasGemmStridedBatchedEx
#define cublasGetStatusName pg_lazy_cublasGetStatusName
#define cublasGetStatusString pg_lazy_cublasGetStatusString
#endif

#endif
