/* test_pack: .pgq ⇄ .pga (lib/pack.c). Both modes give back the identical .pgq bytes; the
 * per-group mode puts every integer tensor of a role in its stream, transposed, and nothing else
 * (the group streams hold exactly the integer bytes; the rest is the .pgq minus them); and a
 * "cuts" list that is wrong in any of the ways a reader must notice (bad magic, wrong count,
 * a cut naming the wrong stream, skipping or overrunning a stream's bytes, out of order, a
 * stream not fully used) is refused, even though every CRC of such an artifact is valid. */
#include "../../lib/err.h"
#include "../../lib/model.h"
#include "../../lib/pack.h"
#include "../../lib/pgq.h"
#include "../../lib/quant.h"
#include "../../lib/rng.h"
#include "../../lib/xio.h"
#include "../tap.h"

#include <stdlib.h>
#include <string.h>

/* A 3-layer model quantized intN (bits) with every matrix an integer tensor. */
static int make_pgq_bits(unsigned char **buf, size_t *len, int bits)
{
    struct pg_config c;
    pg_config_default(&c);
    c.vocab_size = 40, c.num_layers = 3, c.model_dim = 16, c.num_heads = 2, c.num_kv_heads = 1, c.mlp_mult = 2;
    c.train_seq_len = 16;
    struct pg_model m;
    if (pg_model_init(&m, &c, &pg_backend_cpu, 0)) return -1;
    pg_model_init_weights(&m, 3);
    struct pg_rng r;
    pg_rng_seed(&r, 5);
    for (size_t i = 0; i < m.nparams; i++) m.params[i] += (pg_real)(0.05 * pg_rng_normal(&r));
    struct pg_quant_opts o;
    pg_quant_opts_default(&o, PG_QSCHEME_INTN, bits);
    o.keep_float_max = 64;
    struct pg_qmodel qm;
    int rc = pg_quantize_model(&m, &o, &qm);
    if (!rc) rc = pg_pgq_serialize(&qm, buf, len);
    pg_qmodel_free(&qm);
    pg_model_free(&m);
    return rc;
}

static int make_pgq(unsigned char **buf, size_t *len) { return make_pgq_bits(buf, len, 6); }

static int unpack(const unsigned char *art, size_t n, unsigned char **pgq, size_t *pn)
{
    struct pg_pga a;
    memset(&a, 0, sizeof a);
    int rc = pg_pga_parse(&a, art, n, "t.pga");
    if (!rc) rc = pg_unpack_pgq(&a, pgq, pn);
    pg_pga_close(&a);
    return rc;
}

/* The decoded streams of a per-group artifact, to rebuild with a doctored "cuts". */
struct parts {
    size_t n;
    struct pg_pga_input in[32];
    unsigned char *raw[32];
};

static int split(const unsigned char *art, size_t n, struct parts *p)
{
    struct pg_pga a;
    memset(&a, 0, sizeof a);
    if (pg_pga_parse(&a, art, n, "t.pga") || a.n > 32 || pg_pga_decode_all(&a, p->raw)) return -1;
    p->n = a.n;
    for (size_t i = 0; i < a.n; i++) {
        char *name = malloc(PG_PGA_NAME_BYTES);
        memcpy(name, a.streams[i].name, PG_PGA_NAME_BYTES);
        p->in[i] = (struct pg_pga_input){.name = name, .data = p->raw[i], .size = a.streams[i].raw_size,
                                         .codec = PG_CODEC_RAW, .xform = a.streams[i].xform};
    }
    pg_pga_close(&a);
    return 0;
}

static void parts_free(struct parts *p)
{
    for (size_t i = 0; i < p->n; i++) free((void *)p->in[i].name), free(p->raw[i]);
}

/* Rebuilds the artifact with cuts entry k's field at byte `field` (0 offset, 8 length, 16 stream,
 * 20 stream offset; k = -1: the header, field 0 magic / 4 count) set to v, and unpacks it. */
static int doctored(const struct parts *p, long k, int field, uint64_t v, char *msg, size_t msgn)
{
    size_t ic = 0;
    while (ic < p->n && strcmp(p->in[ic].name, "cuts")) ic++;
    unsigned char *cuts = malloc(p->in[ic].size);
    memcpy(cuts, p->in[ic].data, p->in[ic].size);
    unsigned char *at = k < 0 ? cuts + field : cuts + 8 + 28 * k + field;
    if (k < 0 || field == 16) pg_le32_put(at, (uint32_t)v);
    else pg_le64_put(at, v);
    struct pg_pga_input in[32];
    memcpy(in, p->in, p->n * sizeof *in);
    in[ic].data = cuts;
    unsigned char *art, *pgq = NULL;
    size_t an, pn;
    int rc = pg_pga_build(in, p->n, &art, &an);
    if (!rc) rc = unpack(art, an, &pgq, &pn);
    snprintf(msg, msgn, "%s", rc ? pg_error_message() : "(accepted)");
    if (!rc) free(pgq);
    if (!rc || art) free(art);
    free(cuts);
    return rc;
}

int main(void)
{
    unsigned char *pgq;
    size_t n;
    if (make_pgq(&pgq, &n)) {
        diag("%s", pg_error_message());
        return 1;
    }
    struct pg_qmodel qm;
    memset(&qm, 0, sizeof qm);
    ok(pg_pgq_parse(pgq, n, "t.pgq", &qm) == 0, "a small int6 .pgq (%zu bytes)", n);

    /* whole mode, each library codec: identical bytes back */
    enum pg_codec codecs[] = {PG_CODEC_RAW, PG_CODEC_ZLIB, PG_CODEC_LZMA, PG_CODEC_BROTLI};
    for (size_t c = 0; c < sizeof codecs / sizeof *codecs; c++) {
        struct pg_pack_opts o = {.mode = PG_PACK_WHOLE, .codec = codecs[c]};
        unsigned char *art = NULL, *back = NULL;
        size_t an = 0, bn = 0;
        int rc = pg_pack_pgq(pgq, n, "t.pgq", &o, &art, &an);
        if (!rc) rc = unpack(art, an, &back, &bn);
        ok(!rc && bn == n && memcmp(back, pgq, n) == 0, "whole, %s: %zu bytes, the identical .pgq back",
           pg_codec_name(codecs[c]), an);
        free(art), free(back);
    }

    /* per-group with raw codecs, so the streams can be inspected */
    struct pg_pack_opts o = {.mode = PG_PACK_PER_GROUP, .group_codec = PG_CODEC_RAW, .rest_codec = PG_CODEC_RAW};
    unsigned char *art = NULL, *back = NULL;
    size_t an = 0, bn = 0;
    int rc = pg_pack_pgq(pgq, n, "t.pgq", &o, &art, &an);
    if (!rc) rc = unpack(art, an, &back, &bn);
    ok(!rc && bn == n && memcmp(back, pgq, n) == 0, "per-group: the identical .pgq back");
    free(back);

    struct pg_pga a;
    memset(&a, 0, sizeof a);
    pg_pga_parse(&a, art, an, "t.pga");
    uint64_t int_bytes = 0, group_bytes = 0;
    int nint = 0, shape_ok = 1, order_ok = 1;
    for (int i = 0; i < qm.ntensors; i++)
        if (qm.t[i].kind == PG_QKIND_INT) int_bytes += qm.t[i].data_len, nint++;
    for (size_t s = 0; s < a.n; s++) {
        if (!strcmp(a.streams[s].name, "cuts") || !strcmp(a.streams[s].name, "rest")) continue;
        group_bytes += a.streams[s].raw_size;
        /* the stream is the role's tensors in model order, and transposed by their shape */
        unsigned char *raw;
        if (pg_pga_decode(&a, s, &raw)) return 1;
        uint64_t off = 0;
        for (int i = 0; i < qm.ntensors; i++) {
            const struct pg_qtensor *t = &qm.t[i];
            if (t->kind != PG_QKIND_INT || strcmp(pg_qrole_name(t->role), a.streams[s].name)) continue;
            if (a.streams[s].xform.id != PG_XFORM_TRANSPOSE || a.streams[s].xform.rows != (uint64_t)t->rows ||
                a.streams[s].xform.cols != (uint64_t)t->cols)
                shape_ok = 0;
            if (off + t->data_len > a.streams[s].raw_size || memcmp(raw + off, pgq + t->data_off, t->data_len))
                order_ok = 0;
            off += t->data_len;
        }
        if (off != a.streams[s].raw_size) order_ok = 0;
        free(raw);
    }
    long ir = pg_pga_find(&a, "rest"), ic = pg_pga_find(&a, "cuts");
    ok(ir >= 0 && ic >= 0 && a.n == 2 + 7, "per-group: streams cuts, rest and one per role (%zu streams)", a.n);
    is_int((long long)group_bytes, (long long)int_bytes, "the group streams hold exactly the integer bytes");
    is_int(ir >= 0 ? (long long)a.streams[ir].raw_size : -1, (long long)(n - int_bytes),
           "the rest is the .pgq without them");
    is_int(ic >= 0 ? (long long)a.streams[ic].raw_size : -1, 8 + 28LL * nint, "one 28-byte cut per integer tensor");
    ok(shape_ok, "every group stream is transposed by its layers' shape");
    ok(order_ok, "every group stream is its role's tensors in model order");
    pg_pga_close(&a);

    /* per-group with pgac at several widths: identical bytes back, every group a pgac stream in
     * row-major order (no transform), the encoder's statistics add up */
    for (int bits = 2; bits <= 8; bits += 3) {
        unsigned char *q;
        size_t qn;
        if (make_pgq_bits(&q, &qn, bits)) return 1;
        struct pg_pgac_stats st;
        struct pg_pack_opts po = {.mode = PG_PACK_PER_GROUP, .group_codec = PG_CODEC_PGAC,
                                  .rest_codec = PG_CODEC_BROTLI};
        unsigned char *pa = NULL, *pb = NULL;
        size_t pan = 0, pbn = 0;
        int prc = pg_pack_pgq_stats(q, qn, "t.pgq", &po, &pa, &pan, &st);
        if (!prc) prc = unpack(pa, pan, &pb, &pbn);
        ok(!prc && pbn == qn && memcmp(pb, q, qn) == 0, "per-group pgac, int%d: %zu bytes of %zu, the identical .pgq back",
           bits, pan, qn);
        struct pg_pga pga;
        memset(&pga, 0, sizeof pga);
        int streams_ok = !pg_pga_parse(&pga, pa, pan, "t.pga");
        uint64_t vals = 0, payload = 0;
        for (size_t s = 0; s < pga.n && streams_ok; s++) {
            if (!strcmp(pga.streams[s].name, "cuts") || !strcmp(pga.streams[s].name, "rest")) continue;
            streams_ok &= pga.streams[s].codec == PG_CODEC_PGAC && pga.streams[s].xform.id == PG_XFORM_NONE;
            vals += pga.streams[s].raw_size;
            payload += pga.streams[s].packed_size - PG_PGAC_HEADER;
        }
        ok(streams_ok, "... every group a pgac stream, untransposed");
        ok(st.values == vals && st.payload_bytes == payload && st.model_bits <= 8.0 * (double)payload,
           "... the statistics count its %llu values and %llu payload bytes", (unsigned long long)st.values,
           (unsigned long long)st.payload_bytes);
        pg_pga_close(&pga);
        free(pa), free(pb), free(q);
    }

    /* --best: identical bytes back; every group stream is pgac untransposed or another codec
     * transposed, and no larger than the pgac-only artifact's stream of the same group */
    {
        struct pg_pack_opts po = {.mode = PG_PACK_PER_GROUP, .group_codec = PG_CODEC_PGAC, .rest_codec = PG_CODEC_BROTLI};
        struct pg_pack_opts bo = {.mode = PG_PACK_BEST, .rest_codec = PG_CODEC_BROTLI};
        unsigned char *pa = NULL, *ba = NULL, *bb = NULL;
        size_t pan = 0, ban = 0, bbn = 0;
        int brc = pg_pack_pgq(pgq, n, "t.pgq", &po, &pa, &pan);
        if (!brc) brc = pg_pack_pgq(pgq, n, "t.pgq", &bo, &ba, &ban);
        if (!brc) brc = unpack(ba, ban, &bb, &bbn);
        ok(!brc && bbn == n && memcmp(bb, pgq, n) == 0, "best: %zu bytes (pgac alone %zu), the identical .pgq back", ban, pan);
        struct pg_pga pg1, pg2;
        memset(&pg1, 0, sizeof pg1), memset(&pg2, 0, sizeof pg2);
        int fine = !brc && !pg_pga_parse(&pg1, pa, pan, "p.pga") && !pg_pga_parse(&pg2, ba, ban, "b.pga") && pg1.n == pg2.n;
        for (size_t s = 2; fine && s < pg2.n; s++) {
            const struct pg_pga_stream *x = &pg2.streams[s];
            fine &= (x->codec == PG_CODEC_PGAC) == (x->xform.id == PG_XFORM_NONE);
            fine &= x->packed_size <= pg1.streams[s].packed_size;
        }
        ok(fine, "best: each group pgac untransposed or transposed otherwise, never larger than pgac's");
        pg_pga_close(&pg1), pg_pga_close(&pg2);
        free(pa), free(ba), free(bb);
    }

    /* doctored cut lists: every CRC valid, the arrangement wrong */
    struct parts p;
    memset(&p, 0, sizeof p);
    if (split(art, an, &p)) return 1;
    char msg[256];
    ok(doctored(&p, -1, 0, 0x58585858, msg, sizeof msg) != 0, "bad cuts magic refused: %s", msg);
    ok(doctored(&p, -1, 4, (uint64_t)nint + 1, msg, sizeof msg) != 0, "a count that disagrees with the size: %s", msg);
    ok(doctored(&p, 0, 16, 99, msg, sizeof msg) != 0, "a cut naming a stream that does not exist: %s", msg);
    ok(doctored(&p, 0, 16, 1, msg, sizeof msg) != 0, "a cut naming the rest stream (index 1): %s", msg);
    ok(doctored(&p, 0, 20, 1, msg, sizeof msg) != 0, "a cut that skips a byte of its stream: %s", msg);
    ok(doctored(&p, 0, 8, 1u << 30, msg, sizeof msg) != 0, "a cut longer than its stream: %s", msg);
    ok(doctored(&p, 1, 0, 0, msg, sizeof msg) != 0, "cuts out of order: %s", msg);
    ok(doctored(&p, nint - 1, 0, (uint64_t)n * 4, msg, sizeof msg) != 0, "a cut past the end of the rest: %s", msg);
    ok(doctored(&p, nint - 1, 8, 0, msg, sizeof msg) != 0, "a group stream not fully used: %s", msg);
    /* the doctoring itself is sound: writing back a field's own value is accepted */
    {
        size_t icut = 0;
        while (strcmp(p.in[icut].name, "cuts")) icut++;
        uint64_t own = pg_le64_get((const unsigned char *)p.in[icut].data + 8);
        ok(doctored(&p, 0, 0, own, msg, sizeof msg) == 0, "the first cut's own offset written back is accepted: %s",
           msg);
    }
    parts_free(&p);

    /* an artifact that is not a packed model */
    struct pg_pga_input junk = {.name = "other", .data = "abc", .size = 3, .codec = PG_CODEC_RAW};
    unsigned char *jart;
    size_t jn;
    pg_pga_build(&junk, 1, &jart, &jn);
    rc = unpack(jart, jn, &back, &bn);
    ok(rc == PG_E_FORMAT && strstr(pg_error_message(), "not a packed model"), "an artifact without a model: %s",
       pg_error_message());
    free(jart);

    /* pg_pack_pgq checks its input */
    pgq[n / 2] ^= 1;
    struct pg_pack_opts w = {.mode = PG_PACK_WHOLE, .codec = PG_CODEC_RAW};
    unsigned char *bad;
    size_t badn;
    ok(pg_pack_pgq(pgq, n, "t.pgq", &w, &bad, &badn) == PG_E_FORMAT, "a damaged .pgq is refused: %s",
       pg_error_message());
    free(art);
    pg_qmodel_free(&qm);
    free(pgq);
    return done_testing();
}
