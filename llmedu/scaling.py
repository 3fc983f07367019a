"""Scaling laws that predict: sizes x token budgets, a fitted law, a forecast (lesson 08, ``08_frontiers``).

The claim: next-token loss is a smooth, predictable function of the number
of parameters N and of training tokens D. Here it is measured on a laptop:

1. train every (size, budget) pair of a ``Sweep`` with THE training loop
   (``llmedu.train.train``), all on one text and one tokenizer (the shipped
   base model's 512-token BPE, so no run trains its own and every loss is in
   the same units), every run with the same seed;
2. score each finished model on the whole validation split (the last 10% of
   the text, every token once: ``evaluate.mean_nll``), so the held-out loss
   has no sampling noise from a choice of evaluation windows;
3. fit ``L = E + A / N^alpha + B / D^beta`` (``llmedu.scaling_fit``) on every
   run but the biggest (largest N at largest D), write down the predicted
   loss of that run, and only then train it and compare.

N counts the parameters *outside* the token embedding and the output
classifier (Kaplan et al. 2020). With a 512-token vocabulary those two
tables hold 2 x 512 x dim parameters: most of a tiny model (16k of the
smallest's 20k). Both counts are recorded, and ``count_comparison`` fits the law with each:
on the shipped sweep they do equally well (rms error 7.1% vs 7.0%, forecast
+4.9% vs +4.5%), so the choice follows Kaplan's convention: the tables' size
is set by the tokenizer's vocabulary, not by the network's depth and width,
and it would make up most of the smallest models' count.
FLOPs are 6 N D. The learning rate follows a cosine to the end of each
budget (Chinchilla: a schedule longer than the run overstates the loss),
from a peak that shrinks with width (``Sweep.lr``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llmedu.checkpoint import atomic_write, atomic_write_text, file_sha256
from llmedu.evaluate import mean_nll
from llmedu.model import param_shapes
from llmedu.scaling_fit import LawFit, compute_optimal, fit_law
from llmedu.train import TrainConfig, train

__all__ = ["Sweep", "FULL", "QUICK", "param_counts", "plan", "train_run", "run_sweep", "fit_rows", "summary",
           "count_comparison", "CSV_FIELDS", "CHINCHILLA_RATIO", "NANOCHAT_RATIO", "plot_sweep", "write_results",
           "read_results"]

ASSETS_JSON = Path(__file__).resolve().parents[1] / "assets" / "scaling.json"  # the full sweep, shipped
CHINCHILLA_RATIO = 20.0  # tokens per parameter at the compute optimum (Hoffmann et al. 2022)
NANOCHAT_RATIO = 10.5  # the same, as measured for nanochat's models (Karpathy, 2025)
# N: non-embedding parameters, N_total: all of them, D: training tokens, FLOPs: 6 N D, loss: held-out (nats/token)
CSV_FIELDS = ("name", "n_layers", "dim", "n_heads", "N", "N_total", "D", "steps", "FLOPs", "loss", "seed", "seconds",
              "held_out")


@dataclass(frozen=True)
class Sweep:
    sizes: tuple  # (n_layers, dim, n_heads) per model size, smallest first
    budgets: tuple  # training tokens D per run, smallest first (rounded to whole steps)
    seq_len: int = 64
    batch_size: int = 8  # 8 x 64 = 512 tokens per step
    lr_times_width: float = 0.4  # peak lr = lr_times_width / dim: wider models take smaller steps ...
    max_lr: float = 1e-2  # ... up to this cap for the narrowest
    warmup_fraction: float = 0.05

    def config(self, size: tuple, budget: int, data: str, out: str, seed: int) -> TrainConfig:
        n_layers, dim, n_heads = size
        steps, lr = self.steps(budget), self.lr(dim)
        return TrainConfig(data=data, tokenizer="bpe", n_layers=n_layers, dim=dim, n_heads=n_heads,
                           seq_len=self.seq_len, batch_size=self.batch_size, max_iters=steps, lr=lr,
                           min_lr=lr / 10, warmup_iters=max(1, round(self.warmup_fraction * steps)),
                           eval_interval=steps, eval_iters=1, seed=seed, out=out)

    @classmethod
    def from_dict(cls, fields: dict) -> "Sweep":
        """The sweep a scaling.json records (JSON turns its tuples into lists)."""
        return cls(**{**fields, "sizes": tuple(tuple(size) for size in fields["sizes"]),
                      "budgets": tuple(fields["budgets"])})

    def lr(self, dim: int) -> float:
        """Peak lr at width ``dim`` (3e-3 for all left the width-16 model 1.5 nats worse at 60k tokens)."""
        return min(self.max_lr, self.lr_times_width / dim)

    def steps(self, budget: int) -> int:
        return max(1, round(budget / (self.seq_len * self.batch_size)))


# Non-embedding N from 3.4k to 1.8M (total 20k to 2.0M); D from 100k to 1M tokens (1 to 9 passes over the world).
# At most 4 layers: a 6-layer model learned more slowly than a 4-layer one of the same size at every budget tried.
FULL = Sweep(sizes=((1, 16, 2), (1, 32, 2), (2, 48, 4), (3, 64, 4), (4, 96, 4), (4, 128, 4), (4, 192, 4)),
             budgets=(100_000, 300_000, 1_000_000))
# The same code path in seconds: tiny models, a few dozen steps.
QUICK = Sweep(sizes=((1, 8, 2), (1, 16, 2), (2, 16, 2)), budgets=(3_000, 6_000), seq_len=32, batch_size=4)


def param_counts(config) -> tuple[int, int]:
    """(N without the token embedding and output tables, N with them) of a ModelConfig."""
    total = int(sum(np.prod(shape) for shape in param_shapes(config).values()))
    return total - 2 * config.vocab_size * config.dim, total  # tok_embeddings and output are not tied


def plan(sweep: Sweep) -> list[tuple[tuple, int]]:
    """Every (size, budget) pair, the held-out run (largest size at largest budget) last."""
    pairs = [(size, budget) for budget in sweep.budgets for size in sweep.sizes]
    held_out = (sweep.sizes[-1], sweep.budgets[-1])
    return [p for p in pairs if p != held_out] + [held_out]


def train_run(sweep: Sweep, size: tuple, budget: int, data: str, tokenizer, seed: int, work: str,
              val_ids: np.ndarray) -> dict:
    """Train one (size, budget) run in ``work``; its row: counts, tokens, FLOPs, held-out loss, seconds.

    ``val_ids``: the validation split's token ids, every one of which is scored once.
    """
    name = f"L{size[0]}-d{size[1]}-D{budget}"
    config = sweep.config(size, budget, data, os.path.join(work, name), seed)
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the loop's per-evaluation lines; the sweep shows its own progress
        result = train(config, tokenizer=tokenizer, progress=False)
    loss, _ = mean_nll(result.params, result.model_config, val_ids)  # every validation token once
    n, n_total = param_counts(result.model_config)
    tokens = config.max_iters * config.tokens_per_step
    return {"name": name, "n_layers": size[0], "dim": size[1], "n_heads": size[2], "N": n, "N_total": n_total,
            "D": tokens, "steps": config.max_iters, "FLOPs": 6 * n * tokens,
            "loss": round(float(loss), 6), "seed": seed, "seconds": round(time.perf_counter() - began, 2),
            "held_out": False, "config": {k: v for k, v in asdict(config).items() if k not in ("data", "out")}}


def fit_rows(rows: list[dict]) -> LawFit:
    """The law fitted on the rows that are not the held-out run."""
    used = [r for r in rows if not r["held_out"]]
    return fit_law([r["N"] for r in used], [r["D"] for r in used], [r["loss"] for r in used])


def count_comparison(rows: list[dict]) -> dict:
    """The law fitted with N = non-embedding and with N = all parameters: rms error and held-out forecast error.

    A way to judge the choice of N: the count whose law fits the runs and
    forecasts the held-out one better (on the shipped sweep, neither clearly).
    """
    used, held = [r for r in rows if not r["held_out"]], next(r for r in rows if r["held_out"])
    comparison = {}
    for key in ("N", "N_total"):
        fit = fit_law([r[key] for r in used], [r["D"] for r in used], [r["loss"] for r in used])
        forecast = float(fit.predict(held[key], held["D"]))
        comparison[key] = {"rms_relative_error": round(fit.rms_relative_error, 5),
                           "forecast_error": round((forecast - held["loss"]) / held["loss"], 5),
                           "alpha": round(fit.alpha, 4), "beta": round(fit.beta, 4)}
    return comparison


def summary(fit: LawFit, rows: list[dict]) -> dict:
    """The compute-optimal tokens-per-parameter ratio the fit implies, at the sweep's smallest and largest FLOPs."""
    flops = np.array([min(r["FLOPs"] for r in rows), max(r["FLOPs"] for r in rows)], dtype=np.float64)
    n_opt, d_opt = compute_optimal(fit, flops)
    return {"FLOPs": flops.tolist(), "N_opt": n_opt.round(1).tolist(), "D_opt": d_opt.round(1).tolist(),
            "tokens_per_param": (d_opt / n_opt).round(3).tolist(), "chinchilla": CHINCHILLA_RATIO,
            "nanochat": NANOCHAT_RATIO}


def run_sweep(sweep: Sweep, out: str, *, data: str | None = None, seed: int = 1337, command: str = "",
              progress: bool = True) -> dict:
    """Train the sweep, predict the held-out run before training it, write ``out``/scaling.{json,csv,png}.

    ``data``: a UTF-8 text file; None writes the world ``make_world(1337,
    n_people=300)`` to ``out``/world.txt and uses it. The prediction is
    written to scaling.json (the held-out run still to come) before that run
    starts, with the time it was made. Raises ``DataError`` for unusable text.
    """
    from tqdm.auto import tqdm

    from llmedu.base_model import load_base_model

    _, _, tokenizer, _ = load_base_model()
    val_ids = _validation_ids(data, tokenizer, sweep) if data is not None else None  # bad text: fail before writing
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = _write_world(out_dir)
        val_ids = _validation_ids(data, tokenizer, sweep)
    result = {"command": command, "seed": seed, "date": time.strftime("%Y-%m-%d"), "data": os.path.basename(data),
              "data_sha256": file_sha256(data), "tokenizer": f"the shipped base model's BPE ({len(tokenizer)} ids)",
              "N": "non-embedding parameters (tok_embeddings and output left out); N_total counts them too",
              "D": "training tokens (steps x batch_size x seq_len)", "FLOPs": "6 N D",
              "loss": f"mean next-token loss in nats over all {len(val_ids) - 1} scored tokens of the validation "
                      "split (the text's last 10%)",
              "sweep": asdict(sweep), "runs": []}
    pairs = plan(sweep)
    with tempfile.TemporaryDirectory(prefix="llmedu-scaling-") as work, \
            tqdm(total=len(pairs), desc="scaling", unit="run", disable=not progress) as bar:
        for index, (size, budget) in enumerate(pairs):
            held_out = index == len(pairs) - 1
            if held_out:  # the forecast, written down before the run it forecasts
                result["prediction"] = _predict(sweep, size, budget, len(tokenizer), result["runs"])
                write_results(result, out_dir, plot=False)
            bar.set_postfix(run=f"L{size[0]} d{size[1]} D{budget}", refresh=True)
            row = train_run(sweep, size, budget, data, tokenizer, seed, work, val_ids)
            result["runs"].append({**row, "held_out": held_out})
            bar.update(1)
    prediction, actual = result["prediction"], result["runs"][-1]["loss"]
    prediction.update(actual=actual, relative_error=round((prediction["loss"] - actual) / actual, 6),
                      trained_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    result["compute_optimal"] = summary(LawFit(**prediction["fit"]), result["runs"])
    write_results(result, out_dir)
    return result


def _predict(sweep: Sweep, size: tuple, budget: int, vocab_size: int, rows: list[dict]) -> dict:
    """The fitted law's loss for the run (size, budget), from ``rows`` alone."""
    fit = fit_rows(rows)
    n, _ = param_counts(sweep.config(size, budget, "-", "-", 0).model_config(vocab_size))
    tokens = sweep.steps(budget) * sweep.seq_len * sweep.batch_size
    return {"N": n, "D": tokens, "loss": round(float(fit.predict(n, tokens)), 6),
            "made_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "fit": fit.to_dict()}


def _write_world(out_dir: Path) -> str:
    from llmedu.world import make_world

    path = out_dir / "world.txt"
    atomic_write_text(path, make_world(1337, n_people=300).text)
    return str(path)


def _validation_ids(data: str, tokenizer, sweep: Sweep) -> np.ndarray:
    """The validation split's ids; ``DataError`` if the text is unusable or a split is shorter than a window."""
    from llmedu.data import load_corpus

    return load_corpus(data, seq_len=sweep.seq_len, existing=tokenizer).val_ids.astype(np.int64)


# ------------------------------------------------------------- files --

def write_results(result: dict, out_dir, plot: bool = True) -> None:
    """``out_dir``/scaling.json (everything), scaling.csv (one row per run) and, with ``plot``, scaling.png."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "scaling.json", json.dumps(result, indent=1) + "\n")
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(result["runs"])
    atomic_write_text(out_dir / "scaling.csv", table.getvalue())
    if plot:
        from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

        figure = Figure(figsize=(6, 4))
        plot_sweep(result, figure.subplots())
        figure.tight_layout()
        atomic_write(out_dir / "scaling.png", lambda f: figure.savefig(f, dpi=100, format="png"))


def read_results(path) -> dict:
    """A scaling.json written by ``run_sweep`` (a folder holding one, or the file itself)."""
    path = Path(path)
    path = path / "scaling.json" if path.is_dir() else path
    result = json.loads(path.read_text(encoding="utf-8"))
    if "runs" not in result or "prediction" not in result:
        raise ValueError(f"{path} is not a finished scaling sweep (no runs or prediction): run llmedu scaling again.")
    return result


def plot_sweep(result: dict, ax) -> None:
    """Loss vs N, one colour per budget D: measured points, the fitted law's curves, predicted vs actual."""
    fit, rows = LawFit(**result["prediction"]["fit"]), result["runs"]
    budgets = sorted({r["D"] for r in rows})
    n_all = np.array([r["N"] for r in rows], dtype=np.float64)
    curve_n = np.geomspace(n_all.min() / 1.5, n_all.max() * 1.5, 100)
    for index, tokens in enumerate(budgets):
        colour = f"C{index}"
        fitted = [r for r in rows if r["D"] == tokens and not r["held_out"]]
        ax.plot([r["N"] for r in fitted], [r["loss"] for r in fitted], "o", color=colour,
                label=f"D = {tokens:,} tokens")
        ax.plot(curve_n, fit.predict(curve_n, tokens), "-", color=colour, alpha=0.6)
    held, prediction = rows[-1], result["prediction"]
    ax.plot([held["N"]], [prediction["loss"]], "x", color="k", markersize=10, label="predicted (before training)")
    ax.plot([held["N"]], [held["loss"]], "*", color="k", markersize=12, label="actual held-out run")
    from matplotlib.ticker import FormatStrFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis_format(FormatStrFormatter("%.1f"))  # plain numbers: 0.6, 1.0, 2.0 rather than 6 x 10^-1
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("held-out loss (nats per token)")
    ax.set_title(f"L = {fit.E:.2f} + {fit.A:.3g}/N^{fit.alpha:.2f} + {fit.B:.3g}/D^{fit.beta:.2f}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
