/* fuzz_state.c: the training state file as pg-train --resume reads it: pg_st_open, the metadata
 * (step, loader position, training time), and the optimizer blobs loaded into an Adam over two
 * vectors and a Muon over a 4 x 3 and a 2 x 5 matrix (pg_adam_state_load, pg_muon_state_load). */
#include "fuzz.h"

#include "../../lib/opt.h"
#include "../../lib/optim.h"
#include "../../lib/safetensors.h"

static pg_real params[64], grads[64];
static struct pg_adam adam;
static struct pg_muon muon;

static void setup(void)
{
    struct pg_opt_tensor a[2] = {{params, grads, 0, 0, 7}, {params + 7, grads + 7, 0, 0, 3}};
    struct pg_opt_tensor m[2] = {{params + 10, grads + 10, 4, 3, 12}, {params + 22, grads + 22, 2, 5, 10}};
    if (pg_adam_init(&adam, a, 2, 0.9, 0.95, 1e-8) || pg_muon_init(&muon, m, 2, 5, 1, 0)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!adam.t) setup();
    struct pg_st_file f;
    int rc = pg_st_open(&f, fuzz_file(data, size, ".state.safetensors"));
    if (rc) {
        fuzz_check_error(rc);
        return 0;
    }
    static const char *keys[4] = {"step", "loader_file", "loader_pos", "train_ms"};
    for (int i = 0; i < 4; i++) {
        const char *v = pg_st_meta(&f, keys[i]);
        int64_t x;
        double d;
        if (v) fuzz_check_error(i < 3 ? pg_parse_i64(keys[i], v, 0, INT64_MAX, &x) : pg_parse_f64(keys[i], v, 0, 1e300, &d));
    }
    const struct pg_st_tensor *t = pg_st_find(&f, "adam_embed");
    if (t) fuzz_check_error(pg_adam_state_load(&adam, t->data, pg_st_nbytes(t), "fuzz"));
    if ((t = pg_st_find(&f, "muon"))) fuzz_check_error(pg_muon_state_load(&muon, t->data, pg_st_nbytes(t), "fuzz"));
    pg_st_close(&f);
    return 0;
}
