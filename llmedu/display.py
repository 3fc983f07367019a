"""Notebook views: tokens as coloured spans and a playground (lesson 01), a sampling explorer (lesson 02), a chat (04).

Each view is ONE cell output that carries two renderings: the live widget
(``application/vnd.jupyter.widget-view+json``) and a plain-text rendering
(``text/plain``). JupyterLab shows only the widget; places without a widget
frontend (nbval, a static notebook viewer, a terminal) show only the text.
"""

from __future__ import annotations

import html
import warnings

# Pale colours that keep black text readable, cycled over neighbouring tokens.
PALETTE = ("#fde2a7", "#c8e6c9", "#bbdefb", "#f8bbd0", "#d1c4e9", "#ffccbc")

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


# ------------------------------------------------------------ one output --

class WidgetWithText:
    """A widget and its plain rendering, displayed as one output.

    The mime bundle is the widget's own (so a frontend draws the live widget)
    with ``text/plain`` replaced by ``text``, which is what nbval compares and
    what a viewer without widgets shows instead.
    """

    def __init__(self, widget, text: str):
        self.widget = widget
        self.text = text

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude) or {}
        return {**bundle, "text/plain": self.text}

    def __repr__(self) -> str:
        return self.text


# ---------------------------------------------------------------- tokens --

def _is_one_character(data: bytes) -> bool:
    try:
        return len(data.decode("utf-8")) == 1
    except UnicodeDecodeError:
        return False


def readable_parts(data: bytes) -> list[tuple[str, bool]]:
    """Split bytes into (text, False) for whole UTF-8 characters and (hex, True) for the rest.

    A token often holds part of a character: 你 is e4 bd a0 in UTF-8, and a
    tokenizer may keep those as three tokens. Such bytes are shown by value,
    ``"e4 bd"``, instead of as the replacement character.
    """
    parts: list[tuple[str, bool]] = []
    stray = bytearray()  # bytes that start no whole character, waiting to be shown together
    i = 0
    while i < len(data):
        # A character takes 1 to 4 bytes; the first width that decodes is the only one that can.
        width = next((w for w in range(1, 5) if _is_one_character(data[i:i + w])), 0)
        if width:
            if stray:
                parts.append((stray.hex(" "), True))
                stray.clear()
            parts.append((data[i:i + width].decode("utf-8"), False))
            i += width
        else:
            stray.append(data[i])
            i += 1
    if stray:
        parts.append((stray.hex(" "), True))
    return parts


def readable(data: bytes) -> str:
    """The bytes as text, with bytes that are not whole characters written ``<e4 bd>``."""
    return "".join(f"<{text}>" if is_bytes else text for text, is_bytes in readable_parts(data))


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """What each token stands for, as text; partial UTF-8 characters as their bytes, e.g. ``<e4 bd>``."""
    return [readable(tokenizer.decode_bytes([i])) for i in ids]


def tokens_text(tokenizer, text: str, *, allowed_special=()) -> str:
    """One line per token: id and the text it stands for (the plain rendering).

    ``text`` is encoded as ordinary user text: special-token strings such as
    ``<|im_end|>`` stay text (lesson 01, section 7) unless listed in
    ``allowed_special`` (a collection of str, or ``"all"``).
    """
    ids = tokenizer.encode(text, allowed_special=allowed_special)
    lines = [f"{len(text)} characters, {len(text.encode('utf-8'))} bytes -> {len(ids)} tokens"]
    lines += [f"{token_id:>6}  {piece!r}" for token_id, piece in zip(ids, token_pieces(tokenizer, ids))]
    return "\n".join(lines)


def _part_html(text: str, is_bytes: bool) -> str:
    """One part of a token as HTML; bytes in grey italics, so they do not pass for typed text like ``<|``."""
    if is_bytes:
        return f'<i style="color:#555">{html.escape(f"<{text}>").replace(" ", "&nbsp;")}</i>'
    return html.escape(text).replace(" ", "&nbsp;").replace("\n", "\\n<br>")


def _token_span(token_id: int, data: bytes, colour: str) -> str:
    """One token as a coloured <span>; its title is the id (shown on hover)."""
    shown = "".join(_part_html(text, is_bytes) for text, is_bytes in readable_parts(data))
    return f'<span title="{token_id}" style="background:{colour};padding:1px 0">{shown}</span>'


def tokens_html(tokenizer, text: str, *, allowed_special=()) -> str:
    """The text with each token on its own coloured background; hover shows its id.

    Encodes like ``tokens_text``: special-token strings are text unless allowed.
    """
    ids = tokenizer.encode(text, allowed_special=allowed_special)
    spans = [
        _token_span(token_id, tokenizer.decode_bytes([token_id]), PALETTE[position % len(PALETTE)])
        for position, token_id in enumerate(ids)
    ]
    return f'<div style="font-family:monospace;line-height:1.8">{"".join(spans)}</div><div>ids: {ids}</div>'


def playground(tokenizer, text: str = "Hello world! 你好", *, allowed_special=()) -> WidgetWithText:
    """The playground of ``tokenizer_playground``, not yet displayed: a text box above its tokens."""
    import ipywidgets as widgets

    box = widgets.Textarea(value=text, description="text", layout=widgets.Layout(width="95%"))
    view = widgets.HTML(value=tokens_html(tokenizer, text, allowed_special=allowed_special))

    def update(change):
        view.value = tokens_html(tokenizer, change["new"], allowed_special=allowed_special)

    box.observe(update, names="value")
    return WidgetWithText(widgets.VBox([box, view]), tokens_text(tokenizer, text, allowed_special=allowed_special))


def tokenizer_playground(tokenizer, text: str = "Hello world! 你好", *, allowed_special=()) -> None:
    """Display a text box; the tokens of what you type appear below it, coloured, with their ids.

    What you type is encoded as user text, so ``<|im_end|>`` stays text;
    pass ``allowed_special="all"`` to see special tokens as control tokens.
    Without a widget frontend the output shows ``tokens_text`` of ``text``.
    """
    from IPython.display import display

    display(playground(tokenizer, text, allowed_special=allowed_special))


# -------------------------------------------------------------- sampling --

def distribution_text(probs, labels, top: int = 8) -> str:
    """The ``top`` most probable entries as text bars (the plain rendering of a distribution)."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])[:top]
    return "\n".join(f"{labels[i]!r:>12} {probs[i]:6.3f} {'#' * round(probs[i] * 40)}" for i in order)


def _distribution_html(probs, labels, top: int = 12) -> str:
    order = sorted(range(len(probs)), key=lambda i: -probs[i])[:top]
    rows = "".join(
        f'<tr><td style="text-align:right;font-family:monospace">{html.escape(repr(labels[i]))}</td>'
        f'<td><div style="background:#5b8def;height:12px;width:{probs[i] * 300:.0f}px"></div></td>'
        f"<td>{probs[i]:.3f}</td></tr>"
        for i in order
    )
    return f"<table>{rows}</table>"


def explorer(logits, labels, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0) -> WidgetWithText:
    """The explorer of ``sampling_explorer``, not yet displayed: three sliders above the distribution."""
    import ipywidgets as widgets

    from llmedu.generate import apply_temperature, top_k_filter, top_p_filter

    def probabilities(t, k, p):
        return top_p_filter(top_k_filter(apply_temperature(logits, t), k), p)

    top_k = len(logits) if top_k is None else top_k
    sliders = [
        widgets.FloatSlider(value=temperature, min=0.0, max=3.0, step=0.05, description="temperature"),
        widgets.IntSlider(value=top_k, min=1, max=len(logits), description="top_k"),
        widgets.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, description="top_p"),
    ]
    start = probabilities(temperature, top_k, top_p)
    view = widgets.HTML(value=_distribution_html(start, labels))

    def update(_change):
        view.value = _distribution_html(probabilities(*(s.value for s in sliders)), labels)

    for slider in sliders:
        slider.observe(update, names="value")
    return WidgetWithText(widgets.VBox([*sliders, view]), distribution_text(start, labels))


def sampling_explorer(logits, labels, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0) -> None:
    """Display sliders for temperature, top-k and top-p over a next-token distribution (lesson 02).

    logits: (vocab,); labels: what each id stands for. Without a widget
    frontend the output shows the starting distribution as text.
    """
    from IPython.display import display

    display(explorer(logits, labels, temperature, top_k, top_p))


# ------------------------------------------------------------------ chat --

def transcript_text(exchanges: list[tuple]) -> str:
    """A static transcript (the plain rendering of the chat widget): one "You:" and one "Assistant:" line each.

    An exchange is ``(question, answer)`` or ``(question, answer, calls)``; each
    tool call shows as a line ``[call] ... -> ...`` before the answer.
    """
    lines = []
    for question, answer, *calls in exchanges:
        lines.append(f"You: {question}")
        lines += [f"  [call] {call} -> {result}" for call, result in (calls[0] if calls else [])]
        lines.append(f"Assistant: {answer}")
    return "\n".join(lines)


def _transcript_html(exchanges: list[tuple]) -> str:
    rows = []
    for question, answer, *calls in exchanges:
        rows.append(f"<div><b>You:</b> {html.escape(question)}</div>")
        rows += [f'<div style="color:#888;font-family:monospace;font-size:90%">[call] {html.escape(call)} &rarr; '
                 f"{html.escape(result)}</div>" for call, result in (calls[0] if calls else [])]
        rows.append(f'<div style="margin-bottom:6px;color:#1a4d8f"><b>Assistant:</b> {html.escape(answer)}</div>')
    return f'<div style="font-family:sans-serif">{"".join(rows)}</div>'


def chat_widget(params, config, tokenizer, *, transcript=None, temperature: float = 0.0,
                max_new_tokens: int = 64, seed: int = 0, tools: dict | None = None) -> WidgetWithText:
    """A chat box for a chat model (lesson 04): a text box, the transcript, a temperature slider.

    ``transcript``: questions answered when the widget is built, each as a
    fresh conversation at ``temperature``; they start the live transcript and
    are the whole text rendering (what nbval and static viewers show). Typed
    questions continue one conversation with the history kept; "reset"
    starts a new one. Replies come from :func:`llmedu.chat.chat`, or, with
    ``tools`` (a registry, lesson 06), from
    :func:`llmedu.tool_engine.chat_with_tools`, each call shown dimmed.
    """
    import ipywidgets as widgets

    from llmedu.chat import chat
    from llmedu.tool_engine import ToolReply, chat_with_tools, reply_turns

    def answer(conversation, t) -> ToolReply:
        sampling = dict(temperature=t, max_new_tokens=max_new_tokens, seed=seed)
        with warnings.catch_warnings():  # a reply cut short is shown as it is
            warnings.simplefilter("ignore")
            if tools is not None:
                return chat_with_tools(params, config, tokenizer, conversation, tools, **sampling)
            return ToolReply([], True, [], chat(params, config, tokenizer, conversation, **sampling))

    replies = [(q, answer([{"role": "user", "content": q}], temperature)) for q in (transcript or [])]
    exchanges = [(q, reply.answer.strip(), reply.calls) for q, reply in replies]
    history: list[dict] = []  # the live conversation's turns
    box = widgets.Text(placeholder="Ask something and press Enter", continuous_update=False,
                       layout=widgets.Layout(width="70%"))
    slider = widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05, description="temperature")
    reset = widgets.Button(description="reset")
    view = widgets.HTML(value=_transcript_html(exchanges))

    def send(change):
        question = change["new"].strip()
        if not question:
            return
        box.value = ""
        turns = history + [{"role": "user", "content": question}]
        try:
            reply = answer(turns, slider.value)
        except ValueError as error:  # e.g. the conversation no longer fits the context: start afresh
            history.clear()
            exchanges.append((question, f"[{error} Press reset or ask again.]", []))
        else:
            history[:] = turns + reply_turns(reply)
            exchanges.append((question, reply.answer.strip(), reply.calls))
        view.value = _transcript_html(exchanges)

    def restart(_button):
        history.clear()
        exchanges.clear()
        view.value = ""

    box.observe(send, names="value")  # not on every keystroke: continuous_update is off
    reset.on_click(restart)
    widget = widgets.VBox([view, widgets.HBox([box, reset]), slider])
    return WidgetWithText(widget, transcript_text(exchanges))
