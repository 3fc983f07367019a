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

What it costs: the conversion makes an int8 multiply-add dearer than a
float32 one, and a group is short (8 to 64 values), so the kernel works on
8 rows at once (``pack``: their weights of one column in one int64) rather
than along a row, where each group would end in a horizontal sum. When the
weights come from memory (large models) int8 reads a quarter of the bytes;
when they sit in cache, float32 may still win: benchmarks/bench_quantize.py.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from llmedu import model, threads
from llmedu.quantize import MATRICES, Q8, runq_rope_tables

threads.apply()  # the same thread policy as llmedu.kernels

__all__ = ["pack", "step_q8", "matvec_q8_fast"]


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


ROWS = 8  # rows per block of a packed matrix


@njit(cache=True, fastmath=True)
def _group8(xq, block, start, gs):
    """Dot products of xq with 8 rows over one group; block: (n,) int64, byte r of block[k] = row r's w[k].

    One 8-byte load brings a column of 8 weights; eight accumulators, one
    per row. The sums are exact (integers below 2**24) in any order.
    """
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
    for k in range(start, start + gs):
        x, w = xq[k], block[k]
        a0 += x * np.float32(np.int8(w))  # np.int8 keeps the low byte, as a signed value
        a1 += x * np.float32(np.int8(w >> 8))
        a2 += x * np.float32(np.int8(w >> 16))
        a3 += x * np.float32(np.int8(w >> 24))
        a4 += x * np.float32(np.int8(w >> 32))
        a5 += x * np.float32(np.int8(w >> 40))
        a6 += x * np.float32(np.int8(w >> 48))
        a7 += x * np.float32(np.int8(w >> 56))
    return a0, a1, a2, a3, a4, a5, a6, a7


@njit(cache=True, parallel=True)
def _matvec(xq, xs, wp, sp, out, add):
    """out (+)= W @ x, x = (xq (n,), xs (G,)); W packed by ``pack``: wp (blocks, n) int64, sp (blocks, G, 8).

    No fastmath here: each row sums its groups in runq.c's order.
    """
    d, G = out.shape[0], sp.shape[1]
    gs = wp.shape[1] // G
    for b in prange(wp.shape[0]):  # the cores split the blocks of 8 rows
        val = np.zeros(ROWS, np.float32)
        for g in range(G):
            dots = _group8(xq, wp[b], g * gs, gs)
            for r in range(ROWS):
                val[r] += dots[r] * sp[b, g, r] * xs[g]
        for r in range(min(ROWS, d - b * ROWS)):  # the last block may be padding
            if add:
                out[b * ROWS + r] += val[r]
            else:
                out[b * ROWS + r] = val[r]


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
    """Logits (vocab,) of token at pos; w: ``pack``'s tuple (embedding, packed matrices, norms)."""
    (eq, es), (wq, sq), (wk, sk), (wv, sv), (wo, so), (w1, s1), (w2, s2), (w3, s3), (oq, os_) = w[:9]
    att_norm, ffn_norm, norm = w[9], w[10], w[11]
    D, H, gs = eq.shape[1], w2.shape[2], eq.shape[1] // es.shape[1]  # w2: (L, blocks, H) int64
    x = np.empty(D, np.float32)
    for i in range(D):  # the embedding row, dequantised
        x[i] = np.float32(eq[token, i]) * es[token, i // gs]
    xb, q = np.empty(D, np.float32), np.empty(D, np.float32)
    xq, xs = np.empty(D, np.float32), np.empty(D // gs, np.float32)
    hb, hb2 = np.empty(H, np.float32), np.empty(H, np.float32)
    hq, hs = np.empty(H, np.float32), np.empty(H // gs, np.float32)
    att = np.empty((n_heads, keys.shape[1]), np.float32)
    for layer in range(att_norm.shape[0]):
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
    logits = np.empty(eq.shape[0], np.float32)  # vocab_size rows, as the embedding
    _matvec(xq, xs, oq, os_, logits, False)
    return logits


# -------------------------------------------------------- the public API --

@functools.lru_cache(maxsize=8)
def _tables(head_dim: int, max_seq_len: int, theta: float):
    return runq_rope_tables(head_dim, max_seq_len, theta)


def _pack_matrix(t: Q8) -> tuple[np.ndarray, np.ndarray]:
    """(..., d, n) int8 and (..., d, G) scales -> (..., ceil(d/8), n) int64 and (..., ceil(d/8), G, 8).

    Rows go in blocks of 8, zero-padded; the 8 weights of a block's column k
    share one int64 (row r in byte r), so the kernel streams each block in
    one pass and loads 8 weights at once (see _group8).
    """
    *lead, d, n = t.q.shape
    blocks = -(-d // ROWS)
    pad = [(0, 0)] * len(lead) + [(0, blocks * ROWS - d), (0, 0)]
    q = np.pad(t.q, pad).reshape(*lead, blocks, ROWS, n).view(np.uint8).astype(np.uint64)
    packed = np.zeros((*lead, blocks, n), np.uint64)
    for r in range(ROWS):
        packed |= q[..., r, :] << np.uint64(8 * r)
    s = np.pad(t.s.astype(np.float32), pad).reshape(*lead, blocks, ROWS, -1)
    return packed.view(np.int64), np.ascontiguousarray(np.swapaxes(s, -1, -2))


def pack(qparams: dict, config: model.ModelConfig) -> tuple:
    """The int8 weights in the kernels' order and layout, after checking them against the config.

    Packing copies the weights once; ``step_q8`` packs a plain dict on every
    call, so decode many tokens with the packed tuple.
    """
    shapes = model.param_shapes(config)
    for name in MATRICES:
        t = qparams.get(name)
        if not isinstance(t, Q8) or t.q.shape != shapes[name] or t.q.dtype != np.int8 \
                or t.s.shape != (*shapes[name][:-1], shapes[name][-1] // max(t.group_size, 1)):
            raise ValueError(f"qparams[{name!r}] must be a Q8 of shape {shapes[name]} (int8) with its scales; "
                             "make them with llmedu.quantize.quantize_params(params, config).")
    if len({qparams[name].group_size for name in MATRICES}) != 1:
        raise ValueError("every matrix must use the same group size, as runq.c's one GS does.")
    emb = qparams["tok_embeddings"]
    packed = tuple(_pack_matrix(qparams[name]) for name in MATRICES[1:])
    norms = tuple(np.ascontiguousarray(qparams[n], np.float32) for n in ("attention_norm", "ffn_norm", "norm"))
    return ((np.ascontiguousarray(emb.q), np.ascontiguousarray(emb.s, np.float32)),) + packed + norms


def step_q8(qparams, config: model.ModelConfig, token: int, cache) -> np.ndarray:
    """One int8 decoding step: logits (vocab,) of ``token`` at ``cache.pos``; appends to ``cache``.

    ``qparams``: ``quantize_params``'s dict, or ``pack(qparams, config)`` (faster: packed once).
    """
    if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
        raise ValueError(f"token must be one integer id, got {token!r}.")
    token = int(model.validate_tokens(np.array([token]), config)[0])
    cache.check_room(config, 1)
    weights = pack(qparams, config) if isinstance(qparams, dict) else qparams
    cos, sin = _tables(config.head_dim, config.max_seq_len, config.rope_theta)
    logits = _step(token, cache.pos, weights, cache.keys, cache.values, cos, sin,
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
    _matvec(xq, xs, *_pack_matrix(w), out, False)
    return out
