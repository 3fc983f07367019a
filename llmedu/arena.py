"""The arena: models answer the same questions, a labeller votes on pairs, Bradley–Terry ratings (lesson 05).

This is how Chatbot Arena ranks models; here the learner ranks their own:

1. every contestant answers the same held-out questions;
2. for each question, pairs of replies go to the labeller
   (:mod:`llmedu.preference`), who sees only the two replies — here their gold
   rewards — never the names of the models that wrote them, and prefers one
   with probability ``preference.prefer_probability``;
3. the votes are fitted by maximum likelihood with the Bradley–Terry model
   on the Elo scale,

       P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)),

   so 400 points is 10-to-1 odds. Votes fix only differences of ratings;
   they are shifted so that their **mean is 1000**: that is our anchor (an
   average contestant is rated 1000, whoever the contestants are);
4. 95% intervals come from the bootstrap: draw the questions again with
   replacement (keeping each question's votes together, since they share its
   replies), refit, and take the 2.5th and 97.5th percentiles of each rating;
5. a model's rank is 1 + the number of models whose interval lies wholly
   above its own, so models that cannot be told apart share a rank.

Votes are a :class:`Votes`: three arrays, one entry per vote (which two
models met and whether the first was preferred), plus the question each vote
was about. ``llmedu arena`` (:mod:`llmedu.arena_cli`) runs the whole arena.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from llmedu.logprobs import sigmoid
from llmedu.preference import NOISE, gold_reward, prefer_probability, split_by_subject
from llmedu.sft_eval import ask_chat, ask_few_shot, few_shot_prefix

ANCHOR = 1000.0  # the mean rating
ELO_PER_NAT = 400 / np.log(10)  # Elo points per unit of log-odds: R = ELO_PER_NAT * strength
PRIOR = 1e-4  # precision of a Gaussian prior on each strength (log-odds units), see bradley_terry_ratings


@dataclass(frozen=True)
class Votes:
    """Pairwise votes: in vote k, models ``a[k]`` and ``b[k]`` met and ``a_won[k]`` says whether ``a`` was preferred.

    ``prompt[k]`` is the question vote k was about (default: every vote its
    own question); the bootstrap resamples questions.
    """

    a: np.ndarray  # (V,) int, model indices
    b: np.ndarray  # (V,) int
    a_won: np.ndarray  # (V,) bool
    prompt: np.ndarray = field(default=None)  # (V,) int

    def __post_init__(self):
        a, b = np.asarray(self.a, dtype=np.int64), np.asarray(self.b, dtype=np.int64)
        a_won = np.asarray(self.a_won, dtype=bool)
        prompt = np.arange(len(a)) if self.prompt is None else np.asarray(self.prompt, dtype=np.int64)
        if not a.ndim == 1 or not a.shape == b.shape == a_won.shape == prompt.shape:
            raise ValueError(f"a, b, a_won and prompt must be 1-D and of one length, got shapes "
                             f"{a.shape}, {b.shape}, {a_won.shape}, {prompt.shape}.")
        if np.any(a == b):
            raise ValueError(f"a model cannot meet itself: vote {int(np.argmax(a == b))} has a == b.")
        for name, value in (("a", a), ("b", b), ("a_won", a_won), ("prompt", prompt)):
            object.__setattr__(self, name, value)

    @classmethod
    def from_winners(cls, winners, losers, prompt=None) -> "Votes":
        """Votes from (winner, loser) pairs: vote k says ``winners[k]`` was preferred to ``losers[k]``."""
        winners = np.asarray(winners, dtype=np.int64)
        return cls(winners, losers, np.ones(len(winners), dtype=bool), prompt)

    @property
    def winners(self) -> np.ndarray:  # (V,)
        return np.where(self.a_won, self.a, self.b)

    @property
    def losers(self) -> np.ndarray:  # (V,)
        return np.where(self.a_won, self.b, self.a)

    def __len__(self) -> int:
        return len(self.a)

    def take(self, index) -> "Votes":
        """The votes at ``index`` (an array of positions, repeats allowed)."""
        return Votes(self.a[index], self.b[index], self.a_won[index], self.prompt[index])

    def counts(self, n_models: int) -> tuple[np.ndarray, np.ndarray]:
        """(votes each model took part in, votes it won), each (n_models,)."""
        played = np.bincount(self.a, minlength=n_models) + np.bincount(self.b, minlength=n_models)
        return played, np.bincount(self.winners, minlength=n_models)


# ------------------------------------------------------ the contestants --

def held_out_questions(eval_examples: list, n: int | None, seed: int) -> list:
    """``n`` questions (all if None or fewer) of the second half of ``split_by_subject(eval_examples, seed)``.

    That half is never used for comparisons (with the same seed), so no
    contestant was tuned on a question it is asked here. The ``n`` are drawn at
    random, since the examples come grouped by what they test, and kept in order.
    """
    questions = split_by_subject(eval_examples, seed)[1]
    if n is not None and n < len(questions):
        chosen = np.sort(np.random.default_rng([seed, 3]).choice(len(questions), size=n, replace=False))
        questions = [questions[i] for i in chosen]
    return questions


@dataclass(frozen=True)
class Answers:
    """One contestant's greedy replies to the questions, with the rubric's verdicts and gold rewards."""

    replies: list  # (P,) str
    verdicts: list  # (P,) "correct", "idk", ...
    gold: np.ndarray  # (P,)


def answer_questions(params, config, tokenizer, questions: list, world, *, few_shot: bool = False,
                     progress: bool = False, name: str = "") -> Answers:
    """The model's greedy reply to each question, scored by ``preference.gold_reward``.

    A chat model is asked through the chat template; a base model
    (``few_shot``) as a question/answer document (``sft_eval.ask_few_shot``),
    which sees only the last question of a multi-turn prompt. The length
    penalty counts the reply's text in the model's own tokens, so a chat
    reply and a few-shot answer line are counted alike.
    """
    from tqdm.auto import tqdm

    prefix = few_shot_prefix(world) if few_shot else None
    replies, verdicts, gold = [], [], []
    for example in tqdm(questions, desc=name or "answers", disable=not progress):
        if few_shot:
            reply, finished = ask_few_shot(params, config, tokenizer, example, prefix)
        else:
            reply, finished = ask_chat(params, config, tokenizer, example)
        reward, verdict = gold_reward(example, reply, finished, world, len(tokenizer.encode(reply.strip())))
        replies.append(reply.strip())
        verdicts.append(verdict)
        gold.append(reward)
    return Answers(replies, verdicts, np.array(gold))


# ------------------------------------------------------------- voting --

def collect_votes(gold: dict, rng: np.random.Generator, noise: float = NOISE,
                  pairs_per_prompt: int | None = None) -> Votes:
    """The labeller's votes on the contestants' replies, model indices in the order of ``gold``'s keys.

    ``gold[model][i]`` is the gold reward of that model's reply to question i.
    For each question, ``pairs_per_prompt`` pairs of models drawn at random
    (default None: every pair) are shown to the labeller, who sees only the
    two rewards and prefers the first with ``prefer_probability``.
    """
    rewards = np.stack([np.asarray(g, dtype=np.float64) for g in gold.values()])  # (M, P)
    n_models, n_prompts = rewards.shape
    pairs = list(itertools.combinations(range(n_models), 2))
    per_prompt = len(pairs) if pairs_per_prompt is None else pairs_per_prompt
    a, b, a_won, prompt = [], [], [], []
    for question in range(n_prompts):
        shown = pairs if per_prompt >= len(pairs) else [pairs[k] for k in rng.permutation(len(pairs))[:per_prompt]]
        for i, j in shown:
            a.append(i)
            b.append(j)
            a_won.append(rng.random() < prefer_probability(rewards[i, question], rewards[j, question], noise))
            prompt.append(question)
    return Votes(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), np.array(a_won, dtype=bool),
                 np.array(prompt, dtype=np.int64))


# ------------------------------------------------------ the Bradley–Terry fit --

def _log_posterior(strength: np.ndarray, winners: np.ndarray, losers: np.ndarray, prior: float) -> float:
    """Sum over votes of log P(winner beats loser), minus the prior's penalty prior/2 * |strength|^2."""
    margin = strength[winners] - strength[losers]  # (V,)
    return float(-np.logaddexp(0.0, -margin).sum() - 0.5 * prior * strength @ strength)


def _gradient_and_curvature(strength, winners, losers, prior) -> tuple[np.ndarray, np.ndarray]:
    """The log posterior's gradient (M,) and minus its Hessian (M, M), positive definite thanks to the prior."""
    n_models = len(strength)
    p_won = sigmoid(strength[winners] - strength[losers])  # (V,): how expected each vote's outcome was
    surprise = 1.0 - p_won
    gradient = (np.bincount(winners, surprise, n_models) - np.bincount(losers, surprise, n_models)
                - prior * strength)
    weight = p_won * (1.0 - p_won)  # (V,)
    curvature = prior * np.eye(n_models)  # each vote adds weight * (e_w - e_l)(e_w - e_l)^T
    np.add.at(curvature, (winners, winners), weight)
    np.add.at(curvature, (losers, losers), weight)
    np.add.at(curvature, (winners, losers), -weight)
    np.add.at(curvature, (losers, winners), -weight)
    return gradient, curvature


def _moves(step: np.ndarray) -> float:
    """How far a step moves the ratings: its largest entry once a common shift (which changes no rating) is removed.

    Only the weak prior pins the common shift, so rounding errors in the
    gradient move it by ~1e-12 / prior; converging on it would never end.
    """
    return float(np.max(np.abs(step - step.mean())))


def bradley_terry_ratings(votes: Votes, n_models: int, prior: float = PRIOR, tol: float = 1e-9,
                          max_steps: int = 200) -> np.ndarray:
    """Maximum-likelihood Bradley–Terry ratings (n_models,) on the Elo scale, mean 1000 (lesson 05, exercise 5.5).

    Each model has a strength s (log-odds units) with P(i beats j) =
    sigmoid(s_i - s_j); its rating is 1000 + (400 / ln 10) * s, which is the
    Elo formula 1 / (1 + 10^((R_j - R_i)/400)). The log-likelihood is concave;
    Newton's method climbs it, halving a step that would go downhill, until
    no rating moves by more than ``tol`` log-odds units.

    A model that won (or lost) every vote has no finite maximum-likelihood
    rating: it could always be rated higher. A Gaussian prior on each
    strength, of precision ``prior`` (default 1e-4: a standard deviation of
    100 log-odds units, some 17,000 Elo points), keeps it finite — still far
    above the rest (some 1,900 points for 50 straight wins over a
    middling model): the votes set no upper bound, and its bootstrap interval
    says so — while moving other fits by hundredths of a point (0.013 for 3
    wins to 1). The prior cannot move the
    mean (the likelihood's gradient sums to zero), so the mean strength is 0
    and the mean rating exactly 1000. A model without votes is rated 1000.
    """
    winners, losers = votes.winners, votes.losers
    strength = np.zeros(n_models)
    objective = _log_posterior(strength, winners, losers, prior)
    for _ in range(max_steps):
        gradient, curvature = _gradient_and_curvature(strength, winners, losers, prior)
        step = np.linalg.solve(curvature, gradient)  # Newton: the maximum of the local quadratic
        while True:  # the objective is concave, so a short enough step along a Newton direction goes up
            trial = strength + step
            trial_objective = _log_posterior(trial, winners, losers, prior)
            if trial_objective >= objective or _moves(step) < tol:
                break
            step = step / 2
        strength, objective = trial, trial_objective
        if _moves(step) < tol:
            break
    else:
        raise RuntimeError(f"the Bradley–Terry fit did not converge in {max_steps} Newton steps.")
    return ANCHOR + ELO_PER_NAT * (strength - strength.mean())  # the mean is already ~0; this removes rounding


def win_probability(rating_i, rating_j):
    """P(a model rated ``rating_i`` beats one rated ``rating_j``) on the Elo scale."""
    return 1.0 / (1.0 + 10.0 ** ((np.asarray(rating_j) - np.asarray(rating_i)) / 400.0))


# ------------------------------------------------- intervals and ranks --

def bootstrap(votes: Votes, n_models: int, n_resamples: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile intervals (low, high), each (n_models,), of the Bradley–Terry ratings.

    Each resample draws as many questions as there are, with replacement, and
    keeps all the votes of each drawn question (they share its replies, so
    they are not independent of each other), then refits.
    """
    questions, by_question, per_question = np.unique(votes.prompt, return_inverse=True, return_counts=True)
    # the vote positions of each question: positions sorted by question, cut where the question changes
    members = np.split(np.argsort(by_question, kind="stable"), np.cumsum(per_question)[:-1])
    rng = np.random.default_rng(seed)
    samples = np.empty((n_resamples, n_models))
    for r in range(n_resamples):
        drawn = rng.integers(0, len(questions), size=len(questions))
        samples[r] = bradley_terry_ratings(votes.take(np.concatenate([members[q] for q in drawn])), n_models)
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    return low, high


def ranks(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Rank of each model: 1 + how many models' intervals lie wholly above its own (ties share a rank)."""
    low, high = np.asarray(low), np.asarray(high)
    return 1 + (low[None, :] > high[:, None]).sum(axis=1)  # [i, j]: j's low above i's high


# ---------------------------------------------------------- the board --

@dataclass(frozen=True)
class Leaderboard:
    """Ratings with their 95% intervals and ranks, for models named ``names`` (all arrays (M,))."""

    names: list
    ratings: np.ndarray
    low: np.ndarray
    high: np.ndarray
    ranks: np.ndarray
    played: np.ndarray  # votes each model took part in
    won: np.ndarray  # votes it won

    def order(self) -> list[int]:
        """Model indices from the highest rating down."""
        return sorted(range(len(self.names)), key=lambda i: -self.ratings[i])

    def table(self) -> str:
        """A markdown table, best first."""
        lines = ["| rank | model | rating | 95% interval | votes | won |", "|---:|---|---:|---|---:|---:|"]
        for i in self.order():
            share = f"{self.won[i] / self.played[i]:.0%}" if self.played[i] else "-"
            lines.append(f"| {self.ranks[i]} | {self.names[i]} | {self.ratings[i]:.0f} | "
                         f"{self.low[i]:.0f} to {self.high[i]:.0f} | {self.played[i]} | {share} |")
        return "\n".join(lines)

    def draw(self, ax) -> None:
        """Each rating as a point with its 95% interval as an error bar, best at the top, on ``ax``."""
        order = self.order()[::-1]  # the plot's y grows upwards
        ratings = self.ratings[order]
        errors = np.stack([ratings - self.low[order], self.high[order] - ratings])  # (2, M): below, above
        errors = np.maximum(errors, 0)  # a percentile interval can miss its own point estimate by a hair
        y = np.arange(len(order))
        ax.errorbar(ratings, y, xerr=errors, fmt="o", capsize=4)
        ax.axvline(ANCHOR, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yticks(y, [f"{self.names[i]} (rank {self.ranks[i]})" for i in order])
        ax.set_xlabel("rating (Elo scale, mean 1000), 95% bootstrap interval")
        ax.set_title("Arena")

    def report_keys(self) -> dict:
        """``arena_rating_<model>``, ``arena_ci_low_<model>``, ``arena_ci_high_<model>``, rounded to a point."""
        keys = {}
        for i, name in enumerate(self.names):
            keys[f"arena_rating_{name}"] = round(float(self.ratings[i]), 1)
            keys[f"arena_ci_low_{name}"] = round(float(self.low[i]), 1)
            keys[f"arena_ci_high_{name}"] = round(float(self.high[i]), 1)
        return keys

    def rows(self) -> list[dict]:
        """One dict per model, best first (for JSON)."""
        return [{"model": self.names[i], "rank": int(self.ranks[i]), "rating": round(float(self.ratings[i]), 1),
                 "ci_low": round(float(self.low[i]), 1), "ci_high": round(float(self.high[i]), 1),
                 "votes": int(self.played[i]), "won": int(self.won[i])} for i in self.order()]


def leaderboard(votes: Votes, names: list, n_resamples: int = 200, seed: int = 0) -> Leaderboard:
    """Fit, bootstrap and rank the models ``names`` (model i is ``names[i]`` in ``votes``)."""
    n_models = len(names)
    ratings = bradley_terry_ratings(votes, n_models)
    low, high = bootstrap(votes, n_models, n_resamples, seed)
    played, won = votes.counts(n_models)
    return Leaderboard(list(names), ratings, low, high, ranks(low, high), played, won)
