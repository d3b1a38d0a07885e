/* train.h: the training loop of pg-train (spec/baseline.md §4.4), on one process.
 *
 * Each step: the learning-rate multiplier (wall-clock warmdown, or iteration-based when
 * max_wallclock_seconds <= 0), Muon's momentum warmup, grad_accum_steps micro-batches from the
 * parameter-golf loader (forward + backward, the loss averaged over tokens and micro-batches),
 * optional gradient clipping, then Adam on the embedding, Muon on the block matrices, Adam on the
 * control tensors. Validation (timer paused) at step 0, every val_loss_every steps and at the end.
 * Checkpoints are a model file (ckpt.h) plus a companion state file with the optimizers, the
 * loader position and the step, so --resume continues bit-exactly. The warmup-then-restore of the
 * PyTorch script only primes torch.compile and restores the initial state, so it is skipped here.
 *
 * The record stack's schedule (spec/techniques.md §1.3, §3.3, §4.2), every part off by default:
 * the LR multiplier by training fraction (warmdown_frac, min_lr), the Muon weight-decay taper,
 * late QAT (straight-through fake quantization of the Muon matrices while lr_mul < qat_start_lr),
 * the depth-recurrence switch (model.looping from enable_looping_at), an fp32 EMA of the weights
 * and SWA. With EMA or SWA on, model.safetensors and the last validation get the averaged weights
 * (SWA once it has a snapshot, else the EMA); the checkpoints keep the raw weights, and their
 * state file the EMA shadow ("ema", F32) and the SWA sum ("swa_sum", F64, with "swa_count").
 */
#ifndef PG_TRAIN_H
#define PG_TRAIN_H

#include "backend.h"
#include "config.h"
#include "dist.h"

#include <signal.h>
#include <stdio.h>

struct pg_train_opts {
    struct pg_config cfg;
    const char *data_dir, *prefix, *tokenizer, *run_dir;
    const char *resume;          /* a checkpoint to continue from, or NULL */
    int save_every;              /* steps between checkpoints; 0: only at the end */
    int stop_at;                 /* stop (with a checkpoint) on reaching this step, schedule unchanged; 0: never */
    int muon_bf16;               /* emulate the baseline's bf16 Newton–Schulz */
    const struct pg_backend *backend; /* where the model, its gradients and the optimizers live
                                       * (lib/backend.h; NULL: the CPU) */
    int bf16;                    /* matrix products with bf16 inputs (backend set_bf16) */
    int progress;                /* draw a progress line */
    int verbosity;               /* 0 quiet, 1 log lines */
    volatile sig_atomic_t *stop; /* set asynchronously (SIGINT/SIGTERM): checkpoint and return */
    struct pg_dist *dist;        /* the job's ranks (lib/dist.h), or NULL: one process. Each rank
                                  * takes grad_accum_steps / world micro-batches of every step,
                                  * the gradients are summed in rank order, rank 0 writes */
};

struct pg_train_result {
    int steps;                   /* optimizer steps taken in total */
    double train_loss;           /* the last step's */
    double val_loss, val_bpb;    /* the last validation's (NaN if none) */
    double train_seconds;        /* training time, validation excluded */
    double tokens_per_second;
    size_t device_peak_bytes;    /* the backend's mem_peak at the end (0 on the CPU) */
    int interrupted;
    char final_ckpt[1024];
};

/* Runs training as configured; logs on stderr and to <run_dir>/metrics.jsonl.
 * @return 0 (also when stopped by a signal, after checkpointing), or an error. */
int pg_train_run(const struct pg_train_opts *o, struct pg_train_result *r);

#endif
