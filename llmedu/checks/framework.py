"""The machinery shared by every exercise check (see ``llmedu.check``).

A check runs the learner's function on several inputs, edge cases and the
typical wrong answers' traps included, and compares each result with the
library's reference. On success it prints one line; on the first mismatch it
raises ``AssertionError`` whose message reads, in this order:

    Exercise 2.3 (causal multi-head attention): for q=array(...), k=array(...), v=array(...)
      the result differs first at index (1, 0, 2): expected 0.1234, got nan (12 of 40 values differ)

Inputs are shown as they were before the learner's function ran (it may
change them in place), large ones summarised (arrays: shape, dtype, a few
values; dicts: size and first entries). Errors raised by the learner's code
(the lesson's ``NotImplementedError`` stub among them) become an
``AssertionError`` too, so every failure reads the same way in a grade report.
When the failing function calls the learner's own solution of an earlier
exercise (RoPE inside the block) and that one fails its own check, the message
says so: it is the likely cause.

``EXERCISES`` maps each check's name to its exercise number; the grader
(:mod:`llmedu.grade`) uses it to find each exercise's check cell. Check names
are unique across the course, since notebooks call them as ``check.<name>``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import io
import re
import warnings
from dataclasses import dataclass, is_dataclass

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
_CHECKS: dict[str, callable] = {}  # check name -> the public check, to re-run an earlier exercise quietly
_QUIET = {"depth": 0}  # > 0 while checks run only to find the cause of another failure


def exercise(number: str, title: str, uses: tuple[str, ...] = ()):
    """Register a check for exercise ``number`` and give it the common behaviour.

    ``uses`` names earlier exercises the learner's function typically calls
    (``block`` calls ``apply_rope``); when this check fails, those of the
    learner's own that fail their checks are named as the likely cause.
    """

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
            try:
                n_cases = check_function(_Reporter(number, title, learner_function))
            except AssertionError as failure:
                hint = _likely_cause(learner_function, name, uses)
                if not hint:
                    raise
                raise AssertionError(f"{failure}\n  {hint}") from failure.__cause__  # the learner's error, if any
            print(f"Exercise {number} ({title}): passed all {n_cases} cases.")

        _CHECKS[name] = run
        return run

    return decorate


# ------------------------------------------------------ the likely cause --

def _likely_cause(function, name: str, uses: tuple[str, ...]) -> str:
    """A sentence naming the learner's earlier functions that ``function`` calls and that fail their checks."""
    if _QUIET["depth"] or not uses:
        return ""
    namespace = getattr(_python_function(function), "__globals__", {})
    called = [used for used in uses if callable(namespace.get(used)) and _calls(function, used, set())]
    failing = [used for used in called if not _passes(used, namespace[used])]
    # A failing part that calls another failing part (block calls apply_rope) is explained by that one.
    causes = [used for used in failing if not any(other != used and _calls(namespace[used], other, set())
                                                  for other in failing)]
    if not causes:
        return ""
    described = " and ".join(f"{used} (exercise {EXERCISES[used].number})" for used in causes)
    if len(causes) == 1:
        return f"Likely cause: your {described} fails its own check, and your {name} uses it; fix that first."
    return f"Likely cause: your {described} fail their own checks, and your {name} uses them; fix those first."


def _passes(name: str, learner_function) -> bool:
    """Whether the learner's ``name`` passes its own check, run without printing anything."""
    _QUIET["depth"] += 1
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            _CHECKS[name](learner_function)
        return True
    except Exception:  # an AssertionError, or a check tripped up by a strange answer: either way, not passing
        return False
    finally:
        _QUIET["depth"] -= 1


def _python_function(function):
    return getattr(function, "py_func", function)  # a Numba dispatcher wraps the Python function


def _code_names(code) -> set[str]:
    """Global names a code object refers to, nested functions and comprehensions included."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if inspect.iscode(constant):
            names |= _code_names(constant)
    return names


def _calls(function, target: str, seen: set) -> bool:
    """Whether ``function`` refers to the global ``target``, directly or through the functions it calls."""
    function = _python_function(function)
    code = getattr(function, "__code__", None)
    if code is None or id(function) in seen:
        return False
    seen.add(id(function))
    names = _code_names(code)
    namespace = function.__globals__
    return target in names or any(_calls(namespace[n], target, seen) for n in names if callable(namespace.get(n)))


# ----------------------------------------------------------- the reporter --

_COMPUTE = object()  # "no answer given yet": call the learner's function


class Shown:
    """An argument shown in messages by a description, e.g. ``np.random.default_rng(3)`` for an rng."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _Reporter:
    """Calls the learner's function and compares its answers, raising on the first mismatch."""

    def __init__(self, number: str, title: str, function):
        self.number, self.title, self.function = number, title, function
        self._before: list[tuple[object, object]] = []  # (argument, its copy before the last call)
        self._names = _parameter_names(function)

    def call(self, *args, shown: tuple | None = None):
        """The learner's answer for ``args``; a failure shows ``shown`` (default: ``args``) as the input."""
        self._before = [(arg, _snapshot(arg)) for arg in args]
        try:
            return self.function(*args)
        except Exception as error:  # the learner's bug, reported as a failed case
            hint = f"\n  {_OVERFLOW_HINT}" if re.search(r"\bnan\b", str(error), re.IGNORECASE) else ""
            raise AssertionError(
                f"{self._lead(args if shown is None else shown)}\n"
                f"  your function raised {type(error).__name__}: {error}{hint}"
            ) from error

    def fail(self, args: tuple, expected, actual, why: str = "") -> None:
        """Raise: the input, then ``why`` (what is wrong, a sentence), then the expected and the actual value."""
        lines = [self._lead(args)]
        if why:
            lines.append(f"  {why}")
        lines += [f"  expected {_show(expected)}", f"  got      {_show(actual)}"]
        raise AssertionError("\n".join(lines))

    def fail_because(self, args: tuple, why: str) -> None:
        """Raise with the input and ``why`` alone (it already names the values that matter)."""
        raise AssertionError(f"{self._lead(args)}\n  {why}")

    def expect(self, args: tuple, expected, actual=_COMPUTE) -> None:
        """Compare the learner's answer for ``args`` (computed here unless given) for equality."""
        actual = self.call(*args) if actual is _COMPUTE else actual
        if not _equal(actual, expected):
            self.fail(args, expected, actual, _first_difference(expected, actual))

    def expect_close(self, args: tuple, expected: np.ndarray, actual=_COMPUTE, rtol=1e-5, atol=1e-6,
                     what: str = "the result", dtype=None, mistakes=()) -> None:
        """Compare arrays: same shape (and ``dtype`` if given), equal within ``rtol``/``atol``.

        ``what`` names the array in messages. A failure names the first index
        where the values differ, with both values there. ``mistakes`` holds
        (wrong answer, advice) pairs, the wrong answer as a function of no
        arguments (computed only on failure): when the learner's answer is that
        wrong answer, the advice is added to the message.
        """
        actual = self.call(*args) if actual is _COMPUTE else actual
        expected = np.asarray(expected)
        actual_array = None if actual is None else np.asarray(actual)
        if actual_array is not None and not np.issubdtype(actual_array.dtype, np.number):
            self.fail(args, expected, actual, f"{what} should be an array of numbers, got dtype {actual_array.dtype}")
        if actual_array is None or actual_array.shape != expected.shape:
            shape = None if actual_array is None else actual_array.shape
            self.fail(args, expected, actual, f"{what} should have shape {expected.shape}, got {shape}")
        if dtype is not None and actual_array.dtype != dtype:
            self.fail_because(args, f"{what} should have dtype {np.dtype(dtype)}, got {actual_array.dtype}")
        close = np.isclose(actual_array.astype(np.float64), expected, rtol=rtol, atol=atol)
        if not close.all():
            why = _where_arrays_differ(expected, actual_array, close, what)
            advice = next((text for wrong, text in mistakes if _is_close(actual_array, wrong(), rtol, atol)), "")
            self.fail_because(args, f"{why}\n  {advice}" if advice else why)

    def _lead(self, args: tuple) -> str:
        return f"Exercise {self.number} ({self.title}): for {self._show_args(args)}"

    def _show_args(self, args: tuple) -> str:
        """The arguments as they were before the last call, each named by the learner's parameter name."""
        shown = [_show(next((before for arg, before in self._before if arg is value), value)) for value in args]
        names = self._names if len(args) <= len(self._names) else [""] * len(args)  # defaults may be left out
        return ", ".join(f"{name}={text}" if name else text for name, text in zip(names, shown))


def _equal(actual, expected) -> bool:
    try:
        return bool(actual == expected)
    except (ValueError, TypeError):  # e.g. a numpy array where a list is expected: not the same answer
        return False


def _parameter_names(function) -> list[str]:
    try:
        parameters = inspect.signature(_python_function(function)).parameters.values()
    except (TypeError, ValueError):  # a builtin or a callable without a signature: show arguments unnamed
        return []
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _snapshot(value):
    """A copy of a mutable argument, so a message can show it as it was before the learner's function ran."""
    if isinstance(value, (np.ndarray, list, dict, set, bytearray)):
        try:
            return copy.deepcopy(value)
        except Exception:  # something that cannot be copied is shown as it is
            return value
    return value


# ------------------------------------------------ where answers disagree --

def _where_arrays_differ(expected: np.ndarray, actual: np.ndarray, close: np.ndarray, what: str) -> str:
    """One line: the first index where ``actual`` is not close to ``expected``, both values there, and how many."""
    first = tuple(int(i) for i in np.argwhere(~close)[0]) if close.ndim else ()
    at = f" at index {first}" if first else ""
    n_wrong = int((~close).sum())
    with np.errstate(invalid="ignore"):
        differences = np.abs(actual.astype(np.float64) - expected)[~close]  # nan where the learner's is nan
    worst = np.nan if np.isnan(differences).all() else np.nanmax(differences)
    count = f" ({n_wrong} of {close.size} values differ, by up to {worst:.3g})" if close.size > 1 else ""
    want, got = _numbers(expected[first], actual[first])
    line = f"{what} differs first{at}: expected {want}, got {got}{count}" if first else \
        f"{what} is wrong: expected {want}, got {got}"
    if np.isfinite(expected).all() and not np.isfinite(actual.astype(np.float64)).all():
        line += f"\n  {_OVERFLOW_HINT}"
    return line


_OVERFLOW_HINT = ("nan or inf where the answer is finite: often exp() of a large number overflowed; "
                  "subtract the largest value before exp")


def _is_close(actual: np.ndarray, wrong: np.ndarray, rtol: float, atol: float) -> bool:
    wrong = np.asarray(wrong)
    with np.errstate(all="ignore"):
        return wrong.shape == actual.shape and bool(np.allclose(actual.astype(np.float64), wrong, rtol=rtol, atol=atol))


def _numbers(want, got) -> tuple[str, str]:
    """Two numbers to 6 digits, or to every digit when 6 would show them equal."""
    short = f"{float(want):.6g}", f"{float(got):.6g}"
    return short if short[0] != short[1] else (repr(float(want)), repr(float(got)))


def _first_difference(expected, actual) -> str:
    """Where two sequences or dicts first disagree, with both values there; empty for other values."""
    if isinstance(expected, (list, str, bytes, dict)) and not isinstance(actual, type(expected)):
        return f"the result should be a {type(expected).__name__}, got {type(actual).__name__}"
    if isinstance(expected, (list, str, bytes)) and type(actual) is type(expected):
        for position, (want, got) in enumerate(zip(expected, actual)):
            if want != got:
                return f"the result differs first at position {position}: expected {want!r}, got {got!r}"
        return f"the result should have length {len(expected)}, got {len(actual)}"
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, want in expected.items():
            if key not in actual:
                return f"the key {key!r} is missing (expected value {want!r})"
            if actual[key] != want:
                return f"the value for {key!r} differs: expected {want!r}, got {actual[key]!r}"
        extra = next(key for key in actual if key not in expected)
        return f"the key {extra!r} should not be there (got value {actual[extra]!r})"
    return ""


# --------------------------------------------------------- short reprs --

def _show(value, limit: int = 100) -> str:
    """A short description: arrays as shape, dtype and a few values; long lists, dicts and strings cut."""
    if isinstance(value, np.ndarray):
        return _show_array(value)
    if inspect.isfunction(value):  # a function the check passes in, e.g. the f of a finite difference
        return value.__name__
    if isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
        shapes = ", ".join(f"{key}: {v.shape}" for key, v in list(value.items())[:4])
        return f"dict of {len(value)} arrays {{{shapes}{', ...' if len(value) > 4 else ''}}}"
    if isinstance(value, dict) and len(repr(value)) > limit:
        entries = ", ".join(f"{k!r}: {v!r}" for k, v in list(value.items())[:3])
        return f"dict of {len(value)} entries {{{entries}, ...}}"
    if isinstance(value, (list, tuple)) and len(repr(value)) > limit:
        items, shown = [], 0
        for item in value:
            items.append(_show(item, limit // 2))
            shown += len(items[-1]) + 2
            if shown > limit:
                break
        open_, close_ = "[]" if isinstance(value, list) else "()"
        return f"{open_}{', '.join(items)}, ...{close_} ({len(value)} items)"
    text = repr(value)
    if is_dataclass(value) or len(text) <= limit:  # a config is shown whole: every field matters
        return text
    length = len(value) if hasattr(value, "__len__") else len(text)
    return f"{text[:limit - 5]} ...{text[-1]} ({length} long)"


def _show_array(value: np.ndarray) -> str:
    if value.size <= 8:
        values = " ".join(np.array2string(value, precision=4, separator=", ").split())  # on one line
        return f"array({values}, dtype={value.dtype})" if value.dtype != np.float64 else f"array({values})"
    first = np.array2string(value.ravel()[:4], precision=4, separator=", ")[:-1]
    return f"array(shape={value.shape}, dtype={value.dtype}, values {first}, ...])"
