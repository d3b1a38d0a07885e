// record.cu: the record stack's pointwise operations (spec/techniques.md §2), the twins of
// kernels/cpu/record.c: XSA, the per-head output gates, SmearGate v1 and v2, the gated U-Net
// skip, the two-lane write-back and the scalar residual scales, forward and backward.
//
// Shapes of work:
//   * row-local dot products (XSA, the gates' σ(w·u), SmearGate v2): one warp per row (or per
//     row and head), lanes striding over the row, warp sums in double;
//   * elementwise passes: grid-stride loops;
//   * per-channel and per-weight gradients: the rows are cut into a fixed number of chunks that
//     depends only on n; a block sums a 32-column strip of one chunk in a fixed order (8 row
//     lanes, then the lane sums in lane order) into a table of partials, and a second kernel adds
//     each column's partials in chunk order (the scheme of pointwise.cu);
//   * scalar gradients (λ, r, P, s1, s2): fixed chunks of REC_RED_LEN elements, one block each,
//     a block sum per chunk, then one thread adds the chunks in order.
// No float atomics anywhere: two runs give the same bits. Sums run in double like the CPU's;
// the σ of a gate's dot product is computed in double and rounded once, as on the CPU.
#include "pg_cuda.cuh"

#include "ops.h"

enum {
    REC_THREADS = 256,
    REC_WARPS = REC_THREADS / 32,
    REC_CS_X = 32,          // columns per block
    REC_CS_Y = 8,           // row lanes per block
    REC_CS_MIN_ROWS = 64,   // rows per chunk, at least
    REC_CS_MAX_CHUNKS = 64, // chunks of rows, at most
    REC_RED_LEN = 8192,     // elements per chunk of a scalar reduction
};

static __device__ __forceinline__ double rec_sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }
static __device__ __forceinline__ float rec_sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }
static __device__ __forceinline__ bool rec_smear_on(const int32_t *ids, size_t i, int t, int bos)
{
    return i % (size_t)t != 0 && ids[i] != bos;
}

#define REC_GRID_STRIDE(i, n)                                                                                      \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

// One warp per item: every lane of a warp sees the same `it` (warp-uniform loop, so warp sums
// are legal inside).
#define REC_WARP_ITEMS(it, n)                                                                                      \
    for (size_t it = (size_t)blockIdx.x * REC_WARPS + (threadIdx.x >> 5); it < (n);                                 \
         it += (size_t)gridDim.x * REC_WARPS)

// ---- XSA (§2.3) ----------------------------------------------------------------------------------

// 1/max(‖v‖, 1e-12) of an hd-vector, in every lane; *ok: ‖v‖ > 1e-12.
static __device__ double rec_inv_norm(const float *v, int hd, int lane, bool *ok)
{
    double ss = 0;
    for (int c = lane; c < hd; c += 32) ss += (double)v[c] * v[c];
    double nrm = sqrt(pg_warp_sum(ss));
    *ok = nrm > 1e-12;
    return 1.0 / (*ok ? nrm : 1e-12);
}

// one warp per (row, kv head)
static __global__ void xsa_fwd_kernel(float *y, const float *v, int n, int h, int kv, int hd)
{
    int lane = threadIdx.x & 31, group = h / kv;
    REC_WARP_ITEMS(it, (size_t)n * kv)
    {
        size_t i = it / (size_t)kv;
        int g = (int)(it % (size_t)kv);
        const float *vr = v + it * hd;
        bool ok;
        double inv = rec_inv_norm(vr, hd, lane, &ok);
        for (int hh = g * group; hh < (g + 1) * group; hh++) {
            float *yr = y + (i * h + hh) * hd;
            double a = 0;
            for (int c = lane; c < hd; c += 32) a += (double)yr[c] * vr[c];
            a = pg_warp_sum(a) * inv * inv;
            for (int c = lane; c < hd; c += 32) yr[c] = (float)(yr[c] - a * vr[c]);
        }
    }
}

static __global__ void xsa_bwd_kernel(float *dy, float *dv, const float *y_pre, const float *v, int n, int h, int kv,
                                      int hd)
{
    int lane = threadIdx.x & 31, group = h / kv;
    REC_WARP_ITEMS(it, (size_t)n * kv)
    {
        size_t i = it / (size_t)kv;
        int g = (int)(it % (size_t)kv);
        const float *vr = v + it * hd;
        float *dvr = dv + it * hd;
        bool ok;
        double inv = rec_inv_norm(vr, hd, lane, &ok);
        for (int hh = g * group; hh < (g + 1) * group; hh++) {
            float *dyr = dy + (i * h + hh) * hd;
            const float *yr = y_pre + (i * h + hh) * hd;
            double a = 0, b = 0;
            for (int c = lane; c < hd; c += 32) {
                a += (double)yr[c] * vr[c];
                b += (double)dyr[c] * vr[c];
            }
            a = pg_warp_sum(a) * inv;
            b = pg_warp_sum(b) * inv;
            double along = ok ? 2 * a * b : 0;
            for (int c = lane; c < hd; c += 32) {
                double vh = vr[c] * inv, t = dyr[c];
                dvr[c] = (float)(dvr[c] + (along * vh - a * t - b * yr[c]) * inv);
                dyr[c] = (float)(t - b * vh);
            }
        }
    }
}

// ---- per-head output gate (§2.4) ----------------------------------------------------------------

// one warp per (row, head)
static __global__ void head_gate_fwd_kernel(float *y, float *g, const float *u, const float *w, int n, int h, int hd,
                                            int ld, int win, double scale, double mult)
{
    int lane = threadIdx.x & 31;
    REC_WARP_ITEMS(it, (size_t)n * h)
    {
        size_t i = it / (size_t)h;
        int hh = (int)(it % (size_t)h);
        const float *ur = u + i * ld, *wr = w + (size_t)hh * win;
        double z = 0;
        for (int j = lane; j < win; j += 32) z += (double)wr[j] * ur[j];
        float gv = (float)(mult * rec_sigmoid(scale * pg_warp_sum(z)));
        if (lane == 0) g[it] = gv;
        float *yr = y + it * hd;
        for (int c = lane; c < hd; c += 32) yr[c] *= gv;
    }
}

// dz[i,h] = scale·(Σ dy·y_pre)·g·(1 − g/mult); dy *= g. One warp per (row, head).
static __global__ void head_gate_dz_kernel(float *dy, double *dz, const float *y_pre, const float *g, int n, int h,
                                           int hd, double scale, double mult)
{
    int lane = threadIdx.x & 31;
    REC_WARP_ITEMS(it, (size_t)n * h)
    {
        float *dyr = dy + it * hd;
        const float *yr = y_pre + it * hd;
        double dg = 0;
        for (int c = lane; c < hd; c += 32) dg += (double)dyr[c] * yr[c];
        dg = pg_warp_sum(dg);
        float gf = g[it];
        double gv = gf;
        if (lane == 0) dz[it] = scale * dg * gv * (1 - gv / mult);
        for (int c = lane; c < hd; c += 32) dyr[c] *= gf;
    }
}

// du[i, j] += Σ_h dz[i,h]·w[h,j], j < win: one thread per element.
static __global__ void head_gate_du_kernel(float *du, const double *dz, const float *w, int n, int h, int ld, int win)
{
    REC_GRID_STRIDE(k, (size_t)n * win)
    {
        size_t i = k / (size_t)win;
        int j = (int)(k % (size_t)win);
        double acc = 0;
        for (int hh = 0; hh < h; hh++) acc += dz[i * h + hh] * w[(size_t)hh * win + j];
        du[i * ld + j] = (float)(du[i * ld + j] + acc);
    }
}

// ---- column sums ----------------------------------------------------------------------------------

struct RecChunks {
    int rows, count; // rows per chunk, number of chunks
};

static RecChunks rec_chunks(int n)
{
    int count = (n + REC_CS_MIN_ROWS - 1) / REC_CS_MIN_ROWS;
    if (count > REC_CS_MAX_CHUNKS) count = REC_CS_MAX_CHUNKS;
    int rows = (n + count - 1) / count;
    return RecChunks{rows, (n + rows - 1) / rows};
}

static dim3 rec_cs_grid(RecChunks ch, int cols)
{
    return dim3((unsigned)(cols + REC_CS_X - 1) / REC_CS_X, (unsigned)ch.count);
}

// part[c] = the block's sum over its row lanes of each thread's v (c < cols), lanes in order.
// Every thread of the block calls it.
static __device__ void rec_cs_store(double v, double *part, int c, int cols)
{
    __shared__ double red[REC_CS_Y][REC_CS_X + 1];
    red[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        double s = 0;
        for (int j = 0; j < REC_CS_Y; j++) s += red[j][threadIdx.x];
        part[c] = s;
    }
    __syncthreads(); // red[] is free again
}

// Rows of this block's chunk; the thread starts at row r0 + threadIdx.y and steps REC_CS_Y.
#define REC_CHUNK_ROWS(i, rows, n)                                                                                 \
    int r1_ = (int)(blockIdx.y + 1) * (rows) < (n) ? (int)(blockIdx.y + 1) * (rows) : (n);                         \
    for (int i = (int)blockIdx.y * (rows) + (int)threadIdx.y; i < r1_; i += REC_CS_Y)

enum { REC_FACTOR_NONE, REC_FACTOR_ONE_MINUS_S, REC_FACTOR_DSIGMOID };

// out[j] = out[j] + factor_j·Σ_chunks part[chunk][j], rounded once; factor_j is 1, 1 − σ(γ_j) or
// σ(γ_j)(1 − σ(γ_j)) (in double, as the CPU computes it).
static __global__ void rec_cs_finish_kernel(float *out, const double *part, int chunks, int cols, const float *gamma,
                                            int factor)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    double s = 0;
    for (int ch = 0; ch < chunks; ch++) s += part[(size_t)ch * cols + j];
    if (factor != REC_FACTOR_NONE) {
        double sg = rec_sigmoid((double)gamma[j]);
        s *= factor == REC_FACTOR_ONE_MINUS_S ? 1 - sg : sg * (1 - sg);
    }
    out[j] = (float)(out[j] + s);
}

static void rec_cs_finish(float *out, const double *part, RecChunks ch, int cols, const float *gamma, int factor)
{
    PG_LAUNCH(rec_cs_finish_kernel, (cols + 127) / 128, 128, 0, pg_cuda_stream())(out, part, ch.count, cols, gamma,
                                                                                   factor);
    PG_CUDA_LAUNCHED();
}

// dw[h, j] partials: Σ_rows dz[i,h]·u[i,j] per chunk, into part[chunk][h·win + j].
static __global__ void head_gate_dw_kernel(double *part, const double *dz, const float *u, int n, int h, int ld,
                                           int win, int rows)
{
    int j = blockIdx.x * REC_CS_X + threadIdx.x;
    for (int hh = 0; hh < h; hh++) {
        double acc = 0;
        if (j < win) {
            REC_CHUNK_ROWS(i, rows, n) acc += dz[(size_t)i * h + hh] * u[(size_t)i * ld + j];
        }
        rec_cs_store(acc, part + (size_t)blockIdx.y * h * win + (size_t)hh * win, j, win);
    }
}

// ---- SmearGate (§2.10) ----------------------------------------------------------------------------

// one warp per row
static __global__ void smear_fwd_kernel(float *y, float *gate, const float *x, const int32_t *ids, const float *w,
                                        const float *lam, int n, int t, int d, int win, int bos)
{
    int lane = threadIdx.x & 31;
    REC_WARP_ITEMS(i, (size_t)n)
    {
        const float *xr = x + i * d;
        float *yr = y + i * d;
        if (!rec_smear_on(ids, i, t, bos)) {
            if (lane == 0) gate[i] = 0;
            for (int c = lane; c < d; c += 32) yr[c] = xr[c];
            continue;
        }
        double z = 0;
        for (int j = lane; j < win; j += 32) z += (double)w[j] * xr[j];
        float gv = (float)(lam[0] * rec_sigmoid(pg_warp_sum(z)));
        if (lane == 0) gate[i] = gv;
        for (int c = lane; c < d; c += 32) yr[c] = xr[c] + gv * xr[c - d];
    }
}

// dx, and per row the gradient of w·x[:win] (dz) and of λ (dl). One warp per row.
static __global__ void smear_bwd_kernel(float *dx, double *dz, double *dl, const float *dy, const float *x,
                                        const float *gate, const int32_t *ids, const float *w, const float *lam, int n,
                                        int t, int d, int win, int bos)
{
    int lane = threadIdx.x & 31;
    REC_WARP_ITEMS(i, (size_t)n)
    {
        const float *xr = x + i * d, *dyr = dy + i * d;
        double z_grad = 0, l_grad = 0;
        if (rec_smear_on(ids, i, t, bos)) {
            double dgate = 0, z = 0;
            for (int c = lane; c < d; c += 32) dgate += (double)dyr[c] * xr[c - d];
            for (int j = lane; j < win; j += 32) z += (double)w[j] * xr[j];
            dgate = pg_warp_sum(dgate);
            double s = rec_sigmoid(pg_warp_sum(z));
            l_grad = dgate * s;
            z_grad = dgate * lam[0] * s * (1 - s);
        }
        if (lane == 0) dz[i] = z_grad, dl[i] = l_grad;
        double gnext = (i + 1) % (size_t)t != 0 ? gate[i + 1] : 0; // 0 at a BOS too
        float *dxr = dx + i * d;
        for (int c = lane; c < d; c += 32)
            dxr[c] = (float)(dyr[c] + (gnext != 0 ? gnext * dyr[c + d] : 0) + (c < win ? z_grad * w[c] : 0));
    }
}

// Block j < win: dw[j] += Σ_i dz[i]·x[i, j]; block win: dλ += Σ_i dl[i]. Fixed block size, so
// the block sum's order is fixed.
static __global__ void smear_params_kernel(float *dw, float *dlam, const double *dz, const double *dl, const float *x,
                                           int n, int d, int win)
{
    int j = blockIdx.x;
    double acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += j < win ? dz[i] * x[(size_t)i * d + j] : dl[i];
    acc = pg_block_sum(acc);
    if (threadIdx.x == 0) {
        float *out = j < win ? dw + j : dlam;
        *out = (float)(*out + acc);
    }
}

static __global__ void smear1_fwd_kernel(float *y, const float *x, const int32_t *ids, const float *gamma, int t,
                                         int d, int bos, size_t total)
{
    REC_GRID_STRIDE(k, total)
    {
        size_t i = k / (size_t)d;
        int c = (int)(k % (size_t)d);
        float s = rec_sigmoidf(gamma[c]);
        y[k] = rec_smear_on(ids, i, t, bos) ? (1 - s) * x[k] + s * x[k - d] : (1 - s) * x[k];
    }
}

static __global__ void smear1_bwd_kernel(float *dx, double *part, const float *dy, const float *x, const int32_t *ids,
                                         const float *gamma, int n, int t, int d, int bos, int rows)
{
    int c = blockIdx.x * REC_CS_X + threadIdx.x;
    double acc = 0;
    if (c < d) {
        float s = rec_sigmoidf(gamma[c]);
        REC_CHUNK_ROWS(i, rows, n)
        {
            size_t k = (size_t)i * d + c;
            acc += (double)dy[k] * ((rec_smear_on(ids, (size_t)i, t, bos) ? (double)x[k - d] : 0) - x[k]);
            bool next = (i + 1) % t != 0 && rec_smear_on(ids, (size_t)i + 1, t, bos);
            dx[k] = next ? (1 - s) * dy[k] + s * dy[k + d] : (1 - s) * dy[k];
        }
    }
    rec_cs_store(acc, part + (size_t)blockIdx.y * d, c, d);
}

// ---- gated U-Net skip (§2.7) ------------------------------------------------------------------------

static __global__ void skip_gate_fwd_kernel(float *x, const float *skip, const float *w, const float *gamma, int d,
                                            size_t total)
{
    REC_GRID_STRIDE(k, total)
    {
        int c = (int)(k % (size_t)d);
        float s = rec_sigmoidf(gamma[c]);
        x[k] = s * x[k] + (1 - s) * (w[c] * skip[k]);
    }
}

// Partials of Σ dx·skip (for dw) and Σ dx·(x_pre − w·skip) (for dγ), in two tables.
static __global__ void skip_gate_bwd_kernel(float *dx, float *dskip, double *part, const float *x_pre,
                                            const float *skip, const float *w, const float *gamma, int n, int d,
                                            int rows)
{
    int c = blockIdx.x * REC_CS_X + threadIdx.x;
    double accw = 0, accg = 0;
    if (c < d) {
        float s = rec_sigmoidf(gamma[c]), wc = w[c], ws = (1 - s) * wc;
        REC_CHUNK_ROWS(i, rows, n)
        {
            size_t k = (size_t)i * d + c;
            float g = dx[k];
            accw += (double)g * skip[k];
            accg += (double)g * ((double)x_pre[k] - (double)wc * skip[k]);
            dx[k] = s * g;
            dskip[k] += ws * g;
        }
    }
    rec_cs_store(accw, part + (size_t)blockIdx.y * d, c, d);
    rec_cs_store(accg, part + ((size_t)gridDim.y + blockIdx.y) * d, c, d);
}

// ---- two-lane write-back (§2.9) and scalar scales (§2.11-2.12) ---------------------------------------

static __global__ void lanes_fwd_kernel(float *l0, float *l1, const float *a, const float *m, const float *r,
                                        const float *p, size_t n)
{
    float r0 = r[0], r1 = r[1], p00 = p[0], p01 = p[1], p10 = p[2], p11 = p[3];
    REC_GRID_STRIDE(i, n)
    {
        l0[i] = r0 * l0[i] + p00 * a[i] + p10 * m[i];
        l1[i] = r1 * l1[i] + p01 * a[i] + p11 * m[i];
    }
}

// One block per chunk of REC_RED_LEN elements: part[chunk][6] = the chunk's sums of dl0·l0_pre,
// dl1·l1_pre, dl0·a, dl1·a, dl0·m, dl1·m.
static __global__ void lanes_bwd_kernel(float *dl0, float *dl1, float *da, float *dm, double *part, const float *l0_pre,
                                        const float *l1_pre, const float *a, const float *m, const float *r,
                                        const float *p, size_t n)
{
    float r0 = r[0], r1 = r[1], p00 = p[0], p01 = p[1], p10 = p[2], p11 = p[3];
    size_t start = (size_t)blockIdx.x * REC_RED_LEN, end = start + REC_RED_LEN < n ? start + REC_RED_LEN : n;
    double s[6] = {0, 0, 0, 0, 0, 0};
    for (size_t i = start + threadIdx.x; i < end; i += blockDim.x) {
        float g0 = dl0[i], g1 = dl1[i];
        s[0] += (double)g0 * l0_pre[i];
        s[1] += (double)g1 * l1_pre[i];
        s[2] += (double)g0 * a[i];
        s[3] += (double)g1 * a[i];
        s[4] += (double)g0 * m[i];
        s[5] += (double)g1 * m[i];
        da[i] = p00 * g0 + p01 * g1;
        dm[i] = p10 * g0 + p11 * g1;
        dl0[i] = r0 * g0;
        dl1[i] = r1 * g1;
    }
    for (int k = 0; k < 6; k++) {
        double v = pg_block_sum(s[k]);
        if (threadIdx.x == 0) part[(size_t)blockIdx.x * 6 + k] = v;
    }
}

static __global__ void lanes_finish_kernel(float *dr, float *dp, const double *part, int chunks)
{
    int k = threadIdx.x;
    if (k >= 6) return;
    double s = 0;
    for (int ch = 0; ch < chunks; ch++) s += part[(size_t)ch * 6 + k];
    float *out = k < 2 ? dr + k : dp + (k - 2);
    *out = (float)(*out + s);
}

static __global__ void scalar_add_fwd_kernel(float *x, const float *s1, const float *s2, const float *f, size_t n)
{
    float k = s2 ? s1[0] * s2[0] : s1[0];
    REC_GRID_STRIDE(i, n) x[i] += k * f[i];
}

static __global__ void scalar_add_bwd_kernel(float *df, double *part, const float *dy, const float *s1, const float *s2,
                                             const float *f, size_t n, int accumulate)
{
    float k = s2 ? s1[0] * s2[0] : s1[0];
    size_t start = (size_t)blockIdx.x * REC_RED_LEN, end = start + REC_RED_LEN < n ? start + REC_RED_LEN : n;
    double s = 0;
    for (size_t i = start + threadIdx.x; i < end; i += blockDim.x) {
        float g = dy[i];
        s += (double)g * f[i];
        df[i] = accumulate ? df[i] + k * g : k * g;
    }
    s = pg_block_sum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// ds1 += s2·S, ds2 += s1·S (S = Σ dy·f, the chunks in order); one thread.
static __global__ void scalar_add_finish_kernel(float *ds1, float *ds2, const double *part, int chunks,
                                                const float *s1, const float *s2)
{
    double s = 0;
    for (int ch = 0; ch < chunks; ch++) s += part[ch];
    ds1[0] = (float)(ds1[0] + s * (s2 ? (double)s2[0] : 1.0));
    if (s2) ds2[0] = (float)(ds2[0] + s * s1[0]);
}

// ---- host wrappers --------------------------------------------------------------------------------

extern "C" void pg_cuda_xsa_fwd(float *y, const float *v, int n, int h, int kv, int hd)
{
    if (n <= 0 || kv <= 0 || hd <= 0) return;
    size_t items = (size_t)n * kv;
    PG_LAUNCH(xsa_fwd_kernel, pg_cuda_blocks(items, REC_WARPS), REC_THREADS, 0, pg_cuda_stream())(y, v, n, h, kv, hd);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_xsa_bwd(float *dy, float *dv, const float *y_pre, const float *v, int n, int h, int kv, int hd)
{
    if (n <= 0 || kv <= 0 || hd <= 0) return;
    size_t items = (size_t)n * kv;
    PG_LAUNCH(xsa_bwd_kernel, pg_cuda_blocks(items, REC_WARPS), REC_THREADS, 0,
              pg_cuda_stream())(dy, dv, y_pre, v, n, h, kv, hd);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_head_gate_fwd(float *y, float *g, const float *u, const float *w, int n, int h, int hd, int ld,
                                      int win, double scale, double mult)
{
    if (n <= 0 || h <= 0) return;
    size_t items = (size_t)n * h;
    PG_LAUNCH(head_gate_fwd_kernel, pg_cuda_blocks(items, REC_WARPS), REC_THREADS, 0,
              pg_cuda_stream())(y, g, u, w, n, h, hd, ld, win, scale, mult);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_head_gate_bwd(float *dy, float *dw, float *du, const float *y_pre, const float *g,
                                      const float *u, const float *w, int n, int h, int hd, int ld, int win,
                                      double scale, double mult)
{
    if (n <= 0 || h <= 0) return;
    size_t items = (size_t)n * h;
    RecChunks ch = rec_chunks(n);
    size_t nparts = (size_t)ch.count * h * (win > 0 ? win : 0);
    double *dz = (double *)pg_cuda_scratch((items + nparts) * sizeof(double));
    if (!dz) return; // out of memory: recorded, reported by pg_cuda_status
    double *part = dz + items;
    PG_LAUNCH(head_gate_dz_kernel, pg_cuda_blocks(items, REC_WARPS), REC_THREADS, 0,
              pg_cuda_stream())(dy, dz, y_pre, g, n, h, hd, scale, mult);
    PG_CUDA_LAUNCHED();
    if (win <= 0) return;
    if (du) {
        size_t total = (size_t)n * win;
        PG_LAUNCH(head_gate_du_kernel, pg_cuda_blocks(total, REC_THREADS), REC_THREADS, 0,
                  pg_cuda_stream())(du, dz, w, n, h, ld, win);
        PG_CUDA_LAUNCHED();
    }
    PG_LAUNCH(head_gate_dw_kernel, rec_cs_grid(ch, win), dim3(REC_CS_X, REC_CS_Y), 0,
              pg_cuda_stream())(part, dz, u, n, h, ld, win, ch.rows);
    PG_CUDA_LAUNCHED();
    rec_cs_finish(dw, part, ch, h * win, NULL, REC_FACTOR_NONE);
}

extern "C" void pg_cuda_smear_fwd(float *y, float *gate, const float *x, const int32_t *ids, const float *w,
                                  const float *lam, int b, int t, int d, int win, int bos)
{
    int n = b * t;
    if (n <= 0 || d <= 0) return;
    PG_LAUNCH(smear_fwd_kernel, pg_cuda_blocks((size_t)n, REC_WARPS), REC_THREADS, 0,
              pg_cuda_stream())(y, gate, x, ids, w, lam, n, t, d, win, bos);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_smear_bwd(float *dx, float *dw, float *dlam, const float *dy, const float *x, const float *gate,
                                  const int32_t *ids, const float *w, const float *lam, int b, int t, int d, int win,
                                  int bos)
{
    int n = b * t;
    if (n <= 0 || d <= 0) return;
    double *dz = (double *)pg_cuda_scratch(2 * (size_t)n * sizeof(double));
    if (!dz) return; // out of memory: recorded, reported by pg_cuda_status
    double *dl = dz + n;
    PG_LAUNCH(smear_bwd_kernel, pg_cuda_blocks((size_t)n, REC_WARPS), REC_THREADS, 0,
              pg_cuda_stream())(dx, dz, dl, dy, x, gate, ids, w, lam, n, t, d, win, bos);
    PG_CUDA_LAUNCHED();
    PG_LAUNCH(smear_params_kernel, win + 1, REC_THREADS, 0, pg_cuda_stream())(dw, dlam, dz, dl, x, n, d, win);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_smear1_fwd(float *y, const float *x, const int32_t *ids, const float *gamma, int b, int t,
                                   int d, int bos)
{
    size_t total = (size_t)(b > 0 ? b : 0) * (size_t)(t > 0 ? t : 0) * (size_t)(d > 0 ? d : 0);
    if (total == 0) return;
    PG_LAUNCH(smear1_fwd_kernel, pg_cuda_blocks(total, REC_THREADS), REC_THREADS, 0,
              pg_cuda_stream())(y, x, ids, gamma, t, d, bos, total);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_smear1_bwd(float *dx, float *dgamma, const float *dy, const float *x, const int32_t *ids,
                                   const float *gamma, int b, int t, int d, int bos)
{
    int n = b * t;
    if (n <= 0 || d <= 0) return;
    RecChunks ch = rec_chunks(n);
    double *part = (double *)pg_cuda_scratch((size_t)ch.count * d * sizeof(double));
    if (!part) return; // out of memory: recorded, reported by pg_cuda_status
    PG_LAUNCH(smear1_bwd_kernel, rec_cs_grid(ch, d), dim3(REC_CS_X, REC_CS_Y), 0,
              pg_cuda_stream())(dx, part, dy, x, ids, gamma, n, t, d, bos, ch.rows);
    PG_CUDA_LAUNCHED();
    rec_cs_finish(dgamma, part, ch, d, gamma, REC_FACTOR_DSIGMOID);
}

extern "C" void pg_cuda_skip_gate_fwd(float *x, const float *skip, const float *w, const float *gamma, int n, int d)
{
    size_t total = (size_t)(n > 0 ? n : 0) * (size_t)(d > 0 ? d : 0);
    if (total == 0) return;
    PG_LAUNCH(skip_gate_fwd_kernel, pg_cuda_blocks(total, REC_THREADS), REC_THREADS, 0,
              pg_cuda_stream())(x, skip, w, gamma, d, total);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_skip_gate_bwd(float *dx, float *dskip, float *dw, float *dgamma, const float *x_pre,
                                      const float *skip, const float *w, const float *gamma, int n, int d)
{
    if (n <= 0 || d <= 0) return;
    RecChunks ch = rec_chunks(n);
    double *part = (double *)pg_cuda_scratch(2 * (size_t)ch.count * d * sizeof(double));
    if (!part) return; // out of memory: recorded, reported by pg_cuda_status
    PG_LAUNCH(skip_gate_bwd_kernel, rec_cs_grid(ch, d), dim3(REC_CS_X, REC_CS_Y), 0,
              pg_cuda_stream())(dx, dskip, part, x_pre, skip, w, gamma, n, d, ch.rows);
    PG_CUDA_LAUNCHED();
    rec_cs_finish(dw, part, ch, d, gamma, REC_FACTOR_ONE_MINUS_S);
    rec_cs_finish(dgamma, part + (size_t)ch.count * d, ch, d, gamma, REC_FACTOR_DSIGMOID);
}

extern "C" void pg_cuda_lanes_fwd(float *l0, float *l1, const float *a, const float *m, const float *r, const float *p,
                                  size_t n)
{
    if (n == 0) return;
    PG_LAUNCH(lanes_fwd_kernel, pg_cuda_blocks(n, REC_THREADS), REC_THREADS, 0,
              pg_cuda_stream())(l0, l1, a, m, r, p, n);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_lanes_bwd(float *dl0, float *dl1, float *da, float *dm, float *dr, float *dp,
                                  const float *l0_pre, const float *l1_pre, const float *a, const float *m,
                                  const float *r, const float *p, size_t n)
{
    if (n == 0) return;
    size_t chunks = (n + REC_RED_LEN - 1) / REC_RED_LEN;
    double *part = (double *)pg_cuda_scratch(chunks * 6 * sizeof(double));
    if (!part) return; // out of memory: recorded, reported by pg_cuda_status
    PG_LAUNCH(lanes_bwd_kernel, (unsigned)chunks, REC_THREADS, 0,
              pg_cuda_stream())(dl0, dl1, da, dm, part, l0_pre, l1_pre, a, m, r, p, n);
    PG_CUDA_LAUNCHED();
    PG_LAUNCH(lanes_finish_kernel, 1, 32, 0, pg_cuda_stream())(dr, dp, part, (int)chunks);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_scalar_add_fwd(float *x, const float *s1, const float *s2, const float *f, size_t n)
{
    if (n == 0) return;
    PG_LAUNCH(scalar_add_fwd_kernel, pg_cuda_blocks(n, REC_THREADS), REC_THREADS, 0, pg_cuda_stream())(x, s1, s2, f, n);
    PG_CUDA_LAUNCHED();
}

extern "C" void pg_cuda_scalar_add_bwd(float *df, float *ds1, float *ds2, const float *dy, const float *s1,
                                       const float *s2, const float *f, size_t n, int df_accumulate)
{
    if (n == 0) return;
    size_t chunks = (n + REC_RED_LEN - 1) / REC_RED_LEN;
    double *part = (double *)pg_cuda_scratch(chunks * sizeof(double));
    if (!part) return; // out of memory: recorded, reported by pg_cuda_status
    PG_LAUNCH(scalar_add_bwd_kernel, (unsigned)chunks, REC_THREADS, 0,
              pg_cuda_stream())(df, part, dy, s1, s2, f, n, df_accumulate);
    PG_CUDA_LAUNCHED();
    PG_LAUNCH(scalar_add_finish_kernel, 1, 1, 0, pg_cuda_stream())(ds1, ds2, part, (int)chunks, s1, s2);
    PG_CUDA_LAUNCHED();
}
