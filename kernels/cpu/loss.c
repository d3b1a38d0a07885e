/* loss.c: tied-embedding logits, the 30·tanh softcap and cross-entropy, fused over chunks of
 * PG_CE_CHUNK rows so the [N,V] logits are never stored whole (N·V floats would be 256 MB at
 * the baseline's 65,536 tokens per micro-batch). Per row:
 *   z = cap·tanh(u/cap) with u = h·Eᵀ (z kept in pg_real),  loss = logsumexp(z) − z[y] (in float64),
 *   ∂loss/∂u_j = (softmax(z)_j − [j = y])·(1 − tanh²(u_j/cap)).
 * Losses are summed in row order after the parallel part, so the total is deterministic. */
#include "cpu.h"

double pg_cpu_softcap_ce(pg_real *dh, pg_real *demb, float *losses, const pg_real *h, const pg_real *emb,
                         const int32_t *targets, int n, int d, int v, double cap, double grad_scale, pg_real *work)
{
    pg_real *u = work, *row_loss = work + (size_t)PG_CE_CHUNK * v;
    double total = 0;
    for (int r0 = 0; r0 < n; r0 += PG_CE_CHUNK) {
        int rows = n - r0 < PG_CE_CHUNK ? n - r0 : PG_CE_CHUNK;
        const pg_real *hc = h + (size_t)r0 * d;
        pg_cpu_matmul_fwd(u, hc, emb, rows, d, v);
#pragma omp parallel for schedule(static) if ((size_t)rows * v > PG_OMP_MIN)
        for (int i = 0; i < rows; i++) {
            pg_real *ui = u + (size_t)i * v;
            int y = targets[r0 + i];
            /* u is replaced by the softcapped z (one tanh per logit); 1 − tanh² = 1 − (z/cap)². */
            pg_real m = -INFINITY, c = (pg_real)cap, inv_c = (pg_real)(1 / cap);
            for (int j = 0; j < v; j++) {
                ui[j] = c * tanh(ui[j] * inv_c); /* tanhf in float: the hot loop of evaluation */
                m = ui[j] > m ? ui[j] : m;
            }
            double sum = 0;
            for (int j = 0; j < v; j++) sum += exp(ui[j] - m);
            double lse = m + log(sum);
            row_loss[i] = (pg_real)(lse - ui[y]);
            if (dh) {
                for (int j = 0; j < v; j++) {
                    double t = ui[j] * inv_c;
                    double p = exp(ui[j] - (pg_real)lse) - (j == y);
                    ui[j] = (pg_real)(grad_scale * p * (1 - t * t));
                }
            }
        }
        for (int i = 0; i < rows; i++) {
            total += row_loss[i];
            if (losses) losses[r0 + i] = (float)row_loss[i];
        }
        if (dh) pg_cpu_matmul_bwd(dh + (size_t)r0 * d, demb, u, hc, emb, rows, d, v, 0);
    }
    return total;
}
