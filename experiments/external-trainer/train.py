#!/usr/bin/env python3
"""A minimal trainer that is not cbs, driven by `cbs sweep` with run.executor = "external".

It trains a linear model by SGD on a noisy regression task (a noisy quadratic: the simplest
problem where a larger batch stops paying once its gradient noise is small next to the signal)
and writes the one file cbs reads, metrics.jsonl, in the results format: one JSON line per
optimizer step with tokens, step, lr and train_loss, plus eval_loss at eval marks.

Every "sequence" of seq_len tokens is one example, so a batch of B tokens is B / seq_len
examples. Plain Python, deterministic given --seed. It does not resume: it starts over and
truncates metrics.jsonl, which the contract allows (docs/executors.md).
"""
import argparse
import json
import math
import os
import random
import sys

DIM = 32          # parameters
NOISE = 0.5       # label noise standard deviation
EVAL_EXAMPLES = 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="branch directory; metrics.jsonl goes here")
    p.add_argument("--batch-tokens", type=int, required=True)
    p.add_argument("--batch-seqs", type=int, required=True)
    p.add_argument("--lr", type=float, required=True, help="peak learning rate")
    p.add_argument("--warmup-tokens", type=int, default=0)
    p.add_argument("--budget-tokens", type=int, required=True)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--eval-every-tokens", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.budget_tokens % a.batch_tokens:
        sys.exit(f"train.py: --budget-tokens {a.budget_tokens} is not a multiple of --batch-tokens {a.batch_tokens}")

    # The task (curvature spectrum, true weights, eval set) is shared by every branch; only the
    # order of the training examples depends on the seed, as replicates in cbs differ.
    task = random.Random(12345)
    scale = [1.0 / math.sqrt(i + 1) for i in range(DIM)]  # ill-conditioned: curvature 1/(i+1)
    w_true = [task.gauss(0, 1) for _ in range(DIM)]

    def example(rng):
        x = [rng.gauss(0, 1) * s for s in scale]
        return x, sum(wi * xi for wi, xi in zip(w_true, x)) + NOISE * rng.gauss(0, 1)

    eval_set = [example(task) for _ in range(EVAL_EXAMPLES)]
    data = random.Random(a.seed)

    def loss(w, batch):
        return sum(0.5 * (sum(wi * xi for wi, xi in zip(w, x)) - y) ** 2 for x, y in batch) / len(batch)

    def lr_at(tokens):  # linear warmup, then cosine decay to min_lr_ratio, all in tokens
        if tokens < a.warmup_tokens:
            return a.lr * (tokens + a.batch_tokens) / a.warmup_tokens
        frac = (tokens - a.warmup_tokens) / max(1, a.budget_tokens - a.warmup_tokens)
        return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    w = [0.0] * DIM
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "metrics.jsonl"), "w") as f:
        steps = a.budget_tokens // a.batch_tokens
        for step in range(1, steps + 1):
            tokens_before = (step - 1) * a.batch_tokens
            lr = lr_at(tokens_before)
            batch = [example(data) for _ in range(a.batch_seqs)]
            grad = [0.0] * DIM
            total = 0.0
            for x, y in batch:
                r = sum(wi * xi for wi, xi in zip(w, x)) - y
                total += 0.5 * r * r
                for i in range(DIM):
                    grad[i] += r * x[i] / len(batch)
            w = [wi - lr * gi for wi, gi in zip(w, grad)]
            tokens = step * a.batch_tokens
            line = {"tokens": tokens, "step": step, "lr": lr, "train_loss": total / len(batch),
                    "grad_norm": math.sqrt(sum(g * g for g in grad))}
            if step == steps or (a.eval_every_tokens and tokens % a.eval_every_tokens == 0):
                line["eval_loss"] = loss(w, eval_set)
            # One write per line, flushed: a reader never sees half a line unless we are killed.
            f.write(json.dumps(line) + "\n")
            f.flush()


if __name__ == "__main__":
    main()
