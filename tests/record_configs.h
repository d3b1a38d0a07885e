/* record_configs.h: three tiny configurations that between them turn every record-stack
 * architecture switch on (spec/techniques.md §2), shared by the float64 gradient check
 * (tests/unit/test_model_f64.c) and the CUDA-vs-CPU model parity test (tests/emu/test_cuda_model.c).
 * Each takes a 3-layer, width-16, 4-head/2-KV-head configuration and adds its switches. */
#ifndef PG_TESTS_RECORD_CONFIGS_H
#define PG_TESTS_RECORD_CONFIGS_H

#include "../lib/config.h"

/* XSA everywhere, the sparse head gate, gated skips, SmearGate v2, varlen attention, LeakyReLU²,
 * LN scale, partial RoPE. */
__attribute__((unused)) static struct pg_config record_a(struct pg_config c)
{
    c.xsa_last_n = 3, c.sparse_attn_gate = 1, c.sparse_attn_gate_scale = 0.5, c.gate_window = 4, c.skip_gates = 1;
    c.smear_gate = 1, c.varlen_attn = 1, c.mlp_leaky_slope = 0.5, c.ln_scale = 1, c.rope_dims = 2;
    return c;
}

/* A loop over layer 1, two lanes from layer 1, value embeddings, BigramHash, AttnOutGate,
 * SmearGate v1, the poly5 softcap and the z-loss, XSA on the last layer. */
__attribute__((unused)) static struct pg_config record_b(struct pg_config c)
{
    c.num_loops = 1, c.loop_start = 1, c.loop_end = 1, c.parallel_start_layer = 1, c.skip_gates = 1;
    c.ve_last_n = 2, c.ve_dim = 4, c.bigram_vocab = 8, c.bigram_dim = 4, c.attn_out_gate = 1, c.gate_window = 3;
    c.smear_gate_v1 = 1, c.softcap_poly5 = 1, c.z_loss = 0.01, c.xsa_last_n = 1;
    return c;
}

/* Layers 0-1 looped twice, the GPT-J parallel form from layer 2, dense gated attention, varlen,
 * SmearGate v2 over the whole width. */
__attribute__((unused)) static struct pg_config record_c(struct pg_config c)
{
    c.num_loops = 2, c.loop_start = 0, c.loop_end = 1, c.parallel_start_layer = 2, c.parallel_gptj = 1;
    c.gated_attn = 1, c.varlen_attn = 1, c.smear_gate = 1, c.gate_window = 16;
    return c;
}

#endif
