"""System 2 (lesson 08): the addition data, the judge, majority voting, and `llmedu system2 --quick`."""

import argparse
import json
import re

import numpy as np
import pytest

from llmedu.base_model import load_base_model
from llmedu.system2 import MAX_NEW_TOKENS, load_model, load_results, majority_vote, replies, self_consistency_curve
from llmedu.system2_cli import add_parser
from llmedu.threads import pinned
from llmedu.system2_data import (
    Problem, check_steps, conversation, equal_token_sets, make_problems, parse_answer, rendered_tokens,
    scratchpad_answer, scratchpad_steps, split_problems,
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_base_model()[2]


# ------------------------------------------------------------------ data --

def test_scratchpad_lines_are_correct_column_addition_for_random_problems():
    problems = make_problems(500, seed=3, digits=(1, 5))
    assert sum(p.answer // 10 ** max(len(str(p.a)), len(str(p.b))) for p in problems) > 50  # many carry out
    for p in problems:
        check_steps(scratchpad_steps(p.a, p.b), p.a, p.b)


@pytest.mark.parametrize("a, b, steps", [
    (999, 1, ["999+001:9+1+0=10,0", "99+00:9+0+1=10,00", "9+0:9+0+1=10,000"]),
    (3471, 2958, ["3471+2958:1+8+0=9,9", "347+295:7+5+0=12,29", "34+29:4+9+1=14,429", "3+2:3+2+1=6,6429"]),
    (40, 5, ["40+05:0+5+0=5,5", "4+0:4+0+0=4,45"]),
])
def test_scratchpad_carries_into_the_next_column(a, b, steps):
    assert scratchpad_steps(a, b) == steps


def test_check_steps_rejects_a_dropped_carry():
    with pytest.raises(ValueError, match="line 2"):
        check_steps(["999+001:9+1+0=10,0", "99+00:9+0+0=9,90", "9+0:9+0+0=9,990"], 999, 1)


def test_scratchpad_reply_ends_with_the_worlds_arithmetic_line():
    assert scratchpad_answer(Problem(3471, 2958)).splitlines()[-1] == "3471 + 2958 = 6429."
    assert conversation(Problem(12, 34), "direct")[1]["content"] == "12 + 34 = 46."


def test_problems_have_the_digits_asked_for_and_come_from_the_seed():
    problems = make_problems(200, seed=1, digits=(3, 4))
    assert all(100 <= n <= 9999 for p in problems for n in (p.a, p.b))
    assert {len(str(p.a)) for p in problems} == {3, 4}
    assert problems == make_problems(200, seed=1, digits=(3, 4))
    assert problems != make_problems(200, seed=2, digits=(3, 4))


def test_held_out_problems_never_appear_in_training_in_either_order():
    held_out, train = split_problems(300, 5000, seed=0)
    seen = {(p.a, p.b) for p in train} | {(p.b, p.a) for p in train}
    assert not any((p.a, p.b) in seen for p in held_out)
    assert len(set(train)) == len(train) and len(set(held_out)) == len(held_out)


def test_both_training_sets_hold_the_same_number_of_tokens(tokenizer):
    _, train = split_problems(10, 600, seed=0)
    sets = equal_token_sets(train, 200, tokenizer)
    longest_direct = max(rendered_tokens(p, "direct", tokenizer)[0] for p in sets["direct"]["problems"])
    assert 0 <= sets["direct"]["tokens"] - sets["scratchpad"]["tokens"] < longest_direct
    assert sets["direct"]["tokens"] == sum(rendered_tokens(p, "direct", tokenizer)[0]
                                           for p in sets["direct"]["problems"])
    assert len(sets["direct"]["problems"]) > 1.5 * len(sets["scratchpad"]["problems"])  # shorter replies, more of them


def test_every_digit_and_symbol_of_a_scratchpad_line_is_its_own_token(tokenizer):
    assert len(tokenizer.encode("3471")) == 4
    assert len(tokenizer.encode("347+295:7+5+0=12,29\n")) == 20  # one token per character


# ----------------------------------------------------------------- judge --

@pytest.mark.parametrize("reply, answer", [
    ("3471 + 2958 = 6429.", 6429), ("3471+2958:1+8+0=9,9\n3471 + 2958 = 6429.", 6429), ("= 12 ", 12),
    ("3471 + 2958 = 6429. Or 7000.", None), ("3471 + 2958 =", None), ("", None), ("6429", None),
])
def test_parse_answer_reads_the_number_after_the_last_equals_sign(reply, answer):
    assert parse_answer(reply) == answer


# --------------------------------------------------------- majority vote --

@pytest.mark.parametrize("answers, expected", [
    ([5, 7, 5], 5), ([None, None, 3], 3), ([None, None], None), ([], None),
    ([7, 5, 5, 7], 7),  # a tie: the answer sampled first wins
    ([2, 9, 9, 2, 1], 2), ([None, 9, None, 4, 4, None, 9], 9),
])
def test_majority_vote_ignores_unparsed_replies_and_breaks_ties_by_first_sample(answers, expected):
    assert majority_vote(answers) == expected


def test_self_consistency_curve_votes_over_the_first_k_samples():
    answers = np.array([[1, 2, 2], [3, 3, 3], [None, 5, 6]], dtype=object)  # truths 2, 3, 6
    tokens = np.array([[4, 5, 6], [1, 1, 1], [10, 2, 2]])
    curve = self_consistency_curve(answers, tokens, [2, 3, 6], ks=(1, 3))
    assert [p["correct"] for p in curve] == [1, 2]  # k=3: 2 wins row 0; row 2 ties 5 and 6, 5 came first
    assert [p["tokens_per_question"] for p in curve] == [5.0, pytest.approx(32 / 3)]  # mean of the rows' sums
    assert curve[0]["low"] < 1 / 3 < curve[0]["high"]


# ------------------------------------------------------------------- CLI --

def test_quick_run_writes_the_contract_fields(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["system2", "--quick", "--out", str(tmp_path), "--seed", "0"])
    assert args.handler(args) == 0
    results = json.loads((tmp_path / "system2.json").read_text())
    assert results["command"] == pinned("llmedu system2 --quick --seed 0") and results["seed"] == 0 and results["date"]
    assert (tmp_path / results["plot"]).stat().st_size > 0
    for method in ("direct", "scratchpad"):
        run = results["methods"][method]
        assert {"problems", "file_tokens", "supervised_tokens", "tokens_processed"} <= set(run["training"])
        assert [p["k"] for p in run["self_consistency"]] == [1, 3]
        assert {"accuracy", "low", "high", "tokens_per_question"} <= set(run["greedy"])
    assert (results["methods"]["direct"]["training"]["tokens_processed"]
            == results["methods"]["scratchpad"]["training"]["tokens_processed"])
    assert "| direct | majority of 3 |" in capsys.readouterr().out


# ------------------------------------------------------ shipped results --

def test_shipped_results_record_how_they_were_made():
    results = load_results()
    assert re.fullmatch(r"LLMEDU_THREADS=\d+ llmedu system2 --seed \d+", results["command"]) and not results["quick"]
    assert {"seed", "date", "digits", "temperature"} <= set(results)
    for run in results["methods"].values():
        truths = [p.answer for p in make_problems(results["held_out_questions"], seed=results["seed"],
                                                  digits=results["digits"])]
        assert sum(a == t for a, t in zip(run["greedy_answers"], truths)) == run["greedy"]["correct"]


@pytest.mark.parametrize("method", ["direct", "scratchpad"])
def test_shipped_model_reproduces_its_greedy_answers(method):
    results = load_results()
    problems = make_problems(40, seed=results["seed"], digits=results["digits"])  # the first 40 held-out problems
    answers, _ = replies(load_model(method), problems, max_new_tokens=MAX_NEW_TOKENS[method])
    assert list(answers[:, 0]) == results["methods"][method]["greedy_answers"][:40]
