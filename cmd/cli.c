/* cli.c: shared command-line behaviour (see cli.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "../lib/cpu_tune.h"
#include "../lib/err.h"
#include "../lib/outfile.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pg_cli_init(struct pg_cli *cli, const char *prog, const char *usage, char **argv)
{
    pg_tune_process(argv);
    cli->prog = prog;
    cli->usage = usage;
    cli->verbosity = 1;
    cli->json = 0;
    cli->progress = -1;
    pg_out_install_signal_cleanup();
}

int pg_cli_common(struct pg_cli *cli, int c)
{
    switch (c) {
    case 'h':
        fputs(cli->usage, stdout);
        exit(PG_EXIT_OK);
    case 'V':
        printf("%s (pgolf) %s\n", cli->prog, PG_VERSION);
        exit(PG_EXIT_OK);
    case 'q': cli->verbosity = 0; return 1;
    case 'v':
        if (++cli->verbosity == 2 && *pg_tune_report()) fprintf(stderr, "%s: %s\n", cli->prog, pg_tune_report());
        return 1;
    case PG_OPT_JSON: cli->json = 1; return 1;
    case PG_OPT_PROGRESS: cli->progress = 1; return 1;
    case PG_OPT_NO_PROGRESS: cli->progress = 0; return 1;
    case '?': /* getopt_long has already printed what was wrong */
        fprintf(stderr, "Try '%s --help'.\n", cli->prog);
        exit(PG_EXIT_USAGE);
    default: return 0;
    }
}

int pg_cli_precision(const struct pg_cli *cli, const char *arg)
{
    if (strcmp(arg, "fp32") != 0 && strcmp(arg, "bf16") != 0)
        pg_cli_usage_error(cli, "--precision %s: expected fp32 or bf16", arg);
    return strcmp(arg, "bf16") == 0;
}

int pg_cli_progress(const struct pg_cli *cli)
{
    if (cli->progress >= 0) return cli->progress;
    return cli->verbosity > 0 && isatty(STDERR_FILENO);
}

/* "prog: <tag>message\n" on stderr. */
static void report(const struct pg_cli *cli, const char *tag, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: %s", cli->prog, tag);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void pg_cli_usage_error(const struct pg_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(cli, "", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help'.\n", cli->prog);
    exit(PG_EXIT_USAGE);
}

void pg_cli_fail(const struct pg_cli *cli, int code)
{
    if (code == PG_E_INVAL) pg_cli_usage_error(cli, "%s", pg_error_message());
    const char *msg = pg_error_message();
    fprintf(stderr, "%s: error: %s\n", cli->prog, *msg ? msg : pg_strerror(code));
    exit(pg_exit_status(code));
}

void pg_cli_die(const struct pg_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(cli, "error: ", fmt, ap);
    va_end(ap);
    exit(PG_EXIT_FAIL);
}

void pg_cli_info(const struct pg_cli *cli, const char *fmt, ...)
{
    if (cli->verbosity < 1) return;
    va_list ap;
    va_start(ap, fmt);
    report(cli, "", fmt, ap);
    va_end(ap);
}

void pg_cli_stub_main(const char *prog, int argc, char **argv)
{
    char usage[256];
    snprintf(usage, sizeof usage, "Usage: %s ...\nNot implemented yet in this version of pgolf (exit status 3).\n", prog);
    struct pg_cli cli;
    pg_cli_init(&cli, prog, usage, argv);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) pg_cli_common(&cli, 'h');
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) pg_cli_common(&cli, 'V');
    }
    fprintf(stderr, "%s: not implemented yet in this version of pgolf\n", prog);
    exit(PG_EXIT_UNAVAILABLE);
}

void pg_cli_check(const struct pg_cli *cli, int rc)
{
    if (rc) pg_cli_fail(cli, rc);
}
