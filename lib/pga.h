/* pga.h: the .pga artifact container: named byte streams, each transformed and compressed.
 *
 * Layout (integers little-endian; man/pg-formats.5 has the full tables):
 *
 *   0     64 bytes   header: "PGAR", u32 version, u64 file size, u64 data offset, u32 stream
 *                    count, u32 CRC32 of the stream table, 28 reserved zero bytes, u32 CRC32 of
 *                    header bytes 0..59
 *   64    96·n       stream table, one 96-byte entry per stream: name (32 bytes, NUL-padded),
 *                    u8 codec, u8 transform, u16 reserved, u32 CRC32 of the raw bytes, u64
 *                    transform parameters p0 and p1, u64 raw size, u64 packed size, u64 offset,
 *                    u32 CRC32 of the packed bytes, 12 reserved zero bytes
 *   64+96·n          the packed streams, back to back in table order, up to the end of the file
 *
 * A stream's raw bytes (what the caller gave, and what decoding returns) go through the transform
 * (bytes_xform.h), then the codec (codec.h); CRC32 is zlib's crc32. Everything is checked: a
 * reader never reads outside the buffer and never allocates more than PG_PGA_MAX_RAW for a
 * stream, or for all of them together; every failure is one line naming the file and the problem.
 */
#ifndef PG_PGA_H
#define PG_PGA_H

#include "bytes_xform.h"
#include "codec.h"
#include "mapfile.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PG_PGA_MAGIC "PGAR"
#define PG_PGA_VERSION 3        /* the newest this build writes: an artifact is written as version 1
                                 * unless it uses what version 2 added (codec pgac) or version 3
                                 * (a packed model's "perms" stream) */
#define PG_PGA_HEADER_BYTES 64
#define PG_PGA_ENTRY_BYTES 96
#define PG_PGA_NAME_BYTES 32    /* names are 1..31 printable ASCII characters, no space */
#define PG_PGA_MAX_STREAMS 65535
#define PG_PGA_MAX_RAW (1ull << 30) /* per stream, and all streams together: 1 GiB */

/* The versions this build reads. */
extern const uint32_t pg_pga_versions[];
extern const size_t pg_pga_nversions;

/* One stream to pack. */
struct pg_pga_input {
    const char *name;
    const void *data;
    size_t size;
    enum pg_codec codec;
    const struct pg_codec_params *params; /* NULL: pg_codec_defaults(codec) */
    struct pg_xform xform;                /* {0}: none */
};

/* One stream of an artifact, as its table entry says. */
struct pg_pga_stream {
    char name[PG_PGA_NAME_BYTES];
    enum pg_codec codec;
    struct pg_xform xform;
    uint64_t raw_size, packed_size, offset;
    uint32_t crc_raw, crc_packed;
};

/* An artifact read from a buffer (borrowed) or a file (mapped, owned). */
struct pg_pga {
    char *path;                 /* for messages */
    struct pg_map map;          /* when opened from a file */
    const unsigned char *data;  /* the whole artifact */
    size_t size;
    uint32_t version;
    size_t n;
    struct pg_pga_stream *streams;
};

/* Transforms and compresses the n inputs (in parallel, one stream per OpenMP thread) and lays
 * out an artifact in memory: *out (malloc'd) of *out_size bytes. Names must be valid and unique,
 * transforms must fit their data, sizes at most PG_PGA_MAX_RAW.
 * @return 0, or PG_E_INVAL / PG_E_NOMEM / a codec's error, with the stream named. */
int pg_pga_build(const struct pg_pga_input *in, size_t n, unsigned char **out, size_t *out_size);

/* Writes an artifact atomically (temporary file + rename; "-" is stdout). @return 0 or PG_E_IO. */
int pg_pga_write(const char *path, const void *data, size_t size);

/* Checks the header and the stream table of an artifact in memory (the buffer must outlive a;
 * path names it in messages) without decompressing anything. @return 0, or PG_E_FORMAT with a
 * message such as "PATH: unsupported version 7 (this build reads versions 1 to 3)", PG_E_NOMEM. */
int pg_pga_parse(struct pg_pga *a, const void *data, size_t size, const char *path);

/* Maps and parses a file ("-": stdin). @return as pg_pga_parse, or PG_E_IO. */
int pg_pga_open(struct pg_pga *a, const char *path);

/* Frees a (and the mapping, if opened from a file). Safe on a zeroed struct. */
void pg_pga_close(struct pg_pga *a);

/* @return the index of the stream called name, or -1. */
long pg_pga_find(const struct pg_pga *a, const char *name);

/* Checks the CRC32 of every stream's packed bytes (cheap: no decompression).
 * @return 0, or PG_E_FORMAT "PATH: checksum mismatch in stream 'NAME'". */
int pg_pga_verify(const struct pg_pga *a);

/* Decodes stream i: checks the packed CRC, decompresses, undoes the transform, checks the raw
 * CRC. *out (malloc'd, at least 1 byte) holds streams[i].raw_size bytes. @return 0 or an error
 * naming the file and the stream. */
int pg_pga_decode(const struct pg_pga *a, size_t i, unsigned char **out);

/* Decodes every stream, in parallel threads. out[i] (malloc'd each) gets stream i; on failure
 * every out[i] is NULL and the error is that of the first failing stream in table order. */
int pg_pga_decode_all(const struct pg_pga *a, unsigned char **out);

/* Prints the listing of pg-pack -l: a heading, one line per stream (name, codec, transform, raw
 * bytes, packed bytes, packed/raw ratio), and a total line with the file size. */
void pg_pga_list(const struct pg_pga *a, FILE *f);

#endif
