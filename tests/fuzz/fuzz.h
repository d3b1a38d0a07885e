/* fuzz.h: shared by the libFuzzer harnesses tests/fuzz/fuzz_*.c (built by `make fuzz` with clang
 * -fsanitize=fuzzer,address,undefined; see tests/fuzz/README).
 *
 * Each harness feeds one input to one reader of libpg, the way the commands call it, and lets
 * ASan, UBSan and LeakSanitizer judge: a reader must refuse any input with an error code and never
 * crash, read out of bounds, overflow, or leak. Readers that take a path get the input through a
 * file (fuzz_file), so the mapping code is fuzzed too. Checksums the fuzzer cannot forge are
 * fixed up by the harnesses that need it, so the checks behind them are reached.
 */
#ifndef PG_FUZZ_H
#define PG_FUZZ_H

#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_path_[96];

static void fuzz_cleanup_(void)
{
    if (fuzz_path_[0]) unlink(fuzz_path_);
}

/* Writes the input to a per-process file (in /dev/shm when there is one) and returns its path. */
__attribute__((unused)) static const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix)
{
    if (!fuzz_path_[0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(fuzz_path_, sizeof fuzz_path_, "%s/pg-fuzz-%ld%s", dir, (long)getpid(), suffix);
        atexit(fuzz_cleanup_);
    }
    FILE *f = fopen(fuzz_path_, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(fuzz_path_);
        abort(); /* the harness's own failure, not the reader's */
    }
    return fuzz_path_;
}

/* Every error a reader returns must come with a message (the commands print it as their one line). */
__attribute__((unused)) static void fuzz_check_error(int rc)
{
    if (rc < 0 && !pg_error_message()[0]) {
        fprintf(stderr, "fuzz: error %d without a message\n", rc);
        abort();
    }
    pg_error_clear();
}

#endif
