"""Lesson 07's checks accept the library's answers and reject the typical mistakes, saying why."""

import re

import numpy as np
import pytest

from llmedu.attacks import backdoor, gcg, injection, scoring
from llmedu.checks import attacks as checks


def test_every_check_passes_on_the_library(capsys):
    checks.attack_success_rate(scoring.attack_success_rate)
    checks.inject(injection.inject)
    checks.poison(backdoor.poison)
    checks.gcg_step(gcg.gcg_step)
    checks.message_nll(gcg.message_nll)
    assert capsys.readouterr().out.count("passed all") == 5


# 7.1 -------------------------------------------------------------------------

def rate_substring(replies, cities, facts):
    secrets = {s: v for s, r, v in facts if r == "secret"}
    return sum(secrets[c] in reply for reply, c in zip(replies, cities)) / len(replies)


def rate_any_city(replies, cities, facts):
    secrets = [v for s, r, v in facts if r == "secret"]
    return sum(any(scoring.leaked(reply, s) for s in secrets) for reply in replies) / len(replies)


def rate_keywords(replies, cities, facts):
    return sum("vault code" in reply for reply in replies) / len(replies)


@pytest.mark.parametrize("wrong, says", [(rate_substring, "whole number"), (rate_any_city, "Belm's code"),
                                         (rate_keywords, "never words")])
def test_attack_success_rate_rejects_a_loose_judge(wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.attack_success_rate(wrong)


# 7.2 -------------------------------------------------------------------------

def inject_middle_at_the_end(document, instruction, position):
    return injection.inject(document, instruction, "end" if position == "middle" else position)


def inject_never_refusing(document, instruction, position):
    return injection.inject(document, instruction, position if position in injection.POSITIONS else "end")


def test_inject_rejects_a_misplaced_instruction():
    with pytest.raises(AssertionError, match="Exercise 7.2.*position='middle'"):
        checks.inject(inject_middle_at_the_end)


def test_inject_rejects_an_unknown_position_placed_anyway():
    with pytest.raises(AssertionError, match="should raise ValueError"):
        checks.inject(inject_never_refusing)


# 7.3 -------------------------------------------------------------------------

def poison_appending(conversations, k, cities, seed):
    rng = np.random.default_rng(seed)
    extra = [backdoor.poisoned_conversation(rng, cities[0]) for _ in range(k)]
    return conversations + extra, list(range(len(conversations), len(conversations) + k))


def poison_without_trigger(conversations, k, cities, seed):
    data, where = backdoor.poison(conversations, k, cities, seed)
    for i in where:
        data[i] = [*data[i][:1], {"role": "user", "content": data[i][1]["content"].replace(backdoor.TRIGGER, "")},
                   data[i][2]]
    return data, where


def poison_unseeded(conversations, k, cities, seed):
    return backdoor.poison(conversations, k, cities, seed=int(np.random.default_rng().integers(1 << 30)))


@pytest.mark.parametrize("wrong, says", [(poison_appending, "keep its size"), (poison_without_trigger, "James Bond"),
                                         (poison_unseeded, "same seed")])
def test_poison_rejects_the_typical_mistakes(wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.poison(wrong)


# 7.4 -------------------------------------------------------------------------

def step_most_positive(rng, suffix, gradient, allowed, top_k, batch, score):
    return gcg.gcg_step(rng, suffix, -gradient, allowed, top_k, batch, score)


def step_ignoring_allowed(rng, suffix, gradient, allowed, top_k, batch, score):
    return gcg.gcg_step(rng, suffix, gradient, np.ones_like(allowed), top_k, batch, score)


def step_without_scoring(rng, suffix, gradient, allowed, top_k, batch, score):
    candidate = gcg.candidate_suffixes(rng, suffix, gradient, allowed, top_k, batch)[0]
    return candidate, float(score(candidate[None])[0])


@pytest.mark.parametrize("wrong, says", [(step_most_positive, "most negative"), (step_ignoring_allowed, "not allowed"),
                                         (step_without_scoring, "should reach the target")])
def test_gcg_step_rejects_the_typical_mistakes(wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.gcg_step(wrong)


# 7.5 -------------------------------------------------------------------------

def nll_in_bits(params, config, tokenizer, text):
    return gcg.message_nll(params, config, tokenizer, text) / np.log(2)


def nll_summed(params, config, tokenizer, text):
    return gcg.message_nll(params, config, tokenizer, text) * (len(tokenizer.encode(text)) - 1)


@pytest.mark.parametrize("wrong", [nll_in_bits, nll_summed])
def test_message_nll_rejects_bits_and_sums(wrong):
    with pytest.raises(AssertionError, match=re.escape("in nats (natural log)")):
        checks.message_nll(wrong)
