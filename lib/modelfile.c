/* modelfile.c: one entry point for every file that holds a model (see modelfile.h). */
#define _POSIX_C_SOURCE 200809L
#include "modelfile.h"

#include "ckpt.h"
#include "err.h"
#include "pack.h"
#include "pga.h"
#include "pgq.h"
#include "xio.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pg_modelfile_sniff(const char *path, int *format)
{
    /* a model file is opened more than once (configuration, then parameters): not a pipe */
    if (strcmp(path, "-") == 0) return pg_error(PG_E_IO, "-: a model cannot be read from standard input");
    int fd;
    PG_TRY(pg_open_read(path, &fd));
    unsigned char magic[8];
    size_t got = 0;
    int rc = pg_read_upto(fd, magic, sizeof magic, &got, path);
    close(fd);
    if (rc) return rc;
    if (pg_pgq_sniff(magic, got)) *format = PG_MODELFILE_PGQ;
    else if (got >= 4 && memcmp(magic, PG_PGA_MAGIC, 4) == 0) *format = PG_MODELFILE_PGA;
    else *format = PG_MODELFILE_SAFETENSORS;
    return 0;
}

/* The .pgq bytes inside the artifact at path. A command reads a model file up to three times
 * (configuration, tokenizer check, parameters) and an lrzip artifact takes seconds to decode, so
 * the last one decoded is kept, keyed by path, size and modification time. */
static struct {
    char *path;
    off_t size;
    struct timespec mtime;
    unsigned char *pgq;
    size_t n;
} pga_cache;

static int pga_to_pgq(const char *path, const unsigned char **pgq, size_t *n)
{
    struct stat st;
    if (stat(path, &st) != 0) return pg_error_errno(PG_E_IO, "%s", path);
    if (pga_cache.path && strcmp(pga_cache.path, path) == 0 && pga_cache.size == st.st_size &&
        pga_cache.mtime.tv_sec == st.st_mtim.tv_sec && pga_cache.mtime.tv_nsec == st.st_mtim.tv_nsec) {
        *pgq = pga_cache.pgq, *n = pga_cache.n;
        return 0;
    }
    struct pg_pga a;
    memset(&a, 0, sizeof a);
    PG_TRY(pg_pga_open(&a, path));
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = pg_unpack_pgq(&a, &buf, &len);
    pg_pga_close(&a);
    if (rc) return rc;
    char *p = pg_strdup(path);
    if (!p) {
        free(buf);
        return PG_E_NOMEM;
    }
    free(pga_cache.path), free(pga_cache.pgq);
    pga_cache.path = p, pga_cache.size = st.st_size, pga_cache.mtime = st.st_mtim;
    pga_cache.pgq = buf, pga_cache.n = len;
    *pgq = buf, *n = len;
    return 0;
}

/* Reads the quantized model of a .pgq or a .pga file (the .pga's tensors point into the cache). */
static int read_qmodel(const char *path, int format, struct pg_qmodel *qm)
{
    memset(qm, 0, sizeof *qm);
    if (format == PG_MODELFILE_PGQ) return pg_pgq_read(path, qm);
    const unsigned char *pgq = NULL;
    size_t n = 0;
    PG_TRY(pga_to_pgq(path, &pgq, &n));
    return pg_pgq_parse(pgq, n, path, qm);
}

const char *pg_modelfile_format_name(int format)
{
    switch (format) {
    case PG_MODELFILE_SAFETENSORS: return "safetensors";
    case PG_MODELFILE_PGQ: return "pgq";
    case PG_MODELFILE_PGA: return "pga";
    default: return "?";
    }
}

static int unsupported(const char *path, int format)
{
    return pg_error(PG_E_UNSUPPORTED, "%s: %s files are not readable by this build", path,
                    pg_modelfile_format_name(format));
}

int pg_modelfile_read_config(const char *path, struct pg_config *cfg)
{
    int format = 0;
    PG_TRY(pg_modelfile_sniff(path, &format));
    switch (format) {
    case PG_MODELFILE_SAFETENSORS: return pg_ckpt_read_config(path, cfg);
    case PG_MODELFILE_PGQ:
    case PG_MODELFILE_PGA: {
        struct pg_qmodel qm;
        PG_TRY(read_qmodel(path, format, &qm));
        *cfg = qm.cfg;
        pg_qmodel_free(&qm);
        return 0;
    }
    default: return unsupported(path, format);
    }
}

static int load_host(struct pg_model *m, const char *path)
{
    int format = 0;
    PG_TRY(pg_modelfile_sniff(path, &format));
    switch (format) {
    case PG_MODELFILE_SAFETENSORS: return pg_ckpt_load(m, path);
    case PG_MODELFILE_PGQ:
    case PG_MODELFILE_PGA: {
        struct pg_qmodel qm;
        PG_TRY(read_qmodel(path, format, &qm));
        int rc = pg_qmodel_dequantize(&qm, m, path);
        pg_qmodel_free(&qm);
        return rc;
    }
    default: return unsupported(path, format);
    }
}

int pg_modelfile_load(struct pg_model *m, const char *path)
{
    if (m->be->host_memory) return load_host(m, path);
    /* A device model: read into a host twin (parameters only), then upload. */
    struct pg_model h;
    PG_TRY(pg_model_init(&h, &m->cfg, &pg_backend_cpu, 0));
    int rc = load_host(&h, path);
    if (!rc && h.nparams != m->nparams)
        rc = pg_error(PG_E_INVAL, "%s: %zu parameters on the host, %zu on the device", path, h.nparams, m->nparams);
    if (!rc) m->be->upload(m->params, h.params, h.nparams * sizeof *h.params);
    pg_model_free(&h);
    /* The device's status: a failed copy (or an earlier failure of the device) is this load's. */
    if (!rc && m->be->status) rc = m->be->status();
    return rc;
}

int pg_modelfile_check_tokenizer(const char *path, const char *tok_path)
{
    int format = 0;
    PG_TRY(pg_modelfile_sniff(path, &format));
    switch (format) {
    case PG_MODELFILE_SAFETENSORS: return 0; /* checkpoints record no tokenizer */
    case PG_MODELFILE_PGQ:
    case PG_MODELFILE_PGA: {
        struct pg_qmodel qm;
        PG_TRY(read_qmodel(path, format, &qm));
        int rc = pg_pgq_check_tokenizer(&qm, path, tok_path);
        pg_qmodel_free(&qm);
        return rc;
    }
    default: return unsupported(path, format);
    }
}
