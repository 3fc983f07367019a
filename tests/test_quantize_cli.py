"""`llmedu export --format llama2c-q8` and `llmedu sample --quantize q8` (lesson 08)."""

import numpy as np
import pytest

from tiny_models import save_tiny_models
from llmedu.cli import main
from llmedu.quantize import generate_q8, quantize_params, read_llama2c_q8
from llmedu.sample import load_run


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_models(tmp_path_factory.mktemp("models"), {"m": 0}, max_seq_len=32)[0]


def test_export_llama2c_q8_writes_the_runq_file_of_the_parameters_file(model_file, tmp_path, capsys):
    assert main(["export", str(model_file), str(tmp_path / "m.bin"), "--format", "llama2c-q8"]) == 0
    assert "version 2" in capsys.readouterr().out
    params, config, _, _ = load_run(str(model_file))
    qparams, read_config = read_llama2c_q8(tmp_path / "m.bin")
    assert read_config == config
    assert np.array_equal(qparams["w2"].q, quantize_params(params, config)["w2"].q)


def test_export_llama2c_q8_refuses_a_dtype(model_file, tmp_path, capsys):
    assert main(["export", str(model_file), str(tmp_path / "m.bin"), "--format", "llama2c-q8", "--dtype", "f16"]) == 2
    assert "always int8" in capsys.readouterr().err and not (tmp_path / "m.bin").exists()


def test_sample_quantize_q8_prints_the_int8_paths_greedy_text(model_file, tmp_path, capsys):
    assert main(["sample", "--ckpt", str(model_file), "--prompt", "The", "--max-new-tokens", "12",
                 "--temperature", "0", "--quantize", "q8"]) == 0
    params, config, tokenizer, _ = load_run(str(model_file))
    expected = tokenizer.decode(generate_q8(params, config, tokenizer.encode("The"), max_new_tokens=12))
    assert capsys.readouterr().out == "The" + expected + "\n"


def test_sample_quantize_q8_past_the_context_window_is_a_clear_error(model_file, tmp_path, capsys):
    assert main(["sample", "--ckpt", str(model_file), "--prompt", "The", "--quantize", "q8"]) == 2  # 500 tokens
    err = capsys.readouterr().err
    assert "llmedu sample:" in err and "--max-new-tokens" in err and "Traceback" not in err
