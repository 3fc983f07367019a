"""The ``llmedu`` command: ``speedrun``, ``course build``, ``grade``, ``pretrain``, ``sample``, ``export``, ``info``, ``arena``,
and lesson 08's ``scaling``, ``system2``, ``compress``/``decompress`` and ``images``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _speedrun(args) -> int:
    from llmedu.speedrun import speedrun

    out_dir = speedrun(Path(args.out), name=args.name, quick=args.quick, seed=args.seed)
    print((out_dir / "report.md").read_text(encoding="utf-8"))
    print(f"Report written to {out_dir / 'report.md'} and {out_dir / 'report.json'}")
    return 0


def _course_build(args) -> int:
    from llmedu.course import build_lessons

    for path in build_lessons(Path(args.solutions), Path(args.lessons)):
        print(f"wrote {path}")
    return 0


def _course_execute(args) -> int:
    import os

    from llmedu.course import notebook_json, read_notebook
    from llmedu.grade import execute

    for notebook in map(Path, args.notebooks):
        executed = execute(read_notebook(notebook), notebook.resolve().parent, args.timeout)
        temporary = notebook.with_name(f".{notebook.name}.tmp")
        temporary.write_text(notebook_json(executed), encoding="utf-8")
        os.replace(temporary, notebook)
        print(f"executed {notebook}")
    return 0


def _grade(args) -> int:
    from llmedu.grade import GradingError, as_dicts, format_table, grade

    grades = []
    for notebook in map(Path, args.notebooks):
        if not notebook.is_file():
            print(f"llmedu grade: no notebook at {notebook}", file=sys.stderr)
            return 2
        try:
            grades.append(grade(notebook, cell_timeout=args.timeout))
        except GradingError as error:
            print(f"llmedu grade: {error}", file=sys.stderr)
            return 2
    print(json.dumps(as_dicts(grades), indent=2, ensure_ascii=False) if args.json else format_table(grades))
    return 0 if all(r.passed for graded in grades for r in graded.results) else 1


def info_lines() -> list[str]:
    """Versions, the machine, and the threads BLAS and Numba got and why (``llmedu info``; ``llmedu.threads``)."""
    import platform

    import numba
    import numpy

    from llmedu import __version__, threads

    chosen = threads.apply()
    return [f"llmedu {__version__}, numpy {numpy.__version__}, numba {numba.__version__}, "
            f"Python {platform.python_version()} ({platform.machine()})",
            f"threads: {chosen['threads']} ({chosen['threads_reason']})",
            f"  BLAS {chosen['threads_blas']}, Numba {chosen['threads_numba']} "
            f"(Numba's pool: {numba.config.NUMBA_NUM_THREADS}); os.cpu_count() says {chosen['cpu_count']}",
            f"  override with {threads.ENV}=<n>"]


def _info(args) -> int:
    try:
        print("\n".join(info_lines()))
    except ValueError as err:  # a bad LLMEDU_THREADS; the message says how to fix it
        print(f"llmedu info: {err}", file=sys.stderr)
        return 2
    return 0


class _Version(argparse.Action):
    """``--version``: the same lines as ``llmedu info``, computed only when asked for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print versions and the threads chosen, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(_info(namespace))


# --pretrain flag -> TrainConfig field; nanoGPT's names where the two overlap
PRETRAIN_FLAGS = {
    "data": (str, "UTF-8 text file to train on (first 90%% train, last 10%% validation)"),
    "tokenizer": (str, "char: one id per character, or bpe (default char)"),
    "vocab_size": (int, "bpe vocabulary size (default 512)"),
    "n_layers": (int, "transformer blocks (default 4)"),
    "n_heads": (int, "attention heads (default 4)"),
    "n_kv_heads": (int, "key/value heads (default: n_heads)"),
    "dim": (int, "model width (default 128)"),
    "hidden_dim": (int, "feed-forward width (default: 8/3 dim, rounded up to a multiple of 8)"),
    "seq_len": (int, "tokens per training window (default 64)"),
    "batch_size": (int, "windows per micro-batch (default 12)"),
    "grad_accum": (int, "micro-batches per optimizer step (default 1)"),
    "max_iters": (int, "optimizer steps (default 2000)"),
    "lr": (float, "peak learning rate (default 0.001)"),
    "min_lr": (float, "learning rate at the end of the cosine (default 0.0001)"),
    "warmup_iters": (int, "steps of linear warm-up (default 100)"),
    "lr_decay_iters": (int, "step where the cosine reaches min_lr (default: max_iters)"),
    "weight_decay": (float, "AdamW weight decay (default 0.1)"),
    "beta1": (float, "AdamW beta1 (default 0.9)"),
    "beta2": (float, "AdamW beta2 (default 0.99)"),
    "grad_clip": (float, "max global gradient norm, 0 for none (default 1.0)"),
    "eval_interval": (int, "steps between evaluations and checkpoints (default 250)"),
    "eval_iters": (int, "batches per split per evaluation (default 20)"),
    "seed": (int, "seed for the parameters and the batches (default 1337)"),
    "out": (str, "run folder for the checkpoint and log.jsonl (default runs/pretrain)"),
}


def _pretrain(args) -> int:
    start = time.perf_counter()  # the log's elapsed_s counts from here
    from llmedu.train import NonFiniteLoss, TrainConfig, train
    from llmedu.train_state import load_state

    given = {name: getattr(args, name) for name in PRETRAIN_FLAGS if getattr(args, name) is not None}
    try:
        if args.resume:  # flags not given come from the checkpoint; flags given must agree with it
            stored = load_state(given.get("out", TrainConfig.__dataclass_fields__["out"].default)).train_config
            config = TrainConfig(**{**stored, **given})
        elif "data" not in given:
            raise ValueError("--data is required: the path of a UTF-8 text file to train on.")
        else:
            config = TrainConfig(**given)
        result = train(config, resume=args.resume, progress=not args.no_progress, start_time=start)
    except NonFiniteLoss as err:
        print(f"llmedu pretrain: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:  # bad data, config, or checkpoint; the message says which
        print(f"llmedu pretrain: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training began, or a second Ctrl-C while stopping
        print("llmedu pretrain: interrupted; the folder keeps its last complete checkpoint, if any.", file=sys.stderr)
        return 130
    if result.interrupted:
        print(f"Interrupted at step {result.step}; checkpoint saved in {result.out_dir}. "
              f"Continue with: llmedu pretrain --out {result.out_dir} --resume")
        return 130  # the shell's code for "stopped by Ctrl-C"
    final = f", val loss {result.evals[-1]['val_loss']:.4f}" if result.evals else ""
    print(f"Done: step {result.step}{final} in {result.elapsed_s:.1f} s. Parameters in {result.out_dir}/model.safetensors; "
          f"try: llmedu sample --ckpt {result.out_dir} --prompt 'Hello'")
    return 0


def _sample(args) -> int:
    from llmedu.sample import load_run, sample_ids

    try:
        params, config, tokenizer, _ = load_run(args.ckpt)
        sampler = sample_ids
        if args.quantize == "q8":  # runq.c's int8 path (lesson 08); it decodes within the context window only
            from llmedu.quantize import sample_ids_q8 as sampler
        new = sampler(params, config, tokenizer.encode(args.prompt), max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        print(args.prompt + tokenizer.decode(list(new)))
    except ValueError as err:
        print(f"llmedu sample: {err}", file=sys.stderr)
        return 2
    return 0


def _sft(args) -> int:
    start = time.perf_counter()
    from llmedu.sft import sft_config, write_sft_files
    from llmedu.train import NonFiniteLoss, train
    from llmedu.train_state import load_state

    try:
        if args.resume:
            from llmedu.train import TrainConfig

            config = TrainConfig(**load_state(args.out).train_config)
        else:
            if args.base is None:
                from llmedu.base_model import ASSETS, MODEL_NAME

                args.base = str(ASSETS / MODEL_NAME)  # the shipped base model
            if args.data is None:
                from llmedu.world import make_world

                world = make_world(args.world_seed, n_people=args.world_people)
                args.data = write_sft_files(args.out, world)[0]
                if args.replay is None:  # replay the text the base model read
                    args.replay = str(Path(args.out) / "world.txt")
                    Path(args.replay).write_text(world.text, encoding="utf-8")
            fraction = args.replay_fraction if args.replay_fraction is not None else 0.5 * (args.replay is not None)
            config = sft_config(args.base, args.data, args.out, steps=args.steps, lr=args.lr,
                                batch_size=args.batch_size, seed=args.seed, replay=args.replay, replay_fraction=fraction)
        result = train(config, resume=args.resume, progress=not args.no_progress, start_time=start)
    except NonFiniteLoss as err:
        print(f"llmedu sft: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:  # bad base file, data line or checkpoint; the message says which
        print(f"llmedu sft: {err}", file=sys.stderr)
        return 2
    if result.interrupted:
        print(f"Interrupted at step {result.step}; continue with: llmedu sft --out {result.out_dir} --resume")
        return 130
    print(f"Done: step {result.step}, val loss {result.evals[-1]['val_loss']:.4f} in {result.elapsed_s:.1f} s. "
          f"Talk to it: llmedu chat --model {result.out_dir}")
    return 0


def _chat(args) -> int:
    from llmedu.chat_cli import run_chat

    return run_chat(args)


def _export(args) -> int:
    """``llmedu export PARAMS_FILE OUT --format gguf|llama2c|llama2c-q8``: the model in another program's format
    (lessons 00 and 08)."""
    try:
        if args.format == "llama2c-q8":
            if args.dtype != "f32":
                raise ValueError(f"--dtype {args.dtype}: llama2c-q8 is always int8 (Q8_0) with float32 norms; drop --dtype.")
            from llmedu.checkpoint import load_params
            from llmedu.quantize import export_llama2c_q8

            params, config, _ = load_params(args.params_file)
            group_size = export_llama2c_q8(args.out, params, config)
            print(f"wrote {args.out} (llama2.c version 2 for runq.c, int8 Q8_0, group size {group_size})")
            return 0
        if args.format == "llama2c":
            if args.dtype != "f32":
                raise ValueError(f"--dtype {args.dtype}: llama2.c's version-0 format holds float32 only; drop --dtype.")
            from llmedu.checkpoint import export_llama2c, load_params

            params, config, _ = load_params(args.params_file)
            export_llama2c(args.out, params, config)
            print(f"wrote {args.out} (llama2.c version 0, f32)")
            return 0
        from llmedu.gguf_export import export_gguf

        kinds = export_gguf(args.params_file, args.out, args.dtype)
    except (ValueError, OSError) as err:  # a bad file or dtype; the message says which
        print(f"llmedu export: {err}", file=sys.stderr)
        return 2
    fallback = sorted(name for name, kind in kinds.items() if args.dtype == "q8_0" and kind == "f16")
    print(f"wrote {args.out} (GGUF, {args.dtype}, {len(kinds)} tensors)")
    if fallback:
        print(f"  {len(fallback)} tensors in f16, their rows not a multiple of 32: {', '.join(fallback)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmedu", description="llmedu: an LLM from scratch, one lesson at a time.")
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("speedrun", help="run the whole course pipeline and write a report under runs/")
    run.add_argument("--quick", action="store_true", help="a small, fast run (what the tests use)")
    run.add_argument("--out", default="runs", help="folder for runs (default: runs)")
    run.add_argument("--name", default=None, help="run name (default: speedrun, or quick with --quick)")
    run.add_argument("--seed", type=int, default=1337, help="seed for everything random")
    run.set_defaults(handler=_speedrun)

    course = commands.add_parser("course", help="course authoring tools")
    course_commands = course.add_subparsers(dest="course_command", required=True)
    build = course_commands.add_parser("build", help="generate lessons/ from solutions/")
    build.add_argument("--solutions", default="solutions")
    build.add_argument("--lessons", default="lessons")
    build.set_defaults(handler=_course_build)

    execute = course_commands.add_parser("execute", help="run notebooks top to bottom and save their outputs in place")
    execute.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    execute.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per cell")
    execute.set_defaults(handler=_course_execute)

    grading = commands.add_parser("grade", help="run submitted notebooks in a fresh kernel and grade each exercise")
    grading.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    grading.add_argument("--json", action="store_true", help="print results as JSON")
    grading.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per cell (default 300)")
    grading.set_defaults(handler=_grade)

    pretrain = commands.add_parser("pretrain", help="train a model on a text file (lesson 03), with checkpoints and resume")
    for name, (kind, text) in PRETRAIN_FLAGS.items():
        pretrain.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=text,
                              choices=("char", "bpe") if name == "tokenizer" else None)
    pretrain.add_argument("--resume", action="store_true", help="continue the run saved in --out (flags not given are taken from it)")
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bar (evaluations are still printed)")
    pretrain.set_defaults(handler=_pretrain)

    sample = commands.add_parser("sample", help="continue a prompt with a trained model")
    sample.add_argument("--ckpt", required=True, help="run folder (or its model.safetensors)")
    sample.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    sample.add_argument("--max-new-tokens", type=int, default=500)
    sample.add_argument("--temperature", type=float, default=0.8, help="0: greedy; below 1: more conservative")
    sample.add_argument("--top-k", type=int, default=200, help="sample among the k most likely tokens")
    sample.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold in (0, 1]")
    sample.add_argument("--seed", type=int, default=1337)
    sample.add_argument("--quantize", choices=("q8",), default=None,
                        help="q8: decode with int8 (Q8_0) weights and activations, as runq.c (lesson 08); "
                             "prompt + new tokens must fit in the context window")
    sample.set_defaults(handler=_sample)

    sft = commands.add_parser("sft", help="fine-tune a parameters file into an assistant (lesson 04), with checkpoints and resume")
    sft.add_argument("--base", help="the parameters file to start from (default: the shipped base model)")
    sft.add_argument("--out", default="runs/sft", help="run folder (default runs/sft)")
    sft.add_argument("--data", help="JSON Lines file of conversations (default: made from the world, written to --out)")
    sft.add_argument("--replay", help="pretraining text to mix into the batches (default: the world's text when "
                     "--data is not given, else none)")
    sft.add_argument("--replay-fraction", type=float, help="share of training rows that are replayed text "
                     "(default 0.5 when there is a replay text; 0 turns replay off)")
    sft.add_argument("--steps", type=int, default=240, help="optimizer steps (default 240)")
    sft.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 0.001)")
    sft.add_argument("--batch-size", type=int, default=16, help="packed rows per step (default 16)")
    sft.add_argument("--seed", type=int, default=1337, help="seed for the batches (default 1337)")
    sft.add_argument("--world-seed", type=int, default=1337, help="the world the base model read (default 1337)")
    sft.add_argument("--world-people", type=int, default=300, help="its number of people (default 300)")
    sft.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    sft.add_argument("--no-progress", action="store_true", help="no progress bar")
    sft.set_defaults(handler=_sft)

    talk = commands.add_parser("chat", help="talk to a chat model in the terminal, or answer prompts (lesson 04)")
    talk.add_argument("--model", help="a parameters file or run folder (default: the shipped chat model)")
    talk.add_argument("-p", "--prompt", help="answer this one question and print only the reply")
    talk.add_argument("--prompts", help="answer every line of this file as a fresh conversation")
    talk.add_argument("--json", action="store_true", help="with --prompts: print a JSON list of {prompt, reply}")
    talk.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy, the same answer every time")
    talk.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold in (0, 1]")
    talk.add_argument("--seed", type=int, default=1337)
    talk.add_argument("--max-new-tokens", type=int, default=None, help="the reply's length limit (default 128; "
                      "with --tools 256, as tool results count too)")
    talk.add_argument("--tools", help="let the model call tools, e.g. calculator,search (default model: the shipped "
                      "tool model); calls and results are shown, and listed in --json (lesson 06)")
    talk.add_argument("--world-seed", type=int, default=1337, help="with --tools: the world whose pages search reads "
                      "(default 1337, the shipped models')")
    talk.add_argument("--world-people", type=int, default=300, help="its number of people (default 300)")
    talk.set_defaults(handler=_chat)

    from llmedu.tools_cli import add_parser as add_tools_parser

    add_tools_parser(commands)

    from llmedu.rlhf_cli import add_parser as add_rlhf_parser

    add_rlhf_parser(commands)

    from llmedu.arena_cli import add_parser as add_arena_parser

    add_arena_parser(commands)

    from llmedu.compress_cli import add_parser as add_compress_parser
    from llmedu.images_cli import add_parser as add_images_parser
    from llmedu.scaling_cli import add_parser as add_scaling_parser
    from llmedu.system2_cli import add_parser as add_system2_parser

    for add_lesson_08_parser in (add_scaling_parser, add_system2_parser, add_compress_parser, add_images_parser):
        add_lesson_08_parser(commands)

    export = commands.add_parser("export", help="write a parameters file for llama.cpp (GGUF) or llama2.c (lesson 00)")
    export.add_argument("params_file", metavar="PARAMS_FILE", help="an llmedu parameters file (.safetensors)")
    export.add_argument("out", metavar="OUT", help="the file to write, e.g. model.gguf")
    export.add_argument("--format", required=True, choices=("gguf", "llama2c", "llama2c-q8"),
                        help="gguf: llama.cpp, Ollama ...; llama2c: llama2.c's run.c (version 0, float32); "
                        "llama2c-q8: llama2.c's runq.c (version 2, int8)")
    export.add_argument("--dtype", default="f32", choices=("f32", "f16", "q8_0"),
                        help="GGUF weight type (default f32; norms stay f32)")
    export.set_defaults(handler=_export)

    info = commands.add_parser("info", help="versions, and how many threads BLAS and Numba use and why")
    info.set_defaults(handler=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
