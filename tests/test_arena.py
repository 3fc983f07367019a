"""The arena (lesson 05): Bradley–Terry ratings on the Elo scale, bootstrap intervals, ranks, and `llmedu arena`."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tiny_models import save_tiny_models

from llmedu.arena import (
    ANCHOR, Votes, bootstrap, bradley_terry_ratings, collect_votes, held_out_questions, leaderboard, ranks,
    win_probability,
)
from llmedu.preference import split_by_subject

TRUTH = np.array([1200.0, 1100.0, 1000.0, 900.0, 800.0])  # mean 1000, as the fit reports


def simulated_votes(truth: np.ndarray, n_votes: int, seed: int) -> Votes:
    """Votes between random pairs of models whose true ratings are ``truth``, each outcome drawn on the Elo scale."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(truth), n_votes)
    b = (a + rng.integers(1, len(truth), n_votes)) % len(truth)  # never a itself
    return Votes(a, b, rng.random(n_votes) < win_probability(truth[a], truth[b]))


# ------------------------------------------------------------------ the fit --

def test_three_wins_to_one_is_400_log10_3_apart_around_1000():
    ratings = bradley_terry_ratings(Votes.from_winners([0, 0, 0, 1], [1, 1, 1, 0]), 2)
    assert ratings[0] - ratings[1] == pytest.approx(400 * np.log10(3), abs=0.02)  # the prior moves it by 0.013
    assert ratings.mean() == pytest.approx(ANCHOR)


def test_which_side_a_vote_was_recorded_on_does_not_matter():
    as_winners = Votes.from_winners([0, 0, 0, 1], [1, 1, 1, 0])
    mixed = Votes([1, 0, 1, 0], [0, 1, 0, 1], [False, True, False, False])  # the same four outcomes
    np.testing.assert_allclose(bradley_terry_ratings(mixed, 2), bradley_terry_ratings(as_winners, 2))


def test_many_simulated_votes_recover_the_true_ratings():
    ratings = bradley_terry_ratings(simulated_votes(TRUTH, 40_000, seed=1), len(TRUTH))
    np.testing.assert_allclose(ratings, TRUTH, atol=10)


def test_an_unbeaten_model_gets_a_finite_rating_above_the_rest():
    votes = Votes.from_winners([0] * 20 + [1, 2, 1], [1] * 10 + [2] * 10 + [2, 1, 2])
    ratings = bradley_terry_ratings(votes, 3)
    assert np.isfinite(ratings).all() and np.argmax(ratings) == 0
    assert ratings.mean() == pytest.approx(ANCHOR)


def test_a_model_without_votes_is_rated_at_the_anchor():
    ratings = bradley_terry_ratings(Votes.from_winners([0, 0, 1], [1, 1, 0]), 3)
    assert ratings[2] == pytest.approx(ANCHOR, abs=1e-6)


def test_a_vote_of_a_model_against_itself_is_refused():
    with pytest.raises(ValueError, match="cannot meet itself"):
        Votes.from_winners([0, 1], [1, 1])


# ------------------------------------------------------------ the labeller --

def test_collect_votes_prefers_the_reply_with_the_higher_gold_reward_most_of_the_time():
    gold = {"good": np.full(300, 2.0), "bad": np.zeros(300)}  # a gap of 2 at noise 0.4: P = sigmoid(5) = 0.993
    votes = collect_votes(gold, np.random.default_rng(0))
    assert len(votes) == 300 and set(votes.prompt) == set(range(300))
    assert 0.97 < np.mean(votes.winners == 0) < 1.0


def test_collect_votes_shows_every_pair_by_default_and_fewer_when_asked():
    gold = {name: np.zeros(10) for name in "abcd"}
    assert len(collect_votes(gold, np.random.default_rng(0))) == 10 * 6
    assert len(collect_votes(gold, np.random.default_rng(0), pairs_per_prompt=2)) == 10 * 2


def test_equal_replies_are_a_coin_flip():
    votes = collect_votes({"a": np.ones(2000), "b": np.ones(2000)}, np.random.default_rng(0))
    assert 0.45 < votes.a_won.mean() < 0.55


def test_votes_intervals_and_board_are_the_same_for_the_same_seeds():
    gold = {name: np.random.default_rng(7).normal(size=40) + shift for shift, name in enumerate("abc")}
    boards = [leaderboard(collect_votes(gold, np.random.default_rng(3)), list(gold), n_resamples=100, seed=5)
              for _ in range(2)]
    assert boards[0].table() == boards[1].table()
    np.testing.assert_array_equal(boards[0].low, boards[1].low)


# -------------------------------------------------- intervals and ranks --

def test_95_percent_intervals_contain_the_true_ratings_about_95_percent_of_the_time():
    covered = []
    for seed in range(20):
        low, high = bootstrap(simulated_votes(TRUTH, 500, seed), len(TRUTH), n_resamples=100, seed=seed)
        covered += list((low <= TRUTH) & (TRUTH <= high))
    assert np.mean(covered) >= 0.85  # 100 intervals; a 95% interval misses ~5


def test_intervals_narrow_with_more_votes():
    widths = []
    for n_votes in (250, 4000):
        low, high = bootstrap(simulated_votes(TRUTH, n_votes, seed=2), len(TRUTH), n_resamples=100)
        widths.append(np.mean(high - low))
    assert widths[1] < 0.4 * widths[0]  # 16 times the votes: about a quarter of the width


def test_the_bootstrap_resamples_whole_questions():
    # Every question holds one win of each model over the other: a question-level resample can never
    # separate them, a vote-level one (treating the 2 votes of a question as independent) would.
    votes = Votes.from_winners([0, 1] * 50, [1, 0] * 50, prompt=np.repeat(np.arange(50), 2))
    low, high = bootstrap(votes, 2, n_resamples=100)
    np.testing.assert_allclose([low, high], ANCHOR, atol=1e-6)


def test_clearly_separated_models_get_ranks_one_two_three():
    low, high = np.array([1100.0, 990.0, 880.0]), np.array([1150.0, 1010.0, 920.0])
    assert list(ranks(low, high)) == [1, 2, 3]


def test_overlapping_intervals_share_a_rank():
    # b overlaps a and c; c is wholly below a: a and b share rank 1, c is below a only
    low, high = np.array([1000.0, 960.0, 900.0]), np.array([1060.0, 1020.0, 990.0])
    assert list(ranks(low, high)) == [1, 1, 2]


def test_the_table_lists_models_best_first_with_rank_rating_and_interval():
    board = leaderboard(simulated_votes(TRUTH[:3], 600, seed=4), ["strong", "mid", "weak"], n_resamples=100)
    lines = board.table().splitlines()
    assert [line.split("|")[2].strip() for line in lines[2:]] == ["strong", "mid", "weak"]
    assert lines[2].startswith("| 1 | strong |") and " to " in lines[2]


def test_the_report_keys_name_each_model():
    board = leaderboard(simulated_votes(TRUTH[:2], 200, seed=4), ["sft", "dpo"], n_resamples=100)
    keys = board.report_keys()
    assert set(keys) == {f"arena_{what}_{name}" for what in ("rating", "ci_low", "ci_high") for name in ("sft", "dpo")}
    assert keys["arena_ci_low_sft"] <= keys["arena_rating_sft"] <= keys["arena_ci_high_sft"]


def test_the_plot_draws_one_error_bar_per_model():
    from matplotlib.figure import Figure

    board = leaderboard(simulated_votes(TRUTH, 500, seed=4), list("abcde"), n_resamples=100)
    ax = Figure().subplots()
    board.draw(ax)
    assert len(ax.get_yticklabels()) == 5 and ax.get_yticklabels()[-1].get_text() == "a (rank 1)"


# -------------------------------------------------------------- questions --

def test_held_out_questions_come_from_the_half_never_compared():
    from llmedu.chat_model import eval_questions

    world, data = eval_questions({"world": {"seed": 3, "n_people": 40}, "sft_data_seed": 3})
    compared = {e.subject for e in split_by_subject(data.eval, seed=3)[0]}
    asked = held_out_questions(data.eval, 30, seed=3)
    assert len(asked) == 30 and not compared & {e.subject for e in asked}


# ---------------------------------------------------------------- the CLI --

@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Two tiny random chat models; their context fits the few-shot document."""
    return tuple(save_tiny_models(tmp_path_factory.mktemp("models"), {"m0": 0, "m1": 1}, max_seq_len=256))


def arena_cli(*args):
    return subprocess.run([sys.executable, "-m", "llmedu.cli", "arena", "--no-progress", *map(str, args)],
                          capture_output=True, text=True)


def test_the_cli_prints_a_table_and_writes_its_files(model_files, tmp_path):
    first, second = model_files
    done = arena_cli("--base-few-shot", first, "--sft", first, "--model", f"other={second}", "--questions", 6,
                     "--resamples", 100, "--world-seed", 3, "--world-people", 40, "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| rank | model | rating |" in done.stdout and "18 votes" in done.stdout  # 6 questions, 3 pairs
    result = json.loads((tmp_path / "arena.json").read_text(encoding="utf-8"))
    assert {row["model"] for row in result["leaderboard"]} == {"base", "sft", "other"}
    assert len(result["replies"]) == 6 and "arena_rating_other" in result["report"]
    assert (tmp_path / "arena.png").stat().st_size > 0


def test_a_missing_model_file_is_a_clear_error(model_files, tmp_path):
    done = arena_cli("--base-few-shot", model_files[0], "--sft", model_files[0],
                     "--model", f"dpo={tmp_path / 'nothing'}", "--questions", 2)
    assert done.returncode == 2 and "llmedu arena:" in done.stderr and "Traceback" not in done.stderr


def test_a_model_option_without_a_name_is_a_clear_error(model_files):
    done = arena_cli("--model", str(model_files[0]), "--questions", 2)
    assert done.returncode == 2 and "NAME=PATH" in done.stderr and "Traceback" not in done.stderr
