/* xio.h: checked wrappers for the fallible calls libpg makes (allocation, open, read, write).
 *
 * Each wrapper returns NULL or a negative PG_E_* code on failure and records a message that names
 * the data file (for I/O) or the call site file:line (for allocation), so a command can print one
 * line and exit. They never abort the process.
 */
#ifndef PG_XIO_H
#define PG_XIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

void *pg_malloc_at(size_t n, const char *file, int line);
void *pg_calloc_at(size_t count, size_t size, const char *file, int line);
void *pg_realloc_at(void *p, size_t n, const char *file, int line);
char *pg_strdup_at(const char *s, const char *file, int line);

/* Allocation with the call site recorded in the error message on failure. @return NULL on failure. */
#define pg_malloc(n) pg_malloc_at((n), __FILE__, __LINE__)
#define pg_calloc(c, s) pg_calloc_at((c), (s), __FILE__, __LINE__)
#define pg_realloc(p, n) pg_realloc_at((p), (n), __FILE__, __LINE__)
#define pg_strdup(s) pg_strdup_at((s), __FILE__, __LINE__)

/* Grows *buf (of *cap elements of `elem` bytes) to hold at least `need` elements, doubling.
 * @return 0, or PG_E_NOMEM (the buffer is unchanged). */
int pg_grow(void **buf, size_t *cap, size_t need, size_t elem);

/* Opens `path` read-only ("-" is stdin). @return 0 and *fd, or PG_E_IO naming the path. */
int pg_open_read(const char *path, int *fd);

/* Reads up to n bytes, retrying on EINTR and short reads; *got < n only at end of file.
 * @return 0, or PG_E_IO naming `path`. */
int pg_read_upto(int fd, void *buf, size_t n, size_t *got, const char *path);

/* Writes all n bytes, retrying on EINTR and short writes. @return 0, or PG_E_IO naming `path`. */
int pg_write_all(int fd, const void *buf, size_t n, const char *path);

/* Writes all n bytes at `off`. @return 0, or PG_E_IO naming `path`. */
int pg_pwrite_all(int fd, const void *buf, size_t n, off_t off, const char *path);

/* @return 1 if `path` exists (any type), 0 if not. */
int pg_exists(const char *path);

/* Creates directory `path` (and parents) if missing. @return 0, or PG_E_IO. */
int pg_mkdir_p(const char *path);

/* Little-endian field access: formats are little-endian on every host. */
static inline uint16_t pg_le16_get(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline void pg_le16_put(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline uint32_t pg_le32_get(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void pg_le32_put(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static inline uint64_t pg_le64_get(const unsigned char *p)
{
    return (uint64_t)pg_le32_get(p) | (uint64_t)pg_le32_get(p + 4) << 32;
}
static inline void pg_le64_put(unsigned char *p, uint64_t v)
{
    pg_le32_put(p, (uint32_t)v);
    pg_le32_put(p + 4, (uint32_t)(v >> 32));
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pgolf maps token arrays straight from files, which are little-endian: big-endian hosts are not supported"
#endif

#endif
