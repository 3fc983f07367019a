"""Check for lesson 08 (``08_frontiers``), exercise 8.3: Q8_0 quantisation of a matrix, as runq.c does it.

The learner writes two functions, and ``check.quantize_q8(quantize_q8,
dequantize_q8)`` checks both:

- ``quantize_q8(w, group_size) -> (q, scales)``: groups of ``group_size``
  consecutive values along each row, scale = max |w| / 127 per group
  (float32), q = round(w / scale) as int8;
- ``dequantize_q8(q, scales) -> w``: q times its own group's scale, float32.

The references are ``llmedu.quantize.quantize_q8`` / ``dequantize_q8``, which
take and return a ``Q8`` object (``t.q``, ``t.s``) instead of a pair. The
grader passes one function only (``check.quantize_q8(quantize_q8)``): the
learner's ``dequantize_q8`` is then the one defined beside ``quantize_q8``.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from llmedu.checks.framework import _python_function, _Reporter, exercise
from llmedu.quantize import dequantize_q8
from llmedu.quantize import quantize_q8 as reference

TITLE = "Q8_0 quantise and dequantise a matrix"


def _cases() -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(83)
    tall = rng.normal(0, 0.02, size=(6, 16)).astype(np.float32)
    tall[1, 4:8] = 0.0  # an all-zero group: scale 0, q 0 (not 0/0)
    wide = rng.normal(0, 1.0, size=(3, 24)).astype(np.float32)
    wide[2, :8] *= 50.0  # one loud group: the other groups of that row keep their own, finer scale
    return [(tall, 4), (tall, 8), (wide, 8), (wide, 24), (rng.normal(size=(2, 6)).astype(np.float32), 2)]


def _as_pair(learner, args, result):
    if not (isinstance(result, tuple) and len(result) == 2):
        learner.fail_because(args, f"return a pair (q, scales); got {type(result).__name__}")
    return np.asarray(result[0]), np.asarray(result[1])


class _Pair:
    """The learner's two functions as one: called, it is quantize_q8 (its signature names the inputs shown)."""

    def __init__(self, quantize, dequantize):
        self.quantize, self.dequantize = quantize, dequantize
        try:
            self.__signature__ = inspect.signature(_python_function(quantize))
        except (TypeError, ValueError):  # a callable without a signature: its inputs are shown unnamed
            pass

    def __call__(self, *args):
        return self.quantize(*args)


def quantize_q8(quantize_q8, dequantize_q8=None) -> None:
    """Check exercise 8.3: ``check.quantize_q8(quantize_q8, dequantize_q8)``.

    Without ``dequantize_q8`` (as the grader calls it), the learner's
    ``dequantize_q8`` is the one defined where ``quantize_q8`` was.
    """
    if not callable(quantize_q8):
        return _check_pair(quantize_q8)  # the framework's message: pass the function itself
    if dequantize_q8 is None:
        namespace = getattr(_python_function(quantize_q8), "__globals__", {})
        dequantize_q8 = namespace.get("dequantize_q8")
    if not callable(dequantize_q8):
        raise AssertionError(f"Exercise 8.3 ({TITLE}): pass both of your functions, "
                             "check.quantize_q8(quantize_q8, dequantize_q8).")
    _check_pair(_Pair(quantize_q8, dequantize_q8))


def _check_both(learner) -> int:
    n_cases = _check_quantize(learner)
    return n_cases + _check_dequantize(_Reporter("8.3", TITLE, learner.function.dequantize))


_check_both.__name__ = "quantize_q8"  # the check's name in check.py, EXERCISES and the grader
_check_pair = exercise("8.3", TITLE)(_check_both)


def _check_quantize(learner) -> int:
    for w, gs in _cases():
        args = (w, gs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = learner.call(w.copy(), gs, shown=args)
        q, scales = _as_pair(learner, args, result)
        if any("invalid value encountered in cast" in str(c.message) for c in caught):
            learner.fail_because(args, "an all-zero group has scale 0, and 0 / 0 is NaN; casting NaN to int8 is "
                                       "undefined (numpy warns): make q 0 where the scale is 0")
        expected = reference(w, gs)
        rows, groups = w.shape[0], w.shape[1] // gs
        if scales.shape != (rows, groups):
            learner.fail_because(args, f"scales should have shape {(rows, groups)}: one per group of {gs} "
                                       f"consecutive values along each row; got {scales.shape}")
        if scales.dtype != np.float32:
            learner.fail_because(args, f"scales should be float32 (4 bytes each in the file, as runq.c reads "
                                       f"them), got {scales.dtype}: compute them from float32 values")
        groups_view = w.reshape(rows, groups, gs)
        learner.expect_close(args, expected.s, scales, rtol=1e-6, atol=0, what="scales", mistakes=[
            (lambda: np.abs(groups_view).max(-1) / np.float32(128),
             "the scale is max|w| / 127, so the largest value maps to 127 (int8 stops at 127)"),
            (lambda: np.repeat(np.abs(w).max(-1, keepdims=True) / np.float32(127), groups, axis=1),
             "take the max over each group of the row, not over the whole row"),
            (lambda: np.full((rows, groups), np.abs(w).max() / np.float32(127)),
             "take the max over each group, not over the whole matrix")])
        if q.dtype != np.int8 or q.shape != w.shape:
            learner.fail_because(args, f"q should be int8 of shape {w.shape}, got {q.dtype} {q.shape}")
        safe = np.where(expected.s == 0, 1, expected.s)[..., None]
        learner.expect_close(args, expected.q, q, rtol=0, atol=0, what="q", mistakes=[
            (lambda: np.trunc(groups_view / safe).astype(np.int8).reshape(w.shape),
             "round to the nearest integer (np.round), do not truncate (astype(int8) alone cuts towards zero)")])
        back = dequantize_q8(type(expected)(q, scales))
        step = np.repeat(scales, gs, axis=1)  # (rows, n): each value's own group step
        if not np.all(np.abs(back - w) <= step / 2 * (1 + 1e-5) + 1e-12):
            learner.fail_because(args, "dequantising (q times its group's scale) should give every value back "
                                       "within half a step")
    _rejects_bad_group(learner)
    return len(_cases()) + 1


def _rejects_bad_group(learner) -> None:
    w = np.ones((2, 6), np.float32)
    try:
        learner.function(w, 4)
    except ValueError:
        return
    except Exception as error:  # noqa: BLE001 - any other error is the learner's to fix
        learner.fail_because((w, 4), f"a row of 6 does not split into groups of 4: raise ValueError, got {error!r}")
    learner.fail_because((w, 4), "a row of 6 does not split into groups of 4: raise ValueError saying so")


def _check_dequantize(learner) -> int:
    """The learner's dequantize_q8 on the reference's (q, scales): exactly q times its own group's scale, float32."""
    for w, gs in _cases():
        t = reference(w, gs)
        args = (t.q, t.s)
        back = learner.call(t.q.copy(), t.s.copy(), shown=args)
        expected = dequantize_q8(t)
        actual = np.asarray(back)
        if actual.shape == expected.shape and actual.dtype != np.float32:
            learner.fail_because(args, f"the result should be float32, as the parameters it stands for, got "
                                       f"{actual.dtype}: multiply q (as float32) by float32 scales")
        groups = t.q.reshape(t.q.shape[0], -1, gs).astype(np.float32)  # (rows, n_groups, gs)
        learner.expect_close(args, expected, actual, rtol=1e-6, atol=0, what="the dequantised matrix", mistakes=[
            (lambda: t.q.astype(np.float32), "multiply each q by its group's scale: q alone is in steps, not in "
                                             "the parameters' units"),
            (lambda: (groups / np.where(t.s == 0, 1, t.s)[..., None]).reshape(t.q.shape),
             "multiply q by the scale (w ~ q * scale), do not divide"),
            (lambda: t.q * np.tile(t.s, gs),
             "each value takes its own group's scale: repeat each scale group_size times along the row "
             "(np.repeat), not the row of scales over and over (np.tile)")])
    return len(_cases())
