"""Specifications of the parameters file and the llama2.c export (``llmedu.checkpoint``).

The native file is safetensors: these tests parse it by hand rather than
trusting the reader under test, damage it byte by byte, and check that every
kind of damage is reported as a ``ValueError`` that names the file and the
problem. The llama2.c export is checked against the documented layout, by
the forward pass, and (when gcc is present) by a small C reader.
"""

import json
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

from llmedu.checkpoint import (export_llama2c, import_llama2c, load_params, read_safetensors, save_params,
                               write_safetensors)
from llmedu.model import PRESETS, ModelConfig, count_params, forward, init_params, param_shapes

TINY = PRESETS["tiny"]
DATA = os.path.join(os.path.dirname(__file__), "data")


def random_config(seed):
    """A small config with every size drawn at random (GQA or not, odd vocab, short context)."""
    rng = np.random.default_rng(seed)
    n_kv_heads, group, half_head = (int(x) for x in rng.integers(1, 4, size=3))
    n_heads = n_kv_heads * group
    return ModelConfig(vocab_size=int(rng.integers(3, 80)), dim=n_heads * 2 * half_head, n_layers=int(rng.integers(1, 4)),
                       n_heads=n_heads, n_kv_heads=n_kv_heads, hidden_dim=int(rng.integers(1, 50)),
                       max_seq_len=int(rng.integers(1, 20)))


CONFIGS = [TINY] + [random_config(seed) for seed in range(3)]


def random_params(config, seed=0):
    """Parameters with random RMSNorm gains too, so that no two tensors are alike."""
    params = init_params(config, seed)
    rng = np.random.default_rng(seed + 1)
    for name in ("attention_norm", "ffn_norm", "norm"):
        params[name] = rng.uniform(0.5, 1.5, params[name].shape).astype(np.float32)
    return params


def raw_header(path):
    """(header length n, header dict, data bytes), parsed by hand from the spec."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8 : 8 + n]), data[8 + n :]


def rewrite_header(path, change):
    """Apply change(header dict) and write the file back with the new header and the same data."""
    _, header, data = raw_header(path)
    change(header)
    text = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + data)


@pytest.fixture
def saved(tmp_path):
    """A tiny model saved with a tokenizer and extra metadata: (path, params)."""
    path, params = tmp_path / "model.safetensors", random_params(TINY)
    save_params(path, params, TINY, tokenizer_text="llmedu-bpe v1\nmerges 0\n", metadata={"step": "100"})
    return path, params


# --------------------------------------------------------------- round trip
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_round_trip_gives_identical_arrays_config_and_metadata(tmp_path, config):
    params = random_params(config, seed=7)
    save_params(tmp_path / "m.safetensors", params, config, tokenizer_text="tok ✓", metadata={"note": "中文"})
    loaded, loaded_config, metadata = load_params(tmp_path / "m.safetensors")
    assert loaded_config == config
    assert metadata == {"tokenizer": "tok ✓", "note": "中文"}
    assert list(loaded) == list(param_shapes(config))
    for name in params:
        assert loaded[name].dtype == np.float32 and np.array_equal(loaded[name], params[name]), name


def test_round_trip_keeps_non_default_norm_eps_and_rope_theta(tmp_path):
    config = ModelConfig(**{**TINY.to_dict(), "norm_eps": 1e-6, "rope_theta": 500000.0})
    save_params(tmp_path / "m.safetensors", init_params(config), config)
    assert load_params(tmp_path / "m.safetensors")[1] == config


def test_load_returns_float32_unless_dtype_none_keeps_the_files(tmp_path):
    params = random_params(TINY)
    save_params(tmp_path / "m.safetensors", params, TINY, dtype=np.float16)
    assert load_params(tmp_path / "m.safetensors")[0]["wq"].dtype == np.float32
    kept = load_params(tmp_path / "m.safetensors", dtype=None)[0]
    assert kept["wq"].dtype == np.float16
    assert np.array_equal(kept["wq"], params["wq"].astype(np.float16))


def test_loaded_arrays_are_writable(saved):
    # training updates parameters in place
    params = load_params(saved[0])[0]
    params["wq"] += 1.0


def test_read_and_write_safetensors_keep_f16_f32_f64_scalars_and_empty_tensors(tmp_path):
    tensors = {"half": np.arange(6, dtype=np.float16).reshape(2, 3), "single": np.float32(-2.5),
               "double": np.linspace(0, 1, 7), "empty": np.zeros((0, 4), np.float32),
               "big_endian": np.arange(3, dtype=">f4")}
    write_safetensors(tmp_path / "t.safetensors", tensors, {"k": "v"})
    read, metadata = read_safetensors(tmp_path / "t.safetensors")
    assert metadata == {"k": "v"} and list(read) == list(tensors)
    for name, tensor in tensors.items():
        assert read[name].shape == np.shape(tensor) and read[name].dtype.itemsize == tensor.dtype.itemsize
        assert np.array_equal(read[name], tensor), name


# ----------------------------------------------------------- the file itself
def test_file_is_valid_safetensors_parsed_by_hand(saved):
    path, params = saved
    n, header, data = raw_header(path)
    metadata = header.pop("__metadata__")
    assert metadata["format"] == "llmedu" and metadata["format_version"] == "1"
    assert ModelConfig.from_dict(json.loads(metadata["config"])) == TINY
    assert metadata["tokenizer"] == "llmedu-bpe v1\nmerges 0\n" and metadata["step"] == "100"
    position = 0
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
        begin, end = entry["data_offsets"]
        assert begin == position, f"{name} does not start where the previous tensor ends"
        assert entry["dtype"] == "F32" and tuple(entry["shape"]) == params[name].shape
        assert data[begin:end] == params[name].astype("<f4").tobytes(), name
        position = end
    assert position == len(data), "the data section must hold the tensors and nothing else"


def test_data_starts_8_byte_aligned(saved):
    n, _, _ = raw_header(saved[0])
    assert (8 + n) % 8 == 0


def test_float16_storage_halves_the_data(tmp_path):
    params = random_params(TINY)
    save_params(tmp_path / "32.safetensors", params, TINY)
    save_params(tmp_path / "16.safetensors", params, TINY, dtype=np.float16)
    data32, data16 = raw_header(tmp_path / "32.safetensors")[2], raw_header(tmp_path / "16.safetensors")[2]
    assert len(data32) == 4 * count_params(params) and len(data16) * 2 == len(data32)


def test_float16_storage_refuses_values_it_cannot_hold(tmp_path):
    params = random_params(TINY)
    params["norm"][3] = 1e5  # float16 ends at 65504
    with pytest.raises(ValueError, match=r"'norm'.*float16"):
        save_params(tmp_path / "m.safetensors", params, TINY, dtype=np.float16)


# ------------------------------------------------------------- atomic write
@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(saved, monkeypatch, failing):
    path, _ = saved
    before = path.read_bytes()

    def fail(*args):
        raise OSError(f"simulated {failing} failure")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="simulated"):
        save_params(path, random_params(TINY, seed=3), TINY)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_file_is_not_private(saved):
    # the temporary file starts private (mode 0600); the parameters file should not stay so
    assert os.stat(saved[0]).st_mode & 0o777 == 0o644


def test_refused_parameters_write_nothing(tmp_path):
    params = random_params(TINY)
    params["wk"] = params["wk"][:, :-1]
    with pytest.raises(ValueError, match=r"'wk'.*\(2, 15, 32\).*\(2, 16, 32\)"):
        save_params(tmp_path / "m.safetensors", params, TINY)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------- refusing bad arguments
def test_metadata_must_not_override_llmedus_keys(tmp_path):
    with pytest.raises(ValueError, match="reserved.*tokenizer_text"):
        save_params(tmp_path / "m.safetensors", random_params(TINY), TINY, metadata={"tokenizer": "x"})


def test_metadata_values_must_be_strings(tmp_path):
    with pytest.raises(ValueError, match="'step'.*json.dumps"):
        save_params(tmp_path / "m.safetensors", random_params(TINY), TINY, metadata={"step": 100})


def test_integer_tensors_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'ids'.*int64"):
        write_safetensors(tmp_path / "t.safetensors", {"ids": np.arange(3)})


# ------------------------------------------------------------- damaged files
def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere\.safetensors: no such file"):
        load_params(tmp_path / "nowhere.safetensors")


@pytest.mark.parametrize("cut", ["empty", "in length", "in header", "after header", "in data", "last byte"])
def test_truncated_file_is_reported_as_truncated(saved, cut):
    path, _ = saved
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    keep = {"empty": 0, "in length": 5, "in header": 8 + n // 2, "after header": 8 + n,
            "in data": 8 + n + 1000, "last byte": len(data) - 1}[cut]
    path.write_bytes(data[:keep])
    with pytest.raises(ValueError, match=r"model\.safetensors.*truncated"):
        load_params(path)


def test_header_promising_more_data_than_the_file_holds_fails_before_allocating(saved):
    # a damaged shape must not make the reader try to allocate petabytes
    huge = 10**15
    rewrite_header(saved[0], lambda h: h["output"].update(shape=[huge], data_offsets=[h["output"]["data_offsets"][0],
                                                                                      h["output"]["data_offsets"][0] + 4 * huge]))
    with pytest.raises(ValueError, match=r"need \d+ bytes of data but the file holds \d+: the file is truncated"):
        read_safetensors(saved[0])


def test_shape_whose_size_overflows_64_bits_is_caught_not_wrapped(saved):
    # 2**33 * 2**31 floats is 2**66 bytes: a reader multiplying in int64 would get 0 and accept [b, b]
    rewrite_header(saved[0], lambda h: h["norm"].update(shape=[2**33, 2**31], data_offsets=[h["norm"]["data_offsets"][0]] * 2))
    with pytest.raises(ValueError, match=r"'norm'.*\(0 bytes\).*needs 73786976294838206464 bytes"):
        read_safetensors(saved[0])


def test_garbled_header_is_reported(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[8 + 40] = ord("#")  # inside the first entry's JSON
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="header is not valid JSON"):
        load_params(path)


def test_unknown_dtype_is_named_with_the_ones_understood(saved):
    rewrite_header(saved[0], lambda h: h["wq"].update(dtype="BF16"))
    with pytest.raises(ValueError, match="'wq' has dtype 'BF16'.*F16, F32, F64"):
        load_params(saved[0])


def test_overlapping_offsets_are_reported(saved):
    def overlap(header):
        begin, end = header["wk"]["data_offsets"]
        header["wk"]["data_offsets"] = [begin - 4, end - 4]

    rewrite_header(saved[0], overlap)
    with pytest.raises(ValueError, match="'wk'.*overlaps"):
        load_params(saved[0])


def test_offsets_that_do_not_match_the_shape_are_reported(saved):
    rewrite_header(saved[0], lambda h: h["norm"].update(shape=[33]))
    with pytest.raises(ValueError, match=r"'norm'.*128 bytes.*\[33\].*132 bytes"):
        load_params(saved[0])


def test_bytes_that_belong_to_no_tensor_are_reported(saved):
    with open(saved[0], "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(ValueError, match="4 bytes after the last tensor"):
        load_params(saved[0])


def test_a_tensor_named_twice_is_reported(saved):
    path = saved[0]
    n, header, data = raw_header(path)
    text = json.dumps(header)[:-1] + ', "norm": ' + json.dumps(header["norm"]) + "}"
    path.write_bytes(struct.pack("<Q", len(text)) + text.encode() + data)
    with pytest.raises(ValueError, match="repeats the key 'norm'"):
        load_params(path)


def test_plain_safetensors_file_is_not_taken_for_llmedu(tmp_path):
    write_safetensors(tmp_path / "other.safetensors", random_params(TINY), {"format": "pt"})
    with pytest.raises(ValueError, match="not an llmedu parameters file.*'pt'.*read_safetensors"):
        load_params(tmp_path / "other.safetensors")


def test_unknown_format_version_says_which_versions_are_read(saved):
    rewrite_header(saved[0], lambda h: h["__metadata__"].update(format_version="2"))
    with pytest.raises(ValueError, match="format_version '2'.*reads version 1"):
        load_params(saved[0])


def test_garbled_config_is_reported(saved):
    rewrite_header(saved[0], lambda h: h["__metadata__"].update(config='{"dim": 32'))
    with pytest.raises(ValueError, match="stored config is unusable"):
        load_params(saved[0])


def test_tensor_shapes_must_match_the_stored_config(saved):
    bigger = ModelConfig(**{**TINY.to_dict(), "hidden_dim": 96})
    rewrite_header(saved[0], lambda h: h["__metadata__"].update(config=json.dumps(bigger.to_dict())))
    with pytest.raises(ValueError, match=r"model\.safetensors.*'w1' has shape \(2, 64, 32\).*needs \(2, 96, 32\)"):
        load_params(saved[0])


# ---------------------------------------------------------------- llama2.c
def llama2c_floats(config, shared):
    """How many float32 the legacy file holds: the parameters, two RoPE tables, the classifier unless shared."""
    n = sum(int(np.prod(shape)) for shape in param_shapes(config).values())
    rope = 2 * config.max_seq_len * config.head_dim // 2
    return n + rope - (config.vocab_size * config.dim if shared else 0)


def model_params(config, shared, seed=0):
    params = random_params(config, seed)
    if shared:
        params["output"] = params["tok_embeddings"].copy()
    return params


@pytest.mark.parametrize("shared", [False, True], ids=["unshared", "shared"])
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_llama2c_round_trip_gives_identical_arrays_and_config(tmp_path, config, shared):
    params = model_params(config, shared)
    export_llama2c(tmp_path / "m.bin", params, config)
    loaded, loaded_config = import_llama2c(tmp_path / "m.bin")
    assert loaded_config == config and list(loaded) == list(params)
    for name in params:
        assert loaded[name].dtype == np.float32 and np.array_equal(loaded[name], params[name]), name


def test_llama2c_import_of_a_shared_classifier_gives_it_its_own_array(tmp_path):
    # llmedu does not tie weights: training the classifier must not move the embedding
    export_llama2c(tmp_path / "m.bin", model_params(TINY, shared=True), TINY)
    params = import_llama2c(tmp_path / "m.bin")[0]
    assert not np.shares_memory(params["output"], params["tok_embeddings"])


@pytest.mark.parametrize("shared", [False, True], ids=["unshared", "shared"])
def test_llama2c_round_trip_keeps_the_logits(tmp_path, shared):
    params = model_params(TINY, shared)
    export_llama2c(tmp_path / "m.bin", params, TINY)
    loaded, config = import_llama2c(tmp_path / "m.bin")
    tokens = np.random.default_rng(0).integers(0, TINY.vocab_size, size=(2, 9))
    assert np.array_equal(forward(loaded, config, tokens), forward(params, TINY, tokens))


@pytest.mark.parametrize("shared", [False, True], ids=["unshared", "shared"])
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_llama2c_file_size_is_header_plus_every_float(tmp_path, config, shared):
    export_llama2c(tmp_path / "m.bin", model_params(config, shared), config)
    assert os.path.getsize(tmp_path / "m.bin") == 28 + 4 * llama2c_floats(config, shared)


@pytest.mark.parametrize("shared", [False, True], ids=["unshared", "shared"])
def test_llama2c_header_ints_are_in_the_documented_order(tmp_path, shared):
    # every field different, so a swap cannot go unnoticed
    config = ModelConfig(vocab_size=11, dim=24, n_layers=3, n_heads=6, n_kv_heads=2, hidden_dim=40, max_seq_len=5)
    export_llama2c(tmp_path / "m.bin", model_params(config, shared), config)
    ints = struct.unpack("<7i", (tmp_path / "m.bin").read_bytes()[:28])
    assert ints == (24, 40, 3, 6, 2, 11 if shared else -11, 5)


@pytest.mark.parametrize("shared", [False, True], ids=["unshared", "shared"])
def test_llama2c_floats_follow_the_documented_order(tmp_path, shared):
    params = model_params(TINY, shared)
    export_llama2c(tmp_path / "m.bin", params, TINY)
    T, half = TINY.max_seq_len, TINY.head_dim // 2
    angles = np.arange(T)[:, None] * 10000.0 ** (-2 * np.arange(half)[None, :] / TINY.head_dim)  # (T, half)
    order = ["tok_embeddings", "attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3", "norm"]
    expected = [params[name].ravel() for name in order] + [np.cos(angles).ravel(), np.sin(angles).ravel()]
    expected += [] if shared else [params["output"].ravel()]
    floats = np.frombuffer((tmp_path / "m.bin").read_bytes()[28:], dtype="<f4")
    np.testing.assert_allclose(floats, np.concatenate(expected).astype(np.float32), rtol=0, atol=1e-7)


def test_llama2c_import_uses_the_default_rope_theta_and_norm_eps(tmp_path):
    config = ModelConfig(**{**TINY.to_dict(), "norm_eps": 1e-6, "rope_theta": 500000.0})
    with pytest.warns(UserWarning, match="run.c fixes rope_theta=10000"):
        export_llama2c(tmp_path / "m.bin", init_params(config), config)
    loaded_config = import_llama2c(tmp_path / "m.bin")[1]
    assert (loaded_config.rope_theta, loaded_config.norm_eps) == (10000.0, 1e-5)


@pytest.mark.parametrize("keep", [0, 10, 28, 1000, -4])
def test_truncated_llama2c_file_is_reported(tmp_path, keep):
    export_llama2c(tmp_path / "m.bin", random_params(TINY), TINY)
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "m.bin").write_bytes(data[:keep])
    with pytest.raises(ValueError, match=r"m\.bin.*truncated"):
        import_llama2c(tmp_path / "m.bin")


def test_too_long_llama2c_file_is_reported(tmp_path):
    export_llama2c(tmp_path / "m.bin", random_params(TINY), TINY)
    with open(tmp_path / "m.bin", "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(ValueError, match="dim=32, hidden_dim=64.*too long"):
        import_llama2c(tmp_path / "m.bin")


def test_llama2c_version_1_file_is_recognised(tmp_path):
    (tmp_path / "v1.bin").write_bytes(struct.pack("<Ii", 0x616B3432, 1) + bytes(100))
    with pytest.raises(ValueError, match="version-1 export.*--version 0"):
        import_llama2c(tmp_path / "v1.bin")


def test_llama2c_header_that_describes_no_model_is_reported(tmp_path):
    (tmp_path / "zeros.bin").write_bytes(bytes(64))
    with pytest.raises(ValueError, match="does not describe a model"):
        import_llama2c(tmp_path / "zeros.bin")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize("shared", [False, True], ids=["unshared", "shared"])
def test_a_separate_c_reader_finds_the_tensors_where_llama2c_looks(tmp_path, shared):
    program = tmp_path / "peek"
    subprocess.run(["gcc", "-std=c99", "-O1", "-o", str(program), os.path.join(DATA, "llama2c_peek.c")], check=True)
    config = ModelConfig(vocab_size=11, dim=24, n_layers=3, n_heads=6, n_kv_heads=2, hidden_dim=40, max_seq_len=5)
    params = model_params(config, shared)
    export_llama2c(tmp_path / "m.bin", params, config)
    out = subprocess.run([str(program), str(tmp_path / "m.bin")], capture_output=True, text=True, check=True).stdout
    ints, sizes, values = out.splitlines()
    assert [int(x) for x in ints.split()] == [24, 40, 3, 6, 2, 11 if shared else -11, 5]
    assert sizes.split() == [str(os.path.getsize(tmp_path / "m.bin"))] * 2
    expected = [params["tok_embeddings"][0, 0], params["norm"][0], params["output"][0, 0], params["output"][-1, -1]]
    assert [np.float32(x) for x in values.split()] == expected
