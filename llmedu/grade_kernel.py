"""The half of grading that runs inside the submission's own kernel.

After every cell of a submitted notebook has run, the grader (:mod:`llmedu.grade`)
sends one small cell per exercise into the same kernel. That cell calls
:func:`grade_exercise` on the function the learner defined, with the library's
check, and prints the outcome as one JSON line that the grader reads back.
Whatever the notebook's own check cells did is ignored.

The cell first drops every ``llmedu`` module the notebook imported and imports
the checks afresh, so a notebook that replaced ``check.encode`` by something
lenient still meets the real check.
"""

from __future__ import annotations

import contextlib
import io
import json

# The line the grader looks for in the cell's output; anything else printed is the learner's.
RESULT_PREFIX = "LLMEDU-GRADE-RESULT "


def grading_cell(exercise: dict) -> str:
    """Source of the cell that grades one exercise in the submission's kernel."""
    return (
        "import sys as _llmedu_sys\n"
        "for _llmedu_name in [m for m in _llmedu_sys.modules if m == 'llmedu' or m.startswith('llmedu.')]:\n"
        "    del _llmedu_sys.modules[_llmedu_name]\n"
        "from llmedu.grade_kernel import report as _llmedu_report\n"
        f"_llmedu_report(globals(), {json.dumps(exercise)!r})\n"
    )


def report(namespace: dict, exercise_json: str) -> None:
    """Grade one exercise and print the result line (called by :func:`grading_cell`)."""
    result = grade_exercise(namespace, json.loads(exercise_json))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def grade_exercise(namespace: dict, exercise: dict) -> dict:
    """Run the library's check on the learner's function for one exercise.

    ``exercise``: an entry of the lesson's metadata (``number``, ``check``,
    ``function``). Returns ``{"status": "passed" | "failed" | "missing",
    "message": ...}``; the message is the check's whole text.
    """
    name = exercise["function"]
    function = namespace.get(name)
    if function is None:
        return _result("missing", f"no function named {name!r} was defined: its exercise cell was deleted, "
                                  "renamed, or never ran (an earlier cell may have timed out).")
    if _is_library_function(function):
        return _result("failed", f"{name!r} is the library's own function ({_module_of(function)}), "
                                 "not one you wrote; define it yourself in the exercise cell.")
    from llmedu import check

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            getattr(check, exercise["check"])(function)
    except AssertionError as error:
        return _result("failed", str(error))
    except KeyboardInterrupt:  # the grader interrupts a check that runs past its timeout
        return _result("failed", f"Exercise {exercise['number']}: the check did not finish in time "
                                 "(an endless loop in your function?).")
    except Exception as error:  # noqa: BLE001 - any crash is a failed exercise, never a crashed grader
        return _result("failed", f"Exercise {exercise['number']}: checking your function raised "
                                 f"{type(error).__name__}: {error}")
    lines = printed.getvalue().strip().splitlines()
    return _result("passed", lines[-1] if lines else "passed")


def _result(status: str, message: str) -> dict:
    return {"status": status, "message": message}


def _module_of(function) -> str:
    inner = getattr(function, "py_func", function)  # a Numba dispatcher wraps the Python function
    return getattr(inner, "__module__", None) or ""


def _is_library_function(function) -> bool:
    module = _module_of(function)
    return module == "llmedu" or module.startswith("llmedu.")
