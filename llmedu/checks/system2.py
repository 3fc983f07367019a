"""Check for lesson 08 (``08_frontiers``), System 2: exercise 8.2, the majority vote of self-consistency.

Reference: :func:`llmedu.system2.majority_vote` — the most common answer,
replies without an answer (None) left out, ties to the answer sampled first,
None when nothing was answered.
"""

from __future__ import annotations

import numpy as np

from llmedu.checks.framework import exercise
from llmedu.system2 import majority_vote as reference

# (answers, why a wrong result here is wrong)
_CASES = [
    ([5, 7, 5], "the answer given most often wins"),
    ([41, 41, 17, 41], "return the winning answer itself, not how many votes it got"),
    ([None, None, 8], "None is a reply with no final answer: it is not a vote, so 8 is the only answer given"),
    ([None, 12, None, None, 30, 30], "leave the Nones out before counting: 30 got two votes, None is no answer"),
    ([None, None], "when no reply has an answer there is nothing to vote for: return None"),
    ([], "no samples, no answer: return None"),
    ([7, 5, 5, 7], "a tie goes to the answer sampled first (7), not the smallest, the last, or a set's order"),
    ([9, 3, 3, 9], "a tie goes to the answer sampled first (9), not the smallest, the last, or a set's order"),
    ([3, 9, 9, 3], "a tie goes to the answer sampled first (3), not the largest, the last, or a set's order"),
    ([None, 1024, 64, 64, 1024, None], "a tie goes to the answer sampled first (1024), whatever a set's order is"),
    ([6429, 6329, 6429, 6329, 7429], "a tie goes to the answer sampled first (6429)"),
    ([0, 0, 5], "0 is an answer like any other (a sum can be 0): leave out only the Nones (`is None`), "
                "not every answer that is false in an `if`"),
    ([None, 0], "0 is an answer like any other (a sum can be 0): leave out only the Nones (`is None`), "
                "not every answer that is false in an `if`"),
]


def _random_cases(count: int = 24) -> list:
    """Lists like real samples: few distinct answers, some Nones, many ties; drawn from a fixed seed."""
    rng = np.random.default_rng(82)
    cases = []
    for _ in range(count):
        k = int(rng.choice([2, 3, 4, 5, 6, 9, 17]))
        values = [int(v) for v in rng.choice([4000, 4010, 3990, 131, 9999], size=3, replace=False)] + [None]
        cases.append([values[int(i)] for i in rng.integers(0, 4, size=k)])
    return cases


@exercise("8.2", "the majority vote of self-consistency")
def majority_vote(learner) -> int:
    cases = [(answers, why) for answers, why in _CASES] + [(answers, "") for answers in _random_cases()]
    for answers, why in cases:
        expected = reference(answers)
        got = learner.call(list(answers), shown=(list(answers),))
        if not (got is None if expected is None else got is not None and got == expected):
            counted = expected is not None and got == answers.count(expected)
            learner.fail((list(answers),), expected, got, "return the winning answer itself, not how many votes it "
                         "got" if counted else why or _why(answers, got))
        again = learner.call(list(answers), shown=(list(answers),))
        if not (again is got or again == got):
            learner.fail_because((list(answers),), f"the same samples gave {got!r}, then {again!r}: the vote must be "
                                                  "deterministic (break ties by order, not by a random draw)")
    return len(cases)


def _why(answers: list, got) -> str:
    """A sentence for a random case: which rule the learner's answer breaks."""
    votes = [a for a in answers if a is not None]
    if got is None and votes:
        return "leave out the Nones and vote among the answers that remain"
    if got is not None and got not in votes:
        return "return one of the answers, the most common one (not a count)"
    return "the most common answer wins; among tied answers, the one sampled first"
