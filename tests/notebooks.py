"""Helpers for tests that read the course notebooks (not a test module)."""

from __future__ import annotations

import ast
from pathlib import Path

from llmedu.check import EXERCISES
from llmedu.course import cell_source, exercises, make_lesson, read_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def notebook_imports(notebook: dict) -> str:
    """Every top-level import statement in the notebook's code cells, as source."""
    imports = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse(cell_source(cell))
        except SyntaxError:  # IPython magics; such cells hold no imports we need
            continue
        imports += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(imports)


def check_cell(notebook: dict, number: str) -> str:
    """Source of the cell that calls the check of exercise ``number``."""
    names = [name for name, ex in EXERCISES.items() if ex.number == number]
    assert names, f"no check is registered for exercise {number}"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code" and f"check.{names[0]}(" in cell_source(cell):
            return cell_source(cell)
    raise AssertionError(f"no cell calls check.{names[0]}(...) for exercise {number}")


def all_exercises() -> list[tuple[Path, str]]:
    """(solution notebook, exercise number) for every exercise in the course."""
    return [(path, number) for path in SOLUTIONS for number, _, _ in exercises(read_notebook(path))]


def run_exercise(path: Path, number: str, use_stub: bool) -> None:
    """Exec the notebook's imports, earlier solutions, this exercise (stub or solution), then its check.

    An exercise cell may use the notebook's imports and earlier exercises and
    nothing else; this is how a test sees it.
    """
    solution = read_notebook(path)
    lesson = make_lesson(solution)
    namespace: dict = {"__name__": "__exercise__"}
    exec(notebook_imports(solution), namespace)
    for other, _, index in exercises(solution):
        source = cell_source((lesson if use_stub and other == number else solution)["cells"][index])
        exec(source, namespace)
        if other == number:
            break
    exec(check_cell(solution, number), namespace)
