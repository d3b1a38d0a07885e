/* backend_cuda.c: the CUDA backend's operation table (lib/backend.h) over the C API of ops.h.
 *
 * Plain C11, compiled by the host C compiler: into libpg next to nvcc's objects when built with
 * CUDA, and into libpg_cuda_emu.a (with the emulated kernels) for the tests. Every pointer the
 * operations take is device memory from .alloc, including ids, targets, doc_start and the
 * cross-entropy's losses; .upload/.download are the only ways in and out. pg_real is float in
 * libpg, so the fp32 operations of ops.h fill the table directly. */
#include "../../lib/backend.h"
#include "ops.h"
#include "optim_ops.h"

_Static_assert(sizeof(pg_real) == sizeof(float), "the CUDA backend is fp32: build it without PG_REAL_DOUBLE");

const struct pg_backend pg_backend_cuda = {
    .name = "cuda",
    .init = pg_cuda_init,
    .status = pg_cuda_status,
    .set_bf16 = pg_cuda_set_bf16,
    .mem_peak = pg_cuda_peak_bytes,
    .attention_work = pg_cuda_attention_table_work,
    .alloc = pg_cuda_alloc,
    .free = pg_cuda_free,
    .upload = pg_cuda_upload,
    .download = pg_cuda_download,
    .copy = pg_cuda_copy,
    .zero = pg_cuda_zero,
    .axpy = pg_cuda_axpy,
    .scale = pg_cuda_scale,
    .matmul_fwd = pg_cuda_matmul_fwd,
    .matmul_bwd = pg_cuda_matmul_bwd,
    .embedding_fwd = pg_cuda_embedding_fwd,
    .embedding_bwd = pg_cuda_embedding_bwd,
    .rmsnorm_fwd = pg_cuda_rmsnorm_fwd,
    .rmsnorm_bwd = pg_cuda_rmsnorm_bwd,
    .rope_fwd = pg_cuda_rope_fwd,
    .rope_bwd = pg_cuda_rope_bwd,
    .attention_fwd = pg_cuda_attention_fwd,
    .attention_bwd = pg_cuda_attention_bwd,
    .relu2_fwd = pg_cuda_relu2_fwd,
    .relu2_bwd = pg_cuda_relu2_bwd,
    .mix_fwd = pg_cuda_mix_fwd,
    .mix_bwd = pg_cuda_mix_bwd,
    .scale_add_fwd = pg_cuda_scale_add_fwd,
    .scale_add_bwd = pg_cuda_scale_add_bwd,
    .head_gain_fwd = pg_cuda_head_gain_fwd,
    .head_gain_bwd = pg_cuda_head_gain_bwd,
    .softcap_ce = pg_cuda_softcap_ce,
    .attention_varlen_fwd = pg_cuda_attention_varlen_fwd,
    .attention_varlen_bwd = pg_cuda_attention_varlen_bwd,
    .logit_ce = pg_cuda_logit_ce,
    .xsa_fwd = pg_cuda_xsa_fwd,
    .xsa_bwd = pg_cuda_xsa_bwd,
    .head_gate_fwd = pg_cuda_head_gate_fwd,
    .head_gate_bwd = pg_cuda_head_gate_bwd,
    .smear_fwd = pg_cuda_smear_fwd,
    .smear_bwd = pg_cuda_smear_bwd,
    .smear1_fwd = pg_cuda_smear1_fwd,
    .smear1_bwd = pg_cuda_smear1_bwd,
    .skip_gate_fwd = pg_cuda_skip_gate_fwd,
    .skip_gate_bwd = pg_cuda_skip_gate_bwd,
    .lanes_fwd = pg_cuda_lanes_fwd,
    .lanes_bwd = pg_cuda_lanes_bwd,
    .scalar_add_fwd = pg_cuda_scalar_add_fwd,
    .scalar_add_bwd = pg_cuda_scalar_add_bwd,
    .adam_update = pg_cuda_adam_update,
    .muon_step = pg_cuda_muon_step,
    .clip_grad_norm = pg_cuda_clip_grad_norm,
    .ema_update = pg_cuda_ema_update,
    .swa_add = pg_cuda_swa_add,
    .swa_average = pg_cuda_swa_average,
    .fake_quant_rows = pg_cuda_fake_quant_rows,
    .fake_quant_trit = pg_cuda_fake_quant_trit,
    .comm_id = pg_cuda_comm_id,
    .comm_init = pg_cuda_comm_init,
    .comm_sum = pg_cuda_comm_sum,
    .comm_free = pg_cuda_comm_free,
    .sgd_update = pg_cuda_sgd_update,
};
