"""Checks for lesson 01 (tokenizer): the learner's BPE functions against ``llmedu.bpe``."""

import warnings

from llmedu import bpe
from llmedu.checks.framework import exercise

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
