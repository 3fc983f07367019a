"""Byte-level byte-pair encoding (BPE) in plain Python: the readable reference.

Lesson 01 (``01_tokenizer``) builds these functions one at a time. A model
reads integers, not characters, so text is turned into a list of token ids:

1. the text is cut into chunks (words, numbers, punctuation, whitespace) by
   the GPT-4 split pattern, so that no token ever spans two categories;
2. each chunk becomes its UTF-8 bytes, ids 0..255;
3. training repeatedly finds the most frequent pair of neighbouring ids and
   gives it a new id (256, 257, ...); the list of merges *is* the tokenizer;
4. encoding replays the merges on new text, lowest (earliest) id first;
5. decoding concatenates the bytes of each id and decodes them as UTF-8.

Every function here is short and slow on purpose. ``llmedu.bpe_fast`` gives
the same merges and ids much faster; the tests use this module as its oracle.

Left out here: special tokens (``<|endoftext|>``...), saving and loading, and
input checking. ``llmedu.tokenizer.BPETokenizer`` adds those.
"""

import warnings

import regex

__all__ = [
    "GPT4_SPLIT_PATTERN",
    "get_stats",
    "merge",
    "train",
    "encode_chunk",
    "encode",
    "build_vocab",
    "decode",
]

# The pre-tokenisation pattern of GPT-4's cl100k tokenizer, read left to right:
# contractions ('s 'll ...), a word with at most one leading non-letter
# (usually a space), numbers of at most 3 digits, punctuation with an optional
# leading space, whitespace up to a newline, whitespace not followed by text,
# any other whitespace. It needs the ``regex`` package (``\p{L}``, ``?+``).
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}|"""
    r""" ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


def get_stats(ids, counts=None):
    """Count each pair of neighbouring ids in ``ids``.

    Returns a dict ``(left, right) -> count`` whose order is the order in
    which each pair first appears. If ``counts`` is given it is updated in
    place and returned, which lets training add up many chunks.

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids, pair, new_id):
    """Return a new list where each occurrence of ``pair`` becomes ``new_id``.

    Occurrences are replaced left to right and never overlap, so three equal
    ids hold one pair plus a leftover: ``merge([1, 1, 1], (1, 1), 9) == [9, 1]``.
    """
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _chunks_as_bytes(text, pattern):
    """Split ``text`` with ``pattern``; return one list of byte ids per chunk."""
    return [list(chunk.encode("utf-8")) for chunk in regex.findall(pattern, text)]


def train(text, vocab_size, pattern=GPT4_SPLIT_PATTERN):
    """Learn ``vocab_size - 256`` merges from ``text``.

    Returns a dict ``(left, right) -> new_id`` in the order the merges were
    learned; the ids are 256, 257, ... Each step counts pairs over all chunks
    in text order and merges the most frequent pair. On a tie ``max`` keeps
    the first pair it meets, i.e. the one that occurs first in the text.
    Training stops early, with a warning, once no pair occurs twice.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (the bytes), got {vocab_size}")
    chunks = _chunks_as_bytes(text, pattern)
    merges = {}
    for new_id in range(256, vocab_size):
        stats = {}
        for ids in chunks:
            get_stats(ids, stats)
        if not stats or max(stats.values()) < 2:
            warnings.warn(
                f"training stopped at vocab size {new_id}: no pair of tokens "
                f"occurs twice in the text (asked for {vocab_size})",
                stacklevel=2,
            )
            break
        pair = max(stats, key=stats.get)
        chunks = [merge(ids, pair, new_id) for ids in chunks]
        merges[pair] = new_id
    return merges


def encode_chunk(chunk, merges):
    """Encode one chunk (``bytes``) by replaying ``merges``.

    At each step the pair with the lowest merge id is merged everywhere in the
    chunk, because that is the order in which training created the merges.
    """
    ids = list(chunk)
    while len(ids) >= 2:
        stats = get_stats(ids)
        pair = min(stats, key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break  # no pair left that training ever merged
        ids = merge(ids, pair, merges[pair])
    return ids


def encode(text, merges, pattern=GPT4_SPLIT_PATTERN):
    """Encode ordinary ``text`` (no special tokens) into a list of token ids."""
    ids = []
    for chunk in regex.findall(pattern, text):
        ids.extend(encode_chunk(chunk.encode("utf-8"), merges))
    return ids


def build_vocab(merges):
    """Return ``id -> bytes`` for the 256 bytes and every merge (in id order)."""
    vocab = {i: bytes([i]) for i in range(256)}
    for (left, right), new_id in sorted(merges.items(), key=lambda kv: kv[1]):
        vocab[new_id] = vocab[left] + vocab[right]
    return vocab


def decode(ids, vocab):
    """Turn token ids back into text.

    A token may hold part of a multi-byte character, so an arbitrary id list
    need not be valid UTF-8; broken sequences become U+FFFD instead of raising.
    """
    data = b"".join(vocab[i] for i in ids)
    return data.decode("utf-8", errors="replace")
