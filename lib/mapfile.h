/* mapfile.h: read-only whole-file input, memory-mapped.
 *
 * Regular files are mmap'd (the kernel pages them in and out, so a large shard costs no heap);
 * "-" and non-seekable inputs are read into memory instead. The mapping is immutable.
 */
#ifndef PG_MAPFILE_H
#define PG_MAPFILE_H

#include <stddef.h>

struct pg_map {
    const unsigned char *data;
    size_t size;
    int mapped;   /* 1: munmap on close; 0: free on close */
};

/* Maps `path` ("-": stdin) read-only. An empty file gives data == NULL, size 0.
 * @return 0, or PG_E_IO / PG_E_NOMEM naming the path. */
int pg_map_open(struct pg_map *m, const char *path);

/* Hints that the mapping will be read front to back. */
void pg_map_sequential(struct pg_map *m);

/* Releases the mapping. Safe on a zeroed struct. */
void pg_map_close(struct pg_map *m);

#endif
