"""Every exercise check fails on the lesson's stub and passes on the solution."""

import pytest

from notebooks import all_exercises, run_exercise

from llmedu.check import EXERCISES

CASES = all_exercises()
IDS = [f"{path.stem}-{number}" for path, number in CASES]


def test_every_registered_check_has_an_exercise_in_a_notebook():
    in_notebooks = {number for _, number in CASES}
    registered = {ex.number for ex in EXERCISES.values()}
    assert registered == in_notebooks


@pytest.mark.parametrize(("path", "number"), CASES, ids=IDS)
def test_check_fails_on_the_stub(path, number, capsys):
    with pytest.raises(AssertionError, match=f"Exercise {number}"):
        run_exercise(path, number, use_stub=True)


@pytest.mark.parametrize(("path", "number"), CASES, ids=IDS)
def test_check_passes_on_the_solution(path, number, capsys):
    run_exercise(path, number, use_stub=False)
    assert f"Exercise {number}" in capsys.readouterr().out
