"""The machinery shared by every exercise check (see ``llmedu.check``).

A check runs the learner's function on several inputs, edge cases included,
and compares each result with the library's reference. On success it prints
one line; on the first mismatch it raises ``AssertionError`` naming the input,
the expected value and the actual one. Errors raised by the learner's code
(the lesson's ``NotImplementedError`` stub among them) become an
``AssertionError`` too, so every failure reads the same way in a grade report.

``EXERCISES`` maps each check's name to its exercise number; the grader
(:mod:`llmedu.grade`) uses it to find each exercise's check cell. Check names
are unique across the course, since notebooks call them as ``check.<name>``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Exercise:
    number: str  # "1.2": lesson 1, exercise 2
    name: str  # the check function's name, e.g. "merge"
    title: str  # what the learner builds, for reports

    @property
    def lesson(self) -> int:
        return int(self.number.split(".")[0])


EXERCISES: dict[str, Exercise] = {}


def exercise(number: str, title: str):
    """Register a check for exercise ``number`` and give it the common behaviour."""

    def decorate(check_function):
        name = check_function.__name__
        if name in EXERCISES:
            raise ValueError(f"two checks are named {name!r}; notebooks call check.<name>, so names must be unique.")
        EXERCISES[name] = Exercise(number, name, title)

        @functools.wraps(check_function)
        def run(learner_function):
            if not callable(learner_function):
                raise AssertionError(
                    f"Exercise {number} ({title}): pass your function itself, "
                    f"e.g. check.{name}({name}), not {learner_function!r}."
                )
            n_cases = check_function(_Reporter(number, title, learner_function))
            print(f"Exercise {number} ({title}): passed all {n_cases} cases.")

        return run

    return decorate


_COMPUTE = object()  # "no answer given yet": call the learner's function


class _Reporter:
    """Calls the learner's function and compares its answers, raising on the first mismatch."""

    def __init__(self, number: str, title: str, function):
        self.number, self.title, self.function = number, title, function

    def call(self, *args):
        try:
            return self.function(*args)
        except Exception as error:  # the learner's bug, reported as a failed case
            raise AssertionError(
                f"Exercise {self.number} ({self.title}): for input {_show(args)} "
                f"your function raised {type(error).__name__}: {error}"
            ) from error

    def fail(self, args: tuple, expected, actual, why: str = "") -> None:
        raise AssertionError(
            f"Exercise {self.number} ({self.title}): for input {_show(args)}{why}\n"
            f"  expected {_show(expected)}\n  got      {_show(actual)}"
        )

    def expect(self, args: tuple, expected, actual=_COMPUTE) -> None:
        """Compare the learner's answer for ``args`` (computed here unless given) for equality."""
        actual = self.call(*args) if actual is _COMPUTE else actual
        if actual != expected:
            self.fail(args, expected, actual)

    def expect_close(self, args: tuple, expected: np.ndarray, actual=_COMPUTE, rtol=1e-5, atol=1e-6,
                     what: str = "the result") -> None:
        """Compare arrays: same shape, and equal within ``rtol``/``atol``; ``what`` names the array in messages."""
        actual = self.call(*args) if actual is _COMPUTE else actual
        actual_array = np.asarray(actual) if actual is not None else None
        if actual_array is None or actual_array.shape != expected.shape:
            shape = None if actual_array is None else actual_array.shape
            self.fail(args, expected, actual, f": {what} should have shape {expected.shape}, got {shape}")
        if not np.allclose(actual_array, expected, rtol=rtol, atol=atol):
            difference = np.abs(actual_array.astype(np.float64) - expected)
            worst = np.unravel_index(np.argmax(difference), expected.shape)
            self.fail(args, expected, actual, f": {what} is off by up to {difference[worst]:.3g}, "
                                              f"at index {tuple(int(i) for i in worst)}")


def _show(value, limit: int = 300) -> str:
    """repr, shortened so a failure message stays readable; arrays as shape, dtype and first values."""
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, tuple):  # each argument shortened on its own, so short ones always show
        return ", ".join(_show(v, limit) for v in value)
    elif isinstance(value, np.ndarray) and value.size > 8:
        text = f"array(shape={value.shape}, dtype={value.dtype}, first values {np.array2string(value.ravel()[:4], precision=4)})"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...)"
