"""Benchmark pretraining against nanoGPT's CPU shakespeare_char recipe, with a profile of the loop.

    python benchmarks/bench_train.py --data ../shared/data/tinyshakespeare.txt

The recipe (nanoGPT's README, "I only have a macbook"): characters, first
90% train / last 10% validation, 4 layers, 4 heads, width 128, context 64,
batch 12, 2000 iterations, lr 1e-3 cosine-decayed to 1e-4 over 2000
iterations after 100 of warm-up, beta2 0.99, weight decay 0.1, gradient
clip 1.0, evaluation every 250 iterations over 20 batches. llmedu's model is
Llama-style, so the MLP is SwiGLU with hidden width 344 (about the
parameter count of nanoGPT's 4x GELU MLP) and there are no biases or dropout.

Reference on the benchmark machine: nanoGPT + PyTorch (2 threads), 222 s
for 2000 iterations, val loss 1.8857. Target: val loss <= 1.886 within 167 s.

The profile wraps the functions the loop calls (``llmedu.train`` looks them
up by name at each call) with timers; what the wrappers do not cover is the
loop's own overhead (learning rate, logging, progress, bookkeeping).
"""

import time

START = time.perf_counter()  # the "command" starts here, before the imports

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402

import llmedu.train as T  # noqa: E402

IMPORTED = time.perf_counter()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = dict(tokenizer="char", n_layers=4, n_heads=4, n_kv_heads=4, dim=128, hidden_dim=344, seq_len=64,
              batch_size=12, max_iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000,
              weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=250, eval_iters=20, seed=1337)
NANOGPT = {"seconds": 222.0, "ms_per_iter": 101.6, "tokens_per_s": 7560, "val_loss": 1.8857}
TARGET = {"val_loss": 1.886, "seconds": 167.0}


class Profile:
    """Seconds spent in each wrapped function; only outermost calls count, so nothing is counted twice."""

    def __init__(self):
        self.seconds, self.calls, self._depth = defaultdict(float), defaultdict(int), 0

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            began = time.perf_counter()
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds[name] += time.perf_counter() - began
                    self.calls[name] += 1
        return timed


def instrument(profile: Profile, interval_log: list):
    """Replace the loop's collaborators in ``llmedu.train`` by timed versions; print each evaluation."""
    for name, label in (("_start", "data, tokenizer, init"), ("get_batch", "training batches"),
                        ("loss_and_grads", "loss_and_grads"), ("clip_grad_norm", "clip_grad_norm"),
                        ("_save", "checkpoints")):
        setattr(T, name, profile.wrap(label, getattr(T, name)))

    class TimedAdamW(T.AdamW):
        step = profile.wrap("AdamW.step", T.AdamW.step)
    T.AdamW = TimedAdamW

    evaluate = T._evaluate
    last = {"step": 0, "time": None}

    def timed_evaluate(run, elapsed, say, *more):
        now = time.perf_counter()
        result = evaluate(run, elapsed, lambda message: None, *more)
        steps = run.step - last["step"]
        row = dict(result, ms_per_iter=None, tokens_per_s=None, after_s=time.perf_counter() - START)
        if steps and last["time"] is not None:
            seconds = now - last["time"]  # training only: the previous evaluation ended at last["time"]
            row.update(ms_per_iter=1000 * seconds / steps, tokens_per_s=steps * run.config.tokens_per_step / seconds)
        interval_log.append(row)
        speed = f", {row['ms_per_iter']:.1f} ms/iter, {row['tokens_per_s']:,.0f} tokens/s" if steps else ""
        print(f"step {result['step']:5d}: val loss {result['val_loss']:.4f} (train {result['train_loss']:.4f}), "
              f"{row['after_s']:.1f} s after the start{speed}", flush=True)
        last.update(step=run.step, time=time.perf_counter())
        return result
    T._evaluate = profile.wrap("evaluation", timed_evaluate)


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    threads = {k: os.environ[k] for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ}
    return f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}, threads {threads or 'default'}"


def report(result, profile: Profile, intervals: list, wall: float) -> None:
    train_s = sum(profile.seconds[k] for k in ("training batches", "loss_and_grads", "clip_grad_norm", "AdamW.step"))
    covered = sum(profile.seconds.values())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\nmachine: {machine()}")
    print(f"this process used {usage.ru_utime + usage.ru_stime:.1f} CPU seconds; load average (1, 5, 15 min) at the end: "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + " (above ~2 means other jobs shared the 2 cores)")
    print(f"total: {wall:.1f} s for {result.step} iterations (nanoGPT: {NANOGPT['seconds']:.0f} s)")
    loop_s = (wall - (IMPORTED - START) - profile.seconds["data, tokenizer, init"] - profile.seconds["evaluation"]
              - profile.seconds["checkpoints"])
    print(f"training steps (total without imports, set-up, evaluation, checkpoints): {loop_s:.1f} s = {1000 * loop_s / result.step:.1f} ms/iter, "
          f"{result.step * RECIPE['batch_size'] * RECIPE['seq_len'] / loop_s:,.0f} tokens/s "
          f"(nanoGPT: {NANOGPT['ms_per_iter']} ms/iter, {NANOGPT['tokens_per_s']:,} tokens/s)")
    print("\nprofile (seconds, share of the total, per call):")
    for name, seconds in sorted(profile.seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {name:24s} {seconds:8.2f} s {100 * seconds / wall:5.1f} %  {1000 * seconds / profile.calls[name]:9.2f} ms x {profile.calls[name]}")
    other = wall - covered
    imports = IMPORTED - START
    print(f"  {'imports':24s} {imports:8.2f} s {100 * imports / wall:5.1f} %")
    print(f"  {'loop overhead (the rest)':24s} {other - imports:8.2f} s {100 * (other - imports) / wall:5.1f} %")
    print(f"  (optimizer step work: loss_and_grads + clip + AdamW + batches = {train_s:.1f} s)")
    print("\n| step | val loss | train loss | seconds (at the end of the eval) | ms/iter since the last eval |\n|---|---|---|---|---|")
    for row in intervals:
        speed = f"{row['ms_per_iter']:.1f}" if row["ms_per_iter"] else "-"
        print(f"| {row['step']} | {row['val_loss']:.4f} | {row['train_loss']:.4f} | {row['after_s']:.1f} | {speed} |")
    reached = next((row for row in intervals if row["val_loss"] <= TARGET["val_loss"]), None)
    if reached:
        print(f"\nfirst evaluation at or below val loss {TARGET['val_loss']}: step {reached['step']}, "
              f"{reached['after_s']:.1f} s after the start")
    final = result.evals[-1]["val_loss"]
    met = final <= TARGET["val_loss"] and wall <= TARGET["seconds"]
    print(f"\nfinal val loss {final:.4f} (nanoGPT {NANOGPT['val_loss']}); target val loss <= {TARGET['val_loss']} "
          f"within {TARGET['seconds']:.0f} s: {'met' if met else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "tinyshakespeare.txt"))
    parser.add_argument("--out", default=None, help="run folder to keep (default: a temporary folder, deleted)")
    parser.add_argument("--max-iters", type=int, default=None, help="fewer iterations for a quick look (keeps the schedule)")
    args = parser.parse_args()
    recipe = dict(RECIPE, max_iters=args.max_iters or RECIPE["max_iters"])
    out = args.out or tempfile.mkdtemp(prefix="bench_train-")
    profile, intervals = Profile(), []
    instrument(profile, intervals)
    try:
        result = T.train(T.TrainConfig(data=args.data, out=out, **recipe), progress=False, start_time=START)
        report(result, profile, intervals, time.perf_counter() - START)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
