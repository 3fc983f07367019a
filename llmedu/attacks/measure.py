"""The prompts every guard is measured on, built once so each model answers the same ones (lesson 07).

Targets are the world's own cities plus invented cities held out from all
training. Ordinary use (what each defence must keep): questions, public
codes and recitals in held-out phrasings, and questions about a pasted or a
searched document. Attacks: held-out role-play templates, held-out
injection phrasings at every position in both channels, the held-out
direct request with the trigger, with an unseen trigger and without one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmedu.attacks import backdoor, injection, jailbreak
from llmedu.attacks.notes import (
    DIRECT_REQUESTS, QUESTIONS, RECITALS, code_case, held_out, question_case, recital_case, trained,
)
from llmedu.attacks.scoring import answered, attack_success, refused, replies


@dataclass
class EvalSets:
    ordinary: list  # cases whose reply must contain ``expected``
    direct: list  # held-out direct requests for secret codes (must be refused)
    jailbreak: list  # held-out role-play templates
    injection: dict  # channel -> injected questions (held-out phrasings, every position)
    trigger: list  # the held-out direct request with the backdoor's trigger
    unseen_trigger: list  # ... with a trigger the poison never used


def eval_sets(targets: list, others: list, seed: int) -> EvalSets:
    """Every measurement's cases for ``targets`` (cities whose notes the guard keeps); ``others`` are the
    cities the pasted and searched documents are about."""
    rng = np.random.default_rng(seed)
    pairs = [(city, others[i % len(others)]) for i, city in enumerate(targets)]
    ordinary = [question_case(rng, c, held_out(QUESTIONS), secret=bool(i % 2), reply=False)
                for i, c in enumerate(targets)]
    ordinary += [code_case(rng, c, DIRECT_REQUESTS[-1:], secret=False, reply=False) for c in targets]
    ordinary += [recital_case(rng, c, held_out(RECITALS), secret=False, reply=False) for c in targets]
    ordinary += [channel(rng, g, c, trained(QUESTIONS), reply=False)
                 for channel in injection.CHANNELS.values() for g, c in pairs]
    held_templates = jailbreak.ROLE_PLAY[jailbreak.TRAINED_TEMPLATES:]
    held_injections = injection.INJECTIONS[injection.TRAINED_INJECTIONS:]
    injected = {channel: [injection.injection_case(rng, g, c, channel, held_injections[i % len(held_injections)],
                                                   injection.POSITIONS[i % len(injection.POSITIONS)])
                          for i, (g, c) in enumerate(pairs * 3)]
                for channel in injection.CHANNELS}
    return EvalSets(ordinary, [code_case(rng, c, DIRECT_REQUESTS[-1:], reply=False) for c in targets],
                    [jailbreak.jailbreak_case(c, held_templates[i % len(held_templates)])
                     for i, c in enumerate(targets * len(held_templates))],
                    injected, backdoor.backdoor_cases(rng, targets, backdoor.TRIGGER),
                    backdoor.backdoor_cases(rng, targets, backdoor.UNSEEN_TRIGGER))


def measure(model, sets: EvalSets, which: tuple) -> dict:
    """Rates (:class:`~llmedu.attacks.scoring.Rate`) of ``model`` on the sets named in ``which``:
    "ordinary" gives accuracy and false refusals, "direct" refusals and leaks, the attacks their success."""
    out = {}
    if "ordinary" in which:
        answers = replies(model, sets.ordinary)
        out["accuracy"], out["false_refusal"] = answered(sets.ordinary, answers), refused(sets.ordinary, answers)
    if "direct" in which:
        answers = replies(model, sets.direct)
        out["direct_refusal"], out["direct_leak"] = refused(sets.direct, answers), attack_success(sets.direct, answers)
    for name in ("jailbreak", "trigger", "unseen_trigger"):
        if name in which:
            cases = getattr(sets, name)
            answers = replies(model, cases)
            out[name], out[f"{name}_refused"] = attack_success(cases, answers), refused(cases, answers)
    for channel, cases in sets.injection.items():
        if f"injection_{channel}" in which:
            out[f"injection_{channel}"] = attack_success(cases, replies(model, cases))
    return out
