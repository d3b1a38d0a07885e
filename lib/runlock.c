/* runlock.c: an flock'd lock file per run folder (see runlock.h). */
#define _DEFAULT_SOURCE
#include "runlock.h"

#include "err.h"
#include "xio.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int pg_run_lock(const char *dir, int *fd)
{
    *fd = -1;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, PG_RUNLOCK_NAME) >= (int)sizeof path)
        return pg_error(PG_E_INVAL, "run folder name '%s' is too long", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (f < 0) return pg_error_errno(PG_E_IO, "cannot create lock file '%s'", path);
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        char pid[32] = "";
        ssize_t n = busy ? pread(f, pid, sizeof pid - 1, 0) : 0;
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        int rc = busy ? pg_error(PG_E_IO, "run folder '%s' is in use by another pg-train (pid %s, lock file %s)", dir,
                                 pid[0] ? pid : "unknown", path)
                      : pg_error_errno(PG_E_IO, "cannot lock '%s'", path);
        close(f);
        return rc;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    int rc = ftruncate(f, 0) != 0 ? pg_error_errno(PG_E_IO, "cannot write lock file '%s'", path)
                                  : pg_pwrite_all(f, pid, (size_t)n, 0, path);
    if (rc) {
        close(f);
        return rc;
    }
    *fd = f;
    return 0;
}

void pg_run_unlock(int fd)
{
    if (fd >= 0) close(fd);
}

/* The temporaries of pg-train's own outputs (outfile.h names them ".NAME.tmp.XXXXXX"). */
static int train_temp(const char *name)
{
    static const char *const outs[] = {".ckpt_", ".model.safetensors.tmp."};
    if (!strstr(name, ".tmp.")) return 0;
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        if (strncmp(name, outs[i], strlen(outs[i])) == 0) return 1;
    return 0;
}

int pg_run_clean_temps(const char *dir, int *removed)
{
    *removed = 0;
    DIR *d = opendir(dir);
    if (!d) return pg_error_errno(PG_E_IO, "cannot open directory '%s'", dir);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) && !rc) {
        if (!train_temp(e->d_name)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) (*removed)++;
        else if (errno != ENOENT) rc = pg_error_errno(PG_E_IO, "cannot remove stale temporary '%s'", path);
    }
    closedir(d);
    return rc;
}
