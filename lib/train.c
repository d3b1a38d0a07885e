/* train.c: the training loop (see train.h). */
#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include "bpb.h"
#include "ckpt.h"
#include "dist.h"
#include "err.h"
#include "eval.h"
#include "loader.h"
#include "model.h"
#include "opt.h"
#include "optim.h"
#include "runlock.h"
#include "outfile.h"
#include "progress.h"
#include "quant.h"
#include "safetensors.h"
#include "tok.h"
#include "trit.h"
#include "xio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Optimizer groups, spec §4.1. */
struct groups {
    struct pg_adam embed, head, scalar;
    struct pg_muon muon;
    int has_head;
    struct pg_opt_tensor *all; /* every tensor, for clipping */
    size_t nall;
};

static int groups_init(struct groups *g, struct pg_model *m, const struct pg_config *c, int bf16)
{
    const struct pg_backend *be = m->be;
    memset(g, 0, sizeof *g);
    struct pg_opt_tensor *lists[4]; /* embed, head, matrix, control */
    size_t counts[4] = {0};
    g->all = pg_calloc((size_t)m->ntensors, sizeof *g->all);
    for (int k = 0; k < 4; k++) lists[k] = pg_calloc((size_t)m->ntensors, sizeof *lists[k]);
    int rc = g->all && lists[0] && lists[1] && lists[2] && lists[3] ? 0 : PG_E_NOMEM;
    for (int i = 0; i < m->ntensors && !rc; i++) {
        struct pg_tensor *t = &m->tensors[i];
        struct pg_opt_tensor ot = {m->params + t->offset, m->grads + t->offset, (int)t->shape[0],
                                   t->ndim == 2 ? (int)t->shape[1] : 0, t->numel};
        int k = t->kind == PG_TENSOR_EMBED ? 0 : t->kind == PG_TENSOR_HEAD ? 1 : t->kind == PG_TENSOR_MATRIX ? 2 : 3;
        lists[k][counts[k]++] = ot;
        g->all[g->nall++] = ot;
    }
    if (!rc) rc = pg_adam_init_on(&g->embed, be, lists[0], counts[0], c->beta1, c->beta2, c->adam_eps);
    if (!rc && counts[1]) {
        g->has_head = 1;
        rc = pg_adam_init_on(&g->head, be, lists[1], counts[1], c->beta1, c->beta2, c->adam_eps);
    }
    if (!rc) rc = pg_muon_init_on(&g->muon, be, lists[2], counts[2], c->muon_backend_steps, 1, bf16);
    if (!rc) rc = pg_adam_init_on(&g->scalar, be, lists[3], counts[3], c->beta1, c->beta2, c->adam_eps);
    /* Record-stack switches (spec/techniques.md §3.1-3.2); their defaults leave the baseline's
     * optimizers as they are. The untied head keeps plain Adam: the records tie it. */
    if (!rc) rc = pg_muon_set_variant(&g->muon, c->muon_polar_express ? PG_NS_POLAR_EXPRESS : PG_NS_CLASSIC,
                                      c->muon_row_norm, c->muon_wd);
    if (!rc) rc = pg_adam_set_weight_decay(&g->embed, c->embed_wd);
    if (!rc) rc = pg_adam_set_weight_decay(&g->scalar, c->scalar_wd);
    for (int k = 0; k < 4; k++) free(lists[k]);
    return rc;
}

static void groups_free(struct groups *g)
{
    pg_adam_free(&g->embed);
    pg_adam_free(&g->head);
    pg_adam_free(&g->scalar);
    pg_muon_free(&g->muon);
    free(g->all);
}

/* ---- weight averaging and late QAT (spec/techniques.md §3.3, §4.2) ---- */

/* Buffers of the record stack's schedule, in the model's backend memory; each NULL while its
 * switch is off. */
struct avg {
    const struct pg_backend *be;
    float *ema;         /* the EMA shadow, nparams fp32 */
    double *swa_sum;    /* SWA: the sum of the snapshots, nparams */
    int64_t swa_count;  /* snapshots in swa_sum */
    pg_real *master;    /* QAT: the master values of the Muon matrices while fake-quantized */
    size_t nmaster;
    pg_real *raw;       /* the raw weights while the final (averaged) weights are in the model */
};

_Static_assert(sizeof(float) == sizeof(pg_real), "the EMA shadow is kept as the parameters' own type");

enum { FINAL_RAW, FINAL_EMA, FINAL_SWA };

static int avg_init(struct avg *a, const struct pg_model *m, const struct pg_config *c)
{
    memset(a, 0, sizeof *a);
    a->be = m->be;
    for (int i = 0; i < m->ntensors; i++)
        if (m->tensors[i].kind == PG_TENSOR_MATRIX) a->nmaster += m->tensors[i].numel;
    size_t n = m->nparams;
    int ok = 1;
    if (c->ema_decay > 0) ok = ok && (a->ema = a->be->alloc(n * sizeof *a->ema));
    if (c->swa_every > 0) ok = ok && (a->swa_sum = a->be->alloc(n * sizeof *a->swa_sum));
    if (c->qat_start_lr > 0) ok = ok && (a->master = a->be->alloc((a->nmaster ? a->nmaster : 1) * sizeof *a->master));
    if (a->ema || a->swa_sum) ok = ok && (a->raw = a->be->alloc(n * sizeof *a->raw));
    return ok ? 0 : pg_error(PG_E_NOMEM, "no memory for the weight averages of %zu parameters", n);
}

static void avg_free(struct avg *a)
{
    void *p[] = {a->ema, a->swa_sum, a->master, a->raw};
    for (int i = 0; i < 4; i++)
        if (p[i]) a->be->free(p[i]);
    memset(a, 0, sizeof *a);
}

static void ema_reset(struct avg *a, const struct pg_model *m) { a->be->copy((pg_real *)a->ema, m->params, m->nparams); }

static void ema_update(struct avg *a, const struct pg_model *m, double decay)
{
    if (pg_on_device(a->be)) a->be->ema_update(a->ema, m->params, m->nparams, decay);
    else pg_ema_update(a->ema, m->params, m->nparams, decay);
}

/* SWA takes the EMA when there is one, else the raw weights. */
static void swa_add(struct avg *a, const struct pg_model *m)
{
    const pg_real *x = a->ema ? (const pg_real *)a->ema : m->params;
    if (pg_on_device(a->be)) a->be->swa_add(a->swa_sum, x, m->nparams);
    else pg_swa_add_real(a->swa_sum, x, m->nparams);
    a->swa_count++;
}

/* Which weights the final model holds: the SWA average once it has a snapshot, else the EMA. */
static int final_kind(const struct avg *a)
{
    return a->swa_count > 0 ? FINAL_SWA : a->ema ? FINAL_EMA : FINAL_RAW;
}

/* Writes the final weights into the model's parameters (the raw ones must be kept in a->raw). */
static void put_final(const struct avg *a, struct pg_model *m)
{
    int k = final_kind(a);
    if (k == FINAL_SWA) {
        const double count = (double)a->swa_count;
        if (pg_on_device(a->be)) {
            a->be->swa_average(m->params, a->swa_sum, m->nparams, count);
        } else {
            for (size_t i = 0; i < m->nparams; i++) m->params[i] = (pg_real)(a->swa_sum[i] / count);
        }
    } else if (k == FINAL_EMA) {
        a->be->copy(m->params, (const pg_real *)a->ema, m->nparams);
    }
}

/* Late QAT: swaps the fake-quantized Muon matrices in (on = 1, keeping the masters) or the
 * masters back (on = 0). Straight-through: the gradients computed at the quantized values are
 * applied to the masters. */
static void qat_swap(struct avg *a, struct pg_model *m, int bits, int levels, int on)
{
    size_t o = 0;
    for (int i = 0; i < m->ntensors; i++) {
        const struct pg_tensor *t = &m->tensors[i];
        if (t->kind != PG_TENSOR_MATRIX) continue;
        pg_real *p = m->params + t->offset;
        if (on) {
            a->be->copy(a->master + o, p, t->numel);
            int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = (int64_t)t->numel / rows;
            if (levels && pg_on_device(a->be)) a->be->fake_quant_trit(p, p, rows, cols, levels);
            else if (levels) pg_fake_quant_trit(p, p, rows, cols, levels);
            else if (pg_on_device(a->be)) a->be->fake_quant_rows(p, p, rows, cols, bits);
            else pg_fake_quant_rows(p, p, rows, cols, bits);
        } else {
            a->be->copy(p, a->master + o, t->numel);
        }
        o += t->numel;
    }
}

/* A host copy of n elements of backend memory (the memory itself on a host backend); release it
 * with host_release. NULL when out of memory. */
static void *host_view(const struct pg_backend *be, const void *src, size_t bytes)
{
    if (!pg_on_device(be)) return (void *)src;
    void *h = pg_malloc(bytes ? bytes : 1);
    if (h) be->download(h, src, bytes);
    return h;
}

static void host_release(const struct pg_backend *be, void *h)
{
    if (pg_on_device(be)) free(h);
}

/* ---- checkpoints: model file + companion state file ---- */

static void state_path(char *out, size_t n, const char *ckpt)
{
    size_t len = strlen(ckpt);
    const char *sfx = ".safetensors";
    size_t ls = strlen(sfx);
    if (len > ls && strcmp(ckpt + len - ls, sfx) == 0) snprintf(out, n, "%.*s.state.safetensors", (int)(len - ls), ckpt);
    else snprintf(out, n, "%s.state.safetensors", ckpt);
}

struct blob {
    const char *name;
    unsigned char *data;
    size_t size;
};

static int save_checkpoint(const char *path, struct pg_model *m, struct groups *g, const struct avg *av, int step,
                           const struct pg_train_loader *l, double train_ms)
{
    PG_TRY(m->be->status()); /* never save what a failed device computed */
    char stepbuf[32], filebuf[32], posbuf[32], msbuf[40], swabuf[32];
    snprintf(stepbuf, sizeof stepbuf, "%d", step);
    const char *k[] = {"step"}, *v[] = {stepbuf};
    /* The state goes first and the model file last, each atomically: a checkpoint's model file
     * under its final name means that its state is complete too, whenever the process dies. */
    struct blob b[4] = {{"adam_embed", NULL, pg_adam_state_size(&g->embed)},
                        {"muon", NULL, pg_muon_state_size(&g->muon)},
                        {"adam_scalar", NULL, pg_adam_state_size(&g->scalar)},
                        {"adam_head", NULL, g->has_head ? pg_adam_state_size(&g->head) : 0}};
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++)
        if (!(b[i].data = pg_malloc(b[i].size ? b[i].size : 1))) rc = PG_E_NOMEM;
    if (!rc) rc = pg_adam_state_save(&g->embed, b[0].data, b[0].size);
    if (!rc) rc = pg_muon_state_save(&g->muon, b[1].data, b[1].size);
    if (!rc) rc = pg_adam_state_save(&g->scalar, b[2].data, b[2].size);
    if (!rc && g->has_head) rc = pg_adam_state_save(&g->head, b[3].data, b[3].size);
    struct pg_st_writer w;
    pg_st_writer_init(&w);
    for (int i = 0; i < 4 && !rc; i++)
        if (b[i].size) {
            int64_t shape[1] = {(int64_t)b[i].size};
            rc = pg_st_add(&w, b[i].name, PG_ST_U8, 1, shape, b[i].data);
        }
    /* The averages are state too: a resumed run continues them bit-exactly. */
    int64_t nshape[1] = {(int64_t)m->nparams};
    void *ema = NULL, *swa = NULL;
    if (!rc && av->ema && !(ema = host_view(av->be, av->ema, m->nparams * sizeof *av->ema))) rc = PG_E_NOMEM;
    if (!rc && av->swa_sum && !(swa = host_view(av->be, av->swa_sum, m->nparams * sizeof *av->swa_sum))) rc = PG_E_NOMEM;
    if (!rc && av->ema) rc = pg_st_add(&w, "ema", PG_ST_F32, 1, nshape, ema);
    if (!rc && av->swa_sum) rc = pg_st_add(&w, "swa_sum", PG_ST_F64, 1, nshape, swa);
    snprintf(swabuf, sizeof swabuf, "%lld", (long long)av->swa_count);
    if (!rc && av->swa_sum) rc = pg_st_set_meta(&w, "swa_count", swabuf);
    size_t file;
    uint64_t pos;
    pg_train_loader_state(l, &file, &pos);
    snprintf(filebuf, sizeof filebuf, "%zu", file);
    snprintf(posbuf, sizeof posbuf, "%llu", (unsigned long long)pos);
    snprintf(msbuf, sizeof msbuf, "%.17g", train_ms);
    if (!rc) rc = pg_st_set_meta(&w, "pgolf_state", "1");
    if (!rc) rc = pg_st_set_meta(&w, "step", stepbuf);
    if (!rc) rc = pg_st_set_meta(&w, "loader_file", filebuf);
    if (!rc) rc = pg_st_set_meta(&w, "loader_pos", posbuf);
    if (!rc) rc = pg_st_set_meta(&w, "train_ms", msbuf);
    char sp[1100];
    state_path(sp, sizeof sp, path);
    if (!rc) rc = m->be->status(); /* the downloads of the state */
    if (!rc) rc = pg_st_write(&w, sp);
    if (!rc) rc = pg_ckpt_save(m, path, 1, k, v);
    pg_st_writer_free(&w);
    if (ema) host_release(av->be, ema);
    if (swa) host_release(av->be, swa);
    for (int i = 0; i < 4; i++) free(b[i].data);
    return rc;
}

static int load_state(const char *ckpt, struct groups *g, struct pg_train_loader *l, int *step, double *train_ms)
{
    char sp[1100];
    state_path(sp, sizeof sp, ckpt);
    struct pg_st_file f;
    PG_TRY(pg_st_open(&f, sp));
    int rc = 0;
    const char *s = pg_st_meta(&f, "step"), *fi = pg_st_meta(&f, "loader_file"), *po = pg_st_meta(&f, "loader_pos"),
               *ms = pg_st_meta(&f, "train_ms");
    if (!pg_st_meta(&f, "pgolf_state") || strcmp(pg_st_meta(&f, "pgolf_state"), "1") != 0 || !s || !fi || !po || !ms)
        rc = pg_error(PG_E_FORMAT, "%s: not a version-1 pgolf training state (missing or unknown metadata)", sp);
    /* Every optimizer's blob is required: a missing one would silently restart that optimizer. */
    static const char *names[4] = {"adam_embed", "muon", "adam_scalar", "adam_head"};
    const struct pg_st_tensor *t[4] = {0};
    for (int i = 0; i < 4 && !rc; i++) {
        if (i == 3 && !g->has_head) break;
        if (!(t[i] = pg_st_find(&f, names[i])))
            rc = pg_error(PG_E_FORMAT, "%s: no '%s' optimizer state", sp, names[i]);
    }
    if (!rc) rc = pg_adam_state_load(&g->embed, t[0]->data, pg_st_nbytes(t[0]), sp);
    if (!rc) rc = pg_muon_state_load(&g->muon, t[1]->data, pg_st_nbytes(t[1]), sp);
    if (!rc) rc = pg_adam_state_load(&g->scalar, t[2]->data, pg_st_nbytes(t[2]), sp);
    if (!rc && g->has_head) rc = pg_adam_state_load(&g->head, t[3]->data, pg_st_nbytes(t[3]), sp);
    if (!rc) {
        int64_t st, file, pos;
        double tm;
        rc = pg_parse_i64("step", s, 0, INT32_MAX, &st);
        if (!rc) rc = pg_parse_i64("loader_file", fi, 0, INT64_MAX, &file);
        if (!rc) rc = pg_parse_i64("loader_pos", po, 0, INT64_MAX, &pos);
        if (!rc) rc = pg_parse_f64("train_ms", ms, 0, 1e300, &tm);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", pg_error_message());
            rc = pg_error(PG_E_FORMAT, "%s: %s", sp, msg);
        } else {
            *step = (int)st;
            *train_ms = tm;
            rc = pg_train_loader_restore(l, (size_t)file, (uint64_t)pos);
        }
    }
    pg_st_close(&f);
    return rc;
}

/* Reads the EMA shadow and the SWA sum of a training state into the buffers that are on. A state
 * without them (a run that had them off) starts the EMA at the current weights and SWA empty. */
static int load_avg(const char *ckpt, struct avg *a, const struct pg_model *m, int verbosity)
{
    if (!a->ema && !a->swa_sum) return 0;
    char sp[1100];
    state_path(sp, sizeof sp, ckpt);
    struct pg_st_file f;
    PG_TRY(pg_st_open(&f, sp));
    int rc = 0;
    const struct pg_st_tensor *t;
    if (a->ema) {
        if (!(t = pg_st_find(&f, "ema"))) {
            ema_reset(a, m);
            if (verbosity > 0) fprintf(stderr, "%s: no EMA state: the EMA starts at the checkpoint's weights\n", sp);
        } else if (t->dtype != PG_ST_F32 || pg_st_nbytes(t) != m->nparams * sizeof *a->ema) {
            rc = pg_error(PG_E_FORMAT, "%s: 'ema' is not %zu F32 values", sp, m->nparams);
        } else {
            a->be->upload(a->ema, t->data, m->nparams * sizeof *a->ema);
        }
    }
    if (!rc && a->swa_sum) {
        const char *cnt = pg_st_meta(&f, "swa_count");
        int64_t nsnap = 0;
        if (!(t = pg_st_find(&f, "swa_sum")) || !cnt) {
            if (verbosity > 0) fprintf(stderr, "%s: no SWA state: SWA starts empty\n", sp);
        } else if (t->dtype != PG_ST_F64 || pg_st_nbytes(t) != m->nparams * sizeof *a->swa_sum) {
            rc = pg_error(PG_E_FORMAT, "%s: 'swa_sum' is not %zu F64 values", sp, m->nparams);
        } else if (pg_parse_i64("swa_count", cnt, 0, INT64_MAX, &nsnap)) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", pg_error_message());
            rc = pg_error(PG_E_FORMAT, "%s: %s", sp, msg);
        } else {
            a->be->upload(a->swa_sum, t->data, m->nparams * sizeof *a->swa_sum);
            a->swa_count = nsnap;
        }
    }
    pg_st_close(&f);
    return rc;
}

/* ---- logging ---- */

/* Appends one line to metrics.jsonl, flushed. @return 0, or PG_E_IO (a full disk). */
static int metric(FILE *f, const char *path, const char *json_line)
{
    if (!f) return 0;
    if (fputs(json_line, f) == EOF || fputc('\n', f) == EOF || fflush(f) == EOF)
        return pg_error_errno(PG_E_IO, "cannot write '%s'", path);
    return 0;
}

/* ---- data parallelism ---- */

/* GPU ranks sum their gradients through the backend's communicator (NCCL) when it has one:
 * rank 0 makes its id, MPI carries it to the others, all join. 1 when joined; 0 when the
 * backend has none here (the emulator, a machine without NCCL): the sums then go through the
 * host. Whether to use it is decided by every rank together, so that they all sum the same way. */
static int join_comm(struct pg_dist *d, const struct pg_backend *be, int verbosity, int *joined)
{
    *joined = 0;
    if (d->world <= 1 || !pg_on_device(be) || !be->comm_init) return 0;
    unsigned char id[PG_COMM_ID_BYTES];
    memset(id, 0, sizeof id);
    int bad = d->rank == 0 && be->comm_id(id) != 0; /* rank 0's id, or why not */
    char why[256];
    snprintf(why, sizeof why, "%s", bad ? pg_error_message() : "");
    PG_TRY(pg_dist_max_int(d, &bad));
    if (!bad) PG_TRY(pg_dist_bcast_bytes(d, id, (int)sizeof id));
    int failed = bad || be->comm_init(id, d->rank, d->world) != 0;
    if (failed && !*why) snprintf(why, sizeof why, "%s", pg_error_message());
    int any = failed;
    PG_TRY(pg_dist_max_int(d, &any));
    if (any) {
        if (!failed) be->comm_free(); /* every rank goes through the host, or none */
        if (verbosity > 0)
            fprintf(stderr, "pg-train: the GPU ranks sum their gradients through the host (%s)\n",
                    *why ? why : "another rank has no communicator");
        pg_error_clear();
        return 0;
    }
    *joined = 1;
    return 0;
}

/* A device's way through a step's micro-batches (backend.h logit_ce_to, graph_begin): the loss
 * summed on the device, read once a step instead of waited for after every micro-batch, and
 * each micro-batch's forward and backward captured once as a CUDA graph and then replayed, after
 * one eager micro-batch in the same mode (looping or not) has brought every scratch buffer to
 * its size. PG_GRAPHS=0 turns the graphs off; so does a capture that fails (with a warning).
 * The optimizers' updates are captured too (optim_step), after one eager step. */
struct steps {
    double *loss;   /* backend memory: the step's Σ scale·loss; NULL: the host sums */
    void *graph[2]; /* by m->looping */
    int warm[2];    /* an eager micro-batch has run in that mode */
    int graphs;     /* 1: capture when warm */
    void *opt_graph; /* the optimizers' updates */
    int opt_warm;    /* 1: an eager optimizer step has run; -1: their capture failed, no second try */
    double *opt_sc;  /* backend memory: the optimizers' step values (OPT_N blocks), which the
                      * captured kernels read; NULL without graphs */
};

/* The optimizers whose step values go to the device, in opt_sc's order. */
enum { OPT_EMBED, OPT_HEAD, OPT_MUON, OPT_SCALAR, OPT_N };

static int steps_init(struct steps *sp, const struct pg_backend *be)
{
    memset(sp, 0, sizeof *sp);
    if (!be->logit_ce_to) return 0;
    if (!(sp->loss = be->alloc(sizeof *sp->loss))) return be->status();
    const char *env = getenv("PG_GRAPHS");
    sp->graphs = be->graph_begin && !(env && strcmp(env, "0") == 0);
    if (sp->graphs && !(sp->opt_sc = be->alloc(OPT_N * PG_OPT_SCALARS * sizeof *sp->opt_sc))) return be->status();
    return 0;
}

static void steps_free(struct steps *sp, const struct pg_backend *be)
{
    for (int k = 0; k < 2; k++)
        if (sp->graph[k]) be->graph_free(sp->graph[k]);
    if (sp->opt_graph) be->graph_free(sp->opt_graph);
    if (sp->loss) be->free(sp->loss);
    if (sp->opt_sc) be->free(sp->opt_sc);
}

/* run(ctx) captured as a graph, not run; NULL when the capture fails (nothing of it has run),
 * with a warning that `what` goes on without one (`after`). */
static void *capture(const struct pg_backend *be, void (*run)(void *), void *ctx, const char *what,
                     const char *after, int verbosity)
{
    void *graph = NULL;
    if (be->graph_begin() == 0) {
        run(ctx);
        graph = be->graph_end();
    }
    if (graph && verbosity > 0) fprintf(stderr, "pg-train: %s captured as a CUDA graph\n", what);
    if (!graph) {
        int rc = be->status();
        if (verbosity > 0)
            fprintf(stderr, "pg-train: warning: no CUDA graph of %s (%s); %s\n", what,
                    rc ? pg_error_message() : "the capture failed", after);
    }
    return graph;
}

/* The staged micro-batch's forward, its loss added on the device, and its backward. */
struct fwd_bwd {
    struct steps *sp;
    struct pg_model *m;
    double scale;
};

static void deferred_fwd_bwd(void *ctx)
{
    const struct fwd_bwd *f = ctx;
    pg_model_forward_deferred(f->m, f->sp->loss, f->scale);
    pg_model_backward(f->m, f->scale);
}

/* The forward and backward of the staged micro-batch; *loss += its scale·Σloss where the host
 * sums (else the device does, and steps_loss reads it). */
static void micro_batch(struct steps *sp, struct pg_model *m, double scale, double *loss, int verbosity)
{
    const struct pg_backend *be = m->be;
    if (!sp->loss) {
        *loss += pg_model_forward_staged(m, NULL) * scale;
        pg_model_backward(m, scale);
        return;
    }
    int k = m->looping != 0;
    struct fwd_bwd f = {sp, m, scale};
    if (sp->graphs && sp->warm[k] && !sp->graph[k]) {
        sp->graph[k] = capture(be, deferred_fwd_bwd, &f,
                               k ? "the micro-batch's forward and backward (looping)"
                                 : "the micro-batch's forward and backward",
                               "training goes on without graphs", verbosity);
        if (!sp->graph[k]) sp->graphs = 0; /* this micro-batch runs eagerly below */
    }
    if (sp->graph[k]) {
        be->graph_launch(sp->graph[k]);
    } else {
        deferred_fwd_bwd(&f);
        sp->warm[k] = 1;
    }
}

/* Before a step's micro-batches: the device's sum starts at 0. */
static void steps_begin(struct steps *sp, const struct pg_backend *be)
{
    const double zero = 0;
    if (sp->loss) be->upload(sp->loss, &zero, sizeof zero);
}

/* The optimizers' updates of a step, their values prepared (pg_adam_prepare ...): clipping, Adam,
 * Muon; what follows them waits for the ranks' exchange of Muon's matrices. */
struct optim_run {
    struct groups *g;
    const struct pg_backend *be;
    double clip;
};

static void optim_launch(void *ctx)
{
    const struct optim_run *o = ctx;
    struct groups *g = o->g;
    if (o->clip > 0) pg_clip_grad_norm_on(o->be, g->all, g->nall, o->clip);
    pg_adam_launch(&g->embed);
    if (g->has_head) pg_adam_launch(&g->head);
    pg_muon_launch(&g->muon);
    pg_adam_launch(&g->scalar);
}

/* Each optimizer's step values (sc) and where its kernels read them (sc_dev), in opt_sc's order. */
static void optim_values(struct groups *g, double *sc[OPT_N], const double **dev[OPT_N])
{
    sc[OPT_EMBED] = g->embed.sc, dev[OPT_EMBED] = &g->embed.sc_dev;
    sc[OPT_HEAD] = g->head.sc, dev[OPT_HEAD] = &g->head.sc_dev;
    sc[OPT_MUON] = g->muon.sc, dev[OPT_MUON] = &g->muon.sc_dev;
    sc[OPT_SCALAR] = g->scalar.sc, dev[OPT_SCALAR] = &g->scalar.sc_dev;
}

/* The optimizers' step values as their kernels read them: from sp->opt_sc (on 1), or as the
 * launch's arguments. */
static void optim_values_on_device(struct steps *sp, struct groups *g, int on)
{
    double *sc[OPT_N];
    const double **dev[OPT_N];
    optim_values(g, sc, dev);
    for (int k = 0; k < OPT_N; k++) *dev[k] = on ? sp->opt_sc + k * PG_OPT_SCALARS : NULL;
}

/* optim_launch, on a device with graphs captured once (after one eager step has sized every
 * scratch buffer) and replayed: each step's values, which a graph cannot take as arguments, go
 * to sp->opt_sc first, in one copy that waits for the device (the loss has waited already). */
static void optim_step(struct steps *sp, struct groups *g, const struct pg_backend *be, double clip, int verbosity)
{
    struct optim_run run = {g, be, clip};
    if (sp->opt_sc && sp->graphs && sp->opt_warm == 1 && !sp->opt_graph) {
        optim_values_on_device(sp, g, 1);
        sp->opt_graph = capture(be, optim_launch, &run, "the optimizers' updates", "they go on without one",
                                verbosity);
        if (!sp->opt_graph) { /* this step's updates run eagerly below */
            optim_values_on_device(sp, g, 0);
            sp->opt_warm = -1;
        }
    }
    if (sp->opt_graph) {
        double v[OPT_N * PG_OPT_SCALARS], *sc[OPT_N];
        const double **dev[OPT_N];
        optim_values(g, sc, dev);
        for (int k = 0; k < OPT_N; k++) memcpy(v + k * PG_OPT_SCALARS, sc[k], PG_OPT_SCALARS * sizeof *v);
        be->upload(sp->opt_sc, v, sizeof v);
        be->graph_launch(sp->opt_graph);
        return;
    }
    optim_launch(&run);
    if (!sp->opt_warm) sp->opt_warm = 1;
}

/* After them: the step's loss from the device (waiting for the step), else *loss as summed. */
static void steps_loss(struct steps *sp, const struct pg_backend *be, double *loss)
{
    if (sp->loss) be->download(loss, sp->loss, sizeof *loss);
}

/* The step's phases timed: the device's own clock where its work runs after the calls return
 * (backend.h mark), else the host's. Marks: 0 the step's start, 1 its micro-batches done, 2 the
 * optimizers (and the ranks' exchanges) done. */
struct phases {
    const struct pg_backend *be;
    double host[3];
};

static void phase_mark(struct phases *ph, int k)
{
    if (ph->be->mark) ph->be->mark(k);
    else ph->host[k] = pg_now();
}

/* Milliseconds from mark a to mark b (on a device, waiting for b). */
static double phase_ms(const struct phases *ph, int a, int b)
{
    return ph->be->elapsed_ms ? ph->be->elapsed_ms(a, b) : (ph->host[b] - ph->host[a]) * 1000;
}

/* The gradients of every rank, summed in rank order (each rank's are already divided by the
 * job's token count), on every rank; a device's through its communicator when joined (its own
 * order), else staged through the host. */
static int sum_grads(struct pg_dist *d, struct pg_model *m, int comm)
{
    if (comm) {
        PG_TRY(m->be->comm_sum(m->grads, m->nparams));
        return m->be->status();
    }
    if (!pg_on_device(m->be)) return pg_dist_sum_floats(d, m->grads, m->nparams);
    float *h = pg_malloc(m->nparams * sizeof *h);
    if (!h) return PG_E_NOMEM;
    m->be->download(h, m->grads, m->nparams * sizeof *h);
    int rc = m->be->status();
    if (!rc) rc = pg_dist_sum_floats(d, h, m->nparams);
    if (!rc) m->be->upload(m->grads, h, m->nparams * sizeof *h);
    free(h);
    return rc;
}

/* Muon's matrices after a step divided between the ranks (pg_muon_shard): each from its owner;
 * a device's through its communicator when joined, else staged through the host (every matrix
 * down, the others' back up). */
static int share_muon(struct pg_dist *d, const struct pg_muon *mu, int comm)
{
    if (!mu->owner) return 0;
    const size_t nt = mu->nt ? mu->nt : 1;
    const struct pg_backend *be = mu->be;
    const int on_device = pg_on_device(be), staged = on_device && !comm;
    float **ptrs = malloc(nt * sizeof *ptrs), **dev = malloc(nt * sizeof *dev), *host = NULL;
    size_t *sizes = malloc(nt * sizeof *sizes), total = 0;
    int rc = ptrs && dev && sizes ? 0 : pg_error(PG_E_NOMEM, "no memory to share Muon's matrices");
    for (size_t k = 0; k < mu->nt && !rc; k++) {
        dev[k] = ptrs[k] = mu->t[k].param;
        sizes[k] = mu->t[k].n, total += sizes[k];
    }
    if (!rc && staged && !(host = malloc((total ? total : 1) * sizeof *host)))
        rc = pg_error(PG_E_NOMEM, "no memory to share Muon's matrices (%zu floats) through the host", total);
    if (!rc && staged) {
        size_t at = 0;
        for (size_t k = 0; k < mu->nt; k++) ptrs[k] = host + at, at += sizes[k];
        for (size_t k = 0; k < mu->nt; k++)
            if (mu->owner[k] == d->rank) be->download(ptrs[k], dev[k], sizes[k] * sizeof *host);
        rc = be->status();
    }
    if (!rc && comm) rc = be->comm_share(ptrs, sizes, mu->owner, mu->nt);
    else if (!rc) rc = pg_dist_share(d, ptrs, sizes, mu->owner, mu->nt);
    if (!rc && staged)
        for (size_t k = 0; k < mu->nt; k++)
            if (mu->owner[k] != d->rank) be->upload(dev[k], ptrs[k], sizes[k] * sizeof *host);
    if (!rc && on_device) rc = be->status();
    free(ptrs), free(dev), free(sizes), free(host);
    return rc;
}

/* ---- the loop ---- */

int pg_train_run(const struct pg_train_opts *o, struct pg_train_result *r)
{
    memset(r, 0, sizeof *r);
    r->val_loss = r->val_bpb = NAN;
    const struct pg_config *c = &o->cfg;
    struct pg_tok *tok;
    PG_TRY(pg_tok_load(&tok, o->tokenizer));
    int tok_vocab = pg_tok_vocab_size(tok);
    struct pg_bpb_lut lut;
    int rc = pg_config_validate(c, tok_vocab);
    if (!rc) rc = pg_bpb_lut_from_tok(&lut, tok, c->vocab_size);
    pg_tok_free(tok);
    if (rc) return rc;
    int lock_fd = -1; /* held to the end: a second pg-train on this folder refuses to start */
    const int writer = !o->dist || o->dist->rank == 0; /* the ranks of a job write through rank 0 */
    rc = pg_mkdir_p(o->run_dir);
    if (!rc && writer) rc = pg_run_lock(o->run_dir, &lock_fd);
    int stale = 0;
    if (!rc && writer) rc = pg_run_clean_temps(o->run_dir, &stale);
    if (!rc && stale && o->verbosity > 0)
        fprintf(stderr, "pg-train: removed %d temporary file%s left by an earlier run killed in a write\n", stale,
                stale > 1 ? "s" : "");
    if (rc) {
        pg_bpb_lut_free(&lut);
        pg_run_unlock(lock_fd);
        return rc;
    }

    struct pg_train_loader loader;
    struct pg_val_set val;
    struct pg_model m;
    struct groups g;
    struct avg av;
    memset(&loader, 0, sizeof loader), memset(&val, 0, sizeof val), memset(&m, 0, sizeof m), memset(&g, 0, sizeof g);
    memset(&av, 0, sizeof av);
    int32_t *x = NULL, *y = NULL;
    FILE *mf = NULL;
    struct steps sp;
    memset(&sp, 0, sizeof sp);
    /* N ranks split each step's grad_accum_steps micro-batches between them (the loader gives
     * rank r its slice of each global micro-batch): the same tokens as one process. */
    struct pg_dist *dist = o->dist;
    const int rank = dist ? dist->rank : 0, world = dist ? dist->world : 1, lead = rank == 0;
    const int accum = c->grad_accum_steps / world;
    if (c->grad_accum_steps % world)
        rc = pg_error(PG_E_INVAL,
                      "grad_accum_steps %d is not a multiple of the %d ranks: each rank takes an equal share of a "
                      "step's micro-batches",
                      c->grad_accum_steps, world);
    else
        rc = pg_train_loader_open(&loader, o->data_dir, o->prefix, rank, world, c->train_batch_tokens,
                                  c->train_seq_len, accum);
    if (!rc && c->coprime_loader) rc = pg_train_loader_use_coprime(&loader, (uint64_t)c->seed);
    if (!rc) rc = pg_val_open(&val, o->data_dir, o->prefix, c->train_seq_len);
    int b = (int)(loader.local_tokens / c->train_seq_len);
    const struct pg_backend *be = o->backend ? o->backend : &pg_backend_cpu;
    if (!rc) rc = pg_model_init(&m, c, be, 1);
    if (!rc) be->set_bf16(o->bf16);
    m.lean = 1; /* no taps, side paths or precision changes: bf16 buffers where they suffice */
    if (!rc) rc = pg_model_alloc_acts(&m, b, c->train_seq_len);
    if (!rc) {
        rc = pg_model_init_weights(&m, c->seed);
        if (!rc) rc = groups_init(&g, &m, c, o->muon_bf16);
    }
    int comm = 0; /* GPU ranks joined the backend's communicator */
    if (!rc && dist) rc = join_comm(dist, be, lead ? o->verbosity : 0, &comm);
    /* ranks divide Muon's orthogonalizations; PG_MUON_SHARD=0: each does them all */
    const char *shard = getenv("PG_MUON_SHARD");
    if (!rc && world > 1 && !(shard && strcmp(shard, "0") == 0)) {
        rc = pg_muon_shard(&g.muon, rank, world);
        size_t mine = 0;
        for (size_t k = 0; !rc && g.muon.owner && k < g.muon.nt; k++) mine += g.muon.owner[k] == rank;
        if (!rc && lead && o->verbosity > 0)
            fprintf(stderr, "pg-train: Muon's orthogonalizations divided between the %d ranks (rank 0: %zu of %zu)\n",
                    world, mine, g.muon.nt);
    }
    if (!rc) rc = avg_init(&av, &m, c);
    if (!rc) rc = steps_init(&sp, be);
    if (!rc && !((x = pg_malloc((size_t)loader.local_tokens * sizeof *x)) &&
                 (y = pg_malloc((size_t)loader.local_tokens * sizeof *y))))
        rc = PG_E_NOMEM;
    int step = 0;
    double train_ms = 0;
    if (!rc && o->resume) {
        rc = pg_ckpt_load(&m, o->resume); /* staged through the host for a device model */
        if (!rc) rc = load_state(o->resume, &g, &loader, &step, &train_ms);
        if (!rc && av.ema) ema_reset(&av, &m); /* replaced by the state's shadow when it has one */
        if (!rc) rc = load_avg(o->resume, &av, &m, o->verbosity);
    } else if (!rc && av.ema) {
        ema_reset(&av, &m); /* the EMA starts at the initial weights */
    }
    char path[1100], mpath[1100];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", o->run_dir);
    if (!rc && lead && !(mf = fopen(mpath, o->resume ? "a" : "w")))
        rc = pg_error_errno(PG_E_IO, "cannot open '%s'", mpath);
    int64_t nval = rc ? 0 : pg_val_num_seqs(&val);
    int val_b = (int)(nval < b ? nval : b);
    double tokens_per_step = (double)loader.local_tokens * accum * world;
    const int verbosity = lead ? o->verbosity : 0; /* rank 0 speaks for the job */
    char line[512];
    struct pg_progress prog;
    pg_progress_init(&prog, "train", "step", (uint64_t)c->iterations, lead ? o->progress : 0);
    prog.done = (uint64_t)step;
    double max_ms = c->max_wallclock_seconds * 1000.0;
    int final = FINAL_RAW, was_looping = 0;
    struct phases ph = {.be = be};
    while (!rc) {
        /* Every rank takes the same decisions: rank 0's clock drives the schedule, and a stop
         * (a signal) on any rank stops them all at the same step. */
        if ((rc = pg_dist_bcast_double(dist, &train_ms))) break;
        int last = step >= c->iterations || (max_ms > 0 && train_ms >= max_ms) || (o->stop && *o->stop) ||
                   (o->stop_at > 0 && step >= o->stop_at);
        if ((rc = pg_dist_max_int(dist, &last))) break;
        if (last && (final = final_kind(&av)) != FINAL_RAW) {
            /* The last validation scores the weights saved as the final model. */
            be->copy(av.raw, m.params, m.nparams);
            put_final(&av, &m);
        }
        if (last || (c->val_loss_every > 0 && step % c->val_loss_every == 0)) {
            struct pg_eval_result er;
            m.looping = c->num_loops > 0; /* evaluation always loops */
            if ((rc = pg_eval_val(&m, &val, &lut, rank, world, val_b, 0, &er))) break;
            if (world > 1) { /* the ranks' shares, summed in rank order */
                double sums[3] = {er.nll_sum, er.tokens, er.bytes};
                if ((rc = pg_dist_sum_doubles(dist, sums, 3))) break;
                er.nll_sum = sums[0], er.tokens = sums[1], er.bytes = sums[2];
                er.val_loss = er.tokens > 0 ? er.nll_sum / er.tokens : 0;
                er.val_bpb = er.bytes > 0 ? er.nll_sum / (log(2.0) * er.bytes) : 0;
            }
            r->val_loss = er.val_loss, r->val_bpb = er.val_bpb;
            char what[64] = "";
            if (final == FINAL_EMA) snprintf(what, sizeof what, " (EMA weights)");
            if (final == FINAL_SWA) snprintf(what, sizeof what, " (SWA of %lld snapshots)", (long long)av.swa_count);
            if (verbosity > 0)
                fprintf(stderr, "%sstep:%d/%d val_loss:%.4f val_bpb:%.4f train_time:%.0fms eval_time:%.0fms%s\n",
                        prog.drawn ? "\n" : "", step, c->iterations, er.val_loss, er.val_bpb, train_ms,
                        er.seconds * 1000, what);
            snprintf(line, sizeof line, "{\"step\":%d,\"val_loss\":%.8f,\"val_bpb\":%.8f,\"train_ms\":%.1f%s}", step,
                     er.val_loss, er.val_bpb, train_ms,
                     final == FINAL_EMA ? ",\"weights\":\"ema\"" : final == FINAL_SWA ? ",\"weights\":\"swa\"" : "");
            if ((rc = metric(mf, mpath, line))) break;
        }
        if (last) break;
        double t0 = pg_now();
        /* The schedule (spec/techniques.md §3.3): by training fraction when warmdown_frac > 0,
         * else the baseline's warmdown_iters; min_lr floors either. */
        double frac = pg_train_frac(step, c->iterations, train_ms, max_ms);
        double mul = c->warmdown_frac > 0 ? pg_lr_mul_frac(frac, c->warmdown_frac, c->min_lr)
                     : max_ms > 0         ? pg_lr_mul_wallclock(step, train_ms, c->warmdown_iters, max_ms)
                                          : pg_lr_mul_iterations(step, c->iterations, c->warmdown_iters);
        if (c->min_lr > 0 && mul < c->min_lr) mul = c->min_lr;
        double mom = pg_muon_momentum(step, c->muon_momentum_warmup_start, c->muon_momentum,
                                      c->muon_momentum_warmup_steps);
        double wd_mul = pg_wd_taper(frac, c->wd_taper_start, c->wd_taper_final);
        if (c->wd_taper_start < 1) pg_muon_set_weight_decay(&g.muon, c->muon_wd * wd_mul);
        int qat = c->qat_start_lr > 0 && mul < c->qat_start_lr;
        m.looping = c->num_loops > 0 && frac >= c->enable_looping_at;
        if (m.looping && !was_looping && verbosity > 0)
            fprintf(stderr, "%sstep:%d looping on from this step (training fraction %.4f)\n", prog.drawn ? "\n" : "",
                    step + 1, frac);
        was_looping = m.looping;
        phase_mark(&ph, 0);
        pg_model_zero_grad(&m);
        if (qat) qat_swap(&av, &m, c->qat_bits, c->qat_levels, 1);
        double loss = 0, scale = 1.0 / ((double)loader.local_tokens * accum * world);
        steps_begin(&sp, be);
        for (int micro = 0; micro < accum && !rc; micro++) {
            if ((rc = pg_train_loader_next(&loader, x, y))) break;
            if ((rc = pg_model_check_ids(&m, x, (size_t)loader.local_tokens)) ||
                (rc = pg_model_check_ids(&m, y, (size_t)loader.local_tokens)))
                break;
            pg_model_stage(&m, x, y, b);
            micro_batch(&sp, &m, scale, &loss, verbosity);
        }
        if (!rc) steps_loss(&sp, be, &loss);
        if (qat) qat_swap(&av, &m, c->qat_bits, c->qat_levels, 0);
        phase_mark(&ph, 1);
        if (rc || (rc = be->status())) break; /* a device's failure before a NaN it may have caused */
        double comm_t0 = pg_now(), comm_ms = 0; /* the ranks' exchanges, in the step's time */
        if (world > 1 && ((rc = pg_dist_sum_doubles(dist, &loss, 1)) || (rc = sum_grads(dist, &m, comm)))) break;
        comm_ms += (pg_now() - comm_t0) * 1000;
        if (!isfinite(loss)) {
            rc = pg_error(PG_E_FORMAT, "step %d: the training loss is %g: diverged", step, loss);
            break;
        }
        pg_adam_prepare(&g.embed, (c->tie_embeddings ? c->tied_embed_lr : c->embed_lr) * mul);
        if (g.has_head) pg_adam_prepare(&g.head, c->head_lr * mul);
        pg_muon_prepare(&g.muon, c->matrix_lr * mul, mom);
        pg_adam_prepare(&g.scalar, c->scalar_lr * mul);
        optim_step(&sp, &g, be, c->grad_clip_norm, verbosity);
        comm_t0 = pg_now();
        if ((rc = share_muon(dist, &g.muon, comm))) break;
        comm_ms += (pg_now() - comm_t0) * 1000;
        if (av.ema) ema_update(&av, &m, c->ema_decay);
        phase_mark(&ph, 2);
        /* a device reports its failures here, once per step (the loss has waited for it already) */
        if ((rc = be->status())) break;
        double ms = (pg_now() - t0) * 1000;
        double fb_ms = phase_ms(&ph, 0, 1), opt_ms = phase_ms(&ph, 1, 2);
        train_ms += ms;
        step++;
        r->train_loss = loss;
        if (av.swa_sum && mul < c->swa_start_lr && step % c->swa_every == 0) {
            swa_add(&av, &m);
        }
        pg_progress_update(&prog, (uint64_t)step);
        if (verbosity > 0 && c->train_log_every > 0 && (step <= 10 || step % c->train_log_every == 0)) {
            fprintf(stderr, "%sstep:%d/%d train_loss:%.4f lr_mul:%.4f step_ms:%.1f tok/s:%.0f\n",
                    prog.drawn ? "\n" : "", step, c->iterations, loss, mul, ms, tokens_per_step / (ms / 1000));
        }
        snprintf(line, sizeof line,
                 "{\"step\":%d,\"train_loss\":%.8f,\"lr_mul\":%.6f,\"muon_momentum\":%.6f,\"step_ms\":%.3f,"
                 "\"tokens_per_s\":%.1f,\"muon_wd_mul\":%.6f,\"qat\":%d,\"looping\":%d,\"fwd_bwd_ms\":%.3f,\"optim_ms\":%.3f}",
                 step, loss, mul, mom, ms, tokens_per_step / (ms / 1000), wd_mul, qat, m.looping, fb_ms, opt_ms);
        if (world > 1) { /* ranks of a job: the exchanges' share of the step */
            size_t len = strlen(line);
            snprintf(line + len - 1, sizeof line - len + 1, ",\"ranks\":%d,\"comm_ms\":%.3f}", world, comm_ms);
        }
        if ((rc = metric(mf, mpath, line))) break;
        if (lead && o->save_every > 0 && step % o->save_every == 0) {
            snprintf(path, sizeof path, "%s/ckpt_%06d.safetensors", o->run_dir, step);
            rc = save_checkpoint(path, &m, &g, &av, step, &loader, train_ms);
        }
    }
    pg_progress_finish(&prog);
    if (!rc) {
        /* The final (or interrupted) state: a resumable checkpoint, and the plain model file. */
        snprintf(path, sizeof path, "%s/ckpt_%06d.safetensors", o->run_dir, step);
        /* The checkpoint keeps the raw weights (and the averages in its state), the model file the
         * final ones: the SWA average, else the EMA, else the raw weights. */
        if (final != FINAL_RAW) be->copy(m.params, av.raw, m.nparams);
        if (lead) rc = save_checkpoint(path, &m, &g, &av, step, &loader, train_ms);
        if (final != FINAL_RAW) put_final(&av, &m);
        snprintf(r->final_ckpt, sizeof r->final_ckpt, "%s/model.safetensors", o->run_dir);
        const char *k[] = {"step"};
        char sb[32];
        snprintf(sb, sizeof sb, "%d", step);
        const char *v[] = {sb};
        if (!rc && lead) rc = pg_ckpt_save(&m, r->final_ckpt, 1, k, v);
        r->interrupted = o->stop && *o->stop;
    }
    r->steps = step;
    r->train_seconds = train_ms / 1000;
    r->tokens_per_second = train_ms > 0 ? tokens_per_step * step / (train_ms / 1000) : 0;
    r->device_peak_bytes = be->mem_peak ? be->mem_peak() : 0;
    if (mf && fclose(mf) != 0 && !rc) rc = pg_error_errno(PG_E_IO, "cannot write '%s'", mpath);
    free(x), free(y);
    if (comm) be->comm_free();
    steps_free(&sp, be);
    groups_free(&g);
    avg_free(&av);
    pg_model_free(&m);
    pg_val_close(&val);
    pg_train_loader_close(&loader);
    pg_bpb_lut_free(&lut);
    pg_run_unlock(lock_fd);
    return rc;
}
