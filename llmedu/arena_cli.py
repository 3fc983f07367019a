"""``llmedu arena``: your models answer the same held-out questions, the labeller votes, a leaderboard (lesson 05).

    llmedu arena                                        the shipped base model (few-shot) and chat model ("sft")
    llmedu arena --model dpo=runs/dpo --model bon=runs/bon --out runs/arena

Contestants: ``base``, the base model asked with a few-shot Q/A document
(``--base-few-shot``); ``sft``, a chat model (``--sft``); and every
``--model NAME=PATH``, a parameters file or run folder asked through the chat
template. Each answers the same ``--questions`` held-out questions greedily
(the half of lesson 04's evaluation questions that ``llmedu rlhf comparisons``
with the same ``--seed`` never compares); the labeller votes on every pair of
replies to each question; the table shows Bradley–Terry ratings (Elo scale,
mean 1000) with 95% bootstrap intervals and ranks (:mod:`llmedu.arena`).
``--out DIR`` writes ``arena.json`` (the table, the report's keys, every
reply) and ``arena.png`` (the ratings with error bars).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

NAME = re.compile(r"[A-Za-z0-9_-]+")  # names become report keys (arena_rating_<name>)


def contestants(args) -> dict[str, tuple[str | None, bool]]:
    """{name: (path or None for the shipped model, asked few-shot)}, in the order given; ValueError if a name is bad."""
    from llmedu.base_model import ASSETS, MODEL_NAME as BASE_NAME

    chosen = {"base": (args.base_few_shot or str(ASSETS / BASE_NAME), True), "sft": (args.sft, False)}
    for option in args.model:
        name, _, path = option.partition("=")
        if not path or not NAME.fullmatch(name):
            raise ValueError(f"--model {option!r}: write NAME=PATH, NAME made of letters, digits, _ and - "
                             "(it becomes a column of the report), PATH a parameters file or run folder.")
        if name in chosen:
            raise ValueError(f"--model {option!r}: there is already a contestant named {name!r}.")
        chosen[name] = (path, False)
    return chosen


def run_arena(args) -> int:
    """The ``llmedu arena`` command; returns its exit code."""
    start = time.perf_counter()
    import numpy as np

    from llmedu.arena import answer_questions, collect_votes, held_out_questions, leaderboard
    from llmedu.chat_cli import load_model
    from llmedu.chat_model import eval_questions

    try:
        entrants = contestants(args)
        models = {name: load_model(path) for name, (path, _) in entrants.items()}  # every file read before any answer
    except (ValueError, OSError) as err:  # a bad --model, a missing file, a file without a tokenizer
        print(f"llmedu arena: {err}", file=sys.stderr)
        return 2
    world, data = eval_questions({"world": {"seed": args.world_seed, "n_people": args.world_people},
                                  "sft_data_seed": args.world_seed})
    questions = held_out_questions(data.eval, args.questions, args.seed)
    answers = {name: answer_questions(*models[name], questions, world, few_shot=few_shot,
                                      progress=not args.no_progress, name=name)
               for name, (_, few_shot) in entrants.items()}
    votes = collect_votes({name: a.gold for name, a in answers.items()}, np.random.default_rng([args.seed, 4]),
                          noise=args.noise)
    board = leaderboard(votes, list(answers), n_resamples=args.resamples, seed=args.seed)
    print(board.table())
    print(f"{len(questions)} held-out questions, {len(votes)} votes (every pair of models on every question); "
          f"95% intervals from {args.resamples} bootstrap resamples of the questions. "
          f"{time.perf_counter() - start:.0f} s.")
    if args.out:
        write_results(Path(args.out), board, answers, questions, entrants, args)
        print(f"Written: {Path(args.out) / 'arena.json'} and {Path(args.out) / 'arena.png'}")
    return 0


def write_results(out: Path, board, answers: dict, questions: list, entrants: dict, args) -> None:
    """``arena.json`` (settings, table, report keys, every reply) and ``arena.png``."""
    from llmedu.plots import save_plot

    out.mkdir(parents=True, exist_ok=True)
    result = {
        "settings": {"questions": len(questions), "seed": args.seed, "noise": args.noise,
                     "resamples": args.resamples, "world_seed": args.world_seed, "world_people": args.world_people},
        "contestants": {name: {"path": path or "the shipped chat model", "few_shot": few_shot,
                               "mean_gold": round(float(answers[name].gold.mean()), 4)}
                        for name, (path, few_shot) in entrants.items()},
        "leaderboard": board.rows(),
        "report": board.report_keys(),
        "replies": [{"question": q.conversation[-2]["content"], "kind": q.kind, "group": q.group,
                     **{name: {"reply": a.replies[i], "verdict": a.verdicts[i], "gold": round(float(a.gold[i]), 4)}
                        for name, a in answers.items()}}
                    for i, q in enumerate(questions)],
    }
    (out / "arena.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    save_plot(out, "arena.png", board.draw)


def add_parser(commands) -> None:
    """Register ``llmedu arena`` on the main parser's subcommands."""
    arena = commands.add_parser("arena", help="rank models by the labeller's votes on their replies (lesson 05)")
    arena.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                       help="a contestant asked through the chat template (repeatable)")
    arena.add_argument("--base-few-shot", metavar="PATH",
                       help="the base model asked as a Q/A document, named base (default: the shipped base model)")
    arena.add_argument("--sft", metavar="PATH", help="the chat model named sft (default: the shipped chat model)")
    arena.add_argument("--questions", type=int, default=200, help="held-out questions asked (default 200)")
    arena.add_argument("--resamples", type=int, default=200, help="bootstrap resamples for the intervals (default 200)")
    arena.add_argument("--noise", type=float, default=0.4, help="the labeller's noise (default 0.4)")
    arena.add_argument("--seed", type=int, default=1337,
                       help="the question split (as for llmedu rlhf comparisons), votes and bootstrap (default 1337)")
    arena.add_argument("--world-seed", type=int, default=1337, help="the world the models read (default 1337)")
    arena.add_argument("--world-people", type=int, default=300, help="its number of people (default 300)")
    arena.add_argument("--out", help="folder for arena.json and arena.png")
    arena.add_argument("--no-progress", action="store_true", help="no progress bars")
    arena.set_defaults(handler=run_arena)
