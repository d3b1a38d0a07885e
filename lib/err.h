/* err.h: error codes and the per-thread error message of libpg.
 *
 * Library functions never exit: they return 0 on success or a negative PG_E_* code, and leave a
 * one-line message (naming the file and the problem) that the command prints. Only cmd/ decides
 * how a program ends. This is not a logging facility: one message, the latest, per thread.
 */
#ifndef PG_ERR_H
#define PG_ERR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" { /* kernels/cuda's C++ sources report through pg_error too */
#endif

enum pg_err {
    PG_OK = 0,
    PG_E_IO = -1,        /* open/read/write/rename failed */
    PG_E_FORMAT = -2,    /* a file is malformed: bad magic, version, size, truncation */
    PG_E_NOMEM = -3,     /* an allocation failed (host memory, or device memory on a GPU) */
    PG_E_INVAL = -4,     /* a bad argument or value (usage-level) */
    PG_E_UNSUPPORTED = -5, /* a feature this build or machine does not have */
    PG_E_LIB = -6,       /* an external library reported an error (also a failed CUDA/cuBLAS call) */
    PG_E_INTERRUPTED = -7, /* SIGINT/SIGTERM arrived */
};

/* Process exit statuses, fixed and documented in every man page. */
enum pg_exit { PG_EXIT_OK = 0, PG_EXIT_FAIL = 1, PG_EXIT_USAGE = 2, PG_EXIT_UNAVAILABLE = 3 };

/* Records `code` and a printf-style message as this thread's latest error.
 * @return code (so `return pg_error(PG_E_IO, "...")` reads naturally). */
int pg_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like pg_error, appending ": strerror(errno)" for the errno value captured at the call. */
int pg_error_errno(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* @return this thread's latest error message ("" if none). */
const char *pg_error_message(void);

/* Clears this thread's error message. */
void pg_error_clear(void);

/* @return a short name for a PG_E_* code. */
const char *pg_strerror(int code);

/* Maps a library result code to a process exit status (usage errors → 2, missing features → 3). */
int pg_exit_status(int code);

/* Forwards a negative result to the caller; with PG_DEBUG set in the environment, the
 * forwarding site is appended to stderr so a failure's path can be traced. */
#define PG_TRY(expr)                                                                               \
    do {                                                                                           \
        int pg_try_rc_ = (expr);                                                                   \
        if (pg_try_rc_ < 0) {                                                                      \
            pg_error_trace(__FILE__, __LINE__, #expr);                                             \
            return pg_try_rc_;                                                                     \
        }                                                                                          \
    } while (0)

void pg_error_trace(const char *file, int line, const char *expr);

#ifdef __cplusplus
}
#endif

#endif
