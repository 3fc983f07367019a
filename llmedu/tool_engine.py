"""The engine that lets a model use tools: generate, pause at a call, run it, force the result in, go on (lesson 06).

The model writes a call between ``<|call_start|>`` and ``<|call_end|>``, such
as ``calculator(347 * 29)``. Generation pauses at ``<|call_end|>``; the
runtime reads the call, runs the tool and appends

    <|result_start|>10063<|result_end|>

as *forced* tokens: the model did not choose them, it reads them, exactly as
it reads a prompt. Then generation resumes until ``<|im_end|>``.

The engine knows nothing of what a tool does: a tool is any function
``str -> str`` in a registry (a dict name -> function, :mod:`llmedu.tools`);
the engine parses ``name(argument)``, looks the name up and passes the
argument as text. Whatever goes wrong (an unknown tool, a malformed call, a
tool that raises, too many calls) becomes an ``error: ...`` result the model
reads, never an exception that ends the conversation.

Two versions with the same steps: :func:`tool_loop` over a ``next_token``
function, written out (exercise 6.2), and :func:`reply_with_tools`, which
generates each stretch between calls with the KV-cached
:func:`llmedu.generate.generate`.

Left out: calls running in parallel, streaming a tool's output, and a tool
deciding to stop the conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llmedu.chat import Markers, markers_of

# The system turn that tells the model it may call tools; without it, it answers as lesson 04's assistant.
TOOLS_SYSTEM = "Tools: calculator(expression) for arithmetic, search(name) for people you do not know."
CALL = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\((.*)\)\s*", re.DOTALL)  # name(argument), the argument as text
MAX_CALLS = 4  # per reply: a model stuck calling again and again gets an error instead of the context filling up


def with_tools(conversation: list) -> list:
    """The conversation with the system turn that switches the tools on."""
    return [{"role": "system", "content": TOOLS_SYSTEM}, *conversation]


def parse_call(text: str) -> tuple[str, str] | None:
    """``"calculator(347 * 29)"`` -> ``("calculator", "347 * 29")``; None if it is not ``name(argument)``."""
    match = CALL.fullmatch(text)
    return (match.group(1), match.group(2).strip()) if match else None


def run_call(call_text: str, tools: dict) -> str:
    """Run one call against the registry ``tools`` (name -> ``str -> str``); always returns text."""
    parsed = parse_call(call_text)
    if parsed is None:
        return "error: a call looks like name(argument)"
    name, argument = parsed
    if name not in tools:
        available = ", ".join(sorted(tools)) or "none"
        return f"error: no tool named {name!r} (available: {available})"
    try:
        result = tools[name](argument)
    except Exception as err:  # a tool's bug must not end the chat; the model sees that the call failed
        return f"error: {name} failed ({type(err).__name__})"
    return result if isinstance(result, str) else f"error: {name} returned {type(result).__name__}, not text"


def tool_loop(next_token, prompt_ids: list, run_call_ids, markers: Markers, max_new_tokens: int) -> tuple[list, bool]:
    """The pause–run–resume loop, written out (exercise 6.2): ``(new_ids, finished)``.

    ``next_token(ids) -> int`` is the model; ``run_call_ids(call_ids) ->
    result_ids`` is the runtime (it decodes the call, runs the tool and
    encodes its answer as plain text). Each time the model writes
    ``markers.call_end``, the ids since the last ``markers.call_start`` are
    the call, and ``[result_start, *result_ids, result_end]`` is appended as
    if the model had written it. Stops at ``markers.end`` (not kept;
    ``finished`` True) or once ``max_new_tokens`` ids, forced ones included,
    are written (``finished`` False). Returns the new ids only.
    """
    ids, new = list(prompt_ids), []
    while len(new) < max_new_tokens:
        token = next_token(ids)
        if token == markers.end:
            return new, True
        ids.append(token)
        new.append(token)
        if token == markers.call_end:
            call = _call_ids(new, markers)
            forced = [markers.result_start, *run_call_ids(call), markers.result_end]
            ids += forced
            new += forced
    return new, False


def _call_ids(ids: list, markers: Markers) -> list:
    """The call that ends ``ids`` (the reply so far): the ids after its ``call_start``, looked for since the last result."""
    since = max((i for i, token in enumerate(ids) if token == markers.result_end), default=-1) + 1
    starts = [i for i in range(since, len(ids)) if ids[i] == markers.call_start]
    return ids[(starts[-1] + 1 if starts else since):-1]


@dataclass
class ToolReply:
    """What :func:`reply_with_tools` produced."""

    ids: list  # every new id: the model's and the forced results, without the final <|im_end|>
    finished: bool  # the model wrote <|im_end|> (False: it ran into max_new_tokens or the context length)
    calls: list = field(default_factory=list)  # (call text, result text) for each call, in order
    answer: str = ""  # the text after the last tool result: the reply the user reads


def runtime(tokenizer, tools: dict, calls: list, max_calls: int = MAX_CALLS):
    """A ``run_call_ids`` for :func:`tool_loop`: decode, run (recording into ``calls``), encode as plain text."""
    def run_call_ids(call_ids: list) -> list:
        call = tokenizer.decode(call_ids)
        result = run_call(call, tools) if len(calls) < max_calls else f"error: more than {max_calls} calls"
        calls.append((call, result))
        return tokenizer.encode(result)  # plain text: a result can never forge a control token
    return run_call_ids


def reply_with_tools(params: dict, config, tokenizer, prompt_ids: list, tools: dict, *, temperature: float = 0.0,
                     top_p: float | None = None, max_new_tokens: int = 128, seed: int = 0,
                     max_calls: int = MAX_CALLS) -> ToolReply:
    """The fast :func:`tool_loop`: each stretch between calls comes from the KV-cached generator.

    Same ids as ``tool_loop`` with the model as ``next_token`` (tested,
    greedy); with temperature > 0 each stretch draws from ``seed`` plus its
    index, so the whole reply is fixed by ``seed``.
    """
    from llmedu.generate import generate

    markers = markers_of(tokenizer, tools=True)
    calls = []
    run_call_ids = runtime(tokenizer, tools, calls, max_calls)
    ids, new, stretch = list(prompt_ids), [], 0
    while True:  # each stretch writes at least <|call_end|> and is answered, so the budget runs out
        budget = min(max_new_tokens - len(new), config.max_seq_len - len(ids))
        if budget <= 0:  # a long result can fill the context: the reply is cut, and says so
            return ToolReply(new, False, calls, _answer(tokenizer, new, markers))
        written = []
        for token in generate(params, config, ids, max_new_tokens=budget, temperature=temperature,
                              top_p=top_p, seed=seed + stretch, stop_ids=[markers.end]):
            written.append(token)
            if token == markers.call_end:
                break  # pause: the runtime answers before the model goes on
        ids += written
        new += written
        if not written or written[-1] != markers.call_end:
            finished = len(written) < budget  # it stopped at <|im_end|>, not at a limit
            return ToolReply(new, finished, calls, _answer(tokenizer, new, markers))
        forced = [markers.result_start, *run_call_ids(_call_ids(new, markers)), markers.result_end]
        ids += forced
        new += forced
        stretch += 1


def _answer(tokenizer, new: list, markers: Markers) -> str:
    """The text after the last tool result (all of it when no tool was called)."""
    ends = [i for i, token in enumerate(new) if token == markers.result_end]
    return tokenizer.decode(new[ends[-1] + 1:] if ends else new)


def transcript(tokenizer, ids: list, markers: Markers) -> str:
    """The reply's ids as text with the tool traffic marked: ``[call: ...]`` and ``[result: ...]``."""
    shown = {markers.call_start: "[call: ", markers.call_end: "]", markers.result_start: "[result: ",
             markers.result_end: "]"}
    parts, run = [], []
    for token in ids:
        if token in shown:
            parts += [tokenizer.decode(run), shown[token]]
            run = []
        else:
            run.append(token)
    return "".join(parts + [tokenizer.decode(run)])


def chat_with_tools(params: dict, config, tokenizer, conversation: list, tools: dict, **sampling) -> ToolReply:
    """The assistant's reply to ``conversation`` (ending with a user turn) with ``tools`` on.

    The tools' system turn goes first; ``sampling`` (temperature, top_p,
    max_new_tokens, seed) goes to :func:`reply_with_tools`.
    """
    from llmedu.chat import render_prompt

    prompt = render_prompt(with_tools(conversation), tokenizer, max_tokens=config.max_seq_len - 1)
    return reply_with_tools(params, config, tokenizer, prompt, tools, **sampling)


def reply_turns(reply: ToolReply) -> list:
    """The reply as conversation turns, calls and results included: what a history keeps."""
    turns = []
    for call, result in reply.calls:
        turns += [{"role": "assistant", "content": call}, {"role": "tool", "content": result}]
    return turns + [{"role": "assistant", "content": reply.answer}]
