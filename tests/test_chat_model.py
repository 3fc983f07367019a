"""The shipped chat model (assets/) is the file its card describes, and still measures what the card says."""

import pytest

from llmedu.base_model import ASSETS
from llmedu.chat_model import eval_questions, load_chat_card, load_chat_model
from llmedu.model import ModelConfig
from llmedu.sft_eval import evaluate, summary


@pytest.fixture(scope="module")
def shipped():
    return load_chat_model()


def test_the_file_is_the_one_the_card_describes(shipped):
    _, config, _, card = shipped
    assert config == ModelConfig.from_dict(card["config"])
    assert (ASSETS / "chat_model.safetensors").stat().st_size == card["file_bytes"]


def test_it_sits_beside_the_base_model_it_was_fine_tuned_from():
    import hashlib

    card = load_chat_card()
    assert hashlib.sha256((ASSETS / "base_model.safetensors").read_bytes()).hexdigest() == card["base_model_sha256"]


@pytest.mark.parametrize("kind", ["refusal", "unknown"])
def test_it_reproduces_its_recorded_refusal_and_hallucination_rates(shipped, kind):
    params, config, tokenizer, card = shipped
    world, data = eval_questions(card)
    judged = evaluate(params, config, tokenizer, [e for e in data.eval if e.kind == kind], world)
    key = "sft_refusal_rate" if kind == "refusal" else "sft_hallucination_rate"
    assert summary(judged, "sft")[key] == card["measured"][key]


def test_a_missing_chat_model_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m llmedu.chat_model runs/speedrun"):
        load_chat_model(tmp_path)
