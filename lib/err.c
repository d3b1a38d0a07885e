/* err.c: the per-thread latest error message and code names. */
#define _POSIX_C_SOURCE 200809L
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char err_msg[1024];

static void vset(const char *fmt, va_list ap, int errnum)
{
    int n = vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    if (errnum && n >= 0 && (size_t)n < sizeof err_msg)
        snprintf(err_msg + n, sizeof err_msg - (size_t)n, ": %s", strerror(errnum));
}

int pg_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(fmt, ap, 0);
    va_end(ap);
    return code;
}

int pg_error_errno(int code, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vset(fmt, ap, saved ? saved : EIO);
    va_end(ap);
    return code;
}

const char *pg_error_message(void) { return err_msg; }

void pg_error_clear(void) { err_msg[0] = 0; }

const char *pg_strerror(int code)
{
    switch (code) {
    case PG_OK: return "ok";
    case PG_E_IO: return "I/O error";
    case PG_E_FORMAT: return "malformed file";
    case PG_E_NOMEM: return "out of memory";
    case PG_E_INVAL: return "invalid argument";
    case PG_E_UNSUPPORTED: return "feature unavailable";
    case PG_E_LIB: return "library error";
    case PG_E_INTERRUPTED: return "interrupted";
    default: return "unknown error";
    }
}

int pg_exit_status(int code)
{
    if (code >= 0) return PG_EXIT_OK;
    if (code == PG_E_INVAL) return PG_EXIT_USAGE;
    if (code == PG_E_UNSUPPORTED) return PG_EXIT_UNAVAILABLE;
    return PG_EXIT_FAIL;
}

void pg_error_trace(const char *file, int line, const char *expr)
{
    const char *dbg = getenv("PG_DEBUG");
    if (dbg && *dbg && strcmp(dbg, "0") != 0)
        fprintf(stderr, "pg: trace: %s:%d: %s failed\n", file, line, expr);
}
