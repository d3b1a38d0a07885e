/* scoring.c: see scoring.h. */
#include "scoring.h"

#include "../lib/modelfile.h"
#include "../lib/tok.h"

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
    pg_tok_free(tok);
    if (cli->verbosity > 1) pg_config_print_table(&s->cfg, stderr);
    pg_cli_check(cli, pg_val_open(&s->val, data, prefix, s->cfg.train_seq_len));
    pg_cli_check(cli, pg_model_init(&s->m, &s->cfg, be, training));
    pg_cli_check(cli, pg_modelfile_load(&s->m, model));
}

void pg_scoring_close(struct pg_scoring *s)
{
    pg_model_free(&s->m);
    pg_val_close(&s->val);
    pg_bpb_lut_free(&s->lut);
}
