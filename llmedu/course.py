"""Course machinery: turn solution notebooks into lesson notebooks.

``solutions/NN_name.ipynb`` is the source of truth. A lesson is the same
notebook with every exercise's solution cut out and all outputs cleared:

    # Exercise 1.2: replace every occurrence of `pair` in `ids` by `new_id`.
    def merge(ids, pair, new_id):
        ### BEGIN SOLUTION
        ...the answer...
        ### END SOLUTION

becomes, in the lesson,

    # Exercise 1.2: replace every occurrence of `pair` in `ids` by `new_id`.
    def merge(ids, pair, new_id):
        raise NotImplementedError("Exercise 1.2: replace every occurrence ...")

The ``# Exercise N.M: <what to do>`` comment on the cell's first line gives the
message. Notebooks are read and written with ``nbformat`` so that files keep
Jupyter's own layout and diffs stay small.

Every lesson also carries, in its metadata under ``"llmedu"``, what the grader
needs to know without trusting the file name or the learner's check cells: the
lesson's id, its exercises (number, title, check, and the function the learner
defines) and a checksum of every cell the learner is not meant to edit
(:func:`lesson_metadata`). Grading lives in :mod:`llmedu.grade`; the checks
themselves in :mod:`llmedu.check`.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import re
from pathlib import Path

import nbformat

BEGIN_MARK = "### BEGIN SOLUTION"
END_MARK = "### END SOLUTION"
EXERCISE_HEADER = re.compile(r"^# Exercise (\d+\.\d+): (.+?)\s*$")

# The first cell of every notebook: on Colab it installs llmedu, elsewhere it
# does nothing (locally and on Binder the package is installed already).
COLAB_REPO = "https://github.com/llmedu/llmedu"
COLAB_CELL = f'''\
# Running on Colab? This installs llmedu first; anywhere else it does nothing.
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run(["git", "clone", "--depth=1", "{COLAB_REPO}", "/content/llmedu"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/llmedu"], check=True)
    sys.path.insert(0, "/content/llmedu")'''


class CourseError(ValueError):
    """A solution notebook breaks the authoring conventions."""


def cell_source(cell: dict) -> str:
    """A cell's source as one string (a raw JSON file may store a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def exercise_header(source: str) -> tuple[str, str] | None:
    """``("1.2", "what to do")`` from an exercise cell's first line, else None."""
    first_line = source.split("\n", 1)[0]
    match = EXERCISE_HEADER.match(first_line)
    return (match.group(1), match.group(2)) if match else None


def strip_solution(source: str, where: str = "cell") -> str:
    """Replace each BEGIN/END SOLUTION block by a ``raise NotImplementedError``.

    The raise keeps the indentation of the BEGIN marker, so a block inside a
    function body stays a valid function body. ``where`` names the cell in errors.
    """
    if BEGIN_MARK not in source:
        return source
    header = exercise_header(source)
    if header is None:
        raise CourseError(
            f"{where}: has a solution block but its first line is not "
            "'# Exercise N.M: <what to do>'; add that line so the lesson's stub can say what to do."
        )
    number, task = header
    message = json.dumps(f"Exercise {number}: {task}", ensure_ascii=False)
    out, inside = [], False
    for line_no, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped == BEGIN_MARK:
            if inside:
                raise CourseError(f"{where}, line {line_no}: nested {BEGIN_MARK}; close the first block with {END_MARK}.")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}raise NotImplementedError({message})")
        elif stripped == END_MARK:
            if not inside:
                raise CourseError(f"{where}, line {line_no}: {END_MARK} without a matching {BEGIN_MARK}.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise CourseError(f"{where}: {BEGIN_MARK} is never closed; add {END_MARK} after the solution.")
    return "\n".join(out)


def make_lesson(notebook: dict, name: str = "notebook") -> dict:
    """The lesson version of a solution notebook (a new dict; the input is untouched)."""
    lesson = copy.deepcopy(notebook)
    for index, cell in enumerate(lesson["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = strip_solution(cell_source(cell), where=f"{name}, cell {index}")
        cell["source"] = source
        cell["outputs"] = []
        cell["execution_count"] = None
    lesson["metadata"].pop("widgets", None)  # saved widget state belongs to a run
    lesson["metadata"]["llmedu"] = lesson_metadata(lesson, name)
    return lesson


def cell_checksum(cell: dict) -> str:
    """SHA-256 of a cell's type and source: what "this cell was not edited" compares."""
    return hashlib.sha256(f"{cell['cell_type']}\n{cell_source(cell)}".encode("utf-8")).hexdigest()


def lesson_metadata(notebook: dict, name: str = "notebook") -> dict:
    """What the grader reads from a lesson: its id, its exercises, its locked cells.

    ``exercises``: one entry per exercise cell, with the check that grades it and
    the name of the function the learner defines (the argument its check cell
    passes, as in ``check.encode(encode)``). ``locked_cells``: every cell but the
    exercise cells, by position, checksum and first line, so that edits can be
    reported (nbgrader does the same for its locked cells).
    """
    from llmedu.check import EXERCISES  # the checks import numpy and the model: load them only here

    check_of = {exercise.number: exercise for exercise in EXERCISES.values()}
    functions = _checked_functions(notebook)
    entries, exercise_cells = [], set()
    for number, _task, index in exercises(notebook):
        if number not in check_of:
            raise CourseError(f"{name}, cell {index}: no check is registered for exercise {number}; add one in llmedu/checks/.")
        exercise = check_of[number]
        if exercise.name not in functions:
            raise CourseError(f"{name}: no cell calls check.{exercise.name}(<function>) for exercise {number}; add the check cell.")
        entries.append({"number": number, "title": exercise.title, "check": exercise.name,
                        "function": functions[exercise.name]})
        exercise_cells.add(index)
    locked = [{"index": index, "sha256": cell_checksum(cell), "first_line": cell_source(cell).split("\n", 1)[0][:80]}
              for index, cell in enumerate(notebook["cells"]) if index not in exercise_cells]
    return {"lesson": Path(name).stem, "exercises": entries, "locked_cells": locked}


def _checked_functions(notebook: dict) -> dict[str, str]:
    """``{check name: function name}`` from every ``check.<name>(<function>)`` call in the notebook."""
    found = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse(cell_source(cell))
        except SyntaxError:  # IPython magics; check cells are plain Python
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "check"
                    and node.args and isinstance(node.args[0], ast.Name)):
                found.setdefault(node.func.attr, node.args[0].id)
    return found


def read_notebook(path: Path) -> dict:
    """A notebook as nbformat's node (a dict whose cell sources are strings)."""
    return nbformat.read(str(path), as_version=4)


def notebook_json(notebook: dict) -> str:
    """The notebook as Jupyter saves it (indent 1, keys sorted, sources split into lines)."""
    return nbformat.writes(nbformat.from_dict(notebook)) + "\n"


def build_lessons(solutions_dir: Path, lessons_dir: Path) -> list[Path]:
    """Write ``lessons_dir/NN_name.ipynb`` for every ``solutions_dir/NN_name.ipynb``.

    Returns the paths written. Lessons whose solution was deleted are removed,
    so the two folders always hold the same notebooks.
    """
    solutions_dir, lessons_dir = Path(solutions_dir), Path(lessons_dir)
    lessons_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for solution in sorted(solutions_dir.glob("[0-9][0-9]_*.ipynb")):
        lesson = make_lesson(read_notebook(solution), name=solution.name)
        target = lessons_dir / solution.name
        target.write_text(notebook_json(lesson), encoding="utf-8")
        written.append(target)
    for stale in set(lessons_dir.glob("[0-9][0-9]_*.ipynb")) - set(written):
        stale.unlink()
    return written


def exercises(notebook: dict) -> list[tuple[str, str, int]]:
    """``(number, task, cell_index)`` of every exercise cell, in notebook order.

    An exercise cell is a code cell whose first line is ``# Exercise N.M: ...``:
    that finds them in a solution and in its lesson alike.
    """
    found = []
    for index, cell in enumerate(notebook["cells"]):
        header = exercise_header(cell_source(cell)) if cell["cell_type"] == "code" else None
        if header:
            found.append((*header, index))
    return found
