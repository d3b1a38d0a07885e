/* model.h: the parameter-golf GPT (spec/baseline.md §3), forward and backward, written once over
 * the operation table of backend.h.
 *
 * Parameters live in one contiguous array (and their gradients in a second of the same layout),
 * described by a table of named tensors that uses parameter-golf's own names and shapes
 * ("tok_emb.weight", "blocks.0.attn.c_q.weight", ...), so checkpoints map onto PyTorch's
 * state_dict one to one. Activations are allocated for a fixed micro-batch shape; a model set up
 * for evaluation only keeps one layer's worth and no backward buffers.
 *
 * Parameters, gradients and activations live in the backend's memory (be->alloc): host memory
 * for the CPU backend, which is what the optimizers, checkpoints and quantizers read today;
 * device memory for the CUDA backend, where only the forward and backward passes run so far.
 */
#ifndef PG_MODEL_H
#define PG_MODEL_H

#include "backend.h"
#include "config.h"

#include <stddef.h>
#include <stdint.h>

/* What a tensor is, which decides its optimizer (spec §4.1). */
enum pg_tensor_kind {
    PG_TENSOR_EMBED,   /* tok_emb.weight: Adam at tied_embed_lr (or embed_lr when untied) */
    PG_TENSOR_HEAD,    /* lm_head.weight (untied only): Adam at head_lr */
    PG_TENSOR_MATRIX,  /* 2-D block matrices: Muon at matrix_lr */
    PG_TENSOR_CONTROL, /* scales, mixes, gains, skip weights: Adam at scalar_lr */
};

/* How pg_model_init_weights sets a tensor (spec/baseline.md §3.4, spec/techniques.md §2). */
enum pg_tensor_init {
    PG_INIT_NORMAL,    /* N(0, init_val²), rounded to bf16 */
    PG_INIT_LINEAR,    /* U(±1/√fan_in) rounded to bf16, or orthogonal with ortho_init */
    PG_INIT_ZERO,
    PG_INIT_CONST,     /* every element init_val */
    PG_INIT_RESID_MIX, /* rows (1, 0) */
};

struct pg_tensor {
    char name[48];
    int kind;
    int ndim;
    int64_t shape[2];
    size_t offset, numel; /* into pg_model.params / .grads */
    int init;             /* enum pg_tensor_init */
    double init_val;
};

/* Indices into the tensor table of one block's parameters. */
struct pg_block_params {
    int c_q, c_k, c_v, proj, q_gain, fc, mlp_proj, attn_scale, mlp_scale, resid_mix;
    int attn_gate; /* -1 without a head-output gate */
};

/* One block's saved activations for a micro-batch of N = B·T tokens. */
struct pg_block_acts {
    pg_real *xin, *xm, *ya, *rs_a;                    /* input, mixed (shared by every slot: forward
                                                       * only), attn norm (+rstd) */
    pg_real *qn, *rs_q, *qr, *q, *kn, *rs_k, *k, *v;  /* q/k normed, rotated, gained; v */
    pg_real *o, *lse, *ao;                            /* attention out, log-sum-exp, proj out */
    pg_real *ym, *rs_m, *hpre, *r, *mo;               /* mlp norm, fc out, relu², proj out */
    /* record stack (NULL when unused) */
    pg_real *ox, *oy, *gate;   /* after XSA; gated (the proj input); gate values [N,H] */
    pg_real *xskip;            /* decoder slot input before its gated skip */
    pg_real *xin1, *as, *ms;   /* parallel blocks: lane 1 input; scaled attention and MLP outputs */
    const uint16_t *ym16;      /* ym in bf16 (in r's second half) when the forward made it, else NULL */
};

/* The inputs of the model's linear layers, shown to an observer as pg_model_forward computes them
 * (pg-quantize's calibration, lib/calib.h): the attention's normed input (c_q, c_k and c_v share
 * it), the attention output the projection reads (after XSA and the head gate), the MLP's normed
 * input (fc), its activation (the MLP projection's input), and the final norm's output (the
 * output head's input, which the tied embedding shares). */
enum pg_tap_site { PG_TAP_QKV, PG_TAP_PROJ, PG_TAP_FC, PG_TAP_MLP_PROJ, PG_TAP_HEAD, PG_TAP_N };

struct pg_model_tap {
    /* x: n rows of cols values in the backend's memory, valid during the call only; layer: the
     * physical layer (a looped layer is shown once per virtual call), -1 for PG_TAP_HEAD */
    void (*fn)(void *ctx, int layer, int site, const pg_real *x, int n, int cols);
    void *ctx;
};

/* Side paths beside some of the linear layers, set by a caller that runs its own parameters next
 * to the model's (lib/lora_batch.c: one set of LoRA adapters per sequence of the batch, which
 * folding into the shared weights cannot express). The model calls them on its activation
 * buffers, b sequences of t rows: a side path must be able to read them (host memory, which
 * the caller checks). Linear layers with a side path: each block's c_q, c_k, c_v, proj and
 * mlp_proj (not the output head, whose product is fused into the loss). */
struct pg_model_side {
    void *ctx;
    /* NULL, or just after y[b·t, out] = x[b·t, in]·Wᵀ for weight tensor `tensor`: may add to y */
    void (*fwd)(void *ctx, int tensor, const pg_real *x, pg_real *y, int b, int t, int in, int out);
    /* NULL, or in the backward, just after dx[b·t, in], the gradient of x through W, was formed
     * from dy: may add its path's part to dx, and keep its own parameters' gradients */
    void (*bwd)(void *ctx, int tensor, const pg_real *x, const pg_real *dy, pg_real *dx, int b, int t, int in,
                int out);
    /* NULL, or a weight per position [b·t] on the loss, which the backward applies to the
     * gradient at the final norm's output just after the loss's backward (0 leaves that
     * position's loss out of every gradient formed after it; the output head's own gradient,
     * formed before, does not see it) */
    const float *loss_weight;
    /* 1: the backward forms no gradient of the blocks' weight matrices and the output head (the
     * caller trains only its side paths; the other gradients, and every dx, are formed as ever) */
    int no_weight_grads;
};

struct pg_model {
    struct pg_config cfg;
    const struct pg_backend *be;
    int d, h, kv, hd, kvd, hid, v, nl, n_enc, n_dec, n_skip;
    int rd;                    /* dims of each head RoPE rotates: hd, or rope_dims (partial RoPE) */
    const struct pg_model_tap *tap; /* NULL, or the observer of the linear inputs (set by the caller) */
    const struct pg_model_side *side; /* NULL, or side paths beside the linear layers (set by the caller) */
    int looping;               /* depth recurrence on (spec/techniques.md §2.8): set by the trainer from the
                                * training fraction; pg_model_init turns it on whenever num_loops > 0 */
    struct pg_tensor *tensors;
    int ntensors;
    int t_emb, t_head, t_skip; /* t_head = -1 when tied */
    /* record-stack tensors, -1 when off */
    int t_skip_gates, t_lane_resid, t_lane_post, t_smear_w, t_smear_lam, t_smear1;
    int t_bigram_emb, t_bigram_proj, t_bigram_scale, t_ve_emb, t_ve_proj, t_ve_scale, t_ve_layer;
    /* virtual layers: physical index of each slot, looped (nv slots, n_venc encoders) and plain */
    int nv, n_venc, *vlist;
    struct pg_block_params *blk;
    size_t nparams;
    pg_real *params, *grads;   /* grads is NULL for an evaluation-only model */

    /* activations, for micro-batches of up to max_b sequences of t tokens */
    int max_b, t, training;
    int fused;                 /* the backend's fused forms in use (lib/backend.h): set by pg_model_init
                                * when the backend has them, unless PG_FUSED=0 (pg(7)); the buffers
                                * pg_model_alloc_acts sizes depend on it (fused: no a->qn) */
    int x16;                   /* bf16 operands made by their producers in the latest forward and
                                * its backward (backend.h relu2_fwd_x16 ...: fused forms, bf16 mode,
                                * no tap or side path reading the fp32 form): the MLP product h and
                                * activation, its gradient, the branches' output gradients, and the q and k
                                * products' gradients */
    int lean;                  /* set by the caller before pg_model_alloc_acts: no tap or side path
                                * will be attached, nor bf16 mode changed (lib/train.c) */
    int acts16;                /* laid out by pg_model_alloc_acts for the x16 forms alone (a lean
                                * training model, fused forms, bf16 mode): the outputs of the MLP's
                                * products, the q and k products and the attention's projection
                                * (hpre, mo, qr, kn, ao) in bf16 only; no fp32 MLP norm output in
                                * sequential blocks and no MLP activation (both recomputed in the
                                * backward); x16 always on */
    int ya16;                  /* acts16 with the attention norm's output in bf16 only (no gate
                                * reads it in fp32): a->ya holds it, the backward recomputes y */
    int acts_qk16;             /* laid out for q and k in bf16 too (an acts16 model whose attention
                                * takes them so): k and, without XSA or gates, the attention output
                                * in bf16 only, and qk16 always on */
    int qk16;                  /* q and k kept in bf16 (the first half of a->q, a->k) for an
                                * attention that reads them so (backend.h attention_x16), in the
                                * latest forward and its backward; with x16 only */
    struct pg_block_acts *acts; /* nl entries when training, 1 (reused) otherwise */
    pg_real *x, *x0, *rs0, *yf, *rsf, **enc_out, *cos, *sin, *attn_work, *ce_work;
    pg_real *emb, *emb2, *xn, *smear_gate, *lane1, *bg_t, *bg_p, *ve_t, *ve;
    int32_t *targets, *ids, *doc_start, *bg_idx; /* backend memory: the staged batch's inputs, one
                                                  * allocation (in_dev) in this order, max_b·t apart */
    int32_t *in_dev;
    size_t in_stride;           /* max_b·t at allocation: in_dev's parts lie this far apart */
    float *losses;              /* per-token losses, backend memory */
    int32_t *stage_host[2];     /* host (pinned on a device): a batch's inputs laid out as in_dev */
    int32_t *stage_dev[2];      /* backend memory between the two (backend.h stage_in), or NULL */
    int stage_slot;             /* the slot of the latest pg_model_stage */
    pg_real *arena;             /* backend memory holding every activation buffer */
    size_t arena_bytes;         /* its size */
    int nslots;                 /* slots used by the latest forward */
    int b;                      /* sequences in the latest forward */
    /* backward scratch */
    pg_real *dx, *dx0, *dxm, *dya, *dk, *dv, *dkn, *dym, *dh, *dr, *dtmp, **denc; /* dq reuses dtmp */
    pg_real *dl1, *dtmp2, *dtmp3, *dgu, *dvx, *dve, *dsmall;
};

/* Sets up the tensor table and allocates parameters (and gradients when training) for cfg,
 * which must have passed pg_config_validate. @return 0 or PG_E_NOMEM. */
int pg_model_init(struct pg_model *m, const struct pg_config *cfg, const struct pg_backend *be, int training);

/* The tensor table of cfg's model (validated) and its dimensions only: no backend, no parameters
 * (m->params is NULL); for readers that check a file's tensors against a configuration. Release it
 * with pg_model_free. @return 0 or PG_E_NOMEM. */
int pg_model_init_shape(struct pg_model *m, const struct pg_config *cfg);

/* The number of parameters of cfg's model (validated), without allocating them: what a reader
 * checks against the bytes a file has before it builds the model a header describes.
 * @return 0 and *nparams, or PG_E_NOMEM. */
int pg_model_count_params(const struct pg_config *cfg, size_t *nparams);

/* Allocates activations for micro-batches of up to max_b sequences of t tokens (t <= the RoPE
 * table length, train_seq_len unless t is larger); a second call frees the first's and
 * allocates anew. @return 0 or PG_E_NOMEM. */
int pg_model_alloc_acts(struct pg_model *m, int max_b, int t);

/* The baseline initialization (spec §3.4) from a deterministic RNG: tok_emb ~ N(0, std²),
 * linear weights ~ U(±1/√fan_in), output projections zero, q_gain = qk_gain_init, scales 1,
 * resid_mix rows (1, 0), skip weights 1; matrices rounded to bfloat16 values, as PyTorch's
 * .bfloat16() does to them before training. @return 0, or PG_E_NOMEM (the host copy or an
 * orthogonal init's scratch), or the device's failure to take the upload. */
int pg_model_init_weights(struct pg_model *m, uint64_t seed);

/* Forward over b sequences of t tokens (x and y are b·t ids). Returns Σ of the per-token
 * cross-entropies (nats), and each one in losses[] when not NULL. pg_model_stage then
 * pg_model_forward_staged. */
double pg_model_forward(struct pg_model *m, const int32_t *x, const int32_t *y, int b, float *losses);

/* The inputs of the next forward, ids x and targets y of b sequences (b·t each), with the host
 * work on them (document starts, bigram buckets), sent to the backend: on a device through a
 * pinned double buffer on a copy stream (backend.h stage_in), nothing waiting for the device. */
void pg_model_stage(struct pg_model *m, const int32_t *x, const int32_t *y, int b);

/* The forward of the staged batch: as pg_model_forward. */
double pg_model_forward_staged(struct pg_model *m, float *losses);

/* The forward of the staged batch without waiting for the device: *acc (backend memory, one
 * double) += scale·Σloss, the rounding of a host's `loss += total * scale`. Only where the backend
 * has logit_ce_to; issues nothing the host computes from (a CUDA graph may capture it). */
void pg_model_forward_deferred(struct pg_model *m, double *acc, double scale);

/* Checks that n token ids are inside the vocabulary (the forward pass does not: it indexes the
 * embedding with them). @return 0, or PG_E_FORMAT naming the first bad id and its position. */
int pg_model_check_ids(const struct pg_model *m, const int32_t *ids, size_t n);

/* Backward of grad_scale·Σloss of the latest forward: gradients accumulate into m->grads. */
void pg_model_backward(struct pg_model *m, double grad_scale);

void pg_model_zero_grad(struct pg_model *m);

/* @return the index of the tensor called name, or -1. */
int pg_model_find(const struct pg_model *m, const char *name);

void pg_model_free(struct pg_model *m);

#endif
