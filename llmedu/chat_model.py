"""The shipped chat model: the default speedrun's SFT result, committed under ``assets/`` (lessons 04-07).

``assets/chat_model.safetensors`` is the base model fine-tuned by the
speedrun's ``sft`` stage; ``assets/chat_model.json`` is its card: the
command and seed, the base file's SHA-256, and figures measured on the file
itself (the lesson 04 table: accuracy on seen and held-out people,
hallucination, refusals). To ship a new one, after shipping the base model
from the same run: ``python -m llmedu.chat_model runs/speedrun``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from llmedu.base_model import (ASSETS, MODEL_NAME as BASE_NAME, _asset, copy_params_file, load_shipped, read_card,
                               write_card)
from llmedu.checkpoint import file_sha256, read_safetensors
from llmedu.sample import load_run
from llmedu.sft_data import make_sft_data
from llmedu.sft_eval import evaluate, summary
from llmedu.world import make_world

MODEL_NAME, CARD_NAME = "chat_model.safetensors", "chat_model.json"

__all__ = ["load_chat_model", "load_chat_card", "eval_questions", "ship"]


def load_chat_model(assets: Path = ASSETS) -> tuple[dict, object, object, dict]:
    """(params, config, tokenizer, card) of the shipped chat model."""
    return load_shipped(MODEL_NAME, CARD_NAME, "llmedu.chat_model", assets)


def load_chat_card(assets: Path = ASSETS) -> dict:
    return read_card(CARD_NAME, "llmedu.chat_model", assets)


def eval_questions(card: dict):
    """(world, SFT data) the card's figures were measured on, regenerated from its seeds."""
    world = make_world(card["world"]["seed"], n_people=card["world"]["n_people"])
    return world, make_sft_data(world, seed=card["sft_data_seed"])


def _same_tensors(a: Path, b: Path) -> bool:
    """Whether two parameters files hold the same tensors (their metadata may differ: shipping rewrites paths)."""
    tensors_a, tensors_b = read_safetensors(a)[0], read_safetensors(b)[0]
    return tensors_a.keys() == tensors_b.keys() and all(np.array_equal(tensors_a[k], tensors_b[k]) for k in tensors_a)


def copy_fine_tuned(run_dir: Path, assets: Path, *, stage: str, what: str, source: str, target: str,
                    parent: tuple[str, str, str, str]) -> dict:
    """The first half of shipping a fine-tuned model (lessons 04-07); returns the run's report.

    The run must have ``stage`` (its report holds ``<stage>_wall_s``), and the
    model it was fine-tuned from must be the one shipped: ``parent`` is (its
    file in the run, its name in ``assets``, what it is, the module that
    ships it). Then ``source`` (in the run) is copied to ``assets/target``.
    """
    parent_file, parent_name, parent_what, shipper = parent
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    if f"{stage}_wall_s" not in report:
        raise ValueError(f"{run_dir}/report.json has no {stage} stage: run this version's `llmedu speedrun` first.")
    if not _same_tensors(run_dir / parent_file, _asset(parent_name, assets)):
        raise ValueError(f"ship the {parent_what} of {run_dir} first (python -m {shipper} {run_dir}): "
                         f"the {what} must sit beside the {parent_what} it was fine-tuned from.")
    copy_params_file(run_dir / source, assets / target)
    return report


def ship(run_dir: Path, assets: Path = ASSETS) -> dict:
    """Copy a speedrun's SFT parameters file to ``assets``, measure the copy and write its card; returns the card."""
    run_dir, assets = Path(run_dir), Path(assets)
    report = copy_fine_tuned(run_dir, assets, stage="sft", what="chat model", source="sft/model/model.safetensors",
                             target=MODEL_NAME,
                             parent=("model/model.safetensors", BASE_NAME, "base model", "llmedu.base_model"))
    params, config, tokenizer, _ = load_run(str(assets / MODEL_NAME))
    card = {"command": report["command"], "seed": report["seed"],
            "world": {"seed": report["seed"], "n_people": report["world_people"]}, "sft_data_seed": report["seed"],
            "base_model_sha256": file_sha256(assets / BASE_NAME), "config": config.to_dict(),
            "file_bytes": (assets / MODEL_NAME).stat().st_size}
    world, data = eval_questions(card)
    card["measured"] = summary(evaluate(params, config, tokenizer, data.eval, world), "sft")
    card["speedrun_report"] = report
    write_card(card, assets / CARD_NAME)
    return card


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m llmedu.chat_model RUN_DIR   (a folder written by llmedu speedrun)")
    print(json.dumps(ship(Path(sys.argv[1]))["measured"], indent=2))
