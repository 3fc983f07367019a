"""``CharTokenizer``: one token id per distinct character.

Lesson 03 (``03_pretraining``) trains its first model on characters, as
nanoGPT's ``shakespeare_char`` does: the vocabulary is tiny (65 ids for
Shakespeare), every id is readable, and the loss is directly comparable
with nanoGPT's. Byte-level BPE (``llmedu.tokenizer``) packs about 2.6
characters into each token instead, and is what later lessons use.

The ids are the distinct characters of the text in sorted (code point)
order, so the same text always gives the same tokenizer.

>>> tok = CharTokenizer.from_text("hello")
>>> tok.chars
['e', 'h', 'l', 'o']
>>> tok.encode("hole")
[1, 3, 2, 0]
>>> tok.decode([1, 0, 2, 2, 3])
'hello'
"""

from __future__ import annotations

import json
import os
import tempfile
from operator import index

__all__ = ["CharTokenizer"]

FORMAT = "llmedu-char"  # the "format" field of a saved tokenizer
VERSION = 1


class CharTokenizer:
    """Characters <-> ids. ``chars[i]`` is the character of id ``i``."""

    def __init__(self, chars):
        chars = list(chars)
        bad = [c for c in chars if not (isinstance(c, str) and len(c) == 1)]
        if bad:
            raise ValueError(f"every entry of chars must be one character (a str of length 1), got {bad[0]!r}.")
        if len(set(chars)) != len(chars):
            raise ValueError("chars lists a character twice; each character needs exactly one id.")
        if not chars:
            raise ValueError("a CharTokenizer needs at least one character.")
        self.chars = chars
        self._id = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer of ``text``: its distinct characters, sorted."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}.")
        if not text:
            raise ValueError("text is empty: there are no characters to build a vocabulary from.")
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={len(self)})"

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    def encode(self, text: str) -> list[int]:
        """Text -> list of ids; ``ValueError`` naming the first character not in the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}.")
        try:
            return [self._id[c] for c in text]
        except KeyError:
            position = next(i for i, c in enumerate(text) if c not in self._id)
            raise ValueError(f"character {text[position]!r} at position {position} is not in this tokenizer's "
                             f"vocabulary of {len(self)} characters (it was built from another text).") from None

    def decode(self, ids) -> str:
        """Ids (any iterable of int) -> text; ``ValueError`` naming the first id out of range."""
        chars, out = self.chars, []
        for position, i in enumerate(ids):
            i = index(i)  # accepts Python and numpy ints, refuses 3.0
            if not 0 <= i < len(chars):
                raise ValueError(f"token id {i} at position {position} is out of range: valid ids are 0 to {len(chars) - 1}.")
            out.append(chars[i])
        return "".join(out)

    # ------------------------------------------------------------ save / load
    def to_text(self) -> str:
        """The saved form: one line of JSON, ``{"format": "llmedu-char", "version": 1, "chars": [...]}``."""
        return json.dumps({"format": FORMAT, "version": VERSION, "chars": self.chars}, ensure_ascii=False) + "\n"

    @classmethod
    def from_saved_text(cls, text: str, source: str = "the tokenizer text") -> "CharTokenizer":
        """Parse what ``to_text`` wrote; ``ValueError`` naming ``source`` if it is not that."""
        try:
            fields = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{source} is not a saved CharTokenizer: not JSON ({err}).") from None
        if not isinstance(fields, dict) or fields.get("format") != FORMAT:
            raise ValueError(f"{source} is not a saved CharTokenizer: its \"format\" must be {FORMAT!r}.")
        if fields.get("version") != VERSION:
            raise ValueError(f"{source} is CharTokenizer format version {fields.get('version')!r}; "
                             f"this llmedu reads version {VERSION}.")
        try:
            return cls(fields.get("chars", []))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    def save(self, path) -> None:
        """Write ``to_text()`` to ``path`` as UTF-8, atomically (a temporary file, then a rename)."""
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(self.to_text())
            os.chmod(tmp, 0o644)  # mkstemp makes the file private; a tokenizer is not secret
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        """Read a tokenizer written by ``save``."""
        with open(path, encoding="utf-8") as f:
            return cls.from_saved_text(f.read(), source=str(path))
