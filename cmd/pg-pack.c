/* pg-pack: a quantized model (.pgq) into a compressed artifact (.pga), its size against the
 * challenge's 16,000,000-byte budget, and back (-d), or a listing (-l). The work is in lib/pack.c
 * (the modes), lib/pga.c (the container) and lib/codec.c (the codecs). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "../lib/err.h"
#include "../lib/mapfile.h"
#include "../lib/opt.h"
#include "../lib/outfile.h"
#include "../lib/pack_code.h"
#include "../lib/pack.h"
#include "../lib/pgq.h"
#include "../lib/xio.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "Usage: pg-pack MODEL.pgq -o ARTIFACT.pga [--zlib|--lzma|--brotli|--lrzip|--pgac|--best] [--shuffle]\n"
    "               [--reorder none|hot|all] [--code FILE]... [--code-self DIR [--code-out FILE]]\n"
    "               [--budget BYTES]\n"
    "       pg-pack -d ARTIFACT.pga -o MODEL.pgq\n"
    "       pg-pack -l ARTIFACT.pga\n"
    "\n"
    "Compress a quantized model into an artifact and check its size against the budget: artifact\n"
    "bytes plus the bytes of every --code file must not exceed BYTES (default 16000000).\n"
    "\n"
    "Codecs (one, or --lrzip --brotli together):\n"
    "      --zlib                 zlib level 9, the baseline's compressor (the default)\n"
    "      --lzma                 xz, preset 9 extreme\n"
    "      --brotli               brotli quality 11, window 2^24\n"
    "      --lrzip                the lrzip program, ZPAQ level 9 (Debian package lrzip)\n"
    "      --lrzip --brotli       the records' per-group mode: integer tensors grouped by role,\n"
    "                             transposed, lrzip; everything else brotli\n"
    "      --pgac                 per-group with pgolf's own context-model arithmetic coder for\n"
    "                             the integer groups; everything else brotli (--pgac --lzma: xz)\n"
    "      --codec NAME           the same by name: zlib, lzma, brotli, lrzip, pgac\n"
    "      --best                 per-group, each group with whichever of pgac, lrzip (if\n"
    "                             installed), brotli and lzma is smallest, rows reordered or\n"
    "                             not; the rest brotli\n"
    "      --shuffle              with one codec: byte planes of stride 2 first (the records'\n"
    "                             byte-shuffle + brotli with --brotli)\n"
    "      --reorder WHICH        per-group: sort the rows of none, the hot groups (tok_emb,\n"
    "                             attn.c_q, mlp.fc: the --lrzip --brotli default) or all of\n"
    "                             them by nearest neighbour (--best: tried both ways)\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE          the artifact (or, with -d, the .pgq) to write\n"
    "  -d, --decompress           rebuild the .pgq held by an artifact\n"
    "  -l, --list                 list an artifact's streams, codecs, sizes and ratios\n"
    "      --code FILE            count FILE's bytes as code (repeatable)\n"
    "      --code-self DIR        count as code the xz-compressed source (in the pgolf tree DIR)\n"
    "                             that builds pg-eval and pg-ttt (comments and blanks stripped)\n"
    "      --code-out FILE        write that xz archive of the source (what --code-self counts)\n"
    "      --budget BYTES         the size limit (default 16000000; k, M suffixes: 16M)\n"
    "      --json                 print the result as JSON on standard output\n"
    "  -q, --quiet                print only errors\n"
    "  -v, --verbose              list the streams after packing\n"
    "  -V, --version              print the version and exit\n"
    "  -h, --help                 print this help and exit\n"
    "      --progress             accepted, as by every command (pg-pack draws no progress line)\n"
    "      --no-progress          accepted, likewise\n"
    "\n"
    "Exit status: 0 success (and within the budget), 1 runtime error or over the budget,\n"
    "2 usage error, 3 unavailable (lrzip not installed).\n"
    "See pg-pack(1), pg-formats(5).\n";

enum {
    OPT_ZLIB = PG_OPT_FIRST_CMD, OPT_LZMA, OPT_BROTLI, OPT_LRZIP, OPT_PGAC, OPT_BEST, OPT_CODEC, OPT_CODE, OPT_CODE_SELF,
    OPT_CODE_OUT, OPT_BUDGET, OPT_SHUFFLE, OPT_REORDER
};

static const struct option longopts[] = {
    {"output", required_argument, 0, 'o'},
    {"decompress", no_argument, 0, 'd'},
    {"list", no_argument, 0, 'l'},
    {"zlib", no_argument, 0, OPT_ZLIB},
    {"lzma", no_argument, 0, OPT_LZMA},
    {"brotli", no_argument, 0, OPT_BROTLI},
    {"lrzip", no_argument, 0, OPT_LRZIP},
    {"pgac", no_argument, 0, OPT_PGAC},
    {"best", no_argument, 0, OPT_BEST},
    {"shuffle", no_argument, 0, OPT_SHUFFLE},
    {"reorder", required_argument, 0, OPT_REORDER},
    {"codec", required_argument, 0, OPT_CODEC},
    {"code", required_argument, 0, OPT_CODE},
    {"code-self", required_argument, 0, OPT_CODE_SELF},
    {"code-out", required_argument, 0, OPT_CODE_OUT},
    {"budget", required_argument, 0, OPT_BUDGET},
    PG_CLI_COMMON_LONGOPTS,
    {0, 0, 0, 0},
};

/* Picks the mode from the codec flags given (a bit per codec), then applies --shuffle and
 * --reorder (reorder: -1 when not given). */
static void choose_mode(const struct pg_cli *cli, unsigned flags, int shuffle, int reorder, struct pg_pack_opts *o)
{
    static const char *const single[4] = {"zlib", "lzma", "brotli", "lrzip"};
    const char *name = "zlib";
    if (flags & (1u << 5)) {
        if (flags != (1u << 5)) pg_cli_usage_error(cli, "--best chooses the codecs itself: drop the codec options");
        name = "best";
    } else if (flags & (1u << 4)) {
        if (flags & ~((1u << 4) | (1u << 2) | (1u << 1)))
            pg_cli_usage_error(cli, "--pgac goes with --brotli or --lzma (the rest's codec) only");
        if ((flags & (1u << 1)) && (flags & (1u << 2))) pg_cli_usage_error(cli, "--pgac takes --brotli or --lzma, not both");
        name = flags & (1u << 1) ? "pgac+lzma" : "pgac";
    } else if (flags == ((1u << 2) | (1u << 3))) {
        name = "lrzip+brotli";
    } else {
        int n = 0;
        for (int i = 0; i < 4; i++)
            if (flags & (1u << i)) name = single[i], n++;
        if (n > 1) pg_cli_usage_error(cli, "choose one codec, or --lrzip --brotli for the per-group mode");
    }
    if (pg_pack_opts_from_name(name, o)) pg_cli_usage_error(cli, "unknown mode '%s'", name);
    if (shuffle) {
        if (o->mode != PG_PACK_WHOLE) pg_cli_usage_error(cli, "--shuffle goes with one codec (the whole .pgq), not %s",
                                                         pg_pack_mode_name(o));
        o->shuffle = 2;
    }
    if (reorder >= 0) {
        if (o->mode == PG_PACK_WHOLE) pg_cli_usage_error(cli, "--reorder is for the per-group modes (--lrzip --brotli, --pgac, --best)");
        o->reorder = reorder;
    }
}

static int list(const struct pg_cli *cli, const char *path)
{
    struct pg_pga a;
    memset(&a, 0, sizeof a);
    pg_cli_check(cli, pg_pga_open(&a, path));
    if (cli->json) {
        json_t *streams = json_array();
        for (size_t i = 0; i < a.n; i++)
            json_array_append_new(streams, json_pack("{s:s, s:s, s:s, s:I, s:I}", "name", a.streams[i].name, "codec",
                                                     pg_codec_name(a.streams[i].codec), "transform",
                                                     pg_xform_name(a.streams[i].xform.id), "raw_bytes",
                                                     (json_int_t)a.streams[i].raw_size, "packed_bytes",
                                                     (json_int_t)a.streams[i].packed_size));
        json_t *j = json_pack("{s:s, s:I, s:o}", "artifact", path, "bytes", (json_int_t)a.size, "streams", streams);
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(j);
    } else {
        pg_pga_list(&a, stdout);
    }
    pg_cli_check(cli, pg_pga_verify(&a));
    pg_pga_close(&a);
    return 0;
}

static int decompress(const struct pg_cli *cli, const char *path, const char *out)
{
    struct pg_pga a;
    memset(&a, 0, sizeof a);
    pg_cli_check(cli, pg_pga_open(&a, path));
    unsigned char *pgq;
    size_t n;
    pg_cli_check(cli, pg_unpack_pgq(&a, &pgq, &n));
    struct pg_qmodel qm;
    memset(&qm, 0, sizeof qm);
    pg_cli_check(cli, pg_pgq_parse(pgq, n, path, &qm)); /* the rebuilt file's own checksum */
    pg_qmodel_free(&qm);
    pg_cli_check(cli, pg_pga_write(out, pgq, n));
    pg_cli_info(cli, "%s: %zu bytes of .pgq from %zu bytes of artifact", out, n, a.size);
    free(pgq);
    pg_pga_close(&a);
    return 0;
}

int main(int argc, char **argv)
{
    struct pg_cli cli;
    pg_cli_init(&cli, "pg-pack", usage, argv);
    const char *out = NULL;
    const char **code = NULL;
    int ncode = 0, dflag = 0, lflag = 0, c;
    const char *code_self = NULL, *code_out = NULL;
    unsigned codec_flags = 0;
    int shuffle = 0, reorder = -1;
    int64_t budget = 16000000;
    code = calloc((size_t)argc + 1, sizeof *code);
    if (!code) pg_cli_die(&cli, "out of memory");
    while ((c = getopt_long(argc, argv, "o:dl" PG_CLI_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (pg_cli_common(&cli, c)) continue;
        switch (c) {
        case 'o': out = optarg; break;
        case 'd': dflag = 1; break;
        case 'l': lflag = 1; break;
        case OPT_ZLIB: codec_flags |= 1u << 0; break;
        case OPT_LZMA: codec_flags |= 1u << 1; break;
        case OPT_BROTLI: codec_flags |= 1u << 2; break;
        case OPT_LRZIP: codec_flags |= 1u << 3; break;
        case OPT_PGAC: codec_flags |= 1u << 4; break;
        case OPT_BEST: codec_flags |= 1u << 5; break;
        case OPT_CODEC: {
            enum pg_codec cc;
            if (pg_codec_from_name(optarg, &cc) || cc == PG_CODEC_RAW) pg_cli_usage_error(&cli, "--codec: unknown codec '%s' (zlib, lzma, brotli, lrzip or pgac)", optarg);
            static const unsigned bit[PG_CODEC_COUNT] = {0, 1u << 0, 1u << 1, 1u << 2, 1u << 3, 1u << 4};
            codec_flags |= bit[cc];
            break;
        }
        case OPT_SHUFFLE: shuffle = 1; break;
        case OPT_REORDER:
            if (!strcmp(optarg, "none")) reorder = PG_REORDER_NONE;
            else if (!strcmp(optarg, "hot")) reorder = PG_REORDER_HOT;
            else if (!strcmp(optarg, "all")) reorder = PG_REORDER_ALL;
            else pg_cli_usage_error(&cli, "--reorder: none, hot or all, not '%s'", optarg);
            break;
        case OPT_CODE: code[ncode++] = optarg; break;
        case OPT_CODE_SELF: code_self = optarg; break;
        case OPT_CODE_OUT: code_out = optarg; break;
        case OPT_BUDGET:
            if (pg_parse_i64("--budget", optarg, 1, INT64_MAX / 2, &budget)) pg_cli_usage_error(&cli, "%s", pg_error_message());
            break;
        default: pg_cli_usage_error(&cli, "unexpected option");
        }
    }
    if (optind + 1 != argc) pg_cli_usage_error(&cli, optind == argc ? "no input file" : "more than one input file");
    const char *in = argv[optind];
    if (dflag + lflag > 1) pg_cli_usage_error(&cli, "-d and -l exclude each other");
    if ((dflag || lflag) && (codec_flags || ncode || code_self || code_out || shuffle || reorder >= 0))
        pg_cli_usage_error(&cli, "codec and --code options are for packing");
    if (code_out && !code_self)
        pg_cli_usage_error(&cli, "--code-out writes what --code-self counts: give --code-self DIR");
    if (code_out && !strcmp(code_out, "-"))
        pg_cli_usage_error(&cli, "--code-out needs a file (standard output has the report)");
    if (lflag) {
        if (out) pg_cli_usage_error(&cli, "-l writes no file (drop -o)");
        list(&cli, in);
        free(code);
        return 0;
    }
    if (!out) pg_cli_usage_error(&cli, "no output file (-o FILE)");
    if (dflag) {
        decompress(&cli, in, out);
        free(code);
        return 0;
    }

    struct pg_pack_opts o;
    choose_mode(&cli, codec_flags, shuffle, reorder, &o);
    struct pg_pgac_stats gst;
    int with_pgac = (o.mode == PG_PACK_PER_GROUP && o.group_codec == PG_CODEC_PGAC) || o.mode == PG_PACK_BEST;
    uint64_t code_bytes = 0;
    for (int i = 0; i < ncode; i++) {
        struct stat st;
        if (stat(code[i], &st) != 0 || !S_ISREG(st.st_mode)) pg_cli_die(&cli, "%s: cannot read code file", code[i]);
        code_bytes += (uint64_t)st.st_size;
    }
    struct pg_code_self cs;
    memset(&cs, 0, sizeof cs);
    if (code_self) {
        pg_cli_check(&cli, pg_code_self_measure(code_self, &cs, code_out));
        code_bytes += cs.packed_bytes;
        pg_cli_info(&cli, "%s: %zu source files, %llu bytes, %llu stripped, %llu bytes in xz: counted as code",
                    code_self, cs.files, (unsigned long long)cs.raw_bytes, (unsigned long long)cs.archive_bytes,
                    (unsigned long long)cs.packed_bytes);
    }
    struct pg_map m;
    pg_cli_check(&cli, pg_map_open(&m, in));
    unsigned char *art;
    size_t art_n;
    pg_cli_check(&cli, pg_pack_pgq_stats(m.data, m.size, in, &o, &art, &art_n, &gst));
    pg_cli_check(&cli, pg_pga_write(out, art, art_n));
    uint64_t total = art_n + code_bytes;
    int fits = total <= (uint64_t)budget;
    if (cli.json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:b}", "model", in, "artifact", out, "mode",
                              pg_pack_mode_name(&o), "pgq_bytes", (json_int_t)m.size, "artifact_bytes", (json_int_t)art_n,
                              "code_bytes", (json_int_t)code_bytes, "total_bytes", (json_int_t)total, "budget",
                              (json_int_t)budget, "fits", fits);
        if (with_pgac)
            json_object_set_new(j, "pgac", json_pack("{s:I, s:I, s:f, s:f}", "values", (json_int_t)gst.values,
                                                     "payload_bytes", (json_int_t)gst.payload_bytes, "model_bytes",
                                                     gst.model_bits / 8, "order0_bytes", gst.order0_bits / 8));
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(j);
    } else {
        printf("%s: %zu bytes (%s, %.4f of the .pgq's %zu) + code %llu = %llu bytes; budget %lld: %s %lld\n", out,
               art_n, pg_pack_mode_name(&o), m.size ? (double)art_n / (double)m.size : 0.0, m.size,
               (unsigned long long)code_bytes, (unsigned long long)total, (long long)budget,
               fits ? "fits, spare" : "OVER by", fits ? (long long)(budget - (int64_t)total) : (long long)(total - budget));
    }
    if (cli.verbosity > 1 && with_pgac)
        fprintf(stderr, "pgac: %llu values in %llu bytes of payload; the model's own estimate %.0f bytes, their order-0 "
                "entropy %.0f bytes\n", (unsigned long long)gst.values, (unsigned long long)gst.payload_bytes,
                gst.model_bits / 8, gst.order0_bits / 8);
    if (cli.verbosity > 1) {
        struct pg_pga a;
        memset(&a, 0, sizeof a);
        pg_cli_check(&cli, pg_pga_parse(&a, art, art_n, out));
        pg_pga_list(&a, stderr);
        pg_pga_close(&a);
    }
    free(art);
    pg_map_close(&m);
    free(code);
    if (!fits) {
        fprintf(stderr, "pg-pack: error: %s: %llu bytes is over the budget of %lld by %llu bytes\n", out,
                (unsigned long long)total, (long long)budget, (unsigned long long)(total - (uint64_t)budget));
        return 1;
    }
    return 0;
}
