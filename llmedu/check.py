"""Exercise checks, one function per exercise, called right after it in a notebook.

    from llmedu import check
    check.merge(merge)

Each check runs the learner's function on several inputs, edge cases included,
against the library's reference: one printed line on success, an
``AssertionError`` naming the first failing input, the expected and the actual
value otherwise. The checks live in ``llmedu.checks``, one module per lesson;
this module gathers them under one name.
"""

from llmedu.checks.attacks import attack_success_rate, gcg_step, inject, message_nll, poison
from llmedu.checks.compress import encode_symbol
from llmedu.checks.framework import EXERCISES, Exercise
from llmedu.checks.images import nearest_code
from llmedu.checks.pretraining import (
    adamw_update, cross_entropy, cross_entropy_backward, finite_difference, linear_backward, rmsnorm_backward,
)
from llmedu.checks.quantize import quantize_q8
from llmedu.checks.retrieval import bm25_scores
from llmedu.checks.rlhf import bradley_terry_loss, dpo_loss, elo_ratings, grpo_objective, reward_model_loss
from llmedu.checks.scaling import fit_power_law
from llmedu.checks.sft_chat import honest_answer, masked_cross_entropy, reply_loop, render_conversation
from llmedu.checks.system2 import majority_vote
from llmedu.checks.tokenizer import decode, encode, get_stats, merge, train
from llmedu.checks.tool_use import calculator, render_with_tools, tool_loop
from llmedu.checks.transformer import (
    apply_rope, attend_cached, block, causal_attention, forward, grouped_query_attention, matvec, rmsnorm, swiglu,
    top_p_filter,
)
from llmedu.checks.two_files import count_parameters, generate, sample_token  # lesson 00

__all__ = [
    "EXERCISES", "Exercise",
    # lesson 00
    "count_parameters", "sample_token", "generate",
    # lesson 01
    "get_stats", "merge", "train", "encode", "decode",
    # lesson 02
    "rmsnorm", "apply_rope", "causal_attention", "grouped_query_attention", "swiglu", "block", "forward", "matvec",
    "attend_cached", "top_p_filter",
    # lesson 03
    "cross_entropy", "finite_difference", "cross_entropy_backward", "linear_backward", "rmsnorm_backward",
    "adamw_update",
    # lesson 04
    "render_conversation", "masked_cross_entropy", "reply_loop", "honest_answer",
    # lesson 05
    "bradley_terry_loss", "reward_model_loss", "dpo_loss", "grpo_objective", "elo_ratings",
    # lesson 06
    "calculator", "tool_loop", "bm25_scores", "render_with_tools",
    # lesson 07
    "attack_success_rate", "inject", "poison", "gcg_step", "message_nll",
    # lesson 08
    "fit_power_law", "majority_vote", "quantize_q8", "encode_symbol", "nearest_code",
]
