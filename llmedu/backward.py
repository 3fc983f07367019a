"""The backward pass: the gradient of the next-token loss for every parameter, by hand.

Lesson 03 (``03_pretraining``) derives it one operation at a time. No
autograd: each operation of ``llmedu.model``'s forward pass has a function
here that takes the gradient of its output (``dout``) and returns the
gradients of its inputs, and ``_backward`` chains them in reverse order.

The module holds the same computation twice:

1. **The reference** (``*_backward`` per operation,
   ``loss_and_grads_reference``): plain numpy, written to be read next to
   the forward pass. The tests check every function in it against finite
   differences.
2. **The fast path** (``loss_and_grads``, ``forward_loss``): what training
   runs. The big matrix products go to BLAS as 2-D float32 products
   (``(B*T, D) @ W.T``); q, k, v come out of one product with the three
   matrices stacked, and so do the two halves of SwiGLU; attention is a batch
   of small products in which the query heads that share a key/value head
   are stacked; everything in between is a Numba kernel that reads and
   writes each array once in place of numpy's temporaries. The tests check
   that it agrees with the reference.

Both run in the parameters' dtype: float32 for training, float64 for checks.
Left out: dropout, biases, weight tying, mixed precision.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import model, threads

threads.apply()  # BLAS and Numba threads for the CPUs this process may use, decided once (llmedu.threads)

__all__ = ["loss_and_grads", "forward_loss", "loss_and_grads_reference", "grads_from_logits",
           "grads_from_logits_reference", "forward_logits", "input_grads", "input_grads_reference",
           "linear_backward", "rmsnorm_backward", "rope_backward", "attention_forward", "attention_backward",
           "swiglu_backward", "cross_entropy", "cross_entropy_backward", "embedding_backward"]


# ------------------------------------ the parts: one backward per operation --

def linear_backward(dout, x, w):
    """out = x @ w.T.  dout: (..., out); x: (..., in); w: (out, in) -> dx (..., in), dw (out, in)."""
    dx = dout @ w  # (..., in)
    dw = dout.reshape(-1, dout.shape[-1]).T @ x.reshape(-1, x.shape[-1])  # (out, in): summed over tokens
    return dx, dw


def rmsnorm_backward(dout, x, weight, eps):
    """out = x * r * weight with r = 1 / sqrt(mean(x^2) + eps).  dout, x: (..., D); weight: (D,)."""
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)  # (..., 1)
    xhat = x * r  # (..., D)
    dweight = np.sum((dout * xhat).reshape(-1, x.shape[-1]), axis=0)  # (D,)
    dxhat = dout * weight  # (..., D)
    # r depends on x too: d r / d x_i = -r^3 x_i / D, hence the projection term.
    dx = r * (dxhat - xhat * np.mean(dxhat * xhat, axis=-1, keepdims=True))  # (..., D)
    return dx, dweight


def rope_backward(dout, cos, sin):
    """RoPE is a rotation, so its gradient is the rotation by minus the angle.  dout: (..., T, heads, head_dim)."""
    return model.apply_rope(dout, cos, -sin)


def attention_forward(q, k, v):
    """model.attention that also returns its weights.  q: (B, T, Hq, hd); k, v: (B, T, Hkv, hd).

    Returns out (B, T, Hq, hd) and weights (B, Hq, T, T).
    """
    B, T, n_heads, head_dim = q.shape
    group = n_heads // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)  # (B, T, Hq, hd)
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)  # (B, Hq, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    weights = model.softmax(np.where(future, -np.inf, scores), axis=-1)  # (B, Hq, T, T)
    return np.einsum("bhqk,bkhd->bqhd", weights, v), weights


def attention_backward(dout, q, k, v, weights):
    """Gradients of causal grouped-query attention.  dout: (B, T, Hq, hd) -> dq, dk, dv like q, k, v."""
    B, T, n_heads, head_dim = q.shape
    n_kv = k.shape[2]
    group = n_heads // n_kv
    k_rep, v_rep = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)  # (B, T, Hq, hd)
    dweights = np.einsum("bqhd,bkhd->bhqk", dout, v_rep)  # (B, Hq, T, T)
    dv_rep = np.einsum("bhqk,bqhd->bkhd", weights, dout)  # (B, T, Hq, hd)
    # softmax: ds_j = p_j (dp_j - sum_i p_i dp_i); masked entries have p = 0, so ds = 0 there.
    dscores = weights * (dweights - np.sum(weights * dweights, axis=-1, keepdims=True))
    dscores /= math.sqrt(head_dim)
    dq = np.einsum("bhqk,bkhd->bqhd", dscores, k_rep)  # (B, T, Hq, hd)
    dk_rep = np.einsum("bhqk,bqhd->bkhd", dscores, q)  # (B, T, Hq, hd)
    # Query heads h*group .. h*group+group-1 all read kv head h: their gradients add up.
    dk = dk_rep.reshape(B, T, n_kv, group, head_dim).sum(axis=3)  # (B, T, Hkv, hd)
    dv = dv_rep.reshape(B, T, n_kv, group, head_dim).sum(axis=3)
    return dq, dk, dv


def swiglu_backward(dout, x, w1, w2, w3):
    """out = (silu(x @ w1.T) * (x @ w3.T)) @ w2.T.  dout: (..., D); x: (..., D) -> dx, dw1, dw2, dw3."""
    a, b = x @ w1.T, x @ w3.T  # (..., H) gate and up projections
    s = 1.0 / (1.0 + np.exp(-a))  # sigmoid(a)
    dhidden, dw2 = linear_backward(dout, a * s * b, w2)  # (..., H), (D, H)
    da = dhidden * b * s * (1.0 + a * (1.0 - s))  # silu'(a) = s + a s (1 - s)
    db = dhidden * a * s
    dx1, dw1 = linear_backward(da, x, w1)
    dx3, dw3 = linear_backward(db, x, w3)
    return dx1 + dx3, dw1, dw2, dw3


def cross_entropy(logits, targets, mask):
    """Mean of -log softmax(logits)[target] over positions with mask 1.  logits: (N, V); targets, mask: (N,)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)  # (N, V)
    logp = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    picked = logp[np.arange(len(targets)), targets]  # (N,)
    return float(-np.sum(picked * mask) / np.sum(mask))


def cross_entropy_backward(logits, targets, mask):
    """d loss / d logits = (softmax - one_hot(target)) * mask / count.  Shapes as in ``cross_entropy``."""
    probs = model.softmax(logits, axis=-1)  # (N, V)
    probs[np.arange(len(targets)), targets] -= 1.0
    return probs * (mask / np.sum(mask))[:, None].astype(logits.dtype)


def embedding_backward(dout, tokens, vocab_size):
    """x = table[tokens]: each row of dout goes back to its token's row.  dout: (B, T, D) -> (V, D)."""
    dtable = np.zeros((vocab_size, dout.shape[-1]), dtype=dout.dtype)
    np.add.at(dtable, tokens.reshape(-1), dout.reshape(-1, dout.shape[-1]))  # repeated ids accumulate
    return dtable


# ---------------------------------------------- the whole model, reference --

LAYER_NAMES = ("attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3")


def _check(params, config, tokens, targets, loss_mask):
    """Validate everything at the boundary.

    Returns params (contiguous, one dtype), tokens and targets (B, T) int64,
    and the mask (B, T) in the parameters' dtype.
    """
    model.validate_params(params, config)
    dtype = params["tok_embeddings"].dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"parameters must be float32 or float64, got {dtype}.")
    for name, p in params.items():
        if p.dtype != dtype:
            raise ValueError(f"parameter {name!r} is {p.dtype} but tok_embeddings is {dtype}; use one dtype.")
    params = {name: np.ascontiguousarray(p) for name, p in params.items()}  # no copy if already so
    tokens = model.validate_tokens(tokens, config)
    targets_arr = np.asarray(targets)
    if targets_arr.shape != tokens.shape:
        raise ValueError(f"targets have shape {targets_arr.shape} but tokens have shape {tokens.shape}.")
    targets = model.validate_tokens(targets_arr, config)
    if tokens.ndim == 1:
        tokens, targets = tokens[None], targets[None]
    if loss_mask is None:
        return params, tokens, targets, np.ones(tokens.shape, dtype)
    mask = np.asarray(loss_mask)
    if mask.shape != targets_arr.shape:
        raise ValueError(f"loss_mask has shape {mask.shape} but targets have shape {targets_arr.shape}.")
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("loss_mask must contain only 0 and 1 (or False and True).")
    if not mask.any():
        raise ValueError("loss_mask selects no position: the mean loss over zero tokens is undefined.")
    return params, tokens, targets, mask.reshape(tokens.shape).astype(dtype)


def _forward_with_cache(params, config, tokens):
    """model.forward that keeps what the backward pass needs.  tokens (B, T) -> logits (B*T, V), caches."""
    B, T = tokens.shape
    nh, nkv, hd, eps = config.n_heads, config.n_kv_heads, config.head_dim, config.norm_eps
    cos, sin = model.rope_tables(hd, np.arange(T), config.rope_theta)
    x = params["tok_embeddings"][tokens]  # (B, T, D)
    layers = []
    for layer in range(config.n_layers):
        p = {name: params[name][layer] for name in LAYER_NAMES}
        c = {"x": x}
        c["h"] = h = model.rmsnorm(x, p["attention_norm"], eps)  # (B, T, D)
        q = model.apply_rope((h @ p["wq"].T).reshape(B, T, nh, hd), cos, sin)
        k = model.apply_rope((h @ p["wk"].T).reshape(B, T, nkv, hd), cos, sin)
        v = (h @ p["wv"].T).reshape(B, T, nkv, hd)
        mixed, c["weights"] = attention_forward(q, k, v)
        c.update(q=q, k=k, v=v, mixed=mixed.reshape(B, T, -1))
        c["x_mid"] = x = x + c["mixed"] @ p["wo"].T  # (B, T, D)
        c["h_ffn"] = h = model.rmsnorm(x, p["ffn_norm"], eps)
        x = x + model.swiglu(h, p["w1"], p["w2"], p["w3"])
        layers.append(c)
    final = model.rmsnorm(x, params["norm"], eps)  # (B, T, D)
    logits = final.reshape(B * T, -1) @ params["output"].T  # (B*T, V)
    return logits, {"layers": layers, "x": x, "final": final, "cos": cos, "sin": sin}


def _backward_to_inputs(params, config, dlogits, cache):
    """Walk the forward pass backwards: dlogits (B*T, V) -> grads for every parameter but the embedding
    table (left zero), and dx (B, T, D), the gradient at the input embeddings."""
    B, T = cache["x"].shape[:2]
    nh, hd, eps = config.n_heads, config.head_dim, config.norm_eps
    cos, sin = cache["cos"], cache["sin"]
    grads = {name: np.zeros_like(p) for name, p in params.items()}
    dfinal, grads["output"] = linear_backward(dlogits, cache["final"].reshape(B * T, -1), params["output"])
    dx, grads["norm"] = rmsnorm_backward(dfinal.reshape(B, T, -1), cache["x"], params["norm"], eps)
    for layer in reversed(range(config.n_layers)):
        p = {name: params[name][layer] for name in LAYER_NAMES}
        c = cache["layers"][layer]
        g = {}
        dh, g["w1"], g["w2"], g["w3"] = swiglu_backward(dx, c["h_ffn"], p["w1"], p["w2"], p["w3"])
        dh, g["ffn_norm"] = rmsnorm_backward(dh, c["x_mid"], p["ffn_norm"], eps)
        dx = dx + dh  # the residual passes dx through unchanged, the branch adds its part
        dmixed, g["wo"] = linear_backward(dx, c["mixed"], p["wo"])
        dq, dk, dv = attention_backward(dmixed.reshape(B, T, nh, hd), c["q"], c["k"], c["v"], c["weights"])
        dq, dk = rope_backward(dq, cos, sin), rope_backward(dk, cos, sin)
        dh_q, g["wq"] = linear_backward(dq.reshape(B, T, -1), c["h"], p["wq"])
        dh_k, g["wk"] = linear_backward(dk.reshape(B, T, -1), c["h"], p["wk"])
        dh_v, g["wv"] = linear_backward(dv.reshape(B, T, -1), c["h"], p["wv"])
        dh, g["attention_norm"] = rmsnorm_backward(dh_q + dh_k + dh_v, c["x"], p["attention_norm"], eps)
        dx = dx + dh
        for name, value in g.items():
            grads[name][layer] = value
    return grads, dx


def _backward(params, config, tokens, dlogits, cache):
    """dlogits (B*T, V) -> grads for every parameter; the input embeddings' gradient goes to their rows."""
    grads, dx = _backward_to_inputs(params, config, dlogits, cache)
    grads["tok_embeddings"] = embedding_backward(dx, tokens, config.vocab_size)
    return grads


def loss_and_grads_reference(params, config, tokens, targets, loss_mask=None):
    """The readable version of ``loss_and_grads``: plain numpy, one step after the other."""
    params, tokens, targets, mask = _check(params, config, tokens, targets, loss_mask)
    logits, cache = _forward_with_cache(params, config, tokens)
    flat_targets, flat_mask = targets.reshape(-1), mask.reshape(-1)
    loss = cross_entropy(logits, flat_targets, flat_mask)
    dlogits = cross_entropy_backward(logits, flat_targets, flat_mask)  # (B*T, V)
    return loss, _backward(params, config, tokens, dlogits, cache)


def _check_loss_fn_result(result, shape, dtype):
    """The (loss, dlogits) a loss function returned, validated: dlogits as (B*T, V) in the parameters' dtype."""
    loss, dlogits = result
    dlogits = np.asarray(dlogits)
    if dlogits.shape != shape:
        raise ValueError(f"the loss function returned dlogits of shape {dlogits.shape}; it must be {shape}, "
                         "the shape of the logits it was given.")
    if not np.all(np.isfinite(dlogits)):
        raise ValueError("the loss function returned non-finite dlogits; check it for log(0) or overflow.")
    return float(loss), np.ascontiguousarray(dlogits.reshape(shape[0] * shape[1], -1), dtype=dtype)


def _loss_fn_forward(params, config, tokens, loss_fn, forward):
    """Checked inputs, ``forward``'s logits handed to ``loss_fn``: (params, tokens (B, T), loss, dlogits (B*T, V),
    cache). Shared by the four entry points that take a loss function."""
    params, tokens, _, _ = _check(params, config, tokens, tokens, None)
    logits, cache = forward(params, config, tokens)
    B, T = tokens.shape
    loss, dlogits = _check_loss_fn_result(loss_fn(logits.reshape(B, T, -1)), (B, T, config.vocab_size),
                                          logits.dtype)
    return params, tokens, loss, dlogits, cache


def grads_from_logits_reference(params, config, tokens, loss_fn):
    """The readable version of ``grads_from_logits``."""
    params, tokens, loss, dlogits, cache = _loss_fn_forward(params, config, tokens, loss_fn, _forward_with_cache)
    return loss, _backward(params, config, tokens, dlogits, cache)


# ------------------------------------------------------------ the kernels --
# The fast path leaves the matrix products to numpy (BLAS) and does the steps
# in between with these Numba kernels, which read and write each array once
# instead of making numpy temporaries. They serve float32 and float64 alike:
# literal constants are written np.float32(...) and are exact (0, 1, D), so
# float32 arithmetic stays float32 and float64 stays float64; inexact
# constants (eps, scale) arrive as arguments in the parameters' dtype.
# FASTMATH lets LLVM reorder sums into SIMD lanes and fuse multiply-adds, but
# (unlike fastmath=True) not assume that inf and nan never occur;
# error_model="numpy" makes x / 0 give inf, as numpy does, instead of raising.
# The kernels run on one thread: BLAS already uses every core for the
# products, and Numba's OpenMP workers, spinning after a parallel kernel,
# took the cores from BLAS's threads (on a busy 2-core machine we measured
# iterations 4 times slower with parallel kernels than with serial ones).
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _dot(a, b):
    acc = np.float32(0.0)
    for i in range(a.shape[0]):
        acc += a[i] * b[i]
    return acc


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _rmsnorm_forward(x, weight, eps, out, rstd):
    """out = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps) kept for the backward.  x, out: (N, D); rstd: (N,)."""
    N, D = x.shape
    for r in range(N):
        rs = np.float32(1.0) / np.sqrt(_dot(x[r], x[r]) / np.float32(D) + eps)
        rstd[r] = rs
        for i in range(D):
            out[r, i] = x[r, i] * rs * weight[i]


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _rmsnorm_backward(dout, x, weight, rstd, dx, dweight):
    """dx += the gradient through RMSNorm of dout (the residual adds it); dweight = the gain's gradient.

    dout, x, dx: (N, D); weight, dweight: (D,); rstd: (N,) from ``_rmsnorm_forward``.
    """
    N, D = x.shape
    dweight[:] = 0
    for r in range(N):
        rs = rstd[r]
        proj = np.float32(0.0)  # mean(dxhat * xhat), as in rmsnorm_backward
        for i in range(D):
            xhat = x[r, i] * rs
            dweight[i] += dout[r, i] * xhat
            proj += dout[r, i] * weight[i] * xhat
        proj /= np.float32(D)
        for i in range(D):
            dx[r, i] += rs * (dout[r, i] * weight[i] - x[r, i] * rs * proj)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _rope_inplace(x, cos, sin, width, head_dim):
    """Rotate the interleaved pairs of the first ``width`` columns of x (B*T, C) in place, head by head.

    Row r is position r % T; cos, sin: (T, head_dim // 2). Passing -sin rotates back: RoPE's backward.
    """
    T = cos.shape[0]
    for r in range(x.shape[0]):
        c, s = cos[r % T], sin[r % T]
        for start in range(0, width, head_dim):
            for i in range(head_dim // 2):
                even, odd = x[r, start + 2 * i], x[r, start + 2 * i + 1]
                x[r, start + 2 * i] = even * c[i] - odd * s[i]
                x[r, start + 2 * i + 1] = even * s[i] + odd * c[i]


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _causal_softmax(scores, scale):
    """In place: scores (..., T, T) become attention weights, row r of each (T, T) block being query position r.

    Entries j <= t get softmax_j(scale * score); future keys (j > t) get 0.
    """
    T = scores.shape[-1]
    rows = scores.reshape(-1, T)  # (B * Hkv * G * T, T)
    for r in range(rows.shape[0]):
        row, t = rows[r], r % T
        top = row[0] * scale
        for j in range(t + 1):
            row[j] *= scale
            top = max(top, row[j])
        total = np.float32(0.0)
        for j in range(t + 1):
            row[j] = np.exp(row[j] - top)  # shifted by the max: exp cannot overflow
            total += row[j]
        inv = np.float32(1.0) / total
        for j in range(t + 1):
            row[j] *= inv
        row[t + 1:] = 0


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _softmax_backward(weights, dweights, scale):
    """In place: dweights (..., T) becomes d loss / d scores = scale * p * (dp - sum_j p_j dp_j)."""
    T = weights.shape[-1]
    p, dp = weights.reshape(-1, T), dweights.reshape(-1, T)
    for r in range(p.shape[0]):
        proj = _dot(p[r], dp[r])
        for j in range(T):  # masked entries have p = 0, so their gradient is 0
            dp[r, j] = scale * p[r, j] * (dp[r, j] - proj)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _swiglu_forward(ab, sig, out):
    """out = silu(a) * b = a * sigmoid(a) * b, where ab = [a | b] (N, 2H); out: (N, H).

    sig (N, H) comes in holding exp(a) (numpy's vectorised exp is several
    times faster than a scalar one) and leaves holding sigmoid(a) for the
    backward. sigmoid = 1 / (1 + 1/exp(a)) needs no branch: exp(a) = inf
    gives 1 and exp(a) = 0 gives 0.
    """
    N, H = out.shape
    for r in range(N):
        for i in range(H):
            s = np.float32(1.0) / (np.float32(1.0) + np.float32(1.0) / sig[r, i])
            sig[r, i] = s
            out[r, i] = ab[r, i] * s * ab[r, H + i]


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _swiglu_backward(dout, ab, sig):
    """In place: ab = [a | b] (N, 2H) becomes [da | db], given dout = d loss / d(silu(a) * b) and sig = sigmoid(a)."""
    N, H = dout.shape
    for r in range(N):
        for i in range(H):
            a, b, s = ab[r, i], ab[r, H + i], sig[r, i]
            # silu'(a) = s (1 + a (1 - s))
            ab[r, i] = dout[r, i] * b * s * (np.float32(1.0) + a * (np.float32(1.0) - s))
            ab[r, H + i] = dout[r, i] * a * s


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _cross_entropy(logits, targets, mask, scale, losses):
    """losses[r] = mask[r] * -log softmax(logits[r])[targets[r]]; logits become d loss / d logits, in place.

    logits: (N, V); targets: (N,) int64; mask: (N,) of 0 and 1; scale = 1 / mask.sum().
    """
    N, V = logits.shape
    for r in range(N):
        row = logits[r]
        top = row.max()
        picked = row[targets[r]] - top
        total = np.float32(0.0)
        for j in range(V):
            row[j] = np.exp(row[j] - top)  # shifted by the max: exp cannot overflow
            total += row[j]
        losses[r] = mask[r] * (np.log(total) - picked)  # -log(exp(picked) / total)
        weight = mask[r] * scale / total
        for j in range(V):
            row[j] *= weight  # softmax, times this row's share of the mean ...
        row[targets[r]] -= mask[r] * scale  # ... minus the one-hot target


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _embedding_backward(dx, tokens, dtable):
    """dtable[v] = sum of the rows of dx whose token is v (ids repeat).  dx: (N, D); tokens: (N,); dtable: (V, D)."""
    dtable[:] = 0
    for r in range(tokens.shape[0]):
        dtable[tokens[r]] += dx[r]


# --------------------------------------------------- the whole model, fast --

def _heads(x, B, T, n_kv, head_dim):
    """Views (no copy) of token-major columns x (B*T, n_kv * G * head_dim) as (B, n_kv, G, T, head_dim).

    np.matmul takes strided views as inputs and as ``out`` (as fast as
    contiguous copies, measured), so the heads are never copied into
    head-major order.
    """
    group = x.shape[1] // (n_kv * head_dim)
    return x.reshape(B, T, n_kv, group, head_dim).transpose(0, 2, 3, 1, 4)


def _layer_forward(params, layer, x, B, T, consts):
    """One block on the residual stream x (B*T, D) -> (B*T, D), and the cache its backward needs."""
    dt, (nh, nkv, hd) = x.dtype, consts["heads"]
    p = {name: params[name][layer] for name in LAYER_NAMES}
    D, kv_dim, H = nh * hd, nkv * hd, p["w1"].shape[0]
    c = {"x": x, "rstd1": np.empty(B * T, dt), "h": np.empty_like(x)}
    _rmsnorm_forward(x, p["attention_norm"], consts["eps"], c["h"], c["rstd1"])
    c["wqkv"] = np.concatenate((p["wq"], p["wk"], p["wv"]))  # (D + 2 kv_dim, D): one product, not three
    c["qkv"] = qkv = c["h"] @ c["wqkv"].T  # (B*T, D + 2 kv_dim)
    _rope_inplace(qkv, consts["cos"], consts["sin"], D + kv_dim, hd)  # rotates q and k, not v
    q = _heads(qkv[:, :D], B, T, nkv, hd)  # (B, Hkv, G, T, hd)
    k = _heads(qkv[:, D:D + kv_dim], B, T, nkv, hd)  # (B, Hkv, 1, T, hd)
    v = _heads(qkv[:, D + kv_dim:], B, T, nkv, hd)  # (B, Hkv, 1, T, hd)
    c["weights"] = q @ k.swapaxes(-1, -2)  # (B, Hkv, G, T, T) scores; the G query heads share k ...
    _causal_softmax(c["weights"], consts["scale"])  # ... and become weights
    c["mixed"] = np.empty_like(x)  # (B*T, D): heads side by side, token-major
    np.matmul(c["weights"], v, out=_heads(c["mixed"], B, T, nkv, hd))
    c["x_mid"] = x + c["mixed"] @ p["wo"].T  # (B*T, D): residual around attention
    c["rstd2"], c["h2"] = np.empty(B * T, dt), np.empty_like(x)
    _rmsnorm_forward(c["x_mid"], p["ffn_norm"], consts["eps"], c["h2"], c["rstd2"])
    c["w13"] = np.concatenate((p["w1"], p["w3"]))  # (2H, D)
    c["ab"] = c["h2"] @ c["w13"].T  # (B*T, 2H): gate | up
    c["sig"], c["hidden"] = np.empty((B * T, H), dt), np.empty((B * T, H), dt)
    with np.errstate(over="ignore", divide="ignore"):  # exp(a) = inf (or 0) is fine, see _swiglu_forward
        np.exp(c["ab"][:, :H], out=c["sig"])
    _swiglu_forward(c["ab"], c["sig"], c["hidden"])
    return c["x_mid"] + c["hidden"] @ p["w2"].T, c  # residual around the feed-forward layer


def _stack_groups(x):
    """(B, Hkv, G, T, hd) -> (B, Hkv, G*T, hd): the G query heads of a group one under the other.

    A view when G = 1; otherwise numpy copies. A product over the stacked
    rows then sums over the group, as the gradients of shared k and v need.
    """
    B, n_kv, group, T, hd = x.shape
    return x.reshape(B, n_kv, group * T, hd)


def _attention_backward(dmixed, c, B, T, consts):
    """d loss / d qkv (B*T, D + 2 kv_dim), before the rotation, from dmixed (B*T, D) and the layer's cache."""
    nh, nkv, hd = consts["heads"]
    D, kv_dim = nh * hd, nkv * hd
    qkv, weights = c["qkv"], c["weights"]  # weights: (B, Hkv, G, T, T)
    q = _heads(qkv[:, :D], B, T, nkv, hd)  # (B, Hkv, G, T, hd), rotated
    k, v = _heads(qkv[:, D:D + kv_dim], B, T, nkv, hd), _heads(qkv[:, D + kv_dim:], B, T, nkv, hd)
    dout = _heads(dmixed, B, T, nkv, hd)  # (B, Hkv, G, T, hd)
    dqkv = np.empty_like(qkv)  # the products below write straight into its columns
    dq, dk, dv = (_heads(part, B, T, nkv, hd) for part in (dqkv[:, :D], dqkv[:, D:D + kv_dim], dqkv[:, D + kv_dim:]))
    np.matmul(_stack_groups(weights).swapaxes(-1, -2), _stack_groups(dout), out=dv[:, :, 0])  # (B, Hkv, T, hd)
    dscores = dout @ v.swapaxes(-1, -2)  # (B, Hkv, G, T, T): d loss / d weights ...
    _softmax_backward(weights, dscores, consts["scale"])  # ... then d loss / d scores
    np.matmul(dscores, k, out=dq)  # (B, Hkv, G, T, hd)
    np.matmul(_stack_groups(dscores).swapaxes(-1, -2), _stack_groups(q), out=dk[:, :, 0])  # (B, Hkv, T, hd)
    _rope_inplace(dqkv, consts["cos"], consts["sin_back"], D + kv_dim, hd)  # rotate back: RoPE's backward
    return dqkv


def _layer_backward(params, layer, dx, c, grads, consts):
    """dx (B*T, D), the gradient at the block's output, becomes the gradient at its input, in place."""
    p = {name: params[name][layer] for name in LAYER_NAMES}
    D, kv_dim, H = dx.shape[1], p["wk"].shape[0], p["w1"].shape[0]
    B, T = c["weights"].shape[0], c["weights"].shape[-1]
    # feed-forward branch: out = x_mid + hidden @ w2.T
    np.matmul(dx.T, c["hidden"], out=grads["w2"][layer])  # (D, H)
    dab = c["ab"]  # (B*T, 2H), overwritten by its own gradient:
    _swiglu_backward(dx @ p["w2"], dab, c["sig"])
    dw13 = dab.T @ c["h2"]  # (2H, D)
    grads["w1"][layer], grads["w3"][layer] = dw13[:H], dw13[H:]
    _rmsnorm_backward(dab @ c["w13"], c["x_mid"], p["ffn_norm"], c["rstd2"], dx, grads["ffn_norm"][layer])
    # attention branch: x_mid = x + mixed @ wo.T
    np.matmul(dx.T, c["mixed"], out=grads["wo"][layer])  # (D, D)
    dqkv = _attention_backward(dx @ p["wo"], c, B, T, consts)  # (B*T, D + 2 kv_dim)
    dwqkv = dqkv.T @ c["h"]  # (D + 2 kv_dim, D)
    grads["wq"][layer], grads["wk"][layer], grads["wv"][layer] = dwqkv[:D], dwqkv[D:D + kv_dim], dwqkv[D + kv_dim:]
    dh = dqkv @ c["wqkv"]  # (B*T, D)
    _rmsnorm_backward(dh, c["x"], p["attention_norm"], c["rstd1"], dx, grads["attention_norm"][layer])


def _constants(config, T, dtype):
    """Scalars and RoPE tables in the parameters' dtype, shared by every layer."""
    cos, sin = model.rope_tables(config.head_dim, np.arange(T), config.rope_theta)  # (T, hd/2)
    return {"heads": (config.n_heads, config.n_kv_heads, config.head_dim),
            "eps": dtype.type(config.norm_eps), "scale": dtype.type(1.0 / math.sqrt(config.head_dim)),
            "cos": cos.astype(dtype), "sin": sin.astype(dtype), "sin_back": (-sin).astype(dtype)}


def _fast_forward(params, config, tokens, keep):
    """Logits (B*T, V) for checked tokens (B, T), and the caches (kept only if ``keep``)."""
    B, T = tokens.shape
    dt = params["tok_embeddings"].dtype
    consts = _constants(config, T, dt)
    x = params["tok_embeddings"][tokens.reshape(-1)]  # (B*T, D)
    layers = []
    for layer in range(config.n_layers):
        x, c = _layer_forward(params, layer, x, B, T, consts)
        if keep:
            layers.append(c)
    rstd, final = np.empty(B * T, dt), np.empty_like(x)
    _rmsnorm_forward(x, params["norm"], consts["eps"], final, rstd)
    logits = final @ params["output"].T  # (B*T, V)
    return logits, {"layers": layers, "x": x, "rstd": rstd, "final": final, "consts": consts}


def _kept_fast_forward(params, config, tokens):
    return _fast_forward(params, config, tokens, keep=True)


def _fast_loss(logits, targets, mask):
    """Mean masked cross-entropy; turns logits (B*T, V) into d loss / d logits in place."""
    flat_mask = mask.reshape(-1)
    count = float(flat_mask.sum())
    losses = np.empty(len(flat_mask), logits.dtype)
    _cross_entropy(logits, targets.reshape(-1), flat_mask, logits.dtype.type(1.0 / count), losses)
    return float(losses.sum(dtype=np.float64) / count)


def _fast_backward_to_inputs(params, config, dlogits, cache):
    """Gradients of every parameter but the embedding table, and dx (B*T, D) at the input embeddings."""
    grads = {name: np.empty_like(params[name]) for name in LAYER_NAMES}
    grads["output"] = dlogits.T @ cache["final"]  # (V, D)
    dx = np.zeros_like(cache["x"])  # (B*T, D): gradient of the residual stream
    grads["norm"] = np.empty_like(params["norm"])
    _rmsnorm_backward(dlogits @ params["output"], cache["x"], params["norm"], cache["rstd"], dx, grads["norm"])
    for layer in reversed(range(config.n_layers)):
        _layer_backward(params, layer, dx, cache["layers"][layer], grads, cache["consts"])
    return grads, dx


def _fast_backward(params, config, tokens, dlogits, cache):
    """Gradients of every parameter from dlogits (B*T, V) and the forward's cache."""
    grads, dx = _fast_backward_to_inputs(params, config, dlogits, cache)
    grads["tok_embeddings"] = np.empty_like(params["tok_embeddings"])
    _embedding_backward(dx, tokens.reshape(-1), grads["tok_embeddings"])
    return grads


# ------------------------------------------------------------ public API --

def loss_and_grads(params, config, tokens, targets, loss_mask=None):
    """Mean next-token cross-entropy and its gradient for every parameter (the fast path).

    params: as ``model.init_params`` (float32; or float64 for checks, and then
    everything runs in float64); tokens, targets: (B, T) or (T,) ints,
    targets[b, t] being the token that should follow tokens[b, t];
    loss_mask: None (every position counts) or 0/1 of the same shape (only
    positions with 1 count, as in SFT). Returns (loss, grads), grads a dict
    with the names, shapes and dtype of params. Same results as
    ``loss_and_grads_reference``, up to rounding.
    """
    params, tokens, targets, mask = _check(params, config, tokens, targets, loss_mask)
    logits, cache = _fast_forward(params, config, tokens, keep=True)
    loss = _fast_loss(logits, targets, mask)  # logits now hold d loss / d logits
    return loss, _fast_backward(params, config, tokens, logits, cache)


def grads_from_logits(params, config, tokens, loss_fn):
    """Any loss computed from the logits, and its gradient for every parameter: the one backward pass.

    Lessons 05–07 train with new losses (a reward model, DPO, GRPO, an
    adversarial suffix) on the same network; each supplies only
    ``loss_fn(logits) -> (loss, dlogits)``, with logits (B, T, V) as the
    forward pass computed them and dlogits = d loss / d logits of the same
    shape, and the backward pass is this one. tokens: (B, T) or (T,) ints.
    Returns (loss, grads) like ``loss_and_grads``.
    """
    params, tokens, loss, dlogits, cache = _loss_fn_forward(params, config, tokens, loss_fn, _kept_fast_forward)
    return loss, _fast_backward(params, config, tokens, dlogits, cache)


def input_grads(params, config, tokens, loss_fn):
    """A loss computed from the logits and its gradient at the input embeddings (lesson 07's adversarial suffix).

    The same backward pass as ``grads_from_logits``, stopped one step early:
    instead of sending each position's gradient to its token's row of the
    embedding table, it returns dx (B, T, D) = d loss / d x, x being the rows
    ``tok_embeddings[tokens]`` the forward pass read. A token is a one-hot
    vector times the table, so d loss / d one-hot = dx @ tok_embeddings.T
    (B, T, V): how the loss would move if position t leaned towards token v.
    tokens: (B, T) or (T,) ints; loss_fn as in ``grads_from_logits``.
    Returns (loss, dx).
    """
    params, tokens, loss, dlogits, cache = _loss_fn_forward(params, config, tokens, loss_fn, _kept_fast_forward)
    _, dx = _fast_backward_to_inputs(params, config, dlogits, cache)
    return loss, dx.reshape(*tokens.shape, -1)


def input_grads_reference(params, config, tokens, loss_fn):
    """The readable version of ``input_grads``."""
    params, tokens, loss, dlogits, cache = _loss_fn_forward(params, config, tokens, loss_fn, _forward_with_cache)
    _, dx = _backward_to_inputs(params, config, dlogits, cache)
    return loss, dx


def forward_logits(params, config, tokens) -> np.ndarray:
    """The logits (B, T, V) of the fast forward pass, in the parameters' dtype, no caches kept: what
    ``grads_from_logits`` hands its loss function, for measuring without training."""
    params, tokens, _, _ = _check(params, config, tokens, tokens, None)
    logits, _ = _fast_forward(params, config, tokens, keep=False)
    return logits.reshape(*tokens.shape, -1)


def forward_loss(params, config, tokens, targets, loss_mask=None) -> float:
    """The mean cross-entropy alone, for evaluation: no caches kept, no gradients."""
    params, tokens, targets, mask = _check(params, config, tokens, targets, loss_mask)
    logits, _ = _fast_forward(params, config, tokens, keep=False)
    return _fast_loss(logits, targets, mask)
