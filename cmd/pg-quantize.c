/* pg-quantize: quantize a model's parameters into a .pgq file (lib/quant.c, lib/pgq.c), with a
 * per-tensor report; --method gptq first runs calibration tokens through the model for the
 * layers' input statistics (lib/calib.c, lib/gptq.c); --dequantize turns a .pgq back into a
 * safetensors checkpoint. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "../lib/calib.h"
#include "../lib/ckpt.h"
#include "../lib/err.h"
#include "../lib/modelfile.h"
#include "../lib/opt.h"
#include "../lib/pgq.h"
#include "../lib/qfit.h"
#include "../lib/qsearch.h"
#include "../lib/quant.h"
#include "../lib/xio.h"
#include "../lib/qxform.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "Usage: pg-quantize CKPT -o MODEL.pgq [options]\n"
    "       pg-quantize --dequantize MODEL.pgq -o CKPT.safetensors\n"
    "\n"
    "Quantize the parameters of a model (a safetensors checkpoint, or a .pgq) into a .pgq file, per\n"
    "row, and report each tensor's relative reconstruction error |W-Wq|/|W| (and, with calibration\n"
    "data, its relative output error). The default scheme is parameter-golf's int8 export, bit for\n"
    "bit; --method gptq chooses the integers by GPTQ over the training shards' activations.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE          the file to write (required)\n"
    "      --scheme NAME          int8-baseline (default), intN (N = 2..8 bits for every class),\n"
    "                             ternary or quinary (codes -1..1 / -2..2, a scale per 128 weights)\n"
    "      --bits LIST            intN bits per class, e.g. attn=6,mlp=6,embed=8 (implies intN), or\n"
    "                             per tensor by name prefix, e.g. blocks.10.mlp=5,tok_emb=7\n"
    "      --clip RULE            intN clip rule: sdclip (default), maxabs, quantile or search\n"
    "      --k LIST               SDClip k per class (default attn=13,mlp=11.5,embed=14) or tensor\n"
    "      --scales CODE          intN row steps: fp16 (default) or logdelta (5-bit codes, 1 byte a row)\n"
    "      --method NAME          rtn (round to nearest, default) or gptq (intN; needs calibration)\n"
    "      --calib-data DIR       shards whose train split calibrates GPTQ (val is never read)\n"
    "      --calib-self N         calibrate on N sequences the model samples itself (no data read)\n"
    "      --temperature T        --calib-self's sampling temperature (default 0.8; 0: greedy)\n"
    "      --seed S               the seed of --calib-self's sampling and --hadamard's signs (default 1)\n"
    "      --awq                  scale input channels by calibration activations (intN; undone at load)\n"
    "      --hadamard             rotate input channels by a seeded Hadamard transform (intN; undone\n"
    "                             at load; on matrices whose width is a power of two)\n"
    "      --calib-prefix NAME    shard prefix (default fineweb)\n"
    "      --calib-tokens N       calibration tokens, from the first train shard on (default 32768)\n"
    "      --calib-seq-len N      tokens per calibration sequence (default: the model's train_seq_len)\n"
    "      --device NAME          where calibration runs: cpu (default) or cuda (exit 3 without one)\n"
    "      --damp F               GPTQ damping, a fraction of mean(diag H) (default 0.01)\n"
    "      --no-act-order         GPTQ in column order instead of by descending diag(H)\n"
    "      --gptq-block N         GPTQ's lazy-update block width (default 128; same result)\n"
    "      --lqer-rank R          add a rank-R LQER correction of the quantization residual (intN)\n"
    "      --lqer-top K           ... to the K matrices with the largest residual (default 3)\n"
    "      --lqer-mode MODE       asym (INT2 A, INT4 B in groups of 64; default) or sym (int4 rows)\n"
    "      --target-bytes N       prune the cheapest +-1 integers until the packed artifact is at\n"
    "                             most N bytes (k and M suffixes: 15900k)\n"
    "      --bits-search MIN-MAX  with --target-bytes: bits per tensor from MIN to MAX, chosen by\n"
    "                             the output error each costs per byte saved (implies intN)\n"
    "      --target-pack MODE     how pg-pack will pack it: zlib (default), lzma, brotli, lrzip,\n"
    "                             brotli+shuffle, lrzip+brotli (the records' per-group mode; slow\n"
    "                             to search), pgac, pgac+lzma or best (pg-pack's flags)\n"
    "      --keep-float N         tensors of at most N elements stay floats (default 65536)\n"
    "  -m, --tokenizer MODEL      record this tokenizer's identity, which pg-eval then checks\n"
    "      --dequantize           write the dequantized weights of a .pgq as a checkpoint\n"
    "      --json                 print the report as JSON on standard output\n"
    "  -q, --quiet                print only errors\n"
    "  -v, --verbose              print the configuration too\n"
    "  -V, --version              print the version and exit\n"
    "  -h, --help                 print this help and exit\n"
    "\n"
    "Classes: attn (c_q, c_k, c_v, proj), mlp (fc, proj), embed (tok_emb, lm_head).\n"
    "Per-tensor settings apply in order (the last match wins) and must match some integer tensor.\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error.\n"
    "See pg-quantize(1), pg-formats(5).\n";

enum {
    OPT_SCHEME = PG_OPT_FIRST_CMD, OPT_BITS, OPT_CLIP, OPT_K, OPT_KEEP, OPT_DEQUANT, OPT_METHOD, OPT_CALIB_DATA,
    OPT_CALIB_PREFIX, OPT_CALIB_TOKENS, OPT_CALIB_SEQ, OPT_DAMP, OPT_NO_ACT_ORDER, OPT_GPTQ_BLOCK, OPT_LQER_RANK,
    OPT_LQER_TOP, OPT_LQER_MODE, OPT_TARGET_BYTES, OPT_TARGET_PACK, OPT_SCALES, OPT_DEVICE, OPT_CALIB_SELF,
    OPT_TEMPERATURE, OPT_SEED, OPT_BITS_SEARCH, OPT_AWQ, OPT_HADAMARD
};

static const struct option longopts[] = {
    {"output", required_argument, 0, 'o'},
    {"tokenizer", required_argument, 0, 'm'},
    {"scheme", required_argument, 0, OPT_SCHEME},
    {"bits", required_argument, 0, OPT_BITS},
    {"clip", required_argument, 0, OPT_CLIP},
    {"k", required_argument, 0, OPT_K},
    {"keep-float", required_argument, 0, OPT_KEEP},
    {"dequantize", no_argument, 0, OPT_DEQUANT},
    {"method", required_argument, 0, OPT_METHOD},
    {"calib-data", required_argument, 0, OPT_CALIB_DATA},
    {"calib-prefix", required_argument, 0, OPT_CALIB_PREFIX},
    {"calib-self", required_argument, 0, OPT_CALIB_SELF},
    {"temperature", required_argument, 0, OPT_TEMPERATURE},
    {"seed", required_argument, 0, OPT_SEED},
    {"bits-search", required_argument, 0, OPT_BITS_SEARCH},
    {"awq", no_argument, 0, OPT_AWQ},
    {"hadamard", no_argument, 0, OPT_HADAMARD},
    {"calib-tokens", required_argument, 0, OPT_CALIB_TOKENS},
    {"calib-seq-len", required_argument, 0, OPT_CALIB_SEQ},
    {"damp", required_argument, 0, OPT_DAMP},
    {"no-act-order", no_argument, 0, OPT_NO_ACT_ORDER},
    {"gptq-block", required_argument, 0, OPT_GPTQ_BLOCK},
    {"lqer-rank", required_argument, 0, OPT_LQER_RANK},
    {"lqer-top", required_argument, 0, OPT_LQER_TOP},
    {"lqer-mode", required_argument, 0, OPT_LQER_MODE},
    {"target-bytes", required_argument, 0, OPT_TARGET_BYTES},
    {"scales", required_argument, 0, OPT_SCALES},
    {"device", required_argument, 0, OPT_DEVICE},
    {"target-pack", required_argument, 0, OPT_TARGET_PACK},
    {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, 'V'},
    {"quiet", no_argument, 0, 'q'},
    {"verbose", no_argument, 0, 'v'},
    {"json", no_argument, 0, PG_OPT_JSON},
    {0, 0, 0, 0},
};

/* "sdclip k=13", "quantile q=0.9999984", "maxabs", "-" */
static void clip_text(const struct pg_qtensor *t, char *buf, size_t n)
{
    if (t->clip == PG_QCLIP_SDCLIP) snprintf(buf, n, "sdclip k=%g", (double)t->clip_param);
    else if (t->clip == PG_QCLIP_QUANTILE) snprintf(buf, n, "quantile q=%.7g", (double)t->clip_param);
    else snprintf(buf, n, "%s", pg_qclip_name(t->clip));
}

/* the method column: "gptq", "rtn" for integer tensors, "-" for floats */
static const char *method_text(const struct pg_qtensor *t)
{
    return t->kind == PG_QKIND_INT ? pg_qmethod_name(t->method) : "-";
}

/* the table's method column: "gptq", "rtn+lqer4", "-" */
static void method_cell(const struct pg_qtensor *t, char *buf, size_t n)
{
    if (t->lqer_rank) snprintf(buf, n, "%s+lqer%d", method_text(t), t->lqer_rank);
    else snprintf(buf, n, "%s", method_text(t));
}

static void print_table(const struct pg_qmodel *qm, int with_out)
{
    fprintf(stderr, "%-34s %-5s %4s  %-20s %-11s %-12s%s\n", "tensor", "kind", "bits", "clip", "method", "rel_err",
            with_out ? " out_err" : "");
    for (int i = 0; i < qm->ntensors; i++) {
        const struct pg_qtensor *t = &qm->t[i];
        char clip[48], oe[32] = "", method[24];
        clip_text(t, clip, sizeof clip);
        method_cell(t, method, sizeof method);
        if (with_out) snprintf(oe, sizeof oe, t->out_err >= 0 ? " %.6e" : " -", t->out_err);
        fprintf(stderr, "%-34s %-5s %4d  %-20s %-11s %.6e%s\n", t->name, pg_qkind_name(t->kind), t->bits, clip, method,
                t->rel_err, oe);
    }
}

static json_t *report_json(const struct pg_qmodel *qm, const char *in, const char *out, uint64_t file_bytes,
                           int64_t calib_tokens)
{
    json_t *arr = json_array();
    int nint = 0;
    for (int i = 0; i < qm->ntensors; i++) {
        const struct pg_qtensor *t = &qm->t[i];
        nint += t->kind == PG_QKIND_INT;
        json_t *shape = t->ndim == 2 ? json_pack("[I, I]", (json_int_t)t->shape[0], (json_int_t)t->shape[1])
                                     : json_pack("[I]", (json_int_t)t->shape[0]);
        json_t *e = json_pack("{s:s, s:s, s:s, s:i, s:s, s:f, s:o, s:I, s:s, s:f}", "name", t->name, "kind",
                              pg_qkind_name(t->kind), "role", pg_qrole_name(t->role), "bits", t->bits, "clip",
                              pg_qclip_name(t->clip), "clip_param", (double)t->clip_param, "shape", shape, "bytes",
                              (json_int_t)(t->data_len + t->scale_len + t->lqer_len), "method", method_text(t),
                              "rel_err", t->rel_err);
        /* measured only with calibration statistics: null otherwise */
        json_object_set_new(e, "out_err", t->out_err >= 0 ? json_real(t->out_err) : json_null());
        if (t->method == PG_QMETHOD_GPTQ) json_object_set_new(e, "damp", json_real(t->damp));
        if (t->kind == PG_QKIND_INT) json_object_set_new(e, "abs_err", json_real(t->err_norm));
        if (t->kind == PG_QKIND_INT)
            json_object_set_new(e, "scales", json_string(t->scale_code == PG_QSCALE_LOGDELTA ? "logdelta" : "fp16"));
        if (t->kind == PG_QKIND_INT) {
            static const char *xn[] = {"none", "awq", "hadamard", "awq+hadamard"};
            json_object_set_new(e, "xform", json_string(xn[t->xform & 3]));
            if (t->xform & PG_QXFORM_AWQ) json_object_set_new(e, "awq_alpha", json_real(t->awq_alpha));
        }
        json_object_set_new(e, "lqer_rank", json_integer(t->lqer_rank));
        if (t->lqer_rank) {
            json_object_set_new(e, "lqer_mode", json_string(t->lqer_mode == PG_LQER_SYM ? "sym" : "asym"));
            json_object_set_new(e, "lqer_bytes", json_integer((json_int_t)t->lqer_len));
        }
        json_array_append_new(arr, e);
    }
    return json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:o}", "input", in, "output", out, "scheme",
                     pg_qscheme_name(qm->scheme), "num_tensors", qm->ntensors, "num_int", nint, "payload_bytes",
                     (json_int_t)pg_qmodel_payload_bytes(qm), "file_bytes", (json_int_t)file_bytes,
                     "calib_tokens", (json_int_t)calib_tokens, "tensors", arr);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* --dequantize: any model file in, a safetensors checkpoint of its (dequantized) weights out. */
static void dequantize(const struct pg_cli *cli, const char *in, const char *out)
{
    struct pg_config cfg;
    pg_cli_check(cli, pg_modelfile_read_config(in, &cfg));
    struct pg_model m;
    pg_cli_check(cli, pg_model_init(&m, &cfg, &pg_backend_cpu, 0));
    pg_cli_check(cli, pg_modelfile_load(&m, in));
    const char *k[] = {"dequantized_from"}, *v[] = {in};
    pg_cli_check(cli, pg_ckpt_save(&m, out, 1, k, v));
    pg_cli_info(cli, "wrote %s: %d tensors, %zu parameters", out, m.ntensors, m.nparams);
    if (cli->json) {
        json_t *j = json_pack("{s:s, s:s, s:i, s:I}", "input", in, "output", out, "num_tensors", m.ntensors,
                              "num_params", (json_int_t)m.nparams);
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(j);
    }
    pg_model_free(&m);
}

static void fit_progress(void *ctx, int64_t pruned, uint64_t bytes)
{
    (void)pruned, (void)bytes;
    struct pg_progress *pr = ctx;
    pg_progress_update(pr, pr->done + 1);
}

static void quant_progress(void *ctx, int done, int total)
{
    struct pg_progress *pr = ctx;
    pr->total = (uint64_t)total;
    pg_progress_update(pr, (uint64_t)done);
}

/* Where calibration tokens come from: training shards, or the model's own samples. */
struct calib_src {
    const char *dir, *prefix;   /* shards (dir NULL: self-generated) */
    int64_t tokens;             /* shard tokens */
    int64_t self_seqs;          /* self-generated sequences */
    double temp;
    uint64_t seed;
    struct pg_model *gen;       /* the host model that samples them */
};

/* Runs the calibration tokens through m (activations allocated here) into cal. */
static void calibrate(const struct pg_cli *cli, struct pg_model *m, struct pg_calib *cal, const struct calib_src *src,
                      int seq)
{
    int64_t nseq = src->dir ? (src->tokens + seq - 1) / seq : src->self_seqs;
    int max_b = 16384 / seq > 1 ? 16384 / seq : 1; /* ~16k tokens per forward */
    if (max_b > nseq) max_b = (int)nseq;
    pg_cli_check(cli, pg_model_alloc_acts(m, max_b, seq));
    pg_cli_check(cli, pg_calib_init(cal, m));
    struct pg_progress pr;
    double t0 = pg_now();
    if (src->dir) {
        pg_progress_init(&pr, "calibrating", "tokens", (uint64_t)(nseq * seq), pg_cli_progress(cli));
        pg_cli_check(cli, pg_calib_from_shards(cal, m, src->dir, src->prefix, src->tokens, &pr));
        pg_progress_finish(&pr);
        pg_calib_finish(cal);
        pg_cli_info(cli, "calibration: %" PRId64 " tokens of %s/%s_train_* in sequences of %d, %.1f s", cal->tokens,
                    src->dir, src->prefix, seq, pg_now() - t0);
        return;
    }
    int32_t *ids = pg_malloc((size_t)nseq * (size_t)seq * sizeof *ids);
    if (!ids) pg_cli_check(cli, PG_E_NOMEM);
    struct pg_model *g = src->gen;
    if (g != m) pg_cli_check(cli, pg_model_alloc_acts(g, max_b, seq));
    pg_progress_init(&pr, "sampling", "tokens", (uint64_t)(nseq * seq), pg_cli_progress(cli));
    pg_cli_check(cli, pg_calib_generate(g, ids, nseq, src->temp, src->seed, &pr));
    pg_progress_finish(&pr);
    double t1 = pg_now();
    pg_progress_init(&pr, "calibrating", "tokens", (uint64_t)(nseq * seq), pg_cli_progress(cli));
    pg_cli_check(cli, pg_calib_add_tokens(cal, m, ids, nseq, &pr));
    pg_progress_finish(&pr);
    free(ids);
    pg_calib_finish(cal);
    pg_cli_info(cli, "calibration: %" PRId64 " self-generated tokens (%" PRId64 " sequences of %d, temperature %g, "
                "seed %" PRIu64 "), sampled in %.1f s, %.1f s", cal->tokens, nseq, seq, src->temp, src->seed, t1 - t0,
                pg_now() - t1);
}

int main(int argc, char **argv)
{
    struct pg_cli cli;
    pg_cli_init(&cli, "pg-quantize", usage, argv);
    const char *out = NULL, *tokpath = NULL, *scheme_s = NULL, *bits_s = NULL, *clip_s = NULL, *k_s = NULL;
    const char *method_s = NULL, *calib_dir = NULL, *calib_prefix = NULL;
    int64_t keep = PG_QUANT_KEEP_FLOAT_MAX, calib_tokens = 32768;
    int dequant = 0, c, calib_seq = 0, gptq_set = 0, calib_set = 0, lqer_rank = 0, lqer_top = 3, lqer_mode = PG_LQER_ASYM;
    int lqer_set = 0, self_set = 0, tokens_set = 0;
    int64_t target = 0, calib_self = 0, seed = 1;
    double temp = 0.8;
    const char *search_s = NULL;
    int smin = 0, smax = 0, xform = 0, seed_set = 0;
    const char *target_pack = NULL, *scales_s = NULL, *device = NULL;
    struct pg_gptq_opts gopts;
    pg_gptq_opts_default(&gopts);
    while ((c = getopt_long(argc, argv, "o:m:" PG_CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (pg_cli_common(&cli, c)) continue;
        switch (c) {
        case 'o': out = optarg; break;
        case 'm': tokpath = optarg; break;
        case OPT_SCHEME: scheme_s = optarg; break;
        case OPT_BITS: bits_s = optarg; break;
        case OPT_CLIP: clip_s = optarg; break;
        case OPT_K: k_s = optarg; break;
        case OPT_KEEP: pg_cli_check(&cli, pg_parse_i64("--keep-float", optarg, 0, INT64_C(1) << 40, &keep)); break;
        case OPT_DEQUANT: dequant = 1; break;
        case OPT_METHOD: method_s = optarg; break;
        case OPT_CALIB_DATA: calib_dir = optarg; break;
        case OPT_CALIB_PREFIX: calib_prefix = optarg, calib_set = 1; break;
        case OPT_CALIB_SELF:
            pg_cli_check(&cli, pg_parse_i64("--calib-self", optarg, 1, INT64_C(1) << 30, &calib_self));
            break;
        case OPT_TEMPERATURE: pg_cli_check(&cli, pg_parse_f64("--temperature", optarg, 0, 1e6, &temp)), self_set = 1; break;
        case OPT_SEED: pg_cli_check(&cli, pg_parse_i64("--seed", optarg, 0, INT64_MAX, &seed)), seed_set = 1; break;
        case OPT_AWQ: xform |= PG_QXFORM_AWQ; break;
        case OPT_HADAMARD: xform |= PG_QXFORM_HADAMARD; break;
        case OPT_CALIB_TOKENS:
            pg_cli_check(&cli, pg_parse_i64("--calib-tokens", optarg, 1, INT64_C(1) << 36, &calib_tokens));
            calib_set = tokens_set = 1;
            break;
        case OPT_CALIB_SEQ:
            pg_cli_check(&cli, pg_parse_int("--calib-seq-len", optarg, 1, 1 << 20, &calib_seq));
            calib_set = 1;
            break;
        case OPT_DAMP: pg_cli_check(&cli, pg_parse_f64("--damp", optarg, 0, 1e6, &gopts.damp)), gptq_set = 1; break;
        case OPT_NO_ACT_ORDER: gopts.act_order = 0, gptq_set = 1; break;
        case OPT_LQER_RANK: pg_cli_check(&cli, pg_parse_int("--lqer-rank", optarg, 1, PG_LQER_MAX_RANK, &lqer_rank)); break;
        case OPT_LQER_TOP: pg_cli_check(&cli, pg_parse_int("--lqer-top", optarg, 1, 1 << 20, &lqer_top)), lqer_set = 1; break;
        case OPT_LQER_MODE:
            if (strcmp(optarg, "asym") == 0) lqer_mode = PG_LQER_ASYM;
            else if (strcmp(optarg, "sym") == 0) lqer_mode = PG_LQER_SYM;
            else pg_cli_usage_error(&cli, "--lqer-mode: 'asym' or 'sym'");
            lqer_set = 1;
            break;
        case OPT_TARGET_BYTES:
            pg_cli_check(&cli, pg_parse_i64("--target-bytes", optarg, 1, INT64_C(1) << 40, &target));
            break;
        case OPT_TARGET_PACK: target_pack = optarg; break;
        case OPT_BITS_SEARCH: {
            char tail;
            search_s = optarg;
            if (sscanf(optarg, "%d-%d%c", &smin, &smax, &tail) != 2 || smin < 2 || smax > 8 || smin >= smax)
                pg_cli_usage_error(&cli, "--bits-search: MIN-MAX with 2 <= MIN < MAX <= 8, not '%s'", optarg);
            break;
        }
        case OPT_SCALES: scales_s = optarg; break;
        case OPT_DEVICE: device = optarg, calib_set = 1; break;
        case OPT_GPTQ_BLOCK:
            pg_cli_check(&cli, pg_parse_int("--gptq-block", optarg, 1, 1 << 20, &gopts.block));
            gptq_set = 1;
            break;
        default: pg_cli_usage_error(&cli, "unexpected option");
        }
    }
    if (optind + 1 != argc) pg_cli_usage_error(&cli, optind == argc ? "no input model given" : "more than one input model");
    if (!out) pg_cli_usage_error(&cli, "no output file (-o FILE)");
    const char *in = argv[optind];
    if (dequant) {
        if (scheme_s || bits_s || clip_s || k_s || tokpath || keep != PG_QUANT_KEEP_FLOAT_MAX || method_s || calib_dir ||
            calib_set || gptq_set || lqer_rank || lqer_set || target || target_pack || scales_s || calib_self ||
            self_set || search_s || seed_set || xform)
            pg_cli_usage_error(&cli, "--dequantize takes no quantization options");
        dequantize(&cli, in, out);
        return 0;
    }

    /* the options: --scheme, or --bits alone (intN over 8-bit defaults); --clip/--k need intN */
    struct pg_quant_opts o;
    int scheme = PG_QSCHEME_INT8_BASELINE, bits = 8;
    if (scheme_s) pg_cli_check(&cli, pg_quant_parse_scheme(scheme_s, &scheme, &bits));
    else if (bits_s || search_s) scheme = PG_QSCHEME_INTN;
    if (search_s && scheme != PG_QSCHEME_INTN) pg_cli_usage_error(&cli, "--bits-search needs an intN scheme");
    if (search_s && !target) pg_cli_usage_error(&cli, "--bits-search needs --target-bytes");
    if (search_s && bits_s) pg_cli_usage_error(&cli, "--bits-search sets the widths: no --bits");
    if (scheme != PG_QSCHEME_INTN && (bits_s || clip_s || k_s))
        pg_cli_usage_error(&cli, "--bits, --clip and --k apply to the intN schemes (%s's rule is fixed)",
                           pg_qscheme_name(scheme));
    pg_quant_opts_default(&o, scheme, bits);
    o.keep_float_max = keep;
    if (bits_s) pg_cli_check(&cli, pg_quant_parse_bits(&o, bits_s));
    if (clip_s) pg_cli_check(&cli, pg_quant_parse_clip(clip_s, &o.clip));
    if (k_s && o.clip != PG_QCLIP_SDCLIP) pg_cli_usage_error(&cli, "--k applies to --clip sdclip");
    if (k_s) pg_cli_check(&cli, pg_quant_parse_k(&o, k_s));
    if (method_s && pg_quant_parse_method(method_s, &o.method))
        pg_cli_usage_error(&cli, "--method: 'rtn' or 'gptq'");
    if (o.method == PG_QMETHOD_GPTQ && scheme != PG_QSCHEME_INTN)
        pg_cli_usage_error(&cli, "--method gptq needs an intN scheme (--scheme intN or --bits)");
    if (calib_dir && calib_self) pg_cli_usage_error(&cli, "--calib-data and --calib-self are two sources: give one");
    if (self_set && !calib_self) pg_cli_usage_error(&cli, "--temperature needs --calib-self");
    if (seed_set && !calib_self && !(xform & PG_QXFORM_HADAMARD))
        pg_cli_usage_error(&cli, "--seed needs --calib-self or --hadamard");
    if (calib_self && (calib_prefix || tokens_set))
        pg_cli_usage_error(&cli, "--calib-prefix and --calib-tokens need --calib-data (--calib-self N counts sequences)");
    int calibrated = calib_dir || calib_self;
    if (xform && scheme != PG_QSCHEME_INTN) pg_cli_usage_error(&cli, "--awq and --hadamard need an intN scheme");
    if ((xform & PG_QXFORM_AWQ) && !calibrated) pg_cli_usage_error(&cli, "--awq needs --calib-data or --calib-self");
    o.xform = xform, o.xform_seed = (uint64_t)seed;
    if (o.method == PG_QMETHOD_GPTQ && !calibrated)
        pg_cli_usage_error(&cli, "--method gptq needs --calib-data DIR or --calib-self N");
    if (gptq_set && o.method != PG_QMETHOD_GPTQ)
        pg_cli_usage_error(&cli, "--damp, --no-act-order and --gptq-block apply to --method gptq");
    if (calib_set && !calibrated)
        pg_cli_usage_error(&cli, "--calib-prefix, --calib-tokens, --calib-seq-len and --device need --calib-data");
    const struct pg_backend *cbe = &pg_backend_cpu;
    if (device) pg_cli_check(&cli, pg_backend_by_name(device, &cbe));
    o.gptq = gopts;
    if (lqer_set && !lqer_rank) pg_cli_usage_error(&cli, "--lqer-top and --lqer-mode need --lqer-rank");
    if (lqer_rank && scheme != PG_QSCHEME_INTN) pg_cli_usage_error(&cli, "--lqer-rank needs an intN scheme");
    if (lqer_rank && search_s) pg_cli_usage_error(&cli, "--bits-search does not combine with --lqer-rank");
    o.lqer_rank = lqer_rank, o.lqer_top = lqer_top, o.lqer_mode = lqer_mode;
    if (scales_s && strcmp(scales_s, "logdelta") == 0) o.scale_code = PG_QSCALE_LOGDELTA;
    else if (scales_s && strcmp(scales_s, "fp16") != 0) pg_cli_usage_error(&cli, "--scales: 'fp16' or 'logdelta'");
    if (o.scale_code && scheme != PG_QSCHEME_INTN) pg_cli_usage_error(&cli, "--scales logdelta needs an intN scheme");
    struct pg_pack_opts popts;
    if (target_pack && !target) pg_cli_usage_error(&cli, "--target-pack needs --target-bytes");
    if (pg_pack_opts_from_name(target_pack ? target_pack : "zlib", &popts))
        pg_cli_usage_error(&cli, "--target-pack: " PG_PACK_MODE_NAMES ", not '%s'", target_pack);
    int needs_lrzip = popts.mode == PG_PACK_PER_GROUP ? popts.group_codec == PG_CODEC_LRZIP
                                                      : popts.mode == PG_PACK_WHOLE && popts.codec == PG_CODEC_LRZIP;
    if (needs_lrzip && target && !pg_lrzip_available())
        pg_cli_fail(&cli, pg_error(PG_E_UNSUPPORTED, "--target-pack %s: lrzip not found (Debian package lrzip)",
                                   target_pack));

    struct pg_config cfg;
    pg_cli_check(&cli, pg_modelfile_read_config(in, &cfg));
    struct pg_tok_id tok = {0, 0, 0};
    if (tokpath) {
        pg_cli_check(&cli, pg_pgq_tok_identity(tokpath, &tok));
        if ((int64_t)tok.vocab > cfg.vocab_size)
            pg_cli_die(&cli, "%s: model vocabulary %d is smaller than the tokenizer's %u (%s)", in, cfg.vocab_size,
                       tok.vocab, tokpath);
    }
    if (cli.verbosity > 1) pg_config_print_table(&cfg, stderr);
    struct pg_model m;
    pg_cli_check(&cli, pg_model_init(&m, &cfg, &pg_backend_cpu, 0));
    pg_cli_check(&cli, pg_modelfile_load(&m, in));
    struct pg_calib cal;
    memset(&cal, 0, sizeof cal);
    if (calibrated) {
        struct pg_model dm, *cm = &m;
        if (cbe != &pg_backend_cpu) { /* the same model on the device runs the calibration */
            pg_cli_check(&cli, pg_model_init(&dm, &cfg, cbe, 0));
            pg_cli_check(&cli, pg_modelfile_load(&dm, in));
            cm = &dm;
        }
        struct calib_src src = {calib_dir, calib_prefix ? calib_prefix : "fineweb", calib_tokens, calib_self, temp,
                                (uint64_t)seed, &m};
        calibrate(&cli, cm, &cal, &src, calib_seq ? calib_seq : cfg.train_seq_len);
        if (cm == &dm) pg_model_free(&dm);
        o.calib = &cal;
    }
    struct pg_progress qpr;
    pg_progress_init(&qpr, o.method == PG_QMETHOD_GPTQ ? "gptq" : "quantizing", "tensors", 0,
                     pg_cli_progress(&cli) && calibrated);
    o.progress = quant_progress, o.progress_ctx = &qpr;
    double tq = pg_now();
    struct pg_qmodel qm;
    struct pg_bits_search_report srep;
    int rc = search_s ? pg_bits_search(&m, &o, smin, smax, (uint64_t)target, &popts, &qm, &srep, quant_progress, &qpr)
                      : pg_quantize_model(&m, &o, &qm);
    pg_progress_finish(&qpr);
    /* the options were checked above: what is left is about this model (a non-finite weight, a
     * per-tensor setting naming no tensor of it) */
    if (rc == PG_E_FORMAT || rc == PG_E_INVAL) pg_cli_die(&cli, "%s: %s", in, pg_error_message());
    pg_cli_check(&cli, rc);
    if (calibrated) pg_cli_info(&cli, "%s: %.1f s", o.method == PG_QMETHOD_GPTQ ? "GPTQ" : "rounding", pg_now() - tq);
    qm.tok = tok;
    struct pg_fit_report fit = {0};
    if (search_s) {
        fit = srep.fit;
        int nb[9] = {0};
        for (int i = 0; i < qm.ntensors; i++)
            if (qm.t[i].kind == PG_QKIND_INT) nb[qm.t[i].bits]++;
        char mix[128] = "";
        for (int b = smin; b <= smax; b++)
            snprintf(mix + strlen(mix), sizeof mix - strlen(mix), "%s%d x int%d", b == smin ? "" : ", ", nb[b], b);
        pg_cli_info(&cli, "bits search %d-%d: step %d of %d (%s), %d packs%s; %.1f s", smin, smax, srep.chosen,
                    srep.steps, mix, srep.packs, srep.pruned_point ? ", then pruned" : "", pg_now() - tq);
        pg_cli_info(&cli, "target %" PRId64 " bytes (%s): %" PRIu64 " -> %" PRIu64 " bytes, %" PRId64 " of %" PRId64
                    " weights at +-1 pruned", target, target_pack ? target_pack : "zlib", fit.start_bytes,
                    fit.final_bytes, fit.pruned, fit.candidates);
    }
    if (target && !search_s) {
        struct pg_progress fpr;
        pg_progress_init(&fpr, "fitting", "packs", 0, pg_cli_progress(&cli));
        double tf = pg_now();
        rc = pg_fit_prune(&qm, &m, calibrated ? &cal : NULL, (uint64_t)target, &popts, &fit, fit_progress, &fpr);
        pg_progress_finish(&fpr);
        if (rc == PG_E_INVAL) pg_cli_die(&cli, "%s: %s", in, pg_error_message());
        pg_cli_check(&cli, rc);
        pg_cli_info(&cli, "target %" PRId64 " bytes (%s): %" PRIu64 " -> %" PRIu64 " bytes, %" PRId64 " of %" PRId64
                    " weights at +-1 pruned, %d packs, %.1f s", target, target_pack ? target_pack : "zlib",
                    fit.start_bytes, fit.final_bytes, fit.pruned, fit.candidates, fit.packs, pg_now() - tf);
    }
    int64_t used_tokens = cal.tokens;
    pg_calib_free(&cal);
    pg_model_free(&m);
    pg_cli_check(&cli, pg_pgq_write(&qm, out));
    uint64_t bytes = file_size(out);

    if (cli.json) {
        json_t *j = report_json(&qm, in, out, bytes, used_tokens);
        if (target)
            json_object_set_new(j, "fit", json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:i}", "target_bytes",
                                                    (json_int_t)target, "pack", target_pack ? target_pack : "zlib",
                                                    "start_bytes", (json_int_t)fit.start_bytes, "packed_bytes",
                                                    (json_int_t)fit.final_bytes, "candidates", (json_int_t)fit.candidates,
                                                    "pruned", (json_int_t)fit.pruned, "packs", fit.packs));
        if (search_s)
            json_object_set_new(j, "bits_search", json_pack("{s:i, s:i, s:i, s:i, s:i, s:b, s:f}", "min", smin, "max",
                                                            smax, "steps", srep.steps, "chosen", srep.chosen, "packs",
                                                            srep.packs, "pruned_point", srep.pruned_point, "cost",
                                                            srep.cost));
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
        fputc('\n', stdout);
        json_decref(j);
    } else if (cli.verbosity > 0) {
        print_table(&qm, calibrated);
    }
    int nint = 0;
    for (int i = 0; i < qm.ntensors; i++) nint += qm.t[i].kind == PG_QKIND_INT;
    pg_cli_info(&cli, "wrote %s: %s%s, %d tensors (%d integer, %d float), payload %" PRIu64 " bytes, file %" PRIu64
                " bytes", out, pg_qscheme_name(qm.scheme), o.method == PG_QMETHOD_GPTQ ? " gptq" : "", qm.ntensors, nint,
                qm.ntensors - nint, pg_qmodel_payload_bytes(&qm), bytes);
    pg_qmodel_free(&qm);
    return 0;
}
