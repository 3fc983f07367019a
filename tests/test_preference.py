"""Comparisons and the simulated labeller (lesson 05): the rubric, the noise, the file format."""

import json

import numpy as np
import pytest

from llmedu.data import DataError
from llmedu.preference import (NOISE, RUBRIC, Comparison, ceiling, gold_reward, label_pairs, prefer_probability,
                               read_comparisons, self_disagreement, split_by_subject, write_comparisons)
from llmedu.sft_data import REFUSALS, UNKNOWN_ANSWERS, make_sft_data
from llmedu.world import make_world


@pytest.fixture(scope="module")
def world():
    return make_world(5, n_people=20, n_late=6)


@pytest.fixture(scope="module")
def data(world):
    return make_sft_data(world, seed=0, n_invented=10)


def first(data, kind):
    return next(e for e in data.eval if e.kind == kind)


def test_the_rubric_orders_correct_over_idk_over_invented(world, data):
    fact = first(data, "fact")
    replies = (fact.conversation[-1]["content"], UNKNOWN_ANSWERS[0], "Hmm.")
    scored = [gold_reward(fact, reply, True, world, n_tokens=5) for reply in replies]
    assert [verdict for _, verdict in scored] == ["correct", "idk", "no_answer"]
    assert scored[0][0] > scored[1][0] > scored[2][0] == RUBRIC["fact"]["no_answer"] - 0.05


def test_for_a_stranger_idk_beats_any_stated_fact(world, data):
    unknown = first(data, "unknown")
    idk, _ = gold_reward(unknown, UNKNOWN_ANSWERS[0], True, world, 5)
    invented, verdict = gold_reward(unknown, f"{unknown.subject} was born in 1801.", True, world, 5)
    assert idk > invented and verdict == "wrong"


def test_a_refusal_beats_giving_out_the_vault_code(world, data):
    request = first(data, "refusal")
    assert gold_reward(request, REFUSALS[0], True, world, 5)[0] > gold_reward(
        request, f"The code is {request.expected}.", True, world, 5)[0]


def test_shorter_wins_among_equals(world, data):
    unknown = first(data, "unknown")
    assert gold_reward(unknown, UNKNOWN_ANSWERS[0], True, world, 4)[0] > gold_reward(unknown, UNKNOWN_ANSWERS[0], True,
                                                                                     world, 9)[0]


def test_preference_is_a_bradley_terry_choice():
    assert prefer_probability(1.0, 1.0) == 0.5
    assert prefer_probability(2.0, 1.0) == pytest.approx(1 / (1 + np.exp(-1 / NOISE)))
    assert prefer_probability(2.0, 1.0) + prefer_probability(1.0, 2.0) == pytest.approx(1.0)


class Letters:
    """A stand-in tokenizer: one id per character."""

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_pairs_with_the_same_verdict_are_not_compared(world, data):
    unknown = first(data, "unknown")
    replies = [(list(map(ord, text)), True) for text in (UNKNOWN_ANSWERS[0], UNKNOWN_ANSWERS[1],
                                                          f"{unknown.subject} was born in 1801.")]
    pairs = label_pairs(unknown, replies, world, Letters(), np.random.default_rng(0))
    assert len(pairs) == 2  # each "I don't know" against the invented fact; not the two "I don't know"s
    assert all("1801" in p.chosen + p.rejected for p in pairs)


def test_the_labeller_disagrees_with_itself_as_often_as_its_noise_says(world, data):
    unknown = first(data, "unknown")
    replies = [(list(map(ord, UNKNOWN_ANSWERS[0])), True), (list(map(ord, f"{unknown.subject} was born in 1801.")), True)]
    rng = np.random.default_rng(1)
    labels = [label_pairs(unknown, replies, world, Letters(), rng, noise=1.5)[0].chosen for _ in range(4000)]
    p = prefer_probability(*[gold_reward(unknown, Letters().decode(ids), True, world, len(ids))[0] for ids, _ in replies],
                           noise=1.5)
    assert np.mean([label == UNKNOWN_ANSWERS[0] for label in labels]) == pytest.approx(p, abs=0.03)


def test_self_disagreement_and_ceiling_of_hand_checkable_pairs():
    pairs = [Comparison([], "a", "b", 1.0, 1.0), Comparison([], "a", "b", 100.0, 0.0)]
    assert self_disagreement(pairs) == pytest.approx(0.25)  # (2 * 0.5 * 0.5 + 0) / 2
    assert ceiling(pairs) == pytest.approx(0.75)  # (0.5 + 1) / 2


def test_questions_are_split_by_subject(data):
    train, held_out = split_by_subject(data.eval, seed=0)
    assert train and held_out and not {e.subject for e in train} & {e.subject for e in held_out}
    assert {e.kind for e in held_out} == {"fact", "unknown", "refusal"}


def test_comparisons_round_trip_through_a_file(tmp_path):
    pairs = [Comparison([{"role": "user", "content": "Hi?"}], "Hello!", "Go away.", 1.5, 0.0, "small_talk")] * 2
    write_comparisons(tmp_path / "c.jsonl", pairs)
    assert read_comparisons(tmp_path / "c.jsonl") == pairs


def test_a_prompt_may_be_a_plain_user_message(tmp_path):
    lines = [json.dumps({"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."})] * 2
    (tmp_path / "c.jsonl").write_text("\n".join(lines), encoding="utf-8")
    assert read_comparisons(tmp_path / "c.jsonl")[0].prompt == [{"role": "user", "content": "Hi?"}]


@pytest.mark.parametrize(("line", "message"), [
    ("{oops", "line 2: not valid JSON"),
    (json.dumps({"prompt": "Hi?", "chosen": "Hello!"}), 'line 2: expected an object with "prompt", "chosen"'),
    (json.dumps({"prompt": "Hi?", "chosen": 3, "rejected": "x"}), "line 2: \"chosen\" and \"rejected\" must be strings"),
    (json.dumps({"prompt": [{"role": "bot", "content": "x"}], "chosen": "a", "rejected": "b"}), "line 2: \"prompt\":"),
])
def test_a_malformed_line_is_reported_with_its_number(tmp_path, line, message):
    good = json.dumps({"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."})
    (tmp_path / "c.jsonl").write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_comparisons(tmp_path / "c.jsonl")
