"""Direct Preference Optimisation: learn from comparisons with no reward model (lesson 05).

With pi the model being trained, ref the frozen SFT model it starts from, and
log pi(y) the summed log-probability of reply y's tokens (its loss mask),
one pair's loss is

    z = beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r)))
    loss = -log sigmoid(z) = softplus(-z)

and, with s = sigmoid(-z) (large while the model still prefers the rejected
reply), d loss / d log pi(c) = -beta s and d loss / d log pi(r) = +beta s.
Each is a weight on every token of its reply: the gradient is SFT's (raise
log pi of the chosen reply) with a per-sequence weight, plus the same with
the opposite sign on the rejected one (:mod:`llmedu.logprobs`); the backward
pass is the one every loss uses. The reference's log-probabilities are
computed once, when the data are loaded.
"""

from __future__ import annotations

import numpy as np

from llmedu.backward import forward_logits, grads_from_logits
from llmedu.logprobs import sequence_logprobs, sigmoid, weighted_logprob_dlogits

DEFAULT_BETA = 0.1


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float = DEFAULT_BETA):
    """Mean DPO loss over N pairs, and its gradients with respect to the policy's log pi(c) and log pi(r)."""
    z = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))  # (N,)
    loss = float(np.mean(np.logaddexp(0.0, -z)))
    s = sigmoid(-z)
    d_chosen = -beta * s / len(z)
    return loss, d_chosen, -d_chosen


def _targets(batch):
    """Inputs, targets and the targets' mask of a PairBatch: the next-token view of each row."""
    return batch.ids[:, :-1], batch.ids[:, 1:], batch.mask[:, 1:]


def reply_logprobs(params, config, batch) -> np.ndarray:
    """log pi of each row's reply (2N,): its masked tokens' log-probabilities, summed."""
    x, y, mask = _targets(batch)
    return sequence_logprobs(forward_logits(params, config, x).astype(np.float64), y, mask)


class DPOObjective:
    """The DPO loss on PairBatches, against the reference log-probabilities stored in the corpus."""

    def __init__(self, corpus, beta: float = DEFAULT_BETA):
        self.corpus, self.beta = corpus, beta

    def _loss_fn(self, batch):
        n = len(batch.pairs)
        ref = self.corpus.extra[f"reference_{batch.split}"][batch.pairs]  # (N, 2): the reference's log pi(c), log pi(r)
        x, y, mask = _targets(batch)

        def loss_fn(logits):  # (2N, L, V)
            policy = sequence_logprobs(logits, y, mask)  # (2N,)
            loss, d_chosen, d_rejected = dpo_loss(policy[:n], policy[n:], ref[:, 0], ref[:, 1], self.beta)
            # d loss / d logits: each reply's weight times d log pi / d logits (llmedu.logprobs)
            weights = np.concatenate([d_chosen, d_rejected])[:, None] * mask  # (2N, L)
            return loss, weighted_logprob_dlogits(logits, y, weights)
        return x, loss_fn

    def loss_and_grads(self, params, config, batch):
        x, loss_fn = self._loss_fn(batch)
        return grads_from_logits(params, config, x, loss_fn)

    def loss(self, params, config, batch) -> float:
        x, loss_fn = self._loss_fn(batch)
        return loss_fn(forward_logits(params, config, x))[0]


def add_reference(corpus, ref_params, ref_config, batch_size: int = 32) -> None:
    """Store the reference model's log pi(chosen), log pi(rejected) of every pair of both splits in the corpus."""
    for split in ("train", "val"):
        pairs = np.arange(len(corpus.split(split)))
        values = []
        for start in range(0, len(pairs), batch_size):
            batch = corpus.rows(split, pairs[start:start + batch_size])
            logp = reply_logprobs(ref_params, ref_config, batch)
            values.append(np.stack([logp[:len(batch.pairs)], logp[len(batch.pairs):]], axis=1))
        corpus.extra[f"reference_{split}"] = np.concatenate(values)  # (pairs, 2)
