"""Specifications of the Numba fast path (lesson 02).

``llmedu.kernels`` must give the logits of ``llmedu.model.forward`` (the
numpy reference) up to float32 rounding, for one sequence or a batch, in one
pass (``forward``, ``prefill``) or one token at a time with a KV cache
(``step``), and must refuse bad input before any kernel runs.
"""

import numpy as np
import pytest

from llmedu import kernels, model
from llmedu.generate import KVCache, step_reference

# Small on purpose: Numba compiles once per type, not per size, so tiny
# shapes test the same machine code as the benchmark shapes.
CONFIGS = {
    "gqa": model.ModelConfig(vocab_size=61, dim=24, n_layers=2, n_heads=6, n_kv_heads=2, hidden_dim=40, max_seq_len=24),
    "mha": model.ModelConfig(vocab_size=40, dim=16, n_layers=3, n_heads=2, n_kv_heads=2, hidden_dim=48, max_seq_len=16),
    "mqa": model.ModelConfig(vocab_size=33, dim=32, n_layers=1, n_heads=4, n_kv_heads=1, hidden_dim=20, max_seq_len=20,
                             norm_eps=1e-6, rope_theta=500.0),
    "tiny": model.PRESETS["tiny"],
    # Row counts that are not multiples of 4 (q, k, v: 14; wo, w2: 10; vocab 37) nor
    # of 2 (hidden 27): the kernels that read rows four at a time must handle the rest.
    "odd": model.ModelConfig(vocab_size=37, dim=10, n_layers=2, n_heads=5, n_kv_heads=1, hidden_dim=27, max_seq_len=12),
}


def params_for(config, seed=0):
    # std 0.3 rather than 0.02: attention weights far from uniform and logits
    # far from zero, so a wrong mask, head or rotation shows in the numbers.
    return model.init_params(config, seed=seed, std=0.3)


def rel_err(actual, expected):
    """Largest difference, relative to the largest logit."""
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("name", CONFIGS)
def test_forward_matches_reference_on_one_sequence(name):
    config = CONFIGS[name]
    params = params_for(config)
    tokens = np.random.default_rng(1).integers(0, config.vocab_size, config.max_seq_len)
    fast = kernels.forward(params, config, tokens)
    assert fast.shape == (config.max_seq_len, config.vocab_size)
    assert rel_err(fast, model.forward(params, config, tokens)) <= 1e-4


@pytest.mark.parametrize("name", ["gqa", "mqa"])
def test_forward_matches_reference_on_a_batch(name):
    config = CONFIGS[name]
    params = params_for(config, seed=2)
    tokens = np.random.default_rng(3).integers(0, config.vocab_size, (3, 7))
    fast = kernels.forward(params, config, tokens)
    assert fast.shape == (3, 7, config.vocab_size)
    assert rel_err(fast, model.forward(params, config, tokens)) <= 1e-4


def test_forward_accepts_float64_params_and_python_lists():
    config = CONFIGS["gqa"]
    params = {name: p.astype(np.float64) for name, p in params_for(config).items()}
    tokens = [5, 0, 60, 7]
    assert rel_err(kernels.forward(params, config, tokens), model.forward(params, config, tokens)) <= 1e-4


@pytest.mark.parametrize("name", ["gqa", "mha", "mqa", "odd"])
def test_step_equals_step_reference_and_last_row_of_forward_at_every_position(name):
    config = CONFIGS[name]
    params = params_for(config, seed=4)
    tokens = np.random.default_rng(5).integers(0, config.vocab_size, config.max_seq_len)
    full = model.forward(params, config, tokens)  # (T, vocab): row t is the step at position t
    fast_cache, ref_cache = KVCache.empty(config), KVCache.empty(config)
    for t, token in enumerate(tokens):
        fast = kernels.step(params, config, int(token), fast_cache)
        ref = step_reference(params, config, int(token), ref_cache)
        assert rel_err(fast, full[t]) <= 1e-4, f"kernels.step at position {t}"
        assert rel_err(ref, full[t]) <= 1e-4, f"step_reference at position {t}"
        assert rel_err(fast, ref) <= 1e-4, f"step vs step_reference at position {t}"
    assert fast_cache.pos == ref_cache.pos == config.max_seq_len
    assert rel_err(fast_cache.keys, ref_cache.keys) <= 1e-4
    assert rel_err(fast_cache.values, ref_cache.values) <= 1e-4


def test_prefill_then_steps_equal_forward():
    config = CONFIGS["gqa"]
    params = params_for(config, seed=6)
    tokens = np.random.default_rng(7).integers(0, config.vocab_size, 12)
    full = model.forward(params, config, tokens)
    cache = KVCache.empty(config)
    last = kernels.prefill(params, config, tokens[:9], cache)  # logits of position 8 only
    assert cache.pos == 9
    assert rel_err(last, full[8]) <= 1e-4
    for t in range(9, 12):
        assert rel_err(kernels.step(params, config, int(tokens[t]), cache), full[t]) <= 1e-4


def test_step_writes_only_its_own_cache_row():
    config = CONFIGS["gqa"]
    params = params_for(config)
    cache = KVCache.empty(config)
    kernels.step(params, config, 3, cache)
    kernels.step(params, config, 4, cache)
    assert cache.pos == 2
    assert np.all(cache.keys[:, :2].any(axis=-1)) and np.all(cache.values[:, :2].any(axis=-1))
    assert not cache.keys[:, 2:].any() and not cache.values[:, 2:].any()


# ------------------------------------------------------------- bad input --

def test_forward_names_the_mismatched_tensor_and_both_shapes():
    config = CONFIGS["gqa"]
    params = params_for(config)
    params["wk"] = np.zeros((2, 24, 24), np.float32)  # GQA needs (2, 8, 24)
    with pytest.raises(ValueError, match=r"'wk'.*\(2, 24, 24\).*\(2, 8, 24\)"):
        kernels.forward(params, config, [1, 2])


@pytest.mark.parametrize("tokens, message", [
    ([1, 61], "outside the vocabulary"),
    ([-1, 2], "outside the vocabulary"),
    (list(range(25)), "longer than max_seq_len"),
    ([], "T >= 1"),
    ([1.0, 2.0], "integer"),
])
def test_forward_rejects_bad_tokens(tokens, message):
    config = CONFIGS["gqa"]
    with pytest.raises(ValueError, match=message):
        kernels.forward(params_for(config), config, tokens)


def test_step_refuses_a_full_cache_and_leaves_it_untouched():
    config = CONFIGS["mha"]
    params = params_for(config)
    cache = KVCache.empty(config)
    kernels.prefill(params, config, np.arange(config.max_seq_len), cache)
    keys = cache.keys.copy()
    with pytest.raises(ValueError, match="no room"):
        kernels.step(params, config, 1, cache)
    assert cache.pos == config.max_seq_len and np.array_equal(cache.keys, keys)


@pytest.mark.parametrize("token", [61, -1, 2.0, "7", True])
def test_step_rejects_a_bad_token_and_leaves_the_cache_untouched(token):
    config = CONFIGS["gqa"]
    cache = KVCache.empty(config)
    with pytest.raises(ValueError):
        kernels.step(params_for(config), config, token, cache)
    assert cache.pos == 0 and not cache.keys.any()


def test_step_rejects_a_cache_made_for_another_config():
    cache = KVCache.empty(CONFIGS["mha"])
    config = CONFIGS["gqa"]
    with pytest.raises(ValueError, match="KVCache.empty"):
        kernels.step(params_for(config), config, 1, cache)


def test_prefill_rejects_a_prompt_longer_than_the_room_left():
    config = CONFIGS["gqa"]
    params = params_for(config)
    cache = KVCache.empty(config)
    kernels.prefill(params, config, np.arange(20), cache)
    with pytest.raises(ValueError, match="no room for 5"):
        kernels.prefill(params, config, np.arange(5), cache)
    assert cache.pos == 20
