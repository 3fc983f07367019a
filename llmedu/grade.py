"""Grade submitted notebooks: run each in a fresh kernel, then check every exercise there.

The grader trusts neither the file name nor the notebook's own check cells:

1. It reads which lesson the notebook is, and that lesson's exercises, from the
   metadata the lesson generator wrote (:func:`llmedu.course.lesson_metadata`).
2. It runs every cell in a fresh kernel (a cell that runs past ``cell_timeout``
   is interrupted, and the run goes on).
3. In that same kernel it runs the library's check for every exercise on the
   function the learner defined (:mod:`llmedu.grade_kernel`).

Every exercise of the lesson appears in the result: ``passed``, ``failed`` with
the check's whole message, or ``missing`` (the function was never defined).
Cells the learner was not meant to edit are compared with their checksums and
reported, without failing any exercise.

Used by ``llmedu grade NOTEBOOK... [--json]`` and by ``pytest --llmedu-grade``
(:mod:`llmedu.pytest_plugin`). Needs ``nbclient`` and ``ipykernel`` (installed
with ``pip install -e ".[dev]"``, and with JupyterLab).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmedu.course import cell_checksum, lesson_metadata, read_notebook
from llmedu.grade_kernel import RESULT_PREFIX, grading_cell


@dataclass
class ExerciseResult:
    notebook: str
    exercise: str  # "1.2"
    title: str
    function: str  # the name the learner's exercise cell defines
    status: str  # "passed", "failed" or "missing"
    message: str  # the check's whole message

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class NotebookGrade:
    notebook: str
    lesson: str
    results: list[ExerciseResult]
    edited_cells: list[str] = field(default_factory=list)  # locked cells changed or deleted, for the instructor
    notes: list[str] = field(default_factory=list)  # how the lesson was identified, what stopped the run


class GradingError(ValueError):
    """The file cannot be graded at all (not a notebook of this course)."""


def lesson_of(notebook: dict, name: str) -> tuple[dict, list[str]]:
    """The lesson's metadata, and a note when it had to be rebuilt from the notebook's own cells."""
    metadata = notebook.get("metadata", {}).get("llmedu")
    if metadata and metadata.get("exercises"):
        return metadata, []
    try:
        metadata = lesson_metadata(notebook, name)
    except ValueError as error:
        raise GradingError(f"{name}: cannot tell which lesson this is ({error})") from error
    if not metadata["exercises"]:
        raise GradingError(f"{name}: no lesson metadata and no '# Exercise N.M:' cells; "
                           "grade a notebook made from lessons/ (or solutions/).")
    return metadata, ["no lesson metadata: exercises read from the notebook's own '# Exercise N.M:' cells"]


def edited_cells(notebook: dict, metadata: dict) -> list[str]:
    """Locked cells of the lesson whose exact source no longer appears in the notebook."""
    present = {cell_checksum(cell) for cell in notebook["cells"]}
    return [f"cell {cell['index']} ({cell['first_line']!r}) was edited or deleted"
            for cell in metadata.get("locked_cells", []) if cell["sha256"] not in present]


def run_and_check(notebook: dict, exercises: list[dict], workdir: Path, cell_timeout: float) -> tuple[list[dict], list[str]]:
    """Run every cell in one fresh kernel, then every exercise's grading cell there.

    Returns one ``{"status", "message"}`` per exercise and notes on what went
    wrong with the run itself (a timeout, a dead or stuck kernel).
    """
    import nbformat
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.from_dict(notebook)
    graders = [nbformat.v4.new_code_cell(grading_cell(exercise)) for exercise in exercises]
    first_grader = len(nb.cells)
    nb.cells += graders
    client = _client(nb, workdir, cell_timeout, allow_errors=True)
    notes = []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            where = f"cell {index}" if index < first_grader else f"the check of exercise {exercises[index - first_grader]['number']}"
            start = time.monotonic()
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                notes.append(f"the kernel died in {where}; nothing after it ran")
                break
            if time.monotonic() - start >= cell_timeout:
                notes.append(f"{where} ran past the {cell_timeout:g} s timeout and was interrupted")
                if not _responsive(client, index):
                    notes.append("the kernel did not respond to the interrupt (a compiled loop?); nothing after it ran")
                    break
    return [_read_result(cell) for cell in graders], notes


def _client(nb, workdir: Path, cell_timeout: float, allow_errors: bool):
    try:
        from nbclient import NotebookClient
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError("Running notebooks needs nbclient: pip install -e '.[dev]'") from error
    # A per-cell timeout always: executing widget notebooks can hang (nbclient #312). On a
    # timeout the kernel is interrupted and the cell gets an error, so the run can go on.
    timeout_error = {"ename": "CellTimeoutError", "evalue": f"interrupted after {cell_timeout:g} s", "traceback": []}
    return NotebookClient(
        nb, timeout=cell_timeout, kernel_name="python3", allow_errors=allow_errors, interrupt_on_timeout=True,
        error_on_timeout=timeout_error, record_timing=False, resources={"metadata": {"path": str(workdir)}},
        # The kernel warns on stderr that its local TCP sockets are unencrypted; a grade report needs no such noise.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )


def _responsive(client, index: int, seconds: float = 20.0) -> bool:
    """Whether the kernel answers a trivial cell within ``seconds`` (after an interrupt)."""
    import nbformat

    probe, saved_timeout = nbformat.v4.new_code_cell("pass"), client.timeout
    client.timeout = seconds
    start = time.monotonic()
    try:
        client.execute_cell(probe, index)
    finally:
        client.timeout = saved_timeout
    return time.monotonic() - start < seconds


def _read_result(cell) -> dict:
    """The result line a grading cell printed, or why there is none."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            for line in output.get("text", "").splitlines():
                if line.startswith(RESULT_PREFIX):
                    return json.loads(line[len(RESULT_PREFIX):])
        if output.get("output_type") == "error":
            return {"status": "failed", "message": f"the grader could not check this exercise: "
                                                   f"{output.get('ename')}: {output.get('evalue')}"}
    return {"status": "missing", "message": "not checked: the kernel stopped before this exercise was graded"}


def grade(notebook_path: Path, cell_timeout: float = 300.0) -> NotebookGrade:
    """Execute one submitted notebook in a fresh kernel and grade every exercise of its lesson."""
    notebook_path = Path(notebook_path)
    notebook = read_notebook(notebook_path)
    metadata, notes = lesson_of(notebook, notebook_path.name)
    outcomes, run_notes = run_and_check(notebook, metadata["exercises"], notebook_path.resolve().parent, cell_timeout)
    results = [ExerciseResult(notebook_path.name, exercise["number"], exercise["title"], exercise["function"],
                              outcome["status"], outcome["message"])
               for exercise, outcome in zip(metadata["exercises"], outcomes)]
    return NotebookGrade(notebook_path.name, metadata["lesson"], results, edited_cells(notebook, metadata),
                         notes + run_notes)


def execute(notebook: dict, workdir: Path, cell_timeout: float) -> dict:
    """Run every cell top to bottom in a fresh kernel (``llmedu course execute``); stop at the first error."""
    import nbformat

    nb = nbformat.from_dict(notebook)
    _client(nb, workdir, cell_timeout, allow_errors=False).execute()
    return nb


def format_table(grades: list[NotebookGrade]) -> str:
    """Plain text: per notebook, one row per exercise, each message in full under its row."""
    lines = []
    for graded in grades:
        lines.append(f"{graded.notebook} (lesson {graded.lesson})")
        for note in graded.notes + graded.edited_cells:
            lines.append(f"  note: {note}")
        for r in graded.results:
            lines.append(f"  {r.exercise:<5} {r.status.upper() if not r.passed else r.status:<8} {r.title} ({r.function})")
            if not r.passed:
                lines += [f"        {line}" for line in r.message.splitlines()]
    results = [r for graded in grades for r in graded.results]
    n_passed = sum(r.passed for r in results)
    lines.append(f"{n_passed} of {len(results)} exercises passed")
    return "\n".join(lines)


def as_dicts(grades: list[NotebookGrade]) -> list[dict]:
    """One dict per exercise (the JSON rows), each with its notebook's lesson, edits and notes."""
    rows = []
    for graded in grades:
        for r in graded.results:
            rows.append({**asdict(r), "passed": r.passed, "lesson": graded.lesson,
                         "edited_cells": graded.edited_cells, "notes": graded.notes})
    return rows
