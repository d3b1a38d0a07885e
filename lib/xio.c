/* xio.c: checked allocation and I/O wrappers (see xio.h). */
#define _POSIX_C_SOURCE 200809L
#include "xio.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void *pg_malloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) pg_error(PG_E_NOMEM, "out of memory allocating %zu bytes (%s:%d)", n, file, line);
    return p;
}

void *pg_calloc_at(size_t count, size_t size, const char *file, int line)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) pg_error(PG_E_NOMEM, "out of memory allocating %zu x %zu bytes (%s:%d)", count, size, file, line);
    return p;
}

void *pg_realloc_at(void *old, size_t n, const char *file, int line)
{
    void *p = realloc(old, n ? n : 1);
    if (!p) pg_error(PG_E_NOMEM, "out of memory growing to %zu bytes (%s:%d)", n, file, line);
    return p;
}

char *pg_strdup_at(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = pg_malloc_at(n, file, line);
    if (p) memcpy(p, s, n);
    return p;
}

int pg_grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / elem) return pg_error(PG_E_NOMEM, "buffer of %zu elements is too large", need);
        ncap *= 2;
    }
    void *p = pg_realloc(*buf, ncap * elem);
    if (!p) return PG_E_NOMEM;
    *buf = p;
    *cap = ncap;
    return 0;
}

int pg_open_read(const char *path, int *fd)
{
    if (strcmp(path, "-") == 0) {
        *fd = STDIN_FILENO;
        return 0;
    }
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) return pg_error_errno(PG_E_IO, "cannot open '%s'", path);
    struct stat st;
    if (fstat(f, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(f);
        return pg_error(PG_E_IO, "cannot read '%s': it is a directory", path);
    }
    *fd = f;
    return 0;
}

int pg_read_upto(int fd, void *buf, size_t n, size_t *got, const char *path)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, (char *)buf + done, n - done);
        if (r < 0) {
            if (errno == EINTR) continue;
            return pg_error_errno(PG_E_IO, "cannot read '%s'", path);
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

int pg_write_all(int fd, const void *buf, size_t n, const char *path)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return pg_error_errno(PG_E_IO, "cannot write '%s'", path);
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int pg_pwrite_all(int fd, const void *buf, size_t n, off_t off, const char *path)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return pg_error_errno(PG_E_IO, "cannot write '%s'", path);
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

int pg_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int pg_mkdir_p(const char *path)
{
    char *p = pg_strdup(path);
    if (!p) return PG_E_NOMEM;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int rc = pg_error_errno(PG_E_IO, "cannot create directory '%s'", p);
                free(p);
                return rc;
            }
            *s = c;
            if (!c) break;
        }
    }
    struct stat st;
    int ok = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    return ok ? 0 : pg_error(PG_E_IO, "'%s' exists and is not a directory", path);
}
