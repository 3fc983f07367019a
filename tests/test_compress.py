"""Specifications of the language-model compressor (lesson 08): any bytes come back bit-exact, the file costs
what the model's probabilities say, and a damaged file, another model or another machine's floats give an error,
never a wrong file."""

import argparse
import hashlib
import struct
import zlib

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiny_models import save_tiny_models, tiny_tokenizer
from llmedu import compress as C
from llmedu import kernels
from llmedu.base_model import ASSETS, MODEL_NAME, held_out_text, load_card
from llmedu.compress_cli import add_parser
from llmedu.data import split_text
from llmedu.generate import KVCache
from llmedu.model import ModelConfig, init_params
from llmedu.world import make_world

TOKENIZER = tiny_tokenizer()
# A window of 16 tokens: inputs of a few dozen bytes already restart from the half-window, as long files do.
CONFIG = ModelConfig(vocab_size=len(TOKENIZER), dim=16, n_layers=1, n_heads=2, n_kv_heads=2, hidden_dim=32,
                     max_seq_len=16)
PARAMS = init_params(CONFIG, seed=0, std=0.3)  # far from uniform, so tokens get very different frequencies
SHA = hashlib.sha256(b"the tiny model").hexdigest()


def pack(data: bytes, **kwargs) -> bytes:
    return C.compress(data, PARAMS, CONFIG, TOKENIZER, SHA, **kwargs)


def unpack(blob: bytes) -> bytes:
    return C.decompress(blob, PARAMS, CONFIG, TOKENIZER, SHA)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


# ------------------------------------------------------------- round trips --

def test_held_out_world_text_round_trips():
    text = split_text(make_world(1337, n_people=300).text)[1][:1500].encode("utf-8")
    assert unpack(pack(text)) == text


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_utf8_round_trips(text):
    data = text.encode("utf-8", errors="surrogatepass")  # lone surrogates too: bytes that are not valid UTF-8
    assert unpack(pack(data)) == data


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=60))
def test_arbitrary_bytes_round_trip(data):
    assert unpack(pack(data)) == data


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_bytes_become_tokens_whose_bytes_join_to_them(data):
    ids = C.bytes_to_ids(TOKENIZER, data)
    assert C.ids_to_bytes(TOKENIZER, ids) == data


def test_invalid_utf8_bytes_become_their_single_byte_tokens():
    assert C.bytes_to_ids(TOKENIZER, b"\xff\xc3") == [0xFF, 0xC3]


def test_special_token_text_is_coded_as_ordinary_text():
    data = b"a<|endoftext|>b"
    assert TOKENIZER.special_tokens["<|endoftext|>"] not in C.bytes_to_ids(TOKENIZER, data)
    assert unpack(pack(data)) == data


def test_empty_input_round_trips():
    blob = pack(b"")
    assert unpack(blob) == b"" and C.read_header(blob)[0].n_tokens == 0


def test_the_shipped_model_round_trips_a_short_text_and_beats_gzip_on_it():
    params, config, tokenizer, sha = C.load_model(ASSETS / MODEL_NAME)
    text = held_out_text(load_card())[:600].encode("utf-8")
    blob = C.compress(text, params, config, tokenizer, sha)
    assert C.decompress(blob, params, config, tokenizer, sha) == text
    stream = C.read_header(blob)[1]
    assert len(stream) < len(zlib.compress(text, 9))


# ------------------------------------------------------ what the file costs --

def test_the_stream_costs_the_integer_frequencies_code_length_plus_the_flush():
    trace = []
    blob = pack(b"Once upon a time there was a small model that compressed text.", trace=trace)
    bits = sum(quantised for _, quantised, _ in trace)
    assert 8 * len(C.read_header(blob)[1]) <= bits + 8 * 9 + 8


def test_integer_frequencies_cost_almost_nothing_over_the_model_probabilities():
    trace = []
    pack(b"Once upon a time there was a small model that compressed text.", trace=trace)
    quantised, exact = sum(q for _, q, _ in trace), sum(e for _, _, e in trace)
    assert abs(quantised - exact) <= exact * 1e-3 + 0.01  # the most probable token may even gain a little


@pytest.mark.parametrize("scale", [0.0, 1.0, 1e4])
def test_frequencies_are_at_least_one_and_sum_to_the_total(scale):
    logits = np.random.default_rng(0).normal(size=500).astype(np.float32) * scale
    freq = C.frequencies(logits)
    assert freq.min() >= 1 and freq.sum() == C.TOTAL and freq.dtype == np.int64


# ------------------------------------------------------------ wrong inputs --

def test_another_model_is_an_error_naming_both_hashes():
    blob = pack(b"hello")
    other = hashlib.sha256(b"another model").hexdigest()
    with pytest.raises(C.CompressError, match=f"{SHA}.*{other}"):
        C.decompress(blob, PARAMS, CONFIG, TOKENIZER, other)


@pytest.mark.parametrize("keep", [0, 10, C.FORMAT.size, -1, -5])
def test_a_truncated_file_is_an_error(keep):
    blob = pack(b"some text to compress, long enough for a few bytes of stream")
    with pytest.raises(C.CompressError, match="truncated|damaged|not a file"):
        unpack(blob[:keep])


@pytest.mark.parametrize("where", ["magic", "header", "stream", "crc"])
def test_a_flipped_byte_is_an_error(where):
    blob = bytearray(pack(b"some text to compress, long enough for a few bytes of stream"))
    index = {"magic": 0, "header": 20, "stream": len(blob) - 12, "crc": len(blob) - 1}[where]
    blob[index] ^= 0x10
    with pytest.raises(C.CompressError, match="damaged|not a file"):
        unpack(bytes(blob))


def test_a_changed_stream_with_a_matching_crc_is_caught_by_the_originals_hash():
    # What a decoder with other floats sees: an intact file whose symbols decode differently.
    blob = pack(b"some text to compress, long enough for a few bytes of stream")
    header_size = len(blob) - 4 - len(C.read_header(blob)[1])
    body = bytearray(blob[:-4])
    body[header_size + 3] ^= 0x01
    with pytest.raises(C.CompressError, match="SHA-256 mismatch.*probabilities"):
        unpack(with_crc(bytes(body)))


def test_a_tokenizer_that_does_not_fit_the_model_is_refused():
    with pytest.raises(ValueError, match="tokenizer"):
        C.compress(b"x", PARAMS, CONFIG, tiny_tokenizer(vocab_size=300), SHA)


# ------------------------------------------------------------- determinism --

@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
def test_the_model_gives_bit_identical_logits_with_one_and_two_threads():
    params, config, tokenizer, _ = C.load_model(ASSETS / MODEL_NAME)
    ids = tokenizer.encode("Ada Lovelace was born in 1815. She lived in Zota.")
    before = numba.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            cache = KVCache.empty(config)
            runs.append(np.stack([kernels.step(params, config, t, cache) for t in ids]))
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(runs[0].view(np.uint32), runs[1].view(np.uint32))


# --------------------------------------------------------------------- CLI --

def run(*argv) -> int:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.handler(args)


def test_cli_round_trip_with_a_model_file(tmp_path):
    model = save_tiny_models(tmp_path, {"tiny": 0}, max_seq_len=16)[0]
    original = tmp_path / "in.bin"
    original.write_bytes(b"The tiny model\xff\xfe compresses this.\n" * 3)
    assert run("compress", original, tmp_path / "c.llmz", "--model", model) == 0
    assert run("decompress", tmp_path / "c.llmz", tmp_path / "out.bin", "--model", model) == 0
    assert (tmp_path / "out.bin").read_bytes() == original.read_bytes()


def test_cli_decompress_with_the_default_model_names_the_model_the_file_needs(tmp_path, capsys):
    model = save_tiny_models(tmp_path, {"tiny": 0}, max_seq_len=16)[0]
    (tmp_path / "in.txt").write_bytes(b"hello")
    assert run("compress", tmp_path / "in.txt", tmp_path / "c.llmz", "--model", model) == 0
    assert run("decompress", tmp_path / "c.llmz", tmp_path / "out.txt") == 2
    err = capsys.readouterr().err
    assert hashlib.sha256(model.read_bytes()).hexdigest() in err and "no --model was given" in err
    assert not (tmp_path / "out.txt").exists()


def test_cli_refuses_a_missing_input_with_exit_code_2(tmp_path, capsys):
    assert run("compress", tmp_path / "nothing.txt", tmp_path / "c.llmz") == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_refuses_a_damaged_file_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "c.llmz").write_bytes(b"LLMZ" + b"\0" * 40)
    assert run("decompress", tmp_path / "c.llmz", tmp_path / "out.txt") == 2
    assert "truncated" in capsys.readouterr().err and not (tmp_path / "out.txt").exists()
