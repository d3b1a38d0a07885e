/* qfit.h: fitting a quantized model under a packed-size target by selective ±1 pruning
 * (spec/techniques.md §4.3, from PR #609 via #1934).
 *
 * The integer weights at ±1 are the cheapest to move: setting one to 0 adds at most about one
 * step² of error and makes the integer stream more compressible. Each ±1 weight w = ±s_r (row r,
 * column j) gets the cost s_r² · H_jj, the increase of the layer's output error on the
 * calibration inputs when it becomes 0 (H_jj = 1 without calibration statistics: the records'
 * s_r² alone). The candidates are ordered by cost (ties by tensor, then element), and a binary
 * search over their count finds the fewest cheapest ones whose zeroing brings the packed artifact,
 * measured by packing the serialized model exactly as pg-pack does (pack.h), to at most the
 * target. The packed size is not strictly monotone in the count, so the result is checked with a
 * final pack: it is at most the target, and the count one less was over it.
 */
#ifndef PG_QFIT_H
#define PG_QFIT_H

#include "calib.h"
#include "pack.h"
#include "quant.h"

#include <stdint.h>

struct pg_fit_report {
    uint64_t start_bytes;  /* the packed size before pruning */
    uint64_t final_bytes;  /* after */
    int64_t candidates;    /* integer weights at ±1 */
    int64_t pruned;        /* of those, set to 0 */
    int packs;             /* how many times the model was packed */
};

/* Packs qm (serialized as pg_pgq_write would write it) with o and returns the artifact's size in
 * *bytes. @return 0, or the serializer's or packer's error. */
int pg_fit_packed_bytes(const struct pg_qmodel *qm, const struct pg_pack_opts *o, uint64_t *bytes);

/* Zeroes the fewest cheapest ±1 integers of qm (quantized in memory by pg_quantize_model from m,
 * with calib's statistics when not NULL) so that its artifact packed with o is at most target
 * bytes; a model already within it is left as it is. The pruned tensors' rel_err and out_err are
 * measured again. progress, when not NULL, gets each pack's candidate count and size.
 * @return 0, PG_E_INVAL (qm not quantized in memory, or the target cannot be reached even with
 * every ±1 pruned: the message gives that size), PG_E_NOMEM, or a packer's error. */
int pg_fit_prune(struct pg_qmodel *qm, const struct pg_model *m, const struct pg_calib *calib, uint64_t target,
                 const struct pg_pack_opts *o, struct pg_fit_report *rep,
                 void (*progress)(void *ctx, int64_t pruned, uint64_t bytes), void *ctx);

#endif
