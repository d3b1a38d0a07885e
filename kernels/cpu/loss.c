/* loss.c: tied-embedding logits, the softcap and cross-entropy, fused over chunks of
 * PG_CE_CHUNK rows so the [N,V] logits are never stored whole (N·V floats would be 256 MB at
 * the baseline's 65,536 tokens per micro-batch). Per row, with x = h·Eᵀ:
 *   z = cap·tanh(x/cap) (z kept in pg_real),  lse = logsumexp(z),  loss = lse − z[y] (in float64),
 *   ∂loss/∂x_j = (softmax(z)_j − [j = y])·(1 − tanh²(x_j/cap)).
 * The record variants (spec §2.13): the poly5 softcap z = cap·clamp(p(u), −1, 1),
 * p(u) = u − u³/3 + u⁵/15, u = clamp(x/cap, −2, 2), whose dz/dx is p'(u) = 1 − u² + u⁴/3 where
 * neither clamp holds and 0 where one does; and the z-loss z_loss·lse², which adds
 * 2·z_loss·lse·softmax(z)_j to ∂/∂z_j and z_loss·lse² to the returned total, but not to the
 * per-token losses[] that scoring reads. Losses are summed in row order after the parallel part,
 * so the total is deterministic.
 *
 * In bf16 mode (lib/backend.h set_bf16) the two products are matmul_fwd/bwd's, so their operands
 * are rounded to bfloat16 as under PyTorch's autocast: x = bf(h)·bf(E)ᵀ, accumulated and kept in
 * fp32 (the softcap, log-softmax and loss run on those fp32 logits); the logits' gradient ∂x is
 * computed in fp32 (grad_scale included) and rounded as an operand of dh = bf(∂x)·bf(E) and
 * dE += bf(∂x)ᵀ·bf(h). */
#include "cpu.h"

/* The poly5 softcap of one logit x, and (when dzdx) its derivative dz/dx. */
static inline pg_real poly5_cap(pg_real x, pg_real c, pg_real inv_c, pg_real *dzdx)
{
    pg_real u = x * inv_c;
    u = u < -2 ? -2 : u > 2 ? 2 : u;
    pg_real u2 = u * u, p = u * (1 + u2 * ((pg_real)(-1.0 / 3) + u2 * (pg_real)(1.0 / 15)));
    int inside = p > -1 && p < 1 && u > -2 && u < 2;
    if (dzdx) *dzdx = inside ? 1 + u2 * (-1 + u2 * (pg_real)(1.0 / 3)) : 0;
    return c * (p < -1 ? -1 : p > 1 ? 1 : p);
}

double pg_cpu_logit_ce(pg_real *dh, pg_real *demb, float *losses, const pg_real *h, const pg_real *emb,
                       const int32_t *targets, int n, int d, int v, double cap, int poly5, double z_loss,
                       double grad_scale, pg_real *work)
{
    pg_real *u = work, *row_loss = work + (size_t)PG_CE_CHUNK * v;
    double row_z[PG_CE_CHUNK]; /* z_loss·lse² per row of the chunk */
    double total = 0;
    for (int r0 = 0; r0 < n; r0 += PG_CE_CHUNK) {
        int rows = n - r0 < PG_CE_CHUNK ? n - r0 : PG_CE_CHUNK;
        const pg_real *hc = h + (size_t)r0 * d;
        pg_cpu_matmul_fwd(u, hc, emb, rows, d, v);
#pragma omp parallel for schedule(static) if ((size_t)rows * v > PG_OMP_MIN)
        for (int i = 0; i < rows; i++) {
            pg_real *ui = u + (size_t)i * v;
            int y = targets[r0 + i];
            pg_real m = -INFINITY, c = (pg_real)cap, inv_c = (pg_real)(1 / cap), zy;
            double sum = 0;
            if (poly5) {
                /* ui keeps x: z is recomputed (a few multiplies) where needed, and so is p'(u) */
                for (int j = 0; j < v; j++) {
                    pg_real z = poly5_cap(ui[j], c, inv_c, NULL);
                    m = z > m ? z : m;
                }
                for (int j = 0; j < v; j++) sum += exp(poly5_cap(ui[j], c, inv_c, NULL) - m);
                zy = poly5_cap(ui[y], c, inv_c, NULL);
            } else {
                /* u is replaced by the softcapped z (one tanh per logit); 1 − tanh² = 1 − (z/cap)². */
                for (int j = 0; j < v; j++) {
                    ui[j] = c * tanh(ui[j] * inv_c); /* tanhf in float: the hot loop of evaluation */
                    m = ui[j] > m ? ui[j] : m;
                }
                for (int j = 0; j < v; j++) sum += exp(ui[j] - m);
                zy = ui[y];
            }
            double lse = m + log(sum);
            row_loss[i] = (pg_real)(lse - zy);
            row_z[i] = z_loss * lse * lse;
            if (dh) {
                /* ∂(loss + z_loss·lse²)/∂z_j = (1 + 2·z_loss·lse)·softmax_j − [j = y] */
                double zs = 1 + 2 * z_loss * lse;
                if (poly5) {
                    for (int j = 0; j < v; j++) {
                        pg_real dz, z = poly5_cap(ui[j], c, inv_c, &dz), e = exp(z - (pg_real)lse);
                        double p = z_loss != 0 ? e * zs - (j == y) : (double)(e - (j == y));
                        ui[j] = (pg_real)(grad_scale * p * dz);
                    }
                } else {
                    for (int j = 0; j < v; j++) {
                        double t = ui[j] * inv_c;
                        /* without the z-loss, softmax − onehot in pg_real as always: the same bits */
                        pg_real e = exp(ui[j] - (pg_real)lse);
                        double p = z_loss != 0 ? e * zs - (j == y) : (double)(e - (j == y));
                        ui[j] = (pg_real)(grad_scale * p * (1 - t * t));
                    }
                }
            }
        }
        for (int i = 0; i < rows; i++) {
            total += row_loss[i];
            if (z_loss != 0) total += row_z[i];
            if (losses) losses[r0 + i] = (float)row_loss[i];
        }
        if (dh) pg_cpu_matmul_bwd(dh + (size_t)r0 * d, demb, u, hc, emb, rows, d, v, 0);
    }
    return total;
}

double pg_cpu_softcap_ce(pg_real *dh, pg_real *demb, float *losses, const pg_real *h, const pg_real *emb,
                         const int32_t *targets, int n, int d, int v, double cap, double grad_scale, pg_real *work)
{
    return pg_cpu_logit_ce(dh, demb, losses, h, emb, targets, n, d, v, cap, 0, 0, grad_scale, work);
}
