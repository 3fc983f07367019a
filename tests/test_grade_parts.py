"""The grader's pieces, without a kernel: lesson metadata, edit detection, one exercise's grading."""

import ast
import json
import subprocess
import sys

import pytest

from notebooks import ROOT, SOLUTIONS

from llmedu import bpe
from llmedu.course import cell_source, exercises, lesson_metadata, make_lesson, read_notebook
from llmedu.grade import ExerciseResult, GradingError, NotebookGrade, edited_cells, format_table, lesson_of
from llmedu.grade_kernel import RESULT_PREFIX, grade_exercise, grading_cell

MERGE = {"number": "1.2", "title": "merge a pair", "check": "merge", "function": "merge"}


def solution_merge(ids, pair, new_id):
    return bpe.merge(list(ids), pair, new_id)


def wrong_merge(ids, pair, new_id):
    return list(ids)


def test_lesson_metadata_names_each_exercise_its_check_and_the_function_it_defines():
    metadata = lesson_metadata(read_notebook(ROOT / "solutions" / "01_tokenizer.ipynb"), "01_tokenizer.ipynb")
    assert metadata["lesson"] == "01_tokenizer"
    assert [(e["number"], e["check"], e["function"]) for e in metadata["exercises"]] == [
        ("1.1", "get_stats", "get_stats"), ("1.2", "merge", "merge"), ("1.3", "train", "train"),
        ("1.4", "encode", "encode"), ("1.5", "decode", "decode")]


def test_locked_cells_are_every_cell_but_the_exercise_cells():
    solution = read_notebook(ROOT / "solutions" / "01_tokenizer.ipynb")
    locked = {cell["index"] for cell in lesson_metadata(solution)["locked_cells"]}
    exercise_cells = {index for _, _, index in exercises(solution)}
    assert locked == set(range(len(solution["cells"]))) - exercise_cells


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_every_lesson_carries_its_metadata(path):
    lesson = read_notebook(ROOT / "lessons" / path.name)
    assert lesson["metadata"]["llmedu"] == lesson_metadata(read_notebook(path), path.name)


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_no_other_cell_rebinds_an_exercise_function(path):
    """The grader checks the name as it stands at the end, so later cells must leave it alone."""
    solution = read_notebook(path)
    exercise_cells = {index for _, _, index in exercises(solution)}
    functions = {e["function"] for e in lesson_metadata(solution)["exercises"]}
    for index, cell in enumerate(solution["cells"]):
        if cell["cell_type"] != "code" or index in exercise_cells:
            continue
        bound = set()
        for node in ast.walk(ast.parse(cell_source(cell))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            elif isinstance(node, ast.alias):
                bound.add(node.asname or node.name.split(".")[0])
        assert not bound & functions, f"{path.name}, cell {index} rebinds {bound & functions}"


def test_an_unedited_lesson_reports_no_edits():
    lesson = make_lesson(read_notebook(ROOT / "solutions" / "01_tokenizer.ipynb"), "01_tokenizer.ipynb")
    assert edited_cells(lesson, lesson["metadata"]["llmedu"]) == []


def test_an_edited_cell_is_reported_by_position_and_first_line():
    lesson = make_lesson(read_notebook(ROOT / "solutions" / "01_tokenizer.ipynb"), "01_tokenizer.ipynb")
    index = next(i for i, c in enumerate(lesson["cells"]) if cell_source(c) == "check.merge(merge)")
    lesson["cells"][index]["source"] = "check.merge(bpe.merge)"
    assert edited_cells(lesson, lesson["metadata"]["llmedu"]) == [f"cell {index} ('check.merge(merge)') was edited or deleted"]


def test_a_notebook_without_metadata_is_graded_from_its_exercise_headers_with_a_note():
    solution = read_notebook(ROOT / "solutions" / "01_tokenizer.ipynb")
    metadata, notes = lesson_of(solution, "alice.ipynb")
    assert [e["number"] for e in metadata["exercises"]] == ["1.1", "1.2", "1.3", "1.4", "1.5"]
    assert notes and "no lesson metadata" in notes[0]


def test_a_notebook_that_is_no_lesson_cannot_be_graded():
    notebook = {"cells": [{"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": []}], "metadata": {}}
    with pytest.raises(GradingError, match="no lesson metadata"):
        lesson_of(notebook, "random.ipynb")


def test_grade_exercise_passes_a_right_function_with_the_checks_line():
    result = grade_exercise({"merge": solution_merge}, MERGE)
    assert result["status"] == "passed" and result["message"].startswith("Exercise 1.2")


def test_grade_exercise_fails_a_wrong_function_with_the_checks_whole_message():
    result = grade_exercise({"merge": wrong_merge}, MERGE)
    assert result["status"] == "failed"
    assert result["message"].startswith("Exercise 1.2")


def test_grade_exercise_reports_an_undefined_function_as_missing():
    assert grade_exercise({}, MERGE)["status"] == "missing"


def test_grade_exercise_refuses_the_librarys_own_function():
    result = grade_exercise({"merge": bpe.merge}, MERGE)
    assert result["status"] == "failed" and "library's own function" in result["message"]


def test_grading_cell_prints_one_result_line():
    # In a child process: the cell re-imports llmedu afresh, which this test process must not do.
    program = f"from llmedu import bpe\nmerge = lambda ids, pair, new_id: bpe.merge(list(ids), pair, new_id)\n{grading_cell(MERGE)}"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert len(lines) == 1 and json.loads(lines[0][len(RESULT_PREFIX):])["status"] == "passed", done.stderr


def test_table_shows_the_whole_message_of_a_failure_and_the_edits():
    results = [ExerciseResult("alice.ipynb", "1.2", "merge a pair", "merge", "failed", "line one\n  expected [1]\n  got      [2]")]
    table = format_table([NotebookGrade("alice.ipynb", "01_tokenizer", results, ["cell 12 ('check.merge(merge)') was edited or deleted"])])
    assert "expected [1]" in table and "got      [2]" in table
    assert "cell 12" in table and table.splitlines()[-1] == "0 of 1 exercises passed"
