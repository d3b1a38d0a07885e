/* loss.c: tied-embedding logits, the 30·tanh softcap and cross-entropy, fused over chunks of
 * PG_CE_CHUNK rows so the [N,V] logits are never stored whole (N·V floats would be 256 MB at
 * the baseline's 65,536 tokens per micro-batch). Per row, in float64:
 *   z = cap·tanh(u/cap) with u = h·Eᵀ,  loss = logsumexp(z) − z[y],
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
        pg_gemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, v, d, 1, hc, d, emb, d, 0, u, v);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < rows; i++) {
            pg_real *ui = u + (size_t)i * v;
            int y = targets[r0 + i];
            double m = -1e300, sum = 0;
            for (int j = 0; j < v; j++) {
                double z = cap * tanh((double)ui[j] / cap);
                m = z > m ? z : m;
            }
            for (int j = 0; j < v; j++) sum += exp(cap * tanh((double)ui[j] / cap) - m);
            double lse = m + log(sum);
            row_loss[i] = (pg_real)(lse - cap * tanh((double)ui[y] / cap));
            if (dh) {
                for (int j = 0; j < v; j++) {
                    double t = tanh((double)ui[j] / cap);
                    double p = exp(cap * t - lse) - (j == y);
                    ui[j] = (pg_real)(grad_scale * p * (1 - t * t));
                }
            }
        }
        for (int i = 0; i < rows; i++) {
            total += row_loss[i];
            if (losses) losses[r0 + i] = (float)row_loss[i];
        }
        if (dh) {
            pg_gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d, v, 1, u, v, emb, d, 0, dh + (size_t)r0 * d, d);
            pg_gemm(CblasRowMajor, CblasTrans, CblasNoTrans, v, d, rows, 1, u, v, hc, d, 1, demb, d);
        }
    }
    return total;
}
