"""Lesson 01's checks reject the mistakes learners make, and their messages point at the mistake."""

import numpy as np
import pytest
import regex

from llmedu import bpe, check
from llmedu.bpe import GPT4_SPLIT_PATTERN


# ----------------------------------------------------------- 1.1 get_stats --

def stats_by_count(ids):  # right counts, but sorted most frequent first
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def stats_without_overlaps(ids):  # skips past a counted pair, so (5, 5, 5) counts (5, 5) once
    counts, i = {}, 0
    while i + 1 < len(ids):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def stats_of_every_other_pair(ids):  # pairs two apart instead of neighbours
    counts = {}
    for pair in zip(ids, ids[2:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


# ---------------------------------------------------------------- 1.2 merge --

def merge_from_the_right(ids, pair, new_id):  # [1, 1, 1] with (1, 1) gives [1, 300], not [300, 1]
    return bpe.merge(ids[::-1], pair[::-1], new_id)[::-1]


def merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


def merge_in_place(ids, pair, new_id):  # right answer, but it empties the caller's list
    merged = bpe.merge(ids, pair, new_id)
    ids[:] = merged
    return ids


def merge_dropping_the_last_id(ids, pair, new_id):  # the loop stops one id early when no pair ends the list
    merged, i = [], 0
    while i + 1 < len(ids):
        if (ids[i], ids[i + 1]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


# ---------------------------------------------------------------- 1.3 train --

def train_without_splitting(text, vocab_size):  # pairs may cross word boundaries
    ids, merges = list(text.encode("utf-8")), {}
    for new_id in range(256, vocab_size):
        stats = bpe.get_stats(ids)
        if not stats or max(stats.values()) < 2:
            break
        pair = max(stats, key=stats.get)
        ids, merges[pair] = bpe.merge(ids, pair, new_id), new_id
    return merges


def train_that_never_stops(text, vocab_size):  # keeps merging pairs seen once
    chunks = [list(c.encode("utf-8")) for c in regex.findall(GPT4_SPLIT_PATTERN, text)]
    merges = {}
    for new_id in range(256, vocab_size):
        stats = {}
        for chunk in chunks:
            bpe.get_stats(chunk, stats)
        if not stats:
            break
        pair = max(stats, key=stats.get)
        chunks, merges[pair] = [bpe.merge(c, pair, new_id) for c in chunks], new_id
    return merges


# --------------------------------------------------------------- 1.4 encode --

def _encoder(name, choose):
    """An encoder that splits like the reference but picks the next pair with ``choose(candidates, merges)``."""
    def encode(text, merges):
        out = []
        for chunk in regex.findall(GPT4_SPLIT_PATTERN, text):
            ids = list(chunk.encode("utf-8"))
            while True:
                stats = bpe.get_stats(ids)
                candidates = {pair: count for pair, count in stats.items() if pair in merges}
                if not candidates:
                    break
                pair = choose(candidates, merges)
                ids = bpe.merge(ids, pair, merges[pair])
            out += ids
        return out
    encode.__name__ = name
    return encode


encode_most_frequent_pair_first = _encoder("encode_most_frequent_pair_first",
                                           lambda candidates, merges: max(candidates, key=candidates.get))
encode_latest_merge_first = _encoder("encode_latest_merge_first",
                                     lambda candidates, merges: max(candidates, key=merges.get))


def encode_without_splitting(text, merges):  # merges pairs across word boundaries
    return bpe.encode_chunk(text.encode("utf-8"), merges)


def encode_characters_not_bytes(text, merges):  # ord() of characters: ids above 255 for non-ASCII
    out = []
    for chunk in regex.findall(GPT4_SPLIT_PATTERN, text):
        ids = [ord(c) for c in chunk]
        out += bpe.encode_chunk(bytes(i % 256 for i in ids), merges) if all(i < 256 for i in ids) else ids
    return out


# --------------------------------------------------------------- 1.5 decode --

def decode_each_token_on_its_own(ids, vocab):  # splits multi-byte characters
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


def decode_ignoring_invalid_bytes(ids, vocab):
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="ignore")


MISTAKES = [
    (check.get_stats, stats_by_count),
    (check.get_stats, stats_without_overlaps),
    (check.get_stats, stats_of_every_other_pair),
    (check.merge, merge_from_the_right),
    (check.merge, merge_first_only),
    (check.merge, merge_in_place),
    (check.merge, merge_dropping_the_last_id),
    (check.train, train_without_splitting),
    (check.train, train_that_never_stops),
    (check.encode, encode_most_frequent_pair_first),
    (check.encode, encode_latest_merge_first),
    (check.encode, encode_without_splitting),
    (check.encode, encode_characters_not_bytes),
    (check.decode, decode_each_token_on_its_own),
    (check.decode, decode_ignoring_invalid_bytes),
]


@pytest.mark.parametrize(("run_check", "mistake"), MISTAKES, ids=lambda value: getattr(value, "__name__", ""))
def test_the_check_rejects_a_typical_mistake(run_check, mistake):
    with pytest.raises(AssertionError, match=r"^Exercise 1\.\d \("):
        run_check(mistake)


@pytest.mark.filterwarnings("ignore:training stopped")  # the reference warns when a short text runs out of pairs
def test_the_checks_accept_the_references(capsys):
    check.get_stats(bpe.get_stats)
    check.merge(bpe.merge)
    check.train(bpe.train)
    check.encode(bpe.encode)
    check.decode(bpe.decode)
    assert capsys.readouterr().out.count("passed all") == 5


def test_a_failure_shows_the_pair_as_one_argument():
    with pytest.raises(AssertionError) as failure:
        check.merge(merge_from_the_right)
    assert "for ids=[1, 1, 1], pair=(1, 1), new_id=300\n" in str(failure.value)


def test_a_failure_shows_the_input_as_it_was_before_the_call():
    def merge_that_empties_its_input(ids, pair, new_id):
        ids.clear()
        return ids

    with pytest.raises(AssertionError) as failure:
        check.merge(merge_that_empties_its_input)
    assert str(failure.value).startswith("Exercise 1.2 (merge a pair): for ids=[1, 2], pair=(1, 2), new_id=256\n")


def test_a_failure_names_the_first_position_where_the_ids_differ_with_both_ids():
    with pytest.raises(AssertionError) as failure:
        check.encode(encode_latest_merge_first)
    message = str(failure.value)
    expected, got = (line.split(maxsplit=1)[1] for line in message.splitlines()[-2:])
    position = next(i for i, (a, b) in enumerate(zip(eval(expected), eval(got))) if a != b)
    assert f"differs first at position {position}: expected {eval(expected)[position]}, got {eval(got)[position]}" \
        in message


def test_a_failure_summarises_the_merges_and_the_vocabulary_by_their_size():
    with pytest.raises(AssertionError) as failure:
        check.decode(decode_each_token_on_its_own)
    first_line = str(failure.value).splitlines()[0]
    assert "vocab=dict of 280 entries {0: b'\\x00'" in first_line
    assert len(first_line) < 250


def test_an_array_where_a_list_is_expected_is_named_as_the_mistake():
    with pytest.raises(AssertionError, match="the result should be a list, got ndarray"):
        check.encode(lambda text, merges: np.array(bpe.encode(text, merges)))
