/* tokenize_shards.c: pg-tokenize decode and info: shards back to text, and their counts. */
#define _POSIX_C_SOURCE 200809L
#include "tokenize.h"

#include "bpb.h"
#include "caseops.h"
#include "err.h"
#include "outfile.h"
#include "shard.h"
#include "tok.h"
#include "xio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pg_tokenize_summary(const struct pg_tok *tok, struct pg_tok_summary *s)
{
    memset(s, 0, sizeof *s);
    s->vocab = pg_tok_vocab_size(tok);
    s->bare_space_id = -1;
    pg_tok_special_ids(tok, &s->pad_id, &s->bos_id, &s->eos_id, &s->unk_id);
    s->word_cache = pg_tok_word_cache(tok);
    for (int i = 0; i < s->vocab; i++) {
        const char *p = pg_tok_piece(tok, i);
        switch (pg_tok_piece_kind(tok, i)) {
        case PG_PIECE_BYTE: s->n_byte++; break;
        case PG_PIECE_CONTROL: s->n_control++; break;
        case PG_PIECE_UNKNOWN: s->n_unknown++; break;
        case PG_PIECE_UNUSED: s->n_unused++; break;
        default:
            s->n_normal++;
            if (strcmp(p, "\xe2\x96\x81") == 0) s->bare_space_id = i;
            if ((int)strlen(p) > s->max_piece_bytes) s->max_piece_bytes = (int)strlen(p);
        }
    }
}

/* ---- decode ---- */

struct decoder {
    const struct pg_tok *tok;
    struct pg_out out;
    int *ids;
    size_t n, cap;
    int open; /* a document is being collected */
    int caseops;
    char *text, *surf; /* caseops: the decoded document, one piece's surface */
    size_t text_cap, surf_cap;
};

/* A CaseOps document: the pieces' surfaces through the CaseOps decoder (as the byte sidecar
 * counts them), so a malformed stream is an error rather than text. */
static int caseops_doc(struct decoder *d, char **text, size_t *len)
{
    struct pg_caseops_dec dec;
    pg_caseops_dec_init(&dec);
    uint64_t em = 0;
    *len = 0;
    PG_TRY(pg_grow((void **)&d->text, &d->text_cap, 1, 1));
    for (size_t k = 0; k < d->n; k++) {
        PG_TRY(pg_grow((void **)&d->surf, &d->surf_cap, strlen(pg_tok_piece(d->tok, d->ids[k])) + 1, 1));
        const char *t;
        size_t tl;
        pg_caseops_piece_surface(d->tok, d->ids[k], d->surf, &t, &tl);
        PG_TRY(pg_caseops_dec_feed(&dec, t, tl, &d->text, len, &d->text_cap, &em));
    }
    PG_TRY(pg_caseops_dec_finish(&dec, &d->text, len, &d->text_cap, &em));
    *text = d->text;
    return 0;
}

static int flush_doc(struct decoder *d)
{
    if (!d->open) return 0;
    char *text;
    size_t len;
    if (d->caseops) {
        PG_TRY(caseops_doc(d, &text, &len));
    } else {
        PG_TRY(pg_tok_decode(d->tok, d->ids, d->n, &text, &len));
    }
    int rc = pg_out_write(&d->out, text, len);
    if (!d->caseops) free(text);
    if (!rc) rc = pg_out_write(&d->out, "\n", 1);
    d->n = 0;
    d->open = 0;
    return rc;
}

static int decode_shard(struct decoder *d, const struct pg_shard *sh, int bos, int vocab)
{
    for (uint64_t i = 0; i < sh->n; i++) {
        int t = sh->tokens[i];
        if (t >= vocab)
            return pg_error(PG_E_FORMAT, "%s: token %d at position %llu is outside the tokenizer's %d pieces",
                            sh->path, t, (unsigned long long)i, vocab);
        if (t == bos) {
            PG_TRY(flush_doc(d));
            d->open = 1;
            continue;
        }
        PG_TRY(pg_grow((void **)&d->ids, &d->cap, d->n + 1, sizeof *d->ids));
        d->ids[d->n++] = t;
        d->open = 1; /* tokens before the first BOS: the tail of a document begun earlier */
    }
    return 0;
}

int pg_tokenize_decode(const char *model, char *const *shards, size_t n, const char *output)
{
    struct decoder d;
    memset(&d, 0, sizeof d);
    PG_TRY(pg_tok_load((struct pg_tok **)&d.tok, model));
    int vocab = pg_tok_vocab_size(d.tok), bos = pg_tok_bos_id(d.tok);
    d.caseops = pg_caseops_tok_is(d.tok);
    int rc = pg_out_open(&d.out, output);
    for (size_t i = 0; i < n && !rc; i++) {
        struct pg_shard sh;
        if ((rc = pg_shard_open(&sh, shards[i]))) break;
        rc = decode_shard(&d, &sh, bos, vocab);
        pg_shard_close(&sh);
    }
    if (!rc) rc = flush_doc(&d);
    if (rc == PG_E_FORMAT && d.caseops) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", pg_error_message());
        rc = pg_error(PG_E_FORMAT, "%s: %s", model, msg);
    }
    if (!rc) rc = pg_out_commit(&d.out);
    else pg_out_abort(&d.out);
    free(d.ids);
    free(d.text);
    free(d.surf);
    pg_tok_free((struct pg_tok *)d.tok);
    return rc;
}

/* ---- info ---- */

/* The bytes of a CaseOps stream: each document's piece surfaces through the CaseOps decoder (the
 * original text's bytes, as the sidecar counts them; operators count nothing). A document that
 * continues into the next shard keeps its decoder. */
struct caseops_count {
    struct pg_caseops_dec dec;
    char *surf;
    size_t surf_cap;
    int open;
};

static int caseops_count_shard(struct caseops_count *cc, const struct pg_tok *tok, const struct pg_shard *sh,
                               int bos, int vocab, uint64_t *bytes)
{
    for (uint64_t k = 0; k < sh->n; k++) {
        int t = sh->tokens[k];
        if (t >= vocab)
            return pg_error(PG_E_FORMAT, "%s: token %d at position %llu is outside the tokenizer's %d pieces", sh->path,
                            t, (unsigned long long)k, vocab);
        if (t == bos) {
            if (cc->open) PG_TRY(pg_caseops_dec_finish(&cc->dec, NULL, NULL, NULL, bytes));
            pg_caseops_dec_init(&cc->dec);
            cc->open = 1;
            continue;
        }
        cc->open = 1;
        PG_TRY(pg_grow((void **)&cc->surf, &cc->surf_cap, strlen(pg_tok_piece(tok, t)) + 1, 1));
        const char *s;
        size_t n;
        pg_caseops_piece_surface(tok, t, cc->surf, &s, &n);
        PG_TRY(pg_caseops_dec_feed(&cc->dec, s, n, NULL, NULL, NULL, bytes));
    }
    return 0;
}

int pg_tokenize_shard_info(const struct pg_tok *tok, char *const *shards, size_t n, struct pg_shard_info *info)
{
    int bos = pg_tok_bos_id(tok);
    struct pg_bpb_lut lut;
    int rc = pg_bpb_lut_from_tok(&lut, tok, pg_tok_vocab_size(tok));
    int prev = -1, caseops = pg_caseops_tok_is(tok);
    struct caseops_count cc;
    memset(&cc, 0, sizeof cc);
    for (size_t i = 0; i < n && !rc; i++) {
        struct pg_shard sh;
        info[i] = (struct pg_shard_info){.path = shards[i]};
        if ((rc = pg_shard_open(&sh, shards[i]))) break;
        int64_t bytes;
        if (caseops) {
            uint64_t b = 0;
            int crc = caseops_count_shard(&cc, tok, &sh, bos, pg_tok_vocab_size(tok), &b);
            /* The last shard ends the stream: its last document is complete. */
            if (!crc && i + 1 == n && cc.open) crc = pg_caseops_dec_finish(&cc.dec, NULL, NULL, NULL, &b);
            bytes = crc ? -1 : (int64_t)b;
        } else {
            bytes = pg_bpb_count_bytes(&lut, sh.tokens, sh.n, prev);
        }
        if (bytes < 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", pg_error_message());
            rc = pg_error(PG_E_FORMAT, "%s: %s", shards[i], msg);
        } else {
            info[i].tokens = sh.n;
            info[i].bytes = (uint64_t)bytes;
            for (uint64_t k = 0; k < sh.n; k++) info[i].docs += sh.tokens[k] == bos;
            if (sh.n) prev = sh.tokens[sh.n - 1];
        }
        pg_shard_close(&sh);
    }
    pg_bpb_lut_free(&lut);
    free(cc.surf);
    return rc;
}
