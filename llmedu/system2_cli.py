"""``llmedu system2``: does spending tokens buy accuracy? Measured on held-out additions (lesson 08, ``08_frontiers``).

    llmedu system2                      # the full run: two fine-tunes of the shipped base model, then evaluation
    llmedu system2 --quick --out /tmp/s2  # seconds: the same pipeline, tiny (what the tests run)

Writes ``OUT/system2.json`` (every figure, with the command, seed and date)
and ``OUT/system2.png`` (accuracy against tokens generated per question),
keeps each fine-tuned model under ``OUT/direct/model`` and
``OUT/scratchpad/model``, and prints the table.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

from llmedu.checkpoint import atomic_write_text


def run_system2(args) -> int:
    from llmedu import system2
    from llmedu.threads import pinned

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        command = pinned("llmedu system2" + (" --quick" if args.quick else "") + f" --seed {args.seed}")
        results = {"command": command, "date": datetime.date.today().isoformat(),
                   **system2.measure(out, seed=args.seed, quick=args.quick)}
        results["plot"] = system2.plot(results, out)
        atomic_write_text(out / "system2.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    except (ValueError, OSError) as err:  # an unwritable folder, a missing base model, bad data
        print(f"llmedu system2: {err}", file=sys.stderr)
        return 2
    print(system2.table(results))
    for method, run in results["methods"].items():
        t = run["training"]
        print(f"{method}: {t['problems']} training problems, {t['file_tokens']:,} tokens in the file "
              f"({t['supervised_tokens']:,} supervised), {t['tokens_processed']:,} tokens processed in "
              f"{t['steps']} steps, {t['wall_s']} s; evaluation {run['eval_wall_s']} s")
    print(f"wrote {out / 'system2.json'} and {out / results['plot']} ({results['wall_s']} s)")
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("system2", help="System 2 (lesson 08): self-consistency and a scratchpad, "
                                                 "accuracy against tokens spent")
    parser.add_argument("--quick", action="store_true", help="a tiny run in seconds (its numbers mean nothing)")
    parser.add_argument("--out", default="runs/system2", help="folder to write into (default runs/system2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the problems, training and sampling (default 0)")
    parser.set_defaults(handler=run_system2)
