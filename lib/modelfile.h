/* modelfile.h: load a model from any of the files that hold one, by their magic.
 *
 *   safetensors checkpoint (ckpt.h)   pg-train's output, or a PyTorch state_dict
 *   .pgq quantized model (pgq.h)      pg-quantize's output, dequantized on load
 *   .pga artifact (pga.h, pack.h)     pg-pack's output, decoded to its .pgq in memory
 *
 * A file is told by its first bytes, not by its name: "PGQMODEL" is a .pgq, "PGAR" a .pga, anything
 * else is handed to the safetensors reader (whose header length comes first), which reports what
 * is wrong.
 */
#ifndef PG_MODELFILE_H
#define PG_MODELFILE_H

#include "config.h"
#include "model.h"

enum pg_modelfile_format {
    PG_MODELFILE_SAFETENSORS = 1,
    PG_MODELFILE_PGQ = 2,
    PG_MODELFILE_PGA = 3, /* pg-pack's artifact: decoded to its .pgq in memory */
};

/* Tells the format of the file at path from its magic. @return 0 and *format, or PG_E_IO. */
int pg_modelfile_sniff(const char *path, int *format);

/* @return the name of a pg_modelfile_format: "safetensors", "pgq", "pga". */
const char *pg_modelfile_format_name(int format);

/* Reads the model configuration of the file at path. @return 0, or PG_E_IO / PG_E_FORMAT naming
 * the file. */
int pg_modelfile_read_config(const char *path, struct pg_config *cfg);

/* Loads the parameters of the file at path into m (set up with pg_model_init for a configuration
 * of the same shape), dequantizing a quantized model. @return 0, or PG_E_IO / PG_E_FORMAT naming
 * the file. */
int pg_modelfile_load(struct pg_model *m, const char *path);

/* Checks that the tokenizer at tok_path is the one the model file records, if it records one
 * (a .pgq written with pg-quantize -m does; a checkpoint does not).
 * @return 0, or PG_E_FORMAT naming both files, PG_E_IO. */
int pg_modelfile_check_tokenizer(const char *path, const char *tok_path);

#endif
