"""Lesson 00's checks reject the mistakes learners make, and their messages point at the mistake."""

import numpy as np
import pytest

from llmedu import check, model


# ------------------------------------------------------- 0.1 count_parameters --

def _count(config, output=True, kv_heads=None, layer_norms=True, final_norm=True):
    """The parameter count with one thing changeable, to write each wrong answer in one line."""
    head_dim = config.dim // config.n_heads
    kv_dim = (kv_heads or config.n_kv_heads) * head_dim
    per_layer = (2 * config.dim if layer_norms else 0) + 2 * config.dim ** 2 + 2 * kv_dim * config.dim \
        + 3 * config.hidden_dim * config.dim
    embeddings = (2 if output else 1) * config.vocab_size * config.dim
    return embeddings + config.n_layers * per_layer + (config.dim if final_norm else 0)


def count_without_output_matrix(config):  # as if the output projection shared the embedding matrix
    return _count(config, output=False)


def count_with_full_size_keys_and_values(config):  # wk and wv sized by n_heads: no grouped-query attention
    return _count(config, kv_heads=config.n_heads)


def count_without_layer_norms(config):
    return _count(config, layer_norms=False)


def count_without_final_norm(config):
    return _count(config, final_norm=False)


# ---------------------------------------------------------- 0.2 sample_token --

def _probs(logits, temperature):
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    return probs / probs.sum()


def sample_without_max_subtraction(logits, temperature, rng):  # exp(1000) is inf, and inf / inf is nan
    if temperature == 0:
        return int(np.argmax(logits))
    probs = np.exp(np.asarray(logits, dtype=np.float64) / temperature)
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def sample_multiplying_by_temperature(logits, temperature, rng):
    if temperature == 0:
        return int(np.argmax(logits))
    return int(rng.choice(len(logits), p=_probs(np.asarray(logits) * temperature ** 2, temperature)))


def sample_drawing_even_when_greedy(logits, temperature, rng):  # the right token, but the rng moves on
    if temperature == 0:
        rng.random()
        return int(np.argmax(logits))
    return int(rng.choice(len(logits), p=_probs(logits, temperature)))


def sample_with_the_global_rng(logits, temperature, rng):  # np.random, not the rng it was given
    if temperature == 0:
        return int(np.argmax(logits))
    return int(np.random.default_rng().choice(len(logits), p=_probs(logits, temperature)))


def sample_ties_to_the_last(logits, temperature, rng):  # argmax of the reversed logits: a tie goes to the last
    if temperature == 0:
        return len(logits) - 1 - int(np.argmax(np.asarray(logits)[::-1]))
    return int(rng.choice(len(logits), p=_probs(logits, temperature)))


# ------------------------------------------------------------- 0.3 generate --

def _generate(next_logits, prompt_ids, n_new, temperature, rng, context_len, crop=None, include_prompt=False):
    """The loop with one thing changeable, to write each wrong answer in one line."""
    crop = crop or (lambda ids: ids[-context_len:])
    ids = list(prompt_ids)
    for _ in range(n_new):
        ids.append(check_sample(next_logits(crop(ids)), temperature, rng))
    return ids if include_prompt else ids[len(prompt_ids):]


def check_sample(logits, temperature, rng):
    return int(np.argmax(logits)) if temperature == 0 else int(rng.choice(len(logits), p=_probs(logits, temperature)))


def generate_returning_the_prompt_too(next_logits, prompt_ids, n_new, temperature, rng, context_len):
    return _generate(next_logits, prompt_ids, n_new, temperature, rng, context_len, include_prompt=True)


def generate_without_cropping(next_logits, prompt_ids, n_new, temperature, rng, context_len):
    return _generate(next_logits, prompt_ids, n_new, temperature, rng, context_len, crop=lambda ids: ids)


def generate_cropping_off_by_one(next_logits, prompt_ids, n_new, temperature, rng, context_len):
    # ids[-context_len + 1:] keeps one id too few, and all of them when context_len is 1
    return _generate(next_logits, prompt_ids, n_new, temperature, rng, context_len,
                     crop=lambda ids: ids[-context_len + 1:])


def generate_keeping_the_first_ids(next_logits, prompt_ids, n_new, temperature, rng, context_len):
    return _generate(next_logits, prompt_ids, n_new, temperature, rng, context_len, crop=lambda ids: ids[:context_len])


def generate_appending_to_the_prompt(next_logits, prompt_ids, n_new, temperature, rng, context_len):
    for _ in range(n_new):
        prompt_ids.append(check_sample(next_logits(prompt_ids[-context_len:]), temperature, rng))
    return prompt_ids[len(prompt_ids) - n_new:]


def generate_always_greedy(next_logits, prompt_ids, n_new, temperature, rng, context_len):
    return _generate(next_logits, prompt_ids, n_new, 0, rng, context_len)


MISTAKES = [
    (check.count_parameters, count_without_output_matrix),
    (check.count_parameters, count_with_full_size_keys_and_values),
    (check.count_parameters, count_without_layer_norms),
    (check.count_parameters, count_without_final_norm),
    (check.sample_token, sample_without_max_subtraction),
    (check.sample_token, sample_multiplying_by_temperature),
    (check.sample_token, sample_drawing_even_when_greedy),
    (check.sample_token, sample_with_the_global_rng),
    (check.sample_token, sample_ties_to_the_last),
    (check.generate, generate_returning_the_prompt_too),
    (check.generate, generate_without_cropping),
    (check.generate, generate_cropping_off_by_one),
    (check.generate, generate_keeping_the_first_ids),
    (check.generate, generate_appending_to_the_prompt),
    (check.generate, generate_always_greedy),
]


@pytest.mark.parametrize(("run_check", "mistake"), MISTAKES, ids=lambda value: getattr(value, "__name__", ""))
def test_the_check_rejects_a_typical_mistake(run_check, mistake):
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match=r"^Exercise 0\.\d \("):
        run_check(mistake)


def test_the_checks_accept_the_references(capsys):
    check.count_parameters(lambda config: model.count_params(model.init_params(config))
                           if config.vocab_size * config.dim <= 10**6 else _count(config))
    check.sample_token(check_sample)
    check.generate(lambda *args: _generate(*args))
    assert capsys.readouterr().out.count("passed all") == 3


def test_the_rng_is_shown_by_how_it_was_made_not_as_an_object():
    with pytest.raises(AssertionError) as failure:
        check.sample_token(sample_drawing_even_when_greedy)
    assert "rng=np.random.default_rng(0)" in str(failure.value)
    assert "Generator(PCG64)" not in str(failure.value)


def test_a_generate_that_calls_a_wrong_sample_token_names_it_as_the_likely_cause():
    namespace = {"np": np}
    exec("def sample_token(logits, temperature, rng):\n    return int(np.argmin(logits))\n"  # the learner's 0.2
         "def generate(next_logits, prompt_ids, n_new, temperature, rng, context_len):\n"
         "    ids = list(prompt_ids)\n"
         "    for _ in range(n_new):\n"
         "        ids.append(sample_token(next_logits(ids[-context_len:]), temperature, rng))\n"
         "    return ids[len(prompt_ids):]\n", namespace)
    with pytest.raises(AssertionError, match=r"(?s)^Exercise 0\.3 .*Likely cause: your sample_token \(exercise 0\.2\)"):
        check.generate(namespace["generate"])


def test_an_overflow_that_makes_the_sampler_raise_is_told_to_subtract_the_maximum():
    with np.errstate(all="ignore"), pytest.raises(AssertionError) as failure:
        check.sample_token(sample_without_max_subtraction)
    message = str(failure.value)
    assert message.startswith("Exercise 0.2 (sample one token): for logits=array([1000., 999., 0.]), temperature=1.0, ")
    assert "subtract the largest value before exp" in message
