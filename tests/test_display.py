"""Specifications of the notebook views in ``llmedu.display`` (lessons 01 and 02).

Each view must be one output: the live widget for JupyterLab and, as its
text/plain, the plain rendering that nbval compares. Token pieces that are not
whole UTF-8 characters must be readable bytes, never U+FFFD.
"""

import re

import ipywidgets as widgets
import numpy as np
import pytest

from llmedu import display as views
from llmedu.generate import apply_temperature, top_k_filter, top_p_filter
from llmedu.tokenizer import BPETokenizer

# Two merges: "hi" (whole characters) and f0 9f, the first half of 🙂's four bytes.
MERGES = {(ord("h"), ord("i")): 256, (0xF0, 0x9F): 257}
SPECIAL = "<|im_end|>"
SPECIAL_ID = 258


@pytest.fixture
def tokenizer():
    return BPETokenizer(MERGES, special_tokens=[SPECIAL])


@pytest.fixture
def shown(monkeypatch):
    """Everything passed to IPython's display() while a test runs."""
    objects = []
    monkeypatch.setattr("IPython.display.display", lambda *args, **kwargs: objects.extend(args))
    return objects


def span_titles(markup):
    return re.findall(r'<span title="(\d+)"', markup)


# ------------------------------------------------------------ readable bytes --

@pytest.mark.parametrize("text", ["hello", "你好", "🙂", "a 你 🙂\n"])
def test_whole_characters_are_shown_as_themselves(text):
    assert views.readable(text.encode("utf-8")) == text


def test_a_partial_character_is_shown_as_its_bytes_in_hex():
    assert views.readable("你".encode("utf-8")[:2]) == "<e4 bd>"


def test_stray_bytes_between_characters_are_grouped_per_run():
    assert views.readable(b"\xbd\xa0a\xe5") == "<bd a0>a<e5>"


def test_readable_parts_mark_which_parts_are_bytes():
    assert views.readable_parts(b"a\xf0\x9f") == [("a", False), ("f0 9f", True)]


def test_token_pieces_never_contain_the_replacement_character(tokenizer):
    ids = tokenizer.encode("hi 你好 🙂")
    pieces = views.token_pieces(tokenizer, ids)
    assert "\ufffd" not in "".join(pieces)
    assert pieces[:2] == ["hi", " "]
    assert "<f0 9f>" in pieces  # merge 257 is half an emoji


# ------------------------------------------------------------ user text --

def test_text_view_encodes_special_token_strings_as_ordinary_text(tokenizer):
    rendering = views.tokens_text(tokenizer, f"a{SPECIAL}")
    assert str(SPECIAL_ID) not in rendering
    assert "11 characters, 11 bytes -> 11 tokens" in rendering


def test_text_view_shows_control_tokens_only_when_allowed(tokenizer):
    rendering = views.tokens_text(tokenizer, f"a{SPECIAL}", allowed_special="all")
    assert f"{SPECIAL_ID:>6}  {SPECIAL!r}" in rendering.splitlines()


def test_html_view_encodes_special_token_strings_as_ordinary_text(tokenizer):
    assert str(SPECIAL_ID) not in span_titles(views.tokens_html(tokenizer, SPECIAL))


def test_html_view_has_one_span_per_token_titled_with_its_id(tokenizer):
    text = "hi 你 🙂"
    assert span_titles(views.tokens_html(tokenizer, text)) == [str(i) for i in tokenizer.encode(text)]


def test_html_view_shows_partial_characters_as_escaped_bytes(tokenizer):
    markup = views.tokens_html(tokenizer, "🙂")
    assert "&lt;f0&nbsp;9f&gt;" in markup and "\ufffd" not in markup


def test_html_view_sets_bytes_apart_from_typed_text_that_looks_alike(tokenizer):
    typed = views.tokens_html(tokenizer, "<e4>")
    real = views.tokens_html(tokenizer, "你")  # three byte tokens, e4 bd a0
    assert "<i " not in typed and real.count("<i ") == 3


# ------------------------------------------------------------ one output --

def test_widget_with_text_keeps_the_widget_and_replaces_its_text():
    widget = widgets.HTML(value="<b>x</b>")
    bundle = views.WidgetWithText(widget, "plain x")._repr_mimebundle_()
    assert bundle["text/plain"] == "plain x"
    assert bundle[views.WIDGET_MIME]["model_id"] == widget.model_id


def test_playground_is_displayed_once_and_prints_nothing(tokenizer, shown, capsys):
    views.tokenizer_playground(tokenizer, "hi there")
    assert capsys.readouterr().out == ""
    assert len(shown) == 1
    bundle = shown[0]._repr_mimebundle_()
    assert bundle["text/plain"] == views.tokens_text(tokenizer, "hi there")
    assert views.WIDGET_MIME in bundle


def test_playground_is_a_text_box_followed_by_the_html_tokens(tokenizer):
    box, view = views.playground(tokenizer, "hi").widget.children
    assert isinstance(box, widgets.Textarea) and isinstance(view, widgets.HTML)
    assert view.value == views.tokens_html(tokenizer, "hi")


def test_typing_in_the_playground_updates_the_tokens(tokenizer):
    box, view = views.playground(tokenizer, "hi").widget.children
    box.value = f"hi {SPECIAL}"
    assert view.value == views.tokens_html(tokenizer, f"hi {SPECIAL}")


def test_playground_can_show_special_tokens_when_asked(tokenizer):
    box, view = views.playground(tokenizer, SPECIAL, allowed_special="all").widget.children
    assert span_titles(view.value) == [str(SPECIAL_ID)]


LOGITS = np.array([2.0, 1.0, 0.5, -1.0])
LABELS = ["mat", "sofa", "floor", "moon"]


def test_sampling_explorer_is_displayed_once_with_its_text_rendering(shown, capsys):
    views.sampling_explorer(LOGITS, LABELS, temperature=0.5, top_k=3, top_p=0.9)
    assert capsys.readouterr().out == ""
    assert len(shown) == 1
    expected = top_p_filter(top_k_filter(apply_temperature(LOGITS, 0.5), 3), 0.9)
    assert shown[0]._repr_mimebundle_()["text/plain"] == views.distribution_text(expected, LABELS)


def test_moving_a_slider_redraws_the_distribution():
    *sliders, view = views.explorer(LOGITS, LABELS).widget.children
    before = view.value
    sliders[0].value = 0.0  # temperature 0: all probability on "mat"
    assert view.value != before and "1.000" in view.value


# ------------------------------------------------------------------ chat --

@pytest.fixture
def chat_tokenizer():
    return BPETokenizer.train("user assistant Where? It is here. Hello!", 262,
                              special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>"])


@pytest.fixture
def chat_model(chat_tokenizer, monkeypatch):
    """A tiny model whose generation is scripted: every reply is "It is here." then <|im_end|>."""
    from llmedu.model import ModelConfig, init_params

    config = ModelConfig(vocab_size=len(chat_tokenizer), dim=8, n_layers=1, n_heads=2, n_kv_heads=2, hidden_dim=16,
                         max_seq_len=64)
    reply = chat_tokenizer.encode("It is here.") + [chat_tokenizer.special_tokens["<|im_end|>"]]
    prompts = []

    def fake_generate(params, config, prompt, *, max_new_tokens, stop_ids, **sampling):
        prompts.append(list(prompt))
        for token in reply[:max_new_tokens]:
            if token in stop_ids:
                return
            yield token

    monkeypatch.setattr("llmedu.generate.generate", fake_generate)
    return init_params(config, seed=0), config, prompts


def chat_parts(view):
    transcript, row, slider = view.widget.children
    box, reset = row.children
    return transcript, box, reset, slider


def test_chat_widget_text_is_the_transcript_of_the_questions_answered_when_built(chat_tokenizer, chat_model):
    params, config, _ = chat_model
    view = views.chat_widget(params, config, chat_tokenizer, transcript=["Where?", "Hello!"])
    assert view._repr_mimebundle_()["text/plain"] == "You: Where?\nAssistant: It is here.\nYou: Hello!\nAssistant: It is here."
    assert views.WIDGET_MIME in view._repr_mimebundle_()


def test_chat_widget_answers_each_transcript_question_as_a_fresh_conversation(chat_tokenizer, chat_model):
    params, config, prompts = chat_model
    views.chat_widget(params, config, chat_tokenizer, transcript=["Where?", "Where?"])
    assert prompts[0] == prompts[1]


def test_chat_widget_has_a_text_box_a_transcript_and_a_temperature_slider(chat_tokenizer, chat_model):
    params, config, _ = chat_model
    transcript, box, reset, slider = chat_parts(views.chat_widget(params, config, chat_tokenizer, temperature=0.5))
    assert isinstance(transcript, widgets.HTML) and isinstance(box, widgets.Text)
    assert isinstance(reset, widgets.Button)
    assert slider.description == "temperature" and slider.value == 0.5


def test_a_typed_question_is_answered_in_the_transcript_with_the_history_kept(chat_tokenizer, chat_model):
    params, config, prompts = chat_model
    transcript, box, _, _ = chat_parts(views.chat_widget(params, config, chat_tokenizer))
    box.value = "Where?"
    box.value = "Hello!"
    assert "Where?" in transcript.value and transcript.value.count("It is here.") == 2
    assert box.value == ""
    assert len(prompts[1]) > len(prompts[0]) + len(chat_tokenizer.encode("Hello!"))  # the first exchange is in it


def test_reset_clears_the_transcript_and_the_history(chat_tokenizer, chat_model):
    params, config, prompts = chat_model
    transcript, box, reset, _ = chat_parts(views.chat_widget(params, config, chat_tokenizer, transcript=["Where?"]))
    box.value = "Where?"
    reset.click()
    assert transcript.value == ""
    box.value = "Where?"
    assert prompts[-1] == prompts[0]
