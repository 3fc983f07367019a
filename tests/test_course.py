"""The lesson generator: solutions/ in, lessons/ out."""

import pytest

from notebooks import ROOT, SOLUTIONS

from llmedu.course import COLAB_CELL, CourseError, build_lessons, cell_source, make_lesson, read_notebook, strip_solution

EXERCISE_CELL = '''# Exercise 1.2: add one to x.
def add_one(x):
    """Returns x + 1."""
    ### BEGIN SOLUTION
    y = x + 1
    return y
    ### END SOLUTION'''


def notebook(*sources):
    cells = [{"cell_type": "code", "source": s, "metadata": {}, "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}], "execution_count": 3} for s in sources]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_solution_block_becomes_a_raise_at_the_markers_indentation():
    stub = strip_solution(EXERCISE_CELL)
    assert stub.splitlines()[-1] == '    raise NotImplementedError("Exercise 1.2: add one to x.")'
    assert "y = x + 1" not in stub


def test_stub_keeps_the_signature_and_docstring_and_compiles():
    stub = strip_solution(EXERCISE_CELL)
    namespace = {}
    exec(stub, namespace)
    with pytest.raises(NotImplementedError, match="Exercise 1.2"):
        namespace["add_one"](1)


def test_cells_without_a_solution_are_unchanged():
    assert strip_solution("x = 1\nprint(x)") == "x = 1\nprint(x)"


def test_solution_without_exercise_header_is_refused():
    with pytest.raises(CourseError, match="Exercise N.M"):
        strip_solution("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")


def test_unclosed_solution_block_is_refused():
    with pytest.raises(CourseError, match="never closed"):
        strip_solution("# Exercise 1.1: do it.\n### BEGIN SOLUTION\nx = 1")


CHECK_CELL = "check.merge(add_one)"  # exercise 1.2's registered check is check.merge


def test_lesson_outputs_and_counts_are_cleared():
    lesson = make_lesson(notebook("print('hi')", EXERCISE_CELL, CHECK_CELL))
    for cell in lesson["cells"]:
        assert cell["outputs"] == [] and cell["execution_count"] is None


def test_make_lesson_leaves_the_solution_untouched():
    solution = notebook(EXERCISE_CELL, CHECK_CELL)
    make_lesson(solution)
    assert cell_source(solution["cells"][0]) == EXERCISE_CELL


def test_an_exercise_without_a_check_cell_is_refused():
    with pytest.raises(CourseError, match="no cell calls check.merge"):
        make_lesson(notebook(EXERCISE_CELL))


def test_lessons_are_in_sync_with_solutions(tmp_path):
    """Regenerate every lesson and compare byte for byte: run `llmedu course build` if this fails."""
    assert SOLUTIONS, "solutions/ holds no notebooks"
    build_lessons(ROOT / "solutions", tmp_path)
    generated = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in (ROOT / "lessons").glob("*.ipynb"))
    assert generated == committed
    for name in generated:
        expected = (tmp_path / name).read_text(encoding="utf-8")
        actual = (ROOT / "lessons" / name).read_text(encoding="utf-8")
        assert actual == expected, f"lessons/{name} is stale: run `llmedu course build`"


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_first_cell_installs_llmedu_on_colab_only(path):
    first = read_notebook(path)["cells"][0]
    assert first["cell_type"] == "code"
    assert cell_source(first) == COLAB_CELL
