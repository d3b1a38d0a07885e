/* codec.h: whole-buffer compression with the codecs of the Parameter Golf records.
 *
 *   raw     the bytes as they are
 *   zlib    deflate with the zlib header and adler32 trailer, level 9: the bytes Python's
 *           zlib.compress(data, 9) gives (the baseline's final_model.int8.ptz)
 *   lzma    the xz container (CRC64 check), preset 9 | LZMA_PRESET_EXTREME ("xz -9e"), with the
 *           dictionary cut to the input size when that is smaller (decoders allocate all of it)
 *   brotli  quality 11, lgwin 24 (the 04-01 byte-shuffle + brotli records)
 *   lrzip   the Debian lrzip program, "lrzip -z -L 9 -T -p 1": ZPAQ, level 9 (the Top record's
 *           per-group compressor); Debian has no liblrzip, see codec_lrzip.c
 *   pgac    pgolf's own context-model arithmetic coder for int8 matrices (pgac.h): the bytes are
 *           read as signed values, pgac_cols per row
 *
 * Decompression is told the raw size and writes exactly that many bytes into the caller's
 * buffer: it never allocates in proportion to what the compressed data claims, and data that is
 * corrupt, truncated, followed by trailing bytes, or that decodes to any other size is an error
 * (PG_E_FORMAT), never a crash. The checksum of the container in use (zlib's adler32, xz's CRC64,
 * lrzip's MD5; brotli has none) is checked too.
 */
#ifndef PG_CODEC_H
#define PG_CODEC_H

#include <stddef.h>

struct pg_pgac_stats;

/* The values are stored in .pga files: never renumber. */
enum pg_codec {
    PG_CODEC_RAW = 0,
    PG_CODEC_ZLIB = 1,
    PG_CODEC_LZMA = 2,
    PG_CODEC_BROTLI = 3,
    PG_CODEC_LRZIP = 4,
    PG_CODEC_PGAC = 5,
    PG_CODEC_COUNT
};

/* Compression settings; pg_codec_defaults gives the ones above. Fields a codec does not use are
 * ignored. Decompression needs none of them. */
struct pg_codec_params {
    int level;         /* zlib 0..9 (9); lzma preset 0..9 (9); brotli quality 0..11 (11); lrzip -L 1..9 (9) */
    int lzma_extreme;  /* lzma: OR LZMA_PRESET_EXTREME into the preset (1) */
    int brotli_lgwin;  /* brotli: window bits 10..24 (24) */
    int lrzip_zpaq;    /* lrzip: 1 = ZPAQ backend (-z), 0 = its default LZMA backend (1) */
    int lrzip_threads; /* lrzip: -p N, 1..64 (1). The output depends on N for inputs over 10 MB,
                        * so keep it fixed for reproducible artifacts; parallelism comes from
                        * compressing several streams at once instead */
    unsigned long long pgac_cols; /* pgac: values per row, dividing the size (0: the whole input is one row) */
    struct pg_pgac_stats *pgac_stats; /* pgac: where to put what the encoder measured (NULL: nowhere) */
};

/* @return the default settings of codec c (the table at the top of this file). */
struct pg_codec_params pg_codec_defaults(enum pg_codec c);

/* @return "raw", "zlib", "lzma", "brotli", "lrzip", "pgac", or "?" for a value out of range. */
const char *pg_codec_name(int c);

/* Parses a codec name (exact, lower case). @return 0 and *c, or PG_E_INVAL naming the choices. */
int pg_codec_from_name(const char *name, enum pg_codec *c);

/* Compresses n bytes of src. *out (malloc'd, free it) gets *out_n bytes; an empty input still
 * gives a valid non-empty stream for every codec but raw. params NULL: pg_codec_defaults(c).
 * @return 0, or PG_E_INVAL (bad codec or setting), PG_E_NOMEM, PG_E_LIB (the library failed),
 * PG_E_UNSUPPORTED (lrzip is not installed), PG_E_IO (lrzip's temporary files). */
int pg_compress(enum pg_codec c, const struct pg_codec_params *params, const void *src, size_t n,
                unsigned char **out, size_t *out_n);

/* Decompresses the n bytes of src into dst, which must hold exactly raw_size bytes (dst may be
 * NULL when raw_size is 0). @return 0, or PG_E_FORMAT when the data is not a complete stream of
 * codec c that decodes to exactly raw_size bytes, PG_E_INVAL, PG_E_NOMEM, PG_E_UNSUPPORTED,
 * PG_E_IO, PG_E_LIB. */
int pg_decompress(enum pg_codec c, const void *src, size_t n, void *dst, size_t raw_size);

/* ---- lrzip, driven as a program (codec_lrzip.c) ---- */

/* The program run is $PG_LRZIP if set (a name looked up in PATH, or a path), else "lrzip".
 * @return 1 if "lrzip -V" runs and exits 0; 0 if not, with the error message saying why. */
int pg_lrzip_available(void);

/* The two halves of pg_compress / pg_decompress for PG_CODEC_LRZIP (params already checked). */
int pg_lrzip_compress(const struct pg_codec_params *p, const void *src, size_t n, unsigned char **out,
                      size_t *out_n);
int pg_lrzip_decompress(const void *src, size_t n, void *dst, size_t raw_size);

#endif
