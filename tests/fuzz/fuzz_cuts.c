/* fuzz_cuts.c: the per-group cut list of a packed model (pg_unpack_pgq's rebuild): the input is
 * [u16 n][n bytes: the "cuts" stream][u16 m][m bytes: "rest"][the rest: 1 to 3 group streams of
 * equal size, their count from byte 0 of the rest], packed as raw streams into a valid artifact
 * (pg_pga_build), so every input reaches the cut list itself. */
#include "fuzz.h"

#include "../../lib/pack.h"
#include "../../lib/pga.h"
#include "../../lib/xio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5) return 0;
    size_t n = pg_le16_get(data), at = 2;
    if (n > size - at) return 0;
    const uint8_t *cuts = data + at;
    at += n;
    if (size - at < 3) return 0;
    size_t m = pg_le16_get(data + at);
    at += 2;
    if (m > size - at) return 0;
    const uint8_t *rest = data + at;
    at += m;
    size_t left = size - at, ng = left ? 1 + data[at] % 3 : 0;
    if (left) at++, left--;
    static const char *names[3] = {"tok_emb", "attn.c_q", "mlp.fc"};
    struct pg_pga_input in[5] = {{.name = "cuts", .data = cuts, .size = n}, {.name = "rest", .data = rest, .size = m}};
    for (size_t g = 0; g < ng; g++)
        in[2 + g] = (struct pg_pga_input){.name = names[g], .data = data + at + g * (left / ng), .size = left / ng};
    unsigned char *art;
    size_t art_n;
    if (pg_pga_build(in, 2 + ng, &art, &art_n)) abort(); /* raw streams of valid names always build */
    struct pg_pga a;
    if (pg_pga_parse(&a, art, art_n, "fuzz")) abort();
    unsigned char *pgq = NULL;
    size_t pgq_n;
    fuzz_check_error(pg_unpack_pgq(&a, &pgq, &pgq_n));
    free(pgq);
    pg_pga_close(&a);
    free(art);
    return 0;
}
