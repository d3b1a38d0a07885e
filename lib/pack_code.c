/* pack_code.c: pg-pack --code-self (see pack_code.h). */
#define _POSIX_C_SOURCE 200809L
#include "pack_code.h"

#include "codec.h"
#include "err.h"
#include "xio.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The files named one by one, and the folders taken whole (files ending in one of the suffixes). */
static const char *const single[] = {"Makefile", "cmd/pg-eval.c", "cmd/pg-ttt.c", "cmd/scoring.c",
                                     "cmd/scoring.h", "cmd/cli.c", "cmd/cli.h"};
static const struct {
    const char *dir;
    const char *const suffixes[3];
} folders[] = {{"lib", {".c", ".h", ".cc"}}, {"kernels/cpu", {".c", ".h", NULL}}};

struct list {
    char **path;
    size_t n, cap;
};

static int add(struct list *l, const char *a, const char *b)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **np = realloc(l->path, cap * sizeof *np);
        if (!np) return pg_error(PG_E_NOMEM, "code-self: out of memory");
        l->path = np, l->cap = cap;
    }
    size_t len = strlen(a) + strlen(b) + 2;
    if (!(l->path[l->n] = malloc(len))) return pg_error(PG_E_NOMEM, "code-self: out of memory");
    snprintf(l->path[l->n++], len, b[0] ? "%s/%s" : "%s%s", a, b);
    return 0;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a > b && !strcmp(s + a - b, suf);
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

/* Appends "PATH\nSIZE\n" and the bytes of root/rel to buf. */
static int append_file(const char *root, const char *rel, unsigned char **buf, size_t *n, size_t *cap, uint64_t *raw)
{
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", root, rel);
    FILE *f = fopen(full, "rb");
    if (!f) return pg_error(PG_E_IO, "%s: cannot read (is %s a pgolf source tree?)", full, root);
    int rc = 0;
    if (fseek(f, 0, SEEK_END) || ftell(f) < 0) rc = pg_error(PG_E_IO, "%s: cannot read", full);
    long size = rc ? 0 : ftell(f);
    if (!rc && fseek(f, 0, SEEK_SET)) rc = pg_error(PG_E_IO, "%s: cannot read", full);
    char head[4200];
    int hn = snprintf(head, sizeof head, "%s\n%ld\n", rel, size);
    size_t need = *n + (size_t)hn + (size_t)size;
    if (!rc && need > *cap) {
        size_t c = *cap ? *cap : 1 << 20;
        while (c < need) c *= 2;
        unsigned char *nb = realloc(*buf, c);
        if (!nb) rc = pg_error(PG_E_NOMEM, "code-self: out of memory");
        else *buf = nb, *cap = c;
    }
    if (!rc) {
        memcpy(*buf + *n, head, (size_t)hn);
        if (size && fread(*buf + *n + hn, 1, (size_t)size, f) != (size_t)size) rc = pg_error(PG_E_IO, "%s: short read", full);
    }
    fclose(f);
    if (!rc) *n = need, *raw += (uint64_t)size;
    return rc;
}

int pg_code_self_measure(const char *root, struct pg_code_self *cs)
{
    memset(cs, 0, sizeof *cs);
    struct list l = {0};
    int rc = 0;
    for (size_t i = 0; i < sizeof single / sizeof *single && !rc; i++) rc = add(&l, single[i], "");
    for (size_t k = 0; k < sizeof folders / sizeof *folders && !rc; k++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", root, folders[k].dir);
        DIR *d = opendir(dir);
        if (!d) {
            rc = pg_error(PG_E_IO, "%s: cannot list (is %s a pgolf source tree?)", dir, root);
            break;
        }
        struct dirent *e;
        while (!rc && (e = readdir(d))) {
            int take = 0;
            for (int j = 0; j < 3 && folders[k].suffixes[j]; j++) take |= ends_with(e->d_name, folders[k].suffixes[j]);
            if (take) rc = add(&l, folders[k].dir, e->d_name);
        }
        closedir(d);
    }
    if (!rc) qsort(l.path, l.n, sizeof *l.path, cmp_str);
    unsigned char *buf = NULL, *z = NULL;
    size_t n = 0, cap = 0, zn = 0;
    for (size_t i = 0; i < l.n && !rc; i++) rc = append_file(root, l.path[i], &buf, &n, &cap, &cs->raw_bytes);
    if (!rc) rc = pg_compress(PG_CODEC_LZMA, NULL, buf, n, &z, &zn);
    if (!rc) cs->files = l.n, cs->packed_bytes = zn;
    for (size_t i = 0; i < l.n; i++) free(l.path[i]);
    free(l.path), free(buf), free(z);
    return rc;
}
