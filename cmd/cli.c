/* cli.c: shared command-line behaviour (see cli.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "../lib/err.h"
#include "../lib/outfile.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

void pg_cli_init(struct pg_cli *cli, const char *prog, const char *usage)
{
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
    case 'v': cli->verbosity++; return 1;
    case PG_OPT_JSON: cli->json = 1; return 1;
    case PG_OPT_PROGRESS: cli->progress = 1; return 1;
    case PG_OPT_NO_PROGRESS: cli->progress = 0; return 1;
    case '?': /* getopt_long has already printed what was wrong */
        fprintf(stderr, "Try '%s --help'.\n", cli->prog);
        exit(PG_EXIT_USAGE);
    default: return 0;
    }
}

int pg_cli_progress(const struct pg_cli *cli)
{
    if (cli->progress >= 0) return cli->progress;
    return cli->verbosity > 0 && isatty(STDERR_FILENO);
}

void pg_cli_usage_error(const struct pg_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli->prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", cli->prog);
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
    fprintf(stderr, "%s: error: ", cli->prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(PG_EXIT_FAIL);
}

void pg_cli_info(const struct pg_cli *cli, const char *fmt, ...)
{
    if (cli->verbosity < 1) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli->prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void pg_cli_not_implemented(const char *prog)
{
    fprintf(stderr, "%s: not implemented yet in this version of pgolf\n", prog);
    exit(PG_EXIT_UNAVAILABLE);
}
