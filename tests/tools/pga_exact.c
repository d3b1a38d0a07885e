/* pga_exact: wraps a .pgq into a valid .pga of exactly BYTES bytes (a test tool, for the
 * 16,000,000-byte boundary of tests/cli/test-soak.sh).
 *
 *   pga_exact MODEL.pgq BYTES OUT.pga
 *
 * The artifact is the per-group layout of pg-pack (pga.h, pack.h) with raw streams: "cuts",
 * "rest" (the .pgq without the first integer tensor's values) and "g" (those values). Its size is
 * tuned in steps of 28 bytes by zero-length cuts and in steps of one byte by the number of digits
 * of two configuration fields that scoring does not read (seed, iterations), so what it decodes to
 * scores exactly as MODEL.pgq does. Exit status 0, 1 on an error or an unreachable size, 2 usage. */
#include "../../lib/err.h"
#include "../../lib/pga.h"
#include "../../lib/pgq.h"
#include "../../lib/quant.h"
#include "../../lib/xio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUT 28

static int die(const char *what)
{
    fprintf(stderr, "pga_exact: %s%s%s\n", what, pg_error_message()[0] ? ": " : "", pg_error_message());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: pga_exact MODEL.pgq BYTES OUT.pga\n");
        return 2;
    }
    unsigned long long target = strtoull(argv[2], NULL, 10);
    struct pg_qmodel qm;
    if (pg_pgq_read(argv[1], &qm)) return die("cannot read the model");
    int ti = -1;
    for (int i = 0; i < qm.ntensors && ti < 0; i++)
        if (qm.t[i].kind == PG_QKIND_INT && qm.t[i].data_len) ti = i;
    if (ti < 0) return die("the model has no integer tensor");
    unsigned char *pgq = NULL;
    size_t n = 0;
    uint64_t off = 0, len = 0, k = 0;
    uint64_t seed = 1;
    for (int ds = 1; ds <= 19 && !k; ds++, seed *= 10) {
        int it = 1;
        for (int di = 1; di <= 9 && !k; di++, it *= 10) {
            qm.cfg.seed = seed;
            qm.cfg.iterations = it;
            free(pgq);
            struct pg_qmodel q2;
            if (pg_pgq_serialize(&qm, &pgq, &n) || pg_pgq_parse(pgq, n, "serialized", &q2)) return die("serialize");
            off = q2.t[ti].data_off, len = q2.t[ti].data_len;
            pg_qmodel_free(&q2);
            uint64_t base = PG_PGA_HEADER_BYTES + 3 * PG_PGA_ENTRY_BYTES + 8 + n;
            if (target >= base + CUT && (target - base) % CUT == 0) k = (target - base) / CUT;
        }
    }
    if (!k) return die("no layout reaches that size");
    size_t cuts_n = 8 + CUT * k;
    unsigned char *cuts = calloc(1, cuts_n), *rest = malloc(n - len);
    if (!cuts || !rest) return die("out of memory");
    memcpy(cuts, "PGCT", 4);
    pg_le32_put(cuts + 4, (uint32_t)k);
    for (uint64_t c = 0; c < k; c++) { /* the real cut, then empty ones at its end */
        unsigned char *e = cuts + 8 + CUT * c;
        pg_le64_put(e, c ? off + len : off);
        pg_le64_put(e + 8, c ? 0 : len);
        pg_le32_put(e + 16, 2);
        pg_le64_put(e + 20, c ? len : 0);
    }
    memcpy(rest, pgq, off);
    memcpy(rest + off, pgq + off + len, n - off - len);
    struct pg_pga_input in[3] = {
        {.name = "cuts", .data = cuts, .size = cuts_n, .codec = PG_CODEC_RAW},
        {.name = "rest", .data = rest, .size = n - len, .codec = PG_CODEC_RAW},
        {.name = "g", .data = pgq + off, .size = len, .codec = PG_CODEC_RAW},
    };
    unsigned char *art;
    size_t art_n;
    if (pg_pga_build(in, 3, &art, &art_n)) return die("build");
    if (art_n != target) {
        fprintf(stderr, "pga_exact: built %zu bytes, not %llu\n", art_n, target);
        return 1;
    }
    if (pg_pga_write(argv[3], art, art_n)) return die("write");
    free(art), free(cuts), free(rest), free(pgq);
    pg_qmodel_free(&qm);
    return 0;
}
