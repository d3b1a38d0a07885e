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

/* ---- distributions on the host ---- */

/* The output head of m copied to the host (vocab x dim floats), for pg_eval_logdist. */
struct pg_eval_head {
    float *w;
    int v, d;
    double cap; /* the tanh logit softcap, 0: none */
};

/* @return 0, PG_E_INVAL (a poly5 softcap: not supported here) or PG_E_NOMEM. */
int pg_eval_head_open(struct pg_eval_head *h, struct pg_model *m);
void pg_eval_head_close(struct pg_eval_head *h);

/* After a forward of m: the log-distribution over the vocabulary (h->v entries of logp, in
 * float64) of sequence row, position j, of softcap(logits) / temperature. With temperature 1 it
 * is the distribution whose cross-entropy the forward gave. @return 0 or PG_E_NOMEM. */
int pg_eval_logdist(struct pg_model *m, const struct pg_eval_head *h, int row, int j, double temperature,
                    double *logp);

/* ---- sliding windows ---- */

/* The window that scores each target with stride S (1 <= S <= L = seq_len), as the records'
 * sliding evaluation: windows of L tokens start at 0, S, 2S, ... (the last one moved back to end at
 * the last usable target), and each scores the targets the windows before it did not, so target
 * p (1 <= p <= usable) is scored exactly once, by the first window that holds it at the end of the
 * longest context: L-1 tokens once the stream is long enough, at least L-S, and p-1 in the first
 * window. S = L is pg_eval_val's non-overlapping windows. */
struct pg_slide {
    int64_t usable, ws; /* the current window's first token */
    int L, S;
    int64_t done;       /* targets 1..done are scored */
};

void pg_slide_init(struct pg_slide *sl, int64_t usable, int L, int S);

/* Next window: *ws (x = tokens[ws, ws+L), y = tokens[ws+1, ws+L+1)) and the first scored index
 * *j0 in it (targets ws+1+j for j in [j0, L)). @return 1, or 0 when every target is scored. */
int pg_slide_next(struct pg_slide *sl, int64_t *ws, int *j0);

/* @return the number of windows stride S takes over usable targets. */
int64_t pg_slide_count(int64_t usable, int L, int S);

/* Scores every target of v with stride S (pg_slide), batch_seqs windows per forward, and sums nll,
 * bytes (pg_bpb_target_bytes, the sidecar when loaded) and tokens in target order. With S = L
 * the result is pg_eval_val's, bit for bit. losses (may be NULL) receives each target's nll at
 * index p-1. @return 0 or an error. */
int pg_eval_sliding(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut, int stride,
                    int batch_seqs, int progress, float *losses_out, struct pg_eval_result *r);

struct pg_audit;

/* pg_eval_sliding with options: temperature T (> 0; 1 is the model's own distribution, from the
 * forward's losses; otherwise each nll is -log softmax(softcap(logits) / T)[y], computed on the
 * host in float64) and an audit (may be NULL) told of every scored target. */
int pg_eval_sliding_ex(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut, int stride,
                       int batch_seqs, int progress, double temperature, struct pg_audit *audit, float *losses_out,
                       struct pg_eval_result *r);

/* The audit's distribution check (pg_audit_check_dists) for the model as it is: each sampled
 * target p is scored alone in the window the sliding rule with stride S gives it (S = seq_len:
 * the plain windows), with temperature T, from a forward of that one window; the audit changes
 * the window's tokens from p on. m must have activations for at least one window.
 * @return 0 or an error. */
int pg_eval_audit_dists(struct pg_model *m, struct pg_val_set *v, int stride, double temperature,
                        struct pg_audit *a, int samples, uint64_t seed);

#endif
