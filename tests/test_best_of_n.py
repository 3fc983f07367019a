"""Best-of-n against a reward model (lesson 05): the KL formula, the picks, the curve, and `llmedu rlhf best-of-n`."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tiny_models import save_tiny_models

from llmedu.best_of_n import (best_of_n_curve, best_of_n_picks, curve_from_scores, gold_scorer, kl_bound,
                              over_optimisation, powers_of_two)
from llmedu.chat_model import eval_questions, load_chat_model
from llmedu.preference import split_by_subject


def test_kl_of_one_sample_is_zero_and_of_two_is_log_2_minus_a_half():
    assert kl_bound(1) == 0.0
    assert kl_bound(2) == pytest.approx(math.log(2) - 0.5)


def test_ns_are_the_powers_of_two_up_to_max_n_and_max_n_itself():
    assert powers_of_two(64) == (1, 2, 4, 8, 16, 32, 64)
    assert powers_of_two(12) == (1, 2, 4, 8, 12)


def test_the_pick_is_the_argmax_of_the_proxy_among_the_first_n_only():
    proxy = np.array([[0.1, 0.5, 0.2, 9.0],
                      [3.0, 1.0, 2.0, 0.0]])
    assert best_of_n_picks(proxy, 1).tolist() == [0, 0]
    assert best_of_n_picks(proxy, 3).tolist() == [1, 0]  # the 9.0 is the fourth sample: not among the first 3
    assert best_of_n_picks(proxy, 4).tolist() == [3, 0]


def test_the_curve_reports_the_gold_reward_of_the_proxy_pick_and_the_oracle_of_the_first_n():
    proxy = np.array([[0.0, 1.0], [1.0, 0.0]])
    gold = np.array([[2.0, 0.0], [1.0, 2.0]])  # the proxy picks the worse reply in both rows at n = 2
    curve = curve_from_scores(proxy, gold, ns=(1, 2))
    assert curve["gold"] == [1.5, 0.5] and curve["proxy"] == [0.5, 1.0] and curve["oracle"] == [1.5, 2.0]
    assert curve["kl"] == [0.0, pytest.approx(math.log(2) - 0.5)]


def test_a_gold_reward_falling_while_the_proxy_rises_is_called_over_optimisation():
    rng = np.random.default_rng(0)
    proxy = np.tile([0.0, 1.0, 2.0, 3.0], (30, 1))  # (questions, samples): later samples look better...
    gold = np.tile([2.0, 1.5, 1.0, 0.0], (30, 1)) + rng.normal(0, 0.3, (30, 4))  # ...and are worse
    curve = curve_from_scores(proxy, gold, ns=(1, 2, 4))
    assert curve["gold_peak_n"] == 1 and curve["gold_fall"] == pytest.approx(2.0, abs=0.3)
    assert over_optimisation(curve).startswith("Over-optimisation shows")


def test_a_gold_reward_still_rising_at_the_largest_n_is_not_over_optimisation():
    scores = np.random.default_rng(0).normal(size=(30, 4))
    assert over_optimisation(curve_from_scores(scores, scores, ns=(1, 2, 4))).startswith("No over-optimisation")


def test_a_dip_within_noise_is_not_called_over_optimisation():
    proxy = np.tile([0.0, 1.0], (30, 1))
    first = np.linspace(0.0, 2.0, 30)
    second = first - 0.05 + np.tile([1.0, -1.0], 15)  # worse by 0.05 on average, give or take 1 per question
    gold = np.stack([first, second], axis=1)
    curve = curve_from_scores(proxy, gold, ns=(1, 2))
    assert curve["gold_peak_n"] == 1 and over_optimisation(curve).startswith("No clear over-optimisation")


@pytest.fixture(scope="module")
def shipped():
    """The shipped chat model and a few held-out questions of every kind."""
    params, config, tokenizer, card = load_chat_model()
    world, data = eval_questions(card)
    held_out = split_by_subject(data.eval, seed=1337)[1]
    others = [next(e for e in held_out if e.kind == kind) for kind in ("unknown", "refusal")]
    questions = held_out[:4] + others  # the held-out half lists its fact questions first
    return (params, config, tokenizer), world, questions


def test_with_the_gold_reward_as_proxy_the_gold_curve_is_the_proxy_curve_and_rises_with_n(shipped):
    policy, world, questions = shipped
    curve = best_of_n_curve(policy, gold_scorer(world, policy[2]), questions, world, ns=(1, 2, 4, 8), seed=0,
                            max_new_tokens=24)
    assert curve["gold"] == curve["proxy"] == curve["oracle"]
    assert all(b >= a for a, b in zip(curve["gold"], curve["gold"][1:])) and curve["gold"][-1] > curve["gold"][0]


def test_the_same_seed_gives_the_same_curve(shipped):
    policy, world, questions = shipped
    score = gold_scorer(world, policy[2])
    first, second = (best_of_n_curve(policy, score, questions[:3], world, ns=(1, 4), seed=7, max_new_tokens=24)
                     for _ in range(2))
    for key in ("proxy", "gold", "oracle", "distinct_replies"):
        assert first[key] == second[key]


# --------------------------------------------------------- command line --

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A random chat model and a random reward model (another parameters file of the same shape)."""
    return tuple(save_tiny_models(tmp_path_factory.mktemp("models"), {"chat": 0, "reward": 1}, max_seq_len=96))


def best_of_n_cli(*args):
    return subprocess.run([sys.executable, "-m", "llmedu.cli", "rlhf", "best-of-n", *map(str, args)],
                          capture_output=True, text=True)


def test_the_command_prints_the_table_and_writes_json_and_png(tiny_models, tmp_path):
    chat, reward = tiny_models
    done = best_of_n_cli("--model", chat, "--reward-model", reward, "--questions", 3, "--max-n", 4,
                         "--max-new-tokens", 6, "--world-people", 30, "--out", tmp_path, "--no-progress")
    assert done.returncode == 0, done.stderr
    curve = json.loads((tmp_path / "best_of_n.json").read_text(encoding="utf-8"))
    assert curve["n"] == [1, 2, 4] and len(curve["gold"]) == len(curve["proxy"]) == 3 and curve["questions"] == 3
    assert (tmp_path / "best_of_n.png").stat().st_size > 0
    assert done.stdout.splitlines()[0].split()[:2] == ["n", "KL"]


def test_a_missing_reward_model_is_a_clear_error(tiny_models, tmp_path):
    done = best_of_n_cli("--model", tiny_models[0], "--reward-model", tmp_path / "nothing", "--out", tmp_path)
    assert done.returncode == 2 and "llmedu rlhf best-of-n:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "best_of_n.json").exists()
