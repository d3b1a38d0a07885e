/* pgq.h: the quantized model file (.pgq), versions 1 and 2; specified in man/pg-formats.5.
 *
 *   header (128 bytes): magic "PGQMODEL", u32 version, explicit u64 offsets and sizes of the
 *                       sections, tensor count, scheme, tokenizer identity, reserved zeros
 *   config              the model configuration as "key=value\n" text (pg_config_to_kv)
 *   table               128 bytes per tensor: name, kind, bits, clip, role, shape, the offsets and
 *                       sizes of its values and its fp16 scales, clip parameter
 *   data                per tensor in model order: the values (int8 per element, or f32 / f16),
 *                       then for an integer tensor its rows' fp16 scales, then (version 2) its
 *                       LQER correction (lqer.h's file form) when it has one
 *   crc32               zlib crc32 of every byte before it
 *
 * The sections follow each other with no gap and every offset is determined by the sizes before
 * it, so a file has one valid layout and the reader checks that it is that one.
 *
 * For pg-pack: after pg_pgq_parse of a serialized buffer, every tensor with kind PG_QKIND_INT has
 * [data_off, data_off + data_len) = its rows × cols int8 values, row-major, inside that buffer,
 * and `role` says which group it belongs to (pg_qrole_name: tok_emb, attn.c_q, attn.c_k, attn.c_v,
 * attn.proj, mlp.fc, mlp.proj, lm_head; "other" for a control tensor, which is an integer one only
 * under int8-baseline with keep_float_max below its size). Cutting those ranges out and putting
 * the same bytes back rebuilds the identical file.
 */
#ifndef PG_PGQ_H
#define PG_PGQ_H

#include "quant.h"

#include <stddef.h>
#include <stdint.h>

#define PG_PGQ_MAGIC "PGQMODEL"    /* 8 bytes, no terminator in the file */
#define PG_PGQ_VERSION 2           /* the newest version this build writes (a model without LQER
                                    * corrections is written as version 1); it reads 1 and 2 */
#define PG_PGQ_HEADER_SIZE 128
#define PG_PGQ_ENTRY_SIZE 128

/* @return 1 if buf (len bytes) starts with the .pgq magic. */
int pg_pgq_sniff(const void *buf, size_t len);

/* Sets every tensor's data_off / scale_off (and nothing else) to the canonical layout of qm.
 * @return 0, or PG_E_NOMEM / PG_E_INVAL. */
int pg_pgq_layout(struct pg_qmodel *qm);

/* Serializes qm into a malloc'd buffer (*buf, *len). @return 0, or PG_E_NOMEM / PG_E_INVAL. */
int pg_pgq_serialize(const struct pg_qmodel *qm, unsigned char **buf, size_t *len);

/* Writes qm to path atomically (outfile.h). @return 0, or PG_E_IO naming path. */
int pg_pgq_write(const struct pg_qmodel *qm, const char *path);

/* Parses a whole .pgq held in memory, checking everything (magic, version, reserved fields, every
 * size and offset against len, the checksum, the configuration, the tensor table against the
 * configuration's model, each integer within its bit width, each scale a positive finite fp16).
 * The tensors point into buf, which must outlive qm. `name` names the file in errors.
 * @return 0, or PG_E_FORMAT with one line naming `name`; PG_E_NOMEM. */
int pg_pgq_parse(const unsigned char *buf, size_t len, const char *name, struct pg_qmodel *qm);

/* Maps and parses the file at path; qm keeps the mapping (released by pg_qmodel_free).
 * @return 0, or PG_E_IO / PG_E_FORMAT naming path. */
int pg_pgq_read(const char *path, struct pg_qmodel *qm);

/* Releases the mapping of a qm read by pg_pgq_read (pg_qmodel_free calls it). */
void pg_pgq_unmap(struct pg_qmodel *qm);

/* The identity of the tokenizer file at path: its vocabulary size, the zlib crc32 of its bytes
 * and their count. @return 0, or PG_E_IO / PG_E_FORMAT naming path. */
int pg_pgq_tok_identity(const char *path, struct pg_tok_id *id);

/* Checks that the tokenizer at tok_path is the one qm records (a qm without one always passes).
 * `what` names the model file. @return 0, or PG_E_FORMAT naming both files. */
int pg_pgq_check_tokenizer(const struct pg_qmodel *qm, const char *what, const char *tok_path);

#endif
