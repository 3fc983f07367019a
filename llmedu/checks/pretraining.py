"""Checks for lesson 03 (pretraining): the loss, its gradients and the optimiser step.

The references are ``llmedu.backward`` (cross-entropy and the per-operation
backward functions) and ``llmedu.optim.AdamW``. Every case runs in float64,
so a correct answer agrees to many digits and a wrong one cannot hide.
"""

import numpy as np

from llmedu import backward
from llmedu.checks.framework import exercise
from llmedu.optim import AdamW


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _logit_cases(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(logits (N, V), targets (N,)): one row, two classes, a typical batch, uniform and huge logits."""
    rng = _rng(seed)
    cases = [(rng.standard_normal((1, 5)), np.array([3])),
             (rng.standard_normal((4, 2)), np.array([0, 1, 1, 0])),
             (rng.standard_normal((6, 11)) * 3, rng.integers(0, 11, 6)),
             (np.zeros((3, 7)), np.array([0, 6, 2]))]
    huge = rng.standard_normal((3, 9)) * 1000  # exp() overflows unless the largest logit is subtracted first
    return cases + [(huge, np.array([int(np.argmax(huge[0])), 0, 4]))]


def _ones(targets: np.ndarray) -> np.ndarray:
    return np.ones(len(targets))


@exercise("3.1", "cross-entropy")
def cross_entropy(learner) -> int:
    cases = _logit_cases(0)
    for logits, targets in cases:
        expected = np.array(backward.cross_entropy(logits, targets, _ones(targets)))
        learner.expect_close((logits, targets), expected, np.asarray(learner.call(logits.copy(), targets), dtype=float))
    return len(cases)


def _cubes(x):
    return float(np.sum(x ** 3))


def _mean_cross_entropy(logits):
    targets = np.arange(logits.shape[0]) % logits.shape[1]
    return backward.cross_entropy(logits, targets, _ones(targets))


@exercise("3.2", "finite-difference gradient")
def finite_difference(learner) -> int:
    rng = _rng(1)
    x_logits = rng.standard_normal((3, 4))
    targets = np.arange(3) % 4
    # (f, x, eps or None for the default, the exact gradient). For x**3 the central difference is exactly
    # 3x^2 + eps^2, so the eps=1e-3 case tells a central difference from a one-sided one (error ~3x eps).
    cases = [(_cubes, rng.standard_normal(5), None, lambda x: 3 * x ** 2),
             (_cubes, rng.standard_normal((2, 3)), None, lambda x: 3 * x ** 2),
             (_cubes, rng.standard_normal(4), 1e-3, lambda x: 3 * x ** 2 + 1e-6),
             (_mean_cross_entropy, x_logits, None,
              lambda x: backward.cross_entropy_backward(x, targets, _ones(targets)))]
    for f, x, eps, gradient in cases:
        before = x.copy()
        args = (f, x) if eps is None else (f, x, eps)
        actual = learner.call(*args)
        if not np.array_equal(x, before):
            learner.expect_close(args, before, x, rtol=0, atol=0,
                                 what="x must be the same after the call (restore each entry you nudge), but it")
        learner.expect_close(args, gradient(x), actual, rtol=1e-7, atol=1e-8, what="the gradient")
    return len(cases)


@exercise("3.3", "cross-entropy backward")
def cross_entropy_backward(learner) -> int:
    cases = _logit_cases(2)
    for logits, targets in cases:
        expected = backward.cross_entropy_backward(logits, targets, _ones(targets))
        learner.expect_close((logits, targets), expected, learner.call(logits.copy(), targets))
    return len(cases)


def _expect_arrays(learner, args: tuple, expected: tuple, names: tuple, rtol=1e-5, atol=1e-8) -> None:
    """The learner returns several arrays; compare each, naming the first that is wrong."""
    actual = learner.call(*(a.copy() if isinstance(a, np.ndarray) else a for a in args))
    if not isinstance(actual, tuple) or len(actual) != len(names):
        learner.fail(args, expected, actual, f"return a tuple ({', '.join(names)})")
    for name, want, got in zip(names, expected, actual):
        learner.expect_close(args, want, got, rtol=rtol, atol=atol, what=name)


@exercise("3.4", "linear layer backward")
def linear_backward(learner) -> int:
    rng = _rng(3)
    shapes = [((1, 1), 1), ((1, 3), 2), ((5, 4), 6), ((2, 3, 4), 5)]  # (x shape, out_features)
    for x_shape, n_out in shapes:
        x, w = rng.standard_normal(x_shape), rng.standard_normal((n_out, x_shape[-1]))
        dout = rng.standard_normal(x_shape[:-1] + (n_out,))
        _expect_arrays(learner, (dout, x, w), backward.linear_backward(dout, x, w), ("dx", "dw"))
    return len(shapes)


@exercise("3.5", "RMSNorm backward")
def rmsnorm_backward(learner) -> int:
    rng = _rng(4)
    cases = [(rng.standard_normal((1, 1)), 1e-5), (rng.standard_normal((1, 6)), 1e-5),
             (rng.standard_normal((4, 8)), 1e-5), (rng.standard_normal((2, 3, 5)) * 10, 1e-6)]
    for x, eps in cases:
        weight, dout = rng.standard_normal(x.shape[-1]), rng.standard_normal(x.shape)
        expected = backward.rmsnorm_backward(dout, x, weight, eps)
        _expect_arrays(learner, (dout, x, weight, eps), expected, ("dx", "dweight"))
    return len(cases)


def _adamw_reference(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """One step of llmedu.optim.AdamW on a decayed matrix, from state (m, v) after t - 1 steps."""
    optimizer = AdamW({"w": p.copy()}, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay, eps=eps)
    optimizer.load_state_dict({"step": np.array(t - 1), "m.w": m, "v.w": v})
    optimizer.step_reference({"w": g})
    return optimizer.params["w"], optimizer.m["w"], optimizer.v["w"]


@exercise("3.6", "AdamW update")
def adamw_update(learner) -> int:
    rng = _rng(5)
    shape = (3, 4)
    p, g = rng.standard_normal(shape), rng.standard_normal(shape)
    m, v = rng.standard_normal(shape) * 0.1, rng.random(shape) * 0.1
    zeros = np.zeros(shape)
    # (p, g, m, v, t, lr, beta1, beta2, eps, weight_decay): the first step, a later one, no decay, a zero
    # gradient, and gradients so small that eps matters (it goes outside the square root)
    cases = [(p, g, zeros, zeros, 1, 1e-2, 0.9, 0.95, 1e-8, 0.1),
             (p, g * 1e-3, zeros, zeros, 1, 1e-2, 0.9, 0.95, 1e-3, 0.1),
             (p, g, m, v, 10, 3e-3, 0.9, 0.99, 1e-8, 0.1),
             (p, g, m, v, 3, 1e-2, 0.8, 0.9, 1e-6, 0.0),
             (p, zeros, m, v, 100, 1e-3, 0.9, 0.95, 1e-8, 0.5)]
    for args in cases:
        _expect_arrays(learner, args, _adamw_reference(*args), ("new p", "new m", "new v"), rtol=1e-6, atol=1e-10)
    return len(cases)
