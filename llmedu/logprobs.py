"""Log-probabilities of chosen tokens, and their gradient with respect to the logits (lessons 05–07).

Every preference-tuning loss is a function of the log-probabilities the
model gives to tokens it was shown: a reply's log-probability is the sum
over its tokens. Since

    d log softmax(z)[y] / d z = one_hot(y) - softmax(z),

the gradient of ``sum(weights * logp)`` with respect to the logits is
``weights * (one_hot - softmax)`` at every position: SFT is the case
weights = -mask / count, DPO and GRPO choose other weights. That is all a
new loss has to supply to the one backward pass
(:func:`llmedu.backward.grads_from_logits`).
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    """1 / (1 + exp(-x)), written with tanh so that no exp can overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, shifted by the maximum so exp cannot overflow."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def token_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p(targets[b, t]) for logits (B, T, V) and targets (B, T): (B, T)."""
    return np.take_along_axis(log_softmax(logits), targets[..., None], axis=-1)[..., 0]


def sequence_logprobs(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The log-probability of each row's masked tokens together, sum over t of mask * logp: (B,)."""
    return (token_logprobs(logits, targets) * mask).sum(axis=-1)


def weighted_logprob_dlogits(logits: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """d sum(weights * logp(targets)) / d logits = weights * (one_hot(targets) - softmax): (B, T, V)."""
    grad = -np.exp(log_softmax(logits))  # (B, T, V): -softmax
    np.put_along_axis(grad, targets[..., None], np.take_along_axis(grad, targets[..., None], axis=-1) + 1, axis=-1)
    return grad * weights[..., None]
