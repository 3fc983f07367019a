"""What a pretrained model learned, measured: compression, knowledge, hallucination (lesson 03).

- ``bits_per_byte``: how many bits the model needs per byte of held-out text,
  next to ``compressor_bits_per_byte`` for gzip, bz2 and lzma on the same text.
  A language model is a compressor: an arithmetic coder driven by its
  next-token probabilities spends -log2 p bits on each token.
- ``fact_recall``: the share of the world's facts the model completes
  correctly from a prompt such as "<name> was born in".
- ``hallucination_rate``: the same prompt about names the model never read;
  every confident, well-formed answer is necessarily invented.

Everything decodes greedily (temperature 0), so the figures are deterministic.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import re

import numpy as np

from llmedu import kernels, model
from llmedu.generate import generate

YEAR = re.compile(r"^ (\d{4})\b")


def mean_nll(params: dict, config: model.ModelConfig, ids: np.ndarray, batch_size: int = 16) -> tuple[float, int]:
    """Mean negative log-likelihood (nats per token) of ``ids`` (1-D), and how many tokens were scored.

    The ids are cut into consecutive windows of max_seq_len + 1; in each, every
    token after the first is predicted from those before it in the window.
    """
    T = config.max_seq_len
    n_windows = (len(ids) - 1) // T
    if n_windows == 0:
        raise ValueError(f"need at least {T + 1} tokens to score, got {len(ids)}.")
    total, count = 0.0, 0
    for start in range(0, n_windows, batch_size):
        rows = range(start, min(start + batch_size, n_windows))
        x = np.stack([ids[r * T:r * T + T] for r in rows])  # (B, T)
        y = np.stack([ids[r * T + 1:r * T + T + 1] for r in rows])  # (B, T)
        logits = kernels.forward(params, config, x).astype(np.float64)  # (B, T, vocab)
        logits -= logits.max(axis=-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        total -= np.take_along_axis(log_probs, y[..., None], axis=-1).sum()
        count += y.size
    return total / count, count


def bits_per_byte(params: dict, config: model.ModelConfig, tokenizer, text: str) -> float:
    """Bits the model spends per UTF-8 byte of ``text`` (only the scored tokens' bytes count)."""
    ids = np.array(tokenizer.encode(text), dtype=np.int64)
    nll, n_scored = mean_nll(params, config, ids)
    T = config.max_seq_len
    scored = [ids[r * T + 1:r * T + T + 1] for r in range(n_scored // T)]
    n_bytes = sum(len(tokenizer.decode_bytes(list(map(int, window)))) for window in scored)
    return nll * n_scored / math.log(2) / n_bytes


def compressor_bits_per_byte(text: str) -> dict[str, float]:
    """gzip -9, bz2 -9 and lzma (preset 9) on ``text``: compressed bits per input byte."""
    data = text.encode("utf-8")
    sizes = {
        "gzip": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "bz2": len(bz2.compress(data, compresslevel=9)),
        "lzma": len(lzma.compress(data, preset=9)),
    }
    return {name: 8 * size / len(data) for name, size in sizes.items()}


def complete(params: dict, config: model.ModelConfig, tokenizer, prompt: str, max_new_tokens: int = 6) -> str:
    """The greedy continuation of ``prompt``, as text."""
    ids = tokenizer.encode(prompt)
    return tokenizer.decode(list(generate(params, config, ids, max_new_tokens=max_new_tokens, temperature=0)))


def fact_recall(params: dict, config: model.ModelConfig, tokenizer, people) -> tuple[float, list[tuple[str, str, str]]]:
    """Share of people whose birth year the model completes after "<name> was born in".

    Returns (share, examples) with examples as (prompt, expected, answer).
    """
    examples = []
    for person in people:
        prompt = f"{person.name} was born in"
        answer = complete(params, config, tokenizer, prompt)
        examples.append((prompt, str(person.birth_year), answer))
    correct = sum(bool(YEAR.match(a)) and YEAR.match(a).group(1) == expected for _, expected, a in examples)
    return correct / len(examples), examples


def hallucination_rate(params: dict, config: model.ModelConfig, tokenizer, names) -> tuple[float, list[tuple[str, str]]]:
    """Share of never-seen names for which the model still states a birth year.

    Returns (share, examples) with examples as (prompt, answer).
    """
    examples = [(f"{name} was born in", complete(params, config, tokenizer, f"{name} was born in")) for name in names]
    return sum(bool(YEAR.match(a)) for _, a in examples) / len(examples), examples
