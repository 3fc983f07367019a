"""Check for lesson 08 (``08_frontiers``), part 1: exercise 8.1, fitting a power law ``loss = a * n^-alpha``.

Reference: ``llmedu.scaling_fit.fit_power_law`` (least squares on natural
logs). The cases are exact power laws (the answer is known to every digit),
noisy ones (the least-squares line is unique, so every correct method gets
the same numbers) and plain lists. A wrong answer that matches a typical
mistake gets advice naming it: logarithms of two bases mixed, alpha's sign,
a line through the loss itself instead of its log, log a returned for a.
"""

from __future__ import annotations

import math

import numpy as np

from llmedu.checks.framework import exercise
from llmedu.scaling_fit import fit_power_law as reference


def _noisy(seed: int, a: float, alpha: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = np.geomspace(1e4, 2e6, count)
    return n, a * n ** -alpha * np.exp(rng.normal(0, 0.02, count))  # 2% multiplicative noise


_N = np.array([1e3, 1e4, 1e5, 1e6])
CASES = [
    (_N, 10.0 * _N ** -0.3),  # exact: a = 10, alpha = 0.3
    (_N[::-1].copy(), 11.5 * _N[::-1] ** -0.076),  # Kaplan's exponent for N; n given largest first
    _noisy(0, 7.0, 0.15, 7),
    _noisy(1, 40.0, 0.34, 12),
    ([2e4, 5e4, 1e5, 3e5], [3.1, 2.8, 2.62, 2.35]),  # plain lists, no exact law behind them
]


def _line(x, y) -> tuple[float, float]:
    slope, intercept = np.polyfit(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), 1)
    return float(intercept), float(slope)


def _mistakes(n, loss) -> list[tuple[tuple[float, float], str]]:
    """(the answer a typical mistake gives, advice) pairs for one case."""
    n, loss = np.asarray(n, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    ln_b, ln_m = _line(np.log(n), np.log(loss))
    lg_b, lg_m = _line(np.log10(n), np.log10(loss))
    mixed_b, mixed_m = _line(np.log10(n), np.log(loss))
    lin_b, lin_m = _line(np.log(n), loss)
    return [
        ((math.exp(ln_b), ln_m), "alpha has the wrong sign: loss falls as n grows, so the slope of log loss against "
                                 "log n is negative and alpha = -slope is positive"),
        ((math.exp(lg_b), -lg_m), "logarithms mixed: the intercept of a log10 line is log10(a), so a = 10**intercept "
                                  "(or use np.log and np.exp throughout)"),
        ((math.exp(mixed_b), -mixed_m), "logarithms mixed: take the same logarithm of n and of the loss"),
        ((ln_b, -ln_m), "a is exp(intercept): the intercept of the line is log a, not a"),
        ((math.exp(lin_b), -lin_m), "fit log(loss), not the loss itself: a power law is a straight line only when "
                                    "both axes are logarithmic"),
    ]


def _close(got: tuple[float, float], want: tuple[float, float]) -> bool:
    return all(math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-9) for g, w in zip(got, want))


@exercise("8.1", "fitting a power law")
def fit_power_law(learner) -> int:
    for n, loss in CASES:
        args = (n, loss)
        got = learner.call(n.copy() if isinstance(n, np.ndarray) else list(n),
                           loss.copy() if isinstance(loss, np.ndarray) else list(loss), shown=args)
        want = reference(n, loss)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            learner.fail(args, want, got, "return the pair (a, alpha)")
        try:
            got = (float(got[0]), float(got[1]))
        except (TypeError, ValueError):
            learner.fail(args, want, got, "a and alpha should be numbers")
        if not all(math.isfinite(value) for value in got):
            learner.fail(args, want, got, "a and alpha should be finite: are some inputs negative or zero under a log?")
        if not _close(got, want):
            advice = next((text for wrong, text in _mistakes(n, loss) if _close(got, wrong)),
                          "fit a straight line to (log n, log loss) by least squares: slope = -alpha, "
                          "intercept = log a")
            learner.fail(args, want, got, advice)
    return len(CASES)
