/* test_cuda_model.c: the whole model on the CUDA backend (pg_backend_cuda, kernels/cuda/
 * backend_cuda.c) against the same model on the CPU reference (pg_backend_cpu): lib/model.c's
 * forward and backward, written once against lib/backend.h, must give the same loss, per-token
 * losses and gradients on both. Built twice (Makefile): test_cuda_model_emu runs the kernels
 * compiled for the host emulator in every `make check`; test_cuda_model_gpu runs nvcc's kernels
 * on a GPU (it skips without one, and fails under PG_EXPECT_GPU=1, i.e. `make check-gpu`).
 *
 * Configurations: the tiny models of tests/unit/test_model_f64.c (3 layers, d 16, 4 heads over
 * 2 kv heads, vocab 32, softcap 3 so that tanh matters, random parameters in ±0.5): the baseline,
 * the baseline with LeakyReLU(0.5)² + partial RoPE + LN scale, and the three record-style models
 * that between them turn every switch of the record stack on (looping on and off), plus a wider
 * baseline (d 32, 8 heads over 4, vocab 96, 16 tokens) so matmuls and attention are less trivial.
 *
 * Tolerances (parity.h's rule, |gpu − cpu| ≤ tol·(|cpu| + rms(cpu)) per element):
 *   - the loss total: relative 1e-5, and the per-token losses 1e-5 (forward only);
 *   - gradients: GRAD_TOL = 5e-5. Each operation agrees to about 1e-6 of scale (test_cuda_ops.c
 *     and test_cuda_record.c hold them to 1e-5; what differs is summation order and fused
 *     multiply-adds, a few float ulps), and a gradient is the end of a chain of some 30 of them
 *     (forward through 3-6 virtual layers and the loss, then back), whose errors add up to a few
 *     1e-6; 5e-5 leaves a margin of ten for real GPUs, and is still half of parity.h's nudge (an
 *     element moved by 1e-4 of scale must be caught) while a wrong or missing term in any
 *     operation errs by 1e-3 or more.
 * The CUDA model runs its fused forms (lib/backend.h: qk_prep, mix_norm, add_norm), and three of
 * the configurations again with them off (PG_FUSED=0), the plain chains.
 * In bf16 mode (four configurations: the three block modes; two accumulated micro-batches) the
 * CUDA model takes bf16 operands from their producers (relu2_fwd/bwd_x16, scale_add_bwd_x16,
 * matmul_fwd_x16, matmul_bwd_16) against the CPU's bf16 mode.
 * And the CUDA backend's determinism: running forward and backward again gives the same bits
 * (loss, losses, every gradient). */
#include "parity.h"

#include "../../lib/config.h"
#include "../../lib/err.h"
#include "../../lib/model.h"
#include "../record_configs.h"

#define LOSS_TOL 1e-5
#define GRAD_TOL 5e-5

static const struct pg_backend *gpu = &pg_backend_cuda;

struct shape {
    int vocab, layers, dim, heads, kv, b, t;
};

static const struct shape TINY = {32, 3, 16, 4, 2, 2, 6};
static const struct shape WIDER = {96, 3, 32, 8, 4, 2, 16};
static const struct shape FLASH = {64, 2, 64, 4, 2, 2, 20}; /* head dim 16: the fused bf16 attention */

/* 1: the CUDA model composes the plain operations instead of its fused forms (PG_FUSED=0). */
static int unfused;

static void setup(struct pg_model *m, const struct pg_config *cfg, const struct pg_backend *be, const struct shape *s,
                  const char *label)
{
    int rc = pg_model_init(m, cfg, be, 1);
    if (!rc && be == gpu && !unfused && !m->fused)
        ok(0, "%s: the CUDA model uses its fused forms (qk_prep, mix_norm, add_norm)", label);
    if (!rc && be == gpu && unfused) m->fused = 0; /* before the buffers: the plain chains need a->qn */
    if (rc || pg_model_alloc_acts(m, s->b, s->t)) {
        printf("Bail out! %s model setup (%s): %s\n", be->name, label, pg_error_message());
        exit(1);
    }
}

/* The shape's fields of a configuration, for `accum` micro-batches of b x t tokens a step. */
static void shape_config(struct pg_config *cfg, const struct shape *s, int accum)
{
    cfg->vocab_size = s->vocab, cfg->num_layers = s->layers, cfg->model_dim = s->dim, cfg->num_heads = s->heads;
    cfg->num_kv_heads = s->kv, cfg->mlp_mult = 2, cfg->train_seq_len = s->t, cfg->logit_softcap = 3.0;
    cfg->grad_accum_steps = accum, cfg->train_batch_tokens = cfg->val_batch_size = accum * s->b * s->t;
}

/* One configuration: the same parameters and tokens on both backends, forward and backward. */
static void compare(struct pg_config cfg, const struct shape *s, const char *label, int looping)
{
    shape_config(&cfg, s, 1);
    if (pg_config_validate(&cfg, 0)) {
        printf("Bail out! configuration (%s): %s\n", label, pg_error_message());
        exit(1);
    }
    struct pg_model mc, mg;
    setup(&mc, &cfg, cpu, s, label);
    setup(&mg, &cfg, gpu, s, label);
    mc.looping = mg.looping = looping;
    size_t np = mc.nparams, n = (size_t)s->b * s->t;
    is_int((long long)mg.nparams, (long long)np, "%s: both backends lay out %zu parameters", label, np);

    memcpy(mc.params, rnd(np, 0.5f), np * sizeof(float));
    gpu->upload(mg.params, mc.params, np * sizeof(float));
    int32_t *x = hkeep(malloc(n * sizeof *x)), *y = hkeep(malloc(n * sizeof *y));
    for (size_t i = 0; i < n; i++) { /* ids below 4 are common, so bos_id 1 starts documents */
        x[i] = (int32_t)((urand() + 1) / 2 * (i % 3 ? s->vocab : 4)) % s->vocab;
        y[i] = (int32_t)((urand() + 1) / 2 * s->vocab) % s->vocab;
    }
    x[3] = x[s->t + 2] = x[s->t + 3] = 1; /* documents start mid-sequence, one of a single token */

    double worst_before = worst_seen;
    worst_seen = 0;
    float *lc = hnew(n), *lg = hnew(n), *lg2 = hnew(n);
    pg_model_zero_grad(&mc);
    pg_model_zero_grad(&mg);
    double tc = pg_model_forward(&mc, x, y, s->b, lc), tg = pg_model_forward(&mg, x, y, s->b, lg);
    pg_model_backward(&mc, 1.0 / n);
    pg_model_backward(&mg, 1.0 / n);
    double rel = fabs(tg - tc) / fabs(tc);
    ok(isfinite(tc) && tc > 0 && rel <= LOSS_TOL, "%s: loss total %.9g on the GPU, %.9g on the CPU (relative %.1e)",
       label, tg, tc, rel);
    check("per-token losses", label, lg, lc, n, LOSS_TOL);

    float *gg = hnew(np), *gg2 = hnew(np);
    gpu->download(gg, mg.grads, np * sizeof(float));
    double gmax = 0;
    for (int k = 0; k < mc.ntensors; k++) {
        const struct pg_tensor *t = &mc.tensors[k];
        char what[160];
        snprintf(what, sizeof what, "%s: gradient", label);
        check(t->name, what, gg + t->offset, mc.grads + t->offset, t->numel, GRAD_TOL);
    }
    for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(mc.grads[i]));
    ok(gmax > 0, "%s: the gradients are not all zero (max |g| %.2e)", label, gmax);
    double worst_here = worst_seen;
    worst_seen = fmax(worst_before, worst_here);

    /* The same bits again: reductions in a fixed order, no float atomics. */
    pg_model_zero_grad(&mg);
    double tg2 = pg_model_forward(&mg, x, y, s->b, lg2);
    pg_model_backward(&mg, 1.0 / n);
    gpu->download(gg2, mg.grads, np * sizeof(float));
    ok(tg2 == tg && same_bits(lg2, lg, n) && same_bits(gg2, gg, np),
       "%s: a second CUDA forward and backward gives the same bits (loss, %zu losses, %zu gradients)", label, n, np);
    diag("%s: worst relative difference %.2e (loss total %.1e)", label, worst_here, rel);
    pg_model_free(&mc);
    pg_model_free(&mg);
}

/* q and k kept in bf16 for the fused attention (backend.h attention_x16; head dim 16, bf16 mode):
 * the bits of the same model on a CUDA backend without that form (whose flash attention rounds
 * fp32 q and k on reading), loss, per-token losses and every gradient, documents included. */
static void compare_qk16(struct pg_config cfg, const char *label)
{
    const struct shape *s = &FLASH;
    shape_config(&cfg, s, 1);
    struct pg_backend plain = pg_backend_cuda;
    plain.attention_x16 = NULL;
    struct pg_model mq, mp;
    setup(&mq, &cfg, gpu, s, label);
    setup(&mp, &cfg, &plain, s, label);
    size_t np = mq.nparams, n = (size_t)s->b * s->t;
    float *p0 = rnd(np, 0.5f);
    gpu->upload(mq.params, p0, np * sizeof(float));
    gpu->upload(mp.params, p0, np * sizeof(float));
    int32_t *x = hkeep(malloc(n * sizeof *x)), *y = hkeep(malloc(n * sizeof *y));
    for (size_t i = 0; i < n; i++) {
        x[i] = (int32_t)((urand() + 1) / 2 * (i % 3 ? s->vocab : 4)) % s->vocab;
        y[i] = (int32_t)((urand() + 1) / 2 * s->vocab) % s->vocab;
    }
    x[3] = x[s->t + 2] = x[s->t + 3] = 1; /* documents start mid-sequence, one of a single token */
    float *lq = hnew(n), *lp = hnew(n), *gq = hnew(np), *gp = hnew(np);
    gpu->set_bf16(1);
    pg_model_zero_grad(&mq);
    pg_model_zero_grad(&mp);
    double tq = pg_model_forward(&mq, x, y, s->b, lq), tp = pg_model_forward(&mp, x, y, s->b, lp);
    pg_model_backward(&mq, 1.0 / n);
    pg_model_backward(&mp, 1.0 / n);
    gpu->set_bf16(0);
    gpu->download(gq, mq.grads, np * sizeof(float));
    gpu->download(gp, mp.grads, np * sizeof(float));
    ok(mq.qk16 && !mp.qk16, "%s: q and k in bf16 on the backend that has the form only", label);
    ok(tq == tp && same_bits(lq, lp, n) && same_bits(gq, gp, np),
       "%s: the bits of the fp32 q and k (loss %.9g, %zu losses, %zu gradients)", label, tq, n, np);
    pg_model_free(&mq);
    pg_model_free(&mp);
}

/* A lean training model (lib/train.c's) in bf16 mode keeps the outputs of the MLP's products, of
 * the q and k products and of the attention's projection, and the MLP activation, in bf16 only
 * (m->acts16): the bits
 * of the same model laid out in full (loss, per-token losses, every gradient, two
 * micro-batches), and an arena smaller by what the fp32 forms took: per slot, hpre and r (n·hid
 * floats each) became n·hid and n·d bf16 values (h, and the MLP input ym16: the activation is
 * recomputed in the backward), ao, mo and the q product qr (n·d floats
 * each) n·d bf16 values, the k product kn n·kvd, each buffer rounded up to 16 bytes; with q and
 * k in bf16 (qk: the flash head dims) k too (n·kvd), and the attention output's fp32 copy (n·d)
 * is gone where nothing reads it (o_gone: no XSA, no gate), and v is kept in bf16 (n·kvd) without
 * XSA or value embeddings; without parallel blocks the MLP
 * norm's fp32 output ym (n·d) too: recomputed in the backward; without gates the attention
 * norm's output ya is kept in bf16 only (n·d values). */
static void compare_lean(struct pg_config cfg, const struct shape *s, const char *label, int qk, int o_gone)
{
    shape_config(&cfg, s, 2);
    struct pg_model ml, mf;
    gpu->set_bf16(1);
    int rc = pg_model_init(&ml, &cfg, gpu, 1) || pg_model_init(&mf, &cfg, gpu, 1);
    ml.lean = 1;
    if (rc || pg_model_alloc_acts(&ml, s->b, s->t) || pg_model_alloc_acts(&mf, s->b, s->t)) {
        printf("Bail out! lean model setup (%s): %s\n", label, pg_error_message());
        exit(1);
    }
    size_t np = ml.nparams, n = (size_t)s->b * s->t, nh = n * (size_t)ml.hid, nd = n * (size_t)ml.d;
    float *p0 = rnd(np, 0.5f);
    gpu->upload(ml.params, p0, np * sizeof(float));
    gpu->upload(mf.params, p0, np * sizeof(float));
    int32_t *x = hkeep(malloc(n * sizeof *x)), *y = hkeep(malloc(n * sizeof *y));
    for (size_t i = 0; i < n; i++) {
        x[i] = (int32_t)((urand() + 1) / 2 * s->vocab) % s->vocab;
        y[i] = (int32_t)((urand() + 1) / 2 * s->vocab) % s->vocab;
    }
    float *ll = hnew(n), *lf = hnew(n), *gl = hnew(np), *gf = hnew(np);
    pg_model_zero_grad(&ml);
    pg_model_zero_grad(&mf);
    double tl = 0, tf = 0;
    for (int micro = 0; micro < 2; micro++) {
        tl = pg_model_forward(&ml, x, y, s->b, ll), tf = pg_model_forward(&mf, x, y, s->b, lf);
        pg_model_backward(&ml, 1.0 / n);
        pg_model_backward(&mf, 1.0 / n);
        x[micro] = (x[micro] + 1) % s->vocab;
    }
    gpu->set_bf16(0);
    gpu->download(gl, ml.grads, np * sizeof(float));
    gpu->download(gf, mf.grads, np * sizeof(float));
    ok(ml.acts16 && !mf.acts16 && ml.x16 && mf.x16 && ml.acts_qk16 == qk && ml.qk16 == qk && mf.qk16 == qk,
       "%s: the lean model's products' outputs in bf16 only%s", label, qk ? ", and q, k" : "");
    ok(tl == tf && same_bits(ll, lf, n) && same_bits(gl, gf, np),
       "%s: the bits of the full layout (loss %.9g, %zu losses, %zu gradients)", label, tl, n, np);
    size_t nk = n * (size_t)ml.kvd, nd16 = ((nd + 1) / 2 + 3) / 4 * 4, nk16 = ((nk + 1) / 2 + 3) / 4 * 4;
    size_t per_slot = 2 * nh - ((nh + 1) / 2 + 3) / 4 * 4 - nd16 + 3 * (nd - nd16) +
                      (nk - nk16) + (cfg.parallel_start_layer > 0 ? 0 : nd);
    if (!cfg.attn_out_gate && !cfg.gated_attn && !cfg.sparse_attn_gate) per_slot += nd - nd16; /* ya in bf16 */
    if (qk) per_slot += nk - nk16 + (o_gone ? nd : 0);
    if (qk && !cfg.xsa_last_n && !cfg.ve_last_n) per_slot += nk - nk16; /* v in bf16 (no XSA, no value embedding) */
    size_t saved = mf.arena_bytes - ml.arena_bytes, want = (size_t)ml.nv * per_slot * sizeof(float);
    ok(saved == want, "%s: the arena %zu bytes smaller (%zu expected, %d slots)", label, saved, want, ml.nv);
    pg_model_free(&ml);
    pg_model_free(&mf);
}

/* bf16 mode on both backends (set_bf16(1)): the CUDA model keeps each MLP activation in bf16
 * only (relu2_fwd_x16, matmul_fwd_x16/bwd_x16), the CPU rounds the fp32 one in its products; the
 * same bf16 operands but where a value computed by each side lies at a bf16 midpoint (then one
 * rounds up, the other down: test_cuda_bf16.c), so on a GPU the loss within 1e-4 and the MLP
 * matrices' gradients within 1e-2 of their scale (a dropped term or a wrong operand errs by far
 * more); under the emulator, whose cuBLAS sums as the CPU's BLAS does, 1e-6 and 1e-5. */
#ifdef PG_CUDA_EMU
#define BF16_LOSS_TOL 1e-6
#define BF16_GRAD_TOL 1e-5
#else
#define BF16_LOSS_TOL 1e-4
#define BF16_GRAD_TOL 1e-2
#endif
static void compare_bf16(struct pg_config cfg, const struct shape *s, const char *label)
{
    shape_config(&cfg, s, 2);
    struct pg_model mc, mg;
    setup(&mc, &cfg, cpu, s, label);
    setup(&mg, &cfg, gpu, s, label);
    size_t np = mc.nparams, n = (size_t)s->b * s->t;
    memcpy(mc.params, rnd(np, 0.5f), np * sizeof(float));
    gpu->upload(mg.params, mc.params, np * sizeof(float));
    int32_t *x = hkeep(malloc(n * sizeof *x)), *y = hkeep(malloc(n * sizeof *y));
    for (size_t i = 0; i < n; i++) {
        x[i] = (int32_t)((urand() + 1) / 2 * s->vocab) % s->vocab;
        y[i] = (int32_t)((urand() + 1) / 2 * s->vocab) % s->vocab;
    }
    cpu->set_bf16(1), gpu->set_bf16(1);
    pg_model_zero_grad(&mc);
    pg_model_zero_grad(&mg);
    double tc = 0, tg = 0;
    for (int micro = 0; micro < 2; micro++) { /* two micro-batches: the gradients accumulate */
        tc = pg_model_forward(&mc, x, y, s->b, NULL), tg = pg_model_forward(&mg, x, y, s->b, NULL);
        pg_model_backward(&mc, 1.0 / n);
        pg_model_backward(&mg, 1.0 / n);
        x[micro] = (x[micro] + 1) % s->vocab;
    }
    cpu->set_bf16(0), gpu->set_bf16(0);
    ok(mg.x16 && !mc.x16, "%s: the CUDA model takes its bf16 operands from their producers (the CPU has no such form)",
       label);
    double rel = fabs(tg - tc) / fabs(tc);
    ok(rel <= BF16_LOSS_TOL, "%s: loss total %.9g on the GPU, %.9g on the CPU (relative %.1e)", label, tg, tc, rel);
    float *gg = hnew(np);
    gpu->download(gg, mg.grads, np * sizeof(float));
    double worst = 0;
    for (int l = 0; l < mc.cfg.num_layers; l++) {
        size_t off[2] = {mc.tensors[mc.blk[l].fc].offset, mc.tensors[mc.blk[l].mlp_proj].offset};
        size_t cnt[2] = {mc.tensors[mc.blk[l].fc].numel, mc.tensors[mc.blk[l].mlp_proj].numel};
        for (int k = 0; k < 2; k++) {
            const float *a = gg + off[k], *b = mc.grads + off[k];
            double scale = rms_of(b, cnt[k]);
            for (size_t i = 0; i < cnt[k]; i++) worst = fmax(worst, fabs(a[i] - b[i]) / (scale > 0 ? scale : 1));
        }
    }
    ok(worst <= BF16_GRAD_TOL, "%s: the MLP matrices' gradients within %g of their scale (worst %.1e)", label,
       BF16_GRAD_TOL, worst);
#ifdef PG_CUDA_EMU
    /* the emulator sums as the CPU does: every gradient (the MLP's input gradient reaches them) */
    double all = 0;
    for (int k = 0; k < mc.ntensors; k++) {
        const struct pg_tensor *t = &mc.tensors[k];
        double scale = rms_of(mc.grads + t->offset, t->numel);
        for (size_t i = 0; i < t->numel; i++)
            all = fmax(all, fabs(gg[t->offset + i] - mc.grads[t->offset + i]) / (scale > 0 ? scale : 1));
    }
    ok(all <= BF16_GRAD_TOL, "%s: every gradient within %g of its scale (worst %.1e)", label, BF16_GRAD_TOL, all);
#endif
    pg_model_free(&mc);
    pg_model_free(&mg);
}

/* The table's memory operations against the CPU's (kernels/cpu/mem.c): alloc gives zeros; copy,
 * zero, axpy (in double, rounded once) and scale give the CPU's bits; and the table reaches the
 * operations (an embedding lookup with device ids). */
static void test_memory_ops(void)
{
    const size_t n = 1000;
    float *z = gpu->alloc(n * sizeof(float)), *zh = hnew(n);
    gpu->download(zh, z, n * sizeof(float));
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++) nonzero += zh[i] != 0;
    ok(nonzero == 0, "alloc returns zeroed device memory (%zu of %zu nonzero)", nonzero, n);
    gpu->free(z);
    float *x = rnd(n, 3), *y = rnd(n, 2), *d_x = dev(x, n), *d_y = dev(y, n), *d_c = dnew(n * sizeof(float));
    gpu->copy(d_c, d_x, n);
    ok(same_bits(back(d_c, n), x, n), "copy: the same bits");
    cpu->axpy(y, 1.0, x, n);
    gpu->axpy(d_y, 1.0, d_x, n);
    ok(same_bits(back(d_y, n), y, n), "axpy with a = 1: the CPU's correctly rounded sums");
    cpu->axpy(y, -0.3, x, n);
    gpu->axpy(d_y, -0.3, d_x, n);
    ok(same_bits(back(d_y, n), y, n), "axpy with a = -0.3: the CPU's bits (double, rounded once)");
    cpu->scale(y, 1.0 / 3, n);
    gpu->scale(d_y, 1.0 / 3, n);
    ok(same_bits(back(d_y, n), y, n), "scale by 1/3: the CPU's bits");
    gpu->zero(d_y + 10, n - 20);
    float *b = back(d_y, n);
    size_t kept = 0, zeroed = 0;
    for (size_t i = 0; i < n; i++) {
        if (i < 10 || i >= n - 10) kept += b[i] == y[i];
        else zeroed += b[i] == 0;
    }
    ok(kept == 20 && zeroed == n - 20, "zero clears exactly its range (%zu kept, %zu zeroed)", kept, zeroed);
    int32_t ids[5] = {3, 0, 7, 3, 9};
    float *emb = rnd(10 * 4, 1), *out = hnew(5 * 4), *d_out = dnew(5 * 4 * sizeof(float));
    cpu->embedding_fwd(out, emb, ids, 5, 4);
    gpu->embedding_fwd(d_out, dev(emb, 40), dev_ids(ids, 5), 5, 4);
    ok(same_bits(back(d_out, 20), out, 20), "the table reaches the operations: embedding_fwd with device ids");
    ok(strcmp(gpu->name, "cuda") == 0 && gpu->attention_work(64) == 0,
       "name \"cuda\", attention_work 0: the model keeps no attention scratch (the fused kernels need none, the "
       "batched products take the backend's)");
}

int main(void)
{
    parity_start();
    gpu->init();
    parity_seed = 31;
    test_memory_ops();
    struct pg_config cfg;
    pg_config_default(&cfg);
    compare(cfg, &TINY, "baseline", 0);
    struct pg_config rec = cfg;
    rec.mlp_leaky_slope = 0.5, rec.rope_dims = 2, rec.ln_scale = 1;
    compare(rec, &TINY, "leaky 0.5 + rope_dims 2/4 + ln_scale", 0);
    compare(record_a(cfg), &TINY, "xsa + sparse gate + skip gates + smear v2 + varlen", 0);
    compare(record_b(cfg), &TINY, "loop + lanes + VE + bigram + out gate + smear v1 + poly5 + z-loss", 1);
    compare(record_b(cfg), &TINY, "the same before the loop switches on", 0);
    compare(record_c(cfg), &TINY, "loop x2 + GPT-J parallel + dense gate + varlen + smear v2", 1);
    compare(cfg, &WIDER, "wider baseline (d 32, 8/4 heads, 16 tokens)", 0);
    struct pg_config wa = record_a(cfg);
    wa.gate_window = 12;
    compare(wa, &WIDER, "wider xsa + sparse gate + skip gates + smear v2 + varlen", 0);
    compare_bf16(cfg, &WIDER, "bf16, wider baseline");
    struct pg_config leaky = cfg;
    leaky.mlp_leaky_slope = 0.5;
    compare_bf16(leaky, &WIDER, "bf16, LeakyReLU(0.5)²");
    compare_bf16(record_b(cfg), &TINY, "bf16, lanes + VE + bigram + out gate + ... (no loop)");
    compare_bf16(record_c(cfg), &TINY, "bf16, GPT-J parallel + dense gate + varlen + smear v2 (no loop)");
    compare_lean(cfg, &WIDER, "lean, bf16, wider baseline", 0, 0);
    compare_lean(record_b(cfg), &TINY, "lean, bf16, lanes + VE + bigram + ...", 0, 0);
    compare_lean(record_c(cfg), &TINY, "lean, bf16, GPT-J parallel + dense gate + varlen", 0, 0);
    compare_lean(wa, &WIDER, "lean, bf16, wider xsa + sparse gate + skip gates + varlen", 0, 0);
    compare_lean(cfg, &FLASH, "lean, bf16 flash, baseline", 1, 1);
    compare_lean(record_a(cfg), &FLASH, "lean, bf16 flash, xsa + gates + varlen", 1, 0);
    /* the plain chains the fused forms replace (PG_FUSED=0) */
    unfused = 1;
    compare(cfg, &TINY, "baseline, fused forms off", 0);
    compare(record_b(cfg), &TINY, "loop + lanes + VE + bigram + ..., fused forms off", 1);
    compare(wa, &WIDER, "wider xsa + ..., fused forms off", 0);
    unfused = 0;
    /* last: the random inputs of the comparisons above stay what they were (the bf16 ones meet a
     * bf16 rounding boundary on other data: compare_bf16's comment) */
    compare_qk16(cfg, "bf16 flash, q and k in bf16: baseline");
    compare_qk16(record_a(cfg), "bf16 flash, q and k in bf16: xsa + gates + varlen");
    return parity_done(GRAD_TOL);
}
