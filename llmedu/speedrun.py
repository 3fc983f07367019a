"""``llmedu speedrun``: every stage of the course pipeline that exists, end to end.

Each stage is a function ``stage(run) -> dict`` that reads what earlier stages
left in ``run.state``, does its work, and returns the figures it measured. The
figures go into ``runs/<name>/report.json`` (flat keys) and ``report.md``.
Later lessons add stages (pretraining, SFT, ...) to ``STAGES``.
"""

from __future__ import annotations

import json
import os
import shutil
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from llmedu import threads
from llmedu.attacks.stage import attacks_stage
from llmedu.data import split_text
from llmedu.evaluate import bits_per_byte, complete, compressor_bits_per_byte, fact_recall, hallucination_rate
from llmedu.model import count_params
from llmedu.plots import save_plot
from llmedu.rlhf_stage import rlhf_stage
from llmedu.sft_stage import sft_stage
from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, BPETokenizer
from llmedu.tools_stage import tools_stage
from llmedu.train import TrainConfig, train
from llmedu.world import make_world


@dataclass
class Run:
    out_dir: Path
    quick: bool
    seed: int
    sizes: dict
    state: dict = field(default_factory=dict)  # what stages hand to later stages
    figures: dict = field(default_factory=dict)  # what the report shows
    notes: list = field(default_factory=list)  # one markdown section per stage


DEFAULT_SEED = 1337  # the seed of the shipped base model (and `llmedu speedrun`'s default)

# Sizes of the default run (a few minutes on two cores) and of --quick (seconds).
SIZES = {
    False: dict(n_people=300, vocab_size=512, dim=128, n_layers=4, n_heads=4, hidden_dim=344, seq_len=256,
                batch_size=4, max_iters=2500, eval_interval=500, recall_people=100,
                sft_steps=240, sft_batch_size=16, sft_lr=1e-3, sft_replay_fraction=0.5,
                rlhf_questions=600, rlhf_reference=False, rm_steps=120, rm_lr=3e-4, rm_batch_size=16, dpo_steps=120, dpo_lr=1e-5,
                dpo_batch_size=16, dpo_beta=0.1, grpo_steps=80, grpo_lr=1e-4, grpo_batch_size=4, grpo_group_size=8,
                grpo_eval_iters=1, arena_questions=100, bon_ns=(1, 2, 4, 8, 16, 32, 64), arena_bon_n=16,
                tools_steps=900, tools_batch_size=16, tools_lr=2e-3, tools_replay_fraction=0.1, tools_arithmetic=4000,
                tools_searched=1500, tools_questions_per_person=3, tools_no_page=200, tools_eval_arithmetic=100,
                tools_eval_known=200,
                attack_train_cities=500, attack_eval_cities=16, guard_conversations=4000, guard_steps=500,
                guard_lr=2e-3, attack_batch_size=8, defence_conversations=1000, defence_examples=400,
                defence_steps=80, defence_lr=1e-3, injection_examples=800, injection_steps=180,
                backdoor_conversations=600, backdoor_ks=(0, 25, 50, 100),
                gcg_prompts=4, gcg_steps=30, gcg_length=12, gcg_top_k=32, gcg_batch=64, gcg_universal_prompts=3,
                gcg_universal_steps=20),
    True: dict(n_people=12, vocab_size=320, dim=32, n_layers=2, n_heads=2, hidden_dim=88, seq_len=256,
               batch_size=2, max_iters=60, eval_interval=30, recall_people=12,
               sft_steps=10, sft_batch_size=4, sft_lr=1e-3, sft_replay_fraction=0.5,
               rlhf_questions=40, rlhf_reference=True, rm_steps=4, rm_lr=3e-4, rm_batch_size=4, dpo_steps=4, dpo_lr=1e-5,
               dpo_batch_size=4, dpo_beta=0.1, grpo_steps=4, grpo_lr=1e-4, grpo_batch_size=2, grpo_group_size=4,
               grpo_eval_iters=1, arena_questions=10, bon_ns=(1, 2, 4), arena_bon_n=4,
               tools_steps=10, tools_batch_size=4, tools_lr=2e-3, tools_replay_fraction=0.1, tools_arithmetic=40,
               tools_searched=20, tools_questions_per_person=2, tools_no_page=10, tools_eval_arithmetic=10,
               tools_eval_known=10,
               attack_train_cities=40, attack_eval_cities=4, guard_conversations=100, guard_steps=6, guard_lr=2e-3,
               attack_batch_size=4, defence_conversations=40, defence_examples=10, defence_steps=3, defence_lr=2e-3,
               injection_examples=10, injection_steps=3, backdoor_conversations=30, backdoor_ks=(0, 5), gcg_prompts=1,
               gcg_steps=2, gcg_length=4, gcg_top_k=8, gcg_batch=8, gcg_universal_prompts=2, gcg_universal_steps=2),
}


def world_stage(run: Run) -> dict:
    """Generate the synthetic world and write its text beside the report."""
    world = make_world(run.seed, n_people=run.sizes["n_people"])
    path = run.out_dir / "world.txt"
    path.write_text(world.text, encoding="utf-8")
    run.state.update(world=world, world_path=path)
    held_out = split_text(world.text)[1]
    run.state["held_out"] = held_out
    run.notes.append(
        "## World\n\n"
        f"{len(world.people)} people, {len(world.cities)} cities, {len(world.facts())} facts, "
        f"{len(world.documents)} documents: {len(world.text.encode('utf-8')):,} bytes in `world.txt` "
        f"(seed {run.seed}). The last 10% is held out for evaluation.\n"
    )
    return {"world_people": len(world.people), "world_bytes": len(world.text.encode("utf-8")),
            "world_facts": len(world.facts())}


def tokenizer_stage(run: Run) -> dict:
    """Train the BPE tokenizer (chat tokens registered) on the world's training text."""
    text = split_text(run.state["world"].text)[0]
    train_s, tokenizer = _timed(BPETokenizer.train, text, run.sizes["vocab_size"],
                                special_tokens=list(CHAT_SPECIAL_TOKENS))
    # The first encode compiles (or loads from Numba's cache); time it apart so the speed is the warm one.
    compile_s, _ = _timed(tokenizer.encode, "Numba compiles encode on its first call.")
    encode_s, ids = _timed(tokenizer.encode, text)
    n_bytes = len(text.encode("utf-8"))
    tokenizer.save(run.out_dir / "tokenizer.bpe")
    run.state["tokenizer"] = tokenizer
    figures = {
        "tokenizer_vocab_size": len(tokenizer),
        "tokenizer_bytes_per_token": round(n_bytes / len(ids), 4),
        "tokenizer_train_s": round(train_s, 3),
        "tokenizer_encode_mb_per_s": round(n_bytes / 1e6 / max(encode_s, 1e-9), 3),
        "tokenizer_encode_compile_s": round(compile_s, 3),
    }
    run.notes.append(
        "## Tokenizer\n\n"
        f"Byte-level BPE (GPT-4 split pattern) trained on the world's training text ({n_bytes:,} bytes) to "
        f"{len(tokenizer)} tokens ({len(tokenizer.merges)} merges, {len(tokenizer.special_tokens)} special tokens) "
        f"in {train_s:.3f} s, Numba compilation included on a cold cache. Bytes per token: "
        f"{figures['tokenizer_bytes_per_token']}; encoding: {figures['tokenizer_encode_mb_per_s']} MB/s once compiled "
        f"(the first call, which compiles or loads the Numba cache, took {compile_s:.3f} s).\n"
    )
    return figures


def _timed(fn, *args, **kwargs):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def pretrain_config(sizes: dict, data: Path, seed: int, out: Path) -> TrainConfig:
    """The speedrun's training recipe for ``SIZES[quick]`` (benchmarks/bench_threads.py times it too)."""
    z = sizes
    return TrainConfig(
        data=str(data), tokenizer="bpe", vocab_size=z["vocab_size"], n_layers=z["n_layers"],
        n_heads=z["n_heads"], dim=z["dim"], hidden_dim=z["hidden_dim"], seq_len=z["seq_len"],
        batch_size=z["batch_size"], max_iters=z["max_iters"], lr=2e-3, min_lr=2e-4, warmup_iters=z["max_iters"] // 20,
        eval_interval=z["eval_interval"], eval_iters=10, seed=seed, out=str(out),
    )


def pretrain_stage(run: Run) -> dict:
    """Pretrain the default model on the world, measuring fact recall at every evaluation."""
    z, world = run.sizes, run.state["world"]
    config = pretrain_config(z, run.state["world_path"], run.seed, run.out_dir / "model")
    people = world.people[: z["recall_people"]]
    shutil.rmtree(config.out, ignore_errors=True)  # a speedrun starts from nothing, also when run again

    def recall(step, params, model_config, tokenizer) -> dict:
        return {"fact_recall": fact_recall(params, model_config, tokenizer, people)[0]}

    result = train(config, on_eval=recall, tokenizer=run.state["tokenizer"])
    run.state.update(params=result.params, config=result.model_config, tokenizer=result.tokenizer)
    run.state["recall_curve"] = [(e["step"], e["fact_recall"]) for e in result.evals]
    n_tokens = config.tokens_per_step * result.step
    plot = _plot_losses(run.out_dir, Path(config.out) / "log.jsonl", result.evals)
    run.notes.append(
        "## Pretraining\n\n"
        f"{count_params(result.params):,} parameters (dim {config.dim}, {config.n_layers} layers, {config.n_heads} "
        f"heads, hidden {config.hidden_dim}, context {config.seq_len}), {result.step} AdamW steps of "
        f"{config.tokens_per_step:,} tokens in {result.elapsed_s:.1f} s ({n_tokens / result.elapsed_s:,.0f} tokens/s, "
        f"evaluations included). Val loss at the end: {result.evals[-1]['val_loss']:.4f} nats per token.\n\n"
        f"![training and validation loss]({plot})\n"
    )
    return {"n_params": count_params(result.params), "val_loss": round(result.evals[-1]["val_loss"], 4),
            "train_tokens_per_s": round(n_tokens / result.elapsed_s), "train_steps": result.step,
            "train_tokens": n_tokens,
            "params_file_bytes": (run.out_dir / "model" / "model.safetensors").stat().st_size}


def evaluate_stage(run: Run) -> dict:
    """Compression next to gzip/bz2/lzma, fact recall, hallucination, and a few samples."""
    params, config, tokenizer, world = (run.state[k] for k in ("params", "config", "tokenizer", "world"))
    held_out = run.state["held_out"]
    bpb = bits_per_byte(params, config, tokenizer, held_out)
    compressors = compressor_bits_per_byte(held_out)
    recall, recall_examples = fact_recall(params, config, tokenizer, world.people)
    hallucination, invented = hallucination_rate(params, config, tokenizer, world.unseen_names)
    samples = [complete(params, config, tokenizer, prompt, max_new_tokens=40)
               for prompt in (world.people[0].name, "Once upon a time", "12 + 7 =")]
    plots = (_plot_compression(run.out_dir, bpb, compressors), _plot_recall(run.out_dir, run.state["recall_curve"]))
    run.notes.append(_evaluation_notes(bpb, compressors, recall, recall_examples, hallucination, invented, samples,
                                       plots, run.state["recall_curve"]))
    return {"bits_per_byte": round(bpb, 4), **{f"{k}_bits_per_byte": round(v, 4) for k, v in compressors.items()},
            "fact_recall": round(recall, 4), "hallucination_rate": round(hallucination, 4)}


def _plot_losses(out_dir: Path, log_path: Path, evals: list) -> str:
    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    steps = [row for row in rows if row["train_loss"] is not None]

    def draw(ax):
        ax.plot([r["step"] for r in steps], [r["train_loss"] for r in steps], alpha=0.6, label="training batch")
        ax.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "o-", label="held-out text")
        ax.set_xlabel("training step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.legend()

    return save_plot(out_dir, "loss.png", draw)


def _plot_recall(out_dir: Path, curve: list) -> str:
    def draw(ax):
        ax.plot([s for s, _ in curve], [100 * r for _, r in curve], "o-")
        ax.set_xlabel("training step")
        ax.set_ylabel("birth years recalled (%)")
        ax.set_ylim(0, 100)

    return save_plot(out_dir, "fact_recall.png", draw)


def _plot_compression(out_dir: Path, bpb: float, compressors: dict) -> str:
    def draw(ax):
        names, values = ["this model", *compressors], [bpb, *compressors.values()]
        ax.barh(names[::-1], values[::-1], color=["#bbb"] * len(compressors) + ["#5b8def"])  # the model on top
        ax.set_xlabel("bits per byte of held-out text (lower is better)")

    return save_plot(out_dir, "compression.png", draw)


def _evaluation_notes(bpb, compressors, recall, recall_examples, hallucination, invented, samples, plots, curve) -> str:
    compression_plot, recall_plot = plots
    lines = ["## Evaluation on held-out world text\n",
             "| compressor | bits per byte |", "|---|---|", f"| this model | {bpb:.3f} |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in compressors.items()]
    lines += ["", f"![bits per byte, model and compressors]({compression_plot})", "",
              f"Fact recall (birth years, greedy): **{100 * recall:.1f}%**.",
              f"![fact recall over training]({recall_plot})", "",
              "Recall during training (people checked at each evaluation): "
              + ", ".join(f"step {step}: {100 * share:.0f}%" for step, share in curve), ""]
    lines += [f"- `{p}` -> `{a.strip()}` (true: {e})" for p, e, a in recall_examples[:5]]
    lines += ["", f"Hallucination on {len(invented)} never-seen names: **{100 * hallucination:.1f}%** answered "
              "with a confident, well-formed (and necessarily invented) year.", ""]
    lines += [f"- `{p}` -> `{a.strip()}`" for p, a in invented[:5]]
    lines += ["", "### Samples (greedy)", ""] + [f"```\n{s}\n```" for s in samples]
    return "\n".join(lines) + "\n"


STAGES = [("world", world_stage), ("tokenizer", tokenizer_stage), ("pretrain", pretrain_stage),
          ("evaluate", evaluate_stage), ("sft", sft_stage),
          ("rlhf", rlhf_stage), ("tools", tools_stage), ("attacks", attacks_stage)]


def write_report(run: Run) -> None:
    """report.json (flat figures) and report.md (notes), each written atomically."""
    report_md = "# llmedu speedrun\n\n" + "\n".join(run.notes)
    report_md += "\n## Figures\n\n| figure | value |\n|---|---|\n"
    report_md += "".join(f"| {key} | {value} |\n" for key, value in run.figures.items())
    for name, text in (("report.json", json.dumps(run.figures, indent=2) + "\n"), ("report.md", report_md)):
        temporary = run.out_dir / f".{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, run.out_dir / name)


def speedrun(out_root: Path = Path("runs"), name: str | None = None, quick: bool = False,
             seed: int = DEFAULT_SEED) -> Path:
    """Run every stage and write ``out_root/<name>/report.{md,json}``; returns that folder."""
    name = name or ("quick" if quick else "speedrun")
    run = Run(out_dir=Path(out_root) / name, quick=quick, seed=seed, sizes=SIZES[quick])
    run.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for stage_name, stage in tqdm(STAGES, desc="speedrun", unit="stage"):
        stage_start = time.perf_counter()
        figures = stage(run)
        # A stage that times its core work itself (sft: the training alone) keeps that under the plain name.
        key = f"{stage_name}_stage_wall_s" if f"{stage_name}_wall_s" in figures else f"{stage_name}_wall_s"
        run.figures.update(figures)
        run.figures[key] = round(time.perf_counter() - stage_start, 3)
    run.figures["wall_s"] = round(time.perf_counter() - start, 3)
    run.figures["seed"] = seed
    flags = (" --quick" if quick else "") + (f" --seed {seed}" if seed != DEFAULT_SEED else "")
    run.figures["command"] = "llmedu speedrun" + flags
    run.figures["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    run.figures.update(threads.apply())  # decided when training imported the kernels; this reads it back
    run.notes.append(f"## Machine\n\n{run.figures['machine']}. Threads for BLAS and Numba: {run.figures['threads']} "
                     f"({run.figures['threads_reason']}; override with `{threads.ENV}`).\n")
    write_report(run)
    return run.out_dir
