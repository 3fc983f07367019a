"""The shipped base model (assets/) is the file its card describes, and still measures what the card says."""

import hashlib

import numpy as np
import pytest

from llmedu.base_model import ASSETS, held_out_text, load_base_model, load_card
from llmedu.evaluate import bits_per_byte, mean_nll
from llmedu.model import ModelConfig, count_params


@pytest.fixture(scope="module")
def shipped():
    return load_base_model()


def test_the_parameters_file_is_at_most_8_mb():
    assert (ASSETS / "base_model.safetensors").stat().st_size <= 8 * 1024 * 1024


def test_the_file_is_the_one_the_card_describes(shipped):
    params, config, _, card = shipped
    assert config == ModelConfig.from_dict(card["config"])
    assert count_params(params) == card["speedrun_report"]["n_params"]
    assert (ASSETS / "base_model.safetensors").stat().st_size == card["file_bytes"]


def test_the_held_out_text_regenerates_from_the_recorded_seed():
    card = load_card()
    text = held_out_text(card)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == card["held_out"]["sha256"]
    assert len(text.encode("utf-8")) == card["held_out"]["bytes"]


def test_it_reproduces_its_recorded_held_out_loss(shipped):
    params, config, tokenizer, card = shipped
    ids = np.array(tokenizer.encode(held_out_text(card)), dtype=np.int64)
    nll, n_tokens = mean_nll(params, config, ids)
    assert n_tokens == card["measured"]["held_out_tokens"]
    assert nll == pytest.approx(card["measured"]["held_out_nll"], rel=1e-4)


def test_it_reproduces_its_recorded_bits_per_byte(shipped):
    params, config, tokenizer, card = shipped
    measured = bits_per_byte(params, config, tokenizer, held_out_text(card))
    assert measured == pytest.approx(card["measured"]["bits_per_byte"], rel=1e-4)


def test_a_missing_asset_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="llmedu speedrun"):
        load_base_model(tmp_path)
