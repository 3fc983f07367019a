"""Tool-use conversations from the world, and how replies with tools are judged (lesson 06)."""

import pytest

from llmedu.chat import render_conversation
from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, TOOL_SPECIAL_TOKENS, BPETokenizer
from llmedu.tool_data import ARITHMETIC_QUESTIONS, make_tool_data, quote, write_tool_files
from llmedu.tool_engine import TOOLS_SYSTEM, ToolReply
from llmedu.tool_eval import judge_arithmetic, judge_reply, tool_counts, tool_summary
from llmedu.tools import calculator
from llmedu.world import make_world


@pytest.fixture(scope="module")
def world():
    return make_world(5, n_people=20, n_cities=3, n_unseen=6, n_late=4, n_stories=2, n_arithmetic=10)


@pytest.fixture(scope="module")
def tokenizer(world):
    return BPETokenizer.train(world.text, 400, special_tokens=[*CHAT_SPECIAL_TOKENS, *TOOL_SPECIAL_TOKENS])


def page_search(store):
    """A stand-in search tool: the first page whose title is the query."""
    return lambda query: next((d for d in store if d.startswith(query + "\n")), f"no results for '{query}'")


@pytest.fixture(scope="module")
def data(world):
    return make_tool_data(world, calculator, page_search, seed=1, n_arithmetic=20, n_searched=10, n_no_page=4,
                          n_eval_arithmetic=6, n_eval_known=8)


def test_the_same_seed_gives_the_same_conversations(world, data):
    again = make_tool_data(world, calculator, page_search, seed=1, n_arithmetic=20, n_searched=10, n_no_page=4,
                           n_eval_arithmetic=6, n_eval_known=8)
    assert again.train == data.train and again.eval == data.eval


def test_every_training_conversation_has_the_tools_system_turn_and_renders(data, tokenizer):
    for example in data.train:
        assert example.conversation[0] == {"role": "system", "content": TOOLS_SYSTEM}
        render_conversation(example.conversation, tokenizer)


def test_arithmetic_is_done_with_the_calculator_and_its_real_result(data):
    for example in (e for e in data.train if e.kind == "arithmetic"):
        _, question, call, result, answer = example.conversation
        expression = call["content"][len("calculator("):-1]
        assert call["content"].startswith("calculator(") and expression in question["content"]
        assert result == {"role": "tool", "content": calculator(expression)} == {"role": "tool",
                                                                                  "content": example.expected}
        assert answer["content"] == f"The result is {example.expected}."  # the result, copied from just before


def test_searched_people_are_answered_from_the_page_the_search_returned(data):
    searched = [e for e in data.train if e.group == "searched_people"]
    assert len(searched) == 10 * 3  # ten people, three questions each (the default)
    for example in searched:
        _, _, call, result, answer = example.conversation
        assert call["content"] == f"search({example.subject})" and result["content"].startswith(example.subject + "\n")
        assert example.expected in result["content"] and example.expected in answer["content"]


PAGE = "Ilsa Varrow\n\nIlsa Varrow (1812–1870) was a painter from Zota. Born in 1812, Ilsa Varrow grew up in Zota."


@pytest.mark.parametrize(("relation", "value", "sentence"), [
    ("birth_year", "1812", "Born in 1812, Ilsa Varrow grew up in Zota."),  # the first sentence states two years
    ("occupation", "painter", "Ilsa Varrow (1812–1870) was a painter from Zota."),
    ("city", "Zota", "Ilsa Varrow (1812–1870) was a painter from Zota."),
    ("death_year", "1870", None),  # stated only beside the birth year: no sentence answers alone
])
def test_an_answer_quotes_the_first_sentence_that_states_the_fact_alone(relation, value, sentence):
    assert quote(PAGE, relation, value) == sentence


def test_names_without_a_page_get_no_results_and_an_honest_answer(data):
    for example in (e for e in data.train if e.group == "no_page"):
        assert example.conversation[3]["content"].startswith("no results")
        assert "know" in example.conversation[4]["content"] or "information" in example.conversation[4]["content"]


def test_known_people_are_answered_without_a_call(data, world):
    known = [e for e in data.train if e.group == "known_people"]
    assert {e.subject for e in known} == {p.name for p in world.faq_people}
    assert all(len(e.conversation) == 3 for e in known)


def test_evaluation_asks_every_late_fact_and_people_never_asked_in_sft(data, world):
    late = [e for e in data.eval if e.group == "late_people"]
    assert len(late) == 5 * len(world.late_people)
    known = {e.subject for e in data.eval if e.group == "known_people"}
    assert known and not known & {p.name for p in world.faq_people}
    trained_names = {e.subject for e in data.train}
    assert not trained_names & {p.name for p in world.late_people}  # the late people are never trained on


def test_evaluation_arithmetic_uses_every_phrasing_and_training_all_but_the_last(data):
    trained = {e.conversation[1]["content"].split()[0] for e in data.train if e.kind == "arithmetic"}
    assert ARITHMETIC_QUESTIONS[-1].split()[0] not in trained


def test_tool_files_mix_in_earlier_conversations(tmp_path, world, data):
    extra = [data.train[0]]
    train_path, eval_path, written = write_tool_files(tmp_path, world, calculator, page_search, seed=1, mix_in=extra,
                                                      n_arithmetic=20, n_searched=10, n_no_page=4,
                                                      n_eval_arithmetic=6, n_eval_known=8)
    lines = train_path.read_text().splitlines()
    assert len(lines) == len(written.train) + 1 and len(eval_path.read_text().splitlines()) == len(written.eval)


@pytest.mark.parametrize(("answer", "finished", "outcome"), [
    ("347 * 29 = 10063.", True, "correct"),
    ("It is 10063", True, "correct"),
    ("347 * 29 = 10062.", True, "wrong"),
    ("I cannot say.", True, "no_answer"),
    ("347 * 29 = 10063.", False, "no_answer"),
])
def test_arithmetic_is_judged_by_the_last_number_stated(answer, finished, outcome):
    assert judge_arithmetic(answer, finished, "10063") == outcome


def test_figures_count_replies_by_group_and_tools(data, world):
    fact = next(e for e in data.eval if e.group == "known_people")
    right = ToolReply([], True, [], f"{fact.conversation[1]['content']}")
    searched = ToolReply([], True, [(f"search({fact.subject})", "page")], "I don't know who that is.")
    judged = [judge_reply(fact, right, world, tools_on=False), judge_reply(fact, searched, world, tools_on=True)]
    counts = tool_counts(judged)
    assert counts["known_acc_without_tools"] == (1, 1) and counts["known_acc_with_tools"] == (0, 1)
    assert counts["needless_call_rate"] == (1, 1) and tool_summary(judged)["tools_arith_acc_with"] is None
