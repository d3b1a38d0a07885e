/* test_cuda_optim.c: the optimizers on the CUDA backend (kernels/cuda/optim.cu, optim_muon.c)
 * against their host reference (lib/optim.c, lib/quant.c) on random tensors, several steps each.
 * Built as test_cuda_optim_emu (emulated kernels, every make check) and test_cuda_optim_gpu (a
 * real device, make check-gpu).
 *
 * Element updates (Adam and AdamW, Muon's momentum, EMA, SWA, the SWA average, fake
 * quantization, TTT's SGD) are required to give the host's bits: both sides evaluate the same expression
 * with each operation rounded on its own (optim_ops.h). What goes through a product or a norm is
 * compared with parity.h's rule: Muon (Newton–Schulz's products are cuBLAS's against OpenBLAS's
 * summation orders; fp32 and bf16, classic and Polar Express, MuonEq-R, weight decay), at 1e-4 of
 * scale after three steps (a product's float rounding, ~1e-6, grows through five iterations whose
 * polynomial amplifies differences; a wrong coefficient, transpose or scale errs by 1e-2 or more),
 * and gradient clipping at 1e-6 (only the norm's double summation order differs). The state
 * saved from the device and loaded back on the host continues the host's run bit for bit. */
#include "parity.h"

#include "../../lib/optim.h"
#include "../../lib/quant.h"
#include "../../lib/sgd.h"
#include "../../lib/trit.h"
#include "../../kernels/cuda/optim_ops.h"

static const struct pg_backend *gpu = &pg_backend_cuda;

/* A parameter/gradient pair of n random floats on the host and the same on the device. */
struct pair {
    float *hp, *hg, *dp, *dg;
    size_t n;
    int rows, cols;
};

static struct pair make_pair(int rows, int cols, float pscale, float gscale)
{
    struct pair q = {.n = (size_t)rows * cols, .rows = rows, .cols = cols};
    q.hp = rnd(q.n, pscale), q.hg = rnd(q.n, gscale);
    q.dp = dev(q.hp, q.n), q.dg = dev(q.hg, q.n);
    return q;
}

static void new_grads(struct pair *q, size_t nq, float scale)
{
    for (size_t i = 0; i < nq; i++) {
        for (size_t j = 0; j < q[i].n; j++) q[i].hg[j] = urand() * scale;
        pg_cuda_upload(q[i].dg, q[i].hg, q[i].n * sizeof(float));
    }
}

static void lists(struct pair *q, size_t nq, struct pg_opt_tensor *host, struct pg_opt_tensor *device)
{
    for (size_t i = 0; i < nq; i++) {
        host[i] = (struct pg_opt_tensor){q[i].hp, q[i].hg, q[i].rows, q[i].cols, q[i].n};
        device[i] = (struct pg_opt_tensor){q[i].dp, q[i].dg, q[i].rows, q[i].cols, q[i].n};
    }
}

static void test_adam(double wd)
{
    char what[64];
    snprintf(what, sizeof what, "wd %g", wd);
    struct pair q[3] = {make_pair(1, 1, 1, 1), make_pair(37, 11, 1, 0.1f), make_pair(1, 5000, 0.5f, 3)};
    struct pg_opt_tensor th[3], td[3];
    lists(q, 3, th, td);
    struct pg_adam ah, ad;
    int rc = pg_adam_init(&ah, th, 3, 0.9, 0.95, 1e-8) || pg_adam_init_on(&ad, gpu, td, 3, 0.9, 0.95, 1e-8) ||
             pg_adam_set_weight_decay(&ah, wd) || pg_adam_set_weight_decay(&ad, wd);
    is_int(rc, 0, "adam %s: set up on the host and on the device", what);
    int same = 1;
    for (int step = 0; step < 4; step++) {
        new_grads(q, 3, step == 2 ? 1e-6f : 1); /* tiny gradients: eps matters */
        pg_adam_step(&ah, 0.05 / (step + 1));
        pg_adam_step(&ad, 0.05 / (step + 1));
        for (int i = 0; i < 3; i++) same = same && same_bits(back(q[i].dp, q[i].n), q[i].hp, q[i].n);
    }
    ok(same, "adam %s: 4 steps give the host's parameters bit for bit", what);
    /* the state: saved on the device, loaded on a host twin, one more step each */
    size_t sz = pg_adam_state_size(&ad);
    is_int((long long)sz, (long long)pg_adam_state_size(&ah), "adam %s: the state has the host's size", what);
    void *bd = hkeep(malloc(sz)), *bh = hkeep(malloc(sz));
    pg_adam_state_save(&ad, bd, sz);
    pg_adam_state_save(&ah, bh, sz);
    ok(memcmp(bd, bh, sz) == 0, "adam %s: the device's saved state equals the host's, byte for byte", what);
    struct pg_adam a2;
    pg_adam_init_on(&a2, gpu, td, 3, 0.9, 0.95, 1e-8);
    pg_adam_set_weight_decay(&a2, wd);
    is_int(pg_adam_state_load(&a2, bh, sz, "host state"), 0, "adam %s: the host's state loads on the device", what);
    new_grads(q, 3, 1);
    pg_adam_step(&ah, 0.01);
    pg_adam_step(&a2, 0.01);
    same = 1;
    for (int i = 0; i < 3; i++) same = same && same_bits(back(q[i].dp, q[i].n), q[i].hp, q[i].n);
    ok(same, "adam %s: a step after the load continues the host's run bit for bit", what);
    /* a planted difference is seen: a different beta2 changes the bits */
    struct pg_adam a3;
    pg_adam_init_on(&a3, gpu, td, 3, 0.9, 0.951, 1e-8);
    pg_adam_state_load(&a3, bh, sz, "host state");
    new_grads(q, 3, 1);
    pg_adam_step(&ah, 0.01);
    pg_adam_step(&a3, 0.01);
    ok(!same_bits(back(q[2].dp, q[2].n), q[2].hp, q[2].n), "adam %s: beta2 0.951 instead of 0.95 is seen", what);
    pg_adam_free(&ah), pg_adam_free(&ad), pg_adam_free(&a2), pg_adam_free(&a3);
}

static void test_muon(int bf16, int coeffs, int row_norm, double wd)
{
    char what[96];
    snprintf(what, sizeof what, "%s%s%s, wd %g", bf16 ? "bf16" : "fp32", coeffs ? ", Polar Express" : "",
             row_norm ? ", MuonEq-R" : "", wd);
    /* wide, tall and square matrices (tall ones are orthogonalized transposed); two shapes twice,
     * not side by side: the device orthogonalizes each shape's matrices as one batch */
    enum { NQ = 6 };
    struct pair q[NQ] = {make_pair(24, 40, 0.1f, 1), make_pair(48, 16, 0.1f, 1), make_pair(32, 32, 0.1f, 1),
                         make_pair(24, 40, 0.3f, 1), make_pair(1, 7, 0.1f, 1),  make_pair(48, 16, 0.05f, 1)};
    struct pg_opt_tensor th[NQ], td[NQ];
    lists(q, NQ, th, td);
    struct pg_muon mh, md;
    int rc = pg_muon_init(&mh, th, NQ, 5, 1, bf16) || pg_muon_init_on(&md, gpu, td, NQ, 5, 1, bf16) ||
             pg_muon_set_variant(&mh, coeffs, row_norm, wd) || pg_muon_set_variant(&md, coeffs, row_norm, wd);
    is_int(rc, 0, "muon %s: set up on the host and on the device", what);
    for (int step = 0; step < 3; step++) {
        new_grads(q, NQ, 1);
        pg_muon_step(&mh, 0.02, 0.9 + 0.02 * step);
        pg_muon_step(&md, 0.02, 0.9 + 0.02 * step);
    }
    char label[128];
    for (int i = 0; i < NQ; i++) {
        snprintf(label, sizeof label, "%s, %dx%d after 3 steps", what, q[i].rows, q[i].cols);
        check("muon", label, back(q[i].dp, q[i].n), q[i].hp, q[i].n, 1e-4);
    }
    /* the momentum buffer is an element update: saved states agree bit for bit */
    size_t sz = pg_muon_state_size(&md);
    void *bd = hkeep(malloc(sz)), *bh = hkeep(malloc(sz));
    pg_muon_state_save(&md, bd, sz);
    pg_muon_state_save(&mh, bh, sz);
    ok(sz == pg_muon_state_size(&mh) && memcmp(bd, bh, sz) == 0,
       "muon %s: the momentum buffers saved from the device equal the host's, byte for byte", what);
    pg_muon_free(&mh), pg_muon_free(&md);
}

/* The step's values read from device memory (struct pg_adam / pg_muon sc_dev), as lib/train.c's
 * optimizer graph does: each step prepared on the host, its values copied to the device, the
 * launch captured once, after a first eager step (which makes what the launches keep, such as
 * the tensor lists' device tables), and replayed. The replayed steps must give the bits of steps
 * taken the plain way (Adam: the host's; Muon: an eager device twin's), with the host copy of
 * the values spoiled before each replay so that a kernel taking the captured arguments fails. */
static void test_step_values(void)
{
    struct pair q[2] = {make_pair(3, 7, 1, 1), make_pair(1, 900, 0.5f, 2)};
    struct pair r[2] = {make_pair(24, 40, 0.1f, 1), make_pair(48, 16, 0.1f, 1)};
    struct pair r2[2]; /* the Muon twin: the same parameters, the same gradient arrays */
    for (int i = 0; i < 2; i++) r2[i] = r[i], r2[i].dp = dev(r[i].hp, r[i].n);
    struct pg_opt_tensor th[2], td[2], mh[2], md[2], md2[2];
    lists(q, 2, th, td);
    lists(r, 2, mh, md);
    lists(r2, 2, mh, md2);
    struct pg_adam ah, ad;
    struct pg_muon me, mg;
    int rc = pg_adam_init(&ah, th, 2, 0.9, 0.95, 1e-8) || pg_adam_init_on(&ad, gpu, td, 2, 0.9, 0.95, 1e-8) ||
             pg_adam_set_weight_decay(&ah, 0.04) || pg_adam_set_weight_decay(&ad, 0.04) ||
             pg_muon_init_on(&me, gpu, md, 2, 5, 1, 1) || pg_muon_init_on(&mg, gpu, md2, 2, 5, 1, 1) ||
             pg_muon_set_variant(&me, PG_NS_POLAR_EXPRESS, 1, 0.05) ||
             pg_muon_set_variant(&mg, PG_NS_POLAR_EXPRESS, 1, 0.05);
    is_int(rc, 0, "step values: optimizers set up");
    double *sc = dnew(2 * PG_OPT_SCALARS * sizeof *sc);
    void *graph = NULL;
    int adam_same = 1, muon_same = 1, captured = 1;
    for (int step = 0; step < 5; step++) {
        new_grads(q, 2, 1);
        new_grads(r, 2, 1);
        const double lr = 0.05 / (step + 1), mom = 0.85 + 0.03 * step, wd = step == 3 ? 0 : 0.05 * (step + 1);
        pg_adam_step(&ah, lr);
        pg_adam_prepare(&ad, lr);
        pg_muon_set_weight_decay(&me, wd), pg_muon_set_weight_decay(&mg, wd);
        pg_muon_step(&me, lr, mom);
        pg_muon_prepare(&mg, lr, mom);
        if (step == 0) { /* eager, with the values as arguments */
            pg_adam_launch(&ad);
            pg_muon_launch(&mg);
        }
        pg_cuda_upload(sc, ad.sc, sizeof ad.sc);
        pg_cuda_upload(sc + PG_OPT_SCALARS, mg.sc, sizeof mg.sc);
        for (int k = 0; k < PG_OPT_SCALARS; k++) ad.sc[k] = mg.sc[k] = 0.5; /* what a replay must not use */
        if (step == 1) {
            ad.sc_dev = sc, mg.sc_dev = sc + PG_OPT_SCALARS;
            captured = gpu->graph_begin() == 0;
            pg_adam_launch(&ad);
            pg_muon_launch(&mg);
            graph = captured ? gpu->graph_end() : NULL;
        }
        if (graph) gpu->graph_launch(graph);
        for (int i = 0; i < 2; i++) {
            adam_same = adam_same && same_bits(back(q[i].dp, q[i].n), q[i].hp, q[i].n);
            muon_same = muon_same && same_bits(back(r2[i].dp, r2[i].n), back(r[i].dp, r[i].n), r[i].n);
        }
    }
    ok(captured && graph, "step values: the launches are captured as a graph");
    ok(adam_same, "step values: Adam's 4 replays with their steps' values from the device give the host's bits");
    ok(muon_same, "step values: Muon's replays (momentum, lr, decay to 0) give the eager device's bits");
    is_int(gpu->status(), 0, "step values: no device error");
    if (graph) gpu->graph_free(graph);
    pg_adam_free(&ah), pg_adam_free(&ad), pg_muon_free(&me), pg_muon_free(&mg);
}

/* Muon divided between `world` ranks on the device (pg_muon_shard): rank r's step, from the same
 * parameters and gradients as an undivided device step, gives the matrices it owns the undivided
 * step's bits (emulated: a shape's batch of fewer members leaves each member's arithmetic as it
 * was; on a GPU cuBLAS may pick another kernel for another batch count, so there 1e-6 of scale),
 * leaves the others' parameters as they were, and updates every momentum buffer as undivided. */
static void test_muon_shard(int world)
{
    enum { NQ = 7 };
    struct pair q[NQ] = {make_pair(24, 40, 0.1f, 1), make_pair(24, 40, 0.2f, 1), make_pair(48, 16, 0.1f, 1),
                         make_pair(24, 40, 0.3f, 1), make_pair(48, 16, 0.1f, 1), make_pair(24, 40, 0.1f, 1),
                         make_pair(32, 32, 0.1f, 1)};
    struct pg_opt_tensor th[NQ], td[NQ];
    lists(q, NQ, th, td);
    /* the reference: every matrix, on the device */
    struct pg_muon all;
    int rc = pg_muon_init_on(&all, gpu, td, NQ, 5, 1, 1) || pg_muon_set_variant(&all, PG_NS_POLAR_EXPRESS, 1, 0.05);
    float *p0[NQ], *after[NQ];
    for (int i = 0; i < NQ; i++) p0[i] = back(q[i].dp, q[i].n);
    pg_muon_step(&all, 0.02, 0.95);
    for (int i = 0; i < NQ; i++) after[i] = back(q[i].dp, q[i].n);
    size_t sz = pg_muon_state_size(&all);
    void *s_all = hkeep(malloc(sz)), *s_r = hkeep(malloc(sz));
    pg_muon_state_save(&all, s_all, sz);
    int owned = 0, exact = 1, near = 1, kept = 1, moms = 1, balanced = 1;
    for (int r = 0; r < world; r++) {
        for (int i = 0; i < NQ; i++) pg_cuda_upload(q[i].dp, p0[i], q[i].n * sizeof(float));
        struct pg_muon m;
        rc = rc || pg_muon_init_on(&m, gpu, td, NQ, 5, 1, 1) || pg_muon_set_variant(&m, PG_NS_POLAR_EXPRESS, 1, 0.05) ||
             pg_muon_shard(&m, r, world);
        if (rc) break;
        pg_muon_step(&m, 0.02, 0.95);
        int mine = 0;
        for (int i = 0; i < NQ; i++) {
            float *got = back(q[i].dp, q[i].n);
            if (m.owner[i] == r) {
                mine++;
                exact = exact && same_bits(got, after[i], q[i].n);
                for (size_t j = 0; j < q[i].n; j++)
                    near = near && fabsf(got[j] - after[i][j]) <= 1e-6f * (fabsf(after[i][j]) + 1e-3f);
            } else {
                kept = kept && same_bits(got, p0[i], q[i].n);
            }
        }
        owned += mine;
        balanced = balanced && mine >= NQ / world - 1 && mine <= NQ / world + 2;
        pg_muon_state_save(&m, s_r, sz);
        moms = moms && memcmp(s_r, s_all, sz) == 0;
        pg_muon_free(&m);
    }
    is_int(rc, 0, "muon over %d ranks on the device: set up", world);
    is_int(owned, NQ, "muon over %d ranks: every matrix has exactly one owner", world);
    ok(balanced, "muon over %d ranks: each rank owns about its share of the %d matrices", world, NQ);
#ifdef PG_CUDA_EMU
    ok(exact, "muon over %d ranks: each owned matrix gets the undivided step's bits", world);
#else
    ok(near, "muon over %d ranks: each owned matrix within 1e-6 of the undivided step", world);
#endif
    ok(kept, "muon over %d ranks: the other ranks' matrices are left as they were", world);
    ok(moms, "muon over %d ranks: every momentum buffer as the undivided step's, byte for byte", world);
    pg_muon_free(&all);
}

/* One Newton–Schulz call on count fixed matrices (a batch), device against host matrix by
 * matrix: the orthogonalization itself. The matrices differ in scale (the norm is per matrix). */
static void test_newton_schulz(int count, int rows, int cols, int bf16)
{
    char what[64];
    snprintf(what, sizeof what, "%d x %dx%d %s", count, rows, cols, bf16 ? "bf16" : "fp32");
    size_t n = (size_t)rows * cols, w = pg_newton_schulz5_work(rows, cols);
    float *x = hnew(n * count);
    for (int z = 0; z < count; z++) memcpy(x + z * n, rnd(n, (float)(z + 1)), n * sizeof *x);
    float *d_x = dev(x, n * count), *work = hnew(w), *d_work = dnew(w * count * 4);
    float abc[15];
    for (int s = 0; s < 5; s++) {
        double c[3];
        pg_newton_schulz_coeffs(PG_NS_CLASSIC, s, c);
        abc[3 * s] = (float)c[0], abc[3 * s + 1] = (float)c[1], abc[3 * s + 2] = (float)c[2];
    }
    for (int z = 0; z < count; z++) pg_newton_schulz(x + z * n, rows, cols, 5, PG_NS_CLASSIC, bf16, work);
    pg_cuda_newton_schulz(d_x, count, rows, cols, 5, abc, bf16, d_work);
    /* bf16 rounds every stage: one product's different float sum can flip a bf16 rounding (2^-8) */
    check("newton_schulz", what, back(d_x, n * count), x, n * count, bf16 ? 2e-2 : 1e-4);
}

static void test_clip(double max_norm)
{
    char what[48];
    snprintf(what, sizeof what, "max_norm %g", max_norm);
    struct pair q[3] = {make_pair(3, 100, 1, 1), make_pair(1, 1, 1, 2), make_pair(70, 70, 1, 0.5f)};
    struct pg_opt_tensor th[3], td[3];
    lists(q, 3, th, td);
    double total = pg_clip_grad_norm(th, 3, max_norm);
    pg_clip_grad_norm_on(gpu, td, 3, max_norm);
    for (int i = 0; i < 3; i++) check("clip_grad_norm", what, back(q[i].dg, q[i].n), q[i].hg, q[i].n, 1e-6);
    if (max_norm > total) {
        int same = 1;
        for (int i = 0; i < 3; i++) same = same && same_bits(back(q[i].dg, q[i].n), q[i].hg, q[i].n);
        ok(same, "clip_grad_norm %s: a norm below the limit (%.2f) leaves the grads' bits", what, total);
    } else {
        ok(fabs(total) > 0, "clip_grad_norm %s: the norm %.2f was above the limit", what, total);
    }
    /* the same host list with other tensors in it (an empty one among them): the device's table
     * of the list follows its content, not its address */
    struct pair q2[2] = {make_pair(5, 9, 1, 3), make_pair(1, 0, 1, 1)};
    float *old = back(q[1].dg, q[1].n);
    td[1] = (struct pg_opt_tensor){q2[0].dp, q2[0].dg, q2[0].rows, q2[0].cols, q2[0].n};
    td[2] = (struct pg_opt_tensor){q2[1].dp, q2[1].dg, q2[1].rows, q2[1].cols, q2[1].n};
    th[1] = (struct pg_opt_tensor){q2[0].hp, q2[0].hg, q2[0].rows, q2[0].cols, q2[0].n};
    th[2] = (struct pg_opt_tensor){q2[1].hp, q2[1].hg, q2[1].rows, q2[1].cols, q2[1].n};
    pg_clip_grad_norm(th, 3, max_norm);
    pg_clip_grad_norm_on(gpu, td, 3, max_norm);
    check("clip_grad_norm (list changed)", what, back(q2[0].dg, q2[0].n), q2[0].hg, q2[0].n, 1e-6);
    check("clip_grad_norm (list changed)", what, back(q[0].dg, q[0].n), q[0].hg, q[0].n, 1e-6);
    ok(same_bits(back(q[1].dg, q[1].n), old, q[1].n), "clip_grad_norm %s: a tensor no longer listed is left alone",
       what);
}

static void test_averages(void)
{
    size_t n = 3001;
    float *ema = rnd(n, 1), *theta = rnd(n, 1), *d_ema = dev(ema, n), *d_theta = dev(theta, n);
    for (int k = 0; k < 3; k++) {
        pg_ema_update(ema, theta, n, 0.997);
        pg_cuda_ema_update(d_ema, d_theta, n, 0.997);
    }
    ok(same_bits(back(d_ema, n), ema, n), "ema: 3 updates give the host's bits");
    double *sum = hkeep(calloc(n, sizeof *sum)), *d_sum = dnew(n * sizeof *d_sum);
    pg_swa_add_real(sum, theta, n), pg_swa_add(sum, ema, n);
    pg_cuda_swa_add(d_sum, d_theta, n), pg_cuda_swa_add(d_sum, d_ema, n);
    double *got = hkeep(malloc(n * sizeof *got));
    pg_cuda_download(got, d_sum, n * sizeof *got);
    ok(memcmp(got, sum, n * sizeof *got) == 0, "swa: the double sums equal the host's");
    float *avg = hnew(n), *d_avg = dnew(n * 4);
    for (size_t i = 0; i < n; i++) avg[i] = (float)(sum[i] / 2.0);
    pg_cuda_swa_average(d_avg, d_sum, n, 2.0);
    ok(same_bits(back(d_avg, n), avg, n), "swa: the average sum / count equals the host's bits");
}

static void test_sgd(double momentum)
{
    struct pair q[2] = {make_pair(3, 41, 1, 1), make_pair(1, 9000, 0.5f, 2)};
    struct pg_opt_tensor th[2], td[2];
    lists(q, 2, th, td);
    struct pg_sgd sh, sd;
    int rc = pg_sgd_init(&sh, th, 2, momentum) || pg_sgd_init_on(&sd, gpu, td, 2, momentum);
    is_int(rc, 0, "sgd momentum %g: set up on the host and on the device", momentum);
    int same = 1;
    for (int step = 0; step < 4; step++) {
        new_grads(q, 2, 1);
        if (step == 2) pg_sgd_reset(&sh), pg_sgd_reset(&sd); /* TTT resets between documents */
        pg_sgd_step(&sh, 0.01 * (step + 1));
        pg_sgd_step(&sd, 0.01 * (step + 1));
        for (int i = 0; i < 2; i++) same = same && same_bits(back(q[i].dp, q[i].n), q[i].hp, q[i].n);
    }
    ok(same, "sgd momentum %g: 4 steps (a reset between) give the host's parameters bit for bit", momentum);
    pg_sgd_free(&sh), pg_sgd_free(&sd);
}

static void test_fake_quant(int bits)
{
    char what[48];
    snprintf(what, sizeof what, "int%d", bits);
    int rows = 9, cols = 130;
    size_t n = (size_t)rows * cols;
    float *w = rnd(n, 0.2f);
    memset(w + 3 * cols, 0, (size_t)cols * sizeof *w); /* a zero row is copied */
    float *out = hnew(n), *d_w = dev(w, n), *d_out = dnew(n * 4);
    pg_fake_quant_rows(w, out, rows, cols, bits);
    pg_cuda_fake_quant_rows(d_out, d_w, rows, cols, bits);
    ok(same_bits(back(d_out, n), out, n), "fake_quant_rows %s: the host's bits", what);
    pg_cuda_fake_quant_rows(d_w, d_w, rows, cols, bits); /* in place, as late QAT does */
    ok(same_bits(back(d_w, n), out, n), "fake_quant_rows %s in place: the same bits", what);
}

static void test_fake_quant_trit(int levels)
{
    const char *what = levels == 3 ? "ternary" : "quinary";
    int rows = 7, cols = 300; /* groups of 128, 128 and 44 */
    size_t n = (size_t)rows * cols;
    float *w = rnd(n, 0.2f);
    memset(w + 2 * cols, 0, 128 * sizeof *w); /* an all-zero group */
    w[5 * cols + 7] = NAN;                    /* a group with a NaN is copied */
    float *out = hnew(n), *d_w = dev(w, n), *d_out = dnew(n * 4);
    pg_fake_quant_trit(w, out, rows, cols, levels);
    pg_cuda_fake_quant_trit(d_out, d_w, rows, cols, levels);
    ok(same_bits(back(d_out, n), out, n), "fake_quant_trit %s: the host's bits", what);
    pg_cuda_fake_quant_trit(d_w, d_w, rows, cols, levels); /* in place, as late QAT does */
    ok(same_bits(back(d_w, n), out, n), "fake_quant_trit %s in place: the same bits", what);
}

int main(void)
{
    parity_seed = 4242;
    parity_start();
    test_adam(0);
    test_adam(0.04);
    test_muon(0, PG_NS_CLASSIC, 0, 0);
    test_muon(1, PG_NS_CLASSIC, 0, 0);
    test_muon(0, PG_NS_POLAR_EXPRESS, 1, 0.05);
    test_muon(1, PG_NS_POLAR_EXPRESS, 1, 0.05);
    test_step_values();
    test_muon_shard(2);
    test_muon_shard(3);
    test_newton_schulz(1, 24, 40, 0);
    test_newton_schulz(1, 64, 20, 0);
    test_newton_schulz(1, 24, 40, 1);
    test_newton_schulz(3, 24, 40, 0); /* batches: each matrix normalized and multiplied on its own */
    test_newton_schulz(3, 64, 20, 1);
    test_clip(1.0);
    test_clip(1e6);
    test_averages();
    test_fake_quant(6);
    test_fake_quant(8);
    test_fake_quant_trit(3);
    test_fake_quant_trit(5);
    test_sgd(0.9);
    test_sgd(0);
    return parity_done(1e-4);
}
