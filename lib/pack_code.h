/* pack_code.h: the code bytes of a C submission, for pg-pack --code-self.
 *
 * Parameter Golf counts code bytes beside the artifact. For pgolf the code a submission needs is
 * the source that builds its scorers, pg-eval and pg-ttt, with the CPU backend: the Makefile,
 * cmd/pg-eval.c, cmd/pg-ttt.c, cmd/scoring.[ch], cmd/cli.[ch], every lib/ source (libpg is built
 * whole) and kernels/cpu/. Those files, in sorted path order, are laid end to end as
 * "PATH\nSIZE\n" + bytes each and compressed with the lzma codec (xz -9e); the compressed size
 * is the count. A CUDA build needs kernels/cuda/ too, which this does not count.
 */
#ifndef PG_PACK_CODE_H
#define PG_PACK_CODE_H

#include <stddef.h>
#include <stdint.h>

struct pg_code_self {
    size_t files;
    uint64_t raw_bytes;    /* the files' bytes */
    uint64_t packed_bytes; /* the xz of their archive: what counts */
};

/* Measures the code bytes of the pgolf source tree at root. @return 0, or PG_E_IO naming root
 * when it is not a pgolf tree or a file cannot be read, PG_E_NOMEM, an lzma error. */
int pg_code_self_measure(const char *root, struct pg_code_self *cs);

#endif
