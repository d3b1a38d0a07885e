/* test_ckpt.c: checkpoints: save → read config → load gives the same parameters bit for bit and
 * re-saving gives the same file byte for byte; a PyTorch-style file (no pgolf metadata, bf16
 * tok_emb) loads with its shape inferred and its values converted; mismatches fail cleanly. The
 * record-stack switches (mlp_leaky_slope, rope_dims, ln_scale) round-trip, and a file written
 * before they existed (pgolf metadata without their keys) reads with their baseline defaults. */
#define _POSIX_C_SOURCE 200809L
#include "../tap.h"

#include "../../lib/ckpt.h"
#include "../../lib/err.h"
#include "../../lib/mapfile.h"
#include "../../lib/safetensors.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void tiny(struct pg_config *c)
{
    pg_config_default(c);
    c->vocab_size = 64, c->num_layers = 3, c->model_dim = 32, c->num_heads = 4, c->num_kv_heads = 2;
    c->mlp_mult = 3, c->train_seq_len = 16, c->logit_softcap = 20.5;
}

static int same_file(const char *a, const char *b)
{
    struct pg_map x, y;
    if (pg_map_open(&x, a) || pg_map_open(&y, b)) return 0;
    int same = x.size == y.size && memcmp(x.data, y.data, x.size) == 0;
    pg_map_close(&x);
    pg_map_close(&y);
    return same;
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/pg-test-ckpt-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    char p1[128], p2[128], p3[128];
    snprintf(p1, sizeof p1, "%s/a.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/b.safetensors", dir);
    snprintf(p3, sizeof p3, "%s/torch.safetensors", dir);

    struct pg_config c, c2;
    tiny(&c);
    struct pg_model m, m2;
    pg_model_init(&m, &c, &pg_backend_cpu, 0);
    pg_model_init_weights(&m, 5);
    const char *k[] = {"step"}, *v[] = {"42"};
    is_int(pg_ckpt_save(&m, p1, 1, k, v), 0, "save");
    is_int(pg_ckpt_read_config(p1, &c2), 0, "read config");
    ok(memcmp(&c, &c2, sizeof c) == 0, "config round-trips through the metadata");
    pg_model_init(&m2, &c2, &pg_backend_cpu, 0);
    is_int(pg_ckpt_load(&m2, p1), 0, "load");
    ok(memcmp(m.params, m2.params, m.nparams * sizeof *m.params) == 0, "parameters bit for bit");
    is_int(pg_ckpt_save(&m2, p2, 1, k, v), 0, "save again");
    ok(same_file(p1, p2), "the re-saved file is byte-identical");
    struct pg_st_file f;
    pg_st_open(&f, p1);
    ok(pg_st_meta(&f, "format") && strcmp(pg_st_meta(&f, "format"), "pt") == 0, "metadata format = pt");
    ok(pg_st_meta(&f, "num_layers") && strcmp(pg_st_meta(&f, "num_layers"), "3") == 0, "metadata num_layers = 3");
    ok(pg_st_find(&f, "blocks.2.mlp.fc.weight") && pg_st_find(&f, "blocks.2.mlp.fc.weight")->shape[0] == 96,
       "parameter-golf names and shapes (mlp.fc is [3*32, 32])");
    pg_st_close(&f);

    /* A PyTorch-style file: no pgolf metadata, tok_emb in bf16 (as the baseline keeps it). */
    struct pg_st_writer w;
    pg_st_writer_init(&w);
    uint16_t *bf = malloc(m.tensors[m.t_emb].numel * sizeof *bf);
    for (size_t i = 0; i < m.tensors[m.t_emb].numel; i++) {
        uint32_t u;
        memcpy(&u, &m.params[m.tensors[m.t_emb].offset + i], 4);
        bf[i] = (uint16_t)(u >> 16); /* init values are bf16-exact, so this is lossless */
    }
    for (int i = 0; i < m.ntensors; i++) {
        struct pg_tensor *t = &m.tensors[i];
        if (i == m.t_emb) pg_st_add(&w, t->name, PG_ST_BF16, 2, t->shape, bf);
        else pg_st_add(&w, t->name, PG_ST_F32, t->ndim, t->shape, m.params + t->offset);
    }
    pg_st_set_meta(&w, "format", "pt");
    is_int(pg_st_write(&w, p3), 0, "write a PyTorch-style file");
    pg_st_writer_free(&w);
    free(bf);
    struct pg_config c3;
    is_int(pg_ckpt_read_config(p3, &c3), 0, "infer the config of a file without pgolf metadata");
    ok(c3.vocab_size == 64 && c3.model_dim == 32 && c3.num_layers == 3 && c3.num_heads == 4 && c3.num_kv_heads == 2 &&
           c3.mlp_mult == 3 && c3.tie_embeddings == 1,
       "inferred shape: vocab 64, dim 32, 3 layers, 4 heads, 2 kv, mlp 3, tied");
    struct pg_model m3;
    pg_model_init(&m3, &c, &pg_backend_cpu, 0);
    is_int(pg_ckpt_load(&m3, p3), 0, "load the bf16 file");
    ok(memcmp(m.params, m3.params, m.nparams * sizeof *m.params) == 0, "bf16 tok_emb converted exactly");

    /* Mismatches. */
    struct pg_config cb = c;
    cb.num_layers = 2;
    struct pg_model mb;
    pg_model_init(&mb, &cb, &pg_backend_cpu, 0);
    is_int(pg_ckpt_load(&mb, p1), PG_E_FORMAT, "fewer layers than the file: refused");
    ok(strstr(pg_error_message(), p1) != NULL, "message names the file: %s", pg_error_message());
    pg_model_free(&mb);
    cb = c;
    cb.mlp_mult = 2;
    pg_model_init(&mb, &cb, &pg_backend_cpu, 0);
    is_int(pg_ckpt_load(&mb, p1), PG_E_FORMAT, "a different shape: refused");
    ok(strstr(pg_error_message(), "wrong shape") != NULL, "message says wrong shape: %s", pg_error_message());
    pg_model_free(&mb);
    /* The record-stack switches round-trip through the metadata. */
    struct pg_config cr = c, cr2;
    cr.mlp_leaky_slope = 0.5, cr.rope_dims = 4, cr.ln_scale = 1;
    struct pg_model mr;
    char p4[128], p5[128];
    snprintf(p4, sizeof p4, "%s/rec.safetensors", dir);
    snprintf(p5, sizeof p5, "%s/old.safetensors", dir);
    pg_model_init(&mr, &cr, &pg_backend_cpu, 0);
    pg_model_init_weights(&mr, 5);
    is_int(pg_ckpt_save(&mr, p4, 0, NULL, NULL), 0, "save with mlp_leaky_slope 0.5, rope_dims 4, ln_scale 1");
    is_int(pg_ckpt_read_config(p4, &cr2), 0, "read it back");
    ok(memcmp(&cr, &cr2, sizeof cr) == 0 && cr2.mlp_leaky_slope == 0.5 && cr2.rope_dims == 4 && cr2.ln_scale == 1,
       "the record-stack switches round-trip through the metadata");
    /* A checkpoint of an older pgolf: the same metadata without the three keys. */
    pg_st_open(&f, p4);
    pg_st_writer_init(&w);
    for (int i = 0; i < mr.ntensors; i++) {
        struct pg_tensor *t = &mr.tensors[i];
        pg_st_add(&w, t->name, PG_ST_F32, t->ndim, t->shape, mr.params + t->offset);
    }
    for (size_t i = 0; i < f.nmeta; i++)
        if (strcmp(f.meta_keys[i], "mlp_leaky_slope") && strcmp(f.meta_keys[i], "rope_dims") &&
            strcmp(f.meta_keys[i], "ln_scale"))
            pg_st_set_meta(&w, f.meta_keys[i], f.meta_values[i]);
    is_int(pg_st_write(&w, p5), 0, "write a checkpoint without the record-stack keys");
    pg_st_writer_free(&w);
    pg_st_close(&f);
    is_int(pg_ckpt_read_config(p5, &cr2), 0, "an older checkpoint reads");
    ok(memcmp(&c, &cr2, sizeof c) == 0, "its missing keys take the baseline defaults (slope 0, rope_dims 0, ln_scale 0)");
    pg_model_free(&mr);

    char bad[128];
    snprintf(bad, sizeof bad, "%s/nope.safetensors", dir);
    is_int(pg_ckpt_read_config(bad, &c3), PG_E_IO, "missing file: I/O error");

    pg_model_free(&m);
    pg_model_free(&m2);
    pg_model_free(&m3);
    remove_tree(dir);
    return done_testing();
}
