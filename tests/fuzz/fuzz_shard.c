/* fuzz_shard.c: token shard headers (pg_shard_check_header on the bytes, pg_shard_open on a file);
 * a shard that passes has its tokens read. */
#include "fuzz.h"

#include "../../lib/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t count = 0;
    int rc = pg_shard_check_header(data, size, "fuzz", &count);
    if (!rc && 1024 + 2 * count != size) abort(); /* passed, so the size is exact */
    fuzz_check_error(rc);
    struct pg_shard s;
    rc = pg_shard_open(&s, fuzz_file(data, size, ".bin"));
    if (!rc) {
        unsigned sum = 0;
        for (uint64_t i = 0; i < s.n; i++) sum += s.tokens[i];
        if (s.n && sum == 0xdeadbeef) puts("");
        pg_shard_close(&s);
    }
    fuzz_check_error(rc);
    return 0;
}
