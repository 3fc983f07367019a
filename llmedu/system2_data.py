"""System 2's data: addition problems, direct and step-by-step answers, and the judge (lesson 08, ``08_frontiers``).

The task is checkable: multi-digit addition in the world's arithmetic format
(``3471 + 2958 = 6429``, as :func:`llmedu.world._arithmetic` writes it and
lesson 04's SFT data asks it). One model learns to answer **directly**:

    user:      What is 3471 + 2958?
    assistant: 3471 + 2958 = 6429.

the other to write a **scratchpad** first, one column at a time from the
right (Lee et al. 2023, "Teaching arithmetic to small transformers": the
reversed, digit-by-digit order is the one a left-to-right model can
compute), then the same final line:

    3471+2958:1+8+0=9,9
    347+295:7+5+0=12,29
    34+29:4+9+1=14,429
    3+2:3+2+1=6,6429
    3471 + 2958 = 6429.

Each line reads ``top+bottom:x+y+carry=sum,digits so far``: the operands
still to add (the shorter one padded with 0s), their last digits x and y,
the carry in (the tens digit of the line above's sum), and the answer's
digits found so far (this sum's ones digit in front of the line above's).
Every token of a line is then a short look back — at the line above or at a
delimiter — never a count of digit positions in the question, which a small
model learns slowly. The final line writes the last carry (if any) and the
digits. The base model's tokenizer already writes every digit as its own
token (``"3471"`` is four tokens), so no spaces are needed.

Both replies end with the same line, so one judge reads both: the number
after the reply's last ``=`` (:func:`parse_answer`), compared exactly with
the true sum. Problems come from a seed; the held-out problems are drawn
first and the training problems never repeat one (in either order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from llmedu.chat import render_conversation
from llmedu.sft import write_conversations

QUESTION = "What is {a} + {b}?"
HELD_OUT_STREAM, TRAIN_STREAM = 0, 1  # two random streams from one seed
_FINAL = re.compile(r"=\s*(\d+)\.?\s*$")  # the number after the last "=", at the very end of the reply
_STEP = re.compile(r"^(\d+)\+(\d+):(\d)\+(\d)\+([01])=(\d{1,2}),(\d+)$")


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    @property
    def answer(self) -> int:
        return self.a + self.b

    @property
    def question(self) -> str:
        return QUESTION.format(a=self.a, b=self.b)


def _draw(rng: np.random.Generator, digits: tuple[int, int]) -> Problem:
    """Two operands, each with between digits[0] and digits[1] digits (no leading zeros)."""
    sizes = rng.integers(digits[0], digits[1] + 1, size=2)
    a, b = (int(rng.integers(10 ** (d - 1) if d > 1 else 0, 10 ** d)) for d in sizes)
    return Problem(a, b)


def _check_digits(digits) -> tuple[int, int]:
    low, high = digits
    if not 1 <= low <= high <= 9:
        raise ValueError(f"digits must be (low, high) with 1 <= low <= high <= 9, got {digits!r}.")
    return int(low), int(high)


def make_problems(count: int, *, seed: int, digits=(3, 4), exclude=()) -> list[Problem]:
    """``count`` distinct problems from the held-out stream of ``seed`` (no ``exclude`` problem, in either order)."""
    return _distinct(np.random.default_rng([seed, HELD_OUT_STREAM]), count, _check_digits(digits), set(exclude))


def split_problems(n_held_out: int, n_train: int, *, seed: int, digits=(3, 4)) -> tuple[list, list]:
    """(held_out, train): disjoint lists of distinct problems; a training problem is never a held-out one reversed."""
    digits = _check_digits(digits)
    held_out = make_problems(n_held_out, seed=seed, digits=digits)
    train = _distinct(np.random.default_rng([seed, TRAIN_STREAM]), n_train, digits, set(held_out))
    return held_out, train


def _distinct(rng, count: int, digits, taken: set) -> list[Problem]:
    taken = taken | {Problem(p.b, p.a) for p in taken}  # a + b is b + a: the swapped problem is not new
    space = (10 ** digits[1]) ** 2
    if count < 0 or count > space // 4:
        raise ValueError(f"cannot draw {count} distinct problems of {digits} digits; ask for fewer.")
    problems = []
    while len(problems) < count:
        p = _draw(rng, digits)
        if p not in taken:
            problems.append(p)
            taken |= {p, Problem(p.b, p.a)}
    return problems


# ------------------------------------------------------------ answers --

def final_line(p: Problem) -> str:
    """The world's arithmetic line: ``3471 + 2958 = 6429.``"""
    return f"{p.a} + {p.b} = {p.answer}."


def scratchpad_steps(a: int, b: int) -> list[str]:
    """One line per column, from the right: ``top+bottom:x+y+carry=sum,digits`` (see the module docstring)."""
    width = max(len(str(a)), len(str(b)))
    top, bottom = str(a).zfill(width), str(b).zfill(width)
    steps, carry, digits = [], 0, ""
    for column in range(width, 0, -1):  # column = how many digits are still to add
        x, y = int(top[column - 1]), int(bottom[column - 1])
        total = x + y + carry
        digits = str(total % 10) + digits
        steps.append(f"{top[:column]}+{bottom[:column]}:{x}+{y}+{carry}={total},{digits}")
        carry = total // 10
    return steps


def direct_answer(p: Problem) -> str:
    return final_line(p)


def scratchpad_answer(p: Problem) -> str:
    return "\n".join(scratchpad_steps(p.a, p.b) + [final_line(p)])


ANSWERS = {"direct": direct_answer, "scratchpad": scratchpad_answer}


def conversation(p: Problem, method: str) -> list[dict]:
    """The training conversation of ``p`` with a ``method`` ("direct" or "scratchpad") reply."""
    if method not in ANSWERS:
        raise ValueError(f"method must be one of {sorted(ANSWERS)}, got {method!r}.")
    return [{"role": "user", "content": p.question}, {"role": "assistant", "content": ANSWERS[method](p)}]


def parse_answer(reply: str) -> int | None:
    """The final answer of a reply: the whole number after its last ``=``, at the very end; None if there is none."""
    match = _FINAL.search(reply.strip())
    return int(match.group(1)) if match else None


def check_steps(steps: list[str], a: int, b: int) -> None:
    """Raise ValueError unless ``steps`` is correct column addition of a + b (what the tests hold the data to)."""
    width = max(len(str(a)), len(str(b)))
    top, bottom = str(a).zfill(width), str(b).zfill(width)
    if len(steps) != width:
        raise ValueError(f"{a} + {b} has {width} columns, the scratchpad {len(steps)} lines.")
    carry, digits = 0, ""
    for line_number, line in enumerate(steps, start=1):
        match = _STEP.match(line)
        if not match:
            raise ValueError(f"line {line_number} {line!r} is not 'top+bottom:x+y+carry=sum,digits'.")
        rest_a, rest_b, x, y, c, total, written = match.groups()
        column = width - line_number + 1
        if (rest_a, rest_b) != (top[:column], bottom[:column]) or (x, y) != (rest_a[-1], rest_b[-1]):
            raise ValueError(f"line {line_number} {line!r} does not take the digits of column {column} of {a} + {b}.")
        if int(c) != carry or int(total) != int(x) + int(y) + carry or written != str(int(total) % 10) + digits:
            raise ValueError(f"line {line_number} {line!r} is wrong arithmetic for {a} + {b}.")
        carry, digits = int(total) // 10, written
    if int(str(carry) + digits) != a + b:
        raise ValueError(f"the columns of {a} + {b} spell {int(str(carry) + digits)}, not {a + b}.")


# --------------------------------------------------------- training files --

def rendered_tokens(p: Problem, method: str, tokenizer) -> tuple[int, int]:
    """(tokens, supervised tokens) of one rendered training conversation (supervised: the loss mask's ones)."""
    ids, mask = render_conversation(conversation(p, method), tokenizer)
    return len(ids), int(sum(mask))


def equal_token_sets(train: list[Problem], n_scratchpad: int, tokenizer) -> dict:
    """Training problems for both methods with the same number of rendered tokens.

    The scratchpad set is the first ``n_scratchpad`` problems; the direct set
    takes problems from the start of ``train`` until its tokens reach the
    scratchpad set's (so it has more, shorter, conversations). Returns
    ``{method: {"problems", "tokens", "supervised_tokens"}}``.
    """
    sets = {"scratchpad": {"problems": train[:n_scratchpad], "tokens": 0, "supervised_tokens": 0}}
    for p in sets["scratchpad"]["problems"]:
        tokens, supervised = rendered_tokens(p, "scratchpad", tokenizer)
        sets["scratchpad"]["tokens"] += tokens
        sets["scratchpad"]["supervised_tokens"] += supervised
    direct = {"problems": [], "tokens": 0, "supervised_tokens": 0}
    for p in train:
        if direct["tokens"] >= sets["scratchpad"]["tokens"]:
            break
        tokens, supervised = rendered_tokens(p, "direct", tokenizer)
        direct["problems"].append(p)
        direct["tokens"] += tokens
        direct["supervised_tokens"] += supervised
    if direct["tokens"] < sets["scratchpad"]["tokens"]:
        raise ValueError(f"{len(train)} training problems are too few to match the scratchpad set's "
                         f"{sets['scratchpad']['tokens']} tokens with direct answers; draw more.")
    sets["direct"] = direct
    return sets


def write_training_file(path, problems: list[Problem], method: str) -> None:
    """The JSON Lines file ``llmedu sft`` (and :func:`llmedu.train.train` with task "sft") reads."""
    write_conversations(path, [{"conversation": conversation(p, method), "a": p.a, "b": p.b} for p in problems])
