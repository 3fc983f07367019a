"""What the SFT data choices do to the chat model: replay of pretraining text, and how many invented strangers.

Quality, not speed: each row fine-tunes the shipped base model exactly as the
speedrun's ``sft`` stage does (same world, seed, steps, batch and learning
rate), changing one choice, and measures the result on the same held-out
questions (``llmedu.sft_eval``). The speedrun's own choice is marked.

    python benchmarks/sft_choices.py            # about 1.5 minutes a row on 2 cores, 5 rows
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from llmedu.base_model import ASSETS, MODEL_NAME, load_base_model
from llmedu.sft import sft_config, write_sft_files
from llmedu.sft_eval import evaluate, summary
from llmedu.speedrun import DEFAULT_SEED, SIZES
from llmedu.train import train
from llmedu.world import make_world

ROWS = [(0.0, 300), (0.5, 0), (0.5, 100), (0.5, 200), (0.5, 300)]  # (replay fraction, invented strangers)
SHOWN = ["accuracy_seen_people", "accuracy_heldout_people", "hallucination_rate", "false_idk_rate", "refusal_rate"]


def fine_tune(world, replay_fraction: float, n_invented: int, folder: Path) -> dict:
    sizes = SIZES[False]
    text = folder / "world.txt"
    text.write_text(world.text, encoding="utf-8")
    train_path, _, data = write_sft_files(folder, world, seed=DEFAULT_SEED, n_invented=n_invented)
    config = sft_config(ASSETS / MODEL_NAME, train_path, folder / "model", steps=sizes["sft_steps"],
                        lr=sizes["sft_lr"], batch_size=sizes["sft_batch_size"], seed=DEFAULT_SEED,
                        replay=text if replay_fraction else None, replay_fraction=replay_fraction)
    result = train(config, progress=False)
    return summary(evaluate(result.params, result.model_config, result.tokenizer, data.eval, world), "m")


def main() -> None:
    card = load_base_model()[3]
    world = make_world(card["seed"], n_people=card["world"]["n_people"])
    chosen = (SIZES[False]["sft_replay_fraction"], 300)
    print("| replay | invented strangers | " + " | ".join(SHOWN) + " |")
    print("|---|---|" + "---|" * len(SHOWN))
    for replay_fraction, n_invented in ROWS:
        with tempfile.TemporaryDirectory() as folder:
            figures = fine_tune(world, replay_fraction, n_invented, Path(folder))
        mark = " (speedrun)" if (replay_fraction, n_invented) == chosen else ""
        cells = " | ".join(f"{100 * figures['m_' + key]:.1f}%" for key in SHOWN)
        print(f"| {replay_fraction:.0%} | {n_invented}{mark} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
