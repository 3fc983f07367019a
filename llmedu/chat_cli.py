"""``llmedu chat``: talk to a chat model in the terminal, or answer prompts for scripts (lesson 04).

    llmedu chat                         the shipped chat model, a conversation (/reset, /quit)
    llmedu chat --model runs/sft        your own
    llmedu chat -p "When was Ilsa Varrow born?"          only the reply
    llmedu chat --prompts questions.txt --json           [{"prompt": ..., "reply": ...}, ...]
    llmedu chat --tools calculator,search                the shipped tool model, its calls shown (lesson 06)

In a conversation the history is kept; when it no longer fits the model's
context, the oldest exchanges are dropped (and the user is told).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from llmedu.chat import ConversationError, chat, markers_of
from llmedu.tool_engine import chat_with_tools, reply_turns

DIM, PLAIN = "\033[2m", "\033[0m"  # terminal escapes: tool traffic is shown dimmed


def load_model(path: str | None, tools: bool = False):
    """(params, config, tokenizer) of ``path``, or of the shipped chat (or, with ``tools``, tool) model."""
    if path is None:
        from llmedu.chat_model import load_chat_model
        from llmedu.tool_model import load_tool_model

        return (load_tool_model() if tools else load_chat_model())[:3]
    from llmedu.sample import load_run

    return load_run(path)[:3]


def tool_registry(names: str, tokenizer, world_seed: int, world_people: int, context_length: int = 256) -> dict:
    """The tools named in ``--tools`` (comma-separated), the search store from the world the model read."""
    from llmedu.tools import default_tools
    from llmedu.world import make_world

    markers_of(tokenizer, tools=True)  # a model without the tool markers cannot call anything: say so now
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    available = default_tools(make_world(world_seed, n_people=world_people), tokenizer, context_length)
    if unknown := [name for name in wanted if name not in available]:
        raise ValueError(f"unknown tools {unknown}; --tools takes a comma-separated list of {', '.join(available)}.")
    return {name: available[name] for name in wanted}


def answer(model, question: str, args, history: list | None = None, tools: dict | None = None) -> dict:
    """``{"prompt", "reply", "calls"}`` for ``question`` after ``history`` (a list of turns, updated in place)."""
    turns = (history or []) + [{"role": "user", "content": question}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a reply cut short is still printed as it is
        if tools is None:
            reply, calls = chat(*model, turns, temperature=args.temperature, top_p=args.top_p,
                                max_new_tokens=args.max_new_tokens, seed=args.seed), []
        else:
            tool_reply = chat_with_tools(*model, turns, tools, temperature=args.temperature, top_p=args.top_p,
                                         max_new_tokens=args.max_new_tokens, seed=args.seed)
            reply, calls = tool_reply.answer, tool_reply.calls
    if history is not None:
        history.append({"role": "user", "content": question})
        history += reply_turns(tool_reply) if tools is not None else [{"role": "assistant", "content": reply}]
    return {"prompt": question, "reply": reply, "calls": [{"call": c, "result": r} for c, r in calls]}


def shown(result: dict, colour: bool) -> str:
    """The reply as printed: each call and its result on a line of its own, dimmed on a terminal."""
    dim, plain = (DIM, PLAIN) if colour else ("", "")
    lines = [f"{dim}[call] {c['call']}\n[result] {c['result']}{plain}" for c in result["calls"]]
    return "\n".join(lines + [result["reply"]])


def converse(model, args, read=input, write=print, tools: dict | None = None) -> None:
    """The terminal loop: a line in, the reply out; /reset forgets the history, /quit (or end of input) leaves."""
    write("Chat with the model. /reset starts over, /quit leaves.")
    history: list = []
    while True:
        try:
            line = read("you> ").strip()
        except EOFError:
            return
        if line == "/quit":
            return
        if line == "/reset":
            history.clear()
            write("(history cleared)")
            continue
        if not line:
            continue
        while True:
            try:
                write("assistant> " + shown(answer(model, line, args, history, tools), colour=sys.stdout.isatty()))
                break
            except ConversationError:  # too long for the context: forget the oldest exchange
                if not history:
                    write("(that message alone is longer than the model's context; shorten it)")
                    break
                del history[:2]
                write("(the oldest exchange was dropped to fit the context)")


def run_chat(args) -> int:
    """The ``llmedu chat`` command; returns its exit code."""
    if args.max_new_tokens is None:  # a tool's result lands in the reply too: leave room for a page
        args.max_new_tokens = 256 if args.tools else 128
    try:
        model = load_model(args.model, tools=bool(args.tools))
        tools = (tool_registry(args.tools, model[2], args.world_seed, args.world_people, model[1].max_seq_len)
                 if args.tools else None)
        colour = sys.stdout.isatty()
        if args.prompt is not None:
            print(shown(answer(model, args.prompt, args, tools=tools), colour))
        elif args.prompts is not None:
            questions = [line.strip() for line in Path(args.prompts).read_text(encoding="utf-8").splitlines() if line.strip()]
            replies = [answer(model, q, args, tools=tools) for q in questions]
            if not args.tools:
                replies = [{"prompt": r["prompt"], "reply": r["reply"]} for r in replies]
            print(json.dumps(replies, indent=2, ensure_ascii=False) if args.json
                  else "\n\n".join(f"> {r['prompt']}\n{shown({'calls': [], **r}, colour)}" for r in replies))
        else:
            converse(model, args, tools=tools)
    except (ValueError, OSError) as err:  # no model file, a tokenizer without chat tokens, an unreadable prompts file
        print(f"llmedu chat: {err}", file=sys.stderr)
        return 2
    return 0
