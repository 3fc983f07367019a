"""Lesson 08's exercise 8.1 check (fitting a power law) accepts the reference and rejects the typical mistakes."""

import numpy as np
import pytest

from llmedu.checks import scaling as checks
from llmedu.scaling_fit import fit_power_law


def test_the_reference_passes(capsys):
    checks.fit_power_law(fit_power_law)
    assert "passed all" in capsys.readouterr().out


def test_a_polyfit_solution_passes_too(capsys):
    def with_polyfit(n, loss):
        slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
        return np.exp(intercept), -slope

    checks.fit_power_law(with_polyfit)
    assert "passed all" in capsys.readouterr().out


def stub(n, loss):
    raise NotImplementedError("Exercise 8.1: fit a power law")


def alpha_is_the_slope(n, loss):
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return np.exp(intercept), slope


def log10_then_exp(n, loss):
    slope, intercept = np.polyfit(np.log10(n), np.log10(loss), 1)
    return np.exp(intercept), -slope


def line_through_the_loss(n, loss):
    slope, intercept = np.polyfit(np.log(n), loss, 1)
    return np.exp(intercept), -slope


def intercept_for_a(n, loss):
    slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
    return intercept, -slope


@pytest.mark.parametrize("wrong, says", [
    (stub, "NotImplementedError"),
    (alpha_is_the_slope, "wrong sign"),
    (log10_then_exp, "10\\*\\*intercept"),
    (line_through_the_loss, "fit log\\(loss\\), not the loss"),
    (intercept_for_a, "a is exp\\(intercept\\)"),
])
def test_a_typical_mistake_is_rejected_with_advice(wrong, says):
    with pytest.raises(AssertionError, match=f"Exercise 8.1(.|\n)*{says}"):
        checks.fit_power_law(wrong)


def test_an_answer_that_is_not_a_pair_is_rejected():
    with pytest.raises(AssertionError, match="return the pair"):
        checks.fit_power_law(lambda n, loss: 1.0)
