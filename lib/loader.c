/* loader.c: parameter-golf's training batches and validation windows (see loader.h). */
#include "loader.h"

#include "err.h"
#include "xio.h"

#include <math.h>
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

/* ---- coprime-stride mode ---- */

void pg_coprime_schedule(uint64_t batch, int world_size, int *k, double *alpha)
{
    uint64_t t = batch < PG_COPRIME_RAMP_BATCHES ? batch : PG_COPRIME_RAMP_BATCHES;
    int64_t w = world_size > 1 ? world_size : 1;
    int64_t k0 = w > 8 ? w : 8, k1 = 8 * w > 32 ? 8 * w : 32;
    *k = (int)(k0 + (k1 - k0) * (int64_t)t / PG_COPRIME_RAMP_BATCHES);
    *alpha = 0.9 - 0.4 * (double)t / PG_COPRIME_RAMP_BATCHES;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

uint64_t pg_coprime_stride(struct pg_rng *r, uint64_t n_blocks)
{
    if (n_blocks <= 2) return 1;
    /* Rejection: n−1 is always coprime with n, and φ(n)/n is large enough (> 1/5 below 10^10)
     * that a handful of draws suffices. */
    for (;;) {
        uint64_t s = 2 + pg_rng_below(r, n_blocks - 2);
        if (gcd_u64(s, n_blocks) == 1) return s;
    }
}

/* A new epoch over one shard: phase, start block, stride, in that order from the loader's RNG.
 * The phase is capped so that at least one block fits (use_coprime checked n >= seq_len+1). */
static void coprime_arm(struct pg_train_loader *l, struct pg_coprime_shard *c)
{
    uint64_t block = (uint64_t)l->seq_len + 1, n = c->shard.n;
    uint64_t max_phase = n - block < (uint64_t)l->seq_len ? n - block : (uint64_t)l->seq_len;
    c->phase = pg_rng_below(&l->cp_rng, max_phase + 1);
    c->n_blocks = (n - c->phase) / block;
    c->next = pg_rng_below(&l->cp_rng, c->n_blocks);
    c->stride = pg_coprime_stride(&l->cp_rng, c->n_blocks);
    c->left = c->n_blocks;
}

/* Call 0: the seed's stream, every shard armed in order. The seed is offset so the data order
 * is not the same random stream as a model initialised from the same seed. */
static void coprime_reset(struct pg_train_loader *l)
{
    pg_rng_seed(&l->cp_rng, l->cp_seed ^ 0x636f7072696d6521ull);
    for (size_t i = 0; i < l->cp_n; i++) coprime_arm(l, &l->cp[i]);
    l->cp_batches = 0;
}

/* @return the token offset of the shard's next block, and moves on (re-arming after its last). */
static uint64_t coprime_take(struct pg_train_loader *l, struct pg_coprime_shard *c)
{
    uint64_t off = c->phase + c->next * ((uint64_t)l->seq_len + 1);
    c->next = (c->next + c->stride) % c->n_blocks;
    if (--c->left == 0) coprime_arm(l, c);
    return off;
}

/* One call: choose the shards, take the global rows from them and copy rank's rows into x/y;
 * x == NULL makes only the random choices (restore's replay). */
static void coprime_batch(struct pg_train_loader *l, int32_t *x, int32_t *y)
{
    int k;
    double alpha;
    pg_coprime_schedule(l->cp_batches, l->world_size, &k, &alpha);
    uint64_t local_rows = (uint64_t)(l->local_tokens / l->seq_len);
    uint64_t rows = local_rows * (uint64_t)l->world_size;
    uint64_t kk = (uint64_t)k < l->cp_n ? (uint64_t)k : l->cp_n;
    if (kk > rows) kk = rows;
    for (size_t i = 0; i < l->cp_n; i++) {
        l->cp_weight[i] = pow((double)l->cp[i].left, alpha);
        l->cp_taken[i] = 0;
    }
    uint64_t lo = (uint64_t)l->rank * local_rows, hi = lo + local_rows, g = 0;
    size_t L = (size_t)l->seq_len;
    for (uint64_t p = 0; p < kk; p++) {
        /* Weighted draw without replacement over the shards not yet taken this call. */
        double total = 0;
        for (size_t i = 0; i < l->cp_n; i++)
            if (!l->cp_taken[i]) total += l->cp_weight[i];
        double u = pg_rng_uniform(&l->cp_rng) * total;
        size_t pick = l->cp_n, last = 0;
        for (size_t i = 0; i < l->cp_n && pick == l->cp_n; i++) {
            if (l->cp_taken[i]) continue;
            last = i;
            if (u < l->cp_weight[i]) pick = i;
            else u -= l->cp_weight[i];
        }
        if (pick == l->cp_n) pick = last; /* u ran past the end by rounding */
        l->cp_taken[pick] = 1;
        struct pg_coprime_shard *c = &l->cp[pick];
        /* The first rows mod k shards get one row more than the others. */
        uint64_t m = rows / kk + (p < rows % kk);
        for (uint64_t j = 0; j < m; j++, g++) {
            uint64_t off = coprime_take(l, c);
            if (!x || g < lo || g >= hi) continue;
            const uint16_t *t = c->shard.tokens + off;
            int32_t *xr = x + (size_t)(g - lo) * L, *yr = y + (size_t)(g - lo) * L;
            for (size_t i = 0; i < L; i++) {
                xr[i] = t[i];
                yr[i] = t[i + 1];
            }
        }
    }
    l->cp_batches++;
}

static void coprime_free(struct pg_train_loader *l)
{
    if (l->cp)
        for (size_t i = 0; i < l->cp_n; i++) pg_shard_close(&l->cp[i].shard);
    free(l->cp);
    free(l->cp_weight);
    free(l->cp_taken);
    l->cp = NULL;
    l->cp_weight = NULL;
    l->cp_taken = NULL;
    l->cp_n = 0;
    l->cp_batches = 0;
}

int pg_train_loader_use_coprime(struct pg_train_loader *l, uint64_t seed)
{
    coprime_free(l);
    size_t n = l->stream.nfiles;
    if (n == 0) return pg_error(PG_E_INVAL, "coprime-stride loader: the train loader is not open");
    l->cp = pg_calloc(n, sizeof *l->cp);
    l->cp_weight = pg_calloc(n, sizeof *l->cp_weight);
    l->cp_taken = pg_calloc(n, sizeof *l->cp_taken);
    if (!l->cp || !l->cp_weight || !l->cp_taken) {
        coprime_free(l);
        return PG_E_NOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if ((rc = pg_shard_open(&l->cp[i].shard, l->stream.paths[i]))) break;
        l->cp_n = i + 1; /* opened so far, for coprime_free */
        if (l->cp[i].shard.n < (uint64_t)l->seq_len + 1)
            rc = pg_error(PG_E_INVAL,
                          "%s: %llu tokens, fewer than one block of sequence length %d + 1 for the coprime-stride "
                          "loader",
                          l->stream.paths[i], (unsigned long long)l->cp[i].shard.n, l->seq_len);
    }
    if (rc) {
        coprime_free(l);
        return rc;
    }
    free(l->chunk); /* the sequential chunk is not used in this mode */
    l->chunk = NULL;
    l->cp_seed = seed;
    coprime_reset(l);
    return 0;
}

/* ---- either mode ---- */

int pg_train_loader_next(struct pg_train_loader *l, int32_t *x, int32_t *y)
{
    if (l->cp) {
        coprime_batch(l, x, y);
        return 0;
    }
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
    if (l->cp) {
        *file = PG_TRAIN_LOADER_COPRIME_FILE;
        *pos = l->cp_batches;
        return;
    }
    /* A position at the very end of a shard is kept as is (not normalised to the next shard's
     * start): the reference advances lazily too, and restoring it reads the same tokens. */
    *file = l->stream.file;
    *pos = l->stream.pos;
}

int pg_train_loader_restore(struct pg_train_loader *l, size_t file, uint64_t pos)
{
    if (!l->cp) {
        if (file == PG_TRAIN_LOADER_COPRIME_FILE)
            return pg_error(PG_E_INVAL, "loader state (%zu, %llu) was saved by the coprime-stride loader, which is off",
                            file, (unsigned long long)pos);
        return pg_stream_seek(&l->stream, file, pos);
    }
    if (file != PG_TRAIN_LOADER_COPRIME_FILE && (file != 0 || pos != 0))
        return pg_error(PG_E_INVAL, "loader state (%zu, %llu) was saved by the sequential loader, not the coprime-stride one",
                        file, (unsigned long long)pos);
    coprime_reset(l);
    while (l->cp_batches < pos) coprime_batch(l, NULL, NULL);
    return 0;
}

void pg_train_loader_close(struct pg_train_loader *l)
{
    coprime_free(l);
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
