"""Notebook views: tokens as coloured spans and a playground (lesson 01), a sampling explorer (lesson 02).

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


def sampling_explorer(logits, labels, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0) -> None:
    """Sliders for temperature, top-k and top-p over a next-token distribution (lesson 02).

    logits: (vocab,); labels: what each id stands for. Prints the starting
    distribution as text first, for places without widgets.
    """
    import ipywidgets as widgets
    from IPython.display import display

    from llmedu.generate import apply_temperature, top_k_filter, top_p_filter

    def probabilities(t, k, p):
        return top_p_filter(top_k_filter(apply_temperature(logits, t), k), p)

    top_k = len(logits) if top_k is None else top_k
    print(distribution_text(probabilities(temperature, top_k, top_p), labels))
    sliders = [
        widgets.FloatSlider(value=temperature, min=0.0, max=3.0, step=0.05, description="temperature"),
        widgets.IntSlider(value=top_k, min=1, max=len(logits), description="top_k"),
        widgets.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, description="top_p"),
    ]
    view = widgets.HTML(value=_distribution_html(probabilities(temperature, top_k, top_p), labels))

    def update(_change):
        view.value = _distribution_html(probabilities(*(s.value for s in sliders)), labels)

    for slider in sliders:
        slider.observe(update, names="value")
    display(widgets.VBox([*sliders, view]))
