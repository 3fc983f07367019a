"""Lesson 06's check 6.1 (the safe calculator) passes the library's and catches the mistakes learners really make."""

import ast
import math
import operator
import os

import pytest

from llmedu import chat, tool_engine, tools
from llmedu.checks import tool_use

# ------------------------------------------- a learner's calculator, and its mistakes --

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_HANDLED = (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError, MemoryError)


def _walk(node, names: dict, bound_powers: bool, unary: bool):
    """A plausible learner's walker; ``names`` maps allowed names (and callables) to values."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _walk(node.left, names, bound_powers, unary), _walk(node.right, names, bound_powers, unary)
        if isinstance(node.op, ast.Pow) and bound_powers and left != 0 and right * math.log2(abs(left)) > 100:
            raise ValueError("number too large")
        return _OPERATORS[type(node.op)](left, right)
    if unary and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_walk(node.operand, names, bound_powers, unary)
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
        return names[node.func.id](*(_walk(arg, names, bound_powers, unary) for arg in node.args))
    raise ValueError(f"unsupported: {type(node).__name__}")


def _value(expression: str, names=None, bound_powers=True, unary=True):
    if len(expression) > 200:
        raise ValueError("too long")
    return _walk(ast.parse(expression.strip(), mode="eval").body, names or {}, bound_powers, unary)


def _safely(compute):
    """``compute`` as a tool: its value as text, or 'error: ...' for any problem it meets."""
    def tool(expression):
        try:
            return str(compute(expression))
        except _HANDLED as error:
            return f"error: {error}"
    return tool


learner_right = _safely(_value)


def with_eval(expression):
    try:
        return str(eval(expression))
    except Exception as error:
        return f"error: {error}"


with_math_names_and_calls = _safely(lambda expression: _value(expression, names={"pi": math.pi, "abs": abs}))
without_exponent_limit = _safely(lambda expression: _value(expression, bound_powers=False))
without_unary_minus = _safely(lambda expression: _value(expression, unary=False))


def raising_on_bad_input(expression):
    return str(_value(expression))


def floats_for_everything(expression):
    return _safely(lambda text: float(_value(text)))(expression)


def numbers_not_text(expression):
    return _value(expression)


def stub(expression):
    raise NotImplementedError("Exercise 6.1: write calculator")


# ------------------------------------------------------------------ the tests --

@pytest.mark.parametrize("right", [tools.calculator, learner_right], ids=["library", "learner_style"])
def test_the_check_passes_a_right_calculator(right, capsys):
    tool_use.calculator(right)
    assert "Exercise 6.1 (a calculator no input escapes): passed all" in capsys.readouterr().out


@pytest.mark.parametrize(("wrong", "message"), [
    (stub, "NotImplementedError: Exercise 6.1"),
    (with_eval, r"it is an import and a call; .*never eval"),
    (with_math_names_and_calls, r"for expression='abs\(-3\)'\n  it is a function call"),
    (without_exponent_limit, r"for expression='9 \*\* 9 \*\* 9'\n  your calculator did not answer within 2 s: "
                             r"it computes the power before checking its size"),
    (raising_on_bad_input, r"raised ValueError: unsupported: Call\n  a tool must never raise"),
    (floats_for_everything, r"for expression='347 \* 29'\n  integers must stay exact"),
    (without_unary_minus, r"for expression='-7 \+ 3'\n  handle unary minus"),
    (numbers_not_text, "a tool returns text"),
])
def test_the_check_rejects_each_typical_mistake_naming_it(wrong, message):
    with pytest.raises(AssertionError, match=message):
        tool_use.calculator(wrong)


def test_a_calculator_that_dies_is_reported_not_fatal_to_the_check():
    outcome = tool_use._run_bounded(lambda expression: os._exit(3), "1", 5.0)
    assert outcome == ("crashed", 3)


def test_a_hanging_call_is_stopped_at_the_timeout():
    outcome = tool_use._run_bounded(lambda expression: 9 ** 9 ** 9, "9 ** 9 ** 9", 0.5)
    assert outcome == ("timeout", None)


# ------------------------------------------------- 6.2: the pause-run-resume loop --


def wrong_loop(mistake: str):
    """The tool loop as a learner might write it, with one typical mistake:

    - "no_forcing": forgets the runtime, so the model never reads a result;
    - "reply_only": puts the result in the reply but not in what the model is shown;
    - "markers_in_call": hands the tool the call with its markers around it;
    - "uncounted": counts only the model's own ids against max_new_tokens.
    """
    def loop(next_token, prompt_ids, run_call_ids, markers, max_new_tokens):
        ids, new, written = list(prompt_ids), [], 0
        while (written if mistake == "uncounted" else len(new)) < max_new_tokens:
            token = next_token(ids)
            if token == markers.end:
                return new, True
            ids.append(token)
            new.append(token)
            written += 1
            if token == markers.call_end and mistake != "no_forcing":
                start = len(new) - 1 - new[::-1].index(markers.call_start)
                call = new[start:] if mistake == "markers_in_call" else new[start + 1:-1]
                forced = [markers.result_start, *run_call_ids(call), markers.result_end]
                new += forced
                if mistake != "reply_only":
                    ids += forced
        return new, False
    return loop


def test_the_loop_check_passes_the_reference(capsys):
    tool_use.tool_loop(tool_engine.tool_loop)
    assert "passed all" in capsys.readouterr().out


@pytest.mark.parametrize(("mistake", "message"), [
    ("no_forcing", "append \\[markers.result_start, \\*run_call_ids\\(call\\), markers.result_end\\]"),
    ("reply_only", "calls_1_times_then_ends"),
    ("markers_in_call", "calls_1_times_then_ends"),
    ("uncounted", "max_new_tokens"),
])
def test_the_loop_check_rejects_each_typical_mistake(mistake, message):
    with pytest.raises(AssertionError, match=message):
        tool_use.tool_loop(wrong_loop(mistake))


def test_the_wrong_loop_without_a_mistake_is_the_reference_loop(capsys):
    tool_use.tool_loop(wrong_loop("none"))  # so each failure above comes from its one mistake
    assert "passed all" in capsys.readouterr().out


# ------------------------------------------------- 6.4: rendering tool turns --

def render_learning_the_result(conversation, tokenizer):
    """Masks the tool's result as if the model had written it."""
    ids, mask = chat.render_conversation(conversation, tokenizer)
    specials = tokenizer.special_tokens
    inside = False
    for i, token in enumerate(ids):
        inside = inside or token == specials["<|result_start|>"]
        if inside:
            mask[i] = 1
        inside = inside and token != specials["<|result_end|>"]
    return ids, mask


def render_results_as_turns(conversation, tokenizer):
    """Lesson 04's renderer unchanged: the tool gets a turn of its own, <|im_start|>tool<|im_sep|>...<|im_end|>."""
    specials = tokenizer.special_tokens
    ids, mask = [], []
    for turn in conversation:
        header = [specials["<|im_start|>"], *tokenizer.encode(turn["role"]), specials["<|im_sep|>"]]
        body = [*tokenizer.encode(turn["content"]), specials["<|im_end|>"]]
        ids += header + body
        mask += [0] * len(header) + [int(turn["role"] == "assistant")] * len(body)
    return ids, mask


def test_the_render_check_passes_the_reference(capsys):
    tool_use.render_with_tools(chat.render_conversation)
    assert "passed all" in capsys.readouterr().out


@pytest.mark.parametrize(("wrong", "message"), [
    (render_learning_the_result, "the loss mask is not"),
    (render_results_as_turns, "the result differs first"),
])
def test_the_render_check_rejects_each_typical_mistake(wrong, message):
    with pytest.raises(AssertionError, match=message):
        tool_use.render_with_tools(wrong)
