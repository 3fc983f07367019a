"""Checks for lesson 00 (two files): counting parameters, and the run file's sampling loop.

The sampling checks are exact because the draw is fixed by the task: the
probabilities are softmax(logits / temperature) in float64, and one token is
drawn with ``rng.choice(len(probs), p=probs)`` — exactly one draw per sampled
token, none at temperature 0. The references below are written out here, in
the same way as ``assets/run.py``; ``tests/test_run_file.py`` runs these
checks on the run file's own functions.
"""

import math

import numpy as np

from llmedu import model
from llmedu.checks.framework import Shown, exercise
from llmedu.model import ModelConfig

_CONFIGS = [
    model.PRESETS["tiny"],  # grouped-query attention: 4 query heads share 2 key/value heads
    ModelConfig(vocab_size=512, dim=128, n_layers=4, n_heads=4, n_kv_heads=4, hidden_dim=344, max_seq_len=64),
    ModelConfig(vocab_size=10, dim=8, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=12, max_seq_len=4),
    ModelConfig(vocab_size=300, dim=48, n_layers=3, n_heads=6, n_kv_heads=3, hidden_dim=100, max_seq_len=16),
    ModelConfig(vocab_size=7, dim=16, n_layers=2, n_heads=2, n_kv_heads=2, hidden_dim=16, max_seq_len=1000),
    model.PRESETS["stories15m"],
    # Llama 2 70B's published shape: 64 query heads, 8 key/value heads
    ModelConfig(vocab_size=32000, dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, hidden_dim=28672, max_seq_len=4096),
]


def _count_reference(config: ModelConfig) -> int:
    """Parameters of a model with this config, as llmedu builds it (big configs without allocating them)."""
    if config.dim * config.vocab_size <= 10**6:
        return model.count_params(model.init_params(config))
    return sum(math.prod(shape) for shape in model.param_shapes(config).values())


@exercise("0.1", "parameters from the config")
def count_parameters(learner) -> int:
    for config in _CONFIGS:
        learner.expect((config,), _count_reference(config))
    return len(_CONFIGS)


def _sample_reference(logits, temperature, rng) -> int:
    if temperature == 0:
        return int(np.argmax(logits))
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    return int(rng.choice(len(probs), p=probs))


def _random_logits(seed: int, vocab: int, scale: float, dtype=np.float64) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(vocab) * scale).astype(dtype)


_SAMPLE_CASES = [  # (logits, temperature, seed of the rng)
    (np.array([0.1, 2.0, -1.0, 2.0]), 0, 0),  # greedy; a tie goes to the first, as np.argmax does
    (np.array([-3.0, -1.0, -2.0]), 0, 1),  # greedy on negative logits
    (_random_logits(1, 10, 2.0), 1.0, 0),
    (_random_logits(2, 10, 2.0), 1.0, 1),
    (_random_logits(3, 50, 3.0), 0.5, 2),  # sharper
    (_random_logits(4, 50, 3.0), 2.0, 3),  # flatter
    (_random_logits(5, 512, 4.0, np.float32), 0.8, 4),  # float32 logits, a real vocabulary size
    (np.array([1000.0, 999.0, 0.0]), 1.0, 5),  # exp(1000) overflows unless the max is subtracted first
    (np.array([1.0, 1.002, 0.5]), 0.001, 6),  # a tiny temperature: nearly greedy, still a draw
    (np.zeros(6), 1.0, 7),  # all equal: uniform
    (np.array([5.0]), 1.0, 8),  # one token only
]


@exercise("0.2", "sample one token")
def sample_token(learner) -> int:
    for logits, temperature, seed in _SAMPLE_CASES:
        args = (logits, temperature, Shown(f"np.random.default_rng({seed})"))
        expected_rng, learner_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        expected = _sample_reference(logits.copy(), temperature, expected_rng)
        actual = learner.call(logits.copy(), temperature, learner_rng, shown=args)
        learner.expect(args, expected, actual)
        # The same rng must be left in the same state: one draw per sampled token, none when greedy.
        if learner_rng.random() != expected_rng.random():
            uses = "must not use the rng at temperature 0" if temperature == 0 else \
                "must draw once, with rng.choice(len(probs), p=probs)"
            learner.fail_because(args, f"the token is right, but the rng was left in another state: "
                                       f"sample_token {uses}")
    return len(_SAMPLE_CASES)


_TOY_VOCAB = 11


def _toy_next_logits(ids) -> np.ndarray:
    """Logits (11,) that depend on every id of the context and on its order, so a wrong crop shows."""
    ids = [int(i) for i in ids]
    key = sum((position + 1) * (token + 1) for position, token in enumerate(ids)) % 101
    return 3.0 * np.sin(0.7 * (key + 1) * np.arange(1, _TOY_VOCAB + 1))


def _generate_reference(next_logits, prompt_ids, n_new, temperature, rng, context_len) -> list:
    ids = list(prompt_ids)
    for _ in range(n_new):
        ids.append(_sample_reference(next_logits(ids[-context_len:]), temperature, rng))
    return ids[len(prompt_ids):]


_GENERATE_CASES = [  # (prompt_ids, n_new, temperature, seed, context_len)
    ([1, 2, 3], 6, 0, 0, 16),  # greedy, everything fits
    ([4], 0, 1.0, 0, 8),  # nothing to generate
    ([4], 1, 1.0, 1, 8),
    ([1, 2, 3], 8, 1.0, 2, 16),  # sampled
    ([5, 6, 7, 8, 9, 10], 10, 0.7, 3, 4),  # the prompt alone is longer than the context
    ([2, 3], 12, 0, 4, 5),  # greedy, the context fills up on the way
    ([9, 9, 9], 5, 1.5, 5, 1),  # the model sees only the last token
]


def _as_ints(values):
    """A list of Python ints if ``values`` is a sequence of integers (numpy ones too), else ``values`` unchanged."""
    try:
        return [int(i) for i in values] if all(isinstance(i, (int, np.integer)) for i in values) else values
    except TypeError:  # not iterable: reported as it is
        return values


def _contexts(prompt: list, new_tokens, context_len: int) -> list:
    """What a correct loop passes to next_logits on its way to producing ``new_tokens``."""
    if not isinstance(new_tokens, list):
        return None
    return [(list(prompt) + new_tokens[:i])[-context_len:] for i in range(len(new_tokens))]


@exercise("0.3", "the generation loop", uses=("sample_token",))
def generate(learner) -> int:
    for prompt, n_new, temperature, seed, context_len in _GENERATE_CASES:
        rng_made = Shown(f"np.random.default_rng({seed})")
        args = (Shown("next_logits"), list(prompt), n_new, temperature, rng_made, context_len)
        expected_seen, learner_seen = [], []

        def recording(seen):
            def next_logits(ids):
                seen.append([int(i) for i in ids])
                return _toy_next_logits(ids)
            return next_logits

        expected = _generate_reference(recording(expected_seen), list(prompt), n_new, temperature,
                                       np.random.default_rng(seed), context_len)
        given_prompt = list(prompt)
        actual = learner.call(recording(learner_seen), given_prompt, n_new, temperature,
                              np.random.default_rng(seed), context_len, shown=args)
        if given_prompt != prompt:
            learner.fail(args, prompt, given_prompt,
                         "your function changed the prompt list it was given; copy it first")
        too_long = [ids for ids in learner_seen if len(ids) > context_len]
        if too_long:
            learner.fail(args, f"at most {context_len} ids per call", too_long[0],
                         "next_logits was given more ids than context_len; pass only the last context_len")
        tokens = _as_ints(actual)
        if tokens != expected and learner_seen == _contexts(prompt, tokens, context_len):
            learner.fail(args, expected, tokens, "the loop feeds next_logits correctly, but the tokens it picks "
                                                 "differ: check your sample_token and the logits you pass it")
        if learner_seen != expected_seen:
            learner.fail(args, expected_seen, learner_seen,
                         "next_logits was called with different contexts (one call per new token, "
                         "each with the last context_len ids of prompt + tokens so far)")
        learner.expect(args, expected, tokens)
    return len(_GENERATE_CASES)
