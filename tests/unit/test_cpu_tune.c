/* test_cpu_tune.c: lib/cpu_tune's choices. The CPU's level is checked against the flags the
 * kernel lists in /proc/cpuinfo (an independent reading of cpuid); the core table and the
 * decision against OpenBLAS 0.3.21's core names, including the two misjudgements seen in
 * practice (Prescott on an AVX-512 Xeon, Haswell on an AVX-512 EPYC). */
#include "../tap.h"

#include "../../lib/cpu_tune.h"

#include <string.h>

/* 1 if /proc/cpuinfo's first "flags" line lists every word of want (space-separated), 0 if
 * not, -1 if there is no such line. */
static int cpuinfo_has(const char *want)
{
    static char line[16384];
    FILE *f = fopen("/proc/cpuinfo", "r");
    int found = -1;
    while (f && found < 0 && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        line[strcspn(line, "\n")] = ' '; /* every flag, the last too, is " word " */
        found = 1;
        char w[64], pad[72];
        for (int used; sscanf(want, "%63s%n", w, &used) == 1; want += used) {
            snprintf(pad, sizeof pad, " %s ", w);
            if (!strstr(line, pad)) found = 0;
        }
    }
    if (f) fclose(f);
    return found;
}

static void test_cpu_level(void)
{
#if defined(__x86_64__)
    int a512 = cpuinfo_has("avx512f avx512cd avx512bw avx512dq avx512vl"), a2 = cpuinfo_has("avx2 fma"),
        a1 = cpuinfo_has("avx");
    if (a512 < 0) {
        ok(1, "# SKIP no flags line in /proc/cpuinfo");
        return;
    }
    enum pg_isa want = a512 ? PG_ISA_AVX512 : a2 ? PG_ISA_AVX2 : a1 ? PG_ISA_AVX : PG_ISA_SSE3;
    is_int(pg_cpu_isa(), want, "the CPU's level (%s) agrees with /proc/cpuinfo", pg_isa_name(pg_cpu_isa()));
#else
    is_int(pg_cpu_isa(), PG_ISA_UNKNOWN, "off x86 the level is unknown (nothing is changed)");
#endif
}

static void test_core_table(void)
{
    is_int(pg_blas_core_isa("Prescott"), PG_ISA_SSE3, "Prescott: SSE3");
    is_int(pg_blas_core_isa("NEHALEM"), PG_ISA_SSE3, "names match case-insensitively");
    is_int(pg_blas_core_isa("Sandybridge"), PG_ISA_AVX, "Sandybridge: AVX");
    is_int(pg_blas_core_isa("Zen"), PG_ISA_AVX2, "Zen: AVX2");
    is_int(pg_blas_core_isa("Haswell"), PG_ISA_AVX2, "Haswell: AVX2");
    is_int(pg_blas_core_isa("SkylakeX"), PG_ISA_AVX512, "SkylakeX: AVX-512");
    is_int(pg_blas_core_isa("Cooperlake"), PG_ISA_AVX512, "Cooperlake: AVX-512");
    is_int(pg_blas_core_isa("NeoverseN1"), PG_ISA_UNKNOWN, "a core not in the table is unknown");
    is_int(pg_blas_core_isa(NULL), PG_ISA_UNKNOWN, "no name is unknown");
}

static void same(const char *got, const char *want, const char *what)
{
    ok(got == want || (got && want && strcmp(got, want) == 0), "%s: %s", what, got ? got : "kept");
}

static void test_decision(void)
{
    same(pg_blas_better_core("Prescott", PG_ISA_AVX512), "SkylakeX", "Prescott on an AVX-512 Xeon");
    same(pg_blas_better_core("Haswell", PG_ISA_AVX512), "SkylakeX", "Haswell on an AVX-512 EPYC");
    same(pg_blas_better_core("Prescott", PG_ISA_AVX2), "Haswell", "Prescott on an AVX2 CPU");
    same(pg_blas_better_core("Nehalem", PG_ISA_AVX), "Sandybridge", "Nehalem on an AVX CPU");
    same(pg_blas_better_core("Zen", PG_ISA_AVX2), NULL, "Zen on an AVX2 CPU");
    same(pg_blas_better_core("Cooperlake", PG_ISA_AVX512), NULL, "Cooperlake on an AVX-512 CPU");
    same(pg_blas_better_core("SkylakeX", PG_ISA_AVX2), NULL, "a core above the CPU's level");
    same(pg_blas_better_core("Prescott", PG_ISA_SSE3), NULL, "Prescott on an SSE3 CPU");
    same(pg_blas_better_core("Prescott", PG_ISA_UNKNOWN), NULL, "an unknown CPU");
    same(pg_blas_better_core("ThunderX2", PG_ISA_AVX512), NULL, "an unknown core");
    same(pg_blas_best_core(PG_ISA_SSE3), "Prescott", "best for SSE3");
    ok(strcmp(pg_isa_name(PG_ISA_AVX512), "AVX-512") == 0 && strcmp(pg_isa_name(PG_ISA_UNKNOWN), "unknown") == 0,
       "level names");
}

int main(void)
{
    test_cpu_level();
    test_core_table();
    test_decision();
    return done_testing();
}
