/* outfile.c: temp file + fsync + rename, with signal-time cleanup of temporaries. */
#define _POSIX_C_SOURCE 200809L
#include "outfile.h"

#include "err.h"
#include "xio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUT_BUF (1u << 20)
#define MAX_TEMPS 1024

/* Registry of temporaries the signal handler must unlink. Slots hold pointers to strings that
 * stay alive while registered; a slot is published after the string is complete. */
static char *volatile temps[MAX_TEMPS];

static void temp_register(char *tmp)
{
    for (int i = 0; i < MAX_TEMPS; i++)
        if (!temps[i]) {
            temps[i] = tmp;
            return;
        }
    /* Registry full: the file is still written atomically, just not cleaned up on a signal. */
}

static void temp_unregister(const char *tmp)
{
    for (int i = 0; i < MAX_TEMPS; i++)
        if (temps[i] == tmp) temps[i] = NULL;
}

static void on_signal(int sig)
{
    for (int i = 0; i < MAX_TEMPS; i++)
        if (temps[i]) unlink(temps[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void pg_out_install_signal_cleanup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* A write past the file size limit (ulimit -f) then fails with EFBIG, which is reported and
     * cleaned up like a full disk, instead of killing the process with a temporary left behind. */
    signal(SIGXFSZ, SIG_IGN);
}

static void out_free(struct pg_out *o)
{
    if (o->tmp) temp_unregister(o->tmp);
    free(o->path);
    free(o->tmp);
    free(o->buf);
    o->path = o->tmp = NULL;
    o->buf = NULL;
    o->fd = -1;
}

int pg_out_open(struct pg_out *o, const char *path)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->path = pg_strdup(path);
    o->buf = pg_malloc(OUT_BUF);
    if (!o->path || !o->buf) {
        out_free(o);
        return PG_E_NOMEM;
    }
    o->cap = OUT_BUF;
    if (strcmp(path, "-") == 0) {
        o->is_stdout = 1;
        o->fd = STDOUT_FILENO;
        return 0;
    }
    /* ".NAME.tmp.XXXXXX" in the same folder, so rename() is atomic (same filesystem). */
    char *d = pg_strdup(path), *b = pg_strdup(path);
    if (!d || !b) {
        free(d);
        free(b);
        out_free(o);
        return PG_E_NOMEM;
    }
    const char *dir = dirname(d), *base = basename(b);
    size_t n = strlen(dir) + strlen(base) + 32;
    o->tmp = pg_malloc(n);
    if (!o->tmp) {
        free(d);
        free(b);
        out_free(o);
        return PG_E_NOMEM;
    }
    snprintf(o->tmp, n, "%s/.%s.tmp.XXXXXX", dir, base);
    free(d);
    free(b);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int rc = pg_error_errno(PG_E_IO, "cannot create '%s'", path);
        free(o->tmp);
        o->tmp = NULL;
        out_free(o);
        return rc;
    }
    /* mkstemp makes 0600; outputs are ordinary files, so apply the usual umask instead. */
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
    o->fd = fd;
    temp_register(o->tmp);
    return 0;
}

static int out_flush(struct pg_out *o)
{
    if (!o->len) return 0;
    int rc = pg_write_all(o->fd, o->buf, o->len, o->path);
    if (rc) return rc;
    o->written += (off_t)o->len;
    o->len = 0;
    return 0;
}

int pg_out_write(struct pg_out *o, const void *data, size_t n)
{
    const unsigned char *p = data;
    if (n >= o->cap) {
        PG_TRY(out_flush(o));
        PG_TRY(pg_write_all(o->fd, p, n, o->path));
        o->written += (off_t)n;
        return 0;
    }
    if (o->len + n > o->cap) PG_TRY(out_flush(o));
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

int pg_out_pwrite(struct pg_out *o, const void *data, size_t n, off_t off)
{
    if (o->is_stdout) return pg_error(PG_E_INVAL, "cannot seek in standard output");
    PG_TRY(out_flush(o));
    return pg_pwrite_all(o->fd, data, n, off, o->path);
}

off_t pg_out_size(const struct pg_out *o) { return o->written + (off_t)o->len; }

static int fsync_dir_of(const char *path)
{
    char *d = pg_strdup(path);
    if (!d) return PG_E_NOMEM;
    int fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(d);
    if (fd < 0) return 0; /* best effort: some filesystems refuse directory opens */
    fsync(fd);
    close(fd);
    return 0;
}

int pg_out_finish(struct pg_out *o)
{
    int rc = out_flush(o);
    if (rc) return rc;
    if (o->is_stdout) return 0;
    if (fsync(o->fd) != 0 && errno != EINVAL) return pg_error_errno(PG_E_IO, "cannot sync '%s'", o->path);
    return 0;
}

int pg_out_rename(struct pg_out *o)
{
    if (o->is_stdout) {
        out_free(o);
        return 0;
    }
    if (close(o->fd) != 0) {
        int rc = pg_error_errno(PG_E_IO, "cannot close '%s'", o->path);
        o->fd = -1;
        pg_out_abort(o);
        return rc;
    }
    o->fd = -1;
    if (rename(o->tmp, o->path) != 0) {
        int rc = pg_error_errno(PG_E_IO, "cannot rename into '%s'", o->path);
        pg_out_abort(o);
        return rc;
    }
    fsync_dir_of(o->path);
    out_free(o);
    return 0;
}

int pg_out_save(const char *path, const void *data, size_t n)
{
    struct pg_out o;
    PG_TRY(pg_out_open(&o, path));
    int rc = pg_out_write(&o, data, n);
    if (!rc) return pg_out_commit(&o);
    pg_out_abort(&o);
    return rc;
}

int pg_out_commit(struct pg_out *o)
{
    int rc = pg_out_finish(o);
    if (rc) {
        pg_out_abort(o);
        return rc;
    }
    return pg_out_rename(o);
}

void pg_out_abort(struct pg_out *o)
{
    if (!o->path && !o->tmp) return;
    if (o->fd >= 0 && !o->is_stdout) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    out_free(o);
}
