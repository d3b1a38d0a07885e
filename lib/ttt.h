/* ttt.h: legal score-first global test-time training (spec/techniques.md §6 intro and §6.2).
 *
 * The val stream is scored with pg-eval's windows (eval.h: non-overlapping windows of L =
 * v->seq_len tokens, window s predicting the targets at stream positions s·L+1 .. s·L+L), but
 * the model adapts as it goes. The windows are grouped in order into chunks of
 * max(1, floor(chunk_tokens / L)) windows (the last chunk takes what is left, so it may be
 * shorter); n = the number of chunks. For each chunk c in order:
 *   (a) score: every target of the chunk is scored by the current model, under no update, and
 *       its nll and bytes are added to the sums in window order exactly as eval.c adds them;
 *   (b) train, unless c is the last chunk (or epochs = 0): `epochs` passes over the chunk's
 *       windows in order, in SGD steps of step_seqs windows (the last step of a pass may be
 *       shorter) on the training loss (mean cross-entropy over the step's targets), gradients
 *       accumulated over forwards of batch_seqs windows, clipped to a global 2-norm of
 *       grad_clip, then SGD with momentum (sgd.h) at lr_c = lr·0.5·(1 + cos(π·c/max(n−1, 1))).
 *       Every parameter of the model is trained; the momentum carries over from chunk to chunk.
 * val_loss and val_bpb are then Σnll/Σtokens and Σnll/(ln 2·Σbytes) over the whole stream, and
 * with epochs = 0 they are pg_eval_val's numbers bit for bit when chunk windows are a multiple of
 * batch_seqs (the forwards then hold the same windows).
 *
 * Legality (score before update, one left-to-right pass) is enforced by the session, not by
 * the caller's good manners: pg_ttt_score_next is the only thing that moves the scoring
 * frontier, and it scores the chunks in order, each once; pg_ttt_train takes a chunk that has
 * already been scored whole (every window it reads lies below the frontier) and is not the last
 * one, and refuses anything else without touching the model. The training step reads the val
 * tokens [s0·L, s1·L] of its windows [s0, s1) and nothing else, so a token's loss depends only on
 * the model given and the tokens before it; tests/unit/test_ttt.c checks both properties.
 */
#ifndef PG_TTT_H
#define PG_TTT_H

#include "bpb.h"
#include "eval.h"
#include "loader.h"
#include "model.h"
#include "ngram.h"

#include <stdint.h>

struct pg_ttt_params {
    int64_t chunk_tokens; /* target tokens per chunk, rounded down to whole windows, >= 1 window (32768) */
    int epochs;           /* training passes over each scored chunk; 0 = plain evaluation (3) */
    double lr;            /* base SGD learning rate, >= 0 (0.005) */
    double momentum;      /* SGD momentum in [0, 1) (0.9) */
    double grad_clip;     /* global gradient 2-norm clip; 0 = off (1.0) */
    int batch_seqs;       /* windows per forward pass, scoring and training (8) */
    int step_seqs;        /* windows per SGD step (32: a 32768-token chunk of L = 1024 per step) */
    int control_only;     /* train only the control tensors (PG_TENSOR_CONTROL: scales, mixes, gains, skip
                           * weights, gates), the small float tensors an artifact keeps unquantized:
                           * PR #2086's TTT of the fp16 calibration parameters (0) */
    double polyak;        /* 0, or the decay d of a Polyak average of the weights (PR #826: 0.998): after
                           * each SGD step avg = d·avg + (1 − d)·θ, and chunks are scored with avg */
    int progress;         /* draw a progress line with an ETA on stderr */
    double temperature;   /* > 0: targets are scored by softmax(softcapped logits / T), computed on the
                           * host in float64 from the final hidden states (PR #826: 0.98); 1 = the
                           * model's own distribution, the forward's losses (1) */
    /* NULL, or an n-gram mode (ngram.h: tilt, mixture, cache) through which every target is
     * scored, from the current model's distribution (one window per forward, in stream order;
     * its tables learn each target only after it is scored): host-memory backends only */
    const struct pg_ngram_params *ngram;
};

/* Optional outputs for tests and audits. Positions are indices into the val token stream
 * v->tokens; the target of window s, column j is position s·L + j + 1. */
struct pg_ttt_hooks {
    float *token_losses; /* NULL, or v->usable entries: the nll of the target at position p goes
                          * to token_losses[p − 1] when it is scored */
    void *ctx;
    /* Called after a forward that scored the targets at positions [begin, end). */
    void (*scored)(void *ctx, int64_t chunk, int64_t begin, int64_t end);
    /* Called after each SGD step applied to the model, with the positions [begin, end) of every
     * val token the step read (inputs and targets). */
    void (*updated)(void *ctx, int64_t chunk, int64_t begin, int64_t end);
    /* NULL, or an audit (lib/audit.h) in which audit_samples targets' distributions are checked
     * as the run reaches them, on the model as it then is (trained on the chunks before, the
     * Polyak average when scored with it): host-memory backends only (pg_ttt_open refuses
     * another), as lib/ngram.h's pg_ngram_audit_at with no n-gram state */
    struct pg_audit *audit;
    int audit_samples;
};

struct pg_ttt_result {
    double nll_sum, tokens, bytes;  /* over the targets scored so far */
    double val_loss, val_bpb;
    int64_t chunks, chunk_seqs;     /* chunk count n, windows per chunk */
    int64_t chunks_scored, chunks_trained, steps;
    double score_seconds, train_seconds;
};

/* One scored chunk, as pg_ttt_score_next reports it: windows [seq_begin, seq_end). */
struct pg_ttt_chunk {
    int64_t index, seq_begin, seq_end;
};

struct pg_ttt;

/* The defaults above (the records' values, spec §6.2). */
void pg_ttt_params_default(struct pg_ttt_params *p);

/* Starts a session over the val set. m must have activations for batch_seqs windows of
 * v->seq_len tokens, and gradients (pg_model_init with training = 1) unless epochs = 0; m, v,
 * lut and hooks must outlive the session, which changes m's parameters as it trains.
 * @return 0 and *s, PG_E_INVAL (a parameter out of range, a model that does not fit), or
 * PG_E_NOMEM. */
int pg_ttt_open(struct pg_ttt **s, struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
                const struct pg_ttt_params *p, const struct pg_ttt_hooks *hooks);

/* Scores the next chunk, under no update, and adds it to the sums; *c says which it was.
 * @return 0, 1 when every chunk has been scored (nothing done), or an error (PG_E_FORMAT for a
 * token outside the model's vocabulary). */
int pg_ttt_score_next(struct pg_ttt *s, struct pg_ttt_chunk *c);

/* Trains the model on chunk c (see above). @return 0, PG_E_INVAL when c is not a whole chunk
 * that has been scored, or is the last chunk (the model is then unchanged), or PG_E_FORMAT when
 * the training loss is not finite (diverged). */
int pg_ttt_train(struct pg_ttt *s, const struct pg_ttt_chunk *c);

/* The sums and counters so far (val_loss and val_bpb over what has been scored). */
void pg_ttt_result(const struct pg_ttt *s, struct pg_ttt_result *r);

/* Ends the progress line and frees the session (not m). Safe on NULL. */
void pg_ttt_close(struct pg_ttt *s);

/* The whole algorithm: open, then for every chunk score it and (but for the last) train on it;
 * *r the result. @return 0 or an error from the calls above. */
int pg_ttt_run(struct pg_model *m, const struct pg_val_set *v, const struct pg_bpb_lut *lut,
               const struct pg_ttt_params *p, const struct pg_ttt_hooks *hooks, struct pg_ttt_result *r);

#endif
