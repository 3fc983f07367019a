"""Growing a trained model's vocabulary: new special tokens on a model that never saw them (lesson 06).

The tool markers (``<|call_start|>`` ...) did not exist when the base model
was pretrained, so the tool model is the chat model with four more ids. A
token id is a row in two matrices, the embedding (what the model reads) and
the output classifier (what it predicts), so adding tokens adds rows:

- embedding rows: the mean of the existing rows plus a little seeded noise,
  so each new token starts as an unremarkable input, and the four are told
  apart from the first step;
- output rows: the mean of the existing rows, so a new token's logit starts
  at an average value: the model neither ignores it nor blurts it out until
  fine-tuning teaches it where the token belongs.

Every old id keeps its row, so the grown model computes exactly the old
logits on old ids (tested), with the new ones added at the end.

Left out: resizing to a multiple of 64 for speed, and removing tokens.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from llmedu.tokenizer import BPETokenizer

EMBEDDING_NOISE = 0.1  # of the existing rows' standard deviation: distinct, but well inside their spread


def add_special_tokens(params: dict, config, tokenizer: BPETokenizer, names, seed: int = 0):
    """``(params, config, tokenizer)`` with ``names`` appended as special tokens; the inputs are not changed.

    ``names`` must be new to the tokenizer. The new ids follow the old ones
    (``len(tokenizer)``, ...), as :class:`BPETokenizer` numbers specials.
    """
    names = list(names)
    if not isinstance(tokenizer, BPETokenizer):
        raise TypeError(f"special tokens are added to a BPETokenizer, got a {type(tokenizer).__name__}.")
    if clash := [n for n in names if n in tokenizer.special_tokens]:
        raise ValueError(f"the tokenizer already has the special tokens {clash}: add only new ones.")
    if len(tokenizer) != config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} ids but the model {config.vocab_size}: they must be "
                         "the pair saved together in one parameters file.")
    grown = BPETokenizer(tokenizer.merges, [*tokenizer.special_tokens, *names], tokenizer.pattern)
    rng = np.random.default_rng(seed)
    embeddings, output = params["tok_embeddings"], params["output"]  # (V, D) each
    new_embeddings = embeddings.mean(0) + EMBEDDING_NOISE * embeddings.std() * rng.standard_normal(
        (len(names), config.dim))  # (n, D)
    new_output = np.repeat(output.mean(0, keepdims=True), len(names), axis=0)  # (n, D)
    grown_params = dict(params)
    grown_params["tok_embeddings"] = np.concatenate([embeddings, new_embeddings.astype(embeddings.dtype)])
    grown_params["output"] = np.concatenate([output, new_output.astype(output.dtype)])
    return grown_params, replace(config, vocab_size=len(grown)), grown


def add_special_tokens_to_file(params_file, out_file, names, seed: int = 0) -> None:
    """Read a parameters file, add ``names`` as special tokens (:func:`add_special_tokens`), write ``out_file``."""
    from llmedu.checkpoint import load_params, save_params
    from llmedu.data import tokenizer_from_text, tokenizer_to_text

    params, config, metadata = load_params(params_file)
    if "tokenizer" not in metadata:
        raise ValueError(f"{params_file} holds no tokenizer; special tokens are added to a model saved with one.")
    tokenizer = tokenizer_from_text(metadata["tokenizer"], f"the tokenizer in {params_file}")
    params, config, tokenizer = add_special_tokens(params, config, tokenizer, names, seed)
    save_params(out_file, params, config, tokenizer_text=tokenizer_to_text(tokenizer))
