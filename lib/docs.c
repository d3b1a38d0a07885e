/* docs.c: JSONL / plain-text document reader with a bounded buffer (see docs.h). */
#define _POSIX_C_SOURCE 200809L
#include "docs.h"

#include "err.h"
#include "utf8.h"
#include "xio.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK (1u << 16) /* the buffer grows past it only as a line needs */

int pg_docs_open(struct pg_docs *d, char *const *inputs, size_t n, int text_mode)
{
    memset(d, 0, sizeof *d);
    d->fd = -1;
    d->text_mode = text_mode;
    if (n == 0) return pg_error(PG_E_INVAL, "no input given");
    d->inputs = pg_calloc(n, sizeof *d->inputs);
    if (!d->inputs) return PG_E_NOMEM;
    d->ninputs = n;
    for (size_t i = 0; i < n; i++) {
        if (!(d->inputs[i] = pg_strdup(inputs[i]))) {
            pg_docs_close(d);
            return PG_E_NOMEM;
        }
        if (strcmp(inputs[i], "-") == 0) continue;
        struct stat st;
        if (stat(inputs[i], &st) != 0) {
            int rc = pg_error_errno(PG_E_IO, "cannot open '%s'", inputs[i]);
            pg_docs_close(d);
            return rc;
        }
        if (S_ISDIR(st.st_mode)) {
            int rc = pg_error(PG_E_IO, "cannot read '%s': it is a directory", inputs[i]);
            pg_docs_close(d);
            return rc;
        }
        if (S_ISREG(st.st_mode)) d->bytes_total += (uint64_t)st.st_size;
    }
    d->cur = (size_t)-1;
    return 0;
}

const char *pg_docs_current(const struct pg_docs *d)
{
    return d->cur < d->ninputs ? d->inputs[d->cur] : "(none)";
}

static void close_input(struct pg_docs *d)
{
    if (d->fd >= 0 && d->fd != STDIN_FILENO) close(d->fd);
    d->fd = -1;
}

/* Opens the next input. @return 1 if one was opened, 0 if none is left, or an error. */
static int next_input(struct pg_docs *d)
{
    close_input(d);
    d->cur++;
    if (d->cur >= d->ninputs) return 0;
    PG_TRY(pg_open_read(d->inputs[d->cur], &d->fd));
    d->pos = d->len = 0;
    d->eof = 0;
    d->line = 0;
    return 1;
}

/* Reads more bytes into the buffer, keeping [pos, len). @return 0 or an error; sets eof. */
static int fill(struct pg_docs *d)
{
    if (d->pos > 0) {
        memmove(d->buf, d->buf + d->pos, d->len - d->pos);
        d->len -= d->pos;
        d->pos = 0;
    }
    PG_TRY(pg_grow((void **)&d->buf, &d->cap, d->len + READ_CHUNK + 1, 1));
    size_t got;
    PG_TRY(pg_read_upto(d->fd, d->buf + d->len, d->cap - d->len - 1, &got, d->inputs[d->cur]));
    d->len += got;
    d->bytes_done += got;
    if (got == 0) d->eof = 1;
    return 0;
}

static int next_text(struct pg_docs *d, const char **text, size_t *len)
{
    for (;;) {
        if (d->fd < 0) {
            int rc = next_input(d);
            if (rc <= 0) return rc;
            while (!d->eof) PG_TRY(fill(d));
            size_t ok = pg_utf8_valid_prefix((const unsigned char *)d->buf, d->len);
            if (ok != d->len)
                return pg_error(PG_E_FORMAT, "%s: invalid UTF-8 at byte offset %zu", d->inputs[d->cur], ok);
            *text = d->buf ? d->buf : "";
            *len = d->len;
            close_input(d);
            d->ndocs++;
            return 1;
        }
        close_input(d);
    }
}

static int next_jsonl(struct pg_docs *d, const char **text, size_t *len)
{
    if (d->json) {
        json_decref(d->json);
        d->json = NULL;
    }
    for (;;) {
        if (d->fd < 0 && d->cur + 1 >= d->ninputs && d->cur != (size_t)-1) return 0;
        if (d->fd < 0) {
            int rc = next_input(d);
            if (rc <= 0) return rc;
        }
        char *nl = d->pos < d->len ? memchr(d->buf + d->pos, '\n', d->len - d->pos) : NULL;
        if (!nl && !d->eof) {
            PG_TRY(fill(d));
            continue;
        }
        if (!nl && d->pos == d->len) { /* input finished */
            close_input(d);
            if (d->cur + 1 >= d->ninputs) return 0;
            continue;
        }
        char *line = d->buf + d->pos;
        size_t n = nl ? (size_t)(nl - line) : d->len - d->pos;
        d->pos += n + (nl ? 1 : 0);
        d->line++;
        if (n && line[n - 1] == '\r') n--;
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == n) continue; /* blank line */
        json_error_t jerr;
        json_t *obj = json_loadb(line, n, JSON_ALLOW_NUL, &jerr);
        const char *where = d->inputs[d->cur];
        if (!obj)
            return pg_error(PG_E_FORMAT, "%s:%llu: invalid JSON: %s", where, (unsigned long long)d->line, jerr.text);
        json_t *t = json_is_object(obj) ? json_object_get(obj, "text") : NULL;
        if (!t || !json_is_string(t)) {
            json_decref(obj);
            return pg_error(PG_E_FORMAT, "%s:%llu: no string field \"text\"", where, (unsigned long long)d->line);
        }
        d->json = obj;
        *text = json_string_value(t);
        *len = json_string_length(t);
        d->ndocs++;
        return 1;
    }
}

int pg_docs_next(struct pg_docs *d, const char **text, size_t *len)
{
    return d->text_mode ? next_text(d, text, len) : next_jsonl(d, text, len);
}

void pg_docs_close(struct pg_docs *d)
{
    if (d->json) json_decref(d->json);
    close_input(d);
    for (size_t i = 0; i < d->ninputs; i++) free(d->inputs[i]);
    free(d->inputs);
    free(d->buf);
    memset(d, 0, sizeof *d);
    d->fd = -1;
}
