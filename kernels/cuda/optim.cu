// optim.cu: the optimizers' element updates and reductions on the device (optim_ops.h), twins of
// lib/optim.c's host loops (and of lib/quant.c's pg_fake_quant_rows).
//
// Bits. Every element update follows its host twin operation by operation: the same types, the
// same order, each multiplication and addition rounded on its own (the _rn intrinsics keep nvcc
// from fusing them into a multiply-add, which the host, built without FMA, never does). Norms sum
// their squares in double through a fixed tree (pg_block_sum over a fixed grid, then the block
// partials in order), so they are reproducible run to run and differ from the host's 64
// sequential blocks by a double rounding or two.
//
// Cost. Each kernel reads and writes its arrays once (memory-bound: an Adam step over the
// baseline's 0.6 M embedding and control parameters moves ~12 MB); Newton–Schulz is three cuBLAS
// products per iteration on the matrix's short side (A = X·Xᵀ is m × m) plus element passes.
#include "pg_cuda.cuh"

#include "ops.h"
#include "optim_ops.h"
#include "../../lib/half.h"

#include <cstring>
#include <vector>

// Operations rounded one at a time (no contraction into a fused multiply-add).
#ifdef __CUDACC__
#define FMUL(a, b) __fmul_rn((a), (b))
#define FADD(a, b) __fadd_rn((a), (b))
#define FSUB(a, b) __fsub_rn((a), (b))
#define FDIV(a, b) __fdiv_rn((a), (b))
#define DMUL(a, b) __dmul_rn((a), (b))
#define DADD(a, b) __dadd_rn((a), (b))
#define DSUB(a, b) __dsub_rn((a), (b))
#else
#define FMUL(a, b) ((float)(a) * (float)(b))
#define FADD(a, b) ((float)(a) + (float)(b))
#define FSUB(a, b) ((float)(a) - (float)(b))
#define FDIV(a, b) ((float)(a) / (float)(b))
#define DMUL(a, b) ((double)(a) * (double)(b))
#define DADD(a, b) ((double)(a) + (double)(b))
#define DSUB(a, b) ((double)(a) - (double)(b))
#endif

enum { OPT_THREADS = 256, NORM_BLOCKS = 64 };

#define GRID_STRIDE(i, n)                                                                                              \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

static void launched(void) { PG_CUDA_LAUNCHED(); }

// lib/optim.h's pg_bf16_round: round to nearest even on the bit pattern; NaN stays a quiet NaN.
__device__ __forceinline__ float bf16_round(float x)
{
    unsigned u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x00400000u;
    else u += 0x7fffu + ((u >> 16) & 1u);
    return __uint_as_float(u & 0xffff0000u);
}

__device__ __forceinline__ float round_if(float x, int bf16) { return bf16 ? bf16_round(x) : x; }

// ---- device scratch for reduction partials --------------------------------------------------------

// NORM_BLOCKS double partials and one float result per norm in flight; grown on demand. The
// optimizer operations run one at a time on the stream, so one buffer serves them all.
static double *partials(size_t n_doubles)
{
    static void *buf;
    static size_t cap;
    return (double *)pg_cuda_grow(&buf, &cap, n_doubles * sizeof(double), "the optimizers' norms");
}

// part[blockIdx.y·gridDim.x + blockIdx.x] = Σ x[i]² over the block's grid-stride share of x's n
// elements, in double: the same partials for an array whatever else the grid sums beside it.
__device__ void block_squares(double *part, const float *x, size_t n)
{
    if ((size_t)blockIdx.x * blockDim.x >= n) { // no element for this block: its sum is 0 (the whole
        if (threadIdx.x == 0) part[(size_t)blockIdx.y * gridDim.x + blockIdx.x] = 0; // block leaves)
        return;
    }
    double s = 0;
    GRID_STRIDE(i, n) s += (double)x[i] * (double)x[i];
    s = pg_block_sum(s);
    if (threadIdx.x == 0) part[(size_t)blockIdx.y * gridDim.x + blockIdx.x] = s;
}

// A grid of several rows (blockIdx.y) sums as many arrays n elements apart.
__global__ void sum_squares_kernel(double *part, const float *x, size_t n)
{
    block_squares(part, x + (size_t)blockIdx.y * n, n);
}

// ---- tensor lists on the device -------------------------------------------------------------------
//
// A parameter group's element work is one launch over all its tensors (blockIdx.y the tensor)
// instead of one per tensor: the baseline has about 100 small control tensors, whose launches were
// each a few microseconds for a few hundred elements.

// The tensor list (lib/optim.h's struct pg_opt_tensor) is read through this mirror of its layout,
// checked by optim_muon.c's static assertion.
struct opt_tensor_view {
    float *param, *grad;
    int rows, cols;
    size_t n;
};

// One tensor of a list as the kernels read it: its arrays, its length, its state's offset.
struct dev_tensor {
    float *param, *grad;
    size_t n, off;
};

// A list's table in device memory, made on the first call with that list and kept: an optimizer
// passes the same list every step, and a graph's capture must not allocate. Found by content.
struct list_table {
    std::vector<dev_tensor> host;
    dev_tensor *dev;
    size_t most; // the longest tensor
};

static const list_table *table_of(const opt_tensor_view *t, const size_t *off, size_t n)
{
    static std::vector<list_table *> *tables = new std::vector<list_table *>; // kept to the end
    std::vector<dev_tensor> want(n);
    size_t most = 0;
    for (size_t k = 0; k < n; k++) {
        want[k] = dev_tensor{t[k].param, t[k].grad, t[k].n, off ? off[k] : 0};
        if (t[k].n > most) most = t[k].n;
    }
    for (const list_table *e : *tables)
        if (e->host.size() == n && std::memcmp(e->host.data(), want.data(), n * sizeof(dev_tensor)) == 0) return e;
    dev_tensor *dev = (dev_tensor *)pg_cuda_alloc(n * sizeof(dev_tensor));
    if (!dev) return nullptr;
    pg_cuda_upload(dev, want.data(), n * sizeof(dev_tensor));
    tables->push_back(new list_table{want, dev, most});
    return tables->back();
}

// A grid over a list: x the blocks of its longest tensor, y its tensors (at most 65535 per launch).
static const size_t MAX_GRID_Y = 65535;

// kernel(table, args...) over a list's table in one launch (per 65535 tensors): kernels that
// take tensor blockIdx.y of the table and stride over it by the x blocks.
template <class... P, class... A>
static void launch_table(void (*kernel)(const dev_tensor *, P...), const list_table *lt, A... args)
{
    const size_t n = lt ? lt->host.size() : 0;
    if (!lt || lt->most == 0) return;
    for (size_t k = 0; k < n; k += MAX_GRID_Y) {
        dim3 grid(pg_cuda_blocks(lt->most, OPT_THREADS), (unsigned)(n - k < MAX_GRID_Y ? n - k : MAX_GRID_Y));
        PG_LAUNCH(kernel, grid, OPT_THREADS, 0, pg_cuda_stream())(lt->dev + k, args...);
        launched();
    }
}

// launch_table over the list t of n tensors (state offsets off, or none).
template <class... P, class... A>
static void launch_list(void (*kernel)(const dev_tensor *, P...), const opt_tensor_view *t, const size_t *off,
                        size_t n, A... args)
{
    if (n) launch_table(kernel, table_of(t, off, n), args...);
}

// ---- Adam ---------------------------------------------------------------------------------------

// pg_adam_step's loop body over tensor blockIdx.y of the list (moments at m + off, v + off): the
// moments in double, rounded on store; denom and the update in float. sc: the step's values from
// device memory instead (lib/backend.h adam_update).
__global__ void adam_kernel(const dev_tensor *list, float *m, float *v, double b1, double b2, double eps,
                            double lr_wd, float step_size, float bc2_sqrt, const double *sc)
{
    if (sc) lr_wd = sc[0], step_size = (float)sc[1], bc2_sqrt = (float)sc[2];
    const double one_b1 = 1 - b1, one_b2 = 1 - b2;
    const dev_tensor t = list[blockIdx.y];
    float *p = t.param;
    const float *g = t.grad;
    m += t.off, v += t.off;
    GRID_STRIDE(i, t.n)
    {
        float gi = g[i], pi = p[i];
        if (lr_wd != 0) pi = (float)DSUB((double)pi, DMUL(lr_wd, (double)pi));
        float mi = (float)DADD(DMUL(b1, (double)m[i]), DMUL(one_b1, (double)gi));
        float vi = (float)DADD(DMUL(b2, (double)v[i]), DMUL(DMUL(one_b2, (double)gi), (double)gi));
        float denom = (float)DADD((double)FDIV((float)sqrt((double)vi), bc2_sqrt), eps);
        p[i] = FSUB(pi, FDIV(FMUL(step_size, mi), denom));
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" void pg_cuda_adam_update(const struct pg_opt_tensor *tensors, size_t n, float *m, float *v,
                                    const size_t *off, double b1, double b2, double eps, double lr_wd, double step_size,
                                    double bc2_sqrt, const double *sc)
{
    launch_list(adam_kernel, (const opt_tensor_view *)tensors, off, n, m, v, b1, b2, eps, lr_wd, (float)step_size,
                (float)bc2_sqrt, sc);
}

// ---- Muon's pieces --------------------------------------------------------------------------------

// Over tensor blockIdx.y of the list: its gradient into its momentum at buf + off, G' into its
// param field (none when NULL: a matrix another rank orthogonalizes).
__global__ void muon_momentum_kernel(const dev_tensor *list, float *buf, float mom, int nesterov, const double *sc)
{
    if (sc) mom = (float)sc[0];
    const dev_tensor t = list[blockIdx.y];
    const float *g = t.grad;
    float *G = t.param;
    buf += t.off;
    GRID_STRIDE(i, t.n)
    {
        float gi = g[i], b = FADD(FMUL(mom, buf[i]), gi);
        buf[i] = b;
        if (G) G[i] = nesterov ? FADD(gi, FMUL(mom, b)) : gi;
    }
}

extern "C" void pg_cuda_muon_momentum(const struct pg_opt_tensor *list, size_t n, float *buf, const size_t *off,
                                      float mom, int nesterov, const double *sc)
{
    launch_list(muon_momentum_kernel, (const opt_tensor_view *)list, off, n, buf, mom, nesterov, sc);
}

// One block per row: the row's 2-norm (double sum, float sqrt), clamped at 1e-7, divides it.
__global__ void row_normalize_kernel(float *x, int cols)
{
    float *row = x + (size_t)blockIdx.x * cols;
    double ss = 0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) ss += (double)row[j] * (double)row[j];
    ss = pg_block_sum(ss);
    float nrm = (float)sqrt(ss);
    if (nrm < 1e-7f) nrm = 1e-7f; // clamp_min: a NaN stays NaN
    for (int j = threadIdx.x; j < cols; j += blockDim.x) row[j] = FDIV(row[j], nrm);
}

extern "C" void pg_cuda_row_normalize(float *x, int rows, int cols)
{
    if (rows <= 0 || cols <= 0) return;
    PG_LAUNCH(row_normalize_kernel, rows, OPT_THREADS, 0, pg_cuda_stream())(x, cols);
    launched();
}

__global__ void transpose_kernel(float *dst, const float *src, int rows, int cols)
{
    // dst[c][r] = src[r][c] through a 32 × 33 tile, so both sides are read and written in rows;
    // blockIdx.z: the matrix of a batch, rows·cols apart
    __shared__ float tile[32][33];
    src += (size_t)blockIdx.z * rows * cols, dst += (size_t)blockIdx.z * rows * cols;
    int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int r = r0 + k, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[k][threadIdx.x] = src[(size_t)r * cols + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int c = c0 + k, r = r0 + threadIdx.x;
        if (r < rows && c < cols) dst[(size_t)c * rows + r] = tile[threadIdx.x][k];
    }
}

static void transpose(float *dst, const float *src, int rows, int cols, int count)
{
    dim3 grid((unsigned)(cols + 31) / 32, (unsigned)(rows + 31) / 32, (unsigned)count), block(32, 8);
    PG_LAUNCH(transpose_kernel, grid, block, 0, pg_cuda_stream())(dst, src, rows, cols);
    launched();
}

__global__ void round_kernel(float *x, size_t n)
{
    GRID_STRIDE(i, n) x[i] = bf16_round(x[i]);
}

// Matrix z = blockIdx.x of a batch: denom[z] = bf16?((float)sqrt(Σ its partials)) + 1e-7
// (float), Σ in order; then every x of matrix z = blockIdx.y /= denom[z] (bf16?).
__global__ void ns_denominator_kernel(float *out, const double *part, int bf16)
{
    if (threadIdx.x != 0) return;
    const double *p = part + (size_t)blockIdx.x * NORM_BLOCKS;
    double s = 0;
    for (int b = 0; b < NORM_BLOCKS; b++) s += p[b];
    out[blockIdx.x] = FADD(round_if((float)sqrt(s), bf16), 1e-7f);
}

__global__ void ns_divide_kernel(float *x, size_t n, const float *denom, int bf16)
{
    float d = denom[blockIdx.y];
    x += (size_t)blockIdx.y * n;
    GRID_STRIDE(i, n) x[i] = round_if(FDIV(x[i], d), bf16);
}

// A = bf16?(A); T = bf16?(c·A)
__global__ void ns_a_kernel(float *A, float *T, size_t n, float c, int bf16)
{
    GRID_STRIDE(i, n)
    {
        float a = round_if(A[i], bf16);
        A[i] = a;
        T[i] = round_if(FMUL(c, a), bf16);
    }
}

// B = bf16?(b·A + bf16?(B))
__global__ void ns_b_kernel(float *B, const float *A, size_t n, float b, int bf16)
{
    GRID_STRIDE(i, n) B[i] = round_if(FADD(FMUL(b, A[i]), round_if(B[i], bf16)), bf16);
}

// X = bf16?(a·X + bf16?(Y))
__global__ void ns_x_kernel(float *X, const float *Y, size_t n, float a, int bf16)
{
    GRID_STRIDE(i, n) X[i] = round_if(FADD(FMUL(a, X[i]), round_if(Y[i], bf16)), bf16);
}

// Row-major C[m,n] = A·B (A m × k, B k × n), or A·Bᵀ (B n × k) with b_transposed, for count
// such products, each operand dense and one after the other: cuBLAS sees the column-major
// transposes, Cᵀ = Bᵀ·Aᵀ. In bf16 the operands hold bf16 values already (the kernels round
// them), so their bf16 copies are exact and the product is the fp32 one of the same values, on
// tensor cores (sums in cuBLAS's order either way).
static void gemm_rm(int m, int n, int k, const float *A, const float *B, int b_transposed, float *C, int bf16,
                    int count)
{
    pg_cuda_gemm_prec(bf16, b_transposed ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, 1, B, b_transposed ? k : n,
                      (long long)k * n, A, k, (long long)m * k, 0, C, n, (long long)m * n, count);
}

extern "C" void pg_cuda_newton_schulz(float *x, int count, int rows, int cols, int steps, const float *abc,
                                      int bf16, float *work)
{
    if (count <= 0 || rows <= 0 || cols <= 0) return;
    const int tr = rows > cols; // the wide orientation: A = X·Xᵀ is m × m on the short side
    const int m = tr ? cols : rows, k = tr ? rows : cols;
    const size_t mk = (size_t)m * k, mm = (size_t)m * m, g = (size_t)count;
    float *X = work, *Y = X + g * mk, *A = Y + g * mk, *T = A + g * mm, *B = T + g * mm;
    double *part = partials(NORM_BLOCKS * g + g);
    if (!part) return;
    float *denom = (float *)(part + NORM_BLOCKS * g);
    // the element passes go over the whole batch at once (the same constants for every matrix)
    const unsigned gk = pg_cuda_blocks(g * mk, OPT_THREADS), gm = pg_cuda_blocks(g * mm, OPT_THREADS);
    cudaStream_t st = pg_cuda_stream();

    if (tr) transpose(X, x, rows, cols, count);
    else PG_CUDA_CHECK(cudaMemcpyAsync(X, x, g * mk * sizeof *X, cudaMemcpyDeviceToDevice, st));
    if (bf16) {
        PG_LAUNCH(round_kernel, gk, OPT_THREADS, 0, st)(X, g * mk);
        launched();
    }
    // each matrix's norm over the same fixed grid as a single one's: the same bits
    PG_LAUNCH(sum_squares_kernel, dim3(NORM_BLOCKS, (unsigned)count), OPT_THREADS, 0, st)(part, X, mk);
    launched();
    PG_LAUNCH(ns_denominator_kernel, (unsigned)count, 32, 0, st)(denom, part, bf16);
    launched();
    PG_LAUNCH(ns_divide_kernel, dim3(pg_cuda_blocks(mk, OPT_THREADS), (unsigned)count), OPT_THREADS, 0, st)(
        X, mk, denom, bf16);
    launched();
    for (int s = 0; s < steps; s++) {
        const float a = abc[3 * s], b = abc[3 * s + 1], c = abc[3 * s + 2];
        gemm_rm(m, m, k, X, X, 1, A, bf16, count); // A = X·Xᵀ
        PG_LAUNCH(ns_a_kernel, gm, OPT_THREADS, 0, st)(A, T, g * mm, c, bf16);
        launched();
        gemm_rm(m, m, m, T, A, 0, B, bf16, count); // B = (c·A)·A
        PG_LAUNCH(ns_b_kernel, gm, OPT_THREADS, 0, st)(B, A, g * mm, b, bf16);
        launched();
        gemm_rm(m, k, m, B, X, 0, Y, bf16, count); // Y = B·X
        PG_LAUNCH(ns_x_kernel, gk, OPT_THREADS, 0, st)(X, Y, g * mk, a, bf16);
        launched();
    }
    if (tr) transpose(x, X, m, k, count);
    else PG_CUDA_CHECK(cudaMemcpyAsync(x, X, g * mk * sizeof *X, cudaMemcpyDeviceToDevice, st));
}

// Over tensor blockIdx.y of the list, p (its param) from G (its grad field): the decay and the
// update in one pass, p·decay rounded, then the update (the host's two loops; a decay of 1
// leaves p's bits, as the host's skipped loop does).
__global__ void muon_apply_kernel(const dev_tensor *list, float decay, float lr, float scale, int bf16,
                                  const double *sc)
{
    if (sc) lr = (float)sc[1], decay = (float)sc[2];
    const dev_tensor t = list[blockIdx.y];
    float *p = t.param;
    const float *G = t.grad;
    GRID_STRIDE(i, t.n) p[i] = FSUB(FMUL(p[i], decay), FMUL(lr, round_if(FMUL(G[i], scale), bf16)));
}

extern "C" void pg_cuda_muon_apply(const struct pg_opt_tensor *list, size_t n, float decay, float lr, float scale,
                                   int bf16, const double *sc)
{
    launch_list(muon_apply_kernel, (const opt_tensor_view *)list, nullptr, n, decay, lr, scale, bf16, sc);
}

// ---- gradient clipping ------------------------------------------------------------------------------

// coef = max_norm / (sqrt(Σ over tensors of Σ part) + 1e-6), summed in order; stored as the float
// multiplier when below 1, else 1 (the grads then keep their bits: x·1 = x).
__global__ void clip_coef_kernel(float *coef, const double *part, int ntensors, double max_norm)
{
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double ss = 0;
    for (int k = 0; k < ntensors; k++) {
        double s = 0;
        for (int b = 0; b < NORM_BLOCKS; b++) s += part[(size_t)k * NORM_BLOCKS + b];
        ss += s;
    }
    double c = max_norm / (sqrt(ss) + 1e-6);
    *coef = c < 1 ? (float)c : 1.0f;
}

// The gradients of tensor blockIdx.y of the list times the coefficient (none at 1).
__global__ void clip_scale_kernel(const dev_tensor *list, const float *coef)
{
    float c = *coef;
    if (c == 1.0f) return;
    const dev_tensor t = list[blockIdx.y];
    GRID_STRIDE(i, t.n) t.grad[i] = FMUL(t.grad[i], c);
}

// part[blockIdx.y·NORM_BLOCKS + blockIdx.x]: the partials of each gradient of the list, the same
// blocks and order as one launch per tensor.
__global__ void list_squares_kernel(double *part, const dev_tensor *list)
{
    block_squares(part, list[blockIdx.y].grad, list[blockIdx.y].n);
}

extern "C" void pg_cuda_clip_grad_norm(const struct pg_opt_tensor *tensors, size_t n, double max_norm)
{
    if (n == 0) return;
    const list_table *lt = table_of((const opt_tensor_view *)tensors, nullptr, n);
    double *part = lt ? partials(n * NORM_BLOCKS + 1) : nullptr;
    if (!part) return;
    float *coef = (float *)(part + n * NORM_BLOCKS);
    for (size_t k = 0; k < n; k += MAX_GRID_Y) {
        dim3 grid(NORM_BLOCKS, (unsigned)(n - k < MAX_GRID_Y ? n - k : MAX_GRID_Y));
        PG_LAUNCH(list_squares_kernel, grid, OPT_THREADS, 0, pg_cuda_stream())(part + k * NORM_BLOCKS, lt->dev + k);
        launched();
    }
    PG_LAUNCH(clip_coef_kernel, 1, 32, 0, pg_cuda_stream())(coef, part, (int)n, max_norm);
    launched();
    launch_table(clip_scale_kernel, lt, (const float *)coef);
}

// ---- weight averages and fake quantization ------------------------------------------------------------

__global__ void ema_kernel(float *ema, const float *theta, size_t n, double keep, double take)
{
    GRID_STRIDE(i, n) ema[i] = (float)DADD(DMUL(keep, (double)ema[i]), DMUL(take, (double)theta[i]));
}

extern "C" void pg_cuda_ema_update(float *ema, const float *theta, size_t n, double decay)
{
    if (n == 0) return;
    PG_LAUNCH(ema_kernel, pg_cuda_blocks(n, OPT_THREADS), OPT_THREADS, 0, pg_cuda_stream())(ema, theta, n, decay,
                                                                                           1 - decay);
    launched();
}

__global__ void swa_add_kernel(double *sum, const float *x, size_t n)
{
    GRID_STRIDE(i, n) sum[i] = DADD(sum[i], (double)x[i]);
}

extern "C" void pg_cuda_swa_add(double *sum, const float *x, size_t n)
{
    if (n == 0) return;
    PG_LAUNCH(swa_add_kernel, pg_cuda_blocks(n, OPT_THREADS), OPT_THREADS, 0, pg_cuda_stream())(sum, x, n);
    launched();
}

__global__ void swa_average_kernel(float *dst, const double *sum, size_t n, double count)
{
    GRID_STRIDE(i, n) dst[i] = (float)(sum[i] / count);
}

extern "C" void pg_cuda_swa_average(float *dst, const double *sum, size_t n, double count)
{
    if (n == 0) return;
    PG_LAUNCH(swa_average_kernel, pg_cuda_blocks(n, OPT_THREADS), OPT_THREADS, 0, pg_cuda_stream())(dst, sum, n, count);
    launched();
}

// One block per row, as pg_fake_quant_rows: s = max|x| / Q (float); q = rint(x / s) clamped to
// [−Q − 1, Q]; y = q·s; a zero row is copied.
__global__ void fake_quant_kernel(float *dst, const float *src, int64_t cols, float Q)
{
    const float *x = src + blockIdx.x * cols;
    float *y = dst + blockIdx.x * cols;
    float amax = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) amax = fmaxf(amax, fabsf(x[j]));
    amax = pg_block_max(amax); // max is exact in any order
    const float s = FDIV(amax, Q);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        if (!(s > 0)) {
            y[j] = x[j];
            continue;
        }
        double q = rint((double)FDIV(x[j], s));
        q = q < -Q - 1 ? -Q - 1 : q > Q ? Q : q;
        y[j] = FMUL((float)q, s);
    }
}

extern "C" void pg_cuda_fake_quant_rows(float *dst, const float *src, int64_t rows, int64_t cols, int bits)
{
    if (rows <= 0 || cols <= 0) return;
    PG_LAUNCH(fake_quant_kernel, (unsigned)rows, OPT_THREADS, 0, pg_cuda_stream())(dst, src, cols,
                                                                                   (float)((1 << (bits - 1)) - 1));
    launched();
}

// One thread per group of 128 along a row, as lib/trit.c's pg_fake_quant_trit (the same double
// arithmetic in the same order, and lib/half.h's fp16 rounding): s = fp16(mean|x|), q =
// clamp(rint(x/s), ±qmax), y = q·s (quinary) or q·s·n/Σ|q| (ternary, the shrinkage fix). The
// group is read whole before it is written, so dst may be src.
__global__ void fake_quant_trit_kernel(float *dst, const float *src, int64_t rows, int64_t cols, int64_t per_row,
                                       int qmax)
{
    int64_t gi = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gi >= rows * per_row) return;
    int64_t r = gi / per_row, g = gi % per_row, c0 = g * 128, c1 = c0 + 128 < cols ? c0 + 128 : cols;
    const float *x = src + r * cols;
    float *y = dst + r * cols;
    double sum = 0;
    for (int64_t c = c0; c < c1; c++) sum += fabs((double)x[c]);
    uint16_t h = pg_f32_to_f16((float)(sum / (double)(c1 - c0)));
    if (h == 0) h = 1;
    if (!isfinite(sum) || h >= 0x7c00u) {
        for (int64_t c = c0; c < c1; c++) y[c] = x[c];
        return;
    }
    double s = pg_f16_to_f32(h);
    int64_t nz = 0;
    for (int64_t c = c0; c < c1; c++) {
        double v = rint((double)x[c] / s);
        nz += (int64_t)fabs(v > qmax ? qmax : v < -qmax ? -qmax : v);
    }
    double f = qmax == 2 ? s : nz ? s * (double)(c1 - c0) / (double)nz : 0;
    for (int64_t c = c0; c < c1; c++) {
        double v = rint((double)x[c] / s);
        v = v > qmax ? qmax : v < -qmax ? -qmax : v;
        y[c] = (float)((double)(int)v * f);
    }
}

extern "C" void pg_cuda_fake_quant_trit(float *dst, const float *src, int64_t rows, int64_t cols, int levels)
{
    if (rows <= 0 || cols <= 0) return;
    int64_t per_row = (cols + 127) / 128, n = rows * per_row;
    PG_LAUNCH(fake_quant_trit_kernel, pg_cuda_blocks((size_t)n, OPT_THREADS), OPT_THREADS, 0, pg_cuda_stream())(
        dst, src, rows, cols, per_row, levels == 5 ? 2 : 1);
    launched();
}

// ---- SGD with momentum (TTT) ----------------------------------------------------------------------

__global__ void sgd_kernel(float *p, const float *g, float *buf, size_t n, float mu, float lr)
{
    GRID_STRIDE(i, n)
    {
        float b = FADD(FMUL(mu, buf[i]), g[i]);
        buf[i] = b;
        p[i] = FSUB(p[i], FMUL(lr, b));
    }
}

extern "C" void pg_cuda_sgd_update(float *p, const float *g, float *buf, size_t n, double mu, double lr)
{
    if (n == 0) return;
    PG_LAUNCH(sgd_kernel, pg_cuda_blocks(n, OPT_THREADS), OPT_THREADS, 0, pg_cuda_stream())(p, g, buf, n, (float)mu,
                                                                                           (float)lr);
    launched();
}
