/* loader.c: parameter-golf's training batches and validation windows (see loader.h). */
#include "loader.h"

#include "err.h"
#include "xio.h"

#include <stdlib.h>
#include <string.h>

/* ---- training batches ---- */

int pg_train_batch_shape(int64_t global_tokens, int world_size, int grad_accum, int seq_len, int64_t *local_tokens)
{
    *local_tokens = 0;
    if (world_size < 1) return pg_error(PG_E_INVAL, "world size %d: must be at least 1", world_size);
    if (grad_accum < 1) return pg_error(PG_E_INVAL, "grad_accum %d: must be at least 1", grad_accum);
    if (seq_len < 1) return pg_error(PG_E_INVAL, "sequence length %d: must be at least 1", seq_len);
    if (global_tokens < 1)
        return pg_error(PG_E_INVAL, "train batch of %lld tokens: must be positive", (long long)global_tokens);
    /* Floor division, as next_batch's `global_tokens // (world_size * grad_accum_steps)`: a
     * remainder is silently left out of every step there, so it is here too. */
    int64_t local = global_tokens / ((int64_t)world_size * grad_accum);
    if (local < seq_len || local % seq_len)
        return pg_error(PG_E_INVAL,
                        "train batch of %lld tokens over %d rank(s) x %d accumulation step(s) gives %lld tokens per "
                        "micro-batch, not a positive multiple of the sequence length %d",
                        (long long)global_tokens, world_size, grad_accum, (long long)local, seq_len);
    /* The chunk of every call holds world·(local+1) uint16: refuse what cannot be addressed. */
    if ((uint64_t)local + 1 > (SIZE_MAX / sizeof(uint16_t)) / (uint64_t)world_size)
        return pg_error(PG_E_INVAL, "train batch of %lld tokens is too large for this machine",
                        (long long)global_tokens);
    *local_tokens = local;
    return 0;
}

int pg_train_loader_open(struct pg_train_loader *l, const char *dir, const char *prefix, int rank, int world_size,
                         int64_t global_tokens, int seq_len, int grad_accum)
{
    memset(l, 0, sizeof *l);
    int64_t local;
    PG_TRY(pg_train_batch_shape(global_tokens, world_size, grad_accum, seq_len, &local));
    if (rank < 0 || rank >= world_size)
        return pg_error(PG_E_INVAL, "rank %d is outside [0, %d)", rank, world_size);
    char **paths;
    size_t np;
    PG_TRY(pg_shard_list(dir, prefix, "train", &paths, &np));
    int rc = np ? pg_stream_open(&l->stream, paths, np)
                : pg_error(PG_E_IO, "%s: no %s_train_*.bin shard", dir, prefix);
    pg_shard_list_free(paths, np);
    if (rc) return rc;
    l->rank = rank;
    l->world_size = world_size;
    l->global_tokens = global_tokens;
    l->seq_len = seq_len;
    l->grad_accum = grad_accum;
    l->local_tokens = local;
    /* Every rank copies the whole chunk, not only its span: the stream must advance past all of
     * it anyway, and the copy (1 MB at the baseline's size) is noise next to a training step. */
    l->chunk = pg_malloc((size_t)world_size * (size_t)(local + 1) * sizeof *l->chunk);
    if (!l->chunk) {
        pg_train_loader_close(l);
        return PG_E_NOMEM;
    }
    return 0;
}

int pg_train_loader_next(struct pg_train_loader *l, int32_t *x, int32_t *y)
{
    size_t span = (size_t)l->local_tokens + 1;
    PG_TRY(pg_stream_take(&l->stream, l->chunk, (size_t)l->world_size * span));
    const uint16_t *s = l->chunk + (size_t)l->rank * span;
    for (size_t i = 0; i + 1 < span; i++) {
        x[i] = s[i];
        y[i] = s[i + 1];
    }
    return 0;
}

void pg_train_loader_state(const struct pg_train_loader *l, size_t *file, uint64_t *pos)
{
    /* A position at the very end of a shard is kept as is (not normalised to the next shard's
     * start): the reference advances lazily too, and restoring it reads the same tokens. */
    *file = l->stream.file;
    *pos = l->stream.pos;
}

int pg_train_loader_restore(struct pg_train_loader *l, size_t file, uint64_t pos)
{
    return pg_stream_seek(&l->stream, file, pos);
}

void pg_train_loader_close(struct pg_train_loader *l)
{
    pg_stream_close(&l->stream);
    free(l->chunk);
    memset(l, 0, sizeof *l);
}

/* ---- validation windows ---- */

int pg_val_open(struct pg_val_set *v, const char *dir, const char *prefix, int seq_len)
{
    memset(v, 0, sizeof *v);
    if (seq_len < 1) return pg_error(PG_E_INVAL, "sequence length %d: must be at least 1", seq_len);
    uint16_t *tok;
    uint64_t n;
    PG_TRY(pg_split_read(dir, prefix, "val", &tok, &n));
    /* The last window needs one token past its end as the final target, hence N−1. */
    uint64_t usable = n ? (n - 1) / (uint64_t)seq_len * (uint64_t)seq_len : 0;
    if (usable == 0) {
        free(tok);
        return pg_error(PG_E_INVAL, "%s: the %s_val_*.bin shards hold %llu tokens, too few for one window of %d (%d needed)",
                        dir, prefix, (unsigned long long)n, seq_len, seq_len + 1);
    }
    v->tokens = tok;
    v->usable = (int64_t)usable;
    v->seq_len = seq_len;
    return 0;
}

void pg_val_close(struct pg_val_set *v)
{
    free(v->tokens);
    memset(v, 0, sizeof *v);
}

int64_t pg_val_num_seqs(const struct pg_val_set *v) { return v->usable / v->seq_len; }

/* floor(a·r/w) without forming a·r, which could overflow where Python's integers do not:
 * a = q·w + m gives q·r + floor(m·r/w), and m·r < w² < 2^62. */
static int64_t split_point(int64_t a, int r, int w) { return a / w * r + a % w * r / w; }

int pg_val_rank_range(const struct pg_val_set *v, int rank, int world, int64_t *seq_begin, int64_t *seq_end)
{
    *seq_begin = *seq_end = 0;
    if (world < 1) return pg_error(PG_E_INVAL, "world size %d: must be at least 1", world);
    if (rank < 0 || rank >= world) return pg_error(PG_E_INVAL, "rank %d is outside [0, %d)", rank, world);
    int64_t total = pg_val_num_seqs(v);
    *seq_begin = split_point(total, rank, world);
    *seq_end = split_point(total, rank + 1, world);
    return 0;
}

int pg_val_batch_seqs(int64_t val_batch_tokens, int world, int grad_accum, int seq_len, int64_t *seqs)
{
    *seqs = 0;
    if (world < 1 || grad_accum < 1 || seq_len < 1)
        return pg_error(PG_E_INVAL, "val batch: world size %d, grad_accum %d, sequence length %d must be at least 1",
                        world, grad_accum, seq_len);
    int64_t local = val_batch_tokens / ((int64_t)world * grad_accum);
    if (local < seq_len)
        return pg_error(PG_E_INVAL,
                        "val batch of %lld tokens must provide at least one sequence of %d per rank (%d rank(s) x %d "
                        "accumulation step(s))",
                        (long long)val_batch_tokens, seq_len, world, grad_accum);
    *seqs = local / seq_len;
    return 0;
}

int pg_val_windows(const struct pg_val_set *v, int64_t seq, int64_t count, int32_t *x, int32_t *y)
{
    int64_t total = pg_val_num_seqs(v);
    if (seq < 0 || count < 0 || seq > total || count > total - seq)
        return pg_error(PG_E_INVAL, "validation windows [%lld, %lld + %lld) are outside [0, %lld)", (long long)seq,
                        (long long)seq, (long long)count, (long long)total);
    const uint16_t *t = v->tokens + (size_t)seq * (size_t)v->seq_len;
    size_t n = (size_t)count * (size_t)v->seq_len;
    for (size_t i = 0; i < n; i++) {
        x[i] = t[i];
        y[i] = t[i + 1];
    }
    return 0;
}

int pg_val_window(const struct pg_val_set *v, int64_t seq, int32_t *x, int32_t *y)
{
    return pg_val_windows(v, seq, 1, x, y);
}
