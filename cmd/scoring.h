/* scoring.h: what pg-eval and pg-ttt both do before they score: read a model file of any kind
 * (checkpoint, .pgq, .pga), check it against the tokenizer, build the val_bpb byte table, open
 * the val shards and load the model. Errors exit through the command's pg_cli. */
#ifndef PG_CMD_SCORING_H
#define PG_CMD_SCORING_H

#include "cli.h"

#include "../lib/bpb.h"
#include "../lib/config.h"
#include "../lib/loader.h"
#include "../lib/model.h"

struct pg_scoring {
    struct pg_config cfg;  /* the model's, with train_seq_len = the window length */
    struct pg_bpb_lut lut;
    struct pg_val_set val;
    struct pg_model m;     /* loaded; activations not allocated yet */
    int caseops;           /* a CaseOps tokenizer: bytes come from the val byte sidecar (lut.val_bytes) */
};

/* seq_len 0: the model's own train_seq_len. training: allocate gradients too. be: the backend
 * the model runs on (&pg_backend_cpu, or one from pg_backend_by_name). */
void pg_scoring_open(const struct pg_cli *cli, struct pg_scoring *s, const char *model, const char *data,
                     const char *prefix, const char *tokpath, int seq_len, int training,
                     const struct pg_backend *be);

void pg_scoring_close(struct pg_scoring *s);

struct pg_audit;
/* The audit's verdicts as the "audit" object of --json (passed, the counts, the worst values),
 * after pg_audit_finish. @return a new reference, or NULL when out of memory. */
struct json_t *pg_scoring_audit_json(const struct pg_audit *a);

#endif
