/* optim_muon.c: pg_muon_step on the CUDA backend (lib/backend.h muon_step), as lib/optim.c does
 * it on the host for each matrix, the matrices of one shape together: momentum, MuonEq-R row normalization when on, Newton–Schulz
 * with the selected coefficients, decoupled weight decay when on, the scaled update. The pieces
 * are optim.cu's kernels; this file only strings them together, in C, because it reads the
 * optimizer's own structure (lib/optim.h). The matrices, their momentum and the scratch are
 * device memory (pg_muon_init_on with the CUDA backend). Divided between the ranks of a job
 * (pg_muon_shard), each rank orthogonalizes and applies its own matrices, the batch of a shape
 * being its own members only, and lib/train.c then gives every rank the others' (comm_share). */
#include "../../lib/optim.h"
#include "optim_ops.h"

#include <math.h>
#include <stddef.h>

/* optim.cu reads the tensor list through a mirror of struct pg_opt_tensor's layout. */
struct opt_tensor_view {
    float *param, *grad;
    int rows, cols;
    size_t n;
};
_Static_assert(sizeof(struct opt_tensor_view) == sizeof(struct pg_opt_tensor) &&
                   offsetof(struct opt_tensor_view, grad) == offsetof(struct pg_opt_tensor, grad) &&
                   offsetof(struct opt_tensor_view, n) == offsetof(struct pg_opt_tensor, n),
               "optim.cu's view of struct pg_opt_tensor is out of date");

static int same_shape(const struct pg_opt_tensor *a, const struct pg_opt_tensor *b)
{
    return a->rows == b->rows && a->cols == b->cols;
}

/* 1 when this rank orthogonalizes matrix k: always, unless pg_muon_shard divided them. */
static int mine(const struct pg_muon *mu, size_t k) { return !mu->owner || mu->owner[k] == mu->rank; }

/* A shape's matrices go to the element kernels as lists of up to LIST (one launch each). */
enum { LIST = 64 };

void pg_cuda_muon_step(struct pg_muon *mu)
{
    const float mom = (float)mu->sc[0], lr_r = (float)mu->sc[1], decay = (float)mu->sc[2];
    const double *sc = mu->sc_dev; /* non-NULL: the kernels read the values there (a graph) */
    /* the coefficients as pg_real, as the host passes them to its element loops (the
     * configuration allows at most 100 iterations) */
    float abc[3 * 100];
    const int steps = mu->backend_steps < 100 ? mu->backend_steps : 100;
    for (int s = 0; s < steps; s++) {
        double c[3];
        pg_newton_schulz_coeffs(mu->coeffs, s, c);
        abc[3 * s] = (float)c[0], abc[3 * s + 1] = (float)c[1], abc[3 * s + 2] = (float)c[2];
    }
    /* The matrices of one shape (a block's c_q of every layer, ...) are orthogonalized together:
     * their momenta side by side in the work buffer (pg_muon_init_on sized it for the largest
     * group), one batched Newton–Schulz for the group, so its products are a few batched calls
     * instead of three per matrix and iteration. Each matrix's arithmetic is its own. */
    for (size_t k = 0; k < mu->nt; k++) {
        const struct pg_opt_tensor *t = &mu->t[k];
        int done = 0, g = 0;
        for (size_t j = 0; j < k && !done; j++) done = same_shape(&mu->t[j], t);
        if (done) continue; /* its group went with its first member */
        float *G = mu->work;
        /* Every momentum is updated (they stay alike on every rank); a matrix another rank
         * orthogonalizes (pg_muon_shard) makes no G'. This rank's G' side by side from G. */
        struct pg_opt_tensor list[LIST];
        size_t off[LIST], nl = 0;
        for (size_t j = k; j < mu->nt; j++) {
            if (!same_shape(&mu->t[j], t)) continue;
            list[nl] = (struct pg_opt_tensor){mine(mu, j) ? G + (size_t)g * t->n : NULL, mu->t[j].grad, t->rows,
                                              t->cols, t->n};
            off[nl++] = mu->off[j];
            g += mine(mu, j);
            if (nl == LIST) pg_cuda_muon_momentum(list, nl, mu->buf, off, mom, mu->nesterov, sc), nl = 0;
        }
        if (nl) pg_cuda_muon_momentum(list, nl, mu->buf, off, mom, mu->nesterov, sc);
        if (g == 0) continue; /* all of this shape are other ranks' */
        if (mu->row_norm) pg_cuda_row_normalize(G, g * t->rows, t->cols);
        pg_cuda_newton_schulz(G, g, t->rows, t->cols, steps, abc, mu->bf16, G + (size_t)g * t->n);
        const float scale = (float)sqrt(fmax(1.0, (double)t->rows / t->cols));
        nl = 0;
        for (size_t j = k, i = 0; j < mu->nt; j++) {
            const struct pg_opt_tensor *u = &mu->t[j];
            if (!same_shape(u, t) || !mine(mu, j)) continue;
            list[nl++] = (struct pg_opt_tensor){u->param, G + i++ * t->n, t->rows, t->cols, t->n};
            if (nl == LIST) pg_cuda_muon_apply(list, nl, decay, lr_r, scale, mu->bf16, sc), nl = 0;
        }
        if (nl) pg_cuda_muon_apply(list, nl, decay, lr_r, scale, mu->bf16, sc);
    }
}
