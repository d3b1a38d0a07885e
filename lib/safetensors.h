/* safetensors.h: reading and writing safetensors files, the format of pgolf checkpoints.
 *
 * safetensors (Hugging Face) is what PyTorch, numpy and the rest of the ecosystem load without
 * running code, so checkpoints written here open with safetensors.torch.load_file. A file is:
 *
 *   8 bytes   N, the header length, unsigned 64-bit little-endian
 *   N bytes   UTF-8 JSON object: tensor name → {"dtype": "F32", "shape": [2, 3],
 *             "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
 *             string → string; may end in spaces that pad the data start to a multiple of 8
 *   the rest  the data section: tensor bytes, little-endian, row-major; offsets are relative to
 *             its start (8 + N)
 *
 * Reading maps the file and checks it with the rules of the reference reader (safetensors'
 * Metadata::validate): the tensors, taken in order of (begin, end), must tile the data section
 * exactly from offset 0 to the end of the file (no hole, no overlap, no trailing byte; zero-byte
 * tensors may share an offset); end - begin must equal product(shape) x dtype size. We are
 * stricter in three places: a tensor entry with fields other than dtype/shape/data_offsets, a
 * duplicated JSON key, and more than PG_ST_MAX_DIMS dimensions are rejected too. Like the reference,
 * "__metadata__": null reads as no metadata. Only the 13 dtypes of enum pg_st_dtype are known;
 * the reference's newer ones (F8_E4M3, F8_E5M2, F8_E8M0, F4, F6_*, C64) are refused as unknown.
 *
 * Writing uses the reference writer's layout: tensors sorted by dtype alignment (the reference's
 * Dtype order, largest first) then by name (bytewise), packed back to back from offset 0; the
 * JSON is compact, "__metadata__" first, then the tensors in data order, each entry as
 * {"dtype":..,"shape":[..],"data_offsets":[b,e]}, strings escaped as serde_json escapes them; the
 * header is padded with spaces to a multiple of 8. The reference writes metadata keys in hash
 * order (random from run to run); we write them sorted, which is one of the orders it may emit.
 * So re-writing a file written by us, or by the reference with at most one metadata key (or keys
 * that happened to come out sorted), reproduces it byte for byte.
 */
#ifndef PG_SAFETENSORS_H
#define PG_SAFETENSORS_H

#include "mapfile.h"

#include <stddef.h>
#include <stdint.h>

#define PG_ST_MAX_DIMS 8
#define PG_ST_MAX_HEADER 100000000ull /* the reference reader's limit on N */

/* In the reference's Dtype order (increasing alignment), which the writer's layout sorts by. */
enum pg_st_dtype {
    PG_ST_BOOL, PG_ST_U8, PG_ST_I8, PG_ST_I16, PG_ST_U16, PG_ST_F16, PG_ST_BF16,
    PG_ST_I32, PG_ST_U32, PG_ST_F32, PG_ST_F64, PG_ST_I64, PG_ST_U64,
    PG_ST_NDTYPES
};

struct pg_st_tensor {
    char *name;
    int dtype;                       /* enum pg_st_dtype */
    int ndim;                        /* 0 for a scalar */
    int64_t shape[PG_ST_MAX_DIMS];
    uint64_t begin, end;             /* byte range in the data section (in a writer: 0, size) */
    const void *data;                /* end - begin bytes; see pg_st_open about alignment */
};

/* An open file. Tensors are in data order (by begin), which for files from a reference writer
 * is its dtype-then-name order. */
struct pg_st_file {
    char *path;
    struct pg_map map;
    size_t ntensors;
    struct pg_st_tensor *t;
    size_t nmeta;                    /* "__metadata__" entries, in the file's order */
    char **meta_keys, **meta_values;
    uint64_t data_start;             /* 8 + N */
};

/* @return bytes per element, or 0 for an invalid dtype. */
size_t pg_st_dtype_size(int dtype);

/* @return the format's name ("F32", "BF16", ...), or "invalid". */
const char *pg_st_dtype_name(int dtype);

/* @return the dtype named `s`, or PG_E_INVAL (with a message) if it names none. */
int pg_st_dtype_parse(const char *s);

/* @return the tensor's size in bytes. */
static inline uint64_t pg_st_nbytes(const struct pg_st_tensor *t) { return t->end - t->begin; }

/* Maps `path` ("-": stdin) and validates all of it (see the top of this file). Tensor data
 * points into the mapping, so it stays valid until pg_st_close; it is aligned to its dtype size
 * when N is a multiple of 8 and the layout is the reference one (every file we write), otherwise
 * read it with memcpy. On failure *f is left closed (safe to pg_st_close again).
 * @return 0, or PG_E_IO / PG_E_NOMEM, or PG_E_FORMAT with a message naming the file and the
 * problem. */
int pg_st_open(struct pg_st_file *f, const char *path);

/* @return the tensor called `name`, or NULL. */
const struct pg_st_tensor *pg_st_find(const struct pg_st_file *f, const char *name);

/* @return the "__metadata__" value for `key`, or NULL. */
const char *pg_st_meta(const struct pg_st_file *f, const char *key);

/* Unmaps and frees. Safe on a zeroed or already-closed struct. */
void pg_st_close(struct pg_st_file *f);

/* ---- writing ---- */

/* Collects tensors and metadata, then writes them in one go. Names and metadata are copied;
 * tensor data is only referenced: it must stay valid and unchanged until pg_st_write returns
 * (a checkpoint's weights are not duplicated in memory). */
struct pg_st_writer {
    size_t ntensors, cap;
    struct pg_st_tensor *t;
    size_t nmeta, metacap;
    char **meta_keys, **meta_values;
};

void pg_st_writer_init(struct pg_st_writer *w);

/* Adds a tensor of `ndim` dimensions (0..PG_ST_MAX_DIMS) whose product(shape) x dtype size bytes
 * start at `data` (little-endian, row-major; may be NULL when that is 0 bytes).
 * @return 0, or PG_E_INVAL (bad dtype or shape, size overflow, a name that is not UTF-8, is
 * "__metadata__" or was already added), or PG_E_NOMEM. */
int pg_st_add(struct pg_st_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
              const void *data);

/* Sets "__metadata__"[key] = value, replacing an earlier value for the same key.
 * @return 0, or PG_E_INVAL (key or value not UTF-8), or PG_E_NOMEM. */
int pg_st_set_meta(struct pg_st_writer *w, const char *key, const char *value);

/* Writes the file atomically (temporary + rename, see outfile.h; "-" is stdout) in the reference
 * writer's layout. The writer is unchanged and may be written again.
 * @return 0, or PG_E_IO / PG_E_NOMEM, or PG_E_INVAL if the header would pass PG_ST_MAX_HEADER. */
int pg_st_write(const struct pg_st_writer *w, const char *path);

/* Frees everything the writer copied. Safe on a zeroed or already-freed writer. */
void pg_st_writer_free(struct pg_st_writer *w);

#endif
