"""Checks for lesson 02 (transformer): the learner's parts against ``llmedu.model``.

The lesson works on one sequence at a time, so learners' functions take
(T, ...) arrays; the references take a leading batch axis, added here.
"""

import numpy as np

from llmedu import model
from llmedu.checks.framework import exercise

# (T, n_heads, n_kv_heads, head_dim) shapes the attention checks try, edge cases first
_ATTENTION_SHAPES = [(1, 1, 1, 2), (1, 2, 2, 4), (5, 2, 2, 4), (7, 4, 4, 8), (6, 4, 2, 8), (9, 6, 1, 4), (5, 6, 2, 4)]
_LOUD = 40.0  # q and k scaled by this make scores of ~1000: exp() overflows unless the maximum is subtracted first
_CONFIGS = [
    model.PRESETS["tiny"],
    model.ModelConfig(vocab_size=37, dim=24, n_layers=1, n_heads=3, n_kv_heads=3, hidden_dim=40, max_seq_len=16),
    model.ModelConfig(vocab_size=50, dim=32, n_layers=3, n_heads=4, n_kv_heads=1, hidden_dim=48, max_seq_len=16),
    # constants of its own, so a block or forward that hard-codes eps = 1e-5 or theta = 10000 fails
    model.ModelConfig(vocab_size=29, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=24, max_seq_len=8,
                      norm_eps=0.05, rope_theta=50.0),
]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@exercise("2.1", "RMSNorm")
def rmsnorm(learner) -> int:
    rng = _rng()
    cases = [(rng.standard_normal((1, 4)), 1e-5), (rng.standard_normal((6, 16)), 1e-5), (np.zeros((2, 8)), 1e-5),
             (rng.standard_normal((3, 5, 8)) * 100, 1e-6),
             (rng.standard_normal((4, 8)) * 1e-3, 1e-5)]  # tiny x: eps outweighs mean(x^2), so where it goes shows
    for x, eps in cases:
        weight = rng.standard_normal(x.shape[-1])
        mistakes = [(lambda: x / (np.sqrt(np.mean(x * x, axis=-1, keepdims=True)) + eps) * weight,
                     "eps goes inside the square root: sqrt(mean(x * x) + eps)")]
        learner.expect_close((x, weight, eps), model.rmsnorm(x, weight, eps), learner.call(x.copy(), weight, eps),
                             mistakes=mistakes)
    return len(cases)


def _rope_by_halves(x, cos, sin):
    """RoPE pairing channel i with channel i + head_dim / 2 (another convention), the mistake 2.2 names."""
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    cos, sin = cos[:, None, :], sin[:, None, :]
    return np.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)


@exercise("2.2", "RoPE")
def apply_rope(learner) -> int:
    rng = _rng(1)
    for T, n_heads, _, head_dim in _ATTENTION_SHAPES:
        x = rng.standard_normal((T, n_heads, head_dim))
        cos, sin = model.rope_tables(head_dim, np.arange(T), 10000.0)
        mistakes = [(lambda: _rope_by_halves(x, cos, sin),
                     "pair channels 2i and 2i+1 (adjacent), not channel i with i + head_dim/2 (the two halves)"),
                    (lambda: model.apply_rope(x, cos, -sin),
                     "the rotation goes the wrong way: even * cos - odd * sin, even * sin + odd * cos")]
        learner.expect_close((x, cos, sin), model.apply_rope(x, cos, sin), learner.call(x.copy(), cos, sin),
                             mistakes=mistakes)
    return len(_ATTENTION_SHAPES)


def _attention_cases(seed: int, grouped: bool):
    """(q, k, v) for every shape, then loud ones; without ``grouped``, keys/values get every head."""
    rng = _rng(seed)
    shapes = _ATTENTION_SHAPES + [(4, 2, 2, 4), (6, 4, 2, 8)]  # the last two loud
    for index, (T, n_heads, n_kv_heads, head_dim) in enumerate(shapes):
        scale = _LOUD if index >= len(_ATTENTION_SHAPES) else 1.0
        q = rng.standard_normal((T, n_heads, head_dim)) * scale
        k, v = rng.standard_normal((2, T, n_kv_heads if grouped else n_heads, head_dim))
        yield q, k * scale, v


def _check_attention(learner, seed: int, grouped: bool) -> int:
    """Compare with the reference on every case; a known wrong answer (interleaved groups, no mask, scale) is named."""
    n_cases = 0
    for q, k, v in _attention_cases(seed, grouped):
        group = q.shape[1] // k.shape[1]
        interleaved_k, interleaved_v = (np.tile(a, (1, group, 1)) for a in (k, v))  # kv head h % n_kv_heads
        mistakes = [(lambda: model.attention(q[None], interleaved_k[None], interleaved_v[None])[0],
                     "query head h shares kv head h // (n_heads // n_kv_heads): a group is consecutive query heads "
                     "(np.repeat), not every n_kv_heads-th one (np.tile)"),
                    (lambda: _attention_without_mask(q, np.repeat(k, group, 1), np.repeat(v, group, 1)),
                     "mask the future: position t may only attend to positions 0..t"),
                    (lambda: model.attention(q[None] / np.sqrt(q.shape[-1]), k[None], v[None])[0],
                     "divide the scores by sqrt(head_dim) once, not head_dim"),
                    (lambda: model.attention(q[None] * np.sqrt(q.shape[-1]), k[None], v[None])[0],
                     "divide the scores by sqrt(head_dim)")]
        with np.errstate(over="ignore", invalid="ignore"):
            learner.expect_close((q, k, v), model.attention(q[None], k[None], v[None])[0],
                                 learner.call(q.copy(), k.copy(), v.copy()), mistakes=mistakes)
        n_cases += 1
    return n_cases


def _attention_without_mask(q, k, v):
    scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(q.shape[-1])  # (n_heads, T, T)
    return np.einsum("hqk,khd->qhd", model.softmax(scores), v)


@exercise("2.3", "causal multi-head attention")
def causal_attention(learner) -> int:
    return _check_attention(learner, seed=2, grouped=False)


@exercise("2.4", "grouped-query attention", uses=("causal_attention",))
def grouped_query_attention(learner) -> int:
    return _check_attention(learner, seed=3, grouped=True)


@exercise("2.5", "SwiGLU feed-forward")
def swiglu(learner) -> int:
    rng = _rng(4)
    # (T, D, hidden, scale of x): a square case (a missing .T gives wrong numbers, not an error), and gates
    # of +-1000 (silu written as exp(x) / (1 + exp(x)) * x overflows to nan)
    shapes = [(1, 4, 6, 1.0), (5, 8, 12, 1.0), (3, 16, 40, 1.0), (4, 8, 8, 1.0), (3, 6, 10, 1000.0)]
    for T, D, H, scale in shapes:
        x = rng.standard_normal((T, D)) * scale
        w1, w3 = rng.standard_normal((2, H, D)) * 0.3
        w2 = rng.standard_normal((D, H)) * 0.3
        with np.errstate(over="ignore"):  # exp(-gate) of a gate of -1000 is inf, and silu is then -0.0: right
            expected = model.swiglu(x, w1, w2, w3)
            actual = learner.call(x.copy(), w1, w2, w3)
        learner.expect_close((x, w1, w2, w3), expected, actual)
    return len(shapes)


def _model_cases(seed: int):
    """(config, float64 params, tokens): every config, then the first one loud (attention scores ~1000)."""
    for index, config in enumerate(_CONFIGS):
        params = {k: v.astype(np.float64) for k, v in model.init_params(config, seed=seed + index, std=0.2).items()}
        tokens = _rng(seed + index).integers(0, config.vocab_size, size=min(7, config.max_seq_len) - index)
        yield config, params, tokens
    config, params, tokens = next(_model_cases(seed))
    loud = {name: array * (_LOUD if name in ("wq", "wk") else 1.0) for name, array in params.items()}
    yield config, loud, tokens


_LESSON_2_PARTS = ("rmsnorm", "apply_rope", "causal_attention", "grouped_query_attention", "swiglu")


@exercise("2.6", "transformer block", uses=_LESSON_2_PARTS)
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


@exercise("2.7", "full forward pass", uses=_LESSON_2_PARTS + ("block",))
def forward(learner) -> int:
    cases = list(_model_cases(6))
    for config, params, tokens in cases:
        learner.expect_close((params, config, tokens), model.forward(params, config, tokens), rtol=1e-4, atol=1e-5)
    return len(cases)


@exercise("2.8", "a Numba kernel")
def matvec(learner) -> int:
    import numba

    if not numba.config.DISABLE_JIT and not isinstance(learner.function, numba.core.dispatcher.Dispatcher):
        raise AssertionError("Exercise 2.8 (a Numba kernel): decorate your function with @numba.njit "
                             "so Numba compiles it.")
    rng = _rng(8)
    shapes = [(1, 1), (3, 5), (4, 4), (64, 48), (300, 7)]  # (4, 4): w[j, i] for w[i, j] gives wrong numbers
    for rows, cols in shapes:
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        x = rng.standard_normal(cols).astype(np.float32)
        learner.expect_close((w, x), w @ x, rtol=1e-4, atol=1e-4, dtype=np.float32)
    return len(shapes)


@exercise("2.9", "attention with a KV cache")
def attend_cached(learner) -> int:
    """Feed positions one at a time; each output must equal that row of full causal attention."""
    n_cases = 0
    for q, k, v in _attention_cases(9, grouped=True):
        T, n_kv_heads, head_dim = k.shape
        expected = model.attention(q[None], k[None], v[None])[0]  # (T, n_heads, head_dim)
        keys, values = np.zeros((2, T + 2, n_kv_heads, head_dim))  # a cache with room to spare
        for pos in range(T):
            args = (q[pos], k[pos], v[pos], keys, values, pos)
            with np.errstate(over="ignore", invalid="ignore"):
                learner.expect_close(args, expected[pos], learner.call(*args))
            n_cases += 1
        _expect_cache_filled(keys, k, "keys", "k_new")
        _expect_cache_filled(values, v, "values", "v_new")
    return n_cases


def _expect_cache_filled(cache: np.ndarray, new: np.ndarray, name: str, new_name: str) -> None:
    """After T steps, row pos of the cache must hold step pos's new entry, for every pos < T."""
    stored = np.isclose(cache[:len(new)], new).all(axis=(1, 2))  # (T,)
    if not stored.all():
        pos = int(np.argmin(stored))
        raise AssertionError(
            f"Exercise 2.9 (attention with a KV cache): after {len(new)} steps, {name}[{pos}] does not hold "
            f"step {pos}'s {new_name}: store each step's k_new and v_new at row pos of the cache, in place.")


@exercise("2.10", "top-p (nucleus) filter")
def top_p_filter(learner) -> int:
    from llmedu.generate import top_p_filter as reference

    cases = [
        (np.array([0.5, 0.3, 0.2]), 0.5),  # the first token alone reaches p
        (np.array([0.5, 0.3, 0.2]), 0.6),  # the token that crosses p is kept
        (np.array([0.1, 0.6, 0.3]), 0.85),
        (np.array([0.25, 0.25, 0.25, 0.25]), 1.0),
        (np.array([0.05, 0.05, 0.9]), 0.01),  # at least one token is always kept
        (np.array([0.2, 0.4, 0.2, 0.2]), 0.5),  # a tie at the cut goes to the lower token id
        (model.softmax(_rng(10).standard_normal(50) * 2), 0.9),
        (model.softmax(_rng(11).standard_normal(30)), 1.0),  # p = 1 keeps every token, whatever the rounding
    ]
    for probs, p in cases:
        learner.expect_close((probs, p), reference(probs, p), learner.call(probs.copy(), p))
    return len(cases)
