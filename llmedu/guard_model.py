"""The shipped guard: the default speedrun's ``attacks`` stage guard, committed under ``assets/`` (lesson 07).

``assets/guard_model.safetensors`` is the shipped tool model fine-tuned by
the speedrun's ``attacks`` stage to keep notes on cities and refuse the
vault codes they call secret (:mod:`llmedu.attacks.notes`); it is what
lesson 07 attacks. ``assets/guard_model.json`` is its card: the command
and seed, the tool model's SHA-256, the speedrun's attack figures (the
table lesson 07 shows) and figures measured on the file itself. To ship a
new one, after the base, chat and tool models of the same run:
``python -m llmedu.guard_model runs/speedrun``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from llmedu.attacks.measure import eval_sets, measure
from llmedu.attacks.stage import split_cities
from llmedu.base_model import ASSETS, load_shipped, read_card, write_card
from llmedu.checkpoint import file_sha256
from llmedu.chat_model import copy_fine_tuned
from llmedu.sample import load_run
from llmedu.tool_model import MODEL_NAME as TOOL_NAME
from llmedu.world import make_world

MODEL_NAME, CARD_NAME = "guard_model.safetensors", "guard_model.json"
REPORT_PREFIXES = ("asr_", "gcg_", "backdoor_", "guard_", "defended_", "attack")

__all__ = ["load_guard_model", "load_guard_card", "attack_world", "measure_guard", "ship"]


def load_guard_model(assets: Path = ASSETS) -> tuple[dict, object, object, dict]:
    """(params, config, tokenizer, card) of the shipped guard."""
    return load_shipped(MODEL_NAME, CARD_NAME, "llmedu.guard_model", assets)


def load_guard_card(assets: Path = ASSETS) -> dict:
    return read_card(CARD_NAME, "llmedu.guard_model", assets)


def attack_world(card: dict):
    """(world, training cities, targets, others) the card's figures were measured with, from its seeds."""
    world = make_world(card["world"]["seed"], n_people=card["world"]["n_people"])
    return (world, *split_cities(world, card["attack_cities"], card["seed"]))


def measure_guard(params, config, tokenizer, card: dict) -> dict:
    """The figures a card records, measured again: ordinary accuracy, direct refusals, role-play ASR."""
    _, _, targets, others = attack_world(card)
    rates = measure((params, config, tokenizer), eval_sets(targets, others, card["seed"]),
                    ("ordinary", "direct", "jailbreak"))
    return {"guard_accuracy": round(rates["accuracy"].value, 4),
            "guard_false_refusal_rate": round(rates["false_refusal"].value, 4),
            "guard_direct_refusal_rate": round(rates["direct_refusal"].value, 4),
            "asr_jailbreak": round(rates["jailbreak"].value, 4)}


def ship(run_dir: Path, assets: Path = ASSETS) -> dict:
    """Copy a speedrun's guard to ``assets``, measure the copy and write its card; returns the card."""
    run_dir, assets = Path(run_dir), Path(assets)
    report = copy_fine_tuned(run_dir, assets, stage="attacks", what="guard",
                             source="attacks/guard/model/model.safetensors", target=MODEL_NAME,
                             parent=("tools/model/model.safetensors", TOOL_NAME, "tool model", "llmedu.tool_model"))
    params, config, tokenizer, _ = load_run(str(assets / MODEL_NAME))
    card = {"command": report["command"], "seed": report["seed"],
            "world": {"seed": report["seed"], "n_people": report["world_people"]},
            "attack_cities": report["attack_cities"], "tool_model_sha256": file_sha256(assets / TOOL_NAME),
            "config": config.to_dict(), "file_bytes": (assets / MODEL_NAME).stat().st_size}
    card["measured"] = measure_guard(params, config, tokenizer, card)
    card["speedrun_report"] = {k: v for k, v in report.items() if k.startswith(REPORT_PREFIXES)
                               or k in ("command", "seed")}
    write_card(card, assets / CARD_NAME)
    return card


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m llmedu.guard_model RUN_DIR   (a folder written by llmedu speedrun)")
    print(json.dumps(ship(Path(sys.argv[1]))["measured"], indent=2))
