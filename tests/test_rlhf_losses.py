"""Lesson 05's losses, each checked by finite differences (float64): alone, and through the whole model."""

from types import SimpleNamespace

import numpy as np
import pytest
from test_backward import CONFIGS, FD_TOL, float64_params, numeric_grad, rel_err

from llmedu import logprobs
from llmedu.comparison_corpus import PairBatch
from llmedu.dpo import DPOObjective, dpo_loss
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
