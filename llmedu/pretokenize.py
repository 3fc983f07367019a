"""Cutting text into chunks with the GPT-4 split pattern, fast (lesson 01).

``regex.findall(GPT4_SPLIT_PATTERN, text)`` is the definition; it is also the
slowest step of encoding. The pattern is a fixed left-to-right choice between
seven alternatives, so a small state machine over character classes, compiled
with Numba, gives the same chunks several times faster. Which characters are
letters, numbers or whitespace is still decided by ``regex`` itself, so
``\\p{L}``, ``\\p{N}`` and ``\\s`` mean exactly what they mean in the pattern.
Any other pattern goes through ``regex``. Tests compare ``split`` with
``regex.findall`` on many texts.
"""

import functools

import numpy as np
import regex
from numba import njit

from llmedu.bpe import GPT4_SPLIT_PATTERN

__all__ = ["GPT4_SPLIT_PATTERN", "split", "chunk_spans"]

# ------------------------------------------------------------------ splitting
# One bit per character class the GPT-4 pattern tests.
_L = 1  # \p{L}, a letter
_N = 2  # \p{N}, a number
_WS = 4  # \s, whitespace
_CRLF = 8  # \r or \n
_SP = 16  # the space character itself (the pattern's " ?")
_APOS = 32  # the apostrophe that starts a contraction ('s, 'll, ...)

_IS_L = regex.compile(r"\p{L}")
_IS_N = regex.compile(r"\p{N}")
_IS_WS = regex.compile(r"\s")
# Contraction letters are matched case-insensitively; ask regex which
# characters count (it also lets U+017F, the long s, match "s").
_FOLDS = [(ord(c), regex.compile(f"(?i:{c})")) for c in "sdmtlver"]


@functools.lru_cache(maxsize=1 << 16)
def _classify_char(ch):
    """Return ``(flags, fold)`` of one character, decided by ``regex``.

    ``fold`` is the ASCII code of the contraction letter ``ch`` matches
    case-insensitively (e.g. ``ord("s")`` for "S"), or 0.
    """
    flags = 0
    flags |= _L if _IS_L.fullmatch(ch) else 0
    flags |= _N if _IS_N.fullmatch(ch) else 0
    flags |= _WS if _IS_WS.fullmatch(ch) else 0
    flags |= _CRLF if ch in "\r\n" else 0
    flags |= _SP if ch == " " else 0
    flags |= _APOS if ch == "'" else 0
    fold = next((code for code, pat in _FOLDS if pat.fullmatch(ch)), 0)
    return flags, fold


def _class_tables(chars):
    """Flags and folds (two uint8 arrays) for a sequence of characters."""
    table = np.array([_classify_char(c) for c in chars], dtype=np.uint8).reshape(-1, 2)
    return table[:, 0].copy(), table[:, 1].copy()


_ASCII_FLAGS, _ASCII_FOLD = _class_tables([chr(i) for i in range(128)])


def _classify(text, cps):
    """Flags and folds of every code point in ``cps`` (uint32, the text)."""
    if text.isascii():
        return _ASCII_FLAGS[cps], _ASCII_FOLD[cps]
    chars = sorted(set(text))  # few distinct characters even in long texts
    flags, fold = _class_tables(chars)
    where = np.searchsorted(np.array([ord(c) for c in chars], dtype=np.uint32), cps)
    return flags[where], fold[where]


@njit(cache=True)
def _contraction_end(fold, i):
    """End of ``'(?i:[sdmt]|ll|ve|re)`` at ``i`` (an apostrophe), or -1."""
    n = len(fold)
    if i + 1 < n:
        c1 = fold[i + 1]
        if c1 == 115 or c1 == 100 or c1 == 109 or c1 == 116:  # s d m t
            return i + 2
        if i + 2 < n:
            c2 = fold[i + 2]
            if (c1 == 108 and c2 == 108) or (c2 == 101 and (c1 == 118 or c1 == 114)):
                return i + 3  # ll, ve, re
    return -1


@njit(cache=True)
def _match_end(flags, fold, i):
    """End of the GPT-4 pattern's match at ``i``: try the alternatives in order."""
    n, f = len(flags), flags[i]
    if f & _APOS:  # '(?i:[sdmt]|ll|ve|re)
        end = _contraction_end(fold, i)
        if end >= 0:
            return end
    # [^\r\n\p{L}\p{N}]?+\p{L}+ : letters, maybe one other character before
    j = i if f & (_L | _N | _CRLF) else i + 1
    if j < n and flags[j] & _L:
        while j < n and flags[j] & _L:
            j += 1
        return j
    if f & _N:  # \p{N}{1,3}
        j = i + 1
        while j < n and j < i + 3 and flags[j] & _N:
            j += 1
        return j
    # " ?[^\s\p{L}\p{N}]++[\r\n]*" : punctuation, maybe one space before it
    other = _WS | _L | _N
    j = i + 1 if (f & _SP and i + 1 < n and not flags[i + 1] & other) else i
    if not flags[j] & other:
        while j < n and not flags[j] & other:
            j += 1
        while j < n and flags[j] & _CRLF:
            j += 1
        return j
    # Only whitespace is left: it runs from i to e.
    e = i
    while e < n and flags[e] & _WS:
        e += 1
    for k in range(e - 1, i - 1, -1):  # \s*[\r\n] : up to the last newline
        if flags[k] & _CRLF:
            return k + 1
    if e == n or e - i == 1:  # \s+(?!\S) at the end of text, else \s+
        return e
    return e - 1  # \s+(?!\S) : leave the last space to the next word


@njit(cache=True)
def _split_gpt4(flags, fold):
    """Chunk end positions (int64, in code points) of the GPT-4 pattern."""
    ends = np.empty(len(flags), np.int64)
    i = np.int64(0)  # not a literal 0: spares Numba compiling _match_end twice
    n_chunks = 0
    while i < len(flags):
        i = _match_end(flags, fold, i)
        ends[n_chunks] = i
        n_chunks += 1
    return ends[:n_chunks]


@njit(cache=True)
def _utf8_offsets(cps):
    """Byte offset in the UTF-8 encoding of each code point, plus the total."""
    off = np.empty(len(cps) + 1, np.int64)
    off[0] = 0
    for i in range(len(cps)):
        c = cps[i]
        off[i + 1] = off[i] + (1 if c < 0x80 else 2 if c < 0x800 else 3 if c < 0x10000 else 4)
    return off


def chunk_spans(text, pattern=GPT4_SPLIT_PATTERN):
    """Cut ``text`` into chunks; return the bytes and the chunk boundaries.

    ``buf`` (uint8, n_bytes) holds the chunks' UTF-8 bytes back to back and
    chunk c is ``buf[bounds[c]:bounds[c + 1]]`` (``bounds``: int64, n_chunks + 1).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if pattern != GPT4_SPLIT_PATTERN:
        pieces = [c.encode("utf-8") for c in regex.findall(pattern, text)]
        bounds = np.zeros(len(pieces) + 1, np.int64)
        bounds[1:] = np.cumsum([len(p) for p in pieces], dtype=np.int64)
        return np.frombuffer(b"".join(pieces), np.uint8), bounds
    # utf-32 gives one uint32 per character (and rejects lone surrogates
    # with the same UnicodeEncodeError as the reference's .encode("utf-8")).
    cps = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    flags, fold = _classify(text, cps)
    ends = _split_gpt4(flags, fold)
    bounds = np.concatenate((np.zeros(1, np.int64), _utf8_offsets(cps)[ends]))
    return np.frombuffer(text.encode("utf-8"), np.uint8), bounds


def split(text, pattern=GPT4_SPLIT_PATTERN):
    """The chunks of ``text`` as strings, the same as ``regex.findall(pattern, text)``."""
    buf, bounds = chunk_spans(text, pattern)
    data = buf.tobytes()
    return [data[lo:hi].decode("utf-8") for lo, hi in zip(bounds[:-1], bounds[1:])]
