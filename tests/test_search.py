"""BM25 retrieval over the world's document store and the search tool built on it (lesson 06)."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmedu.chat_model import load_chat_model
from llmedu.search import (
    SearchIndex, bm25_scores, hit_at_1, idf, make_search_tool, passage, terms,
)
from llmedu.world import make_world

# A corpus small enough to score by hand: N = 3 documents, lengths 2, 4 and 3, so avgdl = 3.
TOY = [["cat", "sat"], ["cat", "cat", "dog", "ran"], ["dog", "sat", "up"]]


@pytest.fixture(scope="module")
def world():
    return make_world(1337, n_people=300)


@pytest.fixture(scope="module")
def store(world):
    return world.documents + world.late_documents


@pytest.fixture(scope="module")
def tokenizer():
    return load_chat_model()[2]


@pytest.fixture(scope="module")
def search(store, tokenizer):
    return make_search_tool(store, tokenizer)


# ------------------------------------------------------------ terms --

def test_terms_are_lowercased_runs_of_letters_and_digits():
    assert terms("Siogai Foupand's birth year is 1715.") == ["siogai", "foupand", "s", "birth", "year", "is", "1715"]


# ------------------------------------------------- BM25 by hand --

def test_bm25_matches_a_hand_computation_for_a_term_in_two_documents():
    # "cat" is in n = 2 of N = 3 documents: idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln 1.6.
    # d0: tf 1, len 2: 1 - 0.75 + 0.75 * 2/3 = 0.75, so 1 * 2.2 / (1 + 1.2 * 0.75) = 2.2 / 1.9.
    # d1: tf 2, len 4: 1 - 0.75 + 0.75 * 4/3 = 1.25, so 2 * 2.2 / (2 + 1.2 * 1.25) = 4.4 / 3.5.
    # d2: no "cat": 0.
    expected = [math.log(1.6) * 2.2 / 1.9, math.log(1.6) * 4.4 / 3.5, 0.0]
    np.testing.assert_allclose(bm25_scores(["cat"], TOY), expected, rtol=1e-15)


def test_a_query_term_in_no_document_adds_nothing():
    # "up" is in d2 alone: idf = ln(1 + 2.5 / 1.5) = ln(8/3); d2 has tf 1 and len 3 = avgdl, so the fraction is
    # 2.2 / (1 + 1.2) = 1. "zebra" is nowhere.
    np.testing.assert_allclose(bm25_scores(["up", "zebra"], TOY), [0.0, 0.0, math.log(8 / 3)], rtol=1e-15)


def test_idf_stays_positive_for_a_term_in_every_document():
    assert idf(3, 3) == pytest.approx(math.log(8 / 7))  # ln(1 + 0.5 / 3.5)
    assert (bm25_scores(["x"], [["x"], ["x", "y"], ["x", "z", "z"]]) > 0).all()


def test_a_repeated_query_term_counts_once():
    np.testing.assert_array_equal(bm25_scores(["cat", "cat", "dog"], TOY), bm25_scores(["cat", "dog"], TOY))


def test_a_longer_document_with_the_same_tf_scores_lower():
    short, long = bm25_scores(["x"], [["x", "y"], ["x", "y", "z", "w", "v", "u"], ["y"]])[:2]
    assert short > long


def test_without_length_normalisation_the_same_tf_scores_the_same():
    scores = bm25_scores(["x"], [["x", "y"], ["x", "y", "z", "w", "v", "u"], ["y"]], b=0.0)
    assert scores[0] == scores[1]


def test_an_empty_store_and_an_empty_query_score_nothing():
    assert bm25_scores(["x"], []).shape == (0,)
    np.testing.assert_array_equal(bm25_scores([], TOY), [0.0, 0.0, 0.0])


# ------------------------------------------- the fast path (index) --

@pytest.mark.parametrize("query", ["Siogai Foupand", "When was Siogai Foupand born?", "Milor vault code",
                                   "the was was the", "duck scarf market", "1715", "no such words qqq", ""])
def test_the_index_scores_equal_the_reference_on_the_worlds_store(store, query):
    reference = bm25_scores(terms(query), [terms(document) for document in store])
    np.testing.assert_allclose(SearchIndex(store).scores(query), reference, rtol=1e-12, atol=1e-12)


def test_top_breaks_ties_to_the_lower_index_and_lists_only_matching_documents():
    index = SearchIndex(["a b", "c", "a b", "a b"])
    hits = index.top("a", k=3)
    assert [d for d, _ in hits] == [0, 2, 3]
    assert index.top("c", k=3) == [(1, pytest.approx(index.scores("c")[1]))]


def test_hit_at_1_is_the_share_of_queries_whose_top_page_is_about_the_person():
    index = SearchIndex(["Ann Lee\n\nAnn Lee was born in 1800.", "Bob Ray\n\nBob Ray died in 1850."])
    # "ann" finds Ann's page (hit); "bob" finds Bob's page, not Ann's (miss); "zed" finds nothing (miss).
    assert hit_at_1(index, ["ann", "bob", "zed"], ["Ann Lee", "Ann Lee", "Zed Oak"]) == pytest.approx(1 / 3)


# ----------------------------------------------------------- passages --

def sentences_of(page: str) -> list[str]:
    """The sentences after a page's title (a city page's text is one line)."""
    return re.split(r"(?<=\.) ", page.split("\n\n", 1)[1])


def test_a_page_that_fits_comes_back_whole(store, tokenizer):
    page = next(d for d in store if len(tokenizer.encode(d)) < 100)
    assert passage(page, "anything", tokenizer, max_tokens=100) == page


def test_a_long_page_keeps_its_title_and_whole_sentences_within_the_budget(world, store, tokenizer):
    city = world.cities[0].name
    page = next(d for d in store if d.startswith(city + "\n"))
    assert len(tokenizer.encode(page)) > 60
    text = passage(page, f"vault code of {city}", tokenizer, max_tokens=60)
    assert len(tokenizer.encode(text)) <= 60
    assert text.startswith(city + "\n\n")
    assert set(sentences_of(text)) <= set(sentences_of(page))


def test_a_passage_prefers_the_sentences_that_share_the_query_terms(world, store, tokenizer):
    city = world.cities[0].name
    page = next(d for d in store if d.startswith(city + "\n"))
    vault_sentence = next(s for s in page.split(". ") if "vault" in s)
    assert vault_sentence in passage(page, f"vault code of {city}", tokenizer, max_tokens=40)


def test_a_sentence_longer_than_the_budget_is_cut_on_tokens(tokenizer):
    page = "Title\n\n" + "word " * 200 + "end."
    text = passage(page, "word", tokenizer, max_tokens=20)
    assert text.startswith("Title\n\nword") and len(tokenizer.encode(text)) <= 20


# ------------------------------------------------------------ the tool --

def test_the_tool_finds_a_late_persons_page(world, search):
    person = world.late_people[0]
    pages = [d for d in world.late_documents if d.startswith(person.name + "\n")]
    assert search(f"When was {person.name} born?") in pages  # their pages are short enough to come back whole


def test_a_query_sharing_no_term_with_the_store_has_no_results(store, search):
    assert not {"qxz", "vbwk"} & {t for d in store for t in terms(d)}
    assert search("Qxz Vbwk") == "no results for 'Qxz Vbwk'"
    assert search("") == "no results for ''"


def test_something_other_than_text_is_an_error_string(search):
    assert search(None) == "error: search takes text, not NoneType"


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="aeiou 0123456789.?\n", max_size=3000),
                 st.integers(), st.binary(), st.lists(st.text(), max_size=3)))
def test_the_tool_never_raises_and_always_answers_in_text(search, junk):
    assert isinstance(search(junk), str)
