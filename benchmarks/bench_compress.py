"""Benchmark the language-model compressor (lesson 08, ``08_frontiers``): bits per byte and throughput.

    python benchmarks/bench_compress.py                      # the whole held-out world text, shipped base model
    python benchmarks/bench_compress.py --bytes 4000         # its first 4,000 characters only (quick)
    python benchmarks/bench_compress.py --json assets/compress_held_out.json   # also write the figures (no timings)

On the held-out 10% of ``make_world(1337, n_people=300).text`` (as
``llmedu.evaluate`` and the speedrun score it), it reports, in bits per byte:

- the compressed file (header included) and its coded stream alone;
- the ideal code length of the integer frequencies and of the model's float64
  probabilities along the compressor's own context (the cross-entropy the
  coder should reach);
- ``llmedu.evaluate.bits_per_byte``, the model's cross-entropy as lesson 03
  measures it: fresh windows of max_seq_len tokens, each window's first token
  unscored. The compressor instead restarts from the last half-window when the
  window fills, so most tokens see more context, and it codes every token;
- gzip -9, bz2 -9 and lzma (``compressor_bits_per_byte``);

and the throughput in KB/s of compression and decompression (one run each,
after a warm-up that compiles the kernels). Decompression is verified bit for
bit. Timings need a quiet machine; the bits per byte do not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from llmedu import compress, kernels, threads
from llmedu.base_model import ASSETS, MODEL_NAME
from llmedu.data import split_text
from llmedu.evaluate import bits_per_byte, compressor_bits_per_byte
from llmedu.world import make_world


def held_out(seed: int, n_people: int, n_chars: int | None) -> str:
    text = split_text(make_world(seed, n_people=n_people).text)[1]
    return text if n_chars is None else text[:n_chars]


def half_window_bits_per_byte(params, config, tokenizer, text: str) -> float:
    """The model's cross-entropy (bits per byte) with the compressor's context: windows of max_seq_len tokens
    every max_seq_len // 2, each scoring its second half (the first window scores every token but the first)."""
    ids = np.array(tokenizer.encode(text), np.int64)
    T, half = config.max_seq_len, config.max_seq_len // 2
    bits, n_bytes = 0.0, 0
    for start in range(0, len(ids) - 1, half):
        window = ids[start:start + T + 1]  # (<= T + 1,): inputs and the next token of each
        logits = kernels.forward(params, config, window[:-1]).astype(np.float64)  # (t, vocab)
        logits -= logits.max(axis=-1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        first = 0 if start == 0 else half  # row j predicts token start + j + 1: later windows score their 2nd half
        targets = window[1:][first:]
        if len(targets) == 0:
            break
        bits -= log_p[np.arange(first, first + len(targets)), targets].sum() / np.log(2)
        n_bytes += len(tokenizer.decode_bytes(targets.tolist()))
    return bits / n_bytes


def measure(text: str, model_path) -> dict:
    """Bits per byte of every coder on ``text``, and the compressor's throughput."""
    params, config, tokenizer, sha = compress.load_model(model_path)
    data = text.encode("utf-8")
    compress.compress(b"warm up", params, config, tokenizer, sha)  # compile or load the kernels first
    trace = []
    start = time.perf_counter()
    blob = compress.compress(data, params, config, tokenizer, sha, trace=trace)
    compress_s = time.perf_counter() - start
    start = time.perf_counter()
    restored = compress.decompress(blob, params, config, tokenizer, sha)
    decompress_s = time.perf_counter() - start
    if restored != data:
        raise AssertionError("the round trip changed the text: a bug in llmedu.compress")
    stream = compress.read_header(blob)[1]
    n = len(data)
    figures = {
        "bytes": n,
        "tokens": len(trace),
        "file_bits_per_byte": 8 * len(blob) / n,
        "stream_bits_per_byte": 8 * len(stream) / n,
        "integer_frequencies_bits_per_byte": sum(q for _, q, _ in trace) / n,
        "model_bits_per_byte_compressor_context": sum(e for _, _, e in trace) / n,
        "model_bits_per_byte_half_windows": half_window_bits_per_byte(params, config, tokenizer, text),
        "model_bits_per_byte_evaluate": bits_per_byte(params, config, tokenizer, text),
        **{f"{name}_bits_per_byte": value for name, value in compressor_bits_per_byte(text).items()},
    }
    timings = {"compress_kb_per_s": n / 1000 / compress_s, "decompress_kb_per_s": n / 1000 / decompress_s}
    return figures, timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bytes", type=int, default=None, help="use only the first N characters of the held-out text")
    parser.add_argument("--model", default=str(ASSETS / MODEL_NAME), help="parameters file (default: shipped base)")
    parser.add_argument("--seed", type=int, default=1337, help="the world's seed (default 1337)")
    parser.add_argument("--people", type=int, default=300, help="the world's people (default 300)")
    parser.add_argument("--json", help="write the bits-per-byte figures (no timings) and the command to this file")
    args = parser.parse_args(argv)
    busy = threads.cpu_busy_fraction()
    print(f"CPU busy before the run: {busy:.0%}" if busy is not None else "CPU load unknown",
          f"| threads: {threads.apply()['threads']}", file=sys.stderr)
    text = held_out(args.seed, args.people, args.bytes)
    figures, timings = measure(text, args.model)
    print(f"held-out text: {figures['bytes']:,} bytes, {figures['tokens']:,} tokens")
    for key, value in figures.items():
        if "bits_per_byte" in key:
            print(f"  {key:40s} {value:.4f}")
    stream = figures["stream_bits_per_byte"]
    print(f"  coded stream vs the model's cross-entropy with the same context (half windows): "
          f"{stream / figures['model_bits_per_byte_half_windows'] - 1:+.1%}; vs evaluate.bits_per_byte (cold "
          f"windows, first token of each unscored): {stream / figures['model_bits_per_byte_evaluate'] - 1:+.1%}")
    for key, value in timings.items():
        print(f"  {key:40s} {value:.2f}")
    if args.json:
        command = "python benchmarks/bench_compress.py" + (f" --bytes {args.bytes}" if args.bytes else "")
        if args.model != parser.get_default("model"):
            command += f" --model {args.model}"
        record = {"command": command, "model": Path(args.model).name,
                  **{k: round(v, 6) if isinstance(v, float) else v for k, v in figures.items()}}
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
