"""Retrieval over a document store with BM25: the ``search`` tool of lesson 06.

The chat model cannot know the world's late people: their pages were never in
its pretraining text. It can look them up. The document store is every page
of the world (``world.documents + world.late_documents``); a query is ranked
against it with BM25 (exercise 6.3), and the best page comes back as a
*passage* short enough to fit the model's 256-token context next to the
conversation.

BM25 scores a document d for a query q as a sum over the distinct query terms
t that occur in the store:

    score(d) = sum_t idf(t) * tf(t,d) (k1 + 1) / (tf(t,d) + k1 (1 - b + b len(d) / avgdl))
    idf(t)   = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))

with tf(t,d) the number of times t occurs in d, n_t the number of documents
holding t, N the number of documents, len(d) the number of terms in d and
avgdl the mean of len(d) over the store. The fraction saturates: the tenth
mention of a name adds far less than the first (k1 sets how fast), and a long
page needs more mentions than a short one for the same score (b sets how
much). The idf is the non-negative form (the "1 +" inside the logarithm):
the textbook ln((N - n_t + 0.5) / (n_t + 0.5)) goes negative for a term in
more than half the documents, and then *holding* a common word such as "was"
would lower a page's score. With the 1 +, every shared term adds a positive
amount, so a score is 0 exactly when a document shares no term with the query.

Two implementations give the same numbers: :func:`bm25_scores`, plain loops
to read (and the signature of exercise 6.3), and :class:`SearchIndex`, which
computes every (term, document) weight once so that a query is one sum of
rows of a matrix.

Left out, on purpose: stemming ("born" and "birth" are different terms),
stop words (BM25's idf already makes "the" nearly worthless), phrase and
proximity queries ("Ilsa Varrow" is two independent terms), spelling
correction, accents (terms are ASCII letters and digits only) and any learned
(embedding) retrieval.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Callable

import numpy as np

DEFAULT_MAX_TOKENS = 120  # a passage's budget: the model reads 256 tokens in all, question and answer included
REST_OF_CONVERSATION = 136  # tokens the rest of a tool conversation takes: system turn, question, call, answer, markers


def passage_budget(context_length: int) -> int:
    """How many tokens a search result may take in a model reading ``context_length`` tokens (120 for 256)."""
    return max(16, min(DEFAULT_MAX_TOKENS, context_length - REST_OF_CONVERSATION))
_TERM = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def terms(text: str) -> list[str]:
    """The lowercased runs of ASCII letters and digits of ``text``, in order.

    "Siogai Foupand's birth year is 1715." -> ["siogai", "foupand", "s", "birth", "year", "is", "1715"].
    Everything else (punctuation, spaces, accented letters) only separates terms.
    """
    return _TERM.findall(text.lower())


# ----------------------------------------------------- BM25, to read --

def idf(n_containing: int, n_documents: int) -> float:
    """BM25's inverse document frequency, in its non-negative form (see the module docstring)."""
    return math.log(1 + (n_documents - n_containing + 0.5) / (n_containing + 0.5))


def bm25_scores(query: list[str], documents: list[list[str]], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """BM25 score of each document (a list of terms) for ``query`` (a list of terms): an array (n_docs,).

    Each distinct query term counts once, however often the query repeats it;
    a term that no document holds adds nothing. Exercise 6.3.
    """
    counts = [Counter(document) for document in documents]  # tf(t, d) = counts[d][t]
    avgdl = sum(len(document) for document in documents) / max(len(documents), 1)
    scores = np.zeros(len(documents))
    for term in dict.fromkeys(query):  # distinct, in the query's order
        n_containing = sum(1 for count in counts if term in count)
        if n_containing == 0:
            continue
        weight = idf(n_containing, len(documents))
        for d, count in enumerate(counts):
            tf = count[term]
            if tf:  # tf = 0 adds 0 (and avgdl may be 0 only when no document holds any term)
                length_norm = 1 - b + b * len(documents[d]) / avgdl
                scores[d] += weight * tf * (k1 + 1) / (tf + k1 * length_norm)
    return scores


# ----------------------------------------------------- BM25, to use --

class SearchIndex:
    """BM25 over a fixed list of documents (str), every (term, document) weight computed once.

    ``weights[t, d]`` is term t's whole contribution to document d's score,
    idf(t) * tf (k1 + 1) / (tf + k1 (1 - b + b len(d) / avgdl)), and 0 where
    tf = 0, so the score of d for a query is the sum of the rows of its
    distinct known terms: the same numbers as :func:`bm25_scores`. Dense
    arrays suit the course's store (about 1,200 terms by 1,200 documents, 12
    MB); a large store would keep only the non-zero entries (a sparse matrix).
    """

    def __init__(self, documents: list[str], k1: float = 1.2, b: float = 0.75):
        self.documents = list(documents)
        tokenised = [terms(document) for document in self.documents]
        self.vocabulary = {term: row for row, term in enumerate(sorted({t for words in tokenised for t in words}))}
        tf = np.zeros((len(self.vocabulary), len(self.documents)))  # (n_terms, n_docs)
        for d, document_terms in enumerate(tokenised):
            for term, count in Counter(document_terms).items():
                tf[self.vocabulary[term], d] = count
        self.lengths = np.array([len(t) for t in tokenised], dtype=np.float64)  # (n_docs,)
        n_containing = (tf > 0).sum(axis=1)  # (n_terms,)
        self.idf = np.log(1 + (len(self.documents) - n_containing + 0.5) / (n_containing + 0.5))  # (n_terms,)
        avgdl = self.lengths.mean() if self.lengths.sum() > 0 else 1.0  # no terms at all: no weight uses it
        length_norm = 1 - b + b * self.lengths / avgdl  # (n_docs,)
        self.weights = self.idf[:, None] * tf * (k1 + 1) / (tf + k1 * length_norm)  # (n_terms, n_docs)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for the query text: an array (n_docs,)."""
        rows = [self.vocabulary[t] for t in dict.fromkeys(terms(query)) if t in self.vocabulary]
        return self.weights[rows].sum(axis=0)

    def top(self, query: str, k: int = 1) -> list[tuple[int, float]]:
        """Up to ``k`` (document index, score) pairs, best first, ties to the lower index.

        Only documents sharing a term with the query (score > 0) are listed, so
        a query about nothing in the store gets an empty list.
        """
        scores = self.scores(query)
        order = np.argsort(-scores, kind="stable")[:k]  # stable: equal scores keep the documents' order
        return [(int(d), float(scores[d])) for d in order if scores[d] > 0]


# ----------------------------------------------------- passages --

def _token_count(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text))


def _cut_to_tokens(tokenizer, text: str, max_tokens: int) -> str:
    """The longest start of ``text``'s tokens that still fits once decoded and encoded again."""
    ids = tokenizer.encode(text)[:max_tokens]
    while ids and _token_count(tokenizer, tokenizer.decode(ids)) > max_tokens:
        ids = ids[:-1]  # a cut can re-tokenise into more pieces; give back a token until it fits
    return tokenizer.decode(ids)


def _sentences(body: str) -> list[tuple[int, str]]:
    """(line number, sentence) for every sentence of ``body``: lines split at '.', '!' or '?' and a space."""
    return [(line_no, sentence) for line_no, line in enumerate(body.split("\n"))
            for sentence in _SENTENCE_END.split(line.strip()) if sentence]


def _assemble(title: str, gap: str, sentences: list[tuple[int, str]], chosen: list[int]) -> str:
    """The title, then the chosen sentences in the page's order, those of one line on one line."""
    lines: dict[int, list[str]] = {}
    for i in sorted(chosen):
        line_no, sentence = sentences[i]
        lines.setdefault(line_no, []).append(sentence)
    return title + gap + "\n".join(" ".join(parts) for parts in lines.values()) if lines else title


def passage(document: str, query: str, tokenizer, max_tokens: int = DEFAULT_MAX_TOKENS) -> str:
    """The part of ``document`` that best answers ``query`` in at most ``max_tokens`` tokens.

    A page that fits comes back whole. Otherwise: its title line, then its
    sentences ranked by how many distinct query terms each shares (page order
    among equals), added while the passage still fits, and shown in the
    page's order. Sentences are never cut, except when the best one does not
    fit next to the title on its own (or the title alone is too long): then
    the title and that sentence are cut on tokens, mid-word if need be.
    """
    if _token_count(tokenizer, document) <= max_tokens:
        return document
    title = document.split("\n", 1)[0]
    rest = document[len(title):]
    body = rest.lstrip("\n")
    gap = rest[:len(rest) - len(body)]  # the newlines between the title and the text ("\n\n" on a person's page)
    sentences = _sentences(body)
    wanted = set(terms(query))
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(wanted & set(terms(sentences[i][1]))), i))
    chosen: list[int] = []
    for i in ranked:
        text = _assemble(title, gap, sentences, chosen + [i])
        if _token_count(tokenizer, text) > max_tokens:
            if not chosen:  # even the best sentence does not fit beside the title
                return _cut_to_tokens(tokenizer, text, max_tokens)
            break
        chosen.append(i)
    text = _assemble(title, gap, sentences, chosen)
    return text if _token_count(tokenizer, text) <= max_tokens else _cut_to_tokens(tokenizer, text, max_tokens)


# ----------------------------------------------------- the tool --

def _shown(query: str, limit: int = 40) -> str:
    """The query as the tool repeats it: printable ASCII only (others become '?'), at most ``limit`` characters."""
    text = "".join(c if " " <= c <= "~" else "?" for c in query[:limit])
    return text + ("..." if len(query) > limit else "")


def make_search_tool(documents: list[str], tokenizer, max_tokens: int = DEFAULT_MAX_TOKENS) -> Callable[[str], str]:
    """The ``search`` tool: query text in, the passage of the best-scoring document out.

    A query that shares no term with any document (an empty one included)
    gets ``no results for '<query>'``; something other than text gets an
    ``error:`` string. The tool never raises: whatever it returns, the model
    reads as the tool's result. Ties go to the lower document index.
    """
    index = SearchIndex(documents)

    def search(query: str) -> str:
        if not isinstance(query, str):
            return f"error: search takes text, not {type(query).__name__}"
        hits = index.top(query, k=1)
        if not hits:
            return f"no results for '{_shown(query)}'"
        return passage(index.documents[hits[0][0]], query, tokenizer, max_tokens)

    return search


# ----------------------------------------------------- measuring --

def is_page_of(name: str) -> Callable[[str], bool]:
    """Whether a document is a page about the person ``name`` (a person's page starts with ``"{name}\\n"``)."""
    return lambda document: document.startswith(name + "\n")


def hit_at_1(index: SearchIndex, queries: list[str], relevant: list[Callable[[str], bool]] | list[str]) -> float:
    """The share of queries whose top document is relevant.

    ``relevant[i]`` judges query i's top document: a function of the document,
    or a person's name (then a hit is one of that person's pages). A query
    with no result is a miss.
    """
    if len(queries) != len(relevant):
        raise ValueError(f"{len(queries)} queries but {len(relevant)} relevance judgements")
    if not queries:
        raise ValueError("hit@1 of no queries is undefined")
    judges = [is_page_of(r) if isinstance(r, str) else r for r in relevant]
    hits = 0
    for query, judge in zip(queries, judges):
        top = index.top(query, k=1)
        hits += bool(top) and judge(index.documents[top[0][0]])
    return hits / len(queries)
