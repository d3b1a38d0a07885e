/* pack.c: .pgq ⇄ .pga (see pack.h for the two modes and the "cuts" stream). */
#include "pack.h"

#include "err.h"
#include "pgq.h"
#include "quant.h"
#include "xio.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUTS_MAGIC "PGCT"
#define CUT_BYTES 28
#define MAX_GROUPS 64

/* Integer tensors of one role and one shape, back to back in model order. */
struct group {
    int role;
    int64_t rows, cols;
    size_t bytes;
    unsigned char *buf;
    char name[PG_PGA_NAME_BYTES];
};

static int find_group(struct group *g, int *ng, const struct pg_qtensor *t)
{
    for (int i = 0; i < *ng; i++)
        if (g[i].role == t->role && g[i].rows == t->rows && g[i].cols == t->cols) return i;
    if (*ng == MAX_GROUPS) return -1;
    g[*ng] = (struct group){.role = t->role, .rows = t->rows, .cols = t->cols};
    return (*ng)++;
}

/* Names groups by role, adding the shape when a role has several ("mlp.fc.1024x512"). */
static void name_groups(struct group *g, int ng)
{
    for (int i = 0; i < ng; i++) {
        int shapes = 0;
        for (int j = 0; j < ng; j++) shapes += g[j].role == g[i].role;
        if (shapes == 1)
            snprintf(g[i].name, sizeof g[i].name, "%s", pg_qrole_name(g[i].role));
        else
            snprintf(g[i].name, sizeof g[i].name, "%.12s.%lldx%lld", pg_qrole_name(g[i].role), (long long)g[i].rows,
                     (long long)g[i].cols);
    }
}

static int pack_whole(const unsigned char *pgq, size_t n, const struct pg_pack_opts *o, unsigned char **art,
                      size_t *art_n)
{
    struct pg_pga_input in = {.name = "pgq", .data = pgq, .size = n, .codec = o->codec};
    return pg_pga_build(&in, 1, art, art_n);
}

/* Sets group j's codec and transform (in[j], params gp[j]) for pgac. */
static void use_pgac(const struct group *g, struct pg_pga_input *in, struct pg_codec_params *gp, struct pg_pgac_stats *st)
{
    in->codec = PG_CODEC_PGAC;
    in->xform = (struct pg_xform){0};
    *gp = pg_codec_defaults(PG_CODEC_PGAC);
    gp->pgac_cols = (unsigned long long)g->cols;
    gp->pgac_stats = st;
    in->params = gp;
}

static void use_transposed(const struct group *g, struct pg_pga_input *in, enum pg_codec c)
{
    in->codec = c;
    in->params = NULL;
    in->xform = (struct pg_xform){.id = PG_XFORM_TRANSPOSE, .rows = (uint64_t)g->rows, .cols = (uint64_t)g->cols};
}

/* --best: compresses every group with every candidate (in parallel) and keeps the smallest. */
static int choose_best(const struct group *g, int ng, struct pg_pga_input *in, struct pg_codec_params *gp,
                       struct pg_pgac_stats *st)
{
    enum { NC = 4 };
    static const enum pg_codec cand[NC] = {PG_CODEC_PGAC, PG_CODEC_LRZIP, PG_CODEC_BROTLI, PG_CODEC_LZMA};
    int have_lrzip = pg_lrzip_available();
    size_t *size = pg_malloc(((size_t)ng * NC + 1) * sizeof *size);
    if (!size) return PG_E_NOMEM;
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < ng * NC; k++) {
        int j = k / NC, c = k % NC;
        size[k] = SIZE_MAX;
        if (cand[c] == PG_CODEC_LRZIP && !have_lrzip) continue;
        struct pg_pga_input t = in[j];
        struct pg_codec_params p;
        if (cand[c] == PG_CODEC_PGAC) use_pgac(&g[j], &t, &p, NULL);
        else use_transposed(&g[j], &t, cand[c]);
        unsigned char *tmp = NULL, *out = NULL;
        const void *src = t.data;
        if (t.xform.id != PG_XFORM_NONE) {
            if (!(tmp = pg_malloc(t.size ? t.size : 1))) continue;
            pg_xform_apply(&t.xform, t.data, tmp, t.size);
            src = tmp;
        }
        size_t on = 0;
        if (!pg_compress(t.codec, t.params, src, t.size, &out, &on)) size[k] = on;
        free(out), free(tmp);
    }
    int rc = 0;
    for (int j = 0; j < ng && !rc; j++) {
        int b = 0;
        for (int c = 1; c < NC; c++)
            if (size[j * NC + c] < size[j * NC + b]) b = c;
        if (size[j * NC + b] == SIZE_MAX) rc = pg_error(PG_E_NOMEM, "pack --best: group %s: no codec could compress it", g[j].name);
        else if (cand[b] == PG_CODEC_PGAC) use_pgac(&g[j], &in[j], &gp[j], &st[j]);
        else use_transposed(&g[j], &in[j], cand[b]);
    }
    free(size);
    return rc;
}

static int pack_per_group(const unsigned char *pgq, size_t n, const struct pg_qmodel *qm,
                          const struct pg_pack_opts *o, unsigned char **art, size_t *art_n,
                          struct pg_pgac_stats *stats)
{
    struct group g[MAX_GROUPS];
    int ng = 0, nint = 0, rc = 0;
    int *gi = pg_calloc((size_t)qm->ntensors + 1, sizeof *gi);
    if (!gi) return PG_E_NOMEM;
    for (int i = 0; i < qm->ntensors; i++) {
        const struct pg_qtensor *t = &qm->t[i];
        gi[i] = -1;
        if (t->kind != PG_QKIND_INT) continue;
        if ((gi[i] = find_group(g, &ng, t)) < 0) {
            free(gi);
            return pg_error(PG_E_INVAL, "more than %d groups of integer tensors", MAX_GROUPS);
        }
        g[gi[i]].bytes += t->data_len;
        nint++;
    }
    name_groups(g, ng);

    /* the cuts, in .pgq order (data_off increases with the tensor order; checked) */
    size_t cuts_n = 8 + (size_t)nint * CUT_BYTES, rest_n = n;
    unsigned char *cuts = pg_malloc(cuts_n), *rest = NULL;
    size_t *fill = pg_calloc((size_t)ng + 1, sizeof *fill);
    if (!cuts || !fill) rc = PG_E_NOMEM;
    for (int j = 0; j < ng && !rc; j++)
        if (!(g[j].buf = pg_malloc(g[j].bytes ? g[j].bytes : 1))) rc = PG_E_NOMEM;
    if (!rc) {
        memcpy(cuts, CUTS_MAGIC, 4);
        pg_le32_put(cuts + 4, (uint32_t)nint);
        unsigned char *e = cuts + 8;
        uint64_t last_end = 0;
        for (int i = 0; i < qm->ntensors && !rc; i++) {
            const struct pg_qtensor *t = &qm->t[i];
            if (gi[i] < 0) continue;
            if (t->data_off < last_end || t->data_off + t->data_len > n) {
                rc = pg_error(PG_E_FORMAT, "tensor %s: integer data out of order in the .pgq", t->name);
                break;
            }
            last_end = t->data_off + t->data_len;
            memcpy(g[gi[i]].buf + fill[gi[i]], pgq + t->data_off, t->data_len);
            pg_le64_put(e, t->data_off);
            pg_le64_put(e + 8, t->data_len);
            pg_le32_put(e + 16, (uint32_t)(2 + gi[i])); /* streams: cuts, rest, then the groups */
            pg_le64_put(e + 20, fill[gi[i]]);
            fill[gi[i]] += t->data_len;
            rest_n -= t->data_len;
            e += CUT_BYTES;
        }
    }
    if (!rc && !(rest = pg_malloc(rest_n ? rest_n : 1))) rc = PG_E_NOMEM;
    if (!rc) { /* the .pgq without the cut ranges */
        size_t pos = 0, w = 0;
        for (int i = 0; i < qm->ntensors; i++) {
            if (gi[i] < 0) continue;
            memcpy(rest + w, pgq + pos, qm->t[i].data_off - pos);
            w += qm->t[i].data_off - pos;
            pos = qm->t[i].data_off + qm->t[i].data_len;
        }
        memcpy(rest + w, pgq + pos, n - pos);
    }
    struct pg_pga_input *in = rc ? NULL : pg_calloc((size_t)ng + 2, sizeof *in);
    struct pg_codec_params *gp = rc ? NULL : pg_calloc((size_t)ng + 1, sizeof *gp);
    struct pg_pgac_stats *st = rc ? NULL : pg_calloc((size_t)ng + 1, sizeof *st);
    if (!rc && (!in || !gp || !st)) rc = PG_E_NOMEM;
    if (!rc) {
        in[0] = (struct pg_pga_input){.name = "cuts", .data = cuts, .size = cuts_n, .codec = o->rest_codec};
        in[1] = (struct pg_pga_input){.name = "rest", .data = rest, .size = rest_n, .codec = o->rest_codec};
        for (int j = 0; j < ng; j++) {
            in[2 + j] = (struct pg_pga_input){.name = g[j].name, .data = g[j].buf, .size = g[j].bytes};
            if (o->group_codec == PG_CODEC_PGAC) use_pgac(&g[j], &in[2 + j], &gp[j], &st[j]); /* rows as they are */
            else use_transposed(&g[j], &in[2 + j], o->group_codec);
        }
        if (o->mode == PG_PACK_BEST) rc = choose_best(g, ng, in + 2, gp, st);
        if (!rc) rc = pg_pga_build(in, (size_t)ng + 2, art, art_n);
    }
    if (!rc && stats)
        for (int j = 0; j < ng; j++) {
            stats->values += st[j].values;
            stats->model_bits += st[j].model_bits;
            stats->order0_bits += st[j].order0_bits;
            stats->payload_bytes += st[j].payload_bytes;
        }
    free(gp), free(st);
    for (int j = 0; j < ng; j++) free(g[j].buf);
    free(in), free(rest), free(fill), free(cuts), free(gi);
    return rc;
}

int pg_pack_pgq(const unsigned char *pgq, size_t n, const char *name, const struct pg_pack_opts *o,
                unsigned char **art, size_t *art_n)
{
    return pg_pack_pgq_stats(pgq, n, name, o, art, art_n, NULL);
}

int pg_pack_pgq_stats(const unsigned char *pgq, size_t n, const char *name, const struct pg_pack_opts *o,
                      unsigned char **art, size_t *art_n, struct pg_pgac_stats *stats)
{
    if (stats) memset(stats, 0, sizeof *stats);
    struct pg_qmodel qm;
    memset(&qm, 0, sizeof qm);
    int rc = pg_pgq_parse(pgq, n, name, &qm);
    if (rc) return rc;
    rc = o->mode == PG_PACK_PER_GROUP || o->mode == PG_PACK_BEST ? pack_per_group(pgq, n, &qm, o, art, art_n, stats)
                                      : pack_whole(pgq, n, o, art, art_n);
    pg_qmodel_free(&qm);
    return rc;
}

/* Rebuilds the .pgq from the decoded "cuts" and "rest" streams and the groups (raw[i] is the
 * decoded stream i of a). */
static int rebuild(const struct pg_pga *a, unsigned char **raw, long ic, long ir, unsigned char **pgq, size_t *n)
{
    const unsigned char *cuts = raw[ic], *rest = raw[ir];
    uint64_t cuts_n = a->streams[ic].raw_size, rest_n = a->streams[ir].raw_size;
    if (cuts_n < 8 || memcmp(cuts, CUTS_MAGIC, 4))
        return pg_error(PG_E_FORMAT, "%s: stream 'cuts' is not a cut list", a->path);
    uint64_t count = pg_le32_get(cuts + 4);
    if (cuts_n != 8 + count * CUT_BYTES)
        return pg_error(PG_E_FORMAT, "%s: stream 'cuts' holds %llu bytes, not 8 + 28 x %llu", a->path,
                        (unsigned long long)cuts_n, (unsigned long long)count);
    uint64_t *next = pg_calloc(a->n, sizeof *next); /* per stream: the next byte a cut must take */
    if (!next) return PG_E_NOMEM;
    uint64_t total = rest_n;
    int rc = 0;
    for (uint64_t k = 0; k < count && !rc; k++) {
        const unsigned char *e = cuts + 8 + k * CUT_BYTES;
        uint64_t len = pg_le64_get(e + 8), s = pg_le32_get(e + 16), soff = pg_le64_get(e + 20);
        if (s >= a->n || (long)s == ic || (long)s == ir)
            rc = pg_error(PG_E_FORMAT, "%s: cut %llu names stream %llu", a->path, (unsigned long long)k,
                          (unsigned long long)s);
        else if (soff != next[s] || len > a->streams[s].raw_size - soff)
            rc = pg_error(PG_E_FORMAT, "%s: cut %llu does not continue stream '%s'", a->path,
                          (unsigned long long)k, a->streams[s].name);
        else
            next[s] += len, total += len;
    }
    for (size_t s = 0; s < a->n && !rc; s++)
        if ((long)s != ic && (long)s != ir && next[s] != a->streams[s].raw_size)
            rc = pg_error(PG_E_FORMAT, "%s: stream '%s' is not fully used by the cuts", a->path, a->streams[s].name);
    free(next);
    if (rc) return rc;
    unsigned char *out = pg_malloc(total ? total : 1);
    if (!out) return PG_E_NOMEM;
    uint64_t w = 0, r = 0;
    for (uint64_t k = 0; k < count && !rc; k++) {
        const unsigned char *e = cuts + 8 + k * CUT_BYTES;
        uint64_t off = pg_le64_get(e), len = pg_le64_get(e + 8), s = pg_le32_get(e + 16), soff = pg_le64_get(e + 20);
        if (off < w || off - w > rest_n - r) {
            rc = pg_error(PG_E_FORMAT, "%s: cut %llu at offset %llu is out of order or past the rest", a->path,
                          (unsigned long long)k, (unsigned long long)off);
            break;
        }
        memcpy(out + w, rest + r, off - w);
        r += off - w, w = off;
        memcpy(out + w, raw[s] + soff, len);
        w += len;
    }
    if (!rc) {
        memcpy(out + w, rest + r, rest_n - r);
        w += rest_n - r;
        if (w != total) rc = pg_error(PG_E_FORMAT, "%s: the cuts and the rest do not add up", a->path);
    }
    if (rc) {
        free(out);
        return rc;
    }
    *pgq = out, *n = total;
    return 0;
}

int pg_unpack_pgq(const struct pg_pga *a, unsigned char **pgq, size_t *n)
{
    *pgq = NULL, *n = 0;
    long iw = pg_pga_find(a, "pgq"), ic = pg_pga_find(a, "cuts"), ir = pg_pga_find(a, "rest");
    if (iw >= 0 && a->n == 1) {
        int rc = pg_pga_decode(a, (size_t)iw, pgq);
        if (!rc) *n = a->streams[iw].raw_size;
        return rc;
    }
    if (ic < 0 || ir < 0)
        return pg_error(PG_E_FORMAT, "%s: not a packed model (no stream 'pgq', or 'cuts' and 'rest')", a->path);
    unsigned char **raw = pg_calloc(a->n, sizeof *raw);
    if (!raw) return PG_E_NOMEM;
    int rc = pg_pga_decode_all(a, raw);
    if (!rc) rc = rebuild(a, raw, ic, ir, pgq, n);
    for (size_t i = 0; i < a->n; i++) free(raw[i]);
    free(raw);
    return rc;
}
