/* blas_info: what the scripts need to know of this machine's OpenBLAS (tests/cli/test-blas-cores.sh,
 * scripts/bench-cpu.sh). Prints one line of key=value pairs:
 *
 *   core=Haswell isa=AVX-512 best=SkylakeX [gflops=192.3]
 *
 * core: the core OpenBLAS runs in this process (OPENBLAS_CORETYPE, when set, decides it); isa:
 * what the CPU offers (lib/cpu_tune.h); best: the core pg-* commands select for it. With
 * --gflops, the single-thread GFLOP/s of one float product of the baseline's MLP shape
 * (8192x512 by 512x1536, best of 5). */
#include "../../lib/cpu_tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef PG_HAVE_BLAS
#include <cblas.h>
void openblas_set_num_threads(int);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double gflops(void)
{
    const int m = 8192, k = 512, n = 1536;
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
    if (!a || !b || !c) {
        fprintf(stderr, "blas_info: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < (long)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
    for (long i = 0; i < (long)k * n; i++) b[i] = (float)(i % 5) * 0.1f;
    openblas_set_num_threads(1);
    double best = 1e30;
    for (int r = 0; r < 6; r++) { /* the first run warms up */
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, b, k, 0, c, n);
        t = now() - t;
        if (r && t < best) best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * m * n * k / best / 1e9;
}
#endif

int main(int argc, char **argv)
{
    int want_gflops = argc > 1 && strcmp(argv[1], "--gflops") == 0;
    if (argc > 2 || (argc == 2 && !want_gflops)) {
        fprintf(stderr, "usage: blas_info [--gflops]\n");
        return 2;
    }
    enum pg_isa isa = pg_cpu_isa();
    printf("core=%s isa=%s best=%s", pg_blas_core(), pg_isa_name(isa), pg_blas_best_core(isa));
#ifdef PG_HAVE_BLAS
    if (want_gflops) printf(" gflops=%.1f", gflops());
#endif
    printf("\n");
    return 0;
}
