/* test_docs.c: the document reader: JSONL (blank lines, CRLF, escapes, NUL, several files, a line
 * longer than the read buffer), plain text, and the errors (invalid JSON, missing "text",
 * invalid UTF-8, missing file), each naming the file and line. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/docs.h"
#include "../../lib/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

static char *put(const char *name, const char *data, size_t n)
{
    static char path[8][128];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
    return p;
}

/* Reads all documents; returns the count or the error code. */
static int read_all(char *const *in, size_t n, int text, char out[][64], size_t *lens)
{
    struct pg_docs d;
    int rc = pg_docs_open(&d, in, n, text);
    if (rc) return rc;
    int k = 0;
    const char *t;
    size_t len;
    while ((rc = pg_docs_next(&d, &t, &len)) == 1) {
        if (out) {
            memcpy(out[k], t, len < 63 ? len : 63);
            out[k][len < 63 ? len : 63] = 0;
            lens[k] = len;
        }
        k++;
    }
    pg_docs_close(&d);
    return rc < 0 ? rc : k;
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pg-test-docs-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    char out[16][64];
    size_t lens[16];

    const char j1[] = "{\"text\": \"first\"}\n\n  \n{\"id\": 3, \"text\": \"line\\nbreak \\u00e9\"}\r\n"
                      "{\"text\": \"a\\u0000b\"}\n{\"text\": \"\"}";
    const char j2[] = "{\"text\": \"second file\"}\n";
    char *in[2] = {put("a.jsonl", j1, sizeof j1 - 1), put("b.jsonl", j2, sizeof j2 - 1)};
    is_int(read_all(in, 2, 0, out, lens), 5, "jsonl: 5 documents over 2 files (blank lines skipped)");
    ok(strcmp(out[0], "first") == 0, "jsonl: first text");
    ok(strcmp(out[1], "line\nbreak \xc3\xa9") == 0, "jsonl: escapes decoded, CRLF tolerated");
    ok(lens[2] == 3 && memcmp(out[2], "a\0b", 3) == 0, "jsonl: \\u0000 kept with its length");
    ok(lens[3] == 0, "jsonl: empty text is a document");
    ok(strcmp(out[4], "second file") == 0, "jsonl: continues into the second file");

    /* A line longer than the 1 MiB read chunk. */
    size_t big = 3u << 20;
    char *b = malloc(big + 32);
    memcpy(b, "{\"text\": \"", 10);
    memset(b + 10, 'x', big);
    memcpy(b + 10 + big, "\"}\n", 3);
    char *inb[1] = {put("big.jsonl", b, big + 13)};
    struct pg_docs d;
    const char *t;
    size_t len;
    pg_docs_open(&d, inb, 1, 0);
    is_int(pg_docs_next(&d, &t, &len), 1, "jsonl: a 3 MiB line is read");
    is_int((long long)len, (long long)big, "jsonl: its full length");
    pg_docs_close(&d);
    free(b);

    const char bad_json[] = "{\"text\": \"ok\"}\n{\"text\": oops}\n";
    char *ib[1] = {put("bad.jsonl", bad_json, sizeof bad_json - 1)};
    is_int(read_all(ib, 1, 0, NULL, NULL), PG_E_FORMAT, "invalid JSON is a format error");
    ok(strstr(pg_error_message(), "bad.jsonl:2: invalid JSON") != NULL, "message names file and line: %s",
       pg_error_message());

    const char no_text[] = "{\"body\": \"x\"}\n";
    char *in2[1] = {put("notext.jsonl", no_text, sizeof no_text - 1)};
    is_int(read_all(in2, 1, 0, NULL, NULL), PG_E_FORMAT, "missing text field is a format error");
    ok(strstr(pg_error_message(), "notext.jsonl:1") && strstr(pg_error_message(), "text"), "message: %s",
       pg_error_message());
    const char num_text[] = "{\"text\": 5}\n";
    char *in3[1] = {put("num.jsonl", num_text, sizeof num_text - 1)};
    is_int(read_all(in3, 1, 0, NULL, NULL), PG_E_FORMAT, "non-string text is a format error");
    const char arr[] = "[1, 2]\n";
    char *in4[1] = {put("arr.jsonl", arr, sizeof arr - 1)};
    is_int(read_all(in4, 1, 0, NULL, NULL), PG_E_FORMAT, "a non-object line is a format error");

    const char bad_utf8[] = "{\"text\": \"caf\xe9\"}\n";
    char *in5[1] = {put("latin1.jsonl", bad_utf8, sizeof bad_utf8 - 1)};
    is_int(read_all(in5, 1, 0, NULL, NULL), PG_E_FORMAT, "jsonl: invalid UTF-8 rejected");
    ok(strstr(pg_error_message(), "latin1.jsonl:1") != NULL, "message names file and line: %s", pg_error_message());

    const char txt[] = "Plain text\nwith two lines.\n";
    char *in6[2] = {put("a.txt", txt, sizeof txt - 1), put("empty.txt", "", 0)};
    is_int(read_all(in6, 2, 1, out, lens), 2, "text: one document per file");
    ok(strcmp(out[0], txt) == 0, "text: the whole file is the document");
    ok(lens[1] == 0, "text: an empty file is an empty document");
    const char bad_txt[] = "ok \xc3\x28 bad";
    char *in7[1] = {put("bad.txt", bad_txt, sizeof bad_txt - 1)};
    is_int(read_all(in7, 1, 1, NULL, NULL), PG_E_FORMAT, "text: invalid UTF-8 rejected");
    ok(strstr(pg_error_message(), "bad.txt: invalid UTF-8 at byte offset 3") != NULL, "message gives the offset: %s",
       pg_error_message());

    char missing[128];
    snprintf(missing, sizeof missing, "%s/nope.jsonl", dir);
    char *in8[2] = {in[0], missing};
    is_int(read_all(in8, 2, 0, NULL, NULL), PG_E_IO, "a missing input fails at open, before any work");
    ok(strstr(pg_error_message(), "nope.jsonl") != NULL, "message names the missing file: %s", pg_error_message());
    char *in9[1] = {dir};
    is_int(read_all(in9, 1, 0, NULL, NULL), PG_E_IO, "a directory is refused");

    remove_tree(dir);
    return done_testing();
}
