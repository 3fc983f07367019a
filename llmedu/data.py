"""Training text: reading it, splitting it, tokenizing it, and cutting it into batches.

Lesson 03 (``03_pretraining``) feeds the model from here. Pretraining data is
one long stream of token ids; a batch is ``batch_size`` windows cut at random
places from that stream, and the target of every position is simply the
next token:

    ids      ... 18 47 56 57 58  1 15 47 58 ...
    x (one row)    47 56 57 58  1
    y              56 57 58  1 15      (x shifted left by one)

The split follows nanoGPT's ``shakespeare_char/prepare.py``: the first 90%
of the *text* (counted in characters) is for training, the last 10% for
validation, and each part is tokenized on its own. The character
vocabulary is built from the whole text (as nanoGPT does: every character
of the validation part needs an id); a BPE tokenizer is trained on the
training part only, since bytes can always encode unseen text.

Left out: streaming corpora bigger than memory, document boundaries and
shuffling by document.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from llmedu.char_tokenizer import CharTokenizer
from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, BPETokenizer

__all__ = ["DataError", "Corpus", "read_text", "split_text", "build_tokenizer", "tokenizer_to_text",
           "tokenizer_from_text", "load_corpus", "get_batch", "TRAIN_FRACTION", "TOKENIZERS"]

TRAIN_FRACTION = 0.9  # nanoGPT's shakespeare_char split
TOKENIZERS = ("char", "bpe")
DEFAULT_BPE_VOCAB = 512


class DataError(ValueError):
    """The training text cannot be used; the message says why and what to do."""


@dataclass
class Corpus:
    """A tokenized text: its tokenizer, the ids of both splits (int32 arrays), the text's SHA-256."""

    tokenizer: CharTokenizer | BPETokenizer
    train_ids: np.ndarray  # (N_train,)
    val_ids: np.ndarray  # (N_val,)
    sha256: str  # of the text's UTF-8 bytes: tells a resumed run whether the data changed

    def batch(self, split: str, batch_size: int, seq_len: int, rng: np.random.Generator):
        """x, y (B, T) windows of ``split`` ("train" or "val"), and no loss mask: every position counts."""
        return (*get_batch(self.train_ids if split == "train" else self.val_ids, batch_size, seq_len, rng), None)


def read_text(path) -> str:
    """The UTF-8 text of the file at ``path``; ``DataError`` if it is missing, empty or not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (the working folder is {os.getcwd()}); "
                        "pass the path of a UTF-8 text file with --data.") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; pass the path of a UTF-8 text file.") from None
    if not data:
        raise DataError(f"{path} is empty: there is no text to train on.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 text: byte offset {err.start} (line {line}) holds "
                        f"0x{data[err.start]:02x}, which cannot start or continue a UTF-8 character. "
                        "Convert the file to UTF-8 first (e.g. iconv -f latin1 -t utf-8).") from None


def split_text(text: str, train_fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """(first ``train_fraction`` of the characters, the rest): the train and validation texts."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be between 0 and 1, got {train_fraction!r}.")
    n = int(len(text) * train_fraction)
    return text[:n], text[n:]


def build_tokenizer(kind: str, text: str, vocab_size: int | None = None):
    """A fresh tokenizer of ``kind`` ("char" or "bpe") built from ``text``.

    BPE reserves ids for the chat special tokens (``CHAT_SPECIAL_TOKENS``) so
    a pretrained model can later learn the chat format without new ids.
    """
    if kind == "char":
        if vocab_size is not None:
            raise ValueError("vocab_size applies to the bpe tokenizer only: a char tokenizer has one id per "
                             "distinct character of the text.")
        return CharTokenizer.from_text(text)
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size or DEFAULT_BPE_VOCAB, special_tokens=list(CHAT_SPECIAL_TOKENS))
    raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {kind!r}.")


def tokenizer_to_text(tokenizer) -> str:
    """The saved form of a CharTokenizer, a BPETokenizer or any tokenizer with ``to_text()``, as one string
    (to embed in a checkpoint)."""
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer.to_text()
    if isinstance(tokenizer, BPETokenizer):
        with tempfile.TemporaryDirectory() as folder:  # BPETokenizer only saves to files
            path = os.path.join(folder, "tokenizer.bpe")
            tokenizer.save(path)
            with open(path, encoding="utf-8") as f:
                return f.read()
    if callable(getattr(tokenizer, "to_text", None)):  # another vocabulary that saves itself (lesson 08's images)
        return tokenizer.to_text()
    raise TypeError(f"expected a CharTokenizer, a BPETokenizer or a tokenizer with to_text(), got "
                    f"{type(tokenizer).__name__}.")


def tokenizer_from_text(text: str, source: str = "the stored tokenizer"):
    """Inverse of ``tokenizer_to_text``: the kind is recognised from the text itself."""
    if text.startswith("{"):
        return CharTokenizer.from_saved_text(text, source)
    if text.startswith("llmedu-bpe"):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "tokenizer.bpe")
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            return BPETokenizer.load(path)
    raise ValueError(f"{source} is neither a CharTokenizer (JSON) nor a BPETokenizer (llmedu-bpe) text.")


def load_corpus(path, *, seq_len: int, tokenizer: str = "char", vocab_size: int | None = None,
                existing=None) -> Corpus:
    """Read, split and tokenize the text at ``path``.

    ``existing``: a tokenizer to reuse (when resuming) instead of building one.
    Raises ``DataError`` when either split is shorter than ``seq_len + 1``
    tokens: a training window needs seq_len inputs plus the one after.
    """
    text = read_text(path)
    train_text, val_text = split_text(text)
    if existing is not None:
        tok = existing
    else:
        tok = build_tokenizer(tokenizer, text if tokenizer == "char" else train_text, vocab_size)
    try:
        train_ids, val_ids = (np.array(tok.encode(part), dtype=np.int32) for part in (train_text, val_text))
    except ValueError as err:  # only a reused char tokenizer can meet an unknown character
        raise DataError(f"{path}: {err}") from None
    for name, ids in (("training", train_ids), ("validation", val_ids)):
        if len(ids) < seq_len + 1:
            raise DataError(
                f"{path} is too short: its {name} part ({_share(name)} of the text) is {len(ids)} tokens, "
                f"but one window needs seq_len + 1 = {seq_len + 1}. Use a longer text or a smaller --seq-len.")
    return Corpus(tok, train_ids, val_ids, hashlib.sha256(text.encode("utf-8")).hexdigest())


def _share(split: str) -> str:
    return f"{TRAIN_FRACTION:.0%}" if split == "training" else f"the last {1 - TRAIN_FRACTION:.0%}"


def get_batch(ids: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` windows at random starts: x, y int64 arrays of shape (B, T), y = x shifted by one.

    Every start in [0, len(ids) - seq_len) is equally likely; the draws come
    from ``rng`` alone, so the same generator state gives the same batch.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) < seq_len + 1:
        raise ValueError(f"ids must be a 1-d array of at least seq_len + 1 = {seq_len + 1} tokens, got shape {ids.shape}.")
    starts = rng.integers(0, len(ids) - seq_len, size=batch_size)  # (B,)
    rows = starts[:, None] + np.arange(seq_len + 1)  # (B, T + 1): each window plus the token after it
    window = ids[rows].astype(np.int64)
    return np.ascontiguousarray(window[:, :-1]), np.ascontiguousarray(window[:, 1:])
