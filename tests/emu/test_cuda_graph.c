/* test_cuda_graph.c: the training step's device machinery without waits (kernels/cuda/graph.cu,
 * backend.h host_alloc .. graph_free, logit_ce_to):
 *   - logit_ce_to adds total·scale to a device double with the host's rounding, and leaves the
 *     gradients logit_ce's bits;
 *   - batches through the pinned double buffer and the copy stream arrive whole and in order
 *     while nothing waits in between (a host slot refilled too early, or a device slot
 *     overwritten before the compute stream took it, would change the sum);
 *   - a captured graph runs nothing at capture and replays on new input the eager bits, also
 *     after the scratch it uses was outgrown (retired, not freed); a capture broken by a wait
 *     gives no graph, a reported failure, and a device that works on.
 * test_cuda_graph_emu runs it on the emulator (make check), test_cuda_graph_gpu on a GPU. */
#include "parity.h"

#include "../../lib/err.h"

static double *dev_double(double v)
{
    double *d = dnew(sizeof *d);
    pg_cuda_upload(d, &v, sizeof v);
    return d;
}

static double back_double(const double *d)
{
    double v;
    pg_cuda_download(&v, d, sizeof v);
    return v;
}

static void test_ce_to(int poly5, double z_loss)
{
    enum { N = 37, D = 16, V = 50 };
    float *h = rnd(N * D, 1), *emb = rnd(V * D, 0.5f);
    int32_t tg[N];
    for (int i = 0; i < N; i++) tg[i] = (int32_t)((urand() + 1) * 0.5f * V) % V;
    float *dh_d = dev(h, N * D), *de = dev(emb, V * D), *work = dnew(pg_ce_work(V) * sizeof(float));
    int32_t *dt = dev_ids(tg, N);
    float *g1 = dnew(N * D * sizeof(float)), *e1 = dnew(V * D * sizeof(float));
    float *g2 = dnew(N * D * sizeof(float)), *e2 = dnew(V * D * sizeof(float));
    double total = pg_cuda_logit_ce(g1, e1, NULL, dh_d, de, dt, N, D, V, 30, poly5, z_loss, 0.5, work);
    const double a0 = 1.25, scale = 1.0 / 3;
    double *acc = dev_double(a0);
    pg_cuda_logit_ce_to(acc, scale, g2, e2, NULL, dh_d, de, dt, N, D, V, 30, poly5, z_loss, 0.5, work);
    volatile double want = a0 + total * scale; /* the host's rounding: a product, then a sum */
    double got = back_double(acc);
    ok(got == want, "logit_ce_to (poly5 %d, z_loss %g): acc = %.17g + total·scale = %.17g (got %.17g)", poly5, z_loss,
       a0, (double)want, got);
    ok(same_bits(back(g2, N * D), back(g1, N * D), N * D) && same_bits(back(e2, V * D), back(e1, V * D), V * D),
       "... and the gradients are logit_ce's bits");
    pg_cuda_logit_ce_to(NULL, 0, g2, NULL, NULL, dh_d, de, dt, N, D, V, 30, poly5, z_loss, 0.5, work);
    ok(same_bits(back(g2, N * D), back(g1, N * D), N * D), "... also with the total dropped (acc NULL)");
}

/* Six batches through the two slots, each added on the compute stream, nothing waited for in
 * between: the sum is every batch once. */
static void test_staging(void)
{
    enum { N = 4099, ROUNDS = 6 };
    float *host[2], *slot[2];
    for (int s = 0; s < 2; s++) {
        host[s] = pg_cuda_host_alloc(N * sizeof(float));
        slot[s] = dnew(N * sizeof(float));
    }
    if (!host[0] || !host[1]) {
        ok(0, "pinned host memory: %s", pg_cuda_status() ? pg_error_message() : "NULL");
        return;
    }
    float *in = dnew(N * sizeof(float)), *sum = dnew(N * sizeof(float));
    double *want = calloc(N, sizeof *want);
    for (int r = 0; r < ROUNDS; r++) {
        int s = r & 1;
        pg_cuda_stage_wait(s);
        for (int i = 0; i < N; i++) host[s][i] = (float)((r + 1) * 1000 + i % 97);
        for (int i = 0; i < N; i++) want[i] += host[s][i];
        pg_cuda_stage_in(slot[s], host[s], N * sizeof(float), s);
        pg_cuda_stage_take(in, slot[s], N * sizeof(float), s);
        pg_cuda_axpy(sum, 1, in, N);
    }
    float *got = back(sum, N);
    size_t bad = 0;
    for (int i = 0; i < N; i++) bad += got[i] != (float)want[i];
    is_int((int)bad, 0, "%d batches through the pinned double buffer and the copy stream arrive whole, once each",
           ROUNDS);
    is_int(pg_cuda_status(), 0, "and the device reports no failure");
    free(want);
    for (int s = 0; s < 2; s++) pg_cuda_host_free(host[s]);
}

/* The captured sequence: y = 2·x, z = y·wᵀ, and a cross-entropy total added into acc. */
static void sequence(float *y, float *z, double *acc, const float *x, const float *w, const int32_t *tg, float *work,
                     int n, int d, int v)
{
    pg_cuda_copy(y, x, (size_t)n * d);
    pg_cuda_scale(y, 2, (size_t)n * d);
    pg_cuda_matmul_fwd(z, y, w, n, d, d);
    pg_cuda_logit_ce_to(acc, 0.5, NULL, NULL, NULL, z, w, tg, n, d, v, 30, 0, 0, 0, work);
}

static void test_graph(void)
{
    enum { N = 24, D = 16, V = 16 };
    float *w = dev(rnd(D * D, 0.5f), D * D), *x = dnew(N * D * sizeof(float));
    float *y = dnew(N * D * sizeof(float)), *z = dnew(N * D * sizeof(float));
    float *yr = dnew(N * D * sizeof(float)), *zr = dnew(N * D * sizeof(float));
    float *work = dnew(pg_ce_work(V) * sizeof(float));
    int32_t tg[N];
    for (int i = 0; i < N; i++) tg[i] = i % V;
    int32_t *dt = dev_ids(tg, N);
    double *acc = dev_double(0), *accr = dev_double(0);
    pg_cuda_upload(x, rnd(N * D, 1), N * D * sizeof(float));
    is_int(pg_cuda_graph_begin(), 0, "a capture begins");
    sequence(y, z, acc, x, w, dt, work, N, D, V);
    void *g = pg_cuda_graph_end();
    ok(g != NULL, "and ends in a graph");
    if (!g) {
        diag("%s", pg_cuda_status() ? pg_error_message() : "no failure recorded");
        return;
    }
    float *zero = hnew(N * D);
    memset(zero, 0, N * D * sizeof *zero);
    ok(same_bits(back(z, N * D), zero, N * D) && back_double(acc) == 0, "capturing ran nothing");
    /* the scratch the captured cross-entropy uses, outgrown after the capture: retired, not freed */
    enum { T = 256 };
    float *q = dev(rnd(T * 16, 1), T * 16), *o = dnew(T * 16 * sizeof(float)), *lse = dnew(T * sizeof(float));
    pg_cuda_attention_fwd(o, lse, q, q, q, 1, T, 1, 1, 16, 0.25, NULL);
    for (int round = 0; round < 2; round++) {
        pg_cuda_upload(x, rnd(N * D, 1), N * D * sizeof(float));
        pg_cuda_graph_launch(g);
        sequence(yr, zr, accr, x, w, dt, work, N, D, V);
        is_int(pg_cuda_status(), 0, "replay %d: the device reports no failure", round + 1);
        ok(same_bits(back(z, N * D), back(zr, N * D), N * D), "replay %d on new input: the eager run's bits",
           round + 1);
        double a = back_double(acc), b = back_double(accr);
        ok(a == b && a != 0, "replay %d: the loss added on the device as eagerly (%.17g)", round + 1, a);
    }
    pg_cuda_graph_free(g);
    is_int(pg_cuda_status(), 0, "a freed graph leaves no failure");

    /* a wait inside the capture breaks it */
    is_int(pg_cuda_graph_begin(), 0, "a second capture begins");
    pg_cuda_copy(y, x, (size_t)N * D);
    float h1;
    pg_cuda_download(&h1, y, sizeof h1);
    ok(pg_cuda_graph_end() == NULL, "a download (a wait) inside it: no graph");
    int rc = pg_cuda_status();
    ok(rc == PG_E_LIB, "and the failure is reported (%s)", rc ? pg_error_message() : "nothing");
    pg_error_clear();
    float *xs = back(x, N * D);
    pg_cuda_copy(y, x, (size_t)N * D);
    ok(same_bits(back(y, N * D), xs, N * D) && pg_cuda_status() == 0, "the device works on after it");
}

int main(void)
{
    parity_start();
    test_ce_to(0, 0);
    test_ce_to(1, 1e-4);
    test_staging();
    test_graph();
    return parity_done(0);
}
