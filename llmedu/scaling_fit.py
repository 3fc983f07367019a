"""Fitting Chinchilla's law ``L(N, D) = E + A / N^alpha + B / D^beta`` with numpy alone (lesson 08, ``08_frontiers``).

The law has five numbers, but only two of them are hard. For fixed exponents
(alpha, beta) the loss is *linear* in (E, A, B):

    L = E * 1 + A * N^-alpha + B * D^-beta        one row per run: [1, N^-alpha, D^-beta] @ [E, A, B]

so (E, A, B) come from a least-squares solve. The three must not be negative
(a negative A would mean more parameters hurt), and with three unknowns the
constrained solve is simple to write out exactly: try every subset of them
as the "free" ones, solve least squares on that subset with the others at
zero, keep the best solution whose free values are all >= 0. The exponents
are then found by a grid search over (alpha, beta), refined around the best
point a few times. The residuals are relative ((fit - loss) / loss): a 1%
miss costs the same at loss 4 as at loss 1, which is how the prediction is
judged too.

``compute_optimal`` answers Chinchilla's question: with a fixed compute
budget C = 6 N D, which N minimises L? Setting dL/dN = 0 along D = C / (6N):

    alpha A N^-alpha = beta B D^-beta   ->   N_opt = G (C/6)^(beta / (alpha + beta)),
    G = (alpha A / (beta B))^(1 / (alpha + beta)),   D_opt = C / (6 N_opt)

and ``D_opt / N_opt`` is the tokens-per-parameter ratio (Chinchilla ~20).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["LawFit", "nonnegative_least_squares", "fit_law", "compute_optimal", "fit_power_law"]


@dataclass(frozen=True)
class LawFit:
    E: float  # the irreducible loss: what infinite N and D would still pay (the text's entropy, roughly)
    A: float
    alpha: float
    B: float
    beta: float
    rms_relative_error: float  # over the runs fitted

    def predict(self, n, d) -> np.ndarray:
        """L(N, D) for arrays (or numbers) N and D."""
        n, d = np.asarray(n, dtype=np.float64), np.asarray(d, dtype=np.float64)
        return self.E + self.A * n ** -self.alpha + self.B * d ** -self.beta

    def to_dict(self) -> dict:
        return asdict(self)


def nonnegative_least_squares(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """argmin ||X w - y||^2 over w >= 0, exactly, for a few columns; returns (w, sum of squares).

    Tries every subset of columns as the free ones (2^k - 1 of them): the
    optimum is the unconstrained solution on its own free set, so the best
    feasible one among them is it.
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)  # (R, k), (R,)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    if (w >= 0).all():  # the unconstrained optimum is allowed: nothing better exists (the usual case, and fast)
        return w, float(((X @ w - y) ** 2).sum())
    best_w, best_sse = np.zeros(X.shape[1]), float(y @ y)  # w = 0 is always allowed
    for size in range(1, X.shape[1] + 1):
        for free in itertools.combinations(range(X.shape[1]), size):
            w_free = np.linalg.lstsq(X[:, free], y, rcond=None)[0]
            if (w_free < 0).any():
                continue
            w = np.zeros(X.shape[1])
            w[list(free)] = w_free
            sse = float(((X @ w - y) ** 2).sum())
            if sse < best_sse:
                best_w, best_sse = w, sse
    return best_w, best_sse


def _solve_linear_part(n, d, loss, alpha: float, beta: float) -> tuple[np.ndarray, float]:
    """(E, A, B) >= 0 minimising the relative squared error at these exponents, and that error."""
    X = np.stack([np.ones_like(n), n ** -alpha, d ** -beta], axis=1) / loss[:, None]  # (R, 3), rows / loss
    return nonnegative_least_squares(X, np.ones_like(loss))  # (X w - 1) = (fit - loss) / loss


def fit_law(n, d, loss, *, exponents: tuple[float, float] = (0.02, 2.0), grid: int = 40,
            refinements: int = 4) -> LawFit:
    """The law through runs (N, D, loss): grid search on (alpha, beta), least squares for (E, A, B).

    The grid spans ``exponents`` with ``grid`` points on each axis; each
    refinement zooms on the best point (a grid of the same size, four cells
    wide around it). Needs at least 5 runs with at least 2 distinct N and D.
    """
    n, d, loss = (np.asarray(v, dtype=np.float64).ravel() for v in (n, d, loss))
    if not len(n) == len(d) == len(loss):
        raise ValueError(f"n, d and loss must have the same length, got {len(n)}, {len(d)} and {len(loss)}.")
    if len(n) < 5 or len(set(n)) < 2 or len(set(d)) < 2:
        raise ValueError(f"the law has 5 numbers: fit it on at least 5 runs with at least two sizes N and two "
                         f"budgets D (got {len(n)} runs, {len(set(n))} sizes, {len(set(d))} budgets).")
    if not (np.isfinite(loss).all() and (loss > 0).all() and (n > 0).all() and (d > 0).all()):
        raise ValueError("n, d and loss must be positive finite numbers.")
    low, high = exponents
    alphas, betas = np.linspace(low, high, grid), np.linspace(low, high, grid)
    for _ in range(refinements + 1):
        sse, alpha, beta = min((_solve_linear_part(n, d, loss, a, b)[1], a, b) for a in alphas for b in betas)
        step_a, step_b = alphas[1] - alphas[0], betas[1] - betas[0]
        alphas = np.linspace(max(alpha - 2 * step_a, 1e-3), alpha + 2 * step_a, grid)
        betas = np.linspace(max(beta - 2 * step_b, 1e-3), beta + 2 * step_b, grid)
    (E, A, B), sse = _solve_linear_part(n, d, loss, alpha, beta)
    return LawFit(float(E), float(A), float(alpha), float(B), float(beta), float(np.sqrt(sse / len(loss))))


def compute_optimal(fit: LawFit, flops) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) minimising the fitted loss at compute ``flops`` = 6 N D; arrays like ``flops``.

    Needs A, B > 0 (both terms present): otherwise the loss does not trade
    N against D and there is no optimum.
    """
    if not (fit.A > 0 and fit.B > 0):
        raise ValueError(f"the fit has A = {fit.A:.3g}, B = {fit.B:.3g}: with a term missing, loss does not trade "
                         "parameters against tokens and there is no compute-optimal size.")
    c = np.asarray(flops, dtype=np.float64)
    a, b = fit.alpha, fit.beta
    g = (a * fit.A / (b * fit.B)) ** (1 / (a + b))
    n_opt = g * (c / 6) ** (b / (a + b))
    return n_opt, c / (6 * n_opt)


def fit_power_law(n, loss) -> tuple[float, float]:
    """(a, alpha) of ``loss = a * n^-alpha``: a straight line through (log n, log loss), by least squares.

    Exercise 8.1's reference. The slope of log loss against log n is -alpha;
    the intercept is log a (natural logs on both sides, undone with exp).
    """
    x, y = np.log(np.asarray(n, dtype=np.float64)), np.log(np.asarray(loss, dtype=np.float64))  # (R,), (R,)
    X = np.stack([np.ones_like(x), x], axis=1)  # (R, 2): intercept column, slope column
    (intercept, slope), *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(np.exp(intercept)), float(-slope)
