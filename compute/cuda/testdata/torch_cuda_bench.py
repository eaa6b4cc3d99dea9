#!/usr/bin/env python3
"""PyTorch eager on CUDA, the same model and step as `cbs bench` and torch_ref.py bench.

torch_ref.py is the CPU reference; this is its GPU counterpart for speed only: a dense
Qwen3-style decoder (RMSNorm, q/k norm, RoPE rotate-half, GQA, SwiGLU, untied head), fp32
weights, bf16 autocast for the products (--amp off: fp32 with tf32 off), AdamW (foreach, the
default on CUDA) after clip_grad_norm_. Attention is the eager math (scores, mask, softmax,
matmul) unless --sdpa selects F.scaled_dot_product_attention (flash attention where available).
Prints one JSON object with torch_ref.py bench's keys and the same FLOP formula.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(hidden=768, layers=12, heads=12, kv_heads=12, head_dim=64, ff=3072, vocab=50304,
                     seq=1024, batch=16, steps=10, warmup=3, seed=0).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    ap.add_argument("--amp", choices=["bf16", "off"], default="bf16")
    ap.add_argument("--sdpa", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the loss (not eager)")
    a = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    d, H, KV, hd = a.hidden, a.heads, a.kv_heads, a.head_dim

    def mat(o, i):
        return (torch.randn(o, i, generator=g) * 0.02).to(dev).requires_grad_()

    def vec(n):
        return torch.ones(n, device=dev, requires_grad=True)

    P = {"embed": mat(a.vocab, d), "norm": vec(d), "head": mat(a.vocab, d)}
    for l in range(a.layers):
        P.update({f"{l}.in": vec(d), f"{l}.q": mat(H * hd, d), f"{l}.k": mat(KV * hd, d), f"{l}.v": mat(KV * hd, d),
                  f"{l}.o": mat(d, H * hd), f"{l}.qn": vec(hd), f"{l}.kn": vec(hd), f"{l}.post": vec(d),
                  f"{l}.gate": mat(a.ff, d), f"{l}.up": mat(a.ff, d), f"{l}.down": mat(d, a.ff)})
    L = a.seq
    pos = torch.arange(L, dtype=torch.float64)
    inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = pos[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).float().to(dev)
    sin = torch.cat([ang.sin(), ang.sin()], -1).float().to(dev)
    causal = torch.ones(L, L, dtype=torch.bool, device=dev).triu(1)

    def rms(x, w):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * w

    def rope(x):
        x1, x2 = x.chunk(2, -1)
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def loss_fn(ids):
        B = ids.shape[0]
        x = P["embed"][ids]
        for l in range(a.layers):
            h = rms(x, P[f"{l}.in"])
            q = (h @ P[f"{l}.q"].t()).view(B, L, H, hd)
            k = (h @ P[f"{l}.k"].t()).view(B, L, KV, hd)
            v = (h @ P[f"{l}.v"].t()).view(B, L, KV, hd)
            q = rope(rms(q, P[f"{l}.qn"]).transpose(1, 2))
            k = rope(rms(k, P[f"{l}.kn"]).transpose(1, 2))
            v = v.transpose(1, 2)
            if KV != H:
                k = k.repeat_interleave(H // KV, 1)
                v = v.repeat_interleave(H // KV, 1)
            if a.sdpa:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
                s = s.masked_fill(causal, float("-inf"))
                o = s.softmax(-1).to(v.dtype) @ v
            x = x + o.transpose(1, 2).reshape(B, L, H * hd) @ P[f"{l}.o"].t()
            h = rms(x, P[f"{l}.post"])
            x = x + (F.silu(h @ P[f"{l}.gate"].t()) * (h @ P[f"{l}.up"].t())) @ P[f"{l}.down"].t()
        logits = rms(x, P["norm"]) @ P["head"].t()
        return F.cross_entropy(logits[:, :-1].reshape(-1, a.vocab).float(), ids[:, 1:].reshape(-1))

    step_loss = torch.compile(loss_fn) if a.compile else loss_fn
    decay = [p for p in P.values() if p.dim() == 2]
    other = [p for p in P.values() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    times = []
    for step in range(a.warmup + a.steps):
        ids = torch.randint(a.vocab, (a.batch, L), generator=g).to(dev)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.amp == "bf16"):
            loss = step_loss(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(P.values()), 1.0)
        opt.step()
        torch.cuda.synchronize()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    tokens = a.batch * L
    n_linear = a.layers * (H * hd * d + 2 * KV * hd * d + d * H * hd + 3 * d * a.ff) + a.vocab * d
    flops = 6 * n_linear * tokens + 12 * a.layers * L * H * hd * tokens
    med = statistics.median(times)
    print(json.dumps({
        "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(),
        "amp": a.amp, "attention": "sdpa" if a.sdpa else "eager math", "compiled": a.compile,
        "batch": a.batch, "seq": L, "tokens_per_step": tokens, "steps": a.steps, "warmup": a.warmup,
        "seconds": {"median": med, "min": min(times)},
        "tokens_per_s": {"median": tokens / med, "best": tokens / min(times)},
        "flops_per_step": flops, "tflops_per_s": flops / med / 1e12,
        "params": sum(p.numel() for p in P.values()), "last_loss": loss.item(),
        "max_memory_bytes": torch.cuda.max_memory_allocated()}, indent=2))


if __name__ == "__main__":
    main()
