"""Lesson 06's BM25 check (6.3) passes the library's scorer and names the mistakes learners really make."""

import math
from collections import Counter

import numpy as np
import pytest

from llmedu.checks import retrieval
from llmedu.search import bm25_scores as right


def learners_bm25(query, documents, *, idf, fraction, avgdl=None):
    """A learner's loop with its parts given: idf(N, n), fraction(tf, len(d), avgdl), avgdl (default: the corpus's)."""
    counts = [Counter(document) for document in documents]
    avgdl = sum(map(len, documents)) / len(documents) if avgdl is None else avgdl
    scores = np.zeros(len(documents))
    for term in set(query):
        n = sum(term in count for count in counts)
        for d, count in enumerate(counts):
            if count[term]:
                scores[d] += idf(len(documents), n) * fraction(count[term], len(documents[d]), avgdl)
    return scores


def good_idf(n_docs, n):
    return math.log(1 + (n_docs - n + 0.5) / (n + 0.5))


def bm25_no_length_normalisation(query, documents, k1=1.2, b=0.75):
    return learners_bm25(query, documents, idf=good_idf, fraction=lambda tf, dl, avgdl: tf * (k1 + 1) / (tf + k1))


def bm25_raw_tf(query, documents, k1=1.2, b=0.75):
    return learners_bm25(query, documents, idf=good_idf, fraction=lambda tf, dl, avgdl: tf)


def bm25_idf_without_one_plus(query, documents, k1=1.2, b=0.75):
    return learners_bm25(query, documents, idf=lambda n_docs, n: math.log((n_docs - n + 0.5) / (n + 0.5)),
                         fraction=lambda tf, dl, avgdl: tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)))


def bm25_avgdl_of_the_query(query, documents, k1=1.2, b=0.75):
    return learners_bm25(query, documents, idf=good_idf, avgdl=len(query),
                         fraction=lambda tf, dl, avgdl: tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)))


def bm25_repeated_term_counted_twice(query, documents, k1=1.2, b=0.75):
    return sum((right([term], documents, k1, b) for term in query), np.zeros(len(documents)))


def bm25_ignoring_k1_and_b(query, documents, k1=1.2, b=0.75):
    return right(query, documents)  # the defaults, whatever the caller asked for


def bm25_stub(query, documents, k1=1.2, b=0.75):
    raise NotImplementedError("Exercise 6.3: write bm25_scores")


def test_the_check_passes_the_library(capsys):
    retrieval.bm25_scores(right)
    assert "passed all" in capsys.readouterr().out


def test_the_checks_wrong_answers_with_nothing_wrong_are_the_reference():
    for query, documents, k1, b in retrieval._cases():
        np.testing.assert_allclose(retrieval._wrong_bm25(query, documents, k1, b), right(query, documents, k1, b),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("wrong", "advice"), [
    (bm25_no_length_normalisation, "no length normalisation"),
    (bm25_raw_tf, "raw counts without saturation"),
    (bm25_idf_without_one_plus, "the idf lacks its '1 +'"),
    (bm25_avgdl_of_the_query, "not the query's length"),
    (bm25_repeated_term_counted_twice, "a repeated query term counts once"),
])
def test_each_typical_mistake_fails_with_advice_naming_it(wrong, advice):
    with pytest.raises(AssertionError, match="Exercise 6.3") as failure:
        retrieval.bm25_scores(wrong)
    assert advice in str(failure.value)


def test_hard_coded_k1_and_b_fail_on_the_case_that_changes_them():
    with pytest.raises(AssertionError, match="k1=2.0, b=0.5"):
        retrieval.bm25_scores(bm25_ignoring_k1_and_b)


def test_the_lessons_stub_fails_naming_the_error():
    with pytest.raises(AssertionError, match="NotImplementedError"):
        retrieval.bm25_scores(bm25_stub)
