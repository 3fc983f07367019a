"""GRPO: the model improves itself on questions whose answers can be checked (lesson 05).

"Self-improvement needs a reward you can check." The task: the birth and
death years of people the model read about, which the chat model gets right
about half the time; the checker (:func:`year_reward`) needs no model and no
labeller, only the answer key. Each step:

1. draw P questions; sample a group of G replies to each (temperature 1);
2. reward each reply 1 or 0; the **advantage** of a reply is its reward
   minus its group's mean, divided by the group's standard deviation (a group
   whose replies all score alike teaches nothing: its advantages are 0);
3. with the policy's per-token log-probabilities lp, those of the policy that
   sampled (old) and of the frozen reference (ref), the loss of a reply of
   n tokens is

       -(1/n) sum_t [ min(rho_t A, clip(rho_t, 1-eps, 1+eps) A) - beta k3_t ],
       rho_t = exp(lp_t - old_t),   k3_t = exp(ref_t - lp_t) - (ref_t - lp_t) - 1,

   averaged over the replies. k3 is an estimator of KL(policy || reference)
   that is never negative. d loss / d lp_t is a weight per token, so the
   backward pass is the one every loss uses (:mod:`llmedu.logprobs`).

Here each group is used for one update, so old is the policy itself and
rho = 1: the clip matters when a group is reused for several updates (as
PPO does); :func:`grpo_loss` takes ``old`` so that case is written and tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from llmedu.backward import forward_logits, grads_from_logits
from llmedu.chat import render_prompt, reply_ids
from llmedu.data import DataError
from llmedu.logprobs import token_logprobs, weighted_logprob_dlogits
from llmedu.sft import PAD_TOKEN, VALIDATION_FRACTION, pad_right, read_jsonl
from llmedu.sft_data import Example
from llmedu.sft_eval import ask_chat

YEAR_RELATIONS = ("birth_year", "death_year")
NUMBER = re.compile(r"\d+")


def year_reward(example: Example, reply: str) -> float:
    """1.0 if the reply names the person and states exactly one number, the right year; else 0.0."""
    return float(example.subject in reply and NUMBER.findall(reply) == [example.expected])


def year_accuracy(params, config, tokenizer, examples) -> float:
    """Share of year questions answered right (greedy), by GRPO's own checker."""
    answers = [ask_chat(params, config, tokenizer, e) for e in examples]
    return float(np.mean([year_reward(e, reply) if finished else 0.0 for e, (reply, finished) in zip(examples, answers)]))


def group_advantages(rewards: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(reward - group mean) / (group std + eps) for rewards (P, G): each row is one question's group."""
    return (rewards - rewards.mean(axis=1, keepdims=True)) / (rewards.std(axis=1, keepdims=True) + eps)


def grpo_loss(lp, old, ref, advantages, mask, clip: float = 0.2, beta: float = 0.04):
    """The GRPO loss of a batch of replies and its gradient with respect to lp.

    lp, old, ref, mask: (N, T) per-token log-probabilities (policy, sampling
    policy, reference) and 1 on the reply's tokens; advantages: (N,).
    Returns (loss, d loss / d lp (N, T)).
    """
    lengths = mask.sum(axis=1)  # (N,)
    scale = mask / (lengths[:, None] * len(lengths))  # (N, T): 1/n per token, mean over replies
    rho = np.exp(lp - old)
    a = advantages[:, None]
    unclipped, clipped = rho * a, np.clip(rho, 1 - clip, 1 + clip) * a
    surrogate = np.minimum(unclipped, clipped)
    k3 = np.exp(ref - lp) - (ref - lp) - 1
    loss = float(-((surrogate - beta * k3) * scale).sum())
    # d rho / d lp = rho. Where the min picks the clipped term, rho is outside [1 - clip, 1 + clip] (inside it
    # the two terms are equal) and the clipped term is flat: no gradient pushes rho further.
    d_surrogate = np.where(unclipped <= clipped, rho * a, 0.0)
    d_k3 = 1 - np.exp(ref - lp)
    return loss, -(d_surrogate - beta * d_k3) * scale


def kl_k3(lp, ref, mask) -> float:
    """The mean over replies of sum_t k3_t: an estimate of KL(policy || reference) per reply."""
    return float(((np.exp(ref - lp) - (ref - lp) - 1) * mask).sum(axis=1).mean())


@dataclass
class QuestionBatch:
    examples: list  # the P questions
    seed: int  # where this batch's samples come from (drawn from the run's batch generator)
    split: str


@dataclass
class QuestionSet:
    """Year questions for GRPO, both splits (the last tenth is validation), with the file's SHA-256."""

    tokenizer: object
    train: list
    val: list
    sha256: str

    def batch(self, split: str, batch_size: int, seq_len: int, rng: np.random.Generator) -> QuestionBatch:
        pool = self.train if split == "train" else self.val
        picks = rng.integers(0, len(pool), size=batch_size)
        return QuestionBatch([pool[i] for i in picks], int(rng.integers(0, 2**31)), split)


def load_questions(path, tokenizer, seq_len: int) -> QuestionSet:
    """Year questions from a JSON Lines file of examples (``llmedu.sft.write_sft_files`` writes such files)."""
    records, sha256 = read_jsonl(path, "questions")
    examples = []
    for number, record in records:
        try:
            example = Example(**record)
        except TypeError as error:
            raise DataError(f"{path}, line {number}: expected an example record as write_sft_files writes "
                            f"({error}); nothing was trained.") from None
        if example.kind == "fact" and example.relation in YEAR_RELATIONS:
            examples.append(example)
    if len(examples) < 2:
        raise DataError(f"{path} holds {len(examples)} birth or death year question(s); GRPO needs at least 2.")
    cut = len(examples) - max(1, int(len(examples) * VALIDATION_FRACTION))
    return QuestionSet(tokenizer, examples[:cut], examples[cut:], sha256)


class GRPOObjective:
    """Sample groups with the current parameters, reward them, and return the GRPO loss and gradients."""

    def __init__(self, tokenizer, reference, group_size: int = 8, beta: float = 0.04, clip: float = 0.2,
                 max_new_tokens: int = 24):
        self.tokenizer, self.reference = tokenizer, reference  # reference: (params, config) of the frozen model
        self.group_size, self.beta, self.clip, self.max_new_tokens = group_size, beta, clip, max_new_tokens
        self.last = {}  # figures of the last batch (reward, KL): the training loop can log them

    def sample(self, params, config, batch: QuestionBatch):
        """Rows (N, L) of prompt + reply ids, their mask (1 on the reply and its <|im_end|>) and rewards (P, G)."""
        end, pad = self.tokenizer.special_tokens["<|im_end|>"], self.tokenizer.special_tokens[PAD_TOKEN]
        seeds = np.random.default_rng(batch.seed).integers(0, 2**31, size=(len(batch.examples), self.group_size))
        rows, masks, rewards = [], [], np.zeros(seeds.shape)
        for i, example in enumerate(batch.examples):
            prompt = render_prompt(example.prompt(), self.tokenizer, max_tokens=config.max_seq_len - 1)
            for j, seed in enumerate(seeds[i]):
                reply, finished = reply_ids(params, config, self.tokenizer, prompt, temperature=1.0, seed=int(seed),
                                            max_new_tokens=self.max_new_tokens)
                rewards[i, j] = year_reward(example, self.tokenizer.decode(reply)) if finished else 0.0
                written = reply + [end] if finished else reply
                rows.append(prompt + written)
                masks.append([0] * len(prompt) + [1] * len(written))
        ids, mask = pad_right(rows, pad, masks)
        return ids, mask, rewards

    def loss_and_grads(self, params, config, batch: QuestionBatch):
        ids, mask, rewards = self.sample(params, config, batch)
        x, y, m = ids[:, :-1], ids[:, 1:], mask[:, 1:]  # predict each reply token from what precedes it
        ref = token_logprobs(forward_logits(*self.reference, x).astype(np.float64), y)
        advantages = group_advantages(rewards).reshape(-1)  # (P*G,)

        def loss_fn(logits):  # (N, L, V)
            lp = token_logprobs(logits, y)
            loss, d_lp = grpo_loss(lp, lp.copy(), ref, advantages, m, self.clip, self.beta)  # one update: old = lp
            self.last = {"reward": float(rewards.mean()), "kl": kl_k3(lp, ref, m)}
            return loss, weighted_logprob_dlogits(logits, y, d_lp)

        return grads_from_logits(params, config, x, loss_fn)

    def loss(self, params, config, batch: QuestionBatch) -> float:
        """For the loop's evaluations: the share of sampled replies that are wrong (1 - mean reward)."""
        return 1.0 - float(self.sample(params, config, batch)[2].mean())
