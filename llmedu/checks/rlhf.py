"""Checks for lesson 05 (preference RLHF): the Bradley–Terry loss (5.1), the reward model's loss (5.2), the DPO
loss (5.3), GRPO's objective (5.4) and Elo / Bradley–Terry ratings from votes (5.5).

The references are ``llmedu.reward_model`` (``bradley_terry_loss``,
``pair_loss``), ``llmedu.dpo.dpo_loss``, ``llmedu.grpo`` (``group_advantages``,
``grpo_loss`` with its KL weight at 0) and ``llmedu.arena``. Exercise 5.5 asks for

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

from llmedu import dpo, grpo, reward_model
from llmedu.arena import ANCHOR, Votes, bradley_terry_ratings
from llmedu.checks.framework import exercise

# --------------------------------------------------------------- 5.1 --

def _triple(learner, args, actual, what: str):
    """The learner's (loss, d_first, d_second) as floats and arrays, or a failure that says what to return."""
    try:
        loss, d_first, d_second = actual
        return float(loss), np.asarray(d_first, dtype=float), np.asarray(d_second, dtype=float)
    except (TypeError, ValueError):
        learner.fail(args, f"(loss, {what})", actual, f"return three things: the mean loss and {what}")


def _pairs_of_rewards():
    rng = np.random.default_rng(51)
    return [(np.array([1.0]), np.array([1.0])),  # equal rewards: loss log 2, gradients -1/2 and +1/2
            (rng.normal(size=6) * 2, rng.normal(size=6) * 2),
            (np.array([800.0, -800.0]), np.array([-800.0, 800.0]))]  # huge margins: exp overflows unless kept stable


@exercise("5.1", "the Bradley–Terry loss and its gradient")
def bradley_terry_loss(learner) -> int:
    cases = _pairs_of_rewards()
    for r_chosen, r_rejected in cases:
        args = (r_chosen, r_rejected)
        loss, d_chosen, d_rejected = reward_model.bradley_terry_loss(r_chosen, r_rejected)
        got = _triple(learner, args, learner.call(r_chosen.copy(), r_rejected.copy()), "d loss/d r_chosen, d loss/d r_rejected")
        n = len(r_chosen)
        learner.expect_close(args, np.array(loss), np.array(got[0]), what="the loss", mistakes=[
            (lambda: loss * n, "that is the sum over the pairs: the loss is their mean"),
            (lambda: np.mean(np.logaddexp(0.0, r_chosen - r_rejected)), "the sign is flipped: -log sigmoid(r_c - r_r)")])
        learner.expect_close(args, d_chosen, got[1], what="d loss / d r_chosen", mistakes=[
            (lambda: d_chosen * n, "the gradient of the mean carries the 1/N of the mean"),
            (lambda: -d_chosen, "the sign is flipped: raising r_chosen lowers the loss, so its gradient is negative")])
        learner.expect_close(args, d_rejected, got[2], what="d loss / d r_rejected")
    return len(cases)


# --------------------------------------------------------------- 5.2 --

def _reward_batches():
    """(logits (2N, T, V), last (2N,), reward_id): rows end at different places, as padded batches do."""
    rng = np.random.default_rng(52)
    return [(rng.normal(size=(2, 3, 5)), np.array([2, 2]), 4),
            (rng.normal(size=(6, 5, 7)) * 2, np.array([4, 1, 3, 2, 4, 0]), 0)]




@exercise("5.2", "the reward model's loss and d loss / d logits", uses=("bradley_terry_loss",))
def reward_model_loss(learner) -> int:
    cases = _reward_batches()
    for logits, last, reward_id in cases:
        args = (logits, last, reward_id)
        loss, dlogits = reward_model.pair_loss(logits, last, reward_id)
        try:
            got_loss, got_dlogits = learner.call(logits.copy(), last.copy(), reward_id)
        except (TypeError, ValueError):
            learner.fail_because(args, "return a pair: the loss and dlogits, an array shaped like logits")
        at_end = reward_model.pair_loss(logits, np.full_like(last, logits.shape[1] - 1), reward_id)
        learner.expect_close(args, np.array(loss), np.array(float(got_loss)), what="the loss", mistakes=[
            (lambda: at_end[0], "that reads the reward at the last position of every row: read it at last[row], "
                                "the row's own final token (after it comes padding)")])
        learner.expect_close(args, dlogits, got_dlogits, what="dlogits", mistakes=[
            (lambda: at_end[1], "d loss / d logits is non-zero only at (row, last[row], reward_id)")])
    return len(cases)


# --------------------------------------------------------------- 5.3 --

@exercise("5.3", "the DPO loss and its per-sequence gradient weights")
def dpo_loss(learner) -> int:
    rng = np.random.default_rng(53)
    cases = [(np.array([-3.0]), np.array([-5.0]), np.array([-3.0]), np.array([-5.0]), 0.1),  # at the reference: log 2
             (rng.normal(size=5) * 4 - 10, rng.normal(size=5) * 4 - 10, rng.normal(size=5) * 4 - 10,
              rng.normal(size=5) * 4 - 10, 0.5),
             (np.array([-1.0, -900.0]), np.array([-900.0, -1.0]), np.array([-2.0, -2.0]), np.array([-2.0, -2.0]), 1.0)]
    for pc, pr, rc, rr, beta in cases:
        args = (pc, pr, rc, rr, beta)
        loss, d_chosen, d_rejected = dpo.dpo_loss(pc, pr, rc, rr, beta)
        got = _triple(learner, args, learner.call(pc.copy(), pr.copy(), rc.copy(), rr.copy(), beta),
                      "d loss/d log pi(chosen), d loss/d log pi(rejected)")
        no_reference = dpo.dpo_loss(pc, pr, 0 * rc, 0 * rr, beta)
        learner.expect_close(args, np.array(loss), np.array(got[0]), what="the loss", mistakes=[
            (lambda: no_reference[0], "the reference is missing: z = beta ((log pi_c - log ref_c) - (log pi_r - "
                                      "log ref_r))"),
            (lambda: loss * len(pc), "that is the sum over the pairs: the loss is their mean")])
        learner.expect_close(args, d_chosen, got[1], what="d loss / d log pi(chosen)", mistakes=[
            (lambda: d_chosen / beta, "the chain rule through z = beta (...) multiplies the gradient by beta")])
        learner.expect_close(args, d_rejected, got[2], what="d loss / d log pi(rejected)")
    return len(cases)


# --------------------------------------------------------------- 5.4 --

def _grpo_cases():
    """(rewards (P, G), lp, old, mask (P*G, T), clip): rho near 1, and far from it so that the clip acts."""
    rng = np.random.default_rng(54)
    cases = []
    for spread in (0.0, 0.5):
        rewards = rng.integers(0, 2, size=(3, 4)).astype(float)
        rewards[2] = 1.0  # a group that scores alike: its advantages are 0
        lp = -rng.random((12, 5)) * 3
        mask = (rng.random((12, 5)) < 0.7).astype(float)
        mask[:, 0] = 1
        cases.append((rewards, lp, lp + rng.normal(size=lp.shape) * spread, mask, 0.2))
    return cases


@exercise("5.4", "group-normalised advantages and the clipped objective")
def grpo_objective(learner) -> int:
    cases = _grpo_cases()
    for rewards, lp, old, mask, clip in cases:
        args = (rewards, lp, old, mask, clip)
        advantages = grpo.group_advantages(rewards).reshape(-1)
        loss, d_lp = grpo.grpo_loss(lp, old, lp, advantages, mask, clip, beta=0.0)
        try:
            got_loss, got_d = learner.call(rewards.copy(), lp.copy(), old.copy(), mask.copy(), clip)
        except (TypeError, ValueError):
            learner.fail_because(args, "return a pair: the loss and d loss / d lp, an array shaped like lp")
        centred = (rewards - rewards.mean(axis=1, keepdims=True)).reshape(-1)
        unclipped = grpo.grpo_loss(lp, old, lp, advantages, mask, np.inf, beta=0.0)
        learner.expect_close(args, np.array(loss), np.array(float(got_loss)), what="the loss", mistakes=[
            (lambda: grpo.grpo_loss(lp, old, lp, centred, mask, clip, beta=0.0)[0],
             "the advantages are centred but not divided by the group's standard deviation"),
            (lambda: unclipped[0], "the ratio is not clipped: min(rho A, clip(rho, 1 - clip, 1 + clip) A)")])
        learner.expect_close(args, d_lp, np.asarray(got_d, dtype=float), what="d loss / d lp", mistakes=[
            (lambda: unclipped[1], "where the min takes the clipped term, rho is held: its gradient there is 0"),
            (lambda: grpo.grpo_loss(lp, old, lp, centred, mask, clip, beta=0.0)[1],
             "the advantages are centred but not divided by the group's standard deviation")])
    return len(cases)


# --------------------------------------------------------------- 5.5 --

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
