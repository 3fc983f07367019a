"""The int8 decode path in Numba: one KV-cache step with Q8_0 weights and activations.

Lesson 08 (``08_frontiers``) measures what int8 buys at decode time. This is
``llmedu.kernels.step`` with every matrix in Q8_0 (``llmedu.quantize``), and
it follows llama2.c's ``runq.c`` operation by operation, in the same order,
so that greedy tokens agree with runq.c for as long as floating point allows.
``quantize.step_q8_reference`` is the numpy reference it is tested against.

Where the speed comes from: decoding streams every weight from memory once
per token, and an int8 weight is a quarter of a float32 one. The group dot
product converts int8 to float32 on the fly and sums in float32 -- exact,
because every partial sum is an integer below 2**24 (64 x 127 x 127 <
2**20), so the fast, reordered (SIMD) sum equals runq.c's int32 sum. The
sum over groups, with its two scales, is done in runq.c's order.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from llmedu import model, threads
from llmedu.quantize import MATRICES, Q8, runq_rope_tables

threads.apply()  # the same thread policy as llmedu.kernels

__all__ = ["step_q8", "matvec_q8_fast"]


@njit(cache=True)
def _quantize(x, gs, q, s):
    """Q8_0 of x (n,) in place: q (n,) float32 holding the int8 values, s (n // gs,) the scales."""
    for g in range(x.shape[0] // gs):
        wmax = np.float32(0.0)
        for i in range(g * gs, (g + 1) * gs):
            if abs(x[i]) > wmax:
                wmax = abs(x[i])
        scale = wmax / np.float32(127.0)
        s[g] = scale
        for i in range(g * gs, (g + 1) * gs):
            if scale == 0:  # an all-zero group: 0, where runq.c would compute 0/0
                q[i] = 0.0
            else:
                v = x[i] / scale  # float32, as runq.c
                r = math.floor(abs(v) + 0.5)  # C's round: ties away from zero (exact in float64)
                q[i] = r if v >= 0 else -r


@njit(cache=True, fastmath=True)
def _group_dot(xq, w, start, gs):
    """sum_k xq[start+k] * w[start+k]: int8 values, exact in float32 whatever the order of the sum."""
    acc = np.float32(0.0)
    for k in range(start, start + gs):
        acc += xq[k] * np.float32(w[k])
    return acc


@njit(cache=True, parallel=True)
def _matvec(xq, xs, wq, ws, out, add):
    """out (+)= W @ x with W = (wq (d, n) int8, ws (d, n // gs)) and x = (xq (n,), xs (n // gs,))."""
    gs = wq.shape[1] // ws.shape[1]
    for i in prange(wq.shape[0]):  # the cores split the rows
        row, val = wq[i], np.float32(0.0)
        for g in range(ws.shape[1]):  # runq.c's order: group after group, times both scales
            val += _group_dot(xq, row, g * gs, gs) * ws[i, g] * xs[g]
        if add:
            out[i] += val
        else:
            out[i] = val


@njit(cache=True)
def _rmsnorm(x, weight, eps, out):
    ss = np.float32(0.0)
    for i in range(x.shape[0]):
        ss += x[i] * x[i]
    ss = np.float32(1.0) / np.sqrt(ss / np.float32(x.shape[0]) + eps)
    for i in range(x.shape[0]):
        out[i] = weight[i] * (ss * x[i])


@njit(cache=True)
def _rotate(vec, c, s, head_dim):
    """RoPE on interleaved pairs of every head; c, s: (head_dim // 2,) for this position."""
    for i in range(0, vec.shape[0], 2):
        j = (i % head_dim) // 2
        v0, v1 = vec[i], vec[i + 1]
        vec[i] = v0 * c[j] - v1 * s[j]
        vec[i + 1] = v0 * s[j] + v1 * c[j]


@njit(cache=True, parallel=True)
def _attention(q, keys, values, pos, n_heads, n_kv_heads, att, out):
    """Each head's softmax-weighted sum of the cached values; keys, values: (max_seq_len, kv_dim)."""
    head_dim = q.shape[0] // n_heads
    group = n_heads // n_kv_heads
    root = np.float32(math.sqrt(head_dim))
    for h in prange(n_heads):
        lo = (h // group) * head_dim
        a = att[h]
        top = np.float32(-np.inf)
        for t in range(pos + 1):
            score = np.float32(0.0)
            for i in range(head_dim):
                score += q[h * head_dim + i] * keys[t, lo + i]
            a[t] = score / root
            top = max(top, a[t])
        total = np.float32(0.0)
        for t in range(pos + 1):
            a[t] = np.exp(a[t] - top)
            total += a[t]
        for i in range(head_dim):
            out[h * head_dim + i] = 0.0
        for t in range(pos + 1):
            w = a[t] / total
            for i in range(head_dim):
                out[h * head_dim + i] += w * values[t, lo + i]


@njit(cache=True)
def _step(token, pos, w, keys, values, cos, sin, n_heads, n_kv_heads, eps):
    """Logits (vocab,) of token at pos; w: the int8 (q, s) pairs in ``MATRICES`` order, then the norms."""
    (eq, es), (wq, sq), (wk, sk), (wv, sv), (wo, so), (w1, s1), (w2, s2), (w3, s3), (oq, os_) = w[:9]
    att_norm, ffn_norm, norm = w[9], w[10], w[11]
    D, H, gs = eq.shape[1], w1.shape[1], eq.shape[1] // es.shape[1]
    x = np.empty(D, np.float32)
    for i in range(D):  # the embedding row, dequantised
        x[i] = np.float32(eq[token, i]) * es[token, i // gs]
    xb, q = np.empty(D, np.float32), np.empty(D, np.float32)
    xq, xs = np.empty(D, np.float32), np.empty(D // gs, np.float32)
    hb, hb2 = np.empty(H, np.float32), np.empty(H, np.float32)
    hq, hs = np.empty(H, np.float32), np.empty(H // gs, np.float32)
    att = np.empty((n_heads, keys.shape[1]), np.float32)
    for layer in range(wq.shape[0]):
        k, v = keys[layer, pos], values[layer, pos]  # written straight into the cache
        _rmsnorm(x, att_norm[layer], eps, xb)
        _quantize(xb, gs, xq, xs)
        _matvec(xq, xs, wq[layer], sq[layer], q, False)
        _matvec(xq, xs, wk[layer], sk[layer], k, False)
        _matvec(xq, xs, wv[layer], sv[layer], v, False)
        _rotate(q, cos[pos], sin[pos], D // n_heads)
        _rotate(k, cos[pos], sin[pos], D // n_heads)
        _attention(q, keys[layer], values[layer], pos, n_heads, n_kv_heads, att, xb)
        _quantize(xb, gs, xq, xs)
        _matvec(xq, xs, wo[layer], so[layer], x, True)
        _rmsnorm(x, ffn_norm[layer], eps, xb)
        _quantize(xb, gs, xq, xs)
        _matvec(xq, xs, w1[layer], s1[layer], hb, False)
        _matvec(xq, xs, w3[layer], s3[layer], hb2, False)
        for i in range(H):  # SwiGLU, written as runq.c writes it
            hb[i] = hb[i] * (np.float32(1.0) / (np.float32(1.0) + np.exp(-hb[i]))) * hb2[i]
        _quantize(hb, gs, hq, hs)
        _matvec(hq, hs, w2[layer], s2[layer], x, True)
    _rmsnorm(x, norm, eps, x)
    _quantize(x, gs, xq, xs)
    logits = np.empty(oq.shape[0], np.float32)
    _matvec(xq, xs, oq, os_, logits, False)
    return logits


# -------------------------------------------------------- the public API --

@functools.lru_cache(maxsize=8)
def _tables(head_dim: int, max_seq_len: int, theta: float):
    return runq_rope_tables(head_dim, max_seq_len, theta)


def _weights(qparams: dict, config: model.ModelConfig) -> tuple:
    """The int8 weights in kernel order, after checking their shapes against the config."""
    shapes = model.param_shapes(config)
    for name in MATRICES:
        t = qparams.get(name)
        if not isinstance(t, Q8) or t.q.shape != shapes[name] or t.q.dtype != np.int8 \
                or t.s.shape != (*shapes[name][:-1], shapes[name][-1] // max(t.group_size, 1)):
            raise ValueError(f"qparams[{name!r}] must be a Q8 of shape {shapes[name]} (int8) with its scales; "
                             "make them with llmedu.quantize.quantize_params(params, config).")
    if len({qparams[name].group_size for name in MATRICES}) != 1:
        raise ValueError("every matrix must use the same group size, as runq.c's one GS does.")
    pairs = tuple((np.ascontiguousarray(qparams[n].q), np.ascontiguousarray(qparams[n].s, np.float32))
                  for n in MATRICES)
    return pairs + tuple(np.ascontiguousarray(qparams[n], np.float32) for n in ("attention_norm", "ffn_norm", "norm"))


def step_q8(qparams: dict, config: model.ModelConfig, token: int, cache) -> np.ndarray:
    """One int8 decoding step: logits (vocab,) of ``token`` at ``cache.pos``; appends to ``cache``."""
    if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
        raise ValueError(f"token must be one integer id, got {token!r}.")
    token = int(model.validate_tokens(np.array([token]), config)[0])
    cache.check_room(config, 1)
    cos, sin = _tables(config.head_dim, config.max_seq_len, config.rope_theta)
    logits = _step(token, cache.pos, _weights(qparams, config), cache.keys, cache.values, cos, sin,
                   config.n_heads, config.n_kv_heads, np.float32(config.norm_eps))
    cache.pos += 1
    return logits


def matvec_q8_fast(w: Q8, x: np.ndarray) -> np.ndarray:
    """``quantize.matvec_q8`` through the Numba kernels: w (d, n) Q8, x (n,) float32 -> (d,)."""
    x = np.ascontiguousarray(x, np.float32)
    gs = w.group_size
    xq, xs = np.empty_like(x), np.empty(x.shape[0] // gs, np.float32)
    _quantize(x, gs, xq, xs)
    out = np.empty(w.q.shape[0], np.float32)
    _matvec(xq, xs, np.ascontiguousarray(w.q), np.ascontiguousarray(w.s, np.float32), out, False)
    return out
