// cublas_lazy.cu: cuBLAS loaded on first use (see cublas_lazy.h). nvcc's builds only: the
// emulator's cuBLAS is linked directly.
#ifdef __CUDACC__
#define PG_CUBLAS_LAZY_IMPL
#include "pg_cuda.cuh"

#include <dlfcn.h>
#include <mutex>
#include <stdio.h>

#ifndef PG_CUBLAS_SONAME
#define PG_CUBLAS_SONAME "libcublas.so"
#endif

namespace {
struct table {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetWorkspace_v2) set_workspace;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasSgemmStridedBatched) sgemm_sb;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                              const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
    cublasStatus_t (*gemm_sb_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                                 const void *, cudaDataType, int, long long, const void *, cudaDataType, int,
                                 long long, const void *, void *, cudaDataType, int, long long, int,
                                 cublasComputeType_t, cublasGemmAlgo_t);
    decltype(&cublasGetStatusName) status_name;
    decltype(&cublasGetStatusString) status_string;
};
table fn;
std::once_flag loaded;
char why[512];

template <class F> bool find(void *lib, const char *name, F &f)
{
    f = (F)dlsym(lib, name);
    if (!f) snprintf(why, sizeof why, "%s has no %s", PG_CUBLAS_SONAME, name);
    return f != nullptr;
}

// Loads the toolkit's libcublas (the soname the build linked its tests against, else the plain
// name) and looks up every function; on any failure none is used and `why` says what.
void load()
{
    void *lib = dlopen(PG_CUBLAS_SONAME, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) lib = dlopen("libcublas.so", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "cannot load %s: %s", PG_CUBLAS_SONAME, e ? e : "not found");
        return;
    }
    table t;
    if (find(lib, "cublasCreate_v2", t.create) && find(lib, "cublasSetStream_v2", t.set_stream) &&
        find(lib, "cublasSetWorkspace_v2", t.set_workspace) &&
        find(lib, "cublasSgemm_v2", t.sgemm) && find(lib, "cublasSgemmStridedBatched", t.sgemm_sb) &&
        find(lib, "cublasGemmEx", t.gemm_ex) && find(lib, "cublasGemmStridedBatchedEx", t.gemm_sb_ex) &&
        find(lib, "cublasGetStatusName", t.status_name) && find(lib, "cublasGetStatusString", t.status_string))
        fn = t;
}

bool ready()
{
    std::call_once(loaded, load);
    return fn.create != nullptr;
}
} // namespace

cublasStatus_t pg_lazy_cublasCreate(cublasHandle_t *handle)
{
    if (ready()) return fn.create(handle);
    // recorded as the backend's failure, with the loader's reason as the call
    pg_cublas_check_(CUBLAS_STATUS_NOT_INITIALIZED, why, __FILE__, __LINE__);
    return CUBLAS_STATUS_SUCCESS; // already recorded: the caller's own check must not record again
}

cublasStatus_t pg_lazy_cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    return ready() ? fn.set_stream(h, s) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t pg_lazy_cublasSetWorkspace(cublasHandle_t h, void *w, size_t bytes)
{
    return ready() ? fn.set_workspace(h, w, bytes) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t pg_lazy_cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const float *alpha, const float *A, int lda, const float *B, int ldb,
                                   const float *beta, float *C, int ldc)
{
    return ready() ? fn.sgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t pg_lazy_cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const float *alpha, const float *A, int lda,
                                                 long long sA, const float *B, int ldb, long long sB,
                                                 const float *beta, float *C, int ldc, long long sC, int count)
{
    return ready() ? fn.sgemm_sb(h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, count)
                   : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t pg_lazy_cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                    const void *alpha, const void *A, cudaDataType At, int lda, const void *B,
                                    cudaDataType Bt, int ldb, const void *beta, void *C, cudaDataType Ct, int ldc,
                                    cublasComputeType_t ct, cublasGemmAlgo_t algo)
{
    return ready() ? fn.gemm_ex(h, ta, tb, m, n, k, alpha, A, At, lda, B, Bt, ldb, beta, C, Ct, ldc, ct, algo)
                   : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t pg_lazy_cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                  int n, int k, const void *alpha, const void *A, cudaDataType At,
                                                  int lda, long long sA, const void *B, cudaDataType Bt, int ldb,
                                                  long long sB, const void *beta, void *C, cudaDataType Ct, int ldc,
                                                  long long sC, int count, cublasComputeType_t ct,
                                                  cublasGemmAlgo_t algo)
{
    return ready() ? fn.gemm_sb_ex(h, ta, tb, m, n, k, alpha, A, At, lda, sA, B, Bt, ldb, sB, beta, C, Ct, ldc, sC,
                                   count, ct, algo)
                   : CUBLAS_STATUS_NOT_INITIALIZED;
}

const char *pg_lazy_cublasGetStatusName(cublasStatus_t s)
{
    return ready() ? fn.status_name(s) : "CUBLAS_STATUS_NOT_INITIALIZED";
}

const char *pg_lazy_cublasGetStatusString(cublasStatus_t s)
{
    return ready() ? fn.status_string(s) : "cuBLAS could not be loaded";
}
#endif
