"""Text from a trained run: load its parameters file and tokenizer, and continue a prompt.

Lesson 03 (``03_pretraining``) samples from the model it just trained;
``llmedu sample`` runs the same code from the command line.

A model only sees ``max_seq_len`` tokens. Generation uses the KV cache
(``llmedu.kernels``) while the text fits; after that each new token is
predicted from the last ``max_seq_len`` tokens only, re-run in full, as
nanoGPT's ``generate`` crops its context. So a model trained on windows of
64 characters can still write pages.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from llmedu import kernels
from llmedu.checkpoint import load_params
from llmedu.data import tokenizer_from_text
from llmedu.generate import KVCache, check_sampling, sample_next
from llmedu.model import ModelConfig, validate_tokens
from llmedu.train_state import MODEL_FILE

__all__ = ["load_run", "sample_ids", "sample_text"]


def load_run(path) -> tuple[dict, ModelConfig, object, dict]:
    """(params, config, tokenizer, metadata) from a run folder or its ``model.safetensors``.

    ``ValueError`` if there is no parameters file or it holds no tokenizer.
    """
    file = os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        where = f"no {MODEL_FILE} in this folder" if os.path.isdir(path) else "no such file or folder"
        raise ValueError(f"{path}: {where}; point at a run folder of llmedu pretrain or at its {MODEL_FILE}.")
    params, config, metadata = load_params(file)
    if "tokenizer" not in metadata:
        raise ValueError(f"{file} holds no tokenizer, so its ids cannot be turned into text.")
    return params, config, tokenizer_from_text(metadata["tokenizer"], f"the tokenizer stored in {file}"), metadata


def sample_ids(params: dict, config: ModelConfig, prompt_ids, *, max_new_tokens: int, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> Iterator[int]:
    """Stream ``max_new_tokens`` new ids after ``prompt_ids``, sliding the context window when it is full."""
    check_sampling(temperature, top_k, top_p)
    prompt = np.asarray(prompt_ids, dtype=np.int64)
    if prompt.size == 0:
        raise ValueError("the prompt is empty: give the model at least one token to continue.")
    ids = [int(i) for i in validate_tokens(prompt[-config.max_seq_len:], config)]  # a long prompt: its end
    rng = np.random.default_rng(seed)
    cache = KVCache.empty(config)
    logits = kernels.prefill(params, config, np.array(ids), cache)  # (vocab,) after the last prompt token
    for _ in range(max_new_tokens):
        token = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, rng=rng)
        yield token
        ids.append(token)
        if cache.pos < config.max_seq_len:
            logits = kernels.step(params, config, token, cache)
        else:  # the window is full: forget the oldest token and re-read the rest
            window = np.array(ids[-config.max_seq_len:], dtype=np.int64)
            logits = kernels.forward(params, config, window)[-1]


def sample_text(path, prompt: str, *, max_new_tokens: int = 500, temperature: float = 0.8, top_k: int | None = 200,
                top_p: float | None = None, seed: int | None = 1337) -> str:
    """The prompt's continuation (without the prompt) by the model saved at ``path``."""
    params, config, tokenizer, _ = load_run(path)
    new = sample_ids(params, config, tokenizer.encode(prompt), max_new_tokens=max_new_tokens,
                     temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return tokenizer.decode(list(new))
