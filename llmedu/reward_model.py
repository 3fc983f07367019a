"""A reward model: the chat model's network, reading a whole conversation and giving one number (lesson 05).

The reward of (prompt, reply) is one logit: that of the reserved token
``<|endoftext|>`` at the reply's last position (its ``<|im_end|>``). That is
a scalar head on the final hidden state, ``r = output[EOT] . h_last``, whose
weights start as that token's row of the output matrix; so the network,
its forward pass and its backward pass are the chat model's, unchanged.

Training uses the Bradley–Terry model of the labeller: P(chosen preferred) =
sigmoid(r_chosen - r_rejected), so the loss of a pair is

    -log sigmoid(r_c - r_r) = softplus(r_r - r_c),
    d loss / d r_c = -sigmoid(r_r - r_c),   d loss / d r_r = +sigmoid(r_r - r_c),

and d loss / d logits is zero except at (row, last position, EOT): the one
backward pass (:func:`llmedu.backward.grads_from_logits`) does the rest.
"""

from __future__ import annotations

import numpy as np

from llmedu.backward import forward_logits, grads_from_logits
from llmedu.chat import render_conversation
from llmedu.logprobs import sigmoid
from llmedu.sft import PAD_TOKEN, pad_right

REWARD_TOKEN = PAD_TOKEN  # <|endoftext|>: never written inside a reply, so its logit is free to become the reward


def bradley_terry_loss(r_chosen: np.ndarray, r_rejected: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean of -log sigmoid(r_c - r_r) over N pairs, and its gradients with respect to r_c and r_r (N,) each."""
    margin = r_chosen - r_rejected  # (N,)
    loss = float(np.mean(np.logaddexp(0.0, -margin)))  # softplus(-margin), stable for any margin
    d_chosen = -sigmoid(-margin) / len(margin)
    return loss, d_chosen, -d_chosen


def _reward_logits(logits: np.ndarray, last: np.ndarray, reward_id: int) -> np.ndarray:
    return logits[np.arange(len(last)), last, reward_id]  # (rows,)


def pair_loss(logits: np.ndarray, last: np.ndarray, reward_id: int) -> tuple[float, np.ndarray]:
    """The Bradley–Terry loss of a batch of pairs read from its logits, and d loss / d logits (lesson 05, 5.2).

    logits: (2N, T, V), the N chosen rows first; last: (2N,) each row's final
    position. dlogits is zero except at (row, last[row], reward_id).
    """
    n = len(last) // 2
    r = _reward_logits(logits, last, reward_id)  # (2N,)
    loss, d_chosen, d_rejected = bradley_terry_loss(r[:n], r[n:])
    dlogits = np.zeros_like(logits)
    dlogits[np.arange(2 * n), last, reward_id] = np.concatenate([d_chosen, d_rejected])
    return loss, dlogits


class RewardObjective:
    """The Bradley–Terry loss on batches of pairs (a ``comparison_corpus.PairBatch``), for the training loop."""

    def __init__(self, reward_id: int):
        self.reward_id = reward_id  # the token whose logit is the reward: tokenizer.special_tokens[REWARD_TOKEN]

    def loss_and_grads(self, params, config, batch):
        return grads_from_logits(params, config, batch.ids, lambda logits: pair_loss(logits, batch.last,
                                                                                      self.reward_id))

    def loss(self, params, config, batch) -> float:
        return pair_loss(forward_logits(params, config, batch.ids), batch.last, self.reward_id)[0]


def rewards(params, config, tokenizer, prompts: list, replies: list, batch_size: int = 32) -> np.ndarray:
    """The reward of each (prompt, reply): (N,) floats. prompts: conversations ending with the user's turn."""
    reward_id = tokenizer.special_tokens[REWARD_TOKEN]
    pad = tokenizer.special_tokens[PAD_TOKEN]
    rows = [render_conversation(p + [{"role": "assistant", "content": r}], tokenizer,
                                max_tokens=config.max_seq_len)[0] for p, r in zip(prompts, replies)]
    out = np.empty(len(rows))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        ids = pad_right(chunk, pad)[0]
        last = np.array([len(row) - 1 for row in chunk])
        out[start:start + len(chunk)] = _reward_logits(forward_logits(params, config, ids), last, reward_id)
    return out


def accuracy(params, config, tokenizer, comparisons: list) -> float:
    """Share of the comparisons whose chosen reply gets the higher reward."""
    prompts = [c.prompt for c in comparisons]
    r_chosen = rewards(params, config, tokenizer, prompts, [c.chosen for c in comparisons])
    r_rejected = rewards(params, config, tokenizer, prompts, [c.rejected for c in comparisons])
    return float(np.mean(r_chosen > r_rejected))
