/* parity.h: what the CUDA-vs-CPU parity tests (tests/emu/test_cuda_*.c) share: a deterministic
 * random source, host and device arrays kept for freeing at the end (the suite also runs under
 * LSan), the element-wise comparison with its tolerance rule and nudge check, and the start and
 * end of main (skip without a device, fail under PG_EXPECT_GPU=1).
 *
 * Tolerance rule, for every element: |gpu − cpu| ≤ tol·(|cpu| + max(rms(cpu), floor)). floor is
 * an absolute scale below which values count as cancellation residue: 0 unless the caller states
 * one (check_floor), so an all-zero reference demands exact zeros, and a result that is zero in
 * exact arithmetic (the dq of a one-token softmax) is compared at the scale of the terms that
 * cancelled in it. Each comparison also proves it can fail, by catching one element nudged by 10x
 * what the rule allows (at least one ulp, so tol = 0 and an all-zero reference are covered too).
 * Each test file includes this once and sets parity_seed before drawing. */
#ifndef PG_TESTS_PARITY_H
#define PG_TESTS_PARITY_H

#include "../tap.h"

#include "../../kernels/cuda/device.h"
#include "../../kernels/cuda/ops.h"
#include "../../lib/backend.h"

#include <stdlib.h>
#include <string.h>

#define PARITY_SLOTS 2048

static const struct pg_backend *cpu = &pg_backend_cpu;
static unsigned long long parity_seed = 2024;

__attribute__((unused)) static float urand(void) /* uniform in [-1, 1) */
{
    parity_seed = parity_seed * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(parity_seed >> 11) * 0x1.0p-53 * 2 - 1);
}

static void *host_kept[PARITY_SLOTS], *dev_kept[PARITY_SLOTS];
static int n_host, n_dev;

/* Keeps p (from malloc) for freeing at the end; NULL or no slot left ends the test. */
__attribute__((unused)) static void *hkeep(void *p)
{
    if (!p || n_host == PARITY_SLOTS) {
        printf("Bail out! out of memory or of slots\n");
        exit(1);
    }
    return host_kept[n_host++] = p;
}

__attribute__((unused)) static float *hnew(size_t n) { return hkeep(malloc((n ? n : 1) * sizeof(float))); }

__attribute__((unused)) static float *rnd(size_t n, float scale)
{
    float *p = hnew(n);
    for (size_t i = 0; i < n; i++) p[i] = urand() * scale;
    return p;
}

__attribute__((unused)) static float *copy(const float *h, size_t n)
{
    float *p = hnew(n);
    memcpy(p, h, n * sizeof *p);
    return p;
}

__attribute__((unused)) static void *dnew(size_t bytes)
{
    if (n_dev == PARITY_SLOTS) {
        printf("Bail out! out of device slots\n");
        exit(1);
    }
    return dev_kept[n_dev++] = pg_cuda_alloc(bytes ? bytes : 4);
}

/* A device copy of n host floats. */
__attribute__((unused)) static float *dev(const float *h, size_t n)
{
    float *d = dnew(n * sizeof *d);
    pg_cuda_upload(d, h, n * sizeof *d);
    return d;
}

__attribute__((unused)) static int32_t *dev_ids(const int32_t *h, size_t n)
{
    int32_t *d = dnew(n * sizeof *d);
    pg_cuda_upload(d, h, n * sizeof *d);
    return d;
}

/* The device array's contents, in a new host array. */
__attribute__((unused)) static float *back(const float *d, size_t n)
{
    float *h = hnew(n);
    pg_cuda_download(h, d, n * sizeof *h);
    return h;
}

__attribute__((unused)) static double rms_of(const float *a, size_t n)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)a[i] * a[i];
    return n ? sqrt(ss / n) : 0;
}

/* Varlen attention's doc_start [b·t] (spec §2.2): documents of lengths cycling through lens
 * (1: a document of one token), restarting in each sequence; NULL without lens (plain attention). */
__attribute__((unused)) static int32_t *doc_starts(int b, int t, const int *lens, int nlens)
{
    if (!lens) return NULL;
    int32_t *ds = hkeep(malloc((size_t)b * t * sizeof *ds));
    for (int bi = 0; bi < b; bi++)
        for (int i = 0, start = 0, li = 0, left = lens[0]; i < t; i++) {
            if (left == 0) start = i, li = (li + 1) % nlens, left = lens[li];
            ds[(size_t)bi * t + i] = start;
            left--;
        }
    return ds;
}

/* The scale element i is compared at: |want[i]| + max(rms(want), floor) (rms passed in). */
static double parity_scale(float want, double rms) { return fabs(want) + rms; }

/* Elements failing |got − want| ≤ tol·(|want| + max(rms(want), floor)); *worst: the largest
 * |got − want| / scale (infinite where the scale is 0 and the values differ). */
__attribute__((unused)) static size_t mismatches(const float *got, const float *want, size_t n, double tol, double floor,
                                                 double *worst)
{
    double rms = fmax(rms_of(want, n), floor);
    size_t bad = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]), scale = parity_scale(want[i], rms);
        double r = scale > 0 ? d / scale : d == 0 ? 0 : INFINITY;
        if (!(d <= tol * scale)) bad++; /* NaN counts as bad */
        if (r > *worst || r != r) *worst = r;
    }
    return bad;
}

/* A copy of got with element k moved by 10x what the rule allows there, and by one ulp at least. */
__attribute__((unused)) static float *nudged(const float *got, const float *want, size_t n, size_t k, double tol,
                                             double floor)
{
    float *broken = copy(got, n);
    double allowed = tol * parity_scale(want[k], fmax(rms_of(want, n), floor));
    float moved = (float)(got[k] + 10 * allowed);
    broken[k] = moved != got[k] ? moved : nextafterf(got[k], INFINITY);
    return broken;
}

static double worst_seen; /* over every comparison of the run */
static int compared;      /* comparisons made */

/* One TAP line: the results agree under the rule with this floor, and the same check catches a
 * copy with one element nudged past what the rule allows. */
__attribute__((unused)) static void check_floor(const char *op, const char *what, const float *got, const float *want,
                                                size_t n, double tol, double floor)
{
    double worst, w2;
    size_t bad = mismatches(got, want, n, tol, floor, &worst);
    int caught = n == 0 || mismatches(nudged(got, want, n, n / 2, tol, floor), want, n, tol, floor, &w2) > 0;
    if (!caught) diag("%s %s: a nudged result was not caught", op, what);
    ok(bad == 0 && caught, "%s %s: %zu values within %g (worst %.2e)", op, what, n, tol, worst);
    if (bad) diag("%zu of %zu values differ", bad, n);
    if (worst > worst_seen) worst_seen = worst;
    compared++;
}

/* check_floor with no floor: an all-zero reference must be matched exactly. */
__attribute__((unused)) static void check(const char *op, const char *what, const float *got, const float *want, size_t n,
                                          double tol)
{
    check_floor(op, what, got, want, n, tol, 0);
}

__attribute__((unused)) static int same_bits(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

/* The start of main: without a device, skip (or fail under PG_EXPECT_GPU=1, make check-gpu). */
__attribute__((unused)) static void parity_start(void)
{
    if (pg_cuda_device_count() == 0) {
        const char *want = getenv("PG_EXPECT_GPU");
        if (want && strcmp(want, "1") == 0) {
            ok(0, "a GPU is expected here (PG_EXPECT_GPU=1) and none was found");
            exit(done_testing());
        }
        skip_all("no CUDA device");
    }
    cpu->init();
}

/* The end of main: frees everything kept. */
__attribute__((unused)) static int parity_done(double tol)
{
    diag("%d comparisons; worst relative error %.2e (tolerance %g)", compared, worst_seen, tol);
    for (int i = 0; i < n_dev; i++) pg_cuda_free(dev_kept[i]);
    for (int i = 0; i < n_host; i++) free(host_kept[i]);
    return done_testing();
}

#endif
