"""System 2, measured: spending tokens buys accuracy (lesson 08, ``08_frontiers``).

A model answers in one pass (System 1). Two ways to let it spend more
tokens on a question (System 2), each measured on held-out additions
(:mod:`llmedu.system2_data`) as accuracy against tokens generated:

- **self-consistency** (Wang et al. 2022): sample k replies at a temperature
  above 0 and answer with the most common final answer
  (:func:`majority_vote`); k = 1, 3, 5, 9, 17 costs k replies' tokens;
- **a scratchpad**: a model fine-tuned to write the column additions before
  the answer, compared with one fine-tuned on direct answers from the same
  base model with the same number of training tokens.

Every sample has its own seed, derived from the run's seed, the question and
the sample's index, so a curve is reproducible and the first k samples of
k = 17 are the samples of k = 3: each larger k adds samples to the same
draws, as a user asking again would.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from llmedu.base_model import ASSETS, MODEL_NAME
from llmedu.chat import render_prompt, reply_ids
from llmedu.checkpoint import file_sha256, load_params
from llmedu.data import tokenizer_from_text
from llmedu.plots import save_plot
from llmedu.sample import load_run
from llmedu.sft import sft_config
from llmedu.stats import wilson_interval
from llmedu.system2_data import equal_token_sets, parse_answer, split_problems, write_training_file
from llmedu.train import train

KS = (1, 3, 5, 9, 17)
MAX_NEW_TOKENS = {"direct": 24, "scratchpad": 128}  # room for the longest right reply, and a little more


def majority_vote(answers):
    """The most common answer of ``answers``, ignoring None (a reply with no final answer); None if all are None.

    Ties go to the answer that was sampled first among the tied ones: a fixed
    rule that depends only on the order of the samples, never on a dict's or
    a set's order or on another random draw. With odd k and two candidates
    there is no tie; with three or more there can be.
    """
    counts, first = {}, {}
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        first.setdefault(answer, index)
    if not counts:
        return None
    return min(counts, key=lambda answer: (-counts[answer], first[answer]))


def sample_seed(seed: int, question: int, sample: int) -> int:
    """The sampler's seed of one reply: independent streams per (run, question, sample)."""
    return int(np.random.SeedSequence([seed, question, sample]).generate_state(1)[0])


def replies(model, problems, *, samples: int = 1, temperature: float = 0.0, seed: int = 0,
            max_new_tokens: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Each problem's replies, judged: (answers (N, samples) object, tokens generated (N, samples) int).

    ``model`` is (params, config, tokenizer). An answer is the parsed final
    answer (None if the reply has none); tokens count what the model wrote,
    its closing ``<|im_end|>`` included (it is a token it had to generate).
    """
    params, config, tokenizer = model
    answers = np.empty((len(problems), samples), dtype=object)
    tokens = np.zeros((len(problems), samples), dtype=np.int64)
    for i, problem in enumerate(problems):
        prompt = render_prompt([{"role": "user", "content": problem.question}], tokenizer)
        for j in range(samples):
            ids, finished = reply_ids(params, config, tokenizer, prompt, temperature=temperature,
                                      seed=sample_seed(seed, i, j), max_new_tokens=max_new_tokens)
            answers[i, j] = parse_answer(tokenizer.decode(ids)) if finished else None
            tokens[i, j] = len(ids) + finished
    return answers, tokens


def _rate(correct: int, n: int) -> dict:
    low, high = wilson_interval(correct, n)
    return {"correct": int(correct), "n": int(n), "accuracy": correct / n, "low": low, "high": high}


def greedy_point(answers: np.ndarray, tokens: np.ndarray, truths) -> dict:
    """Accuracy (with its Wilson interval) and mean tokens per question of one greedy reply each."""
    correct = sum(a == t for a, t in zip(answers[:, 0], truths))
    return {**_rate(correct, len(truths)), "tokens_per_question": float(tokens[:, 0].mean())}


def self_consistency_curve(answers: np.ndarray, tokens: np.ndarray, truths, ks=KS) -> list[dict]:
    """Majority-vote accuracy at each k over the first k samples, with tokens per question (mean of their sum)."""
    if max(ks) > answers.shape[1]:
        raise ValueError(f"k = {max(ks)} needs {max(ks)} samples per question, got {answers.shape[1]}.")
    curve = []
    for k in ks:
        correct = sum(majority_vote(list(row[:k])) == t for row, t in zip(answers, truths))
        curve.append({"k": k, **_rate(correct, len(truths)),
                      "tokens_per_question": float(tokens[:, :k].sum(axis=1).mean()),
                      "answered": float(np.mean([majority_vote(list(row[:k])) is not None for row in answers]))})
    return curve


# ------------------------------------------------------------- reporting --

COLOURS = {"direct": "tab:blue", "scratchpad": "tab:orange"}


def plot(results: dict, out_dir, name: str = "system2.png") -> str:
    """Accuracy against tokens generated per question: each model's self-consistency curve and greedy point."""
    def draw(ax):
        for method, colour in COLOURS.items():
            run = results["methods"][method]
            curve = run["self_consistency"]
            x = [p["tokens_per_question"] for p in curve]
            y = [100 * p["accuracy"] for p in curve]
            err = [[100 * (p["accuracy"] - p["low"]) for p in curve],
                   [100 * (p["high"] - p["accuracy"]) for p in curve]]
            ax.errorbar(x, y, yerr=err, marker="o", color=colour, capsize=2,
                        label=f"{method}: majority of k samples (T={results['temperature']})")
            for p in curve:
                ax.annotate(f"k={p['k']}", (p["tokens_per_question"], 100 * p["accuracy"]), fontsize=6,
                            xytext=(3, -8), textcoords="offset points")
            g = run["greedy"]
            ax.errorbar([g["tokens_per_question"]], [100 * g["accuracy"]], color=colour, marker="*", markersize=11,
                        yerr=[[100 * (g["accuracy"] - g["low"])], [100 * (g["high"] - g["accuracy"])]],
                        linestyle="none", capsize=2, label=f"{method}: greedy")
        ax.set_xscale("log")
        ax.set_xlabel("tokens generated per question (log scale)")
        ax.set_ylabel("held-out additions right (%)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=6, loc="lower right")

    return save_plot(out_dir, name, draw)


def table(results: dict) -> str:
    """The measurements as a Markdown table, one row per (method, greedy or k)."""
    lines = ["| model | decoding | accuracy | 95% interval | tokens / question |", "|---|---|---|---|---|"]
    for method in COLOURS:
        run = results["methods"][method]
        rows = [("greedy", run["greedy"])] + [(f"majority of {p['k']}", p) for p in run["self_consistency"]]
        for label, p in rows:
            lines.append(f"| {method} | {label} | {100 * p['accuracy']:.1f}% | "
                         f"{100 * p['low']:.1f}–{100 * p['high']:.1f}% | {p['tokens_per_question']:.1f} |")
    return "\n".join(lines)


# -------------------------------------------------------------- the run --

# The full run and --quick (seconds: a tiny fine-tune, a few questions; its numbers mean nothing).
SIZES = {
    False: dict(digits=(2, 3), n_held_out=300, n_scratchpad=12000, steps=300, batch_size=16, lr=2e-3,
                temperature=0.7, ks=KS, scratchpad_ks=KS),
    True: dict(digits=(2, 3), n_held_out=6, n_scratchpad=40, steps=2, batch_size=2, lr=2e-3,
               temperature=0.7, ks=(1, 3), scratchpad_ks=(1, 3)),
}


def fine_tune(base_file, out_dir, train_problems, sizes: dict, seed: int) -> dict:
    """Fine-tune one copy of ``base_file`` per method with THE training loop (task "sft"), equal training tokens.

    Both runs take the same steps of the same batch of packed rows, so they
    process the same number of tokens; their training files hold the same
    number of rendered tokens too (:func:`llmedu.system2_data.equal_token_sets`).
    Returns ``{method: {"model": (params, config, tokenizer), "training": {...}}}``.
    """
    _, _, metadata = load_params(base_file)
    tokenizer = tokenizer_from_text(metadata["tokenizer"], str(base_file))
    sets = equal_token_sets(train_problems, sizes["n_scratchpad"], tokenizer)
    tuned = {}
    for method, chosen in sets.items():
        folder = Path(out_dir) / method
        folder.mkdir(parents=True, exist_ok=True)
        write_training_file(folder / "train.jsonl", chosen["problems"], method)
        config = sft_config(base_file, folder / "train.jsonl", folder / "model", steps=sizes["steps"],
                            lr=sizes["lr"], batch_size=sizes["batch_size"], seed=seed)
        start = time.perf_counter()
        result = train(config, progress=False)
        tuned[method] = {"model": (result.params, result.model_config, result.tokenizer), "training": {
            "problems": len(chosen["problems"]), "file_tokens": chosen["tokens"],
            "supervised_tokens": chosen["supervised_tokens"], "steps": result.step,
            "tokens_processed": result.step * config.tokens_per_step, "val_loss": result.evals[-1]["val_loss"],
            "wall_s": round(time.perf_counter() - start, 1)}}
    return tuned


def measure(out_dir, *, seed: int = 0, quick: bool = False, base_file=None, say=print) -> dict:
    """The whole experiment: data, two fine-tunes, greedy and self-consistency on held-out problems."""
    sizes = SIZES[quick]
    base_file = base_file or ASSETS / MODEL_NAME
    held_out, train = split_problems(sizes["n_held_out"], 4 * sizes["n_scratchpad"], seed=seed,
                                     digits=sizes["digits"])
    truths = [p.answer for p in held_out]
    start = time.perf_counter()
    tuned = fine_tune(base_file, out_dir, train, sizes, seed)
    results = {"seed": seed, "quick": quick, "base_model": _describe(base_file), "digits": list(sizes["digits"]),
               "held_out_questions": len(held_out), "temperature": sizes["temperature"], "methods": {}}
    for method, ks in (("direct", sizes["ks"]), ("scratchpad", sizes["scratchpad_ks"])):
        model, began = tuned[method]["model"], time.perf_counter()
        limit = MAX_NEW_TOKENS[method]
        greedy = replies(model, held_out, max_new_tokens=limit)
        sampled = replies(model, held_out, samples=max(ks), temperature=sizes["temperature"], seed=seed,
                          max_new_tokens=limit)
        say(f"{method}: evaluated in {time.perf_counter() - began:.0f} s")
        results["methods"][method] = {
            "training": tuned[method]["training"], "greedy": greedy_point(*greedy, truths),
            "greedy_answers": list(greedy[0][:, 0]),
            "self_consistency": self_consistency_curve(*sampled, truths, ks),
            "examples": _examples(model, held_out[:3], limit),
            "eval_wall_s": round(time.perf_counter() - began, 1)}
    results["wall_s"] = round(time.perf_counter() - start, 1)
    return results


def _describe(path) -> dict:
    """A parameters file by name and SHA-256 (not by where it happened to be)."""
    return {"file": Path(path).name, "sha256": file_sha256(path)}


def _examples(model, problems, limit: int) -> list[dict]:
    """A few greedy replies as text, for the report."""
    params, config, tokenizer = model
    shown = []
    for p in problems:
        prompt = render_prompt([{"role": "user", "content": p.question}], tokenizer)
        ids, _ = reply_ids(params, config, tokenizer, prompt, max_new_tokens=limit)
        shown.append({"question": p.question, "reply": tokenizer.decode(ids), "answer": p.answer})
    return shown


# ------------------------------------------------------- shipped results --

RESULTS_NAME = "system2.json"
MODEL_NAMES = {"direct": "system2_direct.safetensors", "scratchpad": "system2_scratchpad.safetensors"}


def load_results(assets=None) -> dict:
    """``assets/system2.json``: the full run's figures, with its command, seed and date."""
    path = Path(assets or ASSETS) / RESULTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `llmedu system2 --out runs/system2`, then "
                                "`python -m llmedu.system2 runs/system2` to ship its results.")
    return json.loads(path.read_text(encoding="utf-8"))


def load_model(method: str, assets=None) -> tuple:
    """(params, config, tokenizer) of the shipped fine-tuned model of ``method`` ("direct" or "scratchpad")."""
    if method not in MODEL_NAMES:
        raise ValueError(f"method must be one of {sorted(MODEL_NAMES)}, got {method!r}.")
    path = Path(assets or ASSETS) / MODEL_NAMES[method]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `llmedu system2 --out runs/system2`, then "
                                "`python -m llmedu.system2 runs/system2` to ship its models.")
    params, config, tokenizer, _ = load_run(str(path))
    return params, config, tokenizer


def ship(run_dir, assets=None) -> None:
    """Copy a full run's results, plot and two models from ``run_dir`` into ``assets``."""
    run_dir, assets = Path(run_dir), Path(assets or ASSETS)
    results = load_results(run_dir)
    if results["quick"]:
        raise ValueError(f"{run_dir} holds a --quick run; ship a full one.")
    for name in (RESULTS_NAME, results["plot"]):
        shutil.copyfile(run_dir / name, assets / name)
    for method, name in MODEL_NAMES.items():
        shutil.copyfile(run_dir / method / "model" / "model.safetensors", assets / name)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m llmedu.system2 RUN_DIR   (a folder written by `llmedu system2`)")
    ship(sys.argv[1])
