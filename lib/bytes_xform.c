/* bytes_xform.c: transpose, byte planes and nearest-neighbour row ordering (see bytes_xform.h). */
#include "bytes_xform.h"

#include "err.h"
#include "xio.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

const char *pg_xform_name(int id)
{
    static const char *const names[PG_XFORM_COUNT] = {"none", "transpose", "shuffle"};
    return id >= 0 && id < PG_XFORM_COUNT ? names[id] : "?";
}

int pg_xform_check(const struct pg_xform *t, uint64_t n, int code)
{
    switch (t->id) {
    case PG_XFORM_NONE:
        if (t->rows || t->cols || t->stride) return pg_error(code, "transform none takes no parameters");
        return 0;
    case PG_XFORM_TRANSPOSE:
        if (t->stride) return pg_error(code, "transpose takes no stride");
        if (!t->rows || !t->cols || t->rows > UINT64_MAX / t->cols)
            return pg_error(code, "transpose %llux%llu: bad shape", (unsigned long long)t->rows,
                            (unsigned long long)t->cols);
        if (n % (t->rows * t->cols))
            return pg_error(code, "transpose %llux%llu does not divide %llu bytes", (unsigned long long)t->rows,
                            (unsigned long long)t->cols, (unsigned long long)n);
        return 0;
    case PG_XFORM_SHUFFLE:
        if (t->rows || t->cols) return pg_error(code, "shuffle takes no rows or cols");
        if (!t->stride || t->stride > PG_XFORM_MAX_STRIDE)
            return pg_error(code, "shuffle stride %llu is out of range [1, %d]", (unsigned long long)t->stride,
                            PG_XFORM_MAX_STRIDE);
        return 0;
    default:
        return pg_error(code, "unknown transform %d", (int)t->id);
    }
}

static void xform_run(const struct pg_xform *t, const void *src, void *dst, size_t n, int undo)
{
    if (t->id == PG_XFORM_TRANSPOSE) {
        size_t r = (size_t)t->rows, c = (size_t)t->cols, m = r * c;
        for (size_t off = 0; off < n; off += m)
            pg_transpose8((const unsigned char *)src + off, (unsigned char *)dst + off, undo ? c : r, undo ? r : c);
    } else if (t->id == PG_XFORM_SHUFFLE) {
        (undo ? pg_unshuffle8 : pg_shuffle8)(src, dst, n, (size_t)t->stride);
    } else if (n) {
        memcpy(dst, src, n);
    }
}

void pg_xform_apply(const struct pg_xform *t, const void *src, void *dst, size_t n) { xform_run(t, src, dst, n, 0); }

void pg_xform_undo(const struct pg_xform *t, const void *src, void *dst, size_t n) { xform_run(t, src, dst, n, 1); }

/* ---- transpose ---- */

void pg_transpose8(const void *src, void *dst, size_t rows, size_t cols)
{
    enum { B = 64 }; /* tiles keep both the read and the write side in cache */
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (size_t i0 = 0; i0 < rows; i0 += B) {
        size_t i1 = rows - i0 < B ? rows : i0 + B;
        for (size_t j0 = 0; j0 < cols; j0 += B) {
            size_t j1 = cols - j0 < B ? cols : j0 + B;
            for (size_t j = j0; j < j1; j++)
                for (size_t i = i0; i < i1; i++) d[j * rows + i] = s[i * cols + j];
        }
    }
}

/* ---- byte planes ---- */

void pg_shuffle8(const void *src, void *dst, size_t n, size_t stride)
{
    const unsigned char *s = src;
    unsigned char *o = dst;
    for (size_t j = 0; j < stride && j < n; j++)
        for (size_t i = j; i < n; i += stride) *o++ = s[i];
}

void pg_unshuffle8(const void *src, void *dst, size_t n, size_t stride)
{
    const unsigned char *s = src;
    unsigned char *o = dst;
    for (size_t j = 0; j < stride && j < n; j++)
        for (size_t i = j; i < n; i += stride) o[i] = *s++;
}

/* ---- nearest-neighbour ordering ---- */

/* Σ|a - b|, stopping early once it exceeds `bound` (the result is then only known to be > bound). */
static uint64_t l1_bounded(const int8_t *a, const int8_t *b, size_t n, uint64_t bound)
{
    uint64_t total = 0;
    for (size_t k0 = 0; k0 < n; k0 += 256) {
        size_t k1 = n - k0 < 256 ? n : k0 + 256;
        uint32_t s = 0;
#pragma omp simd reduction(+ : s)
        for (size_t k = k0; k < k1; k++) {
            int d = (int)a[k] - (int)b[k];
            s += (uint32_t)(d < 0 ? -d : d);
        }
        total += s;
        if (total > bound) break;
    }
    return total;
}

struct nn_best {
    uint64_t d;
    size_t row, k; /* the row, and its position in the candidate list */
};

static int nn_better(uint64_t d, size_t row, const struct nn_best *b) { return d < b->d || (d == b->d && row < b->row); }

int pg_nn_order(const int8_t *m, size_t rows, size_t cols, uint16_t *perm)
{
    if (rows > 65536) return pg_error(PG_E_INVAL, "nearest-neighbour ordering of %zu rows: at most 65536", rows);
    if (cols && rows > SIZE_MAX / cols) return pg_error(PG_E_INVAL, "nearest-neighbour ordering: matrix too large");
    if (rows == 0) return 0;
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = omp_get_max_threads();
#endif
    /* cand[0..left) are the unused rows; a chosen row is swapped out with the last one. Ties are
     * broken by row index, so the list's order (and the thread split) never changes the result.
     * Each step is a parallel region over the candidates once it has ~1M byte comparisons of
     * work (2048 rows of 512); called from inside a parallel region (one matrix per thread), it
     * runs serially. On an oversubscribed machine libgomp's spinning barriers make the parallel
     * steps slower than serial ones (measured 3.0 s vs 0.56 s for 2048x512 at load 6 on 2 cores;
     * 0.37 s with OMP_WAIT_POLICY=passive). */
    uint32_t *cand = pg_malloc(rows * sizeof *cand);
    struct nn_best *best = pg_malloc((size_t)nthreads * sizeof *best);
    if (!cand || !best) {
        free(cand);
        free(best);
        return PG_E_NOMEM;
    }
    for (size_t i = 1; i < rows; i++) cand[i - 1] = (uint32_t)i;
    size_t left = rows - 1, cur = 0;
    perm[0] = 0;
    for (size_t step = 1; step < rows; step++) {
        const int8_t *c = m + cur * cols;
        int used = 1;
#pragma omp parallel num_threads(nthreads) if ((uint64_t)left * cols >= (1u << 20))
        {
            int t = 0, nt = 1;
#ifdef _OPENMP
            t = omp_get_thread_num();
            nt = omp_get_num_threads();
#pragma omp single
            used = nt;
#endif
            struct nn_best b = {UINT64_MAX, SIZE_MAX, 0};
            size_t k0 = left * (size_t)t / (size_t)nt, k1 = left * (size_t)(t + 1) / (size_t)nt;
            for (size_t k = k0; k < k1; k++) {
                size_t j = cand[k];
                uint64_t d = l1_bounded(c, m + j * cols, cols, b.d);
                if (nn_better(d, j, &b)) b = (struct nn_best){d, j, k};
            }
            best[t] = b;
        }
        struct nn_best b = best[0];
        for (int t = 1; t < used; t++)
            if (nn_better(best[t].d, best[t].row, &b)) b = best[t];
        perm[step] = (uint16_t)b.row;
        cur = b.row;
        cand[b.k] = cand[--left];
    }
    free(cand);
    free(best);
    return 0;
}

int pg_perm_valid(const uint16_t *perm, size_t n)
{
    if (n > 65536) return 0;
    unsigned char *seen = pg_calloc(n ? n : 1, 1);
    if (!seen) return 0;
    int okay = 1;
    for (size_t i = 0; i < n && okay; i++) {
        if (perm[i] >= n || seen[perm[i]]) okay = 0;
        else seen[perm[i]] = 1;
    }
    free(seen);
    return okay;
}

void pg_rows_permute(const void *src, void *dst, size_t rows, size_t row_bytes, const uint16_t *perm)
{
    for (size_t i = 0; i < rows; i++)
        memcpy((unsigned char *)dst + i * row_bytes, (const unsigned char *)src + perm[i] * row_bytes, row_bytes);
}

void pg_rows_unpermute(const void *src, void *dst, size_t rows, size_t row_bytes, const uint16_t *perm)
{
    for (size_t i = 0; i < rows; i++)
        memcpy((unsigned char *)dst + perm[i] * row_bytes, (const unsigned char *)src + i * row_bytes, row_bytes);
}

uint64_t pg_adjacent_l1(const int8_t *m, size_t rows, size_t cols)
{
    uint64_t total = 0;
    for (size_t i = 0; i + 1 < rows; i++) total += l1_bounded(m + i * cols, m + (i + 1) * cols, cols, UINT64_MAX);
    return total;
}
