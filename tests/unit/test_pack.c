/* test_pack: .pgq ⇄ .pga (lib/pack.c). Both modes give back the identical .pgq bytes; the
 * per-group mode puts every integer tensor of a role in its stream, transposed, and nothing else
 * (the group streams hold exactly the integer bytes; the rest is the .pgq minus them); and a
 * "cuts" list that is wrong in any of the ways a reader must notice (bad magic, wrong count,
 * a cut naming the wrong stream, skipping or overrunning a stream's bytes, out of order, a
 * stream not fully used) is refused, even though every CRC of such an artifact is valid.
 * The row reordering (pack_perm.h): every mode gives the .pgq back with any group reordered,
 * the stored rows are the permuted rows, the bytes do not depend on the thread count, and a
 * "perms" stream that is wrong in any way is refused; --shuffle and the mode names. */
#include "../../lib/err.h"
#include "../../lib/model.h"
#include "../../lib/bytes_xform.h"
#include "../../lib/pack.h"
#include "../../lib/pack_perm.h"
#include "../../lib/pgq.h"
#include "../../lib/quant.h"
#include "../../lib/rng.h"
#include "../../lib/xio.h"
#include "../tap.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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


/* Rebuilds the artifact of p with its "perms" stream edited by fn (on a copy of len bytes, which
 * fn may change) and unpacks it. */
static int doctored_perms(const struct parts *p, void (*fn)(unsigned char *b, size_t *len), char *msg, size_t msgn)
{
    size_t ip = 0;
    while (ip < p->n && strcmp(p->in[ip].name, "perms")) ip++;
    if (ip == p->n) return snprintf(msg, msgn, "(no perms stream)"), 0;
    size_t len = p->in[ip].size;
    unsigned char *b = malloc(len + 16);
    memcpy(b, p->in[ip].data, len);
    memset(b + len, 0, 16);
    fn(b, &len);
    struct pg_pga_input in[32];
    memcpy(in, p->in, p->n * sizeof *in);
    in[ip].data = b, in[ip].size = len;
    unsigned char *art = NULL, *pgq = NULL;
    size_t an, pn;
    int rc = pg_pga_build(in, p->n, &art, &an);
    if (!rc) rc = unpack(art, an, &pgq, &pn);
    snprintf(msg, msgn, "%s", rc ? pg_error_message() : "(accepted)");
    free(pgq), free(art), free(b);
    return rc;
}

/* the edits: the perms stream is "PGPM", m, then entries (stream, rows, k, k x rows u16) */
static void bad_magic(unsigned char *b, size_t *len) { (void)len, b[0] = 'X'; }
static void huge_count(unsigned char *b, size_t *len) { (void)len, pg_le32_put(b + 4, 1000); }
static void one_more(unsigned char *b, size_t *len) { (void)len, pg_le32_put(b + 4, pg_le32_get(b + 4) + 1); }
static void names_cuts(unsigned char *b, size_t *len) { (void)len, pg_le32_put(b + 8, 0); }
static void names_rest(unsigned char *b, size_t *len) { (void)len, pg_le32_put(b + 8, 1); }
static void names_none(unsigned char *b, size_t *len) { (void)len, pg_le32_put(b + 8, 99); }
static void zero_rows(unsigned char *b, size_t *len) { (void)len, pg_le32_put(b + 12, 0); }
static void odd_rows(unsigned char *b, size_t *len) { (void)len, pg_le32_put(b + 12, pg_le32_get(b + 12) - 1); }
static void not_perm(unsigned char *b, size_t *len) { (void)len, memcpy(b + 20 + 2, b + 20, 2); }
static void cut_short(unsigned char *b, size_t *len) { *len -= 2; (void)b; }
static void trailing(unsigned char *b, size_t *len) { *len += 2; (void)b; }
static void own_value(unsigned char *b, size_t *len) { (void)len, pg_le32_put(b + 8, pg_le32_get(b + 8)); }
static void twice(unsigned char *b, size_t *len)
{   /* the second entry names the first entry's stream */
    (void)len;
    uint32_t rows = pg_le32_get(b + 12), k = pg_le32_get(b + 16);
    pg_le32_put(b + 8 + 12 + 2 * (size_t)rows * k, pg_le32_get(b + 8));
}

static int pack_unpack(const unsigned char *pgq, size_t n, const struct pg_pack_opts *o, unsigned char **art,
                       size_t *an)
{
    unsigned char *back = NULL;
    size_t bn = 0;
    int rc = pg_pack_pgq(pgq, n, "t.pgq", o, art, an);
    if (!rc) rc = unpack(*art, *an, &back, &bn);
    if (!rc && (bn != n || memcmp(back, pgq, n))) rc = -1;
    free(back);
    return rc;
}

static void test_reorder(const unsigned char *pgq, size_t n)
{
    /* the ordering itself: rows that are a scrambled smooth sequence come back in order */
    enum { R = 12, C = 9 };
    int8_t m[2 * R * C], sorted[2 * R * C];
    uint16_t perm[2 * R];
    for (int i = 0; i < 2 * R; i++) {
        int row = (i % R) * 7 % R; /* 7 is prime to 12: a scramble */
        for (int j = 0; j < C; j++) m[i * C + j] = (int8_t)(row * 5 - 30 + j + (i >= R ? 2 : 0));
    }
    ok(pg_pack_perm_order(m, sorted, 2, R, C, perm) == 0 && pg_perm_valid(perm, R) && pg_perm_valid(perm + R, R),
       "pack_perm_order: a permutation per matrix");
    int rows_ok = 1;
    for (int i = 0; i < 2 * R; i++) rows_ok &= !memcmp(sorted + i * C, m + ((i / R) * R + perm[i]) * C, C);
    ok(rows_ok, "... row r of each matrix is its row perm[r]");
    uint64_t before = pg_adjacent_l1(m, R, C), after = pg_adjacent_l1(sorted, R, C);
    /* from stored row 0 (value row 0) the walk goes 1, 2, ..., 11: 11 steps of 5 x C */
    ok(after == 11 * 5 * C && after < before, "... rows in their smooth order: adjacent L1 %llu, was %llu",
       (unsigned long long)after,
       (unsigned long long)before);
    ok(pg_pack_perm_order(m, sorted, 1, 70000, 0, perm) == PG_E_INVAL, "... more than 65536 rows refused: %s",
       pg_error_message());

    /* every mode with the rows of every group reordered: the identical .pgq back */
    struct pg_pack_opts raw = {.mode = PG_PACK_PER_GROUP, .group_codec = PG_CODEC_RAW, .rest_codec = PG_CODEC_RAW,
                               .reorder = PG_REORDER_ALL};
    unsigned char *art = NULL;
    size_t an = 0;
    ok(pack_unpack(pgq, n, &raw, &art, &an) == 0, "reorder all, raw codecs: the identical .pgq back");
    struct pg_pga a;
    memset(&a, 0, sizeof a);
    long ip = pg_pga_parse(&a, art, an, "t.pga") ? -1 : pg_pga_find(&a, "perms");
    ok(ip == (long)a.n - 1 && a.n == 2 + 7 + 1, "... a 'perms' stream after the 7 groups");
    is_int(an > 8 ? (long long)pg_le32_get(art + 4) : -1, 3, "... the artifact is version 3 (older readers refuse it)");
    /* each listed group's decoded rows are its original rows in the listed order */
    unsigned char **dec = calloc(a.n, sizeof *dec);
    int listed = 0, stored_ok = ip >= 0 && !pg_pga_decode_all(&a, dec);
    struct pg_pack_opts plain = raw;
    plain.reorder = PG_REORDER_NONE;
    unsigned char *part = NULL;
    size_t pn = 0;
    struct pg_pga b;
    memset(&b, 0, sizeof b);
    stored_ok &= !pg_pack_pgq(pgq, n, "t.pgq", &plain, &part, &pn) && !pg_pga_parse(&b, part, pn, "p.pga");
    unsigned char **orig = calloc(b.n + 1, sizeof *orig);
    stored_ok &= !pg_pga_decode_all(&b, orig);
    if (stored_ok) {
        const unsigned char *e = dec[ip] + 8;
        uint32_t count = pg_le32_get(dec[ip] + 4);
        for (uint32_t i = 0; i < count; i++, listed++) {
            uint32_t s = pg_le32_get(e), rows = pg_le32_get(e + 4), k = pg_le32_get(e + 8);
            size_t cols = a.streams[s].raw_size / ((size_t)rows * k);
            for (uint32_t mi = 0; mi < k; mi++)
                for (uint32_t r = 0; r < rows; r++) {
                    uint16_t pr = pg_le16_get(e + 12 + 2 * ((size_t)mi * rows + r));
                    /* decoding undoes the transpose: both row-major */
                    for (size_t c = 0; c < cols; c++) {
                        unsigned char got = dec[s][((size_t)mi * rows + r) * cols + c];
                        unsigned char want = orig[s][((size_t)mi * rows + pr) * cols + c];
                        if (got != want) stored_ok = 0;
                    }
                }
            e += 12 + 2 * (size_t)rows * k;
        }
    }
    ok(stored_ok && listed == 7, "... each of the %d listed groups stores its rows in the listed order", listed);
    for (size_t i = 0; i < a.n; i++) free(dec[i]);
    for (size_t i = 0; i < b.n; i++) free(orig[i]);
    free(dec), free(orig), free(part);
    pg_pga_close(&a), pg_pga_close(&b);

    /* the hot groups only (a transposing codec reorders what the policy names); pgac keeps a
     * group's reordered rows only where they pay */
    struct pg_pack_opts hot = raw;
    hot.reorder = PG_REORDER_HOT;
    unsigned char *h = NULL;
    size_t hn = 0;
    int hrc = pack_unpack(pgq, n, &hot, &h, &hn);
    memset(&a, 0, sizeof a);
    char listed_names[128] = "";
    if (!hrc && !pg_pga_parse(&a, h, hn, "h.pga") && pg_pga_find(&a, "perms") >= 0) {
        unsigned char *pd = NULL;
        if (!pg_pga_decode(&a, (size_t)pg_pga_find(&a, "perms"), &pd))
            for (uint32_t i = 0, off = 8; i < pg_le32_get(pd + 4); i++) {
                uint32_t st = pg_le32_get(pd + off);
                snprintf(listed_names + strlen(listed_names), sizeof listed_names - strlen(listed_names), "%s%s",
                         i ? " " : "", st < a.n ? a.streams[st].name : "?");
                off += 12 + 2 * pg_le32_get(pd + off + 4) * pg_le32_get(pd + off + 8);
            }
        free(pd);
    }
    pg_pga_close(&a);
    ok(hrc == 0 && !strcmp(listed_names, "tok_emb attn.c_q mlp.fc"), "reorder hot: the identical .pgq back, '%s' listed",
       listed_names);
    free(h);
    struct pg_pack_opts pg0 = {.mode = PG_PACK_PER_GROUP, .group_codec = PG_CODEC_PGAC, .rest_codec = PG_CODEC_BROTLI};
    struct pg_pack_opts pg1 = pg0;
    pg1.reorder = PG_REORDER_ALL;
    unsigned char *q0 = NULL, *q1 = NULL;
    size_t q0n = 0, q1n = 0;
    int qrc = pack_unpack(pgq, n, &pg0, &q0, &q0n);
    if (!qrc) qrc = pack_unpack(pgq, n, &pg1, &q1, &q1n);
    ok(qrc == 0 && q1n <= q0n + 96 + 32, "pgac, reorder all: the identical .pgq back, %zu bytes (without %zu)", q1n, q0n);
    free(q0), free(q1);
    struct pg_pack_opts best0 = {.mode = PG_PACK_BEST, .rest_codec = PG_CODEC_BROTLI};
    struct pg_pack_opts best1 = best0;
    best1.reorder = PG_REORDER_ALL;
    unsigned char *b0 = NULL, *b1 = NULL;
    size_t b0n = 0, b1n = 0;
    int brc = pack_unpack(pgq, n, &best0, &b0, &b0n);
    if (!brc) brc = pack_unpack(pgq, n, &best1, &b1, &b1n);
    ok(brc == 0, "best, reorder all: the identical .pgq back (%zu bytes; without reordering %zu)", b1n, b0n);
    /* each group stream is no larger than without reordering (the perms cost extra, once) */
    struct pg_pga x0, x1;
    memset(&x0, 0, sizeof x0), memset(&x1, 0, sizeof x1);
    int smaller = !brc && !pg_pga_parse(&x0, b0, b0n, "0.pga") && !pg_pga_parse(&x1, b1, b1n, "1.pga");
    for (size_t s = 2; smaller && s < x0.n; s++) smaller &= x1.streams[s].packed_size <= x0.streams[s].packed_size;
    ok(smaller, "... every group stream no larger than without reordering");
    pg_pga_close(&x0), pg_pga_close(&x1);
    free(b0), free(b1);

#ifdef _OPENMP
    /* the same bytes on one thread and on several */
    int nt = omp_get_max_threads();
    unsigned char *t1 = NULL, *t3 = NULL;
    size_t t1n = 0, t3n = 0;
    omp_set_num_threads(1);
    int trc = pg_pack_pgq(pgq, n, "t.pgq", &best1, &t1, &t1n);
    omp_set_num_threads(nt > 1 ? nt : 3);
    if (!trc) trc = pg_pack_pgq(pgq, n, "t.pgq", &best1, &t3, &t3n);
    omp_set_num_threads(nt);
    ok(!trc && t1n == t3n && !memcmp(t1, t3, t1n), "best, reorder all: the same bytes on 1 and %d threads",
       nt > 1 ? nt : 3);
    free(t1), free(t3);
#endif

    /* doctored perms: every CRC valid, the list wrong */
    struct parts p;
    memset(&p, 0, sizeof p);
    if (split(art, an, &p)) {
        ok(0, "split the reordered artifact");
        free(art);
        return;
    }
    char msg[256];
    static const struct {
        void (*fn)(unsigned char *, size_t *);
        const char *what;
    } bad[] = {
        {bad_magic, "bad perms magic"},
        {huge_count, "a count over the stream count"},
        {one_more, "a count one over the entries"},
        {names_cuts, "an entry naming the cuts"},
        {names_rest, "an entry naming the rest"},
        {names_none, "an entry naming a stream that does not exist"},
        {twice, "a stream listed twice"},
        {zero_rows, "zero rows"},
        {odd_rows, "rows that do not divide the stream"},
        {not_perm, "a row index repeated"},
        {cut_short, "the last index cut off"},
        {trailing, "bytes after the entries"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ok(doctored_perms(&p, bad[i].fn, msg, sizeof msg) == PG_E_FORMAT && strstr(msg, "perms"), "%s refused: %s",
           bad[i].what, msg);
    ok(doctored_perms(&p, own_value, msg, sizeof msg) == 0, "the first entry's own stream written back is accepted: %s",
       msg);
    parts_free(&p);
    free(art);

    /* --shuffle: byte planes of stride 2 under the codec, the identical .pgq back */
    struct pg_pack_opts sh = {.mode = PG_PACK_WHOLE, .codec = PG_CODEC_BROTLI, .shuffle = 2};
    unsigned char *s = NULL;
    size_t sn = 0;
    int src = pack_unpack(pgq, n, &sh, &s, &sn);
    memset(&a, 0, sizeof a);
    ok(!src && !pg_pga_parse(&a, s, sn, "s.pga") && a.n == 1 && a.streams[0].xform.id == PG_XFORM_SHUFFLE &&
           a.streams[0].xform.stride == 2,
       "brotli+shuffle: one stream, shuffled by 2, the identical .pgq back (%zu bytes)", sn);
    pg_pga_close(&a);
    free(s);

    /* the mode names */
    struct pg_pack_opts o;
    ok(!pg_pack_opts_from_name("brotli+shuffle", &o) && o.mode == PG_PACK_WHOLE && o.codec == PG_CODEC_BROTLI &&
           o.shuffle == 2 && !strcmp(pg_pack_mode_name(&o), "brotli+shuffle"),
       "name brotli+shuffle");
    ok(!pg_pack_opts_from_name("lrzip+brotli", &o) && o.mode == PG_PACK_PER_GROUP && o.group_codec == PG_CODEC_LRZIP &&
           o.rest_codec == PG_CODEC_BROTLI && o.reorder == PG_REORDER_HOT,
       "name lrzip+brotli: per-group, hot groups reordered");
    ok(!pg_pack_opts_from_name("pgac+lzma", &o) && o.mode == PG_PACK_PER_GROUP && o.group_codec == PG_CODEC_PGAC &&
           o.rest_codec == PG_CODEC_LZMA && !strcmp(pg_pack_mode_name(&o), "pgac+lzma per-group"),
       "name pgac+lzma");
    ok(!pg_pack_opts_from_name("best", &o) && o.mode == PG_PACK_BEST && o.reorder == PG_REORDER_ALL, "name best");
    ok(!pg_pack_opts_from_name("lzma", &o) && o.mode == PG_PACK_WHOLE && o.codec == PG_CODEC_LZMA && !o.shuffle,
       "name lzma");
    ok(pg_pack_opts_from_name("raw", &o) && pg_pack_opts_from_name("pgacx", &o) && pg_pack_opts_from_name("", &o),
       "raw, pgacx and the empty name refused");
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
    pgq[n / 2] ^= 1;
    test_reorder(pgq, n);
    free(art);
    pg_qmodel_free(&qm);
    free(pgq);
    return done_testing();
}
