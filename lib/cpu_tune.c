/* cpu_tune.c: OpenBLAS core and OpenMP wait choices at start-up (see cpu_tune.h). */
#define _GNU_SOURCE
#include "cpu_tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The marker the re-executed process reads back: "blas=FROM>TO;omp=VAR=VALUE" (parts optional). */
#define TUNED_VAR "PG_TUNED"
/* Tests and benchmarks: treat OPENBLAS_CORETYPE as OpenBLAS's own detection, i.e. simulate a CPU
 * OpenBLAS misjudges (OPENBLAS_CORETYPE=Prescott PG_TUNE_SIMULATE_FALLBACK=1). */
#define SIMULATE_VAR "PG_TUNE_SIMULATE_FALLBACK"
/* OpenMP threads sleep as soon as they wait (the standard variable, read by libgomp and libomp).
 * Measured with pg-train at the demo shape on 2 cores: the same speed as libgomp's default spin
 * on an idle machine (7,000-8,000 tokens/s either way, within noise), 1.3-1.6x faster with two
 * other busy processes on the cores (3,400-3,900 against 2,300-2,800 tokens/s). */
#define WAIT_POLICY "passive"

enum pg_isa pg_cpu_isa(void)
{
#if defined(__x86_64__) || defined(__i386__)
    /* libgcc's checks include the operating system's XSAVE support for the wider registers */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return PG_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return PG_ISA_AVX2;
    if (__builtin_cpu_supports("avx")) return PG_ISA_AVX;
    return PG_ISA_SSE3;
#else
    return PG_ISA_UNKNOWN;
#endif
}

/* OpenBLAS 0.3.21's x86 core names (DYNAMIC_ARCH) by the instruction set their kernels use. */
static const struct {
    const char *core;
    enum pg_isa isa;
} cores[] = {
    {"Prescott", PG_ISA_SSE3},     {"Katmai", PG_ISA_SSE3},      {"Coppermine", PG_ISA_SSE3},
    {"Northwood", PG_ISA_SSE3},    {"Core2", PG_ISA_SSE3},       {"Penryn", PG_ISA_SSE3},
    {"Dunnington", PG_ISA_SSE3},   {"Nehalem", PG_ISA_SSE3},     {"Athlon", PG_ISA_SSE3},
    {"Opteron", PG_ISA_SSE3},      {"Opteron_SSE3", PG_ISA_SSE3}, {"Barcelona", PG_ISA_SSE3},
    {"Nano", PG_ISA_SSE3},         {"Atom", PG_ISA_SSE3},        {"Bobcat", PG_ISA_SSE3},
    {"Sandybridge", PG_ISA_AVX},   {"Bulldozer", PG_ISA_AVX},    {"Piledriver", PG_ISA_AVX},
    {"Steamroller", PG_ISA_AVX},   {"Excavator", PG_ISA_AVX},    {"Haswell", PG_ISA_AVX2},
    {"Zen", PG_ISA_AVX2},          {"SkylakeX", PG_ISA_AVX512},  {"Cooperlake", PG_ISA_AVX512},
    {"SapphireRapids", PG_ISA_AVX512},
};

enum pg_isa pg_blas_core_isa(const char *core)
{
    for (size_t i = 0; core && i < sizeof cores / sizeof *cores; i++)
        if (strcasecmp(core, cores[i].core) == 0) return cores[i].isa;
    return PG_ISA_UNKNOWN;
}

const char *pg_blas_best_core(enum pg_isa isa)
{
    /* SkylakeX, not Cooperlake, for AVX-512: the two share their float kernels (Cooperlake adds
     * bf16 ones we do not call; 192 and 195 GFLOP/s on one EPYC core) and SkylakeX asks nothing
     * of the CPU beyond AVX-512 F/CD/BW/DQ/VL */
    switch (isa) {
    case PG_ISA_AVX512: return "SkylakeX";
    case PG_ISA_AVX2: return "Haswell";
    case PG_ISA_AVX: return "Sandybridge";
    default: return "Prescott";
    }
}

const char *pg_blas_better_core(const char *chosen, enum pg_isa isa)
{
    enum pg_isa have = pg_blas_core_isa(chosen);
    if (have == PG_ISA_UNKNOWN || isa <= have) return NULL;
    return pg_blas_best_core(isa);
}

const char *pg_isa_name(enum pg_isa isa)
{
    static const char *names[] = {"SSE3", "AVX", "AVX2", "AVX-512"};
    return isa >= PG_ISA_SSE3 && isa <= PG_ISA_AVX512 ? names[isa] : "unknown";
}

#ifdef PG_HAVE_BLAS
char *openblas_get_corename(void);
const char *pg_blas_core(void) { return openblas_get_corename(); }
#else
const char *pg_blas_core(void) { return "none"; }
#endif

static int set(const char *var) { return getenv(var) && *getenv(var); }

void pg_tune_process(char **argv)
{
    if (set(TUNED_VAR) || (getenv("PG_NO_TUNE") && strcmp(getenv("PG_NO_TUNE"), "1") == 0)) return;
    char marker[160] = "";
    int simulate = getenv(SIMULATE_VAR) && strcmp(getenv(SIMULATE_VAR), "1") == 0;
#ifdef PG_HAVE_BLAS
    const char *chosen = pg_blas_core();
    const char *better = set("OPENBLAS_CORETYPE") && !simulate ? NULL : pg_blas_better_core(chosen, pg_cpu_isa());
    if (better) {
        snprintf(marker, sizeof marker, "blas=%s>%s", chosen, better);
        if (setenv("OPENBLAS_CORETYPE", better, 1)) return;
    }
#endif
    if (!set("OMP_WAIT_POLICY") && !set("GOMP_SPINCOUNT")) {
        size_t len = strlen(marker);
        snprintf(marker + len, sizeof marker - len, "%somp=OMP_WAIT_POLICY=%s", len ? ";" : "", WAIT_POLICY);
        if (setenv("OMP_WAIT_POLICY", WAIT_POLICY, 1)) return;
    }
    if (!*marker || setenv(TUNED_VAR, marker, 1)) return;
    unsetenv(SIMULATE_VAR);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    if (strchr(argv[0], '/')) execv(argv[0], argv); /* no /proc: the path we were started by */
    unsetenv(TUNED_VAR);                             /* not re-executed: nothing was applied */
}

const char *pg_tune_report(void)
{
    static char text[320];
    const char *m = getenv(TUNED_VAR);
    text[0] = 0;
    if (!m) return text;
    char from[40], to[40];
    const char *b = strstr(m, "blas="), *o = strstr(m, "omp=");
    size_t len = 0;
    if (b && sscanf(b, "blas=%39[^>]>%39[^;]", from, to) == 2)
        len += (size_t)snprintf(text, sizeof text,
                                "OpenBLAS chose its %s kernels on a CPU with %s: running %s "
                                "(set OPENBLAS_CORETYPE to choose)",
                                from, pg_isa_name(pg_cpu_isa()), pg_blas_core());
    if (o && len < sizeof text)
        snprintf(text + len, sizeof text - len, "%s%s (set OMP_WAIT_POLICY or GOMP_SPINCOUNT to choose)",
                 len ? "; " : "", o + 4);
    return text;
}
