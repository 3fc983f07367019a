"""The calculator tool (lesson 06, issue 13 §2 and §4): exact arithmetic, documented float rounding, and no escape.

Every hostile input must come back as a short ``error: ...`` string, quickly
and in little memory, and nothing in it may ever reach eval, exec, an import
or any function of ours.
"""

import ast
import builtins
import contextlib
import operator
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmedu.checks.tool_use import _run_bounded
from llmedu.tools import MAX_DEPTH, MAX_LENGTH, MAX_MAGNITUDE, calculator

TIME_BOUND_SECONDS = 1.0  # each call takes microseconds; a second leaves room for a busy shared machine
MEMORY_BOUND_BYTES = 4 * 2**20  # peak traced allocation of one call: the parse of <= 200 characters and a few ints

# ----------------------------------------------------------- right answers --


@pytest.mark.parametrize(("expression", "expected"), [
    ("347 * 29", "10063"),
    ("1234 + 5678", "6912"),
    ("9876 - 1234", "8642"),
    ("4821 + 3907 + 1456", "10184"),
    ("-15 + 4", "-11"),
    ("-3 * -4", "12"),
    ("+5", "5"),
    ("2 + 3 * 4", "14"),
    ("(2 + 3) * 4", "20"),
    ("2 * (3 + 4) - 5", "9"),
    ("17 // 5", "3"),
    ("-17 // 5", "-4"),
    ("17 % 5", "2"),
    ("2 ** 10", "1024"),
    ("-2 ** 2", "-4"),
    ("2 ** 3 ** 2", "512"),
    ("123456789 * 987654321", "121932631112635269"),
    ("10 ** 30", "1" + "0" * 30),
    ("  1 + 2  ", "3"),
])
def test_integer_arithmetic_is_exact_with_python_precedence(expression, expected):
    assert calculator(expression) == expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("7 / 2", "3.5"),  # exact in binary
    ("1 / 3", "0.333333333333"),  # cut at 12 significant digits
    ("2 / 3", "0.666666666667"),  # ... rounded, not truncated
    ("6 / 3", "2"),  # / makes the float 2.0, written without its .0
    ("0.1 + 0.2", "0.3"),  # the binary noise 0.30000000000000004 is below 12 digits
    ("1e20 * 3", "3e+20"),
    ("2 ** -2", "0.25"),
    ("7.5 % 2", "1.5"),
    ("0.0 * -1", "0"),  # -0.0 is shown as 0
])
def test_floats_are_rounded_to_12_significant_digits(expression, expected):
    assert calculator(expression) == expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("-" * (MAX_DEPTH - 1) + "1", "-1"),  # 32 levels: 31 minus signs above the number
    ("+".join(["1"] * MAX_DEPTH), str(MAX_DEPTH)),  # a sum of 32 terms is 32 levels deep
    ("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH, "1"),
    (f"{MAX_MAGNITUDE} - 1", str(MAX_MAGNITUDE - 1)),
    (f"-{MAX_MAGNITUDE}", str(-MAX_MAGNITUDE)),
    ("1 + 2".ljust(MAX_LENGTH), "3"),  # spaces count: exactly MAX_LENGTH characters
], ids=["depth", "sum_of_32", "parentheses", "magnitude", "negative_magnitude", "length"])
def test_inputs_at_each_limit_are_still_answered(expression, expected):
    assert calculator(expression) == expected


# --------------------------------------------------- refusals name the problem --

@pytest.mark.parametrize(("expression", "error"), [
    ("x + 1", "error: unsupported: names"),
    ("abs(-3)", "error: unsupported: function calls"),
    ("(1).real", "error: unsupported: attribute access"),
    ("1 / 0", "error: division by zero"),
    ("5 % 0", "error: division by zero"),
    ("9**9**9", "error: number too large"),
    ("10**30 * 10**30", "error: number too large"),
    (f"{MAX_MAGNITUDE} + 1", "error: number too large"),
    ("1 + 2".ljust(MAX_LENGTH + 1), f"error: expression longer than {MAX_LENGTH} characters"),
    ("-" * 32 + "1", f"error: nested deeper than {MAX_DEPTH}"),
    ("+".join(["1"] * 33), f"error: nested deeper than {MAX_DEPTH}"),
    ("1 << 3", "error: unsupported: <<"),
    ("'1' + '2'", "error: unsupported: strings"),
    ("True + 1", "error: unsupported: booleans"),
    ("(-8) ** (1 / 3)", "error: complex result"),
    ("1 +", "error: invalid syntax"),
    ("", "error: empty expression"),
    ("\u0661\u0662 + 1", "error: only ASCII characters are allowed (found '\u0661'); write digits as 0-9"),
])
def test_each_refusal_is_a_short_error_naming_the_problem(expression, error):
    assert calculator(expression) == error


# ---------------------------------------------------------- the hostile corpus --

# Numbers beyond the limit, each refused before it is computed (a power from its operands' sizes).
HUGE = {
    "power_tower": "9**9**9",
    "power_of_power": "2**10**10",
    "huge_base_and_exponent": "(10**30)**(10**30)",
    "huge_product": "10**30 * 10**30",
    "squared_limit": "(10**30)**2",
    "float_power": "2.0 ** 10000",
    "small_base_negative_exponent": "0.5 ** -2000",
    "float_overflow": "1e308 * 10",
    "infinite_literal": "1e999",
    "long_literal": "1" + "0" * 31,
    "below_the_limit": f"-{MAX_MAGNITUDE} - 1",
}


@pytest.mark.parametrize("expression", HUGE.values(), ids=HUGE.keys())
def test_huge_numbers_are_refused_before_they_are_computed(expression):
    # In a child process killed after 10 s, so that a lost limit fails this test instead of hanging the suite.
    assert _run_bounded(calculator, expression, timeout=10.0) == ("returned", "error: number too large")


HOSTILE = {
    **HUGE,
    # attribute access, imports, names, calls: the ways out of a naive eval
    "class_bases": "().__class__.__bases__",
    "subclasses": "().__class__.__base__.__subclasses__()",
    "attribute_of_number": "(1).real",
    "import_system": "__import__('os').system('x')",
    "import_getpid": "__import__('os').getpid()",
    "name": "x",
    "builtins_name": "__builtins__",
    "sentinel_name": "sentinel",
    "call": "sentinel()",
    "call_builtin": "abs(-3)",
    "lambda": "lambda: 1",
    "lambda_called": "(lambda: sentinel())()",
    "list_comprehension": "[sentinel() for _ in '1']",
    "dict_comprehension": "{k: sentinel() for k in '1'}",
    "set_comprehension": "{sentinel() for _ in '1'}",
    "generator": "(sentinel() for _ in '1')",
    "f_string": "f'{sentinel()}'",
    "string": "'1' + '2'",
    "string_repeat": "'a' * 3",
    "bytes": "b'1'",
    "walrus": "(x := 5)",
    "starred": "*[1]",
    "starred_in_list": "[*'12']",
    "subscript": "[1, 2][0]",
    "tuple": "1, 2",
    "comparison": "1 < 2",
    "chained_comparison": "1 < 2 < 3",
    "boolean_and": "1 and 2",
    "boolean_or": "0 or sentinel()",
    "not": "not 0",
    "conditional": "1 if 1 else sentinel()",
    "shift_huge": "1 << 10**9",
    "shift_right": "2 >> 1",
    "bit_and": "6 & 3",
    "bit_or": "6 | 3",
    "bit_xor": "6 ^ 3",
    "invert": "~5",
    "matmul": "1 @ 2",
    "boolean_literal": "True + 1",
    "none": "None",
    "ellipsis": "...",
    "complex": "1j * 1j",
    "complex_result": "(-8) ** (1 / 3)",
    "statement": "import os",
    "two_statements": "1; 2",
    "division_by_zero": "1 / 0",
    "floor_division_by_zero": "1 // 0",
    "modulo_by_float_zero": "1.5 % 0.0",
    "zero_to_negative": "0 ** -1",
    # deep nesting and long inputs
    "parentheses_1000": "(" * 1000 + "1" + ")" * 1000,
    "parentheses_100": "(" * 100 + "1" + ")" * 100,
    "minus_10000": "-" * 10000 + "1",
    "minus_150": "-" * 150 + "1",
    "plus_chain_100": "1" + "+1" * 99,
    "long_sum": "1 + " * 60 + "1",
    "long_digits": "1" * 5000,
    "long_whitespace": " " * 100_000 + "1",
    "megabyte": "9" * 2**20,
    # characters: non-ASCII digits, null bytes, controls, nothing at all
    "arabic_indic_digits": "\u0661\u0662\u0663 + 1",
    "fullwidth_digits": "\uff11\uff12 * 3",
    "superscript": "2\u00b2",
    "no_break_space": "12\u00a0+ 3",
    "null_byte": "1\x00",
    "null_inside": "1 +\x00 2",
    "only_null": "\x00",
    "carriage_return": "1\r+2",
    "escape": "\x1b[2J1",
    "empty": "",
    "space": " ",
    "whitespace": "\t\n ",
    "syntax": "1 +",
    "unclosed": "(1",
    "two_numbers": "1 2",
}


class HostileStr(str):
    """A str whose own methods lie or raise: the calculator must not trust them."""

    def strip(self, *args):
        raise RuntimeError("strip")

    def __len__(self):
        return 0

    def isascii(self):
        return True


NOT_TEXT = {"none": None, "int": 12, "float": 1.5, "bytes": b"1 + 1", "list": ["1 + 1"], "object": object(),
            "hostile_str_subclass": HostileStr("__import__('os').getpid()")}

CORPUS = list(HOSTILE.values()) + list(NOT_TEXT.values())


def _measured(expression) -> tuple[object, float, int]:
    """(calculator's answer, seconds, peak bytes allocated during the call)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = time.perf_counter()
        answer = calculator(expression)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return answer, seconds, peak


@pytest.mark.parametrize("expression", CORPUS,
                         ids=list(HOSTILE) + [f"not_text_{name}" for name in NOT_TEXT])
def test_hostile_input_is_refused_quickly_in_little_memory(expression):
    answer, seconds, peak = _measured(expression)
    assert isinstance(answer, str) and answer.startswith("error: "), answer
    assert len(answer) <= 100  # a short message the model can read
    assert seconds < TIME_BOUND_SECONDS
    assert peak < MEMORY_BOUND_BYTES


@pytest.fixture
def escape_watch(monkeypatch):
    """(calls seen, a context that watches them): eval, exec, compile beyond parsing, any import, a sentinel.

    Inside the context ``eval``, ``exec`` and the builtin ``sentinel`` (which
    the corpus calls by name) raise as well as being recorded, so an escape
    cannot go on to do anything; ``compile`` is allowed only to build an AST
    (``ast.parse`` uses it), and every import is recorded.
    """
    seen = []
    real_compile, real_import = builtins.compile, builtins.__import__

    def refuse(name):
        def spy(*args, **kwargs):
            seen.append(name)
            raise AssertionError(f"{name} was called")
        return spy

    def compile_only_to_ast(source, filename, mode, flags=0, *args, **kwargs):
        if not flags & ast.PyCF_ONLY_AST:
            seen.append(f"compile to code ({mode})")
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    def recorded_import(name, *args, **kwargs):
        seen.append(f"import {name}")
        return real_import(name, *args, **kwargs)

    @contextlib.contextmanager
    def watching():
        with monkeypatch.context() as patch:
            patch.setattr(builtins, "eval", refuse("eval"))
            patch.setattr(builtins, "exec", refuse("exec"))
            patch.setattr(builtins, "sentinel", refuse("sentinel"), raising=False)
            patch.setattr(builtins, "compile", compile_only_to_ast)
            patch.setattr(builtins, "__import__", recorded_import)
            yield

    return seen, watching


def test_no_input_reaches_eval_exec_compile_an_import_or_a_function(escape_watch):
    seen, watching = escape_watch
    with watching():
        answers = [calculator(expression) for expression in CORPUS]
    assert seen == []
    assert all(answer.startswith("error: ") for answer in answers)


def _eval_calculator(expression):  # the naive calculator the watch exists to catch
    try:
        return str(eval(expression))
    except Exception as error:
        return f"error: {error}"


def test_the_escape_watch_sees_an_eval_based_calculator(escape_watch):
    seen, watching = escape_watch
    with watching():
        _eval_calculator("sentinel()")
    assert seen == ["eval"]


# ------------------------------------------------------------------ fuzzing --

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None)
CALCULATOR_ALPHABET = "0123456789+-*/%(). eE_jx\t\n"


@FUZZ
@given(st.one_of(st.text(max_size=300), st.text(alphabet=CALCULATOR_ALPHABET, max_size=250)))
def test_any_text_gives_a_number_or_an_error_quickly(text):
    start = time.perf_counter()
    answer = calculator(text)
    assert time.perf_counter() - start < TIME_BOUND_SECONDS
    assert isinstance(answer, str)
    if not answer.startswith("error: "):
        float(answer)  # otherwise a number, as text


# Random integer expressions as trees: ("num", n), ("neg", tree), or (operator, left, right). The right side of
# ** is a small literal, so that the test's own evaluator below never computes anything large.
_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
              "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
_LITERALS = st.integers(-999, 999).map(lambda n: ("num", n))


def _bigger(trees):
    return st.one_of(st.tuples(st.sampled_from(["+", "-", "*", "/", "//", "%"]), trees, trees),
                     st.tuples(st.just("**"), trees, st.integers(0, 12).map(lambda n: ("num", n))),
                     st.tuples(st.just("neg"), trees))


EXPRESSION_TREES = st.recursive(_LITERALS, _bigger, max_leaves=12)


def _text(tree) -> str:
    if tree[0] == "num":
        return str(tree[1]) if tree[1] >= 0 else f"(-{-tree[1]})"
    if tree[0] == "neg":
        return f"(-{_text(tree[1])})"
    return f"({_text(tree[1])} {tree[0]} {_text(tree[2])})"


def _depth(tree) -> int:
    """Levels in Python's syntax tree: a negative literal is a minus above a number."""
    if tree[0] == "num":
        return 1 if tree[1] >= 0 else 2
    return 1 + max(_depth(child) for child in tree[1:])


class _OutOfRange(Exception):
    pass


def _value(tree):
    """Python's own arithmetic on the tree; _OutOfRange as soon as any value leaves [-10**30, 10**30]."""
    if tree[0] == "num":
        value = tree[1]
    elif tree[0] == "neg":
        value = -_value(tree[1])
    else:
        try:
            value = _OPERATORS[tree[0]](_value(tree[1]), _value(tree[2]))
        except (ZeroDivisionError, OverflowError):
            raise _OutOfRange from None
    if abs(value) > 10**30:
        raise _OutOfRange
    return value


def _expected(tree) -> str | None:
    """The documented answer: an int exactly, a float to 12 significant digits (-0.0 as 0); None for an error."""
    text = _text(tree)
    if len(text) > 200 or _depth(tree) > 32:
        return None
    try:
        value = _value(tree)
    except _OutOfRange:
        return None
    return str(value) if isinstance(value, int) else format(value if value != 0 else 0.0, ".12g")


@FUZZ
@given(EXPRESSION_TREES)
def test_well_formed_expressions_match_python_arithmetic_or_are_refused_for_a_reason(tree):
    expected, answer = _expected(tree), calculator(_text(tree))
    if expected is None:
        assert answer.startswith("error: ")
    else:
        assert answer == expected
