/* fuzz_safetensors.c: safetensors files as checkpoints: pg_st_open (header, JSON, offsets), then
 * pg_ckpt_read_config (pgolf metadata, or the shape inferred from the tensors) and, for a small
 * model, pg_ckpt_load into it (dtype conversion, names and shapes). */
#include "fuzz.h"

#include "../../lib/backend.h"
#include "../../lib/ckpt.h"
#include "../../lib/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size, ".safetensors");
    struct pg_st_file f;
    int rc = pg_st_open(&f, path);
    if (!rc) {
        unsigned x = 0;
        for (size_t i = 0; i < f.ntensors; i++) {
            const struct pg_st_tensor *t = &f.t[i];
            if (pg_st_nbytes(t)) x += ((const unsigned char *)t->data)[0] + ((const unsigned char *)t->data)[pg_st_nbytes(t) - 1];
            if (pg_st_find(&f, t->name) == NULL) abort();
        }
        if (x == 0xdeadbeef) puts("");
        pg_st_close(&f);
    }
    fuzz_check_error(rc);
    struct pg_config cfg;
    rc = pg_ckpt_read_config(path, &cfg);
    size_t np;
    if (!rc && pg_config_validate(&cfg, 0) == 0 && pg_model_count_params(&cfg, &np) == 0 && np <= (1u << 20)) {
        struct pg_model m;
        if (pg_model_init(&m, &cfg, &pg_backend_cpu, 0) == 0) {
            fuzz_check_error(pg_ckpt_load(&m, path));
            pg_model_free(&m);
        }
    }
    fuzz_check_error(rc);
    return 0;
}
