"""GGUF export (lesson 00, issue 16): the written file, read back with the `gguf` package's reader, holds our model."""

import os
import subprocess
import sys
from pathlib import Path

import gguf
import jinja2
import numpy as np
import pytest

from llmedu.chat import render_conversation, render_prompt
from llmedu.checkpoint import load_params, save_params
from llmedu.data import tokenizer_from_text, tokenizer_to_text
from llmedu.gguf_export import (BYTE_TO_UNICODE, CHAT_TEMPLATE, Q8_0_BLOCK, TENSOR_NAMES, GGUFExportError,
                                byte_level, export_gguf)
from llmedu.model import ModelConfig, init_params
from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, BPETokenizer, sample_text

ROOT = Path(__file__).resolve().parents[1]
UNICODE_TO_BYTE = {char: byte for byte, char in BYTE_TO_UNICODE.items()}


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.train(sample_text()[:3000], 300, special_tokens=list(CHAT_SPECIAL_TOKENS))


def make_model(folder, tokenizer, *, hidden_dim=64, n_kv_heads=1, scale=1.0, with_tokenizer=True, name="m"):
    """A small random model file: dim 32 so q8_0 applies to every matrix whose rows are dim long."""
    config = ModelConfig(vocab_size=len(tokenizer) + 4, dim=32, n_layers=2, n_heads=2, n_kv_heads=n_kv_heads,
                         hidden_dim=hidden_dim, max_seq_len=48, norm_eps=1e-6, rope_theta=5000.0)
    params = {k: v * scale for k, v in init_params(config, seed=3, std=0.5).items()}
    path = Path(folder) / f"{name}.safetensors"
    save_params(path, params, config, tokenizer_text=tokenizer_to_text(tokenizer) if with_tokenizer else None)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, tokenizer):
    return make_model(tmp_path_factory.mktemp("model"), tokenizer)


def exported(model_file, tmp_path, dtype):
    out = tmp_path / f"model-{dtype}.gguf"
    export_gguf(model_file, out, dtype)
    return gguf.GGUFReader(out)


def values(reader, key):
    return reader.fields[key].contents()


def read_tensors(reader) -> dict[str, np.ndarray]:
    """GGUF name -> float32 array in numpy (out, in) order, q8_0 dequantised."""
    out = {}
    for tensor in reader.tensors:
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        out[tensor.name] = np.asarray(data, dtype=np.float32).reshape(tuple(reversed(tensor.shape.tolist())))
    return out


def source_tensors(model_file) -> dict[str, np.ndarray]:
    """Our parameters under their expected GGUF names (layers split), written out independently of the exporter."""
    params, config, _ = load_params(model_file)
    expected = {}
    for ours, theirs in TENSOR_NAMES.items():
        for layer in range(config.n_layers if "{}" in theirs else 1):
            expected[theirs.format(layer)] = params[ours][layer] if "{}" in theirs else params[ours]
    return expected


# ---------------------------------------------------------------- tensors --

def test_f32_export_holds_every_tensor_exactly_under_llama_cpp_names(model_file, tmp_path):
    got, expected = read_tensors(exported(model_file, tmp_path, "f32")), source_tensors(model_file)
    assert sorted(got) == sorted(expected)
    assert "blk.1.ffn_gate.weight" in got and "token_embd.weight" in got and "output_norm.weight" in got
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_f16_export_rounds_matrices_to_half_precision_and_keeps_norms_f32(model_file, tmp_path):
    reader = exported(model_file, tmp_path, "f16")
    types = {t.name: t.tensor_type for t in reader.tensors}
    got = read_tensors(reader)
    for name, array in source_tensors(model_file).items():
        if array.ndim == 1:
            assert types[name] == gguf.GGMLQuantizationType.F32
            np.testing.assert_array_equal(got[name], array, err_msg=name)
        else:
            assert types[name] == gguf.GGMLQuantizationType.F16
            np.testing.assert_array_equal(got[name], array.astype(np.float16).astype(np.float32), err_msg=name)


def test_q8_0_export_is_within_half_a_quantisation_step_of_every_weight(model_file, tmp_path):
    reader = exported(model_file, tmp_path, "q8_0")
    types = {t.name: t.tensor_type for t in reader.tensors}
    got = read_tensors(reader)
    for name, array in source_tensors(model_file).items():
        if array.ndim == 1:
            continue
        assert types[name] == gguf.GGMLQuantizationType.Q8_0, name
        blocks = array.reshape(-1, Q8_0_BLOCK)  # (n_blocks, 32): one scale per block
        step = np.abs(blocks).max(axis=1, keepdims=True) / 127  # the block's int8 step
        error = np.abs(got[name].reshape(-1, Q8_0_BLOCK) - blocks)
        # rounding to the step costs step/2; the scale itself is stored as f16 (relative error 2^-11),
        # which moves a value of up to 127 steps by at most 127 * 2^-11 steps
        assert np.all(error <= step * (0.5 + 127 * 2.0 ** -11)), name


def test_q8_0_stores_matrices_whose_rows_are_not_a_multiple_of_32_in_f16(tmp_path, tokenizer):
    model = make_model(tmp_path, tokenizer, hidden_dim=40)  # ffn_down's rows are hidden_dim = 40 long
    kinds = export_gguf(model, tmp_path / "m.gguf", "q8_0")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(tmp_path / "m.gguf").tensors}
    assert kinds["blk.0.ffn_down.weight"] == "f16" and types["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.F16
    assert kinds["blk.0.ffn_up.weight"] == "q8_0" and types["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.Q8_0


# --------------------------------------------------------------- metadata --

def test_hyperparameters_are_the_model_config(model_file, tmp_path):
    reader = exported(model_file, tmp_path, "f32")
    _, config, _ = load_params(model_file)
    assert values(reader, "general.architecture") == "llama"
    assert values(reader, "llama.context_length") == config.max_seq_len
    assert values(reader, "llama.embedding_length") == config.dim
    assert values(reader, "llama.feed_forward_length") == config.hidden_dim
    assert values(reader, "llama.block_count") == config.n_layers
    assert values(reader, "llama.attention.head_count") == config.n_heads
    assert values(reader, "llama.attention.head_count_kv") == config.n_kv_heads == 1
    assert values(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(config.norm_eps, rel=1e-6)
    assert values(reader, "llama.rope.freq_base") == pytest.approx(config.rope_theta)
    assert values(reader, "llama.rope.dimension_count") == config.head_dim


def test_byte_level_alphabet_is_a_bijection_onto_printable_characters_without_spaces():
    chars = list(BYTE_TO_UNICODE.values())
    assert len(set(chars)) == 256 and not any(c.isspace() for c in chars)
    assert byte_level(b" the") == "\u0120the" and byte_level(b"\n") == "\u010a" and byte_level(b"A~") == "A~"


def test_vocabulary_is_our_tokens_in_byte_level_form_with_specials_as_control_tokens(model_file, tmp_path, tokenizer):
    reader = exported(model_file, tmp_path, "f32")
    tokens, types = values(reader, "tokenizer.ggml.tokens"), values(reader, "tokenizer.ggml.token_type")
    assert values(reader, "tokenizer.ggml.model") == "gpt2" and values(reader, "tokenizer.ggml.pre") == "llama-bpe"
    assert len(tokens) == len(types) == len(tokenizer) + 4  # the model's padded vocabulary
    specials = {i: s for s, i in tokenizer.special_tokens.items()}
    for i in range(len(tokenizer)):
        if i in specials:
            assert (tokens[i], types[i]) == (specials[i], gguf.TokenType.CONTROL)
        else:
            assert bytes(UNICODE_TO_BYTE[c] for c in tokens[i]) == tokenizer.vocab[i], i
            assert types[i] == gguf.TokenType.NORMAL
    assert set(types[len(tokenizer):]) == {gguf.TokenType.UNUSED}


def test_merges_are_ours_in_rank_order(model_file, tmp_path, tokenizer):
    merges = values(exported(model_file, tmp_path, "f32"), "tokenizer.ggml.merges")
    decoded = [tuple(bytes(UNICODE_TO_BYTE[c] for c in side) for side in merge.split(" ")) for merge in merges]
    ranked = sorted(tokenizer.merges.items(), key=lambda item: item[1])
    assert decoded == [(tokenizer.vocab[a], tokenizer.vocab[b]) for (a, b), _ in ranked]


def test_special_ids_are_endoftext_for_bos_and_pad_and_im_end_for_eos(model_file, tmp_path, tokenizer):
    reader = exported(model_file, tmp_path, "f32")
    assert values(reader, "tokenizer.ggml.bos_token_id") == tokenizer.special_tokens["<|endoftext|>"]
    assert values(reader, "tokenizer.ggml.padding_token_id") == tokenizer.special_tokens["<|endoftext|>"]
    assert values(reader, "tokenizer.ggml.eos_token_id") == tokenizer.special_tokens["<|im_end|>"]
    assert values(reader, "tokenizer.ggml.add_bos_token") is False


def test_a_tokenizer_without_chat_markers_gets_endoftext_as_eos_and_no_template(tmp_path):
    plain = BPETokenizer.train(sample_text()[:2000], 270, special_tokens=["<|endoftext|>"])
    reader = exported(make_model(tmp_path, plain), tmp_path, "f32")
    assert values(reader, "tokenizer.ggml.eos_token_id") == plain.special_tokens["<|endoftext|>"]
    assert "tokenizer.chat_template" not in reader.fields


# ---------------------------------------------------------- chat template --

CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Where does Ada live?"},
                {"role": "assistant", "content": "In Lisbon."},
                {"role": "user", "content": "And 你好 🙂?"}]


def render_jinja(template, messages, add_generation_prompt):
    return jinja2.Environment().from_string(template).render(messages=messages,
                                                             add_generation_prompt=add_generation_prompt)


def test_stored_chat_template_is_the_jinja_template(model_file, tmp_path):
    assert values(exported(model_file, tmp_path, "f32"), "tokenizer.chat_template") == CHAT_TEMPLATE


def test_chat_template_renders_the_prompt_llmedu_chat_builds(tokenizer):
    text = render_jinja(CHAT_TEMPLATE, CONVERSATION, add_generation_prompt=True)
    assert text == tokenizer.decode(render_prompt(CONVERSATION, tokenizer))
    assert text.endswith("<|im_start|>assistant<|im_sep|>")


def test_chat_template_without_generation_prompt_renders_a_training_conversation(tokenizer):
    text = render_jinja(CHAT_TEMPLATE, CONVERSATION[:3], add_generation_prompt=False)
    assert text == tokenizer.decode(render_conversation(CONVERSATION[:3], tokenizer)[0])


# -------------------------------------------------------------- bad input --

def assert_nothing_written(folder, before):
    assert sorted(os.listdir(folder)) == before  # no output, no temporary file left behind


def test_a_file_without_a_tokenizer_is_refused_before_writing(tmp_path, tokenizer):
    model = make_model(tmp_path, tokenizer, with_tokenizer=False)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(GGUFExportError, match="holds no tokenizer"):
        export_gguf(model, tmp_path / "out.gguf")
    assert_nothing_written(tmp_path, before)


def test_an_unsupported_dtype_is_refused(model_file, tmp_path):
    with pytest.raises(GGUFExportError, match="dtype 'q4_0' is not supported; use one of f32, f16, q8_0"):
        export_gguf(model_file, tmp_path / "out.gguf", "q4_0")
    assert os.listdir(tmp_path) == []


def test_a_character_tokenizer_is_refused(tmp_path):
    from llmedu.char_tokenizer import CharTokenizer

    chars = CharTokenizer.from_text("hello world")
    config = ModelConfig(vocab_size=len(chars), dim=8, n_layers=1,
                         n_heads=2, n_kv_heads=2, hidden_dim=16, max_seq_len=8)
    path = tmp_path / "char.safetensors"
    save_params(path, init_params(config), config, tokenizer_text=tokenizer_to_text(chars))
    with pytest.raises(GGUFExportError, match="byte-level BPE"):
        export_gguf(path, tmp_path / "out.gguf")


def test_weights_beyond_float16_are_refused_for_f16_and_an_old_file_survives(tmp_path, tokenizer):
    model = make_model(tmp_path, tokenizer, scale=1e6)  # std 0.5e6: many weights beyond 65504
    out = tmp_path / "out.gguf"
    out.write_bytes(b"old")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(GGUFExportError, match="more than f16 can hold"):
        export_gguf(model, out, "f16")
    assert_nothing_written(tmp_path, before)
    assert out.read_bytes() == b"old"


# -------------------------------------------------------------------- CLI --

def export_cli(*args):
    return subprocess.run([sys.executable, "-m", "llmedu.cli", "export", *map(str, args)], capture_output=True,
                          text=True)


def test_cli_writes_a_gguf_file_and_says_so(model_file, tmp_path):
    done = export_cli(model_file, tmp_path / "m.gguf", "--format", "gguf", "--dtype", "f16")
    assert done.returncode == 0, done.stderr
    assert "GGUF, f16" in done.stdout
    assert values(gguf.GGUFReader(tmp_path / "m.gguf"), "general.file_type") == gguf.LlamaFileType.MOSTLY_F16


def test_cli_writes_a_llama2c_file(model_file, tmp_path):
    from llmedu.checkpoint import import_llama2c

    done = export_cli(model_file, tmp_path / "m.bin", "--format", "llama2c")
    assert done.returncode == 0, done.stderr
    params, _ = import_llama2c(tmp_path / "m.bin")
    np.testing.assert_array_equal(params["wq"], load_params(model_file)[0]["wq"])


def test_cli_reports_a_missing_tokenizer_cleanly(tmp_path, tokenizer):
    model = make_model(tmp_path, tokenizer, with_tokenizer=False)
    done = export_cli(model, tmp_path / "m.gguf", "--format", "gguf")
    assert done.returncode == 2 and "llmedu export:" in done.stderr and "holds no tokenizer" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "m.gguf").exists()


def test_cli_rejects_an_unknown_dtype_without_a_traceback(model_file, tmp_path):
    done = export_cli(model_file, tmp_path / "m.gguf", "--format", "gguf", "--dtype", "q4_0")
    assert done.returncode == 2 and "invalid choice: 'q4_0'" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------- the shipped model --

def test_shipped_base_model_round_trips_through_gguf(tmp_path):
    model = ROOT / "assets" / "base_model.safetensors"
    reader = exported(model, tmp_path, "f32")
    got = read_tensors(reader)
    for name, array in source_tensors(model).items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)
    shipped = tokenizer_from_text(load_params(model)[2]["tokenizer"])
    tokens = values(reader, "tokenizer.ggml.tokens")
    assert [bytes(UNICODE_TO_BYTE[c] for c in tokens[i]) for i in range(256 + len(shipped.merges))] == \
        [shipped.vocab[i] for i in range(256 + len(shipped.merges))]
