/* scoring.c: see scoring.h. */
#include "scoring.h"

#include "../lib/audit.h"
#include "../lib/caseops.h"
#include "../lib/modelfile.h"
#include "../lib/tok.h"

#include <jansson.h>
#include <string.h>

void pg_scoring_open(const struct pg_cli *cli, struct pg_scoring *s, const char *model, const char *data,
                     const char *prefix, const char *tokpath, int seq_len, int training,
                     const struct pg_backend *be)
{
    memset(s, 0, sizeof *s);
    pg_cli_check(cli, pg_modelfile_read_config(model, &s->cfg));
    pg_cli_check(cli, pg_modelfile_check_tokenizer(model, tokpath));
    if (seq_len) s->cfg.train_seq_len = seq_len;
    struct pg_tok *tok;
    pg_cli_check(cli, pg_tok_load(&tok, tokpath));
    int tok_vocab = pg_tok_vocab_size(tok);
    if (s->cfg.vocab_size < tok_vocab)
        pg_cli_die(cli, "%s: model vocabulary %d is smaller than the tokenizer's %d (%s)", model, s->cfg.vocab_size,
                   tok_vocab, tokpath);
    pg_cli_check(cli, pg_bpb_lut_from_tok(&s->lut, tok, s->cfg.vocab_size));
    s->caseops = pg_caseops_tok_is(tok);
    int bos = pg_tok_bos_id(tok);
    pg_tok_free(tok);
    if (cli->verbosity > 1) pg_config_print_table(&s->cfg, stderr);
    pg_cli_check(cli, pg_val_open(&s->val, data, prefix, s->cfg.train_seq_len));
    /* CaseOps operators stand for no text: only the sidecar knows a token's original bytes, so a
     * CaseOps tokenizer without one is refused rather than scored with the tables. */
    if (s->caseops) {
        int have;
        pg_cli_check(cli, pg_bpb_sidecar_exists(data, prefix, &have));
        if (!have)
            pg_cli_die(cli, "%s: a CaseOps tokenizer needs the val byte sidecar %s/%s_val_bytes_*.bin (pg-tokenize "
                       "encode --caseops writes it)", tokpath, data, prefix);
        pg_cli_check(cli, pg_bpb_lut_load_sidecar(&s->lut, data, prefix, s->val.tokens, (uint64_t)s->val.usable + 1, bos));
    }
    pg_cli_check(cli, pg_model_init(&s->m, &s->cfg, be, training));
    pg_cli_check(cli, pg_modelfile_load(&s->m, model));
}

void pg_scoring_close(struct pg_scoring *s)
{
    pg_model_free(&s->m);
    pg_val_close(&s->val);
    pg_bpb_lut_free(&s->lut);
}

json_t *pg_scoring_audit_json(const struct pg_audit *a)
{
    return json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "passed", pg_audit_passed(a), "samples",
                     (json_int_t)a->samples, "lookahead", (json_int_t)a->lookahead, "unnormalized",
                     (json_int_t)a->unnormalized, "scored_twice", (json_int_t)a->scored_twice, "unscored",
                     (json_int_t)a->unscored, "update_before_score", (json_int_t)a->update_first, "worst_future",
                     a->worst_future, "worst_sum", a->worst_sum);
}
