/* bench_attn: times the CUDA backend's bf16 attention, the fused kernels (kernels/cuda/flash.cu)
 * against the batched products (attention.cu, PG_FLASH=0's path), forward and forward+backward,
 * on random inputs of one shape; one JSON line per measurement on standard output, for
 * scripts/bench-gpu.sh. Built as bench_attn (the GPU, with CUDA) and bench_attn_emu (the
 * emulator: a smoke test of the tool, its times mean nothing).
 *
 * FLOPs counted: the useful ones, as FlashAttention reports them: 4·hd per (query, key) pair a
 * query sees (its causal keys in its document) and head, forward; 2.5x that for the backward
 * (five products of the pair against the forward's two), so forward+backward is 3.5x. */
#include "../../kernels/cuda/device.h"
#include "../../kernels/cuda/ops.h"
#include "../../lib/err.h"
#include "../../lib/pg.h"

#include <math.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "Usage: bench_attn [--b B] [--t T] [--h H] [--kv KV] [--hd HD] [--doc LEN] [--iters N] [--warmup N]\n"
               "Times bf16 attention on the GPU: the fused kernels and the batched products, forward\n"
               "and forward+backward; one JSON line each. Defaults: the baseline's micro-batch\n"
               "(--b 64 --t 1024 --h 8 --kv 4 --hd 64), no documents (--doc LEN: documents of LEN tokens),\n"
               "--iters 20 --warmup 3.\n");
}

static int num(const char *s, const char *name)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end || v < 1 || v > 1 << 24) {
        fprintf(stderr, "bench_attn: %s: not a positive integer: '%s'\n", name, s);
        exit(2);
    }
    return (int)v;
}

static float *dev_random(size_t n, uint64_t *seed)
{
    float *h = malloc(n * sizeof *h), *d = pg_cuda_alloc(n * sizeof *d);
    if (!h || !d) {
        fprintf(stderr, "bench_attn: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = (float)((double)(*seed >> 11) * 0x1.0p-53 * 2 - 1);
    }
    pg_cuda_upload(d, h, n * sizeof *h);
    free(h);
    return d;
}

int main(int argc, char **argv)
{
    int b = 64, t = 1024, h = 8, kv = 4, hd = 64, doc = 0, iters = 20, warmup = 3;
    static const struct option opts[] = {{"b", 1, 0, 'b'},     {"t", 1, 0, 't'},     {"h", 1, 0, 'H'},
                                         {"kv", 1, 0, 'k'},    {"hd", 1, 0, 'd'},    {"doc", 1, 0, 'D'},
                                         {"iters", 1, 0, 'i'}, {"warmup", 1, 0, 'w'}, {"help", 0, 0, 'u'},
                                         {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case 'b': b = num(optarg, "--b"); break;
        case 't': t = num(optarg, "--t"); break;
        case 'H': h = num(optarg, "--h"); break;
        case 'k': kv = num(optarg, "--kv"); break;
        case 'd': hd = num(optarg, "--hd"); break;
        case 'D': doc = num(optarg, "--doc"); break;
        case 'i': iters = num(optarg, "--iters"); break;
        case 'w': warmup = num(optarg, "--warmup"); break;
        case 'u': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || h % kv) {
        fprintf(stderr, "bench_attn: %s\n", optind < argc ? "unexpected argument" : "--h must be a multiple of --kv");
        return 2;
    }
    if (!pg_cuda_flash_supported(hd)) {
        fprintf(stderr, "bench_attn: --hd %d: the fused kernels take 16, 32, 64 or 128\n", hd);
        return 2;
    }
    if (pg_cuda_device_count() == 0) {
        fprintf(stderr, "bench_attn: no CUDA device\n");
        return 3;
    }
    pg_cuda_init();
    size_t nq = (size_t)b * t * h * hd, nk = (size_t)b * t * kv * hd, nl = (size_t)b * h * t;
    uint64_t seed = 7;
    float *q = dev_random(nq, &seed), *k = dev_random(nk, &seed), *v = dev_random(nk, &seed);
    float *dout = dev_random(nq, &seed), *out = dev_random(nq, &seed), *lse = dev_random(nl, &seed);
    float *dq = dev_random(nq, &seed), *dk = dev_random(nk, &seed), *dv = dev_random(nk, &seed);
    float *work = pg_cuda_alloc(pg_cuda_attention_work(t) * sizeof(float));
    int32_t *ds = NULL, *hds = malloc((size_t)b * t * sizeof *hds);
    if (!work || !hds) {
        fprintf(stderr, "bench_attn: out of memory (work)\n");
        return 1;
    }
    double pairs = 0; /* (query, key) pairs seen, per head */
    for (int bi = 0; bi < b; bi++)
        for (int i = 0; i < t; i++) {
            hds[(size_t)bi * t + i] = doc ? i / doc * doc : 0;
            pairs += i - hds[(size_t)bi * t + i] + 1;
        }
    if (doc) {
        if (!(ds = pg_cuda_alloc((size_t)b * t * sizeof *ds))) return 1;
        pg_cuda_upload(ds, hds, (size_t)b * t * sizeof *ds);
    }
    free(hds);
    double fwd_flops = 4.0 * hd * h * pairs, scale = 1 / sqrt((double)hd);
    pg_cuda_set_bf16(1);
    for (int flash = 1; flash >= 0; flash--) {
        pg_cuda_attention_flash(flash);
        for (int bwd = 0; bwd <= 1; bwd++) {
            double t0 = 0;
            for (int it = 0; it < warmup + iters; it++) {
                if (it == warmup) pg_cuda_sync(), t0 = pg_now();
                pg_cuda_attention_varlen_fwd(out, lse, q, k, v, ds, b, t, h, kv, hd, scale, work);
                if (bwd)
                    pg_cuda_attention_varlen_bwd(dq, dk, dv, dout, out, lse, q, k, v, ds, b, t, h, kv, hd, scale,
                                                 work);
            }
            pg_cuda_sync();
            double ms = (pg_now() - t0) * 1000 / iters, flops = fwd_flops * (bwd ? 3.5 : 1);
            if (pg_cuda_status()) {
                fprintf(stderr, "bench_attn: %s\n", pg_error_message());
                return 1;
            }
            printf("{\"op\":\"%s_%s\",\"b\":%d,\"t\":%d,\"h\":%d,\"kv\":%d,\"hd\":%d,\"doc\":%d,\"ms\":%.4f,"
                   "\"tflops\":%.2f}\n",
                   flash ? "flash" : "batched", bwd ? "fwd_bwd" : "fwd", b, t, h, kv, hd, doc, ms,
                   flops / (ms / 1000) / 1e12);
            fflush(stdout);
        }
    }
    /* freed, so that a sanitized build's leak check passes (make check SANITIZE=1) */
    float *bufs[] = {q, k, v, dout, out, lse, dq, dk, dv, work};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) pg_cuda_free(bufs[i]);
    pg_cuda_free(ds);
    return 0;
}
