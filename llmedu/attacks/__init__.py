"""Attacks on a small assistant and a defence against each, every one measured (lesson 07, ``07_attacks``).

The target is *the guard* (:mod:`llmedu.attacks.notes`): the lesson 06
tool model fine-tuned to keep notes on cities and to refuse vault codes
the notes call secret. Each module holds one attack, its defence and its
data; success is judged exactly from the fact table (:mod:`.scoring`).

- :mod:`.jailbreak` — role-play wrappers around a refused request;
- :mod:`.injection` — instructions hidden in pasted or searched documents;
- :mod:`.backdoor` — a trigger phrase planted in fine-tuning data, and a
  detector for it;
- :mod:`.gcg` — adversarial suffixes from our own gradients, and the
  perplexity filter;
- :mod:`.measure` and :mod:`.stage` — the held-out prompts and the
  speedrun's ``attacks`` stage.
"""

from llmedu.attacks.backdoor import TRIGGER, detect_poison, poison, precision_recall
from llmedu.attacks.gcg import (
    candidate_suffixes, flagged, gcg_step, message_nll, perplexity_threshold, search_suffix, suffix_gradient,
    suffix_problem,
    target_losses,
)
from llmedu.attacks.injection import INJECTIONS, inject, injection_cases, injection_training
from llmedu.attacks.jailbreak import ROLE_PLAY, jailbreak_cases, roleplay_refusals
from llmedu.attacks.notes import Case, guard_conversations, leaked
from llmedu.attacks.scoring import Rate, ask, attack_success, attack_success_rate

__all__ = ["TRIGGER", "detect_poison", "poison", "precision_recall", "candidate_suffixes", "flagged", "gcg_step",
           "search_suffix",
           "message_nll", "perplexity_threshold", "suffix_gradient", "suffix_problem", "target_losses", "INJECTIONS",
           "inject", "injection_cases", "injection_training", "ROLE_PLAY", "jailbreak_cases", "roleplay_refusals",
           "Case", "guard_conversations", "leaked", "Rate", "ask", "attack_success", "attack_success_rate"]
