"""Lesson 02's checks reject the mistakes learners make, and their messages point at the mistake."""

import re

import numba
import numpy as np
import pytest

from llmedu import check, model
from llmedu.generate import top_p_filter as reference_top_p


def _softmax_without_max(scores, axis=-1):  # exp() of scores past ~710 is inf, and inf / inf is nan
    e = np.exp(scores)
    return e / e.sum(axis=axis, keepdims=True)


# -------------------------------------------------------------- 2.1 RMSNorm --

def rmsnorm_eps_outside_sqrt(x, weight, eps):
    return x / (np.sqrt(np.mean(x * x, axis=-1, keepdims=True)) + eps) * weight


def rmsnorm_with_sum(x, weight, eps):  # sum of squares instead of their mean
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + eps) * weight


def rmsnorm_without_weight(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def rmsnorm_subtracting_the_mean(x, weight, eps):  # LayerNorm, not RMSNorm
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt(np.mean(centred ** 2, axis=-1, keepdims=True) + eps) * weight


# ----------------------------------------------------------------- 2.2 RoPE --

def rope_by_halves(x, cos, sin):  # pairs channel i with i + head_dim/2
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    cos, sin = cos[:, None, :], sin[:, None, :]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


def rope_wrong_way(x, cos, sin):
    return model.apply_rope(x, cos, -sin)


def rope_cos_and_sin_swapped(x, cos, sin):
    return model.apply_rope(x, sin, cos)


def rope_in_place_with_overwritten_evens(x, cos, sin):  # writes the evens, then reads them back for the odds
    even, odd = x[..., 0::2], x[..., 1::2]
    x[..., 0::2] = even * cos[:, None] - odd * sin[:, None]
    x[..., 1::2] = even * sin[:, None] + odd * cos[:, None]
    return x


# ------------------------------------------------------ 2.3/2.4 attention --

def _attention(q, k, v, softmax=model.softmax, mask=True, scale=None, group_of=np.repeat):
    """Causal attention with one thing changeable, to write each wrong answer in one line."""
    T, n_heads, head_dim = q.shape
    group = n_heads // k.shape[1]
    if group > 1:
        k, v = (group_of(a, group, axis=1) if group_of is np.repeat else np.tile(a, (1, group, 1)) for a in (k, v))
    scores = np.einsum("qhd,khd->hqk", q, k) / (np.sqrt(head_dim) if scale is None else scale)
    if mask:
        scores = np.where(np.triu(np.ones((T, T), bool), k=1), -np.inf, scores)
    return np.einsum("hqk,khd->qhd", softmax(scores), v)


def attention_softmax_without_max(q, k, v):
    return _attention(q, k, v, softmax=_softmax_without_max)


def attention_without_mask(q, k, v):
    return _attention(q, k, v, mask=False)


def attention_masking_the_diagonal_too(q, k, v):  # a query may not even see itself: the first row is all -inf
    T = q.shape[0]
    scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(np.triu(np.ones((T, T), bool), k=0), -1e9, scores)
    return np.einsum("hqk,khd->qhd", model.softmax(scores), v)


def attention_without_scaling(q, k, v):
    return _attention(q, k, v, scale=1.0)


def attention_divided_by_head_dim(q, k, v):
    return _attention(q, k, v, scale=q.shape[-1])


def attention_softmax_over_queries(q, k, v):
    return _attention(q, k, v, softmax=lambda scores: model.softmax(scores, axis=-2))


def gqa_heads_interleaved(q, k, v):  # query head h uses kv head h % n_kv_heads
    return _attention(q, k, v, group_of=np.tile)


def gqa_softmax_without_max(q, k, v):
    return _attention(q, k, v, softmax=_softmax_without_max)


# ------------------------------------------------------------ 2.5 SwiGLU --

def swiglu_with_sigmoid_gate(x, w1, w2, w3):  # sigmoid(w1 x) instead of silu(w1 x) = w1 x * sigmoid(w1 x)
    return ((1 / (1 + np.exp(-(x @ w1.T)))) * (x @ w3.T)) @ w2.T


def swiglu_w1_and_w3_swapped(x, w1, w2, w3):
    return model.swiglu(x, w3, w2, w1)


def swiglu_without_transposes(x, w1, w2, w3):  # right only when the matrices are square and symmetric
    gate = x @ w1
    return ((gate / (1 + np.exp(-gate))) * (x @ w3)) @ w2


def swiglu_silu_that_overflows(x, w1, w2, w3):  # exp(g) / (1 + exp(g)) is inf / inf for a gate of 1000
    gate = x @ w1.T
    return (gate * np.exp(gate) / (1 + np.exp(gate)) * (x @ w3.T)) @ w2.T


# ------------------------------------------------------ 2.6/2.7 block, forward --

def _block(params, config, layer, x, cos, sin, eps=None, rope_v=False, residual=True, attention=None):
    """The block with one thing changeable, to write each wrong answer in one line."""
    eps = config.norm_eps if eps is None else eps
    attention = attention or (lambda q, k, v: model.attention(q[None], k[None], v[None])[0])
    T = x.shape[0]
    p = {name: params[name][layer] for name in ("attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3")}
    h = model.rmsnorm(x, p["attention_norm"], eps)
    q = (h @ p["wq"].T).reshape(T, config.n_heads, config.head_dim)
    k = (h @ p["wk"].T).reshape(T, config.n_kv_heads, config.head_dim)
    v = (h @ p["wv"].T).reshape(T, config.n_kv_heads, config.head_dim)
    q, k = model.apply_rope(q, cos, sin), model.apply_rope(k, cos, sin)
    v = model.apply_rope(v, cos, sin) if rope_v else v
    attended = attention(q, k, v).reshape(T, config.dim) @ p["wo"].T
    x = x + attended if residual else attended
    return x + model.swiglu(model.rmsnorm(x, p["ffn_norm"], eps), p["w1"], p["w2"], p["w3"])


def block_with_eps_hard_coded(params, config, layer, x, cos, sin):
    return _block(params, config, layer, x, cos, sin, eps=1e-5)


def block_rotating_v_too(params, config, layer, x, cos, sin):
    return _block(params, config, layer, x, cos, sin, rope_v=True)


def block_without_attention_residual(params, config, layer, x, cos, sin):
    return _block(params, config, layer, x, cos, sin, residual=False)


def block_with_overflowing_softmax(params, config, layer, x, cos, sin):
    return _block(params, config, layer, x, cos, sin, attention=lambda q, k, v: _attention(
        q, k, v, softmax=_softmax_without_max))


def _forward(params, config, tokens, theta=None, final_norm=True, block=None, output="output"):
    block = block or (lambda *args: model.block(*args[:3], args[3][None], *args[4:])[0])
    x = params["tok_embeddings"][tokens]
    cos, sin = model.rope_tables(config.head_dim, np.arange(len(tokens)), theta or config.rope_theta)
    for layer in range(config.n_layers):
        x = block(params, config, layer, x, cos, sin)
    x = model.rmsnorm(x, params["norm"], config.norm_eps) if final_norm else x
    return x @ params[output].T


def forward_with_theta_hard_coded(params, config, tokens):
    return _forward(params, config, tokens, theta=10000.0)


def forward_without_final_norm(params, config, tokens):
    return _forward(params, config, tokens, final_norm=False)


def forward_with_tied_output(params, config, tokens):  # projects with the embedding matrix, not params["output"]
    return _forward(params, config, tokens, output="tok_embeddings")


def forward_with_overflowing_softmax(params, config, tokens):
    return _forward(params, config, tokens, block=block_with_overflowing_softmax)


# ---------------------------------------------------------- 2.8 matvec --

@numba.njit
def matvec_in_float64(w, x):  # np.zeros defaults to float64; the contract is float32
    out = np.zeros(w.shape[0])
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out[i] += w[i, j] * x[j]
    return out


@numba.njit
def matvec_transposed(w, x):  # reads w[j, i]: garbage or wrong numbers unless w is square and symmetric
    out = np.zeros(w.shape[0], dtype=np.float32)
    for i in range(w.shape[0]):
        for j in range(min(w.shape[1], w.shape[0])):
            out[i] += w[j, i] * x[j]
    return out


def matvec_not_compiled(w, x):
    return w @ x


# -------------------------------------------------------- 2.9 KV cache --

def _cached(q, keys, values, upto, softmax=model.softmax, group_of=np.repeat):
    """Attention of q over cache rows [0, upto)."""
    group = q.shape[0] // keys.shape[1]
    past_k, past_v = (np.repeat(a[:upto], group, 1) if group_of is np.repeat else np.tile(a[:upto], (1, group, 1))
                      for a in (keys, values))
    scores = np.einsum("hd,phd->hp", q, past_k) / np.sqrt(q.shape[1])
    return np.einsum("hp,phd->hd", softmax(scores), past_v)


def cache_excluding_the_current_position(q, k_new, v_new, keys, values, pos):
    keys[pos], values[pos] = k_new, v_new
    return _cached(q, keys, values, pos)


def cache_over_every_row(q, k_new, v_new, keys, values, pos):  # the empty rows beyond pos join in
    keys[pos], values[pos] = k_new, v_new
    return _cached(q, keys, values, len(keys))


def cache_stored_one_row_late(q, k_new, v_new, keys, values, pos):
    keys[pos + 1], values[pos + 1] = k_new, v_new
    return _cached(q, keys, values, pos + 2)


def cache_never_stored(q, k_new, v_new, keys, values, pos):  # rebinding keys makes a new array, not a write
    keys = keys.copy()
    values = values.copy()
    keys[pos], values[pos] = k_new, v_new
    return _cached(q, keys, values, pos + 1)


def cache_softmax_without_max(q, k_new, v_new, keys, values, pos):
    keys[pos], values[pos] = k_new, v_new
    return _cached(q, keys, values, pos + 1, softmax=_softmax_without_max)


def cache_heads_interleaved(q, k_new, v_new, keys, values, pos):
    keys[pos], values[pos] = k_new, v_new
    return _cached(q, keys, values, pos + 1, group_of=np.tile)


# --------------------------------------------------------- 2.10 top-p --

def top_p_dropping_the_crossing_token(probs, p):  # keeps only tokens whose running total stays below p
    order = np.argsort(-probs, kind="stable")
    keep = order[np.cumsum(probs[order]) < p]
    keep = keep if len(keep) else order[:1]
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out / out.sum()


def top_p_ties_to_the_higher_id(probs, p):  # reversing an ascending sort puts the last of equal tokens first
    order = np.argsort(probs, kind="stable")[::-1]
    n_keep = min(int(np.searchsorted(np.cumsum(probs[order]), p)) + 1, len(probs))
    out = np.zeros_like(probs)
    out[order[:n_keep]] = probs[order[:n_keep]]
    return out / out.sum()


def top_p_not_renormalised(probs, p):
    return reference_top_p(probs, p) * probs[reference_top_p(probs, p) > 0].sum()


def top_p_in_sorted_order(probs, p):  # the kept probabilities, but at the sorted positions
    return np.sort(reference_top_p(probs, p))[::-1]


MISTAKES = [
    (check.rmsnorm, rmsnorm_eps_outside_sqrt), (check.rmsnorm, rmsnorm_with_sum),
    (check.rmsnorm, rmsnorm_without_weight), (check.rmsnorm, rmsnorm_subtracting_the_mean),
    (check.apply_rope, rope_by_halves), (check.apply_rope, rope_wrong_way),
    (check.apply_rope, rope_cos_and_sin_swapped), (check.apply_rope, rope_in_place_with_overwritten_evens),
    (check.causal_attention, attention_softmax_without_max), (check.causal_attention, attention_without_mask),
    (check.causal_attention, attention_masking_the_diagonal_too), (check.causal_attention, attention_without_scaling),
    (check.causal_attention, attention_divided_by_head_dim), (check.causal_attention, attention_softmax_over_queries),
    (check.grouped_query_attention, gqa_heads_interleaved), (check.grouped_query_attention, gqa_softmax_without_max),
    (check.swiglu, swiglu_with_sigmoid_gate), (check.swiglu, swiglu_w1_and_w3_swapped),
    (check.swiglu, swiglu_without_transposes), (check.swiglu, swiglu_silu_that_overflows),
    (check.block, block_with_eps_hard_coded), (check.block, block_rotating_v_too),
    (check.block, block_without_attention_residual), (check.block, block_with_overflowing_softmax),
    (check.forward, forward_with_theta_hard_coded), (check.forward, forward_without_final_norm),
    (check.forward, forward_with_tied_output), (check.forward, forward_with_overflowing_softmax),
    (check.matvec, matvec_in_float64), (check.matvec, matvec_transposed), (check.matvec, matvec_not_compiled),
    (check.attend_cached, cache_excluding_the_current_position), (check.attend_cached, cache_over_every_row),
    (check.attend_cached, cache_stored_one_row_late), (check.attend_cached, cache_never_stored),
    (check.attend_cached, cache_softmax_without_max), (check.attend_cached, cache_heads_interleaved),
    (check.top_p_filter, top_p_dropping_the_crossing_token), (check.top_p_filter, top_p_ties_to_the_higher_id),
    (check.top_p_filter, top_p_not_renormalised), (check.top_p_filter, top_p_in_sorted_order),
]


@pytest.mark.parametrize(("run_check", "mistake"), MISTAKES, ids=lambda value: getattr(value, "__name__", ""))
def test_the_check_rejects_a_typical_mistake(run_check, mistake):
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match=r"^Exercise 2\.\d+ \("):
        run_check(mistake)


def _reference_attention(q, k, v):
    return model.attention(q[None], k[None], v[None])[0]  # the library's takes a batch axis


def _reference_block(params, config, layer, x, cos, sin):
    return model.block(params, config, layer, x[None], cos, sin)[0]


@numba.njit
def _matvec(w, x):
    out = np.zeros(w.shape[0], dtype=np.float32)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out[i] += w[i, j] * x[j]
    return out


def _attend_cached(q, k_new, v_new, keys, values, pos):
    keys[pos], values[pos] = k_new, v_new
    return _cached(q, keys, values, pos + 1)


def test_the_checks_accept_the_references(capsys):
    check.rmsnorm(model.rmsnorm)
    check.apply_rope(model.apply_rope)
    check.causal_attention(_reference_attention)
    check.grouped_query_attention(_reference_attention)
    check.swiglu(lambda *args: np.nan_to_num(model.swiglu(*args)))
    check.block(_reference_block)
    check.forward(model.forward)
    check.matvec(_matvec)
    check.attend_cached(_attend_cached)
    check.top_p_filter(reference_top_p)
    assert capsys.readouterr().out.count("passed all") == 10


def test_a_failure_names_the_first_index_that_differs_with_both_values_there():
    def rope_wrong_in_its_last_value(x, cos, sin):
        out = model.apply_rope(x, cos, sin)
        out[-1, -1, -1] += 1.0
        return out

    with pytest.raises(AssertionError) as failure:
        check.apply_rope(rope_wrong_in_its_last_value)
    x = np.random.default_rng(1).standard_normal((1, 1, 2))  # the check's first case: (T, n_heads, head_dim)
    expected = model.apply_rope(x, *model.rope_tables(2, np.arange(1), 10000.0))[0, 0, 1]
    assert (f"the result differs first at index (0, 0, 1): expected {expected:.6g}, got {expected + 1:.6g} "
            "(1 of 2 values differ, by up to 1)") in str(failure.value)


def _namespace_with(source: str, mlp_residual: bool = True) -> dict:
    """A notebook-like namespace: the lesson's block and forward, and the learner's parts as ``source`` defines them.

    Without ``mlp_residual`` the block forgets to add the MLP's output to x: a mistake in the block itself.
    """
    namespace = {"np": np, "model": model}
    exec(source, namespace)
    exec("def block(params, config, layer, x, cos, sin):\n"
         "    T = x.shape[0]\n"
         "    p = {name: params[name][layer] for name in params if name not in ('tok_embeddings', 'norm', 'output')}\n"
         "    h = rmsnorm(x, p['attention_norm'], config.norm_eps)\n"
         "    q = (h @ p['wq'].T).reshape(T, config.n_heads, config.head_dim)\n"
         "    k = (h @ p['wk'].T).reshape(T, config.n_kv_heads, config.head_dim)\n"
         "    v = (h @ p['wv'].T).reshape(T, config.n_kv_heads, config.head_dim)\n"
         "    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)\n"
         "    x = x + grouped_query_attention(q, k, v).reshape(T, config.dim) @ p['wo'].T\n"
         f"    return {'x + ' if mlp_residual else ''}model.swiglu(rmsnorm(x, p['ffn_norm'], config.norm_eps), "
         "p['w1'], p['w2'], p['w3'])\n"
         "def forward(params, config, tokens):\n"
         "    x = params['tok_embeddings'][tokens]\n"
         "    cos, sin = model.rope_tables(config.head_dim, np.arange(len(tokens)), config.rope_theta)\n"
         "    for layer in range(config.n_layers):\n"
         "        x = block(params, config, layer, x, cos, sin)\n"
         "    return rmsnorm(x, params['norm'], config.norm_eps) @ params['output'].T\n", namespace)
    return namespace


_RIGHT_PARTS = ("rmsnorm = model.rmsnorm\n"
                "def grouped_query_attention(q, k, v):\n"
                "    return model.attention(q[None], k[None], v[None])[0]\n")


@pytest.mark.parametrize("name", ["block", "forward"])
def test_a_failing_block_or_forward_names_the_learners_failing_rope_as_the_likely_cause(name):
    wrong_rope = "def apply_rope(x, cos, sin):\n    return model.apply_rope(x, cos, -sin)\n"  # turns the wrong way
    namespace = _namespace_with(_RIGHT_PARTS + wrong_rope)
    with pytest.raises(AssertionError) as failure:
        getattr(check, name)(namespace[name])
    assert str(failure.value).endswith(
        f"Likely cause: your apply_rope (exercise 2.2) fails its own check, and your {name} uses it; fix that first.")


def test_a_failing_block_blames_no_part_when_every_part_passes_its_check():
    namespace = _namespace_with(_RIGHT_PARTS + "apply_rope = model.apply_rope\n", mlp_residual=False)
    with pytest.raises(AssertionError) as failure:
        check.block(namespace["block"])
    assert "Likely cause" not in str(failure.value)


def test_a_failure_summarises_the_params_by_names_and_shapes():
    with pytest.raises(AssertionError) as failure:
        check.block(block_without_attention_residual)
    first_line = str(failure.value).splitlines()[0]
    assert "params=dict of 12 arrays {tok_embeddings: (64, 32), attention_norm: (2, 32), " in first_line
    assert "x=array(shape=(7, 32), dtype=float64, values [" in first_line


def test_a_failure_shows_the_cache_as_it_was_before_the_call():
    def cache_that_stores_but_returns_nothing_useful(q, k_new, v_new, keys, values, pos):
        keys[pos], values[pos] = k_new, v_new
        return np.zeros_like(q)

    with pytest.raises(AssertionError) as failure:
        check.attend_cached(cache_that_stores_but_returns_nothing_useful)
    assert "keys=array([[[0., 0.]], [[0., 0.]], [[0., 0.]]])" in str(failure.value)


def test_an_overflowing_softmax_is_told_to_subtract_the_maximum():
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as failure:
        check.causal_attention(attention_softmax_without_max)
    assert ", got nan" in str(failure.value)
    assert "subtract the largest value before exp" in str(failure.value)


@pytest.mark.parametrize(("run_check", "mistake", "advice"), [
    (check.grouped_query_attention, gqa_heads_interleaved, "a group is consecutive query heads"),
    (check.apply_rope, rope_by_halves, "pair channels 2i and 2i+1 (adjacent)"),
    (check.apply_rope, rope_wrong_way, "the rotation goes the wrong way"),
    (check.rmsnorm, rmsnorm_eps_outside_sqrt, "eps goes inside the square root"),
    (check.causal_attention, attention_without_mask, "mask the future"),
    (check.causal_attention, attention_without_scaling, "divide the scores by sqrt(head_dim)"),
])
def test_a_known_mistake_gets_its_advice(run_check, mistake, advice):
    with pytest.raises(AssertionError, match=re.escape(advice)):
        run_check(mistake)
