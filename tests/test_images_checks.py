"""Lesson 08's check 8.5 (nearest codebook token) accepts the library's answer and rejects the typical mistakes."""

import numpy as np
import pytest

from llmedu.checks import images as checks
from llmedu.images import nearest_code


def test_the_check_passes_on_the_library(capsys):
    checks.nearest_code(nearest_code)
    assert "passed all" in capsys.readouterr().out


def test_the_check_fails_on_the_lessons_stub():
    def stub(patches, codebook):
        raise NotImplementedError("Exercise 8.5: each patch's nearest codebook token")

    with pytest.raises(AssertionError, match="(?s)Exercise 8.5.*raised NotImplementedError"):
        checks.nearest_code(stub)


def largest_dot_product(patches, codebook):
    return (patches @ codebook.T).argmax(1)


def wrong_axis(patches, codebook):
    return ((patches[:, None] - codebook[None]) ** 2).sum(-1).argmin(0)


def l1_distance(patches, codebook):
    return np.abs(patches[:, None] - codebook[None]).sum(-1).argmin(1)


def ties_to_the_last(patches, codebook):
    distances = ((patches[:, None] - codebook[None]) ** 2).sum(-1)
    return len(codebook) - 1 - distances[:, ::-1].argmin(1)


def float_tokens(patches, codebook):
    return nearest_code(patches, codebook).astype(float)


@pytest.mark.parametrize("wrong, says", [
    (largest_dot_product, "dot product"), (wrong_axis, "shape"), (l1_distance, "L1"),
    (ties_to_the_last, "lower index"), (float_tokens, "integer"),
])
def test_the_check_rejects_a_typical_mistake(wrong, says):
    with pytest.raises(AssertionError, match=says):
        checks.nearest_code(wrong)
