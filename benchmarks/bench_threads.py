"""Benchmark the thread policy (llmedu.threads) when the CPUs are shared: training and decoding, five ways.

    python benchmarks/bench_threads.py            # about 4 minutes on 2 cores
    python benchmarks/bench_threads.py --quick    # seconds: checks that every condition runs
    python benchmarks/bench_threads.py --before   # also the constrained conditions with every core's threads

Two workloads, each timed in a fresh subprocess per condition:

- **train**: tokens/s of optimizer steps (``llmedu.train``'s own step:
  batch, forward + backward, clip, AdamW) on the default speedrun's model and
  world (``llmedu.speedrun.SIZES``, seed 1337), evaluation left out;
- **decode**: tokens/s of greedy decoding with the KV cache
  (``llmedu.generate.generate``) in the shape of llama2.c's stories15m, random
  weights, from a one-token prompt.

Conditions: idle (the policy's choice); one thread (``LLMEDU_THREADS=1``, the
reference for a single CPU); pinned to one core (``taskset -c 0``); sharing
the machine with one busy process (a plain Python loop this script starts and
stops), with the policy's count and with one thread; under a 1-CPU cgroup
quota (a child cgroup with cpu.max "100000 100000", v2, or
cpu.cfs_quota_us 100000, v1) if this process may create one, else the reason
it could not. ``--before`` adds each constrained condition with
``LLMEDU_THREADS`` set to ``os.cpu_count()``: every core's threads, what the
libraries did before the policy.

Ratios: "vs idle" divides by the idle figure, "vs 1 thread" by the
one-thread idle figure. The issue's aims: sharing with a busy process >= 0.45
of idle; pinned >= 0.85 of one thread; idle not more than 5% below the
figure without the policy (on an idle 2-core machine the policy keeps 2
threads, so the two are the same run).

The figures mean something only on a machine nobody else is using: the
script prints the load average before and after, and how busy the CPUs were
just before it started.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmedu.threads import cpu_busy_fraction  # reads /proc/stat only: no threads are set in this process

ROOT = Path(__file__).resolve().parent.parent
BUSY_LOOP = "while True:\n    pass\n"
CGROUP_NAME = "llmedu-bench-threads"


# ------------------------------------------------------------ workers --
# Each runs in its own interpreter, so the thread policy is decided afresh
# under that condition, and prints one JSON line.

def train_worker(seconds: float, warmup: int) -> dict:
    from llmedu import threads, train
    from llmedu.speedrun import DEFAULT_SEED, SIZES, pretrain_config
    from llmedu.world import make_world

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "world.txt"
        data.write_text(make_world(DEFAULT_SEED, n_people=SIZES[False]["n_people"]).text, encoding="utf-8")
        config = pretrain_config(SIZES[False], data, DEFAULT_SEED, Path(tmp) / "model")
        run = train._start(config, resume=False)  # the world's tokenizer is trained here, as in the speedrun
        steps, elapsed = _timed_loop(lambda: train._train_step(run), seconds, warmup)
    return {"tokens_per_s": steps * config.tokens_per_step / elapsed, "steps": steps, **threads.describe()}


def decode_worker(seconds: float, warmup: int) -> dict:
    from llmedu import model, threads
    from llmedu.generate import generate

    config = model.PRESETS["stories15m"]
    params = model.init_params(config, seed=0)
    tokens = 64  # per round, from a one-token prompt

    def one_round():
        for _ in generate(params, config, [1], max_new_tokens=tokens, temperature=0.0):
            pass

    rounds, elapsed = _timed_loop(one_round, seconds, warmup)
    return {"tokens_per_s": rounds * tokens / elapsed, "rounds": rounds, **threads.describe()}


def _timed_loop(fn, seconds: float, warmup: int) -> tuple[int, float]:
    """Call fn ``warmup`` times untimed (compilation, caches), then for ``seconds``: (calls, elapsed)."""
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls, time.perf_counter() - start


WORKERS = {"train": train_worker, "decode": decode_worker}


# --------------------------------------------------------- conditions --

class BusyProcess:
    """A plain Python busy loop in its own process, for as long as the ``with`` block lasts."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        time.sleep(0.3)  # let it start spinning
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def _cgroup_mounts() -> dict:
    """{"cgroup2": mount point, "cpu": the v1 cpu controller's mount point}, from /proc/self/mountinfo."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        kind, _, options = (tail.split() + ["", "", ""])[:3]
        if kind == "cgroup2":
            found.setdefault("cgroup2", fields.split()[4])
        elif kind == "cgroup" and "cpu" in options.split(","):
            found.setdefault("cpu", fields.split()[4])
    return found


class OneCpuQuota:
    """A child cgroup limited to 1 CPU (v2 if its cpu controller is available, else v1); ``why_not`` if impossible.

    ``prefix`` is a command prefix that moves the worker into the cgroup
    before it starts: ``sh -c 'echo $$ > <cgroup.procs>; exec "$@"'``.
    """

    def __init__(self):
        self.folder, self.prefix, self.why_not = None, None, None

    def __enter__(self):
        reasons = []
        mounts = _cgroup_mounts() if Path("/proc/self/mountinfo").exists() else {}
        for kind, make in (("cgroup2", self._v2), ("cpu", self._v1)):
            if kind not in mounts:
                reasons.append(f"no {'cgroup v2' if kind == 'cgroup2' else 'cgroup v1 cpu'} mount")
                continue
            try:
                self.folder = make(Path(mounts[kind]))
                self.prefix = ["sh", "-c", f'echo $$ > {self.folder / "cgroup.procs"} && exec "$@"', "sh"]
                return self
            except OSError as err:
                reasons.append(f"{kind} at {mounts[kind]}: {err.strerror or err}")
                self._remove()
        self.why_not = "; ".join(reasons) or "no cgroup mounts"
        return self

    def _v2(self, mount: Path) -> Path:
        if "cpu" not in (mount / "cgroup.controllers").read_text().split():
            raise OSError(0, "the cpu controller is not enabled in this cgroup v2 hierarchy")
        folder = mount / CGROUP_NAME
        folder.mkdir()
        self.folder = folder
        (folder / "cpu.max").write_text("100000 100000\n")
        return folder

    def _v1(self, mount: Path) -> Path:
        folder = mount / CGROUP_NAME
        folder.mkdir()
        self.folder = folder
        (folder / "cpu.cfs_period_us").write_text("100000\n")
        (folder / "cpu.cfs_quota_us").write_text("100000\n")
        return folder

    def _remove(self):
        if self.folder is not None:
            try:
                self.folder.rmdir()  # the workers have exited, so the cgroup is empty
            except OSError:
                pass
        self.folder = None

    def __exit__(self, *exc):
        self._remove()


def measure(workload: str, args, prefix=(), env=None) -> dict:
    command = [*prefix, sys.executable, __file__, "--worker", workload, "--seconds", str(args.seconds),
               "--warmup", str(args.warmup)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit code %d" % done.returncode])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def conditions(args):
    """(name, reference row for its ratio, how to run it): each yields a function workload -> figures."""
    every_core = {"LLMEDU_THREADS": str(os.cpu_count())}
    rows = [("idle", "idle", lambda w: measure(w, args)),
            ("idle, 1 thread", "idle", lambda w: measure(w, args, env={"LLMEDU_THREADS": "1"})),
            ("pinned: taskset -c 0", "1 thread", lambda w: measure(w, args, prefix=["taskset", "-c", "0"]))]
    if args.before:
        rows.append(("pinned, every core's threads", "1 thread",
                     lambda w: measure(w, args, prefix=["taskset", "-c", "0"], env=every_core)))
    rows += [("one busy process", "idle", lambda w: _with_busy(lambda: measure(w, args))),
             ("one busy process, 1 thread", "idle",
              lambda w: _with_busy(lambda: measure(w, args, env={"LLMEDU_THREADS": "1"})))]
    if args.before:
        rows.append(("one busy process, every core's threads", "idle",
                     lambda w: _with_busy(lambda: measure(w, args, env=every_core))))
    rows.append(("1-CPU cgroup quota", "1 thread", lambda w: _with_quota(lambda q: measure(w, args, prefix=q.prefix))))
    if args.before:
        rows.append(("1-CPU quota, every core's threads", "1 thread",
                     lambda w: _with_quota(lambda q: measure(w, args, prefix=q.prefix, env=every_core))))
    return rows


def _with_busy(fn):
    with BusyProcess():
        return fn()


def _with_quota(fn):
    with OneCpuQuota() as quota:
        if quota.why_not:
            return {"error": f"no 1-CPU cgroup quota could be created: {quota.why_not}"}
        return fn(quota)


# ------------------------------------------------------------- report --

def table(results: dict) -> str:
    """One markdown table: each condition's tokens/s, threads and ratio, training and decoding side by side."""
    lines = ["| condition | threads | train tok/s | ratio | decode tok/s | ratio |", "|---|---|---|---|---|---|"]
    for name, (reference, figures) in results.items():
        cells = []
        for workload in WORKERS:
            f = figures[workload]
            if "error" in f:
                cells += [f"failed: {f['error']}", ""]
                continue
            base = results["idle" if reference == "idle" else "idle, 1 thread"][1][workload]
            ratio = f["tokens_per_s"] / base["tokens_per_s"] if "tokens_per_s" in base else float("nan")
            cells += [f"{f['tokens_per_s']:,.0f}", f"{ratio:.2f} vs {reference}"]
        threads = next((f"{f['threads_blas']} BLAS / {f['threads_numba']} Numba" for f in figures.values()
                        if "threads" in f), "-")
        lines.append(f"| {name} | {threads} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s per measurement: checks that everything runs")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per measurement (default 12)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing (default 3)")
    parser.add_argument("--before", action="store_true", help="also run the constrained conditions with "
                        "LLMEDU_THREADS=os.cpu_count(), as the libraries did before the policy")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.seconds = args.seconds or (1.0 if args.quick else 12.0)
    args.warmup = 1 if args.quick and args.warmup == 3 else args.warmup
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.seconds, args.warmup)))
        return

    busy = cpu_busy_fraction()
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; CPUs busy before the start: "
          + (f"{busy:.0%}" if busy is not None else "unknown") + " (the figures need an idle machine)", flush=True)
    results = {}
    for name, reference, run in conditions(args):
        results[name] = (reference, {workload: run(workload) for workload in WORKERS})
        print(f"  {name}: " + ", ".join(f"{w} {f.get('tokens_per_s', float('nan')):,.0f} tok/s"
                                        for w, f in results[name][1].items()), flush=True)
    idle = results["idle"][1]["train"]
    if "threads_reason" in idle:
        print(f"\nidle: threads {idle['threads']} ({idle['threads_reason']})")
    print("\n" + table(results))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
