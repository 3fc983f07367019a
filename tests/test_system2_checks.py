"""Lesson 08's System 2 check (exercise 8.2) accepts the reference and rejects the typical mistakes, saying why."""

import random
from collections import Counter

import pytest

from llmedu import system2
from llmedu.checks import system2 as checks


def test_the_check_passes_on_the_library(capsys):
    checks.majority_vote(system2.majority_vote)
    assert "passed all" in capsys.readouterr().out


def test_the_check_passes_on_a_counter_solution():
    # Counter keeps first-seen order and most_common sorts stably: ties go to the first sample, as asked.
    def vote(answers):
        counts = Counter(a for a in answers if a is not None)
        return counts.most_common(1)[0][0] if counts else None

    checks.majority_vote(vote)


def vote_counting_none(answers):
    return Counter(answers).most_common(1)[0][0] if answers else None


def vote_returning_the_count(answers):
    counts = Counter(a for a in answers if a is not None)
    return counts.most_common(1)[0][1] if counts else None


def vote_by_set_order(answers):
    votes = [a for a in answers if a is not None]
    return max(set(votes), key=votes.count) if votes else None


def vote_last_wins(answers):
    best, best_count = None, 0
    for a in answers:
        if a is not None and answers.count(a) >= best_count:
            best, best_count = a, answers.count(a)
    return best


def vote_dropping_zeros(answers):
    # `if a` leaves out None, and also every answer of 0.
    counts = Counter(a for a in answers if a)
    return counts.most_common(1)[0][0] if counts else None


def vote_random_tie(answers):
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return random.choice([a for a, c in counts.items() if c == top])


@pytest.mark.parametrize("wrong, says", [
    (vote_counting_none, "None is a reply with no final answer"),
    (vote_returning_the_count, "not how many votes"),
    (vote_by_set_order, "sampled first"),
    (vote_last_wins, "sampled first"),
    (vote_random_tie, "sampled first|deterministic"),
    (vote_dropping_zeros, "0 is an answer like any other"),
])
def test_the_check_rejects_a_typical_mistake(wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.majority_vote(wrong)


def test_the_check_fails_on_the_lesson_stub():
    def stub(answers):
        raise NotImplementedError("Exercise 8.2: the majority vote")

    with pytest.raises(AssertionError, match="NotImplementedError"):
        checks.majority_vote(stub)
