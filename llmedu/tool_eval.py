"""What tools change, measured: the same questions with and without them, judged exactly (lesson 06).

Each evaluation question (:func:`llmedu.tool_data.make_tool_data`) is asked
twice, greedily: without tools (no system turn; a call, if the model makes
one anyway, gets ``error: no tool named ...``) and with them (the system
turn that names them, and the real tools behind it). The reply the user
reads, the text after the last tool result, is judged:

- arithmetic: ``correct`` when the last number in it is the exact result;
- questions about people: :func:`llmedu.sft_eval.judge` against the fact
  table (the true value, said of the person asked about; ``idk`` for the
  honest "I don't know" sentences).

A call is *needless* when the question is about someone the model read
about in pretraining.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmedu.chat import render_prompt
from llmedu.sft_eval import judge
from llmedu.tool_engine import reply_with_tools, with_tools

NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class ToolJudged:
    question: str
    answer: str  # the text after the last tool result
    outcome: str  # "correct", "wrong", "idk", "refusal" or "no_answer"
    group: str  # "arithmetic", "late_people" or "known_people"
    tools_on: bool
    calls: tuple  # ((call text, result text), ...)


def ask(params, config, tokenizer, example, tools: dict | None, max_new_tokens: int = 160):
    """The model's greedy :class:`~llmedu.tool_engine.ToolReply` to the example's question, tools on or off."""
    conversation = with_tools(example.prompt()) if tools else example.prompt()
    prompt = render_prompt(conversation, tokenizer, max_tokens=config.max_seq_len - 1)
    return reply_with_tools(params, config, tokenizer, prompt, tools or {}, max_new_tokens=max_new_tokens)


def judge_arithmetic(answer: str, finished: bool, expected: str) -> str:
    numbers = NUMBER.findall(answer)
    if not finished or not numbers:
        return "no_answer"
    return "correct" if numbers[-1] == expected else "wrong"


def judge_reply(example, reply, world, tools_on: bool) -> ToolJudged:
    if example.kind == "arithmetic":
        outcome = judge_arithmetic(reply.answer, reply.finished, example.expected)
    else:
        outcome = judge(example, reply.answer, reply.finished, world).outcome
    return ToolJudged(example.conversation[0]["content"], reply.answer.strip(), outcome, example.group, tools_on,
                      tuple(reply.calls))


def evaluate_tools(params, config, tokenizer, examples: list, world, tools: dict) -> list[ToolJudged]:
    """Every example asked without tools, then with ``tools``; one :class:`ToolJudged` per reply."""
    judged = []
    for tools_on in (False, True):
        for example in examples:
            reply = ask(params, config, tokenizer, example, tools if tools_on else None)
            judged.append(judge_reply(example, reply, world, tools_on))
    return judged


def _share(judged: list, group: str, tools_on: bool, counts) -> tuple[int, int]:
    chosen = [j for j in judged if j.group == group and j.tools_on == tools_on]
    return sum(map(counts, chosen)), len(chosen)


# Each figure: (group, tools on?, which replies count). The report gives the share; `tool_counts` (k, n).
FIGURES = {
    "arith_acc_without": ("arithmetic", False, lambda j: j.outcome == "correct"),
    "arith_acc_with": ("arithmetic", True, lambda j: j.outcome == "correct"),
    "late_acc_without": ("late_people", False, lambda j: j.outcome == "correct"),
    "late_acc_with": ("late_people", True, lambda j: j.outcome == "correct"),
    "late_idk_without": ("late_people", False, lambda j: j.outcome == "idk"),
    "late_search_rate": ("late_people", True, lambda j: any(c.startswith("search(") for c, _ in j.calls)),
    "known_acc_without_tools": ("known_people", False, lambda j: j.outcome == "correct"),
    "known_acc_with_tools": ("known_people", True, lambda j: j.outcome == "correct"),
    "needless_call_rate": ("known_people", True, lambda j: bool(j.calls)),
    "arith_calculator_rate": ("arithmetic", True, lambda j: any(c.startswith("calculator(") for c, _ in j.calls)),
}


def tool_counts(judged: list) -> dict:
    """For each figure: (replies that count, replies it is a share of)."""
    return {name: _share(judged, group, on, what) for name, (group, on, what) in FIGURES.items()}


def tool_summary(judged: list, prefix: str = "tools") -> dict:
    """The report's flat figures, e.g. ``tools_arith_acc_with``; None where nothing was asked."""
    return {f"{prefix}_{name}": round(k / n, 4) if n else None for name, (k, n) in tool_counts(judged).items()}
