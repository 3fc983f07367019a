"""The tools the assistant can call (lesson 06).

Every tool is a plain function ``str -> str``: the runtime passes it the text
the model wrote between the parentheses of a call such as
``calculator(347 * 29)`` and feeds its answer back to the model as tokens. A
tool never raises: every problem becomes a short string starting with
``error:`` that the model reads like any other result.
"""

from __future__ import annotations

import ast
import math
import operator
import time

# =============================================================================
# The calculator (exercise 6.1)
#
# The model's arithmetic goes through here, and the model's text is untrusted:
# it was written by a network that can be prompted by anyone. So the expression
# is parsed with ``ast`` and the tree is evaluated by our own small walker,
# which knows only number literals, + - * / // % **, unary minus and plus, and
# parentheses. Nothing is ever handed to eval/exec, so no name, call or
# attribute can reach Python. Every limit below is checked before the work it
# guards, so that no input can make a call slow or large.
# =============================================================================

MAX_LENGTH = 200  # characters: a call is one line of arithmetic (a sum of five 4-digit numbers is ~30), and this
#                   bounds the work of ast.parse and of every check before it
MAX_DEPTH = 32  # nesting, in parentheses and in the tree: no real question nests deeper, and it keeps the walker's
#                 recursion (and the parser's) far below Python's limit of 1000 frames
MAX_MAGNITUDE = 10**30  # |every literal and intermediate result|: 31 digits, more than any question needs, and
#                         keeps each multiplication at ~100 bits (instant) whatever the expression
MAX_POWER_BITS = math.log2(MAX_MAGNITUDE) + 1  # a power whose estimated result has more bits is refused before it
#                                                is computed; the 1-bit margin absorbs the estimate's rounding, and
#                                                the exact size check on the result then decides
DEADLINE_SECONDS = 0.5  # wall clock for one call: each step is instant under the limits above, so this is a
#                         backstop that the walker checks at every node, never the limit that normally acts
SIGNIFICANT_DIGITS = 12  # floats are shown to 12 significant digits: enough for any answer, and few enough that
#                          binary rounding noise (0.1 + 0.2 = 0.30000000000000004) never reaches the model


class _Refusal(Exception):
    """Raised inside the calculator to stop evaluating; its message becomes the ``error: ...`` answer."""


def calculator(expression: str) -> str:
    """The value of an arithmetic expression, as text; or ``"error: <the problem>"``. Never raises.

    Allowed: int and float literals, binary ``+ - * / // % **``, unary ``-``
    and ``+``, parentheses. Integers are exact (``"347 * 29"`` gives
    ``"10063"``, ``"2 ** 64"`` gives ``"18446744073709551616"``). Floats (from
    ``/`` or a float literal) are rounded to 12 significant digits with
    ``format(x, ".12g")``, which also drops a trailing ``.0``: ``"7 / 2"``
    gives ``"3.5"`` (exact in binary), ``"1 / 3"`` gives ``"0.333333333333"``
    (cut at 12 digits), ``"6 / 3"`` gives ``"2"`` (``/`` always makes a float,
    2.0, written without its ``.0``), ``"0.1 + 0.2"`` gives ``"0.3"``, and
    ``"1e20 * 3"`` gives ``"3e+20"``.

    Refused with a short error the model can read: anything else in the tree
    (``"error: unsupported: names"``, ``"... function calls"``, ...),
    expressions longer than ``MAX_LENGTH`` characters (spaces included),
    non-ASCII or control characters, nesting deeper than ``MAX_DEPTH`` (in
    parentheses, or in the tree: ``a + b + c`` is ``(a + b) + c``, so a sum of
    more than 32 terms is that deep), any number beyond
    ``MAX_MAGNITUDE`` (``"error: number too large"``; a power is refused from
    its operands' sizes before it is computed, so ``9**9**9`` answers at once),
    division or modulo by zero, complex results, and running past
    ``DEADLINE_SECONDS``.
    """
    try:
        text = _checked_text(expression)
        tree = _parse(text)
        return _format(_Walker(time.monotonic() + DEADLINE_SECONDS).value(tree.body, depth=1))
    except _Refusal as refusal:
        return f"error: {refusal}"
    except Exception as error:  # never reached by any input we know of; the contract is that a tool never raises
        return f"error: could not evaluate ({type(error).__name__})"


# ------------------------------------------------- before parsing --

def _checked_text(expression) -> str:
    """The expression as a plain str, stripped; refused if it is not text, too long, too deep or not plain ASCII."""
    if not isinstance(expression, str):
        raise _Refusal(f"expression must be text, not {type(expression).__name__}")
    if str.__len__(expression) > MAX_LENGTH:  # first, so that nothing below ever reads a long input
        raise _Refusal(f"expression longer than {MAX_LENGTH} characters")
    text = str.__str__(expression).strip()  # a plain str even from a str subclass, whose methods could be anything
    if not text:
        raise _Refusal("empty expression")
    if not text.isascii():
        odd = next(c for c in text if not c.isascii())
        raise _Refusal(f"only ASCII characters are allowed (found {odd!r}); write digits as 0-9")
    if any(not c.isprintable() and c not in " \t\n" for c in text):
        raise _Refusal("control character in expression")
    if _parenthesis_depth(text) > MAX_DEPTH:
        raise _Refusal(f"nested deeper than {MAX_DEPTH}")
    return text


def _parenthesis_depth(text: str) -> int:
    depth = deepest = 0
    for character in text:
        depth += {"(": 1, ")": -1}.get(character, 0)
        deepest = max(deepest, depth)
    return deepest


def _parse(text: str) -> ast.Expression:
    try:
        return ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):  # ValueError: what some Pythons raise for null bytes
        raise _Refusal("invalid syntax") from None
    except (RecursionError, MemoryError):  # the parser's own stack on deep nesting; our limits should prevent it
        raise _Refusal(f"nested deeper than {MAX_DEPTH}") from None


# ---------------------------------------------------- the walker --

# Nodes that are valid Python but not arithmetic, named for the model's error message.
_REFUSED_NODES = {
    ast.Name: "names", ast.Call: "function calls", ast.Attribute: "attribute access", ast.Subscript: "subscripts",
    ast.Lambda: "lambdas", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions", ast.JoinedStr: "f-strings",
    ast.Compare: "comparisons", ast.BoolOp: "boolean operators", ast.IfExp: "conditional expressions",
    ast.NamedExpr: "assignment", ast.Starred: "starred expressions", ast.Tuple: "tuples", ast.List: "lists",
    ast.Set: "sets", ast.Dict: "dicts", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
    ast.Slice: "slices",
}
_REFUSED_CONSTANTS = {bool: "booleans", complex: "complex numbers", str: "strings", bytes: "bytes",
                      type(None): "None", type(...): "ellipsis"}

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}  # ** is _power: it needs its own size check
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_REFUSED_OPERATORS = {ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&",
                      ast.MatMult: "@", ast.Invert: "~", ast.Not: "not"}


class _Walker:
    """Evaluates an expression tree node by node, refusing what is not arithmetic and checking every limit."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.by_kind = {ast.Constant: self._constant, ast.BinOp: self._binary, ast.UnaryOp: self._unary}

    def value(self, node: ast.AST, depth: int) -> int | float:
        if depth > MAX_DEPTH:
            raise _Refusal(f"nested deeper than {MAX_DEPTH}")
        if time.monotonic() > self.deadline:
            raise _Refusal("took too long")
        evaluate = self.by_kind.get(type(node))
        if evaluate is None:
            raise _Refusal(f"unsupported: {_REFUSED_NODES.get(type(node), type(node).__name__)}")
        return _bounded(evaluate(node, depth))

    def _constant(self, node: ast.Constant, depth: int) -> int | float:
        kind = type(node.value)
        if kind not in (int, float):  # bool is a subclass of int: compare types exactly
            raise _Refusal(f"unsupported: {_REFUSED_CONSTANTS.get(kind, kind.__name__)}")
        return node.value

    def _binary(self, node: ast.BinOp, depth: int) -> int | float:
        kind = type(node.op)
        if kind is not ast.Pow and kind not in _BINARY:
            raise _Refusal(f"unsupported: {_REFUSED_OPERATORS.get(kind, kind.__name__)}")
        left, right = self.value(node.left, depth + 1), self.value(node.right, depth + 1)
        try:
            return _power(left, right) if kind is ast.Pow else _BINARY[kind](left, right)
        except ZeroDivisionError:
            raise _Refusal("division by zero") from None
        except OverflowError:  # float arithmetic past ~1e308
            raise _Refusal("number too large") from None

    def _unary(self, node: ast.UnaryOp, depth: int) -> int | float:
        kind = type(node.op)
        if kind not in _UNARY:
            raise _Refusal(f"unsupported: {_REFUSED_OPERATORS.get(kind, kind.__name__)}")
        return _UNARY[kind](self.value(node.operand, depth + 1))


def _power(base: int | float, exponent: int | float) -> int | float:
    """``base ** exponent``, refused before computing when the result would have more than MAX_POWER_BITS bits."""
    if base != 0:  # 0 ** e is 0, 1, or a division by zero: nothing to estimate
        bits = float(exponent) * math.log2(abs(base))  # log2 |base ** exponent|; both operands are bounded
        if bits > MAX_POWER_BITS:
            raise _Refusal("number too large")
    result = base**exponent
    if isinstance(result, complex):  # a negative base to a fractional power, e.g. (-8) ** (1 / 3)
        raise _Refusal("complex result")
    return result


def _bounded(number: int | float) -> int | float:
    """``number`` itself if it is finite and within MAX_MAGNITUDE."""
    if isinstance(number, float) and math.isnan(number):
        raise _Refusal("not a number")
    if abs(number) > MAX_MAGNITUDE:  # inf included
        raise _Refusal("number too large")
    return number


def _format(number: int | float) -> str:
    """Integers exactly; floats to SIGNIFICANT_DIGITS, with -0.0 shown as 0."""
    if isinstance(number, int):
        return str(number)
    return format(number if number != 0 else 0.0, f".{SIGNIFICANT_DIGITS}g")

# ============================================================ end of the calculator


# ============================================================ the registry

def search_store(world) -> list[str]:
    """The documents ``search`` reads: the world's pretraining pages, then the late people's, which only it reaches."""
    return [*world.documents, *world.late_documents]


def default_tools(world, tokenizer, context_length: int = 256) -> dict:
    """The registry the course's assistant gets: name -> ``str -> str``.

    ``search`` answers from :func:`search_store` with passages cut to fit a
    model that reads ``context_length`` tokens (``tokenizer`` counts them).
    """
    from llmedu.search import make_search_tool, passage_budget

    search = make_search_tool(search_store(world), tokenizer, max_tokens=passage_budget(context_length))
    return {"calculator": calculator, "search": search}
