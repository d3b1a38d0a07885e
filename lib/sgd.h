/* sgd.h: stochastic gradient descent with momentum, as torch.optim.SGD(params, lr, momentum)
 * with dampening 0, no weight decay and no Nesterov term (the optimizer of score-first TTT,
 * spec/techniques.md §6.2):
 *     buf = μ·buf + g;   p −= lr·buf
 * PyTorch creates buf as a copy of g at the first step; with buf zeroed at init, μ·0 + g is the
 * same value. The arithmetic is pg_real, with μ and lr rounded to pg_real as PyTorch rounds a
 * Python float scalar for a float tensor. Every element is independent, so a step gives the same
 * bits whatever the number of OpenMP threads.
 *
 * Gradient clipping is optim.h's pg_clip_grad_norm over the same tensor list.
 */
#ifndef PG_SGD_H
#define PG_SGD_H

#include "optim.h"

#include <stddef.h>
#include <stdint.h>

struct pg_sgd {
    struct pg_opt_tensor *t; /* nt tensors (a copy of the list given at init) */
    size_t nt;
    size_t *off;             /* tensor i's momentum buffer is buf[off[i] .. off[i] + t[i].n) */
    size_t total;            /* Σ n */
    pg_real *buf;            /* momentum buffers, zero at init */
    double momentum;         /* μ, in [0, 1) */
    int64_t step;            /* steps taken */
    const struct pg_backend *be; /* where buf (and the tensors) live: NULL for host memory */
};

/* Sets up SGD over `n` tensors with zero momentum buffers. @return 0, PG_E_INVAL (momentum
 * outside [0, 1) or NaN, a NULL list or array), or PG_E_NOMEM (nothing is left allocated). */
int pg_sgd_init(struct pg_sgd *s, const struct pg_opt_tensor *tensors, size_t n, double momentum);

/* pg_sgd_init with the buffers in be's memory (NULL: host); the steps then run as be's
 * sgd_update, with the same arithmetic. */
int pg_sgd_init_on(struct pg_sgd *s, const struct pg_backend *be, const struct pg_opt_tensor *tensors, size_t n,
                   double momentum);

/* One step at learning rate lr over every tensor: buf = μ·buf + g; p −= lr·buf. */
void pg_sgd_step(struct pg_sgd *s, double lr);

/* Zeroes the momentum buffers and the step count (the state of a fresh init). */
void pg_sgd_reset(struct pg_sgd *s);

/* Frees the state (not the tensors); safe on a zeroed or freed struct. */
void pg_sgd_free(struct pg_sgd *s);

#endif
