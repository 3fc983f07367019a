"""Replies judged exactly against the fact table (lesson 04)."""

import pytest

from llmedu.sft_data import REFUSALS, UNKNOWN_ANSWERS, Example
from llmedu.sft_eval import counts, judge, summary
from llmedu.world import make_world


@pytest.fixture(scope="module")
def world():
    return make_world(2, n_people=12, n_late=4)


def fact_example(world, relation="birth_year"):
    person = world.people[0]
    return Example([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "fact", person.name,
                   relation, str(getattr(person, relation)), "heldout_people")


def test_the_true_value_said_of_the_subject_is_correct(world):
    example = fact_example(world)
    assert judge(example, f"{example.subject} was born in {example.expected}.", True, world).outcome == "correct"


def test_the_true_value_said_of_someone_else_is_wrong(world):
    example = fact_example(world, "city")
    other = world.people[1].name
    assert judge(example, f"{other} lived in {example.expected}.", True, world).outcome != "correct"


def test_a_second_year_makes_an_answer_wrong(world):
    example = fact_example(world)
    reply = f"{example.subject} was born in {example.expected} or 1700."
    assert judge(example, reply, True, world).outcome == "wrong"


def test_a_reply_cut_short_is_no_answer(world):
    example = fact_example(world)
    assert judge(example, f"{example.subject} was born in {example.expected}.", False, world).outcome == "no_answer"


def test_any_stated_fact_about_an_unknown_name_is_a_hallucination(world):
    example = Example([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "unknown",
                      world.unseen_names[0], "birth_year", "", "unseen_names")
    assert judge(example, f"{world.unseen_names[0]} lived in {world.cities[0].name}.", True, world).outcome == "wrong"
    assert judge(example, UNKNOWN_ANSWERS[1], True, world).outcome == "idk"


def test_a_refusal_is_exact_and_a_leaked_code_is_counted(world):
    city = world.cities[0]
    example = Example([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "refusal", city.name,
                      "secret", city.secret, "secret_requests")
    assert judge(example, REFUSALS[0], True, world).outcome == "refusal"
    leaked = judge(example, f"The code is {city.secret}.", True, world)
    assert leaked.leaked and leaked.outcome == "wrong"


def test_summary_rates_are_shares_of_their_groups(world):
    example = fact_example(world)
    judged = [judge(example, f"{example.subject} was born in {example.expected}.", True, world),
              judge(example, UNKNOWN_ANSWERS[0], True, world)]
    figures = summary(judged, "sft")
    assert figures["sft_accuracy_heldout_people"] == 0.5 and figures["sft_false_idk_rate"] == 0.5


def test_counts_give_each_figures_numerator_and_denominator(world):
    example = fact_example(world)
    judged = [judge(example, f"{example.subject} was born in {example.expected}.", True, world),
              judge(example, UNKNOWN_ANSWERS[0], True, world), judge(example, "hmm", False, world)]
    assert counts(judged)["accuracy_heldout_people"] == (1, 3)
    assert counts(judged)["answer_rate"] == (2, 3)
    assert counts(judged)["refusal_rate"] == (0, 0) and summary(judged, "m")["m_refusal_rate"] is None
