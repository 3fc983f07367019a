"""Lesson 05's losses, each checked by finite differences (float64): alone, and through the whole model."""

from types import SimpleNamespace

import numpy as np
import pytest
from test_backward import CONFIGS, FD_TOL, float64_params, numeric_grad, rel_err

from llmedu import logprobs
from llmedu.comparison_corpus import PairBatch
from llmedu.dpo import DPOObjective, dpo_loss
from llmedu.grpo import group_advantages, grpo_loss, kl_k3, year_reward
from llmedu.reward_model import RewardObjective, bradley_terry_loss


def test_bradley_terry_loss_of_a_hand_checkable_pair():
    loss, d_chosen, d_rejected = bradley_terry_loss(np.array([1.0]), np.array([1.0]))
    assert loss == pytest.approx(np.log(2)) and d_chosen[0] == pytest.approx(-0.5) and d_rejected[0] == 0.5


def test_bradley_terry_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    r_c, r_r = rng.normal(size=5) * 3, rng.normal(size=5) * 3
    _, d_chosen, d_rejected = bradley_terry_loss(r_c, r_r)
    assert rel_err(d_chosen, numeric_grad(lambda: bradley_terry_loss(r_c, r_r)[0], r_c)) <= FD_TOL
    assert rel_err(d_rejected, numeric_grad(lambda: bradley_terry_loss(r_c, r_r)[0], r_r)) <= FD_TOL


def test_bradley_terry_loss_stays_finite_for_huge_margins():
    loss, d_chosen, _ = bradley_terry_loss(np.array([1000.0, -1000.0]), np.array([-1000.0, 1000.0]))
    assert np.isfinite(loss) and np.all(np.isfinite(d_chosen))


def test_dpo_loss_is_log_2_when_the_policy_is_the_reference():
    logp = np.array([-3.0, -7.0])
    loss, d_chosen, d_rejected = dpo_loss(logp, logp - 1, logp, logp - 1, beta=0.1)
    assert loss == pytest.approx(np.log(2)) and np.allclose(d_chosen, -0.1 * 0.5 / 2) and np.allclose(d_rejected, -d_chosen)


def test_dpo_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    pc, pr, rc, rr = (rng.normal(size=4) * 5 for _ in range(4))
    _, d_chosen, d_rejected = dpo_loss(pc, pr, rc, rr, beta=0.3)
    assert rel_err(d_chosen, numeric_grad(lambda: dpo_loss(pc, pr, rc, rr, beta=0.3)[0], pc)) <= FD_TOL
    assert rel_err(d_rejected, numeric_grad(lambda: dpo_loss(pc, pr, rc, rr, beta=0.3)[0], pr)) <= FD_TOL


def test_weighted_logprob_dlogits_match_finite_differences():
    rng = np.random.default_rng(2)
    logits, targets, weights = rng.normal(size=(2, 3, 5)), rng.integers(0, 5, (2, 3)), rng.normal(size=(2, 3))

    def f():
        return float((logprobs.token_logprobs(logits, targets) * weights).sum())

    grad = logprobs.weighted_logprob_dlogits(logits, targets, weights)
    assert rel_err(grad.reshape(-1), numeric_grad(f, logits)) <= FD_TOL


def pair_batch(config, seed, n=2, length=5):
    """N random pairs of rows of ``length`` tokens; the 'reply' is the second half, the rows end at random places."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, config.vocab_size, (2 * n, length))
    mask = np.zeros((2 * n, length))
    mask[:, length // 2:] = 1
    last = rng.integers(length // 2, length, 2 * n)
    return PairBatch(ids, mask, last, np.arange(n), "train")


def check_through_the_model(objective, config, batch, seed):
    """The objective's gradient for every tensor equals central differences of its loss."""
    params = float64_params(config, seed)
    loss, grads = objective.loss_and_grads(params, config, batch)
    assert loss == pytest.approx(objective.loss(params, config, batch), rel=1e-12)
    rng = np.random.default_rng(seed + 1)
    for name, p in params.items():
        g = grads[name]
        flat = list(rng.choice(p.size, 3, replace=False)) + list(np.argsort(np.abs(g).ravel())[-2:])
        entries = [np.unravel_index(i, p.shape) for i in flat]
        numeric = numeric_grad(lambda: objective.loss(params, config, batch), p, entries)
        assert rel_err(np.array([g[i] for i in entries]), numeric) <= FD_TOL, name


def test_reward_model_gradients_through_the_model_match_finite_differences():
    config = CONFIGS["gqa"]
    check_through_the_model(RewardObjective(reward_id=3), config, pair_batch(config, seed=3), seed=4)


def test_dpo_gradients_through_the_model_match_finite_differences():
    config = CONFIGS["gqa"]
    reference = np.random.default_rng(5).normal(size=(2, 2)) - 4  # (pairs, 2): log ref of chosen, rejected
    objective = DPOObjective(SimpleNamespace(extra={"reference_train": reference}), beta=0.5)
    check_through_the_model(objective, config, pair_batch(config, seed=6, length=6), seed=7)


# ----------------------------------------------------------------- GRPO --

def grpo_inputs(seed, n=4, t=5):
    rng = np.random.default_rng(seed)
    lp, ref = -rng.random((n, t)) * 3, -rng.random((n, t)) * 3
    old = lp + rng.normal(size=(n, t)) * 0.3  # rho = exp(lp - old) away from 1, some of it clipped
    mask = (rng.random((n, t)) < 0.7).astype(float)
    mask[:, 0] = 1
    return lp, old, ref, rng.normal(size=n), mask


def test_grpo_gradient_matches_finite_differences_with_the_clip_active():
    lp, old, ref, advantages, mask = grpo_inputs(8)
    rho = np.exp(lp - old)
    assert np.any((rho < 0.8) | (rho > 1.2))  # the case the clip changes
    _, d_lp = grpo_loss(lp, old, ref, advantages, mask, clip=0.2, beta=0.1)
    numeric = numeric_grad(lambda: grpo_loss(lp, old, ref, advantages, mask, clip=0.2, beta=0.1)[0], lp)
    assert rel_err(d_lp.reshape(-1), numeric) <= FD_TOL


def test_grpo_loss_of_hand_checkable_replies():
    # one token each, policy = sampler = reference: rho = 1, k3 = 0, loss = -mean(A)
    zeros = np.zeros((2, 1))
    loss, d_lp = grpo_loss(zeros, zeros, zeros, np.array([1.0, -3.0]), np.ones((2, 1)))
    assert loss == pytest.approx(1.0) and np.allclose(d_lp[:, 0], [-0.5, 1.5])


def test_group_advantages_are_zero_for_a_group_that_scores_alike():
    advantages = group_advantages(np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    assert np.allclose(advantages[0], [1, -1, -1, 1], atol=1e-5) and np.all(advantages[1] == 0)


def test_year_reward_checks_the_name_and_the_one_year():
    from llmedu.sft_data import Example

    example = Example([], "fact", "Ilsa Varrow", "birth_year", "1812", "heldout_people")
    assert year_reward(example, "Ilsa Varrow was born in 1812.") == 1.0
    assert year_reward(example, "Ilsa Varrom was born in 1812.") == 0.0  # another name
    assert year_reward(example, "Ilsa Varrow was born in 1812 or 1813.") == 0.0  # hedging is not an answer
    assert year_reward(example, "Ilsa Varrow was born in 1821.") == 0.0


def test_k3_is_zero_at_the_reference_and_positive_elsewhere():
    lp = np.log(np.array([[0.5, 0.2]]))
    assert kl_k3(lp, lp, np.ones((1, 2))) == 0.0
    assert kl_k3(lp, lp - 0.3, np.ones((1, 2))) > 0
