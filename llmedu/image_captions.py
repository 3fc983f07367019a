"""A caption model: the course's transformer reading image tokens and writing what the image shows.

Lesson 08 (``08_frontiers``). Every example is one row of token ids,

    <|img_12|> <|img_3|> ... <|img_40|>  <|caption|>  a small bright circle at the top left  <|end|>
    `------ 16 image tokens ---------'  separator   `----------- 8 caption words -------'

over a vocabulary of the codebook's k image tokens, the two separators and
the caption words (:class:`ImageVocab`). Training is lesson 03's loop
(:func:`llmedu.train.train`, given these rows as its corpus) with lesson 04's
loss mask: only the caption's words and ``<|end|>`` count, as only the
assistant's words count in SFT, so the model learns to describe images, not
to draw them. Captioning is greedy decoding after ``<|caption|>``; the answer
is judged exactly, attribute by attribute, against the image's true label,
with the majority-class and chance baselines beside it.

Left out: sampling several captions, questions about the image other than
"what is it", and images in the middle of a conversation.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np

from llmedu.backward import forward_logits
from llmedu.images import ATTRIBUTES, caption, parse_caption
from llmedu.sft import ConversationCorpus
from llmedu.stats import wilson_interval
from llmedu.train import TrainConfig

CAPTION, END = "<|caption|>", "<|end|>"
WORDS = sorted({"a", "at", "the", *(w for values in ATTRIBUTES.values() for v in values for w in v.split())})
CAPTION_WORDS = 8  # every caption has 8 words (``images.caption``)
FORMAT = "llmedu-image-vocab"


class ImageVocab:
    """Symbols <-> ids: ``<|img_0|>`` ... ``<|img_{k-1}|>``, then ``<|caption|>``, ``<|end|>``, then the words."""

    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k, the codebook's size, must be a positive integer, got {k!r}.")
        self.k = int(k)
        self.symbols = [f"<|img_{i}|>" for i in range(self.k)] + [CAPTION, END] + WORDS
        self._id = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def __getitem__(self, symbol: str) -> int:
        return self._id[symbol]

    def encode(self, symbols) -> list[int]:
        """Symbols (image tokens, separators, words) -> ids; ``ValueError`` naming one it does not know."""
        unknown = [s for s in symbols if s not in self._id]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not in the image vocabulary (k={self.k} image tokens, "
                             f"separators, and the words {WORDS}).")
        return [self._id[s] for s in symbols]

    def decode(self, ids) -> list[str]:
        return [self.symbols[int(i)] for i in ids]

    def to_text(self) -> str:
        """The saved form (embedded in the parameters file by :func:`llmedu.data.tokenizer_to_text`)."""
        return json.dumps({"format": FORMAT, "version": 1, "k": self.k, "symbols": self.symbols}) + "\n"


def example_row(tokens, text: str, vocab: ImageVocab) -> tuple[list[int], list[int]]:
    """One example's ids (image tokens, ``<|caption|>``, words, ``<|end|>``) and its loss mask (1 on the caption)."""
    image = [int(t) for t in tokens]
    if any(not 0 <= t < vocab.k for t in image):
        raise ValueError(f"image token ids must lie in [0, {vocab.k}), got {image}.")
    words = vocab.encode(text.split() + [END])
    return image + [vocab[CAPTION]] + words, [0] * (len(image) + 1) + [1] * len(words)


def caption_rows(tokens: np.ndarray, texts: list[str], vocab: ImageVocab) -> tuple[np.ndarray, np.ndarray]:
    """Rows (N, P + 2 + 8) of ids and their masks, one image and its caption per row."""
    pairs = [example_row(t, text, vocab) for t, text in zip(tokens, texts)]
    if len({len(ids) for ids, _ in pairs}) != 1:
        raise ValueError("every caption must have the same number of words, so that every row has one length.")
    return np.array([ids for ids, _ in pairs], dtype=np.int32), np.array([m for _, m in pairs], dtype=np.uint8)


def caption_corpus(train: tuple, val: tuple, vocab: ImageVocab) -> ConversationCorpus:
    """The rows ``train()`` draws batches from: ``train`` and ``val`` are (tokens (N, P), captions)."""
    train_rows, train_masks = caption_rows(*train, vocab)
    val_rows, val_masks = caption_rows(*val, vocab)
    digest = hashlib.sha256(vocab.to_text().encode())
    for array in (train_rows, train_masks, val_rows, val_masks):
        digest.update(np.ascontiguousarray(array).tobytes())
    return ConversationCorpus(vocab, train_rows, train_masks, val_rows, val_masks, digest.hexdigest())


def caption_config(out, corpus: ConversationCorpus, *, steps: int, seed: int, description: str, dim: int = 64,
                   n_layers: int = 2, batch_size: int = 32, lr: float = 3e-3) -> TrainConfig:
    """The training config of a caption model for ``corpus``: a row is one window (seq_len = row length - 1)."""
    return TrainConfig(data=description, dim=dim, n_layers=n_layers, n_heads=4, seq_len=corpus.train_rows.shape[1] - 1,
                       batch_size=batch_size, max_iters=steps, lr=lr, min_lr=lr / 10, warmup_iters=max(1, steps // 20),
                       weight_decay=0.0, eval_interval=max(1, steps // 4), eval_iters=4, seed=seed, out=str(out))


def greedy_captions(params: dict, config, vocab: ImageVocab, tokens: np.ndarray, batch: int = 256) -> list[str]:
    """The model's caption of each image: greedy decoding after ``<|caption|>``, up to ``<|end|>``.

    All images are decoded together, one position at a time ((N, T) through
    the forward pass, the last position's argmax appended); what follows
    ``<|end|>`` is dropped, and an image token the model writes is kept as
    written (the caption is then simply wrong).
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    texts = []
    for start in range(0, len(tokens), batch):
        x = np.concatenate([tokens[start:start + batch], np.full((len(tokens[start:start + batch]), 1),
                                                                 vocab[CAPTION])], axis=1)  # (B, P + 1)
        for _ in range(CAPTION_WORDS + 1):  # the words, then <|end|>
            logits = forward_logits(params, config, x)[:, -1]  # (B, V)
            x = np.concatenate([x, logits.argmax(-1)[:, None]], axis=1)
        for row in x[:, tokens.shape[1] + 1:]:
            symbols = vocab.decode(row)
            texts.append(" ".join(symbols[:symbols.index(END)] if END in symbols else symbols))
    return texts


def _rate(correct: int, n: int) -> dict:
    low, high = wilson_interval(correct, n)
    return {"correct": int(correct), "n": n, "accuracy": correct / n, "wilson_95": [low, high]}


def score_captions(predicted: list[str], labels: list[dict]) -> dict:
    """Exact judgement: per attribute (from the parsed caption; unparsable = wrong) and for the whole caption."""
    if len(predicted) != len(labels) or not labels:
        raise ValueError(f"need one caption per label, got {len(predicted)} captions for {len(labels)} labels.")
    parsed = [parse_caption(text) for text in predicted]
    scores = {name: _rate(sum(p is not None and p[name] == label[name] for p, label in zip(parsed, labels)),
                          len(labels)) for name in ATTRIBUTES}
    scores["caption"] = _rate(sum(text == caption(label) for text, label in zip(predicted, labels)), len(labels))
    return scores


def baselines(train_labels: list[dict], test_labels: list[dict]) -> dict:
    """What needs no image: the training set's most common answer (scored on the test set), and chance."""
    out = {}
    for name, values in ATTRIBUTES.items():
        majority = Counter(label[name] for label in train_labels).most_common(1)[0][0]
        out[name] = {"majority": majority, "majority_accuracy": float(np.mean([l[name] == majority for l in test_labels])),
                     "chance": 1 / len(values)}
    majority = Counter(caption(label) for label in train_labels).most_common(1)[0][0]
    out["caption"] = {"majority": majority,
                      "majority_accuracy": float(np.mean([caption(l) == majority for l in test_labels])),
                      "chance": 1 / int(np.prod([len(v) for v in ATTRIBUTES.values()]))}
    return out
