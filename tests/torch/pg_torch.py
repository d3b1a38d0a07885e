#!/usr/bin/python3
"""pg_torch.py: an independent PyTorch implementation of the parameter-golf baseline GPT, for
test-only cross-checks and the CPU benchmark's reference run. Not part of the product: pgolf
itself has no Python. Needs Debian's python3-torch and python3-numpy (1.13 / 1.24); bench-gpu and
peak also run on a GPU machine's torch 2.x (scripts/bench-gpu.sh).

  pg_torch.py eval CKPT DATA_DIR PREFIX [SEQ_LEN]   val_loss of a pgolf checkpoint (safetensors),
                                                   loaded with load_state_dict(strict=True)
  pg_torch.py resave CKPT OUT                       load, then write the state_dict back as a
                                                   safetensors file of our own writing (no pgolf
                                                   metadata: pgolf must infer the shape)
  pg_torch.py perturb CKPT OUT [SEED [SCALE]]       the checkpoint with scale·N(0, 1) added to its
                                                   record-stack tensors (gates, lambdas, lane
                                                   weights, BigramHash, value embeddings), metadata kept
  pg_torch.py bench CKPT DATA_DIR PREFIX STEPS BATCH_TOKENS [THREADS]
                                                   training steps (forward, backward, Muon + Adam as
                                                   spec/baseline.md §4) on the CPU: prints the
                                                   median ms/step and tokens/s
  pg_torch.py bench-gpu -d DATA_DIR [--ckpt CKPT | --config JSON] [options]  (--help for them)
                                                   the GPU benchmark's reference: the model with
                                                   flash attention, torch.compile and bf16 autocast
                                                   as train_gpt.py, Muon (NS5 in bf16) + Adam as
                                                   bench; timed training steps and eval forwards,
                                                   one JSON line (--device cpu --no-compile: a CPU
                                                   run for tests)
  pg_torch.py bench-attn [--b B --t T --h H --kv KV --hd HD]  causal GQA SDPA forward(+backward) times
  pg_torch.py peak [--device D] [--n N]            the bf16 n×n×n product's TFLOP/s and the
                                                   device-to-device copy rate, one JSON line
  pg_torch.py take-shard PATTERN OUT N             a shard of N tokens: the first of PATTERN's
                                                   shards, repeated when they hold fewer
  pg_torch.py maxdiff A B                          the largest difference of two safetensors files
  pg_torch.py spm-info MODEL                       a SentencePiece model's piece types (counts, as
                                                   JSON) and pieces, read without sentencepiece
                                                   (SentencePieceLite: train_gpt.py's stand-in)

The model follows spec/baseline.md §3.2 in float32, written from the spec, not from pgolf's C,
with the record-stack switches of spec/techniques.md §2 read from the metadata: mlp_leaky_slope
(LeakyReLU(slope)² MLP, §2.5), rope_dims (partial RoPE, §2.2), ln_scale (1/sqrt(l+1) on a block's
norm outputs, §2.6), varlen_attn with bos_id (document-masked attention, §2.2), xsa_last_n (XSA,
§2.3), attn_out_gate / gated_attn / sparse_attn_gate with gate_window and sparse_attn_gate_scale
(head-output gates, §2.4), skip_gates (§2.7), num_loops / loop_start / loop_end (the virtual layer
list, always run when num_loops > 0, §2.8), parallel_start_layer and parallel_gptj (parallel
residuals, §2.9), smear_gate (v2 with the BOS mask) and smear_gate_v1 (§2.10), bigram_vocab /
bigram_dim (§2.11), ve_last_n / ve_dim (§2.12) and softcap_poly5 (§2.13); z_loss is a training
objective and is not scored, ortho_init and the schedule keys do not change the function. A
metadata key this script does not know is refused, so a new technique cannot be silently left out
of the comparison (bench-gpu, a speed reference, names it on stderr and goes on).
"""
import glob
import json
import math
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# PG_TORCH_BUG plants a bug, so a test can show that its comparison notices one: rope_sign (RoPE
# rotating the other way), skip_gate_sign (sigma(-gamma) in the gated U-Net skip), xsa_off (no
# exclusive self-attention), smear_bos (SmearGate v2 without its BOS mask), varlen_off (attention
# across documents), lanes_transposed (the two-lane write-back with P transposed);
# baseline_only ignores the leaky MLP, partial RoPE and LN scale switches.
BUG = os.environ.get("PG_TORCH_BUG", "")
DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}
# Every metadata key a pgolf checkpoint may hold that this model either implements or that does
# not change the function it computes (training hyperparameters, schedules, bookkeeping).
KNOWN_META = set("""format pgolf step vocab_size num_layers model_dim num_heads num_kv_heads mlp_mult tie_embeddings
train_seq_len rope_base logit_softcap qk_gain_init tied_embed_init_std seed iterations warmdown_iters warmup_steps
train_batch_tokens val_batch_size max_wallclock_seconds val_loss_every train_log_every grad_accum_steps embed_lr
head_lr tied_embed_lr matrix_lr scalar_lr muon_momentum muon_backend_steps muon_momentum_warmup_start
muon_momentum_warmup_steps beta1 beta2 adam_eps grad_clip_norm rms_norm_eps rope_bf16 mlp_leaky_slope rope_dims
ln_scale muon_polar_express muon_row_norm muon_wd embed_wd scalar_wd dequantized_from
skip_gates num_loops loop_start loop_end parallel_start_layer parallel_gptj smear_gate smear_gate_v1 gate_window
attn_out_gate gated_attn sparse_attn_gate sparse_attn_gate_scale gated_attn_init_std xsa_last_n bigram_vocab
bigram_dim ve_last_n ve_dim varlen_attn bos_id ortho_init softcap_poly5 z_loss
enable_looping_at warmdown_frac min_lr wd_taper_start wd_taper_final ema_decay swa_every swa_start_lr qat_start_lr
qat_bits qat_levels coprime_loader""".split())


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        buf = raw[base + a:base + b]
        if t["dtype"] == "BF16":
            u = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=DTYPES[t["dtype"]]).astype(np.float32)
        tensors[name] = torch.from_numpy(arr.reshape(t["shape"]).copy())
    return tensors, meta


def write_safetensors(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().contiguous().numpy().astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = meta or {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# FAST (set by bench-gpu only): the kernels parameter-golf's train_gpt.py runs where this torch has
# them (F.rms_norm, F.scaled_dot_product_attention: flash attention on a GPU), the RoPE tables and
# the block scalars in the activations' dtype (bf16 under autocast), as train_gpt.py casts them.
# Off, the model is the plain float32 reference the other subcommands compare with pgolf.
FAST = False
HAVE_SDPA, HAVE_RMS_NORM = hasattr(F, "scaled_dot_product_attention"), hasattr(F, "rms_norm")
SDPA_GQA = tuple(int(n) for n in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)  # enable_gqa


def rms_norm(x, eps):
    if FAST and HAVE_RMS_NORM:
        return F.rms_norm(x, (x.shape[-1],), eps=eps)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class Attn(nn.Module):
    """GQA attention (spec/baseline.md §3.2) with the record stack's options: value embeddings
    added to v (techniques §2.12), document-masked (varlen) attention (§2.2), XSA (§2.3) and one
    per-head output gate (§2.4) on the output before proj."""

    def __init__(self, d, h, kv, qk_gain, gate):
        super().__init__()
        self.h, self.kv, self.hd = h, kv, d // h
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, kv * self.hd, bias=False)
        self.c_v = nn.Linear(d, kv * self.hd, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.q_gain = nn.Parameter(torch.full((h,), qk_gain))
        # gate: None or (input width, scale c, multiplier): g = mult·σ(c·W[h]·u[:width])
        self.gate = gate
        if gate:
            self.attn_gate_w = nn.Parameter(torch.zeros(h, gate[0]))
        self.xsa = False

    def forward(self, u, cos, sin, eps, mask, ve=None):
        b, t, _ = u.shape
        q = self.c_q(u).view(b, t, self.h, self.hd)
        k = self.c_k(u).view(b, t, self.kv, self.hd)
        v = self.c_v(u)
        if ve is not None:  # v ← v + κ_l·scale·W·E_ve[ids], before attention (v has no norm)
            v = v + ve
        v = v.view(b, t, self.kv, self.hd)
        q, k = rms_norm(q, eps), rms_norm(k, eps)
        if FAST:
            cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        q = q * self.q_gain.to(q.dtype).view(1, 1, -1, 1)
        g = self.h // self.kv
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (b, heads, t, hd)
        if FAST and HAVE_SDPA:
            y = sdpa(qh, kh, vh, mask, g).transpose(1, 2)
        else:
            if mask is None:
                mask = causal_mask(t, u.device)
            kh, vh = kh.repeat_interleave(g, dim=1), vh.repeat_interleave(g, dim=1)
            s = (qh @ kh.transpose(-1, -2)) / math.sqrt(self.hd)
            y = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ vh
            y = y.transpose(1, 2)  # (b, t, h, hd)
        if self.xsa and BUG != "xsa_off":  # y ← y − (y·v̂)v̂ with the token's own value of its KV group
            yg = y.reshape(b, t, self.kv, g, self.hd)
            vn = F.normalize(v, dim=-1).unsqueeze(-2)
            y = (yg - (yg * vn).sum(-1, keepdim=True) * vn).reshape(b, t, self.h, self.hd)
        if self.gate:
            width, scale, mult = self.gate
            z = u[..., :width] @ self.attn_gate_w.t()  # (b, t, h)
            y = y * (mult * torch.sigmoid(scale * z)).unsqueeze(-1)
        return self.proj(y.reshape(b, t, -1))


def causal_mask(t, device):
    """True where a query may not look: above the diagonal."""
    return torch.ones(t, t, dtype=torch.bool, device=device).triu(1)[None, None]


def sdpa(q, k, v, mask, g):
    """F.scaled_dot_product_attention (b, heads, t, hd) with the explicit path's semantics: mask None
    is causal (flash attention; GQA through enable_gqa as train_gpt.py, where this torch has it),
    otherwise mask is True where a query may not look (varlen attention)."""
    if mask is None:
        if g > 1 and SDPA_GQA:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        if g > 1:
            k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if g > 1:
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=~mask)


def rope(x, cos, sin):
    if BUG == "rope_sign":  # negative control for the tests: the other rotation direction
        sin = -sin
    rd = 2 * cos.shape[-1]  # partial RoPE: only the first rd dims rotate, the rest pass through
    half = rd // 2
    x1, x2, rest = x[..., :half], x[..., half:rd], x[..., rd:]
    return torch.cat((x1 * cos + x2 * sin, -x1 * sin + x2 * cos, rest), dim=-1)


class MLP(nn.Module):
    def __init__(self, d, mult, slope):
        super().__init__()
        self.fc = nn.Linear(d, mult * d, bias=False)
        self.proj = nn.Linear(mult * d, d, bias=False)
        self.slope = slope

    def forward(self, u):
        return self.proj(F.leaky_relu(self.fc(u), self.slope).square())


class Block(nn.Module):
    def __init__(self, d, h, kv, mult, qk_gain, slope, ln, gate):
        super().__init__()
        self.attn, self.mlp = Attn(d, h, kv, qk_gain, gate), MLP(d, mult, slope)
        self.attn_scale = nn.Parameter(torch.ones(d))
        self.mlp_scale = nn.Parameter(torch.ones(d))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(d), torch.zeros(d))))
        self.ln = ln  # the layerwise LN scale of this block (1 when off)

    def attend(self, x, x0, cos, sin, eps, mask, ve):
        """x_in = m0⊙x + m1⊙x0 and a_scale⊙Attn(RMSNorm(x_in)·s_l)."""
        mix = self.resid_mix.to(x.dtype)
        xm = mix[0] * x + mix[1] * x0
        return xm, self.attn_scale.to(x.dtype) * self.attn(rms_norm(xm, eps) * self.ln, cos, sin, eps, mask, ve)

    def mlp_out(self, x, eps):
        return self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x, eps) * self.ln)

    def forward(self, x, x0, cos, sin, eps, mask, ve):  # techniques §2.1
        xm, a = self.attend(x, x0, cos, sin, eps, mask, ve)
        x = xm + a
        return x + self.mlp_out(x, eps)

    def forward_gptj(self, x, x0, cos, sin, eps, mask, ve):  # §2.9 GPT-J: both read x_in; x_in + a + m
        xm, a = self.attend(x, x0, cos, sin, eps, mask, ve)
        return xm + a + self.mlp_out(xm, eps)

    def forward_lanes(self, lane0, lane1, x0, cos, sin, eps, mask, ve, r, p):
        """§2.9 two lanes: attention reads mix(lane0, x0), the MLP reads lane1; P[i][j] is what
        sublayer i (0 attention, 1 MLP) writes into lane j."""
        _, a = self.attend(lane0, x0, cos, sin, eps, mask, ve)
        m = self.mlp_out(lane1, eps)
        if BUG == "lanes_transposed":
            p = p.t()
        return r[0] * lane0 + p[0, 0] * a + p[1, 0] * m, r[1] * lane1 + p[0, 1] * a + p[1, 1] * m


class BigramHash(nn.Module):  # techniques §2.11
    def __init__(self, buckets, dim, d):
        super().__init__()
        self.buckets = buckets
        self.embed = nn.Embedding(buckets, dim)
        self.proj = nn.Linear(dim, d, bias=False)
        self.scale = nn.Parameter(torch.full((1,), 0.05))

    def forward(self, ids):
        t = ids.to(torch.int32)
        mod = self.buckets - 1
        idx = torch.full_like(t, mod)  # the first token of a sequence: bucket B−1
        idx[:, 1:] = torch.bitwise_xor(36313 * t[:, 1:], 27191 * t[:, :-1]) % mod
        return self.scale * self.proj(self.embed(idx.long()))


class ValueEmbedding(nn.Module):  # techniques §2.12: one table shared by the VE layers
    def __init__(self, vocab, dim, kvd):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, kvd, bias=False)
        self.scale = nn.Parameter(torch.full((1,), 0.1))

    def forward(self, ids):
        return self.scale * self.proj(self.embed(ids))


class SmearV1(nn.Module):  # techniques §2.10 v1: x_t ← (1−σ(γ))⊙x_t + σ(γ)⊙x_{t−1}, x_{−1} = 0
    def __init__(self, d):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        s = torch.sigmoid(self.gate)
        return (1 - s) * x + s * F.pad(x[:, :-1], (0, 0, 1, 0))


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        def num(key, default, kind=int):
            return kind(c.get(key, default))
        d, layers = int(c["model_dim"]), int(c["num_layers"])
        h, kv = int(c["num_heads"]), int(c["num_kv_heads"])
        self.eps, self.cap = float(c["rms_norm_eps"]), float(c["logit_softcap"])
        self.base, self.hd = float(c["rope_base"]), d // h
        self.rope_bf16 = c.get("rope_bf16", "0") == "1"
        self.rd = int(c.get("rope_dims", "0")) or self.hd
        slope, ln_scale = float(c.get("mlp_leaky_slope", "0")), c.get("ln_scale", "0") == "1"
        if BUG == "baseline_only":
            self.rd, slope, ln_scale = self.hd, 0.0, False
        self.layers = layers
        self.poly5 = num("softcap_poly5", 0) == 1
        self.varlen, self.bos = num("varlen_attn", 0) == 1, num("bos_id", 1)
        win = num("gate_window", 12)
        gate = None  # (width, scale, multiplier) of the head-output gate, §2.4
        if num("attn_out_gate", 0):
            gate = (win, 1.0, 2.0)
        elif num("sparse_attn_gate", 0):
            gate = (win, num("sparse_attn_gate_scale", 1.0, float), 1.0)
        elif num("gated_attn", 0):
            gate = (d, 1.0, 1.0)
        # The embedding side, in state_dict order as pgolf writes it (any order loads).
        self.tok_emb = nn.Embedding(int(c["vocab_size"]), d)
        bigram = num("bigram_vocab", 0)
        self.bigram = BigramHash(bigram, num("bigram_dim", 128), d) if bigram else None
        self.ve_last_n = num("ve_last_n", 0)
        if self.ve_last_n:
            self.ve_shared = ValueEmbedding(int(c["vocab_size"]), num("ve_dim", 128), kv * self.hd)
            self.ve_layer_scales = nn.Parameter(torch.ones(self.ve_last_n))
        self.smear_v2 = num("smear_gate", 0) == 1
        if self.smear_v2:
            self.smear_gate = nn.Linear(win, 1, bias=False)
            self.smear_lambda = nn.Parameter(torch.zeros(1))
        self.smear = SmearV1(d) if num("smear_gate_v1", 0) else None
        self.blocks = nn.ModuleList(
            Block(d, h, kv, int(c["mlp_mult"]), float(c["qk_gain_init"]), slope,
                  1 / math.sqrt(i + 1) if ln_scale else 1.0, gate)
            for i in range(layers))
        for i in range(max(0, layers - num("xsa_last_n", 0)), layers):
            self.blocks[i].attn.xsa = True
        # The virtual layer list (§2.8): [0..s−1] + [s..e]×(loops+1) + [e+1..L−1]; evaluation
        # always runs it. The encoder is its first half; the skips pair encoder and decoder slots.
        loops, s, e = num("num_loops", 0), num("loop_start", 0), num("loop_end", 0)
        self.vlist = list(range(layers))
        if loops:
            self.vlist = list(range(s)) + list(range(s, e + 1)) * (loops + 1) + list(range(e + 1, layers))
        self.n_enc = len(self.vlist) // 2
        self.n_skip = min(self.n_enc, len(self.vlist) - self.n_enc)
        if self.n_skip:
            self.skip_weights = nn.Parameter(torch.ones(self.n_skip, d))
        self.skip_gates = nn.Parameter(torch.zeros(self.n_skip, d)) if self.n_skip and num("skip_gates", 0) else None
        # Parallel residuals (§2.9): from the first decoder slot whose layer >= parallel_start_layer.
        psl, self.gptj = num("parallel_start_layer", 0), num("parallel_gptj", 0) == 1
        self.par_from = len(self.vlist)
        if psl:
            self.par_from = next((i for i in range(self.n_enc, len(self.vlist)) if self.vlist[i] >= psl), len(self.vlist))
        if psl and not self.gptj:
            self.parallel_post_lambdas = nn.Parameter(torch.ones(layers, 4))  # P[2][2] row-major per layer
            self.parallel_resid_lambdas = nn.Parameter(torch.full((layers, 2), 1.1))
        if c.get("tie_embeddings", "1") == "0":
            self.lm_head = nn.Linear(d, int(c["vocab_size"]), bias=False)

    def forward(self, ids, targets):
        t, dev = ids.shape[1], ids.device
        if self.rope_bf16:  # the baseline after .bfloat16(): positions, inv_freq and tables in bf16
            inv = 1.0 / self.base ** (torch.arange(0, self.rd, 2, dtype=torch.float32, device=dev) / self.rd)
            ang = torch.outer(torch.arange(t, dtype=torch.bfloat16, device=dev), inv.to(torch.bfloat16))
            cos, sin = ang.cos().float()[None, :, None, :], ang.sin().float()[None, :, None, :]
        else:
            inv = 1.0 / self.base ** (torch.arange(0, self.rd, 2, dtype=torch.float64, device=dev) / self.rd)
            ang = torch.outer(torch.arange(t, dtype=torch.float64, device=dev), inv)
            cos, sin = ang.cos().float()[None, :, None, :], ang.sin().float()[None, :, None, :]
        # The attention mask (True = masked): causal, and with varlen also across documents, which
        # start at each bos_id (the tokens before a row's first BOS are one document). None stands
        # for the plain causal mask (the attention builds it, or flash attention needs none).
        mask = None if FAST and HAVE_SDPA else causal_mask(t, dev)
        if self.varlen and BUG != "varlen_off":
            doc = (ids == self.bos).cumsum(1)
            mask = causal_mask(t, dev) | (doc[:, None, :, None] != doc[:, None, None, :])
        e = self.tok_emb(ids)
        if self.bigram is not None:
            e = e + self.bigram(ids)
        if self.smear_v2:  # §2.10 v2 on the raw embedding: x_t += λ·σ(w·x_t[:win])·x_{t−1}·[id_t ≠ BOS]
            g = self.smear_lambda * torch.sigmoid(self.smear_gate(e[:, 1:, :self.smear_gate.in_features]))
            if BUG != "smear_bos":
                g = g * (ids[:, 1:] != self.bos).unsqueeze(-1).to(g.dtype)
            e = torch.cat((e[:, :1], e[:, 1:] + g * e[:, :-1]), dim=1)
        x = rms_norm(e, self.eps)
        if self.smear is not None:
            x = self.smear(x)
        x0 = x
        ve = self.ve_shared(ids) if self.ve_last_n else None
        outs, lane1 = [], None
        for i, layer in enumerate(self.vlist):
            blk = self.blocks[layer]
            if i == self.par_from:
                lane1 = x  # both lanes start as x, before this slot's skip (which goes into lane 0)
            j = i - self.n_enc
            if 0 <= j < self.n_skip:  # the U-Net skip, LIFO
                skip = self.skip_weights[j].to(x.dtype) * outs.pop()
                if self.skip_gates is not None:
                    s = torch.sigmoid(-self.skip_gates[j] if BUG == "skip_gate_sign" else self.skip_gates[j])
                    x = s * x + (1 - s) * skip
                else:
                    x = x + skip
            vi = layer - (self.layers - self.ve_last_n)
            ve_l = ve * self.ve_layer_scales[vi] if self.ve_last_n and vi >= 0 else None
            args = (cos, sin, self.eps, mask, ve_l)
            if i < self.par_from:
                x = blk(x, x0, *args)
            elif self.gptj:
                x = blk.forward_gptj(x, x0, *args)
            else:
                x, lane1 = blk.forward_lanes(x, lane1, x0, *args, self.parallel_resid_lambdas[layer],
                                             self.parallel_post_lambdas[layer].view(2, 2))
            if i < self.n_enc:
                outs.append(x)
        if lane1 is not None and not self.gptj:
            x = (x + lane1) / 2
        head = self.lm_head.weight if hasattr(self, "lm_head") else self.tok_emb.weight
        z = rms_norm(x, self.eps) @ head.t()
        if self.poly5:  # §2.13: c·clamp(u − u³/3 + u⁵/15, −1, 1), u = clamp(z/c, −2, 2)
            u = (z / self.cap).clamp(-2, 2)
            logits = self.cap * (u - u ** 3 / 3 + u ** 5 / 15).clamp(-1, 1)
        else:
            logits = self.cap * torch.tanh(z / self.cap)
        # z_loss is a training objective only: scoring is the plain cross-entropy
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")


def load_model(path):
    tensors, meta = read_safetensors(path)
    if "model_dim" not in meta:
        sys.exit(f"{path}: no pgolf metadata")
    unknown = sorted(set(meta) - KNOWN_META)
    if unknown:
        sys.exit(f"{path}: pg_torch.py does not implement the config keys {', '.join(unknown)}")
    model = GPT(meta)
    model.load_state_dict(tensors, strict=True)
    return model, meta


def read_tokens(pattern):
    out = []
    for f in sorted(glob.glob(pattern)):
        raw = open(f, "rb").read()
        hdr = np.frombuffer(raw[:1024], dtype="<i4")
        if hdr[0] != 20240520 or hdr[1] != 1:
            sys.exit(f"{f}: not a parameter-golf shard")
        out.append(np.frombuffer(raw[1024:1024 + 2 * int(hdr[2])], dtype="<u2"))
    return np.concatenate(out).astype(np.int64)


def cmd_eval(ckpt, data, prefix, seq_len=None):
    model, meta = load_model(ckpt)
    L = int(seq_len or meta["train_seq_len"])
    toks = read_tokens(f"{data}/{prefix}_val_*.bin")
    n = (len(toks) - 1) // L
    nll, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, n, 8):
            e = min(n, s + 8)
            x = torch.from_numpy(toks[s * L:e * L].reshape(-1, L))
            y = torch.from_numpy(toks[s * L + 1:e * L + 1].reshape(-1, L))
            nll += float(model(x, y))
            count += y.numel()
    print(json.dumps({"val_loss": nll / count, "tokens": count}))


# The record stack's tensors (techniques §2) that training leaves near their init (zero gates,
# lambdas of 1, a zero projection): perturb gives them values far from it.
PERTURBED = ("parallel_post_lambdas", "parallel_resid_lambdas", "skip_gates", "smear_gate.weight", "smear_lambda",
             "smear.gate", "attn_gate_w", "bigram.", "ve_shared.", "ve_layer_scales")


def cmd_perturb(ckpt, out, seed="1", scale="0.5"):
    """Adds scale·N(0, 1) (seeded) to the record stack's tensors of a checkpoint and writes it back
    with its metadata, so a comparison also covers values that a short training does not reach."""
    tensors, meta = read_safetensors(ckpt)
    gen = torch.Generator().manual_seed(int(seed))
    for name in sorted(tensors):
        if any(k in name for k in PERTURBED):
            tensors[name] += float(scale) * torch.randn(tensors[name].shape, generator=gen)
    write_safetensors(out, tensors, meta)


def newton_schulz5(g, steps, dtype=None):
    """Newton-Schulz-5 orthogonalization (spec/baseline.md §4.2), in g's dtype or in dtype (bf16 as
    train_gpt.py's zeropower_via_newtonschulz5)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    if dtype is not None:
        g = g.to(dtype)
    x = g / (g.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.t()
    for _ in range(steps):
        A = x @ x.t()
        B = b * A + c * A @ A
        x = a * x + B @ x
    return x.t() if tall else x


# The parameter groups as pgolf's (lib/model.c tensor kinds) and train_gpt.py's: the block matrices
# (and the record stack's BigramHash / value-embedding projections) take Muon; the embedding tables
# Adam at the embedding LR, an untied head Adam at head_lr, everything else (scales, gains,
# resid_mix, skip weights, the record stack's gates and lambdas) Adam at scalar_lr.
MUON_SUFFIXES = ("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight", "mlp.fc.weight",
                 "mlp.proj.weight")
MUON_OTHER = ("bigram.proj.weight", "ve_shared.proj.weight")
EMBED_TABLES = ("tok_emb.weight", "bigram.embed.weight", "ve_shared.embed.weight")


class BaselineOptim:
    """The baseline's optimizers (spec/baseline.md §4.1-4.2): Muon (momentum, Nesterov, NS5 in
    ns_dtype, scaled by sqrt(max(1, rows/cols))) and Adam (beta1, beta2, eps of the config) at the
    config's learning rates, constant (the LR schedule and the momentum warmup change no cost).
    Whatever the config's record-stack optimizer switches (muon_polar_express, muon_row_norm,
    muon_wd, embed_wd, scalar_wd): they cost a few pointwise passes, not a product. Shared by bench
    and bench-gpu, so the two step the same math. compile_ns compiles the NS function, as
    train_gpt.py does; fused takes torch's fused Adam (CUDA)."""

    def __init__(self, model, meta, ns_dtype=None, fused=False, compile_ns=False):
        named = list(model.named_parameters())
        self.mats = [p for n, p in named if n.startswith("blocks.") and n.endswith(MUON_SUFFIXES) or n in MUON_OTHER]
        tied = meta.get("tie_embeddings", "1") != "0"
        groups = {"embed": [], "head": [], "scalar": []}
        mat_ids = {id(p) for p in self.mats}
        for n, p in named:
            if id(p) in mat_ids:
                continue
            groups["embed" if n in EMBED_TABLES else "head" if n == "lm_head.weight" else "scalar"].append(p)
        lrs = {"embed": float(meta["tied_embed_lr"] if tied else meta["embed_lr"]),
               "head": float(meta.get("head_lr", 0.008)), "scalar": float(meta["scalar_lr"])}
        betas = (float(meta.get("beta1", 0.9)), float(meta.get("beta2", 0.95)))
        kw = {"fused": True} if fused else {}
        self.adams = [torch.optim.Adam([{"params": ps, "lr": lrs[k]}], betas=betas, eps=float(meta.get("adam_eps", 1e-8)),
                                       **kw) for k, ps in groups.items() if ps]
        self.bufs = [torch.zeros_like(p) for p in self.mats]
        self.lr, self.mom = float(meta["matrix_lr"]), float(meta.get("muon_momentum", 0.95))
        self.ns_steps, self.ns_dtype = int(meta["muon_backend_steps"]), ns_dtype
        self.ns = torch.compile(newton_schulz5) if compile_ns else newton_schulz5
        self.params = [p for _, p in named]

    def zero_grad(self):
        # zeroed in place, not set to None: freeing and reallocating the gradients every step made
        # glibc return and refetch their pages (the CPU reference ran 1.7x slower and erratic)
        for p in self.params:
            if p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self):
        for p, buf in zip(self.mats, self.bufs):
            buf.mul_(self.mom).add_(p.grad)
            g = self.ns(p.grad + self.mom * buf, self.ns_steps, self.ns_dtype)
            p.add_(g.to(p.dtype), alpha=-self.lr * max(1, p.shape[0] / p.shape[1]) ** 0.5)
        for adam in self.adams:
            adam.step()


class Batches:
    """Consecutive n-token spans of a token stream as (x, y) rows of L tokens, y one token ahead;
    starts over at the beginning when the stream runs out (as parameter-golf's loader wraps)."""

    def __init__(self, toks, L):
        self.toks, self.L, self.pos = toks, L, 0

    def next(self, n):
        if self.pos + n + 1 > len(self.toks):
            if n + 1 > len(self.toks):
                sys.exit(f"pg_torch.py: {len(self.toks)} tokens cannot fill a batch of {n}")
            self.pos = 0
        chunk = torch.from_numpy(self.toks[self.pos:self.pos + n + 1])
        self.pos += n
        return chunk[:-1].view(-1, self.L), chunk[1:].view(-1, self.L)


def train_step(fwd, opt, batches, accum, micro_tokens, device="cpu", autocast=None):
    """One optimizer step over accum micro-batches: the mean loss over all their tokens."""
    opt.zero_grad()
    total = 0.0
    for _ in range(accum):
        x, y = batches.next(micro_tokens)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if autocast is not None:
            with autocast():
                loss = fwd(x, y) / y.numel()
        else:
            loss = fwd(x, y) / y.numel()
        if accum > 1:
            loss = loss / accum
        loss.backward()
        total = total + loss.detach()
    opt.step()
    return total


def save_if_asked(model):
    """PG_TORCH_SAVE=FILE: the trained state_dict as float32 safetensors (tests compare runs)."""
    out = os.environ.get("PG_TORCH_SAVE")
    if out:
        write_safetensors(out, {k: v.float().cpu() for k, v in model.state_dict().items()})


def cmd_bench(ckpt, data, prefix, steps, batch_tokens, threads=2):
    torch.set_num_threads(int(threads))
    model, meta = load_model(ckpt)
    L = int(meta["train_seq_len"])
    batches = Batches(read_tokens(f"{data}/{prefix}_train_*.bin"), L)
    opt = BaselineOptim(model, meta)
    times = []
    for _ in range(int(steps)):
        t0 = time.perf_counter()
        train_step(model, opt, batches, 1, int(batch_tokens))
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times[1:]) * 1000
    save_if_asked(model)
    print(json.dumps({"step_ms": ms, "tokens_per_s": int(batch_tokens) / ms * 1000, "threads": int(threads)}))


# --- bench-gpu: the PyTorch reference of scripts/bench-gpu.sh -----------------------------------

# The baseline preset (spec/baseline.md §4.5), for a model built without a pgolf config
BASELINE = dict(x.split("=") for x in """vocab_size=1024 num_layers=9 model_dim=512 num_heads=8 num_kv_heads=4
mlp_mult=2 tie_embeddings=1 train_seq_len=1024 rope_base=10000 logit_softcap=30 qk_gain_init=1.5
tied_embed_init_std=0.005 train_batch_tokens=524288 grad_accum_steps=8 embed_lr=0.6 head_lr=0.008 tied_embed_lr=0.05
matrix_lr=0.04 scalar_lr=0.04 muon_momentum=0.95 muon_backend_steps=5 beta1=0.9 beta2=0.95 adam_eps=1e-08
rms_norm_eps=1.1920928955078125e-07""".split())


def read_tokens_upto(pattern, limit):
    """The first limit tokens of the shards (all when fewer), int64, without reading the rest."""
    out, have = [], 0
    for f in sorted(glob.glob(pattern)):
        hdr = np.fromfile(f, dtype="<i4", count=256)
        if hdr.size != 256 or hdr[0] != 20240520 or hdr[1] != 1:
            sys.exit(f"{f}: not a parameter-golf shard")
        n = min(int(hdr[2]), limit - have)
        out.append(np.fromfile(f, dtype="<u2", count=n, offset=1024).astype(np.int64))
        have += n
        if have >= limit:
            break
    if not out:
        sys.exit(f"pg_torch.py: no shards match {pattern}")
    return np.concatenate(out)


def build_model(args):
    """The model of a pgolf checkpoint (its weights), of a config (pg-train --dry-run --json, or a
    checkpoint's metadata) or the baseline preset, the latter two initialized as train_gpt.py
    (tok_emb N(0, tied_embed_init_std), zero output projections)."""
    if args.ckpt:
        tensors, meta = read_safetensors(args.ckpt)
    else:
        tensors, meta = None, dict(BASELINE)
        if args.config:
            c = json.load(open(args.config))
            meta = {k: str(v) for k, v in c.get("config", c).items()}
    unknown = sorted(set(meta) - KNOWN_META)
    if unknown:  # a speed reference, not a parity check: say so and go on
        print(f"pg_torch.py bench-gpu: not implemented, ignored: {', '.join(unknown)}", file=sys.stderr)
    model = GPT(meta)
    if tensors is not None:
        model.load_state_dict(tensors, strict=True)
    else:
        torch.manual_seed(int(meta.get("seed", 1337)))
        with torch.no_grad():
            model.tok_emb.weight.normal_(0, float(meta.get("tied_embed_init_std", 0.005)))
            for n, p in model.named_parameters():
                if n.endswith(("attn.proj.weight", "mlp.proj.weight")) or n == "lm_head.weight":
                    p.zero_()
    return model, meta, unknown


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def fast_path_check(model, batches, L, device):
    """The FAST kernels (F.rms_norm, SDPA) against the explicit float32 path on two sequences."""
    global FAST
    if not (HAVE_SDPA or HAVE_RMS_NORM):
        return None
    x, y = batches.next(2 * L)
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        FAST = False
        ref = float(model(x, y))
        FAST = True
        fast = float(model(x, y))
    batches.pos = 0
    return {"explicit": ref / y.numel(), "fast": fast / y.numel(), "rel": abs(fast - ref) / abs(ref)}


def cmd_bench_gpu(argv):
    import argparse
    global FAST
    ap = argparse.ArgumentParser(prog="pg_torch.py bench-gpu", description="""Training steps and eval
        forwards of the PyTorch reference (this file's model with flash attention, torch.compile and
        bf16 autocast as parameter-golf's train_gpt.py; Muon + Adam as BaselineOptim) on token
        shards. Prints one JSON object.""")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--ckpt", help="a pgolf checkpoint (weights and config)")
    src.add_argument("--config", help="a config: pg-train --dry-run --json output, or a flat JSON object")
    ap.add_argument("-d", "--data", required=True, help="folder of the token shards")
    ap.add_argument("--prefix", default="fineweb")
    ap.add_argument("--eval-data", help="folder of the val shards (default: --data)")
    ap.add_argument("--eval-prefix", help="their prefix (default: --prefix)")
    ap.add_argument("--steps", type=int, default=12, help="timed training steps (12)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first; the first compiles (3)")
    ap.add_argument("--accum", type=int, help="micro-batches per step (the config's grad_accum_steps)")
    ap.add_argument("--micro-seqs", type=int, help="sequences per micro-batch (the config's batch / accum / seq)")
    ap.add_argument("--eval-batches", type=int, default=16, help="timed eval forwards (16)")
    ap.add_argument("--eval-seqs", type=int, default=64, help="sequences per eval forward (64)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", dest="compile", action="store_true", default=None)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--autocast", dest="autocast", action="store_true", default=None, help="bf16 autocast")
    ap.add_argument("--no-autocast", dest="autocast", action="store_false")
    ap.add_argument("--fast", dest="fast", action="store_true", default=None,
                    help="flash attention and F.rms_norm where torch has them (default: on CUDA)")
    ap.add_argument("--no-fast", dest="fast", action="store_false")
    ap.add_argument("--ns-dtype", choices=("bf16", "fp32"), help="Newton-Schulz dtype (bf16 on CUDA, fp32 on the CPU)")
    ap.add_argument("--fullgraph", action="store_true", help="torch.compile(fullgraph=True), as train_gpt.py")
    ap.add_argument("--threads", type=int, help="CPU threads")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--no-train", action="store_true")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("pg_torch.py bench-gpu: no CUDA device (--device cpu for a CPU run)")
    compile_ = cuda if a.compile is None else a.compile
    if compile_ and not hasattr(torch, "compile"):
        sys.exit(f"pg_torch.py bench-gpu: torch {torch.__version__} has no torch.compile (--no-compile)")
    autocast_on = cuda if a.autocast is None else a.autocast
    fast = cuda if a.fast is None else a.fast
    ns_dtype = torch.bfloat16 if (a.ns_dtype or ("bf16" if cuda else "fp32")) == "bf16" else None
    if a.threads:
        torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    model, meta, unknown = build_model(a)
    L = int(meta["train_seq_len"])
    accum = a.accum or int(meta.get("grad_accum_steps", 8))
    micro = a.micro_seqs or max(1, int(meta.get("train_batch_tokens", 524288)) // (accum * L))
    micro_tokens = micro * L
    steps_total = a.warmup + a.steps
    need = 0 if a.no_train else (steps_total * accum + 2) * micro_tokens + 1
    batches = Batches(read_tokens_upto(f"{a.data}/{a.prefix}_train_*.bin", need), L) if need else None
    model.to(dev)
    res = {"device": torch.cuda.get_device_name(dev) if cuda else "cpu", "torch": torch.__version__,
           "num_params": sum(p.numel() for p in model.parameters()), "seq_len": L, "accum": accum,
           "micro_seqs": micro, "batch_tokens": accum * micro_tokens, "compiled": bool(compile_),
           "autocast_bf16": bool(autocast_on), "fast_kernels": bool(fast),
           "ns_dtype": "bf16" if ns_dtype else "fp32", "ignored_config_keys": unknown}
    if fast and cuda and batches is not None:
        res["fast_path_check"] = fast_path_check(model, batches, L, dev)
    FAST = fast
    if cuda:  # train_gpt.py's settings: TF32 for float32 products, flash attention only
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
            torch.backends.cuda.enable_cudnn_sdp(False)
        torch.backends.cuda.enable_flash_sdp(True)
        # a document mask needs the memory-efficient kernel (FlashAttention-3's varlen is not in
        # torch), math as the last resort
        torch.backends.cuda.enable_mem_efficient_sdp(bool(model.varlen))
        torch.backends.cuda.enable_math_sdp(bool(model.varlen))
    if autocast_on:  # train_gpt.py keeps tok_emb in bf16 (its Adam state too) and the rest in float32
        model.tok_emb.weight.data = model.tok_emb.weight.data.to(torch.bfloat16)
    fwd = torch.compile(model, dynamic=False, fullgraph=a.fullgraph) if compile_ else model
    ac = (lambda: torch.autocast(device_type=dev.type, dtype=torch.bfloat16)) if autocast_on else None
    res["setup_s"] = time.perf_counter() - t_start
    if not a.no_train:
        opt = BaselineOptim(model, meta, ns_dtype=ns_dtype, fused=cuda, compile_ns=compile_)
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        times, losses = [], []
        model.train()
        for i in range(steps_total):
            sync(dev)
            t0 = time.perf_counter()
            loss = train_step(fwd, opt, batches, accum, micro_tokens, dev, ac)
            sync(dev)
            times.append(time.perf_counter() - t0)
            losses.append(float(loss))
        timed = times[a.warmup:] or times[-1:]
        res.update({"compile_s": times[0] - statistics.median(timed) if compile_ else 0.0,
                    "first_step_ms": times[0] * 1000, "step_ms": statistics.median(timed) * 1000,
                    "step_ms_all": [round(t * 1000, 3) for t in times],
                    "tokens_per_s": accum * micro_tokens / statistics.median(timed), "loss_first": losses[0],
                    "loss_last": losses[-1], "peak_bytes": torch.cuda.max_memory_allocated(dev) if cuda else None})
        save_if_asked(model)
    if not a.no_eval:
        ed, ep = a.eval_data or a.data, a.eval_prefix or a.prefix
        n = a.eval_seqs * L
        vb = Batches(read_tokens_upto(f"{ed}/{ep}_val_*.bin", (a.eval_batches + 3) * n + 1), L)
        if len(vb.toks) < n + 1:  # a short val set: repeat it to fill one forward
            vb.toks = np.resize(vb.toks, n + 1)
        model.eval()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        times, nll = [], 0.0
        with torch.no_grad():
            for i in range(a.eval_batches + 2):
                x, y = vb.next(n)
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                sync(dev)
                t0 = time.perf_counter()
                if ac is not None:
                    with ac():
                        loss = fwd(x, y)
                else:
                    loss = fwd(x, y)
                sync(dev)
                times.append(time.perf_counter() - t0)
                nll += float(loss)
        timed = times[2:]
        res.update({"eval_compile_s": times[0] - statistics.median(timed) if compile_ else 0.0,
                    "eval_tokens": n * len(timed), "eval_seconds": sum(timed),
                    "eval_tokens_per_s": n * len(timed) / sum(timed), "eval_loss": nll / (n * len(times)),
                    "eval_peak_bytes": torch.cuda.max_memory_allocated(dev) if cuda else None})
    print(json.dumps(res))


def cmd_peak(argv):
    """The device's bf16 matrix-product rate (median of reps n×n×n products after warm-up, random
    data) and its device-to-device copy rate (bytes read + written per second)."""
    import argparse
    ap = argparse.ArgumentParser(prog="pg_torch.py peak")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--copy-mib", type=int, default=2048)
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"

    def timed(fn):
        for _ in range(3):
            fn()
        ts = []
        for _ in range(a.reps):
            if cuda:
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                fn()
                e1.record()
                e1.synchronize()
                ts.append(e0.elapsed_time(e1) / 1000)
            else:
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(a.n, a.n, device=dev, generator=gen).to(torch.bfloat16)
    y = torch.randn(a.n, a.n, device=dev, generator=gen).to(torch.bfloat16)
    out = torch.empty(a.n, a.n, device=dev, dtype=torch.bfloat16)
    t_mm = timed(lambda: torch.matmul(x, y, out=out))
    x = y = out = None  # free them before the copy buffers
    nbytes = a.copy_mib << 20
    src = torch.empty(nbytes, dtype=torch.uint8, device=dev).fill_(1)
    dst = torch.empty_like(src)
    t_cp = timed(lambda: dst.copy_(src))
    print(json.dumps({"device": torch.cuda.get_device_name(dev) if cuda else "cpu", "torch": torch.__version__,
                      "matmul_n": a.n, "reps": a.reps, "matmul_ms": t_mm * 1000, "bf16_tflops": 2 * a.n ** 3 / t_mm / 1e12,
                      "copy_mib": a.copy_mib, "copy_ms": t_cp * 1000, "copy_gbps": 2 * nbytes / t_cp / 1e9}))


def cmd_take_shard(src_pattern, out, ntokens):
    """A shard of ntokens tokens: the first ones of src_pattern's shards, repeated when fewer (the
    benchmark's eval set; a small train shard for a GPU machine)."""
    src = read_tokens_upto(src_pattern, int(ntokens))
    toks = np.resize(src, int(ntokens)).astype("<u2")
    hdr = np.zeros(256, dtype="<i4")
    hdr[:3] = (20240520, 1, len(toks))
    with open(out + ".tmp", "wb") as f:
        f.write(hdr.tobytes() + toks.tobytes())
    os.replace(out + ".tmp", out)
    print(json.dumps({"tokens": len(toks), "source_tokens": len(src)}))


def cmd_maxdiff(a, b):
    """The largest absolute difference between two safetensors files' tensors (same names)."""
    ta, _ = read_safetensors(a)
    tb, _ = read_safetensors(b)
    if sorted(ta) != sorted(tb):
        sys.exit(f"{a} and {b} hold different tensors")
    worst = max(((ta[k] - tb[k]).abs().max().item(), k) for k in ta)
    print(json.dumps({"max_abs_diff": worst[0], "tensor": worst[1]}))


class SentencePieceLite:
    """The part of sentencepiece.SentencePieceProcessor that train_gpt.py's byte tables use
    (vocab_size, id_to_piece, is_control / is_unknown / is_unused / is_byte), read straight from the
    .model protobuf (ModelProto.pieces = field 1: piece = 1, score = 2, type = 3), for a machine
    without the sentencepiece module (bench-gpu.sh puts it on train_gpt.py's path there)."""
    NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

    def __init__(self, model_file=None, **_):
        self.pieces, self.types = [], []
        raw = open(model_file, "rb").read()
        for field, wire, val in self._fields(raw):
            if field == 1 and wire == 2:
                piece, kind = "", self.NORMAL
                for f2, w2, v2 in self._fields(val):
                    if f2 == 1 and w2 == 2:
                        piece = v2.decode("utf-8")
                    elif f2 == 3 and w2 == 0:
                        kind = v2
                self.pieces.append(piece)
                self.types.append(kind)

    @staticmethod
    def _fields(buf):
        i = 0

        def varint():
            nonlocal i
            v = shift = 0
            while True:
                b = buf[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    return v
        while i < len(buf):
            key = varint()
            field, wire = key >> 3, key & 7
            if wire == 0:
                yield field, wire, varint()
            elif wire == 1:
                yield field, wire, buf[i:i + 8]
                i += 8
            elif wire == 2:
                n = varint()
                yield field, wire, buf[i:i + n]
                i += n
            elif wire == 5:
                yield field, wire, buf[i:i + 4]
                i += 4
            else:
                raise ValueError(f"unsupported protobuf wire type {wire}")

    def vocab_size(self):
        return len(self.pieces)

    def id_to_piece(self, i):
        return self.pieces[i]

    def is_control(self, i):
        return self.types[i] == self.CONTROL

    def is_unknown(self, i):
        return self.types[i] == self.UNKNOWN

    def is_unused(self, i):
        return self.types[i] == self.UNUSED

    def is_byte(self, i):
        return self.types[i] == self.BYTE


def cmd_spm_info(model_file):
    sp = SentencePieceLite(model_file=model_file)
    kinds = {}
    for t in sp.types:
        kinds[t] = kinds.get(t, 0) + 1
    print(json.dumps({"vocab_size": sp.vocab_size(), "control": kinds.get(3, 0), "unknown": kinds.get(2, 0),
                      "byte": kinds.get(6, 0), "unused": kinds.get(5, 0), "normal": kinds.get(1, 0)}))
    for p in sp.pieces:
        print(p)


def cmd_bench_attn(argv):
    """PyTorch's causal GQA attention (F.scaled_dot_product_attention, bf16, is_causal, enable_gqa:
    its flash backend on a GPU) at one shape, forward and forward+backward: one JSON line each, in
    tests/tools/bench_attn's format and FLOPs count (4*hd per causal (query, key) pair and head;
    3.5x with the backward), for scripts/bench-gpu.sh's attention ratios."""
    import argparse
    import torch.nn.functional as F
    ap = argparse.ArgumentParser(prog="pg_torch.py bench-attn")
    for name, default in (("b", 64), ("t", 1024), ("h", 8), ("kv", 4), ("hd", 64), ("iters", 20), ("warmup", 3)):
        ap.add_argument("--" + name, type=int, default=default)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    gen = torch.Generator(device=dev).manual_seed(0)

    def rnd(heads):
        return torch.randn(a.b, heads, a.t, a.hd, device=dev, generator=gen, dtype=torch.bfloat16).requires_grad_()

    q, k, v = rnd(a.h), rnd(a.kv), rnd(a.kv)
    dout = torch.randn(a.b, a.h, a.t, a.hd, device=dev, generator=gen, dtype=torch.bfloat16)
    pairs = a.b * a.t * (a.t + 1) / 2
    for bwd in (0, 1):
        def step():
            try:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            except TypeError:  # torch < 2.5: no enable_gqa, the kv heads repeated instead
                r = a.h // a.kv
                o = F.scaled_dot_product_attention(q, k.repeat_interleave(r, 1), v.repeat_interleave(r, 1),
                                                   is_causal=True)
            if bwd:
                o.backward(dout)
        for _ in range(a.warmup):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.iters):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1000 / a.iters
        flops = 4.0 * a.hd * a.h * pairs * (3.5 if bwd else 1)
        print(json.dumps({"op": "torch_sdpa_" + ("fwd_bwd" if bwd else "fwd"), "b": a.b, "t": a.t, "h": a.h,
                          "kv": a.kv, "hd": a.hd, "doc": 0, "ms": round(ms, 4),
                          "tflops": round(flops / (ms / 1000) / 1e12, 2)}), flush=True)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "eval":
        cmd_eval(*args)
    elif cmd == "resave":
        model, _ = load_model(args[0])
        write_safetensors(args[1], model.state_dict())
    elif cmd == "perturb":
        cmd_perturb(*args)
    elif cmd == "bench":
        cmd_bench(*args)
    elif cmd == "bench-gpu":
        cmd_bench_gpu(args)
    elif cmd == "peak":
        cmd_peak(args)
    elif cmd == "bench-attn":
        cmd_bench_attn(args)
    elif cmd == "take-shard":
        cmd_take_shard(*args)
    elif cmd == "maxdiff":
        cmd_maxdiff(*args)
    elif cmd == "spm-info":
        cmd_spm_info(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
