"""``llmedu chat``: talk to a chat model in the terminal, or answer prompts for scripts (lesson 04).

    llmedu chat                         the shipped chat model, a conversation (/reset, /quit)
    llmedu chat --model runs/sft        your own
    llmedu chat -p "When was Ilsa Varrow born?"          only the reply
    llmedu chat --prompts questions.txt --json           [{"prompt": ..., "reply": ...}, ...]

In a conversation the history is kept; when it no longer fits the model's
context, the oldest exchanges are dropped (and the user is told).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from llmedu.chat import ConversationError, chat


def load_model(path: str | None):
    """(params, config, tokenizer) of ``path``, or of the shipped chat model when ``path`` is None."""
    if path is None:
        from llmedu.chat_model import load_chat_model

        return load_chat_model()[:3]
    from llmedu.sample import load_run

    return load_run(path)[:3]


def answer(model, question: str, args, history: list | None = None) -> str:
    """The reply to ``question`` after ``history`` (a list of turns, updated in place when given)."""
    conversation = (history or []) + [{"role": "user", "content": question}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a reply cut short is still printed as it is
        reply = chat(*model, conversation, temperature=args.temperature, top_p=args.top_p,
                     max_new_tokens=args.max_new_tokens, seed=args.seed)
    if history is not None:
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    return reply


def converse(model, args, read=input, write=print) -> None:
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
                write("assistant> " + answer(model, line, args, history))
                break
            except ConversationError:  # too long for the context: forget the oldest exchange
                if not history:
                    write("(that message alone is longer than the model's context; shorten it)")
                    break
                del history[:2]
                write("(the oldest exchange was dropped to fit the context)")


def run_chat(args) -> int:
    """The ``llmedu chat`` command; returns its exit code."""
    try:
        model = load_model(args.model)
        if args.prompt is not None:
            print(answer(model, args.prompt, args))
        elif args.prompts is not None:
            questions = [line.strip() for line in Path(args.prompts).read_text(encoding="utf-8").splitlines() if line.strip()]
            replies = [{"prompt": q, "reply": answer(model, q, args)} for q in questions]
            print(json.dumps(replies, indent=2, ensure_ascii=False) if args.json
                  else "\n\n".join(f"> {r['prompt']}\n{r['reply']}" for r in replies))
        else:
            converse(model, args)
    except (ValueError, OSError) as err:  # no model file, a tokenizer without chat tokens, an unreadable prompts file
        print(f"llmedu chat: {err}", file=sys.stderr)
        return 2
    return 0
