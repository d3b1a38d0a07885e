/* pg-tokenize: text → SentencePiece tokenizer and parameter-golf token shards, and back.
 *
 * Subcommands train, encode, decode and info; the work is in lib/tokenize*.c. This file parses
 * options, prints summaries (text on stderr, --json on stdout) and maps results to exit codes.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "../lib/err.h"
#include "../lib/opt.h"
#include "../lib/shard.h"
#include "../lib/tok.h"
#include "../lib/tokenize.h"
#include "../lib/xio.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: pg-tokenize train  -i DOCS... -o MODEL --vocab N [options]\n"
    "       pg-tokenize encode -m MODEL -i DOCS... -o DIR [options]\n"
    "       pg-tokenize decode -m MODEL [-o FILE] SHARD...\n"
    "       pg-tokenize info   -m MODEL [SHARD...] [--json]\n"
    "\n"
    "Train a SentencePiece BPE tokenizer with parameter-golf's settings, encode documents into\n"
    "parameter-golf token shards (<prefix>_val_%06d.bin, <prefix>_train_%06d.bin), decode shards\n"
    "back to text, and count tokens, documents and val_bpb bytes.\n"
    "DOCS are JSONL files with a \"text\" field per line, or plain text files with --text\n"
    "(one document per file); '-' reads standard input.\n"
    "\n"
    "Options:\n"
    "  -i, --input FILE           a documents file (repeatable; extra arguments are inputs too)\n"
    "  -o, --output PATH          train: the .model to write; encode: the shard folder;\n"
    "                             decode: the text file (default '-', standard output)\n"
    "  -m, --model MODEL          the SentencePiece .model to use\n"
    "      --text                 inputs are plain text, one document per file\n"
    "      --vocab N              train: vocabulary size (261..65536)\n"
    "      --threads K            worker threads (default: every core)\n"
    "      --max-sentence-length N  train: longer documents are skipped, as in SentencePiece\n"
    "                             (default 4192)\n"
    "      --input-sentence-size N  train: sample at most N documents (default 0: all)\n"
    "      --character-coverage F train: share of characters covered by pieces (default 0.999)\n"
    "      --spm-options STR      train: extra SentencePiece options, \"--key=value ...\"\n"
    "      --prefix NAME          encode: shard name prefix (default fineweb)\n"
    "      --val-docs N           encode: the first N documents go to val (default 50000)\n"
    "      --shard-tokens N       encode: tokens per shard (default 100M)\n"
    "      --caseops              train, encode: the CaseOps case transform (TITLE, ALLCAPS, CAPNEXT,\n"
    "                             ESC operators); encode also writes the val byte sidecar\n"
    "                             <prefix>_val_bytes_%06d.bin that pg-eval counts bytes from\n"
    "  -f, --force                encode: replace existing shards with the same prefix\n"
    "      --json                 print a machine-readable summary on standard output\n"
    "      --progress             always draw the progress line\n"
    "      --no-progress          never draw it (default: when stderr is a terminal)\n"
    "  -q, --quiet                print only errors\n"
    "  -v, --verbose              print more (train: SentencePiece's own log)\n"
    "  -V, --version              print the version and exit\n"
    "  -h, --help                 print this help and exit\n"
    "\n"
    "Exit status: 0 success, 1 runtime error (bad input, I/O), 2 usage error, 3 unavailable.\n"
    "See pg-tokenize(1), pg-formats(5).\n";

enum {
    OPT_TEXT = PG_OPT_FIRST_CMD, OPT_VOCAB, OPT_THREADS, OPT_MAXLEN, OPT_SENTSIZE, OPT_COVERAGE, OPT_SPM,
    OPT_PREFIX, OPT_VALDOCS, OPT_SHARDTOK, OPT_CASEOPS,
};

static const struct option longopts[] = {
    {"input", required_argument, 0, 'i'},
    {"output", required_argument, 0, 'o'},
    {"model", required_argument, 0, 'm'},
    {"force", no_argument, 0, 'f'},
    {"text", no_argument, 0, OPT_TEXT},
    {"vocab", required_argument, 0, OPT_VOCAB},
    {"threads", required_argument, 0, OPT_THREADS},
    {"max-sentence-length", required_argument, 0, OPT_MAXLEN},
    {"input-sentence-size", required_argument, 0, OPT_SENTSIZE},
    {"character-coverage", required_argument, 0, OPT_COVERAGE},
    {"spm-options", required_argument, 0, OPT_SPM},
    {"prefix", required_argument, 0, OPT_PREFIX},
    {"val-docs", required_argument, 0, OPT_VALDOCS},
    {"shard-tokens", required_argument, 0, OPT_SHARDTOK},
    {"caseops", no_argument, 0, OPT_CASEOPS},
    PG_CLI_COMMON_LONGOPTS,
    {0, 0, 0, 0},
};

struct args {
    char **inputs;
    size_t ninputs;
    const char *output, *model, *spm, *prefix;
    int text, force, vocab, threads, maxlen, caseops;
    int64_t sentsize, valdocs, shardtok;
    double coverage;
};

static void add_input(struct pg_cli *cli, struct args *a, char *s)
{
    char **v = realloc(a->inputs, (a->ninputs + 1) * sizeof *v);
    if (!v) pg_cli_die(cli, "out of memory");
    a->inputs = v;
    a->inputs[a->ninputs++] = s;
}

static void parse(struct pg_cli *cli, struct args *a, int argc, char **argv)
{
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    *a = (struct args){.prefix = "fineweb", .vocab = 0, .threads = nproc > 0 ? (int)nproc : 1, .maxlen = 4192,
                       .valdocs = 50000, .shardtok = (int64_t)PG_SHARD_DEFAULT_TOKENS, .coverage = 0.999};
    int c;
    while ((c = getopt_long(argc, argv, "i:o:m:f" PG_CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (pg_cli_common(cli, c)) continue;
        switch (c) {
        case 'i': add_input(cli, a, optarg); break;
        case 'o': a->output = optarg; break;
        case 'm': a->model = optarg; break;
        case 'f': a->force = 1; break;
        case OPT_TEXT: a->text = 1; break;
        case OPT_CASEOPS: a->caseops = 1; break;
        case OPT_VOCAB: pg_cli_check(cli, pg_parse_int("--vocab", optarg, 1, 1 << 30, &a->vocab)); break;
        case OPT_THREADS: pg_cli_check(cli, pg_parse_int("--threads", optarg, 1, 1024, &a->threads)); break;
        case OPT_MAXLEN: pg_cli_check(cli, pg_parse_int("--max-sentence-length", optarg, 1, 1 << 30, &a->maxlen)); break;
        case OPT_SENTSIZE:
            pg_cli_check(cli, pg_parse_i64("--input-sentence-size", optarg, 0, INT64_MAX, &a->sentsize));
            break;
        case OPT_COVERAGE:
            pg_cli_check(cli, pg_parse_f64("--character-coverage", optarg, 0.5, 1.0, &a->coverage));
            break;
        case OPT_SPM: a->spm = optarg; break;
        case OPT_PREFIX:
            if (!*optarg || strchr(optarg, '/')) pg_cli_usage_error(cli, "--prefix: '%s' is not a file name prefix", optarg);
            a->prefix = optarg;
            break;
        case OPT_VALDOCS: pg_cli_check(cli, pg_parse_i64("--val-docs", optarg, 0, INT64_MAX, &a->valdocs)); break;
        case OPT_SHARDTOK:
            pg_cli_check(cli, pg_parse_i64("--shard-tokens", optarg, 1, (int64_t)PG_SHARD_MAX_TOKENS, &a->shardtok));
            break;
        default: pg_cli_usage_error(cli, "unexpected option");
        }
    }
}

static void print_json(json_t *j)
{
    if (!j) return;
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(j);
}

/* ---- subcommands ---- */

static int cmd_train(struct pg_cli *cli, struct args *a)
{
    if (!a->ninputs) pg_cli_usage_error(cli, "train: no input (-i DOCS)");
    if (!a->output) pg_cli_usage_error(cli, "train: no output model (-o MODEL)");
    if (!a->vocab) pg_cli_usage_error(cli, "train: no vocabulary size (--vocab N)");
    if (strcmp(a->output, "-") == 0) pg_cli_usage_error(cli, "train: the model must go to a file, not '-'");
    struct pg_train_tok_opts o = {
        .inputs = a->inputs, .ninputs = a->ninputs, .text_mode = a->text, .output = a->output,
        .vocab = a->vocab, .threads = a->threads, .max_sentence_length = a->maxlen,
        .input_sentence_size = a->sentsize, .character_coverage = a->coverage, .extra = a->spm,
        .verbose = cli->verbosity > 1, .progress = pg_cli_progress(cli), .caseops = a->caseops,
    };
    struct pg_train_tok_stats st;
    pg_cli_check(cli, pg_tokenize_train(&o, &st));
    pg_cli_info(cli, "wrote %s: vocab %d from %llu documents (%llu used, %llu bytes) in %.1fs", a->output, a->vocab,
                (unsigned long long)st.docs_read, (unsigned long long)st.docs_used,
                (unsigned long long)st.bytes_used, st.seconds);
    if (st.docs_too_long)
        pg_cli_info(cli, "note: %llu documents longer than --max-sentence-length %d were skipped by SentencePiece",
                    (unsigned long long)st.docs_too_long, a->maxlen);
    if (cli->json)
        print_json(json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:f}", "model", a->output, "vocab", a->vocab, "docs",
                             (json_int_t)st.docs_read, "docs_used", (json_int_t)st.docs_used, "docs_too_long",
                             (json_int_t)st.docs_too_long, "bytes_used",
                             (json_int_t)st.bytes_used, "model_bytes", (json_int_t)st.model_bytes, "seconds",
                             st.seconds));
    return 0;
}

static int cmd_encode(struct pg_cli *cli, struct args *a)
{
    if (!a->model) pg_cli_usage_error(cli, "encode: no tokenizer (-m MODEL)");
    if (!a->ninputs) pg_cli_usage_error(cli, "encode: no input (-i DOCS)");
    if (!a->output) pg_cli_usage_error(cli, "encode: no output folder (-o DIR)");
    struct pg_encode_opts o = {
        .model = a->model, .inputs = a->inputs, .ninputs = a->ninputs, .text_mode = a->text, .outdir = a->output,
        .prefix = a->prefix, .val_docs = (uint64_t)a->valdocs, .shard_tokens = (uint64_t)a->shardtok,
        .threads = a->threads, .force = a->force, .progress = pg_cli_progress(cli), .caseops = a->caseops,
    };
    struct pg_encode_stats st;
    pg_cli_check(cli, pg_tokenize_encode(&o, &st));
    double mb = (double)st.input_bytes / 1e6;
    pg_cli_info(cli, "val: %llu documents, %llu tokens, %zu shards; train: %llu documents, %llu tokens, %zu shards",
                (unsigned long long)st.docs[0], (unsigned long long)st.tokens[0], st.shards[0],
                (unsigned long long)st.docs[1], (unsigned long long)st.tokens[1], st.shards[1]);
    pg_cli_info(cli, "%.1f MB in %.2fs (%.2f MB/s, %d threads)", mb, st.seconds,
                st.seconds > 0 ? mb / st.seconds : 0.0, a->threads);
    for (int s = 0; s < 2; s++)
        if (!st.docs[s]) pg_cli_info(cli, "warning: the %s split is empty", s ? "train" : "val");
    if (a->caseops) {
        pg_cli_info(cli, "caseops: val byte sidecar sums to %llu bytes; the val documents hold %llu",
                    (unsigned long long)st.sidecar_bytes, (unsigned long long)st.val_bytes);
        if (st.inexact_docs)
            pg_cli_info(cli, "warning: the tokenizer does not reproduce %llu val documents byte for byte (it "
                        "normalizes text?): their sidecar counts its own output", (unsigned long long)st.inexact_docs);
    }
    if (cli->json) {
        json_t *j = json_pack("{s:s, s:s, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I}, s:I, s:f, s:i}", "dir", a->output,
                             "prefix", a->prefix, "val", "docs", (json_int_t)st.docs[0], "tokens",
                             (json_int_t)st.tokens[0], "shards", (json_int_t)st.shards[0], "train", "docs",
                             (json_int_t)st.docs[1], "tokens", (json_int_t)st.tokens[1], "shards",
                             (json_int_t)st.shards[1], "input_bytes", (json_int_t)st.input_bytes, "seconds",
                             st.seconds, "threads", a->threads);
        if (j && a->caseops)
            json_object_set_new(j, "caseops", json_pack("{s:I, s:I, s:I}", "val_bytes", (json_int_t)st.val_bytes,
                                                        "sidecar_bytes", (json_int_t)st.sidecar_bytes,
                                                        "inexact_docs", (json_int_t)st.inexact_docs));
        print_json(j);
    }
    return 0;
}

static int cmd_decode(struct pg_cli *cli, struct args *a)
{
    if (!a->model) pg_cli_usage_error(cli, "decode: no tokenizer (-m MODEL)");
    if (!a->ninputs) pg_cli_usage_error(cli, "decode: no shard given");
    pg_cli_check(cli, pg_tokenize_decode(a->model, a->inputs, a->ninputs, a->output ? a->output : "-"));
    return 0;
}

static int cmd_info(struct pg_cli *cli, struct args *a)
{
    if (!a->model) pg_cli_usage_error(cli, "info: no tokenizer (-m MODEL)");
    struct pg_tok *tok;
    pg_cli_check(cli, pg_tok_load(&tok, a->model));
    struct pg_tok_summary s;
    pg_tokenize_summary(tok, &s);
    struct pg_shard_info *info = calloc(a->ninputs ? a->ninputs : 1, sizeof *info);
    if (!info) pg_cli_die(cli, "out of memory");
    if (a->ninputs) pg_cli_check(cli, pg_tokenize_shard_info(tok, a->inputs, a->ninputs, info));
    pg_tok_free(tok);
    uint64_t tt = 0, td = 0, tb = 0;
    for (size_t i = 0; i < a->ninputs; i++) {
        tt += info[i].tokens;
        td += info[i].docs;
        tb += info[i].bytes;
    }
    if (cli->json) {
        json_t *shards = json_array();
        for (size_t i = 0; i < a->ninputs; i++)
            json_array_append_new(shards, json_pack("{s:s, s:I, s:I, s:I}", "path", info[i].path, "tokens",
                                                    (json_int_t)info[i].tokens, "docs", (json_int_t)info[i].docs,
                                                    "bytes", (json_int_t)info[i].bytes));
        json_t *j = json_pack("{s:s, s:i, s:{s:i, s:i, s:i, s:i, s:i}, s:{s:i, s:i, s:i, s:i}, s:i, s:i, s:b}", "model",
                              a->model, "vocab", s.vocab, "pieces", "normal", s.n_normal, "byte", s.n_byte,
                              "control", s.n_control, "unknown", s.n_unknown, "unused", s.n_unused, "ids", "pad",
                              s.pad_id, "bos", s.bos_id, "eos", s.eos_id, "unk", s.unk_id, "bare_space_id",
                              s.bare_space_id, "max_piece_bytes", s.max_piece_bytes, "word_cache", s.word_cache);
        if (a->ninputs) {
            json_object_set_new(j, "shards", shards);
            json_object_set_new(j, "total", json_pack("{s:I, s:I, s:I}", "tokens", (json_int_t)tt, "docs",
                                                      (json_int_t)td, "bytes", (json_int_t)tb));
        } else {
            json_decref(shards);
        }
        print_json(j);
    } else {
        printf("model      %s\n", a->model);
        printf("vocab      %d (normal %d, byte %d, control %d, unknown %d, unused %d)\n", s.vocab, s.n_normal,
               s.n_byte, s.n_control, s.n_unknown, s.n_unused);
        printf("ids        pad %d, bos %d, eos %d, unk %d\n", s.pad_id, s.bos_id, s.eos_id, s.unk_id);
        if (s.bare_space_id >= 0) printf("space      bare \"\xe2\x96\x81\" piece is id %d\n", s.bare_space_id);
        else printf("space      no bare \"\xe2\x96\x81\" piece: a lone space encodes as 3 byte tokens\n");
        printf("longest    %d bytes\n", s.max_piece_bytes);
        printf("encoder    %s\n", s.word_cache ? "SentencePiece with a word cache (exact for this model)"
                                               : "SentencePiece, whole documents (no word cache)");
        if (a->ninputs) {
            printf("%-40s %14s %10s %14s %8s\n", "shard", "tokens", "docs", "bytes", "B/token");
            for (size_t i = 0; i < a->ninputs; i++)
                printf("%-40s %14llu %10llu %14llu %8.4f\n", info[i].path, (unsigned long long)info[i].tokens,
                       (unsigned long long)info[i].docs, (unsigned long long)info[i].bytes,
                       info[i].tokens ? (double)info[i].bytes / (double)info[i].tokens : 0.0);
            if (a->ninputs > 1)
                printf("%-40s %14llu %10llu %14llu %8.4f\n", "total", (unsigned long long)tt, (unsigned long long)td,
                       (unsigned long long)tb, tt ? (double)tb / (double)tt : 0.0);
        }
    }
    free(info);
    return 0;
}

int main(int argc, char **argv)
{
    struct pg_cli cli;
    pg_cli_init(&cli, "pg-tokenize", usage, argv);
    if (argc < 2) pg_cli_usage_error(&cli, "no subcommand (train, encode, decode or info)");
    const char *sub = argv[1];
    if (sub[0] == '-') { /* pg-tokenize --help / --version */
        struct args a;
        parse(&cli, &a, argc, argv);
        pg_cli_usage_error(&cli, "no subcommand (train, encode, decode or info)");
    }
    /* getopt names argv[0] in its messages: make that the program, not the subcommand. */
    argv[1] = argv[0];
    struct args a;
    parse(&cli, &a, argc - 1, argv + 1);
    for (int i = optind + 1; i < argc; i++) add_input(&cli, &a, argv[i]);
    int rc;
    if (strcmp(sub, "train") == 0) rc = cmd_train(&cli, &a);
    else if (strcmp(sub, "encode") == 0) rc = cmd_encode(&cli, &a);
    else if (strcmp(sub, "decode") == 0) rc = cmd_decode(&cli, &a);
    else if (strcmp(sub, "info") == 0) rc = cmd_info(&cli, &a);
    else pg_cli_usage_error(&cli, "unknown subcommand '%s' (train, encode, decode or info)", sub);
    free(a.inputs);
    return rc;
}
