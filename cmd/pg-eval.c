/* pg-eval: val_loss and val_bpb of a model (checkpoint or .pgq) on the val shards, exactly as
 * parameter-golf's eval_val computes them. The work is in lib/eval.c; the model file is read by
 * lib/modelfile.c; this file parses options and reports. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "scoring.h"

#include "../lib/audit.h"
#include "../lib/bpb.h"
#include "../lib/err.h"
#include "../lib/eval.h"
#include "../lib/loader.h"
#include "../lib/ngram.h"
#include "../lib/opt.h"
#include "../lib/progress.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: pg-eval CKPT -d DATA_DIR -m TOKENIZER.model [options]\n"
    "\n"
    "Score a model on the val shards <prefix>_val_*.bin of DATA_DIR: val_loss (nats per token) and\n"
    "val_bpb (bits per byte of text), over non-overlapping windows, as parameter-golf's eval_val.\n"
    "CKPT is a checkpoint (safetensors, written by pg-train or by PyTorch with parameter-golf's\n"
    "tensor names), a quantized model (.pgq, from pg-quantize) or an artifact (.pga, from pg-pack),\n"
    "told apart by content.\n"
    "\n"
    "Options:\n"
    "  -d, --data DIR             folder of the token shards\n"
    "  -m, --tokenizer MODEL      the SentencePiece .model the shards were encoded with\n"
    "      --prefix NAME          shard name prefix (default fineweb)\n"
    "      --seq-len N            window length (default: the checkpoint's train_seq_len)\n"
    "      --batch-seqs N         windows per forward pass (default 8)\n"
    "      --stride S             sliding windows: windows start every S tokens and each target is\n"
    "                             scored once, with the longest context a window gives (1..seq_len;\n"
    "                             default seq_len: non-overlapping windows)\n"
    "      --doc-mask             attention stays inside each document (tokens never see across a\n"
    "                             BOS), as varlen attention does in training\n"
    "      --temperature T        score softmax(softcapped logits / T) (default 1: the model's own)\n"
    "      --audit                check the rules of a legal evaluation: no look-ahead and a\n"
    "                             normalized distribution on sampled targets, each target scored\n"
    "                             once; exit 1 when one is broken\n"
    "      --audit-samples N      targets whose distribution the audit checks (default 64)\n"
    "      --time-budget S        the challenge's evaluation limit (600): everything from the start\n"
    "                             (reading and decoding the model included) must end within S\n"
    "                             seconds; exit 1 after the result when it does not\n"
    "      --device NAME          cpu (default) or cuda (the first GPU; exit 3 without one)\n"
    "      --precision P          fp32 (default, the score of record) or bf16: matrix products with\n"
    "                             bfloat16 inputs and fp32 sums, as bf16 autocast (faster on a GPU)\n"
    "      --tilt                 the causal token tilt (spec §7.3): the model's distribution tilted,\n"
    "                             normalized, towards a hint from the scored tokens' long contexts\n"
    "      --ngram-mix            mix the model with a Witten-Bell n-gram distribution of the scored\n"
    "                             tokens, by weights learned online (normalized, score first)\n"
    "      --ngram-order N        the mixture's highest order (default 6)\n"
    "      --ngram-cache          PR #826's order-9 hashed backoff cache: NOT compliant (it reads\n"
    "                             the target and is not normalized); needs --non-compliant\n"
    "      --non-compliant        allow a mode the challenge's rules forbid\n"
    "      --json                 print the result as JSON on standard output\n"
    "      --progress             always draw the progress line\n"
    "      --no-progress          never draw it (default: when stderr is a terminal)\n"
    "  -q, --quiet                print only errors\n"
    "  -v, --verbose              print the configuration too\n"
    "  -V, --version              print the version and exit\n"
    "  -h, --help                 print this help and exit\n"
    "\n"
    "Output: 'val_loss:L val_bpb:B tokens:T bytes:Y' on standard output (8 decimals).\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error, 3 unavailable.\n"
    "See pg-eval(1), pg-formats(5).\n";

enum {
    OPT_PREFIX = PG_OPT_FIRST_CMD,
    OPT_SEQLEN,
    OPT_BATCH,
    OPT_DEVICE,
    OPT_PRECISION,
    OPT_STRIDE,
    OPT_DOCMASK,
    OPT_TEMP,
    OPT_AUDIT,
    OPT_AUDIT_SAMPLES,
    OPT_BUDGET,
    OPT_TILT,
    OPT_NGRAM_MIX,
    OPT_NGRAM_ORDER,
    OPT_NGRAM_CACHE,
    OPT_NON_COMPLIANT,
};

static const struct option longopts[] = {
    {"data", required_argument, 0, 'd'},
    {"tokenizer", required_argument, 0, 'm'},
    {"prefix", required_argument, 0, OPT_PREFIX},
    {"seq-len", required_argument, 0, OPT_SEQLEN},
    {"batch-seqs", required_argument, 0, OPT_BATCH},
    {"device", required_argument, 0, OPT_DEVICE},
    {"precision", required_argument, 0, OPT_PRECISION},
    {"stride", required_argument, 0, OPT_STRIDE},
    {"doc-mask", no_argument, 0, OPT_DOCMASK},
    {"temperature", required_argument, 0, OPT_TEMP},
    {"audit", no_argument, 0, OPT_AUDIT},
    {"audit-samples", required_argument, 0, OPT_AUDIT_SAMPLES},
    {"time-budget", required_argument, 0, OPT_BUDGET},
    {"tilt", no_argument, 0, OPT_TILT},
    {"ngram-mix", no_argument, 0, OPT_NGRAM_MIX},
    {"ngram-order", required_argument, 0, OPT_NGRAM_ORDER},
    {"ngram-cache", no_argument, 0, OPT_NGRAM_CACHE},
    {"non-compliant", no_argument, 0, OPT_NON_COMPLIANT},
    PG_CLI_COMMON_LONGOPTS,
    {0, 0, 0, 0},
};

int main(int argc, char **argv)
{
    struct pg_cli cli;
    pg_cli_init(&cli, "pg-eval", usage, argv);
    const char *data = NULL, *tokpath = NULL, *prefix = "fineweb", *device = "cpu";
    int seq_len = 0, batch = 8, bf16 = 0, stride = 0, doc_mask = 0, audit = 0, audit_samples = 64, c;
    double temperature = 1.0, budget = 0;
    double t_start = pg_now(); /* the evaluation's clock: reading and decoding the model count */
    struct pg_ngram_params np; /* lib/ngram.h: --tilt, --ngram-* */
    pg_ngram_params_default(&np);
    int non_compliant = 0;
    while ((c = getopt_long(argc, argv, "d:m:" PG_CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (pg_cli_common(&cli, c)) continue;
        switch (c) {
        case 'd': data = optarg; break;
        case 'm': tokpath = optarg; break;
        case OPT_PREFIX: prefix = optarg; break;
        case OPT_SEQLEN: pg_cli_check(&cli, pg_parse_int("--seq-len", optarg, 1, 1 << 20, &seq_len)); break;
        case OPT_BATCH: pg_cli_check(&cli, pg_parse_int("--batch-seqs", optarg, 1, 1 << 16, &batch)); break;
        case OPT_DEVICE: device = optarg; break;
        case OPT_PRECISION: bf16 = pg_cli_precision(&cli, optarg); break;
        case OPT_STRIDE: pg_cli_check(&cli, pg_parse_int("--stride", optarg, 1, 1 << 20, &stride)); break;
        case OPT_DOCMASK: doc_mask = 1; break;
        case OPT_TEMP: pg_cli_check(&cli, pg_parse_f64("--temperature", optarg, 1e-3, 1e3, &temperature)); break;
        case OPT_AUDIT: audit = 1; break;
        case OPT_BUDGET: pg_cli_check(&cli, pg_parse_f64("--time-budget", optarg, 1e-3, 1e9, &budget)); break;
        case OPT_AUDIT_SAMPLES:
            pg_cli_check(&cli, pg_parse_int("--audit-samples", optarg, 1, 1 << 24, &audit_samples));
            break;
        case OPT_TILT: np.tilt = 1; break;
        case OPT_NGRAM_MIX: np.mix = 1; break;
        case OPT_NGRAM_ORDER: pg_cli_check(&cli, pg_parse_int("--ngram-order", optarg, 1, 16, &np.order)); break;
        case OPT_NGRAM_CACHE: np.cache = 1; break;
        case OPT_NON_COMPLIANT: non_compliant = 1; break;
        default: pg_cli_usage_error(&cli, "unexpected option");
        }
    }
    if (optind + 1 != argc) pg_cli_usage_error(&cli, optind == argc ? "no checkpoint given" : "more than one checkpoint");
    if (!data) pg_cli_usage_error(&cli, "no data folder (-d DIR)");
    if (!tokpath) pg_cli_usage_error(&cli, "no tokenizer (-m MODEL)");
    const char *ckpt = argv[optind];
    int ngram = np.tilt || np.mix || np.cache;
    if (np.cache && !non_compliant)
        pg_cli_usage_error(&cli, "--ngram-cache breaks the rules (its probability reads the target, PR #779; it is "
                                 "not normalized, PR #886): give --non-compliant to run it anyway");
    if (np.cache && (np.tilt || np.mix))
        pg_cli_usage_error(&cli, "--ngram-cache does not combine with --tilt or --ngram-mix");
    if (ngram && strcmp(device, "cpu") != 0) pg_cli_usage_error(&cli, "--tilt and --ngram-* run on --device cpu only");
    if (ngram && (doc_mask || temperature != 1.0))
        pg_cli_usage_error(&cli, "--tilt and --ngram-* do not combine with --doc-mask or --temperature");
    if (np.cache)
        fprintf(stderr, "pg-eval: warning: --ngram-cache is NOT compliant: p_t reads the target x_t (rule 1, PR #779) "
                        "and sums to more than 1 over the vocabulary (rule 2, PR #886)\n");
    const struct pg_backend *be;
    pg_cli_check(&cli, pg_backend_by_name(device, &be));
    be->set_bf16(bf16); /* --precision: the matrix products' inputs (lib/backend.h) */

    struct pg_scoring sc;
    pg_scoring_open(&cli, &sc, ckpt, data, prefix, tokpath, seq_len, 0, be);
    struct pg_config cfg = sc.cfg;
    struct pg_model *m = &sc.m;
    struct pg_val_set *v = &sc.val;
    if (stride > cfg.train_seq_len)
        pg_cli_usage_error(&cli, "--stride %d is longer than the window (%d tokens)", stride, cfg.train_seq_len);
    /* The forward pass reads the switch at each call: document masking is varlen attention. */
    if (doc_mask) m->cfg.varlen_attn = 1;
    int64_t nseq = stride ? pg_slide_count(v->usable, cfg.train_seq_len, stride) : pg_val_num_seqs(v);
    if (batch > nseq) batch = (int)nseq;
    if (ngram) batch = 1; /* one window per forward */
    pg_cli_check(&cli, pg_model_alloc_acts(m, batch, cfg.train_seq_len));
    struct pg_eval_result r;
    struct pg_audit au;
    memset(&au, 0, sizeof au);
    if (audit) pg_cli_check(&cli, pg_audit_init(&au, v->usable, m->v));
    struct pg_ngram_result nr;
    memset(&nr, 0, sizeof nr);
    if (ngram) {
        /* the n-gram modes score target by target over the plain or sliding windows (lib/ngram.c) */
        pg_cli_check(&cli, pg_ngram_run(m, v, &sc.lut, &np, stride, NULL, audit ? &au : NULL, audit_samples, &nr));
        memset(&r, 0, sizeof r);
        r.val_loss = nr.val_loss, r.val_bpb = nr.val_bpb, r.tokens = nr.tokens, r.bytes = nr.bytes;
        r.nll_sum = nr.nll_sum, r.seconds = nr.seconds;
    } else if (stride || audit || temperature != 1.0) {
        /* Non-overlapping windows are stride seq_len, bit for bit; the audit and a temperature
         * need the sliding code's per-target path. */
        pg_cli_check(&cli, pg_eval_sliding_ex(m, v, &sc.lut, stride ? stride : cfg.train_seq_len, batch,
                                              pg_cli_progress(&cli), temperature, audit ? &au : NULL, NULL, &r));
    } else {
        pg_cli_check(&cli, pg_eval_val(m, v, &sc.lut, 0, 1, batch, pg_cli_progress(&cli), &r));
    }
    if (audit) {
        if (!ngram) /* (the n-gram modes check their distributions as they run) */
            pg_cli_check(&cli, pg_eval_audit_dists(m, v, stride ? stride : cfg.train_seq_len, temperature, &au,
                                                   audit_samples, 0x5eed));
        pg_audit_finish(&au);
    }
    double tps = r.seconds > 0 ? r.tokens / r.seconds : 0.0;
    double elapsed = pg_now() - t_start;
    if (cli.json) {
        json_t *j = json_pack("{s:s, s:f, s:f, s:I, s:I, s:i, s:i, s:b, s:I, s:f, s:f}", "checkpoint", ckpt, "val_loss",
                              r.val_loss, "val_bpb", r.val_bpb, "tokens", (json_int_t)r.tokens, "bytes",
                              (json_int_t)r.bytes, "seq_len", cfg.train_seq_len, "stride",
                              stride ? stride : cfg.train_seq_len, "doc_mask", doc_mask || cfg.varlen_attn, "windows",
                              (json_int_t)nseq, "seconds", r.seconds, "tokens_per_second", tps);
        if (!j) pg_cli_die(&cli, "cannot build the JSON result");
        if (temperature != 1.0) json_object_set_new(j, "temperature", json_real(temperature));
        if (ngram) {
            json_object_set_new(j, "mode", json_string(np.cache            ? "ngram-cache"
                                                       : np.tilt && np.mix ? "tilt+ngram-mix"
                                                       : np.tilt           ? "tilt"
                                                                           : "ngram-mix"));
            json_object_set_new(j, "compliant", json_boolean(!np.cache));
            json_object_set_new(j, "model_val_loss", json_real(nr.tokens > 0 ? nr.model_nll / nr.tokens : 0));
        }
        json_object_set_new(j, "elapsed_seconds", json_real(elapsed));
        if (budget > 0) {
            json_object_set_new(j, "time_budget", json_real(budget));
            json_object_set_new(j, "within_budget", json_boolean(elapsed <= budget));
        }
        if (audit) json_object_set_new(j, "audit", pg_scoring_audit_json(&au));
        if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) != 0)
            pg_cli_die(&cli, "cannot write the JSON result");
        fputc('\n', stdout);
        json_decref(j);
    } else {
        printf("val_loss:%.8f val_bpb:%.8f tokens:%.0f bytes:%.0f\n", r.val_loss, r.val_bpb, r.tokens, r.bytes);
    }
    if (fflush(stdout) != 0) pg_cli_die(&cli, "cannot write the result to standard output");
    pg_cli_info(&cli, "%.0f tokens in %.1fs (%.0f tokens/s; %lld windows of %d, stride %d%s)", r.tokens, r.seconds,
                tps, (long long)nseq, cfg.train_seq_len, stride ? stride : cfg.train_seq_len,
                doc_mask || cfg.varlen_attn ? ", document-masked" : "");
    if (budget > 0)
        pg_cli_info(&cli, "time: %.1fs of the %gs budget, from the start (%s)", elapsed, budget,
                    elapsed <= budget ? "within" : "OVER");
    if (audit) {
        if (cli.verbosity > 0) pg_audit_print(&au, stderr, "pg-eval");
        int passed = pg_audit_passed(&au);
        char why[sizeof au.first];
        memcpy(why, au.first, sizeof why);
        pg_audit_free(&au);
        if (!passed) {
            pg_scoring_close(&sc);
            pg_cli_die(&cli, "the audit failed: %s", why);
        }
    }
    pg_scoring_close(&sc);
    if (budget > 0 && elapsed > budget)
        pg_cli_die(&cli, "over the time budget: %.1fs > %gs (--time-budget)", elapsed, budget);
    return 0;
}
