"""Benchmark the BPE tokenizer: Numba compile time, training, encoding.

    python benchmarks/bench_tokenizer.py                     # built-in sample
    python benchmarks/bench_tokenizer.py --text corpus.txt   # any UTF-8 file

Times are the best of ``--repeat`` runs (default 3) after a warm-up call, so
they exclude compilation. Compile time is measured in fresh subprocesses:
first with an empty Numba cache directory (cold), then again with the cache
the first one wrote (cached).
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import regex

from llmedu import bpe, bpe_fast, pretokenize
from llmedu.tokenizer import GPT4_SPLIT_PATTERN, BPETokenizer, sample_text

# Run in a subprocess: import, then the first calls (which compile or load).
_FIRST_USE = """
import time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
from llmedu import bpe_fast
t1 = time.perf_counter()
merges = bpe_fast.train("hello hello world, it's 2024! \\u4f60\\u597d", 270)
bpe_fast.encode("hello world", merges)
print(t1 - t0, time.perf_counter() - t1)
"""


def first_use_seconds(cache_dir):
    """(import seconds, first train + encode seconds) in a new interpreter."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_USE], env=env, check=True, capture_output=True, text=True
    ).stdout
    t_import, t_first = map(float, out.split())
    return t_import, t_first


def best_time(fn, repeat):
    """Smallest wall time of ``repeat`` calls of fn(), and its last result."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def machine():
    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def report_compile():
    with tempfile.TemporaryDirectory() as cache:
        cold = first_use_seconds(cache)
        cached = first_use_seconds(cache)
    print(f"import llmedu.bpe_fast: {cold[0]:.2f} s (cold), {cached[0]:.2f} s (cached)")
    print(f"first train + encode (Numba compile): {cold[1]:.2f} s cold, {cached[1]:.2f} s cached")


def report_split(text, n_bytes, repeat):
    """Where encoding time goes before any merge: splitting, finding repeats."""
    t_regex, _ = best_time(lambda: regex.findall(GPT4_SPLIT_PATTERN, text), repeat)
    t_split, _ = best_time(lambda: pretokenize.chunk_spans(text), repeat)
    buf, bounds = pretokenize.chunk_spans(text)
    t_unique, (_, first) = best_time(lambda: bpe_fast._unique_spans(buf, bounds), repeat)
    print(f"split with regex.findall: {t_regex:.3f} s ({n_bytes / t_regex / 1e6:.1f} MB/s)")
    print(f"split with bpe_fast:      {t_split:.3f} s ({n_bytes / t_split / 1e6:.1f} MB/s)")
    print(
        f"find distinct chunks:     {t_unique:.3f} s "
        f"({len(bounds) - 1:,} chunks, {len(first):,} distinct)"
    )


def report_vocab(text, n_bytes, vocab_size, repeat):
    t_train, tok = best_time(lambda: BPETokenizer.train(text, vocab_size), repeat)
    t_enc, ids = best_time(lambda: tok.encode(text), repeat)
    # The same pattern wrapped in a group is not == GPT4_SPLIT_PATTERN, so
    # bpe_fast falls back to regex.findall: what encoding would cost without
    # the hand-written splitter.
    via_regex = BPETokenizer(tok.merges, pattern=f"(?:{GPT4_SPLIT_PATTERN})")
    t_regex_enc, ids_regex = best_time(lambda: via_regex.encode(text), repeat)
    assert ids_regex == ids, "the regex path and the fast splitter disagree"
    print(
        f"vocab {vocab_size} ({len(tok.merges)} merges): train {t_train:.3f} s, "
        f"encode {t_enc:.3f} s = {n_bytes / t_enc / 1e6:.1f} MB/s "
        f"(split by regex: {n_bytes / t_regex_enc / 1e6:.1f} MB/s), "
        f"{n_bytes / len(ids):.2f} bytes/token"
    )


def report_reference(prefix, repeat):
    t0 = time.perf_counter()
    reference = bpe.train(prefix, 512)
    t_ref = time.perf_counter() - t0
    t_fast, fast = best_time(lambda: bpe_fast.train(prefix, 512), repeat)
    assert fast == reference, "bpe_fast and bpe disagree"
    print(
        f"reference bpe.train on the first {len(prefix):,} characters to vocab 512: "
        f"{t_ref:.2f} s (bpe_fast: {t_fast:.4f} s, {t_ref / t_fast:.0f}x faster, same merges)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", help="UTF-8 text file (default: the built-in sample)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best is kept)")
    parser.add_argument("--prefix", type=int, default=20_000, help="characters for the reference")
    args = parser.parse_args(argv)
    if args.text:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    else:
        text = sample_text()
    n_bytes = len(text.encode("utf-8"))
    print(f"machine: {machine()}")
    print(f"text: {args.text or 'built-in sample'}, {len(text):,} characters, {n_bytes:,} bytes")
    report_compile()
    warnings.simplefilter("ignore")  # small texts may stop training early
    BPETokenizer.train("warm up warm up", 300).encode("warm up")  # compile (or load) here
    report_split(text, n_bytes, args.repeat)
    for vocab_size in (1024, 4096):
        report_vocab(text, n_bytes, vocab_size, args.repeat)
    report_reference(text[: args.prefix], args.repeat)


if __name__ == "__main__":
    main()
