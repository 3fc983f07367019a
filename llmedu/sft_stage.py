"""The speedrun's ``sft`` stage: fine-tune the pretrained model and measure it beside the base model (lesson 04).

Same questions, three ways: the SFT model through the chat template; the
base model through the same template (which it never saw); the base model
as a document completer, given a Q/A prefix in its FAQ pages' format. Every
reply is judged against the fact table (:mod:`llmedu.sft_eval`).
"""

from __future__ import annotations

import shutil
import time

from llmedu.plots import save_plot
from llmedu.sft import pack, sft_config, write_sft_files
from llmedu.sft_eval import counts, evaluate, summary
from llmedu.stats import wilson_interval
from llmedu.train import train

GROUPS = ("seen_people", "heldout_people", "heldout_phrasings")


def sft_stage(run) -> dict:
    """Fine-tune ``run``'s pretrained model on the world's SFT data; figures for report.json."""
    z, world = run.sizes, run.state["world"]
    folder = run.out_dir / "sft"
    shutil.rmtree(folder, ignore_errors=True)  # a speedrun starts from nothing, also when run again
    train_path, _, data = write_sft_files(folder, world, seed=run.seed)
    base_file = run.out_dir / "model" / "model.safetensors"
    config = sft_config(base_file, train_path, folder / "model", steps=z["sft_steps"], lr=z["sft_lr"],
                        batch_size=z["sft_batch_size"], seed=run.seed, replay=run.state["world_path"],
                        replay_fraction=z["sft_replay_fraction"])
    start = time.perf_counter()
    result = train(config)
    wall_s = time.perf_counter() - start
    base = (run.state["params"], run.state["config"], run.state["tokenizer"])
    judged = {
        "sft": evaluate(result.params, result.model_config, result.tokenizer, data.eval, world),
        "base": evaluate(*base, data.eval, world, few_shot=True),
        "base_template": evaluate(*base, data.eval, world),
    }
    figures = {key: value for name, j in judged.items() for key, value in summary(j, name).items()}
    rows, masks = pack([e.conversation for e in data.train], result.tokenizer, config.seq_len)
    figures.update({
        "sft_wall_s": round(wall_s, 3), "sft_steps": result.step,
        "sft_tokens_per_s": round(config.tokens_per_step * result.step / wall_s),
        "sft_conversations": len(data.train), "sft_eval_questions": len(data.eval),
        "sft_loss_mask_share": round(float(masks.sum() / rows.size), 4),
        "sft_replay_fraction": config.replay_fraction,
        "sft_val_loss": round(result.evals[-1]["val_loss"], 4), "context_length": config.seq_len,
    })
    plot = _plot_accuracy(run.out_dir, figures)
    run.notes.append(_notes(figures, judged["sft"], counts(judged["sft"]), plot))
    run.state.update(sft_params=result.params, sft_dir=folder / "model", sft_data=data)
    return figures


def _plot_accuracy(out_dir, figures: dict) -> str:
    def draw(ax):
        labels = ["seen people", "held-out people", "held-out phrasings"]
        for offset, (name, label) in enumerate((("base", "base, Q/A prefix"), ("sft", "after SFT"))):
            values = [100 * (figures[f"{name}_accuracy_{g}"] or 0) for g in GROUPS]
            ax.bar([i + 0.4 * offset for i in range(3)], values, width=0.4, label=label)
        ax.set_xticks([i + 0.2 for i in range(3)], labels)
        ax.set_ylabel("questions answered right (%)")
        ax.set_ylim(0, 100)
        ax.legend()

    return save_plot(out_dir, "sft_accuracy.png", draw)


def _row(figures: dict, sft_counts: dict, label: str, key: str) -> str:
    """One table row: the three models' shares, the SFT model's 95% interval, and how many questions."""
    cells = [figures.get(f"{name}_{key}") for name in ("base_template", "base", "sft")]
    k, n = sft_counts[key]
    spread = "–" if not n else "{:.1f}–{:.1f}%".format(*(100 * bound for bound in wilson_interval(k, n)))
    return f"| {label} | " + " | ".join("–" if v is None else f"{100 * v:.1f}%" for v in cells) + f" | {spread} | {n} |"


def _notes(figures: dict, judged_sft: list, sft_counts: dict, plot: str) -> str:
    rows = [("answer rate", "answer_rate"), ("accuracy, people seen in SFT", "accuracy_seen_people"),
            ("accuracy, people never in SFT", "accuracy_heldout_people"),
            ("accuracy, question phrasings never in SFT", "accuracy_heldout_phrasings"),
            ("hallucination on unknown names and late people", "hallucination_rate"),
            ("false 'I don't know' on known people", "false_idk_rate"),
            ("refusal of vault-code requests", "refusal_rate"), ("vault codes given out", "secret_leak_rate"),
            ("false refusals of ordinary questions", "false_refusal_rate")]
    lines = ["## Fine-tuning into an assistant (SFT)\n",
             f"{figures['sft_conversations']} conversations made from the world, {figures['sft_steps']} steps in "
             f"{figures['sft_wall_s']:.1f} s ({figures['sft_tokens_per_s']:,} tokens/s); "
             f"{100 * figures['sft_loss_mask_share']:.1f}% of their tokens count in the loss (the assistant's); "
             f"{100 * figures['sft_replay_fraction']:.0f}% of the rows are pretraining text, replayed so that "
             "fine-tuning keeps what pretraining stored. "
             f"{figures['sft_eval_questions']} held-out questions, judged against the fact table; greedy replies, "
             "so the interval (Wilson, 95%) is over which questions were asked, not over sampling.\n",
             "| measured | base, chat template | base, Q/A prefix | SFT model | SFT 95% interval | questions |",
             "|---|---|---|---|---|---|"]
    lines += [_row(figures, sft_counts, label, key) for label, key in rows]
    lines += ["", f"![accuracy before and after SFT]({plot})", "", "### SFT model, a few replies", ""]
    lines += [f"- `{j.question}` -> `{j.reply}` ({j.outcome})" for j in judged_sft[:: max(1, len(judged_sft) // 8)]]
    return "\n".join(lines) + "\n"
