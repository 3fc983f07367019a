"""Time one training iteration (forward + backward + clip + AdamW) of nanoGPT's shakespeare_char CPU recipe.

    python benchmarks/bench_backward.py [--iters 60]
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_backward.py   # one core

Shapes: 4 layers, 4 heads, width 128, SwiGLU hidden 344, vocab 65, context
64, batch 12; random tokens and targets (the time does not depend on them).
The Numba kernels of ``llmedu.backward`` and the optimizer are wrapped with
timers while the iteration runs; what is left of forward + loss + backward
is numpy: the BLAS products, one exp, and concatenations, group sums,
residual additions and allocations. A second table times the same BLAS products alone, on hot
caches, to split that remainder. Medians are over the quietest quarter of
the iterations (the machine may be shared).
"""

import argparse
import os
import platform
import time
from collections import defaultdict

import numpy as np

from llmedu import backward, model, optim

CONFIG = model.ModelConfig(vocab_size=65, dim=128, n_layers=4, n_heads=4, n_kv_heads=4, hidden_dim=344, max_seq_len=64)
B, T = 12, 64
KERNELS = {  # kernel -> row of the profile
    "_rmsnorm_forward": "fwd  RMSNorm", "_rope_inplace": "fwd+bwd RoPE (in place)",
    "_causal_softmax": "fwd  causal softmax",
    "_swiglu_forward": "fwd  SwiGLU (after numpy exp)", "_cross_entropy": "loss cross-entropy + its gradient",
    "_swiglu_backward": "bwd  SwiGLU", "_rmsnorm_backward": "bwd  RMSNorm", "_softmax_backward": "bwd  softmax",
    "_embedding_backward": "bwd  embedding scatter-add",
}
STAGES = {"_fast_forward": "forward", "_fast_loss": "loss", "_fast_backward": "backward"}


def wrap(table, name, fn):
    def timed(*args, **kwargs):
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[name] += time.perf_counter() - began
    return timed


def profile(iters):
    """Per-iteration dicts of seconds per profile row, and the iteration totals."""
    table = defaultdict(float)
    for name, row in {**KERNELS, **STAGES}.items():
        setattr(backward, name, wrap(table, row, getattr(backward, name)))
    params = model.init_params(CONFIG, seed=0)
    opt = optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99))
    opt.step = wrap(table, "opt  AdamW step", opt.step)
    clip = wrap(table, "opt  clip_grad_norm", optim.clip_grad_norm)
    rng = np.random.default_rng(0)
    rows, totals = [], []
    for _ in range(iters):
        tokens, targets = rng.integers(0, 65, (B, T)), rng.integers(0, 65, (B, T))
        table.clear()
        began = time.perf_counter()
        _, grads = backward.loss_and_grads(params, CONFIG, tokens, targets)
        clip(grads, 1.0)
        opt.step(grads, lr=1e-3)
        totals.append(time.perf_counter() - began)
        rows.append(dict(table))
    return rows, totals


def blas_alone():
    """ms per iteration of the BLAS products alone, with the shapes the iteration uses (hot caches)."""
    rng = np.random.default_rng(0)
    N, D, H, V, G = B * T, CONFIG.dim, CONFIG.hidden_dim, CONFIG.vocab_size, CONFIG.n_heads

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    x, h3, h2, hid = r(N, D), r(N, 3 * D), r(N, 2 * H), r(N, H)
    wqkv, w13, w2, wo, out, logits = r(3 * D, D), r(2 * H, D), r(D, H), r(D, D), r(V, D), r(N, V)
    q, P = r(B, G, T, D // G), r(B, G, T, T)
    per_layer = [lambda: x @ wqkv.T, lambda: x @ wo.T, lambda: x @ w13.T, lambda: hid @ w2.T,  # forward
                 lambda: x.T @ hid, lambda: x @ w2, lambda: h2.T @ x, lambda: h2 @ w13,  # backward, SwiGLU
                 lambda: x.T @ x, lambda: x @ wo, lambda: h3.T @ x, lambda: h3 @ wqkv]  # backward, attention
    attention = [lambda: q @ q.transpose(0, 1, 3, 2), lambda: P @ q,  # forward: scores, weights @ v
                 lambda: P.transpose(0, 1, 3, 2) @ q, lambda: q @ q.transpose(0, 1, 3, 2),  # backward: dv, dweights
                 lambda: P @ q, lambda: P.transpose(0, 1, 3, 2) @ q]  # backward: dq, dk
    once = [lambda: x @ out.T, lambda: logits.T @ x, lambda: logits @ out]

    def best(fn, n=30):
        fn()
        return min(_elapsed(fn) for _ in range(n))
    dense = CONFIG.n_layers * sum(best(f) for f in per_layer) + sum(best(f) for f in once)
    attn = CONFIG.n_layers * sum(best(f) for f in attention)
    return 1e3 * dense, 1e3 * attn


def _elapsed(fn):
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=60)
    args = parser.parse_args()
    began = time.perf_counter()
    rows, totals = profile(args.iters + 5)  # the first calls compile (or load the Numba cache)
    print(f"first iteration (Numba compile or cache load): {totals[0]:.2f} s; "
          f"{time.perf_counter() - began:.1f} s for {args.iters + 5} iterations")
    rows, totals = rows[5:], np.array(totals[5:])
    quiet = np.argsort(totals)[:max(1, len(totals) // 4)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print(f"ms/iter (forward + backward + clip + AdamW): min {1e3 * totals.min():.1f}, "
          f"median of quietest quarter {1e3 * np.median(totals[quiet]):.1f}, median {1e3 * np.median(totals):.1f}")
    median = {name: 1e3 * np.median([rows[i].get(name, 0.0) for i in quiet]) for name in rows[0]}
    for row in KERNELS.values():
        print(f"  {row:<38} {median[row]:6.2f} ms")
    rest = sum(median[stage] for stage in STAGES.values()) - sum(median[row] for row in KERNELS.values())
    print(f"  {'numpy: BLAS products, exp and glue':<38} {rest:6.2f} ms")
    for row in ("opt  clip_grad_norm", "opt  AdamW step"):
        print(f"  {row:<38} {median[row]:6.2f} ms")
    dense, attn = blas_alone()
    print(f"BLAS products alone, hot caches: dense projections {dense:.1f} ms, attention products {attn:.1f} ms")


if __name__ == "__main__":
    main()
