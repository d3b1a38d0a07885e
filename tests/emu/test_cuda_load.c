/* test_cuda_load.c: a model file loads onto the CUDA backend (pg_modelfile_load stages it through
 * a host twin and uploads) with the same bits as onto the CPU, and the loaded device model scores
 * as the CPU one does (pg-eval --device cuda), and initializes to the CPU's weights. Built as test_cuda_load_emu (emulated kernels) and
 * test_cuda_load_gpu (a real device; skips without one). */
#define _POSIX_C_SOURCE 200809L
#include "parity.h"

#include "../../lib/ckpt.h"
#include "../../lib/config.h"
#include "../../lib/err.h"
#include "../../lib/model.h"
#include "../../lib/modelfile.h"

#include <stdio.h>
#include <unistd.h>

#define B 2
#define T 16

int main(void)
{
    parity_seed = 77;
    parity_start();
    struct pg_config c;
    pg_config_default(&c);
    c.vocab_size = 64, c.num_layers = 3, c.model_dim = 32, c.num_heads = 4, c.num_kv_heads = 2, c.train_seq_len = T;
    c.xsa_last_n = 2, c.skip_gates = 1, c.num_loops = 1, c.loop_start = 1, c.loop_end = 1; /* a record-style file */
    struct pg_model mc, mg;
    if (pg_model_init(&mc, &c, cpu, 0) || pg_model_alloc_acts(&mc, B, T)) {
        printf("Bail out! cpu model: %s\n", pg_error_message());
        return 1;
    }
    for (size_t i = 0; i < mc.nparams; i++) mc.params[i] = 0.3f * urand();
    char path[] = "/tmp/pg_test_cuda_load_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) skip_all("cannot create a temporary file");
    close(fd);
    is_int(pg_ckpt_save(&mc, path, 0, NULL, NULL), 0, "a CPU model saved as a checkpoint");
    is_int(pg_model_init(&mg, &c, &pg_backend_cuda, 0), 0, "a CUDA model of the same configuration");
    is_int(pg_model_alloc_acts(&mg, B, T), 0, "with activations on the device");
    is_int(pg_modelfile_load(&mg, path), 0, "the checkpoint loads onto the device (%s)", pg_error_message());
    float *got = back(mg.params, mg.nparams);
    ok(same_bits(got, mc.params, mc.nparams), "the device holds the file's %zu parameters, bit for bit", mc.nparams);
    int32_t x[B * T], y[B * T];
    for (int i = 0; i < B * T; i++) x[i] = (int32_t)((urand() + 1) * 32) % 64, y[i] = (int32_t)((urand() + 1) * 32) % 64;
    float lc[B * T], lg[B * T];
    double tc = pg_model_forward(&mc, x, y, B, lc), tg = pg_model_forward(&mg, x, y, B, lg);
    ok(fabs(tg - tc) <= 1e-5 * fabs(tc), "the device model's loss %.8f equals the CPU's %.8f", tg, tc);
    check("per-token losses", "after loading", lg, lc, B * T, 1e-5);
    pg_model_init_weights(&mc, 9); /* the device's init is computed on the host and uploaded */
    pg_model_init_weights(&mg, 9);
    ok(same_bits(back(mg.params, mg.nparams), mc.params, mc.nparams),
       "pg_model_init_weights gives the device the CPU's initial weights, bit for bit");
    char bad[] = "/tmp/pg_test_cuda_load_missing";
    ok(pg_modelfile_load(&mg, bad) < 0, "a missing file is an error, not a crash (%s)", pg_error_message());
    unlink(path);
    pg_model_free(&mg);
    pg_model_free(&mc);
    return parity_done(1e-5);
}
