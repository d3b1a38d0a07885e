/* fuzz_pga.c: the .pga artifact: pg_pga_parse (header, stream table), then pg_unpack_pgq (every
 * stream decoded by its codec, its transform undone, the cut list applied) and the .pgq that comes
 * out parsed. The header, table and packed-stream CRC32s are fixed up so that the fuzzer reaches
 * the codecs; artifacts with an lrzip stream are only parsed (lrzip runs as a program). */
#include "fuzz.h"

#include "../../lib/pack.h"
#include "../../lib/pga.h"
#include "../../lib/pgq.h"
#include "../../lib/xio.h"

#include <zlib.h>

static uint32_t crc(const unsigned char *p, size_t n) { return (uint32_t)crc32_z(0, p, n); }

/* Rewrites the CRCs of whatever part of the layout fits in the buffer. @return 1 if a stream uses lrzip. */
static int fix_crcs(unsigned char *b, size_t size)
{
    if (size < PG_PGA_HEADER_BYTES) return 0;
    uint64_t n = pg_le32_get(b + 24), table = PG_PGA_HEADER_BYTES + (uint64_t)PG_PGA_ENTRY_BYTES * n;
    int lrzip = 0;
    if (n <= PG_PGA_MAX_STREAMS && table <= size) {
        for (uint64_t i = 0; i < n; i++) {
            unsigned char *e = b + PG_PGA_HEADER_BYTES + PG_PGA_ENTRY_BYTES * i;
            uint64_t packed = pg_le64_get(e + 64), off = pg_le64_get(e + 72);
            if (off <= size && packed <= size - off) pg_le32_put(e + 80, crc(b + off, (size_t)packed));
            lrzip |= e[32] == PG_CODEC_LRZIP;
        }
        pg_le32_put(b + 28, crc(b + PG_PGA_HEADER_BYTES, (size_t)(table - PG_PGA_HEADER_BYTES)));
    }
    pg_le32_put(b + 60, crc(b, 60));
    return lrzip;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *b = malloc(size ? size : 1);
    if (!b) abort();
    if (size) memcpy(b, data, size);
    int lrzip = fix_crcs(b, size);
    struct pg_pga a;
    int rc = pg_pga_parse(&a, b, size, "fuzz");
    if (!rc) {
        unsigned char *pgq = NULL;
        size_t n = 0;
        int r = lrzip ? 0 : pg_unpack_pgq(&a, &pgq, &n);
        if (!lrzip && !r) {
            struct pg_qmodel qm;
            int q = pg_pgq_parse(pgq, n, "fuzz", &qm);
            if (!q) pg_qmodel_free(&qm);
            fuzz_check_error(q);
        }
        fuzz_check_error(r);
        free(pgq);
        pg_pga_close(&a);
    }
    fuzz_check_error(rc);
    free(b);
    return 0;
}
