/* tokenize_train.c: pg-tokenize train: SentencePiece BPE with parameter-golf's settings.
 *
 * parameter-golf (data/download_hf_docs_and_tokenize.py) trains on every document's
 * text.replace("\x00", " ").strip(), skipping empty ones, with the options spelled out in
 * pg_tokenize_train_args. SentencePiece keeps the documents in memory while it trains.
 */
#define _POSIX_C_SOURCE 200809L
#include "tokenize.h"

#include "caseops.h"
#include "docs.h"
#include "err.h"
#include "outfile.h"
#include "progress.h"
#include "tok.h"
#include "xio.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_MIN_VOCAB 261 /* 4 special ids + 256 byte pieces + at least one more */
#define PG_MAX_VOCAB 65536 /* shards store uint16 ids */

char *pg_tokenize_train_args(const struct pg_train_tok_opts *o)
{
    size_t n = 1024 + (o->extra ? strlen(o->extra) : 0);
    char *s = pg_malloc(n);
    if (!s) return NULL;
    snprintf(s, n,
             "--minloglevel=%d --model_type=bpe --vocab_size=%d --character_coverage=%g --byte_fallback=true "
             "--split_digits=true --normalization_rule_name=%s --add_dummy_prefix=false "
             "--pad_id=0 --bos_id=1 --eos_id=2 --unk_id=3 --hard_vocab_limit=false "
             "--num_threads=%d --max_sentence_length=%d --input_sentence_size=%lld"
             "%s%s%s",
             o->verbose ? 0 : 1, o->vocab, o->character_coverage, o->caseops ? "identity" : "nmt_nfkc", o->threads, o->max_sentence_length, (long long)o->input_sentence_size,
             /* CaseOps: the operators get ids 4-7; identity normalization (above) and kept whitespace
              * make the pieces reproduce every document byte for byte, which the byte sidecar needs. */
             o->caseops ? " --user_defined_symbols=\xee\x80\x81,\xee\x80\x82,\xee\x80\x83,\xee\x80\x84"
                          " --remove_extra_whitespaces=false"
                        : "",
             o->extra ? " " : "", o->extra ? o->extra : "");
    return s;
}

/* ---- the document feed ---- */

struct feed {
    struct pg_docs docs;
    char *buf;
    size_t cap;
    uint64_t used, bytes, too_long;
    size_t max_len;
    struct pg_progress prog;
    int caseops;
    char *xbuf; /* the CaseOps-transformed document */
    size_t xcap;
};

/* Decodes the code point at s (valid UTF-8) and its length. */
static unsigned cp_at(const unsigned char *s, size_t *len)
{
    if (s[0] < 0x80) { *len = 1; return s[0]; }
    if (s[0] < 0xE0) { *len = 2; return (s[0] & 0x1Fu) << 6 | (s[1] & 0x3Fu); }
    if (s[0] < 0xF0) { *len = 3; return (s[0] & 0x0Fu) << 12 | (s[1] & 0x3Fu) << 6 | (s[2] & 0x3Fu); }
    *len = 4;
    return (s[0] & 0x07u) << 18 | (s[1] & 0x3Fu) << 12 | (s[2] & 0x3Fu) << 6 | (s[3] & 0x3Fu);
}

/* Python's str.isspace() code points, which str.strip() removes. */
static int py_space(unsigned c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* Start of the last code point before `end`. */
static size_t cp_start_before(const unsigned char *s, size_t end)
{
    size_t i = end - 1;
    while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
    return i;
}

static int feed_next(void *ctx, const char **text, size_t *len)
{
    struct feed *f = ctx;
    for (;;) {
        const char *t;
        size_t n;
        int rc = pg_docs_next(&f->docs, &t, &n);
        if (rc <= 0) return rc;
        pg_progress_update(&f->prog, f->docs.bytes_done);
        const unsigned char *u = (const unsigned char *)t;
        size_t a = 0, b = n, k;
        while (a < b && py_space(cp_at(u + a, &k))) a += k;
        while (b > a) {
            size_t s = cp_start_before(u, b);
            if (!py_space(cp_at(u + s, &k))) break;
            b = s;
        }
        if (a == b) continue;
        if (pg_grow((void **)&f->buf, &f->cap, b - a, 1)) return PG_E_NOMEM;
        memcpy(f->buf, t + a, b - a);
        for (size_t i = 0; i < b - a; i++)
            if (!f->buf[i]) f->buf[i] = ' ';
        f->used++;
        f->bytes += b - a;
        *text = f->buf;
        *len = b - a;
        if (f->caseops) {
            size_t xl = 0;
            if (pg_caseops_encode(f->buf, b - a, &f->xbuf, &xl, &f->xcap)) return PG_E_NOMEM;
            *text = f->xbuf;
            *len = xl;
        }
        f->too_long += *len > f->max_len;
        return 1;
    }
}

int pg_tokenize_train(const struct pg_train_tok_opts *o, struct pg_train_tok_stats *st)
{
    memset(st, 0, sizeof *st);
    if (o->vocab < PG_MIN_VOCAB || o->vocab > PG_MAX_VOCAB)
        return pg_error(PG_E_INVAL,
                        "--vocab %d is out of range [%d, %d]: byte fallback needs 256 byte pieces and 4 "
                        "special ids, and shards hold 16-bit ids",
                        o->vocab, PG_MIN_VOCAB, PG_MAX_VOCAB);
    double t0 = pg_now();
    struct feed f;
    memset(&f, 0, sizeof f);
    PG_TRY(pg_docs_open(&f.docs, o->inputs, o->ninputs, o->text_mode));
    f.max_len = (size_t)o->max_sentence_length;
    f.caseops = o->caseops;
    pg_progress_init(&f.prog, "reading", "B", f.docs.bytes_total, o->progress);
    char *args = pg_tokenize_train_args(o);
    char *model = NULL;
    size_t model_len = 0;
    /* SentencePiece logs "Running command: ..." before it reads --minloglevel; unless verbose,
     * its stderr goes to /dev/null (errors come back as a status) and progress to a copy. */
    FILE *progress_stream = NULL;
    int saved_err = -1;
    if (!o->verbose) {
        fflush(stderr);
        int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        saved_err = devnull >= 0 ? dup(STDERR_FILENO) : -1;
        if (saved_err >= 0 && (progress_stream = fdopen(saved_err, "w"))) {
            dup2(devnull, STDERR_FILENO);
            f.prog.stream = progress_stream;
        } else if (saved_err >= 0) {
            close(saved_err);
            saved_err = -1;
        }
        if (devnull >= 0) close(devnull);
    }
    int rc = args ? pg_tok_train(args, feed_next, &f, &model, &model_len) : PG_E_NOMEM;
    pg_progress_finish(&f.prog);
    if (progress_stream) {
        fflush(progress_stream);
        dup2(fileno(progress_stream), STDERR_FILENO);
        fclose(progress_stream);
    }
    st->docs_read = f.docs.ndocs;
    st->docs_used = f.used;
    st->bytes_used = f.bytes;
    st->docs_too_long = f.too_long;
    if (rc == PG_E_LIB && f.used == 0)
        rc = pg_error(PG_E_FORMAT, "%s: no non-empty document in the input", o->inputs[0]);
    else if (rc == PG_E_LIB && f.used == f.too_long)
        rc = pg_error(PG_E_FORMAT, "every document is longer than --max-sentence-length %d bytes, which "
                      "SentencePiece skips: raise it", o->max_sentence_length);
    pg_docs_close(&f.docs);
    free(f.buf);
    free(f.xbuf);
    free(args);
    if (!rc) {
        struct pg_out out;
        rc = pg_out_open(&out, o->output);
        if (!rc) rc = pg_out_write(&out, model, model_len);
        if (!rc) rc = pg_out_commit(&out);
        else pg_out_abort(&out);
    }
    free(model);
    st->model_bytes = model_len;
    st->seconds = pg_now() - t0;
    return rc;
}
