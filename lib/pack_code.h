/* pack_code.h: the code bytes of a C submission, for pg-pack --code-self.
 *
 * Parameter Golf counts code bytes beside the artifact. For pgolf the code a submission needs is
 * the source that builds its scorers, pg-eval and pg-ttt, with the CPU backend: the Makefile (and
 * scripts/probe-features.sh, which it runs), cmd/pg-eval.c, cmd/pg-ttt.c, cmd/scoring.[ch],
 * cmd/cli.[ch], the lib/ sources they link (every header) and kernels/cpu/. A submission ships its
 * source as small as it builds: the C and C++ files go in without their comments and the blanks
 * at their lines' starts and ends (pg_code_strip_c: the compiler sees the same tokens on the same
 * lines), the Makefile without its comment and empty lines. Those files, in sorted path order,
 * are laid end to end as "PATH\nSIZE\n" + bytes each and compressed with the lzma codec (xz
 * -9e); the compressed size is the count. A CUDA build needs kernels/cuda/ too, which this does
 * not count.
 */
#ifndef PG_PACK_CODE_H
#define PG_PACK_CODE_H

#include <stddef.h>
#include <stdint.h>

struct pg_code_self {
    size_t files;
    uint64_t raw_bytes;     /* the files' bytes */
    uint64_t archive_bytes; /* their archive's, stripped */
    uint64_t packed_bytes;  /* the xz of the archive: what counts */
};

/* Measures the code bytes of the pgolf source tree at root, and writes the xz archive to the
 * file archive (atomically) unless it is NULL. @return 0, or PG_E_IO naming root when it is not
 * a pgolf tree or a file cannot be read or written, PG_E_NOMEM, an lzma error. */
int pg_code_self_measure(const char *root, struct pg_code_self *cs, const char *archive);

/* C or C++ source s[0..n) without comments, and without the blanks at each line's start and end,
 * written to out (room for n bytes): the same tokens on the same lines. @return its length. */
size_t pg_code_strip_c(const unsigned char *s, size_t n, unsigned char *out);

#endif
