"""Lesson 03's checks catch the mistakes learners really make, not only the blank stub."""

import numpy as np
import pytest

from llmedu import backward, check


def naive_cross_entropy(logits, targets):  # no max subtraction: overflows on large logits
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return float(-np.log(probs[np.arange(len(targets)), targets]).mean())


def forward_difference(f, x, eps=1e-6):  # one-sided, and forgets to restore x
    gradient = np.zeros_like(x)
    base = f(x)
    for i in np.ndindex(x.shape):
        x[i] += eps
        gradient[i] = (f(x) - base) / eps
    return gradient


def summed_cross_entropy_backward(logits, targets):  # gradient of the sum, not the mean
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    probs[np.arange(len(targets)), targets] -= 1
    return probs


def linear_backward_last_position_only(dout, x, w):  # dw from one position instead of the sum over all
    return dout @ w, np.outer(dout.reshape(-1, dout.shape[-1])[-1], x.reshape(-1, x.shape[-1])[-1])


def rmsnorm_backward_ignoring_r(dout, x, weight, eps):  # treats 1/rms as a constant
    r = 1 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return dout * weight * r, (dout * x * r).reshape(-1, x.shape[-1]).sum(axis=0)


def adam_without_bias_correction(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    p = p * (1 - lr * weight_decay)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return p - lr * m / (np.sqrt(v) + eps), m, v


def adam_with_eps_inside_the_square_root(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    p = p * (1 - lr * weight_decay)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return p - lr * (m / (1 - beta1 ** t)) / np.sqrt(v / (1 - beta2 ** t) + eps), m, v


def summed_cross_entropy(logits, targets):  # the sum over rows, not the mean
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(targets)), targets].sum())


def cross_entropy_shifted_on_one_side_only(logits, targets):  # subtracts the max in the log-sum-exp, not the logit
    shifted = logits - logits.max(axis=-1, keepdims=True)
    picked = logits[np.arange(len(targets)), targets]
    return float(-(picked - np.log(np.exp(shifted).sum(axis=-1))).mean())


def finite_difference_without_the_two(f, x, eps=1e-6):  # (f(x + eps) - f(x - eps)) / eps: twice the gradient
    return 2 * _central(f, x, eps)


def cross_entropy_backward_wrong_sign(logits, targets):
    return -backward.cross_entropy_backward(logits, targets, np.ones(len(targets)))


def cross_entropy_backward_without_max(logits, targets):  # exp(1000) overflows
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    probs[np.arange(len(targets)), targets] -= 1
    return probs / len(targets)


def linear_backward_dw_transposed(dout, x, w):  # x.T @ dout is (in, out); w is (out, in)
    return dout @ w, x.reshape(-1, x.shape[-1]).T @ dout.reshape(-1, dout.shape[-1])


def rmsnorm_backward_dweight_per_position(dout, x, weight, eps):  # dweight not summed over positions
    dx, _ = backward.rmsnorm_backward(dout, x, weight, eps)
    r = 1 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return dx, dout * x * r


def adam_with_l2_in_the_gradient(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):  # Adam + L2, not AdamW
    g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return p - lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps), m, v


def adam_decaying_after_the_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p = p - lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
    return p * (1 - lr * weight_decay), m, v


@pytest.mark.parametrize(("run_check", "mistake"), [
    (check.cross_entropy, naive_cross_entropy),
    (check.finite_difference, forward_difference),
    (check.cross_entropy_backward, summed_cross_entropy_backward),
    (check.linear_backward, linear_backward_last_position_only),
    (check.rmsnorm_backward, rmsnorm_backward_ignoring_r),
    (check.adamw_update, adam_without_bias_correction),
    (check.adamw_update, adam_with_eps_inside_the_square_root),
    (check.cross_entropy, summed_cross_entropy),
    (check.cross_entropy, cross_entropy_shifted_on_one_side_only),
    (check.finite_difference, finite_difference_without_the_two),
    (check.cross_entropy_backward, cross_entropy_backward_wrong_sign),
    (check.cross_entropy_backward, cross_entropy_backward_without_max),
    (check.linear_backward, linear_backward_dw_transposed),
    (check.rmsnorm_backward, rmsnorm_backward_dweight_per_position),
    (check.adamw_update, adam_with_l2_in_the_gradient),
    (check.adamw_update, adam_decaying_after_the_step),
], ids=lambda value: getattr(value, "__name__", ""))
def test_the_check_rejects_a_typical_mistake(run_check, mistake):
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match="Exercise 3"):
        run_check(mistake)


def central_difference_ignoring_eps(f, x, eps=1e-6):  # right formula, but a step of its own
    return _central(f, x, 1e-3)


def _central(f, x, step):
    gradient = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        original = x[i]
        x[i] = original + step
        f_plus = f(x)
        x[i] = original - step
        f_minus = f(x)
        x[i] = original
        gradient[i] = (f_plus - f_minus) / (2 * step)
    return gradient


def test_the_finite_difference_check_rejects_a_step_that_ignores_eps():
    with pytest.raises(AssertionError, match="Exercise 3.2"):
        check.finite_difference(central_difference_ignoring_eps)


def test_the_finite_difference_check_accepts_a_central_difference_that_honours_eps():
    check.finite_difference(lambda f, x, eps=1e-6: _central(f, x, eps))


def test_the_checks_accept_the_references(capsys):
    ones = np.ones  # the library's functions take per-row weights; the exercises do not
    check.cross_entropy(lambda logits, targets: backward.cross_entropy(logits, targets, ones(len(targets))))
    check.cross_entropy_backward(
        lambda logits, targets: backward.cross_entropy_backward(logits, targets, ones(len(targets))))
    check.linear_backward(backward.linear_backward)
    check.rmsnorm_backward(backward.rmsnorm_backward)
    assert capsys.readouterr().out.count("passed all") == 4


def test_a_wrong_gradient_names_the_array_and_its_first_wrong_index():
    with pytest.raises(AssertionError) as failure:
        check.rmsnorm_backward(rmsnorm_backward_dweight_per_position)
    message = str(failure.value)
    assert message.startswith("Exercise 3.5 (RMSNorm backward): for dout=array(")
    assert "dweight should have shape (1,)" in message
