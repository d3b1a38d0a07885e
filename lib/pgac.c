/* pgac.c: the context-model binary arithmetic coder of pgac.h.
 *
 * One code path models both directions: struct coder either encodes the bit it is given or
 * decodes one, and everything else (contexts, mixing, updates) runs the same way on both sides,
 * so the decoder cannot drift from the encoder. Probabilities are 12-bit (P(bit = 1) * 4096),
 * the logistic domain is stretch(p) = ln(p / (1 - p)) * 256 clamped to +-2047 (lpaq's scales).
 */
#include "pgac.h"

#include "err.h"
#include "xio.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- the logistic tables ---- */

/* squash(x) = 4096 / (1 + e^(-x/256)) at x = -2048, -1920, ..., 2048 (rounded): fixed numbers,
 * so the tables (and the output) do not depend on the platform's libm. */
static const int squash_knots[33] = {1,    2,    4,    6,    10,   17,   27,   45,   74,   120,  194,
                                     311,  488,  747,  1102, 1546, 2048, 2550, 2994, 3349, 3608, 3785,
                                     3902, 3976, 4022, 4051, 4069, 4079, 4086, 4090, 4092, 4094, 4095};
static int16_t squash_t[4096]; /* x + 2048 -> p */
static int16_t stretch_t[4096]; /* p -> x, the inverse of squash */
static uint16_t rate_t[1024];   /* a counter's step after n updates: 65536 / (n + 1.5) */
static double cost_t[4096];     /* -log2(p / 4096): only for the statistics */
static uint8_t level_t[4096];   /* floor(5 log2(1 + x/8)) for x = 16 * a mean magnitude */
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static int squash_calc(int x)
{
    if (x > 2047) x = 2047;
    if (x < -2047) x = -2047;
    int w = (x + 2048) & 127, i = (x + 2048) >> 7;
    return (squash_knots[i] * (128 - w) + squash_knots[i + 1] * w + 64) >> 7;
}

static void build_tables(void)
{
    for (int x = -2048; x < 2048; x++) squash_t[x + 2048] = (int16_t)squash_calc(x);
    int pi = 0;
    for (int x = -2047; x <= 2047; x++) {
        int v = squash_calc(x);
        for (int p = pi; p <= v && p < 4096; p++) stretch_t[p] = (int16_t)x;
        if (v + 1 > pi) pi = v + 1;
    }
    for (int p = pi; p < 4096; p++) stretch_t[p] = 2047;
    for (int n = 0; n < 1024; n++) rate_t[n] = (uint16_t)(131072 / (2 * n + 3));
    cost_t[0] = 12;
    for (int p = 1; p < 4096; p++) cost_t[p] = -log2(p / 4096.0);
    /* level: the largest L with (8 + x)^5 >= 2^L 8^5, in integers */
    for (int x = 0; x < 4096; x++) {
        uint64_t y = (uint64_t)(8 + x), y5 = y * y * y * y * y, b = 32768; /* 8^5 */
        int L = 0;
        while (L < 63 && y5 >= (b << 1)) b <<= 1, L++;
        level_t[x] = (uint8_t)L;
    }
}

static inline int squash(int x)
{
    if (x > 2047) x = 2047;
    if (x < -2047) x = -2047;
    return squash_t[x + 2048];
}

/* ---- the binary arithmetic coder (carry-less, 32-bit range) ---- */

struct coder {
    int decoding;
    uint32_t x1, x2, x;
    unsigned char *buf; /* encoding: the output, grown as needed */
    size_t len, cap;
    const unsigned char *in; /* decoding */
    size_t in_n, pos;
    int short_input, nomem;
    double bits; /* encoding: the model's cost of what was coded */
};

static void put_byte(struct coder *c, unsigned char b)
{
    if (c->len == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4096;
        unsigned char *nb = realloc(c->buf, cap);
        if (!nb) {
            c->nomem = 1;
            c->len = 0; /* keep going harmlessly; the caller checks nomem */
            return;
        }
        c->buf = nb, c->cap = cap;
    }
    c->buf[c->len++] = b;
}

static inline unsigned char get_byte(struct coder *c)
{
    if (c->pos < c->in_n) return c->in[c->pos++];
    c->short_input = 1;
    return 0;
}

/* Codes one bit with P(1) = p / 4096, p in 1..4095; returns the bit. */
static inline int code_bit(struct coder *c, int p, int y)
{
    uint32_t range = c->x2 - c->x1;
    uint32_t xmid = c->x1 + (range >> 12) * (uint32_t)p + (((range & 0xfff) * (uint32_t)p) >> 12);
    if (c->decoding) y = c->x <= xmid;
    else c->bits += cost_t[y ? p : 4096 - p];
    if (y) c->x2 = xmid;
    else c->x1 = xmid + 1;
    while (((c->x1 ^ c->x2) & 0xff000000u) == 0) {
        if (c->decoding) c->x = (c->x << 8) | get_byte(c);
        else put_byte(c, (unsigned char)(c->x2 >> 24));
        c->x1 <<= 8;
        c->x2 = (c->x2 << 8) | 255;
    }
    return y;
}

/* ---- the model ---- */

/* Decision nodes of the binarization: 0 the zero flag, 1..8 the unary bucket bits, then for
 * bucket k (magnitudes 2^k .. 2^(k+1) - 1) the 2^k - 1 inner nodes of its low bits' tree. */
enum { N_ZERO = 0, N_UNARY = 1, N_TREE = 9, NODES = 9 + 247 };
static const int tree_base[8] = {0, 0, 1, 4, 11, 26, 57, 120}; /* 2^k - 1 - k */

enum { LV = 48, LV2 = 24, NB = 16, NIN = 5, SIGN_CTX = 9 * 8 };
enum { PRIOR = 4, COUNT_LIMIT = 255, LR = 4, COL_STATS = 1 << 16, COL_MODELS = 4096 };

struct model {
    uint32_t *t1; /* [LV][NODES]: expected magnitude */
    uint32_t *t2; /* [LV2][NB][NODES]: row mean, left values */
    uint32_t *t3; /* [LV2][NB][NODES]: column mean, value above */
    uint32_t *t4; /* [ncm][NODES]: the column itself (column c at c mod ncm) */
    int32_t (*w)[NIN];
    uint32_t sign[SIGN_CTX];
    uint32_t *colavg; /* [ncs]: per column (c mod ncs): mean |v| x 256, a running average over the rows */
    uint64_t colsum;  /* the sum of colavg */
    size_t ncs, ncm;  /* the columns' statistics and models, capped so that memory stays bounded
                       * whatever the row length (a whole input coded as one row) */
};

static void counters_init(uint32_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++) t[i] = 1u << 31; /* p = 1/2, no updates yet */
}

static void model_free(struct model *m)
{
    free(m->t1), free(m->t2), free(m->t3), free(m->t4), free(m->w), free(m->colavg);
}

static int model_init(struct model *m, uint64_t cols)
{
    memset(m, 0, sizeof *m);
    m->t1 = malloc(sizeof *m->t1 * LV * NODES);
    m->t2 = malloc(sizeof *m->t2 * LV2 * NB * NODES);
    m->t3 = malloc(sizeof *m->t3 * LV2 * NB * NODES);
    m->w = malloc(sizeof *m->w * NODES);
    m->ncs = cols < COL_STATS ? (size_t)cols : COL_STATS;
    m->ncm = cols < COL_MODELS ? (size_t)cols : COL_MODELS;
    m->t4 = malloc(sizeof *m->t4 * NODES * m->ncm);
    m->colavg = malloc(sizeof *m->colavg * m->ncs);
    if (!m->t4 || !m->t1 || !m->t2 || !m->t3 || !m->w || !m->colavg) {
        model_free(m);
        return pg_error(PG_E_NOMEM, "pgac: out of memory for the model");
    }
    counters_init(m->t1, (size_t)LV * NODES);
    counters_init(m->t2, (size_t)LV2 * NB * NODES);
    counters_init(m->t3, (size_t)LV2 * NB * NODES);
    counters_init(m->t4, m->ncm * NODES);
    counters_init(m->sign, SIGN_CTX);
    for (int i = 0; i < NODES; i++) m->w[i][0] = m->w[i][1] = m->w[i][2] = m->w[i][4] = 16000, m->w[i][3] = 0;
    for (size_t c = 0; c < m->ncs; c++) m->colavg[c] = 2 << 8;
    m->colsum = (uint64_t)m->ncs * (2 << 8);
    return 0;
}

static inline void counter_update(uint32_t *t, int y)
{
    uint32_t e = *t;
    int n = (int)(e & 1023);
    int32_t p = (int32_t)(e >> 10), target = y ? (1 << 22) - 1 : 0;
    p += (int32_t)(((int64_t)(target - p) * rate_t[n]) >> 16);
    if (n < COUNT_LIMIT) n++;
    *t = ((uint32_t)p << 10) | (uint32_t)n;
}

static inline int counter_p(uint32_t e)
{
    int p = (int)(e >> 20);
    return p < 1 ? 1 : p > 4095 ? 4095 : p;
}

/* The contexts of one value: base offsets into t1, t2, t3 (node added per decision). */
struct ctx {
    uint32_t *c1, *c2, *c3, *c4;
};

/* Codes one decision at node with the mix of the four models; returns the bit. */
static inline int code_node(struct coder *c, struct model *m, const struct ctx *x, int node, int y)
{
    uint32_t *a = x->c1 + node, *b = x->c2 + node, *d = x->c3 + node, *e = x->c4 + node;
    int s0 = stretch_t[*a >> 20], s1 = stretch_t[*b >> 20], s2 = stretch_t[*d >> 20], s3 = 256, s4 = stretch_t[*e >> 20];
    int32_t *w = m->w[node];
    int64_t dot = (int64_t)w[0] * s0 + (int64_t)w[1] * s1 + (int64_t)w[2] * s2 + (int64_t)w[3] * s3 + (int64_t)w[4] * s4;
    int p = squash((int)(dot >> 16));
    if (p < 1) p = 1;
    if (p > 4095) p = 4095;
    y = code_bit(c, p, y);
    int err = ((y << 12) - p) * LR;
    w[0] += (s0 * err + 32768) >> 16;
    w[1] += (s1 * err + 32768) >> 16;
    w[2] += (s2 * err + 32768) >> 16;
    w[3] += (s3 * err + 32768) >> 16;
    w[4] += (s4 * err + 32768) >> 16;
    counter_update(e, y);
    counter_update(a, y);
    counter_update(b, y);
    counter_update(d, y);
    return y;
}

static inline int iabs(int v) { return v < 0 ? -v : v; }
static inline int sgn3(int v) { return v > 0 ? 1 : v < 0 ? 2 : 0; }
static inline int cap(int64_t v, int hi) { return v > hi ? hi : (int)v; }

/* Codes (encoding) or decodes the n values at v (cols per row). @return 0, or PG_E_FORMAT for a
 * decoded value past maxabs. */
static int run(struct coder *c, struct model *m, int8_t *v, size_t n, uint64_t cols, int maxabs)
{
    if (!maxabs) { /* every value is zero: nothing to code */
        if (c->decoding) memset(v, 0, n);
        return 0;
    }
    int kmax = 0;
    while ((2 << kmax) <= maxabs) kmax++;
    size_t rows = n / (size_t)cols;
    uint32_t prevmean16 = 32; /* |v| = 2 before the first row */
    const int8_t *above = NULL; /* no row above the first */
    for (size_t r = 0; r < rows; r++) {
        int8_t *row = v + r * cols;
        uint64_t rsum = 0;
        uint64_t gavg = m->colsum / m->ncs; /* x 256, per row: the columns' mean */
        if (!gavg) gavg = 1;
        for (uint64_t col = 0; col < cols; col++) {
            uint64_t ravg16 = (16 * rsum + PRIOR * (uint64_t)prevmean16) / (col + PRIOR);
            size_t cs = col < m->ncs ? (size_t)col : (size_t)(col % m->ncs);
            uint32_t ca = m->colavg[cs];
            uint64_t e16 = ravg16 * ca / gavg;
            int lv = level_t[cap((int64_t)e16, 4095)];
            int lr = level_t[cap((int64_t)ravg16, 4095)] >> 1, lc = level_t[cap(ca >> 4, 4095)] >> 1;
            int l1 = col ? iabs(row[col - 1]) : 0, l2 = col > 1 ? iabs(row[col - 2]) : 0;
            int u = above ? iabs(above[col]) : 0;
            struct ctx x = {
                .c1 = m->t1 + (size_t)cap(lv, LV - 1) * NODES,
                .c2 = m->t2 + ((size_t)cap(lr, LV2 - 1) * NB + (size_t)cap((2 * l1 + l2 + 1) / 2, NB - 1)) * NODES,
                .c3 = m->t3 + ((size_t)cap(lc, LV2 - 1) * NB + (size_t)cap(u, NB - 1)) * NODES,
                .c4 = m->t4 + (col < m->ncm ? (size_t)col : (size_t)(col % m->ncm)) * NODES,
            };
            int val = c->decoding ? 0 : row[col];
            int mag = iabs(val);
            if (code_node(c, m, &x, N_ZERO, mag != 0)) {
                int k = 0;
                if (!c->decoding)
                    while ((2 << k) <= mag) k++;
                int kk = 0;
                while (kk < kmax && code_node(c, m, &x, N_UNARY + kk, k > kk)) kk++;
                k = kk;
                int t = 1;
                for (int i = k - 1; i >= 0; i--)
                    t = 2 * t + code_node(c, m, &x, N_TREE + tree_base[k] + t - 1, (mag >> i) & 1);
                mag = t; /* the leading 1 and the k low bits */
                int sc = (sgn3(col ? row[col - 1] : 0) * 3 + sgn3(above ? above[col] : 0)) * 8 + k;
                int neg = code_bit(c, counter_p(m->sign[sc]), val < 0);
                counter_update(&m->sign[sc], neg);
                if (c->decoding) {
                    if (mag > maxabs || (mag == 128 && !neg))
                        return pg_error(PG_E_FORMAT, "pgac data is corrupt (value %d past the stream's maximum %d)",
                                        neg ? -mag : mag, maxabs);
                    row[col] = (int8_t)(neg ? -mag : mag);
                }
            } else if (c->decoding) {
                row[col] = 0;
            }
            rsum += (uint64_t)mag;
            uint32_t na = ca + (uint32_t)(((int32_t)(mag << 8) - (int32_t)ca) >> 3);
            m->colsum += na, m->colsum -= ca;
            m->colavg[cs] = na;
        }
        prevmean16 = (uint32_t)(16 * rsum / cols);
        above = row;
    }
    return 0;
}

/* ---- the stream ---- */

static uint32_t crc_of(const unsigned char *p, size_t n) { return (uint32_t)crc32_z(0, n ? p : Z_NULL, n); }

int pg_pgac_encode(const int8_t *v, size_t n, uint64_t cols, unsigned char **out, size_t *out_n,
                   struct pg_pgac_stats *stats)
{
    *out = NULL, *out_n = 0;
    pthread_once(&tables_once, build_tables);
    if (!cols || n % cols)
        return pg_error(PG_E_INVAL, "pgac: %zu values are not whole rows of %llu", n, (unsigned long long)cols);
    int maxabs = 0;
    uint64_t hist[256] = {0};
    for (size_t i = 0; i < n; i++) {
        hist[(uint8_t)v[i]]++;
        if (iabs(v[i]) > maxabs) maxabs = iabs(v[i]);
    }
    struct model m;
    PG_TRY(model_init(&m, n ? cols : 1));
    struct coder c = {.x1 = 0, .x2 = 0xffffffffu};
    for (int i = 0; i < PG_PGAC_HEADER; i++) put_byte(&c, 0);
    int rc = run(&c, &m, (int8_t *)v, n, cols, maxabs); /* encoding only reads v */
    for (int i = 0; i < 4; i++) put_byte(&c, (unsigned char)(c.x1 >> (24 - 8 * i)));
    model_free(&m);
    if (!rc && c.nomem) rc = pg_error(PG_E_NOMEM, "pgac: out of memory for the output");
    if (rc) {
        free(c.buf);
        return rc;
    }
    unsigned char *h = c.buf;
    memcpy(h, PG_PGAC_MAGIC, 4);
    h[4] = PG_PGAC_VERSION;
    h[5] = (unsigned char)maxabs;
    h[6] = h[7] = 0;
    pg_le64_put(h + 8, (uint64_t)n);
    pg_le64_put(h + 16, cols);
    pg_le32_put(h + 24, crc_of(h + PG_PGAC_HEADER, c.len - PG_PGAC_HEADER));
    if (stats) {
        double h0 = 0;
        for (int i = 0; i < 256; i++)
            if (hist[i]) h0 -= (double)hist[i] * log2((double)hist[i] / (double)n);
        *stats = (struct pg_pgac_stats){.values = n, .model_bits = c.bits, .order0_bits = h0,
                                        .payload_bytes = c.len - PG_PGAC_HEADER};
    }
    *out = c.buf, *out_n = c.len;
    return 0;
}

int pg_pgac_decode(const unsigned char *src, size_t n, int8_t *dst, size_t raw)
{
    pthread_once(&tables_once, build_tables);
    if (n < PG_PGAC_HEADER) return pg_error(PG_E_FORMAT, "pgac data is truncated (%zu bytes, the header is %d)", n, PG_PGAC_HEADER);
    if (memcmp(src, PG_PGAC_MAGIC, 4)) return pg_error(PG_E_FORMAT, "not pgac data (bad magic)");
    if (src[4] != PG_PGAC_VERSION)
        return pg_error(PG_E_FORMAT, "pgac version %u is not supported (this build reads %d)", src[4], PG_PGAC_VERSION);
    int maxabs = src[5];
    if (maxabs > 128) return pg_error(PG_E_FORMAT, "pgac data is corrupt (maximum |value| %d)", maxabs);
    if (src[6] || src[7]) return pg_error(PG_E_FORMAT, "pgac data is corrupt (reserved bytes are not zero)");
    uint64_t count = pg_le64_get(src + 8), cols = pg_le64_get(src + 16);
    if (count != raw)
        return pg_error(PG_E_FORMAT, "pgac data holds %llu values, expected %zu", (unsigned long long)count, raw);
    if (!cols || count % cols || (count && cols > count))
        return pg_error(PG_E_FORMAT, "pgac data is corrupt (%llu values are not whole rows of %llu)",
                        (unsigned long long)count, (unsigned long long)cols);
    if (crc_of(src + PG_PGAC_HEADER, n - PG_PGAC_HEADER) != pg_le32_get(src + 24))
        return pg_error(PG_E_FORMAT, "pgac data is corrupt or truncated (payload checksum mismatch)");
    if (n - PG_PGAC_HEADER < 4) return pg_error(PG_E_FORMAT, "pgac data is truncated (no coder state)");
    struct model m;
    PG_TRY(model_init(&m, count ? cols : 1));
    struct coder c = {.decoding = 1, .x1 = 0, .x2 = 0xffffffffu, .in = src, .in_n = n, .pos = PG_PGAC_HEADER};
    for (int i = 0; i < 4; i++) c.x = (c.x << 8) | get_byte(&c);
    int rc = run(&c, &m, dst, raw, cols, maxabs);
    model_free(&m);
    if (rc) return rc;
    if (c.short_input) return pg_error(PG_E_FORMAT, "pgac data is truncated");
    if (c.pos != n) return pg_error(PG_E_FORMAT, "pgac data has %zu trailing bytes", n - c.pos);
    return 0;
}
