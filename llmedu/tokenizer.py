"""``BPETokenizer``: the byte-level BPE tokenizer the rest of the course uses.

Lesson 01 (``01_tokenizer``) ends here. The algorithm lives in
``llmedu.bpe`` (readable) and ``llmedu.bpe_fast`` (Numba, same results);
this class adds what a real model needs around it:

- special tokens such as ``<|endoftext|>`` or the chat markers
  (``CHAT_SPECIAL_TOKENS``), which get the ids after the merges and which
  user text can only produce when the caller explicitly allows them;
- saving to and loading from a small human-readable text file;
- input checks whose messages say what to do.

>>> tok = BPETokenizer.train(sample_text(), 512, special_tokens=["<|endoftext|>"])
>>> ids = tok.encode("hello<|endoftext|>", allowed_special="all")
>>> tok.decode(ids)
'hello<|endoftext|>'
"""

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from importlib import resources
from operator import index

import regex

from . import bpe, bpe_fast
from .bpe import GPT4_SPLIT_PATTERN

__all__ = ["BPETokenizer", "CHAT_SPECIAL_TOKENS", "TOOL_SPECIAL_TOKENS", "GPT4_SPLIT_PATTERN", "sample_text"]

# Registered by the chat lessons: a document separator and the markers of
# one chat turn, <|im_start|>role<|im_sep|>content<|im_end|>.
CHAT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>")
# Lesson 06: a tool call and its result (llmedu.chat); added to a trained model by llmedu.vocab.add_special_tokens.
TOOL_SPECIAL_TOKENS = ("<|call_start|>", "<|call_end|>", "<|result_start|>", "<|result_end|>")

_MAGIC = "llmedu-bpe v1"  # first line of a saved tokenizer


def sample_text():
    """The built-in sample text (``llmedu/data/sample.txt``) as a string."""
    return resources.files("llmedu").joinpath("data/sample.txt").read_text(encoding="utf-8")


def _check_text(text, name="text"):
    """Raise a helpful error unless ``text`` is a str that UTF-8 can encode."""
    if isinstance(text, (bytes, bytearray)):
        raise TypeError(
            f"{name} must be str, got {type(text).__name__}; "
            f"decode it first, e.g. {name}.decode('utf-8')"
        )
    if not isinstance(text, str):
        raise TypeError(f"{name} must be str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        raise ValueError(
            f"{name} holds a lone surrogate U+{ord(bad):04X} at index {err.start}, "
            "which has no UTF-8 bytes. Clean it first, e.g. "
            f"{name}.encode('utf-8', errors='replace').decode('utf-8'), or read "
            "files with open(..., errors='replace')"
        ) from None


def _check_specials(special_tokens):
    """Return the special tokens as a tuple of distinct, non-empty str."""
    if special_tokens is None:
        return ()
    if isinstance(special_tokens, str):
        raise TypeError(
            f"special_tokens must be a list of str, got the str {special_tokens!r}; "
            f"write [{special_tokens!r}]"
        )
    specials = tuple(special_tokens)
    for s in specials:
        _check_text(s, "special_token")
        if not s:
            raise ValueError("special tokens must not be empty strings")
    duplicates = sorted({s for s in specials if specials.count(s) > 1})
    if duplicates:
        raise ValueError(f"duplicate special tokens {duplicates}: list each one once")
    return specials


def _check_merges(merges):
    """Merges must map (left, right) -> 256, 257, ... in order, parts first."""
    for rank, ((left, right), new_id) in enumerate(merges.items()):
        if new_id != 256 + rank or not (0 <= left < new_id and 0 <= right < new_id):
            raise ValueError(
                f"merge number {rank} is {(left, right)} -> {new_id}; expected ids "
                f"256, 257, ... in order, each made of smaller ids (as train() returns)"
            )


class BPETokenizer:
    """Byte-level BPE with special tokens.

    Ids 0..255 are the bytes, then one id per merge (in the order they were
    learned), then the special tokens in the order given.

    Attributes: ``merges`` (``(left, right) -> id``), ``vocab``
    (``id -> bytes``, specials as their UTF-8), ``special_tokens``
    (``str -> id``) and ``pattern`` (the split regex).
    """

    def __init__(self, merges=None, special_tokens=None, pattern=GPT4_SPLIT_PATTERN):
        if not isinstance(pattern, str):
            raise TypeError(f"pattern must be a str (a regex), got {type(pattern).__name__}")
        merges = dict(merges or {})
        _check_merges(merges)
        specials = _check_specials(special_tokens)
        self.merges = merges
        self.pattern = pattern
        first_special = 256 + len(merges)
        self.special_tokens = {s: first_special + i for i, s in enumerate(specials)}
        self.vocab = bpe.build_vocab(merges)
        self.vocab.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        self._ranks = bpe_fast.make_ranks(merges)  # the table the fast encoder reads
        self._id_of_bytes = {}  # bytes -> lowest id; two merges can spell the same bytes
        for i in range(first_special - 1, -1, -1):
            self._id_of_bytes[self.vocab[i]] = i

    @classmethod
    def train(cls, text, vocab_size, *, pattern=GPT4_SPLIT_PATTERN, special_tokens=None):
        """Learn a tokenizer of ``vocab_size`` ids (bytes + merges + specials).

        ``text`` is used as it is: special-token strings in it are ordinary
        text. Training stops early, with a warning, if no pair repeats.
        """
        _check_text(text)
        specials = _check_specials(special_tokens)
        smallest = 256 + len(specials)
        if not hasattr(vocab_size, "__index__"):
            raise TypeError(f"vocab_size must be an int, got {vocab_size!r}")
        if vocab_size < smallest:
            raise ValueError(
                f"vocab_size must be an int of at least 256 bytes + {len(specials)} "
                f"special tokens = {smallest}, got {vocab_size!r}; raise vocab_size"
            )
        merges = bpe_fast.train(text, index(vocab_size) - len(specials), pattern)
        return cls(merges, specials, pattern)

    def __len__(self):
        return len(self.vocab)

    def __repr__(self):
        return (
            f"BPETokenizer(vocab_size={len(self)}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)})"
        )

    # ---------------------------------------------------------------- encoding
    def _allowed(self, allowed_special):
        """The set of special tokens ``encode`` may produce."""
        if allowed_special == "all":
            return set(self.special_tokens)
        if isinstance(allowed_special, str):
            raise TypeError(
                f"allowed_special must be 'all' or a collection of str, got the str "
                f"{allowed_special!r}; write ({allowed_special!r},)"
            )
        allowed = set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"allowed_special names {sorted(unknown)}, which this tokenizer does "
                f"not have; its special tokens are {list(self.special_tokens)}"
            )
        return allowed

    def encode(self, text, *, allowed_special=()):
        """Encode ``text`` into a list of ids.

        Special-token strings are ordinary text unless listed in
        ``allowed_special`` (a collection of str, or ``"all"``), so text from
        users can never forge a control token.
        """
        _check_text(text)
        allowed = self._allowed(allowed_special)
        if not allowed:
            return bpe_fast.encode_with_ranks(text, self._ranks, self.pattern).tolist()
        # Longest first, so a special token that contains another one wins.
        alternatives = sorted(allowed, key=len, reverse=True)
        splitter = regex.compile("(" + "|".join(regex.escape(s) for s in alternatives) + ")")
        ids = []
        # With a capturing group, split() alternates text, special, text, ...
        for i, piece in enumerate(splitter.split(text)):
            if i % 2:
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(bpe_fast.encode_with_ranks(piece, self._ranks, self.pattern).tolist())
        return ids

    # ---------------------------------------------------------------- decoding
    def decode_bytes(self, ids):
        """Concatenate the bytes of ``ids`` (any iterable of int)."""
        vocab = self.vocab
        if isinstance(ids, Iterator):
            ids = list(ids)  # a generator could not be read twice to find a bad id
        try:
            # index() accepts Python and numpy ints and rejects 3.0 or "3".
            return b"".join([vocab[index(i)] for i in ids])
        except (KeyError, TypeError):
            self._raise_bad_id(ids)

    def _raise_bad_id(self, ids):
        """Name the first id that is not a valid token id, and why."""
        if not isinstance(ids, Iterable):
            raise TypeError(f"ids must be an iterable of int, got {type(ids).__name__}")
        for position, i in enumerate(ids):
            try:
                i = index(i)
            except TypeError:
                raise TypeError(
                    f"token ids must be int; position {position} holds {i!r} "
                    f"({type(i).__name__})"
                ) from None
            if i not in self.vocab:
                raise ValueError(
                    f"token id {i} at position {position} is out of range: "
                    f"valid ids are 0 to {len(self) - 1}"
                )
        raise AssertionError("unreachable: every id was valid")

    def decode(self, ids):
        """Ids back to text; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def id_to_token(self, i):
        """The bytes of token ``i``."""
        return self.decode_bytes([i])

    def token_to_id(self, token):
        """The id of a special token (str) or of a token's exact bytes (bytes)."""
        if isinstance(token, str) and token in self.special_tokens:
            return self.special_tokens[token]
        data = token.encode("utf-8") if isinstance(token, str) else bytes(token)
        if data not in self._id_of_bytes:
            raise KeyError(f"{token!r} is not a single token of this tokenizer")
        return self._id_of_bytes[data]

    # ------------------------------------------------------------ save / load
    def save(self, path):
        """Write the tokenizer to ``path`` as UTF-8 text, atomically.

        Format: the line ``llmedu-bpe v1``; ``pattern <json str>``;
        ``special_tokens <n>`` then n lines ``<id> <json str>``;
        ``merges <m>`` then m lines ``<left> <right>`` (ids 256, 257, ...).
        """
        lines = [_MAGIC, "pattern " + json.dumps(self.pattern, ensure_ascii=False)]
        lines.append(f"special_tokens {len(self.special_tokens)}")
        for s, i in self.special_tokens.items():
            lines.append(f"{i} {json.dumps(s, ensure_ascii=False)}")
        lines.append(f"merges {len(self.merges)}")
        lines += [f"{a} {b}" for a, b in self.merges]
        folder = os.path.dirname(os.path.abspath(path))
        # Write a temporary file next to the target and rename it: a crash
        # never leaves a half-written tokenizer under the real name.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".bpe")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write("\n".join(lines) + "\n")
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a tokenizer is not secret
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path):
        """Read a tokenizer written by ``save``; ``ValueError`` if it is damaged."""
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data[: err.start].count(b"\n") + 1
            bad = data[err.start : err.end]
            raise ValueError(f"{path}, line {line}: expected UTF-8 text, found {bad!r}") from None
        return _Reader(path, text).read_tokenizer(cls)


class _Reader:
    """Parse a saved tokenizer line by line, naming the line of any error."""

    def __init__(self, path, text):
        self.path, self.n = path, 0  # n: number of the line read last
        self.lines = text.split("\n")
        # save() ends the file with a newline: its absence means the last
        # line may be cut short, even if it still parses.
        self.complete = self.lines[-1] == ""
        if self.complete:
            self.lines.pop()

    def fail(self, expected, found=None):
        if found is None:
            found = repr(self.lines[self.n - 1]) if self.n <= len(self.lines) else "end of file"
        raise ValueError(f"{self.path}, line {self.n}: expected {expected}, found {found}")

    def next(self, expected):
        self.n += 1
        if self.n > len(self.lines):
            self.fail(expected, "end of file (the file is truncated)")
        return self.lines[self.n - 1]

    def field(self, name):
        """Value of a ``<name> <value>`` line."""
        line = self.next(f"'{name} ...'")
        if not line.startswith(name + " "):
            self.fail(f"'{name} ...'")
        return line[len(name) + 1 :]

    def count(self, name):
        value = self.field(name)
        if not value.isdigit():
            self.fail(f"'{name} <count>'")
        return int(value)

    def json_str(self, value, what):
        try:
            s = json.loads(value)
        except json.JSONDecodeError:
            s = None
        if not isinstance(s, str):
            self.fail(what)
        return s

    def specials(self):
        """Lines ``<id> <json str>``: return [(id, token, line number)]."""
        out, what = [], "'<id> <json string>'"
        for _ in range(self.count("special_tokens")):
            i, _, s = self.next(what).partition(" ")
            if not i.isdigit():
                self.fail(what)
            token = self.json_str(s, what)
            if not token or token in [t for _, t, _ in out]:
                self.fail("a non-empty special token not listed before")
            out.append((int(i), token, self.n))
        return out

    def merges(self):
        """Lines ``<left> <right>``: merge k gets id 256 + k."""
        merges = {}
        for rank in range(self.count("merges")):
            new_id = 256 + rank
            what = f"merge {rank + 1} as two ids below {new_id}"
            parts = self.next(what).split(" ")
            if len(parts) != 2 or not all(p.isdigit() and int(p) < new_id for p in parts):
                self.fail(what)
            merges[int(parts[0]), int(parts[1])] = new_id
        return merges

    def read_tokenizer(self, cls):
        if self.next(f"'{_MAGIC}'") != _MAGIC:
            self.fail(f"'{_MAGIC}' (a tokenizer saved by llmedu)")
        pattern = self.json_str(self.field("pattern"), "'pattern <json string>'")
        specials = self.specials()
        merges = self.merges()
        if self.n < len(self.lines):
            self.n += 1
            self.fail("end of file after the last merge")
        if not self.complete:
            self.fail("a line break at the end (the file is truncated)")
        for k, (i, _, line) in enumerate(specials):
            if i != 256 + len(merges) + k:
                self.n = line
                self.fail(f"special token id {256 + len(merges) + k} (ids follow the merges)")
        return cls(merges, [s for _, s, _ in specials], pattern)
