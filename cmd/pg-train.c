/* pg-train: train the parameter-golf GPT on token shards, on the CPU or a GPU (--device). The
 * loop is lib/train.c; this file builds the options (the configuration flags come from the field
 * table of lib/config.c), applies preset → config file → flags, and reports. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "../lib/backend.h"
#include "../lib/ckpt.h"
#include "../lib/config.h"
#include "../lib/dist.h"
#include "../lib/err.h"
#include "../lib/opt.h"
#include "../lib/train.h"

#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char usage_head[] =
    "Usage: pg-train -d DATA_DIR -m TOKENIZER.model -o RUN_DIR [options] [config flags]\n"
    "\n"
    "Train the parameter-golf GPT on <prefix>_train_*.bin shards of DATA_DIR, validating on\n"
    "<prefix>_val_*.bin. Writes RUN_DIR/model.safetensors (the final model), resumable checkpoints\n"
    "RUN_DIR/ckpt_NNNNNN.safetensors (+ .state.safetensors) and RUN_DIR/metrics.jsonl.\n"
    "SIGINT or SIGTERM stops after the current step with a checkpoint (a second one kills).\n"
    "\n"
    "Options:\n"
    "  -d, --data DIR             folder of the token shards\n"
    "  -m, --tokenizer MODEL      the SentencePiece .model the shards were encoded with\n"
    "  -o, --output DIR           the run folder (created if missing)\n"
    "      --prefix NAME          shard name prefix (default fineweb)\n"
    "      --preset NAME          start from a preset configuration (baseline, record)\n"
    "  -c, --config FILE          then apply 'key = value' lines from FILE\n"
    "      --resume CKPT          continue from a checkpoint of an earlier run (bit-exact)\n"
    "      --save-every N         write a checkpoint every N steps (default 0: only at the end)\n"
    "      --stop-at STEP         stop with a checkpoint on reaching STEP (the schedule is unchanged)\n"
    "      --device NAME          where to train: cpu (default) or cuda (one GPU)\n"
    "      --precision P          matrix products in fp32 or bf16 (bf16 inputs, fp32 accumulation,\n"
    "                             as the records' autocast); default bf16 on cuda, fp32 on cpu\n"
    "      --muon-bf16            run Newton-Schulz in bfloat16, as the PyTorch baseline (the default\n"
    "                             with --precision bf16)\n"
    "      --dry-run              print the resolved configuration and parameter count, and exit\n"
    "      --json                 print a summary as JSON on standard output\n"
    "      --progress             always draw the progress line\n"
    "      --no-progress          never draw it (default: when stderr is a terminal)\n"
    "  -q, --quiet                print only errors\n"
    "  -v, --verbose              print more (what the CPU tuning chose)\n"
    "  -V, --version              print the version and exit\n"
    "  -h, --help                 print this help and exit\n"
    "\n"
    "Config flags (applied last; the same keys work in -c files and checkpoint metadata):\n";

static const char usage_tail[] = "\nExit status: 0 success (also when stopped by a signal), 1 runtime error, 2 usage "
                                 "error.\nSee pg-train(1), pg-eval(1), pg-formats(5).\n";

enum {
    OPT_PREFIX = PG_OPT_FIRST_CMD,
    OPT_PRESET,
    OPT_RESUME,
    OPT_SAVE_EVERY,
    OPT_STOP_AT,
    OPT_MUON_BF16,
    OPT_DRY_RUN,
    OPT_DEVICE,
    OPT_PRECISION,
    OPT_FIELD = 2000
};

static volatile sig_atomic_t stop_flag;

/* The job's ranks; a rank that exits before finalizing (an error) ends every rank of the job. */
static struct pg_dist dist = {.world = 1};

static void abort_job(void)
{
    if (dist.mpi) pg_dist_abort(&dist, 1);
}

static void on_stop(int sig)
{
    stop_flag = 1;
    signal(sig, SIG_DFL); /* a second signal kills */
}

static char *build_usage(void)
{
    size_t n, len = sizeof usage_head + sizeof usage_tail + 64;
    const struct pg_config_field *f = pg_config_fields(&n);
    for (size_t i = 0; i < n; i++) len += strlen(f[i].flag) + strlen(f[i].help) + 64;
    char *u = malloc(len), *p = u;
    if (!u) return NULL;
    p += sprintf(p, "%s", usage_head);
    struct pg_config def;
    pg_config_default(&def);
    for (size_t i = 0; i < n; i++) {
        char val[64];
        pg_config_format(&def, &f[i], val, sizeof val);
        char opt[64];
        snprintf(opt, sizeof opt, "--%s N", f[i].flag);
        p += sprintf(p, "      %-26s %s (%s)\n", opt, f[i].help, val);
    }
    sprintf(p, "%s", usage_tail);
    return u;
}

/* --dry-run: the configuration pg-train would train, checked (without a tokenizer, so only the
 * rules that need none), as the aligned table of pg_config_print_table and the parameter count,
 * or as JSON (every value as the string a config file would hold). Exits on an invalid one. */
static void dry_run_report(const struct pg_cli *cli, const struct pg_config *cfg)
{
    pg_cli_check(cli, pg_config_validate(cfg, 0));
    int64_t np = pg_config_num_params(cfg);
    if (!cli->json) {
        pg_cli_check(cli, pg_config_print_table(cfg, stdout));
        printf("num_params  %" PRId64 "\n", np);
        if (fflush(stdout) || ferror(stdout)) pg_cli_die(cli, "cannot write to standard output");
        return;
    }
    json_t *conf = json_object(), *j = json_object();
    if (!conf || !j) pg_cli_die(cli, "out of memory");
    size_t n;
    const struct pg_config_field *f = pg_config_fields(&n);
    for (size_t i = 0; i < n; i++) {
        char val[64];
        pg_cli_check(cli, pg_config_format(cfg, &f[i], val, sizeof val));
        if (json_object_set_new(conf, f[i].key, json_string(val))) pg_cli_die(cli, "out of memory");
    }
    if (json_object_set_new(j, "num_params", json_integer((json_int_t)np)) || json_object_set_new(j, "config", conf))
        pg_cli_die(cli, "out of memory");
    if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) || fputc('\n', stdout) == EOF || fflush(stdout))
        pg_cli_die(cli, "cannot write to standard output");
    json_decref(j);
}

int main(int argc, char **argv)
{
    static char *usage;
    usage = build_usage();
    struct pg_cli cli;
    pg_cli_init(&cli, "pg-train", usage ? usage : usage_head, argv);
    /* From here on a stop request is honoured at the next step boundary, with a checkpoint. */
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    size_t nf;
    const struct pg_config_field *fields = pg_config_fields(&nf);
    static const struct option fixed[] = {
        {"data", required_argument, 0, 'd'},          {"tokenizer", required_argument, 0, 'm'},
        {"output", required_argument, 0, 'o'},        {"config", required_argument, 0, 'c'},
        {"prefix", required_argument, 0, OPT_PREFIX}, {"preset", required_argument, 0, OPT_PRESET},
        {"resume", required_argument, 0, OPT_RESUME}, {"save-every", required_argument, 0, OPT_SAVE_EVERY},
        {"stop-at", required_argument, 0, OPT_STOP_AT}, {"muon-bf16", no_argument, 0, OPT_MUON_BF16},
        {"dry-run", no_argument, 0, OPT_DRY_RUN},     {"device", required_argument, 0, OPT_DEVICE},
        {"precision", required_argument, 0, OPT_PRECISION},
        PG_CLI_COMMON_LONGOPTS,
    };
    size_t nfixed = sizeof fixed / sizeof *fixed;
    /* Static, so they stay reachable when a usage error exits (LeakSanitizer). */
    static struct option *longopts;
    static const char **set_names, **set_values;
    longopts = calloc(nfixed + nf + 1, sizeof *longopts);
    set_names = calloc((size_t)argc, sizeof *set_names);
    set_values = calloc((size_t)argc, sizeof *set_values);
    if (!longopts || !set_names || !set_values) pg_cli_die(&cli, "out of memory");
    memcpy(longopts, fixed, sizeof fixed);
    for (size_t i = 0; i < nf; i++)
        longopts[nfixed + i] = (struct option){fields[i].flag, required_argument, 0, OPT_FIELD + (int)i};

    struct pg_train_opts o = {.prefix = "fineweb", .stop = &stop_flag};
    const char *preset = NULL, *cfg_file = NULL, *device = "cpu", *precision = NULL;
    int dry_run = 0;
    size_t nset = 0;
    int c;
    while ((c = getopt_long(argc, argv, "d:m:o:c:" PG_CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (pg_cli_common(&cli, c)) continue;
        if (c >= OPT_FIELD && c < OPT_FIELD + (int)nf) {
            set_names[nset] = fields[c - OPT_FIELD].flag;
            set_values[nset++] = optarg;
            continue;
        }
        switch (c) {
        case 'd': o.data_dir = optarg; break;
        case 'm': o.tokenizer = optarg; break;
        case 'o': o.run_dir = optarg; break;
        case 'c': cfg_file = optarg; break;
        case OPT_PREFIX: o.prefix = optarg; break;
        case OPT_PRESET: preset = optarg; break;
        case OPT_RESUME: o.resume = optarg; break;
        case OPT_SAVE_EVERY: pg_cli_check(&cli, pg_parse_int("--save-every", optarg, 0, 1 << 30, &o.save_every)); break;
        case OPT_STOP_AT: pg_cli_check(&cli, pg_parse_int("--stop-at", optarg, 1, 1 << 30, &o.stop_at)); break;
        case OPT_MUON_BF16: o.muon_bf16 = 1; break;
        case OPT_DRY_RUN: dry_run = 1; break;
        case OPT_DEVICE: device = optarg; break;
        case OPT_PRECISION: precision = pg_cli_precision(&cli, optarg) ? "bf16" : "fp32"; break;
        default: pg_cli_usage_error(&cli, "unexpected option");
        }
    }
    if (optind < argc) pg_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
    /* A dry run reads no data, so it needs neither the data, the tokenizer nor a run folder. */
    if (!o.data_dir && !dry_run) pg_cli_usage_error(&cli, "no data folder (-d DIR)");
    if (!o.tokenizer && !dry_run) pg_cli_usage_error(&cli, "no tokenizer (-m MODEL)");
    if (!o.run_dir && !dry_run) pg_cli_usage_error(&cli, "no run folder (-o DIR)");

    pg_config_default(&o.cfg);
    if (o.resume) pg_cli_check(&cli, pg_ckpt_read_config(o.resume, &o.cfg));
    if (preset) pg_cli_check(&cli, pg_config_preset(&o.cfg, preset));
    if (cfg_file) pg_cli_check(&cli, pg_config_load_file(&o.cfg, cfg_file));
    for (size_t i = 0; i < nset; i++) pg_cli_check(&cli, pg_config_set(&o.cfg, set_names[i], set_values[i]));
    if (dry_run) {
        dry_run_report(&cli, &o.cfg);
        free(longopts);
        free(set_names);
        free(set_values);
        free(usage);
        return 0;
    }
    /* Started by mpirun or srun: one rank of a data-parallel job (lib/dist.h). Its errors name
     * the rank, and a rank that fails ends the job (the exit handler) instead of leaving the
     * others waiting; rank 0 alone writes and reports. */
    pg_cli_check(&cli, pg_dist_init(&dist));
    static char rank_prog[64];
    if (dist.world > 1) {
        snprintf(rank_prog, sizeof rank_prog, "pg-train: rank %d of %d", dist.rank, dist.world);
        cli.prog = rank_prog;
        if (atexit(abort_job)) pg_cli_die(&cli, "cannot register the job's exit handler");
        if (dist.rank > 0) cli.verbosity = 0, cli.json = 0;
    }
    o.dist = &dist;
    /* one GPU per rank, by the rank's place on its machine, unless the user chose already; set
     * before the first CUDA call, which reads it */
    if (dist.world > 1 && strcmp(device, "cuda") == 0 && !getenv("CUDA_VISIBLE_DEVICES")) {
        char gpu[16];
        snprintf(gpu, sizeof gpu, "%d", dist.local_rank);
        if (setenv("CUDA_VISIBLE_DEVICES", gpu, 1)) pg_cli_die(&cli, "cannot set CUDA_VISIBLE_DEVICES");
    }
    pg_cli_check(&cli, pg_backend_by_name(device, &o.backend));
    o.bf16 = precision ? strcmp(precision, "bf16") == 0 : o.backend != &pg_backend_cpu;
    o.muon_bf16 = o.muon_bf16 || o.bf16;
    o.progress = dist.rank == 0 ? pg_cli_progress(&cli) : 0;
    o.verbosity = cli.verbosity;
    if (cli.verbosity > 0) pg_config_print_table(&o.cfg, stderr);
    if (dist.world > 1 && cli.verbosity > 0)
        fprintf(stderr, "pg-train: %d ranks, %d micro-batches each per step\n", dist.world,
                o.cfg.grad_accum_steps / dist.world);

    struct pg_train_result r;
    pg_cli_check(&cli, pg_train_run(&o, &r));
    pg_cli_info(&cli, "%s after %d steps: train_loss %.4f val_loss %.4f val_bpb %.4f, %.1fs, %.0f tokens/s; wrote %s",
                r.interrupted ? "stopped by a signal" : "done", r.steps, r.train_loss, r.val_loss, r.val_bpb,
                r.train_seconds, r.tokens_per_second, r.final_ckpt);
    if (cli.json) {
        json_t *j = json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:b, s:s, s:s, s:s}", "steps", r.steps, "train_loss",
                              r.train_loss, "val_loss", r.val_loss, "val_bpb", r.val_bpb, "train_seconds",
                              r.train_seconds, "tokens_per_second", r.tokens_per_second, "interrupted", r.interrupted,
                              "model", r.final_ckpt, "device", o.backend->name, "precision", o.bf16 ? "bf16" : "fp32");
        if (j && r.device_peak_bytes) json_object_set_new(j, "device_peak_bytes", json_integer((json_int_t)r.device_peak_bytes));
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
        fputc('\n', stdout);
        json_decref(j);
    }
    free(longopts);
    free(set_names);
    free(set_values);
    free(usage);
    pg_dist_finalize(&dist);
    return 0;
}
