/* loader.h: the training batches and the validation windows of parameter-golf, exactly.
 *
 * Training (spec/baseline.md §1.5, train_gpt.py DistributedTokenLoader.next_batch): one shared
 * token stream (shard.h) that every rank reads for itself. Each call, i.e. each micro-step of
 * gradient accumulation, takes ONE contiguous chunk of world·(local+1) tokens, the same on every
 * rank, where local = floor(global_tokens / (world·grad_accum)); rank r keeps
 * chunk[r·(local+1), (r+1)·(local+1)) and returns x = span[:-1], y = span[1:], local tokens each
 * (local/seq_len rows of seq_len). So an optimizer step of grad_accum micro-steps consumes
 * grad_accum·world·(local+1) stream tokens: 8 × 65,537 on 8 ranks with grad_accum 1, and
 * 8 × 65,537 as well on 1 rank with grad_accum 8 (TRAIN_BATCH_TOKENS = 524,288, seq 1024).
 *
 * Coprime-stride mode (spec/techniques.md §1.1, PR #726; pg_train_loader_use_coprime): every
 * shard is cut, after a random phase in [0, seq_len], into blocks of seq_len+1 tokens and visited
 * block by block in the order (start + j·s) mod n_blocks, gcd(s, n_blocks) = 1, so each epoch of a
 * shard sees every block exactly once; an exhausted shard is re-armed with a new phase, start and
 * stride. Each call draws one global micro-batch of world·local/seq_len rows from k shards chosen
 * without replacement with probability ∝ remaining_blocks^α (pg_coprime_schedule gives k and α),
 * rows spread evenly over them; rank r keeps global rows [r·local/seq_len, (r+1)·local/seq_len).
 * A row is x = block[0, seq_len), y = block[1, seq_len+1). Every rank makes the same random
 * choices, so the batches depend only on (seed, batches drawn) and the shards.
 *
 * Validation (§1.6, §2.2, load_validation_tokens and eval_val): every val shard concatenated and
 * truncated to usable+1 tokens, usable = floor((N−1)/seq_len)·seq_len; window s is
 * x = tokens[s·L, s·L+L), y = tokens[s·L+1, s·L+L+1); rank r of W scores windows
 * [floor(total·r/W), floor(total·(r+1)/W)) with total = usable/L, in batches of
 * floor(floor(val_batch_tokens/(W·grad_accum))/L) windows (the last batch of a rank may be short).
 */
#ifndef PG_LOADER_H
#define PG_LOADER_H

#include "rng.h"
#include "shard.h"

#include <stddef.h>
#include <stdint.h>

/* ---- training batches ---- */

struct pg_train_loader {
    struct pg_token_stream stream;
    int rank, world_size;
    int64_t global_tokens;
    int seq_len, grad_accum;
    int64_t local_tokens; /* x and y length per call: floor(global / (world·grad_accum)) */
    uint16_t *chunk;      /* world·(local+1) tokens of the latest call (sequential mode only) */
    /* coprime-stride mode: cp != NULL */
    struct pg_coprime_shard *cp; /* one per train shard, in stream order */
    size_t cp_n;
    uint64_t cp_seed;
    uint64_t cp_batches;         /* calls so far: with cp_seed, the whole state */
    struct pg_rng cp_rng;
    double *cp_weight;           /* scratch, cp_n each */
    unsigned char *cp_taken;
};

/* One shard of the coprime-stride loader and its current epoch. */
struct pg_coprime_shard {
    struct pg_shard shard; /* mapped */
    uint64_t phase;        /* first token of block 0, in [0, seq_len] */
    uint64_t n_blocks;     /* floor((n − phase) / (seq_len+1)) >= 1 */
    uint64_t stride;       /* coprime with n_blocks */
    uint64_t next;         /* the next block to visit */
    uint64_t left;         /* blocks not yet visited this epoch, >= 1 between calls */
};

/* The saved `file` of a coprime-stride loader (pos is then the number of calls made). No stream
 * of shards has that many files, so a checkpoint of one mode cannot be taken for the other. */
#define PG_TRAIN_LOADER_COPRIME_FILE ((size_t)0x7fffffff)

/* The mixing ramp: over the first 1,800 calls (batch = calls made before this one) k goes
 * linearly from max(8, W) to max(32, 8W) (integer, rounded down) and α from 0.9 to 0.5; both stay
 * there after. The loader then clamps k to the number of shards and of global rows. */
#define PG_COPRIME_RAMP_BATCHES 1800
void pg_coprime_schedule(uint64_t batch, int world_size, int *k, double *alpha);

/* A random stride for n_blocks blocks: uniform over the s in [2, n_blocks) with
 * gcd(s, n_blocks) = 1, or 1 when n_blocks <= 2 (then no number is drawn). */
uint64_t pg_coprime_stride(struct pg_rng *r, uint64_t n_blocks);

/* The reference's batch shape rule: local = floor(global_tokens / (world_size·grad_accum)) must
 * be a positive multiple of seq_len (next_batch's reshape(-1, seq_len) fails otherwise). The
 * remainder global mod (world·grad_accum) is dropped, as the reference drops it. Also checks
 * world_size, grad_accum, seq_len >= 1 and that a chunk fits in memory.
 * @return 0 and *local_tokens, or PG_E_INVAL with a message naming the numbers. */
int pg_train_batch_shape(int64_t global_tokens, int world_size, int grad_accum, int seq_len, int64_t *local_tokens);

/* Opens the stream over "<dir>/<prefix>_train_*.bin" (sorted) at shard 0, token 0.
 * @return 0, or PG_E_INVAL (bad shape or rank, no train shard: the message names dir),
 * PG_E_IO / PG_E_FORMAT (from the shards), PG_E_NOMEM. */
int pg_train_loader_open(struct pg_train_loader *l, const char *dir, const char *prefix, int rank, int world_size,
                         int64_t global_tokens, int seq_len, int grad_accum);

/* Switches l (just opened) to the coprime-stride loader described above, seeded by seed: maps
 * every train shard, arms each (phase, start, stride, in shard order) and starts at call 0.
 * Calling it again starts over with the new seed.
 * @return 0, or PG_E_INVAL naming a shard with fewer than seq_len+1 tokens, PG_E_IO / PG_E_FORMAT,
 * PG_E_NOMEM (l is then still the sequential loader it was). */
int pg_train_loader_use_coprime(struct pg_train_loader *l, uint64_t seed);

/* Takes the next chunk and fills this rank's x and y, l->local_tokens int32 each (row-major
 * local/seq_len × seq_len). @return 0 or an error from the stream (the position is then undefined). */
int pg_train_loader_next(struct pg_train_loader *l, int32_t *x, int32_t *y);

/* The whole state a bit-exact resume needs: the stream's shard index and position in it; in
 * coprime-stride mode (PG_TRAIN_LOADER_COPRIME_FILE, calls made). */
void pg_train_loader_state(const struct pg_train_loader *l, size_t *file, uint64_t *pos);

/* Moves to a saved state; (0, 0) is the start again, which is how the reference re-creates its
 * loader after warmup. In coprime-stride mode (PG_TRAIN_LOADER_COPRIME_FILE, n) re-seeds and
 * replays the random choices of n calls without reading a token (time linear in n), and (0, 0)
 * is call 0. @return 0 or PG_E_INVAL (no such shard or position, or a state of the other mode),
 * PG_E_IO / PG_E_FORMAT. */
int pg_train_loader_restore(struct pg_train_loader *l, size_t file, uint64_t pos);

void pg_train_loader_close(struct pg_train_loader *l);

/* ---- validation windows ---- */

struct pg_val_set {
    uint16_t *tokens; /* usable+1 tokens are used (the allocation may hold more) */
    int64_t usable;   /* scored targets: a multiple of seq_len, > 0; the logged "val tokens" */
    int seq_len;
};

/* Reads every "<dir>/<prefix>_val_*.bin" (sorted) and truncates. @return 0, or PG_E_INVAL
 * (seq_len < 1, no val shard, or fewer than seq_len+1 tokens: usable would be 0), PG_E_IO,
 * PG_E_FORMAT, PG_E_NOMEM. */
int pg_val_open(struct pg_val_set *v, const char *dir, const char *prefix, int seq_len);

void pg_val_close(struct pg_val_set *v);

/* @return the number of windows, usable / seq_len. */
int64_t pg_val_num_seqs(const struct pg_val_set *v);

/* Rank `rank` of `world` scores windows [*seq_begin, *seq_end) (possibly empty when there are
 * fewer windows than ranks). @return 0 or PG_E_INVAL (world < 1, rank outside [0, world)). */
int pg_val_rank_range(const struct pg_val_set *v, int rank, int world, int64_t *seq_begin, int64_t *seq_end);

/* Windows per forward: floor(floor(val_batch_tokens / (world·grad_accum)) / seq_len); a rank's
 * batches start at seq_begin, seq_begin + n, ... and the last ends at seq_end.
 * @return 0 and *seqs >= 1, or PG_E_INVAL when that is less than one window per rank (the
 * reference's "VAL_BATCH_SIZE must provide at least one sequence per rank"). */
int pg_val_batch_seqs(int64_t val_batch_tokens, int world, int grad_accum, int seq_len, int64_t *seqs);

/* Fills windows [seq, seq+count) as `count` rows of seq_len: x = tokens[seq·L, (seq+count)·L),
 * y = the same shifted by one. @return 0 or PG_E_INVAL (count < 0 or past the last window). */
int pg_val_windows(const struct pg_val_set *v, int64_t seq, int64_t count, int32_t *x, int32_t *y);

/* One window: pg_val_windows(v, seq, 1, x, y). */
int pg_val_window(const struct pg_val_set *v, int64_t seq, int32_t *x, int32_t *y);

#endif
