"""``llmedu speedrun``: every stage of the course pipeline that exists, end to end.

Each stage is a function ``stage(run) -> dict`` that reads what earlier stages
left in ``run.state``, does its work, and returns the figures it measured. The
figures go into ``runs/<name>/report.json`` (flat keys) and ``report.md``.
Later lessons add stages (pretraining, SFT, ...) to ``STAGES``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, BPETokenizer, sample_text


@dataclass
class Run:
    out_dir: Path
    quick: bool
    seed: int
    state: dict = field(default_factory=dict)  # what stages hand to later stages
    figures: dict = field(default_factory=dict)  # what the report shows
    notes: list = field(default_factory=list)  # one markdown section per stage


def tokenizer_stage(run: Run) -> dict:
    """Train the BPE tokenizer on the built-in sample text; measure its compression."""
    text = sample_text()
    vocab_size = 512 if run.quick else 1024
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(text, vocab_size, special_tokens=list(CHAT_SPECIAL_TOKENS))
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    ids = tokenizer.encode(text)
    encode_s = time.perf_counter() - start
    n_bytes = len(text.encode("utf-8"))
    tokenizer.save(run.out_dir / "tokenizer.bpe")
    run.state["tokenizer"] = tokenizer
    figures = {
        "tokenizer_vocab_size": len(tokenizer),
        "tokenizer_bytes_per_token": round(n_bytes / len(ids), 4),
        "tokenizer_train_s": round(train_s, 3),
        "tokenizer_encode_mb_per_s": round(n_bytes / 1e6 / max(encode_s, 1e-9), 3),
        "tokenizer_text_bytes": n_bytes,
    }
    run.notes.append(
        "## Tokenizer\n\n"
        f"Byte-level BPE (GPT-4 split pattern) trained on the built-in sample text "
        f"({n_bytes:,} bytes) to a vocabulary of {len(tokenizer)} tokens "
        f"({len(tokenizer.merges)} merges, {len(tokenizer.special_tokens)} special tokens) "
        f"in {train_s:.3f} s (Numba compile included on a cold cache).\n\n"
        f"- bytes per token: {figures['tokenizer_bytes_per_token']}\n"
        f"- encode speed: {figures['tokenizer_encode_mb_per_s']} MB/s\n"
        f"- saved to `tokenizer.bpe`\n"
    )
    return figures


STAGES = [("tokenizer", tokenizer_stage)]


def write_report(run: Run) -> None:
    """report.json (flat figures) and report.md (notes), each written atomically."""
    report_md = "# llmedu speedrun\n\n" + "\n".join(run.notes)
    report_md += "\n## Figures\n\n| figure | value |\n|---|---|\n"
    report_md += "".join(f"| {key} | {value} |\n" for key, value in run.figures.items())
    for name, text in (("report.json", json.dumps(run.figures, indent=2) + "\n"), ("report.md", report_md)):
        temporary = run.out_dir / f".{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, run.out_dir / name)


def speedrun(out_root: Path = Path("runs"), name: str | None = None, quick: bool = False, seed: int = 1337) -> Path:
    """Run every stage and write ``out_root/<name>/report.{md,json}``; returns that folder."""
    name = name or ("quick" if quick else "speedrun")
    run = Run(out_dir=Path(out_root) / name, quick=quick, seed=seed)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for stage_name, stage in tqdm(STAGES, desc="speedrun", unit="stage"):
        stage_start = time.perf_counter()
        run.figures.update(stage(run))
        run.figures[f"{stage_name}_wall_s"] = round(time.perf_counter() - stage_start, 3)
    run.figures["wall_s"] = round(time.perf_counter() - start, 3)
    run.figures["seed"] = seed
    run.figures["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    write_report(run)
    return run.out_dir
