/* test_qfit.c: selective ±1 pruning to a packed-size target (lib/qfit.h).
 *
 * Checked independently: the pruned weights are exactly the k cheapest ±1 weights by s_row²
 * (the ordering recomputed here from the unpruned model), nothing else changes, the artifact
 * packed by pg_pack_pgq is within the target while restoring the k-th weight puts it over, the
 * reported sizes are the real ones, the errors are measured again, and an unreachable target
 * leaves the model as it was. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"
#include "../../lib/backend.h"
#include "../../lib/err.h"
#include "../../lib/pgq.h"
#include "../../lib/qfit.h"
#include "../../lib/rng.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct ref {
    double cost;
    int tensor;
    int64_t elem;
};

static int ref_cmp(const void *pa, const void *pb)
{
    const struct ref *a = pa, *b = pb;
    if (a->cost != b->cost) return a->cost < b->cost ? -1 : 1;
    if (a->tensor != b->tensor) return a->tensor < b->tensor ? -1 : 1;
    return a->elem < b->elem ? -1 : a->elem > b->elem;
}

static uint64_t packed(const struct pg_qmodel *qm, const struct pg_pack_opts *o)
{
    uint64_t b = 0;
    if (pg_fit_packed_bytes(qm, o, &b)) bail_out("pack: %s", pg_error_message());
    return b;
}

static int calls;
static void count_progress(void *ctx, int64_t pruned, uint64_t bytes)
{
    (void)ctx, (void)pruned, (void)bytes;
    calls++;
}

int main(void)
{
    struct pg_config c;
    pg_config_default(&c);
    c.vocab_size = 64, c.num_layers = 2, c.model_dim = 32, c.num_heads = 4, c.num_kv_heads = 2, c.mlp_mult = 2;
    c.train_seq_len = 16;
    struct pg_model m;
    if (pg_config_validate(&c, 0) || pg_model_init(&m, &c, &pg_backend_cpu, 0)) bail_out("model");
    pg_model_init_weights(&m, 3);
    struct pg_rng r;
    pg_rng_seed(&r, 5);
    for (size_t i = 0; i < m.nparams; i++) m.params[i] += (pg_real)(0.05 * pg_rng_normal(&r));
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, PG_QSCHEME_INTN, 5);
    o.keep_float_max = 100;
    struct pg_pack_opts po = {.mode = PG_PACK_WHOLE, .codec = PG_CODEC_ZLIB};
    struct pg_qmodel base, qm;
    if (pg_quantize_model(&m, &o, &base) || pg_quantize_model(&m, &o, &qm)) bail_out("quantize");
    uint64_t start = packed(&base, &po);

    /* the ±1 weights by cost s_r², computed here */
    int64_t n = 0;
    for (int i = 0; i < base.ntensors; i++)
        if (base.t[i].kind == PG_QKIND_INT)
            for (uint64_t j = 0; j < base.t[i].data_len; j++) n += abs(((const int8_t *)base.t[i].data)[j]) == 1;
    struct ref *refs = malloc((size_t)n * sizeof *refs);
    int64_t k = 0;
    for (int i = 0; i < base.ntensors; i++) {
        const struct pg_qtensor *t = &base.t[i];
        if (t->kind != PG_QKIND_INT) continue;
        for (int64_t e = 0; e < t->rows * t->cols; e++)
            if (abs(((const int8_t *)t->data)[e]) == 1) {
                double s = pg_qtensor_scale(t, e / t->cols);
                refs[k++] = (struct ref){s * s, i, e};
            }
    }
    qsort(refs, (size_t)n, sizeof *refs, ref_cmp);

    /* a model already within the target is left alone */
    struct pg_fit_report rep;
    is_int(pg_fit_prune(&qm, &m, NULL, start, &po, &rep, NULL, NULL), 0, "target = the current size");
    ok(rep.pruned == 0 && rep.start_bytes == start && rep.final_bytes == start && rep.packs == 1,
       "... nothing pruned, one pack (%" PRIu64 " bytes)", start);

    uint64_t target = start - start / 25; /* 4% smaller */
    calls = 0;
    is_int(pg_fit_prune(&qm, &m, NULL, target, &po, &rep, count_progress, NULL), 0, "target %" PRIu64 " (start %" PRIu64
           ")", target, start);
    uint64_t got = packed(&qm, &po);
    ok(got == rep.final_bytes && got <= target && got >= target - target / 1000,
       "the artifact is %" PRIu64 " bytes: within the target and within 0.1%% of it", got);
    ok(rep.candidates == n && rep.pruned > 0 && rep.pruned < n, "%" PRId64 " of the %" PRId64 " weights at ±1 pruned",
       rep.pruned, n);
    ok(calls == rep.packs && rep.packs <= 2 + 64 + 8, "progress after each of the %d packs", rep.packs);
    /* brotli's size jumps by tens of bytes at a time, a lot for this 7 KB artifact (0.1% of it is
     * 7 bytes; of a 16 MB one 16,000): within 1% here */
    struct pg_pack_opts pb = {.mode = PG_PACK_WHOLE, .codec = PG_CODEC_BROTLI};
    struct pg_qmodel q3;
    if (pg_quantize_model(&m, &o, &q3)) bail_out("quantize");
    uint64_t sb = packed(&q3, &pb), tb = sb - sb / 25;
    struct pg_fit_report rb;
    is_int(pg_fit_prune(&q3, &m, NULL, tb, &pb, &rb, NULL, NULL), 0, "brotli: target %" PRIu64 " (start %" PRIu64 ")",
           tb, sb);
    uint64_t gb = packed(&q3, &pb);
    ok(gb == rb.final_bytes && gb <= tb && gb >= tb - tb / 100, "brotli: %" PRIu64 " bytes, within 1%% under (%d packs)",
       gb, rb.packs);
    pg_qmodel_free(&q3);
    /* exactly the cheapest rep.pruned changed, to 0; nothing else */
    int64_t changed = 0, wrong = 0;
    for (int i = 0; i < qm.ntensors; i++) {
        const struct pg_qtensor *a = &base.t[i], *b = &qm.t[i];
        if (a->kind != PG_QKIND_INT) {
            if (memcmp(a->data, b->data, a->data_len)) wrong++;
            continue;
        }
        if (memcmp(a->scales, b->scales, a->scale_len)) wrong++;
        for (uint64_t j = 0; j < a->data_len; j++)
            if (a->data[j] != b->data[j]) changed++, wrong += b->data[j] != 0;
    }
    /* the pruned ones are the cheapest by s_row², but for at most 8 of them given back at the end
     * (qfit.h: the refinement for codecs whose size jumps) */
    int64_t in_prefix = 0, lastp = -1;
    for (int64_t i = 0; i < n; i++)
        if (qm.t[refs[i].tensor].data[refs[i].elem] == 0) {
            in_prefix += i < rep.pruned + 8;
            lastp = i;
        }
    ok(changed == rep.pruned && !wrong && in_prefix == rep.pruned && lastp < rep.pruned + 8,
       "the %" PRId64 " pruned are among the cheapest by s_row², and became 0; scales and floats unchanged", rep.pruned);
    /* one fewer would not fit: the costliest pruned one back */
    int8_t *last = (int8_t *)(uintptr_t)qm.t[refs[lastp].tensor].data + refs[lastp].elem;
    *last = ((const int8_t *)base.t[refs[lastp].tensor].data)[refs[lastp].elem];
    uint64_t one_less = packed(&qm, &po);
    ok(one_less > target, "with the last pruned weight back the artifact is over the target (%" PRIu64 ")", one_less);
    *last = 0;
    /* the errors were measured again: above the unpruned ones where weights went */
    int remeasured = 1;
    for (int i = 0; i < qm.ntensors; i++) {
        if (qm.t[i].kind != PG_QKIND_INT) continue;
        int touched = memcmp(qm.t[i].data, base.t[i].data, qm.t[i].data_len) != 0;
        if (touched ? !(qm.t[i].rel_err > base.t[i].rel_err) : qm.t[i].rel_err != base.t[i].rel_err) remeasured = 0;
    }
    ok(remeasured, "rel_err measured again: higher where weights were pruned, the same elsewhere");

    /* an unreachable target: an error naming the smallest size, the model unchanged */
    struct pg_qmodel q2;
    if (pg_quantize_model(&m, &o, &q2)) bail_out("quantize");
    int rc = pg_fit_prune(&q2, &m, NULL, start / 3, &po, &rep, NULL, NULL);
    ok(rc == PG_E_INVAL && strstr(pg_error_message(), "cannot be reached"), "a third of the size: '%s'",
       pg_error_message());
    int same = 1;
    for (int i = 0; i < q2.ntensors; i++) same &= !memcmp(q2.t[i].data, base.t[i].data, base.t[i].data_len);
    ok(same, "... and the model is as it was");
    /* a model read from a file cannot be pruned in place */
    unsigned char *buf;
    size_t len;
    struct pg_qmodel rd;
    if (pg_pgq_serialize(&base, &buf, &len) || pg_pgq_parse(buf, len, "x.pgq", &rd)) bail_out("parse");
    ok(pg_fit_prune(&rd, &m, NULL, target, &po, &rep, NULL, NULL) == PG_E_INVAL, "a parsed model is refused: '%s'",
       pg_error_message());
    pg_qmodel_free(&rd);
    free(buf);
    free(refs);
    pg_qmodel_free(&q2);
    pg_qmodel_free(&qm);
    pg_qmodel_free(&base);
    pg_model_free(&m);
    return done_testing();
}
