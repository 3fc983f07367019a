"""Exercise checks, one function per exercise, called right after it in a notebook.

    from llmedu import check
    check.merge(merge)

A check runs the learner's function on several inputs, edge cases included,
and compares each result with the library's reference. On success it prints
one line; on the first mismatch it raises ``AssertionError`` naming the input,
the expected value and the actual one. Errors raised by the learner's code
(the lesson's ``NotImplementedError`` stub among them) become an
``AssertionError`` too, so every failure reads the same way in a grade report.

``EXERCISES`` maps each check's name to its exercise number; the grader
(:mod:`llmedu.grade`) uses it to find each exercise's check cell.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

from llmedu import bpe


@dataclass(frozen=True)
class Exercise:
    number: str  # "1.2": lesson 1, exercise 2
    name: str  # the check function's name, e.g. "merge"
    title: str  # what the learner builds, for reports

    @property
    def lesson(self) -> int:
        return int(self.number.split(".")[0])


EXERCISES: dict[str, Exercise] = {}


def exercise(number: str, title: str):
    """Register a check for exercise ``number`` and give it the common behaviour."""

    def decorate(check_function):
        name = check_function.__name__
        EXERCISES[name] = Exercise(number, name, title)

        @functools.wraps(check_function)
        def run(learner_function):
            if not callable(learner_function):
                raise AssertionError(
                    f"Exercise {number} ({title}): pass your function itself, "
                    f"e.g. check.{name}({name}), not {learner_function!r}."
                )
            n_cases = check_function(_Reporter(number, title, learner_function))
            print(f"Exercise {number} ({title}): passed all {n_cases} cases.")

        return run

    return decorate


class _Reporter:
    """Calls the learner's function and compares its answers, raising on the first mismatch."""

    def __init__(self, number: str, title: str, function):
        self.number, self.title, self.function = number, title, function

    def call(self, *args):
        try:
            return self.function(*args)
        except Exception as error:  # the learner's bug, reported as a failed case
            raise AssertionError(
                f"Exercise {self.number} ({self.title}): for input {_show(args)} "
                f"your function raised {type(error).__name__}: {error}"
            ) from error

    def expect(self, args: tuple, expected, actual=None) -> None:
        """Compare the learner's answer for ``args`` (computed here unless given)."""
        if actual is None:
            actual = self.call(*args)
        if actual != expected:
            raise AssertionError(
                f"Exercise {self.number} ({self.title}): for input {_show(args)}\n"
                f"  expected {_show(expected)}\n  got      {_show(actual)}"
            )


def _show(value, limit: int = 300) -> str:
    """repr, shortened so a failure message stays readable."""
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    text = repr(value)
    if isinstance(value, tuple):
        text = ", ".join(repr(v) for v in value)
    return text if len(text) <= limit else text[: limit - 5] + " ...)"


# ---------------------------------------------------------------- lesson 01 --

_STATS_CASES = [
    [],
    [7],
    [1, 2],
    [1, 2, 3, 1, 2],
    [5, 5, 5, 5],
    [104, 105, 32, 104, 105, 33],
]
_MERGE_CASES = [
    ([], (1, 2), 256),
    ([1, 2], (1, 2), 256),
    ([1, 2, 3, 1, 2], (1, 2), 256),
    ([1, 1, 1], (1, 1), 300),  # non-overlapping, left to right: [300, 1]
    ([1, 1, 1, 1], (1, 1), 300),
    ([3, 1, 2, 1], (2, 3), 256),  # absent pair: unchanged
    ([2, 1, 2, 1, 2], (1, 2), 999),
]
_TEXTS = [
    "aaabdaaabac",
    "hello world, hello there",
    "the cat sat on the mat; the cat ate",
    "aaaa bbbb aaaa",
    "你好，世界。你好！",
    "emoji 🙂🙂 and spaces   \n\n  ",
]


@exercise("1.1", "pair statistics")
def get_stats(learner) -> int:
    for ids in _STATS_CASES:
        expected = bpe.get_stats(list(ids))
        actual = learner.call(list(ids))
        learner.expect((ids,), expected, dict(actual))
        if list(actual) != list(expected):
            raise AssertionError(
                f"Exercise 1.1 (pair statistics): for input {ids} the counts are right but the pairs "
                f"are not in order of first occurrence: expected {list(expected)}, got {list(actual)}"
            )
    return len(_STATS_CASES)


@exercise("1.2", "merge a pair")
def merge(learner) -> int:
    for ids, pair, new_id in _MERGE_CASES:
        learner.expect((list(ids), pair, new_id), bpe.merge(list(ids), pair, new_id))
    return len(_MERGE_CASES)


@exercise("1.3", "training loop")
def train(learner) -> int:
    cases = [(text, size) for text in _TEXTS for size in (256, 259, 270)]
    for text, vocab_size in cases:
        with warnings.catch_warnings():  # the reference warns when it stops early; that is expected here
            warnings.simplefilter("ignore")
            expected = bpe.train(text, vocab_size)
        learner.expect((text, vocab_size), expected)
    return len(cases)


def _small_merges() -> dict:
    """Merges learned from the check texts (few enough that training never stops early)."""
    return bpe.train(" ".join(_TEXTS), 280)


@exercise("1.4", "encode")
def encode(learner) -> int:
    merges = _small_merges()
    cases = _TEXTS + ["", "unseen words: zebra 🦓", "hello hello hello"]
    for text in cases:
        learner.expect((text, merges), bpe.encode(text, merges))
    return len(cases)


@exercise("1.5", "decode")
def decode(learner) -> int:
    merges = _small_merges()
    vocab = bpe.build_vocab(merges)
    cases = [bpe.encode(text, merges) for text in _TEXTS] + [[], [0xE4, 0xBD], [104, 0xFF, 105]]
    for ids in cases:  # the last two are invalid UTF-8: expect U+FFFD
        learner.expect((ids, vocab), bpe.decode(ids, vocab))
    return len(cases)
