/* optim.h: the optimizers of the parameter-golf baseline (spec/baseline.md §4), on the CPU.
 *
 * Adam   torch.optim.Adam(betas, eps, fused=True), no weight decay: the arithmetic of PyTorch's
 *        fused kernel (ATen fused_adam_utils.cuh adam_math), which has the order
 *          m = b1·m + (1−b1)·g;  v = b2·v + (1−b2)·g·g;  bc1 = 1 − b1^t;  bc2 = 1 − b2^t;
 *          step_size = lr / bc1;  denom = sqrt(v) / sqrt(bc2) + eps;  p −= step_size·m / denom
 *        with t = 1 at the first step. As in that kernel the hyper-parameters are doubles, so the
 *        moment updates and `denom` are evaluated in double and rounded to pg_real on store; the
 *        rest is pg_real arithmetic. (PyTorch's unfused single-tensor path writes the first
 *        moment as m.lerp_(g, 1−b1): the same value up to one rounding.)
 * Muon   for 2-D weights, row-major rows × cols (modded-nanogpt, §4.2):
 *          buf = μ·buf + G;  G' = G + μ·buf (Nesterov) or G;  X = NS5(G');
 *          W −= lr · sqrt(max(1, rows/cols)) · X
 *        NS5 = Newton–Schulz-5 (pg_newton_schulz5). The baseline runs it in bfloat16 under
 *        torch.compile; the `bf16` flag emulates that (see pg_newton_schulz5), otherwise it runs
 *        in pg_real.
 * Record-stack switches (spec/techniques.md §3.1–3.2), each off after init, the baseline:
 *   AdamW  decoupled weight decay before the Adam update (pg_adam_set_weight_decay), as the fused
 *          kernel's ADAMW mode: p −= lr·wd·p, evaluated in double and rounded once (the value of
 *          torch.optim.AdamW's p·(1 − lr·wd) up to that rounding).
 *   Muon   (pg_muon_set_variant) MuonEq-R row normalization of G' before Newton–Schulz; the
 *          Polar Express coefficients, one (a, b, c) per iteration; decoupled weight decay
 *          W ← W·(1 − lr·wd) before the update.
 *        They are hyper-parameters, not state: the serialized states below do not hold them.
 * Schedules and clipping: pg_lr_mul_wallclock / pg_lr_mul_iterations (§4.3), pg_muon_momentum
 * (§4.2 warmup), pg_clip_grad_norm (torch.nn.utils.clip_grad_norm_); the record stack's
 * fraction-based schedule, WD taper, EMA and SWA arithmetic (pg_train_frac ... pg_swa_add).
 *
 * Steps never allocate: the state and Muon's scratch are allocated at init. Every element loop
 * is deterministic whatever the number of OpenMP threads (fixed-block reductions).
 *
 * Device backends: pg_adam_init_on / pg_muon_init_on put the state (and Muon's scratch) in a
 * backend's memory, next to parameters and gradients that live there too (a model on that
 * backend); the steps then run as that backend's operations (lib/backend.h: adam_update,
 * muon_step), with the arithmetic described here, and the state is saved and loaded through
 * download/upload in the same layout. The functions of this file are the host reference they
 * are tested against; with a NULL or host-memory backend they compute on the arrays directly.
 *
 * Checkpointing: the state arrays are plain members (adam->m, adam->v, muon->buf, one block each,
 * tensor i at off[i]) for code that writes them itself; pg_*_state_save / _load serialize the
 * whole state to a byte buffer, little-endian, in the layouts documented at those functions.
 * Restoring the state and the parameters makes the following steps bit-identical to an
 * uninterrupted run. The state of a fresh init (zeros, t = 0) is also how the baseline's
 * post-warmup reset is done: save right after init, load after the warmup steps.
 */
#ifndef PG_OPTIM_H
#define PG_OPTIM_H

#include "backend.h"
#include "real.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h> /* memcpy: pg_bf16_round */

/* The step values an optimizer keeps for its launch (struct pg_adam sc, struct pg_muon sc). */
#define PG_OPT_SCALARS 3

/* One parameter tensor and its gradient (same length, dense). The optimizers keep a copy of the
 * list, not of the arrays: param and grad must stay valid until *_free. */
struct pg_opt_tensor {
    pg_real *param; /* updated in place by a step */
    pg_real *grad;  /* read by a step; scaled in place by pg_clip_grad_norm */
    int rows, cols; /* Muon: the matrix shape (row-major); Adam ignores it (cols = 0 for 1-D) */
    size_t n;       /* element count; rows·cols for Muon */
};

/* ---- Adam ---- */

struct pg_adam {
    struct pg_opt_tensor *t; /* nt tensors */
    size_t nt;
    size_t *off;             /* tensor i's state is m[off[i] .. off[i] + t[i].n), same in v */
    size_t total;            /* Σ n */
    pg_real *m, *v;          /* first and second moments, zero at init */
    double beta1, beta2, eps;
    double wd;               /* decoupled (AdamW) weight decay; 0 after init = plain Adam */
    int64_t step;            /* steps taken; the next step uses t = step + 1 */
    const struct pg_backend *be; /* where m and v live: NULL for host memory */
    /* The latest pg_adam_prepare's step values, as the element update uses them: lr·wd (0
     * without decay), the step size lr/bc1 and sqrt(bc2) (both rounded to pg_real). */
    double sc[PG_OPT_SCALARS];
    /* NULL, or device memory holding sc when the launch's kernels run (the caller copies it
     * there before each launch): the kernels then read the values from it, so a graph that
     * captured them replays each step's values (lib/train.c). */
    const double *sc_dev;
};

/* Sets up Adam over `n` tensors (the list is copied) with zero moments and step 0. Baseline:
 * beta1 0.9, beta2 0.95, eps 1e-8. @return 0, PG_E_INVAL (beta outside [0, 1), eps < 0 or NaN,
 * a NULL array), or PG_E_NOMEM (nothing is left allocated). */
int pg_adam_init(struct pg_adam *a, const struct pg_opt_tensor *tensors, size_t n, double beta1, double beta2,
                 double eps);

/* pg_adam_init with the state in be's memory (the tensors' arrays are there too); be NULL or a
 * host-memory backend is pg_adam_init. */
int pg_adam_init_on(struct pg_adam *a, const struct pg_backend *be, const struct pg_opt_tensor *tensors, size_t n,
                    double beta1, double beta2, double eps);

/* Turns `a` into AdamW with decoupled weight decay `wd` (0 = plain Adam, the baseline, whose bits
 * are then unchanged). @return 0, or PG_E_INVAL (wd < 0 or NaN; `a` is then unchanged). */
int pg_adam_set_weight_decay(struct pg_adam *a, double wd);

/* One step at learning rate `lr` (the caller's base lr × schedule); with weight decay, first
 * p −= lr·wd·p (the decayed p then takes the Adam update). pg_adam_prepare then pg_adam_launch. */
void pg_adam_step(struct pg_adam *a, double lr);

/* The step's host half: counts the step and computes its values into a->sc. Nothing else. */
void pg_adam_prepare(struct pg_adam *a, double lr);

/* The step's work on the tensors with a->sc's values (on a device, issued without waiting; the
 * kernels read a->sc_dev when it is set). */
void pg_adam_launch(struct pg_adam *a);

/* Frees the state (not the tensors); safe on a zeroed or freed struct. */
void pg_adam_free(struct pg_adam *a);

/* State layout (all integers little-endian; pg_real arrays in the host's IEEE format, which is
 * little-endian on every supported host):
 *   0   4      magic "PGAD"
 *   4   4      u32 version, 1
 *   8   4      u32 bytes per scalar: 4 (float) or 8 (PG_REAL_DOUBLE)
 *   12  4      u32 tensor count N
 *   16  8      u64 step
 *   24  8·N    u64 element count of each tensor
 *   ..  S·T    m of every tensor, in order (T = Σ counts, S = bytes per scalar)
 *   ..  S·T    v of every tensor, in order
 * @return the size in bytes of the serialized state. */
size_t pg_adam_state_size(const struct pg_adam *a);

/* Writes the state into buf (cap bytes). @return 0, or PG_E_INVAL if cap < pg_adam_state_size. */
int pg_adam_state_save(const struct pg_adam *a, void *buf, size_t cap);

/* Reads a state written by pg_adam_state_save into an optimizer set up over tensors of the same
 * counts. `what` names the source (a file name) in messages. On error `a` is unchanged.
 * @return 0, or PG_E_FORMAT (wrong magic, version, scalar size, tensor count or sizes, length). */
int pg_adam_state_load(struct pg_adam *a, const void *buf, size_t len, const char *what);

/* ---- Muon ---- */

struct pg_muon {
    struct pg_opt_tensor *t; /* nt matrices */
    size_t nt;
    size_t *off;             /* tensor i's momentum is buf[off[i] .. off[i] + t[i].n) */
    size_t total;
    pg_real *buf;            /* momentum buffers, zero at init */
    int backend_steps;       /* Newton–Schulz iterations (baseline 5) */
    int nesterov;            /* 1: G' = G + μ·buf (baseline); 0: G' = G, as the baseline's code
                              * does (buf is still updated, unused) */
    int bf16;                /* 1: emulate the baseline's bfloat16 Newton–Schulz; 0: pg_real */
    int coeffs;              /* PG_NS_CLASSIC (baseline) or PG_NS_POLAR_EXPRESS */
    int row_norm;            /* 1: MuonEq-R, every row of G' divided by max(‖row‖₂, 1e-7) */
    double wd;               /* decoupled weight decay; 0 = none (baseline) */
    pg_real *work;           /* scratch: G' of the largest matrix, then pg_newton_schulz5's (one
                              * slice per OpenMP thread on the host, one on a device) */
    size_t max_n, max_ns;    /* the largest matrix and Newton–Schulz scratch, in elements */
    const struct pg_backend *be; /* where buf and work live: NULL for host memory */
    int *owner;              /* NULL, or the rank that orthogonalizes each matrix (pg_muon_shard) */
    int rank;                /* this process's rank when owner is set */
    /* The latest pg_muon_prepare's step values: the momentum, lr, and the decay factor
     * 1 − lr·wd (1 without decay), in double (each loop rounds them to pg_real); sc_dev as
     * struct pg_adam's. */
    double sc[PG_OPT_SCALARS];
    const double *sc_dev;
};

/* Divides the Newton–Schulz work between `world` ranks of a data-parallel job (host or device
 * memory): each matrix gets an owner, the largest first to the least loaded rank by
 * Newton–Schulz FLOPs (a fixed choice, the same on every rank; matrices of one shape go round
 * the ranks). pg_muon_step then still updates every momentum buffer (they stay identical on
 * every rank) but orthogonalizes and applies only the matrices this rank owns (on a device, a
 * shape's batch is this rank's members of it); the caller must then give every rank the owned
 * matrices' new values (lib/train.c: pg_dist_share, or the backend's comm_share). Each matrix
 * gets the bits it would without the division (on a GPU, as far as cuBLAS's batched products
 * give each member the same bits at another batch size). world 1 turns it off.
 * @return 0 or PG_E_NOMEM. */
int pg_muon_shard(struct pg_muon *mu, int rank, int world);

/* Sets up Muon over `n` 2-D tensors (rows, cols >= 1, n == rows·cols; the list is copied) with
 * zero momentum, and allocates every scratch buffer a step needs. @return 0, PG_E_INVAL (a bad
 * shape, backend_steps < 0, a NULL array), or PG_E_NOMEM (nothing is left allocated). */
int pg_muon_init(struct pg_muon *mu, const struct pg_opt_tensor *tensors, size_t n, int backend_steps, int nesterov,
                 int bf16);

/* pg_muon_init with the momentum and the scratch in be's memory (NULL: host). */
int pg_muon_init_on(struct pg_muon *mu, const struct pg_backend *be, const struct pg_opt_tensor *tensors, size_t n,
                    int backend_steps, int nesterov, int bf16);

/* Selects the record-stack variants (init sets the baseline: PG_NS_CLASSIC, 0, 0).
 * @return 0, or PG_E_INVAL (an unknown coefficient set, Polar Express with more backend steps than
 * it has tuples, wd < 0 or NaN; `mu` is then unchanged). */
int pg_muon_set_variant(struct pg_muon *mu, int coeffs, int row_norm, double wd);

/* Sets the decoupled weight decay alone (the WD taper changes it every step; the variant is kept).
 * @return 0, or PG_E_INVAL (wd < 0 or NaN; `mu` is then unchanged). */
int pg_muon_set_weight_decay(struct pg_muon *mu, double wd);

/* One step at learning rate `lr` and momentum `momentum` (pg_muon_momentum(step) in the
 * baseline), over every tensor in order: buffers, G', row normalization when on, Newton–Schulz
 * with the selected coefficients, then W ← W·(1 − lr·wd) when wd > 0, then the update.
 * pg_muon_prepare then pg_muon_launch, the halves of pg_adam_step's kind. */
void pg_muon_step(struct pg_muon *mu, double lr, double momentum);
void pg_muon_prepare(struct pg_muon *mu, double lr, double momentum);
void pg_muon_launch(struct pg_muon *mu);

/* Frees the state and the scratch (not the tensors); safe on a zeroed or freed struct. */
void pg_muon_free(struct pg_muon *mu);

/* State layout (as Adam's):
 *   0   4      magic "PGMU"
 *   4   4      u32 version, 1
 *   8   4      u32 bytes per scalar S
 *   12  4      u32 tensor count N
 *   16  16·N   u64 rows, u64 cols of each tensor
 *   ..  S·T    the momentum buffer of every tensor, in order
 * @return the size in bytes of the serialized state. */
size_t pg_muon_state_size(const struct pg_muon *mu);

/* @return 0, or PG_E_INVAL if cap < pg_muon_state_size. */
int pg_muon_state_save(const struct pg_muon *mu, void *buf, size_t cap);

/* As pg_adam_state_load; the shapes must match. @return 0, or PG_E_FORMAT. */
int pg_muon_state_load(struct pg_muon *mu, const void *buf, size_t len, const char *what);

/* ---- Newton–Schulz and bfloat16 ---- */

/* Newton–Schulz coefficient sets. */
enum {
    PG_NS_CLASSIC = 0,       /* (3.4445, −4.7750, 2.0315) every iteration: the baseline */
    PG_NS_POLAR_EXPRESS = 1, /* one tuple per iteration, spec/techniques.md §3.1 */
};
#define PG_NS_POLAR_EXPRESS_STEPS 5 /* tuples in the Polar Express table */

/* The (a, b, c) of iteration `step` (from 0) of coefficient set `coeffs`, as doubles (the Python
 * literals). Polar Express steps past its table repeat the last tuple; pg_muon_set_variant and
 * pg_config_validate refuse such runs, so this only keeps the function total. */
void pg_newton_schulz_coeffs(int coeffs, int step, double abc[3]);

/* Rounds a float to the nearest bfloat16 (round to nearest, ties to even, on the fp32 bit
 * pattern, as PyTorch's float→bfloat16 conversion), returned as a float. NaN stays NaN.
 * Inline (and branch-free after if-conversion) so that element loops vectorize: Newton–Schulz
 * here, and the CPU backend's bf16 matrix products (kernels/cpu/linear.c), which round every
 * operand with it. @return the rounded value. */
static inline float pg_bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        u |= 0x00400000u; /* NaN: keep it a (quiet) NaN, which truncation alone might not */
    } else {
        /* Add half an ulp of bf16, minus one unless the kept lowest bit is odd: ties go to even.
         * A carry into the exponent is the correct rounding up, to infinity at the top. */
        u += 0x7fffu + ((u >> 16) & 1u);
    }
    u &= 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* @return the scratch, in elements, that pg_newton_schulz5 needs for a rows × cols matrix:
 * 2·m·k + 3·m² with m = min(rows, cols), k = max(rows, cols). */
size_t pg_newton_schulz5_work(int rows, int cols);

/* Orthogonalizes x (rows × cols, row-major) in place, as the baseline's
 * zeropower_via_newtonschulz5: X = x / (‖x‖_F + 1e-7); work on Xᵀ when rows > cols (so the Gram
 * matrix is the small side); `steps` times: A = X·Xᵀ; B = b·A + (c·A)·A; X = a·X + B·X with
 * (a, b, c) = (3.4445, −4.7750, 2.0315); transpose back. Products go through CBLAS.
 * bf16 = 1 rounds to bfloat16 where the compiled PyTorch function stores a bf16 tensor: the input,
 * the norm, X after the division, A, c·A, A·A, B, B·X and the new X (each fused pointwise
 * expression is evaluated in fp32 and rounded once; products accumulate in fp32). In a
 * PG_REAL_DOUBLE build the rounding goes through float. `work` holds
 * pg_newton_schulz5_work(rows, cols) elements. */
void pg_newton_schulz5(pg_real *x, int rows, int cols, int steps, int bf16, pg_real *work);

/* pg_newton_schulz5 with the coefficients of set `coeffs` (pg_newton_schulz_coeffs), each rounded
 * to pg_real as a Python float meeting a float tensor. PG_NS_CLASSIC gives pg_newton_schulz5's
 * bits. */
void pg_newton_schulz(pg_real *x, int rows, int cols, int steps, int coeffs, int bf16, pg_real *work);

/* ---- schedules and clipping ---- */

/* The baseline's Muon momentum warmup: (1 − f)·start + f·final with f = min(step / warmup_steps,
 * 1), f = 1 when warmup_steps <= 0. Baseline: 0.85, 0.95, 500. @return the momentum. */
double pg_muon_momentum(int64_t step, double start, double final, int64_t warmup_steps);

/* The LR multiplier with the wallclock cap (lr_mul when MAX_WALLCLOCK_SECONDS > 0):
 * step_ms = elapsed_ms / max(step, 1); warmdown_ms = warmdown_iters · step_ms;
 * remaining = max(max_wallclock_ms − elapsed_ms, 0);
 * remaining / max(warmdown_ms, 1e-9) if remaining <= warmdown_ms, else 1; 1 if warmdown_iters <= 0.
 * elapsed_ms is training time only (validation excluded). @return the multiplier in [0, 1]. */
double pg_lr_mul_wallclock(int64_t step, double elapsed_ms, int64_t warmdown_iters, double max_wallclock_ms);

/* The LR multiplier without a wallclock cap (MAX_WALLCLOCK_SECONDS <= 0): with
 * start = max(iterations − warmdown_iters, 0), max((iterations − step) / max(warmdown_iters, 1), 0)
 * for start <= step < iterations, else 1; 1 if warmdown_iters <= 0. @return the multiplier. */
double pg_lr_mul_iterations(int64_t step, int64_t iterations, int64_t warmdown_iters);

/* ---- the record stack's schedule by training fraction (spec/techniques.md §1.3, §3.3) ---- */

/* The training fraction: elapsed_ms / max_wallclock_ms when max_wallclock_ms > 0, else
 * step / iterations (0 when iterations <= 0). Not clamped: it reaches 1 at the end.
 * @return the fraction. */
double pg_train_frac(int64_t step, int64_t iterations, double elapsed_ms, double max_wallclock_ms);

/* The LR multiplier by fraction: 1 while frac < 1 − warmdown_frac, then
 * max((1 − frac) / warmdown_frac, min_lr); 1 when warmdown_frac <= 0. @return the multiplier. */
double pg_lr_mul_frac(double frac, double warmdown_frac, double min_lr);

/* The Muon weight-decay taper m(frac): 1 for frac < start, then linear from 1 at `start` to
 * `final` at frac 1 (and `final` past it); 1 whenever start >= 1 (off). @return the multiplier. */
double pg_wd_taper(double frac, double start, double final);

/* EMA of the weights, an fp32 shadow: ema[i] ← d·ema[i] + (1 − d)·θ[i], evaluated in double and
 * rounded once to float. */
void pg_ema_update(float *ema, const pg_real *theta, size_t n, double decay);

/* SWA: sum[i] += x[i] (double accumulator; the average is sum / count). */
void pg_swa_add(double *sum, const float *x, size_t n);
void pg_swa_add_real(double *sum, const pg_real *x, size_t n);

/* torch.nn.utils.clip_grad_norm_ (2-norm) over the grads of `n` tensors: total = ‖all grads‖₂
 * (summed in double, in a fixed order); coef = max_norm / (total + 1e-6); when coef < 1 every
 * grad is multiplied by coef (PyTorch multiplies by min(coef, 1) always: the same values).
 * @return total, the norm before clipping. */
double pg_clip_grad_norm(const struct pg_opt_tensor *tensors, size_t n, double max_norm);

/* pg_clip_grad_norm on the backend holding the grads (NULL: host), without returning the norm: a
 * device keeps it on the device, so a step does not wait for it. */
void pg_clip_grad_norm_on(const struct pg_backend *be, const struct pg_opt_tensor *tensors, size_t n,
                          double max_norm);

/* @return whether be's memory is a device's (not NULL, not host memory): the optimizers then run
 * as be's operations. */
static inline int pg_on_device(const struct pg_backend *be) { return be && !be->host_memory; }

#endif
