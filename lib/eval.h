/* eval.h: val_loss and val_bpb exactly as parameter-golf's eval_val (spec/baseline.md §2.2):
 * non-overlapping windows of seq_len tokens over the val stream, every target scored once with
 * 0..seq_len-1 tokens of context, the negative log-likelihoods and the bytes (bpb.h's rule, with
 * the previous stream token as context) summed in float64:
 *   val_loss = Σnll / Σtokens,  val_bpb = Σnll / (ln 2 · Σbytes).
 */
#ifndef PG_EVAL_H
#define PG_EVAL_H

#include "bpb.h"
#include "loader.h"
#include "model.h"

struct pg_eval_result {
    double nll_sum, tokens, bytes;
    double val_loss, val_bpb;
    double seconds;
};

/* Scores val windows [s, s + b) with the model as it is: reads them into x and y (b·seq_len ids
 * each), checks the ids, runs the forward pass with each target's nll in losses, and adds the
 * nll, bytes and token count to r's sums (nll_sum, bytes, tokens) in window order. pg_eval_val
 * and pg-ttt's scoring both go through it, so they add the same numbers in the same order.
 * @return 0 or an error (a bad id, a read failure). */
int pg_eval_windows(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut, int64_t s, int b,
                    int32_t *x, int32_t *y, float *losses, struct pg_eval_result *r);

/* Scores this rank's share of the val windows (rank 0 of 1: all of them), batch_seqs windows per
 * forward; m must have activations for batch_seqs sequences of v->seq_len tokens. progress: draw a
 * progress line on stderr. @return 0 or an error. */
int pg_eval_val(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut, int rank, int world,
                int batch_seqs, int progress, struct pg_eval_result *r);

#endif
