/* linear.c: matrix products (CBLAS) and the embedding lookup, forward and backward; and
 * pg_cpu_gemm, through which every matrix product of the backend goes (attention.c and, through
 * matmul_fwd/bwd, loss.c too).
 *
 * One thread pool: OpenBLAS is asked for one thread (pg_cpu_init) and the products are split
 * over OpenMP threads by blocks of rows (forward, dx) or of output features (dw, whose sum runs
 * over all rows), so BLAS threads never spin against OpenMP ones and every split is
 * deterministic.
 *
 * bf16 products (lib/backend.h set_bf16; off by default): the records train under PyTorch's bf16
 * autocast, where every matrix product takes bfloat16 inputs and accumulates in fp32. With
 * pg_cpu_bf16 on, pg_cpu_gemm rounds both operands to bfloat16 (pg_cpu_bf16_round of cpu.h, that
 * is lib/optim.h's pg_bf16_round: round to nearest even on the fp32 bit pattern, as PyTorch's
 * float->bf16 conversion; NaN stays NaN) and multiplies the rounded copies with the same BLAS call
 * in fp32. The output is not rounded: it stays the fp32 accumulator (kernels/cpu/README.md says
 * why). The rounded copies are tiles in a buffer of BF16_TILE elements per thread, allocated on
 * the thread's first bf16 product and kept; should that allocation fail, a buffer of BF16_STACK
 * on the stack takes its place: smaller tiles, the same sums, never a failure. A product whose k
 * exceeds BF16_KT accumulates over k tiles of BF16_KT (fp32 sums in C, as OpenBLAS's own k
 * blocking does); the tiling of m and n does not change any sum, so the results depend on k
 * alone, not on how rows are split over threads. With set_bf16 off, pg_cpu_gemm is the plain BLAS
 * call: the fp32 results keep their exact bits. In a PG_REAL_DOUBLE build (the float64 gradient
 * checks) the operands are rounded through float and multiplied in double. */
#include "cpu.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

void openblas_set_num_threads(int);

/* ---- bf16 products ---- */

int pg_cpu_bf16;
void pg_cpu_set_bf16(int on) { pg_cpu_bf16 = on != 0; }
int pg_cpu_get_bf16(void) { return pg_cpu_bf16; }

/* k per tile, elements of a thread's tile buffer (1 MiB of floats: an A tile and a B tile with
 * m + n up to 512 at k = 512), and of the stack fallback. */
enum { BF16_KT = 512, BF16_TILE = 1 << 18, BF16_STACK = 2048 };

static size_t tile_limit; /* tests: pg_cpu_bf16_tile_limit */
void pg_cpu_bf16_tile_limit(size_t elems) { tile_limit = elems; }

/* dst[r·ldd + c] = bf16(src[r·lds + c]) for r < rows, c < cols. */
static void round_block(pg_real *dst, int ldd, const pg_real *src, int lds, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        const pg_real *s = src + (size_t)r * lds;
        pg_real *d = dst + (size_t)r * ldd;
#pragma omp simd
        for (int c = 0; c < cols; c++) d[c] = pg_cpu_bf16_round(s[c]);
    }
}

/* The bf16 product in tiles held in buf (cap elements, at least 2): for each tile of n, each k
 * tile: the B tile is rounded once, then for each tile of m the A tile, and BLAS adds their
 * product into C (beta on the first k tile, 1 after). op(A) is m × k, op(B) k × n; a tile keeps
 * its operand's own layout (a transposed operand is copied untransposed), so reads and writes
 * run along rows. */
static void gemm_tiles(pg_real *buf, size_t cap, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                       pg_real alpha, const pg_real *a, int lda, const pg_real *b, int ldb, pg_real beta, pg_real *c,
                       int ldc)
{
    int kt = k < BF16_KT ? k : BF16_KT;
    if ((size_t)kt * 2 > cap) kt = (int)(cap / 2);
    size_t per = cap / (size_t)kt; /* mt + nt at most */
    int mt = m, nt = n;
    if ((size_t)m + n > per) {
        if ((size_t)m <= per / 2) nt = (int)(per - m);
        else if ((size_t)n <= per / 2) mt = (int)(per - n);
        else mt = nt = (int)(per / 2);
    }
    pg_real *at = buf, *bt = buf + (size_t)mt * kt;
    for (int j0 = 0; j0 < n; j0 += nt) {
        int nj = n - j0 < nt ? n - j0 : nt;
        for (int l0 = 0; l0 < k; l0 += kt) {
            int nl = k - l0 < kt ? k - l0 : kt, ldbt = tb == CblasNoTrans ? nj : nl;
            if (tb == CblasNoTrans) round_block(bt, ldbt, b + (size_t)l0 * ldb + j0, ldb, nl, nj);
            else round_block(bt, ldbt, b + (size_t)j0 * ldb + l0, ldb, nj, nl);
            for (int i0 = 0; i0 < m; i0 += mt) {
                int ni = m - i0 < mt ? m - i0 : mt, ldat = ta == CblasNoTrans ? nl : ni;
                if (ta == CblasNoTrans) round_block(at, ldat, a + (size_t)i0 * lda + l0, lda, ni, nl);
                else round_block(at, ldat, a + (size_t)l0 * lda + i0, lda, nl, ni);
                pg_gemm(CblasRowMajor, ta, tb, ni, nj, nl, alpha, at, ldat, bt, ldbt, l0 ? 1 : beta,
                        c + (size_t)i0 * ldc + j0, ldc);
            }
        }
    }
}

/* The calling thread's tile buffer, or NULL when it could not be had. */
static pg_real *tile_buffer(void)
{
    static _Thread_local pg_real *buf;
    static _Thread_local int tried;
    if (!buf && !tried) {
        tried = 1;
        buf = malloc((size_t)BF16_TILE * sizeof *buf); /* kept for the thread's life, like a pool */
    }
    return buf;
}

/* Without the heap buffer: the same product in small tiles on the stack. */
static void gemm_tiles_stack(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, pg_real alpha,
                             const pg_real *a, int lda, const pg_real *b, int ldb, pg_real beta, pg_real *c, int ldc)
{
    pg_real buf[BF16_STACK];
    gemm_tiles(buf, BF16_STACK, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void pg_cpu_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, pg_real alpha, const pg_real *a,
                 int lda, const pg_real *b, int ldb, pg_real beta, pg_real *c, int ldc)
{
    if (!pg_cpu_bf16 || m <= 0 || n <= 0 || k <= 0) { /* k = 0: C = beta·C, no operand is read */
        pg_gemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    pg_real *buf = tile_buffer();
    size_t cap = tile_limit && tile_limit < BF16_TILE ? tile_limit : BF16_TILE;
    if (buf && cap >= 2)
        gemm_tiles(buf, cap, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        gemm_tiles_stack(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void pg_cpu_init(void)
{
    static int done;
    if (!done) openblas_set_num_threads(1);
    done = 1;
}

/* [begin, end) of part k of n split into p nearly equal parts. */
static void part(int n, int p, int k, int *begin, int *end)
{
    *begin = (int)((long long)n * k / p);
    *end = (int)((long long)n * (k + 1) / p);
}

void pg_cpu_matmul_fwd(pg_real *y, const pg_real *x, const pg_real *w, int n, int in, int out)
{
    /* y[n,out] = x[n,in] · w[out,in]ᵀ, rows split over threads */
#pragma omp parallel if ((size_t)n * in * out > 4 * PG_OMP_MIN)
    {
        int r0, r1;
        part(n, omp_get_num_threads(), omp_get_thread_num(), &r0, &r1);
        if (r1 > r0)
            pg_cpu_gemm(CblasNoTrans, CblasTrans, r1 - r0, out, in, 1, x + (size_t)r0 * in, in, w, in, 0,
                        y + (size_t)r0 * out, out);
    }
}

void pg_cpu_matmul_bwd(pg_real *dx, pg_real *dw, const pg_real *dy, const pg_real *x, const pg_real *w, int n, int in,
                       int out, int dx_accumulate)
{
#pragma omp parallel if ((size_t)n * in * out > 4 * PG_OMP_MIN)
    {
        int p = omp_get_num_threads(), k = omp_get_thread_num(), r0, r1;
        /* dx[n,in] (+)= dy[n,out] · w[out,in], rows split */
        part(n, p, k, &r0, &r1);
        if (dx && r1 > r0)
            pg_cpu_gemm(CblasNoTrans, CblasNoTrans, r1 - r0, in, out, 1, dy + (size_t)r0 * out, out, w, in,
                        dx_accumulate ? 1 : 0, dx + (size_t)r0 * in, in);
        /* dw[out,in] += dy[n,out]ᵀ · x[n,in], output features split */
        part(out, p, k, &r0, &r1);
        if (dw && r1 > r0)
            pg_cpu_gemm(CblasTrans, CblasNoTrans, r1 - r0, in, n, 1, dy + r0, out, x, in, 1, dw + (size_t)r0 * in,
                        in);
    }
}

void pg_cpu_embedding_fwd(pg_real *y, const pg_real *emb, const int32_t *ids, int n, int d)
{
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int i = 0; i < n; i++) memcpy(y + (size_t)i * d, emb + (size_t)ids[i] * d, (size_t)d * sizeof *y);
}

void pg_cpu_embedding_bwd(pg_real *demb, const pg_real *dy, const int32_t *ids, int n, int d)
{
    /* Serial over rows: the same id may repeat, and the order of the sums stays fixed
     * (deterministic). Parallel over the channels instead. */
#pragma omp parallel for schedule(static) if ((size_t)n * d > PG_OMP_MIN)
    for (int c = 0; c < d; c++)
        for (int i = 0; i < n; i++) demb[(size_t)ids[i] * d + c] += dy[(size_t)i * d + c];
}
