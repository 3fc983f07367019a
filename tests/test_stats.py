"""Wilson intervals for measured rates."""

import pytest

from llmedu.stats import wilson_interval


def test_wilson_interval_matches_a_hand_computed_value():
    # 8 of 10: centre (0.8 + 0.19208) / 1.38416 = 0.7167, half-width 0.2258 -> (0.490, 0.943)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)


def test_all_or_nothing_still_has_width():
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(0, 20)[1] > 0.1
    assert wilson_interval(20, 20)[1] == 1.0 and wilson_interval(20, 20)[0] < 0.9


def test_more_questions_narrow_the_interval():
    narrow, wide = wilson_interval(500, 1000), wilson_interval(5, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_impossible_counts_are_refused():
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(3, 2)
