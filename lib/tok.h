/* tok.h: the tokenizer, a C API over SentencePiece (libsentencepiece).
 *
 * SentencePiece has only a C++ API; tok_spm.cc is the one C++ file of pgolf and wraps it here.
 * The model file is SentencePiece's own .model (a protobuf), unchanged. Encoding is
 * thread-safe: several threads may encode with one loaded model.
 */
#ifndef PG_TOK_H
#define PG_TOK_H

#include <stddef.h>
#include <stdint.h>

struct pg_tok;

/* Kinds of piece (SentencePiece's ModelProto::SentencePiece::Type). */
enum pg_piece_kind {
    PG_PIECE_NORMAL = 1,
    PG_PIECE_UNKNOWN = 2,
    PG_PIECE_CONTROL = 3,
    PG_PIECE_USER_DEFINED = 4,
    PG_PIECE_UNUSED = 5,
    PG_PIECE_BYTE = 6,
};

/* Loads a SentencePiece model. @return 0, or PG_E_IO / PG_E_FORMAT naming the path. */
int pg_tok_load(struct pg_tok **out, const char *path);

void pg_tok_free(struct pg_tok *t);

/* @return the number of pieces (the vocabulary size). */
int pg_tok_vocab_size(const struct pg_tok *t);

/* @return the piece string of `id` (UTF-8, "▁" for a space). */
const char *pg_tok_piece(const struct pg_tok *t, int id);

/* @return the pg_piece_kind of `id`. */
int pg_tok_piece_kind(const struct pg_tok *t, int id);

/* @return the BOS id (-1 if the model has none). */
int pg_tok_bos_id(const struct pg_tok *t);

/* @return 1 if encoding memoizes words (exact for this model, see tok_spm.cc), else 0. */
int pg_tok_word_cache(const struct pg_tok *t);

/* Reports the special ids (-1 where the model has none). */
void pg_tok_special_ids(const struct pg_tok *t, int *pad, int *bos, int *eos, int *unk);

/* A growable array of token ids, reused across calls to avoid allocation per document. */
struct pg_ids {
    int *v;
    size_t n, cap;
};

/* Encodes `len` bytes of UTF-8 text (normalized by the model first) and appends the ids to out.
 * @return 0, or PG_E_LIB / PG_E_NOMEM. */
int pg_tok_encode(const struct pg_tok *t, const char *text, size_t len, struct pg_ids *out);

/* Decodes ids into malloc'd UTF-8 text (*text, *len; NUL-terminated). @return 0 or PG_E_LIB. */
int pg_tok_decode(const struct pg_tok *t, const int *ids, size_t n, char **text, size_t *len);

/* Pulls training documents for pg_tok_train: set *text and *len to the next document and return 1,
 * return 0 at the end, or a negative PG_E_* code to stop training with that error. */
typedef int (*pg_tok_doc_fn)(void *ctx, const char **text, size_t *len);

/* Trains a SentencePiece model with `args` (SentencePiece's "--key=value ..." string; no
 * --input: documents come from `next`) and returns the serialized model in *model (malloc'd)
 * so the caller can write it atomically. @return 0, or PG_E_LIB with SentencePiece's message. */
int pg_tok_train(const char *args, pg_tok_doc_fn next, void *ctx, char **model, size_t *model_len);

/* Frees an id array's storage. */
void pg_ids_free(struct pg_ids *ids);

#endif
