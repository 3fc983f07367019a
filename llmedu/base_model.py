"""The shipped base model: the default speedrun's result, committed under ``assets/`` (lessons 00 and 03).

Two files sit side by side:

- ``assets/base_model.safetensors``: the parameters file written by
  ``llmedu speedrun`` (float32, tokenizer text in its metadata);
- ``assets/base_model.json``: its card — the command and seed that made it,
  its config, the world it read, and figures measured on the file itself
  (loss and bits per byte on the held-out 10% of that world, fact recall,
  hallucination) next to the speedrun's own report.

Lessons load the model with ``load_base_model()`` instead of training it
again. The held-out text is not stored: ``held_out_text(card)`` regenerates
the world from its seed, and the card's SHA-256 proves it is the same text.
To ship a new model: ``python -m llmedu.base_model runs/speedrun``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from llmedu.checkpoint import read_safetensors, write_safetensors
from llmedu.data import split_text
from llmedu.evaluate import bits_per_byte, fact_recall, hallucination_rate, mean_nll
from llmedu.model import ModelConfig
from llmedu.sample import load_run
from llmedu.world import make_world

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MODEL_NAME, CARD_NAME = "base_model.safetensors", "base_model.json"

__all__ = ["ASSETS", "load_base_model", "load_card", "held_out_text", "measure", "ship"]


def _asset(name: str, assets: Path, shipper: str = "llmedu.base_model") -> Path:
    path = Path(assets) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing. The shipped model lives in the repository's assets/ folder: clone the repository "
            "and install it with `pip install -e .`, or make one with `llmedu speedrun` and "
            f"`python -m {shipper} runs/speedrun`.")
    return path


def load_shipped(model_name: str, card_name: str, shipper: str, assets: Path = ASSETS) -> tuple:
    """(params, config, tokenizer, card) of a shipped model file and its card in ``assets``."""
    params, config, tokenizer, _ = load_run(str(_asset(model_name, assets, shipper)))
    return params, config, tokenizer, read_card(card_name, shipper, assets)


def read_card(card_name: str, shipper: str, assets: Path = ASSETS) -> dict:
    """A shipped model's card (JSON) as a dict; ``shipper`` is the module that writes it (named if it is missing)."""
    return json.loads(_asset(card_name, assets, shipper).read_text(encoding="utf-8"))


def load_base_model(assets: Path = ASSETS) -> tuple[dict, ModelConfig, object, dict]:
    """(params, config, tokenizer, card) of the shipped model; ``card`` is ``base_model.json`` as a dict."""
    return load_shipped(MODEL_NAME, CARD_NAME, "llmedu.base_model", assets)


def load_card(assets: Path = ASSETS) -> dict:
    """``base_model.json``: how the shipped model was made and what it measures."""
    return read_card(CARD_NAME, "llmedu.base_model", assets)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def held_out_text(card: dict) -> str:
    """The held-out text the card's figures were measured on, regenerated from the world's seed."""
    world = make_world(card["world"]["seed"], n_people=card["world"]["n_people"])
    text = split_text(world.text)[1]
    if _sha256(text) != card["held_out"]["sha256"]:
        raise ValueError("the regenerated held-out text differs from the recorded one (SHA-256 mismatch): "
                         "make_world or split_text changed since the model was shipped; ship it again.")
    return text


def measure(params: dict, config: ModelConfig, tokenizer, world) -> dict:
    """Figures of a model on its ``World``: held-out loss and bits per byte, fact recall, hallucination."""
    held_out = split_text(world.text)[1]
    nll, n_tokens = mean_nll(params, config, np.array(tokenizer.encode(held_out), dtype=np.int64))
    return {
        "held_out_nll": round(nll, 6),  # nats per token
        "held_out_tokens": n_tokens,
        "bits_per_byte": round(bits_per_byte(params, config, tokenizer, held_out), 6),
        "fact_recall": fact_recall(params, config, tokenizer, world.people)[0],
        "hallucination_rate": hallucination_rate(params, config, tokenizer, world.unseen_names)[0],
    }


def ship(run_dir: Path, assets: Path = ASSETS) -> dict:
    """Copy a speedrun's parameters file to ``assets``, measure the copy and write its card; returns the card.

    The tensors are copied unchanged. The training config in the metadata
    keeps only the data file's name: the absolute path a run records (so that
    it can resume from any folder) means nothing on another machine.
    """
    run_dir, assets = Path(run_dir), Path(assets)
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    missing = [key for key in ("command", "seed", "world_people") if key not in report]
    if missing:
        raise ValueError(f"{run_dir}/report.json lacks {missing}: it is not a finished run of this version of "
                         "llmedu speedrun; run `llmedu speedrun` again first.")
    copy_params_file(run_dir / "model" / "model.safetensors", assets / MODEL_NAME)
    params, config, tokenizer, _ = load_run(str(assets / MODEL_NAME))
    n_people = report["world_people"]
    world = make_world(report["seed"], n_people=n_people)
    held_out = split_text(world.text)[1]
    card = {
        "command": report["command"],
        "seed": report["seed"],
        "world": {"seed": report["seed"], "n_people": n_people},
        "held_out": {"sha256": _sha256(held_out), "bytes": len(held_out.encode("utf-8"))},
        "config": config.to_dict(),
        "file_bytes": (assets / MODEL_NAME).stat().st_size,
        "measured": measure(params, config, tokenizer, world),
        "speedrun_report": report,
    }
    write_card(card, assets / CARD_NAME)
    return card


def copy_params_file(source: Path, target: Path) -> None:
    """Copy a run's parameters file unchanged but for the paths in its training config (kept as file names only)."""
    tensors, metadata = read_safetensors(source)
    train_config = json.loads(metadata["train_config"])
    for key in ("data", "init_from"):
        if train_config.get(key):
            train_config[key] = os.path.basename(train_config[key])
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(target, tensors, {**metadata, "train_config": json.dumps(train_config)})


def write_card(card: dict, path: Path) -> None:
    """Write a model card as indented JSON, atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m llmedu.base_model RUN_DIR   (a folder written by llmedu speedrun)")
    print(json.dumps(ship(Path(sys.argv[1]))["measured"], indent=2))
