/* codec.c: raw, zlib, lzma (xz) and brotli through their libraries; lrzip is in codec_lrzip.c. */
#include "codec.h"

#include "err.h"
#include "pgac.h"
#include "xio.h"

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <lzma.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* The xz decoder allocates the dictionary its stream header asks for (up to 1.5 GiB); preset 9
 * needs 64 MiB, so refuse anything past this instead of allocating what corrupt data claims. */
#define LZMA_DECODE_MEMLIMIT (256ull << 20)

static const char *const codec_names[PG_CODEC_COUNT] = {"raw", "zlib", "lzma", "brotli", "lrzip", "pgac"};

const char *pg_codec_name(int c) { return c >= 0 && c < PG_CODEC_COUNT ? codec_names[c] : "?"; }

int pg_codec_from_name(const char *name, enum pg_codec *c)
{
    for (int i = 0; i < PG_CODEC_COUNT; i++)
        if (!strcmp(name, codec_names[i])) {
            *c = (enum pg_codec)i;
            return 0;
        }
    return pg_error(PG_E_INVAL, "unknown codec '%s' (zlib, lzma, brotli, lrzip, pgac or raw)", name);
}

struct pg_codec_params pg_codec_defaults(enum pg_codec c)
{
    struct pg_codec_params p = {.level = 9, .lzma_extreme = 1, .brotli_lgwin = 24, .lrzip_zpaq = 1, .lrzip_threads = 1};
    if (c == PG_CODEC_BROTLI) p.level = 11;
    return p;
}

static int check_params(enum pg_codec c, const struct pg_codec_params *p)
{
    const char *name = pg_codec_name(c);
    switch (c) {
    case PG_CODEC_RAW:
    case PG_CODEC_PGAC: return 0;
    case PG_CODEC_ZLIB:
    case PG_CODEC_LZMA:
        if (p->level < 0 || p->level > 9) return pg_error(PG_E_INVAL, "%s level %d is out of range [0, 9]", name, p->level);
        return 0;
    case PG_CODEC_BROTLI:
        if (p->level < 0 || p->level > BROTLI_MAX_QUALITY)
            return pg_error(PG_E_INVAL, "brotli quality %d is out of range [0, %d]", p->level, BROTLI_MAX_QUALITY);
        if (p->brotli_lgwin < BROTLI_MIN_WINDOW_BITS || p->brotli_lgwin > BROTLI_MAX_WINDOW_BITS)
            return pg_error(PG_E_INVAL, "brotli window %d is out of range [%d, %d]", p->brotli_lgwin,
                            BROTLI_MIN_WINDOW_BITS, BROTLI_MAX_WINDOW_BITS);
        return 0;
    case PG_CODEC_LRZIP:
        if (p->level < 1 || p->level > 9) return pg_error(PG_E_INVAL, "lrzip level %d is out of range [1, 9]", p->level);
        if (p->lrzip_threads < 1 || p->lrzip_threads > 64)
            return pg_error(PG_E_INVAL, "lrzip threads %d is out of range [1, 64]", p->lrzip_threads);
        return 0;
    default: return pg_error(PG_E_INVAL, "unknown codec %d", (int)c);
    }
}

/* ---- compression ---- */

static int zlib_compress(const struct pg_codec_params *p, const unsigned char *src, size_t n, unsigned char **out,
                         size_t *out_n)
{
    uLong bound = compressBound((uLong)n);
    unsigned char *buf = pg_malloc(bound);
    if (!buf) return PG_E_NOMEM;
    uLongf len = bound;
    /* compress2 = deflateInit(level) with the default window and memLevel: Python's zlib.compress. */
    int r = compress2(buf, &len, src, (uLong)n, p->level);
    if (r != Z_OK) {
        free(buf);
        return pg_error(r == Z_MEM_ERROR ? PG_E_NOMEM : PG_E_LIB, "zlib compress failed (%d)", r);
    }
    *out = buf;
    *out_n = len;
    return 0;
}

static int lzma_compress(const struct pg_codec_params *p, const unsigned char *src, size_t n, unsigned char **out,
                         size_t *out_n)
{
    size_t bound = lzma_stream_buffer_bound(n);
    if (!bound) return pg_error(PG_E_INVAL, "lzma: input of %zu bytes is too large", n);
    lzma_options_lzma opt;
    uint32_t preset = (uint32_t)p->level | (p->lzma_extreme ? LZMA_PRESET_EXTREME : 0);
    if (lzma_lzma_preset(&opt, preset)) return pg_error(PG_E_LIB, "lzma: preset %u is not supported", preset);
    /* A dictionary larger than the input cannot help, but the decoder allocates all of it (64 MiB
     * at preset 9, whatever the input size): cut it to the input size. xz 5.4 itself does not
     * (a 16 KB file packed with xz -9e still asks for 65 MiB to decode), so for small inputs our
     * bytes differ from xz's in the LZMA2 dictionary property and the match finder's tables. */
    if (opt.dict_size > n) opt.dict_size = n > LZMA_DICT_SIZE_MIN ? (uint32_t)n : LZMA_DICT_SIZE_MIN;
    lzma_filter filters[] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, NULL}};
    unsigned char *buf = pg_malloc(bound);
    if (!buf) return PG_E_NOMEM;
    size_t pos = 0;
    lzma_ret r = lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC64, NULL, src, n, buf, &pos, bound);
    if (r != LZMA_OK) {
        free(buf);
        return pg_error(r == LZMA_MEM_ERROR ? PG_E_NOMEM : PG_E_LIB, "lzma compress failed (lzma_ret %d)", (int)r);
    }
    *out = buf;
    *out_n = pos;
    return 0;
}

static int brotli_compress(const struct pg_codec_params *p, const unsigned char *src, size_t n, unsigned char **out,
                           size_t *out_n)
{
    size_t bound = BrotliEncoderMaxCompressedSize(n);
    if (!bound) return pg_error(PG_E_INVAL, "brotli: input of %zu bytes is too large", n);
    unsigned char *buf = pg_malloc(bound);
    if (!buf) return PG_E_NOMEM;
    size_t len = bound;
    if (!BrotliEncoderCompress(p->level, p->brotli_lgwin, BROTLI_MODE_GENERIC, n, src, &len, buf)) {
        free(buf);
        return pg_error(PG_E_LIB, "brotli compress failed");
    }
    *out = buf;
    *out_n = len;
    return 0;
}

int pg_compress(enum pg_codec c, const struct pg_codec_params *params, const void *src, size_t n,
                unsigned char **out, size_t *out_n)
{
    static const unsigned char empty[1];
    *out = NULL;
    *out_n = 0;
    struct pg_codec_params p = params ? *params : pg_codec_defaults(c);
    PG_TRY(check_params(c, &p));
    if (!src) src = empty; /* n == 0: the libraries want a pointer all the same */
    switch (c) {
    case PG_CODEC_RAW:
        if (!(*out = pg_malloc(n ? n : 1))) return PG_E_NOMEM;
        if (n) memcpy(*out, src, n);
        *out_n = n;
        return 0;
    case PG_CODEC_ZLIB: return zlib_compress(&p, src, n, out, out_n);
    case PG_CODEC_LZMA: return lzma_compress(&p, src, n, out, out_n);
    case PG_CODEC_BROTLI: return brotli_compress(&p, src, n, out, out_n);
    case PG_CODEC_LRZIP: return pg_lrzip_compress(&p, src, n, out, out_n);
    case PG_CODEC_PGAC: return pg_pgac_encode(src, n, p.pgac_cols ? p.pgac_cols : (n ? n : 1), out, out_n, p.pgac_stats);
    default: return pg_error(PG_E_INVAL, "unknown codec %d", (int)c);
    }
}

/* ---- decompression ---- */

static int size_mismatch(const char *name, size_t got, size_t want)
{
    return pg_error(PG_E_FORMAT, "%s data decodes to %zu bytes, expected %zu", name, got, want);
}

static int zlib_decompress(const unsigned char *src, size_t n, unsigned char *dst, size_t raw)
{
    /* An inflate loop rather than uncompress2, which cannot tell "decodes to 0 bytes" from
     * "decodes to 1 byte" when told to expect 0. Past the expected size inflate gets one spare
     * byte: if it writes there, the data decodes to more than expected. */
    enum { CHUNK = 1u << 30 };
    z_stream s;
    memset(&s, 0, sizeof s);
    int r = inflateInit(&s);
    if (r != Z_OK) return pg_error(r == Z_MEM_ERROR ? PG_E_NOMEM : PG_E_LIB, "zlib: inflateInit failed (%d)", r);
    size_t in_left = n, out_left = raw;
    unsigned char spare[1];
    int over = 0, rc = 0;
    for (;;) {
        if (!s.avail_in && in_left) {
            s.avail_in = in_left > CHUNK ? CHUNK : (uInt)in_left;
            s.next_in = (Bytef *)src;
            src += s.avail_in;
            in_left -= s.avail_in;
        }
        if (!s.avail_out) {
            if (over) {
                rc = pg_error(PG_E_FORMAT, "zlib data decodes to more than %zu bytes", raw);
                break;
            }
            if (out_left) {
                s.avail_out = out_left > CHUNK ? CHUNK : (uInt)out_left;
                s.next_out = dst;
                dst += s.avail_out;
                out_left -= s.avail_out;
            } else {
                s.avail_out = 1;
                s.next_out = spare;
                over = 1;
            }
        }
        r = inflate(&s, Z_NO_FLUSH);
        if (r == Z_OK) continue;
        if (r == Z_STREAM_END) break;
        /* There is always room for output, so Z_BUF_ERROR means the input ran out. */
        if (r == Z_BUF_ERROR) rc = pg_error(PG_E_FORMAT, "zlib data is truncated");
        else if (r == Z_MEM_ERROR) rc = pg_error(PG_E_NOMEM, "zlib: out of memory");
        else rc = pg_error(PG_E_FORMAT, "zlib data is corrupt (%s)", s.msg ? s.msg : "bad stream");
        break;
    }
    if (!rc) {
        if (over && !s.avail_out) rc = pg_error(PG_E_FORMAT, "zlib data decodes to more than %zu bytes", raw);
        else if (s.avail_in || in_left) rc = pg_error(PG_E_FORMAT, "zlib data has %zu trailing bytes", s.avail_in + in_left);
        else if (s.total_out != raw) rc = size_mismatch("zlib", s.total_out, raw);
    }
    inflateEnd(&s);
    return rc;
}

static int lzma_decompress(const unsigned char *src, size_t n, unsigned char *dst, size_t raw)
{
    uint64_t memlimit = LZMA_DECODE_MEMLIMIT;
    size_t in_pos = 0, out_pos = 0;
    lzma_ret r = lzma_stream_buffer_decode(&memlimit, 0, NULL, src, &in_pos, n, dst, &out_pos, raw);
    switch (r) {
    case LZMA_OK: break;
    case LZMA_MEM_ERROR: return pg_error(PG_E_NOMEM, "lzma: out of memory");
    case LZMA_MEMLIMIT_ERROR:
        return pg_error(PG_E_FORMAT, "lzma data needs %llu MiB to decode, over the %llu MiB limit",
                        (unsigned long long)(memlimit >> 20), LZMA_DECODE_MEMLIMIT >> 20);
    case LZMA_FORMAT_ERROR: return pg_error(PG_E_FORMAT, "not xz data");
    case LZMA_OPTIONS_ERROR: return pg_error(PG_E_FORMAT, "xz data uses unsupported options");
    case LZMA_BUF_ERROR:
        if (out_pos == raw && in_pos < n) return pg_error(PG_E_FORMAT, "xz data decodes to more than %zu bytes", raw);
        return pg_error(PG_E_FORMAT, "xz data is truncated");
    default: return pg_error(PG_E_FORMAT, "xz data is corrupt (lzma_ret %d)", (int)r);
    }
    if (in_pos != n) return pg_error(PG_E_FORMAT, "xz data has %zu trailing bytes", n - in_pos);
    if (out_pos != raw) return size_mismatch("xz", out_pos, raw);
    return 0;
}

static int brotli_decompress(const unsigned char *src, size_t n, unsigned char *dst, size_t raw)
{
    BrotliDecoderState *s = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    if (!s) return pg_error(PG_E_NOMEM, "brotli: out of memory");
    size_t avail_in = n, avail_out = raw;
    const uint8_t *next_in = src;
    uint8_t *next_out = dst;
    BrotliDecoderResult r = BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, &next_out, NULL);
    int rc = 0;
    if (r == BROTLI_DECODER_RESULT_ERROR)
        rc = pg_error(PG_E_FORMAT, "brotli data is corrupt (%s)", BrotliDecoderErrorString(BrotliDecoderGetErrorCode(s)));
    else if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT)
        rc = pg_error(PG_E_FORMAT, "brotli data is truncated");
    else if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT)
        rc = pg_error(PG_E_FORMAT, "brotli data decodes to more than %zu bytes", raw);
    else if (avail_in)
        rc = pg_error(PG_E_FORMAT, "brotli data has %zu trailing bytes", avail_in);
    else if (avail_out)
        rc = size_mismatch("brotli", raw - avail_out, raw);
    BrotliDecoderDestroyInstance(s);
    return rc;
}

int pg_decompress(enum pg_codec c, const void *src, size_t n, void *dst, size_t raw_size)
{
    static const unsigned char empty[1];
    unsigned char spare[1];
    if (!src) {
        if (n) return pg_error(PG_E_INVAL, "decompress: no input");
        src = empty;
    }
    if (!dst) {
        if (raw_size) return pg_error(PG_E_INVAL, "decompress: no output buffer");
        dst = spare; /* libraries want a pointer even for 0 bytes */
    }
    switch (c) {
    case PG_CODEC_RAW:
        if (n != raw_size) return size_mismatch("raw", n, raw_size);
        if (n) memcpy(dst, src, n);
        return 0;
    case PG_CODEC_ZLIB: return zlib_decompress(src, n, dst, raw_size);
    case PG_CODEC_LZMA: return lzma_decompress(src, n, dst, raw_size);
    case PG_CODEC_BROTLI: return brotli_decompress(src, n, dst, raw_size);
    case PG_CODEC_LRZIP: return pg_lrzip_decompress(src, n, dst, raw_size);
    case PG_CODEC_PGAC: return pg_pgac_decode(src, n, dst, raw_size);
    default: return pg_error(PG_E_INVAL, "unknown codec %d", (int)c);
    }
}
