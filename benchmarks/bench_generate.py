"""Benchmark decoding: tokens per second of the Numba kernels and of the numpy reference.

    python benchmarks/bench_generate.py                          # stories15m and stories110m
    python benchmarks/bench_generate.py --preset stories15m --repeat 5

Random weights (normal, std 0.02) in the shapes of llama2.c's TinyStories
models; greedy decoding (temperature 0) from a one-token prompt through
``llmedu.generate.generate``, so the figures include prefill, sampling and
the Python loop. Reported for each preset:

- tokens/s of the Numba path (best and median of ``--repeat`` runs),
- the same as a fraction of the machine's memory bandwidth: decoding reads
  every weight once per token, so bytes of weights x tokens/s is the
  bandwidth it uses;
- tokens/s of the numpy reference step (``fast=False``), one run;
- with vs without the KV cache (``use_cache=False`` re-runs the whole
  sequence each step), on fewer tokens, both runs on the same count;
- a profile: time per kernel, called one by one from Python.

Memory bandwidth is measured with a Numba kernel that sums a 1 GiB float32
array (read only, like the weights), on all threads and on one, reading one
stream per thread or four (as the matrix kernels do); the best of these is
the reference for the fraction of bandwidth the decode reaches.

Compile time is measured in fresh interpreters: first with an empty
temporary NUMBA_CACHE_DIR (cold), then again with the cache it wrote.

The machine may be shared: before each timed run the script waits (up to
``--quiet-timeout`` seconds) until other processes use under 10% of the
CPUs, and prints how busy the machine was, so a slow figure can be told from
a busy machine.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import numba
import numpy as np
from numba import njit, prange

from llmedu import kernels, model
from llmedu.generate import KVCache, generate
from llmedu.threads import cpu_busy_fraction

# Run in a subprocess: import, then the first calls (which compile or load).
_FIRST_USE = """
import time
t0 = time.perf_counter()
import numpy as np
from llmedu import kernels, model
from llmedu.generate import KVCache
t1 = time.perf_counter()
config = model.PRESETS["tiny"]
params = model.init_params(config)
kernels.step(params, config, 1, KVCache.empty(config))
kernels.forward(params, config, np.array([1, 2, 3]))
print(t1 - t0, time.perf_counter() - t1)
"""


# ------------------------------------------------------------ machine --

def print_header(argv) -> None:
    """The machine, the command line and the start time: the first lines of every benchmark's output."""
    print(f"machine: {machine()}")
    print(f"command: {' '.join([os.path.basename(sys.argv[0])] + (argv if argv is not None else sys.argv[1:]))}")
    print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S')}")


def machine():
    """lscpu's model name and core count, thread and library versions."""
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    except (OSError, subprocess.CalledProcessError):
        pass
    name = info.get("Model name", "unknown CPU").strip()
    cores = int(info.get("Core(s) per socket", "0").strip() or 0) * int(info.get("Socket(s)", "1").strip() or 1)
    return (f"{name}, {cores or '?'} cores, {os.cpu_count()} logical CPUs; numba {numba.__version__} "
            f"({numba.get_num_threads()} threads), numpy {np.__version__}, Python {sys.version.split()[0]}")


def wait_quiet(timeout, limit=0.10):
    """Wait until the CPUs are under ``limit`` busy, or ``timeout`` seconds; return the last reading."""
    start = time.perf_counter()
    while True:
        load = cpu_busy_fraction()
        if load is None or load < limit or time.perf_counter() - start > timeout:
            return load


def timed_runs(fn, repeat, quiet_timeout):
    """Wall seconds of ``repeat`` calls of fn(), each after waiting for a quiet machine; and the busy readings."""
    seconds, loads = [], []
    for _ in range(repeat):
        loads.append(wait_quiet(quiet_timeout))
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return seconds, loads


def fmt_busy(loads):
    known = [x for x in loads if x is not None]
    return f"busy before runs: {', '.join(f'{x:.0%}' for x in known)}" if known else "busy: unknown"


# ---------------------------------------------------------- bandwidth --

@njit(fastmath=True)
def _sum_row(a):
    acc = np.float32(0.0)
    for i in range(a.shape[0]):
        acc += a[i]
    return acc


@njit(fastmath=True)
def _sum_4_rows(a, b, c, d):
    acc = np.float32(0.0)
    for i in range(a.shape[0]):
        acc += a[i] + b[i] + c[i] + d[i]
    return acc


@njit(fastmath=True, parallel=True)
def _stream_sum(a):
    """Sum of a (n_rows, row) float32 array; each thread reads a contiguous run of rows, one stream."""
    partial = np.zeros(a.shape[0], np.float32)
    for r in prange(a.shape[0]):
        partial[r] = _sum_row(a[r])
    return partial.sum()


@njit(fastmath=True, parallel=True)
def _stream_sum_4(a):
    """The same sum reading the four quarters of the rows side by side, as kernels._matmul reads weights."""
    q = a.shape[0] // 4
    partial = np.zeros(q, np.float32)
    for r in prange(q):
        partial[r] = _sum_4_rows(a[r], a[r + q], a[r + 2 * q], a[r + 3 * q])
    return partial.sum()


def bandwidth(repeat, quiet_timeout, gib=1.0):
    """Read bandwidth in GB/s (best of ``repeat``): {(threads, streams per thread): (GB/s, busy readings)}."""
    # Rows of 768 floats, like the stories110m matrices; written once, so the pages are real.
    a = np.ones((int(gib * 2**30) // 4 // 768, 768), np.float32)
    threads, result = numba.get_num_threads(), {}
    for kernel, streams in ((_stream_sum, 1), (_stream_sum_4, 4)):
        kernel(a)  # compile
        for n in (threads, 1):
            numba.set_num_threads(n)
            seconds, loads = timed_runs(lambda: kernel(a), repeat, quiet_timeout)
            result[n, streams] = (a.nbytes / min(seconds) / 1e9, loads)
        numba.set_num_threads(threads)
    return result


# ------------------------------------------------------------ compile --

def first_use_seconds(cache_dir):
    """(import seconds, first step + forward seconds) in a new interpreter."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _FIRST_USE], env=env, check=True,
                         capture_output=True, text=True).stdout
    t_import, t_first = map(float, out.split())
    return t_import, t_first


def report_compile():
    with tempfile.TemporaryDirectory() as cache:
        cold = first_use_seconds(cache)
        cached = first_use_seconds(cache)
    print(f"import llmedu.kernels: {cold[0]:.2f} s (cold), {cached[0]:.2f} s (cached)")
    print(f"first kernels.step + kernels.forward (Numba compile): {cold[1]:.2f} s cold, {cached[1]:.2f} s cached")
    return cold, cached


# ------------------------------------------------------------ decoding --

def weight_bytes_per_token(config):
    """Bytes of weights one decoding step reads: every matrix and gain once, one embedding row."""
    shapes = model.param_shapes(config)
    n = sum(int(np.prod(s)) for name, s in shapes.items() if name != "tok_embeddings") + config.dim
    return 4 * n  # float32


def greedy(params, config, n, **kwargs):
    """Decode n tokens greedily from the prompt [1]; return them (the run is what is timed)."""
    out = list(generate(params, config, [1], max_new_tokens=n, temperature=0, **kwargs))
    assert len(out) == n, f"decoding stopped early: {len(out)} of {n} tokens"
    return out


def rate(params, config, n, repeat, quiet_timeout, **kwargs):
    """Tokens/s (best, median) of greedy decoding of n tokens, and the busy readings."""
    seconds, loads = timed_runs(lambda: greedy(params, config, n, **kwargs), repeat, quiet_timeout)
    return n / min(seconds), n / float(np.median(seconds)), loads


def profile(params, config, n, quiet_timeout):
    """Milliseconds per token spent in each kernel, calling them one by one as kernels._run_chunk does.

    The Python calls add a microsecond or two per kernel; the split is what matters.
    """
    emb, attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, norm, output = kernels._weights(params, config)
    cos, sin = kernels._rope_f32(config.head_dim, config.max_seq_len, config.rope_theta)
    eps, D = np.float32(config.norm_eps), config.dim
    h, q, mixed = (np.empty((1, D), np.float32) for _ in range(3))
    hidden = np.empty((1, config.hidden_dim), np.float32)
    scores = np.empty((config.n_heads, config.max_seq_len), np.float32)
    logits = np.empty((1, config.vocab_size), np.float32)
    spent, cache, token = defaultdict(float), KVCache.empty(config), 1
    wait_quiet(quiet_timeout)
    for pos in range(n):
        x = emb[token][None].copy()  # (1, D)
        for layer in range(config.n_layers):
            k, v = cache.keys[layer, pos:pos + 1], cache.values[layer, pos:pos + 1]
            calls = [
                ("rmsnorm", kernels._rmsnorm, (x, attn_norm[layer], eps, h)),
                ("qkv", kernels._qkv, (h, wq[layer], wk[layer], wv[layer], q, k, v)),
                ("rope", kernels._rope, (q, cos, sin, pos, config.head_dim)),
                ("rope", kernels._rope, (k, cos, sin, pos, config.head_dim)),
                ("attention", kernels._attention, (q, cache.keys[layer], cache.values[layer], pos,
                                                   config.n_kv_heads, scores, mixed)),
                ("wo", kernels._matmul, (mixed, wo[layer], x, True)),
                ("rmsnorm", kernels._rmsnorm, (x, ffn_norm[layer], eps, h)),
                ("w1 w3 (SwiGLU)", kernels._swiglu_hidden, (h, w1[layer], w3[layer], hidden)),
                ("w2", kernels._matmul, (hidden, w2[layer], x, True)),
            ]
            for name, fn, args in calls:
                t0 = time.perf_counter()
                fn(*args)
                spent[name] += time.perf_counter() - t0
        t0 = time.perf_counter()
        kernels._rmsnorm(x, norm, eps, x)
        kernels._matmul(x, output, logits, False)
        spent["classifier"] += time.perf_counter() - t0
        token = int(np.argmax(logits))
    return {name: s / n * 1e3 for name, s in spent.items()}


def matrix_bytes(config):
    """Bytes of weights read per token by each profiled matmul kernel."""
    L, D, H, kv = config.n_layers, config.dim, config.hidden_dim, config.kv_dim
    return {"qkv": 4 * L * (D + 2 * kv) * D, "wo": 4 * L * D * D, "w1 w3 (SwiGLU)": 4 * L * 2 * H * D,
            "w2": 4 * L * D * H, "classifier": 4 * config.vocab_size * D}


# ------------------------------------------------------------- report --

TARGETS = {"stories15m": 281.0, "stories110m": 39.0}  # llama2.c run.c, OpenMP, 2 threads, float32


def report_preset(name, args, read_gbps):
    config = model.PRESETS[name]
    params = model.init_params(config, seed=0, std=0.02)
    n = min(args.tokens, config.max_seq_len - 1)  # prompt + new tokens must fit in max_seq_len
    per_token = weight_bytes_per_token(config)
    print(f"\n== {name}: {model.count_params(params) / 1e6:.1f}M parameters, "
          f"{per_token / 1e6:.1f} MB of weights read per token")
    greedy(params, config, 2)  # load the compiled kernels
    best, median, loads = rate(params, config, n, args.repeat, args.quiet_timeout)
    target = TARGETS.get(name)
    verdict = f" (target >= {target:.0f}: {'met' if best >= target else 'NOT met'})" if target else ""
    print(f"Numba, KV cache: {best:.1f} tok/s best, {median:.1f} median of {args.repeat} runs of {n} tokens"
          f"{verdict}; {fmt_busy(loads)}")
    used = per_token * best / 1e9
    print(f"  bandwidth used: {used:.1f} GB/s = {used / read_gbps:.0%} of the best measured {read_gbps:.1f} GB/s")
    n_ref = min(n, args.ref_tokens)
    ref, _, loads = rate(params, config, n_ref, 1, args.quiet_timeout, fast=False)
    print(f"numpy reference step, KV cache: {ref:.1f} tok/s on {n_ref} tokens "
          f"(Numba {best / ref:.1f}x faster); {fmt_busy(loads)}")
    n_nc = min(n, args.no_cache_tokens)
    with_cache, _, _ = rate(params, config, n_nc, args.repeat, args.quiet_timeout)
    without, _, loads = rate(params, config, n_nc, 1, args.quiet_timeout, use_cache=False)
    print(f"Numba on {n_nc} tokens: {with_cache:.1f} tok/s with the KV cache, {without:.1f} tok/s without "
          f"(whole sequence re-run each step): {with_cache / without:.1f}x; {fmt_busy(loads)}")
    profile(params, config, 2, 0)  # compile the kernels' entry points from Python
    spent = profile(params, config, n, args.quiet_timeout)
    total, sizes = sum(spent.values()), matrix_bytes(config)
    print(f"profile over {n} tokens, kernels called one by one ({1e3 / total:.1f} tok/s this way):")
    for kernel, ms in sorted(spent.items(), key=lambda kv: -kv[1]):
        gbps = f", {sizes[kernel] / ms / 1e6:5.1f} GB/s" if kernel in sizes else ""
        print(f"  {kernel:15s} {ms:7.3f} ms/token {ms / total:6.1%}{gbps}")
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=sorted(TARGETS),
                        help="model shape (repeatable; default: both)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens to decode (capped at max_seq_len - 1)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of the Numba decode (best and median)")
    parser.add_argument("--ref-tokens", type=int, default=256, help="tokens for the numpy reference")
    parser.add_argument("--no-cache-tokens", type=int, default=32, help="tokens for the run without KV cache")
    parser.add_argument("--quiet-timeout", type=float, default=30.0,
                        help="seconds to wait for other processes to go quiet before each run")
    args = parser.parse_args(argv)
    print_header(argv)
    report_compile()
    bw = bandwidth(args.repeat, args.quiet_timeout)
    print(f"memory bandwidth, Numba sum of a 1 GiB float32 array (read only), best of {args.repeat}:")
    for (threads, streams), (gbps, loads) in bw.items():
        print(f"  {threads} thread(s), {streams} stream(s) per thread: {gbps:.1f} GB/s; {fmt_busy(loads)}")
    peak = max(gbps for gbps, _ in bw.values())
    for name in args.preset or ["stories15m", "stories110m"]:
        report_preset(name, args, peak)
    print(f"\nfinished: {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()
