#!/usr/bin/python3
"""pg_torch.py: an independent PyTorch implementation of the parameter-golf baseline GPT, for
test-only cross-checks and the CPU benchmark's reference run. Not part of the product: pgolf
itself has no Python. Needs Debian's python3-torch and python3-numpy (1.13 / 1.24).

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
of the comparison.
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
qat_bits coprime_loader""".split())


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


def rms_norm(x, eps):
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
        q, k = rope(rms_norm(q, eps), cos, sin), rope(rms_norm(k, eps), cos, sin)
        q = q * self.q_gain.view(1, 1, -1, 1)
        g = self.h // self.kv
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (b, heads, t, hd)
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
        xm = self.resid_mix[0] * x + self.resid_mix[1] * x0
        return xm, self.attn_scale * self.attn(rms_norm(xm, eps) * self.ln, cos, sin, eps, mask, ve)

    def mlp_out(self, x, eps):
        return self.mlp_scale * self.mlp(rms_norm(x, eps) * self.ln)

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
        t = ids.shape[1]
        if self.rope_bf16:  # the baseline after .bfloat16(): positions, inv_freq and tables in bf16
            inv = 1.0 / self.base ** (torch.arange(0, self.rd, 2, dtype=torch.float32) / self.rd)
            ang = torch.outer(torch.arange(t, dtype=torch.bfloat16), inv.to(torch.bfloat16))
            cos, sin = ang.cos().float()[None, :, None, :], ang.sin().float()[None, :, None, :]
        else:
            inv = 1.0 / self.base ** (torch.arange(0, self.rd, 2, dtype=torch.float64) / self.rd)
            ang = torch.outer(torch.arange(t, dtype=torch.float64), inv)
            cos, sin = ang.cos().float()[None, :, None, :], ang.sin().float()[None, :, None, :]
        # The attention mask (True = masked): causal, and with varlen also across documents, which
        # start at each bos_id (the tokens before a row's first BOS are one document).
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)[None, None]
        if self.varlen and BUG != "varlen_off":
            doc = (ids == self.bos).cumsum(1)
            mask = mask | (doc[:, None, :, None] != doc[:, None, None, :])
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
                skip = self.skip_weights[j] * outs.pop()
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


def newton_schulz5(g, steps):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.t()
    for _ in range(steps):
        A = x @ x.t()
        B = b * A + c * A @ A
        x = a * x + B @ x
    return x.t() if tall else x


def cmd_bench(ckpt, data, prefix, steps, batch_tokens, threads=2):
    torch.set_num_threads(int(threads))
    model, meta = load_model(ckpt)
    L = int(meta["train_seq_len"])
    toks = read_tokens(f"{data}/{prefix}_train_*.bin")
    mats = [p for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("blocks.")]
    # Adam: everything else but the embedding (the block scalars, skip weights and the record stack's tensors)
    seen = {id(p) for p in mats} | {id(model.tok_emb.weight)}
    scalars = [p for p in model.parameters() if id(p) not in seen]
    adam = torch.optim.Adam([{"params": [model.tok_emb.weight], "lr": float(meta["tied_embed_lr"])},
                             {"params": scalars, "lr": float(meta["scalar_lr"])}], betas=(0.9, 0.95), eps=1e-8)
    # Times the baseline's optimizers whatever the checkpoint's optimizer switches (muon_polar_express,
    # muon_row_norm, muon_wd, embed_wd, scalar_wd): they cost a few pointwise passes, not a product.
    bufs = [torch.zeros_like(p) for p in mats]
    lr, mom, ns = float(meta["matrix_lr"]), 0.95, int(meta["muon_backend_steps"])
    times, pos = [], 0
    for _ in range(int(steps)):
        t0 = time.perf_counter()
        n = int(batch_tokens)
        chunk = torch.from_numpy(toks[pos:pos + n + 1])
        pos += n
        x, y = chunk[:-1].view(-1, L), chunk[1:].view(-1, L)
        loss = model(x, y) / y.numel()
        model.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p, buf in zip(mats, bufs):
                buf.mul_(mom).add_(p.grad)
                g = newton_schulz5(p.grad + mom * buf, ns)
                p.add_(g, alpha=-lr * max(1, p.shape[0] / p.shape[1]) ** 0.5)
        adam.step()
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times[1:]) * 1000
    print(json.dumps({"step_ms": ms, "tokens_per_s": int(batch_tokens) / ms * 1000, "threads": int(threads)}))


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
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
