/* pack.c: .pgq ⇄ .pga (see pack.h for the two modes and the "cuts" stream). */
#include "pack.h"

#include "err.h"
#include "pack_perm.h"
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
    unsigned char *sorted; /* buf with each matrix's rows reordered (NULL: not reordered) */
    uint16_t *perm;        /* the permutations of sorted (bytes / cols of them) */
    int use_sorted;        /* the stream holds sorted */
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
    if (o->shuffle) in.xform = (struct pg_xform){.id = PG_XFORM_SHUFFLE, .stride = o->shuffle};
    return pg_pga_build(&in, 1, art, art_n);
}

/* Whether the reordering policy names the group's role. */
static int reorder_wanted(int policy, int role)
{
    if (policy == PG_REORDER_ALL) return 1;
    return policy == PG_REORDER_HOT && (role == PG_QROLE_TOK_EMB || role == PG_QROLE_C_Q || role == PG_QROLE_MLP_FC);
}

/* Computes the reordered copy of every group the policy names (matrices of 2 to 65536 rows). */
static int sort_groups(struct group *g, int ng, int policy)
{
    for (int j = 0; j < ng; j++) {
        if (!reorder_wanted(policy, g[j].role) || g[j].rows < 2 || g[j].rows > 65536 || !g[j].bytes) continue;
        size_t rows = (size_t)g[j].rows, cols = (size_t)g[j].cols, k = g[j].bytes / (rows * cols);
        g[j].sorted = pg_malloc(g[j].bytes);
        g[j].perm = pg_malloc(k * rows * sizeof *g[j].perm);
        if (!g[j].sorted || !g[j].perm) return PG_E_NOMEM;
        int rc = pg_pack_perm_order((const int8_t *)g[j].buf, (int8_t *)g[j].sorted, k, rows, cols, g[j].perm);
        if (rc) return rc;
    }
    return 0;
}

/* The "perms" stream for the groups that store their sorted rows (*n = 0: none does). */
static int perms_stream(const struct group *g, int ng, unsigned char **out, size_t *n)
{
    struct pg_pack_perm e[MAX_GROUPS];
    size_t m = 0;
    *out = NULL, *n = 0;
    for (int j = 0; j < ng; j++)
        if (g[j].use_sorted)
            e[m++] = (struct pg_pack_perm){.stream = (uint32_t)(2 + j), .rows = (uint32_t)g[j].rows,
                                           .k = (uint32_t)(g[j].bytes / ((size_t)g[j].rows * (size_t)g[j].cols)),
                                           .perm = g[j].perm};
    return m ? pg_pack_perm_write(e, m, out, n) : 0;
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

/* The bytes of group g's permutations compressed alone with codec c (the cost --best charges a
 * reordered layout; in the artifact they share one stream, a little smaller). */
static int perm_bytes(const struct group *g, enum pg_codec c, size_t *cost)
{
    struct pg_pack_perm e = {.stream = 0, .rows = (uint32_t)g->rows,
                             .k = (uint32_t)(g->bytes / ((size_t)g->rows * (size_t)g->cols)), .perm = g->perm};
    unsigned char *buf = NULL, *out = NULL;
    size_t n = 0, on = 0;
    int rc = pg_pack_perm_write(&e, 1, &buf, &n);
    if (!rc) rc = pg_compress(c, NULL, buf, n, &out, &on);
    free(buf), free(out);
    *cost = on;
    return rc;
}

/* Compresses every group with each of the nc candidate codecs, on its rows as they are and, when
 * the group has them, on its reordered rows (in parallel), and keeps the smallest (a reordered
 * layout charged its permutations): --best with all four codecs, --pgac with pgac alone. */
static int choose_best(struct group *g, int ng, const enum pg_codec *cand, int nc, enum pg_codec rest_codec,
                       struct pg_pga_input *in, struct pg_codec_params *gp, struct pg_pgac_stats *st)
{
    const int NC = nc, NK = 2 * nc;
    int have_lrzip = pg_lrzip_available();
    size_t *size = pg_malloc(((size_t)ng * NK + 1) * sizeof *size);
    size_t *perm_cost = pg_malloc(((size_t)ng + 1) * sizeof *perm_cost);
    if (!size || !perm_cost) {
        free(size), free(perm_cost);
        return PG_E_NOMEM;
    }
    /* a reordered layout pays for its permutations too: once per group, whatever the codec */
#pragma omp parallel for schedule(dynamic, 1)
    for (int j = 0; j < ng; j++)
        if (!g[j].sorted || perm_bytes(&g[j], rest_codec, &perm_cost[j])) perm_cost[j] = SIZE_MAX;
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < ng * NK; k++) {
        int j = k / NK, c = k % NC, sorted = k % NK / NC;
        size[k] = SIZE_MAX;
        if ((cand[c] == PG_CODEC_LRZIP && !have_lrzip) || (sorted && perm_cost[j] == SIZE_MAX)) continue;
        struct pg_pga_input t = in[j];
        t.data = sorted ? g[j].sorted : g[j].buf;
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
        if (!pg_compress(t.codec, t.params, src, t.size, &out, &on)) size[k] = on + (sorted ? perm_cost[j] : 0);
        free(out), free(tmp);
    }
    int rc = 0;
    for (int j = 0; j < ng && !rc; j++) {
        int b = 0;
        for (int c = 1; c < NK; c++)
            if (size[j * NK + c] < size[j * NK + b]) b = c;
        if (size[j * NK + b] == SIZE_MAX) {
            rc = pg_error(PG_E_NOMEM, "pack --best: group %s: no codec could compress it", g[j].name);
            break;
        }
        g[j].use_sorted = b / NC;
        in[j].data = g[j].use_sorted ? g[j].sorted : g[j].buf;
        if (cand[b % NC] == PG_CODEC_PGAC) use_pgac(&g[j], &in[j], &gp[j], &st[j]);
        else use_transposed(&g[j], &in[j], cand[b % NC]);
    }
    free(size), free(perm_cost);
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
    unsigned char *cuts = pg_malloc(cuts_n), *rest = NULL, *perms = NULL;
    size_t perms_n = 0;
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
    if (!rc) rc = sort_groups(g, ng, o->reorder);
    struct pg_pga_input *in = rc ? NULL : pg_calloc((size_t)ng + 3, sizeof *in);
    struct pg_codec_params *gp = rc ? NULL : pg_calloc((size_t)ng + 1, sizeof *gp);
    struct pg_pgac_stats *st = rc ? NULL : pg_calloc((size_t)ng + 1, sizeof *st);
    if (!rc && (!in || !gp || !st)) rc = PG_E_NOMEM;
    if (!rc) {
        in[0] = (struct pg_pga_input){.name = "cuts", .data = cuts, .size = cuts_n, .codec = o->rest_codec};
        in[1] = (struct pg_pga_input){.name = "rest", .data = rest, .size = rest_n, .codec = o->rest_codec};
        for (int j = 0; j < ng; j++) {
            g[j].use_sorted = g[j].sorted != NULL;
            in[2 + j] = (struct pg_pga_input){.name = g[j].name, .data = g[j].use_sorted ? g[j].sorted : g[j].buf,
                                              .size = g[j].bytes};
            if (o->group_codec == PG_CODEC_PGAC) use_pgac(&g[j], &in[2 + j], &gp[j], &st[j]);
            else use_transposed(&g[j], &in[2 + j], o->group_codec);
        }
        /* --best tries every codec; pgac, fast, tries both layouts of the groups with reordered rows */
        static const enum pg_codec all[] = {PG_CODEC_PGAC, PG_CODEC_LRZIP, PG_CODEC_BROTLI, PG_CODEC_LZMA};
        if (o->mode == PG_PACK_BEST) rc = choose_best(g, ng, all, 4, o->rest_codec, in + 2, gp, st);
        else if (o->group_codec == PG_CODEC_PGAC && o->reorder != PG_REORDER_NONE)
            rc = choose_best(g, ng, all, 1, o->rest_codec, in + 2, gp, st);
        if (!rc) rc = perms_stream(g, ng, &perms, &perms_n);
        size_t nin = (size_t)ng + 2;
        if (!rc && perms_n)
            in[nin++] = (struct pg_pga_input){.name = "perms", .data = perms, .size = perms_n, .codec = o->rest_codec};
        if (!rc) rc = pg_pga_build(in, nin, art, art_n);
    }
    if (!rc && stats)
        for (int j = 0; j < ng; j++) {
            stats->values += st[j].values;
            stats->model_bits += st[j].model_bits;
            stats->order0_bits += st[j].order0_bits;
            stats->payload_bytes += st[j].payload_bytes;
        }
    free(gp), free(st), free(perms);
    for (int j = 0; j < ng; j++) free(g[j].buf), free(g[j].sorted), free(g[j].perm);
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
static int rebuild(const struct pg_pga *a, unsigned char **raw, long ic, long ir, long ip, unsigned char **pgq,
                   size_t *n)
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
        if (s >= a->n || (long)s == ic || (long)s == ir || (long)s == ip)
            rc = pg_error(PG_E_FORMAT, "%s: cut %llu names stream %llu", a->path, (unsigned long long)k,
                          (unsigned long long)s);
        else if (soff != next[s] || len > a->streams[s].raw_size - soff)
            rc = pg_error(PG_E_FORMAT, "%s: cut %llu does not continue stream '%s'", a->path,
                          (unsigned long long)k, a->streams[s].name);
        else
            next[s] += len, total += len;
    }
    for (size_t s = 0; s < a->n && !rc; s++)
        if ((long)s != ic && (long)s != ir && (long)s != ip && next[s] != a->streams[s].raw_size)
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
    long iw = pg_pga_find(a, "pgq"), ic = pg_pga_find(a, "cuts"), ir = pg_pga_find(a, "rest"),
         ip = pg_pga_find(a, "perms");
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
    if (!rc && ip >= 0) rc = pg_pack_perm_undo(a, raw, ip, ic, ir);
    if (!rc) rc = rebuild(a, raw, ic, ir, ip, pgq, n);
    for (size_t i = 0; i < a->n; i++) free(raw[i]);
    free(raw);
    return rc;
}

int pg_pack_opts_from_name(const char *name, struct pg_pack_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = PG_PACK_WHOLE, o->codec = PG_CODEC_ZLIB, o->group_codec = PG_CODEC_LRZIP, o->rest_codec = PG_CODEC_BROTLI;
    if (!strcmp(name, "brotli+shuffle")) {
        o->codec = PG_CODEC_BROTLI, o->shuffle = 2;
    } else if (!strcmp(name, "lrzip+brotli")) {
        o->mode = PG_PACK_PER_GROUP, o->reorder = PG_REORDER_HOT;
    } else if (!strcmp(name, "pgac") || !strcmp(name, "pgac+lzma")) {
        o->mode = PG_PACK_PER_GROUP, o->group_codec = PG_CODEC_PGAC, o->reorder = PG_PACK_PGAC_REORDER;
        if (name[4]) o->rest_codec = PG_CODEC_LZMA;
    } else if (!strcmp(name, "best")) {
        o->mode = PG_PACK_BEST, o->reorder = PG_REORDER_ALL;
    } else if (pg_codec_from_name(name, &o->codec) || o->codec == PG_CODEC_RAW || o->codec == PG_CODEC_PGAC) {
        return PG_E_INVAL;
    }
    return 0;
}

const char *pg_pack_mode_name(const struct pg_pack_opts *o)
{
    if (o->mode == PG_PACK_BEST) return "best per-group";
    static const char *shuffled[PG_CODEC_COUNT] = {
        [PG_CODEC_ZLIB] = "zlib+shuffle", [PG_CODEC_LZMA] = "lzma+shuffle", [PG_CODEC_BROTLI] = "brotli+shuffle",
        [PG_CODEC_LRZIP] = "lrzip+shuffle"};
    if (o->mode != PG_PACK_PER_GROUP)
        return o->shuffle && o->codec < PG_CODEC_COUNT && shuffled[o->codec] ? shuffled[o->codec] : pg_codec_name(o->codec);
    if (o->group_codec == PG_CODEC_PGAC) return o->rest_codec == PG_CODEC_LZMA ? "pgac+lzma per-group" : "pgac+brotli per-group";
    return "lrzip+brotli per-group";
}
