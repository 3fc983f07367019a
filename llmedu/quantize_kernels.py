"""The int8 decode path in Numba: one KV-cache step with Q8_0 weights and activations.

Lesson 08 (``08_frontiers``) measures what int8 buys at decode time. This is
``llmedu.kernels.step`` with every matrix in Q8_0 (``llmedu.quantize``), and
it follows llama2.c's ``runq.c`` operation by operation, in the same order,
so that greedy tokens agree with runq.c for as long as floating point allows.
``quantize.step_q8_reference`` is the numpy reference it is tested against.

Where the speed comes from, as in runq.c and llama.cpp: integer arithmetic.
Weight rows stay contiguous int8, the input vector is quantised to int8 per
group too, and a group's dot product is an integer sum, which the CPU does
many products per instruction (SIMD multiply-adds of int16 pairs: vpmaddwd,
or vpdpwssd with AVX512-VNNI), with no conversion to float. Integer sums are
exact, so any order gives runq.c's bits; only the sum over groups, times the
two scales, is float32, in runq.c's order. LLVM emits those instructions from
plain loops only if the group size is compiled in (``_matvec_of`` builds a
kernel per common group size; a short loop of unknown length stays scalar)
and every index is visibly >= 0 (else Numba checks each one for Python's
negative indexing, which rules out SIMD). Then, since decoding reads every
weight once per token, an int8 weight is a quarter of the bytes to read.

What it costs: attention keeps runq.c's in-order float32 sums (the float32
path lets fastmath reorder them), so its share grows with the position.
benchmarks/bench_quantize.py compares the two paths.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from llmedu import model, threads
from llmedu.quantize import MATRICES, Q8, runq_rope_tables

threads.apply()  # the same thread policy as llmedu.kernels

__all__ = ["prepare", "step_q8", "matvec_q8_fast"]


@njit(cache=True)
def _quantize(x, gs, q, s):
    """Q8_0 of x (n,) in place: q (n,) int8, s (n // gs,) the scales."""
    for g in range(x.shape[0] // gs):
        wmax = np.float32(0.0)
        for i in range(g * gs, (g + 1) * gs):
            if abs(x[i]) > wmax:
                wmax = abs(x[i])
        scale = wmax / np.float32(127.0)
        s[g] = scale
        for i in range(g * gs, (g + 1) * gs):
            if scale == 0:  # an all-zero group: 0, where runq.c would compute 0/0
                q[i] = 0
            else:
                v = x[i] / scale  # float32, as runq.c
                r = math.floor(abs(v) + 0.5)  # C's round: ties away from zero (exact in float64)
                q[i] = np.int8(r if v >= 0 else -r)


# A group's integer dot product: Numba widens the int8 products to int64;
# truncating the sum to int32 (exact: |sum| <= gs * 127 * 127) tells LLVM
# 32 bits suffice, and a group size known when compiling lets it turn the
# loop into SIMD multiply-adds of int16 pairs (vpmaddwd, or vpdpwssd with
# AVX512-VNNI). The sum is exact, so its order changes no bit. The sum over
# groups, times both scales, is float32 in runq.c's order: no fastmath, so
# LLVM may not reorder it. ``lo + i`` is visibly >= 0: no negative-index checks.

def _matvec_of(size):
    """runq.c's matmul compiled for one group size (0: any, read from the shapes), row by row."""

    @njit(cache=True, parallel=True)
    def matvec(xq, xs, w, s, out, add):
        """out (+)= W @ x, x = (xq (n,) int8, xs (G,)); W = (w (d, n) int8, s (d, G))."""
        d, G = s.shape
        gs = size if size else w.shape[1] // G
        for r in prange(d):  # the cores split the rows
            row = w[r]
            val = np.float32(0.0)
            for g in range(G):
                acc, lo = 0, g * gs
                for i in range(gs):
                    acc += row[lo + i] * xq[lo + i]
                val += np.float32(np.int32(acc)) * s[r, g] * xs[g]
            if add:
                out[r] += val
            else:
                out[r] = val

    return matvec


def _matvec_rows_of(size, rows):
    """The same for a short group size, ``rows`` rows at a time (d >= rows).

    LLVM unrolls a loop of fewer than 64 steps into scalar code before it
    can vectorise it; one step for several rows makes the body long enough
    to be vectorised instead (and loads x once for all of them). ``acc`` is
    made afresh for every group on purpose: made once per block and zeroed,
    it made this kernel 4x slower (LLVM then keeps it in memory).
    """

    @njit(cache=True, parallel=True)
    def matvec(xq, xs, w, s, out, add):
        d, G = s.shape
        for b in prange(-(-d // rows)):  # the cores split the blocks of rows
            # The last block may overlap the one before: it writes only its own rows.
            first = max(min(b * rows, d - rows), 0)  # max: LLVM sees first >= 0, no negative-index checks
            val = np.zeros(rows, np.float32)
            for g in range(G):
                acc, lo = np.zeros(rows, np.int64), g * size
                for i in range(size):
                    x = xq[lo + i]
                    for k in range(rows):
                        acc[k] += w[first + k, lo + i] * x
                for k in range(rows):
                    val[k] += np.float32(np.int32(acc[k])) * s[first + k, g] * xs[g]
            for k in range(b * rows - first, rows):
                if add:
                    out[first + k] += val[k]
                else:
                    out[first + k] = val[k]

    return matvec


# Rows at a time per group size: chosen by CPU time on a 32000 x 768 matrix.
_matvec64, _matvec_any = _matvec_of(64), _matvec_of(0)
_matvec32, _matvec16 = _matvec_rows_of(32, 4), _matvec_rows_of(16, 8)  # 8: no better than _matvec_any


@njit(cache=True)
def _matvec(xq, xs, w, s, out, add):
    """out (+)= W @ x with the kernel compiled for W's group size where there is one (2-6x faster in CPU time)."""
    d, gs = w.shape[0], w.shape[1] // s.shape[1]
    if gs == 64:
        _matvec64(xq, xs, w, s, out, add)
    elif gs == 32 and d >= 4:
        _matvec32(xq, xs, w, s, out, add)
    elif gs == 16 and d >= 8:
        _matvec16(xq, xs, w, s, out, add)
    else:
        _matvec_any(xq, xs, w, s, out, add)


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


@njit(cache=True)
def _scores(q, keys, lo, T, root, a):
    """a[t] = q . keys[t, lo:lo + head_dim] / root for t < T; q: (head_dim,), keys: (max_seq_len, kv_dim).

    Each dot product is summed in order, as runq.c does (no fastmath). One
    chain of dependent float adds is slow, so eight positions go at once:
    eight independent chains, each still in order, the same bits.
    """
    lo = max(lo, 0)  # LLVM sees lo + i >= 0: no negative-index checks, which would stop SIMD
    full = T - T % 8
    for t0 in range(0, full, 8):
        s = np.zeros(8, np.float32)
        for i in range(q.shape[0]):
            for k in range(8):
                s[k] += q[i] * keys[t0 + k, lo + i]
        for k in range(8):
            a[t0 + k] = s[k] / root
    for t in range(full, T):
        score = np.float32(0.0)
        for i in range(q.shape[0]):
            score += q[i] * keys[t, lo + i]
        a[t] = score / root


@njit(cache=True, parallel=True)
def _attention(q, keys, values, pos, n_heads, n_kv_heads, att, out):
    """Each head's softmax-weighted sum of the cached values; keys, values: (max_seq_len, kv_dim)."""
    head_dim = q.shape[0] // n_heads
    group = n_heads // n_kv_heads
    root = np.float32(math.sqrt(head_dim))
    for h in prange(n_heads):
        lo = max((h // group) * head_dim, 0)  # max: as in _scores
        a = att[h]
        _scores(q[h * head_dim:(h + 1) * head_dim], keys, lo, pos + 1, root, a)
        top = np.float32(-np.inf)
        for t in range(pos + 1):
            top = max(top, a[t])
        total = np.float32(0.0)
        for t in range(pos + 1):
            a[t] = np.exp(a[t] - top)
            total += a[t]
        o = np.zeros(head_dim, np.float32)  # a fresh array: LLVM knows it aliases no value row, so it vectorises
        for t in range(pos + 1):
            w = a[t] / total
            for i in range(head_dim):
                o[i] += w * values[t, lo + i]
        out[h * head_dim:(h + 1) * head_dim] = o


@njit(cache=True)
def _step(token, pos, w, keys, values, cos, sin, n_heads, n_kv_heads, eps):
    """Logits (vocab,) of token at pos; w: ``prepare``'s tuple ((int8, scales) per matrix, then the norms)."""
    (eq, es), (wq, sq), (wk, sk), (wv, sv), (wo, so), (w1, s1), (w2, s2), (w3, s3), (oq, os_) = w[:9]
    att_norm, ffn_norm, norm = w[9], w[10], w[11]
    D, H, gs = eq.shape[1], w2.shape[2], eq.shape[1] // es.shape[1]  # w2: (L, D, H) int8
    x = np.empty(D, np.float32)
    for i in range(D):  # the embedding row, dequantised
        x[i] = np.float32(eq[token, i]) * es[token, i // gs]
    xb, q = np.empty(D, np.float32), np.empty(D, np.float32)
    xq, xs = np.empty(D, np.int8), np.empty(D // gs, np.float32)
    hb, hb2 = np.empty(H, np.float32), np.empty(H, np.float32)
    hq, hs = np.empty(H, np.int8), np.empty(H // gs, np.float32)
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


def prepare(qparams: dict, config: model.ModelConfig) -> tuple:
    """The int8 weights as the kernels take them, in their order, after checking them against the config.

    Each matrix stays as ``quantize_params`` made it, (..., d, n) int8 rows
    and (..., d, G) scales, so nothing is copied when it is contiguous.
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
    matrices = tuple((np.ascontiguousarray(qparams[name].q), np.ascontiguousarray(qparams[name].s, np.float32))
                     for name in MATRICES)
    norms = tuple(np.ascontiguousarray(qparams[n], np.float32) for n in ("attention_norm", "ffn_norm", "norm"))
    return matrices + norms


def step_q8(qparams, config: model.ModelConfig, token: int, cache) -> np.ndarray:
    """One int8 decoding step: logits (vocab,) of ``token`` at ``cache.pos``; appends to ``cache``.

    ``qparams``: ``quantize_params``'s dict, or ``prepare(qparams, config)`` (checked once).
    """
    if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
        raise ValueError(f"token must be one integer id, got {token!r}.")
    token = int(model.validate_tokens(np.array([token]), config)[0])
    cache.check_room(config, 1)
    weights = prepare(qparams, config) if isinstance(qparams, dict) else qparams
    cos, sin = _tables(config.head_dim, config.max_seq_len, config.rope_theta)
    logits = _step(token, cache.pos, weights, cache.keys, cache.values, cos, sin,
                   config.n_heads, config.n_kv_heads, np.float32(config.norm_eps))
    cache.pos += 1
    return logits


def matvec_q8_fast(w: Q8, x: np.ndarray) -> np.ndarray:
    """``quantize.matvec_q8`` through the Numba kernels: w (d, n) Q8, x (n,) float32 -> (d,)."""
    x = np.ascontiguousarray(x, np.float32)
    gs = w.group_size
    xq, xs = np.empty(x.shape[0], np.int8), np.empty(x.shape[0] // gs, np.float32)
    _quantize(x, gs, xq, xs)
    out = np.empty(w.q.shape[0], np.float32)
    _matvec(xq, xs, np.ascontiguousarray(w.q), np.ascontiguousarray(w.s, np.float32), out, False)
    return out
