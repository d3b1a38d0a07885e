/* pack_perm.c: nearest-neighbour row ordering of group streams and the "perms" stream (pack_perm.h). */
#include "pack_perm.h"

#include "bytes_xform.h"
#include "err.h"
#include "xio.h"

#include <stdlib.h>
#include <string.h>

#define ENTRY_HEAD 12

int pg_pack_perm_order(const int8_t *src, int8_t *dst, size_t k, size_t rows, size_t cols, uint16_t *perm)
{
    if (rows > 65536) return pg_error(PG_E_INVAL, "row ordering of %zu rows: at most 65536", rows);
    int rc = 0;
    /* one matrix per thread: pg_nn_order runs serially inside a parallel region */
#pragma omp parallel for schedule(dynamic, 1) if (k > 1)
    for (size_t i = 0; i < k; i++) {
        const int8_t *m = src + i * rows * cols;
        uint16_t *p = perm + i * rows;
        int r = pg_nn_order(m, rows, cols, p);
        if (r) {
#pragma omp critical(pack_perm_rc)
            rc = r;
            continue;
        }
        pg_rows_permute(m, dst + i * rows * cols, rows, cols, p);
    }
    return rc;
}

int pg_pack_perm_write(const struct pg_pack_perm *e, size_t m, unsigned char **out, size_t *out_n)
{
    size_t n = 8;
    for (size_t i = 0; i < m; i++) n += ENTRY_HEAD + 2 * (size_t)e[i].k * e[i].rows;
    unsigned char *b = pg_malloc(n), *p = b + 8;
    if (!b) return PG_E_NOMEM;
    memcpy(b, PG_PERMS_MAGIC, 4);
    pg_le32_put(b + 4, (uint32_t)m);
    for (size_t i = 0; i < m; i++) {
        pg_le32_put(p, e[i].stream);
        pg_le32_put(p + 4, e[i].rows);
        pg_le32_put(p + 8, e[i].k);
        p += ENTRY_HEAD;
        for (size_t r = 0; r < (size_t)e[i].k * e[i].rows; r++, p += 2) pg_le16_put(p, e[i].perm[r]);
    }
    *out = b, *out_n = n;
    return 0;
}

/* Checks entry after entry; on success *count entries, each starting at start[i] (offsets of the
 * entry heads in the stream). */
static int check_perms(const struct pg_pga *a, unsigned char **raw, long ip, long ic, long ir, size_t **start,
                       uint32_t *count)
{
    const unsigned char *b = raw[ip];
    uint64_t n = a->streams[ip].raw_size;
    if (n < 8 || memcmp(b, PG_PERMS_MAGIC, 4))
        return pg_error(PG_E_FORMAT, "%s: stream 'perms' is not a permutation list", a->path);
    uint32_t m = pg_le32_get(b + 4);
    if (m > a->n) return pg_error(PG_E_FORMAT, "%s: stream 'perms' lists %u streams of %zu", a->path, m, a->n);
    size_t *st = pg_malloc(((size_t)m + 1) * sizeof *st);
    unsigned char *seen = pg_calloc(a->n + 1, 1);
    uint16_t *tmp = NULL;
    int rc = st && seen ? 0 : PG_E_NOMEM;
    uint64_t pos = 8;
    for (uint32_t i = 0; i < m && !rc; i++) {
        if (n - pos < ENTRY_HEAD) {
            rc = pg_error(PG_E_FORMAT, "%s: stream 'perms' is truncated in entry %u", a->path, i);
            break;
        }
        uint64_t s = pg_le32_get(b + pos), rows = pg_le32_get(b + pos + 4), k = pg_le32_get(b + pos + 8);
        if (s >= a->n || (long)s == ip || (long)s == ic || (long)s == ir)
            rc = pg_error(PG_E_FORMAT, "%s: stream 'perms': entry %u names stream %llu", a->path, i,
                          (unsigned long long)s);
        else if (seen[s])
            rc = pg_error(PG_E_FORMAT, "%s: stream 'perms': stream '%s' listed twice", a->path, a->streams[s].name);
        else if (rows == 0 || rows > 65536 || k == 0 || a->streams[s].raw_size % (rows * k))
            rc = pg_error(PG_E_FORMAT, "%s: stream 'perms': %llu matrices of %llu rows do not divide stream '%s'",
                          a->path, (unsigned long long)k, (unsigned long long)rows, a->streams[s].name);
        else if ((n - pos - ENTRY_HEAD) / 2 < rows * k)
            rc = pg_error(PG_E_FORMAT, "%s: stream 'perms' is truncated in entry %u", a->path, i);
        if (rc) break;
        seen[s] = 1;
        st[i] = (size_t)pos;
        pos += ENTRY_HEAD;
        if (!(tmp = realloc(tmp, rows * sizeof *tmp))) {
            rc = PG_E_NOMEM;
            break;
        }
        for (uint64_t j = 0; j < k && !rc; j++) {
            for (uint64_t r = 0; r < rows; r++) tmp[r] = pg_le16_get(b + pos + 2 * (j * rows + r));
            if (!pg_perm_valid(tmp, rows))
                rc = pg_error(PG_E_FORMAT, "%s: stream 'perms': matrix %llu of stream '%s' is not a permutation",
                              a->path, (unsigned long long)j, a->streams[s].name);
        }
        pos += 2 * rows * k;
    }
    if (!rc && pos != n)
        rc = pg_error(PG_E_FORMAT, "%s: stream 'perms' has %llu bytes after its entries", a->path,
                      (unsigned long long)(n - pos));
    free(tmp), free(seen);
    if (rc) {
        free(st);
        return rc;
    }
    *start = st, *count = m;
    return 0;
}

int pg_pack_perm_undo(const struct pg_pga *a, unsigned char **raw, long ip, long ic, long ir)
{
    size_t *start = NULL;
    uint32_t m = 0;
    int rc = check_perms(a, raw, ip, ic, ir, &start, &m);
    if (rc) return rc;
    const unsigned char *b = raw[ip];
    for (uint32_t i = 0; i < m && !rc; i++) {
        const unsigned char *e = b + start[i];
        uint32_t s = pg_le32_get(e), rows = pg_le32_get(e + 4), k = pg_le32_get(e + 8);
        size_t cols = (size_t)(a->streams[s].raw_size / ((uint64_t)rows * k));
        unsigned char *tmp = pg_malloc((size_t)rows * cols + 1);
        uint16_t *perm = pg_malloc((size_t)rows * sizeof *perm);
        if (!tmp || !perm) rc = PG_E_NOMEM;
        for (uint32_t j = 0; j < k && !rc; j++) {
            unsigned char *mat = raw[s] + (size_t)j * rows * cols;
            for (uint32_t r = 0; r < rows; r++) perm[r] = pg_le16_get(e + ENTRY_HEAD + 2 * ((size_t)j * rows + r));
            pg_rows_unpermute(mat, tmp, rows, cols, perm);
            memcpy(mat, tmp, (size_t)rows * cols);
        }
        free(tmp), free(perm);
    }
    free(start);
    return rc;
}
