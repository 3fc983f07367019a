"""Grade submitted notebooks: run each in a fresh kernel, report every exercise.

An exercise passes when its check cell (the cell that calls ``check.<name>(...)``)
ran without error. A check cell that raised, never ran (a cell before it timed
out), or was deleted counts as a fail, with the reason as its message.

Used by ``llmedu grade NOTEBOOK... [--json]``. Needs ``nbclient`` and
``ipykernel`` (installed with ``pip install -e ".[dev]"``, and with JupyterLab).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from llmedu.check import EXERCISES
from llmedu.course import cell_source, read_notebook

CHECK_CALL = re.compile(r"^\s*check\.(\w+)\(", re.MULTILINE)
LESSON_NUMBER = re.compile(r"^(\d\d)_")


@dataclass
class ExerciseResult:
    notebook: str
    exercise: str  # "1.2"
    title: str
    passed: bool
    message: str


def execute(notebook: dict, workdir: Path, cell_timeout: float, allow_errors: bool = True) -> dict:
    """Run every cell in a fresh kernel; returns the notebook with its outputs.

    With ``allow_errors`` it keeps going past failing cells (grading); without,
    the first error not tagged ``raises-exception`` stops it with an exception.
    """
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError("Running notebooks needs nbclient: pip install -e '.[dev]'") from error
    nb = nbformat.from_dict(notebook)
    # A per-cell timeout always: executing widget notebooks can hang (nbclient #312).
    client = NotebookClient(
        nb, timeout=cell_timeout, kernel_name="python3", allow_errors=allow_errors, record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute()
    except Exception as error:
        if not allow_errors:
            raise
        # A timeout or a dead kernel: grade what ran; the rest counts as not run.
        nb.metadata["llmedu_execution_error"] = f"{type(error).__name__}: {error}"
    return nb


def expected_exercises(notebook_path: Path) -> list[str]:
    """Check names the notebook must contain, from its ``NN_`` lesson number."""
    match = LESSON_NUMBER.match(notebook_path.name)
    if not match:
        return []
    lesson = int(match.group(1))
    return [name for name, ex in EXERCISES.items() if ex.lesson == lesson]


def _cell_result(cell) -> tuple[bool, str]:
    if cell.get("execution_count") is None:
        return False, "check cell did not run (an earlier cell timed out or the kernel died)"
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return False, f"{output.get('ename')}: {output.get('evalue')}".strip()
    text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    return True, text.strip().splitlines()[-1] if text.strip() else "passed"


def results_for(notebook_path: Path, executed: dict) -> list[ExerciseResult]:
    """One result per exercise the lesson defines, plus any other check found."""
    found: dict[str, tuple[bool, str]] = {}
    for cell in executed["cells"]:
        if cell["cell_type"] != "code":
            continue
        for name in CHECK_CALL.findall(cell_source(cell)):
            if name in EXERCISES and name not in found:
                found[name] = _cell_result(cell)
    names = expected_exercises(notebook_path)
    names += [name for name in found if name not in names]
    results = []
    for name in names:
        exercise = EXERCISES[name]
        passed, message = found.get(name, (False, f"no cell calls check.{name}(...); restore the check cell"))
        results.append(ExerciseResult(notebook_path.name, exercise.number, exercise.title, passed, message))
    return sorted(results, key=lambda r: tuple(int(part) for part in r.exercise.split(".")))


def grade(notebook_path: Path, cell_timeout: float = 300.0) -> list[ExerciseResult]:
    """Execute one submitted notebook in a fresh kernel and grade its exercises."""
    notebook_path = Path(notebook_path)
    executed = execute(read_notebook(notebook_path), notebook_path.resolve().parent, cell_timeout)
    return results_for(notebook_path, executed)


def format_table(results: list[ExerciseResult]) -> str:
    """A plain-text table: notebook, exercise, result, message (first line)."""
    rows = [("notebook", "exercise", "result", "message")]
    for r in results:
        first_line = r.message.splitlines()[0] if r.message else ""
        rows.append((r.notebook, f"{r.exercise} {r.title}", "pass" if r.passed else "FAIL", first_line))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    n_passed = sum(r.passed for r in results)
    lines.append(f"{n_passed} passed, {len(results) - n_passed} failed")
    return "\n".join(lines)


def as_dicts(results: list[ExerciseResult]) -> list[dict]:
    return [asdict(r) for r in results]
