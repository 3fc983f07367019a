"""Lesson 05's check for exercise 5.5 (Elo / Bradley–Terry ratings) catches the mistakes learners really make."""

import numpy as np
import pytest

from llmedu import arena, check


def elo_right(winners, losers, n_models):
    return arena.bradley_terry_ratings(arena.Votes.from_winners(winners, losers), n_models)


def elo_by_gradient_ascent(winners, losers, n_models):
    """A learner's own fit: plain gradient ascent on the log-likelihood, no prior, run to convergence."""
    strength = np.zeros(n_models)
    for _ in range(20_000):
        surprise = 1 / (1 + np.exp(strength[winners] - strength[losers]))  # 1 - P(winner beats loser)
        gradient = np.bincount(winners, surprise, n_models) - np.bincount(losers, surprise, n_models)
        strength += 0.1 * gradient
    return 1000 + 400 / np.log(10) * (strength - strength.mean())


def elo_online_updates(winners, losers, n_models):  # the classic chess update: depends on the order of the votes
    ratings = np.full(n_models, 1000.0)
    for w, l in zip(winners, losers):
        change = 32 * (1 - 1 / (1 + 10 ** ((ratings[l] - ratings[w]) / 400)))
        ratings[w] += change
        ratings[l] -= change
    return ratings


def elo_natural_log(winners, losers, n_models):  # P = 1 / (1 + e^((R_j - R_i)/400)): 400 points are e-to-1 odds
    return 1000 + (elo_right(winners, losers, n_models) - 1000) * np.log(10)


def elo_without_the_anchor(winners, losers, n_models):  # a fit from zeros, never shifted to mean 1000
    return elo_right(winners, losers, n_models) - 1000


def elo_anchoring_the_first_model(winners, losers, n_models):  # model 0 at 1000 instead of the mean
    ratings = elo_right(winners, losers, n_models)
    return ratings - ratings[0] + 1000


def elo_from_win_counts(winners, losers, n_models):  # each model's own win/loss odds, not a fit of who beat whom
    won, lost = np.bincount(winners, minlength=n_models), np.bincount(losers, minlength=n_models)
    ratings = 200 * np.log10(won / lost)  # right for two models; blind to whom each model met
    return ratings - ratings.mean() + 1000


def elo_swapping_winners_and_losers(winners, losers, n_models):
    return elo_right(losers, winners, n_models)


def elo_infinite_for_an_unbeaten_model(winners, losers, n_models):  # the maximum-likelihood fit, no prior
    ratings = elo_right(winners, losers, n_models)
    ratings[np.isin(np.arange(n_models), losers, invert=True)] = np.inf
    return ratings


def test_the_check_accepts_the_library_and_a_learners_gradient_ascent(capsys):
    check.elo_ratings(elo_right)
    check.elo_ratings(elo_by_gradient_ascent)
    assert capsys.readouterr().out.count("passed all") == 2


@pytest.mark.parametrize("mistake", [
    elo_online_updates, elo_natural_log, elo_without_the_anchor, elo_anchoring_the_first_model, elo_from_win_counts,
    elo_swapping_winners_and_losers, elo_infinite_for_an_unbeaten_model,
], ids=lambda f: f.__name__)
def test_the_check_rejects_a_typical_mistake(mistake):
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match="Exercise 5.5"):
        check.elo_ratings(mistake)


@pytest.mark.parametrize(("mistake", "advice"), [
    (elo_online_updates, "depend on the order of the votes"),
    (elo_natural_log, "10-to-1"),
    (elo_without_the_anchor, "mean is 1000"),
    (elo_anchoring_the_first_model, "mean is 1000"),
    (elo_swapping_winners_and_losers, "winners\\[k\\] is the model that was preferred"),
    (elo_infinite_for_an_unbeaten_model, "finite"),
], ids=lambda value: getattr(value, "__name__", ""))
def test_a_mistake_is_told_what_is_wrong(mistake, advice):
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match=advice):
        check.elo_ratings(mistake)


def test_the_hand_checkable_case_is_shown_with_its_answer():
    with pytest.raises(AssertionError, match=r"400 log10\(3\) = 190.85"):
        check.elo_ratings(elo_natural_log)
