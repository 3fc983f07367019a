"""The chat template: conversations as tokens, with the loss mask SFT trains on (lesson 04).

A conversation is a list of turns ``{"role": ..., "content": ...}``. Each turn
becomes

    <|im_start|>{role}<|im_sep|>{content}<|im_end|>

with the three markers as special tokens and the role and content as ordinary
text. Two consequences the lessons rely on:

- the loss mask: SFT learns only what the assistant says, so the mask is 1 on
  the assistant's content tokens and its closing ``<|im_end|>`` (the model must
  learn to stop) and 0 on everything else: the markers, the role names, the
  user's and the system's words;
- content never produces a control token: a user who types ``<|im_end|>`` gets
  those characters as text, so nobody can close a turn or open the
  assistant's from inside a message.

At inference the prompt ends with ``<|im_start|>assistant<|im_sep|>`` and the
model continues until it writes ``<|im_end|>`` (:func:`chat`). The generation
engine knows nothing of roles: it gets ids and a stop id.

Tool turns (lesson 06). An assistant turn followed by a ``tool`` turn is a
call, and the tool turn is what the runtime answered; both stay inside the
assistant's message, which goes on after the result:

    <|im_start|>assistant<|im_sep|><|call_start|>calculator(347 * 29)<|call_end|>
    <|result_start|>10063<|result_end|>347 * 29 = 10063.<|im_end|>

The call, with both its markers, is the assistant's (mask 1: the model must
learn to call, and to stop so the runtime can answer); the result, markers
included, comes from the runtime (mask 0: the model reads it, never writes
it). The four markers are special tokens that text, typed or retrieved, can
never produce (:data:`llmedu.tokenizer.TOOL_SPECIAL_TOKENS`).

Left out: several conversations packed into one training row (the SFT loop
does that) and text before a call in the same assistant turn.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

from llmedu.tokenizer import TOOL_SPECIAL_TOKENS

IM_START, IM_SEP, IM_END = "<|im_start|>", "<|im_sep|>", "<|im_end|>"
CALL_START, CALL_END, RESULT_START, RESULT_END = TOOL_SPECIAL_TOKENS
ROLES = ("system", "user", "assistant", "tool")
# Which role may come next, after an optional system turn first (None: at the start).
NEXT_ROLES = {None: ("user",), "user": ("assistant",), "assistant": ("user", "tool"), "tool": ("assistant",)}


class ConversationError(ValueError):
    """A conversation the template cannot render; the message names the turn and the fix."""


# ----------------------------------------------------------- validation --

class Markers(NamedTuple):
    """The template's special-token ids; the tool markers are None for a tokenizer without them."""

    start: int
    sep: int
    end: int
    call_start: int | None = None
    call_end: int | None = None
    result_start: int | None = None
    result_end: int | None = None


def markers_of(tokenizer, tools: bool = False) -> Markers:
    """The tokenizer's template markers; ``tools=True`` also requires the four tool markers."""
    specials = getattr(tokenizer, "special_tokens", {})
    missing = [m for m in (IM_START, IM_SEP, IM_END) if m not in specials]
    if missing:
        raise ConversationError(
            f"the tokenizer has no special tokens {missing}; train it with "
            "special_tokens=CHAT_SPECIAL_TOKENS (llmedu.tokenizer) or use the shipped chat model's tokenizer.")
    if tools and (missing := [m for m in TOOL_SPECIAL_TOKENS if m not in specials]):
        raise ConversationError(
            f"tool turns need the special tokens {missing}, which this tokenizer lacks; add them to a trained model "
            "with llmedu.vocab.add_special_tokens(..., TOOL_SPECIAL_TOKENS), or use the shipped tool model.")
    return Markers(*(specials.get(m) for m in (IM_START, IM_SEP, IM_END, *TOOL_SPECIAL_TOKENS)))


def check_conversation(conversation, *, ends_with: str) -> None:
    """Raise ConversationError unless ``conversation`` is well formed.

    Well formed: a non-empty list of ``{"role", "content"}`` dicts with str
    content; an optional ``system`` turn first; then ``user`` and
    ``assistant`` alternating, starting with ``user`` and ending with the
    role ``ends_with`` (``"assistant"`` for training, ``"user"`` for a prompt).
    """
    if not isinstance(conversation, (list, tuple)) or not conversation:
        raise ConversationError(f"a conversation is a non-empty list of turns like "
                                f"{{'role': 'user', 'content': 'Hi'}}, got {conversation!r:.80}.")
    for index, turn in enumerate(conversation):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise ConversationError(f"turn {index}: a turn is a dict with exactly the keys 'role' and 'content', "
                                    f"got {turn!r:.80}.")
        if turn["role"] not in ROLES:
            raise ConversationError(f"turn {index}: unknown role {turn['role']!r}; use one of {list(ROLES)}.")
        if not isinstance(turn["content"], str):
            raise ConversationError(f"turn {index}: content must be a str, got {type(turn['content']).__name__}; "
                                    "convert it with str() first.")
    start = 1 if conversation[0]["role"] == "system" else 0
    previous = None
    for index in range(start, len(conversation)):
        role = conversation[index]["role"]
        if role not in NEXT_ROLES[previous]:
            raise ConversationError(
                f"turn {index}: expected a {' or '.join(map(repr, NEXT_ROLES[previous]))} turn, got {role!r}; after "
                "an optional system turn first, user and assistant turns alternate, starting with the user (a tool "
                "turn may answer an assistant's call, and the assistant speaks again after it).")
        previous = role
    endings = (ends_with,) if isinstance(ends_with, str) else tuple(ends_with)
    if len(conversation) == start or conversation[-1]["role"] not in endings:
        raise ConversationError(f"turn {len(conversation) - 1}: the conversation must end with a "
                                f"{' or '.join(map(repr, endings))} turn here (a prompt ends with the user, or with a "
                                "tool's result; training data with the assistant).")


def _check_length(ids: list[int], max_tokens: int | None) -> None:
    if max_tokens is not None and len(ids) > max_tokens:
        raise ConversationError(f"the conversation renders to {len(ids)} tokens, more than the {max_tokens} the model "
                                "reads; drop early turns or shorten the content.")


# ------------------------------------------------------------- rendering --

def _render_turn(conversation, index: int, tokenizer, markers: Markers) -> tuple[list[int], list[int]]:
    """Turn ``index``'s ids and mask (the content is encoded as plain text: no control tokens)."""
    role, content = conversation[index]["role"], conversation[index]["content"]
    previous = conversation[index - 1]["role"] if index else None
    following = conversation[index + 1]["role"] if index + 1 < len(conversation) else None
    text = tokenizer.encode(content)
    if role == "tool":  # the runtime's answer, inside the assistant's message
        ids = [markers.result_start, *text, markers.result_end]
        return ids, [0] * len(ids)
    header = [] if previous == "tool" else [markers.start, *tokenizer.encode(role), markers.sep]
    if role == "assistant" and following == "tool":  # a call: generation pauses at <|call_end|>
        body = [markers.call_start, *text, markers.call_end]
    else:
        body = [*text, markers.end]
    learn = 1 if role == "assistant" else 0
    return header + body, [0] * len(header) + [learn] * len(body)


def _render_turns(conversation, tokenizer) -> tuple[list[int], list[int]]:
    markers = markers_of(tokenizer, tools=any(turn["role"] == "tool" for turn in conversation))
    ids, mask = [], []
    for index in range(len(conversation)):
        turn_ids, turn_mask = _render_turn(conversation, index, tokenizer, markers)
        ids += turn_ids
        mask += turn_mask
    return ids, mask


def render_conversation(conversation, tokenizer, max_tokens: int | None = None) -> tuple[list[int], list[int]]:
    """A training conversation as ``(ids, loss_mask)``, two lists of the same length.

    The mask is 1 exactly on the assistant turns' content tokens and their
    closing ``<|im_end|>``, and on a tool call with both its markers; 0 on
    tool results. ``max_tokens`` (e.g. the model's context length) turns a
    too-long conversation into a ConversationError.
    """
    check_conversation(conversation, ends_with="assistant")
    ids, mask = _render_turns(conversation, tokenizer)
    _check_length(ids, max_tokens)
    return ids, mask


def render_prompt(conversation, tokenizer, max_tokens: int | None = None) -> list[int]:
    """The ids that ask for the assistant's next reply: every turn, then ``<|im_start|>assistant<|im_sep|>``.

    A conversation may also end with a tool's result (lesson 07 forces a
    search and its result this way): the assistant then goes on in the same
    message, so no header is added.
    """
    check_conversation(conversation, ends_with=("user", "tool"))
    ids, _ = _render_turns(conversation, tokenizer)
    if conversation[-1]["role"] == "user":
        markers = markers_of(tokenizer)
        ids += [markers.start, *tokenizer.encode("assistant"), markers.sep]
    _check_length(ids, max_tokens)
    return ids


# ---------------------------------------------------------------- replies --

def reply_loop(next_token, prompt_ids: list, end_id: int, max_new_tokens: int) -> tuple[list[int], bool]:
    """The reply loop, written out (lesson 04, exercise 4.3): ``(new_ids, finished)``.

    ``next_token(ids) -> int`` is the model: given every id so far, it
    returns the next one. The loop asks it again and again, appending each
    answer, until it returns ``end_id`` (not kept in the reply; ``finished``
    is True) or ``max_new_tokens`` ids have been written (``finished`` is
    False). Only the new ids are returned, never the prompt. Nothing here
    knows about roles: the template made the prompt, and ``<|im_end|>`` is
    just the id we stop at.
    """
    ids, reply = list(prompt_ids), []
    while len(reply) < max_new_tokens:
        token = next_token(ids)
        if token == end_id:
            return reply, True
        reply.append(token)
        ids.append(token)
    return reply, False


def reply_ids(params: dict, config, tokenizer, prompt_ids: list, *, temperature: float = 0.0,
              top_p: float | None = None, max_new_tokens: int = 128, seed: int = 0) -> tuple[list[int], bool]:
    """The ids the model writes after ``prompt_ids`` until ``<|im_end|>``, and whether it got there.

    The fast equivalent of :func:`reply_loop` with the model as ``next_token``:
    the engine (:func:`llmedu.generate.generate`, with its key-value cache)
    knows nothing of turns: it is given the prompt's ids and ``<|im_end|>``
    as its stop id. It also stops at the context length (``finished`` False).
    """
    from llmedu.generate import generate

    end = markers_of(tokenizer).end
    tokens = generate(params, config, prompt_ids, max_new_tokens=max_new_tokens, temperature=temperature,
                      top_p=top_p, seed=seed, stop_ids=[end])
    reply = list(tokens)
    room = config.max_seq_len - len(prompt_ids)
    return reply, len(reply) < min(max_new_tokens, room)


def chat(params: dict, config, tokenizer, conversation, *, temperature: float = 0.0, top_p: float | None = None,
         max_new_tokens: int = 128, seed: int = 0) -> str:
    """The assistant's reply to ``conversation`` (which ends with a user turn), as text.

    Generates until the model writes ``<|im_end|>``. temperature 0 (the
    default) is greedy, so the same question gets the same answer; otherwise
    ``seed`` fixes the draw. If the reply runs into ``max_new_tokens`` or the
    context length first, it is returned as far as it got, with a warning.
    """
    prompt = render_prompt(conversation, tokenizer, max_tokens=config.max_seq_len - 1)
    reply, finished = reply_ids(params, config, tokenizer, prompt, temperature=temperature, top_p=top_p,
                                max_new_tokens=max_new_tokens, seed=seed)
    if not finished:
        room = config.max_seq_len - len(prompt)
        limit = "max_new_tokens" if max_new_tokens <= room else f"the context length ({config.max_seq_len} tokens)"
        warnings.warn(f"the reply stopped at {limit} before the model wrote {IM_END}; it may be cut short.",
                      stacklevel=2)
    return tokenizer.decode(reply)
