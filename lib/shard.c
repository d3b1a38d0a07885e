/* shard.c: parameter-golf token shards: validate, map, list, write, stream (see shard.h). */
#define _POSIX_C_SOURCE 200809L
#include "shard.h"

#include "err.h"
#include "xio.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- header ---- */

int pg_shard_check_header(const unsigned char *hdr, uint64_t file_size, const char *path, uint64_t *count)
{
    if (file_size < PG_SHARD_HEADER_BYTES)
        return pg_error(PG_E_FORMAT, "%s: truncated shard: %llu bytes, smaller than the 1024-byte header", path,
                        (unsigned long long)file_size);
    uint32_t magic = pg_le32_get(hdr), version = pg_le32_get(hdr + 4);
    int32_t ntok = (int32_t)pg_le32_get(hdr + 8);
    if (magic != PG_SHARD_MAGIC)
        return pg_error(PG_E_FORMAT, "%s: not a token shard: magic %u, expected %u", path, magic, PG_SHARD_MAGIC);
    if (version != PG_SHARD_VERSION)
        return pg_error(PG_E_FORMAT, "%s: unsupported shard version %u (this build reads version %d)", path, version,
                        PG_SHARD_VERSION);
    if (ntok < 0) return pg_error(PG_E_FORMAT, "%s: negative token count %d in header", path, ntok);
    for (int i = 3; i < 256; i++)
        if (pg_le32_get(hdr + 4 * i))
            return pg_error(PG_E_FORMAT, "%s: reserved header field %d is not zero", path, i);
    uint64_t want = PG_SHARD_HEADER_BYTES + 2ull * (uint64_t)ntok;
    if (file_size != want)
        return pg_error(PG_E_FORMAT, "%s: size %llu disagrees with the header (%d tokens need %llu bytes)%s", path,
                        (unsigned long long)file_size, ntok, (unsigned long long)want,
                        file_size < want ? ": truncated" : "");
    *count = (uint64_t)ntok;
    return 0;
}

void pg_shard_make_header(unsigned char *hdr, uint64_t count)
{
    memset(hdr, 0, PG_SHARD_HEADER_BYTES);
    pg_le32_put(hdr, PG_SHARD_MAGIC);
    pg_le32_put(hdr + 4, PG_SHARD_VERSION);
    pg_le32_put(hdr + 8, (uint32_t)count);
}

/* ---- one shard ---- */

int pg_shard_open(struct pg_shard *s, const char *path)
{
    memset(s, 0, sizeof *s);
    s->path = pg_strdup(path);
    if (!s->path) return PG_E_NOMEM;
    int rc = pg_map_open(&s->map, path);
    if (!rc) rc = pg_shard_check_header(s->map.data, s->map.size, path, &s->n);
    if (rc) {
        pg_shard_close(s);
        return rc;
    }
    s->tokens = (const uint16_t *)(s->map.data + PG_SHARD_HEADER_BYTES);
    return 0;
}

void pg_shard_close(struct pg_shard *s)
{
    pg_map_close(&s->map);
    free(s->path);
    memset(s, 0, sizeof *s);
}

/* ---- listing ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Matches "<prefix>_<split>_<digits>.bin": parameter-golf's glob "<prefix>_<split>_*.bin" less the CaseOps
 * sidecar "<prefix>_val_bytes_*.bin". */
static int name_matches(const char *name, const char *prefix, const char *split)
{
    size_t lp = strlen(prefix), ls = strlen(split), ln = strlen(name);
    if (ln < lp + ls + 2 + 4) return 0;
    if (strncmp(name, prefix, lp) || name[lp] != '_' || strncmp(name + lp + 1, split, ls) || name[lp + 1 + ls] != '_')
        return 0;
    if (strcmp(name + ln - 4, ".bin") != 0) return 0;
    /* Only digits between "<split>_" and ".bin": "val" must not take "val_bytes" (the CaseOps sidecar). */
    for (size_t i = lp + ls + 2; i < ln - 4; i++)
        if (name[i] < '0' || name[i] > '9') return 0;
    return 1;
}

int pg_shard_list(const char *dir, const char *prefix, const char *split, char ***paths, size_t *n)
{
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return pg_error_errno(PG_E_IO, "cannot open directory '%s'", dir);
    char **v = NULL;
    size_t cap = 0, cnt = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !name_matches(e->d_name, prefix, split)) continue;
        if ((rc = pg_grow((void **)&v, &cap, cnt + 1, sizeof *v))) break;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(v[cnt] = pg_malloc(len))) {
            rc = PG_E_NOMEM;
            break;
        }
        snprintf(v[cnt++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (rc) {
        pg_shard_list_free(v, cnt);
        return rc;
    }
    if (cnt > 1) qsort(v, cnt, sizeof *v, cmp_str);
    *paths = v;
    *n = cnt;
    return 0;
}

void pg_shard_list_free(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

/* ---- writing ---- */

int pg_shard_writer_open(struct pg_shard_writer *w, const char *dir, const char *prefix, const char *split,
                         uint64_t max_tokens)
{
    memset(w, 0, sizeof *w);
    if (max_tokens == 0 || max_tokens > PG_SHARD_MAX_TOKENS)
        return pg_error(PG_E_INVAL, "shard size %llu is out of range [1, %llu]", (unsigned long long)max_tokens,
                        PG_SHARD_MAX_TOKENS);
    w->dir = pg_strdup(dir);
    w->prefix = pg_strdup(prefix);
    w->split = pg_strdup(split);
    w->max_tokens = max_tokens;
    if (!w->dir || !w->prefix || !w->split) {
        pg_shard_writer_abort(w);
        return PG_E_NOMEM;
    }
    return 0;
}

static int start_shard(struct pg_shard_writer *w)
{
    PG_TRY(pg_grow((void **)&w->files, &w->cap, w->nfiles + 1, sizeof *w->files));
    size_t len = strlen(w->dir) + strlen(w->prefix) + strlen(w->split) + 32;
    char *path = pg_malloc(len);
    if (!path) return PG_E_NOMEM;
    snprintf(path, len, "%s/%s_%s_%06zu.bin", w->dir, w->prefix, w->split, w->nfiles);
    struct pg_out *o = &w->files[w->nfiles];
    int rc = pg_out_open(o, path);
    free(path);
    if (rc) return rc;
    w->nfiles++;
    w->in_current = 0;
    unsigned char hdr[PG_SHARD_HEADER_BYTES];
    pg_shard_make_header(hdr, 0); /* count patched when the shard is finished */
    return pg_out_write(o, hdr, sizeof hdr);
}

static int finish_shard(struct pg_shard_writer *w)
{
    struct pg_out *o = &w->files[w->nfiles - 1];
    unsigned char hdr[PG_SHARD_HEADER_BYTES];
    pg_shard_make_header(hdr, w->in_current);
    PG_TRY(pg_out_pwrite(o, hdr, sizeof hdr, 0));
    return pg_out_finish(o);
}

int pg_shard_writer_put(struct pg_shard_writer *w, const uint16_t *tok, size_t n)
{
    while (n > 0) {
        if (w->nfiles == 0 || w->in_current == w->max_tokens) {
            if (w->nfiles) PG_TRY(finish_shard(w));
            PG_TRY(start_shard(w));
        }
        uint64_t room = w->max_tokens - w->in_current;
        size_t k = n < room ? n : (size_t)room;
        PG_TRY(pg_out_write(&w->files[w->nfiles - 1], tok, k * sizeof *tok));
        w->in_current += k;
        w->total += k;
        tok += k;
        n -= k;
    }
    return 0;
}

int pg_shard_writer_finish(struct pg_shard_writer *w)
{
    if (w->finished || !w->nfiles) return 0;
    PG_TRY(finish_shard(w));
    w->finished = 1;
    return 0;
}

int pg_shard_writer_commit(struct pg_shard_writer *w, size_t *nfiles_out)
{
    int rc = pg_shard_writer_finish(w);
    for (size_t i = 0; i < w->nfiles && !rc; i++) rc = pg_out_rename(&w->files[i]);
    size_t n = w->nfiles;
    pg_shard_writer_abort(w); /* removes any temporary left by a failure, frees the rest */
    if (nfiles_out) *nfiles_out = rc ? 0 : n;
    return rc;
}

void pg_shard_writer_abort(struct pg_shard_writer *w)
{
    for (size_t i = 0; i < w->nfiles; i++) pg_out_abort(&w->files[i]);
    free(w->files);
    free(w->dir);
    free(w->prefix);
    free(w->split);
    memset(w, 0, sizeof *w);
}

/* ---- stream ---- */

int pg_stream_open(struct pg_token_stream *s, char *const *paths, size_t n)
{
    memset(s, 0, sizeof *s);
    if (n == 0) return pg_error(PG_E_INVAL, "no shard to stream from");
    s->paths = pg_calloc(n, sizeof *s->paths);
    if (!s->paths) return PG_E_NOMEM;
    s->nfiles = n;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        struct pg_shard sh;
        int rc = (s->paths[i] = pg_strdup(paths[i])) ? pg_shard_open(&sh, paths[i]) : PG_E_NOMEM;
        if (rc) {
            pg_stream_close(s);
            return rc;
        }
        total += sh.n;
        pg_shard_close(&sh);
    }
    if (total == 0) {
        int rc = pg_error(PG_E_INVAL, "%s: the shards hold no token", paths[0]);
        pg_stream_close(s);
        return rc;
    }
    int rc = pg_shard_open(&s->cur, s->paths[0]);
    if (rc) pg_stream_close(s);
    return rc;
}

static int stream_load(struct pg_token_stream *s, size_t file)
{
    pg_shard_close(&s->cur);
    s->file = file;
    s->pos = 0;
    return pg_shard_open(&s->cur, s->paths[file]);
}

int pg_stream_take(struct pg_token_stream *s, uint16_t *out, size_t n)
{
    while (n > 0) {
        uint64_t avail = s->cur.n - s->pos;
        if (avail == 0) {
            PG_TRY(stream_load(s, (s->file + 1) % s->nfiles));
            continue;
        }
        size_t k = n < avail ? n : (size_t)avail;
        memcpy(out, s->cur.tokens + s->pos, k * sizeof *out);
        s->pos += k;
        out += k;
        n -= k;
    }
    return 0;
}

int pg_stream_seek(struct pg_token_stream *s, size_t file, uint64_t pos)
{
    if (file >= s->nfiles) return pg_error(PG_E_INVAL, "stream position: shard %zu of %zu", file, s->nfiles);
    if (file != s->file) PG_TRY(stream_load(s, file));
    if (pos > s->cur.n)
        return pg_error(PG_E_INVAL, "%s: stream position %llu is past its %llu tokens", s->paths[file],
                        (unsigned long long)pos, (unsigned long long)s->cur.n);
    s->pos = pos;
    return 0;
}

void pg_stream_close(struct pg_token_stream *s)
{
    pg_shard_close(&s->cur);
    if (s->paths) pg_shard_list_free(s->paths, s->nfiles);
    memset(s, 0, sizeof *s);
}

/* ---- whole split ---- */

int pg_split_read(const char *dir, const char *prefix, const char *split, uint16_t **tokens, uint64_t *n)
{
    *tokens = NULL;
    *n = 0;
    char **paths;
    size_t np;
    PG_TRY(pg_shard_list(dir, prefix, split, &paths, &np));
    if (np == 0) return pg_error(PG_E_IO, "%s: no %s_%s_*.bin shard", dir, prefix, split);
    uint16_t *buf = NULL;
    size_t cap = 0;
    uint64_t len = 0;
    int rc = 0;
    for (size_t i = 0; i < np && !rc; i++) {
        struct pg_shard sh;
        if ((rc = pg_shard_open(&sh, paths[i]))) break;
        if (!(rc = pg_grow((void **)&buf, &cap, len + sh.n, sizeof *buf))) {
            if (sh.n) memcpy(buf + len, sh.tokens, sh.n * sizeof *buf);
            len += sh.n;
        }
        pg_shard_close(&sh);
    }
    pg_shard_list_free(paths, np);
    if (rc) {
        free(buf);
        return rc;
    }
    *tokens = buf;
    *n = len;
    return 0;
}
