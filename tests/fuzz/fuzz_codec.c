/* fuzz_codec.c: each codec's decoder on its own (pg_decompress): byte 0 picks the codec (raw,
 * zlib, lzma, brotli; lrzip runs as a program and is not fuzzed here), bytes 1..3 the raw size the
 * caller expects (up to 16 MiB), the rest is the compressed stream. A decode that succeeds must
 * have filled exactly that many bytes. */
#include "fuzz.h"

#include "../../lib/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    static const enum pg_codec codecs[4] = {PG_CODEC_RAW, PG_CODEC_ZLIB, PG_CODEC_LZMA, PG_CODEC_BROTLI};
    enum pg_codec c = codecs[data[0] & 3];
    size_t raw = (size_t)data[1] | (size_t)data[2] << 8 | (size_t)(data[3] & 3) << 16;
    unsigned char *dst = malloc(raw ? raw : 1);
    if (!dst) abort();
    int rc = pg_decompress(c, data + 4, size - 4, raw ? dst : NULL, raw);
    if (!rc && raw) {
        unsigned x = 0;
        for (size_t i = 0; i < raw; i += 4096) x += dst[i]; /* all written (MSan would say; ASan can't) */
        if (x == 0xdeadbeef) puts("");
    }
    fuzz_check_error(rc);
    free(dst);
    return 0;
}
