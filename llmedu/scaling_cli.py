"""``llmedu scaling``: the scaling-law sweep, its fit and its forecast (lesson 08, ``08_frontiers``).

    llmedu scaling --quick --out runs/scaling-quick      # seconds: tiny sizes, the same code path
    llmedu scaling --out runs/scaling                    # the full sweep (assets/scaling.json was made so)
    llmedu scaling --data my_text.txt --out runs/mine    # any UTF-8 text instead of the world

Writes OUT/scaling.json, scaling.csv and scaling.png (see ``llmedu.scaling``).
"""

from __future__ import annotations

import shlex
import sys


def run_scaling(args) -> int:
    from llmedu.data import DataError
    from llmedu.scaling import FULL, QUICK, run_sweep
    from llmedu.threads import pinned

    command = pinned(" ".join(["llmedu scaling"] + (["--quick"] if args.quick else []) + ["--out", shlex.quote(args.out)]
                       + (["--data", shlex.quote(args.data)] if args.data else []) + ["--seed", str(args.seed)]))
    try:
        result = run_sweep(QUICK if args.quick else FULL, args.out, data=args.data, seed=args.seed,
                           command=command, progress=True)
    except (DataError, OSError) as err:
        print(f"llmedu scaling: {err}", file=sys.stderr)
        return 2
    print(table(result))
    print(f"wrote {args.out}/scaling.json, scaling.csv and scaling.png")
    return 0


def table(result: dict) -> str:
    """The runs, the fit, the forecast and the compute-optimal ratio, as a short text table."""
    lines = [f"{'N':>10} {'D':>10} {'FLOPs':>9} {'loss':>7} {'s':>6}"]
    for r in result["runs"]:
        mark = "  <- held out: predicted first" if r["held_out"] else ""
        lines.append(f"{r['N']:>10,} {r['D']:>10,} {r['FLOPs']:>9.2e} {r['loss']:>7.4f} "
                     f"{r['seconds']:>6.1f}{mark}")
    p, fit, c = result["prediction"], result["prediction"]["fit"], result["compute_optimal"]
    lines += [f"fit (all runs but the held-out one): L = {fit['E']:.3f} + {fit['A']:.3g}/N^{fit['alpha']:.3f} + "
              f"{fit['B']:.3g}/D^{fit['beta']:.3f}",
              f"held-out run: predicted {p['loss']:.4f}, actual {p['actual']:.4f}, error {p['relative_error']:+.2%}",
              f"compute-optimal tokens per parameter: {c['tokens_per_param'][0]:.1f} at {c['FLOPs'][0]:.2g} FLOPs, "
              f"{c['tokens_per_param'][1]:.1f} at {c['FLOPs'][1]:.2g} FLOPs "
              f"(Chinchilla ~{c['chinchilla']:g}, nanochat {c['nanochat']:g})"]
    return "\n".join(lines)


def add_parser(commands) -> None:
    scaling = commands.add_parser("scaling", help="scaling laws (lesson 08): sweep sizes x budgets, fit, predict")
    scaling.add_argument("--quick", action="store_true", help="tiny sizes and budgets: seconds, the same code path")
    scaling.add_argument("--out", default="runs/scaling", help="folder to write into (default runs/scaling)")
    scaling.add_argument("--data", help="a UTF-8 text file (default: the world, make_world(1337, n_people=300))")
    scaling.add_argument("--seed", type=int, default=1337, help="seed of every run (default 1337)")
    scaling.set_defaults(handler=run_scaling)
