// test_cuda_emu.cu: the CUDA semantics the kernels rely on, checked where they run. Built twice
// (Makefile): against kernels/emu as test_cuda_emu, in every `make check`, where it shows that
// the emulator's barriers, warp exchanges, atomics, shared memory, launch limits, runtime and
// cuBLAS behave as CUDA specifies; and by nvcc as test_cuda_emu_gpu, where the same checks run
// on the hardware, so any difference between emulator and GPU shows up as a failure there.
// A few checks only make sense on one side and say so (#ifdef PG_CUDA_EMU).
#include "../../kernels/cuda/pg_cuda.cuh"

#include "../tap.h"

#include <stdlib.h>
#include <string.h>

#ifdef PG_CUDA_EMU
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

// A failed set-up call ends the test with the call named (the checks themselves use ok()).
#define CK(call)                                                                                                   \
    do {                                                                                                           \
        cudaError_t e_ = (call);                                                                                   \
        if (e_ != cudaSuccess) {                                                                                   \
            ok(0, "%s: %s", #call, cudaGetErrorString(e_));                                                        \
            exit(done_testing());                                                                                  \
        }                                                                                                          \
    } while (0)

template <class T> static T *dev_alloc(size_t n)
{
    T *p = nullptr;
    CK(cudaMalloc(&p, n * sizeof(T)));
    return p;
}

template <class T> static void upload(T *d, const T *h, size_t n)
{
    CK(cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice));
}

template <class T> static void download(T *h, const T *d, size_t n)
{
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(h, d, n * sizeof(T), cudaMemcpyDeviceToHost));
}

// ---- __syncthreads: a shared-memory tree reduction is right only with real barriers ----------

__global__ void tree_sum_kernel(float *out, const float *in, int barriers)
{
    __shared__ float sh[256];
    int t = threadIdx.x;
    sh[t] = in[blockIdx.x * 256 + t];
    if (barriers) __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (t < s) sh[t] += sh[t + s];
        if (barriers) __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = sh[0];
}

static void test_barrier(void)
{
    enum { BLOCKS = 6 };
    float h[BLOCKS * 256], out[BLOCKS], want[BLOCKS];
    float *d_in = dev_alloc<float>(BLOCKS * 256), *d_out = dev_alloc<float>(BLOCKS);
    for (int round = 0; round < 2; round++) {
        // values of a different size in every block and round, so that stale shared memory
        // (of an earlier block on the same OS thread) cannot add up to a right answer
        for (int b = 0; b < BLOCKS; b++) {
            want[b] = 0;
            for (int t = 0; t < 256; t++)
                want[b] += h[b * 256 + t] = (float)((b + 1 + 10 * round) * 1024 + (t * 7 + b * 3) % 17);
        }
        upload(d_in, h, BLOCKS * 256);
        int barriers = round == 0;
        PG_LAUNCH(tree_sum_kernel, BLOCKS, 256, 0, 0)(d_out, d_in, barriers);
        CK(cudaGetLastError());
        download(out, d_out, BLOCKS);
        int right = 0;
        for (int b = 0; b < BLOCKS; b++) right += out[b] == want[b];
        if (barriers)
            is_int(right, BLOCKS, "__syncthreads: a shared-memory tree sum of 256 threads is exact in all %d blocks",
                   BLOCKS);
#ifdef PG_CUDA_EMU
        else // the test-only switch: the same tree without its barriers must go wrong
            ok(right == 0, "without the barriers the tree sum is wrong in every block (%d right): the barrier test can "
                           "fail", right);
#else
        else
            diag("without barriers, %d of %d blocks happened to be right on this GPU", right, BLOCKS);
#endif
    }
    CK(cudaFree(d_in));
    CK(cudaFree(d_out));
}

// ---- warp operations ----------------------------------------------------------------------------

enum { WARP_OUT = 9 };

__global__ void warp_kernel(int *out, float *fout)
{
    const unsigned full = 0xffffffffu;
    int lane = threadIdx.x & 31, *o = out + threadIdx.x * WARP_OUT;
    int v = lane + 1;
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(full, v, m); // butterfly: all lanes get the sum
    o[0] = v;
    v = lane + 1;
    for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(full, v, d); // lane 0 gets the sum
    o[1] = v;
    v = lane + 1;
    for (int d = 1; d < 32; d <<= 1) { // inclusive scan
        int u = __shfl_up_sync(full, v, d);
        if (lane >= d) v += u;
    }
    o[2] = v;
    o[3] = __shfl_sync(full, lane * 3, 7); // broadcast
    v = lane;
    for (int m = 4; m > 0; m >>= 1) v += __shfl_xor_sync(full, v, m, 8); // sums within groups of 8
    o[4] = v;
    o[5] = (int)__ballot_sync(full, lane % 3 == 0);
    o[6] = __shfl_down_sync(full, lane, 5, 16); // beyond the 16-lane segment: own value
    // a half-warp exchange: only lanes 0-15 take part
    o[7] = lane < 16 ? __shfl_xor_sync(0x0000ffffu, lane, 1) : -1;
    o[8] = __all_sync(full, lane < 32) + 2 * __any_sync(full, lane == 31);
    float f = 0.5f * (float)lane;
    fout[threadIdx.x] = pg_warp_sum(f);
}

static void test_warp(void)
{
    enum { T = 64 };
    int *d = dev_alloc<int>(T * WARP_OUT), h[T * WARP_OUT];
    float *fd = dev_alloc<float>(T), fh[T];
    PG_LAUNCH(warp_kernel, 1, T, 0, 0)(d, fd);
    CK(cudaGetLastError());
    download(h, d, T * WARP_OUT);
    download(fh, fd, T);
    int bad[WARP_OUT] = {0}, fbad = 0;
    for (int t = 0; t < T; t++) {
        int l = t % 32, *o = h + t * WARP_OUT;
        unsigned ballot = 0;
        for (int i = 0; i < 32; i += 3) ballot |= 1u << i;
        bad[0] += o[0] != 528;
        bad[1] += l == 0 && o[1] != 528;
        bad[2] += o[2] != (l + 1) * (l + 2) / 2;
        bad[3] += o[3] != 21;
        bad[4] += o[4] != (l / 8) * 64 + 28;
        bad[5] += (unsigned)o[5] != ballot;
        bad[6] += o[6] != ((l % 16) + 5 < 16 ? l + 5 : l);
        bad[7] += o[7] != (l < 16 ? l ^ 1 : -1);
        bad[8] += o[8] != 3;
        fbad += fh[t] != 248.0f;
    }
    is_int(bad[0], 0, "__shfl_xor_sync butterfly: every lane of both warps has the sum 528");
    is_int(bad[1], 0, "__shfl_down_sync reduction: lane 0 has the sum");
    is_int(bad[2], 0, "__shfl_up_sync inclusive scan");
    is_int(bad[3], 0, "__shfl_sync broadcast from lane 7");
    is_int(bad[4], 0, "__shfl_xor_sync with width 8 sums each group of 8 lanes");
    is_int(bad[5], 0, "__ballot_sync");
    is_int(bad[6], 0, "__shfl_down_sync past a 16-lane segment returns the caller's value");
    is_int(bad[7], 0, "a shuffle among a half-warp mask while the other half does not take part");
    is_int(bad[8], 0, "__all_sync and __any_sync");
    is_int(fbad, 0, "pg_warp_sum of floats: every lane gets the same sum");
    CK(cudaFree(d));
    CK(cudaFree(fd));
}

// ---- pg_block_reduce: every thread gets the block's sum and maximum, call after call ------------

enum { REDUCE_CALLS = 3 };

// Three reductions in a row (the shared slots reused at once), each thread writing what it got.
__global__ void block_reduce_kernel(float *out)
{
    float x = (float)(threadIdx.x + 1), *o = out + threadIdx.x;
    o[0] = pg_block_sum(x);
    o[1024] = pg_block_max(x == 7 ? 5000.0f : x);
    o[2048] = pg_block_sum(2 * x);
}

static void test_block_reduce(void)
{
    static const unsigned threads[] = {32, 96, 256, 1024};
    float *d = dev_alloc<float>(1024 * REDUCE_CALLS);
    static float h[1024 * REDUCE_CALLS];
    for (unsigned n : threads) {
        PG_LAUNCH(block_reduce_kernel, 1, n, 0, 0)(d);
        CK(cudaGetLastError());
        download(h, d, 1024 * REDUCE_CALLS);
        float sum = (float)n * (n + 1) / 2, most = n >= 7 ? 5000.0f : (float)n;
        int bad[REDUCE_CALLS] = {0};
        for (unsigned t = 0; t < n; t++) {
            bad[0] += h[t] != sum;
            bad[1] += h[1024 + t] != most;
            bad[2] += h[2048 + t] != 2 * sum;
        }
        ok(bad[0] == 0 && bad[1] == 0 && bad[2] == 0,
           "pg_block_sum, pg_block_max, pg_block_sum in a row over %u threads: every thread gets each result "
           "(wrong: %d, %d, %d)",
           n, bad[0], bad[1], bad[2]);
    }
    CK(cudaFree(d));
}

// ---- atomics, big blocks, big grids, dynamic shared memory ----------------------------------------

__global__ void atomic_kernel(int *count, float *fsum, int *maxv)
{
    int id = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(count, 1);
    atomicAdd(fsum, 1.0f); // integers below 2^24 add exactly in any order
    atomicMax(maxv, (id * 7919) % 10007);
}

static void test_atomics(void)
{
    int *count = dev_alloc<int>(2), hc[2] = {0, 0};
    float *fsum = dev_alloc<float>(1), hf = 0;
    upload(count, hc, 2);
    upload(fsum, &hf, 1);
    PG_LAUNCH(atomic_kernel, 64, 128, 0, 0)(count, fsum, count + 1);
    CK(cudaGetLastError());
    download(hc, count, 2);
    download(&hf, fsum, 1);
    int want_max = 0;
    for (int id = 0; id < 64 * 128; id++) want_max = want_max > (id * 7919) % 10007 ? want_max : (id * 7919) % 10007;
    is_int(hc[0], 64 * 128, "atomicAdd(int) from 8192 threads in 64 blocks");
    ok(hf == 8192.0f, "atomicAdd(float) from 8192 threads (%g)", hf);
    is_int(hc[1], want_max, "atomicMax(int)");
    CK(cudaFree(count));
    CK(cudaFree(fsum));
}

__global__ void big_block_kernel(int *sum, int *ids)
{
    int s = pg_block_sum((int)threadIdx.x + 1);
    sum[threadIdx.x] = s;
    ids[threadIdx.x] = threadIdx.x + 1000 * (blockDim.x == 1024);
}

static void test_big_block(void)
{
    int *sum = dev_alloc<int>(1024), *ids = dev_alloc<int>(1024);
    static int hs[1024], hi[1024];
    PG_LAUNCH(big_block_kernel, 1, 1024, 0, 0)(sum, ids);
    CK(cudaGetLastError());
    download(hs, sum, 1024);
    download(hi, ids, 1024);
    int bad = 0;
    for (int t = 0; t < 1024; t++) bad += hs[t] != 1024 * 1025 / 2 || hi[t] != t + 1000;
    is_int(bad, 0, "a block of 1024 threads: every thread runs and pg_block_sum gives all of them the total");
    CK(cudaFree(sum));
    CK(cudaFree(ids));
}

__global__ void grid_kernel(int *hits, int *coords)
{
    size_t b = ((size_t)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    size_t t = ((size_t)threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    size_t id = b * blockDim.x * blockDim.y * blockDim.z + t;
    atomicAdd(&hits[id], 1);
    if (t == 0) coords[b] = (int)(blockIdx.x + 100 * blockIdx.y + 10000 * blockIdx.z);
}

static void test_grid(void)
{
    const dim3 grid(37, 5, 3), block(4, 8, 2);
    const size_t nb = 37 * 5 * 3, n = nb * 64;
    int *hits = dev_alloc<int>(n), *coords = dev_alloc<int>(nb);
    int *h = (int *)calloc(n, sizeof *h), *hc = (int *)malloc(nb * sizeof *hc);
    if (!h || !hc) exit(1);
    upload(hits, h, n);
    PG_LAUNCH(grid_kernel, grid, block, 0, 0)(hits, coords);
    CK(cudaGetLastError());
    download(h, hits, n);
    download(hc, coords, nb);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += h[i] != 1;
    for (size_t b = 0; b < nb; b++) bad += hc[b] != (int)(b % 37 + 100 * (b / 37 % 5) + 10000 * (b / 185));
    is_int(bad, 0, "a 37x5x3 grid of 4x8x2 blocks: every thread runs once with its own blockIdx/threadIdx");
    free(h);
    free(hc);
    CK(cudaFree(hits));
    CK(cudaFree(coords));
}

__global__ void reverse_kernel(float *out, const float *in, int n)
{
    PG_DYNAMIC_SMEM(float, s);
    for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = in[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = s[n - 1 - i];
}

static void test_dynamic_smem(void)
{
    enum { N = 16384 }; // 64 KiB: more than the default 48 KiB limit
    float *h = (float *)malloc(N * sizeof *h), *r = (float *)malloc(N * sizeof *r);
    if (!h || !r) exit(1);
    for (int i = 0; i < N; i++) h[i] = (float)i;
    float *in = dev_alloc<float>(N), *out = dev_alloc<float>(N);
    upload(in, h, N);
    PG_LAUNCH(reverse_kernel, 1, 256, 1000 * sizeof(float), 0)(out, in, 1000);
    CK(cudaGetLastError());
    download(r, out, 1000);
    int bad = 0;
    for (int i = 0; i < 1000; i++) bad += r[i] != h[999 - i];
    is_int(bad, 0, "dynamic shared memory: a block reverses 1000 floats through it");

    PG_LAUNCH(reverse_kernel, 1, 256, N * sizeof(float), 0)(out, in, N);
    is_int(cudaGetLastError(), cudaErrorInvalidValue, "64 KiB of dynamic shared memory without opting in is refused");
    CK(cudaFuncSetAttribute(reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, N * sizeof(float)));
    PG_LAUNCH(reverse_kernel, 1, 256, N * sizeof(float), 0)(out, in, N);
    CK(cudaGetLastError());
    download(r, out, N);
    bad = 0;
    for (int i = 0; i < N; i++) bad += r[i] != h[N - 1 - i];
    is_int(bad, 0, "after cudaFuncSetAttribute, 64 KiB of dynamic shared memory works");
    free(h);
    free(r);
    CK(cudaFree(in));
    CK(cudaFree(out));
}

// ---- launch errors, runtime, bf16, cuBLAS --------------------------------------------------------

__global__ void noop_kernel(int *p)
{
    if (p) p[0] = 1;
}

static void test_launch_errors(void)
{
    PG_LAUNCH(noop_kernel, 1, 1025, 0, 0)(nullptr);
    is_int(cudaGetLastError(), cudaErrorInvalidConfiguration, "a block of 1025 threads is an invalid configuration");
    is_int(cudaGetLastError(), cudaSuccess, "cudaGetLastError clears a configuration error");
    PG_LAUNCH(noop_kernel, 0, 32, 0, 0)(nullptr);
    is_int(cudaGetLastError(), cudaErrorInvalidConfiguration, "an empty grid is an invalid configuration");
    PG_LAUNCH(noop_kernel, dim3(1, 65536), 32, 0, 0)(nullptr);
    is_int(cudaGetLastError(), cudaErrorInvalidConfiguration, "gridDim.y of 65536 is an invalid configuration");
}

static void test_runtime(void)
{
    int count = 0;
    CK(cudaGetDeviceCount(&count));
    ok(count >= 1, "cudaGetDeviceCount reports a device (%d)", count);
    unsigned char *d = dev_alloc<unsigned char>(1000), h[1000];
    CK(cudaMemset(d, 0x5a, 1000));
    download(h, d, 1000);
    int bad = 0;
    for (int i = 0; i < 1000; i++) bad += h[i] != 0x5a;
    is_int(bad, 0, "cudaMemset, then cudaMemcpy back");
    int x = 0;
    ok(cudaFree(&x) != cudaSuccess, "cudaFree of a host pointer fails");
    cudaGetLastError();
    int *pinned = nullptr;
    CK(cudaMallocHost((void **)&pinned, sizeof *pinned));
    *pinned = 0;
    PG_LAUNCH(noop_kernel, 1, 1, 0, 0)(pinned);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    is_int(*pinned, 1, "a kernel writes pinned host memory (cudaMallocHost, unified addressing)");
    CK(cudaFreeHost(pinned));
#ifdef PG_CUDA_EMU
    is_int(cudaMemcpy(h, d, 1001, cudaMemcpyDeviceToHost), cudaErrorInvalidValue,
           "emulator: a copy reaching past the end of an allocation fails");
    cudaGetLastError();
    PG_LAUNCH(noop_kernel, 1, 1, 0, 0)(&x);
    is_int(cudaGetLastError(), cudaErrorIllegalAddress, "emulator: a host pointer as kernel argument fails the launch");
    is_int(x, 0, "... and the kernel did not run");
#endif
    CK(cudaFree(d));
}

__global__ void bf16_kernel(unsigned short *out, const float *in, int n)
{
    int i = threadIdx.x;
    if (i < n) out[i] = __bfloat16_as_ushort(__float2bfloat16(in[i]));
}

static void test_bf16(void)
{
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even one, 1; 1 + 3·2^-8 is
    // halfway between odd 1 + 2^-7 and even 1 + 2^-6
    const float in[] = {1.0f, 1.00390625f, 1.01171875f, 1.00390625f + 0x1p-20f, -0.0f, 3.4028235e38f, -2.5f};
    const unsigned short want[] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x8000, 0x7f80, 0xc020};
    enum { N = sizeof in / sizeof *in };
    int bad = 0;
    for (int i = 0; i < N; i++) bad += __bfloat16_as_ushort(__float2bfloat16(in[i])) != want[i];
    is_int(bad, 0, "__float2bfloat16 rounds to nearest even (host)");
    float nan = __bfloat162float(__float2bfloat16(nanf("")));
    ok(nan != nan, "NaN stays NaN");
    ok(__bfloat162float(__float2bfloat16(1.01171875f)) == 1.015625f, "__bfloat162float widens exactly");
    float *d_in = dev_alloc<float>(N);
    unsigned short *d_out = dev_alloc<unsigned short>(N), h[N];
    upload(d_in, in, N);
    PG_LAUNCH(bf16_kernel, 1, 32, 0, 0)(d_out, d_in, (int)N);
    CK(cudaGetLastError());
    download(h, d_out, N);
    bad = 0;
    for (int i = 0; i < N; i++) bad += h[i] != want[i];
    is_int(bad, 0, "__float2bfloat16 rounds to nearest even (device)");
    CK(cudaFree(d_in));
    CK(cudaFree(d_out));
}

// C[m,n] = op(A)·op(B) in column-major, in double, for the cuBLAS checks.
static void ref_gemm(double *c, const float *a, const float *b, int m, int n, int k, int ta, int tb, int lda, int ldb)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)(ta ? a[i * lda + p] : a[p * lda + i]) * (tb ? b[p * ldb + j] : b[j * ldb + p]);
            c[j * m + i] = s;
        }
}

static unsigned long long seed = 12345;
static float frand(void)
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(seed >> 11) * 0x1.0p-53 * 2 - 1);
}

static void test_cublas(void)
{
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        ok(0, "cublasCreate");
        return;
    }
    enum { M = 13, N = 7, K = 21, LD = 24, SZ = LD * LD + 8 * LD }; // room for the batches' strides
    float a[SZ], b[SZ], c[M * N];
    double want[M * N];
    for (int i = 0; i < SZ; i++) a[i] = frand(), b[i] = frand();
    float *da = dev_alloc<float>(SZ), *db = dev_alloc<float>(SZ), *dc = dev_alloc<float>(M * N);
    upload(da, a, SZ);
    upload(db, b, SZ);
    const float one = 1, zero = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            cublasStatus_t s = cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, M, N, K,
                                           &one, da, LD, db, LD, &zero, dc, M);
            download(c, dc, M * N);
            ref_gemm(want, a, b, M, N, K, ta, tb, LD, LD);
            double worst = 0;
            for (int i = 0; i < M * N; i++) worst = fmax(worst, fabs(c[i] - want[i]));
            ok(s == CUBLAS_STATUS_SUCCESS && worst < 1e-5, "cublasSgemm op(A)=%c op(B)=%c, ld 24: |err| %.2e",
               ta ? 'T' : 'N', tb ? 'T' : 'N', worst);
        }
    // bf16 inputs, fp32 output and accumulation
    __nv_bfloat16 ab[LD * LD], bb[LD * LD];
    float ar[LD * LD], br[LD * LD];
    for (int i = 0; i < LD * LD; i++) {
        ab[i] = __float2bfloat16(a[i]), ar[i] = __bfloat162float(ab[i]);
        bb[i] = __float2bfloat16(b[i]), br[i] = __bfloat162float(bb[i]);
    }
    __nv_bfloat16 *dab = dev_alloc<__nv_bfloat16>(LD * LD), *dbb = dev_alloc<__nv_bfloat16>(LD * LD);
    upload(dab, ab, LD * LD);
    upload(dbb, bb, LD * LD);
    cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, &one, dab, CUDA_R_16BF, LD, dbb, CUDA_R_16BF,
                                    LD, &zero, dc, CUDA_R_32F, M, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    download(c, dc, M * N);
    ref_gemm(want, ar, br, M, N, K, 1, 0, LD, LD);
    double worst = 0;
    for (int i = 0; i < M * N; i++) worst = fmax(worst, fabs(c[i] - want[i]));
    ok(s == CUBLAS_STATUS_SUCCESS && worst < 1e-5, "cublasGemmEx bf16 x bf16 -> fp32: |err| %.2e", worst);
    // strided batches: two products at once, beta = 1 accumulates
    float *dc2 = dev_alloc<float>(2 * M * N), c2[2 * M * N];
    CK(cudaMemset(dc2, 0, sizeof c2));
    s = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &one, da, LD, LD * 4, db, LD, LD * 8, &one, dc2,
                                  M, M * N, 2);
    download(c2, dc2, 2 * M * N);
    worst = 0;
    for (int bt = 0; bt < 2; bt++) {
        ref_gemm(want, a + bt * LD * 4, b + bt * LD * 8, M, N, K, 0, 0, LD, LD);
        for (int i = 0; i < M * N; i++) worst = fmax(worst, fabs(c2[bt * M * N + i] - want[i]));
    }
    ok(s == CUBLAS_STATUS_SUCCESS && worst < 1e-5, "cublasSgemmStridedBatched, 2 batches: |err| %.2e", worst);
#ifdef PG_CUDA_EMU
    s = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &one, a, LD, db, LD, &zero, dc, M);
    ok(s != CUBLAS_STATUS_SUCCESS, "emulator: a host operand makes cublasSgemm fail");
#endif
    ok(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &one, da, M - 1, db, LD, &zero, dc, M) ==
           CUBLAS_STATUS_INVALID_VALUE,
       "cublasSgemm refuses lda < m");
    cublasDestroy(h);
    CK(cudaFree(da));
    CK(cudaFree(db));
    CK(cudaFree(dc));
    CK(cudaFree(dab));
    CK(cudaFree(dbb));
    CK(cudaFree(dc2));
}

// ---- emulator only: a deadlock is reported, not hung --------------------------------------------

#ifdef PG_CUDA_EMU
__global__ void deadlock_kernel(int *p)
{
    // lane 0 waits at the block barrier for lanes 1-31, which wait for lane 0 in __syncwarp
    if ((threadIdx.x & 31) == 0)
        __syncthreads();
    else
        __syncwarp();
    if (p) p[threadIdx.x] = 1;
}

__global__ void exited_lane_kernel(int *p)
{
    if (threadIdx.x == 3) return;
    p[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

// Runs a launch in a child process; @return its termination signal (0 if it exited).
static int child_signal(void (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

// ---- emulator only: the warp-wide gather behind mma.cuh's fallback --------------------------------

enum { GATHERS = 3 };

// GATHERS gathers in a row, a shuffle between two of them, each lane depositing 3 words that
// name the gather, its warp and its lane; bad[thread] counts the words it read wrong.
__global__ void gather_kernel(int *bad)
{
    unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int wrong = 0;
    for (unsigned g = 0; g < GATHERS; g++) {
        uint32_t mine[3] = {g, warp, lane * 7 + g};
        const unsigned char *all = (const unsigned char *)pg_emu::warp_gather(mine, sizeof mine);
        for (unsigned src = 0; src < 32; src++) {
            uint32_t got[3];
            memcpy(got, all + src * pg_emu::GATHER_BYTES, sizeof got);
            wrong += got[0] != g || got[1] != warp || got[2] != src * 7 + g;
        }
        if (g == 1) wrong += __shfl_xor_sync(0xffffffffu, (int)lane, 1) != (int)(lane ^ 1);
    }
    bad[blockIdx.x * blockDim.x + threadIdx.x] = wrong;
}

// A gather by lanes 0-15 while lanes 16-31 wait in a shuffle; a gather in a block of 16 threads.
__global__ void gather_diverged_kernel(int *p)
{
    uint32_t x = threadIdx.x;
    if (threadIdx.x < 16) p[threadIdx.x] = (int)*(const uint32_t *)pg_emu::warp_gather(&x, sizeof x);
    else p[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)x, 1);
}

__global__ void gather_partial_kernel(int *p)
{
    uint32_t x = threadIdx.x;
    p[threadIdx.x] = (int)*(const uint32_t *)pg_emu::warp_gather(&x, sizeof x);
}

static void test_gather(void)
{
    enum { T = 96 };
    int *d = dev_alloc<int>(2 * T), h[2 * T], wrong = 0;
    PG_LAUNCH(gather_kernel, 2, T, 0, 0)(d);
    CK(cudaGetLastError());
    download(h, d, 2 * T);
    for (int t = 0; t < 2 * T; t++) wrong += h[t];
    is_int(wrong, 0, "emulator: three warp-wide gathers in a row: every lane reads every lane's words of each");
    CK(cudaFree(d));
}

static void run_gather_diverged(void)
{
    int *p = dev_alloc<int>(32);
    PG_LAUNCH(gather_diverged_kernel, 1, 32, 0, 0)(p);
}
static void run_gather_partial(void)
{
    int *p = dev_alloc<int>(16);
    PG_LAUNCH(gather_partial_kernel, 1, 16, 0, 0)(p);
}

static void run_deadlock(void) { PG_LAUNCH(deadlock_kernel, 1, 64, 0, 0)(nullptr); }
static void run_exited_lane(void)
{
    int *p = dev_alloc<int>(32);
    PG_LAUNCH(exited_lane_kernel, 1, 32, 0, 0)(p);
}

static void test_deadlocks(void)
{
    is_int(child_signal(run_deadlock), SIGABRT, "emulator: a barrier/__syncwarp deadlock is reported and aborts");
    is_int(child_signal(run_exited_lane), SIGABRT,
           "emulator: a full-warp shuffle after a lane exited is reported and aborts");
    is_int(child_signal(run_gather_diverged), SIGABRT,
           "emulator: a gather while other lanes of the warp wait in a shuffle is reported and aborts");
    is_int(child_signal(run_gather_partial), SIGABRT,
           "emulator: a gather by a warp of 16 lanes is reported and aborts");
}
#endif

// ---- stream capture and graphs: a replay runs what was captured, on the data of its time ------

__global__ void axpby_kernel(float *y, const float *x, float a, float b, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += a * x[i] + b;
}

// The capture of [copy in from pinned memory, memset, kernel, cuBLAS product], then checks of the
// two replays' results against the host: y = 2·in + 1, C = A·Y (Y = y as 8 x 8, column-major).
static void check_replay(cudaGraphExec_t exec, cudaStream_t s, float *in, const float *a, const float *dy,
                         const float *dc, float sign, const char *what)
{
    enum { N = 64, K = 8 };
    float y[N], c[4 * K];
    for (int i = 0; i < N; i++) in[i] = sign * (float)i;
    CK(cudaGraphLaunch(exec, s));
    CK(cudaStreamSynchronize(s));
    CK(cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < N; i++) bad += y[i] != 2 * in[i] + 1;
    double worst = 0;
    for (int col = 0; col < K; col++)
        for (int r = 0; r < 4; r++) {
            double want = 0;
            for (int k = 0; k < K; k++) want += (double)a[k * 4 + r] * (2 * in[col * K + k] + 1);
            worst = fmax(worst, fabs(c[col * 4 + r] - want));
        }
    ok(bad == 0 && worst < 1e-3, "graph %s: the kernel (%d wrong) and the product (|err| %.2e) ran on new input", what,
       bad, worst);
}

static void test_graph(void)
{
    enum { N = 64, K = 8 };
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS || cublasSetStream(h, s) != CUBLAS_STATUS_SUCCESS) {
        ok(0, "cublasCreate/cublasSetStream");
        return;
    }
    float *in = nullptr, a[4 * K];
    CK(cudaMallocHost((void **)&in, N * sizeof *in));
    for (int i = 0; i < 4 * K; i++) a[i] = frand();
    float *dx = dev_alloc<float>(N), *dy = dev_alloc<float>(N), *da = dev_alloc<float>(4 * K),
          *dc = dev_alloc<float>(4 * K);
    upload(da, a, 4 * K);
    CK(cudaMemset(dy, 0, N * sizeof *dy));
    for (int i = 0; i < N; i++) in[i] = 1000;
    float scale = 2, one = 1, zero = 0;
    cudaGraph_t graph = nullptr;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    CK(cudaStreamIsCapturing(s, &st));
    is_int(st, cudaStreamCaptureStatusActive, "a stream being captured says so");
    CK(cudaMemcpyAsync(dx, in, N * sizeof *in, cudaMemcpyHostToDevice, s));
    CK(cudaMemsetAsync(dy, 0, N * sizeof *dy, s));
    PG_LAUNCH(axpby_kernel, 1, N, 0, s)(dy, dx, scale, 1.0f, (int)N);
    CK(cudaGetLastError());
    scale = 5; // the graph keeps the value of its capture
    cublasStatus_t bs = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, K, K, &one, da, 4, dy, K, &zero, dc, 4);
    ok(bs == CUBLAS_STATUS_SUCCESS, "cublasSgemm is captured");
    CK(cudaStreamEndCapture(s, &graph));
    CK(cudaStreamIsCapturing(s, &st));
    is_int(st, cudaStreamCaptureStatusNone, "... and no longer once the capture ended");
    float y[N];
    download(y, dy, N);
    int ran = 0;
    for (int i = 0; i < N; i++) ran += y[i] != 0;
    is_int(ran, 0, "capturing ran nothing");
    cudaGraphExec_t exec = nullptr;
    CK(cudaGraphInstantiate(&exec, graph, 0));
    check_replay(exec, s, in, a, dy, dc, 1, "replayed");
    check_replay(exec, s, in, a, dy, dc, -1, "replayed again, the pinned input changed");
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));

    // What a capture forbids breaks it: the capture ends with an error and no graph.
    void *p = nullptr;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    ok(cudaMalloc(&p, 256) != cudaSuccess, "cudaMalloc while capturing fails");
    graph = (cudaGraph_t)&graph;
    is_int(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated, "... and invalidates the capture");
    ok(graph == nullptr, "... which gives no graph");
    cudaGetLastError();
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    ok(cudaStreamSynchronize(s) != cudaSuccess, "synchronizing while capturing fails");
    is_int(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated, "... and invalidates the capture");
    cudaGetLastError();
    ok(cudaStreamBeginCapture(0, cudaStreamCaptureModeThreadLocal) != cudaSuccess,
       "the legacy default stream cannot be captured");
    cudaGetLastError();
#ifdef PG_CUDA_EMU
    // Stricter than documented rules we are sure of; not asserted on a GPU.
    float pageable[N] = {0};
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    ok(cudaMemcpyAsync(dx, pageable, sizeof pageable, cudaMemcpyHostToDevice, s) != cudaSuccess,
       "emulator: a captured copy from pageable host memory fails");
    is_int(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated, "... and invalidates the capture");
    cudaEvent_t ev;
    CK(cudaEventCreate(&ev));
    CK(cudaEventRecord(ev, s));
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    is_int(cudaStreamWaitEvent(s, ev, 0), cudaErrorStreamCaptureIsolation,
           "emulator: a captured wait for an event recorded outside the capture fails");
    is_int(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated, "... and invalidates the capture");
    CK(cudaEventDestroy(ev));
    // a graph whose buffer was freed after its capture fails at replay, where a GPU would fault
    float *gone = dev_alloc<float>(N);
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    PG_LAUNCH(axpby_kernel, 1, N, 0, s)(gone, dx, 1.0f, 1.0f, (int)N);
    CK(cudaStreamEndCapture(s, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaFree(gone));
    is_int(cudaGraphLaunch(exec, s), cudaErrorIllegalAddress, "emulator: a replay into freed memory fails");
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    cudaGetLastError();
#endif
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    CK(cudaFree(da));
    CK(cudaFree(dc));
    CK(cudaFreeHost(in));
    cublasDestroy(h);
    CK(cudaStreamDestroy(s));
}

int main(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        cudaGetLastError();
        const char *want = getenv("PG_EXPECT_GPU");
        if (want && strcmp(want, "1") == 0) {
            ok(0, "a GPU is expected here (PG_EXPECT_GPU=1) and none was found");
            return done_testing();
        }
        skip_all("no CUDA device");
    }
#ifdef PG_CUDA_EMU
    diag("running on the CUDA emulator (kernels/emu)");
#else
    diag("running on the GPU");
#endif
    test_barrier();
    test_warp();
    test_block_reduce();
    test_atomics();
    test_big_block();
    test_grid();
    test_dynamic_smem();
    test_launch_errors();
    test_runtime();
    test_bf16();
    test_cublas();
    test_graph();
#ifdef PG_CUDA_EMU
    test_gather();
    test_deadlocks();
#endif
    return done_testing();
}
