"""Byte-level BPE compiled with Numba: same merges and ids as ``llmedu.bpe``.

Lesson 01 (``01_tokenizer``) first writes BPE in plain Python (``llmedu.bpe``)
and then times this module against it. The results are identical; only the
bookkeeping differs. Three ideas make it fast:

1. **Split without the regex engine** (``llmedu.pretokenize``): a small
   state machine gives the same chunks as ``regex.findall``, faster.
2. **Work on distinct chunks.** Natural text repeats its words. Training
   counts each distinct chunk once with its frequency as a weight, and
   encoding encodes each distinct chunk once and copies the result.
3. **Update pair counts instead of recounting.** A merge only changes the
   pairs next to the merged positions, so training adjusts those counts.

Ties are broken like the reference: among the most frequent pairs, the one
that occurs first in the text. Distinct chunks are kept in order of first
appearance, so "first in the text" is "first in our concatenated words",
and each pair remembers a lower bound of that position (see ``_pick_pair``).
"""

import warnings
from collections import namedtuple

import numpy as np
from numba import njit

from llmedu.bpe import GPT4_SPLIT_PATTERN
from llmedu.pretokenize import chunk_spans

__all__ = ["GPT4_SPLIT_PATTERN", "train", "encode", "make_ranks", "encode_with_ranks"]

# ---------------------------------------------------------------- hash tables
# Open addressing with linear probing: ``slots`` (int64, a power of two long)
# holds -1 for "empty" or the index of an entry stored in dense arrays. Entries
# are never removed, and a table is at most half full so probes stay short.
# (Numba's typed Dict would do, but costs seconds of compilation per use.)


@njit(cache=True)
def _new_slots(n_entries):
    """An empty slot array with room for ``n_entries`` at most half full."""
    size = 2
    while size < 2 * n_entries:
        size *= 2
    return np.full(size, -1, np.int64)


@njit(cache=True)
def _hash_key(key):
    """Spread a pair key ``left << 32 | right`` (ids below 2**31) over the bits.

    No product exceeds 2**63, so plain Python (NUMBA_DISABLE_JIT) agrees.
    """
    h = (key >> 32) * 2654435761 + (key & 0xFFFFFFFF) * 40503
    return h ^ (h >> 23)


@njit(cache=True)
def _find_slot(slots, keys, key):
    """The slot that holds ``key`` (an entry of ``keys``), or the empty slot
    where it belongs."""
    mask = len(slots) - 1
    i = _hash_key(key) & mask
    while slots[i] >= 0 and keys[slots[i]] != key:
        i = (i + 1) & mask
    return i


@njit(cache=True)
def _index_keys(keys):
    """Slots for the distinct ``keys``: entry e is found at its key."""
    slots = _new_slots(len(keys))
    for e in range(len(keys)):
        slots[_find_slot(slots, keys, keys[e])] = e
    return slots


# ------------------------------------------------------------ distinct chunks
_MASK = (1 << 43) - 1  # so h * 1000003 + 256 never overflows an int64


@njit(cache=True)
def _hash_span(buf, lo, hi):
    """A hash (int64) of the bytes buf[lo:hi]; equal bytes, equal hashes."""
    h = hi - lo
    for j in range(lo, hi):
        h = (h * 1000003 + int(buf[j]) + 1) & _MASK
    return h


@njit(cache=True)
def _same_chunk(buf, bounds, c1, c2):
    """Whether chunks c1 and c2 hold the same bytes."""
    lo1, lo2, n = bounds[c1], bounds[c2], bounds[c1 + 1] - bounds[c1]
    if bounds[c2 + 1] - lo2 != n:
        return False
    for j in range(n):
        if buf[lo1 + j] != buf[lo2 + j]:
            return False
    return True


@njit(cache=True)
def _rehash(hashes, n_slots):
    """Slots (n_slots, a power of two) for entries with the given hashes."""
    slots = np.full(n_slots, -1, np.int64)
    for e in range(len(hashes)):
        i = hashes[e] & (n_slots - 1)
        while slots[i] >= 0:
            i = (i + 1) & (n_slots - 1)
        slots[i] = e
    return slots


@njit(cache=True)
def _unique_spans(buf, bounds):
    """Number the distinct chunks in order of first appearance.

    Returns ``uid`` (int64, n_chunks): the distinct-chunk number of each
    chunk, and ``first`` (int64, n_distinct): the chunk where each distinct
    chunk first appears.
    """
    n = len(bounds) - 1
    uid = np.empty(n, np.int64)
    first = np.empty(n, np.int64)
    hashes = np.empty(n, np.int64)  # (n_distinct,) once trimmed
    slots = np.full(1024, -1, np.int64)
    n_unique = 0
    for c in range(n):
        h = _hash_span(buf, bounds[c], bounds[c + 1])
        i = h & (len(slots) - 1)
        while slots[i] >= 0 and not (
            hashes[slots[i]] == h and _same_chunk(buf, bounds, first[slots[i]], c)
        ):
            i = (i + 1) & (len(slots) - 1)
        if slots[i] >= 0:  # seen before
            uid[c] = slots[i]
            continue
        slots[i], first[n_unique], hashes[n_unique], uid[c] = n_unique, c, h, n_unique
        n_unique += 1
        if 2 * n_unique > len(slots):  # keep the table at most half full
            slots = _rehash(hashes[:n_unique], 2 * len(slots))
    return uid, first[:n_unique].copy()


# ------------------------------------------------------------------- training
# Training layout: the distinct chunks ("words") back to back in ``ids``
# (int64), each followed by at least one -1. Merging compacts a word in place
# and pads its end with -1, so a word never moves and -1 never matches a pair.
# ``pos`` (int64) holds each token's index in the initial layout: tokens keep
# their order, so pos is the "where in the text" key for breaking ties.


@njit(cache=True)
def _layout_words(buf, lo, lengths, start):
    """Copy word w (bytes buf[lo[w]:lo[w] + lengths[w]]) to ids[start[w]:].

    Returns ``ids`` (-1 padded) and ``wid``, the word of each slot.
    """
    ids = np.full(start[-1], -1, np.int64)
    wid = np.empty(start[-1], np.int64)
    for w in range(len(lengths)):
        for k in range(lengths[w]):
            ids[start[w] + k] = buf[lo[w] + k]
        for k in range(start[w], start[w + 1]):
            wid[k] = w
    return ids, wid


# The pair statistics: a hash table from pair key (left << 32 | right) to an
# entry e with the pair's weighted count[e] and first[e], a lower bound of the
# position (pos) of its first occurrence. size[0] entries are in use.
_Pairs = namedtuple("_Pairs", ["slots", "keys", "count", "first", "size"])


@njit(cache=True)
def _new_pairs(capacity):
    """An empty pair table with room for ``capacity`` entries."""
    empty = np.empty(capacity, np.int64)
    return _Pairs(_new_slots(capacity), empty, empty.copy(), empty.copy(), np.zeros(1, np.int64))


@njit(cache=True)
def _with_room(pairs, n_more):
    """``pairs`` itself, or a copy twice as large, if n_more entries may not fit."""
    size = pairs.size[0]
    if size + n_more <= len(pairs.keys):
        return pairs
    bigger = _new_pairs(max(2 * len(pairs.keys), size + n_more))
    for e in range(size):
        bigger.keys[e], bigger.count[e] = pairs.keys[e], pairs.count[e]
        bigger.first[e] = pairs.first[e]
        bigger.slots[_find_slot(bigger.slots, bigger.keys, bigger.keys[e])] = e
    bigger.size[0] = size
    return bigger


@njit(cache=True)
def _add(pairs, a, b, delta, key):
    """Add ``delta`` to the count of pair (a, b), which occurs at ``key``.

    The first-position bound drops when an occurrence appears and is left
    alone when one disappears, so it may become too early (see _pick_pair).
    A pair whose count falls to 0 keeps its entry.
    """
    k = (a << 32) | b
    i = _find_slot(pairs.slots, pairs.keys, k)
    e = pairs.slots[i]
    if e < 0:  # never seen: a new entry
        e = pairs.size[0]
        if e == len(pairs.keys):  # Numba does not check bounds: fail loudly
            raise IndexError("pair table full: _with_room was not called")
        pairs.size[0] += 1
        pairs.slots[i], pairs.keys[e], pairs.count[e], pairs.first[e] = e, k, 0, key
    pairs.count[e] += delta
    if delta > 0:
        pairs.first[e] = min(pairs.first[e], key)


@njit(cache=True)
def _count_pairs(ids, wid, weight):
    """Weighted pair counts and exact first positions of the initial words."""
    pairs = _new_pairs(len(ids))  # at most one distinct pair per position
    for j in range(len(ids) - 1):
        if ids[j] >= 0 and ids[j + 1] >= 0:
            _add(pairs, ids[j], ids[j + 1], weight[wid[j]], j)
    return pairs


@njit(cache=True)
def _best_pair(pairs):
    """Entry with the highest count (at least 2); ties: lowest first bound."""
    best, best_count, best_first = -1, 1, 0
    for e in range(pairs.size[0]):
        c = pairs.count[e]
        if c > best_count or (c == best_count and best >= 0 and pairs.first[e] < best_first):
            best, best_count, best_first = e, c, pairs.first[e]
    return best


@njit(cache=True)
def _find_pair(ids, a, b, j):
    """Index of the first occurrence of (a, b) at or after j (it must exist)."""
    while not (ids[j] == a and ids[j + 1] == b):
        j += 1
    return j


@njit(cache=True)
def _pick_pair(ids, wid, start, pos, pairs):
    """Return (entry, index of its first occurrence), or (-1, -1) to stop.

    A bound in ``pairs.first`` may be stale (too early). If the winner's bound
    is exact, no other tied pair can occur earlier (their true positions are
    at or after their bounds), so it is the reference's choice. Otherwise fix
    the bound and choose again; every retry raises a bound, so this ends.
    """
    while True:
        e = _best_pair(pairs)
        if e < 0:
            return -1, -1
        k, bound = pairs.keys[e], pairs.first[e]
        # Tokens only move left inside their word: scan from that word's start.
        j = _find_pair(ids, k >> 32, k & 0xFFFFFFFF, start[wid[bound]])
        if pos[j] == bound:
            return e, j
        pairs.first[e] = pos[j]


@njit(cache=True)
def _merge_word(ids, pos, lo, start, end, a, b, z, wt, pairs):
    """Merge (a, b) -> z in the word occupying [start, end), from ``lo`` on.

    Every merge removes pairs (x, a), (a, b), (b, y) and creates (x, z),
    (z, y), where x is the token already written on the left and y the
    unmerged token on the right; ``wt`` is the word's frequency.
    """
    r = w = lo  # read and write positions
    while r < end and ids[r] >= 0:
        if r + 1 < end and ids[r] == a and ids[r + 1] == b:
            _add(pairs, a, b, -wt, pos[r])
            if w > start:
                _add(pairs, ids[w - 1], a, -wt, pos[w - 1])
                _add(pairs, ids[w - 1], z, wt, pos[w - 1])
            if r + 2 < end and ids[r + 2] >= 0:
                _add(pairs, b, ids[r + 2], -wt, pos[r + 1])
                _add(pairs, z, ids[r + 2], wt, pos[r])
            ids[w], pos[w] = z, pos[r]
            r += 2
        else:
            ids[w], pos[w] = ids[r], pos[r]
            r += 1
        w += 1
    for k in range(w, r):
        ids[k] = -1  # the slots freed at the end of the word


@njit(cache=True)
def _merge_everywhere(ids, wid, start, pos, weight, pairs, a, b, z, j):
    """Merge (a, b) -> z in every word, scanning from index j on."""
    while j < len(ids) - 1:
        if ids[j] == a and ids[j + 1] == b:
            w = wid[j]
            _merge_word(ids, pos, j, start[w], start[w + 1], a, b, z, weight[w], pairs)
            j = start[w + 1]
        else:
            j += 1


@njit(cache=True)
def _train_words(ids, wid, start, weight, n_merges):
    """Learn up to ``n_merges`` merges; return pairs (int64, (n, 2)) and n."""
    merged = np.empty((n_merges, 2), np.int64)
    pos = np.arange(len(ids))
    pairs = _count_pairs(ids, wid, weight)
    for step in range(n_merges):
        e, j = _pick_pair(ids, wid, start, pos, pairs)
        if e < 0:
            return merged, step
        # Each merge creates at most 2 new pairs, and there are at most
        # count[e] merges (a weighted count), so this much room suffices.
        pairs = _with_room(pairs, 2 * pairs.count[e])
        a, b = pairs.keys[e] >> 32, pairs.keys[e] & 0xFFFFFFFF
        _merge_everywhere(ids, wid, start, pos, weight, pairs, a, b, 256 + step, j)
        merged[step, 0], merged[step, 1] = a, b
    return merged, n_merges


def train(text, vocab_size, pattern=GPT4_SPLIT_PATTERN):
    """Learn merges like ``llmedu.bpe.train``, returning the identical dict."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (the bytes), got {vocab_size}")
    buf, bounds = chunk_spans(text, pattern)
    uid, first = _unique_spans(buf, bounds)
    weight = np.bincount(uid, minlength=len(first)).astype(np.int64)  # (n_words,)
    lengths = bounds[first + 1] - bounds[first]  # (n_words,) bytes per word
    start = np.concatenate(([0], np.cumsum(lengths + 1)))  # one -1 after each
    ids, wid = _layout_words(buf, bounds[first], lengths, start)
    merged, n = _train_words(ids, wid, start, weight, vocab_size - 256)
    if n < vocab_size - 256:
        warnings.warn(
            f"training stopped at vocab size {256 + n}: no pair of tokens "
            f"occurs twice in the text (asked for {vocab_size})",
            stacklevel=2,
        )
    return {(a, b): 256 + i for i, (a, b) in enumerate(merged[:n].tolist())}


# ------------------------------------------------------------------- encoding
# The encoder's table: pair key -> the merge's new id (its rank).
_Ranks = namedtuple("_Ranks", ["slots", "keys", "ids"])
_NO_RANK = np.iinfo(np.int64).max


def make_ranks(merges):
    """Turn ``{(left, right): new_id}`` into the table the encoder reads."""
    table = np.array([(a, b, z) for (a, b), z in merges.items()], np.int64).reshape(-1, 3)
    keys = (table[:, 0] << 32) | table[:, 1]  # (n_merges,)
    return _Ranks(_index_keys(keys), keys, table[:, 2].copy())


@njit(cache=True)
def _rank(ranks, a, b):
    """The id that merges (a, b), or _NO_RANK if no merge does."""
    e = ranks.slots[_find_slot(ranks.slots, ranks.keys, (a << 32) | b)]
    return ranks.ids[e] if e >= 0 else _NO_RANK


@njit(cache=True)
def _merge_inplace(ids, n, a, b, z):
    """Merge (a, b) -> z in ids[:n], left to right; return the new length."""
    r = w = 0
    while r < n:
        if r + 1 < n and ids[r] == a and ids[r + 1] == b:
            ids[w] = z
            r += 2
        else:
            ids[w] = ids[r]
            r += 1
        w += 1
    return w


@njit(cache=True)
def _encode_span(ids, n, ranks):
    """BPE-encode the n bytes in ``ids`` in place; return the new length."""
    while n >= 2:
        best, best_j = np.int64(_NO_RANK), -1  # np.int64(): see _split_gpt4
        for j in range(n - 1):
            r = _rank(ranks, ids[j], ids[j + 1])
            if r < best:
                best, best_j = r, j
        if best_j < 0:
            break  # no pair was ever merged in training
        n = _merge_inplace(ids, n, ids[best_j], ids[best_j + 1], best)
    return n


@njit(cache=True)
def _encode_unique(buf, lo, lengths, ranks):
    """Encode each distinct chunk (bytes buf[lo[u]:lo[u] + lengths[u]]) once.

    Returns ``store`` and ``at``: the ids of chunk u are store[at[u]:at[u+1]].
    """
    total, longest = 0, 0
    for n in lengths:
        total, longest = total + n, max(longest, n)
    at = np.zeros(len(lengths) + 1, np.int64)
    store = np.empty(total, np.int64)  # BPE never makes a chunk longer
    scratch = np.empty(longest, np.int64)
    for u in range(len(lengths)):
        for k in range(lengths[u]):
            scratch[k] = buf[lo[u] + k]
        n = _encode_span(scratch, lengths[u], ranks)
        for k in range(n):
            store[at[u] + k] = scratch[k]
        at[u + 1] = at[u] + n
    return store, at


@njit(cache=True)
def _gather(uid, store, at):
    """Concatenate the ids of every chunk, in text order (int64, n_tokens)."""
    total = 0
    for c in range(len(uid)):
        total += at[uid[c] + 1] - at[uid[c]]
    out = np.empty(total, np.int64)
    o = 0
    for c in range(len(uid)):
        for k in range(at[uid[c]], at[uid[c] + 1]):
            out[o] = store[k]
            o += 1
    return out


def encode_with_ranks(text, ranks, pattern=GPT4_SPLIT_PATTERN):
    """Encode ``text`` with a table from ``make_ranks``; returns int64 array."""
    buf, bounds = chunk_spans(text, pattern)
    uid, first = _unique_spans(buf, bounds)
    lo = bounds[first]  # (n_distinct,) where each distinct chunk starts in buf
    store, at = _encode_unique(buf, lo, bounds[first + 1] - lo, ranks)
    return _gather(uid, store, at)


def encode(text, merges, pattern=GPT4_SPLIT_PATTERN):
    """Encode ordinary ``text`` like ``llmedu.bpe.encode`` (list of int)."""
    return encode_with_ranks(text, make_ranks(merges), pattern).tolist()
