/* pack_code.c: pg-pack --code-self (see pack_code.h). */
#define _POSIX_C_SOURCE 200809L
#include "pack_code.h"

#include "codec.h"
#include "err.h"
#include "mapfile.h"
#include "outfile.h"
#include "xio.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The files named one by one, and the folders taken whole (files ending in one of the suffixes). */
static const char *const single[] = {"Makefile", "scripts/probe-features.sh", "cmd/pg-eval.c", "cmd/pg-ttt.c",
                                     "cmd/scoring.c", "cmd/scoring.h", "cmd/cli.c", "cmd/cli.h"};
static const struct {
    const char *dir;
    const char *const suffixes[3];
} folders[] = {{"lib", {".c", ".h", ".cc"}}, {"kernels/cpu", {".c", ".h", NULL}}};

/* The lib/ sources neither scorer links (the linker's map of pg-eval and pg-ttt: training,
 * tokenizer training and encoding, the ranks, the quantizer with GPTQ, its calibration and
 * searches (qmodel.c has what reading a .pgq needs), the code count itself): left out, the
 * Makefile builds libpg from the rest. tests/cli/test-pack.sh builds both scorers
 * from the archive, so a file one of them comes to need fails make check until it leaves this
 * list. */
static const char *const unlinked[] = {"lib/calib.c",          "lib/calib_self.c",      "lib/dist.c",
                                       "lib/docs.c",           "lib/gptq.c",            "lib/pack_code.c",
                                       "lib/qfit.c",           "lib/qsearch.c",         "lib/quant.c",
                                       "lib/runlock.c",        "lib/tokenize_encode.c", "lib/tokenize_shards.c",
                                       "lib/tokenize_train.c", "lib/train.c"};

static int is_unlinked(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    for (size_t i = 0; i < sizeof unlinked / sizeof *unlinked; i++)
        if (!strcmp(path, unlinked[i])) return 1;
    return 0;
}

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

static int is_blank(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* C or C++ source s[0..n) without its comments, written to out (n bytes suffice): the lines kept
 * where they were (so __LINE__ and the preprocessor's line structure do not move), each without
 * the blanks at its start and end. A comment becomes a space, or as many newlines as it spanned;
 * string and character literals are copied as they are. What the compiler sees is the same
 * sequence of tokens. The blanks at a line's start become one space after a line that ends in a
 * backslash, where they may separate two tokens of a continued line. @return the bytes written. */
size_t pg_code_strip_c(const unsigned char *s, size_t n, unsigned char *out)
{
    /* first the comments */
    unsigned char *t = out; /* then stripped of blanks in place */
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == '"' || c == '\'') { /* a literal, to its closing quote (never past the line) */
            t[m++] = s[i++];
            while (i < n && s[i] != c && s[i] != '\n') {
                if (s[i] == '\\' && i + 1 < n) t[m++] = s[i++];
                t[m++] = s[i++];
            }
            if (i < n && s[i] == c) t[m++] = s[i++];
        } else if (c == '/' && i + 1 < n && s[i + 1] == '/') { /* to the line's end, continued lines too */
            while (i < n && !(s[i] == '\n' && s[i - 1] != '\\')) {
                if (s[i] == '\n') t[m++] = '\n';
                i++;
            }
        } else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
            size_t lines = 0;
            for (i += 2; i < n && !(s[i] == '*' && i + 1 < n && s[i + 1] == '/'); i++) lines += s[i] == '\n';
            i = i < n ? i + 2 : n;
            if (!lines) t[m++] = ' ';
            while (lines--) t[m++] = '\n';
        } else {
            t[m++] = s[i++];
        }
    }
    /* then the blanks at each line's start and end, in place */
    size_t w = 0;
    int continued = 0;
    for (size_t i = 0; i < m;) {
        size_t e = i;
        while (e < m && t[e] != '\n') e++;
        size_t a = i, b = e;
        while (a < b && is_blank(t[a])) a++;
        while (b > a && is_blank(t[b - 1])) b--;
        if (continued && a > i && b > a) t[w++] = ' ';
        memmove(t + w, t + a, b - a);
        w += b - a;
        continued = b > a && t[w - 1] == '\\';
        if (e < m) t[w++] = '\n';
        i = e + 1;
    }
    return w;
}

/* A Makefile without its comment lines (a line whose first non-blank is '#', with the lines
 * that continue it) and its empty lines, to out (n bytes suffice). @return the bytes written. */
static size_t strip_make(const unsigned char *s, size_t n, unsigned char *out)
{
    size_t w = 0;
    int in_comment = 0, continued = 0;
    for (size_t i = 0; i < n;) {
        size_t e = i;
        while (e < n && s[e] != '\n') e++;
        size_t a = i;
        while (a < e && is_blank(s[a])) a++;
        int ends_bs = e > i && s[e - 1] == '\\';
        int drop = in_comment || (!continued && (a == e || (s[i] != '\t' && s[a] == '#'))); /* recipes kept */
        if (!drop) {
            memcpy(out + w, s + i, e - i);
            w += e - i;
            out[w++] = '\n';
        }
        in_comment = drop && a < e && (in_comment || s[a] == '#') && ends_bs;
        continued = !drop && ends_bs;
        i = e + 1;
    }
    return w;
}

/* Appends "PATH\nSIZE\n" and the bytes of root/rel, stripped (C, C++ and the Makefile), to buf. */
static int append_file(const char *root, const char *rel, unsigned char **buf, size_t *n, size_t *cap, uint64_t *raw)
{
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", root, rel);
    struct pg_map m;
    if (pg_map_open(&m, full)) return pg_error(PG_E_IO, "%s: cannot read (is %s a pgolf source tree?)", full, root);
    const int is_c = ends_with(rel, ".c") || ends_with(rel, ".h") || ends_with(rel, ".cc");
    const unsigned char *body = m.data;
    size_t len = m.size;
    unsigned char *stripped = NULL;
    int rc = 0;
    if (is_c || !strcmp(rel, "Makefile")) {
        if (!(stripped = malloc(m.size + 1))) rc = pg_error(PG_E_NOMEM, "code-self: out of memory");
        else len = is_c ? pg_code_strip_c(m.data, m.size, stripped) : strip_make(m.data, m.size, stripped);
        body = stripped;
    }
    char head[4200];
    int hn = snprintf(head, sizeof head, "%s\n%zu\n", rel, len);
    if (!rc) rc = pg_grow((void **)buf, cap, *n + (size_t)hn + len, 1);
    if (!rc) {
        memcpy(*buf + *n, head, (size_t)hn);
        if (len) memcpy(*buf + *n + hn, body, len);
        *n += (size_t)hn + len, *raw += m.size;
    }
    free(stripped);
    pg_map_close(&m);
    return rc;
}

int pg_code_self_measure(const char *root, struct pg_code_self *cs, const char *archive)
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
            if (take && !is_unlinked(folders[k].dir, e->d_name)) rc = add(&l, folders[k].dir, e->d_name);
        }
        closedir(d);
    }
    if (!rc) qsort(l.path, l.n, sizeof *l.path, cmp_str);
    unsigned char *buf = NULL, *z = NULL;
    size_t n = 0, cap = 0, zn = 0;
    for (size_t i = 0; i < l.n && !rc; i++) rc = append_file(root, l.path[i], &buf, &n, &cap, &cs->raw_bytes);
    if (!rc) rc = pg_compress(PG_CODEC_LZMA, NULL, buf, n, &z, &zn);
    if (!rc) cs->files = l.n, cs->archive_bytes = n, cs->packed_bytes = zn;
    if (!rc && archive) rc = pg_out_save(archive, z, zn);
    for (size_t i = 0; i < l.n; i++) free(l.path[i]);
    free(l.path), free(buf), free(z);
    return rc;
}
