/* synth_shard: writes N synthetic tokens as the val (or train) split of a shard folder, for the
 * soak test and its benchmark (a test tool).
 *
 *   synth_shard DIR PREFIX SPLIT N VOCAB [SHARD_TOKENS]
 *
 * Token i is a pseudo-random id in [0, VOCAB) (splitmix64 of i, so the stream is fixed), with the
 * BOS id 1 every 997 tokens; shards of SHARD_TOKENS (default 10^8) through pg_shard_writer, so the
 * files are the real format, written atomically. Exit status 0, 1 on an error, 2 on usage. */
#include "../../lib/err.h"
#include "../../lib/rng.h"
#include "../../lib/shard.h"
#include "../../lib/xio.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: synth_shard DIR PREFIX SPLIT N VOCAB [SHARD_TOKENS]\n");
        return 2;
    }
    unsigned long long n = strtoull(argv[4], NULL, 10), vocab = strtoull(argv[5], NULL, 10);
    unsigned long long per = argc > 6 ? strtoull(argv[6], NULL, 10) : PG_SHARD_DEFAULT_TOKENS;
    if (vocab < 2 || vocab > 65536) {
        fprintf(stderr, "synth_shard: VOCAB must be 2..65536\n");
        return 2;
    }
    struct pg_shard_writer w;
    int rc = pg_mkdir_p(argv[1]);
    if (!rc) rc = pg_shard_writer_open(&w, argv[1], argv[2], argv[3], per);
    enum { CHUNK = 1 << 16 };
    static uint16_t buf[CHUNK];
    uint64_t state = 0x5eed;
    for (unsigned long long i = 0; i < n && !rc;) {
        size_t k = n - i < CHUNK ? (size_t)(n - i) : CHUNK;
        for (size_t j = 0; j < k; j++, i++) buf[j] = i % 997 == 0 ? 1 : (uint16_t)(pg_splitmix64(&state) % vocab);
        rc = pg_shard_writer_put(&w, buf, k);
    }
    if (!rc) rc = pg_shard_writer_commit(&w, NULL);
    else pg_shard_writer_abort(&w);
    if (rc) {
        fprintf(stderr, "synth_shard: %s\n", pg_error_message());
        return 1;
    }
    return 0;
}
