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
    [3, 1, 2, 1, 2, 1, 2],  # the most frequent pair is not the first: keep first-occurrence order
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
            learner.fail((ids,), list(expected), list(actual),
                         "the counts are right but the pairs are not in order of first occurrence")
    return len(_STATS_CASES)


@exercise("1.2", "merge a pair")
def merge(learner) -> int:
    for ids, pair, new_id in _MERGE_CASES:
        given = list(ids)
        actual = learner.call(given, pair, new_id)
        learner.expect((list(ids), pair, new_id), bpe.merge(list(ids), pair, new_id), actual)
        if given != ids:
            learner.fail((list(ids), pair, new_id), ids, given,
                         "your function changed the ids list it was given; build and return a new list")
    return len(_MERGE_CASES)


@exercise("1.3", "training loop", uses=("get_stats", "merge"))
def train(learner) -> int:
    cases = [(text, size) for text in _TEXTS for size in (256, 259, 270)]
    for text, vocab_size in cases:
        with warnings.catch_warnings():  # the reference warns when it stops early; that is expected here
            warnings.simplefilter("ignore")
            expected = bpe.train(text, vocab_size)
        learner.expect((text, vocab_size), expected)
    return len(cases)


# Merges learned from text other than the check texts, so the order in which an encoder applies them
# matters: merging the most frequent pair first, or the latest-learned merge first, gives other ids.
_OTHER_TEXT = ("Once upon a time there was a little cat. The cat sat in the sun and the sun was warm. "
               "Then the cat saw a hat, and the hat was on the mat. 你好你好")
# Pairs that only ever meet across a chunk boundary ("o" + " " in "hello world", "," + " " in "cat, ",
# "t" + " " in "cat sat"), then two inside words: an encoder that skips the split merges the first three.
_ACROSS_CHUNKS = {(ord("o"), ord(" ")): 256, (ord(","), ord(" ")): 257, (ord("t"), ord(" ")): 258,
                  (ord("l"), ord("l")): 259, (ord("h"), ord("e")): 260}


def _merge_tables() -> list[dict]:
    """Merges learned from the check texts, from other text, and pairs only seen across chunks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [bpe.train(" ".join(_TEXTS), 280), bpe.train(_OTHER_TEXT, 300), _ACROSS_CHUNKS]


@exercise("1.4", "encode", uses=("get_stats", "merge"))
def encode(learner) -> int:
    texts = _TEXTS + ["", "unseen words: zebra 🦓", "hello hello hello", "the cat sat in the hat. Then the sun",
                      _OTHER_TEXT]
    cases = [(text, merges) for merges in _merge_tables() for text in texts]
    for text, merges in cases:
        learner.expect((text, merges), bpe.encode(text, merges), learner.call(text, dict(merges)))
    return len(cases)


@exercise("1.5", "decode")
def decode(learner) -> int:
    merges = _merge_tables()[0]
    vocab = bpe.build_vocab(merges)
    cases = [bpe.encode(text, merges) for text in _TEXTS] + [
        [], list("你".encode("utf-8")),  # one character split over three byte tokens: join the bytes, then decode
        [0xE4, 0xBD], [104, 0xFF, 105],  # invalid UTF-8: expect U+FFFD
    ]
    for ids in cases:
        learner.expect((ids, vocab), bpe.decode(ids, vocab), learner.call(list(ids), dict(vocab)))
    return len(cases)
