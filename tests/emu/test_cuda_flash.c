/* test_cuda_flash.c: the fused (flash) attention of kernels/cuda/flash.cu, forward and backward,
 * causal, grouped-query (every ratio), with documents (varlen), head dims 16/32/64/128, lengths
 * 1 to 200 (partial tiles, documents of one token), against the CPU backend. Built twice
 * (Makefile): test_cuda_flash_emu on the emulator in every `make check` (the tensor-core product
 * is then mma.cuh's shuffle fallback, which checks every fragment's layout), test_cuda_flash_gpu
 * on a GPU under `make check-gpu` (mma.sync itself).
 *
 * What is compared. The flash kernels compute in bf16 what the CPU's bf16 mode does, but the
 * forward rounds the running (unnormalized) probabilities to bf16 where the CPU rounds the
 * normalized ones, and the two sides' fp32 exponentials differ by an ulp or two (exp2 against
 * exp, other sum orders), so their bf16 roundings differ here and there: the results agree to
 * bf16 rounding, not fp32 ulps. Each output x (out, lse, dq, dk, dv) is therefore judged
 * against the fp32 attention of the CPU, ref:
 *   - accuracy: rms(flash − ref) ≤ 1.5·rms(cpu_bf16 − ref) + 1e-6·s, and not below a quarter
 *     of it (the flash result is really bf16's: at a tenth of the error it would not be), where
 *     s = max(rms(ref), floor) is the output's scale;
 *   - agreement: every element within 2^-6·(|cpu_bf16| + s) of the CPU's bf16 result;
 *   - the backward rounds where the CPU does (P is normalized there), so dq, dk and dv must
 *     also agree to 1e-5 of the scale but for at most 1% of their elements (a rounding flip
 *     moves one row; a rounding missing or added moves nearly all of them).
 * lse passes through no rounded operand but the scores', so it must agree to 1e-5 besides.
 * dq and dk of a one-token softmax are cancellation residue, so their floor is rms(dv).
 * Planted bugs (documents ignored, keys off by one row) must fail the same judgment.
 * The kernels write every output element (outputs start as NaN: the emulator fills new device
 * memory with 0xff bytes), rerun to the same bits (no atomics), and are what the attention
 * operations run in bf16 mode, bit for bit. */
#include "parity.h"

#include "../../lib/optim.h" /* pg_bf16_round */

#define LSE_TOL 1e-5
#define AGREE_TOL 0x1p-6
#define TIGHT_TOL 1e-5
#define TIGHT_SHARE 0.01

static double rms_diff(const float *a, const float *b, size_t n)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return n ? sqrt(ss / n) : 0;
}

/* The judgment above of one output; quiet: no TAP line, only the verdict (for planted bugs). */
static int judge(const char *name, const char *what, const float *fl, const float *bf, const float *ref, size_t n,
                 double floor, int tight, int quiet)
{
    double s = fmax(rms_of(ref, n), floor), ef = rms_diff(fl, ref, n) / s, ec = rms_diff(bf, ref, n) / s, worst, w2;
    int accurate = ef <= 1.5 * ec + 1e-6 && (ec < 1e-5 || ef >= ec / 4);
    size_t off = mismatches(fl, bf, n, AGREE_TOL, s, &worst);
    size_t loose = tight ? mismatches(fl, bf, n, TIGHT_TOL, s, &w2) : 0;
    int pass = accurate && off == 0 && loose <= TIGHT_SHARE * (double)n;
    if (!quiet) {
        ok(pass, "flash %s %s: error %.2e against fp32 (the CPU's bf16: %.2e); beyond %g of bf16's: %zu of %zu%s",
           name, what, ef, ec, AGREE_TOL, off, n, tight ? "" : " (forward: no tighter rule)");
        if (tight) diag("  %zu beyond %g (at most %.0f); worst %.2e", loose, TIGHT_TOL, TIGHT_SHARE * (double)n, w2);
        if (worst > worst_seen) worst_seen = worst;
        compared++;
    }
    return pass;
}

struct att {
    float *out, *lse, *dq, *dk, *dv;
    int out16_ok; /* x16 runs: the bf16 copy of out is out (rounded) bit for bit, with or without out;
                   * and the backward's dv16 is dv rounded, dq and dk as without it, dv untouched */
};

struct shape {
    int b, t, h, kv, hd;
    const int *lens;
    int nlens;
};

/* The CPU's attention (fp32 or bf16 mode) forward; backward from the given out and lse. */
static void cpu_att(struct att *a, const struct shape *s, const float *q, const float *k, const float *v,
                    const float *dout, const int32_t *ds, const float *out, const float *lse, int bf16)
{
    size_t nq = (size_t)s->b * s->t * s->h * s->hd, nk = (size_t)s->b * s->t * s->kv * s->hd;
    size_t nl = (size_t)s->b * s->h * s->t;
    double scale = 1 / sqrt((double)s->hd);
    float *work = hnew(cpu->attention_work(s->t));
    cpu->set_bf16(bf16);
    a->out = hnew(nq), a->lse = hnew(nl), a->dq = hnew(nq), a->dk = hnew(nk), a->dv = hnew(nk);
    cpu->attention_varlen_fwd(a->out, a->lse, q, k, v, ds, s->b, s->t, s->h, s->kv, s->hd, scale, work);
    cpu->attention_varlen_bwd(a->dq, a->dk, a->dv, dout, out ? out : a->out, lse ? lse : a->lse, q, k, v, ds, s->b,
                              s->t, s->h, s->kv, s->hd, scale, work);
    cpu->set_bf16(0);
}

/* n floats rounded to bf16, as bf16 bit patterns (a new host array). */
static uint16_t *bf16_of(const float *h, size_t n)
{
    uint16_t *b = hkeep(malloc((n ? n : 1) * sizeof *b));
    for (size_t i = 0; i < n; i++) {
        float r = pg_bf16_round(h[i]);
        uint32_t u;
        memcpy(&u, &r, sizeof u);
        b[i] = (uint16_t)(u >> 16);
    }
    return b;
}

/* A device copy of n floats rounded to bf16. */
static uint16_t *dev_bf16(const float *h, size_t n)
{
    uint16_t *d = dnew(n * sizeof *d);
    pg_cuda_upload(d, bf16_of(h, n), n * sizeof *d);
    return d;
}

/* The flash kernels on device copies of the inputs (x16: q and k handed over in bf16, the
 * flash_*_x16 entries, whose backward takes out in bf16); backward from the given out and lse. */
static void flash_att(struct att *a, const struct shape *s, const float *q, const float *k, const float *v,
                      const float *dout, const int32_t *ds, const float *out, const float *lse, int x16)
{
    size_t nq = (size_t)s->b * s->t * s->h * s->hd, nk = (size_t)s->b * s->t * s->kv * s->hd;
    size_t nl = (size_t)s->b * s->h * s->t;
    double scale = 1 / sqrt((double)s->hd);
    float *d_q = dev(q, nq), *d_k = dev(k, nk), *d_v = dev(v, nk), *d_dout = dev(dout, nq);
    float *d_out = dnew(nq * 4), *d_lse = dnew(nl * 4), *d_dq = dnew(nq * 4), *d_dk = dnew(nk * 4);
    float *d_dv = dnew(nk * 4), *d_outc = dev(out, nq), *d_lsec = dev(lse, nl);
    int32_t *d_ds = ds ? dev_ids(ds, (size_t)s->b * s->t) : NULL;
    if (x16) {
        uint16_t *q16 = dev_bf16(q, nq), *k16 = dev_bf16(k, nk), *d_out16 = dnew(nq * 2);
        uint16_t *got = hkeep(malloc(nq * 2 + 2));
        memset(got, 0xff, nq * 2);
        pg_cuda_upload(d_out16, got, nq * 2); /* poisoned: NaN patterns */
        pg_cuda_flash_fwd_x16(d_out, d_out16, d_lse, q16, k16, d_v, NULL, d_ds, s->b, s->t, s->h, s->kv, s->hd, scale);
        pg_cuda_download(got, d_out16, nq * 2);
        a->out16_ok = memcmp(got, bf16_of(back(d_out, nq), nq), nq * 2) == 0;
        /* again without out, and v given in bf16 (the kernels round it so on loading: the same bits) */
        uint16_t *v16 = dev_bf16(v, nk);
        pg_cuda_flash_fwd_x16(NULL, d_out16, d_lse, q16, k16, NULL, v16, d_ds, s->b, s->t, s->h, s->kv, s->hd, scale);
        uint16_t *alone = hkeep(malloc(nq * 2 + 2));
        pg_cuda_download(alone, d_out16, nq * 2);
        a->out16_ok = a->out16_ok && memcmp(got, alone, nq * 2) == 0;
        uint16_t *d_o16 = dev_bf16(out, nq), *d_dv16 = dnew(nk * 2 + 2), *dv16 = hkeep(malloc(nk * 2 + 2));
        pg_cuda_flash_bwd_x16(d_dq, d_dk, d_dv, NULL, d_dout, d_o16, d_lsec, q16, k16, d_v, NULL, d_ds, s->b, s->t,
                              s->h, s->kv, s->hd, scale);
        /* dv in bf16 instead, v given in bf16 (dq, dk into fresh buffers, dv's poisoned: not to be
         * written) */
        float *d_dq2 = dnew(nq * 4), *d_dk2 = dnew(nk * 4), *nan = hnew(nk);
        for (size_t i = 0; i < nk; i++) nan[i] = NAN;
        float *d_dv2 = dev(nan, nk);
        pg_cuda_flash_bwd_x16(d_dq2, d_dk2, d_dv2, d_dv16, d_dout, d_o16, d_lsec, q16, k16, NULL, v16, d_ds, s->b,
                              s->t, s->h, s->kv, s->hd, scale);
        pg_cuda_download(dv16, d_dv16, nk * 2);
        float *gdv2 = back(d_dv2, nk);
        a->out16_ok = a->out16_ok && memcmp(dv16, bf16_of(back(d_dv, nk), nk), nk * 2) == 0 &&
                      same_bits(back(d_dq2, nq), back(d_dq, nq), nq) &&
                      same_bits(back(d_dk2, nk), back(d_dk, nk), nk) &&
                      (nk == 0 || (isnan(gdv2[0]) && isnan(gdv2[nk - 1])));
    } else {
        a->out16_ok = 0;
        pg_cuda_flash_fwd(d_out, d_lse, d_q, d_k, d_v, d_ds, s->b, s->t, s->h, s->kv, s->hd, scale);
        pg_cuda_flash_bwd(d_dq, d_dk, d_dv, d_dout, d_outc, d_lsec, d_q, d_k, d_v, d_ds, s->b, s->t, s->h, s->kv,
                          s->hd, scale);
    }
    a->out = back(d_out, nq), a->lse = back(d_lse, nl), a->dq = back(d_dq, nq), a->dk = back(d_dk, nk);
    a->dv = back(d_dv, nk);
}

static int same_att(const struct att *x, const struct att *y, const struct shape *s)
{
    size_t nq = (size_t)s->b * s->t * s->h * s->hd, nk = (size_t)s->b * s->t * s->kv * s->hd;
    size_t nl = (size_t)s->b * s->h * s->t;
    return same_bits(x->out, y->out, nq) && same_bits(x->lse, y->lse, nl) && same_bits(x->dq, y->dq, nq) &&
           same_bits(x->dk, y->dk, nk) && same_bits(x->dv, y->dv, nk);
}

/* Every output judged (quiet: the number that fail, no TAP lines). */
static int judge_all(const char *what, const struct att *f, const struct att *bf, const struct att *ref,
                     const struct shape *s, int quiet)
{
    size_t nq = (size_t)s->b * s->t * s->h * s->hd, nk = (size_t)s->b * s->t * s->kv * s->hd;
    size_t nl = (size_t)s->b * s->h * s->t;
    double fl = rms_of(ref->dv, nk), worst;
    int failed = !judge("out", what, f->out, bf->out, ref->out, nq, 0, 0, quiet);
    failed += !judge("dq", what, f->dq, bf->dq, ref->dq, nq, fl, 1, quiet);
    failed += !judge("dk", what, f->dk, bf->dk, ref->dk, nk, fl, 1, quiet);
    failed += !judge("dv", what, f->dv, bf->dv, ref->dv, nk, 0, 1, quiet);
    size_t off = mismatches(f->lse, bf->lse, nl, LSE_TOL, 0, &worst);
    failed += off != 0;
    if (!quiet) ok(off == 0, "flash lse %s: %zu of %zu beyond %g of the CPU's bf16 lse (worst %.2e)", what, off, nl,
                   LSE_TOL, worst);
    return failed;
}

static void test_flash(struct shape s)
{
    char what[128];
    snprintf(what, sizeof what, "b=%d t=%d h=%d kv=%d hd=%d%s", s.b, s.t, s.h, s.kv, s.hd, s.lens ? " documents" : "");
    size_t nq = (size_t)s.b * s.t * s.h * s.hd, nk = (size_t)s.b * s.t * s.kv * s.hd;
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    int32_t *ds = doc_starts(s.b, s.t, s.lens, s.nlens);
    int several = 0; /* a row with more than one key (else dq and dk are 0, P is 1) */
    for (int i = 0; i < s.b * s.t; i++) several |= i % s.t > (ds ? ds[i] : 0);
    struct att ref, bf, f, again;
    cpu_att(&ref, &s, q, k, v, dout, ds, NULL, NULL, 0);
    cpu_att(&bf, &s, q, k, v, dout, ds, NULL, NULL, 1);
    /* the backward starts from the CPU's bf16 out and lse on both bf16 sides */
    flash_att(&f, &s, q, k, v, dout, ds, bf.out, bf.lse, 0);
    judge_all(what, &f, &bf, &ref, &s, 0);

    flash_att(&again, &s, q, k, v, dout, ds, bf.out, bf.lse, 0);
    ok(same_att(&f, &again, &s), "flash %s: a rerun gives the same bits", what);
    /* the _x16 entries store the output as autocast does (rounded to bf16) and take it so in the
     * backward: the fp32 entries' bits with that output rounded, given rounded to their backward */
    float *outr = copy(bf.out, nq);
    struct att fr;
    cpu->round_bf16(outr, nq);
    flash_att(&fr, &s, q, k, v, dout, ds, outr, bf.lse, 0);
    cpu->round_bf16(fr.out, nq);
    flash_att(&again, &s, q, k, v, dout, ds, outr, bf.lse, 1);
    ok(same_att(&fr, &again, &s), "flash %s: q and k given in bf16 (the _x16 entries), the same bits", what);
    ok(again.out16_ok, "flash %s: the output's bf16 copy is the output rounded, and dv16 dv, bit for bit", what);

    /* planted bugs: the documents ignored; the keys and values one row off (v rotated by a row) */
    struct att bug;
    if (ds) {
        flash_att(&bug, &s, q, k, v, dout, NULL, bf.out, bf.lse, 0);
        ok(judge_all(what, &bug, &bf, &ref, &s, 1) > 0, "flash %s: ignoring the documents is caught", what);
    }
    if (several) { /* halfway between the fp32 and bf16 gradients: a rounding missing */
        float *half = hnew(nq);
        for (size_t i = 0; i < nq; i++) half[i] = (f.dq[i] + ref.dq[i]) / 2;
        double fl = rms_of(ref.dv, nk);
        ok(!judge("dq", what, half, bf.dq, ref.dq, nq, fl, 1, 1), "flash %s: a dq with a rounding missing is caught",
           what);
    }
    if (s.t > 1) {
        size_t row = (size_t)s.kv * s.hd;
        float *k1 = hnew(nk), *v1 = hnew(nk);
        for (size_t i = 0; i < nk; i++) k1[i] = k[(i + row) % nk], v1[i] = v[(i + row) % nk];
        flash_att(&bug, &s, q, k1, v1, dout, ds, bf.out, bf.lse, 0);
        ok(judge_all(what, &bug, &bf, &ref, &s, 1) > 0, "flash %s: keys and values a row off are caught", what);
    }

    /* what the attention operations run in bf16 mode, and only there */
    double scale = 1 / sqrt((double)s.hd);
    size_t nl = (size_t)s.b * s.h * s.t;
    float *d_q = dev(q, nq), *d_k = dev(k, nk), *d_v = dev(v, nk), *d_out = dnew(nq * 4), *d_lse = dnew(nl * 4);
    float *d_work = dnew(pg_cuda_attention_work(s.t) * 4);
    int32_t *d_ds = ds ? dev_ids(ds, (size_t)s.b * s.t) : NULL;
    pg_cuda_set_bf16(1);
    pg_cuda_attention_varlen_fwd(d_out, d_lse, d_q, d_k, d_v, d_ds, s.b, s.t, s.h, s.kv, s.hd, scale, d_work);
    ok(same_bits(back(d_out, nq), f.out, nq) && same_bits(back(d_lse, nl), f.lse, nl),
       "flash %s: attention_varlen_fwd in bf16 mode runs the fused kernel", what);
    pg_cuda_attention_flash(0);
    pg_cuda_attention_varlen_fwd(d_out, d_lse, d_q, d_k, d_v, d_ds, s.b, s.t, s.h, s.kv, s.hd, scale, d_work);
    if (several) /* the two paths round P differently */
        ok(!same_bits(back(d_out, nq), f.out, nq), "flash %s: pg_cuda_attention_flash(0) runs the batched products",
           what);
    pg_cuda_attention_flash(1);
    pg_cuda_set_bf16(0);
}

int main(void)
{
    parity_seed = 4242;
    parity_start();
    static const int docs[] = {5, 1, 12, 1, 1, 30}, ones[] = {1}, longer[] = {70, 3, 1, 90};
    struct shape shapes[] = {
        {1, 1, 2, 2, 16, NULL, 0},    /* one token */
        {2, 37, 4, 2, 16, NULL, 0},   /* a partial tile, GQA 2:1 */
        {1, 64, 4, 4, 32, NULL, 0},   /* exactly one tile, no grouping */
        {1, 65, 4, 1, 64, NULL, 0},   /* one row into the second tile, GQA 4:1 */
        {1, 130, 2, 1, 64, NULL, 0},  /* three tiles */
        {1, 70, 2, 2, 128, NULL, 0},  /* the widest head */
        {2, 37, 4, 2, 16, docs, 6},   /* documents, some of one token */
        {1, 9, 3, 1, 32, ones, 1},    /* every token its own document, GQA 3:1 */
        {1, 200, 2, 1, 64, longer, 4}, /* documents across tile edges: tiles skipped both ways */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) test_flash(shapes[i]);
    ok(pg_cuda_flash_supported(64) && pg_cuda_flash_supported(128) && !pg_cuda_flash_supported(12) &&
           !pg_cuda_flash_supported(256),
       "flash supports head dims 16, 32, 64, 128 only");
    return parity_done(AGREE_TOL);
}
