"""Grading a submission: `llmedu grade` and the nbval route report each exercise.

Each test executes lesson 01 in a fresh kernel (about half a minute).
"""

import json
import re
import subprocess
import sys

import pytest

from notebooks import ROOT

from llmedu.check import EXERCISES
from llmedu.course import cell_source, exercises, notebook_json, read_notebook
from llmedu.grade import grade

LESSON = "01_tokenizer.ipynb"
FILLED_IN = "1.2"  # an exercise that needs no other exercise to pass


@pytest.fixture(scope="module")
def numbers():
    return [number for number, _, _ in exercises(read_notebook(ROOT / "solutions" / LESSON))]


def submission_with(tmp_path, filled_in: set[str]):
    """lessons/01 with the solution pasted into the exercises in ``filled_in``."""
    solution = read_notebook(ROOT / "solutions" / LESSON)
    lesson = read_notebook(ROOT / "lessons" / LESSON)
    for number, _, index in exercises(solution):
        if number in filled_in:
            lesson["cells"][index]["source"] = cell_source(solution["cells"][index])
    path = tmp_path / LESSON
    path.write_text(notebook_json(lesson), encoding="utf-8")
    return path


def test_unanswered_lesson_fails_every_exercise(tmp_path, numbers):
    results = grade(submission_with(tmp_path, set()), cell_timeout=240)
    assert [r.exercise for r in results] == numbers
    assert not any(r.passed for r in results)
    assert all("NotImplementedError" in r.message or "Exercise" in r.message for r in results)


def test_solution_passes_every_exercise(numbers):
    results = grade(ROOT / "solutions" / LESSON, cell_timeout=240)
    assert [r.exercise for r in results] == numbers
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_one_exercise_filled_in_passes_exactly_that_one(tmp_path, numbers):
    results = grade(submission_with(tmp_path, {FILLED_IN}), cell_timeout=240)
    assert {r.exercise for r in results if r.passed} == {FILLED_IN}


def test_grade_cli_prints_json_and_exits_1_on_failures(tmp_path, numbers):
    path = submission_with(tmp_path, {FILLED_IN})
    done = subprocess.run([sys.executable, "-m", "llmedu.cli", "grade", "--json", str(path)], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    rows = json.loads(done.stdout)
    assert [row["exercise"] for row in rows] == numbers
    assert [row["passed"] for row in rows] == [number == FILLED_IN for number in numbers]


def check_cell_numbers(notebook: dict) -> dict[str, int]:
    """Exercise number -> nbval's "Cell N" of its check cell (N counts code cells only)."""
    code_cells = [cell_source(c) for c in notebook["cells"] if c["cell_type"] == "code"]
    return {ex.number: n for name, ex in EXERCISES.items() for n, src in enumerate(code_cells) if f"check.{name}(" in src}


def test_nbval_lax_reports_each_check_cell_as_its_own_test(tmp_path, numbers):
    path = submission_with(tmp_path, {FILLED_IN})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-o", "addopts=", "-rf", "-q", str(path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    failed = {int(m) for m in re.findall(r"^FAILED \S+::Cell (\d+)", done.stdout, re.MULTILINE)}
    cells = check_cell_numbers(read_notebook(path))
    # exactly the check cells of the unanswered exercises fail, each as its own test
    assert failed == {cells[n] for n in numbers if n != FILLED_IN}, done.stdout[-3000:]
