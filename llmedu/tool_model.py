"""The shipped tool model: the default speedrun's ``tools`` result, committed under ``assets/`` (lessons 06-07).

``assets/tool_model.safetensors`` is the shipped chat model with the four
tool markers added to its vocabulary and fine-tuned by the speedrun's
``tools`` stage to call a calculator and a search tool;
``assets/tool_model.json`` is its card: the command and seed, the chat file's
SHA-256, and the lesson 06 figures measured on the file itself (each
question without and with tools). It joins the chat model rather than
replacing it: its vocabulary is larger, and lessons 04-05 measure the model
without tools. To ship a new one, after the base and chat models of the same
run: ``python -m llmedu.tool_model runs/speedrun``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from llmedu.base_model import ASSETS, load_shipped, read_card, write_card
from llmedu.checkpoint import file_sha256
from llmedu.chat_model import MODEL_NAME as CHAT_NAME, copy_fine_tuned
from llmedu.sample import load_run
from llmedu.tool_data import make_tool_data
from llmedu.tool_eval import evaluate_tools, tool_summary
from llmedu.tools import calculator, default_tools
from llmedu.world import make_world

MODEL_NAME, CARD_NAME = "tool_model.safetensors", "tool_model.json"

__all__ = ["load_tool_model", "load_tool_card", "eval_questions", "ship"]


def load_tool_model(assets: Path = ASSETS) -> tuple[dict, object, object, dict]:
    """(params, config, tokenizer, card) of the shipped tool model."""
    return load_shipped(MODEL_NAME, CARD_NAME, "llmedu.tool_model", assets)


def load_tool_card(assets: Path = ASSETS) -> dict:
    return read_card(CARD_NAME, "llmedu.tool_model", assets)


def eval_questions(card: dict, tokenizer):
    """(world, evaluation examples) the card's figures were measured on, regenerated from its seeds and sizes."""
    from llmedu.search import make_search_tool, passage_budget

    world = make_world(card["world"]["seed"], n_people=card["world"]["n_people"])
    budget = passage_budget(card["config"]["max_seq_len"])
    data = make_tool_data(world, calculator, lambda store: make_search_tool(store, tokenizer, budget),
                          seed=card["tool_data_seed"], **card["tool_data_sizes"])
    return world, data.eval


def ship(run_dir: Path, assets: Path = ASSETS) -> dict:
    """Copy a speedrun's tool model to ``assets``, measure the copy and write its card; returns the card."""
    run_dir, assets = Path(run_dir), Path(assets)
    report = copy_fine_tuned(run_dir, assets, stage="tools", what="tool model", source="tools/model/model.safetensors",
                             target=MODEL_NAME,
                             parent=("sft/model/model.safetensors", CHAT_NAME, "chat model", "llmedu.chat_model"))
    params, config, tokenizer, _ = load_run(str(assets / MODEL_NAME))
    card = {"command": report["command"], "seed": report["seed"],
            "world": {"seed": report["seed"], "n_people": report["world_people"]}, "tool_data_seed": report["seed"],
            "tool_data_sizes": report["tools_data_sizes"],
            "chat_model_sha256": file_sha256(assets / CHAT_NAME),
            "config": config.to_dict(), "file_bytes": (assets / MODEL_NAME).stat().st_size}
    world, examples = eval_questions(card, tokenizer)
    card["measured"] = tool_summary(evaluate_tools(params, config, tokenizer, examples, world,
                                                   default_tools(world, tokenizer, config.max_seq_len)))
    card["speedrun_report"] = {k: v for k, v in report.items() if k.startswith("tools_") or k in ("command", "seed")}
    write_card(card, assets / CARD_NAME)
    return card


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m llmedu.tool_model RUN_DIR   (a folder written by llmedu speedrun)")
    print(json.dumps(ship(Path(sys.argv[1]))["measured"], indent=2))
