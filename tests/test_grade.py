"""Grading a submission end to end: `llmedu grade`, `pytest --llmedu-grade` and the nbval route.

Each test here runs a notebook in a fresh kernel (lesson 01 takes a few seconds).
Submissions are named ``alice.ipynb``: the grader must not need a lesson number
in the file name. The grader's pieces are specified without a kernel in
tests/test_grade_parts.py.
"""

import json
import re
import subprocess
import sys

import pytest
from nbformat.v4 import new_code_cell

from notebooks import ROOT

from llmedu.check import EXERCISES
from llmedu.course import cell_source, exercises, make_lesson, notebook_json, read_notebook
from llmedu.grade import grade

LESSON = "01_tokenizer.ipynb"
FILLED_IN = "1.2"  # an exercise that needs no other exercise to pass
TIMEOUT = 240


@pytest.fixture(scope="module")
def numbers():
    return [number for number, _, _ in exercises(read_notebook(ROOT / "solutions" / LESSON))]


def lesson_with(filled_in: set[str]) -> dict:
    """lessons/01 with the solution pasted into the exercises in ``filled_in``."""
    solution = read_notebook(ROOT / "solutions" / LESSON)
    lesson = read_notebook(ROOT / "lessons" / LESSON)
    for number, _, index in exercises(solution):
        if number in filled_in:
            lesson["cells"][index]["source"] = cell_source(solution["cells"][index])
    return lesson


def save(tmp_path, notebook: dict, name: str = "alice.ipynb"):
    path = tmp_path / name
    path.write_text(notebook_json(notebook), encoding="utf-8")
    return path


def check_cell_index(notebook: dict, check_name: str) -> int:
    return next(i for i, c in enumerate(notebook["cells"]) if cell_source(c).startswith(f"check.{check_name}("))


def statuses(graded) -> dict[str, str]:
    return {r.exercise: r.status for r in graded.results}


def test_unanswered_lesson_fails_every_exercise_with_the_stub_message(tmp_path, numbers):
    graded = grade(save(tmp_path, lesson_with(set())), cell_timeout=TIMEOUT)
    assert graded.lesson == "01_tokenizer"
    assert [r.exercise for r in graded.results] == numbers
    assert all(r.status == "failed" and "NotImplementedError" in r.message for r in graded.results)


def test_solution_passes_every_exercise(numbers):
    graded = grade(ROOT / "solutions" / LESSON, cell_timeout=TIMEOUT)
    assert statuses(graded) == {number: "passed" for number in numbers}


def test_one_exercise_filled_in_passes_exactly_that_one(tmp_path, numbers):
    graded = grade(save(tmp_path, lesson_with({FILLED_IN})), cell_timeout=TIMEOUT)
    assert {r.exercise for r in graded.results if r.passed} == {FILLED_IN}


def test_check_cells_edited_to_check_the_library_do_not_pass_a_blank_lesson(tmp_path, numbers):
    lesson = lesson_with(set())
    for name in ("get_stats", "merge", "train", "encode", "decode"):  # check.encode(bpe.encode) and so on
        lesson["cells"][check_cell_index(lesson, name)]["source"] = f"check.{name}(bpe.{name})"
    graded = grade(save(tmp_path, lesson), cell_timeout=TIMEOUT)
    assert statuses(graded) == {number: "failed" for number in numbers}
    assert len(graded.edited_cells) == 5 and "check.encode(encode)" in " ".join(graded.edited_cells)


def test_a_notebook_that_replaces_the_checks_still_meets_the_real_ones(tmp_path):
    lesson = lesson_with(set())
    lesson["cells"].insert(3, new_code_cell("import llmedu.check\nfor name in llmedu.check.EXERCISES:\n"
                                            "    setattr(llmedu.check, name, lambda f: print('passed'))"))
    graded = grade(save(tmp_path, lesson), cell_timeout=TIMEOUT)
    assert not any(r.passed for r in graded.results)


def test_solved_notebook_without_a_lesson_number_grades_every_exercise_and_reports_a_deleted_check_cell(tmp_path, numbers):
    solved = lesson_with(set(numbers))
    del solved["cells"][check_cell_index(solved, "encode")]
    graded = grade(save(tmp_path, solved), cell_timeout=TIMEOUT)
    assert statuses(graded) == {number: "passed" for number in numbers}  # the grader ran check 1.4 itself
    assert len(graded.edited_cells) == 1 and "check.encode(encode)" in graded.edited_cells[0]


def test_deleted_exercise_cell_is_reported_missing(tmp_path, numbers):
    solved = lesson_with(set(numbers))
    exercise_cell = next(index for number, _, index in exercises(solved) if number == "1.5")
    del solved["cells"][exercise_cell]
    graded = grade(save(tmp_path, solved), cell_timeout=TIMEOUT)
    assert statuses(graded) == {number: "missing" if number == "1.5" else "passed" for number in numbers}


def test_a_cell_past_the_timeout_is_interrupted_and_grading_goes_on(tmp_path):
    solution = read_notebook(ROOT / "solutions" / LESSON)
    _, _, stats_cell = exercises(solution)[0]
    cells = [solution["cells"][2], solution["cells"][stats_cell],
             new_code_cell("while True:\n    pass")]
    notebook = {**solution, "cells": cells}
    notebook["metadata"] = {**notebook["metadata"], "llmedu": make_lesson(solution, LESSON)["metadata"]["llmedu"]}
    graded = grade(save(tmp_path, notebook), cell_timeout=10)
    assert statuses(graded)["1.1"] == "passed"
    assert any("cell 2 ran past the 10 s timeout" in note for note in graded.notes)


def test_grade_cli_prints_json_with_whole_messages_and_exits_1_on_failures(tmp_path, numbers):
    path = save(tmp_path, lesson_with({FILLED_IN}))
    done = subprocess.run([sys.executable, "-m", "llmedu.cli", "grade", "--json", str(path)], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    rows = json.loads(done.stdout)
    assert [row["exercise"] for row in rows] == numbers
    assert [row["passed"] for row in rows] == [number == FILLED_IN for number in numbers]
    assert all(row["lesson"] == "01_tokenizer" and row["message"] for row in rows)


def test_pytest_llmedu_grade_collects_one_named_test_per_exercise(tmp_path, numbers):
    save(tmp_path, lesson_with({FILLED_IN}))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--llmedu-grade", "-p", "no:cacheprovider", "-o", "addopts=", "-rA", "-q",
         "--junitxml", str(tmp_path / "marks.xml"), "alice.ipynb"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    functions = {ex.number: ex.name for ex in EXERCISES.values()}
    expected = {f"alice.ipynb::{n}-{functions[n]}": ("PASSED" if n == FILLED_IN else "FAILED") for n in numbers}
    reported = dict((nodeid, outcome) for outcome, nodeid in re.findall(r"^(PASSED|FAILED) (\S+)", done.stdout, re.MULTILINE))
    assert reported == expected, done.stdout[-3000:]
    assert 'name="1.4-encode"' in (tmp_path / "marks.xml").read_text(encoding="utf-8")


def check_cell_numbers(notebook: dict) -> dict[str, int]:
    """Exercise number -> nbval's "Cell N" of its check cell (N counts code cells only)."""
    code_cells = [cell_source(c) for c in notebook["cells"] if c["cell_type"] == "code"]
    return {ex.number: n for name, ex in EXERCISES.items() for n, src in enumerate(code_cells) if f"check.{name}(" in src}


def test_nbval_lax_reports_each_check_cell_as_its_own_test(tmp_path, numbers):
    path = save(tmp_path, lesson_with({FILLED_IN}))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-o", "addopts=", "-rf", "-q", str(path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    failed = {int(m) for m in re.findall(r"^FAILED \S+::Cell (\d+)", done.stdout, re.MULTILINE)}
    cells = check_cell_numbers(read_notebook(path))
    # exactly the check cells of the unanswered exercises fail, each as its own test
    assert failed == {cells[n] for n in numbers if n != FILLED_IN}, done.stdout[-3000:]
