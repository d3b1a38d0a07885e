/* pgq_bound: how far below their order-0 entropy the integer tensors of a .pgq could be coded by
 * models that know each value's scale, or its signed mean, for free (a benchmark tool, for
 * scripts/bench-pack.sh: what pgac's payload is measured against).
 *
 *   pgq_bound MODEL.pgq
 *
 * A line for each group of integer tensors pg-pack codes as one stream (its role, its shape) and
 * the total: the number of values and, in bytes,
 *   order0  the empirical order-0 entropy of the group's values (pgac's "order-0" statistic);
 *   level   sum over its tensors of the empirical entropy of each value given its expected
 *           magnitude's level: E|q_ij| = r_i c_j fitted to the whole tensor (alternating means,
 *           two passes over the data), 6 levels per octave; every level's distribution is the
 *           tensor's own histogram, so no side information is paid for (an optimistic bound for
 *           a coder that models row and column scales);
 *   rank1   the same given also the tensor's best rank-1 signed mean s u_i v_j (power iteration)
 *           relative to the magnitude, 17 buckets of a quarter: what a shared direction of the
 *           rows (an embedding's mean vector) is worth, again free;
 *   side    what rank1's factors would cost to send at a byte each (rows + cols): a coder gains
 *           from a rank-1 model only where level - rank1 exceeds it.
 * Histograms fitted to the very data they count make level and rank1 lower than a one-pass
 * adaptive coder of those contexts alone could reach. pgac also sees neighbouring values, the
 * rows sorted, each column's own history, and can come in under them: they measure how much is
 * left in scales and a shared direction, not a limit for every model. Exit status 0, 1 on an
 * unreadable model, 2 usage. */
#include "../../lib/pgq.h"
#include "../../lib/quant.h"
#include "../../lib/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LEVELS = 121, ZB = 17, VALS = 256 };

struct sums {
    double values, order0, level, rank1, side;
};

/* sum over contexts of (sum_v -n log2 n) + N log2 N, in bytes: n counts of nctx x VALS */
static double cond_bytes(const uint64_t *n, size_t nctx)
{
    double bits = 0;
    for (size_t c = 0; c < nctx; c++) {
        uint64_t tot = 0;
        for (int v = 0; v < VALS; v++) {
            uint64_t k = n[c * VALS + v];
            if (k) bits -= (double)k * log2((double)k), tot += k;
        }
        if (tot) bits += (double)tot * log2((double)tot);
    }
    return bits / 8;
}

/* One tensor's level and rank-1 bounds (bytes) added to s; scratch of rows + cols doubles x 4. */
static int tensor_bounds(const int8_t *q, size_t rows, size_t cols, struct sums *s)
{
    double *r = malloc(rows * sizeof *r), *c = malloc(cols * sizeof *c);
    double *u = malloc(rows * sizeof *u), *v = malloc(cols * sizeof *v);
    uint64_t *nl = calloc((size_t)LEVELS * VALS, sizeof *nl), *nz = calloc((size_t)LEVELS * ZB * VALS, sizeof *nz);
    int rc = r && c && u && v && nl && nz ? 0 : pg_error(PG_E_NOMEM, "no memory for a %zu x %zu tensor", rows, cols);
    if (!rc) {
        /* E|q_ij| = r_i c_j: ten rounds of alternating means */
        for (size_t i = 0; i < rows; i++) {
            double a = 0;
            for (size_t j = 0; j < cols; j++) a += abs(q[i * cols + j]);
            r[i] = a / (double)cols + 1e-3;
        }
        for (int it = 0; it < 10; it++) {
            for (size_t j = 0; j < cols; j++) c[j] = 0;
            for (size_t i = 0; i < rows; i++)
                for (size_t j = 0; j < cols; j++) c[j] += abs(q[i * cols + j]) / r[i];
            for (size_t j = 0; j < cols; j++) c[j] = c[j] / (double)rows + 1e-3;
            for (size_t i = 0; i < rows; i++) {
                double a = 0;
                for (size_t j = 0; j < cols; j++) a += abs(q[i * cols + j]) / c[j];
                r[i] = a / (double)cols + 1e-3;
            }
        }
        /* the top singular pair: v <- Q^T Q v, from a vector of ones, 50 rounds */
        for (size_t j = 0; j < cols; j++) v[j] = 1;
        double sigma = 0;
        for (int it = 0; it < 50; it++) {
            double nu = 0, nv = 0;
            for (size_t i = 0; i < rows; i++) {
                double a = 0;
                for (size_t j = 0; j < cols; j++) a += q[i * cols + j] * v[j];
                u[i] = a, nu += a * a;
            }
            nu = sqrt(nu);
            for (size_t i = 0; i < rows; i++) u[i] = nu > 0 ? u[i] / nu : 0;
            for (size_t j = 0; j < cols; j++) v[j] = 0;
            for (size_t i = 0; i < rows; i++)
                for (size_t j = 0; j < cols; j++) v[j] += q[i * cols + j] * u[i];
            for (size_t j = 0; j < cols; j++) nv += v[j] * v[j];
            sigma = sqrt(nv);
            for (size_t j = 0; j < cols; j++) v[j] = sigma > 0 ? v[j] / sigma : 0;
        }
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++) {
                double e = r[i] * c[j];
                int lv = (int)floor(6 * log2(e)) + 60;
                lv = lv < 0 ? 0 : lv >= LEVELS ? LEVELS - 1 : lv;
                double z = nearbyint(4 * sigma * u[i] * v[j] / e);
                int zb = (int)(z < -8 ? -8 : z > 8 ? 8 : z) + 8;
                int x = q[i * cols + j] + 128;
                nl[(size_t)lv * VALS + x]++;
                nz[((size_t)lv * ZB + zb) * VALS + x]++;
            }
        s->level += cond_bytes(nl, LEVELS);
        s->rank1 += cond_bytes(nz, (size_t)LEVELS * ZB);
        s->side += (double)(rows + cols);
    }
    free(r), free(c), free(u), free(v), free(nl), free(nz);
    return rc;
}

static void print_row(const char *name, const char *shape, const struct sums *s)
{
    printf("%-16s %-10s %10.0f %10.0f %10.0f %10.0f %8.0f\n", name, shape, s->values, s->order0, s->level, s->rank1,
           s->side);
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: pgq_bound MODEL.pgq\n");
        return 2;
    }
    struct pg_qmodel qm;
    if (pg_pgq_read(argv[1], &qm)) {
        fprintf(stderr, "pgq_bound: %s\n", pg_error_message());
        return 1;
    }
    int *done = calloc((size_t)qm.ntensors + 1, sizeof *done);
    if (!done) {
        fprintf(stderr, "pgq_bound: out of memory\n");
        return 1;
    }
    printf("%-16s %-10s %10s %10s %10s %10s %8s\n", "group", "shape", "values", "order0", "level", "rank1", "side");
    struct sums total = {0};
    int rc = 0;
    for (int g = 0; g < qm.ntensors && !rc; g++) {
        const struct pg_qtensor *t0 = &qm.t[g];
        if (done[g] || t0->kind != PG_QKIND_INT || t0->role == PG_QROLE_OTHER || !t0->rows || !t0->cols) continue;
        /* the group: every integer tensor of this role and shape, as pg-pack's streams */
        struct sums s = {0};
        uint64_t hist[VALS] = {0};
        for (int i = g; i < qm.ntensors && !rc; i++) {
            const struct pg_qtensor *t = &qm.t[i];
            if (t->kind != PG_QKIND_INT || t->role != t0->role || t->rows != t0->rows || t->cols != t0->cols) continue;
            done[i] = 1;
            const int8_t *q = (const int8_t *)t->data;
            size_t n = (size_t)t->rows * (size_t)t->cols;
            for (size_t k = 0; k < n; k++) hist[q[k] + 128]++;
            s.values += (double)n;
            rc = tensor_bounds(q, (size_t)t->rows, (size_t)t->cols, &s);
        }
        s.order0 = cond_bytes(hist, 1);
        char shape[48];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)t0->rows, (long long)t0->cols);
        if (!rc) print_row(pg_qrole_name(t0->role), shape, &s);
        total.values += s.values, total.order0 += s.order0, total.level += s.level;
        total.rank1 += s.rank1, total.side += s.side;
    }
    if (!rc) print_row("total", "-", &total);
    else fprintf(stderr, "pgq_bound: %s\n", pg_error_message());
    free(done);
    pg_qmodel_free(&qm);
    return rc ? 1 : 0;
}
