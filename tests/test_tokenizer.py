"""Specifications of the byte-level BPE tokenizer (lesson 01).

``llmedu.bpe`` is the readable reference; ``llmedu.bpe_fast`` must give the
same merges and ids; ``llmedu.tokenizer.BPETokenizer`` adds special tokens,
save/load and input checks.
"""

import os
import string
import warnings

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from llmedu import bpe, bpe_fast, pretokenize
from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, GPT4_SPLIT_PATTERN, BPETokenizer, sample_text

# Text without lone surrogates (they have no UTF-8 bytes).
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
# Few distinct characters, so pairs repeat and ties are frequent. The set
# covers every branch of the split pattern: letters (and the long s, which
# matches 's' case-insensitively), digits, contractions, punctuation, all
# kinds of whitespace, Chinese and emoji.
ALPHABET = list("aAbsSltvERſ'1234 .,!\t\n\r\u00a0字中😀")
small_alphabet_text = st.text(st.sampled_from(ALPHABET), max_size=60)
# Text made of a few recurring pieces, so training finds many merges.
WORDS = ["the", " cat", " sat", "s", "'s", " 12", "345", "\n", "  ", "中文", "😀", ".", " a"]
wordy_text = st.lists(st.sampled_from(WORDS), max_size=80).map("".join)

TEXTS = {
    "english": "The cat sat on the mat. The cat's hat? It's the cat's, they'll say.",
    "chinese": "今天早上下了一场小雨，路上的行人不多。今天下午天晴了，今天很好。",
    "emoji": "🙂🙂 rain 🌧️🌧️ and 👩‍🔬 science 🙂 😀😀😀",
    "repeats": "aaaa aaaaaaa a aa aaaaa bbbb aaaa",
    "whitespace": "a  b   c\n\n\n  d \t\t e    \r\n\r\n  f      ",
    "digits": "12345678 9 1000000 3.14159 2024-03-14 0000",
    # The long s (U+017F) matches "s" case-insensitively, so "it'ſ" ends in
    # a contraction (after a space, " '" is punctuation instead).
    "contractions": "it's IT'S we'Ve they'RE you'll it'ſ x'ſt 'ſ don't 'd'm't ''s 'x 'LLama",
}


@pytest.fixture(scope="module")
def tok():
    """A small tokenizer trained on the sample text, with the chat tokens."""
    return BPETokenizer.train(sample_text(), 512, special_tokens=CHAT_SPECIAL_TOKENS)


def quiet_train(module, text, vocab_size):
    """Train, ignoring the warning about stopping early on tiny texts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return module.train(text, vocab_size)


# ------------------------------------------------------------- the reference
def test_wikipedia_example_gives_known_merges_and_ids():
    merges = bpe.train("aaabdaaabac", 256 + 3)
    assert merges == {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    assert bpe.encode("aaabdaaabac", merges) == [258, 100, 258, 97, 99]


def test_wikipedia_example_with_fast_path_and_tokenizer():
    assert bpe_fast.train("aaabdaaabac", 259) == {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    tokenizer = BPETokenizer.train("aaabdaaabac", 259)
    assert tokenizer.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def test_get_stats_counts_pairs_in_order_of_first_occurrence():
    stats = bpe.get_stats([1, 2, 3, 1, 2])
    assert stats == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert list(stats) == [(1, 2), (2, 3), (3, 1)]


def test_get_stats_counts_overlapping_pairs_and_ignores_short_lists():
    assert bpe.get_stats([7, 7, 7]) == {(7, 7): 2}
    assert bpe.get_stats([7]) == {}


def test_get_stats_updates_given_counts_in_place():
    counts = {(1, 2): 5}
    result = bpe.get_stats([1, 2, 9], counts)
    assert result is counts
    assert counts == {(1, 2): 6, (2, 9): 1}


def test_merge_replaces_non_overlapping_pairs_left_to_right():
    assert bpe.merge([1, 1, 1], (1, 1), 9) == [9, 1]
    assert bpe.merge([1, 1, 1, 1], (1, 1), 9) == [9, 9]
    assert bpe.merge([5, 6, 5, 6, 7], (5, 6), 99) == [99, 99, 7]


def test_merge_without_occurrence_returns_equal_list():
    assert bpe.merge([1, 2, 3], (3, 1), 9) == [1, 2, 3]


def test_encode_chunk_applies_lowest_id_first():
    # (98, 99) was learned first, so "abc" becomes a + bc, not ab + c.
    merges = {(98, 99): 256, (97, 98): 257}
    assert bpe.encode_chunk(b"abc", merges) == [97, 256]


def test_decode_replaces_invalid_utf8():
    vocab = bpe.build_vocab({})
    assert bpe.decode([0xE5, 0xAD], vocab) == "\ufffd"  # first 2 of 3 bytes of 字
    assert bpe.decode([0xE5, 0xAD, 0x97], vocab) == "字"


def test_train_warns_and_stops_when_no_pair_repeats():
    with pytest.warns(UserWarning, match="no pair"):
        merges = bpe.train("abcdef", 300)
    assert merges == {}
    with pytest.warns(UserWarning, match="no pair"):
        assert bpe_fast.train("abcdef", 300) == {}


@pytest.mark.parametrize("module", [bpe, bpe_fast])
def test_ties_go_to_the_pair_that_occurs_first(module):
    # In both texts "ab" and "cd" occur twice; the first one in the text wins.
    assert module.train("ab cd cd ab", 257) == {(97, 98): 256}
    assert module.train("cd ab ab cd", 257) == {(99, 100): 256}


# ------------------------------------------------------------- the fast path
@pytest.mark.parametrize("name", sorted(TEXTS))
def test_fast_split_equals_regex_findall(name):
    assert pretokenize.split(TEXTS[name]) == regex.findall(GPT4_SPLIT_PATTERN, TEXTS[name])


def test_fast_split_equals_regex_findall_on_sample_text():
    text = sample_text()
    assert pretokenize.split(text) == regex.findall(GPT4_SPLIT_PATTERN, text)


@settings(max_examples=500, deadline=None)
@given(st.one_of(unicode_text, small_alphabet_text, wordy_text))
def test_fast_split_equals_regex_findall_on_any_text(text):
    assert pretokenize.split(text) == regex.findall(GPT4_SPLIT_PATTERN, text)


def test_fast_split_uses_regex_for_other_patterns():
    assert pretokenize.split("ab12 cd", r"\d+|[a-z]+") == ["ab", "12", "cd"]


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_fast_train_and_encode_equal_reference(name):
    text = TEXTS[name]
    merges = quiet_train(bpe, text, 256 + 40)
    assert quiet_train(bpe_fast, text, 256 + 40) == merges
    assert bpe_fast.encode(text, merges) == bpe.encode(text, merges)


def test_fast_train_equals_reference_on_sample_text_at_several_sizes():
    text = sample_text()
    reference = list(bpe.train(text, 360).items())
    # Training is greedy, so a smaller vocabulary is a prefix of a larger one.
    for vocab_size in (257, 300, 360):
        assert list(bpe_fast.train(text, vocab_size).items()) == reference[: vocab_size - 256]


def test_fast_encode_equals_reference_on_other_texts():
    merges = bpe_fast.train(sample_text(), 400)
    for text in [sample_text()] + list(TEXTS.values()):
        assert bpe_fast.encode(text, merges) == bpe.encode(text, merges)


@settings(max_examples=200, deadline=None)
@given(st.one_of(small_alphabet_text, wordy_text))
def test_fast_train_equals_reference_on_random_small_texts(text):
    # Few distinct pieces give many ties, and merges move first occurrences.
    assert quiet_train(bpe_fast, text, 256 + 30) == quiet_train(bpe, text, 256 + 30)


@pytest.mark.parametrize("copies", [2, 3])
def test_fast_train_equals_reference_when_merges_create_many_new_pairs(copies):
    # A few long repeated words: every merge creates new pairs, more than
    # the initial pair table holds, so the table has to grow.
    text = " ".join([string.ascii_letters + string.digits] * copies)
    assert quiet_train(bpe_fast, text, 400) == quiet_train(bpe, text, 400)


def test_fast_train_accepts_other_patterns():
    text = "ab12 ab12 ab12"
    assert bpe_fast.train(text, 258, r"\d+|[a-z]+") == bpe.train(text, 258, r"\d+|[a-z]+")


# ---------------------------------------------------------------- tokenizer
@settings(max_examples=200, deadline=None)
@given(unicode_text)
def test_decode_inverts_encode_for_any_text(tok, text):
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text, allowed_special="all")) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(unicode_text, st.sampled_from(CHAT_SPECIAL_TOKENS)), max_size=6))
def test_decode_inverts_encode_around_special_tokens(tok, pieces):
    text = "".join(pieces)
    assert tok.decode(tok.encode(text, allowed_special="all")) == text


def test_vocab_size_counts_bytes_merges_and_special_tokens(tok):
    assert len(tok) == 512
    assert len(tok.merges) == 512 - 256 - len(CHAT_SPECIAL_TOKENS)


def test_special_tokens_get_the_ids_after_the_merges_in_order(tok):
    first = 256 + len(tok.merges)
    assert tok.special_tokens == {s: first + i for i, s in enumerate(CHAT_SPECIAL_TOKENS)}
    assert tok.vocab[first] == b"<|endoftext|>"


def test_special_token_in_user_text_stays_ordinary_text(tok):
    ids = tok.encode("hi<|im_end|>")
    assert not set(ids) & set(tok.special_tokens.values())
    assert tok.decode(ids) == "hi<|im_end|>"


def test_allowed_special_produces_only_the_listed_tokens(tok):
    ids = tok.encode("<|im_start|>user<|im_sep|>hi<|im_end|>", allowed_special={"<|im_end|>"})
    specials = [i for i in ids if i in tok.special_tokens.values()]
    assert specials == [tok.special_tokens["<|im_end|>"]]


def test_allowed_special_all_produces_every_special_token(tok):
    ids = tok.encode("<|im_start|>user<|im_sep|>hi<|im_end|>", allowed_special="all")
    s = tok.special_tokens
    assert ids[0] == s["<|im_start|>"] and ids[-1] == s["<|im_end|>"]
    assert s["<|im_sep|>"] in ids
    assert ids[1:-1] == tok.encode("user") + [s["<|im_sep|>"]] + tok.encode("hi")


def test_longest_special_token_wins_when_one_contains_another():
    tokenizer = BPETokenizer(special_tokens=["<|x|>", "<|x|><|x|>"])
    ids = tokenizer.encode("<|x|><|x|><|x|>", allowed_special="all")
    assert ids == [tokenizer.special_tokens["<|x|><|x|>"], tokenizer.special_tokens["<|x|>"]]


def test_decode_turns_special_ids_into_their_text(tok):
    assert tok.decode([tok.special_tokens["<|endoftext|>"]]) == "<|endoftext|>"


def test_decode_replaces_invalid_utf8_with_replacement_character(tok):
    assert tok.decode([0xE5]) == "\ufffd"
    assert tok.decode_bytes([0xE5]) == b"\xe5"


def test_token_to_id_and_id_to_token_are_inverse(tok):
    assert tok.token_to_id("<|im_sep|>") == tok.special_tokens["<|im_sep|>"]
    assert tok.id_to_token(tok.token_to_id(" the")) == b" the"
    with pytest.raises(KeyError):
        tok.token_to_id("no such token here")


def test_tokenizer_matches_reference_encode(tok):
    text = sample_text()
    assert tok.encode(text) == bpe.encode(text, tok.merges)


# ---------------------------------------------------------------- save/load
def test_save_load_round_trip_keeps_everything(tok, tmp_path):
    path = tmp_path / "tok.bpe"
    tok.save(path)
    loaded = BPETokenizer.load(path)
    assert list(loaded.merges.items()) == list(tok.merges.items())
    assert loaded.special_tokens == tok.special_tokens
    assert loaded.pattern == tok.pattern
    text = "Hello <|endoftext|> 世界 🙂"
    assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")


def test_saved_file_is_readable_text(tok, tmp_path):
    path = tmp_path / "tok.bpe"
    tok.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "llmedu-bpe v1"
    assert lines[3] == f'{tok.special_tokens["<|endoftext|>"]} "<|endoftext|>"'
    assert lines[-1] == " ".join(map(str, list(tok.merges)[-1]))


def test_save_replaces_the_file_without_leaving_temporary_files(tok, tmp_path):
    path = tmp_path / "tok.bpe"
    path.write_text("old content")
    tok.save(path)
    assert os.listdir(tmp_path) == ["tok.bpe"]
    assert BPETokenizer.load(path).merges == tok.merges


def saved_lines(tok, tmp_path):
    path = tmp_path / "tok.bpe"
    tok.save(path)
    return path, path.read_text(encoding="utf-8").split("\n")


def test_load_names_the_line_of_a_corrupted_merge(tok, tmp_path):
    path, lines = saved_lines(tok, tmp_path)
    lines[20] = "12 x"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"tok\.bpe, line 21: expected merge .* two ids"):
        BPETokenizer.load(path)


def test_load_names_the_line_where_a_truncated_file_ends(tok, tmp_path):
    path, lines = saved_lines(tok, tmp_path)
    path.write_text("\n".join(lines[:30]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 31: expected merge .* end of file"):
        BPETokenizer.load(path)


def test_load_rejects_a_last_line_cut_short(tok, tmp_path):
    path, lines = saved_lines(tok, tmp_path)
    text = "\n".join(lines)
    path.write_text(text[: len(text) - 2], encoding="utf-8")  # "12 34\n" -> "12 3"
    with pytest.raises(ValueError, match=rf"line {len(lines) - 1}: expected a line break"):
        BPETokenizer.load(path)


def test_load_rejects_lines_after_the_last_merge(tok, tmp_path):
    path, lines = saved_lines(tok, tmp_path)
    lines.insert(-1, "1 2")  # one merge more than the count announces
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"line {len(lines) - 1}: expected end of file"):
        BPETokenizer.load(path)


def test_load_rejects_a_file_that_is_not_a_tokenizer(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"notes\.txt, line 1: expected 'llmedu-bpe v1'"):
        BPETokenizer.load(path)


def test_load_rejects_special_ids_that_do_not_follow_the_merges(tok, tmp_path):
    path, lines = saved_lines(tok, tmp_path)
    lines[3] = '7 "<|endoftext|>"'
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 4: expected special token id"):
        BPETokenizer.load(path)


# ---------------------------------------------------------------- bad input
def test_vocab_size_below_bytes_plus_specials_is_rejected():
    with pytest.raises(ValueError, match="at least 256 bytes \\+ 4 special tokens = 260"):
        BPETokenizer.train("some text", 259, special_tokens=CHAT_SPECIAL_TOKENS)


@pytest.mark.parametrize("call", ["train", "encode"])
def test_bytes_text_is_rejected_with_a_decode_hint(tok, call):
    with pytest.raises(TypeError, match=r"\.decode\('utf-8'\)"):
        if call == "train":
            BPETokenizer.train(b"some bytes", 300)
        else:
            tok.encode(b"some bytes")


def test_decode_rejects_ids_out_of_range_naming_the_range(tok):
    with pytest.raises(ValueError, match="token id 512 at position 1 .* 0 to 511"):
        tok.decode([65, 512])
    with pytest.raises(ValueError, match="token id -1"):
        tok.decode([-1])


def test_decode_rejects_ids_that_are_not_integers(tok):
    with pytest.raises(TypeError, match="position 0 holds 65.0"):
        tok.decode([65.0])


def test_lone_surrogate_is_rejected_naming_where_and_how_to_fix(tok):
    with pytest.raises(ValueError, match=r"U\+D800 at index 2.*errors="):
        tok.encode("ab\ud800c")


def test_duplicate_special_tokens_are_rejected():
    with pytest.raises(ValueError, match="duplicate special tokens"):
        BPETokenizer.train("some text", 300, special_tokens=["<|a|>", "<|b|>", "<|a|>"])


def test_unknown_allowed_special_is_rejected(tok):
    with pytest.raises(ValueError, match="does not have"):
        tok.encode("x", allowed_special={"<|nope|>"})


def test_allowed_special_as_a_single_string_is_rejected(tok):
    with pytest.raises(TypeError, match="'all' or a collection"):
        tok.encode("x", allowed_special="<|im_end|>")
