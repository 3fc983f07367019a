"""``llmedu tools prepare``: the files that teach a chat model to use tools with ``llmedu sft`` (lesson 06).

    llmedu tools prepare runs/tools                   # from the shipped chat model and the default world
    llmedu sft --base runs/tools/chat_with_tool_tokens.safetensors --data runs/tools/tool_train.jsonl \\
               --replay runs/tools/world.txt --replay-fraction 0.1 --lr 2e-3 --out runs/tools/model
    llmedu chat --model runs/tools/model --tools calculator,search
"""

from __future__ import annotations

import sys
from pathlib import Path


def run_prepare(args) -> int:
    from llmedu.sft_data import make_sft_data
    from llmedu.tool_data import prepare_tool_sft
    from llmedu.world import make_world

    if args.chat is None:
        from llmedu.chat_model import ASSETS, MODEL_NAME

        args.chat = str(ASSETS / MODEL_NAME)
    try:
        world = make_world(args.world_seed, n_people=args.world_people)
        out = Path(args.out)
        start, train_path, eval_path, data = prepare_tool_sft(out, args.chat, world, seed=args.seed,
                                                              mix_in=make_sft_data(world, seed=args.seed).train)
        (out / "world.txt").write_text(world.text, encoding="utf-8")
    except (ValueError, OSError) as err:  # a missing or tokenizer-less chat file, an unwritable folder
        print(f"llmedu tools prepare: {err}", file=sys.stderr)
        return 2
    print(f"{start}: the chat model with the tool tokens\n{train_path}: {sum(1 for _ in open(train_path))} "
          f"conversations (tool use and lesson 04's)\n{eval_path}: {len(data.eval)} questions to measure with\n"
          f"Next: llmedu sft --base {start} --data {train_path} --replay {out / 'world.txt'} --replay-fraction 0.1 "
          f"--lr 2e-3 --out {out / 'model'}")
    return 0


def add_parser(commands) -> None:
    tools = commands.add_parser("tools", help="tool use (lesson 06): prepare the files to fine-tune a tool model")
    actions = tools.add_subparsers(dest="action", required=True)
    prepare = actions.add_parser("prepare", help="the chat model with tool tokens, and tool-use conversations")
    prepare.add_argument("out", help="folder to write into")
    prepare.add_argument("--chat", help="the chat model's parameters file (default: the shipped chat model)")
    prepare.add_argument("--seed", type=int, default=1337, help="seed for the conversations (default 1337)")
    prepare.add_argument("--world-seed", type=int, default=1337, help="the world the chat model read (default 1337)")
    prepare.add_argument("--world-people", type=int, default=300, help="its number of people (default 300)")
    prepare.set_defaults(handler=run_prepare)
