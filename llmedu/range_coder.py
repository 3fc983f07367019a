"""A range coder: arithmetic coding with integer frequencies (lesson 08, ``08_frontiers``).

An arithmetic coder turns a stream of symbols, each drawn from a known
distribution, into about sum(-log2 p(symbol)) bits. The distribution of each
symbol is given as integers: the symbol's frequency ``freq``, the sum of the
frequencies of the symbols before it ``cum`` (its cumulative frequency) and
the sum of all frequencies ``total``. Symbol s owns the slice
[cum, cum + freq) of [0, total), so p(s) = freq / total.

The encoder keeps an interval of integers [low, low + range). Encoding a
symbol narrows it to the symbol's share (``narrow``)::

    r = range // total          # one unit of frequency, in interval units
    low += r * cum
    range = r * freq

Dividing first keeps every number below 2**64; the part of the interval that
``range // total`` rounds away (less than ``total`` units out of ``range``) is
wasted, which costs at most total / range of a bit per symbol.

When the range falls below 2**56, its top byte is settled except for a
possible carry: ``low`` is shifted left by 8 bits (``renormalise``) and the
byte that leaves it goes out. A carry can still arrive later (``low + r * cum``
may overflow 2**64), and it would add one to bytes already "out". As in LZMA,
this coder propagates carries rather than avoiding them: it holds back the last
byte it would emit (``cache``) and a run of 0xFF bytes after it
(``pending``): a carry turns cache into cache + 1 and the 0xFF run into zeros,
and nothing before ``cache`` can change. So ``low`` lives in 65 bits at most,
``range`` in (2**56, 2**64], and ``total`` may go up to 2**32 (r stays >= 2**24).

The decoder mirrors it: it holds ``code``, the offset of the encoded number
from ``low``, reads which slice of [0, total) it falls into (``target``), and
narrows exactly as the encoder did (``consume``). Python's integers are exact,
so the coder is the same on every machine; only the frequencies it is given
(``llmedu.compress``) can differ between machines.

The first byte out is always 0 (the initial, empty ``cache``), and ``finish``
writes the eight bytes of ``low``: about 9 bytes of overhead per stream.
"""

from __future__ import annotations

__all__ = ["BITS", "MAX_TOTAL", "narrow", "encode_symbol", "as_bytes", "RangeEncoder", "RangeDecoder",
           "TruncatedStream"]

BITS = 64  # width of low and range
TOP = 1 << (BITS - 8)  # renormalise when range drops below this: the top byte is settled
MASK = (1 << BITS) - 1
MAX_TOTAL = 1 << 32  # total frequency at most this, so range // total >= 2**24


class TruncatedStream(ValueError):
    """The decoder needed a byte after the end of its input."""


def check_symbol(cum: int, freq: int, total: int) -> None:
    """Raise ValueError unless 0 <= cum, 1 <= freq, cum + freq <= total <= MAX_TOTAL."""
    if not (0 <= cum and 1 <= freq and cum + freq <= total <= MAX_TOTAL):
        raise ValueError(f"a symbol needs 0 <= cum, 1 <= freq and cum + freq <= total <= 2**32, "
                         f"got cum={cum}, freq={freq}, total={total}.")


def narrow(low: int, range_: int, cum: int, freq: int, total: int) -> tuple[int, int]:
    """The interval [low, low + range_) narrowed to the symbol's slice [cum, cum + freq) of [0, total).

    Returns (new low, new range). Divide before multiplying: ``range_ * cum //
    total`` would be a little more precise but needs 96-bit products, and the
    decoder must make the very same choice.
    """
    r = range_ // total  # interval units per unit of frequency
    return low + r * cum, r * freq


def encode_symbol(low: int, range_: int, cum: int, freq: int, total: int) -> tuple[int, int]:
    """One symbol with ``low`` an unbounded integer: narrow, then renormalise (exercise 8.4).

    Python's integers have no width, so ``low`` can simply keep every bit
    shifted into it: it *is* the code written so far, carries included.
    ``RangeEncoder`` does the same with 64 bits, shipping out the settled top
    byte at each shift; ``as_bytes`` shows the two agree byte for byte.
    """
    low, range_ = narrow(low, range_, cum, freq, total)
    while range_ < TOP:  # 2**56: one more byte of low is (all but) settled
        low <<= 8
        range_ <<= 8
    return low, range_


def as_bytes(low: int, n_shifts: int) -> bytes:
    """The stream ``RangeEncoder`` writes, from the unbounded ``low`` of ``encode_symbol`` after n_shifts byte shifts.

    The encoder's first byte is 0; then low's 8 + n_shifts bytes, big-endian.
    """
    return b"\0" + low.to_bytes(BITS // 8 + n_shifts, "big")


class RangeEncoder:
    """Encode symbols given as (cum, freq, total); ``finish()`` returns the bytes."""

    def __init__(self):
        self.low, self.range = 0, MASK  # the whole 64-bit interval (minus one unit, to fit 64 bits)
        self.cache, self.pending = 0, 1  # the held-back byte, and how many bytes are held back in all
        self.out = bytearray()

    def encode(self, cum: int, freq: int, total: int) -> None:
        check_symbol(cum, freq, total)
        self.low, self.range = narrow(self.low, self.range, cum, freq, total)
        while self.range < TOP:  # the top byte of low is settled (but for a carry)
            self.range <<= 8
            self._shift_low()

    def _shift_low(self) -> None:
        """Move the top byte of ``low`` out, holding it back in case a carry is still to come."""
        carry = self.low >> BITS  # 0 or 1: low overflowed 64 bits
        if self.low < (0xFF << (BITS - 8)) or carry:  # this byte can no longer take a carry from below ...
            self.out.append((self.cache + carry) & 0xFF)  # ... so the held-back bytes are final
            self.out.extend([(0xFF + carry) & 0xFF] * (self.pending - 1))
            self.pending = 0
            self.cache = (self.low >> (BITS - 8)) & 0xFF
        self.pending += 1  # a top byte of 0xFF stays pending: a carry would turn it into 0x00
        self.low = (self.low << 8) & MASK

    def finish(self) -> bytes:
        """Flush ``low``'s bytes and return the whole stream (the encoder is done)."""
        for _ in range(BITS // 8 + 1):
            self._shift_low()
        return bytes(self.out)


class RangeDecoder:
    """Decode the symbols of a ``RangeEncoder`` stream: ``target(total)``, then ``consume(cum, freq, total)``."""

    def __init__(self, data: bytes):
        self.data, self.pos = bytes(data), 0
        self.range, self.code = MASK, 0
        for _ in range(BITS // 8 + 1):  # the encoder's initial zero byte, then 8 bytes of low
            self.code = (self.code << 8) | self._byte()
        if self.code > MASK:
            raise ValueError("not a range-coded stream: its first byte must be 0.")

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise TruncatedStream(f"the coded stream ended after {len(self.data)} bytes while symbols were "
                                  "still being decoded: it is truncated.")
        self.pos += 1
        return self.data[self.pos - 1]

    def target(self, total: int) -> int:
        """Where the encoded number falls in [0, total): the symbol with cum <= target < cum + freq comes next."""
        if not 1 <= total <= MAX_TOTAL:
            raise ValueError(f"total must be in [1, 2**32], got {total}.")
        # A valid stream always gives a value < total; a damaged one may not, so clamp (the caller's checks catch it).
        return min(self.code // (self.range // total), total - 1)

    def consume(self, cum: int, freq: int, total: int) -> None:
        """Narrow as the encoder did when it encoded the symbol (cum, freq, total)."""
        check_symbol(cum, freq, total)
        r = self.range // total
        self.code -= r * cum
        self.range = r * freq
        while self.range < TOP:
            self.range <<= 8
            self.code = ((self.code << 8) | self._byte()) & MASK

    def at_end(self) -> bool:
        """Whether every byte the encoder wrote has been read (true after the last symbol of a whole stream)."""
        return self.pos == len(self.data)
