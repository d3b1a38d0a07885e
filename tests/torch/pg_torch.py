#!/usr/bin/python3
"""pg_torch.py: an independent PyTorch implementation of the parameter-golf baseline GPT, for
test-only cross-checks and the CPU benchmark's reference run. Not part of the product: pgolf
itself has no Python. Needs Debian's python3-torch and python3-numpy (1.13 / 1.24).

  pg_torch.py eval CKPT DATA_DIR PREFIX [SEQ_LEN]   val_loss of a pgolf checkpoint (safetensors),
                                                   loaded with load_state_dict(strict=True)
  pg_torch.py resave CKPT OUT                       load, then write the state_dict back as a
                                                   safetensors file of our own writing (no pgolf
                                                   metadata: pgolf must infer the shape)
  pg_torch.py bench CKPT DATA_DIR PREFIX STEPS BATCH_TOKENS [THREADS]
                                                   training steps (forward, backward, Muon + Adam as
                                                   spec/baseline.md §4) on the CPU: prints the
                                                   median ms/step and tokens/s

The model follows spec/baseline.md §3.2 in float32, written from the spec, not from pgolf's C,
with the record-stack switches of spec/techniques.md read from the metadata: mlp_leaky_slope
(LeakyReLU(slope)² MLP, §2.5), rope_dims (partial RoPE, §2.2) and ln_scale (1/sqrt(l+1) on a
block's norm outputs, §2.6). A metadata key this script does not know is refused, so a new
technique cannot be silently left out of the comparison.
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

# PG_TORCH_BUG=rope_sign plants a bug, so a test can show that its comparison notices one;
# PG_TORCH_BUG=baseline_only ignores the record-stack switches (the model is the baseline's).
BUG = os.environ.get("PG_TORCH_BUG", "")
DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}
# Every metadata key a pgolf checkpoint may hold that this model either implements or that does
# not change the function it computes (training hyperparameters, bookkeeping).
KNOWN_META = set("""format pgolf step vocab_size num_layers model_dim num_heads num_kv_heads mlp_mult tie_embeddings
train_seq_len rope_base logit_softcap qk_gain_init tied_embed_init_std seed iterations warmdown_iters warmup_steps
train_batch_tokens val_batch_size max_wallclock_seconds val_loss_every train_log_every grad_accum_steps embed_lr
head_lr tied_embed_lr matrix_lr scalar_lr muon_momentum muon_backend_steps muon_momentum_warmup_start
muon_momentum_warmup_steps beta1 beta2 adam_eps grad_clip_norm rms_norm_eps rope_bf16 mlp_leaky_slope rope_dims
ln_scale muon_polar_express muon_row_norm muon_wd embed_wd scalar_wd dequantized_from""".split())


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


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().contiguous().numpy().astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rms_norm(x, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class Attn(nn.Module):
    def __init__(self, d, h, kv, qk_gain):
        super().__init__()
        self.h, self.kv, self.hd = h, kv, d // h
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, kv * self.hd, bias=False)
        self.c_v = nn.Linear(d, kv * self.hd, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.q_gain = nn.Parameter(torch.full((h,), qk_gain))

    def forward(self, u, cos, sin, eps):
        b, t, _ = u.shape
        q = self.c_q(u).view(b, t, self.h, self.hd)
        k = self.c_k(u).view(b, t, self.kv, self.hd)
        v = self.c_v(u).view(b, t, self.kv, self.hd)
        q, k = rope(rms_norm(q, eps), cos, sin), rope(rms_norm(k, eps), cos, sin)
        q = q * self.q_gain.view(1, 1, -1, 1)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (b, heads, t, hd)
        g = self.h // self.kv
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        y = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, -1))


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
    def __init__(self, d, h, kv, mult, qk_gain, slope, ln):
        super().__init__()
        self.attn, self.mlp = Attn(d, h, kv, qk_gain), MLP(d, mult, slope)
        self.attn_scale = nn.Parameter(torch.ones(d))
        self.mlp_scale = nn.Parameter(torch.ones(d))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(d), torch.zeros(d))))
        self.ln = ln  # the layerwise LN scale of this block (1 when off)

    def forward(self, x, x0, cos, sin, eps):
        x = self.resid_mix[0] * x + self.resid_mix[1] * x0
        x = x + self.attn_scale * self.attn(rms_norm(x, eps) * self.ln, cos, sin, eps)
        return x + self.mlp_scale * self.mlp(rms_norm(x, eps) * self.ln)


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, layers = int(c["model_dim"]), int(c["num_layers"])
        self.eps, self.cap = float(c["rms_norm_eps"]), float(c["logit_softcap"])
        self.base, self.hd = float(c["rope_base"]), d // int(c["num_heads"])
        self.rope_bf16 = c.get("rope_bf16", "0") == "1"
        self.rd = int(c.get("rope_dims", "0")) or self.hd
        slope, ln_scale = float(c.get("mlp_leaky_slope", "0")), c.get("ln_scale", "0") == "1"
        if BUG == "baseline_only":
            self.rd, slope, ln_scale = self.hd, 0.0, False
        self.tok_emb = nn.Embedding(int(c["vocab_size"]), d)
        self.n_enc = layers // 2
        self.n_skip = min(self.n_enc, layers - self.n_enc)
        self.skip_weights = nn.Parameter(torch.ones(self.n_skip, d))
        self.blocks = nn.ModuleList(
            Block(d, int(c["num_heads"]), int(c["num_kv_heads"]), int(c["mlp_mult"]), float(c["qk_gain_init"]),
                  slope, 1 / math.sqrt(i + 1) if ln_scale else 1.0)
            for i in range(layers))

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
        x = x0 = rms_norm(self.tok_emb(ids), self.eps)
        outs = []
        for i, blk in enumerate(self.blocks):
            if i >= self.n_enc and outs:
                x = x + self.skip_weights[i - self.n_enc] * outs.pop()
            x = blk(x, x0, cos, sin, self.eps)
            if i < self.n_enc:
                outs.append(x)
        logits = rms_norm(x, self.eps) @ self.tok_emb.weight.t()
        logits = self.cap * torch.tanh(logits / self.cap)
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
    scalars = [p for n, p in model.named_parameters() if n.startswith("blocks.") and p.ndim < 2] + [model.skip_weights]
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
    elif cmd == "bench":
        cmd_bench(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
