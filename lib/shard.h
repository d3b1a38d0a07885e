/* shard.h: token shards in the parameter-golf format, exactly.
 *
 * A shard is a 1024-byte header of 256 little-endian int32 (magic 20240520, version 1, token
 * count, then zeros) followed by `count` little-endian uint16 token ids. Files are named
 * "<prefix>_<split>_%06d.bin" (split "train" or "val"), 10^8 tokens each by default; the last
 * shard of a split is shorter. This is byte-compatible with parameter-golf's
 * data/download_hf_docs_and_tokenize.py writer and train_gpt.py reader, so FineWeb shards
 * downloaded for parameter-golf feed pgolf and ours feed the PyTorch scripts.
 *
 * Readers mmap the file and check magic, version, reserved header fields and that the size is
 * exactly 1024 + 2·count. Not here: documents (BOS markers) and bytes, see bpb.h.
 */
#ifndef PG_SHARD_H
#define PG_SHARD_H

#include "mapfile.h"
#include "outfile.h"

#include <stddef.h>
#include <stdint.h>

#define PG_SHARD_MAGIC 20240520
#define PG_SHARD_VERSION 1
#define PG_SHARD_HEADER_BYTES 1024
#define PG_SHARD_DEFAULT_TOKENS 100000000ull
#define PG_SHARD_MAX_TOKENS 0x7fffffffull /* the count is an int32 */

/* ---- one shard, read-only ---- */

struct pg_shard {
    char *path;
    struct pg_map map;
    const uint16_t *tokens; /* points into the mapping (little-endian host) */
    uint64_t n;
};

/* Checks a shard header against the file size. @return 0 and *count, or PG_E_FORMAT naming
 * `path` and what is wrong (magic, version, reserved field, size). */
int pg_shard_check_header(const unsigned char *hdr, uint64_t file_size, const char *path, uint64_t *count);

/* Fills a 1024-byte header for `count` tokens. */
void pg_shard_make_header(unsigned char *hdr, uint64_t count);

/* Maps and validates a shard. @return 0, or PG_E_IO / PG_E_FORMAT naming the file. */
int pg_shard_open(struct pg_shard *s, const char *path);

void pg_shard_close(struct pg_shard *s);

/* ---- naming and listing ---- */

/* Lists "<dir>/<prefix>_<split>_*.bin" in sorted (= numeric) order, as parameter-golf's
 * sorted(glob(...)) does. *paths is a malloc'd array of malloc'd strings (free with
 * pg_shard_list_free). @return 0 (possibly with *n == 0), or PG_E_IO. */
int pg_shard_list(const char *dir, const char *prefix, const char *split, char ***paths, size_t *n);

void pg_shard_list_free(char **paths, size_t n);

/* ---- writing a split ---- */

/* Writes the shards of one split. Every shard stays a temporary file until pg_shard_writer_commit
 * renames them all, so a failed or interrupted encode leaves no shard under a final name. */
struct pg_shard_writer {
    char *dir, *prefix, *split;
    uint64_t max_tokens;   /* tokens per shard */
    struct pg_out *files;  /* finished + current */
    size_t nfiles, cap;
    uint64_t in_current;   /* tokens in the current (last) file */
    uint64_t total;
    int finished;          /* the last shard's header is final */
};

/* @return 0, or PG_E_INVAL (bad max_tokens) / PG_E_NOMEM. */
int pg_shard_writer_open(struct pg_shard_writer *w, const char *dir, const char *prefix, const char *split,
                         uint64_t max_tokens);

/* Appends tokens, starting a new shard whenever the current one is full. @return 0 or PG_E_IO. */
int pg_shard_writer_put(struct pg_shard_writer *w, const uint16_t *tok, size_t n);

/* Completes the last shard (header and fsync) without renaming anything, so that several splits
 * can all be complete before any becomes visible. @return 0 or PG_E_IO. */
int pg_shard_writer_finish(struct pg_shard_writer *w);

/* Finishes every shard and renames them into place. A split with no tokens writes no file.
 * *nfiles_out (may be NULL) gets the number of shards written. @return 0, or PG_E_IO (all
 * temporaries removed). */
int pg_shard_writer_commit(struct pg_shard_writer *w, size_t *nfiles_out);

/* Removes every temporary. Safe after commit. */
void pg_shard_writer_abort(struct pg_shard_writer *w);

/* ---- the training stream ---- */

/* parameter-golf's TokenStream: shards in order, one mapped at a time, a cursor, wrapping from
 * the last shard to the first forever. Its position (file, pos) is all the state needed to
 * resume bit-exactly. */
struct pg_token_stream {
    char **paths;
    size_t nfiles;
    size_t file;      /* index of the mapped shard */
    uint64_t pos;     /* next token within it */
    struct pg_shard cur;
};

/* Opens a stream over `paths` (copied). Every shard is validated up front, and a stream whose
 * shards hold no token at all is refused. @return 0, or PG_E_IO / PG_E_FORMAT / PG_E_INVAL. */
int pg_stream_open(struct pg_token_stream *s, char *const *paths, size_t n);

/* Copies the next n tokens into out, crossing shard boundaries and wrapping. @return 0 or error. */
int pg_stream_take(struct pg_token_stream *s, uint16_t *out, size_t n);

/* Moves the cursor to (file, pos), as saved from s->file and s->pos. @return 0 or PG_E_INVAL. */
int pg_stream_seek(struct pg_token_stream *s, size_t file, uint64_t pos);

void pg_stream_close(struct pg_token_stream *s);

/* ---- a whole split ---- */

/* Reads and concatenates every shard of a split (the val loader). *tokens is malloc'd.
 * @return 0, or PG_E_IO (also when the split has no shard) / PG_E_FORMAT. */
int pg_split_read(const char *dir, const char *prefix, const char *split, uint16_t **tokens, uint64_t *n);

#endif
