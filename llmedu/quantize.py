"""Quantisation: the parameters file in int8 (Q8_0), as llama2.c's ``runq.c`` reads it.

Lesson 08 (``08_frontiers``) halves the file a second time: float32 -> float16
took 4 bytes per parameter to 2, int8 takes it to about 1. Q8_0 works on
groups of ``group_size`` consecutive values along each row:

    scale = max |w| / 127          one float32 per group
    q     = round(w / scale)       int8 in [-127, 127]; w ~ q * scale

Each matrix-vector product quantises its input vector the same way and
takes integer dot products group by group, times both scales. Decoding reads
every weight once per token, so a file four times smaller is also (up to)
four times less memory traffic: ``llmedu.quantize_kernels`` is the Numba
decode path, ``step_q8_reference`` here its numpy reference.

The group size backs off as llama2.c's ``export.py`` does: halve from 64
until it divides ``dim`` -- and ``hidden_dim`` too, because ``w2``'s rows are
``hidden_dim`` long and runq.c reads them group by group.

Rounding: ``round_half_away`` rounds ties away from zero, as C's ``round``
does in runq.c (numpy's ``np.round`` sends ties to the even neighbour).
"""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import numpy as np

from llmedu import model
from llmedu.checkpoint import _open, atomic_write
from llmedu.generate import KVCache, check_sampling, sample_next

__all__ = ["Q8", "group_size_for", "quantize_q8", "dequantize_q8", "matvec_q8", "quantize_params",
           "dequantize_params", "step_q8_reference", "export_llama2c_q8", "read_llama2c_q8",
           "sample_ids_q8", "generate_q8", "file_bytes"]

MATRICES = ("tok_embeddings", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "output")  # stored in int8
NORMS = ("attention_norm", "ffn_norm", "norm")  # small, kept in float32
MAGIC, VERSION, HEADER_BYTES = 0x616B3432, 2, 256  # "ak42", runq.c's version-2 file


class Q8(NamedTuple):
    """A quantised tensor: q (..., n) int8 and s (..., n // group_size) float32, w ~ q * s per group."""
    q: np.ndarray
    s: np.ndarray

    @property
    def group_size(self) -> int:
        return self.q.shape[-1] // self.s.shape[-1]


# ------------------------------------------------------------ one tensor --

def group_size_for(config: model.ModelConfig, group_size: int = 64) -> int:
    """The group size runq.c gets: ``group_size`` halved until it divides dim and hidden_dim."""
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer (runq.c's default is 64), got {group_size!r}.")
    size = int(group_size)
    while config.dim % size or config.hidden_dim % size:
        size //= 2  # reaches 1 at worst, which divides everything
    return size


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (C's round)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_q8(w: np.ndarray, group_size: int) -> Q8:
    """Q8_0 of w (..., n) along its last axis: q (..., n) int8, s (..., n // group_size) float32."""
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}.")
    w = np.asarray(w, dtype=np.float32)
    if w.ndim == 0 or w.shape[-1] % group_size:
        raise ValueError(f"rows of length {w.shape[-1:] or 'none'} do not split into groups of {group_size}: "
                         "pick a group size that divides the row length (group_size_for does).")
    groups = w.reshape(*w.shape[:-1], -1, group_size)  # (..., n_groups, group_size)
    scale = np.abs(groups).max(axis=-1) / np.float32(127.0)  # (..., n_groups) float32
    safe = np.where(scale == 0, np.float32(1.0), scale)[..., None]  # an all-zero group: q = 0, not 0/0
    q = round_half_away(groups / safe).astype(np.int8)
    return Q8(q.reshape(w.shape), scale.astype(np.float32))


def dequantize_q8(t: Q8) -> np.ndarray:
    """float32 values q * scale, the shape of t.q."""
    groups = t.q.reshape(*t.q.shape[:-1], -1, t.group_size).astype(np.float32)  # (..., n_groups, gs)
    return (groups * t.s[..., None]).reshape(t.q.shape)


def matvec_q8(w: Q8, x: np.ndarray) -> np.ndarray:
    """w @ x as runq.c's matmul: x (n,) is quantised too, w: (d, n) -> (d,) float32.

    Per group an exact integer dot product; the groups are summed in order,
    each times the weight's and the input's scale (the same float32 order as runq.c).
    """
    xq = quantize_q8(x, w.group_size)
    d, n = w.q.shape
    G = n // w.group_size
    ints = np.einsum("dgk,gk->dg", w.q.reshape(d, G, -1).astype(np.int32),
                     xq.q.reshape(G, -1).astype(np.int32))  # (d, G) int32, exact
    out = np.zeros(d, np.float32)
    for g in range(G):
        out += ints[:, g].astype(np.float32) * w.s[:, g] * xq.s[g]
    return out


# ------------------------------------------------------------- a model --

def quantize_params(params: dict, config: model.ModelConfig, group_size: int = 64) -> dict:
    """Every matrix as Q8 (group size backed off by ``group_size_for``), the norms as float32."""
    model.validate_params(params, config)
    gs = group_size_for(config, group_size)
    out = {name: quantize_q8(params[name], gs) for name in MATRICES}
    out.update({name: np.ascontiguousarray(params[name], dtype=np.float32) for name in NORMS})
    return out


def dequantize_params(qparams: dict) -> dict:
    """float32 parameters from quantised ones: what the int8 file holds, for the float32 code paths."""
    return {name: dequantize_q8(v) if isinstance(v, Q8) else v for name, v in qparams.items()}


def runq_rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin (max_seq_len, head_dim // 2) float32, with runq.c's float32 angle arithmetic.

    runq.c forms freq = 1 / theta ** (2i / head_dim) and pos * freq in float32;
    ``model.rope_tables`` does it in float64. Matching it keeps the int8
    path's greedy tokens on runq.c's for longer.
    """
    exponent = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)  # (head_dim/2,)
    freq = np.float32(1.0) / np.power(np.float32(theta), exponent)
    angles = np.arange(max_seq_len, dtype=np.float32)[:, None] * freq[None, :]  # float32, as runq.c
    return np.cos(angles.astype(np.float64)).astype(np.float32), np.sin(angles.astype(np.float64)).astype(np.float32)


def _rmsnorm32(x, weight, eps):
    ss = np.float32(np.dot(x, x)) / np.float32(x.shape[0]) + np.float32(eps)
    return weight * (np.float32(1.0) / np.sqrt(ss) * x)


def step_q8_reference(qparams: dict, config: model.ModelConfig, token: int, cache: KVCache) -> np.ndarray:
    """Logits (vocab,) of ``token`` at position ``cache.pos`` through the int8 model, in numpy.

    runq.c's forward for one token: every matrix product is ``matvec_q8``;
    norms, RoPE, attention and SwiGLU stay float32. Appends to ``cache``.
    """
    cache.check_room(config, 1)
    pos, hd, group = cache.pos, config.head_dim, config.n_heads // config.n_kv_heads
    cos, sin = (t[pos] for t in runq_rope_tables(hd, config.max_seq_len, config.rope_theta))  # (hd/2,)
    emb = qparams["tok_embeddings"]
    x = dequantize_q8(Q8(emb.q[token], emb.s[token]))  # (D,)
    layer_q8 = lambda name, layer: Q8(qparams[name].q[layer], qparams[name].s[layer])  # noqa: E731
    for layer in range(config.n_layers):
        h = _rmsnorm32(x, qparams["attention_norm"][layer], config.norm_eps)
        q, k, v = (matvec_q8(layer_q8(name, layer), h) for name in ("wq", "wk", "wv"))
        for vec in (q, k):  # rotate the interleaved pairs of every head
            pairs = vec.reshape(-1, hd // 2, 2)  # (heads, hd/2, 2)
            even, odd = pairs[..., 0].copy(), pairs[..., 1].copy()
            pairs[..., 0], pairs[..., 1] = even * cos - odd * sin, even * sin + odd * cos
        cache.keys[layer, pos], cache.values[layer, pos] = k, v
        mixed = np.empty(config.dim, np.float32)
        for head in range(config.n_heads):
            lo = (head // group) * hd  # this query head's key/value head
            keys, values = cache.keys[layer, :pos + 1, lo:lo + hd], cache.values[layer, :pos + 1, lo:lo + hd]
            scores = keys @ q[head * hd:(head + 1) * hd] / np.float32(math.sqrt(hd))  # (pos+1,)
            mixed[head * hd:(head + 1) * hd] = model.softmax(scores).astype(np.float32) @ values
        x = x + matvec_q8(layer_q8("wo", layer), mixed)
        h = _rmsnorm32(x, qparams["ffn_norm"][layer], config.norm_eps)
        gate, up = matvec_q8(layer_q8("w1", layer), h), matvec_q8(layer_q8("w3", layer), h)  # (H,)
        hidden = gate * (np.float32(1.0) / (np.float32(1.0) + np.exp(-gate))) * up  # SwiGLU as runq.c writes it
        x = x + matvec_q8(layer_q8("w2", layer), hidden)
    cache.pos += 1
    return matvec_q8(qparams["output"], _rmsnorm32(x, qparams["norm"], config.norm_eps))  # (vocab,)


# ------------------------------------------------------ runq.c's file --

def _header(config: model.ModelConfig, group_size: int) -> bytes:
    ints = [config.dim, config.hidden_dim, config.n_layers, config.n_heads, config.n_kv_heads,
            config.vocab_size, config.max_seq_len]
    head = (np.array([MAGIC, VERSION], "<u4").tobytes() + np.array(ints, "<i4").tobytes()
            + b"\x00" + np.array([group_size], "<i4").tobytes())  # 0: the classifier is not shared
    return head + b"\x00" * (HEADER_BYTES - len(head))


def _layout(config: model.ModelConfig, shared: bool) -> list[tuple[str, int, int]]:
    """(name, tensors in it, values per tensor) of every quantised block, in file order."""
    shapes = model.param_shapes(config)
    blocks = [(name, 1 if name == "tok_embeddings" else config.n_layers, math.prod(shapes[name][-2:]))
              for name in MATRICES[:-1]]
    return blocks if shared else blocks + [("output", 1, config.vocab_size * config.dim)]


def export_llama2c_q8(path, params: dict, config: model.ModelConfig, group_size: int = 64) -> int:
    """Write runq.c's version-2 file (int8 + scales, norms float32), atomically; returns the group size used.

    256-byte header (magic "ak42", version 2, the 7 config ints, a shared-
    classifier byte, the group size, zero padding); then the norms as float32;
    then for each matrix, layer by layer, its int8 values followed by its scales.
    """
    if config.rope_theta != 10000.0 or config.norm_eps != 1e-5:
        raise ValueError("runq.c fixes rope_theta=10000 and norm_eps=1e-5; this model uses "
                         f"rope_theta={config.rope_theta}, norm_eps={config.norm_eps}, so runq.c would compute "
                         "other logits: export it with --format gguf instead.")
    qparams = quantize_params(params, config, group_size)
    gs = qparams["wq"].group_size

    def write(f):
        f.write(_header(config, gs))
        for name in NORMS:
            f.write(qparams[name].astype("<f4").tobytes())
        for name, count, _ in _layout(config, shared=False):
            t = qparams[name]
            q, s = t.q.reshape(count, -1), t.s.reshape(count, -1)
            for i in range(count):  # runq.c reads each layer's values, then that layer's scales
                f.write(q[i].tobytes())
                f.write(s[i].astype("<f4").tobytes())

    atomic_write(path, write)
    return gs


def read_llama2c_q8(path) -> tuple[dict, model.ModelConfig]:
    """Read a runq.c version-2 file: (qparams as ``quantize_params`` gives, config)."""
    with _open(path) as f:
        raw = f.read()
    if len(raw) < HEADER_BYTES or int.from_bytes(raw[:4], "little") != MAGIC:
        raise ValueError(f"{path} does not start with llama2.c's magic 'ak42': it is not a runq.c (version 2) file.")
    version = int.from_bytes(raw[4:8], "little")
    if version != VERSION:
        raise ValueError(f"{path} is a llama2.c version-{version} file; runq.c and this reader take version 2 "
                         "(int8): write one with llmedu export --format llama2c-q8.")
    ints = np.frombuffer(raw[8:36], "<i4").tolist()
    shared, gs = raw[36] != 0, int(np.frombuffer(raw[37:41], "<i4")[0])
    config = model.ModelConfig(vocab_size=ints[5], dim=ints[0], n_layers=ints[2], n_heads=ints[3],
                               n_kv_heads=ints[4], hidden_dim=ints[1], max_seq_len=ints[6])
    if gs < 1 or config.dim % gs or config.hidden_dim % gs:
        raise ValueError(f"{path}: group size {gs} does not divide dim {config.dim} and hidden_dim {config.hidden_dim}.")
    layout = _layout(config, shared)
    need = HEADER_BYTES + 4 * (2 * config.n_layers + 1) * config.dim + sum(c * n * (1 + 4 / gs) for _, c, n in layout)
    if len(raw) != need:
        raise ValueError(f"{path} has {len(raw)} bytes but its header describes {int(need)}: the file is "
                         f"{'truncated' if len(raw) < need else 'too long'}.")
    shapes, offset, out = model.param_shapes(config), HEADER_BYTES, {}
    for name in NORMS:
        count = math.prod(shapes[name])
        out[name] = np.frombuffer(raw, "<f4", count, offset).astype(np.float32).reshape(shapes[name])
        offset += 4 * count
    for name, count, n in layout:
        qs, ss = [], []
        for _ in range(count):
            qs.append(np.frombuffer(raw, np.int8, n, offset))
            ss.append(np.frombuffer(raw, "<f4", n // gs, offset + n).astype(np.float32))
            offset += n + 4 * (n // gs)
        shape = shapes[name]
        out[name] = Q8(np.stack(qs).reshape(shape).copy(), np.stack(ss).reshape(*shape[:-1], -1))
    if shared:
        out["output"] = out["tok_embeddings"]
    return out, config


def file_bytes(config: model.ModelConfig, group_size: int = 64) -> int:
    """Size in bytes of the runq.c file ``export_llama2c_q8`` writes for this config."""
    gs = group_size_for(config, group_size)
    return int(HEADER_BYTES + 4 * (2 * config.n_layers + 1) * config.dim
               + sum(c * n * (1 + 4 / gs) for _, c, n in _layout(config, shared=False)))


# ------------------------------------------------------------ decoding --

def sample_ids_q8(params: dict, config: model.ModelConfig, prompt_ids, *, max_new_tokens: int,
                  temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                  seed: int | None = None, group_size: int = 64) -> Iterator[int]:
    """Stream new ids from the int8 path (``quantize_kernels.step_q8``), the prompt fed one token at a time.

    ``params``: float parameters (quantised here with ``group_size``), ``quantize_params``'s
    dict, or ``quantize_kernels.prepare``'s tuple (what a benchmark passes, so as not to time the checks).

    The int8 path decodes inside the context window only: prompt plus new
    tokens must fit in max_seq_len (ValueError otherwise, before any work).
    """
    from llmedu.quantize_kernels import prepare, step_q8

    check_sampling(temperature, top_k, top_p)
    prompt = [int(i) for i in model.validate_tokens(np.asarray(prompt_ids, dtype=np.int64), config)]
    if not prompt:
        raise ValueError("the prompt is empty: give the model at least one token to continue.")
    if len(prompt) + max_new_tokens > config.max_seq_len:
        raise ValueError(f"the int8 path decodes within the context window: {len(prompt)} prompt tokens + "
                         f"{max_new_tokens} new ones exceed max_seq_len={config.max_seq_len}; ask for at most "
                         f"{config.max_seq_len - len(prompt)} new tokens (--max-new-tokens).")
    if isinstance(params, tuple):  # already prepared by quantize_kernels.prepare
        weights = params
    else:
        qparams = params if isinstance(params.get("wq"), Q8) else quantize_params(params, config, group_size)
        weights = prepare(qparams, config)  # checked once, not at every step
    rng, cache = np.random.default_rng(seed), KVCache.empty(config)
    for token in prompt:
        logits = step_q8(weights, config, token, cache)
    for i in range(max_new_tokens):
        token = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, rng=rng)
        yield token
        if i + 1 < max_new_tokens:
            logits = step_q8(weights, config, token, cache)


def generate_q8(params: dict, config: model.ModelConfig, prompt_ids, *, max_new_tokens: int,
                group_size: int = 64) -> list[int]:
    """Greedy new token ids after ``prompt_ids`` from the int8 path (what runq.c computes at temperature 0)."""
    return list(sample_ids_q8(params, config, prompt_ids, max_new_tokens=max_new_tokens, temperature=0.0,
                              group_size=group_size))
