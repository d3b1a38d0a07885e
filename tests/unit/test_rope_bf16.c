/* test_rope_bf16.c: --rope-bf16 reproduces the PyTorch baseline's bf16 RoPE tables (spec §3.3):
 * positions quantized to bf16 leave 513 distinct positions of 1024 (256..511 snap to even,
 * 512..1023 to multiples of 4, 1022 and 1023 to 1024), and the last inverse frequency is the
 * bf16 value 0.00013351 instead of 0.00013335. Without the option every position is distinct. */
#include "../tap.h"

#include "../../lib/config.h"
#include "../../lib/model.h"

#include <string.h>

static int distinct_rows(const struct pg_model *m)
{
    int half = m->rd / 2, n = 0;
    for (int p = 0; p < m->t; p++) {
        int same = p > 0 && memcmp(m->cos + (size_t)p * half, m->cos + (size_t)(p - 1) * half, half * sizeof(float)) == 0 &&
                   memcmp(m->sin + (size_t)p * half, m->sin + (size_t)(p - 1) * half, half * sizeof(float)) == 0;
        n += !same;
    }
    return n;
}

int main(void)
{
    struct pg_config c;
    pg_config_default(&c);
    c.num_layers = 1; /* the baseline's attention shape (8 heads of 64), one layer */
    for (int bf = 0; bf < 2; bf++) {
        c.rope_bf16 = bf;
        struct pg_model m;
        if (pg_model_init(&m, &c, &pg_backend_cpu, 0) || pg_model_alloc_acts(&m, 1, 1024)) return 1;
        int half = m.rd / 2;
        if (bf) {
            is_int(distinct_rows(&m), 513, "bf16: 513 distinct positions among 1024");
            ok(memcmp(m.cos + 1022 * half, m.cos + 1023 * half, half * sizeof(float)) == 0,
               "bf16: positions 1022 and 1023 share a row (both 1024)");
            is_close(m.sin[1 * half + 31], 0.00013351, 2e-8, 0, "bf16: last inverse frequency 0.00013351");
        } else {
            is_int(distinct_rows(&m), 1024, "exact: 1024 distinct positions");
            is_close(m.sin[1 * half + 31], 0.000133352, 1e-9, 0, "exact: last inverse frequency 0.00013335");
        }
        pg_model_free(&m);
    }
    return done_testing();
}
