"""Check for lesson 06's exercise 6.3: BM25, ranking documents for a query.

The learner writes

    bm25_scores(query, documents, k1=1.2, b=0.75) -> scores

``query`` is a list of terms, ``documents`` a list of documents, each a list of
terms; ``scores`` is an array (n_docs,) of BM25 scores,

    score(d) = sum over distinct query terms t of idf(t) tf(t,d) (k1 + 1) / (tf(t,d) + k1 (1 - b + b len(d) / avgdl))
    idf(t)   = ln(1 + (N - n_t + 0.5) / (n_t + 0.5)),

avgdl being the mean document length over the corpus. The reference is
``llmedu.search.bm25_scores``. The cases hold a term found in most documents
(so the idf without its "1 +" goes negative), documents of different lengths,
a repeated query term, a term found nowhere, an empty document and an empty
query, and one case with k1 and b away from their defaults.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from llmedu.checks.framework import exercise
from llmedu.search import bm25_scores as reference


def _cases():
    """(query, documents, k1, b) for the check."""
    return [
        (["cat", "the", "cat", "fish"],  # "the" in 3 of 4 documents, "cat" repeated, "fish" nowhere
         [["the", "cat", "sat", "on", "the", "mat"], ["the", "dog", "ran"],
          ["a", "cat", "and", "a", "cat", "and", "a", "cat"], ["the", "end"]], 1.2, 0.75),
        (["river", "town", "river"],
         [["the", "river", "town"], ["river"] * 5 + ["bank"] * 3, ["town", "hall", "by", "the", "river", "river", "x"],
          [], ["river", "side", "town", "hall", "river", "walk", "town"]], 2.0, 0.5),  # an empty document
        (["born", "1715", "ilsa"],
         [["ilsa", "was", "born", "in", "1715"], ["born", "in", "1800"], ["was", "born", "in", "1715", "and", "was",
                                                                           "born", "again"]], 1.2, 0.75),
        ([], [["a", "b"], ["c"]], 1.2, 0.75),  # no query terms: every score is 0
    ]


def _wrong_bm25(query, documents, k1, b, *, idf_plus_one=True, saturate=True, per_occurrence=False, avgdl=None):
    """BM25 with one typical mistake switched on (all off: the reference's numbers), to recognise wrong answers.

    idf_plus_one=False: ln((N - n + 0.5) / (n + 0.5)); saturate=False: idf * raw tf;
    per_occurrence=True: a repeated query term counts each time; avgdl: used instead of the corpus's mean length.
    """
    counts = [Counter(document) for document in documents]
    lengths = np.array([len(document) for document in documents], dtype=float)  # (n_docs,)
    avgdl = (lengths.mean() if len(documents) else 1.0) if avgdl is None else avgdl
    query_terms = list(query) if per_occurrence else list(dict.fromkeys(query))
    scores = np.zeros(len(documents))
    for term in query_terms:
        tf = np.array([count[term] for count in counts], dtype=float)  # (n_docs,)
        n = np.count_nonzero(tf)
        if n == 0:
            continue
        ratio = (len(documents) - n + 0.5) / (n + 0.5)
        idf = np.log(1 + ratio) if idf_plus_one else np.log(ratio)
        with np.errstate(divide="ignore", invalid="ignore"):  # an avgdl of 0 (an empty query as the length)
            fraction = tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths / avgdl)) if saturate else tf
        scores += idf * np.where(tf > 0, fraction, 0.0)
    return scores


@exercise("6.3", "BM25: ranking documents for a query")
def bm25_scores(learner) -> int:
    cases = _cases()
    for query, documents, k1, b in cases:
        args = (query, documents, k1, b)
        expected = reference(query, documents, k1, b)
        got = learner.call(list(query), [list(document) for document in documents], k1, b)

        def wrong(**mistake):
            return lambda: _wrong_bm25(query, documents, k1, b, **mistake)

        learner.expect_close(args, expected, got, rtol=1e-9, atol=1e-9, what="the array of scores", mistakes=[
            (wrong(idf_plus_one=False), "the idf lacks its '1 +': ln(1 + (N - n_t + 0.5) / (n_t + 0.5)) never goes "
                                        "negative, so a common word such as 'the' cannot lower a document's score"),
            (wrong(saturate=False), "that is idf * tf, raw counts without saturation: use "
                                    "tf (k1 + 1) / (tf + k1 (1 - b + b len(d) / avgdl))"),
            (wrong(per_occurrence=True), "a repeated query term counts once: sum over the DISTINCT query terms"),
            (lambda: reference(query, documents, k1, 0.0), "no length normalisation: a longer document needs more "
                                                            "mentions, 1 - b + b len(d) / avgdl"),
            (wrong(avgdl=len(query)), "avgdl is the mean length of the corpus's documents, not the query's length"),
        ])
    return len(cases)
