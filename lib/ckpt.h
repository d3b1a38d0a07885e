/* ckpt.h: model checkpoints as safetensors files.
 *
 * The model file is a plain safetensors file with parameter-golf's tensor names and shapes (so it
 * loads into the PyTorch baseline with load_state_dict, and a PyTorch state_dict saved with
 * safetensors loads here), every tensor F32, and the configuration in "__metadata__" (one entry
 * per pg_config field, plus "format" = "pt" as PyTorch's writer puts it and "pgolf" = the
 * checkpoint version). Reading accepts F32, BF16, F16 and F64 tensors (PyTorch keeps
 * tok_emb.weight in bf16) and a file without pgolf metadata, whose shape is then inferred from the
 * tensors. Optimizer, RNG and data-loader state live in a companion file (see pg-train).
 */
#ifndef PG_CKPT_H
#define PG_CKPT_H

#include "config.h"
#include "model.h"

/* Writes the model's parameters and configuration to path atomically; extra metadata pairs
 * (n_extra of them, may be 0) are added, e.g. "step". @return 0 or an error. */
int pg_ckpt_save(const struct pg_model *m, const char *path, size_t n_extra, const char *const *extra_keys,
                 const char *const *extra_values);

/* Reads the configuration of a checkpoint: from its metadata when pgolf wrote it, otherwise the
 * baseline defaults with the shape inferred from the tensors (vocab, dim, layers, heads from
 * q_gain, kv heads from c_k, mlp_mult from fc, tied unless lm_head.weight exists).
 * @return 0, or PG_E_IO / PG_E_FORMAT naming the file. */
int pg_ckpt_read_config(const char *path, struct pg_config *cfg);

/* Loads every parameter of m from path; names and shapes must match exactly, with no tensor
 * missing or left over. @return 0, or PG_E_FORMAT naming the file and the tensor. */
int pg_ckpt_load(struct pg_model *m, const char *path);

#endif
