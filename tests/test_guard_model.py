"""The shipped guard (assets/) is the file its card describes, and still measures what the card says."""

import hashlib

import pytest

from llmedu.base_model import ASSETS
from llmedu.guard_model import load_guard_card, load_guard_model, measure_guard
from llmedu.model import ModelConfig


@pytest.fixture(scope="module")
def shipped():
    return load_guard_model()


def test_the_file_is_the_one_the_card_describes(shipped):
    _, config, _, card = shipped
    assert config == ModelConfig.from_dict(card["config"])
    assert (ASSETS / "guard_model.safetensors").stat().st_size == card["file_bytes"]


def test_it_sits_beside_the_tool_model_it_was_fine_tuned_from():
    card = load_guard_card()
    assert hashlib.sha256((ASSETS / "tool_model.safetensors").read_bytes()).hexdigest() == card["tool_model_sha256"]


def test_it_reproduces_its_recorded_refusals_accuracy_and_jailbreak_success(shipped):
    params, config, tokenizer, card = shipped
    assert measure_guard(params, config, tokenizer, card) == card["measured"]


def test_the_card_holds_the_speedruns_attack_table():
    report = load_guard_card()["speedrun_report"]
    for attack in ("jailbreak", "injection", "backdoor", "gcg"):
        assert 0 <= report[f"asr_{attack}"] <= 1 and 0 <= report[f"asr_{attack}_defended"] <= 1
    assert report["command"] == "llmedu speedrun"
