"""Comparisons as training data: both replies rendered with the chat template, batched in pairs (lesson 05).

The reward model and DPO train on the same batches. A batch of N pairs is
2N rows, the N chosen conversations first and then the N rejected ones, each
rendered by :func:`llmedu.chat.render_conversation` (so the mask is 1 on the
reply's tokens and its ``<|im_end|>``) and padded on the right to the longest
row of the batch. Padding comes after a row's last token, and the model is
causal, so it changes nothing before it. The last tenth of the pairs is
kept for the validation loss.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmedu.chat import ConversationError, render_conversation
from llmedu.data import DataError
from llmedu.preference import read_comparisons
from llmedu.sft import PAD_TOKEN, VALIDATION_FRACTION, pad_right


@dataclass
class PairBatch:
    """2N rows: chosen then rejected. ``ids`` (2N, L) int64 padded; ``mask`` (2N, L) 1 on the replies' tokens;
    ``last`` (2N,) the index of each row's final token; ``pairs`` (N,) which pairs of ``split`` these are."""

    ids: np.ndarray
    mask: np.ndarray
    last: np.ndarray
    pairs: np.ndarray
    split: str


@dataclass
class ComparisonCorpus:
    """Rendered pairs of both splits, with the tokenizer and the file's SHA-256 (what resume compares)."""

    tokenizer: object
    train: list  # [(chosen (ids, mask), rejected (ids, mask))]
    val: list
    sha256: str
    extra: dict = field(default_factory=dict)  # per-split arrays an objective adds (DPO: reference log-probs)

    def split(self, name: str) -> list:
        return self.train if name == "train" else self.val

    def rows(self, name: str, pairs: np.ndarray) -> PairBatch:
        """The batch of the given pairs of split ``name``."""
        chosen = [self.split(name)[i][0] for i in pairs]
        rejected = [self.split(name)[i][1] for i in pairs]
        rendered = chosen + rejected
        ids, mask = pad_right([row for row, _ in rendered], self.tokenizer.special_tokens[PAD_TOKEN],
                              [row_mask for _, row_mask in rendered])
        last = np.array([len(row_ids) - 1 for row_ids, _ in rendered])
        return PairBatch(ids, mask, last, np.asarray(pairs), name)

    def batch(self, split: str, batch_size: int, seq_len: int, rng: np.random.Generator) -> PairBatch:
        """``batch_size`` random pairs of ``split`` (rows are at most seq_len + 1 tokens: checked at load)."""
        return self.rows(split, rng.integers(0, len(self.split(split)), size=batch_size))


def load_comparison_corpus(path, tokenizer, seq_len: int) -> ComparisonCorpus:
    """Read and render the comparisons at ``path``; the last tenth is the validation split."""
    comparisons = read_comparisons(path)
    rendered = []
    for number, c in enumerate(comparisons, start=1):
        pair = []
        for reply in (c.chosen, c.rejected):
            try:
                ids, mask = render_conversation(c.prompt + [{"role": "assistant", "content": reply}], tokenizer,
                                                max_tokens=seq_len + 1)
            except ConversationError as error:
                raise DataError(f"{path}, comparison {number}: {error}") from None
            pair.append((ids, mask))
        rendered.append(tuple(pair))
    cut = len(rendered) - max(1, int(len(rendered) * VALIDATION_FRACTION))
    sha256 = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return ComparisonCorpus(tokenizer, rendered[:cut], rendered[cut:], sha256)
