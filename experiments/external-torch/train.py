#!/usr/bin/env python3
"""A PyTorch trainer of cbs's Qwen3-style model, for cbs sweep's external executor.

`cbs sweep` with run.executor = "external" runs it once per branch. It starts from the parent
checkpoint cbs names (config.json and model.safetensors with Hugging Face names, and the AdamW
moments of optimizer.safetensors when parent.optimizer_state is "keep"), a dense Qwen3 or a
Qwen3-MoE model, trains on the token stream `cbs data export` wrote for the branch (the
sequences, masks and eval set a cbs branch would use), and appends one line per optimizer step
to metrics.jsonl in the results format (docs/results-format.md), with cbs's gradient-noise-scale
keys when a step has several micro-batches.

Every setting comes from the environment cbs gives the command (CBS_BATCH_SEQS, CBS_LR, ...,
docs/executors.md) and from the branch spec it names (CBS_SPEC: the LR multiplier of each
parameter group and the AdamW details that have no placeholder); a flag of the same name
overrides the environment, so the script also runs by hand.

On SIGTERM or SIGINT it finishes its step, writes a checkpoint to {out}/ckpt and exits 130;
run again, it resumes from that checkpoint bit for bit. It also checkpoints at every eval mark.
On a GPU the matrix products run under bfloat16 autocast; on the CPU everything is float32.

Needs torch and numpy only: safetensors files are read and written below.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import zipfile

# torch.set_num_threads does not reach a BLAS library torch calls through (Debian's torch calls
# OpenBLAS), which reads its thread count from the environment as it loads: set it from
# CBS_THREADS first, or a few trainers side by side each start one BLAS thread per core.
if os.environ.get("CBS_THREADS", "0") not in ("", "0"):
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, os.environ["CBS_THREADS"])

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

# ---------------------------------------------------------------------------------------------
# safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
# shape and byte range, then the raw little-endian data.

NP_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    """Returns ({name: float32 or native numpy array}, metadata dict)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        blob = f.read()
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, t in header.items():
        lo, hi = t["data_offsets"]
        raw = blob[lo:hi]
        if t["dtype"] == "BF16":  # bfloat16 is the top half of a float32
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, dtype=np.dtype(NP_DTYPES[t["dtype"]]).newbyteorder("<"))
        out[name] = a.reshape(t["shape"])
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: numpy array} as float32, tensors in the order given."""
    header, offset, chunks = {}, 0, []
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        chunks.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in chunks:
            f.write(b)


def read_weights(ckpt):
    """The weights of a checkpoint: model.safetensors, or the shards its index names."""
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if not os.path.exists(index):
        return read_safetensors(os.path.join(ckpt, "model.safetensors"))[0]
    with open(index) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for s in shards:
        out.update(read_safetensors(os.path.join(ckpt, s))[0])
    return out


# ---------------------------------------------------------------------------------------------
# The model: a Qwen3-style decoder whose parameter names are Hugging Face's, so that a cbs
# checkpoint loads by name.


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()  # in float32 also under autocast
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def rope_tables(seq_len, head_dim, theta):
    """cos and sin [seq_len, head_dim / 2] of the rotary embedding, the angles in float64."""
    half = head_dim // 2
    inv = theta ** (-2.0 * np.arange(half, dtype=np.float64) / head_dim)
    ang = np.arange(seq_len, dtype=np.float64)[:, None] * inv[None, :]
    return torch.from_numpy(np.cos(ang).astype(np.float32)), torch.from_numpy(np.sin(ang).astype(np.float32))


def rope(x, cos, sin):
    """Rotates the two halves of each head of x [B, heads, L, head_dim] by the position's angles."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c["hidden_size"], c["head_dim"]
        self.heads, self.kv_heads, self.head_dim = c["num_attention_heads"], c["num_key_value_heads"], hd
        self.q_proj = nn.Linear(d, self.heads * hd, bias=False)
        self.k_proj = nn.Linear(d, self.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, self.kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(self.heads * hd, d, bias=False)
        self.q_norm = RMSNorm(hd, c["rms_norm_eps"])
        self.k_norm = RMSNorm(hd, c["rms_norm_eps"])

    def forward(self, x, cos, sin, causal):
        B, L, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, L, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, L, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        g = self.heads // self.kv_heads  # grouped-query attention: query head h reads kv head h // g
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(self.head_dim)
        if causal:
            scores = scores.masked_fill(torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        o = torch.softmax(scores, dim=-1).to(v.dtype) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, L, -1))


class MLP(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.gate_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.down_proj = nn.Linear(ff, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SparseMoE(nn.Module):
    """Qwen3-MoE's sparse block, routed as Hugging Face routes: p = softmax(x Wr^T) over the
    experts, the k largest p (ties: the lower expert first) as mixing weights, renormalised to
    sum 1 with norm_topk_prob; the output is the weighted sum of the chosen experts' SwiGLU
    outputs. The softmax and the renormalisation run in float64 and are rounded to float32, as
    cbs computes them, so that a near tie between two experts is broken the same way."""

    def __init__(self, c):
        super().__init__()
        d, E = c["hidden_size"], c["num_experts"]
        self.k, self.norm_topk = c["num_experts_per_tok"], c["norm_topk_prob"]
        self.gate = nn.Linear(d, E, bias=False)
        self.experts = nn.ModuleList(MLP(d, c["moe_intermediate_size"]) for _ in range(E))

    def forward(self, x):
        B, L, d = x.shape
        h = x.reshape(-1, d)
        with torch.autocast(device_type=x.device.type, enabled=False):  # routing stays float32
            p = torch.softmax((h.float() @ self.gate.weight.t()).double(), dim=-1).float()
        # A stable descending sort puts the lower expert first among equal probabilities (topk
        # leaves their order open).
        top = torch.sort(p, dim=-1, descending=True, stable=True)
        w, e = top.values[:, :self.k], top.indices[:, :self.k]
        if self.norm_topk:
            w = (w.double() / w.double().sum(-1, keepdim=True)).float()
        out = torch.zeros_like(h)
        for j, expert in enumerate(self.experts):
            rows, slot = torch.where(e == j)
            if rows.numel():
                out = out.index_add(0, rows, expert(h[rows]) * w[rows, slot, None].to(h.dtype))
        return out.view(B, L, d), (p, e)


def sparse_layer(c, i):
    """Hugging Face's rule: layer i is sparse unless mlp_only_layers lists it, when (i + 1) is a
    multiple of decoder_sparse_step."""
    return c.get("model_type") == "qwen3_moe" and i not in c["mlp_only_layers"] and (i + 1) % max(1, c["decoder_sparse_step"]) == 0


class Layer(nn.Module):
    def __init__(self, c, i):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.sparse = sparse_layer(c, i)
        self.mlp = SparseMoE(c) if self.sparse else MLP(c["hidden_size"], c["intermediate_size"])

    def forward(self, x, cos, sin, causal, routes):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, causal)
        if not self.sparse:
            return x + self.mlp(self.post_attention_layernorm(x))
        y, r = self.mlp(self.post_attention_layernorm(x))
        routes.append(r)
        return x + y


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c, i) for i in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Qwen3(nn.Module):
    def __init__(self, c, seq_len):
        super().__init__()
        self.model = Decoder(c)
        self.tied = c.get("tie_word_embeddings", False)
        self.lm_head = None if self.tied else nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        cos, sin = rope_tables(seq_len, c["head_dim"], c["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.experts = c["num_experts"] if c.get("model_type") == "qwen3_moe" else 0
        sparse = sum(layer.sparse for layer in self.model.layers)
        # Hugging Face adds the load-balancing loss to the training loss only with
        # output_router_logits; a zero coefficient adds nothing.
        self.aux_coef = c["router_aux_loss_coef"] if sparse and c.get("output_router_logits") else 0.0
        self.aux = None  # the load-balancing loss of the last forward pass, when aux_coef != 0

    def forward(self, ids, causal):
        x = self.model.embed_tokens(ids)
        L = ids.shape[1]
        routes = []
        for layer in self.model.layers:
            x = layer(x, self.cos[:L], self.sin[:L], causal, routes)
        self.aux = self.balance_loss(routes) if self.aux_coef else None
        x = self.model.norm(x)
        head = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        return x @ head.to(x.dtype).t()

    def balance_loss(self, routes):
        """Hugging Face's load_balancing_loss_func without padding, over the T rows (tokens x
        sparse layers) of the forward pass: E sum_j f_j P_j, f_j the share of the T x k
        assignments that went to expert j (no gradient), P_j the mean router probability."""
        p = torch.cat([r[0] for r in routes])
        e = torch.cat([r[1] for r in routes])
        T = p.shape[0]
        f = torch.bincount(e.flatten(), minlength=self.experts).to(p.dtype) / T
        return self.experts * (f * p.sum(0) / T).sum()


# Hugging Face's Qwen3-MoE defaults, for the keys a qwen3_moe config.json leaves out.
MOE_DEFAULTS = {"num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768, "decoder_sparse_step": 1,
                "norm_topk_prob": False, "mlp_only_layers": [], "router_aux_loss_coef": 0.001, "output_router_logits": False}


def model_config(ckpt):
    """config.json read as cbs reads it: Hugging Face's defaults filled in, and what this model
    does not compute refused by name."""
    path = os.path.join(ckpt, "config.json")
    with open(path) as f:
        c = json.load(f)

    def refuse(key, why):
        sys.exit(f"train.py: {path}: {key} = {json.dumps(c[key])}: {why}")

    kind = c.get("model_type") or "qwen3"
    if kind not in ("qwen3", "qwen3_moe"):
        refuse("model_type", 'this trainer has the Qwen3 ("qwen3") and Qwen3-MoE ("qwen3_moe") models only')
    for key, ok, why in [
        ("hidden_act", lambda v: v in (None, "silu"), 'the MLPs are SwiGLU: want "silu"'),
        ("attention_bias", lambda v: not v, "the attention projections have no bias"),
        ("use_sliding_window", lambda v: not v, "every layer has full attention, not sliding-window attention"),
        ("attention_dropout", lambda v: not v, "this trainer has no dropout: want 0"),
        ("rope_scaling", lambda v: v is None, "plain RoPE with rope_theta only: want null"),
        ("rope_parameters", lambda v: v is None or (v.get("rope_type", "default") == "default" and set(v) <= {"rope_type", "rope_theta"}),
         'plain RoPE only: want {"rope_type": "default", "rope_theta": ...}'),
        ("layer_types", lambda v: v is None or set(v) <= {"full_attention"}, "every layer has full attention"),
        ("quantization_config", lambda v: v is None, "this trainer trains unquantized weights"),
    ]:
        if key in c and not ok(c[key]):
            refuse(key, why)
    if c.get("rope_theta") is None:
        c["rope_theta"] = (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    if kind == "qwen3_moe":
        for key, v in MOE_DEFAULTS.items():
            if key not in c or (c[key] is None and key != "router_aux_loss_coef"):
                c[key] = v
        if not (1 <= c["num_experts_per_tok"] <= c["num_experts"]) or c["moe_intermediate_size"] < 1 or c["decoder_sparse_step"] < 1:
            refuse("num_experts_per_tok", f"want 1 to num_experts = {c['num_experts']}, with positive moe_intermediate_size and decoder_sparse_step")
    if c.get("num_key_value_heads") is None:
        c["num_key_value_heads"] = c["num_attention_heads"]
    if not c.get("head_dim"):
        c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
    c.setdefault("rms_norm_eps", 1e-6)
    return c


def load_model(ckpt, c, seq_len):
    m = Qwen3(c, seq_len)
    weights = read_weights(ckpt)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name not in weights:
                sys.exit(f"train.py: {ckpt} has no tensor {name}")
            w = torch.from_numpy(np.array(weights[name], dtype=np.float32))
            if tuple(w.shape) != tuple(p.shape):
                sys.exit(f"train.py: {ckpt}: {name} has shape {tuple(w.shape)}, the config wants {tuple(p.shape)}")
            p.copy_(w)
    return m


# ---------------------------------------------------------------------------------------------
# The optimizer: AdamW with cbs's parameter groups. A group's peak LR is the branch's ({lr}:
# optimizer.lr x its lr_scale) times the group's multiplier (optimizer.groups; the spec's
# lr_peak holds the products). Weight decay applies to matrices, to the embedding only with
# decay_embedding, and to norm weights only with decay_norms.


def group_of(name):
    if "embed_tokens" in name:
        return "embedding"
    if name.startswith("lm_head"):
        return "head"
    if name.endswith(".mlp.gate.weight"):
        return "router"  # of a sparse layer; a dense MLP's is mlp.gate_proj
    if "self_attn" in name:
        return "attention"  # q/k norms included, as in cbs
    if ".mlp." in name:
        return "mlp"
    return "norms"


def make_optimizer(model, spec, a):
    opt_spec = spec.get("optimizer", {})
    groups = {}
    for name, p in model.named_parameters():
        g = group_of(name)
        if p.dim() == 2:
            decays = opt_spec.get("decay_embedding", True) if g == "embedding" else True
        else:
            decays = opt_spec.get("decay_norms", False)
        key = (g, decays)
        if key not in groups:
            peak = a.lr * opt_spec.get("groups", {}).get(g, 1.0)
            groups[key] = {"params": [], "names": [], "peak": peak, "lr": peak,
                           "weight_decay": a.weight_decay if decays else 0.0}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return torch.optim.AdamW(list(groups.values()), betas=(a.beta1, a.beta2), eps=opt_spec.get("eps", 1e-8))


def load_moments(opt, ckpt):
    """Continues the AdamW moments and step count of a cbs (or this trainer's) checkpoint."""
    moments, meta = read_safetensors(os.path.join(ckpt, "optimizer.safetensors"))
    step = float(meta.get("step", 0))
    for group in opt.param_groups:
        for name, p in zip(group["names"], group["params"]):
            opt.state[p] = {
                "step": torch.tensor(step),
                "exp_avg": torch.from_numpy(np.array(moments[name + ".exp_avg"], dtype=np.float32)).to(p.device),
                "exp_avg_sq": torch.from_numpy(np.array(moments[name + ".exp_avg_sq"], dtype=np.float32)).to(p.device),
            }


def lr_factor(tokens, a):
    """cbs's schedule in tokens: linear warmup, then the shape, evaluated at the tokens a step
    brings the run to."""
    if a.warmup_tokens > 0 and tokens < a.warmup_tokens:
        return tokens / a.warmup_tokens
    r = a.min_lr_ratio
    if a.schedule in ("linear", "cosine"):
        span = a.budget_tokens - a.warmup_tokens
        if span <= 0:
            return 1.0
        x = min(1.0, (tokens - a.warmup_tokens) / span)
        return 1 - (1 - r) * x if a.schedule == "linear" else r + (1 - r) * 0.5 * (1 + math.cos(math.pi * x))
    if a.schedule == "wsd":
        start = a.budget_tokens - a.decay_tokens
        return 1.0 if tokens < start else 1 - (1 - r) * min(1.0, (tokens - start) / a.decay_tokens)
    return 1.0


# ---------------------------------------------------------------------------------------------
# The objectives, with cbs's normalisation: each row's weight already divides by the sequences
# of the whole step, so the micro-batches' losses add up to the step's and their gradients
# accumulate to its gradient.


def batch_loss(model, tokens, mask, p, objective, mask_id, norm_seqs, amp):
    """Per-sequence losses [B] times 1 / norm_seqs; their sum is the batch's loss."""
    L = tokens.shape[1]
    with amp():
        if objective == "ar":  # causal next-token cross-entropy, mean over the L-1 predictions
            logits = model(tokens, causal=True)[:, :-1]
            ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none")
            return ce.view(-1, L - 1).sum(1) / ((L - 1) * norm_seqs)
        # masked diffusion: predict the masked tokens, each weighted 1/p, per token of the sequence
        logits = model(torch.where(mask, torch.full_like(tokens, mask_id), tokens), causal=False)
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens.reshape(-1), reduction="none")
        return (ce.view(-1, L) * mask).sum(1) / p / (L * norm_seqs)


@torch.no_grad()
def evaluate(model, data, objective, mask_id, shards, chunk, device, amp):
    """The mean loss over the frozen eval set, overall and per contiguous shard (cbs's
    eval_loss and eval_shards)."""
    n = len(data["eval_tokens"])
    losses = []
    for lo in range(0, n, chunk):
        t, m, p = rows(data, "eval", lo, min(n, lo + chunk), device)
        losses.append(batch_loss(model, t, m, p, objective, mask_id, 1, amp).double().cpu())
    losses = torch.cat(losses)
    per_shard = [losses[s * n // shards:(s + 1) * n // shards].mean().item() for s in range(shards)]
    return losses.mean().item(), per_shard


def rows(data, split, lo, hi, device):
    t = torch.from_numpy(data[split + "_tokens"][lo:hi].astype(np.int64)).to(device)
    if split + "_mask" not in data:
        return t, None, None
    m = torch.from_numpy(data[split + "_mask"][lo:hi]).to(device)
    p = torch.from_numpy(data[split + "_p"][lo:hi]).to(device=device, dtype=torch.float32)
    return t, m, p


def micro_grad_sq(params, prev):
    """The squared norm of the gradient the last micro-batch added, in float64; prev becomes the
    accumulated gradient."""
    ss = 0.0
    for q, before in zip(params, prev):
        ss = ss + (q.grad.double() - before.double()).pow(2).sum()
        before.copy_(q.grad)
    return float(ss)


# The time constant, in tokens, of the noise-scale EMAs: one window for every batch size, so that
# branches smooth alike (cbs's).
GNS_EMA_TOKENS = 128 << 10


def noise_scale(stats, small_sq, big_sq, b_small, b_big):
    """The gradient-noise-scale keys of a metrics line, defined as cbs defines them (McCandlish et
    al.): unbiased |G|^2 and tr(Sigma) from the micro-batches' mean squared gradient norm
    (small_sq, b_small tokens each) and the whole batch's (big_sq, b_big tokens), smoothed as
    bias-corrected EMAs; B_simple is the ratio of the EMAs. stats carries the EMAs."""
    bs, bb = float(b_small), float(b_big)
    g2 = (bb * big_sq - bs * small_sq) / (bb - bs)
    tr = (small_sq - big_sq) / (1 / bs - 1 / bb)
    beta = math.exp(-bb / GNS_EMA_TOKENS)
    stats["gns_trace_ema"] = beta * stats["gns_trace_ema"] + (1 - beta) * tr
    stats["gns_grad_sq_ema"] = beta * stats["gns_grad_sq_ema"] + (1 - beta) * g2
    stats["gns_ema_weight"] = beta * stats["gns_ema_weight"] + (1 - beta)
    te, ge = stats["gns_trace_ema"] / stats["gns_ema_weight"], stats["gns_grad_sq_ema"] / stats["gns_ema_weight"]
    keys = {"gns_small_sq": small_sq, "gns_big_sq": big_sq, "gns_b_small": b_small, "gns_b_big": b_big,
            "gns_trace_ema": te, "gns_grad_sq_ema": ge}
    if ge > 0:
        keys["gns_b_simple"] = te / ge
    return keys


def fnv1a(h, tokens):
    """cbs's stream_hash: FNV-1a over the token ids, continued from h."""
    for t in tokens.ravel().tolist():
        h = ((h ^ (t & 0xFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


# ---------------------------------------------------------------------------------------------
# Checkpoints, in cbs's layout: config.json, model.safetensors, optimizer.safetensors and a
# trainer.json that cbs reads (so `cbs eval`, `cbs ckpt inspect` and a further cbs sweep can start
# from it). Written to a folder beside ckpt/ and renamed into place.


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def save_checkpoint(out, model, opt, config, state, hyper):
    final, tmp, old = os.path.join(out, "ckpt"), os.path.join(out, "ckpt.tmp"), os.path.join(out, "ckpt.old")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_safetensors(os.path.join(tmp, "model.safetensors"),
                      {n: p.detach().float().cpu().numpy() for n, p in model.named_parameters()}, {"format": "pt"})
    moments, step = {}, 0
    for group in opt.param_groups:
        for name, p in zip(group["names"], group["params"]):
            s = opt.state[p]
            moments[name + ".exp_avg"] = s["exp_avg"].cpu().numpy()
            moments[name + ".exp_avg_sq"] = s["exp_avg_sq"].cpu().numpy()
            step = int(s["step"].item())
    names = [n for n, _ in model.named_parameters()]
    ordered = {k + sfx: moments[k + sfx] for sfx in (".exp_avg", ".exp_avg_sq") for k in names}
    write_safetensors(os.path.join(tmp, "optimizer.safetensors"), ordered, dict(hyper, step=step))
    state = dict(state, files={f: sha256(os.path.join(tmp, f)) for f in ("config.json", "model.safetensors", "optimizer.safetensors")})
    with open(os.path.join(tmp, "trainer.json"), "w") as f:
        json.dump(state, f, indent=2)
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(final):
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def truncate_metrics(path, step):
    """Keeps the lines of steps up to step: those after it will be trained again."""
    keep = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    if not line.endswith("\n") or json.loads(line)["step"] > step:
                        break
                except (ValueError, KeyError):
                    break
                keep.append(line)
    with open(path, "w") as f:
        f.writelines(keep)


# ---------------------------------------------------------------------------------------------


def env(name, cast=str, default=None):
    v = os.environ.get("CBS_" + name)
    return default if v in (None, "") else cast(v)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="what `cbs data export` wrote for the branch (.npz or folder)")
    p.add_argument("--out", default=env("OUT"), help="branch directory ({out}); metrics.jsonl and ckpt/ go here")
    p.add_argument("--spec", default=env("SPEC"), help="branch.json ({spec}): group LR multipliers, AdamW eps and decay")
    p.add_argument("--parent", default=env("PARENT"), help="parent checkpoint ({parent})")
    p.add_argument("--optimizer-state", default=env("OPTIMIZER_STATE", str, "reset"), help="keep or reset ({optimizer_state})")
    p.add_argument("--objective", default=env("OBJECTIVE"), help="ar or mdm ({objective})")
    p.add_argument("--batch-tokens", type=int, default=env("BATCH_TOKENS", int))
    p.add_argument("--batch-seqs", type=int, default=env("BATCH_SEQS", int))
    p.add_argument("--micro-batch", type=int, default=env("MICRO_BATCH", int))
    p.add_argument("--budget-tokens", type=int, default=env("BUDGET_TOKENS", int))
    p.add_argument("--lr", type=float, default=env("LR", float), help="peak LR of the base group ({lr}), logged as lr")
    p.add_argument("--warmup-tokens", type=int, default=env("WARMUP_TOKENS", int, 0))
    p.add_argument("--schedule", default=env("SCHEDULE", str, "constant"))
    p.add_argument("--decay-tokens", type=int, default=env("DECAY_TOKENS", int, 0))
    p.add_argument("--min-lr-ratio", type=float, default=env("MIN_LR_RATIO", float, 0.0))
    p.add_argument("--weight-decay", type=float, default=env("WEIGHT_DECAY", float, 0.0))
    p.add_argument("--beta1", type=float, default=env("BETA1", float, 0.9))
    p.add_argument("--beta2", type=float, default=env("BETA2", float, 0.95))
    p.add_argument("--clip", type=float, default=env("CLIP", float, 0.0))
    p.add_argument("--eval-every-tokens", type=int, default=env("EVAL_EVERY_TOKENS", int, 0))
    p.add_argument("--seed", type=int, default=env("SEED", int, 0))
    p.add_argument("--threads", type=int, default=env("THREADS", int, 0), help="torch CPU threads; 0: torch's default (CBS_THREADS also sets the BLAS library's)")
    p.add_argument("--device", default=env("DEVICE", str, "auto"), help="auto, cpu, cuda or cuda:N ({device})")
    a = p.parse_args()
    missing = [k for k in ("out", "parent", "objective", "batch_tokens", "batch_seqs", "micro_batch", "budget_tokens", "lr")
               if getattr(a, k) in (None, "")]
    if missing:
        p.error("missing " + ", ".join("--" + k.replace("_", "-") for k in missing) +
                " (cbs sweep sets them in the environment; this trainer starts from a parent checkpoint)")
    return a


def load_data(path):
    """The arrays and meta.json of `cbs data export`, from an .npz or a folder."""
    if os.path.isdir(path):
        with open(os.path.join(path, "meta.json")) as f:
            meta = json.load(f)
        return {n: np.load(os.path.join(path, n + ".npy")) for n in meta["arrays"]}, meta
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("meta.json"))
    with np.load(path) as z:
        return {n: z[n] for n in meta["arrays"]}, meta


def main():
    a = parse_args()
    spec = {}
    if a.spec:
        with open(a.spec) as f:
            spec = json.load(f)
    if spec.get("eval_ewa_tokens"):
        sys.exit(f"train.py: eval.weight_average = {spec['eval_ewa_tokens']} tokens: this trainer evaluates the weights themselves; set it to 0")
    data, meta = load_data(a.data)
    L, B, mb = meta["seq_len"], a.batch_seqs, a.micro_batch
    steps = a.budget_tokens // a.batch_tokens
    if meta["format"] != "cbs-branch-data/1" or meta["objective"] != a.objective or B * L != a.batch_tokens \
            or len(data["train_tokens"]) * L != a.budget_tokens or B % mb:
        sys.exit(f"train.py: {a.data} ({meta['objective']}, {len(data['train_tokens'])} sequences of {L}) does not fit "
                 f"the branch ({a.objective}, {steps} steps of {B} sequences, micro-batches of {mb})")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    want = "cuda" if a.device in ("auto", "") else a.device
    device = torch.device(want if want.startswith("cuda") and torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and device.type == "cpu" and a.device not in ("auto", ""):
        sys.exit(f"train.py: --device {a.device}: torch sees no GPU")

    def amp():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    # Start from our own checkpoint when it is of this branch, else from the parent.
    out, ckpt = a.out, os.path.join(a.out, "ckpt")
    os.makedirs(out, exist_ok=True)
    mine = None
    if os.path.exists(os.path.join(ckpt, "trainer.json")):
        with open(os.path.join(ckpt, "trainer.json")) as f:
            mine = json.load(f)
        same = mine.get("external_torch", {}) == {"data": meta["stream_hash"], "batch_tokens": a.batch_tokens, "lr": a.lr}
        mine = mine if same and 0 < mine["step"] <= steps else None
    config = model_config(ckpt if mine else a.parent)
    config["attention"] = "causal" if a.objective == "ar" else "bidirectional"
    mask_id = config.get("mask_token_id", -1)
    if a.objective == "mdm" and (mask_id is None or mask_id < 0):
        sys.exit(f"train.py: objective mdm needs a mask token: {a.parent}/config.json has no mask_token_id")
    torch.manual_seed(a.seed)  # nothing here draws at random; kept for a trainer that does
    model = load_model(ckpt if mine else a.parent, config, L).to(device)
    opt = make_optimizer(model, spec, a)
    # The noise-scale EMAs continue on a resume and start afresh in a new branch, as in cbs.
    stats = {k: 0.0 for k in ("gns_ema_weight", "gns_grad_sq_ema", "gns_trace_ema")}
    if mine:
        load_moments(opt, ckpt)
        start, h = mine["step"], int(mine["stream_hash"], 16)
        stats.update({k: v for k, v in mine.get("extra", {}).items() if k in stats})
        print(f"train.py: resuming at step {start} ({start * a.batch_tokens} tokens)", file=sys.stderr)
    else:
        if a.optimizer_state == "keep":
            load_moments(opt, a.parent)
        start, h = 0, 14695981039346656037
    metrics_path = os.path.join(out, "metrics.jsonl")
    truncate_metrics(metrics_path, start)

    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))

    def checkpoint(step, lr):
        save_checkpoint(out, model, opt, config, {
            "objective": a.objective, "step": step, "tokens_seen": step * a.batch_tokens,
            "data_cursor": meta["first_position"] + step * B, "fork_cursor": meta["fork_cursor"],
            "seed": meta["seed"], "stream_hash": format(h, "x"), "batch_tokens": a.batch_tokens, "lr": lr,
            "external_torch": {"data": meta["stream_hash"], "batch_tokens": a.batch_tokens, "lr": a.lr},
            "extra": dict(stats)},
            {"beta1": a.beta1, "beta2": a.beta2, "eps": opt.defaults["eps"], "weight_decay": a.weight_decay, "clip": a.clip})

    params = [p for p in model.parameters()]
    accum = B // mb
    # The small-batch half of the noise-scale estimate needs each micro-batch's own gradient: the
    # accumulated gradient less what it held before (prev).
    prev = [torch.zeros_like(p) for p in params] if accum > 1 else None
    metrics = open(metrics_path, "a")
    for step in range(start + 1, steps + 1):
        tokens = step * a.batch_tokens
        factor = lr_factor(tokens, a)
        for g in opt.param_groups:
            g["lr"] = g["peak"] * factor
        # Every parameter gets a gradient, zero for an expert no token reached, so that AdamW
        # decays it and its moments as cbs does (torch skips a parameter whose grad is None).
        for i, q in enumerate(params):
            if q.grad is None:
                q.grad = torch.zeros_like(q)
            else:
                q.grad.zero_()
            if prev:
                prev[i].zero_()
        loss, small_sq = 0.0, 0.0
        for lo in range((step - 1) * B, step * B, mb):
            t, m, p = rows(data, "train", lo, lo + mb, device)
            micro = batch_loss(model, t, m, p, a.objective, mask_id, B, amp).sum()
            if model.aux is not None:
                # Each micro-batch's own load-balancing loss, weighted by its share of the step's
                # sequences, as cbs weighs it: the whole batch's when the step is one micro-batch.
                micro = micro + model.aux_coef * (mb / B) * model.aux
            micro.backward()
            loss += micro.item()
            if prev:
                # |micro-batch gradient|^2, rescaled from the step's normalisation to the mean over
                # the micro-batch's sequences; averaged over the step's micro-batches.
                small_sq += micro_grad_sq(params, prev) * accum
        big_sq = sum(q.grad.double().pow(2).sum() for q in params).item()
        norm = math.sqrt(big_sq)
        if a.clip > 0 and a.clip / (norm + 1e-6) < 1:  # torch's clip_grad_norm_, norm in float64
            for q in params:
                q.grad.mul_(a.clip / (norm + 1e-6))
        opt.step()
        h = fnv1a(h, data["train_tokens"][(step - 1) * B:step * B])
        line = {"tokens": tokens, "step": step, "lr": a.lr * factor, "train_loss": loss, "grad_norm": norm}
        if prev:
            line.update(noise_scale(stats, small_sq, big_sq, mb * L, a.batch_tokens))
        finite = math.isfinite(loss) and math.isfinite(norm)
        if finite and (step == steps or (a.eval_every_tokens and tokens % a.eval_every_tokens == 0)):
            line["eval_loss"], line["eval_shards"] = evaluate(model, data, a.objective, mask_id, meta["eval_shards"], max(mb, 64), device, amp)
        metrics.write(json.dumps(line) + "\n")  # one write per line, flushed
        metrics.flush()
        if not finite:
            # json.dumps wrote NaN or Infinity: cbs reads that line as a divergence.
            print(f"train.py: non-finite loss at step {step}; stopping", file=sys.stderr)
            return 0
        if "eval_loss" in line:
            checkpoint(step, a.lr * factor)
        if stop and step < steps:
            checkpoint(step, a.lr * factor)
            print(f"train.py: signal {stop[0]} at step {step}; checkpoint written, run again to resume", file=sys.stderr)
            return 130
    if format(h, "x") != meta["stream_hash"]:
        sys.exit(f"train.py: read a stream with hash {h:x}, the export says {meta['stream_hash']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
