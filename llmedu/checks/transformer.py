"""Checks for lesson 02 (transformer): the learner's parts against ``llmedu.model``.

The lesson works on one sequence at a time, so learners' functions take
(T, ...) arrays; the references take a leading batch axis, added here.
"""

import numpy as np

from llmedu import model
from llmedu.checks.framework import exercise

# (T, n_heads, n_kv_heads, head_dim) shapes the attention checks try, edge cases first
_ATTENTION_SHAPES = [(1, 1, 1, 2), (1, 2, 2, 4), (5, 2, 2, 4), (7, 4, 4, 8), (6, 4, 2, 8), (9, 6, 1, 4)]
_CONFIGS = [
    model.PRESETS["tiny"],
    model.ModelConfig(vocab_size=37, dim=24, n_layers=1, n_heads=3, n_kv_heads=3, hidden_dim=40, max_seq_len=16),
    model.ModelConfig(vocab_size=50, dim=32, n_layers=3, n_heads=4, n_kv_heads=1, hidden_dim=48, max_seq_len=16),
]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@exercise("2.1", "RMSNorm")
def rmsnorm(learner) -> int:
    rng = _rng()
    cases = [(rng.standard_normal((1, 4)), 1e-5), (rng.standard_normal((6, 16)), 1e-5), (np.zeros((2, 8)), 1e-5),
             (rng.standard_normal((3, 5, 8)) * 100, 1e-6)]
    for x, eps in cases:
        weight = rng.standard_normal(x.shape[-1])
        learner.expect_close((x, weight, eps), model.rmsnorm(x, weight, eps))
    return len(cases)


@exercise("2.2", "RoPE")
def apply_rope(learner) -> int:
    rng = _rng(1)
    for T, n_heads, _, head_dim in _ATTENTION_SHAPES:
        x = rng.standard_normal((T, n_heads, head_dim))
        cos, sin = model.rope_tables(head_dim, np.arange(T), 10000.0)
        learner.expect_close((x, cos, sin), model.apply_rope(x, cos, sin))
    return len(_ATTENTION_SHAPES)


def _check_attention(learner, seed: int, grouped: bool) -> int:
    """Compare with the reference on every shape; without ``grouped``, keys/values get every head."""
    rng = _rng(seed)
    for T, n_heads, n_kv_heads, head_dim in _ATTENTION_SHAPES:
        q = rng.standard_normal((T, n_heads, head_dim))
        k, v = rng.standard_normal((2, T, n_kv_heads if grouped else n_heads, head_dim))
        learner.expect_close((q, k, v), model.attention(q[None], k[None], v[None])[0])
    return len(_ATTENTION_SHAPES)


@exercise("2.3", "causal multi-head attention")
def causal_attention(learner) -> int:
    return _check_attention(learner, seed=2, grouped=False)


@exercise("2.4", "grouped-query attention")
def grouped_query_attention(learner) -> int:
    return _check_attention(learner, seed=3, grouped=True)


@exercise("2.5", "SwiGLU feed-forward")
def swiglu(learner) -> int:
    rng = _rng(4)
    shapes = [(1, 4, 6), (5, 8, 12), (3, 16, 40)]  # (T, D, hidden)
    for T, D, H in shapes:
        x = rng.standard_normal((T, D))
        w1, w3 = rng.standard_normal((2, H, D)) * 0.3
        w2 = rng.standard_normal((D, H)) * 0.3
        learner.expect_close((x, w1, w2, w3), model.swiglu(x, w1, w2, w3))
    return len(shapes)


def _model_cases(seed: int):
    for index, config in enumerate(_CONFIGS):
        params = {k: v.astype(np.float64) for k, v in model.init_params(config, seed=seed + index, std=0.2).items()}
        tokens = _rng(seed + index).integers(0, config.vocab_size, size=min(7, config.max_seq_len) - index)
        yield config, params, tokens


@exercise("2.6", "transformer block")
def block(learner) -> int:
    n_cases = 0
    for config, params, tokens in _model_cases(5):
        x = params["tok_embeddings"][tokens]  # (T, D)
        cos, sin = model.rope_tables(config.head_dim, np.arange(len(tokens)), config.rope_theta)
        for layer in range(config.n_layers):
            expected = model.block(params, config, layer, x[None], cos, sin)[0]
            learner.expect_close((params, config, layer, x, cos, sin), expected, rtol=1e-4, atol=1e-5)
            n_cases += 1
    return n_cases


@exercise("2.7", "full forward pass")
def forward(learner) -> int:
    cases = list(_model_cases(6))
    for config, params, tokens in cases:
        learner.expect_close((params, config, tokens), model.forward(params, config, tokens), rtol=1e-4, atol=1e-5)
    return len(cases)


@exercise("2.8", "a Numba kernel")
def matvec(learner) -> int:
    import numba

    if not numba.config.DISABLE_JIT and not isinstance(learner.function, numba.core.dispatcher.Dispatcher):
        raise AssertionError("Exercise 2.8 (a Numba kernel): decorate your function with @numba.njit so Numba compiles it.")
    rng = _rng(8)
    shapes = [(1, 1), (3, 5), (64, 48), (300, 7)]
    for rows, cols in shapes:
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        x = rng.standard_normal(cols).astype(np.float32)
        learner.expect_close((w, x), w @ x, rtol=1e-4, atol=1e-4)
    return len(shapes)


@exercise("2.9", "attention with a KV cache")
def attend_cached(learner) -> int:
    """Feed positions one at a time; each output must equal that row of full causal attention."""
    rng = _rng(9)
    n_cases = 0
    for T, n_heads, n_kv_heads, head_dim in _ATTENTION_SHAPES:
        q = rng.standard_normal((T, n_heads, head_dim))
        k, v = rng.standard_normal((2, T, n_kv_heads, head_dim))
        expected = model.attention(q[None], k[None], v[None])[0]  # (T, n_heads, head_dim)
        keys, values = np.zeros((2, T + 2, n_kv_heads, head_dim))  # a cache with room to spare
        for pos in range(T):
            args = (q[pos], k[pos], v[pos], keys, values, pos)
            learner.expect_close(args, expected[pos], learner.call(*args))
            n_cases += 1
        if not (np.allclose(keys[:T], k) and np.allclose(values[:T], v)):
            raise AssertionError("Exercise 2.9 (attention with a KV cache): after the last step, keys[:T] and "
                                 "values[:T] should hold every position's k_new and v_new; store them at row pos.")
    return n_cases


@exercise("2.10", "top-p (nucleus) filter")
def top_p_filter(learner) -> int:
    from llmedu.generate import top_p_filter as reference

    cases = [
        (np.array([0.5, 0.3, 0.2]), 0.5),  # the first token alone reaches p
        (np.array([0.5, 0.3, 0.2]), 0.6),
        (np.array([0.1, 0.6, 0.3]), 0.85),
        (np.array([0.25, 0.25, 0.25, 0.25]), 1.0),
        (np.array([0.05, 0.05, 0.9]), 0.01),  # at least one token is always kept
        (model.softmax(_rng(10).standard_normal(50) * 2), 0.9),
    ]
    for probs, p in cases:
        learner.expect_close((probs, p), reference(probs, p))
    return len(cases)
