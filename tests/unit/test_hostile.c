/* test_hostile.c: headers that claim 2^60 elements (or bytes), one set per reader: each file is
 * refused as malformed (PG_E_FORMAT, or PG_E_INVAL for a config file) with a message naming it,
 * never PG_E_NOMEM: no reader may try to allocate what a header claims before it has checked the
 * claim against the file's size or a documented cap. Outside ASan the address space is limited to
 * 16 GiB as well, so an attempt would fail here as NOMEM; under ASan an attempt to allocate 2^60
 * bytes aborts the test. Readers: token shard, safetensors (checkpoint and training state), the
 * checkpoint's configuration, config file, JSONL documents, .pgq, .pga (stream sizes, the total of
 * them, the per-group cut list), the SentencePiece model. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/ckpt.h"
#include "../../lib/config.h"
#include "../../lib/docs.h"
#include "../../lib/err.h"
#include "../../lib/pack.h"
#include "../../lib/pga.h"
#include "../../lib/pgq.h"
#include "../../lib/safetensors.h"
#include "../../lib/shard.h"
#include "../../lib/tok.h"
#include "../../lib/xio.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <zlib.h>

#define BIG (1ull << 60)

static char dir[64];

static const char *file(const char *name, const void *data, size_t n)
{
    static char path[4][128];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) bail_out("cannot write %s", p);
    return p;
}

/* rc is `want` (not NOMEM) and the message names the file. */
static void refused(int rc, int want, const char *path, const char *what)
{
    const char *msg = pg_error_message();
    ok(rc == want && strstr(msg, path) != NULL, "%s: refused (%s)", what, rc ? msg : "accepted");
    if (rc != want) diag("rc %d (%s), want %d (%s)", rc, pg_strerror(rc), want, pg_strerror(want));
}

static uint32_t crc(const void *p, size_t n) { return (uint32_t)crc32_z(0, p, n); }

/* ---- token shard: the count is an int32, so the largest claim is 2^31 - 1 ---- */
static void shards(void)
{
    unsigned char buf[PG_SHARD_HEADER_BYTES + 2];
    pg_shard_make_header(buf, 0);
    pg_le32_put(buf + 8, 0x7fffffff);
    buf[1024] = buf[1025] = 0;
    struct pg_shard s;
    const char *p = file("h_train_000000.bin", buf, sizeof buf);
    refused(pg_shard_open(&s, p), PG_E_FORMAT, p, "shard claiming 2^31-1 tokens in 2 bytes");
    uint16_t *tok = NULL;
    uint64_t n;
    refused(pg_split_read(dir, "h", "train", &tok, &n), PG_E_FORMAT, p, "split read of that shard");
    free(tok);
    pg_le32_put(buf + 8, (uint32_t)BIG); /* 2^60's low 32 bits are 0, the high ones a reserved field */
    pg_le32_put(buf + 12, (uint32_t)(BIG >> 32));
    p = file("h2.bin", buf, sizeof buf);
    refused(pg_shard_open(&s, p), PG_E_FORMAT, p, "shard with 2^60 spread over count and reserved field");
}

/* ---- safetensors: checkpoints and the training state file ---- */
static const char *st_file(const char *name, const char *json, size_t data_bytes)
{
    size_t hn = strlen(json), n = 8 + hn + data_bytes;
    unsigned char *b = calloc(1, n);
    if (!b) bail_out("out of memory");
    pg_le64_put(b, hn);
    memcpy(b + 8, json, hn);
    const char *p = file(name, b, n);
    free(b);
    return p;
}

static void safetensors(void)
{
    struct pg_st_file f;
    unsigned char len8[8 + 4];
    pg_le64_put(len8, BIG);
    memcpy(len8 + 8, "{}  ", 4);
    const char *p = file("len.safetensors", len8, sizeof len8);
    refused(pg_st_open(&f, p), PG_E_FORMAT, p, "safetensors header length 2^60");
    p = st_file("shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1152921504606846976],\"data_offsets\":[0,4]}}", 4);
    refused(pg_st_open(&f, p), PG_E_FORMAT, p, "tensor of shape [2^60] over 4 bytes");
    p = st_file("shape2.safetensors",
                "{\"w\":{\"dtype\":\"F64\",\"shape\":[1152921504606846976,1152921504606846976],\"data_offsets\":[0,8]}}", 8);
    refused(pg_st_open(&f, p), PG_E_FORMAT, p, "tensor of shape [2^60, 2^60] (the size overflows)");
    p = st_file("off.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1152921504606846976],"
                                   "\"data_offsets\":[0,1152921504606846976]}}", 4);
    refused(pg_st_open(&f, p), PG_E_FORMAT, p, "data_offsets [0, 2^60] in a 4-byte data section");
    /* the training state is a safetensors file read by the same reader: an optimizer blob or an
     * EMA shadow that claims 2^60 elements */
    p = st_file("ckpt_000001.state.safetensors",
                "{\"__metadata__\":{\"pgolf_state\":\"1\",\"step\":\"1\"},"
                "\"muon\":{\"dtype\":\"U8\",\"shape\":[1152921504606846976],\"data_offsets\":[0,8]},"
                "\"ema\":{\"dtype\":\"F32\",\"shape\":[1152921504606846976],\"data_offsets\":[8,16]}}", 16);
    refused(pg_st_open(&f, p), PG_E_FORMAT, p, "training state with 2^60-element blobs");

    /* a checkpoint whose metadata configures a model of ~6e14 parameters, with one float of data:
     * refused before a reader builds that model */
    p = st_file("big.safetensors",
                "{\"__metadata__\":{\"pgolf\":\"1\",\"num_layers\":\"1024\",\"model_dim\":\"65536\",\"mlp_mult\":\"64\"},"
                "\"tok_emb.weight\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]}}      ", 4);
    struct pg_config cfg;
    refused(pg_ckpt_read_config(p, &cfg), PG_E_FORMAT, p, "checkpoint configuring 6e14 parameters in 4 bytes");
    ok(strstr(pg_error_message(), "parameters") != NULL, "the message says the parameters do not fit");
}

/* ---- config files ---- */
static void config_file(void)
{
    struct pg_config cfg;
    pg_config_default(&cfg);
    const char *text = "# hostile\nvocab = 1152921504606846976\n";
    const char *p = file("big.cfg", text, strlen(text));
    refused(pg_config_load_file(&cfg, p), PG_E_INVAL, p, "config file with vocab = 2^60");
    ok(strstr(pg_error_message(), ":2:") != NULL, "the message names line 2");
    text = "batch-tokens = 1152921504606846976\nseq-len = 1152921504606846976\n";
    p = file("big2.cfg", text, strlen(text));
    refused(pg_config_load_file(&cfg, p), PG_E_INVAL, p, "config file with batch-tokens = 2^60");
}

/* ---- JSONL documents: a number claiming 2^60 is just a number; deep nesting is an error ---- */
static void documents(void)
{
    const char *text = "{\"text\":\"a\",\"len\":1152921504606846976}\n";
    const char *p = file("docs.jsonl", text, strlen(text));
    char *in[1] = {(char *)p};
    struct pg_docs d;
    const char *t;
    size_t n;
    int rc = pg_docs_open(&d, in, 1, 0);
    if (!rc) rc = pg_docs_next(&d, &t, &n);
    ok(rc == 1 && n == 1 && t[0] == 'a', "a JSONL line with a 2^60 member is read as its text (rc %d)", rc);
    pg_docs_close(&d);
    size_t depth = 1 << 20;
    char *deep = malloc(depth + 2);
    if (!deep) bail_out("out of memory");
    memset(deep, '[', depth);
    deep[depth] = '\n';
    p = file("deep.jsonl", deep, depth + 1);
    free(deep);
    in[0] = (char *)p;
    rc = pg_docs_open(&d, in, 1, 0);
    if (!rc) rc = pg_docs_next(&d, &t, &n);
    refused(rc, PG_E_FORMAT, p, "a JSONL line nested 2^20 deep");
    pg_docs_close(&d);
}

/* ---- .pgq: a valid header and configuration whose model has ~6e14 parameters, no tensor ---- */
static unsigned char *pgq_bytes(const char *config, size_t *len)
{
    size_t cs = strlen(config), n = 128 + cs + 4;
    unsigned char *b = calloc(1, n);
    if (!b) bail_out("out of memory");
    memcpy(b, PG_PGQ_MAGIC, 8);
    pg_le32_put(b + 8, 1);
    pg_le64_put(b + 16, n);
    pg_le64_put(b + 24, 128);
    pg_le64_put(b + 32, cs);
    pg_le64_put(b + 40, 128 + cs);
    pg_le64_put(b + 56, 128 + cs);
    pg_le32_put(b + 76, 1); /* int8-baseline */
    memcpy(b + 128, config, cs);
    pg_le32_put(b + n - 4, crc(b, n - 4));
    *len = n;
    return b;
}

static void pgq(void)
{
    size_t n;
    unsigned char *b = pgq_bytes("num_layers=1024\nmodel_dim=65536\nmlp_mult=64\n", &n);
    const char *p = file("big.pgq", b, n);
    struct pg_qmodel qm;
    refused(pg_pgq_read(p, &qm), PG_E_FORMAT, p, ".pgq configuring 6e14 parameters in 0 bytes of data");
    ok(strstr(pg_error_message(), "parameters") != NULL, "the message says the parameters do not fit");
    pg_le64_put(b + 16, BIG);
    p = file("size.pgq", b, n);
    refused(pg_pgq_read(p, &qm), PG_E_FORMAT, p, ".pgq whose header says 2^60 bytes");
    pg_le64_put(b + 16, n);
    pg_le64_put(b + 32, BIG);
    pg_le32_put(b + n - 4, crc(b, n - 4));
    p = file("csize.pgq", b, n);
    refused(pg_pgq_read(p, &qm), PG_E_FORMAT, p, ".pgq with a 2^60-byte configuration section");
    pg_le64_put(b + 32, n - 132);
    pg_le32_put(b + 72, 0xffffffffu);
    pg_le64_put(b + 48, 0xffffffffull * 128);
    pg_le32_put(b + n - 4, crc(b, n - 4));
    p = file("nt.pgq", b, n);
    refused(pg_pgq_read(p, &qm), PG_E_FORMAT, p, ".pgq with 2^32-1 tensors");
    free(b);
}

/* ---- .pga: stream raw sizes and the cut list ---- */
static void pga_fix_crcs(unsigned char *b, size_t nstreams)
{
    pg_le32_put(b + 28, crc(b + 64, 96 * nstreams));
    pg_le32_put(b + 60, crc(b, 60));
}

static void pga(void)
{
    static unsigned char data[3][64];
    memset(data[1], 7, sizeof data[1]);
    memcpy(data[0], "PGCT", 4);
    struct pg_pga_input in[3] = {
        {.name = "cuts", .data = data[0], .size = 36, .codec = PG_CODEC_RAW},
        {.name = "rest", .data = data[1], .size = 16, .codec = PG_CODEC_ZLIB},
        {.name = "g", .data = data[2], .size = 64, .codec = PG_CODEC_ZLIB},
    };
    /* the cut list: one cut of 2^60 bytes out of stream 2 */
    pg_le32_put(data[0] + 4, 1);
    pg_le64_put(data[0] + 8, 0);
    pg_le64_put(data[0] + 16, BIG);
    pg_le32_put(data[0] + 24, 2);
    pg_le64_put(data[0] + 28, 0);
    unsigned char *b;
    size_t n;
    if (pg_pga_build(in, 3, &b, &n)) bail_out("pg_pga_build: %s", pg_error_message());
    struct pg_pga a;
    const char *p = file("cut.pga", b, n);
    int rc = pg_pga_open(&a, p);
    ok(rc == 0, "an artifact whose cut list claims 2^60 bytes opens (the list is data)");
    unsigned char *out = NULL;
    size_t outn;
    if (!rc) {
        refused(pg_unpack_pgq(&a, &out, &outn), PG_E_FORMAT, p, "cut of 2^60 bytes");
        free(out);
        pg_pga_close(&a);
    }
    /* a cut list claiming 2^32-1 cuts in 36 bytes */
    pg_le32_put(data[0] + 4, 0xffffffffu);
    free(b);
    if (pg_pga_build(in, 3, &b, &n)) bail_out("pg_pga_build: %s", pg_error_message());
    p = file("cuts.pga", b, n);
    if (pg_pga_open(&a, p)) bail_out("%s", pg_error_message());
    out = NULL;
    refused(pg_unpack_pgq(&a, &out, &outn), PG_E_FORMAT, p, "cut list of 2^32-1 cuts");
    free(out);
    pg_pga_close(&a);

    /* stream 2 says 2^60 raw bytes */
    unsigned char *e2 = b + 64 + 2 * 96;
    pg_le64_put(e2 + 56, BIG);
    pga_fix_crcs(b, 3);
    p = file("raw.pga", b, n);
    refused(pg_pga_open(&a, p), PG_E_FORMAT, p, "stream of 2^60 raw bytes");
    /* streams 1 and 2 say 2^29 + 1 raw bytes each: each under the 1 GiB cap, together over */
    pg_le64_put(e2 + 56, (1ull << 29) + 1);
    pg_le64_put(b + 64 + 96 + 56, (1ull << 29) + 1);
    pga_fix_crcs(b, 3);
    p = file("total.pga", b, n);
    refused(pg_pga_open(&a, p), PG_E_FORMAT, p, "streams of 2 x (2^29 + 1) raw bytes");
    ok(strstr(pg_error_message(), "add up") != NULL, "the message names the total");
    free(b);
}

/* ---- SentencePiece model: a protobuf field whose length says 2^60 ---- */
static void spm(void)
{
    unsigned char pb[16] = {0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 'x'};
    const char *p = file("big.model", pb, 11);
    struct pg_tok *t = NULL;
    int rc = pg_tok_load(&t, p);
    ok(rc < 0 && rc != PG_E_NOMEM && strstr(pg_error_message(), p), "SentencePiece model with a 2^60-byte field "
       "refused (%s)", rc ? pg_error_message() : "accepted");
    if (!rc) pg_tok_free(t);
}

int main(void)
{
#ifndef __SANITIZE_ADDRESS__
    struct rlimit rl = {16ull << 30, 16ull << 30};
    if (setrlimit(RLIMIT_AS, &rl)) diag("setrlimit failed: the address space is not limited");
#endif
    snprintf(dir, sizeof dir, "/tmp/pg-hostile-XXXXXX");
    if (!mkdtemp(dir)) bail_out("mkdtemp failed");
    shards();
    safetensors();
    config_file();
    documents();
    pgq();
    pga();
    spm();
    remove_tree(dir);
    return done_testing();
}
