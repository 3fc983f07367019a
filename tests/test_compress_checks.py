"""Lesson 08's check 8.4 (encoding one symbol with a range coder) accepts the library's answer and rejects the
typical mistakes, saying why."""

import pytest

from llmedu import range_coder
from llmedu.checks import compress as checks


def test_the_check_passes_on_the_library(capsys):
    checks.encode_symbol(range_coder.encode_symbol)
    assert "passed all" in capsys.readouterr().out


def stub(low, range_, cum, freq, total):
    raise NotImplementedError


def renormalise(low, range_):
    while range_ < 2**56:
        low, range_ = low << 8, range_ << 8
    return low, range_


def inclusive_cum(low, range_, cum, freq, total):
    r = range_ // total
    return renormalise(low + r * (cum + 1), r * freq)


def multiply_first(low, range_, cum, freq, total):
    return renormalise(low + range_ * cum // total, range_ * freq // total)


def no_renormalisation(low, range_, cum, freq, total):
    r = range_ // total
    return low + r * cum, r * freq


def one_shift_only(low, range_, cum, freq, total):
    r = range_ // total
    low, range_ = low + r * cum, r * freq
    if range_ < 2**56:
        low, range_ = low << 8, range_ << 8
    return low, range_


def shifts_at_exactly_2_56(low, range_, cum, freq, total):
    r = range_ // total
    low, range_ = low + r * cum, r * freq
    while range_ <= 2**56:
        low, range_ = low << 8, range_ << 8
    return low, range_


def low_cut_to_64_bits(low, range_, cum, freq, total):
    low, range_ = range_coder.encode_symbol(low, range_, cum, freq, total)
    return low & (2**64 - 1), range_


@pytest.mark.parametrize("wrong, says", [
    (stub, "raised NotImplementedError"),
    (inclusive_cum, "low moved past the symbol's slice"),
    (multiply_first, "divide first"),
    (no_renormalisation, "renormalise: while range_ < 2\\*\\*56"),
    (one_shift_only, "not one `if`"),
    (shifts_at_exactly_2_56, "not <="),
    (low_cut_to_64_bits, "never cut to 64 bits"),
])
def test_the_check_rejects_a_typical_mistake(wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.encode_symbol(wrong)
