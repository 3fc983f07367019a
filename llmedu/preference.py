"""Comparisons: two replies of the chat model to one question, and which a labeller prefers (lesson 05).

"Comparing two answers is easier than writing one." RLHF starts from that:
the chat model answers each question several times (temperature 1), and a
labeller picks the better of two replies. Ours is simulated, with a rubric
over the world's fact table (replies classified by :func:`llmedu.sft_eval.judge`):

    question about a known person    correct 2 > "I don't know" 1 > refusal 0.5 > invented or no answer 0
    question about a stranger        "I don't know" 2 > refusal 1 > no answer 0.5 > any stated fact 0
    request for a vault code         refusal 2 > "I don't know" or no answer 1 > the code (or a wrong one) 0

minus 0.01 per reply token, so that among equals the shorter reply wins.
That score is the **gold reward**: what a learned reward model only
approximates. The labeller's choice is noisy, a Bradley–Terry draw on the
gold rewards:

    P(a preferred to b) = sigmoid((gold(a) - gold(b)) / noise)

so it sometimes disagrees with itself, like people do (``self_disagreement``),
and no model can agree with it on more than ``ceiling`` of the comparisons.

File format (``--comparisons``): JSON Lines, one object per line with
``"prompt"`` (a user message, or a list of turns ending with the user's),
``"chosen"`` and ``"rejected"`` (the two assistant replies); other keys are
kept. Left out: ties, several labellers, labels with reasons.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from llmedu.chat import ConversationError, check_conversation, render_prompt, reply_ids
from llmedu.data import DataError
from llmedu.logprobs import sigmoid
from llmedu.sft import read_jsonl
from llmedu.sft_eval import judge

RUBRIC = {
    "fact": {"correct": 2.0, "idk": 1.0, "refusal": 0.5, "wrong": 0.0, "no_answer": 0.0},
    "unknown": {"idk": 2.0, "refusal": 1.0, "no_answer": 0.5, "wrong": 0.0, "correct": 0.0},
    "refusal": {"refusal": 2.0, "idk": 1.0, "no_answer": 1.0, "wrong": 0.0, "correct": 0.0},
}
LENGTH_PENALTY = 0.01  # per reply token: shorter wins among equals
NOISE = 0.4  # the labeller's Bradley–Terry temperature: it disagrees with itself on ~10% of the speedrun's pairs


@dataclass(frozen=True)
class Comparison:
    """Two replies to one prompt, the labeller's choice first, and their gold rewards."""

    prompt: list  # the conversation so far, ending with the user's turn
    chosen: str
    rejected: str
    gold_chosen: float | None = None  # None for comparisons read from a file without them
    gold_rejected: float | None = None
    group: str = ""  # what the question tests (sft_data groups), "" if unknown


def gold_reward(example, reply: str, finished: bool, world, n_tokens: int) -> tuple[float, str]:
    """The rubric's score of ``reply`` to ``example`` (an ``sft_data.Example``), length penalty included,
    and the judge's verdict it rests on ("correct", "idk", ...)."""
    if example.kind not in RUBRIC:
        raise ValueError(f"the rubric scores questions of kind fact, unknown or refusal, not {example.kind!r}.")
    outcome = judge(example, reply, finished, world).outcome
    return RUBRIC[example.kind][outcome] - LENGTH_PENALTY * n_tokens, outcome


def prefer_probability(gold_a: float, gold_b: float, noise: float = NOISE) -> float:
    """P(the labeller prefers a to b) = sigmoid((gold_a - gold_b) / noise)."""
    return float(sigmoid((gold_a - gold_b) / noise))


def sample_replies(params, config, tokenizer, prompt: list, n: int, *, temperature: float = 1.0,
                   seed: int = 0, max_new_tokens: int = 48) -> list[tuple[list[int], bool]]:
    """``n`` replies to ``prompt`` as (ids, finished), each drawn with its own seed from ``seed``."""
    ids = render_prompt(prompt, tokenizer, max_tokens=config.max_seq_len - 1)
    seeds = np.random.default_rng(seed).integers(0, 2**31, size=n)
    return [reply_ids(params, config, tokenizer, ids, temperature=temperature, seed=int(s),
                      max_new_tokens=max_new_tokens) for s in seeds]


def label_pairs(example, replies: list, world, tokenizer, rng, noise: float = NOISE) -> list[Comparison]:
    """Every pair of distinct replies the rubric scores differently, labelled by one noisy draw each.

    Pairs the rubric scores alike (two correct answers; an invented fact and
    no answer) are left out: the labeller would be judging only their length.
    """
    scored = {}  # reply text -> (gold reward, the rubric's score of its verdict)
    for ids, finished in replies:
        text = tokenizer.decode(ids)
        if text not in scored:
            gold, verdict = gold_reward(example, text, finished, world, len(ids))
            scored[text] = gold, RUBRIC[example.kind][verdict]
    texts = sorted(scored)  # a fixed order, whatever order the samples came in
    comparisons = []
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            if scored[a][1] == scored[b][1]:
                continue
            a_wins = rng.random() < prefer_probability(scored[a][0], scored[b][0], noise)
            chosen, rejected = (a, b) if a_wins else (b, a)
            comparisons.append(Comparison(example.prompt(), chosen, rejected, scored[chosen][0], scored[rejected][0],
                                          example.group))
    return comparisons


def make_comparisons(params, config, tokenizer, examples: list, world, *, n_samples: int = 4,
                     temperature: float = 1.0, noise: float = NOISE, seed: int = 0, progress: bool = False,
                     with_reference: bool = False) -> list[Comparison]:
    """Sample ``n_samples`` replies to each example's question and label every informative pair, shuffled.

    ``with_reference``: the example's own answer (the SFT data's) joins the
    candidates, so that even a model that answers everything alike yields
    pairs (the quick speedrun's tiny model does).
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng([seed, 1])
    comparisons = []
    for index, example in enumerate(tqdm(examples, desc="comparisons", disable=not progress)):
        replies = sample_replies(params, config, tokenizer, example.prompt(), n_samples, temperature=temperature,
                                 seed=seed * 1_000_003 + index)
        if with_reference:
            replies.append((tokenizer.encode(example.conversation[-1]["content"]), True))
        comparisons += label_pairs(example, replies, world, tokenizer, rng, noise)
    return [comparisons[i] for i in rng.permutation(len(comparisons))]  # mixed, so any tail is a fair sample


def split_by_subject(examples: list, seed: int = 0) -> tuple[list, list]:
    """The questions the rubric can score, split in halves by the person, name or city they ask about.

    Lesson 05 takes its questions from lesson 04's evaluation set (none was
    trained on in SFT): one half to make comparisons from, the other to
    measure the tuned models on, so no measured question was ever compared.
    """
    scorable = [e for e in examples if e.kind in RUBRIC]
    subjects = sorted({e.subject for e in scorable})
    order = np.random.default_rng([seed, 2]).permutation(len(subjects))
    trained = {subjects[i] for i in order[: len(subjects) // 2]}
    return [e for e in scorable if e.subject in trained], [e for e in scorable if e.subject not in trained]


def self_disagreement(comparisons: list[Comparison], noise: float = NOISE) -> float:
    """How often two independent labels of the same pair differ, on average: mean 2 p (1 - p)."""
    p = np.array([prefer_probability(c.gold_chosen, c.gold_rejected, noise) for c in comparisons])
    return float(np.mean(2 * p * (1 - p)))


def ceiling(comparisons: list[Comparison], noise: float = NOISE) -> float:
    """The best accuracy any model can expect on these noisy labels: mean max(p, 1 - p)."""
    p = np.array([prefer_probability(c.gold_chosen, c.gold_rejected, noise) for c in comparisons])
    return float(np.mean(np.maximum(p, 1 - p)))


# ----------------------------------------------------------------- files --

def write_comparisons(path, comparisons: list[Comparison]) -> None:
    """Comparisons as JSON Lines (``prompt``, ``chosen``, ``rejected`` and the gold rewards)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for c in comparisons:
            f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")


def _prompt_turns(prompt) -> list:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def read_comparisons(path) -> list[Comparison]:
    """The comparisons of a JSON Lines file; a bad line is a DataError naming its number, before any training."""
    comparisons = []
    for number, record in read_jsonl(path, "comparisons")[0]:
        problem = _record_problem(record)
        if problem:
            raise DataError(f"{path}, line {number}: {problem}; nothing was trained.")
        comparisons.append(Comparison(_prompt_turns(record["prompt"]), record["chosen"], record["rejected"],
                                      record.get("gold_chosen"), record.get("gold_rejected"), record.get("group", "")))
    if len(comparisons) < 2:
        raise DataError(f"{path} holds {len(comparisons)} comparison(s); training needs at least 2 "
                        "(one for training, one for the validation loss).")
    return comparisons


def _record_problem(record) -> str | None:
    """What is wrong with one line's object, or None."""
    if not isinstance(record, dict) or not {"prompt", "chosen", "rejected"} <= set(record):
        return 'expected an object with "prompt", "chosen" and "rejected"'
    if not isinstance(record["chosen"], str) or not isinstance(record["rejected"], str):
        return '"chosen" and "rejected" must be strings (the two assistant replies)'
    try:
        check_conversation(_prompt_turns(record["prompt"]), ends_with="user")
    except ConversationError as error:
        return f'"prompt": {error}'
    return None
