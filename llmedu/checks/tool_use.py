"""Checks for lesson 06 (tool use): 6.1, a calculator no input escapes.

The reference is ``llmedu.tools.calculator``. The learner's
``calculator(expression) -> str`` must answer ordinary arithmetic exactly
(integers as exact digits, floats to within 1e-9 relative: the rounding is the
learner's to choose and document), and answer every hostile input with a
string starting with ``error:``, never an exception: a tool that raises ends
the chat. The cases come in the order that gives the typical mistakes their
most helpful message first: wrong or float answers, then inputs that only an
``eval`` (or a walker too generous with names and calls) would compute, then
inputs that must be refused without raising, and last the huge powers.

A calculator without an exponent limit computes ``9 ** 9 ** 9`` for minutes
in C, where no timer can stop it, so the huge powers run in a forked child
process that is killed after ``HUGE_TIMEOUT_SECONDS``. Where fork does not
exist (Windows), they run in this process, and such a calculator hangs the check.
"""

from __future__ import annotations

import math
import multiprocessing
import warnings

from llmedu import tools
from llmedu.checks.framework import exercise

HUGE_TIMEOUT_SECONDS = 2.0  # a bounded calculator answers in microseconds; an unbounded one never would

_UNARY = "handle unary minus: an ast.UnaryOp node whose op is ast.USub (and ast.UAdd for a leading +)"
_EXACT = ("integers must stay exact: a float keeps only 53 bits (about 16 digits), so keep int literals as int "
          "(only / makes a float) and write the result with str()")
_NEVER_RAISE = ("a tool must never raise (the chat would end): catch the problem and return a short string "
                "starting with 'error:' that the model can read")
_REFUSE = ("only number literals, + - * / // % **, unary minus and parentheses are allowed: walk the ast tree "
           "yourself and return 'error: ...' for any other node (never eval or exec the text)")
_BOUND = ("estimate a power's size from its operands before computing it (about exponent * log2|base| bits) and "
          "refuse results beyond a limit you choose (the library's is |x| <= 10**30)")

# (expression, advice when the answer is wrong): the answer must be the reference's, digit for digit
_EXACT_CASES = [
    ("347 * 29", ""),
    ("1234 + 5678", ""),
    ("2 + 3 * 4", "* binds tighter than +: ast.parse builds the tree that way, so evaluate the tree as it is"),
    ("(2 + 3) * 4", ""),
    ("-7 + 3", _UNARY),
    ("-(2 + 3) * 4", _UNARY),
    ("17 // 5", "// is floor division: ast.FloorDiv"),
    ("17 % 5", "% is the remainder: ast.Mod"),
    ("2 ** 10", "** is the power: ast.Pow"),
    ("123456789 * 987654321", _EXACT),
]
# The answer must read as a number within 1e-9 relative of the reference's (whose rounding is 12 digits)
_FLOAT_CASES = ["7 / 2", "1 / 3", "0.5 * 3"]
# (expression, what it is): each computes something, or escapes, unless it is refused
_ESCAPES = [
    ("__import__('os').getpid()", "an import and a call"),
    ("().__class__.__name__", "attribute access"),
    ("abs(-3)", "a function call"),
    ("pi", "a name"),
    ("(lambda: 7)()", "a lambda"),
    ("[7 for _ in '1'][0]", "a comprehension"),
    ("f'{7}'", "an f-string"),
    ("'7'", "a string"),
    ("(x := 7)", "an assignment"),
    ("1 < 2", "a comparison"),
    ("1 and 7", "a boolean operator"),
    ("1 << 3", "a bit shift"),
    ("~5", "a bitwise not"),
    ("True + 1", "a bool, which is not a number here"),
]
# (expression, what it is): inputs that must come back as 'error: ...' without raising
_REFUSALS = [
    ("1 / 0", "a division by zero"),
    ("5 % 0", "a modulo by zero"),
    ("2 +", "a syntax error"),
    ("", "an empty expression"),
    ("\u0661\u0662\u0663 + 1", "non-ASCII (Arabic-Indic) digits"),
    ("1\x00", "a null byte"),
    ("-" * 10_000 + "1", "10,000 nested minus signs"),
    ("(" * 1_000 + "1" + ")" * 1_000, "1,000 nested parentheses"),
    ("1 + " * 5_000 + "1", "a 20,000-character expression"),
]
# Huge powers, run in a child process: each must be refused before it is computed.
_HUGE = ["9 ** 9 ** 9", "2 ** 10 ** 10", "(10 ** 30) ** (10 ** 30)", "((10 ** 50) ** 50) ** 50"]


@exercise("6.1", "a calculator no input escapes")
def calculator(learner) -> int:
    for expression, advice in _EXACT_CASES:
        _expect_exact(learner, expression, tools.calculator(expression), advice)
    for expression in _FLOAT_CASES:
        _expect_float(learner, expression, float(tools.calculator(expression)))
    for expression, what in _ESCAPES:
        _expect_error(learner, expression, _answer(learner, expression), f"it is {what}; {_REFUSE}")
    for expression, what in _REFUSALS:
        _expect_error(learner, expression, _answer(learner, expression), f"it is {what}: refuse it")
    for expression in _HUGE:
        _expect_huge_refused(learner, expression)
    return len(_EXACT_CASES) + len(_FLOAT_CASES) + len(_ESCAPES) + len(_REFUSALS) + len(_HUGE)


# ------------------------------------------------------------ each kind of case --

def _answer(learner, expression: str):
    """The learner's answer to an input that must be refused; if it raises, a failure that says a tool must not."""
    try:
        return learner.call(expression)
    except AssertionError as failure:
        if failure.__cause__ is None:
            raise
        raise AssertionError(f"{failure}\n  {_NEVER_RAISE}") from failure.__cause__


def _expect_text(learner, expression: str, expected: str, answer) -> None:
    if not isinstance(answer, str):
        learner.fail((expression,), expected, answer,
                     "a tool returns text (the runtime feeds it to the model as tokens): return str(result)")


def _expect_exact(learner, expression: str, expected: str, advice: str) -> None:
    answer = learner.call(expression)
    _expect_text(learner, expression, expected, answer)
    if answer != expected:
        if any(mark in answer for mark in ".e") and _number(answer) == float(expected):
            advice = _EXACT  # the right value, written as a float
        elif answer.startswith("error:") and advice in ("", _EXACT):
            advice = "this is ordinary arithmetic: it must not be refused (is a limit too tight?)"
        learner.fail((expression,), expected, answer, advice)


def _expect_float(learner, expression: str, value: float) -> None:
    answer = learner.call(expression)
    _expect_text(learner, expression, repr(value), answer)
    number = _number(answer)
    if number is None or not math.isclose(number, value, rel_tol=1e-9):
        learner.fail((expression,), f"{value!r} (any rounding within 1e-9)", answer,
                     "/ is true division (ast.Div) and gives a float; write it as a number")


def _expect_error(learner, expression: str, answer, why: str) -> None:
    if not (isinstance(answer, str) and answer.startswith("error:")):
        learner.fail((expression,), "a string starting with 'error:'", answer, why)


def _expect_huge_refused(learner, expression: str) -> None:
    outcome, detail = _run_bounded(learner.function, expression, HUGE_TIMEOUT_SECONDS)
    if outcome == "timeout":
        learner.fail_because((expression,), f"your calculator did not answer within {HUGE_TIMEOUT_SECONDS:g} s: "
                                            f"it computes the power before checking its size; {_BOUND}")
    if outcome == "raised":
        learner.fail_because((expression,), f"your function raised {detail}\n  {_NEVER_RAISE}; and {_BOUND}")
    if outcome == "crashed":
        learner.fail_because((expression,), f"the process running your calculator died (exit code {detail}): "
                                            f"probably out of memory; {_BOUND}")
    _expect_error(learner, expression, detail, f"this number is far too large to compute or show; {_BOUND}")


def _number(answer) -> float | None:
    try:
        return float(answer)
    except (TypeError, ValueError, OverflowError):
        return None


# ----------------------------------------------- a call that may never return --

def _run_bounded(function, expression: str, timeout: float) -> tuple[str, object]:
    """Run ``function(expression)`` in a forked child, killed after ``timeout`` seconds.

    Returns ("returned", the answer), ("raised", "TypeName: message"),
    ("timeout", None) or ("crashed", the child's exit code). Where fork does
    not exist the call runs here, unbounded.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        return _outcome(function, expression)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_send_outcome, args=(function, expression, sender), daemon=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12 warns on forking a threaded process
        child.start()
    sender.close()  # the child holds its own copy: when it dies, recv() sees the end of the pipe
    try:
        if not receiver.poll(timeout):
            return "timeout", None
        try:
            return receiver.recv()
        except EOFError:  # the child died without an answer
            child.join()
            return "crashed", child.exitcode
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()


def _outcome(function, expression: str) -> tuple[str, object]:
    try:
        answer = function(expression)
    except Exception as error:
        return "raised", f"{type(error).__name__}: {error}"[:300]
    return "returned", answer if isinstance(answer, str) else repr(answer)[:300]


def _send_outcome(function, expression: str, sender) -> None:
    sender.send(_outcome(function, expression))  # in the child: a str, or the repr of anything else
    sender.close()

