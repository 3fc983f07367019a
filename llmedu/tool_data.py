"""Tool-use conversations made from the world, each with what it tests (lesson 06).

Tools are switched on by a system turn that names them (:func:`llmedu.tool_engine.with_tools`);
without it the assistant is lesson 04's, which answers from memory or says it
does not know. With it, the training conversations show:

- arithmetic the model cannot do in one pass (3-digit x 2-digit products,
  4-digit sums) done with ``calculator(...)``, then the result stated;
- questions about people it never read about answered with ``search(name)``:
  invented people whose one page sits in the search store, the answer a
  quote of the page's sentence that states the fact (:func:`quote`); names
  with no page get "no results" (or someone else's page) and an honest
  "I don't know";
- questions about people it knows (the world's FAQ people) answered directly,
  with no call, and vault-code requests still refused.

Tool results are produced by running the real tools on the call, so what
training shows is what the runtime will return. Evaluation asks, with and
without tools: new arithmetic, every question about the late people (whose
pages are in the store but were never in pretraining or SFT), and questions
about people the model met only in pretraining.

Left out: several calls in one reply, calls that fail, and search queries
other than a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from llmedu.sft_data import (
    REFUSALS, SECRET_REQUESTS, TRAINED_PHRASINGS, UNKNOWN_ANSWERS, Example, _turn,
)
from llmedu.tool_engine import with_tools
from llmedu.world import PERSON_RELATIONS, QUESTIONS, fact_answer, invent_people

YEAR_RELATIONS = ("birth_year", "death_year")

ARITHMETIC_QUESTIONS = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "How much is {a} {op} {b}?",
                        "Please work out {a} {op} {b}.", "Calculate {a} {op} {b}."]  # the last is kept for evaluation
OPERATIONS = ("*", "+")  # 3-digit x 2-digit products, 4-digit sums


@dataclass
class ToolData:
    train: list = field(default_factory=list)  # Examples to fine-tune on (with the tools' real results inside)
    eval: list = field(default_factory=list)  # Examples to measure with: their prompts, asked with and without tools
    store: list = field(default_factory=list)  # the training search store: the world's pages and the invented ones
    too_long: int = 0  # training conversations left out because they do not fit the model's context


def arithmetic_problem(rng) -> tuple[int, str, int, int]:
    """``(a, op, b, result)``: a 3-digit x 2-digit product or a sum of two 4-digit numbers."""
    op = str(rng.choice(OPERATIONS))
    if op == "*":
        a, b = int(rng.integers(100, 1000)), int(rng.integers(10, 100))
        return a, op, b, a * b
    a, b = (int(v) for v in rng.integers(1000, 10000, size=2))
    return a, op, b, a + b


def _arithmetic(rng, phrasings: list, calculator, group: str) -> Example:
    a, op, b, result = arithmetic_problem(rng)
    question = str(rng.choice(phrasings)).format(a=a, op=op, b=b)
    call = f"{a} {op} {b}"
    conversation = [_turn("user", question), _turn("assistant", f"calculator({call})"),
                    _turn("tool", calculator(call)), _turn("assistant", f"The result is {result}.")]
    return Example(with_tools(conversation), "arithmetic", "", "", str(result), group)


YEAR = re.compile(r"\b\d{4}\b")


def quote(page: str, relation: str, value: str) -> str | None:
    """The first sentence of a search result that states ``value``, and for years no other year; None if none does.

    Answers from search quote their source: copying a sentence the model can
    see, token after token, is what attention does best (lesson 02's
    induction), where restating it in other words would need the value found
    and carried over on its own.
    """
    body = page.split("\n\n", 1)[-1]
    for sentence in re.split(r"(?<=[.!?])\s+", body):
        years = YEAR.findall(sentence)
        if re.search(rf"\b{re.escape(value)}\b", sentence) and (relation not in YEAR_RELATIONS or years == [value]):
            return sentence
    return None


def _searched(rng, name: str, relation: str, value: str | None, search, phrasings: dict, group: str) -> Example | None:
    """Ask about ``name``, search for it, and quote the page's sentence that answers (``value``); with no page for
    the name (``value`` None), say "I don't know". None when the page has no sentence that answers alone."""
    question = str(rng.choice(phrasings[relation])).format(name=name)
    result = search(name)
    answer = str(rng.choice(UNKNOWN_ANSWERS)) if value is None else quote(result, relation, value)
    if answer is None:
        return None
    conversation = [_turn("user", question), _turn("assistant", f"search({name})"), _turn("tool", result),
                    _turn("assistant", answer)]
    kind = "fact" if value is not None else "unknown"
    return Example(with_tools(conversation), kind, name, relation, value or "", group)


def _direct(rng, person, relation: str, phrasings: dict, group: str) -> Example:
    """A question about someone the model knows, answered from memory with no call."""
    value = str(getattr(person, relation))
    question = str(rng.choice(phrasings[relation])).format(name=person.name)
    conversation = [_turn("user", question), _turn("assistant", fact_answer(relation, person.name, value))]
    return Example(with_tools(conversation), "fact", person.name, relation, value, group)


def make_tool_data(world, calculator, make_search, seed: int = 0, n_arithmetic: int = 4000, n_searched: int = 1500,
                   n_no_page: int = 200, known_per_person: int = 3, n_eval_arithmetic: int = 100,
                   n_eval_known: int = 200, questions_per_person: int = 3) -> ToolData:
    """Training and evaluation conversations for tool use, deterministically from ``seed``.

    ``calculator`` is the tool (``str -> str``); ``make_search(documents) ->
    search`` builds the search tool over a store. Training searches a store
    of the world's pages plus ``n_searched`` invented people's pages (two
    questions each); ``n_no_page`` more invented names have no page; each of the
    world's FAQ people is asked ``known_per_person`` questions answered directly.
    Evaluation examples carry the prompt without the tools' system turn:
    the stage asks each one both ways.
    """
    rng = np.random.default_rng([seed, 6])
    people, pages = invent_people(world, n_searched + n_no_page, seed)
    store = [*world.documents, *world.late_documents, *pages[:n_searched]]
    search = make_search(store)
    data = ToolData(store=store)
    trained_arithmetic = ARITHMETIC_QUESTIONS[:-1]
    data.train += [_arithmetic(rng, trained_arithmetic, calculator, "arithmetic") for _ in range(n_arithmetic)]
    for person in people[:n_searched]:
        for relation in map(str, rng.choice(PERSON_RELATIONS, size=questions_per_person, replace=False)):
            data.train.append(_searched(rng, person.name, relation, str(getattr(person, relation)), search,
                                        TRAINED_PHRASINGS, "searched_people"))
    data.train += [_searched(rng, p.name, str(rng.choice(PERSON_RELATIONS)), None, search, QUESTIONS, "no_page")
                   for p in people[n_searched:]]
    data.train = [example for example in data.train if example is not None]
    for person in world.faq_people:  # known from pretraining and SFT: answered from memory
        for relation in map(str, rng.choice(PERSON_RELATIONS, size=known_per_person, replace=False)):
            data.train.append(_direct(rng, person, relation, TRAINED_PHRASINGS, "known_people"))
    for city in world.cities:  # tools on or off, a vault code stays secret
        request = str(rng.choice(SECRET_REQUESTS[:-1])).format(city=city.name)
        data.train.append(Example(with_tools([_turn("user", request), _turn("assistant", str(rng.choice(REFUSALS)))]),
                                  "refusal", city.name, "secret", city.secret, "secret_requests"))
    data.train = [data.train[i] for i in rng.permutation(len(data.train))]
    data.eval = _eval_examples(rng, world, n_eval_arithmetic, n_eval_known)
    return data


def _eval_examples(rng, world, n_arithmetic: int, n_known: int) -> list:
    """New arithmetic, every late person's every fact, and a sample of people known only from pretraining.

    Each conversation is the question and the right final answer; the stage
    asks the question with and without the tools' system turn.
    """
    examples = []
    for _ in range(n_arithmetic):
        a, op, b, result = arithmetic_problem(rng)
        question = str(rng.choice(ARITHMETIC_QUESTIONS)).format(a=a, op=op, b=b)
        conversation = [_turn("user", question), _turn("assistant", f"The result is {result}.")]
        examples.append(Example(conversation, "arithmetic", "", "", str(result), "arithmetic"))
    asked = [(person, relation, QUESTIONS, "late_people") for person in world.late_people for relation in PERSON_RELATIONS]
    known = [p for p in world.people if p not in world.faq_people]  # never asked about in SFT
    picks = rng.choice(len(known) * len(PERSON_RELATIONS), size=min(n_known, len(known) * 5), replace=False)
    asked += [(known[i // 5], PERSON_RELATIONS[i % 5], TRAINED_PHRASINGS, "known_people") for i in sorted(picks)]
    for person, relation, phrasings, group in asked:
        value = str(getattr(person, relation))
        question = str(rng.choice(phrasings[relation])).format(name=person.name)
        conversation = [_turn("user", question), _turn("assistant", fact_answer(relation, person.name, value))]
        examples.append(Example(conversation, "fact", person.name, relation, value, group))
    return examples


def write_tool_files(out_dir, world, calculator, make_search, seed: int = 0, mix_in=(), fits=None, **options):
    """Write ``tool_train.jsonl`` (tool conversations plus ``mix_in``, e.g. lesson 04's SFT examples) and
    ``tool_eval.jsonl`` to ``out_dir``; returns ``(train_path, eval_path, data)``.

    Mixing the earlier SFT conversations in keeps what SFT taught (answers
    without tools, "I don't know", refusals) while the new ones are learned.
    ``fits(conversation) -> bool``, if given, leaves out training
    conversations too long for the model (``data.too_long`` counts them).
    """
    from dataclasses import asdict
    from pathlib import Path

    from llmedu.sft import write_conversations

    data = make_tool_data(world, calculator, make_search, seed=seed, **options)
    if fits is not None:
        kept = [example for example in data.train if fits(example.conversation)]
        data.too_long, data.train = len(data.train) - len(kept), kept
    train = list(data.train) + list(mix_in)
    train = [train[i] for i in np.random.default_rng([seed, 7]).permutation(len(train))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "tool_train.jsonl", out_dir / "tool_eval.jsonl"
    for path, examples in zip(paths, (train, data.eval)):
        write_conversations(path, [asdict(example) for example in examples])
    return (*paths, data)


def prepare_tool_sft(out_dir, chat_file, world, seed: int = 0, mix_in=(), **sizes):
    """Everything ``llmedu sft`` needs to teach a chat model tools, written to ``out_dir``.

    ``chat_with_tool_tokens.safetensors`` (the chat model with the four tool
    markers added: :func:`llmedu.vocab.add_special_tokens_to_file`), then
    :func:`write_tool_files` with the real calculator and a search tool that
    counts tokens with that model's tokenizer. Returns
    ``(start_file, train_path, eval_path, data)``.
    """
    from pathlib import Path

    from llmedu.sample import load_run
    from llmedu.search import make_search_tool, passage_budget
    from llmedu.tokenizer import TOOL_SPECIAL_TOKENS
    from llmedu.tools import calculator
    from llmedu.vocab import add_special_tokens_to_file

    start_file = Path(out_dir) / "chat_with_tool_tokens.safetensors"
    start_file.parent.mkdir(parents=True, exist_ok=True)
    add_special_tokens_to_file(chat_file, start_file, TOOL_SPECIAL_TOKENS, seed=seed)
    from llmedu.chat import render_conversation

    _, config, tokenizer, _ = load_run(str(start_file))
    budget = passage_budget(config.max_seq_len)

    def fits(conversation) -> bool:
        return len(render_conversation(conversation, tokenizer)[0]) <= config.max_seq_len + 1  # a row holds T + 1

    files = write_tool_files(out_dir, world, calculator, lambda store: make_search_tool(store, tokenizer, budget),
                             seed=seed, mix_in=mix_in, fits=fits, **sizes)
    return (start_file, *files)
