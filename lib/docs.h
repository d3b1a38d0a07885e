/* docs.h: reading documents, the input of pg-tokenize.
 *
 * Two input forms: JSONL (parameter-golf's docs format: one JSON object per line with a string
 * field "text"; blank lines are skipped) and plain text (--text: each file is one document).
 * "-" reads standard input. Files are read front to back through a bounded buffer, so memory
 * stays flat however large the input (a single JSONL line or text document must fit in memory).
 * Errors name the file and line: invalid JSON, a missing "text", invalid UTF-8.
 */
#ifndef PG_DOCS_H
#define PG_DOCS_H

#include <stddef.h>
#include <stdint.h>

struct pg_docs {
    char **inputs;
    size_t ninputs, cur;   /* cur: index of the open input */
    int text_mode;
    int fd;                /* -1 when no input is open */
    char *buf;             /* read buffer: [pos, len) not yet consumed */
    size_t pos, len, cap;
    int eof;               /* current input fully read */
    uint64_t line;         /* line number of the last document (JSONL) */
    void *json;            /* the parsed line the last document points into */
    uint64_t bytes_done;   /* input bytes consumed, for progress */
    uint64_t bytes_total;  /* sum of the regular files' sizes (0 when unknown) */
    uint64_t ndocs;
};

/* Opens a list of inputs, read in order. Missing files are reported here, before any work.
 * @return 0, or PG_E_IO naming the file. */
int pg_docs_open(struct pg_docs *d, char *const *inputs, size_t n, int text_mode);

/* Reads the next document into *text and *len (valid until the next call). @return 1 for a
 * document, 0 at the end of the last input, or PG_E_FORMAT / PG_E_IO naming file and line. */
int pg_docs_next(struct pg_docs *d, const char **text, size_t *len);

/* @return the input being read now (for messages). */
const char *pg_docs_current(const struct pg_docs *d);

void pg_docs_close(struct pg_docs *d);

#endif
