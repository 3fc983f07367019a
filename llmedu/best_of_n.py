"""Best-of-n against the reward model: optimising a proxy, and what the gold reward says about it (lesson 05).

The simplest way to use a reward model needs no training at all: sample n
replies to a question, score each with the reward model (the **proxy**),
and keep the best. How far has that moved the policy from the chat model?
The picked reply's distribution is the chat model's, reweighted towards its
top 1/n, and its KL divergence from the chat model is at most

    KL(best-of-n || chat model) <= log n - (n - 1) / n     (nats; 0 at n = 1)

(as Gao et al. 2022 plot it; equal when no two samples tie, which here they
often do: the chat model repeats itself, so the true KL is smaller and the
formula is the x axis, an upper bound). Because the labeller is
simulated we also know the **gold reward** (:func:`llmedu.preference.gold_reward`)
of every pick, so we can watch both as n grows. The proxy of the pick can
only rise with n; the gold one rises while the reward model ranks replies
like the rubric, and may flatten or fall once the search finds replies the
reward model overrates: reward model over-optimisation (Gao, Schulman and
Hilton 2022, "Scaling laws for reward model overoptimization"). The
**oracle** line, the best of n by gold reward itself, is the ceiling of any
picker that sees the same n samples.

Each question's ``max(ns)`` replies are sampled once; best-of-n uses the
first n of them, so every n reuses the same draws and the curve costs one
sampling run.
"""

from __future__ import annotations

import math
import time

import numpy as np

from llmedu.preference import gold_reward, sample_replies

DEFAULT_NS = (1, 2, 4, 8, 16, 32, 64)


def kl_bound(n: int) -> float:
    """The KL of best-of-n from the sampling policy, in nats, as usually quoted: log n - (n - 1) / n (at most)."""
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}.")
    return math.log(n) - (n - 1) / n


def powers_of_two(max_n: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to ``max_n``, and ``max_n`` itself if it is not a power of two."""
    if max_n < 1:
        raise ValueError(f"--max-n must be at least 1, got {max_n}.")
    ns = [2 ** k for k in range(max_n.bit_length()) if 2 ** k <= max_n]
    return tuple(ns if ns[-1] == max_n else ns + [max_n])


# A scorer: ``score(examples, replies) -> (N,)`` rewards of N replies, reply i answering examples[i] and given
# as (ids, finished), as ``preference.sample_replies`` returns them. The proxy and the gold reward are both scorers,
# so a test can hand the gold reward in as the proxy.

def reward_model_scorer(params, config, tokenizer, batch_size: int = 32):
    """The reward model as a scorer (batched :func:`llmedu.reward_model.rewards` on the decoded replies)."""
    from llmedu.reward_model import rewards

    def score(examples: list, replies: list) -> np.ndarray:
        texts = [tokenizer.decode(ids) for ids, _ in replies]  # the reward model reads text, finished or not
        return rewards(params, config, tokenizer, [e.prompt() for e in examples], texts, batch_size=batch_size)
    return score


def gold_scorer(world, tokenizer):
    """The simulated labeller's rubric as a scorer (:func:`llmedu.preference.gold_reward`)."""
    def score(examples: list, replies: list) -> np.ndarray:
        return np.array([gold_reward(e, tokenizer.decode(ids), finished, world, len(ids))[0]
                         for e, (ids, finished) in zip(examples, replies)])
    return score


def sample_and_score(policy, scorers: dict, examples: list, n: int, *, seed: int = 0, temperature: float = 1.0,
                     max_new_tokens: int = 48, progress: bool = False) -> dict:
    """``n`` replies to each question, scored by each of ``scorers``: {name: (questions, n) array}.

    ``policy`` is (params, config, tokenizer). Replies repeat a lot at this
    model's size, so each question's distinct replies are scored once, all
    questions' in one (batched) call per scorer. Also returns the replies'
    texts ("replies") and the seconds spent sampling and scoring.
    """
    from tqdm.auto import tqdm

    params, config, tokenizer = policy
    started = time.perf_counter()
    sampled = [sample_replies(params, config, tokenizer, example.prompt(), n, temperature=temperature,
                              seed=seed * 1_000_003 + q, max_new_tokens=max_new_tokens)
               for q, example in enumerate(tqdm(examples, desc="sampling", disable=not progress))]
    sampled_at = time.perf_counter()
    keys = [[(tuple(ids), finished) for ids, finished in row] for row in sampled]  # hashable replies
    distinct = [(q, key) for q, row in enumerate(keys) for key in dict.fromkeys(row)]  # first-seen order
    out = {}
    for name, score in scorers.items():
        values = score([examples[q] for q, _ in distinct], [(list(ids), done) for _, (ids, done) in distinct])
        by_reply = dict(zip(distinct, map(float, values)))
        out[name] = np.array([[by_reply[q, key] for key in row] for q, row in enumerate(keys)])  # (questions, n)
    out["replies"] = [[tokenizer.decode(ids) for ids, _ in row] for row in sampled]
    out["sampling_s"], out["scoring_s"] = sampled_at - started, time.perf_counter() - sampled_at
    return out


def best_of_n_picks(proxy: np.ndarray, n: int) -> np.ndarray:
    """Index of the best reply by proxy among each question's first ``n``: (questions,). Ties go to the earliest."""
    return np.argmax(proxy[:, :n], axis=1)


def _mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """Mean over questions and its standard error (0 for a single question)."""
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(se)


def curve_from_scores(proxy: np.ndarray, gold: np.ndarray, ns=DEFAULT_NS) -> dict:
    """The best-of-n curve from (questions, max n) proxy and gold rewards: one list per quantity, over ``ns``.

    ``proxy``/``gold``: the proxy and gold reward of each question's pick, mean
    over questions (``*_se``: the standard error of that mean); ``oracle``: the
    mean of the best gold reward among the first n (the ceiling of picking).
    ``gold_peak_n``, ``gold_fall``, ``gold_fall_se``: the n whose picks have the
    best mean gold reward, and how far the last n's picks fall below them
    (mean over questions of the paired difference, and its standard error).
    """
    if max(ns) > proxy.shape[1]:
        raise ValueError(f"n = {max(ns)} needs {max(ns)} samples per question, there are {proxy.shape[1]}.")
    rows = np.arange(len(proxy))
    picked = np.stack([best_of_n_picks(proxy, n) for n in ns], axis=1)  # (questions, len(ns))
    by_name = {"proxy": proxy[rows[:, None], picked], "gold": gold[rows[:, None], picked],  # (questions, len(ns))
               "oracle": np.stack([gold[:, :n].max(axis=1) for n in ns], axis=1)}
    curve = {"n": list(ns), "kl": [kl_bound(n) for n in ns]}
    for name, values in by_name.items():
        means, ses = zip(*(_mean_and_se(column) for column in values.T))
        curve[name], curve[f"{name}_se"] = list(means), list(ses)
    peak = int(np.argmax(curve["gold"]))
    fall, fall_se = _mean_and_se(by_name["gold"][:, peak] - by_name["gold"][:, -1])  # paired: same questions
    curve.update(gold_peak_n=ns[peak], gold_fall=fall, gold_fall_se=fall_se)
    return curve


def best_of_n_curve(policy, reward, examples: list, world, ns=DEFAULT_NS, *, seed: int = 0,
                    temperature: float = 1.0, max_new_tokens: int = 48, progress: bool = False) -> dict:
    """Best-of-n of ``policy`` against ``reward``, for each n in ``ns``, measured by the gold reward.

    ``policy``: (params, config, tokenizer) of the chat model. ``reward``: the
    proxy, either a reward model's (params, config) (read with the policy's
    tokenizer) or any scorer ``score(examples, replies) -> (N,)`` (tests pass
    :func:`gold_scorer`). Returns :func:`curve_from_scores`'s lists (``n``,
    ``kl``, ``proxy``, ``gold``, ``oracle`` and their ``*_se``) plus
    ``questions``, ``samples_per_question``, ``seed``, ``temperature``,
    ``distinct_replies`` (mean number of different replies among a question's
    samples), ``sampling_s`` and ``scoring_s`` (wall seconds).
    """
    tokenizer = policy[2]
    proxy = reward if callable(reward) else reward_model_scorer(*reward, tokenizer)
    scored = sample_and_score(policy, {"proxy": proxy, "gold": gold_scorer(world, tokenizer)}, examples, max(ns),
                              seed=seed, temperature=temperature, max_new_tokens=max_new_tokens, progress=progress)
    curve = curve_from_scores(scored["proxy"], scored["gold"], ns)
    curve.update(questions=len(examples), samples_per_question=max(ns), seed=seed, temperature=temperature,
                 distinct_replies=float(np.mean([len(set(row)) for row in scored["replies"]])),
                 sampling_s=round(scored["sampling_s"], 1), scoring_s=round(scored["scoring_s"], 1))
    return curve


def over_optimisation(curve: dict) -> str:
    """One sentence: does the gold reward of the picks fall while the proxy keeps rising?

    "Falls" means the last n's picks score below the peak's by more than two
    standard errors of the paired difference, so noise alone is not read as
    a fall. (The peak is chosen after looking, which makes the test a little generous.)
    """
    n, gold = curve["n"], curve["gold"]
    fall, se, peak = curve["gold_fall"], curve["gold_fall_se"], curve["gold_peak_n"]
    where = f"gold peaks at n = {peak} ({max(gold):.3f}) and ends at {gold[-1]:.3f} at n = {n[-1]}"
    if peak == n[-1]:
        return f"No over-optimisation at these n: the gold reward of the picks is highest at the largest, n = {n[-1]}."
    if fall > 2 * se:
        return f"Over-optimisation shows: the proxy keeps rising but {where}, a fall of {fall:.3f} ± {se:.3f} " \
               "(paired standard error over questions)."
    return f"No clear over-optimisation: {where}, a fall of {fall:.3f} ± {se:.3f}, within two standard errors."


def table(curve: dict) -> str:
    """The curve as a plain-text table: n, KL, proxy, gold and oracle (mean ± standard error)."""
    lines = [f"{'n':>4} {'KL (nats)':>9} {'proxy':>15} {'gold':>15} {'oracle (gold)':>15}"]
    for i, n in enumerate(curve["n"]):
        cells = [f"{curve[k][i]:7.3f} ± {curve[k + '_se'][i]:5.3f}" for k in ("proxy", "gold", "oracle")]
        lines.append(f"{n:>4} {curve['kl'][i]:>9.3f} " + " ".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


def plot(curve: dict, out_dir, name: str = "best_of_n.png") -> str:
    """Gold (and oracle) on the left axis, proxy on the right, against KL; saved as ``out_dir/name``."""
    from llmedu.plots import save_plot

    def draw(ax):
        kl = curve["kl"]
        ax.errorbar(kl, curve["gold"], yerr=curve["gold_se"], marker="o", color="C0", label="gold (best by proxy)")
        ax.plot(kl, curve["oracle"], ls="--", marker=".", color="C2", label="gold (best by gold: oracle)")
        ax.set_xlabel("KL from the chat model (nats): log n - (n-1)/n")
        ax.set_ylabel("gold reward of the pick")
        for n, x, y in zip(curve["n"], kl, curve["gold"]):
            ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(2, -10), fontsize=6)
        right = ax.twinx()  # the proxy is a logit: its own scale, so its own axis
        right.errorbar(kl, curve["proxy"], yerr=curve["proxy_se"], marker="s", color="C1", label="proxy (reward model)")
        right.set_ylabel("proxy reward of the pick", color="C1")
        (left_handles, left_labels), (right_handles, right_labels) = (a.get_legend_handles_labels() for a in (ax, right))
        ax.legend(left_handles + right_handles, left_labels + right_labels, fontsize=6, ncol=3, loc="lower center",
                  bbox_to_anchor=(0.5, 1.0), frameon=False)  # above the axes: the curves fill every corner
    return save_plot(out_dir, name, draw)


# ------------------------------------------------------------ command line --

def held_out_questions(data, n: int, *, split_seed: int, seed: int) -> list:
    """``n`` questions drawn at random (seeded) from the half ``split_by_subject`` keeps out of the comparisons.

    The half is ordered by kind (facts first), so a prefix would ask no stranger and no vault code.
    """
    from llmedu.preference import split_by_subject

    held_out = split_by_subject(data.eval, seed=split_seed)[1]
    if n < 1:
        raise ValueError(f"--questions must be at least 1, got {n}.")
    order = np.random.default_rng([seed, 3]).permutation(len(held_out))[:n]
    return [held_out[i] for i in sorted(order)]


def command(args) -> int:
    """``llmedu rlhf best-of-n``: the table on the terminal, ``best_of_n.json`` and ``best_of_n.png`` in ``--out``."""
    import json
    import sys
    import time
    from pathlib import Path

    from llmedu.chat_model import ASSETS, MODEL_NAME, eval_questions
    from llmedu.sample import load_run

    start = time.perf_counter()
    try:
        ns = powers_of_two(args.max_n)
        policy = load_run(args.model or str(ASSETS / MODEL_NAME))[:3]
        reward = reward_model_scorer(*load_run(args.reward_model)[:3])  # with the tokenizer stored beside it
        world, data = eval_questions({"world": {"seed": args.world_seed, "n_people": args.world_people},
                                      "sft_data_seed": args.world_seed})
        questions = held_out_questions(data, args.questions, split_seed=args.split_seed, seed=args.seed)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as err:  # a missing model file, a bad --max-n, an unwritable --out
        print(f"llmedu rlhf best-of-n: {err}", file=sys.stderr)
        return 2
    curve = best_of_n_curve(policy, reward, questions, world, ns, seed=args.seed, temperature=args.temperature,
                            max_new_tokens=args.max_new_tokens, progress=not args.no_progress)
    curve.update(wall_s=round(time.perf_counter() - start, 1), model=args.model or "shipped chat model",
                 reward_model=str(args.reward_model))
    (out / "best_of_n.json").write_text(json.dumps(curve, indent=1) + "\n", encoding="utf-8")
    plot(curve, out)
    print(table(curve))
    print(over_optimisation(curve))
    print(f"{len(questions)} held-out questions, {max(ns)} samples each ({curve['distinct_replies']:.1f} distinct on "
          f"average): sampling {curve['sampling_s']} s, scoring {curve['scoring_s']} s, {curve['wall_s']} s in all; "
          f"written to {out / 'best_of_n.json'} and {out / 'best_of_n.png'}.")
    return 0
