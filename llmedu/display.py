"""Showing tokens in a notebook: coloured spans, and a playground to type into (lesson 01).

Everything here works without a widget frontend: each view prints a plain-text
rendering as well, so nbval (which has no frontend) compares that, and a
learner in JupyterLab gets the interactive version.
"""

from __future__ import annotations

import html

# Pale colours that keep black text readable, cycled over neighbouring tokens.
PALETTE = ("#fde2a7", "#c8e6c9", "#bbdefb", "#f8bbd0", "#d1c4e9", "#ffccbc")


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """What each token stands for, as text (partial UTF-8 characters shown as U+FFFD)."""
    return [tokenizer.decode_bytes([i]).decode("utf-8", errors="replace") for i in ids]


def tokens_text(tokenizer, text: str) -> str:
    """One line per token: id and the text it stands for (the plain rendering)."""
    ids = tokenizer.encode(text, allowed_special="all")
    lines = [f"{len(text)} characters, {len(text.encode('utf-8'))} bytes -> {len(ids)} tokens"]
    lines += [f"{token_id:>6}  {piece!r}" for token_id, piece in zip(ids, token_pieces(tokenizer, ids))]
    return "\n".join(lines)


def tokens_html(tokenizer, text: str) -> str:
    """The text with each token on its own coloured background; hover shows its id."""
    ids = tokenizer.encode(text, allowed_special="all")
    spans = []
    for position, (token_id, piece) in enumerate(zip(ids, token_pieces(tokenizer, ids))):
        colour = PALETTE[position % len(PALETTE)]
        shown = html.escape(piece).replace(" ", "&nbsp;").replace("\n", "\\n<br>")
        spans.append(f'<span title="{token_id}" style="background:{colour};padding:1px 0">{shown}</span>')
    return f'<div style="font-family:monospace;line-height:1.8">{"".join(spans)}</div><div>ids: {ids}</div>'


def tokenizer_playground(tokenizer, text: str = "Hello world! 你好") -> None:
    """A text box; the tokens of what you type appear below it, coloured, with their ids.

    Prints the plain rendering of ``text`` first, so the cell's output means
    something where widgets cannot run (nbval, a static notebook viewer).
    """
    import ipywidgets as widgets
    from IPython.display import display

    print(tokens_text(tokenizer, text))
    box = widgets.Textarea(value=text, description="text", layout=widgets.Layout(width="95%"))
    view = widgets.HTML(value=tokens_html(tokenizer, text))

    def update(change):
        view.value = tokens_html(tokenizer, change["new"])

    box.observe(update, names="value")
    display(widgets.VBox([box, view]))
