"""Check for lesson 08 (``08_frontiers``), part 4: 8.4 encoding one symbol with a range coder.

The learner writes ``encode_symbol(low, range_, cum, freq, total) -> (low, range_)``:
narrow the interval [low, low + range_) to the symbol's slice [cum, cum + freq)
of [0, total), dividing first (``r = range_ // total``), then renormalise: while
range_ < 2**56, shift low and range_ left by 8 bits. ``low`` is an unbounded
Python integer, so it is the whole code so far.

Reference: ``llmedu.range_coder.encode_symbol``. After single symbols, the check
encodes whole streams with the learner's function and compares the final
``low``, written out, with the bytes ``RangeEncoder`` writes: carries included.
"""

from __future__ import annotations

import random

from llmedu import range_coder
from llmedu.checks.framework import Shown, exercise

FULL = (1 << 64) - 1  # the coder's starting range
TOP = 1 << 56

# (low, range_, cum, freq, total): hand-checkable first, then the traps.
_CASES = [
    (0, FULL, 0, 1, 2),  # the first half of everything: r = (2**64 - 1) // 2, no shift needed
    (0, FULL, 1, 1, 2),  # the second half: low moves up by r
    (0, 1 << 60, 3, 2, 10),  # a symbol in the middle: low += r * 3, not r * 4 or r * 2
    (5, (1 << 60) + 12345, 7, 3, 1000),  # range_ not a multiple of total: the order of * and // shows
    (123, 1 << 60, 500, 1, 1000),  # p = 1/1000: range falls below 2**56 once
    (0, FULL, (1 << 32) - 1, 1, 1 << 32),  # p = 2**-32: three shifts, so a single `if` is not enough
    (9, 1 << 57, 1, 1, 2),  # range_ lands on 2**56 exactly: no shift (the loop runs while range_ < 2**56)
    ((1 << 200) + 7, (1 << 57) + 3, 2, 5, 7),  # low already long: it is never cut to 64 bits
]


def _mistakes(low, range_, cum, freq, total):
    """(wrong answer, why) for the typical slips, to name the one the learner made."""
    def renormalise(low, range_, loop=True, at_top=False):
        while range_ < TOP or (at_top and range_ == TOP):
            low, range_ = low << 8, range_ << 8
            if not loop:
                break
        return low, range_

    r = range_ // total
    mistakes = [
        (renormalise(low + r * (cum + 1), r * freq), "low moved past the symbol's slice: its slice starts at cum, so "
                                                     "low += r * cum (cum counts the frequencies *before* it)"),
        (renormalise(low + r * (cum - 1), r * freq) if cum else None, "low stops short of the symbol's slice: "
                                                                      "low += r * cum, with cum as given"),
        (renormalise(low + r * (cum + freq), r * freq), "cum is where the slice starts, cum + freq where it ends: "
                                                        "low += r * cum"),
        (renormalise(low + range_ * cum // total, range_ * freq // total),
         "divide first: r = range_ // total, then low += r * cum and range_ = r * freq. Multiplying first is a "
         "little more precise, but the decoder divides first, and the two must agree to the last unit"),
        ((low + r * cum, r * freq), "renormalise: while range_ < 2**56, shift low and range_ left by 8 bits, or "
                                    "the range runs out of precision after a few symbols"),
        (renormalise(low + r * cum, r * freq, loop=False), "renormalise with a loop (while range_ < 2**56), not "
                                                           "one `if`: an unlikely symbol needs several shifts"),
        (renormalise(low + r * cum, r * freq, at_top=True), "shift only while range_ < 2**56, not <=: a range of "
                                                             "exactly 2**56 still has 56 bits of precision, and "
                                                             "RangeEncoder and the decoder shift only below it"),
        ((low + r * cum, renormalise(0, r * freq)[1]), "shift low together with range_: both are in the same units"),
    ]
    right = renormalise(low + r * cum, r * freq)
    mistakes.append(((right[0] & (2**64 - 1), right[1]), "keep every bit of low: it is a Python int, the whole code "
                                                       "so far, and is never cut to 64 bits here"))
    return mistakes


def _check_one(learner, args: tuple, shown: tuple | None = None) -> tuple[int, int]:
    got = learner.call(*args, shown=shown)
    expected = range_coder.encode_symbol(*args)
    shown = shown or args
    if not (isinstance(got, tuple) and len(got) == 2 and all(type(v) is int for v in got)):
        learner.fail(shown, expected, got, "return a pair (low, range_) of Python ints (numpy's int64 would "
                                           "overflow: low grows without bound)")
    if got != expected:
        why = next((text for wrong, text in _mistakes(*args) if wrong == got), "")
        learner.fail(shown, expected, got, why)
    return got


def _stream(seed: int, n: int) -> list[tuple[int, int, int]]:
    """n random symbols (cum, freq, total), many near the top of their range so that carries happen."""
    rng = random.Random(seed)
    symbols = []
    for _ in range(n):
        total = rng.choice([2, 1000, 1 << 16, 1 << 24, 1 << 32])
        cum = total - 1 if rng.random() < 0.3 else rng.randrange(total)
        symbols.append((cum, rng.randint(1, total - cum), total))
    return symbols


@exercise("8.4", "encoding one symbol with a range coder")
def encode_symbol(learner) -> int:
    for args in _CASES:
        _check_one(learner, args)
    n_streams = 3
    for seed in range(n_streams):
        symbols = _stream(seed, 60)
        low, range_ = 0, FULL
        encoder = range_coder.RangeEncoder()
        for i, (cum, freq, total) in enumerate(symbols):
            shown = (Shown(f"low after {i} symbols of stream {seed}"), range_, cum, freq, total)
            low, range_ = _check_one(learner, (low, range_, cum, freq, total), shown=shown)
            encoder.encode(cum, freq, total)
        stream = encoder.finish()
        if range_coder.as_bytes(low, len(stream) - 9) != stream:  # 9: the leading 0 byte and low's 8 bytes
            learner.fail_because((Shown(f"stream {seed}: {len(symbols)} symbols"),),
                                 "your final low, written out, differs from the bytes RangeEncoder writes")
    return len(_CASES) + n_streams
