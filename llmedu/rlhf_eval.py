"""Measuring a preference-tuned model against the one it started from (lesson 05).

- :func:`gold_rewards`: the rubric's score of a model's greedy reply to each question;
- :func:`win_rate`: how often the labeller prefers model A's reply to model B's, one noisy vote per
  question, with its Wilson interval (a tie in gold rewards is a coin flip);
- :func:`reply_kl`: KL(policy || reference) per reply, estimated on replies the policy samples:
  the mean over samples of sum_t (log pi - log ref) of the reply's tokens.
"""

from __future__ import annotations

import numpy as np

from llmedu.backward import forward_logits
from llmedu.logprobs import token_logprobs
from llmedu.chat import render_prompt, reply_ids
from llmedu.preference import NOISE, gold_reward, prefer_probability
from llmedu.sft import PAD_TOKEN, pad_right
from llmedu.sft_eval import ask_chat
from llmedu.stats import wilson_interval


def gold_rewards(params, config, tokenizer, examples: list, world) -> np.ndarray:
    """The gold reward of the model's greedy reply to each example: (N,)."""
    rewards = []
    for example in examples:
        reply, finished = ask_chat(params, config, tokenizer, example)
        rewards.append(gold_reward(example, reply, finished, world, len(tokenizer.encode(reply)))[0])
    return np.array(rewards)


def win_rate(gold_a: np.ndarray, gold_b: np.ndarray, seed: int = 0, noise: float = NOISE) -> dict:
    """Share of questions on which the labeller votes for A over B, and its 95% interval."""
    rng = np.random.default_rng(seed)
    votes = [rng.random() < prefer_probability(a, b, noise) for a, b in zip(gold_a, gold_b)]
    wins = int(sum(votes))
    low, high = wilson_interval(wins, len(votes))
    return {"win_rate": wins / len(votes), "low": low, "high": high, "n": len(votes)}


def reply_kl(policy, reference, tokenizer, examples: list, seed: int = 0, batch_size: int = 32) -> float:
    """Mean over the examples of sum_t (log pi - log ref) on one reply each that the policy samples (temperature 1).

    policy, reference: (params, config). Replies that run out of tokens are
    scored as far as they got.
    """
    end, pad = tokenizer.special_tokens["<|im_end|>"], tokenizer.special_tokens[PAD_TOKEN]
    rows, masks = [], []  # prompt + reply, and 1 on the reply's tokens
    for index, example in enumerate(examples):
        prompt = render_prompt(example.prompt(), tokenizer, max_tokens=policy[1].max_seq_len - 1)
        reply, finished = reply_ids(*policy, tokenizer, prompt, temperature=1.0, seed=seed * 7919 + index,
                                    max_new_tokens=48)
        written = reply + ([end] if finished else [])
        rows.append(prompt + written)
        masks.append([0] * len(prompt) + [1] * len(written))
    total = 0.0
    for first in range(0, len(rows), batch_size):
        ids, mask = pad_right(rows[first:first + batch_size], pad, masks[first:first + batch_size])
        x, y, m = ids[:, :-1], ids[:, 1:], mask[:, 1:]
        lp = token_logprobs(forward_logits(*policy, x).astype(np.float64), y)
        ref = token_logprobs(forward_logits(*reference, x).astype(np.float64), y)
        total += float(((lp - ref) * m).sum())
    return total / len(rows)
