"""Text generation: one token at a time, with a KV cache and a choice of sampling.

Lesson 02 (``02_transformer``) ends here. The model gives logits for the
next token; generating text is a loop: pick a token from those logits, append
it, ask again. Two ideas make the loop practical:

- **The KV cache.** The keys and values of earlier positions never change, so
  ``KVCache`` keeps them and each step runs only the newest token through the
  model (``step_reference`` here in numpy, ``llmedu.kernels.step`` in Numba)
  instead of the whole sequence again.
- **Sampling.** ``apply_temperature`` turns logits into probabilities,
  sharper or flatter; ``top_k_filter`` and ``top_p_filter`` drop the unlikely
  tail; ``sample_next`` draws one token. Temperature 0 means greedy: always
  the most probable token.

``generate`` puts it together as a stream of token ids. It knows nothing of
text: the tokenizer (lesson 01) turns text into ids and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from . import kernels, model

__all__ = ["KVCache", "step_reference", "apply_temperature", "top_k_filter", "top_p_filter",
           "check_sampling", "sample_next", "generate"]


# ------------------------------------------------------------- KV cache --

@dataclass
class KVCache:
    """Keys and values of the positions seen so far, for every layer.

    keys, values: (n_layers, max_seq_len, kv_dim) float32; rows 0 .. pos-1
    are filled. ``pos`` is the position the next token will take.
    """

    keys: np.ndarray
    values: np.ndarray
    pos: int = 0

    @classmethod
    def empty(cls, config: model.ModelConfig) -> "KVCache":
        shape = (config.n_layers, config.max_seq_len, config.kv_dim)
        return cls(np.zeros(shape, np.float32), np.zeros(shape, np.float32), 0)

    def check_room(self, config: model.ModelConfig, n_new: int) -> None:
        """Raise ValueError unless the cache fits ``config`` and has room for n_new more tokens."""
        shape = (config.n_layers, config.max_seq_len, config.kv_dim)
        for name in ("keys", "values"):
            array = getattr(self, name)
            if array.shape != shape or array.dtype != np.float32 or not array.flags.c_contiguous:
                raise ValueError(f"cache.{name} must be a C-contiguous float32 array of shape {shape} for "
                                 f"this config, got {array.dtype} {array.shape}; use KVCache.empty(config).")
        if not 0 <= self.pos <= config.max_seq_len - n_new:
            raise ValueError(f"the cache holds {self.pos} of {config.max_seq_len} positions: "
                             f"no room for {n_new} more token(s).")


def _check_token(config: model.ModelConfig, token) -> int:
    if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
        raise ValueError(f"token must be one integer id, got {token!r}.")
    return int(model.validate_tokens(np.array([token]), config)[0])


def step_reference(params: dict, config: model.ModelConfig, token: int, cache: KVCache) -> np.ndarray:
    """Logits (vocab,) for ``token`` at position ``cache.pos``, in plain numpy.

    The block of ``model.forward`` for one token: its query attends to the
    keys and values stored in ``cache`` plus its own, which are appended.
    Advances ``cache.pos`` by one.
    """
    model.validate_params(params, config)
    token = _check_token(config, token)
    cache.check_room(config, 1)
    pos, n_heads, n_kv, hd = cache.pos, config.n_heads, config.n_kv_heads, config.head_dim
    cos, sin = model.rope_tables(hd, np.array([pos]), config.rope_theta)  # (1, hd/2)
    x = params["tok_embeddings"][token]  # (D,)
    for layer in range(config.n_layers):
        p = {name: params[name][layer] for name in ("attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3")}
        h = model.rmsnorm(x, p["attention_norm"], config.norm_eps)  # (D,)
        q = model.apply_rope((p["wq"] @ h).reshape(1, n_heads, hd), cos, sin)[0]  # (n_heads, hd)
        k = model.apply_rope((p["wk"] @ h).reshape(1, n_kv, hd), cos, sin)[0]  # (n_kv, hd)
        cache.keys[layer, pos] = k.reshape(-1)
        cache.values[layer, pos] = p["wv"] @ h
        keys = cache.keys[layer, :pos + 1].reshape(pos + 1, n_kv, hd)  # every position so far
        values = cache.values[layer, :pos + 1].reshape(pos + 1, n_kv, hd)
        group = n_heads // n_kv  # query heads per key/value head
        keys, values = np.repeat(keys, group, axis=1), np.repeat(values, group, axis=1)  # (pos+1, n_heads, hd)
        scores = np.einsum("hd,phd->hp", q, keys) / math.sqrt(hd)  # (n_heads, pos+1): no mask, no future here
        mixed = np.einsum("hp,phd->hd", model.softmax(scores), values).reshape(-1)  # (D,)
        x = x + p["wo"] @ mixed
        x = x + model.swiglu(model.rmsnorm(x, p["ffn_norm"], config.norm_eps), p["w1"], p["w2"], p["w3"])
    cache.pos += 1
    return params["output"] @ model.rmsnorm(x, params["norm"], config.norm_eps)  # (vocab,)


# ------------------------------------------------------------- sampling --

def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (vocab,) float64 = softmax(logits / temperature).

    Below 1 the distribution gets sharper, above 1 flatter. Temperature 0 is
    the limit: all the probability on the largest logit (the first one if
    several are equal).
    """
    check_sampling(temperature=temperature)
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        probs = np.zeros_like(logits)
        probs[np.argmax(logits)] = 1.0
        return probs
    return model.softmax(logits / temperature)


def top_k_filter(probs: np.ndarray, k: int) -> np.ndarray:
    """Keep the k most probable tokens, zero the rest, renormalise to sum 1.

    probs: (vocab,). Ties at the boundary go to the lower token id, so exactly
    min(k, vocab) entries are kept.
    """
    check_sampling(top_k=k)
    probs = np.asarray(probs, dtype=np.float64)
    keep = np.argsort(-probs, kind="stable")[:k]  # stable sort: ties by token id
    out = np.zeros_like(probs)
    out[keep] = probs[keep]
    return out / out.sum()


def top_p_filter(probs: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filter: keep the smallest set of most probable tokens whose total reaches p.

    probs: (vocab,); 0 < p <= 1. At least one token is always kept. Zeros the
    others and renormalises to sum 1. Ties go to the lower token id.
    """
    check_sampling(top_p=p)
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, kind="stable")  # most probable first
    cumulative = np.cumsum(probs[order])
    # The first index where the running total reaches p; rounding may leave
    # the total just under p = 1, hence the clip to the whole vocabulary.
    n_keep = min(int(np.searchsorted(cumulative, p)) + 1, len(probs))
    out = np.zeros_like(probs)
    out[order[:n_keep]] = probs[order[:n_keep]]
    return out / out.sum()


def check_sampling(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise ValueError on a negative temperature, top_k < 1 or top_p outside (0, 1]."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) \
            or not temperature >= 0 or math.isinf(temperature):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}.")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.number))
                              or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}.")


def sample_next(logits: np.ndarray, *, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator) -> int:
    """Draw the next token id from logits (vocab,).

    temperature 0 is greedy (argmax, no randomness). Otherwise the
    probabilities go through apply_temperature, then top_k_filter, then
    top_p_filter, and one id is drawn with ``rng``; a filtered-out token is
    never drawn.
    """
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(logits))
    probs = apply_temperature(logits, temperature)
    if top_k is not None:
        probs = top_k_filter(probs, top_k)
    if top_p is not None:
        probs = top_p_filter(probs, top_p)
    cumulative = np.cumsum(probs)
    # Inverse CDF: the first running total that exceeds a uniform draw in
    # [0, total). side="right" skips tokens of probability 0 (their total
    # equals the one before), and as rng.random() < 1 and the total is close
    # to 1, the draw stays below the last total: the index is a valid token.
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))


# ----------------------------------------------------------- generation --

def generate(params: dict, config: model.ModelConfig, prompt_ids, *, max_new_tokens: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, stop_ids=(), use_cache: bool = True, fast: bool = True) -> Iterator[int]:
    """Stream new token ids that continue ``prompt_ids`` (a non-empty sequence of ids).

    Yields one int at a time (never the prompt) and stops after
    ``max_new_tokens``, when the sequence (prompt + new tokens) reaches
    ``config.max_seq_len``, or when it draws a token of ``stop_ids`` (one id
    or several): that stop token is *not* yielded, so the caller gets only
    content.

    - temperature, top_k, top_p: as in ``sample_next`` (temperature 0 = greedy).
    - seed: seeds the sampler, so the same seed gives the same tokens.
    - use_cache=False re-runs the whole sequence through ``forward`` at every
      step, for comparing the cost with the KV cache.
    - fast=False uses the numpy reference (``step_reference`` /
      ``model.forward``) instead of the Numba kernels.

    Every argument is checked here, before the first token is asked for: bad
    input raises ValueError at the call, not in the middle of the stream.
    """
    model.validate_params(params, config)
    prompt = model.validate_tokens(prompt_ids, config)
    if prompt.ndim != 1:
        raise ValueError(f"prompt_ids must be one sequence of ids (T,), got shape {prompt.shape}.")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}.")
    check_sampling(temperature, top_k, top_p)
    stop_ids = [stop_ids] if isinstance(stop_ids, (int, np.integer)) else stop_ids  # one id is fine too
    stops = {_check_token(config, t) for t in stop_ids}
    sample = dict(temperature=temperature, top_k=top_k, top_p=top_p, rng=np.random.default_rng(seed))
    return _decode(params, config, prompt, max_new_tokens, sample, stops, use_cache, fast)


def _decode(params, config, prompt, max_new_tokens, sample, stops, use_cache, fast):
    """The loop behind ``generate``: its arguments are already checked."""
    tokens = [int(t) for t in prompt]
    if max_new_tokens == 0 or len(tokens) >= config.max_seq_len:
        return  # nothing to generate: skip the prompt's forward pass too
    if use_cache:
        cache = KVCache.empty(config)
        if fast:  # the whole prompt in one pass through the kernels
            logits = kernels.prefill(params, config, prompt, cache)
        else:
            for t in tokens:
                logits = step_reference(params, config, t, cache)
    for i in range(max_new_tokens):
        if len(tokens) >= config.max_seq_len:
            return
        if not use_cache:  # recompute every position, keep only the last row
            logits = (kernels.forward if fast else model.forward)(params, config, np.array(tokens))[-1]
        token = sample_next(logits, **sample)
        if token in stops:
            return
        yield token
        tokens.append(token)
        # Run the new token only if another one will be asked for.
        if use_cache and i + 1 < max_new_tokens and len(tokens) < config.max_seq_len:
            logits = (kernels.step if fast else step_reference)(params, config, token, cache)
