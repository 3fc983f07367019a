"""The shipped tool model (assets/) is the file its card describes, and still measures what the card says."""

import hashlib

import pytest

from llmedu.base_model import ASSETS
from llmedu.model import ModelConfig
from llmedu.tokenizer import TOOL_SPECIAL_TOKENS
from llmedu.tool_eval import evaluate_tools, tool_summary
from llmedu.tool_model import eval_questions, load_tool_card, load_tool_model
from llmedu.tools import default_tools


@pytest.fixture(scope="module")
def shipped():
    return load_tool_model()


def test_the_file_is_the_one_the_card_describes(shipped):
    _, config, tokenizer, card = shipped
    assert config == ModelConfig.from_dict(card["config"])
    assert (ASSETS / "tool_model.safetensors").stat().st_size == card["file_bytes"]
    assert all(marker in tokenizer.special_tokens for marker in TOOL_SPECIAL_TOKENS)


def test_it_sits_beside_the_chat_model_it_was_fine_tuned_from():
    card = load_tool_card()
    assert hashlib.sha256((ASSETS / "chat_model.safetensors").read_bytes()).hexdigest() == card["chat_model_sha256"]


@pytest.mark.parametrize("group", ["arithmetic", "late_people"])
def test_it_reproduces_its_recorded_accuracy_without_and_with_tools(shipped, group):
    params, config, tokenizer, card = shipped
    world, examples = eval_questions(card, tokenizer)
    judged = evaluate_tools(params, config, tokenizer, [e for e in examples if e.group == group], world,
                            default_tools(world, tokenizer, config.max_seq_len))
    prefix = {"arithmetic": "tools_arith_acc", "late_people": "tools_late_acc"}[group]
    measured = tool_summary(judged)
    assert (measured[f"{prefix}_without"], measured[f"{prefix}_with"]) == (card["measured"][f"{prefix}_without"],
                                                                           card["measured"][f"{prefix}_with"])


def test_a_missing_tool_model_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m llmedu.tool_model runs/speedrun"):
        load_tool_model(tmp_path)
