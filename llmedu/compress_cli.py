"""``llmedu compress`` / ``llmedu decompress``: a language model as a lossless compressor (lesson 08, ``08_frontiers``).

    llmedu compress notes.txt notes.llmz                       # with the shipped base model
    llmedu decompress notes.llmz notes.txt
    llmedu compress data.bin data.llmz --model runs/speedrun/model/model.safetensors
    llmedu decompress data.llmz data.bin --model runs/speedrun/model/model.safetensors

The compressed file records the SHA-256 of the model that made it; decompressing
needs that same parameters file (``llmedu.compress``).
"""

from __future__ import annotations

import sys
from pathlib import Path

_PROGRESS_FROM = 4096  # bytes: below this the run takes well under a second, so no progress bar


def _default_model() -> str:
    from llmedu.base_model import ASSETS, MODEL_NAME

    return str(ASSETS / MODEL_NAME)


def _progress_bar(total_tokens_guess: int, what: str):
    from tqdm import tqdm

    return tqdm(total=total_tokens_guess, unit="tok", desc=what, leave=False, file=sys.stderr)


def _fail(command: str, message: str) -> int:
    print(f"llmedu {command}: {message}", file=sys.stderr)
    return 2


def _check_paths(command: str, source: str, target: str) -> str | None:
    """A message if the input cannot be read or the output would overwrite it; None if both are fine."""
    if not Path(source).is_file():
        return f"{source}: no such file; give the file to {command} as the first argument."
    if Path(target).exists() and Path(target).resolve() == Path(source).resolve():
        return f"the output {target} is the input itself; write to another file."
    if not Path(target).resolve().parent.is_dir():
        return f"{target}: its folder does not exist; create it first."
    return None


def run_compress(args) -> int:
    from llmedu import compress

    model = args.model or _default_model()
    problem = _check_paths("compress", args.input, args.output)
    if problem:
        return _fail("compress", problem)
    size = Path(args.input).stat().st_size
    bar = _progress_bar(None, "compress") if size >= _PROGRESS_FROM else None
    try:
        header = compress.compress_file(args.input, args.output, model, progress=None if bar is None else bar.update)
    except (ValueError, OSError) as err:  # an unreadable input, a model file without tokenizer, ...
        return _fail("compress", str(err))
    finally:
        if bar is not None:
            bar.close()
    written = Path(args.output).stat().st_size
    rate = f"{8 * written / header.n_bytes:.3f} bits per byte" if header.n_bytes else "empty input"
    print(f"{args.input}: {header.n_bytes:,} bytes, {header.n_tokens:,} tokens -> {args.output}: {written:,} bytes "
          f"({rate}, header included)\nmodel {model} (SHA-256 {header.model_sha256[:16]}...)")
    return 0


def run_decompress(args) -> int:
    from llmedu import compress

    model = args.model or _default_model()
    problem = _check_paths("decompress", args.input, args.output)
    if problem:
        return _fail("decompress", problem)
    try:
        with open(args.input, "rb") as f:
            header, _ = compress.read_header(f.read())
        bar = _progress_bar(header.n_tokens, "decompress") if header.n_bytes >= _PROGRESS_FROM else None
        try:
            compress.decompress_file(args.input, args.output, model, progress=None if bar is None else bar.update)
        finally:
            if bar is not None:
                bar.close()
    except compress.WrongModel as err:
        hint = "" if args.model else " (no --model was given, so the shipped base model was used)"
        return _fail("decompress", f"{args.input}: {err}{hint}")
    except compress.CompressError as err:
        return _fail("decompress", f"{args.input}: {err}")
    except (ValueError, OSError) as err:
        return _fail("decompress", str(err))
    print(f"{args.input} -> {args.output}: {header.n_bytes:,} bytes, SHA-256 verified")
    return 0


def add_parser(commands) -> None:
    model_help = "the parameters file to use (default: the shipped base model, assets/base_model.safetensors)"
    pack = commands.add_parser("compress", help="compress a file losslessly with a language model (lesson 08)")
    pack.add_argument("input", help="the file to compress (any bytes)")
    pack.add_argument("output", help="where to write the compressed file")
    pack.add_argument("--model", help=model_help)
    pack.set_defaults(handler=run_compress)
    unpack = commands.add_parser("decompress", help="decompress a file made by llmedu compress")
    unpack.add_argument("input", help="the compressed file")
    unpack.add_argument("output", help="where to write the original")
    unpack.add_argument("--model", help=model_help + "; it must be the model the file was compressed with")
    unpack.set_defaults(handler=run_decompress)
