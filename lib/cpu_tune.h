/* cpu_tune.h: the process settings that make the CPU backend run at the machine's speed, chosen
 * once at start-up for the user who did not choose them.
 *
 * 1. OpenBLAS kernels. Debian's OpenBLAS 0.3.21 picks its kernels from a table of the CPUs it
 *    knew in 2022; on a newer CPU it falls back to older kernels ("Prescott", SSE3 only: 4.5x
 *    slower on an AVX-512 Xeon; "Haswell" on AVX-512 AMD EPYCs: 2x slower). We compare the core
 *    OpenBLAS chose with what cpuid offers and, when it chose below, select the best core the
 *    CPU runs. OpenBLAS reads OPENBLAS_CORETYPE only while it loads, so the choice takes effect
 *    by executing the program again with the variable set (pg_tune_process).
 * 2. OpenMP waiting. libgomp's threads spin up to 300,000 rounds before sleeping; when other
 *    processes share the cores that spinning steals their time and makes every parallel region
 *    wait for a descheduled thread (several times slower on a loaded 2-core machine). We set
 *    OMP_WAIT_POLICY=passive (no cost measured on an idle machine). libgomp reads its variables
 *    while loading too, so this rides on the same re-execution.
 *
 * A variable the user set (OPENBLAS_CORETYPE; OMP_WAIT_POLICY or GOMP_SPINCOUNT) always wins;
 * PG_NO_TUNE=1 turns both choices off. */
#ifndef PG_CPU_TUNE_H
#define PG_CPU_TUNE_H

/* The vector instruction sets an OpenBLAS core family needs, in increasing order. */
enum pg_isa { PG_ISA_UNKNOWN = -1, PG_ISA_SSE3 = 0, PG_ISA_AVX, PG_ISA_AVX2, PG_ISA_AVX512 };

/* What this CPU (and its operating system) runs: AVX-512 means F, CD, BW, DQ and VL, what
 * OpenBLAS's SkylakeX kernels use; AVX2 means AVX2 and FMA. PG_ISA_UNKNOWN off x86. */
enum pg_isa pg_cpu_isa(void);

/* The instruction set an OpenBLAS core name's kernels need (case-insensitive), or
 * PG_ISA_UNKNOWN for a name not in the table (then nothing is changed). */
enum pg_isa pg_blas_core_isa(const char *core);

/* The core we select for a CPU offering `isa`: SkylakeX, Haswell, Sandybridge or Prescott. */
const char *pg_blas_best_core(enum pg_isa isa);

/* The OpenBLAS core to use instead of `chosen` on a CPU offering `isa`, or NULL to keep it
 * (it is already the CPU's level, or unknown). */
const char *pg_blas_better_core(const char *chosen, enum pg_isa isa);

/* The name of an instruction-set level ("AVX-512", "AVX2", "AVX", "SSE3", "unknown"). */
const char *pg_isa_name(enum pg_isa isa);

/* The core OpenBLAS runs in this process ("none" in a build without OpenBLAS). */
const char *pg_blas_core(void);

/* Call first in main (before any output, input or thread): when OpenBLAS fell back below the CPU
 * or libgomp would spin, sets the variables and executes the program again (argv as given;
 * through /proc/self/exe). Returns when nothing needs changing, in the re-executed process, or if
 * the execution failed (then the process goes on as it is). */
void pg_tune_process(char **argv);

/* What pg_tune_process did, as a sentence for -v ("" when nothing), e.g. "OpenBLAS chose its
 * Prescott kernels on a CPU with AVX-512: running SkylakeX (set OPENBLAS_CORETYPE to choose)";
 * the core named last is the one this process runs (pg_blas_core), not only the one asked for. */
const char *pg_tune_report(void);

#endif
