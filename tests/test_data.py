"""Specifications of the training data (``llmedu.data``) and the character tokenizer (lesson 03).

A text file becomes two id arrays (first 90% of the characters for training,
the rest for validation); unusable files are refused with a message that
names the file and the problem; batches are windows whose targets are the
inputs shifted by one, reproducible from the generator's state.
"""

import os

import numpy as np
import pytest

from llmedu.char_tokenizer import CharTokenizer
from llmedu.data import (DataError, build_tokenizer, get_batch, load_corpus, read_text, split_text,
                         tokenizer_from_text, tokenizer_to_text)

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20


def write(tmp_path, data: bytes, name="text.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------- bad input --

def test_missing_file_is_a_data_error_naming_the_path(tmp_path):
    with pytest.raises(DataError, match="nope.txt: no such file"):
        read_text(tmp_path / "nope.txt")


def test_empty_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        read_text(write(tmp_path, b""))


def test_non_utf8_file_names_the_byte_offset_and_line(tmp_path):
    path = write(tmp_path, "héllo\nwörld".encode("utf-8") + b"\nabc\xff rest")
    offset = len("héllo\nwörld\nabc".encode("utf-8"))
    with pytest.raises(DataError, match=rf"byte offset {offset} \(line 3\) holds 0xff"):
        read_text(path)


def test_text_shorter_than_seq_len_plus_one_tokens_is_refused(tmp_path):
    path = write(tmp_path, ("abcdefghij" * 10).encode())  # 100 characters: 90 train, 10 validation
    load_corpus(path, seq_len=9)  # exactly seq_len + 1 = 10 validation tokens: enough
    with pytest.raises(DataError, match=r"validation part .* is 10 tokens, but one window needs seq_len \+ 1 = 11"):
        load_corpus(path, seq_len=10)


# ------------------------------------------------------------------ split --

def test_split_is_first_90_percent_of_characters_then_last_10(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    train, val = split_text(text)
    assert (train, val) == (text[:900], text[900:])
    corpus = load_corpus(write(tmp_path, text.encode()), seq_len=8)
    assert corpus.tokenizer.decode(corpus.train_ids) == text[:900]
    assert corpus.tokenizer.decode(corpus.val_ids) == text[900:]


def test_char_vocabulary_comes_from_the_whole_text_so_validation_only_characters_encode(tmp_path):
    text = "a" * 90 + "z" * 10  # "z" appears only in the validation part
    corpus = load_corpus(write(tmp_path, text.encode()), seq_len=4)
    assert corpus.tokenizer.chars == ["a", "z"]
    assert corpus.val_ids.tolist() == [1] * 10


# ------------------------------------------------------------- tokenizer --

def test_char_tokenizer_ids_are_sorted_distinct_characters_and_round_trip():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.chars == sorted(set(TEXT)) and len(tok) == len(set(TEXT))
    ids = tok.encode(TEXT)
    assert ids[:3] == [tok.chars.index(c) for c in "Fir"]
    assert tok.decode(ids) == TEXT


def test_char_tokenizer_save_load_round_trip_leaves_no_temporary_file(tmp_path):
    tok = CharTokenizer.from_text("héllo, wörld\n\t\"quoted\" \\ 世界")
    tok.save(tmp_path / "tok.json")
    assert CharTokenizer.load(tmp_path / "tok.json") == tok
    assert os.listdir(tmp_path) == ["tok.json"]
    assert (tmp_path / "tok.json").read_text(encoding="utf-8").startswith('{"format": "llmedu-char"')


def test_char_tokenizer_names_an_unknown_character_and_a_bad_id():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="character 'x' at position 2"):
        tok.encode("abxc")
    with pytest.raises(ValueError, match="token id 3 at position 1 is out of range"):
        tok.decode([0, 3])


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizer_text_embeds_and_restores_either_kind(kind):
    tok = build_tokenizer(kind, TEXT, 300 if kind == "bpe" else None)
    again = tokenizer_from_text(tokenizer_to_text(tok))
    assert type(again) is type(tok) and again.encode(TEXT) == tok.encode(TEXT)


# ---------------------------------------------------------------- batches --

def test_batches_are_reproducible_from_the_generator_seed():
    ids = np.arange(500, dtype=np.int32)
    a = [get_batch(ids, 4, 16, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0][0], a[1][0]) and np.array_equal(a[0][1], a[1][1])
    other = get_batch(ids, 4, 16, np.random.default_rng(8))
    assert not np.array_equal(a[0][0], other[0])


def test_targets_are_inputs_shifted_by_one_and_windows_reach_the_last_token():
    ids = np.arange(10, dtype=np.int32) * 3  # room for exactly 2 starts with seq_len 8
    x, y = get_batch(ids, 200, 8, np.random.default_rng(0))
    assert x.shape == y.shape == (200, 8) and x.dtype == y.dtype == np.int64
    assert np.array_equal(y[:, :-1], x[:, 1:]) and np.array_equal(y[:, -1], x[:, -1] + 3)
    assert set(x[:, 0].tolist()) == {0, 3}  # both starts drawn: the window ending on the last token too
