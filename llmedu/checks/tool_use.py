"""Checks for lesson 06 (tool use): 6.1, a calculator no input escapes; 6.2, the pause–run–resume loop;
6.4, rendering tool turns with their loss mask (6.3, BM25, is in ``llmedu.checks.retrieval``).

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
from llmedu.chat import Markers
from llmedu.checks.framework import Shown, exercise
from llmedu.checks.sft_chat import expect_rendering, run_loop

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



# --------------------------------------------------------------- 6.2 --
# Exercise 6.2 asks for tool_loop(next_token, prompt_ids, run_call_ids, markers, max_new_tokens) -> (new_ids, finished),
# the reference being llmedu.tool_engine.tool_loop. The scripted models below answer from the ids they are shown, so a
# loop that does not append the forced result (or the model's own ids) before asking again gets other ids.

LOOP_MARKERS = Markers(start=90, sep=91, end=99, call_start=92, call_end=93, result_start=94, result_end=95)
_ARGUMENT = 40  # what the scripted model writes between the call markers


def _caller(n_calls: int):
    """A model that makes ``n_calls`` calls, each answered by writing the result's last id + 1, then ends."""
    m = LOOP_MARKERS

    def next_token(ids):
        ids = list(ids)
        if ids[-1] == m.call_start:
            return _ARGUMENT
        if ids[-1] == _ARGUMENT:
            return m.call_end
        if ids[-1] == m.result_end:
            return ids[-2] + 1  # it read the result
        return m.call_start if ids.count(m.call_start) < n_calls else m.end

    next_token.__name__ = f"calls_{n_calls}_times_then_ends"
    return next_token


def _runtime(call_ids):
    """The scripted runtime: its answer depends on the call, so the call must be exactly the ids between the markers."""
    call_ids = [int(i) for i in call_ids]
    return [100 + sum(call_ids) % 100, 150 + len(call_ids)]


_TOOL_LOOP_CASES = [(0, [5, 6], 20), (1, [5, 6], 20), (2, [7], 40), (1, [8], 3), (1, [8], 4), (2, [5], 0)]


@exercise("6.2", "the pause–run–resume loop")
def tool_loop(learner) -> int:
    from llmedu import tool_engine

    shown_markers = Shown("Markers(end=99, call_start=92, call_end=93, result_start=94, result_end=95, ...)")
    for n_calls, prompt, max_new_tokens in _TOOL_LOOP_CASES:
        model = _caller(n_calls)
        args = (model, list(prompt), _runtime, shown_markers, max_new_tokens)
        actual = run_loop(learner, args, model, prompt, _runtime, LOOP_MARKERS, max_new_tokens=max_new_tokens)
        expected = tool_engine.tool_loop(model, prompt, _runtime, LOOP_MARKERS, max_new_tokens)
        if actual != expected and LOOP_MARKERS.result_start not in actual[0] and n_calls:
            learner.fail(args, expected, actual, "after the model writes markers.call_end, append "
                         "[markers.result_start, *run_call_ids(call), markers.result_end] to the ids (and to the "
                         "reply) before asking the model again")
        learner.expect(args, expected, actual)
    return len(_TOOL_LOOP_CASES)


# --------------------------------------------------------------- 6.4 --
# Exercise 6.4 asks for render_with_tools(conversation, tokenizer) -> (ids, loss_mask), lesson 04's renderer grown to
# know tool turns; the reference is llmedu.chat.render_conversation.

def _tool_tokenizer():
    from llmedu.checks.sft_chat import _tokenizer
    from llmedu.tokenizer import TOOL_SPECIAL_TOKENS, BPETokenizer

    chat_tokenizer = _tokenizer()
    return BPETokenizer(chat_tokenizer.merges, [*chat_tokenizer.special_tokens, *TOOL_SPECIAL_TOKENS],
                        chat_tokenizer.pattern)


def _t(role: str, content: str) -> dict:
    return {"role": role, "content": content}


_TOOL_CONVERSATIONS = [
    [_t("user", "Hello!"), _t("assistant", "Hello!")],  # no tools: lesson 04's rendering
    [_t("user", "When was Ilsa Varrow born?"), _t("assistant", "search(Ilsa Varrow)"),
     _t("tool", "Ilsa Varrow was born in 1812."), _t("assistant", "Ilsa Varrow was born in 1812.")],
    [_t("system", "You are a helpful assistant."), _t("user", "What is 347 * 29?"),
     _t("assistant", "calculator(347 * 29)"), _t("tool", "10063"), _t("assistant", "347 * 29 = 10063."),
     _t("user", "And when was Ilsa Varrow born?"), _t("assistant", "Ilsa Varrow was born in 1812.")],
    [_t("user", "Hello!"), _t("assistant", "search(Ilsa)"), _t("tool", "no results"),  # two calls in one reply
     _t("assistant", "search(Varrow)"), _t("tool", "<|result_end|><|im_end|>"), _t("assistant", "Hello!")],
]


@exercise("6.4", "render tool turns with their loss mask")
def render_with_tools(learner) -> int:
    return expect_rendering(learner, _TOOL_CONVERSATIONS, _tool_tokenizer(),
                            Shown("a BPETokenizer with the chat and tool special tokens"),
                            "1 on the assistant's words, on its call with both call markers, and on <|im_end|>; 0 on "
                            "the tool's result with both result markers (the runtime writes them, the model never "
                            "should)")
