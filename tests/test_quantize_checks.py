"""Exercise 8.3's check accepts Q8_0 as runq.c does it and rejects the typical mistakes, saying why."""

import numpy as np
import pytest

from llmedu import quantize
from llmedu.checks.quantize import quantize_q8 as check


def reference(w, group_size):
    t = quantize.quantize_q8(w, group_size)
    return t.q, t.s


def _groups(w, gs):
    if w.shape[-1] % gs:
        raise ValueError("rows do not split into groups")
    return w.reshape(w.shape[0], -1, gs)


def over_128(w, gs):
    g = _groups(w, gs)
    s = np.abs(g).max(-1) / np.float32(128)
    return np.round(g / np.where(s == 0, 1, s)[..., None]).astype(np.int8).reshape(w.shape), s


def row_max(w, gs):
    g = _groups(w, gs)
    s = np.repeat(np.abs(w).max(-1, keepdims=True) / np.float32(127), g.shape[1], axis=1)
    return np.round(g / np.where(s == 0, 1, s)[..., None]).astype(np.int8).reshape(w.shape), s


def truncating(w, gs):
    g = _groups(w, gs)
    s = np.abs(g).max(-1) / np.float32(127)
    return (g / np.where(s == 0, 1, s)[..., None]).astype(np.int8).reshape(w.shape), s


def float64_scales(w, gs):
    q, s = reference(w, gs)
    return q, s.astype(np.float64)


def dividing_by_zero(w, gs):
    g = _groups(w, gs)
    s = np.abs(g).max(-1) / np.float32(127)
    return np.round(g / s[..., None]).astype(np.int8).reshape(w.shape), s  # 0 / 0 in an all-zero group


def columns_as_groups(w, gs):
    g = w.T.reshape(w.shape[1], -1, gs)  # groups run down the columns
    s = np.abs(g).max(-1) / np.float32(127)
    q = np.round(g / np.where(s == 0, 1, s)[..., None]).astype(np.int8)
    return q.reshape(w.shape[1], w.shape[0]).T, s


def test_the_check_passes_the_library(capsys):
    check(reference)
    assert "passed all" in capsys.readouterr().out


def test_the_check_fails_a_blank_stub():
    def stub(w, gs):
        raise NotImplementedError("Exercise 8.3")

    with pytest.raises(AssertionError, match="NotImplementedError"):
        check(stub)


@pytest.mark.parametrize("wrong, says", [
    (over_128, "max\\|w\\| / 127"), (row_max, "each group of the row"), (truncating, "do not truncate"),
    (float64_scales, "float32"), (dividing_by_zero, "all-zero group"), (columns_as_groups, "along each row|raised ValueError"),
])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_check_rejects_a_typical_mistake_and_names_it(wrong, says):
    with pytest.raises(AssertionError, match=says):
        check(wrong)
