/* cli.h: what every pg-* command shares: message style, exit paths, the common options.
 *
 * Messages follow git's style on stderr: "pg-X: error: ..." then exit 1 (runtime), or
 * "pg-X: ...\nTry 'pg-X --help'." then exit 2 (usage). Only cmd/ exits; lib/ returns codes.
 */
#ifndef PG_CLI_H
#define PG_CLI_H

#include <getopt.h>
#include <stdio.h>

#define PG_VERSION "0.1.0"

/* Long-only option codes shared by the commands (above any short option letter). */
enum { PG_OPT_JSON = 1000, PG_OPT_PROGRESS, PG_OPT_NO_PROGRESS, PG_OPT_FIRST_CMD = 1100 };

/* The common long options, to splice into each command's table. */
#define PG_CLI_COMMON_LONGOPTS                                                                     \
    {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {"quiet", no_argument, 0, 'q'}, \
        {"verbose", no_argument, 0, 'v'}, {"json", no_argument, 0, PG_OPT_JSON},                     \
        {"progress", no_argument, 0, PG_OPT_PROGRESS}, {"no-progress", no_argument, 0, PG_OPT_NO_PROGRESS}

/* The common short options, to splice into each optstring. */
#define PG_CLI_COMMON_SHORTOPTS "hVqv"

struct pg_cli {
    const char *prog;   /* "pg-tokenize" */
    const char *usage;  /* the full --help text */
    int verbosity;      /* 0 with -q, 1 by default, +1 per -v */
    int json;
    int progress;       /* -1: auto (on when stderr is a terminal and not -q) */
};

/* The start of every main: settles the process's CPU tuning (lib/cpu_tune.h: may execute the
 * program again, so it comes before any input or output), installs the output clean-up. */
void pg_cli_init(struct pg_cli *cli, const char *prog, const char *usage, char **argv);

/* Handles a common option code from getopt_long: -h prints usage and exits 0, -V prints the
 * version and exits 0, -q/-v/--json/--progress set fields (the first -v also says what the CPU
 * tuning chose, if anything). @return 1 if handled, 0 if not ours. */
int pg_cli_common(struct pg_cli *cli, int c);

/* --precision's argument: 1 for bf16, 0 for fp32; anything else is a usage error (exit 2). */
int pg_cli_precision(const struct pg_cli *cli, const char *arg);

/* @return whether to draw a progress line (resolves "auto"). */
int pg_cli_progress(const struct pg_cli *cli);

/* Prints "prog: message" and the --help hint; exits 2. */
_Noreturn void pg_cli_usage_error(const struct pg_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "prog: error: <the library's latest message>" and exits with the code's status
 * (2 for PG_E_INVAL, 3 for PG_E_UNSUPPORTED, else 1). */
_Noreturn void pg_cli_fail(const struct pg_cli *cli, int code);

/* Exits through pg_cli_fail when a library call failed (rc < 0); returns otherwise. */
void pg_cli_check(const struct pg_cli *cli, int rc);

/* Prints "prog: error: message" and exits 1. */
_Noreturn void pg_cli_die(const struct pg_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "prog: message" on stderr unless -q. */
void pg_cli_info(const struct pg_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* main() of a command not built yet: handles -h/-V, otherwise says so and exits 3. */
_Noreturn void pg_cli_stub_main(const char *prog, int argc, char **argv);

#endif
