/* pg-ttt: val_loss and val_bpb with legal score-first test-time training: each chunk of the val
 * stream is scored first, then the model trains on it before the next chunk is scored. The work
 * is in lib/ttt.c; the model file (checkpoint, .pgq or .pga) is read by lib/modelfile.c; this file
 * parses options and reports, in pg-eval's output format. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "scoring.h"

#include "../lib/audit.h"
#include "../lib/bpb.h"
#include "../lib/eval.h"
#include "../lib/err.h"
#include "../lib/loader.h"
#include "../lib/lora.h"
#include "../lib/ngram.h"
#include "../lib/opt.h"
#include "../lib/outfile.h"
#include "../lib/progress.h"
#include "../lib/ttt.h"
#include "../lib/xio.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: pg-ttt MODEL -d DATA_DIR -m TOKENIZER.model [options]\n"
    "\n"
    "Score a model on the val shards <prefix>_val_*.bin of DATA_DIR with legal score-first\n"
    "test-time training: the val windows (pg-eval's) are taken in chunks; each chunk is scored\n"
    "first, then (but for the last) the whole model trains on it with SGD before the next chunk\n"
    "is scored. Reports val_loss and val_bpb over every chunk, as pg-eval does. MODEL is a\n"
    "checkpoint (safetensors), a quantized model (.pgq) or an artifact (.pga), told apart by content.\n"
    "\n"
    "Options:\n"
    "  -d, --data DIR             folder of the token shards\n"
    "  -m, --tokenizer MODEL      the SentencePiece .model the shards were encoded with\n"
    "      --prefix NAME          shard name prefix (default fineweb)\n"
    "      --seq-len N            window length (default: the model's train_seq_len)\n"
    "      --chunk-tokens N       tokens per chunk, rounded down to whole windows (default 32768)\n"
    "      --epochs N             training passes over each scored chunk; 0 = pg-eval (default 3)\n"
    "      --lr X                 SGD learning rate, cosine-decayed over the chunks (default 0.005)\n"
    "      --momentum X           SGD momentum (default 0.9)\n"
    "      --grad-clip X          clip the gradient's global 2-norm to X; 0 = off (default 1.0)\n"
    "      --batch-seqs N         windows per forward pass (default 8)\n"
    "      --step-seqs N          windows per SGD step (default 32)\n"
    "      --control-only         train only the control tensors (scales, gains, mixes, gates: the\n"
    "                             small float tensors of an artifact; PR #2086)\n"
    "      --tilt                 pg-eval's causal token tilt on the adapted model's scores\n"
    "      --ngram-mix            pg-eval's n-gram mixture on the adapted model's scores\n"
    "      --ngram-order N        the mixture's highest order (default 6)\n"
    "      --ngram-cache          PR #826's cache, NOT compliant; needs --non-compliant\n"
    "      --non-compliant        allow a mode the challenge's rules forbid\n"
    "      --temperature T        score softmax(softcapped logits / T) (PR #826: 0.98; default 1)\n"
    "      --polyak D             score with a Polyak average of the trained weights, decay D\n"
    "                             (PR #826: 0.998; default 0: off)\n"
    "      --lora                 per-document LoRA TTT instead (spec §6.3): each document (BOS to\n"
    "                             BOS) is scored in chunks, each chunk first, then one AdamW step\n"
    "                             on low-rank adapters reset at each document (--device cpu only)\n"
    "      --targets LIST         adapted weights among q,k,v,o,mlp,head (default q,k,v,o,mlp)\n"
    "      --rank N               adapter rank; 0 = plain per-document scoring (default 96)\n"
    "      --alpha X              adapter scale alpha/rank (default 144)\n"
    "      --window N             the most context tokens per chunk (default 2048, capped at\n"
    "                             the window length)\n"
    "      --beta1 X              AdamW beta1 (default 0)\n"
    "      --beta2 X              AdamW beta2 (default 0.999)\n"
    "      --weight-decay X       AdamW decoupled weight decay (default 0.5)\n"
    "      --seed N               the adapters' A initialization (default 1)\n"
    "      --doc-batch N          documents sorted by length, N at a time, each with its own\n"
    "                             adapters beside the weights (default 1: one at a time, in order)\n"
    "      --no-warm-start        A starts from its initialization at every document (default: A\n"
    "                             keeps what it learned, PR #1767)\n"
    "                             With --lora, --lr defaults to 1e-4 and --chunk-tokens to 64.\n"
    "      --phased N             with --lora: N phases of global SGD on the base model over the\n"
    "                             documents scored so far (spec §6.4)\n"
    "      --prefix-docs N        the documents the phases are spread over (default 2000)\n"
    "      --phase-lr X           the phases' SGD learning rate (default 0.001)\n"
    "      --token-losses FILE    write every target's loss (float32 LE, stream order) to FILE\n"
    "      --device NAME          cpu (default) or cuda (the first GPU; exit 3 without one): scoring\n"
    "                             and SGD on the device\n"
    "      --precision P          fp32 (default) or bf16: matrix products with bfloat16 inputs\n"
    "      --time-budget S        the challenge's evaluation limit (600): everything from the start\n"
    "                             (model reading, scoring and training) must end within S seconds;\n"
    "                             exit 1 after the result when it does not\n"
    "      --audit                check the rules of a legal evaluation (pg-eval(1)): no look-ahead\n"
    "                             and normalized distributions on sampled targets, each target\n"
    "                             scored once and before any SGD step reads it; exit 1 if broken\n"
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
    "See pg-ttt(1), pg-eval(1), pg-formats(5).\n";

enum {
    OPT_PREFIX = PG_OPT_FIRST_CMD,
    OPT_SEQLEN,
    OPT_CHUNK,
    OPT_EPOCHS,
    OPT_LR,
    OPT_MOMENTUM,
    OPT_CLIP,
    OPT_BATCH,
    OPT_STEP,
    OPT_LOSSES,
    OPT_DEVICE,
    OPT_PRECISION,
    OPT_AUDIT,
    OPT_BUDGET,
    OPT_LORA,
    OPT_TARGETS,
    OPT_RANK,
    OPT_ALPHA,
    OPT_WINDOW,
    OPT_BETA1,
    OPT_BETA2,
    OPT_WD,
    OPT_SEED,
    OPT_PHASED,
    OPT_CONTROL_ONLY,
    OPT_TILT,
    OPT_NGRAM_MIX,
    OPT_NGRAM_ORDER,
    OPT_NGRAM_CACHE,
    OPT_NON_COMPLIANT,
    OPT_POLYAK,
    OPT_PREFIX_DOCS,
    OPT_PHASE_LR,
    OPT_DOC_BATCH,
    OPT_TEMPERATURE,
    OPT_NO_WARM_START,
};

static const struct option longopts[] = {
    {"data", required_argument, 0, 'd'},
    {"tokenizer", required_argument, 0, 'm'},
    {"prefix", required_argument, 0, OPT_PREFIX},
    {"seq-len", required_argument, 0, OPT_SEQLEN},
    {"chunk-tokens", required_argument, 0, OPT_CHUNK},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"lr", required_argument, 0, OPT_LR},
    {"momentum", required_argument, 0, OPT_MOMENTUM},
    {"grad-clip", required_argument, 0, OPT_CLIP},
    {"batch-seqs", required_argument, 0, OPT_BATCH},
    {"step-seqs", required_argument, 0, OPT_STEP},
    {"token-losses", required_argument, 0, OPT_LOSSES},
    {"device", required_argument, 0, OPT_DEVICE},
    {"precision", required_argument, 0, OPT_PRECISION},
    {"audit", no_argument, 0, OPT_AUDIT},
    {"time-budget", required_argument, 0, OPT_BUDGET},
    {"lora", no_argument, 0, OPT_LORA},
    {"targets", required_argument, 0, OPT_TARGETS},
    {"rank", required_argument, 0, OPT_RANK},
    {"alpha", required_argument, 0, OPT_ALPHA},
    {"window", required_argument, 0, OPT_WINDOW},
    {"beta1", required_argument, 0, OPT_BETA1},
    {"beta2", required_argument, 0, OPT_BETA2},
    {"weight-decay", required_argument, 0, OPT_WD},
    {"seed", required_argument, 0, OPT_SEED},
    {"phased", required_argument, 0, OPT_PHASED},
    {"control-only", no_argument, 0, OPT_CONTROL_ONLY},
    {"tilt", no_argument, 0, OPT_TILT},
    {"ngram-mix", no_argument, 0, OPT_NGRAM_MIX},
    {"ngram-order", required_argument, 0, OPT_NGRAM_ORDER},
    {"ngram-cache", no_argument, 0, OPT_NGRAM_CACHE},
    {"non-compliant", no_argument, 0, OPT_NON_COMPLIANT},
    {"polyak", required_argument, 0, OPT_POLYAK},
    {"prefix-docs", required_argument, 0, OPT_PREFIX_DOCS},
    {"phase-lr", required_argument, 0, OPT_PHASE_LR},
    {"doc-batch", required_argument, 0, OPT_DOC_BATCH},
    {"temperature", required_argument, 0, OPT_TEMPERATURE},
    {"no-warm-start", no_argument, 0, OPT_NO_WARM_START},
    PG_CLI_COMMON_LONGOPTS,
    {0, 0, 0, 0},
};

static void audit_scored(void *ctx, int64_t chunk, int64_t begin, int64_t end) { pg_audit_scored(ctx, begin, end); }

static void audit_updated(void *ctx, int64_t chunk, int64_t begin, int64_t end) { pg_audit_updated(ctx, begin, end); }

int main(int argc, char **argv)
{
    struct pg_cli cli;
    pg_cli_init(&cli, "pg-ttt", usage, argv);
    const char *data = NULL, *tokpath = NULL, *prefix = "fineweb", *losses_path = NULL, *device = "cpu";
    int bf16 = 0;
    struct pg_ttt_params p;
    pg_ttt_params_default(&p);
    struct pg_lora_params lp;
    pg_lora_params_default(&lp);
    int lora = 0, lr_set = 0, chunk_set = 0;
    struct pg_ngram_params np; /* lib/ngram.h, with --lora */
    pg_ngram_params_default(&np);
    int non_compliant = 0;
    int64_t seed = 1;
    int seq_len = 0, audit = 0, c;
    double budget = 0, t_start = pg_now(); /* the evaluation's clock: reading the model counts */
    while ((c = getopt_long(argc, argv, "d:m:" PG_CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (pg_cli_common(&cli, c)) continue;
        switch (c) {
        case 'd': data = optarg; break;
        case 'm': tokpath = optarg; break;
        case OPT_PREFIX: prefix = optarg; break;
        case OPT_SEQLEN: pg_cli_check(&cli, pg_parse_int("--seq-len", optarg, 1, 1 << 20, &seq_len)); break;
        case OPT_CHUNK:
            chunk_set = 1;
            pg_cli_check(&cli, pg_parse_i64("--chunk-tokens", optarg, 1, INT64_C(1) << 40, &p.chunk_tokens));
            break;
        case OPT_EPOCHS: pg_cli_check(&cli, pg_parse_int("--epochs", optarg, 0, 1000, &p.epochs)); break;
        case OPT_LR: lr_set = 1, pg_cli_check(&cli, pg_parse_f64("--lr", optarg, 0, 1e3, &p.lr)); break;
        case OPT_MOMENTUM: pg_cli_check(&cli, pg_parse_f64("--momentum", optarg, 0, 0.999999, &p.momentum)); break;
        case OPT_CLIP: pg_cli_check(&cli, pg_parse_f64("--grad-clip", optarg, 0, 1e30, &p.grad_clip)); break;
        case OPT_BATCH: pg_cli_check(&cli, pg_parse_int("--batch-seqs", optarg, 1, 1 << 16, &p.batch_seqs)); break;
        case OPT_STEP: pg_cli_check(&cli, pg_parse_int("--step-seqs", optarg, 1, 1 << 24, &p.step_seqs)); break;
        case OPT_LOSSES: losses_path = optarg; break;
        case OPT_DEVICE: device = optarg; break;
        case OPT_PRECISION: bf16 = pg_cli_precision(&cli, optarg); break;
        case OPT_AUDIT: audit = 1; break;
        case OPT_BUDGET: pg_cli_check(&cli, pg_parse_f64("--time-budget", optarg, 1e-3, 1e9, &budget)); break;
        case OPT_LORA: lora = 1; break;
        case OPT_TARGETS: pg_cli_check(&cli, pg_lora_parse_targets(optarg, &lp.targets)); break;
        case OPT_RANK: pg_cli_check(&cli, pg_parse_int("--rank", optarg, 0, 1 << 16, &lp.rank)); break;
        case OPT_ALPHA: pg_cli_check(&cli, pg_parse_f64("--alpha", optarg, 1e-9, 1e9, &lp.alpha)); break;
        case OPT_WINDOW: pg_cli_check(&cli, pg_parse_int("--window", optarg, 1, 1 << 20, &lp.window)); break;
        case OPT_BETA1: pg_cli_check(&cli, pg_parse_f64("--beta1", optarg, 0, 0.999999, &lp.beta1)); break;
        case OPT_BETA2: pg_cli_check(&cli, pg_parse_f64("--beta2", optarg, 0, 0.999999, &lp.beta2)); break;
        case OPT_WD: pg_cli_check(&cli, pg_parse_f64("--weight-decay", optarg, 0, 1e6, &lp.wd)); break;
        case OPT_SEED: pg_cli_check(&cli, pg_parse_i64("--seed", optarg, 0, INT64_MAX, &seed)); break;
        case OPT_TILT: np.tilt = 1; break;
        case OPT_NGRAM_MIX: np.mix = 1; break;
        case OPT_NGRAM_ORDER: pg_cli_check(&cli, pg_parse_int("--ngram-order", optarg, 1, 16, &np.order)); break;
        case OPT_NGRAM_CACHE: np.cache = 1; break;
        case OPT_NON_COMPLIANT: non_compliant = 1; break;
        case OPT_CONTROL_ONLY: p.control_only = 1; break;
        case OPT_POLYAK: pg_cli_check(&cli, pg_parse_f64("--polyak", optarg, 0, 0.999999999, &p.polyak)); break;
        case OPT_PHASED: pg_cli_check(&cli, pg_parse_int("--phased", optarg, 0, 1000, &lp.phases)); break;
        case OPT_PREFIX_DOCS:
            pg_cli_check(&cli, pg_parse_i64("--prefix-docs", optarg, 1, INT64_C(1) << 40, &lp.prefix_docs));
            break;
        case OPT_PHASE_LR: pg_cli_check(&cli, pg_parse_f64("--phase-lr", optarg, 0, 1e3, &lp.phase_lr)); break;
        case OPT_DOC_BATCH: pg_cli_check(&cli, pg_parse_int("--doc-batch", optarg, 1, 4096, &lp.batch_docs)); break;
        case OPT_NO_WARM_START: lp.warm_a = 0; break;
        case OPT_TEMPERATURE:
            pg_cli_check(&cli, pg_parse_f64("--temperature", optarg, 1e-3, 1e3, &p.temperature));
            break;
        default: pg_cli_usage_error(&cli, "unexpected option");
        }
    }
    if (optind + 1 != argc) pg_cli_usage_error(&cli, optind == argc ? "no model given" : "more than one model");
    if (!data) pg_cli_usage_error(&cli, "no data folder (-d DIR)");
    if (!tokpath) pg_cli_usage_error(&cli, "no tokenizer (-m MODEL)");
    if (lora && strcmp(device, "cpu") != 0)
        pg_cli_usage_error(&cli, "--lora runs on --device cpu only (its adapters fold into host-memory weights)");
    if (lora) {
        lp.lr = lr_set ? p.lr : lp.lr;
        if (chunk_set && p.chunk_tokens > (1 << 20))
            pg_cli_usage_error(&cli, "--chunk-tokens with --lora: at most 1048576");
        lp.chunk = chunk_set ? (int)p.chunk_tokens : lp.chunk;
        lp.seed = (uint64_t)seed;
    }
    if (lp.phases > 0 && !lora) pg_cli_usage_error(&cli, "--phased needs --lora (use --rank 0 for the phases alone)");
    if ((lp.batch_docs > 1 || !lp.warm_a) && !lora) pg_cli_usage_error(&cli, "--doc-batch and --no-warm-start need --lora");
    int ngram = np.tilt || np.mix || np.cache;
    if (lp.batch_docs > 1 && (ngram || lp.phases > 0))
        pg_cli_usage_error(&cli, "--doc-batch scores documents out of stream order: not with --phased, --tilt or "
                                 "--ngram-* (they need the stream order)");
    if (lp.batch_docs > 1 && (lp.targets & PG_LORA_HEAD))
        pg_cli_usage_error(&cli, "--doc-batch: no head adapter (the head's product is fused into the loss)");
    if (ngram && strcmp(device, "cpu") != 0) pg_cli_usage_error(&cli, "--tilt and --ngram-* run on --device cpu only");
    if (p.temperature != 1.0 && (lora || ngram))
        pg_cli_usage_error(&cli, "--temperature applies to global TTT's own scores: not with --lora, --tilt or --ngram-*");
    if (np.cache && !non_compliant)
        pg_cli_usage_error(&cli, "--ngram-cache breaks the rules (its probability reads the target, PR #779; it is "
                                 "not normalized, PR #886): give --non-compliant to run it anyway");
    if (np.cache && (np.tilt || np.mix))
        pg_cli_usage_error(&cli, "--ngram-cache does not combine with --tilt or --ngram-mix");
    if (np.cache)
        fprintf(stderr, "pg-ttt: warning: --ngram-cache is NOT compliant: p_t reads the target x_t (rule 1, PR #779) "
                        "and sums to more than 1 over the vocabulary (rule 2, PR #886)\n");
    if (ngram) lp.ngram = &np, p.ngram = &np;
    int training = lora ? (lp.rank > 0 && lp.lr > 0) || lp.phases > 0 : p.epochs > 0;
    const char *model = argv[optind];

    /* Without training the model needs no gradients: --epochs 0 runs in pg-eval's memory. */
    struct pg_scoring sc;
    const struct pg_backend *be;
    pg_cli_check(&cli, pg_backend_by_name(device, &be));
    be->set_bf16(bf16);
    pg_scoring_open(&cli, &sc, model, data, prefix, tokpath, seq_len, training, be);
    struct pg_config cfg = sc.cfg;
    struct pg_model *m = &sc.m;
    struct pg_val_set *v = &sc.val;
    int64_t nseq = pg_val_num_seqs(v);
    if (p.batch_seqs > nseq) p.batch_seqs = (int)nseq;
    if (lora && lp.batch_docs > 1) { /* no more slots (and activations) than there are documents */
        int64_t docs = 1;
        for (int64_t i = 1; i < v->usable; i++) docs += v->tokens[i] == cfg.bos_id;
        if (docs < lp.batch_docs) lp.batch_docs = (int)docs;
    }
    if (lora) p.batch_seqs = lp.batch_docs; /* a window per document of a batch per forward */
    pg_cli_check(&cli, pg_model_alloc_acts(m, p.batch_seqs, cfg.train_seq_len));
    float *losses = NULL;
    if (losses_path && !(losses = pg_malloc((size_t)v->usable * sizeof *losses))) pg_cli_check(&cli, PG_E_NOMEM);
    struct pg_ttt_hooks hooks = {.token_losses = losses};
    /* --audit: the session reports what it scores and what each step reads (lib/audit.h); the
     * distributions are checked as the run reaches the sampled targets, on the model as it then
     * is (adapted, through the n-gram mode), or on a device (global TTT only) on the model as
     * loaded, before any step. */
    struct pg_audit au;
    memset(&au, 0, sizeof au);
    if (audit) {
        pg_cli_check(&cli, pg_audit_init(&au, v->usable, m->v));
        hooks.ctx = &au, hooks.scored = audit_scored, hooks.updated = audit_updated;
        if (be->host_memory) hooks.audit = &au, hooks.audit_samples = 64;
        else pg_cli_check(&cli, pg_eval_audit_dists(m, v, cfg.train_seq_len, 1.0, &au, 64, 0x5eed));
    }
    p.progress = pg_cli_progress(&cli);
    lp.progress = p.progress;
    if (cli.verbosity > 1)
        fprintf(stderr,
                "pg-ttt: %lld windows of %d in chunks of %lld tokens; %d epochs, lr %g, momentum %g, grad clip %g, "
                "%d windows per step, %d per forward\n",
                (long long)nseq, cfg.train_seq_len, (long long)p.chunk_tokens, p.epochs, p.lr, p.momentum,
                p.grad_clip, p.step_seqs, p.batch_seqs);
    /* The loss file is opened first, so that a bad path fails before the work, not after. */
    struct pg_out lo;
    memset(&lo, 0, sizeof lo);
    if (losses_path) pg_cli_check(&cli, pg_out_open(&lo, losses_path));
    double t0 = pg_now();
    struct pg_ttt_result r;
    struct pg_lora_result lr;
    memset(&lr, 0, sizeof lr);
    memset(&r, 0, sizeof r);
    struct pg_lora_hooks lhooks = {.token_losses = losses};
    if (audit)
        lhooks.ctx = &au, lhooks.scored = audit_scored, lhooks.updated = audit_updated, lhooks.audit = &au,
        lhooks.audit_samples = 64;
    int rc = lora ? pg_lora_run(m, v, &sc.lut, &lp, &lhooks, &lr) : pg_ttt_run(m, v, &sc.lut, &p, &hooks, &r);
    if (lora) /* the shared fields of the report */
        r.val_loss = lr.val_loss, r.val_bpb = lr.val_bpb, r.tokens = lr.tokens, r.bytes = lr.bytes;
    double seconds = pg_now() - t0;
    /* float32 in the host's order, which is little-endian (xio.h refuses other hosts) */
    if (!rc && losses_path && !(rc = pg_out_write(&lo, losses, (size_t)v->usable * sizeof *losses)))
        rc = pg_out_commit(&lo);
    else if (losses_path)
        pg_out_abort(&lo);
    pg_cli_check(&cli, rc);
    if (audit) pg_audit_finish(&au); /* every target counted: the verdicts are final */
    if (cli.json) {
        const char *ngram_mode = np.cache                ? "ngram-cache"
                                 : np.tilt && np.mix ? "tilt+ngram-mix"
                                 : np.tilt           ? "tilt"
                                 : np.mix            ? "ngram-mix"
                                                     : "none";
        json_t *j = lora ? json_pack("{s:s, s:s, s:f, s:f, s:I, s:I, s:i, s:f, s:I, s:I, s:I, s:i, s:f, s:f, s:f, s:f, "
                                     "s:f, "
                                     "s:i, s:i, s:I, s:i, s:I, s:I, s:s, s:b, s:i, s:b}",
                                     "checkpoint", model, "mode", "lora", "val_loss", r.val_loss, "val_bpb", r.val_bpb,
                                     "tokens", (json_int_t)r.tokens, "bytes", (json_int_t)r.bytes, "seq_len",
                                     cfg.train_seq_len, "seconds", seconds, "docs", (json_int_t)lr.docs, "chunks",
                                     (json_int_t)lr.chunks, "steps", (json_int_t)lr.steps, "rank", lp.rank, "alpha",
                                     lp.alpha, "lr", lp.lr, "beta1", lp.beta1, "beta2", lp.beta2, "weight_decay", lp.wd,
                                     "chunk_tokens", lp.chunk, "adapters", lr.adapters, "adapter_params",
                                     (json_int_t)lr.adapter_params, "phases", lp.phases, "prefix_docs",
                                     (json_int_t)lp.prefix_docs, "phase_steps", (json_int_t)lr.phase_steps, "ngram",
                                     ngram_mode,
                                     "compliant", !np.cache, "doc_batch", lp.batch_docs, "warm_start", lp.warm_a)
                          : json_pack("{s:s, s:f, s:f, s:I, s:I, s:i, s:f, s:I, s:I, s:i, s:f, s:f, s:f, s:I, s:f, "
                                      "s:f, s:b, s:f, s:s, s:b, s:f}",
                              "checkpoint", model, "val_loss", r.val_loss, "val_bpb", r.val_bpb, "tokens",
                              (json_int_t)r.tokens, "bytes", (json_int_t)r.bytes, "seq_len", cfg.train_seq_len,
                              "seconds", seconds, "chunks", (json_int_t)r.chunks, "chunk_tokens",
                              (json_int_t)(r.chunk_seqs * cfg.train_seq_len), "epochs", p.epochs, "lr", p.lr,
                              "momentum", p.momentum, "grad_clip", p.grad_clip, "steps", (json_int_t)r.steps,
                              "score_seconds", r.score_seconds, "train_seconds", r.train_seconds, "control_only",
                                      p.control_only, "polyak", p.polyak, "ngram", ngram_mode, "compliant", !np.cache,
                                      "temperature", p.temperature);
        if (!j) pg_cli_die(&cli, "cannot build the JSON result");
        if (audit) json_object_set_new(j, "audit", pg_scoring_audit_json(&au));
        if (budget > 0) {
            double el = pg_now() - t_start;
            json_object_set_new(j, "elapsed_seconds", json_real(el));
            json_object_set_new(j, "time_budget", json_real(budget));
            json_object_set_new(j, "within_budget", json_boolean(el <= budget));
        }
        if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) != 0)
            pg_cli_die(&cli, "cannot write the JSON result");
        fputc('\n', stdout);
        json_decref(j);
    } else {
        printf("val_loss:%.8f val_bpb:%.8f tokens:%.0f bytes:%.0f\n", r.val_loss, r.val_bpb, r.tokens, r.bytes);
    }
    if (fflush(stdout) != 0) pg_cli_die(&cli, "cannot write the result to standard output");
    if (lora)
        pg_cli_info(&cli,
                    "%.0f tokens in %.1fs: %lld documents, %lld chunks, %lld AdamW steps on %d adapters "
                    "(%zu parameters)",
                    r.tokens, seconds, (long long)lr.docs, (long long)lr.chunks, (long long)lr.steps, lr.adapters,
                    lr.adapter_params);
    else
    pg_cli_info(&cli,
                "%.0f tokens in %.1fs: %lld chunks of %lld tokens, %lld SGD steps (scoring %.1fs, training %.1fs)",
                r.tokens, seconds, (long long)r.chunks, (long long)(r.chunk_seqs * cfg.train_seq_len),
                (long long)r.steps, r.score_seconds, r.train_seconds);
    free(losses);
    pg_scoring_close(&sc);
    double elapsed = pg_now() - t_start;
    if (budget > 0)
        pg_cli_info(&cli, "time: %.1fs of the %gs budget, from the start (%s)", elapsed, budget,
                    elapsed <= budget ? "within" : "OVER");
    if (audit) {
        if (cli.verbosity > 0) pg_audit_print(&au, stderr, "pg-ttt");
        int passed = pg_audit_passed(&au);
        char why[sizeof au.first];
        memcpy(why, au.first, sizeof why);
        pg_audit_free(&au);
        if (!passed) pg_cli_die(&cli, "the audit failed: %s", why);
    }
    if (budget > 0 && elapsed > budget)
        pg_cli_die(&cli, "over the time budget: %.1fs > %gs (--time-budget)", elapsed, budget);
    return 0;
}
