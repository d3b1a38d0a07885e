/* calib_self.c: calibration sequences the model samples itself (see pg_calib_generate, calib.h).
 *
 * There is no KV cache in the model: position p's distribution comes from a full forward of the
 * batch, the tokens after p being placeholders (the model is causal, so they change nothing at p).
 * A tap on the final norm's output keeps each sequence's row p; the logits are computed here on
 * the host in double, with the same head and softcap as the loss (kernels/cpu/loss.c). */
#define _POSIX_C_SOURCE 200809L
#include "calib.h"

#include "err.h"
#include "rng.h"
#include "xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct grab {
    int pos, t, b;
    double *h; /* b rows of d: the final norm's output at position pos of each sequence */
};

static void grab_head(void *ctx, int layer, int site, const pg_real *x, int n, int cols)
{
    (void)layer, (void)n;
    struct grab *g = ctx;
    if (site != PG_TAP_HEAD) return;
    for (int s = 0; s < g->b; s++) {
        const pg_real *row = x + ((size_t)s * (size_t)g->t + (size_t)g->pos) * (size_t)cols;
        for (int j = 0; j < cols; j++) g->h[(size_t)s * cols + j] = row[j];
    }
}

/* z = cap·tanh(x/cap), or the poly5 softcap cap·clamp(p(u), −1, 1), u = clamp(x/cap, −2, 2) */
static double softcap(double x, double cap, int poly5)
{
    if (!poly5) return cap * tanh(x / cap);
    double u = x / cap;
    u = u < -2 ? -2 : u > 2 ? 2 : u;
    double u2 = u * u, p = u * (1 + u2 * (-1.0 / 3 + u2 / 15));
    return cap * (p < -1 ? -1 : p > 1 ? 1 : p);
}

/* The next token after hidden row h: argmax of z, or a draw from softmax(z/temp). */
static int32_t next_token(const struct pg_model *m, const pg_real *head, const double *h, double *z, double temp,
                          struct pg_rng *r)
{
    int v = m->v, d = m->d, best = 0;
    for (int k = 0; k < v; k++) {
        const pg_real *e = head + (size_t)k * (size_t)d;
        double x = 0;
        for (int j = 0; j < d; j++) x += h[j] * (double)e[j];
        z[k] = softcap(x, m->cfg.logit_softcap, m->cfg.softcap_poly5);
        if (z[k] > z[best]) best = k;
    }
    if (temp == 0) return best;
    double sum = 0;
    for (int k = 0; k < v; k++) sum += z[k] = exp((z[k] - z[best]) / temp);
    double u = pg_rng_uniform(r) * sum, acc = 0;
    for (int k = 0; k < v; k++)
        if ((acc += z[k]) > u) return k;
    return best; /* u rounded to the very top of the sum */
}

int pg_calib_generate(struct pg_model *m, int32_t *ids, int64_t nseq, double temp, uint64_t seed,
                      struct pg_progress *pr)
{
    if (!m->be->host_memory)
        return pg_error(PG_E_UNSUPPORTED, "self-generated calibration samples on the CPU backend only");
    if (!(temp >= 0) || !isfinite(temp)) return pg_error(PG_E_INVAL, "sampling temperature %g", temp);
    int t = m->t, d = m->d, bos = m->cfg.bos_id >= 0 && m->cfg.bos_id < m->v ? m->cfg.bos_id : 0;
    size_t rows = (size_t)m->max_b;
    struct grab g = {0, t, 0, pg_malloc(rows * (size_t)d * sizeof *g.h)};
    double *z = pg_malloc((size_t)m->v * sizeof *z);
    int32_t *y = pg_malloc(rows * (size_t)t * sizeof *y);
    struct pg_rng *rng = pg_malloc(rows * sizeof *rng);
    if (!g.h || !z || !y || !rng) {
        free(g.h), free(z), free(y), free(rng);
        return PG_E_NOMEM;
    }
    struct pg_model_tap tap = {grab_head, &g}, *saved = (struct pg_model_tap *)m->tap;
    const pg_real *head = m->params + m->tensors[m->t_head >= 0 ? m->t_head : m->t_emb].offset;
    m->tap = &tap;
    int64_t made = 0;
    for (int64_t s0 = 0; s0 < nseq; s0 += m->max_b) {
        int b = (int)(nseq - s0 < m->max_b ? nseq - s0 : m->max_b);
        int32_t *x = ids + (size_t)s0 * (size_t)t;
        for (size_t i = 0; i < (size_t)b * (size_t)t; i++) x[i] = bos;
        /* each sequence its own stream: (seed, index) through splitmix64 */
        for (int s = 0; s < b; s++) {
            uint64_t st = seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(s0 + s + 1));
            pg_rng_seed(&rng[s], pg_splitmix64(&st));
        }
        g.b = b;
        for (int p = 0; p + 1 < t; p++) {
            for (size_t i = 0; i < (size_t)b * (size_t)t; i++) y[i] = i + 1 < (size_t)b * (size_t)t ? x[i + 1] : x[0];
            g.pos = p;
            pg_model_forward(m, x, y, b, NULL);
            for (int s = 0; s < b; s++)
                x[(size_t)s * t + p + 1] = next_token(m, head, g.h + (size_t)s * d, z, temp, &rng[s]);
            made += b;
            if (pr) pg_progress_update(pr, (uint64_t)made);
        }
        made += b; /* the bos tokens */
    }
    m->tap = saved;
    free(g.h), free(z), free(y), free(rng);
    return m->be->status ? m->be->status() : 0;
}
