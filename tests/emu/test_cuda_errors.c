/* test_cuda_errors.c: a failed CUDA or cuBLAS call is the library's error, not an exit
 * (kernels/cuda/pg_cuda.cuh): the first failure is recorded and pg_cuda_status() (the backend's
 * status) reports it once, as PG_E_NOMEM or PG_E_LIB with one line naming the call, file and line;
 * afterwards the device works again. Built as test_cuda_errors_emu (emulated kernels, a device of
 * PG_EMU_MEM_LIMIT bytes) and test_cuda_errors_gpu (a real device; skips without one).
 *
 * The failures are ones a GPU survives (out of memory, a cuBLAS argument check, a copy to NULL),
 * not faults that leave its context unusable, so every check runs on the hardware too. */
#define _POSIX_C_SOURCE 200809L
#include "parity.h"

#include "../../lib/bpb.h"
#include "../../lib/ckpt.h"
#include "../../lib/config.h"
#include "../../lib/err.h"
#include "../../lib/eval.h"
#include "../../lib/loader.h"
#include "../../lib/model.h"
#include "../../lib/modelfile.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

/* The emulated device's size (no effect on a GPU): small, so that filling it is cheap. */
#define EMU_LIMIT ((size_t)64 << 20)

static int has(const char *s, const char *part) { return strstr(s, part) != NULL; }

/* "FILE:" followed by a line number and ": " in s. */
static int names_line(const char *s, const char *file)
{
    char pat[128];
    snprintf(pat, sizeof pat, "%s:", file);
    const char *p = strstr(s, pat);
    if (!p) return 0;
    p += strlen(pat);
    if (!isdigit((unsigned char)*p)) return 0;
    while (isdigit((unsigned char)*p)) p++;
    return p[0] == ':' && p[1] == ' ';
}

static int one_line(const char *s) { return *s && !strchr(s, '\n'); }

/* y = 1, 2, ..., n on the device; y += 2·y via axpy; back on the host: exactly 3, 6, 9, ... */
static int ops_work(size_t n)
{
    float *h = hnew(n);
    for (size_t i = 0; i < n; i++) h[i] = (float)(i + 1);
    float *d = dev(h, n);
    pg_cuda_axpy(d, 2.0, d, n);
    float *got = back(d, n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != 3.0f * (float)(i + 1)) return 0;
    return 1;
}

/* cuBLAS rejects k < 0 (CUBLAS_STATUS_INVALID_VALUE) before touching memory: a matmul with in = -1
 * fails in its cublas call (kernels/cuda/matmul.cu) on the emulator and on a GPU alike. */
static void bad_matmul(void)
{
    float *y = dnew(16), *x = dnew(16), *w = dnew(16);
    pg_cuda_matmul_fwd(y, x, w, 2, -1, 2);
}

/* A host-to-device copy to NULL: cudaMemcpyAsync fails with an invalid argument (kernels/cuda/mem.cu). */
static void bad_upload(void)
{
    float h[4] = {0};
    pg_cuda_upload(NULL, h, sizeof h);
}

/* n TAP lines that skip (the checks make no sense here). */
static void skip_n(int n, const char *why)
{
    for (int i = 0; i < n; i++) ok(1, "# SKIP %s", why);
}

static void *bad_upload_thread(void *arg)
{
    (void)arg;
    bad_upload();
    return NULL;
}

/* 8. What lib/ makes of it: the device's message reaches the caller of the model's functions. */
static void lib_checks(size_t total)
{
    struct pg_config c;
    pg_config_default(&c);
    /* A model larger than the device: at least 4·d² parameters per layer (q, o and the MLP). */
    c.model_dim = total < ((size_t)1 << 30) ? 1024 : 8192;
    c.num_layers = (int)(total / (16 * (size_t)c.model_dim * c.model_dim)) + 2;
    c.vocab_size = 64;
    struct pg_model big;
    pg_error_clear();
    int rc = pg_model_init(&big, &c, &pg_backend_cuda, 0);
    ok(rc == PG_E_NOMEM && strncmp(pg_error_message(), "cuda: out of memory: cudaMalloc of ", 35) == 0 &&
           has(pg_error_message(), " bytes free"),
       "pg_model_init of a %d-layer model larger than the device: the device's message, not a generic one (%s)",
       c.num_layers, pg_error_message());
    is_int(pg_cuda_status(), 0, "which lib/ took from the status: nothing is left to report");

    /* A small model scores; a failure before a batch is that batch's error, its losses not summed. */
    enum { B = 2, T = 16, V = 64 };
    pg_config_default(&c);
    c.vocab_size = V, c.num_layers = 2, c.model_dim = 32, c.num_heads = 4, c.num_kv_heads = 2, c.train_seq_len = T;
    struct pg_model m, h;
    if (pg_model_init(&m, &c, &pg_backend_cuda, 0) || pg_model_alloc_acts(&m, B, T) ||
        pg_model_init(&h, &c, cpu, 0)) {
        ok(0, "small models: %s", pg_error_message());
        return;
    }
    for (size_t i = 0; i < h.nparams; i++) h.params[i] = 0.2f * urand();
    pg_cuda_upload(m.params, h.params, h.nparams * sizeof *h.params);
    uint16_t tokens[B * T + 1];
    for (int i = 0; i <= B * T; i++) tokens[i] = (uint16_t)((i * 7 + 3) % V);
    struct pg_val_set v = {tokens, B * T, T};
    int16_t base[V];
    uint8_t space[V], boundary[V];
    for (int i = 0; i < V; i++) base[i] = 1, space[i] = 0, boundary[i] = 0;
    struct pg_bpb_lut lut = {.n = V, .base_bytes = base, .has_leading_space = space, .is_boundary = boundary};
    int32_t x[B * T], y[B * T];
    float losses[B * T];
    struct pg_eval_result r;
    memset(&r, 0, sizeof r);
    is_int(pg_eval_windows(&m, &v, &lut, 0, B, x, y, losses, &r), 0, "pg_eval_windows scores on the device");
    ok(r.tokens == B * T && r.nll_sum > 0, "%g tokens, nll %g", r.tokens, r.nll_sum);
    struct pg_eval_result before = r;
    bad_upload();
    rc = pg_eval_windows(&m, &v, &lut, 0, B, x, y, losses, &r);
    ok(rc == PG_E_LIB && strncmp(pg_error_message(), "cuda: cudaMemcpyAsync(", 22) == 0,
       "a device failure is pg_eval_windows's error (%s)", pg_error_message());
    ok(r.tokens == before.tokens && r.nll_sum == before.nll_sum, "and that batch's losses are not summed");

    /* Loading a model file onto the device is a synchronization point too. */
    char path[] = "/tmp/pg_test_cuda_errors_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) {
        close(fd);
        is_int(pg_ckpt_save(&h, path, 0, NULL, NULL), 0, "a checkpoint saved");
        pg_error_clear();
        rc = pg_modelfile_load(&m, path);
        is_int(rc, 0, "loads onto the device ('%s')", pg_error_message());
        bad_upload();
        rc = pg_modelfile_load(&m, path);
        ok(rc == PG_E_LIB && strncmp(pg_error_message(), "cuda: cudaMemcpyAsync(", 22) == 0,
           "a device failure is pg_modelfile_load's error (%s)", pg_error_message());
        unlink(path);
    } else {
        skip_n(3, "cannot create a temporary file");
    }
    is_int(pg_cuda_status(), 0, "nothing left to report");
    pg_model_free(&h);
    pg_model_free(&m);
}

int main(void)
{
    setenv("PG_EMU_MEM_LIMIT", "64M", 1); /* before the first CUDA call: the emulator reads it once */
    parity_start();
    pg_cuda_init();
    char msg[1024];
    int rc;

    /* 1. No failure: status 0 and no message. */
    pg_error_clear();
    ok(ops_work(1000), "device operations compute what they should");
    is_int(pg_cuda_status(), 0, "a process with no failure: pg_cuda_status() is 0");
    ok(pg_error_message()[0] == 0, "and leaves no message ('%s')", pg_error_message());
    ok(pg_backend_cuda.status == pg_cuda_status, "pg_cuda_status is the CUDA backend's status");

    size_t free0 = 0, total0 = 0;
    rc = pg_cuda_mem_info(&free0, &total0);
    is_int(rc, 0, "cudaMemGetInfo: %zu of %zu bytes free", free0, total0);
    ok(free0 > 0 && free0 <= total0, "free memory is within the total");
    int emulated = total0 == EMU_LIMIT; /* the emulator took PG_EMU_MEM_LIMIT as the device's size */
    diag("%s", emulated ? "emulated device of PG_EMU_MEM_LIMIT bytes" : "a real device (or another limit)");

    /* 2. An impossible allocation: NULL, then PG_E_NOMEM naming the bytes asked, free and total. */
    size_t huge = (size_t)1 << 50; /* 1 PiB */
    ok(pg_cuda_alloc(huge) == NULL, "a 1 PiB allocation returns NULL, not an exit");
    rc = pg_cuda_status();
    snprintf(msg, sizeof msg, "%s", pg_error_message());
    is_int(rc, PG_E_NOMEM, "pg_cuda_status() then says out of memory (%s)", msg);
    size_t asked = 0, fr = 0, tot = 0;
    int got = sscanf(msg, "cuda: out of memory: cudaMalloc of %zu bytes with %zu of %zu bytes free", &asked, &fr, &tot);
    is_int(got, 3, "the message names the bytes asked, free and total");
    ok(asked == huge, "bytes asked: %zu", asked);
    ok(tot == total0 && fr <= tot, "free %zu of total %zu, as cudaMemGetInfo says", fr, tot);
    ok(one_line(msg) && strncmp(msg, "cuda: ", 6) == 0, "one line, starting 'cuda: '");

    /* 3. The record is cleared, and the device works again. */
    pg_error_clear();
    is_int(pg_cuda_status(), 0, "the next pg_cuda_status() is 0: the failure was reported once");
    ok(pg_error_message()[0] == 0, "with no message");
    ok(ops_work(257), "operations work again after out of memory");
    is_int(pg_cuda_status(), 0, "and report no failure");

    /* 4. Out of memory that the device's size explains: more than free, less than total. */
    size_t f1 = 0, t1 = 0;
    pg_cuda_mem_info(&f1, &t1);
    if (t1 > f1 + 2) {
        size_t want = f1 + (t1 - f1) / 2;
        void *p = pg_cuda_alloc(want);
        if (p) pg_cuda_free(p);
        ok(p == NULL, "an allocation of %zu bytes, more than the %zu free, fails", want, f1);
        rc = pg_cuda_status();
        snprintf(msg, sizeof msg, "%s", pg_error_message());
        is_int(rc, PG_E_NOMEM, "as out of memory (%s)", msg);
        asked = fr = tot = 0;
        got = sscanf(msg, "cuda: out of memory: cudaMalloc of %zu bytes with %zu of %zu bytes free", &asked, &fr, &tot);
        ok(got == 3 && asked == want && tot == t1, "naming the %zu bytes asked and the total %zu", want, t1);
        /* exact on the emulator; a GPU's free memory moves a little (the context, cuBLAS) */
        size_t slack = emulated ? 0 : t1 / 50;
        ok(fr <= f1 + slack && fr + slack >= f1, "and the free bytes %zu (cudaMemGetInfo said %zu)", fr, f1);
    } else {
        skip_n(4, "the device reports no memory in use");
    }
    if (emulated) {
        /* The emulator's size is the live allocations' limit: what is freed is free again. */
        size_t block = EMU_LIMIT / 4;
        void *a = pg_cuda_alloc(block), *b = pg_cuda_alloc(block);
        size_t fa = 0, ta = 0;
        pg_cuda_mem_info(&fa, &ta);
        ok(a && b && fa == f1 - 2 * block && ta == EMU_LIMIT, "emulator: two blocks of %zu bytes leave %zu free",
           block, fa);
        pg_cuda_free(a);
        pg_cuda_free(b);
        pg_cuda_mem_info(&fa, &ta);
        ok(fa == f1, "emulator: freed, the %zu bytes are free again", f1);
        void *c = pg_cuda_alloc(f1), *d = pg_cuda_alloc(4);
        ok(c != NULL && d == NULL, "emulator: exactly the free bytes can be had, and then not 4 more");
        pg_cuda_free(c);
        is_int(pg_cuda_status(), PG_E_NOMEM, "emulator: that was out of memory");
        ok(has(pg_error_message(), "cudaMalloc of 4 bytes with 0 of 67108864 bytes free"), "%s", pg_error_message());
    } else {
        skip_n(5, "the device's size is the emulator's PG_EMU_MEM_LIMIT only under the emulator");
    }

    /* 5. A failed cuBLAS call, then a failed copy: the status names the first only. */
    bad_matmul();
    bad_upload();
    rc = pg_cuda_status();
    snprintf(msg, sizeof msg, "%s", pg_error_message());
    is_int(rc, PG_E_LIB, "a failed cuBLAS call: pg_cuda_status() is PG_E_LIB (%s)", msg);
    ok(strncmp(msg, "cuda: cublas", 12) == 0, "the message names the cuBLAS call");
    ok(names_line(msg, "kernels/cuda/matmul.cu") && has(msg, " failed at "), "and its file and line");
    ok(has(msg, ": CUBLAS_STATUS_INVALID_VALUE ("), "and cuBLAS's status, by name and in words");
    ok(!has(msg, "cudaMemcpyAsync") && one_line(msg), "the later failed copy is not in it: the first is kept");
    is_int(pg_cuda_status(), 0, "cleared: the copy's failure was dropped, not kept for later");
    ok(ops_work(33), "operations work again after a failed cuBLAS call");

    /* 6. The other order: the copy's failure is the one reported. */
    bad_upload();
    bad_matmul();
    rc = pg_cuda_status();
    snprintf(msg, sizeof msg, "%s", pg_error_message());
    is_int(rc, PG_E_LIB, "a failed copy first: PG_E_LIB (%s)", msg);
    ok(strncmp(msg, "cuda: cudaMemcpyAsync(", 22) == 0 && has(msg, ") failed at "), "the message names the CUDA call");
    ok(names_line(msg, "kernels/cuda/mem.cu") && has(msg, ": cudaError") && !has(msg, "cublas"),
       "its file, line and error name, and not the later cuBLAS failure");
    is_int(pg_cuda_status(), 0, "and it is cleared");

    /* 7. The record is process-wide: a failure in another thread is reported here. */
    pthread_t th;
    if (pthread_create(&th, NULL, bad_upload_thread, NULL) == 0) {
        pthread_join(th, NULL);
        rc = pg_cuda_status();
        ok(rc == PG_E_LIB && has(pg_error_message(), "cudaMemcpyAsync("),
           "a failure in another host thread is reported by this one's status (%s)", pg_error_message());
    } else {
        ok(0, "pthread_create");
    }
    is_int(pg_cuda_status(), 0, "a process whose failures were all reported: status 0 again");
    ok(ops_work(1 << 12), "and the device computes");

    lib_checks(total0);
    return parity_done(0);
}
