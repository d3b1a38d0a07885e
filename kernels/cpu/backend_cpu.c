/* backend_cpu.c: the reference backend's operation table. */
#include "cpu.h"

const struct pg_backend pg_backend_cpu = {
    .name = "cpu",
    .init = pg_cpu_init,
    .attention_work = pg_cpu_attention_work,
    .matmul_fwd = pg_cpu_matmul_fwd,
    .matmul_bwd = pg_cpu_matmul_bwd,
    .embedding_fwd = pg_cpu_embedding_fwd,
    .embedding_bwd = pg_cpu_embedding_bwd,
    .rmsnorm_fwd = pg_cpu_rmsnorm_fwd,
    .rmsnorm_bwd = pg_cpu_rmsnorm_bwd,
    .rope_fwd = pg_cpu_rope_fwd,
    .rope_bwd = pg_cpu_rope_bwd,
    .attention_fwd = pg_cpu_attention_fwd,
    .attention_bwd = pg_cpu_attention_bwd,
    .relu2_fwd = pg_cpu_relu2_fwd,
    .relu2_bwd = pg_cpu_relu2_bwd,
    .mix_fwd = pg_cpu_mix_fwd,
    .mix_bwd = pg_cpu_mix_bwd,
    .scale_add_fwd = pg_cpu_scale_add_fwd,
    .scale_add_bwd = pg_cpu_scale_add_bwd,
    .head_gain_fwd = pg_cpu_head_gain_fwd,
    .head_gain_bwd = pg_cpu_head_gain_bwd,
    .softcap_ce = pg_cpu_softcap_ce,
    /* varlen attention and logit_ce */
    .attention_varlen_fwd = pg_cpu_attention_varlen_fwd,
    .attention_varlen_bwd = pg_cpu_attention_varlen_bwd,
    .logit_ce = pg_cpu_logit_ce,
    /* end varlen/logit_ce */
    /* record.c */
    .xsa_fwd = pg_cpu_xsa_fwd,
    .xsa_bwd = pg_cpu_xsa_bwd,
    .head_gate_fwd = pg_cpu_head_gate_fwd,
    .head_gate_bwd = pg_cpu_head_gate_bwd,
    .smear_fwd = pg_cpu_smear_fwd,
    .smear_bwd = pg_cpu_smear_bwd,
    .smear1_fwd = pg_cpu_smear1_fwd,
    .smear1_bwd = pg_cpu_smear1_bwd,
    .skip_gate_fwd = pg_cpu_skip_gate_fwd,
    .skip_gate_bwd = pg_cpu_skip_gate_bwd,
    .lanes_fwd = pg_cpu_lanes_fwd,
    .lanes_bwd = pg_cpu_lanes_bwd,
    .scalar_add_fwd = pg_cpu_scalar_add_fwd,
    .scalar_add_bwd = pg_cpu_scalar_add_bwd,
    /* end record.c */
};
