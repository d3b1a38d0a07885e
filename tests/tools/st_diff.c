/* st_diff: compares the float tensors of two safetensors files (a test tool: two checkpoints of the
 * same model trained on two backends, or in two runs).
 *
 *   st_diff A B TOL     every F32 tensor of B is in A with the same shape, and every element
 *                       satisfies |a − b| ≤ TOL·(|b| + rms(B's tensor)) (tests/emu/parity.h's
 *                       rule); prints the worst tensor and its ratio |a − b| / (|b| + rms).
 *   st_diff A B 0       every tensor of B, of any dtype (a training state's optimizer blobs
 *                       too), is in A with the same dtype, shape and bytes.
 *
 * Metadata is not compared (a state file records the wall-clock time). Exit status: 0 within
 * tolerance, 1 outside it (or a tensor missing, or of another shape or dtype), 2 usage or
 * unreadable files. */
#include "../../lib/err.h"
#include "../../lib/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    char *end = NULL;
    double tol = argc == 4 ? strtod(argv[3], &end) : -1;
    if (argc != 4 || !end || *end || !(tol >= 0)) {
        fprintf(stderr, "usage: st_diff A.safetensors B.safetensors TOL\n");
        return 2;
    }
    struct pg_st_file a, b;
    if (pg_st_open(&a, argv[1]) || pg_st_open(&b, argv[2])) {
        fprintf(stderr, "st_diff: %s\n", pg_error_message());
        return 2;
    }
    int bad = 0;
    size_t compared = 0, elements = 0;
    double worst = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < b.ntensors; i++) {
        const struct pg_st_tensor *tb = &b.t[i], *ta = pg_st_find(&a, tb->name);
        if (tb->dtype != PG_ST_F32 && tol > 0) continue;
        if (!ta || ta->dtype != tb->dtype || pg_st_nbytes(ta) != pg_st_nbytes(tb) || ta->ndim != tb->ndim ||
            memcmp(ta->shape, tb->shape, sizeof(int64_t) * (size_t)tb->ndim) != 0) {
            printf("%s: missing from %s or shaped differently\n", tb->name, argv[1]);
            bad = 1;
            continue;
        }
        if (tb->dtype != PG_ST_F32) { /* tol 0: bytes */
            if (memcmp(ta->data, tb->data, pg_st_nbytes(tb)) != 0) {
                printf("%s: the bytes differ\n", tb->name);
                bad = 1;
                worst = INFINITY, worst_name = tb->name;
            }
            compared++, elements += pg_st_nbytes(tb);
            continue;
        }
        size_t n = pg_st_nbytes(tb) / 4;
        float *x = malloc((n ? n : 1) * 4), *y = malloc((n ? n : 1) * 4);
        if (!x || !y) {
            fprintf(stderr, "st_diff: out of memory\n");
            return 2;
        }
        memcpy(x, ta->data, n * 4), memcpy(y, tb->data, n * 4); /* the data may be unaligned */
        double ss = 0;
        for (size_t k = 0; k < n; k++) ss += (double)y[k] * y[k];
        double rms = n ? sqrt(ss / (double)n) : 0;
        size_t off = 0;
        for (size_t k = 0; k < n; k++) {
            double d = fabs((double)x[k] - y[k]), scale = fabs(y[k]) + rms;
            double r = tol == 0 ? (memcmp(&x[k], &y[k], 4) != 0 ? INFINITY : 0) : scale > 0 ? d / scale : d > 0 ? INFINITY : 0;
            if (!(r <= tol)) off++;
            if (r > worst || r != r) worst = r, worst_name = tb->name;
        }
        if (off) {
            printf("%s: %zu of %zu elements outside the tolerance\n", tb->name, off, n);
            bad = 1;
        }
        compared++, elements += n;
        free(x), free(y);
    }
    if (!compared) {
        printf("no tensors to compare in %s\n", argv[2]);
        bad = 1;
    }
    printf("%zu tensors, %zu elements; worst %.3e (%s); tolerance %g: %s\n", compared, elements, worst, worst_name, tol,
           bad ? "DIFFERENT" : "within");
    pg_st_close(&a), pg_st_close(&b);
    return bad;
}
