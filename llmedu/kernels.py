"""The fast path of the Transformer: the same forward pass compiled with Numba.

Lesson 02 (``02_transformer``) first writes the forward pass in numpy
(``llmedu.model``) and then times this module against it. Results agree with
``model.forward`` to float32 rounding; only the way the work is done differs:

1. **Work in place.** Every intermediate lives in a buffer allocated once per
   call, and the residual additions are folded into the matrix products
   (``x += mixed @ wo.T`` writes straight into ``x``).
2. **Stream the weights.** Decoding one token is a chain of matrix-vector
   products: each weight is read from memory once and used for one
   multiply-add, so memory bandwidth, not arithmetic, sets the speed. The
   cores split the rows between them (``prange``), and each core reads
   several rows that lie far apart in the same loop, which keeps more memory
   requests in flight. The query, key and value products share one parallel
   loop, and so do the two halves of SwiGLU.
3. **Keep keys and values.** ``step`` runs one token at position ``cache.pos``
   and appends its keys and values to a ``KVCache`` (``llmedu.generate``), so
   decoding token n costs one token's work instead of n tokens'.

The kernels take a chunk of T consecutive tokens starting at position
``pos``: T = 1 is a decoding step, T = prompt length is the whole forward.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

from . import model, threads

threads.apply()  # BLAS and Numba threads for the CPUs this process may use, decided once (llmedu.threads)

__all__ = ["forward", "step", "prefill"]

# The order in which the kernels take the weights.
WEIGHT_NAMES = ("tok_embeddings", "attention_norm", "wq", "wk", "wv", "wo",
                "ffn_norm", "w1", "w2", "w3", "norm", "output")


# ------------------------------------------------------------ the kernels --
# fastmath lets LLVM reorder the sums of a dot product into several SIMD
# accumulators; it changes results only by float32 rounding.

@njit(cache=True, fastmath=True)
def _dot(a, b):
    """a . b for two float32 vectors of the same length."""
    acc = np.float32(0.0)
    for i in range(a.shape[0]):
        acc += a[i] * b[i]
    return acc


@njit(cache=True, fastmath=True)
def _axpy(a, x, y):
    """y += a * x for float32 vectors; contiguous slices, so LLVM vectorises it."""
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@njit(cache=True, fastmath=True)
def _rmsnorm(x, weight, eps, out):
    """out[t] = x[t] / rms(x[t]) * weight.  x, out: (T, D); weight: (D,)."""
    for t in range(x.shape[0]):
        scale = np.float32(1.0) / np.sqrt(_dot(x[t], x[t]) / np.float32(x.shape[1]) + eps)
        for i in range(x.shape[1]):
            out[t, i] = x[t, i] * scale * weight[i]


@njit(cache=True, fastmath=True)
def _dot4(x, a, b, c, d):
    """(x . a, x . b, x . c, x . d) in one loop: four rows stream side by side."""
    acc_a = np.float32(0.0)
    acc_b = np.float32(0.0)
    acc_c = np.float32(0.0)
    acc_d = np.float32(0.0)
    for i in range(x.shape[0]):
        acc_a += a[i] * x[i]
        acc_b += b[i] * x[i]
        acc_c += c[i] * x[i]
        acc_d += d[i] * x[i]
    return acc_a, acc_b, acc_c, acc_d


# Decoding is limited by how fast the weights arrive from memory. A core that
# reads one row after another keeps too few requests in flight; reading rows
# that lie far apart in the same loop measured 15-30% faster on the benchmark
# machine (benchmarks/README.md). So the matrix kernels below compute four
# rows at a time, taken from the four quarters of their matrix.

@njit(cache=True, fastmath=True)
def _put(out, t, i, value, add):
    """out[t, i] = value, or out[t, i] += value if add."""
    out[t, i] = out[t, i] + value if add else value


@njit(cache=True, fastmath=True, parallel=True)
def _matmul(x, w, out, add):
    """out = x @ w.T, or out += x @ w.T if add.  x: (T, n); w: (m, n); out: (T, m)."""
    m = w.shape[0]
    q = m // 4
    for r in prange(q):  # the cores split the rows of each quarter
        for t in range(x.shape[0]):
            a, b, c, d = _dot4(x[t], w[r], w[r + q], w[r + 2 * q], w[r + 3 * q])
            _put(out, t, r, a, add)
            _put(out, t, r + q, b, add)
            _put(out, t, r + 2 * q, c, add)
            _put(out, t, r + 3 * q, d, add)
    for i in range(4 * q, m):  # the last m % 4 rows
        for t in range(x.shape[0]):
            _put(out, t, i, _dot(x[t], w[i]), add)


@njit(cache=True, fastmath=True)
def _qkv_row(r, wq, wk, wv):
    """Row r of the three matrices stacked: [wq; wk; wv], (D + 2 * kv_dim, D)."""
    if r < wq.shape[0]:
        return wq[r]
    if r < wq.shape[0] + wk.shape[0]:
        return wk[r - wq.shape[0]]
    return wv[r - wq.shape[0] - wk.shape[0]]


@njit(cache=True, fastmath=True)
def _qkv_put(t, r, value, q, k, v):
    """Store column r of the stacked product h @ [wq; wk; wv].T into q, k or v."""
    if r < q.shape[1]:
        q[t, r] = value
    elif r < q.shape[1] + k.shape[1]:
        k[t, r - q.shape[1]] = value
    else:
        v[t, r - q.shape[1] - k.shape[1]] = value


@njit(cache=True, fastmath=True, parallel=True)
def _qkv(h, wq, wk, wv, q, k, v):
    """q, k, v = h @ wq.T, h @ wk.T, h @ wv.T in one parallel loop.

    h: (T, D); wq: (D, D); wk, wv: (kv_dim, D); q: (T, D); k, v: (T, kv_dim).
    Works as _matmul on the stacked matrix [wq; wk; wv] without stacking it.
    """
    m = wq.shape[0] + 2 * wk.shape[0]
    n = m // 4
    for r in prange(n):
        for t in range(h.shape[0]):
            a, b, c, d = _dot4(h[t], _qkv_row(r, wq, wk, wv), _qkv_row(r + n, wq, wk, wv),
                               _qkv_row(r + 2 * n, wq, wk, wv), _qkv_row(r + 3 * n, wq, wk, wv))
            _qkv_put(t, r, a, q, k, v)
            _qkv_put(t, r + n, b, q, k, v)
            _qkv_put(t, r + 2 * n, c, q, k, v)
            _qkv_put(t, r + 3 * n, d, q, k, v)
    for r in range(4 * n, m):  # the last m % 4 rows
        for t in range(h.shape[0]):
            _qkv_put(t, r, _dot(h[t], _qkv_row(r, wq, wk, wv)), q, k, v)


@njit(cache=True, fastmath=True)
def _silu_times(gate, up):
    """SwiGLU for one hidden unit: silu(gate) * up."""
    return gate / (np.float32(1.0) + np.exp(-gate)) * up


@njit(cache=True, fastmath=True, parallel=True)
def _swiglu_hidden(h, w1, w3, out):
    """out = silu(h @ w1.T) * (h @ w3.T).  h: (T, D); w1, w3: (H, D); out: (T, H).

    Iteration r reads rows r and r + H/2 of both matrices: four streams.
    """
    half = w1.shape[0] // 2
    for r in prange(half):
        for t in range(h.shape[0]):
            gate_a, up_a, gate_b, up_b = _dot4(h[t], w1[r], w3[r], w1[r + half], w3[r + half])
            out[t, r] = _silu_times(gate_a, up_a)
            out[t, r + half] = _silu_times(gate_b, up_b)
    if w1.shape[0] % 2:  # the odd row out
        last = w1.shape[0] - 1
        for t in range(h.shape[0]):
            out[t, last] = _silu_times(_dot(h[t], w1[last]), _dot(h[t], w3[last]))


@njit(cache=True, fastmath=True)
def _rope(x, cos, sin, pos, head_dim):
    """Rotate the interleaved pairs of every head in place.

    x: (T, n_heads * head_dim), token t at position pos + t;
    cos, sin: (max_seq_len, head_dim // 2) float32.
    """
    for t in range(x.shape[0]):
        for start in range(0, x.shape[1], head_dim):
            for i in range(head_dim // 2):
                c, s = cos[pos + t, i], sin[pos + t, i]
                even, odd = x[t, start + 2 * i], x[t, start + 2 * i + 1]
                x[t, start + 2 * i] = even * c - odd * s
                x[t, start + 2 * i + 1] = even * s + odd * c


@njit(cache=True, fastmath=True)
def _softmax_inplace(s):
    """s <- softmax(s) for a float32 vector, shifted by its max so exp cannot overflow."""
    top = s.max()
    total = np.float32(0.0)
    for j in range(s.shape[0]):
        s[j] = np.exp(s[j] - top)
        total += s[j]
    for j in range(s.shape[0]):
        s[j] /= total


@njit(cache=True, fastmath=True, parallel=True)
def _attention(q, keys, values, pos, n_kv_heads, scores, out):
    """Causal grouped-query attention of T new queries against the cache.

    q: (T, D) queries of positions pos .. pos+T-1; keys, values:
    (max_seq_len, kv_dim) with rows 0 .. pos+T-1 filled; scores: (T * n_heads,
    max_seq_len) scratch; out: (T, D).
    """
    T, kv_dim = q.shape[0], keys.shape[1]
    head_dim = kv_dim // n_kv_heads
    n_heads = q.shape[1] // head_dim
    group = n_heads // n_kv_heads
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for th in prange(T * n_heads):
        t, h = th // n_heads, th % n_heads
        qh = q[t, h * head_dim:(h + 1) * head_dim]  # (head_dim,)
        lo = (h // group) * head_dim  # this query head's key/value head
        n = pos + t + 1  # the token sees itself and every earlier one
        s = scores[th, :n]  # (n,)
        for j in range(n):
            s[j] = _dot(qh, keys[j, lo:lo + head_dim]) * scale
        _softmax_inplace(s)
        o = out[t, h * head_dim:(h + 1) * head_dim]  # (head_dim,)
        o[:] = 0.0
        for j in range(n):  # weighted sum of the value rows
            _axpy(s[j], values[j, lo:lo + head_dim], o)


@njit(cache=True)
def _run_chunk(tokens, pos, weights, keys, values, cos, sin, n_heads, n_kv_heads, eps, all_logits):
    """Run T consecutive tokens at positions pos .. pos+T-1 through the model.

    tokens: (T,) int64; weights: the float32 arrays of ``WEIGHT_NAMES`` in
    order; keys, values: (n_layers, max_seq_len, kv_dim) cache, rows pos ..
    pos+T-1 are written here; cos, sin: (max_seq_len, head_dim // 2).
    Returns logits (T, vocab) if all_logits, else (1, vocab) for the last token.
    """
    emb, attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, norm, output = weights
    T, D, head_dim = tokens.shape[0], emb.shape[1], emb.shape[1] // n_heads
    x = np.empty((T, D), np.float32)  # the residual stream
    for t in range(T):
        x[t] = emb[tokens[t]]
    h = np.empty((T, D), np.float32)  # normalised input of a branch
    q = np.empty((T, D), np.float32)
    mixed = np.empty((T, D), np.float32)  # attention output, heads side by side
    hidden = np.empty((T, w1.shape[1]), np.float32)
    scores = np.empty((T * n_heads, keys.shape[1]), np.float32)
    for layer in range(wq.shape[0]):
        k = keys[layer, pos:pos + T]  # (T, kv_dim): written straight into the cache
        v = values[layer, pos:pos + T]
        _rmsnorm(x, attn_norm[layer], eps, h)
        _qkv(h, wq[layer], wk[layer], wv[layer], q, k, v)
        _rope(q, cos, sin, pos, head_dim)
        _rope(k, cos, sin, pos, head_dim)
        _attention(q, keys[layer], values[layer], pos, n_kv_heads, scores, mixed)
        _matmul(mixed, wo[layer], x, True)
        _rmsnorm(x, ffn_norm[layer], eps, h)
        _swiglu_hidden(h, w1[layer], w3[layer], hidden)
        _matmul(hidden, w2[layer], x, True)
    last = x if all_logits else x[T - 1:]  # (T or 1, D)
    _rmsnorm(last, norm, eps, last)
    logits = np.empty((last.shape[0], output.shape[0]), np.float32)
    _matmul(last, output, logits, False)
    return logits


# -------------------------------------------------------- the public API --

@functools.lru_cache(maxsize=8)
def _rope_f32(head_dim: int, max_seq_len: int, theta: float):
    """cos, sin tables (max_seq_len, head_dim // 2) as float32, as model.apply_rope casts them."""
    cos, sin = model.rope_tables(head_dim, np.arange(max_seq_len), theta)
    return cos.astype(np.float32), sin.astype(np.float32)


def _weights(params: dict, config: model.ModelConfig) -> tuple:
    """Check the parameters against the config; return them as contiguous float32, in kernel order."""
    model.validate_params(params, config)
    # No copy when they already are float32 and contiguous (init_params makes them so).
    return tuple(np.ascontiguousarray(params[name], dtype=np.float32) for name in WEIGHT_NAMES)


def _run(weights: tuple, config: model.ModelConfig, tokens: np.ndarray, keys, values, pos: int,
         all_logits: bool) -> np.ndarray:
    """Checked inputs in, logits out: (T, vocab) if all_logits else (1, vocab)."""
    cos, sin = _rope_f32(config.head_dim, config.max_seq_len, config.rope_theta)
    return _run_chunk(np.ascontiguousarray(tokens), pos, weights, keys, values, cos, sin,
                      config.n_heads, config.n_kv_heads, np.float32(config.norm_eps), all_logits)


def forward(params: dict, config: model.ModelConfig, tokens) -> np.ndarray:
    """Logits for every position, like ``model.forward``: (T,) -> (T, vocab), (B, T) -> (B, T, vocab)."""
    weights = _weights(params, config)
    tokens = model.validate_tokens(tokens, config)
    rows = tokens if tokens.ndim == 2 else tokens[None, :]  # (B, T)
    B, T = rows.shape
    logits = np.empty((B, T, config.vocab_size), np.float32)
    for b in range(B):  # each sequence gets its own scratch cache
        keys = np.zeros((config.n_layers, T, config.kv_dim), np.float32)
        values = np.zeros_like(keys)
        logits[b] = _run(weights, config, rows[b], keys, values, 0, True)
    return logits if tokens.ndim == 2 else logits[0]


def prefill(params: dict, config: model.ModelConfig, tokens, cache) -> np.ndarray:
    """Run a prompt (T,) at positions cache.pos .. cache.pos+T-1 in one pass.

    Appends the prompt's keys and values to ``cache`` (a ``generate.KVCache``),
    advances ``cache.pos`` by T and returns the logits (vocab,) of the last token.
    """
    weights = _weights(params, config)
    tokens = model.validate_tokens(tokens, config)
    if tokens.ndim != 1:
        raise ValueError(f"prefill takes one sequence of shape (T,), got shape {tokens.shape}.")
    cache.check_room(config, len(tokens))
    logits = _run(weights, config, tokens, cache.keys, cache.values, cache.pos, False)
    cache.pos += len(tokens)
    return logits[0]


def step(params: dict, config: model.ModelConfig, token: int, cache) -> np.ndarray:
    """One decoding step: logits (vocab,) of ``token`` placed at position ``cache.pos``.

    Uses the keys and values already in ``cache`` (a ``generate.KVCache``),
    appends this token's, and advances ``cache.pos`` by one.
    """
    if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
        raise ValueError(f"token must be one integer id, got {token!r}.")
    return prefill(params, config, np.array([token], np.int64), cache)
