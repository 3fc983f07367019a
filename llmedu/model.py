"""The Llama-style Transformer: its configuration, its parameters, and a readable forward pass.

Lesson 02 (``02_transformer``) builds this forward pass piece by piece. This is
the numpy reference: every step written out, shapes in the comments, no
speed tricks. ``llmedu.kernels`` is the fast (Numba) path with the same
results, and ``llmedu.generate`` decodes token by token with a KV cache.

Parameter names and layouts follow llama2.c (``tok_embeddings``, ``wq`` ...
``w3``, ``norm``, ``output``; matrices stored (out_features, in_features)),
so a model exports to its ``run.c`` one tensor at a time.

Left out: dropout, biases, weight tying and mixed precision; the backward
pass (``llmedu.train``); batching of different-length prompts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # number of token ids the model reads and predicts
    dim: int  # width of the residual stream (embedding size)
    n_layers: int  # number of transformer blocks
    n_heads: int  # attention heads for the queries
    n_kv_heads: int  # heads for keys and values (< n_heads: grouped-query attention)
    hidden_dim: int  # width of the SwiGLU feed-forward layer
    max_seq_len: int  # longest sequence the model (and its KV cache) handles
    norm_eps: float = 1e-5  # added inside RMSNorm's square root, for stability
    rope_theta: float = 10000.0  # base of the rotary position frequencies

    def __post_init__(self):
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}.")
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads}): each head gets dim / n_heads channels.")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads}): query heads share key/value heads in equal groups.")
        if self.head_dim % 2:
            raise ValueError(f"head_dim = dim / n_heads = {self.head_dim} must be even: RoPE rotates pairs of channels.")
        if not self.norm_eps > 0 or not self.rope_theta > 0:
            raise ValueError(f"norm_eps ({self.norm_eps}) and rope_theta ({self.rope_theta}) must be positive.")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "ModelConfig":
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}.")
        return cls(**fields)


PRESETS = {
    # small enough for tests to run in milliseconds; GQA on purpose
    "tiny": ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64, max_seq_len=64),
    # the shapes of llama2.c's TinyStories models, for benchmarks
    "stories15m": ModelConfig(vocab_size=32000, dim=288, n_layers=6, n_heads=6, n_kv_heads=6, hidden_dim=768, max_seq_len=256),
    "stories110m": ModelConfig(vocab_size=32000, dim=768, n_layers=12, n_heads=12, n_kv_heads=12, hidden_dim=2048, max_seq_len=1024),
}


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter; per-layer tensors are stacked on a leading layer axis."""
    L, D, H, V = config.n_layers, config.dim, config.hidden_dim, config.vocab_size
    return {
        "tok_embeddings": (V, D),  # one row per token id
        "attention_norm": (L, D),  # RMSNorm gain before attention
        "wq": (L, D, D),  # queries: (out = n_heads * head_dim, in = dim)
        "wk": (L, config.kv_dim, D),  # keys: (n_kv_heads * head_dim, dim)
        "wv": (L, config.kv_dim, D),  # values: (n_kv_heads * head_dim, dim)
        "wo": (L, D, D),  # attention output projection
        "ffn_norm": (L, D),  # RMSNorm gain before the feed-forward layer
        "w1": (L, H, D),  # SwiGLU gate
        "w2": (L, D, H),  # SwiGLU down projection
        "w3": (L, H, D),  # SwiGLU up projection
        "norm": (D,),  # final RMSNorm gain
        "output": (V, D),  # classifier: one row of logit weights per token id
    }


def init_params(config: ModelConfig, seed: int = 0, std: float = 0.02) -> dict[str, np.ndarray]:
    """Fresh float32 parameters: normal(0, std) matrices, RMSNorm gains of one.

    The output projections of each residual branch (``wo``, ``w2``) are scaled
    down by sqrt(2 * n_layers), as GPT-2 does, so the residual stream does not
    grow with depth at initialisation.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config).items():
        if name.endswith("norm"):
            params[name] = np.ones(shape, dtype=np.float32)
        else:
            scale = std / np.sqrt(2 * config.n_layers) if name in ("wo", "w2") else std
            params[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return params


def count_params(params: dict[str, np.ndarray]) -> int:
    return int(sum(p.size for p in params.values()))


def validate_params(params: dict[str, np.ndarray], config: ModelConfig) -> None:
    """Raise ``ValueError`` naming the first tensor that is missing, extra, or the wrong shape."""
    expected = param_shapes(config)
    missing, extra = set(expected) - set(params), set(params) - set(expected)
    if missing or extra:
        raise ValueError(f"parameters do not match the config: missing {sorted(missing)}, unexpected {sorted(extra)}.")
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(params[name].shape)} but the config needs {shape}.")
        if not np.issubdtype(params[name].dtype, np.floating):
            raise ValueError(f"parameter {name!r} has dtype {params[name].dtype}; parameters must be floating point.")


def validate_tokens(tokens: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Check token ids before any kernel sees them; returns them as an int64 array of shape (T,) or (B, T)."""
    tokens = np.asarray(tokens)
    if tokens.ndim not in (1, 2) or tokens.shape[-1] == 0:
        raise ValueError(f"tokens must have shape (T,) or (B, T) with T >= 1, got shape {tokens.shape}.")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}.")
    if tokens.shape[-1] > config.max_seq_len:
        raise ValueError(f"sequence of {tokens.shape[-1]} tokens is longer than max_seq_len={config.max_seq_len}; shorten the prompt.")
    bad = (tokens < 0) | (tokens >= config.vocab_size)
    if bad.any():
        raise ValueError(f"token id {int(tokens[bad].flat[0])} is outside the vocabulary [0, {config.vocab_size}).")
    return tokens.astype(np.int64)


# ---------------------------------------------------------------- the parts --

def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Scale each vector to unit root-mean-square, then by a learned gain. x: (..., D), weight: (D,)."""
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)  # (..., 1)
    return x / rms * weight


def rope_tables(head_dim: int, positions: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the rotation angles, each (T, head_dim // 2).

    Pair i of a head (channels 2i and 2i+1) turns at frequency theta ** (-2i / head_dim),
    so early pairs spin fast (fine position) and late pairs slowly (coarse position).
    """
    freqs = theta ** (-np.arange(0, head_dim, 2) / head_dim)  # (head_dim/2,)
    angles = np.outer(positions, freqs)  # (T, head_dim/2)
    return np.cos(angles), np.sin(angles)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of every head, as llama2.c does. x: (..., T, n_heads, head_dim)."""
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, n_heads, head_dim/2)
    cos = cos[:, None, :].astype(x.dtype)  # (T, 1, head_dim/2): same angle for every head
    sin = sin[:, None, :].astype(x.dtype)
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)  # avoids overflow in exp
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Causal grouped-query attention.

    q: (B, T, n_heads, head_dim); k, v: (B, T, n_kv_heads, head_dim).
    Returns (B, T, n_heads, head_dim): for each query position, a weighted
    average of the values at that position and before it.
    """
    B, T, n_heads, head_dim = q.shape
    group = n_heads // k.shape[2]  # query heads per key/value head
    k = np.repeat(k, group, axis=2)  # (B, T, n_heads, head_dim)
    v = np.repeat(v, group, axis=2)
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)  # (B, n_heads, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # True where key comes after query
    scores = np.where(future, -np.inf, scores)
    weights = softmax(scores, axis=-1)  # (B, n_heads, T, T)
    return np.einsum("bhqk,bkhd->bqhd", weights, v)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def swiglu(x: np.ndarray, w1: np.ndarray, w2: np.ndarray, w3: np.ndarray) -> np.ndarray:
    """The feed-forward layer w2(silu(w1 x) * w3 x). x: (..., D); w1, w3: (H, D); w2: (D, H)."""
    return (silu(x @ w1.T) * (x @ w3.T)) @ w2.T


# ------------------------------------------------------------ the forward --

def block(params: dict, config: ModelConfig, layer: int, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """One transformer block on the residual stream x: (B, T, D) -> (B, T, D)."""
    B, T, D = x.shape
    p = {name: params[name][layer] for name in ("attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3")}
    h = rmsnorm(x, p["attention_norm"], config.norm_eps)  # (B, T, D)
    q = (h @ p["wq"].T).reshape(B, T, config.n_heads, config.head_dim)
    k = (h @ p["wk"].T).reshape(B, T, config.n_kv_heads, config.head_dim)
    v = (h @ p["wv"].T).reshape(B, T, config.n_kv_heads, config.head_dim)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    mixed = attention(q, k, v).reshape(B, T, D)  # heads side by side again
    x = x + mixed @ p["wo"].T  # residual connection around attention
    h = rmsnorm(x, p["ffn_norm"], config.norm_eps)
    return x + swiglu(h, p["w1"], p["w2"], p["w3"])  # residual connection around the MLP


def forward(params: dict, config: ModelConfig, tokens) -> np.ndarray:
    """Logits for every position: tokens (T,) -> (T, vocab) or (B, T) -> (B, T, vocab).

    logits[..., t, :] scores the token that follows tokens[..., t].
    """
    validate_params(params, config)
    tokens = validate_tokens(tokens, config)
    batched = tokens.ndim == 2
    tokens = tokens if batched else tokens[None, :]  # (B, T)
    x = params["tok_embeddings"][tokens]  # (B, T, D)
    cos, sin = rope_tables(config.head_dim, np.arange(tokens.shape[1]), config.rope_theta)
    for layer in range(config.n_layers):
        x = block(params, config, layer, x, cos, sin)
    x = rmsnorm(x, params["norm"], config.norm_eps)
    logits = x @ params["output"].T  # (B, T, vocab)
    return logits if batched else logits[0]
