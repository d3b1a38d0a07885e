/* calib.h: calibration statistics for GPTQ (spec/techniques.md §4.3).
 *
 * For the input X (tokens × cols) of every linear layer, H = Σ XᵀX over the calibration tokens,
 * gathered by running the model forward through its backend with a tap (model.h) on the inputs:
 * one H per physical layer and site, so c_q, c_k and c_v share the attention input's; the
 * attention projection gets the attention output it reads (after XSA and the head gate); the MLP's
 * fc its normed input and its projection the activation φ(fc·x); the output head (the tied
 * embedding, or lm_head when untied) the final norm's output. A looped layer adds every virtual
 * call to its layer's H, as the records' hooks do.
 *
 * H is accumulated per forward in fp32 (one SYRK of the batch) and summed over batches in double,
 * then divided by the number of rows it saw. On a device backend (pg-quantize --device cuda) the
 * inputs stay on the device: each forward adds XᵀX into fp32 sums there (the backend's weight-
 * gradient product, cuBLAS), downloaded once by pg_calib_finish (a mean; GPTQ's damping is relative, so only the
 * conditioning matters). Sources of tokens: the training shards `<prefix>_train_*` of a data
 * directory, read in order from the first (never the val shards), or any token buffer.
 */
#ifndef PG_CALIB_H
#define PG_CALIB_H

#include "model.h"
#include "progress.h"

#include <stdint.h>

struct pg_calib {
    int nl, d, hid;
    double *h[PG_TAP_N];     /* site s: nl matrices (1 for PG_TAP_HEAD) of cols(s)² values, row-major */
    int64_t *rows[PG_TAP_N]; /* rows added per matrix */
    float *gram;             /* scratch: one batch's XᵀX (upper triangle) */
    pg_real *dev[PG_TAP_N];  /* device backends: the fp32 sums of XᵀX in device memory, like h */
    const struct pg_backend *dev_be; /* the backend that owns dev[] */
    int64_t tokens;          /* tokens run through the model */
    int finished;
    struct pg_model_tap tap;
};

/* Sets up empty statistics for m's shape. @return 0 or PG_E_NOMEM. */
int pg_calib_init(struct pg_calib *c, const struct pg_model *m);

/* Runs nseq sequences of m->t tokens (ids, nseq·t values; targets need not be meaningful) through
 * m in batches of up to m->max_b, adding every tapped input to the statistics. m must have
 * activations for evaluation (pg_model_alloc_acts). @return 0, or PG_E_FORMAT for an id outside
 * the vocabulary. */
int pg_calib_add_tokens(struct pg_calib *c, struct pg_model *m, const int32_t *ids, int64_t nseq,
                        struct pg_progress *pr);

/* Runs the first `tokens` tokens (rounded up to whole sequences of m->t) of the training shards
 * `<dir>/<prefix>_train_*.bin`, in order (wrapping around if they hold fewer).
 * @return 0, or PG_E_IO / PG_E_FORMAT naming the shard (PG_E_IO when there is no train shard). */
int pg_calib_from_shards(struct pg_calib *c, struct pg_model *m, const char *dir, const char *prefix, int64_t tokens,
                         struct pg_progress *pr);

/* Self-generated calibration (the records' "AR self-gen" calibration: the model writes its own
 * calibration text, so no data is read at all). Fills ids (nseq·m->t values) with nseq sequences
 * sampled from m: each begins with cfg.bos_id, and token p+1 is drawn from softmax(z/temp) of the
 * logits z the model gives at position p (the head and softcap of pg_model_forward, computed on
 * the host in double from the final norm's output), or the largest logit when temp is 0 (the
 * lowest id on ties). Each sequence draws from its own generator, seeded from (seed, its index),
 * so the result does not depend on batching or threads. One forward of up to m->max_b sequences
 * per position: nseq/max_b · t forwards of t tokens (no KV cache), so short sequences are cheap.
 * m needs host memory (the CPU backend) and activations (pg_model_alloc_acts).
 * @return 0, PG_E_UNSUPPORTED on a device backend, or PG_E_NOMEM. */
int pg_calib_generate(struct pg_model *m, int32_t *ids, int64_t nseq, double temp, uint64_t seed,
                      struct pg_progress *pr);

/* Ends accumulation: each H becomes the mean over its rows and is made symmetric. Idempotent. */
void pg_calib_finish(struct pg_calib *c);

/* H for the tensor called name (cols × cols, after pg_calib_finish), or NULL when it is not a
 * linear layer's weight with a tapped input (or its layer never ran). *cols gets the size. */
const double *pg_calib_hessian(const struct pg_calib *c, const struct pg_model *m, const char *name, int64_t *cols);

void pg_calib_free(struct pg_calib *c);

#endif
