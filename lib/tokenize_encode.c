/* tokenize_encode.c: pg-tokenize encode: documents → BOS + ids → val/train shards.
 *
 * A pipeline with bounded memory: the main thread reads a batch of documents (a few MB) while
 * worker threads encode the previous batch (each takes the next document from a shared counter,
 * so long and short documents balance), then the main thread writes the encoded batch in input
 * order. Two batches are alive at a time, whatever the input size.
 */
#define _POSIX_C_SOURCE 200809L
#include "tokenize.h"

#include "caseops.h"
#include "docs.h"
#include "err.h"
#include "progress.h"
#include "shard.h"
#include "tok.h"
#include "xio.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH_BYTES_PER_THREAD (2u << 20)
#define BATCH_DOCS_PER_THREAD 4096

struct doc_out {
    int worker;
    size_t off, n;
};

struct batch {
    char *arena;                 /* document texts, back to back */
    size_t arena_len, arena_cap;
    size_t *off, *len;           /* per document */
    struct doc_out *out;
    size_t ndocs, docs_cap;
};

struct worker {
    pthread_t th;
    struct pool *pool;
    int index;
    struct pg_ids ids;
    char *xbuf; /* caseops: the transformed document */
    size_t xcap;
    int rc;
    char err[1024];
};

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    unsigned gen;
    int stop, active;
    struct batch *b;
    atomic_size_t next;
    const struct pg_tok *tok;
    int caseops;
    int n;
    struct worker *w;
};

/* ---- workers ---- */

static void encode_batch(struct worker *w, struct batch *b)
{
    struct pool *p = w->pool;
    w->ids.n = 0;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= b->ndocs) break;
        size_t off = w->ids.n;
        const char *text = b->arena + b->off[i];
        size_t len = b->len[i];
        int rc = 0;
        if (p->caseops) {
            size_t xl = 0;
            rc = pg_caseops_encode(text, len, &w->xbuf, &xl, &w->xcap);
            text = w->xbuf, len = xl;
        }
        if (!rc) rc = pg_tok_encode(p->tok, text, len, &w->ids);
        if (rc && !w->rc) {
            w->rc = rc;
            snprintf(w->err, sizeof w->err, "%s", pg_error_message());
        }
        b->out[i] = (struct doc_out){w->index, off, w->ids.n - off};
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->stop) pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->gen;
        struct batch *b = p->b;
        pthread_mutex_unlock(&p->mu);
        encode_batch(w, b);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
    }
}

static int pool_start(struct pool *p, const struct pg_tok *tok, int n)
{
    memset(p, 0, sizeof *p);
    p->tok = tok;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->w = pg_calloc((size_t)n, sizeof *p->w);
    if (!p->w) return PG_E_NOMEM;
    for (int i = 0; i < n; i++) {
        p->w[i].pool = p;
        p->w[i].index = i;
        if (pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i]) != 0) {
            p->n = i;
            return pg_error_errno(PG_E_IO, "cannot start encoding thread %d", i);
        }
        p->n = i + 1;
    }
    return 0;
}

static void pool_run(struct pool *p, struct batch *b)
{
    pthread_mutex_lock(&p->mu);
    p->b = b;
    atomic_store(&p->next, 0);
    p->active = p->n;
    p->gen++;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
}

static int pool_wait(struct pool *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        if (p->w[i].rc) return pg_error(p->w[i].rc, "%s", p->w[i].err);
    return 0;
}

static void pool_stop(struct pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) pthread_join(p->w[i].th, NULL);
    if (p->w)
        for (int i = 0; i < p->n; i++) {
            pg_ids_free(&p->w[i].ids);
            free(p->w[i].xbuf);
        }
    free(p->w);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
}

/* ---- batches ---- */

static void batch_free(struct batch *b)
{
    free(b->arena);
    free(b->off);
    free(b->len);
    free(b->out);
    memset(b, 0, sizeof *b);
}

static int batch_add(struct batch *b, const char *text, size_t len)
{
    if (b->ndocs == b->docs_cap) {
        size_t cap = b->docs_cap ? 2 * b->docs_cap : 1024;
        size_t *off = pg_realloc(b->off, cap * sizeof *off);
        if (!off) return PG_E_NOMEM;
        b->off = off;
        size_t *ln = pg_realloc(b->len, cap * sizeof *ln);
        if (!ln) return PG_E_NOMEM;
        b->len = ln;
        struct doc_out *out = pg_realloc(b->out, cap * sizeof *out);
        if (!out) return PG_E_NOMEM;
        b->out = out;
        b->docs_cap = cap;
    }
    PG_TRY(pg_grow((void **)&b->arena, &b->arena_cap, b->arena_len + len + 1, 1));
    memcpy(b->arena + b->arena_len, text, len);
    b->off[b->ndocs] = b->arena_len;
    b->len[b->ndocs] = len;
    b->arena_len += len;
    b->ndocs++;
    return 0;
}

/* Fills b with the next documents, up to the batch limits. */
static int batch_read(struct batch *b, struct pg_docs *docs, int threads)
{
    b->ndocs = 0;
    b->arena_len = 0;
    size_t max_bytes = (size_t)BATCH_BYTES_PER_THREAD * (size_t)threads;
    size_t max_docs = (size_t)BATCH_DOCS_PER_THREAD * (size_t)threads;
    while (b->arena_len < max_bytes && b->ndocs < max_docs) {
        const char *t;
        size_t n;
        int rc = pg_docs_next(docs, &t, &n);
        if (rc < 0) return rc;
        if (rc == 0) break;
        PG_TRY(batch_add(b, t, n));
    }
    return 0;
}

/* ---- writing ---- */

struct sink {
    struct pg_shard_writer w[3]; /* [0] val, [1] train, [2] the val byte sidecar (caseops) */
    uint16_t *scratch;
    size_t scratch_cap;
    const struct pg_tok *tok;
    int caseops;
    uint16_t *side;              /* caseops: the sidecar of one document */
    size_t side_cap;
    char *dec, *surf;            /* caseops: the decoded document; one piece's surface */
    size_t dec_cap, surf_cap;
    int bos, vocab;
    uint64_t doc_index, val_docs;
    struct pg_encode_stats *st;
};

static int doc_sidecar(struct sink *s, const int *ids, size_t n, const char *orig, size_t orig_len);

static int batch_write(struct sink *s, struct batch *b, struct pool *p)
{
    for (size_t i = 0; i < b->ndocs; i++) {
        struct doc_out *o = &b->out[i];
        const int *ids = p->w[o->worker].ids.v + o->off;
        PG_TRY(pg_grow((void **)&s->scratch, &s->scratch_cap, o->n + 1, sizeof *s->scratch));
        s->scratch[0] = (uint16_t)s->bos;
        for (size_t k = 0; k < o->n; k++) {
            if (ids[k] < 0 || ids[k] >= s->vocab)
                return pg_error(PG_E_LIB, "document %llu: SentencePiece returned id %d outside the vocabulary",
                                (unsigned long long)s->doc_index, ids[k]);
            s->scratch[k + 1] = (uint16_t)ids[k];
        }
        int split = s->doc_index < s->val_docs ? 0 : 1;
        PG_TRY(pg_shard_writer_put(&s->w[split], s->scratch, o->n + 1));
        if (split == 0 && s->caseops) {
            PG_TRY(doc_sidecar(s, ids, o->n, b->arena + b->off[i], b->len[i]));
            PG_TRY(pg_shard_writer_put(&s->w[2], s->side, o->n + 1));
        }
        s->st->docs[split]++;
        s->st->tokens[split] += o->n + 1;
        s->doc_index++;
    }
    return 0;
}

/* The val byte sidecar of one CaseOps document (ids[0..n), its BOS not included): the original
 * bytes each token stands for, found by feeding each piece's surface to the CaseOps decoder (bytes
 * an operator might begin are held and counted at the token that settles them). Also decodes the
 * whole document, to see whether the tokenizer reproduced `orig` byte for byte. */
static int doc_sidecar(struct sink *s, const int *ids, size_t n, const char *orig, size_t orig_len)
{
    PG_TRY(pg_grow((void **)&s->side, &s->side_cap, n + 1, sizeof *s->side));
    struct pg_caseops_dec d;
    pg_caseops_dec_init(&d);
    size_t dlen = 0;
    s->side[0] = 0; /* BOS */
    for (size_t k = 0; k < n; k++) {
        size_t plen = strlen(pg_tok_piece(s->tok, ids[k]));
        PG_TRY(pg_grow((void **)&s->surf, &s->surf_cap, plen + 1, 1));
        const char *t;
        size_t tl;
        pg_caseops_piece_surface(s->tok, ids[k], s->surf, &t, &tl);
        uint64_t em = 0;
        int rc = pg_caseops_dec_feed(&d, t, tl, &s->dec, &dlen, &s->dec_cap, &em);
        if (!rc && k + 1 == n) rc = pg_caseops_dec_finish(&d, &s->dec, &dlen, &s->dec_cap, &em);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", pg_error_message());
            return pg_error(PG_E_FORMAT, "document %llu: %s", (unsigned long long)s->doc_index, msg);
        }
        if (em > UINT16_MAX)
            return pg_error(PG_E_FORMAT, "document %llu: token %zu stands for %llu bytes, more than a sidecar holds",
                            (unsigned long long)s->doc_index, k, (unsigned long long)em);
        s->side[k + 1] = (uint16_t)em;
        s->st->sidecar_bytes += em;
    }
    s->st->val_bytes += orig_len;
    if (dlen != orig_len || (dlen && memcmp(s->dec, orig, dlen) != 0)) s->st->inexact_docs++;
    return 0;
}

/* ---- existing shards ---- */

struct existing {
    char **paths[3];
    size_t n[3];
};

/* The sidecar is a split of its own for listing, writing and replacing. */
static const char *split_names[3] = {"val", "train", "val_bytes"};

static int list_existing(struct existing *e, const char *dir, const char *prefix)
{
    memset(e, 0, sizeof *e);
    for (int s = 0; s < 3; s++) PG_TRY(pg_shard_list(dir, prefix, split_names[s], &e->paths[s], &e->n[s]));
    return 0;
}

static void existing_free(struct existing *e)
{
    for (int s = 0; s < 3; s++) pg_shard_list_free(e->paths[s], e->n[s]);
}

/* After a forced re-encode, removes the old shards the new run did not overwrite. */
static void remove_stale(struct existing *e, const char *dir, const char *prefix, const size_t *written)
{
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < e->n[s]; i++) {
            size_t idx = 0;
            char name[64];
            int keep = 0;
            for (idx = 0; idx < written[s]; idx++) {
                snprintf(name, sizeof name, "_%s_%06zu.bin", split_names[s], idx);
                size_t lp = strlen(e->paths[s][i]), ln = strlen(name), ld = strlen(dir) + 1 + strlen(prefix);
                if (lp == ld + ln && strcmp(e->paths[s][i] + ld, name) == 0) keep = 1;
            }
            if (!keep) unlink(e->paths[s][i]);
        }
}

/* ---- the command ---- */

int pg_tokenize_encode(const struct pg_encode_opts *o, struct pg_encode_stats *st)
{
    memset(st, 0, sizeof *st);
    double t0 = pg_now();
    if (o->threads < 1) return pg_error(PG_E_INVAL, "--threads must be at least 1");
    struct pg_tok *tok;
    PG_TRY(pg_tok_load(&tok, o->model));
    int vocab = pg_tok_vocab_size(tok), bos = pg_tok_bos_id(tok);
    if (o->caseops && !pg_caseops_tok_is(tok)) {
        pg_tok_free(tok);
        return pg_error(PG_E_FORMAT, "%s: not a CaseOps tokenizer (no TITLE, ALLCAPS, CAPNEXT, ESC pieces): "
                        "train it with pg-tokenize train --caseops", o->model);
    }
    if (vocab > 65536 || bos < 0) {
        pg_tok_free(tok);
        return pg_error(PG_E_FORMAT, "%s: %s", o->model,
                        bos < 0 ? "the tokenizer has no BOS id" : "more than 65536 pieces do not fit 16-bit shards");
    }
    struct pg_docs docs;
    int rc = pg_docs_open(&docs, o->inputs, o->ninputs, o->text_mode);
    if (rc) {
        pg_tok_free(tok);
        return rc;
    }
    struct existing ex;
    memset(&ex, 0, sizeof ex);
    struct sink sink;
    memset(&sink, 0, sizeof sink);
    struct batch b[2];
    memset(b, 0, sizeof b);
    struct pool pool;
    int pool_up = 0;
    rc = pg_mkdir_p(o->outdir);
    if (!rc) rc = list_existing(&ex, o->outdir, o->prefix);
    if (!rc && (ex.n[0] || ex.n[1] || ex.n[2]) && !o->force)
        rc = pg_error(PG_E_IO, "%s already holds %s_* shards (use --force to replace them)", o->outdir, o->prefix);
    for (int s = 0; s < 2 && !rc; s++)
        rc = pg_shard_writer_open(&sink.w[s], o->outdir, o->prefix, split_names[s], o->shard_tokens);
    if (!rc && o->caseops) rc = pg_shard_writer_open(&sink.w[2], o->outdir, o->prefix, split_names[2], o->shard_tokens);
    sink.tok = tok;
    sink.caseops = o->caseops;
    sink.bos = bos;
    sink.vocab = vocab;
    sink.val_docs = o->val_docs;
    sink.st = st;
    if (!rc) {
        rc = pool_start(&pool, tok, o->threads);
        pool.caseops = o->caseops;
        pool_up = 1;
    }
    struct pg_progress prog;
    pg_progress_init(&prog, "encoding", "B", docs.bytes_total, o->progress);
    /* Read batch k+1 while batch k encodes; write k before batch k+1 starts (it reuses the
     * workers' id buffers). */
    int cur = 0;
    if (!rc) rc = batch_read(&b[cur], &docs, o->threads);
    while (!rc && b[cur].ndocs) {
        pool_run(&pool, &b[cur]);
        int rc_read = batch_read(&b[1 - cur], &docs, o->threads);
        rc = pool_wait(&pool);
        if (!rc) rc = rc_read;
        if (!rc) rc = batch_write(&sink, &b[cur], &pool);
        pg_progress_update(&prog, docs.bytes_done);
        cur = 1 - cur;
    }
    pg_progress_finish(&prog);
    if (!rc && sink.doc_index == 0) rc = pg_error(PG_E_FORMAT, "%s: no document in the input", o->inputs[0]);
    if (!rc) {
        /* Both splits complete before either is renamed into place. */
        size_t written[3] = {0, 0, 0};
        rc = pg_shard_writer_finish(&sink.w[0]);
        if (!rc) rc = pg_shard_writer_finish(&sink.w[1]);
        if (!rc && o->caseops) rc = pg_shard_writer_finish(&sink.w[2]);
        if (!rc) rc = pg_shard_writer_commit(&sink.w[0], &st->shards[0]);
        if (!rc) rc = pg_shard_writer_commit(&sink.w[1], &st->shards[1]);
        if (!rc && o->caseops) rc = pg_shard_writer_commit(&sink.w[2], &written[2]);
        written[0] = st->shards[0], written[1] = st->shards[1];
        if (!rc && o->force) remove_stale(&ex, o->outdir, o->prefix, written);
    }
    for (int s = 0; s < 3; s++) pg_shard_writer_abort(&sink.w[s]);
    if (pool_up) pool_stop(&pool);
    for (int i = 0; i < 2; i++) batch_free(&b[i]);
    free(sink.scratch);
    free(sink.side);
    free(sink.dec);
    free(sink.surf);
    existing_free(&ex);
    st->input_bytes = docs.bytes_done;
    pg_docs_close(&docs);
    pg_tok_free(tok);
    st->seconds = pg_now() - t0;
    return rc;
}
