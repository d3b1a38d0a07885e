/* tokenize.h: the work behind pg-tokenize: train a tokenizer, encode documents into shards,
 * decode shards, and summarize a tokenizer and shards. cmd/pg-tokenize.c only parses options.
 */
#ifndef PG_TOKENIZE_H
#define PG_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

struct pg_tok;

/* ---- train ---- */

struct pg_train_tok_opts {
    char *const *inputs;
    size_t ninputs;
    int text_mode;            /* plain text, one document per file */
    const char *output;       /* the .model file to write */
    int vocab;
    int threads;
    int max_sentence_length;  /* SentencePiece's; longer documents are skipped in training (4192) */
    int64_t input_sentence_size; /* 0: all documents */
    double character_coverage;
    const char *extra;        /* extra SentencePiece options, "--key=value ..." (may be NULL) */
    int verbose;              /* show SentencePiece's own log */
    int progress;
    int caseops;              /* train on CaseOps-transformed text (caseops.h), the four operators as
                               * user-defined symbols, identity normalization, whitespace kept */
};

struct pg_train_tok_stats {
    uint64_t docs_read, docs_used, bytes_used;
    uint64_t docs_too_long; /* used documents longer than max_sentence_length: SentencePiece skips them */
    size_t model_bytes;
    double seconds;
};

/* Trains a BPE SentencePiece model with parameter-golf's settings (byte_fallback, split_digits,
 * nmt_nfkc, no dummy prefix, ids pad 0 / bos 1 / eos 2 / unk 3, hard_vocab_limit false) on the
 * documents (text with NULs as spaces, stripped; empty ones skipped) and writes it atomically.
 * @return 0, PG_E_INVAL (bad vocab), PG_E_IO / PG_E_FORMAT (input), PG_E_LIB (SentencePiece). */
int pg_tokenize_train(const struct pg_train_tok_opts *o, struct pg_train_tok_stats *st);

/* @return the SentencePiece argument string used by pg_tokenize_train (malloc'd), for display. */
char *pg_tokenize_train_args(const struct pg_train_tok_opts *o);

/* ---- encode ---- */

struct pg_encode_opts {
    const char *model;
    char *const *inputs;
    size_t ninputs;
    int text_mode;
    const char *outdir;
    const char *prefix;       /* "fineweb" by default */
    uint64_t val_docs;        /* the first N documents go to val */
    uint64_t shard_tokens;    /* tokens per shard */
    int threads;
    int force;                /* replace existing shards of the same prefix */
    int progress;
    int caseops;              /* CaseOps-transform each document (needs a CaseOps tokenizer) and write
                               * the val byte sidecar <prefix>_val_bytes_%06d.bin */
};

struct pg_encode_stats {
    uint64_t docs[2], tokens[2]; /* [0] val, [1] train */
    size_t shards[2];
    uint64_t input_bytes;
    uint64_t val_bytes;       /* caseops: the UTF-8 bytes of the val documents */
    uint64_t sidecar_bytes;   /* caseops: the sum of the sidecar (= val_bytes unless inexact_docs) */
    uint64_t inexact_docs;    /* caseops: val documents the tokenizer does not reproduce byte for byte */
    double seconds;
};

/* Encodes every document as BOS + its ids (no EOS) into "<outdir>/<prefix>_{val,train}_%06d.bin";
 * the first val_docs documents go to val. Threads encode in parallel, output order is input
 * order, memory is bounded. Shards become visible only when all are complete.
 * @return 0, or an error (no shard is left behind). */
int pg_tokenize_encode(const struct pg_encode_opts *o, struct pg_encode_stats *st);

/* ---- decode ---- */

/* Decodes shards (one stream, in the given order) to text: each BOS starts a document, and each
 * document is written followed by "\n" to `output` ("-": stdout). A CaseOps tokenizer's documents
 * are decoded through the CaseOps decoder (a malformed stream is an error). @return 0 or an error. */
int pg_tokenize_decode(const char *model, char *const *shards, size_t n, const char *output);

/* ---- info ---- */

struct pg_shard_info {
    const char *path;
    uint64_t tokens, docs, bytes;
};

/* Counts tokens, documents (BOS tokens) and val_bpb bytes of each shard, treating the shards as
 * one stream in the given order (the first token of a shard is scored after the last of the
 * previous one; the first of all is not scored). With a CaseOps tokenizer the bytes are the
 * original text's, through the CaseOps decoder, as the val byte sidecar counts them (a malformed
 * stream is an error). info[] has n entries. @return 0 or an error. */
int pg_tokenize_shard_info(const struct pg_tok *tok, char *const *shards, size_t n, struct pg_shard_info *info);

/* ---- tokenizer summary ---- */

struct pg_tok_summary {
    int vocab;
    int n_normal, n_byte, n_control, n_unknown, n_unused;
    int pad_id, bos_id, eos_id, unk_id;
    int bare_space_id;   /* id of the piece "▁" alone, -1 if absent (then a space costs 3 byte tokens) */
    int max_piece_bytes;
    int word_cache;      /* encoding memoizes words (exact for this model) */
};

/* Summarizes a loaded tokenizer. */
void pg_tokenize_summary(const struct pg_tok *tok, struct pg_tok_summary *s);

#endif
