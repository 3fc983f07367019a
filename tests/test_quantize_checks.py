"""Exercise 8.3's check accepts Q8_0 as runq.c does it, quantising and dequantising, and rejects the typical
mistakes of either function, saying why."""

import numpy as np
import pytest

from llmedu import quantize
from llmedu.checks.quantize import quantize_q8 as check


def reference(w, group_size):
    t = quantize.quantize_q8(w, group_size)
    return t.q, t.s


def dequantize_q8(q, scales):
    """The reference dequantisation on a pair; the check also finds it by this name beside reference()."""
    return quantize.dequantize_q8(quantize.Q8(q, scales))


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


def forgets_the_scale(q, scales):
    return q.astype(np.float32)


def divides_by_the_scale(q, scales):
    groups = q.reshape(q.shape[0], scales.shape[1], -1).astype(np.float32)
    return (groups / np.where(scales == 0, 1, scales)[..., None]).reshape(q.shape)


def tiles_the_scales(q, scales):
    return q * np.tile(scales, q.shape[1] // scales.shape[1])  # scale g lands on values of other groups


def float64_values(q, scales):
    return dequantize_q8(q, scales).astype(np.float64)


def stub(*args):
    raise NotImplementedError("Exercise 8.3")


def test_the_check_passes_the_library(capsys):
    check(reference, dequantize_q8)
    assert "passed all" in capsys.readouterr().out


def test_the_check_finds_the_dequantize_q8_defined_beside_quantize_q8_as_the_grader_calls_it(capsys):
    check(reference)  # this module's dequantize_q8
    assert "passed all" in capsys.readouterr().out


def test_the_check_fails_blank_stubs():
    with pytest.raises(AssertionError, match="NotImplementedError"):
        check(stub, stub)


def test_the_check_fails_a_blank_dequantize_stub_beside_a_right_quantize():
    with pytest.raises(AssertionError, match="NotImplementedError"):
        check(reference, stub)


def test_the_check_asks_for_both_functions_when_it_cannot_find_dequantize_q8():
    namespace = {"np": np, "quantize": quantize}
    exec("def lone(w, gs):\n    t = quantize.quantize_q8(w, gs)\n    return t.q, t.s\n", namespace)
    with pytest.raises(AssertionError, match="pass both of your functions"):
        check(namespace["lone"])


def test_the_check_rejects_the_librarys_dequantize_which_takes_a_q8_not_a_pair():
    with pytest.raises(AssertionError, match="TypeError"):
        check(reference, quantize.dequantize_q8)


@pytest.mark.parametrize("wrong, says", [
    (forgets_the_scale, "multiply each q by its group's scale"), (divides_by_the_scale, "do not divide"),
    (tiles_the_scales, "np.repeat"), (float64_values, "float32"),
])
def test_the_check_rejects_a_typical_dequantize_mistake_and_names_it(wrong, says):
    with pytest.raises(AssertionError, match=says):
        check(reference, wrong)


@pytest.mark.parametrize("wrong, says", [
    (over_128, "max\\|w\\| / 127"), (row_max, "each group of the row"), (truncating, "do not truncate"),
    (float64_scales, "float32"), (dividing_by_zero, "all-zero group"), (columns_as_groups, "along each row|raised ValueError"),
])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_check_rejects_a_typical_quantize_mistake_and_names_it(wrong, says):
    with pytest.raises(AssertionError, match=says):
        check(wrong, dequantize_q8)
