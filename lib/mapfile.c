/* mapfile.c: mmap'd read-only input with a read() fallback for pipes (see mapfile.h). */
#define _DEFAULT_SOURCE
#include "mapfile.h"

#include "err.h"
#include "xio.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_all(struct pg_map *m, int fd, const char *path)
{
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (pg_grow((void **)&buf, &cap, len + 65536, 1)) {
            free(buf);
            return PG_E_NOMEM;
        }
        size_t got;
        int rc = pg_read_upto(fd, buf + len, cap - len, &got, path);
        if (rc) {
            free(buf);
            return rc;
        }
        len += got;
        if (got == 0) break;
    }
    m->data = buf;
    m->size = len;
    m->mapped = 0;
    return 0;
}

int pg_map_open(struct pg_map *m, const char *path)
{
    memset(m, 0, sizeof *m);
    int fd;
    PG_TRY(pg_open_read(path, &fd));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = pg_error_errno(PG_E_IO, "cannot stat '%s'", path);
    } else if (!S_ISREG(st.st_mode)) {
        rc = read_all(m, fd, path);
    } else if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rc = pg_error_errno(PG_E_IO, "cannot map '%s'", path);
        } else {
            m->data = p;
            m->size = (size_t)st.st_size;
            m->mapped = 1;
        }
    }
    if (fd != STDIN_FILENO) close(fd);
    return rc;
}

void pg_map_sequential(struct pg_map *m)
{
    if (m->mapped && m->size) madvise((void *)m->data, m->size, MADV_SEQUENTIAL);
}

void pg_map_close(struct pg_map *m)
{
    if (m->data) {
        if (m->mapped) munmap((void *)m->data, m->size);
        else free((void *)m->data);
    }
    memset(m, 0, sizeof *m);
}
