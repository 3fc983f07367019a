"""Benchmark int8 (Q8_0) parameters: file size, quality, agreement with float32 and runq.c, decode speed.

    python benchmarks/bench_quantize.py                             # everything but runq.c
    python benchmarks/bench_quantize.py --runq /tmp/runq/runq_ids   # and agreement with runq.c
    python benchmarks/bench_quantize.py --tokens 16 --repeat 1 --preset stories15m --agree-tokens 16   # a smoke run

Lesson 08 (``08_frontiers``) reads its speed figures from the output of this
script (recorded in benchmarks/README.md). Reported:

- file size of float32, float16 and runq.c's int8 file (``llmedu.quantize.
  file_bytes``, the bytes ``export_llama2c_q8`` writes) for the shipped base
  model and the stories15m / stories110m shapes;
- held-out bits per byte of the shipped base model with float32 weights and
  with dequantised int8 weights, on the held-out text its card names;
- greedy agreement, int8 path vs float32 path, on the shipped model: for
  each prompt, the new tokens equal before the first difference;
- decode tok/s of the int8 path (``quantize_kernels.step_q8``) and the
  float32 path (``llmedu.kernels``, through ``generate``) on random weights
  in the stories15m and stories110m shapes; both decode greedily from the
  prompt [1], and the machine is waited on as in bench_generate.py;
- with ``--runq PATH``: agreement of greedy tokens with runq.c on the same
  file, for the shipped model and random stories15m-shaped weights. runq.c
  reads a text prompt through a tokenizer.bin, so PATH must be a build of
  runq.c whose main is patched to take ``model.bin n_new id id ...`` and print
  the greedy ids (forward pass unchanged); build it with gcc -O3 -fopenmp
  (and -Ofast) outside the repository.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_generate import fmt_busy, greedy, print_header, timed_runs  # noqa: E402  (the shared timing helpers)

from llmedu import model  # noqa: E402
from llmedu.base_model import held_out_text, load_base_model  # noqa: E402
from llmedu.evaluate import bits_per_byte  # noqa: E402
from llmedu.generate import generate  # noqa: E402
from llmedu.gguf_export import agreement  # noqa: E402
from llmedu.quantize import (dequantize_params, export_llama2c_q8, file_bytes, generate_q8,  # noqa: E402
                             group_size_for, quantize_params)
from llmedu.quantize_kernels import prepare  # noqa: E402
from llmedu.world import make_world  # noqa: E402


def prompts(tokenizer, n):
    """n prompts from the world the shipped model read: a birth-year question each, from its people."""
    world = make_world(1337, n_people=300)
    return [tokenizer.encode(f"{person.name} was born in") for person in world.people[:n]]


def report_sizes(base_config):
    print("\n== file size: float32, float16, int8 (runq.c's file, scales included)")
    for name, config in (("base model", base_config), ("stories15m", model.PRESETS["stories15m"]),
                         ("stories110m", model.PRESETS["stories110m"])):
        n = sum(int(np.prod(shape)) for shape in model.param_shapes(config).values())
        int8 = file_bytes(config)
        print(f"  {name:12s} {n / 1e6:6.2f}M params: float32 {4 * n / 1e6:7.2f} MB, float16 {2 * n / 1e6:7.2f} MB, "
              f"int8 {int8 / 1e6:7.2f} MB (group size {group_size_for(config)}; {int8 / (4 * n):.1%} of float32)")


def report_quality(params, config, tokenizer, card, args):
    print("\n== shipped base model: held-out bits per byte, greedy agreement int8 vs float32")
    text = held_out_text(card)
    deq = dequantize_params(quantize_params(params, config))
    print(f"  bits per byte: float32 {bits_per_byte(params, config, tokenizer, text):.6f}, "
          f"dequantised int8 weights {bits_per_byte(deq, config, tokenizer, text):.6f} "
          f"({len(text.encode('utf-8'))} held-out bytes)")
    runs = []
    for ids in prompts(tokenizer, args.prompts):
        int8 = generate_q8(params, config, ids, max_new_tokens=args.agree_tokens)
        float32 = list(generate(params, config, ids, max_new_tokens=args.agree_tokens, temperature=0))
        runs.append(agreement(int8, float32))
    print(f"  greedy tokens equal before the first difference, int8 path vs float32, {len(runs)} prompts of "
          f"{args.agree_tokens} new tokens: {runs} (all {args.agree_tokens}: {sum(r == args.agree_tokens for r in runs)})")


def report_runq(params, config, tokenizer, args):
    print(f"\n== agreement with runq.c ({args.runq}): greedy tokens equal before the first difference")
    random_config = model.PRESETS["stories15m"]
    cases = [("shipped base model", params, config, prompts(tokenizer, args.prompts)),
             ("random stories15m", model.init_params(random_config, seed=0, std=0.02), random_config,
              [[1], [1, 500], [1, 900, 37], [1, 4000, 12, 7]][:args.prompts])]
    with tempfile.TemporaryDirectory() as folder:
        for name, p, c, cases_ids in cases:
            path = os.path.join(folder, "model.bin")
            export_llama2c_q8(path, p, c)
            runs = []
            for ids in cases_ids:
                n = min(args.agree_tokens, c.max_seq_len - len(ids))
                ours = generate_q8(p, c, ids, max_new_tokens=n)
                out = subprocess.run([args.runq, path, str(n), *map(str, ids)], capture_output=True, text=True,
                                     check=True).stdout.split()
                runs.append(agreement(ours, [int(t) for t in out]))
            print(f"  {name}: {runs} of {n} tokens")


def report_speed(name, args):
    config = model.PRESETS[name]
    params = model.init_params(config, seed=0, std=0.02)
    weights = prepare(quantize_params(params, config), config)  # quantised and checked once, not timed
    n = min(args.tokens, config.max_seq_len - 1)
    greedy(params, config, 2)  # load the compiled kernels
    generate_q8(weights, config, [1], max_new_tokens=2)
    f32, f32_loads = timed_runs(lambda: greedy(params, config, n), args.repeat, args.quiet_timeout)
    q8, q8_loads = timed_runs(lambda: generate_q8(weights, config, [1], max_new_tokens=n), args.repeat,
                              args.quiet_timeout)
    best32, best8 = n / min(f32), n / min(q8)
    print(f"\n== {name} decode, {n} tokens, best of {args.repeat} (group size {group_size_for(config)})")
    print(f"  float32 (llmedu.kernels): {best32:.1f} tok/s; {fmt_busy(f32_loads)}")
    print(f"  int8 (quantize_kernels):  {best8:.1f} tok/s = {best8 / best32:.2f}x; {fmt_busy(q8_loads)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=("stories15m", "stories110m"),
                        help="model shape for the speed runs (repeatable; default: both)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens to decode in the speed runs")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per path (best reported)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts for the agreement figures")
    parser.add_argument("--agree-tokens", type=int, default=64, help="new tokens per prompt for agreement")
    parser.add_argument("--runq", help="a runq.c build taking ids (see the docstring) for the agreement with it")
    parser.add_argument("--skip-speed", action="store_true", help="sizes, quality and agreement only")
    parser.add_argument("--quiet-timeout", type=float, default=30.0,
                        help="seconds to wait for other processes to go quiet before each timed run")
    args = parser.parse_args(argv)
    print_header(argv)
    params, config, tokenizer, card = load_base_model()
    report_sizes(config)
    report_quality(params, config, tokenizer, card, args)
    if args.runq:
        report_runq(params, config, tokenizer, args)
    if not args.skip_speed:
        for name in args.preset or ["stories15m", "stories110m"]:
            report_speed(name, args)
    print(f"\nfinished: {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()
