"""Checks for lesson 05 (preference RLHF): Elo / Bradley–Terry ratings from votes (exercise 5.5).

Exercise 5.5 asks for

    elo_ratings(winners, losers, n_models) -> ratings

``winners`` and ``losers`` are integer arrays of one length V (models are
numbered 0 .. n_models-1): in vote k, model ``winners[k]`` was preferred to
model ``losers[k]``. The result is an array (n_models,) of Bradley–Terry
ratings on the Elo scale, fitted by maximum likelihood to all the votes at
once,

    P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)),

shifted so that their mean is 1000. Any method that converges will do
(gradient ascent, Newton, minorisation–maximisation); the answer must be
within 0.1 points of the reference, ``llmedu.arena.bradley_terry_ratings``
(whose tiny prior moves these fits by less than 0.02 points). A model that
won every vote has no finite maximum-likelihood rating: the learner's must
still be finite (a small prior, or a bounded number of steps) and the highest.
"""

import numpy as np

from llmedu.arena import ANCHOR, Votes, bradley_terry_ratings
from llmedu.checks.framework import exercise

TOLERANCE = 0.1  # Elo points


def _uneven_schedule() -> tuple[np.ndarray, np.ndarray]:
    """Votes among 4 models whose win shares mislead: model 1 meets mostly the strongest, model 2 mostly the weakest.

    Drawn from known ratings with a fixed seed; a cycle 0 > 1 > 2 > 3 > 0 is
    added so that every model has won and lost against the rest (the fit is finite).
    """
    rng = np.random.default_rng(55)
    truth = np.array([1250.0, 1100.0, 1000.0, 850.0])
    meetings = [(0, 1)] * 12 + [(1, 3)] * 2 + [(2, 3)] * 12 + [(0, 2)] * 2 + [(0, 3)] * 3 + [(1, 2)] * 3
    winners, losers = [0, 1, 2, 3], [1, 2, 3, 0]
    for i, j in meetings:
        i_won = rng.random() < 1 / (1 + 10 ** ((truth[j] - truth[i]) / 400))
        winners.append(i if i_won else j)
        losers.append(j if i_won else i)
    return np.array(winners), np.array(losers)


def _cases() -> list[tuple[np.ndarray, np.ndarray, int, str]]:
    """(winners, losers, n_models, what the case shows)."""
    uneven = _uneven_schedule()
    return [
        (np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0]), 2,
         "two models, 3 wins to 1: by hand, R_0 - R_1 = 400 log10(3) = 190.85, so 1095.42 and 904.58"),
        (np.array([0, 1, 2, 0, 0, 1]), np.array([1, 2, 0, 2, 1, 0]), 3, "three models, each has won and lost"),
        (*uneven, 4, "four models on an uneven schedule: model 1 met mostly the strongest, so its win share "
                     "understates it; only a fit of all the votes accounts for whom each model beat"),
    ]


def _mistakes(expected: np.ndarray, actual) -> list:
    """(wrong answer, advice) pairs for this case, each computed only when the answer is wrong."""
    centred = expected - ANCHOR
    return [
        (lambda: ANCHOR - centred, "the best model came out worst: winners[k] is the model that was preferred "
                                   "in vote k, losers[k] the one that was not"),
        (lambda: ANCHOR + centred * np.log(10),
         "the differences are ln(10) = 2.30 times too large: with 1 / (1 + e^((R_j - R_i)/400)) 400 points are "
         "e-to-1 odds; on the Elo scale they are 10-to-1: use 10 ** ((R_j - R_i) / 400)"),
        (lambda: ANCHOR + centred * np.log(10) / 400,
         "these look like log-odds strengths plus 1000: multiply the strengths by 400 / ln(10) to get Elo points"),
        (lambda: centred + np.mean(np.asarray(actual, dtype=float)),
         "the differences between the ratings are right, but votes fix only differences: shift the ratings so "
         "that their mean is 1000"),
    ]


def _check_order(learner, args: tuple, answer) -> None:
    """The same votes in reverse order must get the same ratings: Bradley–Terry fits all votes at once."""
    winners, losers, n_models = args
    reversed_answer = learner.call(winners[::-1].copy(), losers[::-1].copy(), n_models, shown=args)
    try:
        first, second = np.asarray(answer, dtype=float), np.asarray(reversed_answer, dtype=float)
        same = first.shape == second.shape and np.allclose(first, second, rtol=0, atol=TOLERANCE)
    except (TypeError, ValueError):
        return  # not arrays of numbers: the comparison with the reference says so
    if not same:
        learner.fail_because(args, f"your ratings depend on the order of the votes: {np.round(first, 2)} for "
                                   f"this order, {np.round(second, 2)} for the reverse order. Online Elo updates "
                                   "(R += K (1 - expected)) do; a Bradley–Terry fit of all the votes at once "
                                   "does not")


def _check_unbeaten(learner) -> None:
    """Model 0 won every vote: its rating must be finite and the highest, the mean still 1000."""
    winners, losers, n_models = np.array([0, 0, 0, 0, 1, 2]), np.array([1, 2, 1, 2, 2, 1]), 3
    args = (winners, losers, n_models)
    ratings = np.asarray(learner.call(winners.copy(), losers.copy(), n_models, shown=args), dtype=float)
    if ratings.shape != (n_models,) or not np.isfinite(ratings).all():
        learner.fail_because(args, f"model 0 won every vote, and your ratings are {np.round(ratings, 2)}: they must be "
                                   f"{n_models} finite numbers. An unbeaten model's likelihood keeps rising as "
                                   "its rating grows: add a tiny prior (a penalty like 1e-4 * strength**2 / 2) "
                                   "or stop after a fixed number of steps")
    if np.argmax(ratings) != 0 or abs(ratings.mean() - ANCHOR) > TOLERANCE:
        learner.fail_because(args, f"model 0 won every vote, so it must be rated highest, with the mean at "
                                   f"1000; your ratings are {np.round(ratings, 2)}")


@exercise("5.5", "Elo / Bradley–Terry ratings from votes")
def elo_ratings(learner) -> int:
    cases = _cases()
    for winners, losers, n_models, what in cases:
        args = (winners, losers, n_models)
        expected = bradley_terry_ratings(Votes.from_winners(winners, losers), n_models)
        actual = learner.call(winners.copy(), losers.copy(), n_models)
        _check_order(learner, args, actual)
        try:
            learner.expect_close(args, expected, actual, rtol=0, atol=TOLERANCE, what="the array of ratings",
                                 mistakes=_mistakes(expected, actual))
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n  (the case: {what})") from None
    _check_unbeaten(learner)
    return len(cases) + 1
