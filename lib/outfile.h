/* outfile.h: atomic output files.
 *
 * Every file pgolf writes goes to a temporary file in the destination's folder
 * (".NAME.tmp.XXXXXX"), is fsync'd, and is renamed into place only when complete, so an
 * interrupted or failed command never leaves a half-written file under the final name. Open
 * temporaries are registered so that SIGINT/SIGTERM/SIGHUP (pg_out_install_signal_cleanup)
 * unlink them before the process dies. "-" writes straight to stdout (no atomicity possible).
 * Writes are buffered.
 */
#ifndef PG_OUTFILE_H
#define PG_OUTFILE_H

#include <stddef.h>
#include <sys/types.h>

struct pg_out {
    char *path;         /* final name */
    char *tmp;          /* temporary name, NULL for stdout */
    int fd;
    int is_stdout;
    unsigned char *buf; /* write buffer */
    size_t len, cap;
    off_t written;      /* bytes handed to the kernel so far */
};

/* Opens a temporary file beside `path` ("-": stdout). @return 0, or PG_E_IO naming path. */
int pg_out_open(struct pg_out *o, const char *path);

/* Appends n bytes. @return 0, or PG_E_IO. */
int pg_out_write(struct pg_out *o, const void *data, size_t n);

/* Overwrites n bytes at absolute offset `off` (after flushing; not for stdout). @return 0 or PG_E_IO. */
int pg_out_pwrite(struct pg_out *o, const void *data, size_t n, off_t off);

/* @return the bytes written so far (buffered included). */
off_t pg_out_size(const struct pg_out *o);

/* Flushes, fsyncs, renames into place and fsyncs the folder; frees o. @return 0 or PG_E_IO
 * (on failure the temporary is removed). */
int pg_out_commit(struct pg_out *o);

/* Flushes and fsyncs, but keeps the temporary name (for multi-file outputs that must all be
 * complete before any is renamed; finish with pg_out_rename). @return 0 or PG_E_IO. */
int pg_out_finish(struct pg_out *o);

/* Renames a finished temporary into place; frees o. @return 0 or PG_E_IO. */
int pg_out_rename(struct pg_out *o);

/* Removes the temporary and frees o. Safe on a zeroed or already-closed struct. */
void pg_out_abort(struct pg_out *o);

/* Writes the n bytes at data to path atomically: open, write, commit, the temporary removed on
 * any failure. @return 0 or PG_E_IO naming path. */
int pg_out_save(const char *path, const void *data, size_t n);

/* Installs handlers for SIGINT, SIGTERM and SIGHUP that unlink every open temporary, then
 * die of the same signal (so the shell sees the usual status). SIGXFSZ is ignored, so a write
 * past `ulimit -f` fails (and is reported) like one to a full disk. */
void pg_out_install_signal_cleanup(void);

#endif
