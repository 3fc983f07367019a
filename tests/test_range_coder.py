"""Specifications of the range coder (lesson 08): any symbols with any integer frequencies come back exactly,
and the stream costs what the frequencies say."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmedu.range_coder import (
    MAX_TOTAL, RangeDecoder, RangeEncoder, TruncatedStream, as_bytes, encode_symbol, narrow,
)


@st.composite
def frequency_tables(draw):
    """A list of frequencies (each >= 1) whose sum is at most 2**32."""
    n = draw(st.integers(1, 40))
    largest = max(1, MAX_TOTAL // n)
    return draw(st.lists(st.integers(1, largest), min_size=n, max_size=n))


@st.composite
def streams(draw):
    """(tables, symbols): a few frequency tables and a stream of (table index, symbol index)."""
    tables = draw(st.lists(frequency_tables(), min_size=1, max_size=4))
    pairs = draw(st.lists(st.integers(0, 10**6), max_size=120))
    symbols = [(k % len(tables), (k // len(tables)) % len(tables[k % len(tables)])) for k in pairs]
    return tables, symbols


def slice_of(table, s):
    return sum(table[:s]), table[s], sum(table)


def encode(tables, symbols) -> bytes:
    encoder = RangeEncoder()
    for t, s in symbols:
        encoder.encode(*slice_of(tables[t], s))
    return encoder.finish()


def decode(data, tables, kinds) -> list:
    """Decode one symbol per table index in ``kinds``."""
    decoder, out = RangeDecoder(data), []
    for t in kinds:
        table = tables[t]
        target = decoder.target(sum(table))
        s = next(i for i in range(len(table)) if sum(table[:i]) <= target < sum(table[:i + 1]))
        decoder.consume(*slice_of(table, s))
        out.append((t, s))
    assert decoder.at_end()
    return out


@settings(max_examples=150, deadline=None)
@given(streams())
def test_random_frequency_tables_and_streams_round_trip(case):
    tables, symbols = case
    assert decode(encode(tables, symbols), tables, [t for t, _ in symbols]) == symbols


@settings(max_examples=60, deadline=None)
@given(streams())
def test_the_stream_costs_the_ideal_code_length_plus_a_few_bytes(case):
    tables, symbols = case
    ideal = sum(-math.log2(table[s] / sum(table)) for table, s in ((tables[t], s) for t, s in symbols))
    # 9 bytes of start and flush; rounding range // total wastes < 2**-24 of the range per symbol.
    assert 8 * len(encode(tables, symbols)) <= ideal + 8 * 9 + 8 + len(symbols) * 2**-20


def test_a_hand_checkable_case():
    # Halves of [0, 2**64 - 1): symbol 1 then symbol 0 of (1, 1). r = (2**64 - 1) // 2 = 2**63 - 1.
    low, range_ = narrow(0, 2**64 - 1, 1, 1, 2)
    assert (low, range_) == (2**63 - 1, 2**63 - 1)
    low, range_ = narrow(low, range_, 0, 1, 2)
    assert (low, range_) == (2**63 - 1, 2**62 - 1)  # still >= 2**56: no byte is settled yet
    encoder = RangeEncoder()
    encoder.encode(1, 1, 2)
    encoder.encode(0, 1, 2)
    assert encoder.finish() == b"\0" + (2**63 - 1).to_bytes(8, "big")  # the leading 0, then low


@settings(max_examples=80, deadline=None)
@given(streams())
def test_the_coder_writes_the_unbounded_low_of_encode_symbol_carries_included(case):
    tables, symbols = case
    low, range_ = 0, 2**64 - 1
    for t, s in symbols:
        low, range_ = encode_symbol(low, range_, *slice_of(tables[t], s))
    data = encode(tables, symbols)
    assert data == as_bytes(low, len(data) - 9)


def test_carries_reach_back_over_a_run_of_ff_bytes():
    # The top of the range again and again: low gains 0xFF bytes, then one symbol at the bottom of a
    # slice far up carries into them.
    tables = [[1, 2**32 - 2, 1]]
    symbols = [(0, 2)] * 30 + [(0, 1)] * 3 + [(0, 2)] * 10
    assert decode(encode(tables, symbols), tables, [0] * len(symbols)) == symbols


def test_a_truncated_stream_raises():
    tables = [[1, 1, 1, 5]]
    symbols = [(0, k % 4) for k in range(200)]
    data = encode(tables, symbols)
    with pytest.raises(TruncatedStream, match="truncated"):
        decode(data[:len(data) // 2], tables, [0] * len(symbols))


@pytest.mark.parametrize("cum, freq, total", [(0, 0, 4), (3, 2, 4), (-1, 1, 4), (0, 1, 2**32 + 1)])
def test_an_impossible_symbol_is_refused(cum, freq, total):
    with pytest.raises(ValueError, match="cum \\+ freq <= total"):
        RangeEncoder().encode(cum, freq, total)
