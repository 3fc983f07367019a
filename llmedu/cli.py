"""The ``llmedu`` command: ``speedrun``, ``course build``, ``grade``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _speedrun(args) -> int:
    from llmedu.speedrun import speedrun

    out_dir = speedrun(Path(args.out), name=args.name, quick=args.quick, seed=args.seed)
    print((out_dir / "report.md").read_text(encoding="utf-8"))
    print(f"Report written to {out_dir / 'report.md'} and {out_dir / 'report.json'}")
    return 0


def _course_build(args) -> int:
    from llmedu.course import build_lessons

    for path in build_lessons(Path(args.solutions), Path(args.lessons)):
        print(f"wrote {path}")
    return 0


def _course_execute(args) -> int:
    import os

    from llmedu.course import notebook_json, read_notebook
    from llmedu.grade import execute

    for notebook in map(Path, args.notebooks):
        executed = execute(read_notebook(notebook), notebook.resolve().parent, args.timeout, allow_errors=False)
        temporary = notebook.with_name(f".{notebook.name}.tmp")
        temporary.write_text(notebook_json(executed), encoding="utf-8")
        os.replace(temporary, notebook)
        print(f"executed {notebook}")
    return 0


def _grade(args) -> int:
    from llmedu.grade import as_dicts, format_table, grade

    results = []
    for notebook in args.notebooks:
        if not Path(notebook).is_file():
            print(f"llmedu grade: no notebook at {notebook}", file=sys.stderr)
            return 2
        results += grade(Path(notebook), cell_timeout=args.timeout)
    print(json.dumps(as_dicts(results), indent=2) if args.json else format_table(results))
    return 0 if all(r.passed for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmedu", description="llmedu: an LLM from scratch, one lesson at a time.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("speedrun", help="run the whole course pipeline and write a report under runs/")
    run.add_argument("--quick", action="store_true", help="a small, fast run (what the tests use)")
    run.add_argument("--out", default="runs", help="folder for runs (default: runs)")
    run.add_argument("--name", default=None, help="run name (default: speedrun, or quick with --quick)")
    run.add_argument("--seed", type=int, default=1337, help="seed for everything random")
    run.set_defaults(handler=_speedrun)

    course = commands.add_parser("course", help="course authoring tools")
    course_commands = course.add_subparsers(dest="course_command", required=True)
    build = course_commands.add_parser("build", help="generate lessons/ from solutions/")
    build.add_argument("--solutions", default="solutions")
    build.add_argument("--lessons", default="lessons")
    build.set_defaults(handler=_course_build)

    execute = course_commands.add_parser("execute", help="run notebooks top to bottom and save their outputs in place")
    execute.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    execute.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per cell")
    execute.set_defaults(handler=_course_execute)

    grading = commands.add_parser("grade", help="run submitted notebooks in a fresh kernel and grade each exercise")
    grading.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    grading.add_argument("--json", action="store_true", help="print results as JSON")
    grading.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per cell (default 300)")
    grading.set_defaults(handler=_grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
