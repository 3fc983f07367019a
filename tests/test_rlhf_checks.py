"""Lesson 05's checks (5.1–5.5) pass the library's answers and catch the mistakes learners really make."""

import numpy as np
import pytest

from llmedu import arena, check, dpo, grpo, reward_model


# ------------------------------------------------ 5.1-5.4: the losses --

def bt_right(r_chosen, r_rejected):
    return reward_model.bradley_terry_loss(r_chosen, r_rejected)


def bt_summed(r_chosen, r_rejected):
    loss, d_c, d_r = bt_right(r_chosen, r_rejected)
    return loss * len(r_chosen), d_c * len(r_chosen), d_r * len(r_chosen)


def bt_naive_sigmoid(r_chosen, r_rejected):  # log(sigmoid(m)) with exp(-m): overflows for large margins
    m = r_chosen - r_rejected
    s = 1 / (1 + np.exp(-m))
    return float(np.mean(-np.log(s))), -(1 - s) / len(m), (1 - s) / len(m)


def reward_right(logits, last, reward_id):
    return reward_model.pair_loss(logits, last, reward_id)


def reward_at_the_row_end(logits, last, reward_id):  # ignores last: reads the padding's position
    return reward_right(logits, np.full_like(last, logits.shape[1] - 1), reward_id)


def dpo_right(pc, pr, rc, rr, beta):
    return dpo.dpo_loss(pc, pr, rc, rr, beta)


def dpo_without_reference(pc, pr, rc, rr, beta):
    return dpo.dpo_loss(pc, pr, 0 * rc, 0 * rr, beta)


def dpo_gradient_without_beta(pc, pr, rc, rr, beta):
    loss, d_c, d_r = dpo.dpo_loss(pc, pr, rc, rr, beta)
    return loss, d_c / beta, d_r / beta


def grpo_right(rewards, lp, old, mask, clip):
    return grpo.grpo_loss(lp, old, lp, grpo.group_advantages(rewards).reshape(-1), mask, clip, beta=0.0)


def grpo_unclipped(rewards, lp, old, mask, clip):
    return grpo_right(rewards, lp, old, mask, np.inf)


def grpo_centred_only(rewards, lp, old, mask, clip):  # no division by the group's standard deviation
    centred = (rewards - rewards.mean(axis=1, keepdims=True)).reshape(-1)
    return grpo.grpo_loss(lp, old, lp, centred, mask, clip, beta=0.0)


def grpo_mean_over_all_tokens(rewards, lp, old, mask, clip):  # one mean over every token, not per reply
    a = grpo.group_advantages(rewards).reshape(-1)[:, None]
    rho = np.exp(lp - old)
    unclipped, clipped = rho * a, np.clip(rho, 1 - clip, 1 + clip) * a
    scale = mask / mask.sum()
    return float(-(np.minimum(unclipped, clipped) * scale).sum()), -np.where(unclipped <= clipped, rho * a, 0) * scale


@pytest.mark.parametrize(("check_name", "right"), [("bradley_terry_loss", bt_right), ("reward_model_loss", reward_right),
                                                   ("dpo_loss", dpo_right), ("grpo_objective", grpo_right)])
def test_the_loss_checks_pass_the_library(check_name, right):
    getattr(check, check_name)(right)


@pytest.mark.parametrize(("check_name", "wrong", "advice"), [
    ("bradley_terry_loss", bt_summed, "the loss is their mean"),
    ("bradley_terry_loss", bt_naive_sigmoid, ""),
    ("reward_model_loss", reward_at_the_row_end, "the row's own final token"),
    ("dpo_loss", dpo_without_reference, "the reference is missing"),
    ("dpo_loss", dpo_gradient_without_beta, "multiplies the gradient by beta"),
    ("grpo_objective", grpo_unclipped, "the ratio is not clipped"),
    ("grpo_objective", grpo_centred_only, "standard deviation"),
    ("grpo_objective", grpo_mean_over_all_tokens, ""),
])
def test_the_loss_checks_reject_typical_mistakes(check_name, wrong, advice):
    with pytest.raises(AssertionError, match=advice):
        getattr(check, check_name)(wrong)


# ------------------------------------------------------- 5.5: ratings --


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
