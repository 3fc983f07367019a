"""``pytest --llmedu-grade alice.ipynb bob.ipynb``: one test per exercise per notebook.

Registered through the package's ``pytest11`` entry point, so it is there
wherever llmedu is installed and stays silent unless ``--llmedu-grade`` is
given. Each notebook is graded once by :func:`llmedu.grade.grade` (a fresh
kernel, then the library's checks on the learner's functions); its exercises
become tests named like ``alice.ipynb::1.4-encode``, so ``-q``, ``-rf`` and
``--junitxml`` report marks per exercise. With the flag, nbval leaves the
notebooks alone (the two routes would otherwise both run them).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("llmedu", "grading llmedu notebooks")
    group.addoption("--llmedu-grade", action="store_true", default=False,
                    help="grade the given .ipynb files: one test per exercise (see `llmedu grade`)")
    group.addoption("--llmedu-timeout", type=float, default=300.0,
                    help="seconds allowed per notebook cell when grading (default 300)")


def pytest_configure(config):
    if config.getoption("llmedu_grade"):
        for nbval_flag in ("nbval", "nbval_lax"):  # one route at a time
            if hasattr(config.option, nbval_flag):
                setattr(config.option, nbval_flag, False)


def pytest_collect_file(file_path, parent):
    if parent.config.getoption("llmedu_grade") and file_path.suffix == ".ipynb":
        return GradedNotebook.from_parent(parent, path=file_path)
    return None


class GradedNotebook(pytest.File):
    """A submitted notebook: its exercises, read from the lesson's metadata, are the tests."""

    def collect(self):
        from llmedu.course import read_notebook
        from llmedu.grade import lesson_of

        metadata, _ = lesson_of(read_notebook(self.path), self.path.name)
        for exercise in metadata["exercises"]:
            yield ExerciseItem.from_parent(self, name=f"{exercise['number']}-{exercise['function']}",
                                           number=exercise["number"])

    def graded(self):
        """Grade the notebook once, on its first exercise's turn; the other exercises reuse it."""
        if not hasattr(self, "_graded"):
            from llmedu.grade import grade

            self._graded = grade(self.path, cell_timeout=self.config.getoption("llmedu_timeout"))
        return self._graded


class ExerciseFailed(Exception):
    """An exercise that did not pass; its message is the check's."""


class ExerciseItem(pytest.Item):
    def __init__(self, *, number: str, **kwargs):
        super().__init__(**kwargs)
        self.number = number

    def runtest(self):
        graded = self.parent.graded()
        result = next(r for r in graded.results if r.exercise == self.number)
        for note in graded.notes + graded.edited_cells:
            self.add_report_section("call", "notebook", note)
        if not result.passed:
            raise ExerciseFailed(f"{result.status}: {result.message}")

    def repr_failure(self, excinfo, style=None):
        if excinfo.errisinstance(ExerciseFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::{self.name}"
