"""Attack 4, an adversarial suffix found with our own gradients: greedy coordinate gradient (lesson 07).

GCG (Zou et al. 2023) appends a few tokens to the request and changes them
one at a time so that the model's reply starts with the forbidden answer
("The vault code of Zota is"). Each step:

1. the loss is the cross-entropy of the target tokens after the prompt and
   suffix; its gradient with respect to each suffix position's one-hot token
   is ``dx @ tok_embeddings.T`` (:func:`llmedu.backward.input_grads`, the
   training backward pass stopped at the inputs) — shape (L, V);
2. the ``top_k`` tokens with the most negative gradient at each position
   are the promising swaps (a first-order guess, often wrong);
3. a batch of suffixes, each with one random promising swap, is scored
   exactly with a forward pass, and the best becomes the new suffix.

A universal suffix minimises the summed loss over several prompts and is
tested on cities it never saw. The defence (Jain et al. 2023) is a
perplexity filter: optimised suffixes read like no text the base model
has seen. Left out: Zou et al.'s multi-model ensembles and their
prompt-by-prompt curriculum for universal suffixes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmedu.backward import cross_entropy, cross_entropy_backward, forward_logits, input_grads
from llmedu.chat import markers_of, render_prompt


@dataclass(frozen=True)
class SuffixProblem:
    """One prompt to attack, as ids: ``prefix + suffix + after`` is the prompt, ``target`` the wanted reply."""

    prefix: tuple  # everything up to the end of the user's text
    after: tuple  # <|im_end|><|im_start|>assistant<|im_sep|>: what follows the user's text
    target: tuple  # the first tokens of the forbidden answer


def suffix_problem(conversation: list, target_text: str, tokenizer) -> SuffixProblem:
    """Split the rendered prompt of ``conversation`` (ending with the user's request) where a suffix goes."""
    markers = markers_of(tokenizer)
    ids = render_prompt(conversation, tokenizer)
    after = [markers.end, markers.start, *tokenizer.encode("assistant"), markers.sep]
    if ids[-len(after):] != after:
        raise ValueError("the conversation must end with a user turn: the suffix goes at the end of its text.")
    return SuffixProblem(tuple(ids[:-len(after)]), tuple(after), tuple(tokenizer.encode(target_text)))


def _sequences(problem: SuffixProblem, suffixes: np.ndarray) -> tuple[np.ndarray, slice]:
    """Input ids (B, T) for suffixes (B, L) and the slice of positions whose next token is the target."""
    B = len(suffixes)
    head = np.broadcast_to(np.array(problem.prefix), (B, len(problem.prefix)))
    after = np.array(problem.after + problem.target[:-1])  # the last target token is predicted, never read
    tail = np.broadcast_to(after, (B, len(after)))
    ids = np.concatenate([head, suffixes, tail], axis=1)  # (B, T)
    first = len(problem.prefix) + suffixes.shape[1] + len(problem.after) - 1  # predicts target[0]
    return ids, slice(first, first + len(problem.target))


def target_losses(params, config, problem: SuffixProblem, suffixes: np.ndarray) -> np.ndarray:
    """Mean cross-entropy of the target after each suffix: (B, L) ints -> (B,) floats (a forward pass only)."""
    ids, where = _sequences(problem, np.asarray(suffixes))
    logits = forward_logits(params, config, ids)[:, where]  # (B, len(target), V)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(logp, np.array(problem.target)[None, :, None], axis=-1)[..., 0]
    return -picked.mean(axis=1)


def suffix_gradient(params, config, problem: SuffixProblem, suffix: np.ndarray) -> tuple[float, np.ndarray]:
    """The target loss for one suffix (L,) and its gradient at each suffix position's one-hot token: (L, V)."""
    ids, where = _sequences(problem, np.asarray(suffix)[None])
    T, V = ids.shape[1], config.vocab_size
    targets, mask = np.zeros(T, np.int64), np.zeros(T)
    targets[where], mask[where] = problem.target, 1.0

    def loss_fn(logits):  # (1, T, V) -> the target's cross-entropy and its gradient
        flat = logits.reshape(T, V)
        return cross_entropy(flat, targets, mask), cross_entropy_backward(flat, targets, mask).reshape(logits.shape)

    loss, dx = input_grads(params, config, ids, loss_fn)  # dx (1, T, D)
    start = len(problem.prefix)
    return loss, dx[0, start:start + len(suffix)] @ params["tok_embeddings"].T  # (L, V)


def candidate_suffixes(rng, suffix: np.ndarray, gradient: np.ndarray, allowed: np.ndarray, top_k: int,
                       batch: int) -> np.ndarray:
    """``batch`` copies of ``suffix`` (L,), each with one position swapped for one of its ``top_k`` tokens of
    most negative gradient among the ``allowed`` ids (a bool mask (V,)). Returns (batch, L)."""
    scores = np.where(allowed[None, :], gradient, np.inf)  # (L, V): disallowed ids never chosen
    top = np.argsort(scores, axis=1)[:, :top_k]  # (L, top_k)
    positions = rng.integers(0, len(suffix), size=batch)
    choices = top[positions, rng.integers(0, top_k, size=batch)]
    out = np.tile(suffix, (batch, 1))
    out[np.arange(batch), positions] = choices
    return out


def gcg_step(rng, suffix: np.ndarray, gradient: np.ndarray, allowed: np.ndarray, top_k: int, batch: int, score):
    """One GCG step (lesson 07, exercise 7.4): ``batch`` candidates from the gradient
    (:func:`candidate_suffixes`), each scored exactly by ``score`` ((B, L) -> (B,) losses), the best kept.
    Returns ``(suffix, loss)``."""
    candidates = candidate_suffixes(rng, suffix, gradient, allowed, top_k, batch)  # (B, L)
    losses = np.asarray(score(candidates))  # (B,)
    best = int(np.argmin(losses))
    return candidates[best], float(losses[best])


def allowed_tokens(tokenizer, vocab_size: int) -> np.ndarray:
    """Ids a suffix may use: plain text that survives a round trip through the tokenizer (no special or
    control tokens, which typed text can never produce). A bool mask (V,)."""
    special = set(getattr(tokenizer, "special_tokens", {}).values())
    ok = np.zeros(vocab_size, bool)
    for i in range(vocab_size):
        if i not in special:
            text = tokenizer.decode([i])
            ok[i] = text.isprintable() and tokenizer.encode(text) == [i]
    return ok


def round_trips(tokenizer, suffixes: np.ndarray) -> np.ndarray:
    """Which suffixes (B, L) come back as the same ids when their text is tokenized again: only those
    could be typed. (B,) bools."""
    return np.array([tokenizer.encode(tokenizer.decode(list(s))) == list(s) for s in suffixes])


@dataclass
class SuffixSearch:
    """What a GCG run found and how it went."""

    suffix: list  # the best suffix's ids
    text: str  # its text, as a user would type it
    losses: list  # the best loss after each step (the curve lesson 07 plots)
    steps: int


def search_suffix(params, config, tokenizer, problems: list, *, length: int = 12, steps: int = 60, top_k: int = 32,
        batch: int = 64, seed: int = 0, progress=None) -> SuffixSearch:
    """Greedy coordinate gradient over one suffix for every problem at once (one problem: a per-prompt
    suffix; several: a universal one). The loss is the mean of the problems' target losses.

    ``progress``: an optional callable ``(step, loss)`` (e.g. to update tqdm).
    """
    rng = np.random.default_rng(seed)
    allowed = allowed_tokens(tokenizer, config.vocab_size)
    start = np.flatnonzero(allowed)
    suffix = rng.choice(start, size=length)  # a random typed-looking start
    while not round_trips(tokenizer, suffix[None])[0]:
        suffix = rng.choice(start, size=length)
    best_loss, best, losses = np.inf, suffix, []

    def score(candidates):  # (B, L) -> (B,): the mean target loss, inf for a suffix no one could type
        loss = np.mean([target_losses(params, config, p, candidates) for p in problems], axis=0)
        return np.where(round_trips(tokenizer, candidates), loss, np.inf)

    for step in range(steps):
        gradient = sum(suffix_gradient(params, config, p, suffix)[1] for p in problems)  # (L, V)
        candidate, loss = gcg_step(rng, suffix, gradient, allowed, top_k, batch, score)
        if np.isfinite(loss):
            suffix = candidate
        if loss < best_loss:
            best_loss, best = loss, suffix
        losses.append(best_loss)
        if progress:
            progress(step, best_loss)
    return SuffixSearch([int(i) for i in best], tokenizer.decode([int(i) for i in best]), losses, steps)


# ------------------------------------------------------- the defence: perplexity --

def message_nll(params, config, tokenizer, text: str) -> float:
    """Mean negative log-likelihood (nats per token) of a user message under a model (the base model): the
    log of its perplexity. The first token has no context and is not scored."""
    ids = tokenizer.encode(text)[:config.max_seq_len + 1]
    if len(ids) < 2:
        raise ValueError(f"a message needs at least two tokens to be scored, got {text!r}.")
    logits = forward_logits(params, config, np.array(ids[:-1]))[0]  # (T-1, V)
    targets = np.array(ids[1:])
    return cross_entropy(logits.astype(np.float64), targets, np.ones(len(targets)))


def perplexity_threshold(normal_scores: list[float], quantile: float = 1.0) -> float:
    """The filter's threshold from held-out ordinary messages: their ``quantile`` of scores (1.0, the
    highest, lets every one of them through)."""
    if not normal_scores:
        raise ValueError("the threshold needs at least one ordinary message to calibrate on.")
    return float(np.quantile(np.asarray(normal_scores), quantile))


def flagged(scores: list[float], threshold: float) -> np.ndarray:
    """Which messages the filter blocks: those scoring above the threshold."""
    return np.asarray(scores) > threshold
