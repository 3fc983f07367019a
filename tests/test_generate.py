"""Specifications of decoding and sampling (lesson 02).

``llmedu.generate`` streams new token ids: greedy decoding with the KV cache
must give exactly the tokens of re-running the full numpy forward at every
step; sampling must be reproducible from a seed and never draw a token that
top-k or top-p filtered out; bad input raises ValueError at the call.
"""

import numpy as np
import pytest

from llmedu import model
from llmedu.generate import (KVCache, apply_temperature, generate, sample_next, step_reference,
                             top_k_filter, top_p_filter)

CONFIG = model.ModelConfig(vocab_size=48, dim=24, n_layers=2, n_heads=6, n_kv_heads=2, hidden_dim=40, max_seq_len=24)
PARAMS = model.init_params(CONFIG, seed=0, std=0.3)  # std 0.3: varied, non-uniform predictions
PROMPT = [5, 17, 2]


def greedy_by_full_forward(params, config, prompt, n):
    """The slow, obviously right decoder: the whole sequence through model.forward for every token."""
    tokens = list(prompt)
    for _ in range(n):
        tokens.append(int(np.argmax(model.forward(params, config, np.array(tokens))[-1])))
    return tokens[len(prompt):]


# ------------------------------------------------------------- decoding --

def test_step_reference_equals_last_row_of_forward_at_every_position():
    tokens = np.random.default_rng(0).integers(0, CONFIG.vocab_size, CONFIG.max_seq_len)
    full = model.forward(PARAMS, CONFIG, tokens)
    cache = KVCache.empty(CONFIG)
    for t, token in enumerate(tokens):
        logits = step_reference(PARAMS, CONFIG, int(token), cache)
        assert np.max(np.abs(logits - full[t])) <= 1e-4 * np.max(np.abs(full[t])), f"position {t}"
    assert cache.pos == CONFIG.max_seq_len


@pytest.mark.parametrize("fast", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
def test_greedy_decode_gives_exactly_the_tokens_of_full_forward(fast, use_cache):
    n = CONFIG.max_seq_len - len(PROMPT)  # up to the last position
    expected = greedy_by_full_forward(PARAMS, CONFIG, PROMPT, n)
    assert len(set(expected)) > 3  # a real sequence, not one token repeated
    got = list(generate(PARAMS, CONFIG, PROMPT, max_new_tokens=n, temperature=0, fast=fast, use_cache=use_cache))
    assert got == expected


def test_generate_is_a_stream_of_python_ints():
    stream = generate(PARAMS, CONFIG, PROMPT, max_new_tokens=3, temperature=0)
    first = next(stream)
    assert type(first) is int and 0 <= first < CONFIG.vocab_size
    assert len(list(stream)) == 2


def test_generate_stops_at_max_seq_len():
    got = list(generate(PARAMS, CONFIG, PROMPT, max_new_tokens=100, seed=0))
    assert len(got) == CONFIG.max_seq_len - len(PROMPT)
    assert list(generate(PARAMS, CONFIG, list(range(CONFIG.max_seq_len)), max_new_tokens=5, seed=0)) == []


def test_generate_stops_at_max_new_tokens():
    assert len(list(generate(PARAMS, CONFIG, PROMPT, max_new_tokens=4, seed=0))) == 4
    assert list(generate(PARAMS, CONFIG, PROMPT, max_new_tokens=0, seed=0)) == []


@pytest.mark.parametrize("fast", [True, False], ids=["numba", "numpy"])
def test_generate_stops_before_a_stop_id_without_yielding_it(fast):
    full = list(generate(PARAMS, CONFIG, PROMPT, max_new_tokens=12, temperature=0))
    # The first token that has not appeared before it: stopping there leaves a known prefix.
    k = next(i for i in range(2, len(full)) if full[i] not in full[:i])
    got = list(generate(PARAMS, CONFIG, PROMPT, max_new_tokens=12, temperature=0, stop_ids=[full[k]], fast=fast))
    assert got == full[:k]


# ------------------------------------------------------------- sampling --

def test_same_seed_gives_the_same_tokens():
    a = list(generate(PARAMS, CONFIG, PROMPT, max_new_tokens=15, temperature=1.0, top_k=20, top_p=0.95, seed=7))
    b = list(generate(PARAMS, CONFIG, PROMPT, max_new_tokens=15, temperature=1.0, top_k=20, top_p=0.95, seed=7))
    assert a == b


def test_different_seeds_give_different_tokens():
    runs = {tuple(generate(PARAMS, CONFIG, PROMPT, max_new_tokens=15, temperature=1.5, seed=s)) for s in range(4)}
    assert len(runs) == 4


def test_sample_next_with_temperature_zero_is_argmax():
    logits = np.array([0.1, 3.0, -2.0, 2.9])
    assert sample_next(logits, temperature=0, rng=np.random.default_rng(0)) == 1


# A peaked distribution: token 3 most likely, then 0, then 5, then a long tail.
PEAKED = np.log(np.array([0.20, 0.02, 0.01, 0.50, 0.03, 0.15, 0.04, 0.05]))


def draw(n, **kwargs):
    rng = np.random.default_rng(0)
    return np.bincount([sample_next(PEAKED, rng=rng, **kwargs) for _ in range(n)], minlength=len(PEAKED))


def test_top_k_never_emits_a_token_outside_the_k_most_likely():
    counts = draw(3000, temperature=1.0, top_k=3)
    assert set(np.flatnonzero(counts)) == {3, 0, 5}  # all three kept tokens appear, nothing else
    # And in proportion 0.50 : 0.20 : 0.15 (tolerance ~5 standard deviations).
    assert abs(counts[3] / 3000 - 0.50 / 0.85) < 0.05


def test_top_p_never_emits_a_token_outside_the_nucleus():
    counts = draw(3000, temperature=1.0, top_p=0.8)  # 0.50 + 0.20 = 0.70 < 0.8 <= 0.85: tokens 3, 0, 5
    assert set(np.flatnonzero(counts)) == {3, 0, 5}
    counts = draw(2000, temperature=1.0, top_p=0.3)  # 0.50 alone reaches 0.3
    assert set(np.flatnonzero(counts)) == {3}


class FixedDraw:
    """Stands in for a numpy Generator whose next uniform draw is known."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


@pytest.mark.parametrize("u", [0.0, 0.5, np.nextafter(1.0, 0.0)])
def test_the_extreme_draws_still_pick_a_kept_token(u):
    # Token 0 is filtered out by top_k, yet it comes first in the cumulative sum.
    token = sample_next(PEAKED[::-1], temperature=1.0, top_k=3, rng=FixedDraw(u))
    assert token in {7 - 3, 7 - 0, 7 - 5}


def test_sampling_at_temperature_one_follows_the_probabilities():
    counts = draw(4000, temperature=1.0)
    assert np.all(np.abs(counts / 4000 - np.exp(PEAKED)) < 0.04)


@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 2.5])
def test_apply_temperature_gives_probabilities(temperature):
    probs = apply_temperature(PEAKED, temperature)
    assert np.all(probs >= 0) and np.isclose(probs.sum(), 1.0)
    assert np.argmax(probs) == 3


def test_temperature_sharpens_below_one_and_flattens_above():
    assert np.allclose(apply_temperature(PEAKED, 1.0), np.exp(PEAKED))
    assert apply_temperature(PEAKED, 0.5)[3] > 0.5 > apply_temperature(PEAKED, 2.0)[3]
    assert list(apply_temperature(PEAKED, 0)) == [0, 0, 0, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("k", [1, 2, 3, 8, 100])
def test_top_k_filter_keeps_k_tokens_and_sums_to_one(k):
    out = top_k_filter(np.exp(PEAKED), k)
    assert np.isclose(out.sum(), 1.0)
    kept = np.flatnonzero(out)
    assert list(kept) == sorted([3, 0, 5, 7, 6, 4, 1, 2][:k])


# 100 tokens, the even ids twice as likely as the odd ones: 50 tied at the top.
TIED = np.tile([2.0, 1.0], 50) / 150


def test_top_k_filter_breaks_ties_by_lower_id():
    assert list(np.flatnonzero(top_k_filter(TIED, 5))) == [0, 2, 4, 6, 8]


def test_top_p_filter_breaks_ties_by_lower_id():
    # Each even id holds 1/75; four reach 0.053, five 0.067 >= 0.06.
    assert list(np.flatnonzero(top_p_filter(TIED, 0.06))) == [0, 2, 4, 6, 8]


# Thresholds kept away from the running totals 0.5, 0.7, 0.85 ..., which exp(log(p)) only approximates.
@pytest.mark.parametrize("p, kept", [(0.45, {3}), (0.69, {3, 0}), (0.71, {3, 0, 5}), (1.0, set(range(8))),
                                     (1e-9, {3})])
def test_top_p_filter_keeps_the_smallest_set_reaching_p(p, kept):
    out = top_p_filter(np.exp(PEAKED), p)
    assert set(np.flatnonzero(out)) == kept
    assert np.isclose(out.sum(), 1.0)


def test_top_p_filter_stops_where_the_total_exactly_reaches_p():
    probs = np.array([0.25, 0.5, 0.125, 0.125])  # powers of two: the running totals are exact
    assert list(top_p_filter(probs, 0.75)) == [1 / 3, 2 / 3, 0, 0]


def test_filters_do_not_change_their_input():
    probs = np.exp(PEAKED)
    before = probs.copy()
    top_k_filter(probs, 2), top_p_filter(probs, 0.5), apply_temperature(PEAKED, 0.5)
    assert np.array_equal(probs, before)


# ------------------------------------------------------------- bad input --

@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt_ids=[5, 48]), "outside the vocabulary"),
    (dict(prompt_ids=[-1]), "outside the vocabulary"),
    (dict(prompt_ids=[]), "T >= 1"),
    (dict(prompt_ids=list(range(25))), "longer than max_seq_len"),
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(stop_ids=[48]), "outside the vocabulary"),
])
def test_generate_rejects_bad_input_at_the_call(kwargs, message):
    args = dict(prompt_ids=PROMPT, max_new_tokens=3) | kwargs
    with pytest.raises(ValueError, match=message):
        generate(PARAMS, CONFIG, **args)  # raises before any token is asked for


def test_generate_names_the_mismatched_tensor_and_both_shapes():
    params = dict(PARAMS, w2=np.zeros((2, 40, 24), np.float32))
    with pytest.raises(ValueError, match=r"'w2'.*\(2, 40, 24\).*\(2, 24, 40\)"):
        generate(params, CONFIG, PROMPT, max_new_tokens=3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), "temperature"), (dict(top_k=0), "top_k"), (dict(top_p=2.0), "top_p")])
def test_sample_next_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_next(PEAKED, rng=np.random.default_rng(0), **kwargs)


def test_step_reference_rejects_a_full_cache():
    cache = KVCache.empty(CONFIG)
    cache.pos = CONFIG.max_seq_len
    with pytest.raises(ValueError, match="no room"):
        step_reference(PARAMS, CONFIG, 1, cache)
