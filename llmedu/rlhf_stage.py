"""The speedrun's ``rlhf`` stage: comparisons, a reward model, DPO and GRPO, measured against the SFT model (lesson 05).

Questions come from lesson 04's evaluation set, split by subject
(:func:`llmedu.preference.split_by_subject`): comparisons and GRPO's
questions from one half, every measurement on the other, so nothing
measured was ever compared or rewarded.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np

from llmedu import arena, best_of_n
from llmedu.grpo import YEAR_RELATIONS, year_accuracy
from llmedu.plots import save_plot
from llmedu.preference import ceiling, make_comparisons, self_disagreement, split_by_subject, write_comparisons
from llmedu.reward_model import accuracy, rewards
from llmedu.rlhf_eval import gold_rewards, reply_kl, win_rate
from llmedu.sft import sft_config, write_conversations
from llmedu.sft_eval import evaluate, summary
from llmedu.train import train


TASKS = {"rm": "reward_model", "dpo": "dpo", "grpo": "grpo"}  # the sizes' prefix -> the training loop's task


def _fine_tune(chat_file, data, out, z, prefix, on_eval=None, **fields):
    """Train the chat model with the loop's task for ``prefix``, its sizes read from ``z``."""
    config = sft_config(chat_file, data, out, steps=z[f"{prefix}_steps"], lr=z[f"{prefix}_lr"],
                        batch_size=z[f"{prefix}_batch_size"], seed=z["seed"], task=TASKS[prefix],
                        eval_iters=z.get(f"{prefix}_eval_iters", 5), **fields)
    return train(config, progress=False, on_eval=on_eval)


def rlhf_stage(run) -> dict:
    """Run lesson 05's ladder on the speedrun's chat model; figures for report.json."""
    z = {**run.sizes, "seed": run.seed}
    world, tokenizer = run.state["world"], run.state["tokenizer"]
    chat = (run.state["sft_params"], run.state["config"])
    chat_file = run.state["sft_dir"] / "model.safetensors"
    folder = run.out_dir / "rlhf"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    train_q, eval_q = split_by_subject(run.state["sft_data"].eval, seed=run.seed)
    rng = np.random.default_rng([run.seed, 5])
    train_q = [train_q[i] for i in rng.permutation(len(train_q))[: z["rlhf_questions"]]]
    eval_q = [eval_q[i] for i in rng.permutation(len(eval_q))[: z["rlhf_questions"]]]
    figures = {}

    # Comparisons, and the reward model judged on comparisons of held-out questions.
    pairs = make_comparisons(*chat, tokenizer, train_q, world, seed=run.seed, with_reference=z["rlhf_reference"])
    held = make_comparisons(*chat, tokenizer, eval_q[: z["rlhf_questions"] // 2], world, seed=run.seed + 1,
                            with_reference=z["rlhf_reference"])
    write_comparisons(folder / "comparisons.jsonl", pairs)
    rm = _fine_tune(chat_file, folder / "comparisons.jsonl", folder / "reward_model", z, "rm")
    r_gold = np.array([c.gold_chosen for c in held] + [c.gold_rejected for c in held])
    r_proxy = rewards(rm.params, rm.model_config, tokenizer, [c.prompt for c in held] * 2,
                      [c.chosen for c in held] + [c.rejected for c in held])
    figures.update(rlhf_comparisons=len(pairs), rlhf_heldout_comparisons=len(held),
                   labeller_self_disagreement=round(self_disagreement(pairs), 4),
                   rm_accuracy=round(accuracy(rm.params, rm.model_config, tokenizer, held), 4),
                   rm_ceiling=round(ceiling(held), 4),
                   rm_gold_correlation=round(float(np.corrcoef(r_proxy, r_gold)[0, 1]), 4))

    # DPO from the chat model, on the same comparisons.
    dpo = _fine_tune(chat_file, folder / "comparisons.jsonl", folder / "dpo", z, "dpo", dpo_beta=z["dpo_beta"])
    dpo_model = (dpo.params, dpo.model_config)
    gold_sft = gold_rewards(*chat, tokenizer, eval_q, world)
    gold_dpo = gold_rewards(*dpo_model, tokenizer, eval_q, world)
    before = summary(evaluate(*chat, tokenizer, eval_q, world), "rlhf_sft")
    after = summary(evaluate(*dpo_model, tokenizer, eval_q, world), "dpo")
    won = win_rate(gold_dpo, gold_sft, seed=run.seed)
    figures.update(dpo_win_rate=round(won["win_rate"], 4), dpo_win_rate_low=round(won["low"], 4),
                   dpo_win_rate_high=round(won["high"], 4), dpo_kl=round(reply_kl(dpo_model, chat, tokenizer, eval_q,
                                                                                  seed=run.seed), 4),
                   dpo_gold_reward=round(float(gold_dpo.mean()), 4), sft_gold_reward=round(float(gold_sft.mean()), 4))
    figures.update({k: v for k, v in {**before, **after}.items()
                    if k.endswith(("hallucination_rate", "false_idk_rate", "accuracy_heldout_people", "refusal_rate"))})

    # GRPO on year questions of the comparison half, measured on those of the other half.
    years = [e for e in train_q if e.kind == "fact" and e.relation in YEAR_RELATIONS]
    held_years = [e for e in eval_q if e.kind == "fact" and e.relation in YEAR_RELATIONS]
    write_conversations(folder / "grpo_questions.jsonl", [asdict(e) for e in years])

    def measure(step, params, model_config, _tokenizer) -> dict:
        return {"heldout_accuracy": year_accuracy(params, model_config, tokenizer, held_years),
                "kl": reply_kl((params, model_config), chat, tokenizer, held_years[:40], seed=run.seed)}

    grpo = _fine_tune(chat_file, folder / "grpo_questions.jsonl", folder / "grpo", z, "grpo",
                      grpo_group_size=z["grpo_group_size"], on_eval=measure)
    curve = [(e["step"], e["heldout_accuracy"], e["kl"]) for e in grpo.evals]
    grpo_model = (grpo.params, grpo.model_config)
    won = win_rate(gold_rewards(*grpo_model, tokenizer, eval_q, world), gold_sft, seed=run.seed)
    figures.update(grpo_questions=len(years), grpo_heldout_questions=len(held_years),
                   grpo_accuracy_before=round(curve[0][1], 4), grpo_accuracy_after=round(curve[-1][1], 4),
                   grpo_kl=round(curve[-1][2], 4), grpo_win_rate=round(won["win_rate"], 4),
                   grpo_win_rate_low=round(won["low"], 4), grpo_win_rate_high=round(won["high"], 4))
    (folder / "grpo_curve.json").write_text(json.dumps(curve), encoding="utf-8")
    plots = [_plot_grpo(run.out_dir, curve)]

    # Best-of-n against the reward model, and the arena, on the same held-out questions.
    questions = eval_q[: z["arena_questions"]]
    scored = best_of_n.sample_and_score((*chat, tokenizer), {
        "proxy": best_of_n.reward_model_scorer(rm.params, rm.model_config, tokenizer),
        "gold": best_of_n.gold_scorer(world, tokenizer)}, questions, max(z["bon_ns"]), seed=run.seed)
    bon = best_of_n.curve_from_scores(scored["proxy"], scored["gold"], z["bon_ns"])
    figures.update(bon_n=list(bon["n"]), bon_kl=[round(k, 4) for k in bon["kl"]],
                   bon_gold_reward=[round(g, 4) for g in bon["gold"]], bon_proxy_reward=[round(p, 4) for p in bon["proxy"]],
                   bon_oracle_reward=[round(o, 4) for o in bon["oracle"]])
    plots.append(best_of_n.plot(bon, run.out_dir))
    rows = np.arange(len(questions))
    contestants = {
        "base": arena.answer_questions(run.state["params"], run.state["config"], tokenizer, questions, world,
                                       few_shot=True).gold,
        "sft": arena.answer_questions(*chat, tokenizer, questions, world).gold,
        "dpo": arena.answer_questions(*dpo_model, tokenizer, questions, world).gold,
        f"best_of_{z['arena_bon_n']}": scored["gold"][rows, best_of_n.best_of_n_picks(scored["proxy"], z["arena_bon_n"])],
        "grpo": arena.answer_questions(*grpo_model, tokenizer, questions, world).gold,
    }
    votes = arena.collect_votes(contestants, np.random.default_rng([run.seed, 6]))
    board = arena.leaderboard(votes, list(contestants), n_resamples=200, seed=run.seed)
    figures.update(board.report_keys(), arena_questions=len(questions), arena_votes=len(votes))
    plots.append(save_plot(run.out_dir, "arena.png", board.draw))
    run.notes.append(_notes(figures, plots, best_of_n.over_optimisation(bon), board.table()))
    return figures


def _plot_grpo(out_dir, curve) -> str:
    def draw(ax):
        steps = [s for s, _, _ in curve]
        ax.plot(steps, [100 * a for _, a, _ in curve], "o-", label="held-out accuracy (%)")
        ax.set_xlabel("GRPO step")
        ax.set_ylabel("held-out year questions right (%)")
        twin = ax.twinx()
        twin.plot(steps, [k for _, _, k in curve], "s--", color="gray", label="KL to the chat model")
        twin.set_ylabel("KL per reply (nats)")
        ax.legend(loc="lower right")

    return save_plot(out_dir, "grpo.png", draw)


def _notes(f: dict, plots: list, verdict: str, arena_table: str) -> str:
    pct = lambda key: "–" if f.get(key) is None else f"{100 * f[key]:.1f}%"  # noqa: E731
    return "\n".join([
        "## Preference tuning (RLHF)\n",
        f"{f['rlhf_comparisons']} comparisons of the chat model's replies, labelled by the simulated labeller "
        f"(it disagrees with itself on {pct('labeller_self_disagreement')} of them).\n",
        f"- Reward model: {pct('rm_accuracy')} of {f['rlhf_heldout_comparisons']} held-out comparisons ranked like the "
        f"labeller (ceiling {pct('rm_ceiling')}); correlation with the gold reward {f['rm_gold_correlation']:.2f}.",
        f"- DPO vs the chat model: the labeller prefers DPO on {pct('dpo_win_rate')} of held-out questions "
        f"({pct('dpo_win_rate_low')}–{pct('dpo_win_rate_high')}); mean gold reward {f['dpo_gold_reward']:.3f} vs "
        f"{f['sft_gold_reward']:.3f}; KL {f['dpo_kl']:.2f} nats per reply.",
        f"  Hallucination on unknown names {pct('rlhf_sft_hallucination_rate')} -> {pct('dpo_hallucination_rate')}; "
        f"false \"I don't know\" {pct('rlhf_sft_false_idk_rate')} -> {pct('dpo_false_idk_rate')}; "
        f"held-out people right {pct('rlhf_sft_accuracy_heldout_people')} -> {pct('dpo_accuracy_heldout_people')}.",
        f"- GRPO on {f['grpo_questions']} year questions (reward: the checker): held-out accuracy "
        f"{pct('grpo_accuracy_before')} -> {pct('grpo_accuracy_after')} on {f['grpo_heldout_questions']} questions, "
        f"KL {f['grpo_kl']:.2f} nats per reply; on all held-out questions the labeller prefers GRPO to the chat "
        f"model on {pct('grpo_win_rate')} ({pct('grpo_win_rate_low')}–{pct('grpo_win_rate_high')}).",
        f"- Best-of-n against the reward model on {f['arena_questions']} held-out questions, n = "
        f"{', '.join(map(str, f['bon_n']))}: proxy reward {', '.join(f'{v:.2f}' for v in f['bon_proxy_reward'])}; "
        f"gold reward {', '.join(f'{v:.2f}' for v in f['bon_gold_reward'])}. {verdict}",
        "", f"![GRPO: held-out accuracy and KL against steps]({plots[0]})", "",
        f"![best-of-n: proxy and gold reward against KL]({plots[1]})", "",
        f"### Arena\n\nEvery model answers the same {f['arena_questions']} held-out questions; the labeller votes on every "
        f"pair ({f['arena_votes']} votes); Bradley–Terry ratings on the Elo scale (mean 1000) with 95% bootstrap "
        "intervals; a model's rank counts only the models whose interval is wholly above its own.\n",
        arena_table, "", f"![arena ratings]({plots[2]})", ""])
