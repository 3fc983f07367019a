"""Lesson 04's checks catch the mistakes learners really make, not only the blank stub."""

import numpy as np
import pytest

from llmedu import backward, chat, check, sft_data
from llmedu.chat import IM_END, IM_SEP, IM_START
from llmedu.world import fact_answer


# ------------------------------------------------------------- 4.1: rendering --

def _render(conversation, tokenizer, *, allowed_special=(), learn_header=False, learn_end=True, roles=("assistant",)):
    """A configurable renderer: with the defaults it is the right one; each option is a typical mistake."""
    start, sep, end = (tokenizer.special_tokens[m] for m in (IM_START, IM_SEP, IM_END))
    ids, mask = [], []
    for turn in conversation:
        header = [start, *tokenizer.encode(turn["role"]), sep]
        content = tokenizer.encode(turn["content"], allowed_special=allowed_special)
        learn = int(turn["role"] in roles)
        ids += header + content + [end]
        mask += [learn * learn_header] * len(header) + [learn] * len(content) + [learn * learn_end]
    return ids, mask


def render_right(conversation, tokenizer):
    return _render(conversation, tokenizer)


def render_typed_markers_as_control_tokens(conversation, tokenizer):
    return _render(conversation, tokenizer, allowed_special="all")


def render_mask_on_the_assistant_header_too(conversation, tokenizer):
    return _render(conversation, tokenizer, learn_header=True)


def render_without_learning_to_stop(conversation, tokenizer):  # <|im_end|> left out of the mask
    return _render(conversation, tokenizer, learn_end=False)


def render_learning_every_turn(conversation, tokenizer):  # the user's words counted as well
    return _render(conversation, tokenizer, roles=("system", "user", "assistant"))


def render_skipping_the_system_turn(conversation, tokenizer):
    return _render([t for t in conversation if t["role"] != "system"], tokenizer)


def render_last_turn_only(conversation, tokenizer):  # a multi-turn conversation loses its history
    return _render(conversation[-2:], tokenizer)


def render_mask_as_booleans_of_the_wrong_length(conversation, tokenizer):
    ids, mask = _render(conversation, tokenizer)
    return ids, mask[:-1]


# ------------------------------------------------------------- 4.2: the loss --

def _log_probs(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _picked(logits, targets):
    return _log_probs(logits)[np.arange(len(targets)), targets]


def masked_loss_right(logits, targets, mask):
    return float(-(_picked(logits, targets) * mask).sum() / mask.sum())


def masked_loss_over_all_positions(logits, targets, mask):  # masked terms zeroed, but divided by N
    return float(-(_picked(logits, targets) * mask).sum() / len(targets))


def masked_loss_ignoring_the_mask(logits, targets, mask):
    return float(-_picked(logits, targets).mean())


def masked_loss_without_max_subtraction(logits, targets, mask):  # exp(1000) overflows
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return float(-(np.log(probs[np.arange(len(targets)), targets]) * mask).sum() / mask.sum())


def masked_loss_summed(logits, targets, mask):
    return float(-(_picked(logits, targets) * mask).sum())


# ------------------------------------------------------------- 4.3: the loop --

def loop_right(next_token, prompt_ids, end_id, max_new_tokens):
    return chat.reply_loop(next_token, prompt_ids, end_id, max_new_tokens)


def loop_keeping_the_end_token(next_token, prompt_ids, end_id, max_new_tokens):
    ids, reply = list(prompt_ids), []
    while len(reply) < max_new_tokens:
        reply.append(next_token(ids + reply))
        if reply[-1] == end_id:
            return reply, True
    return reply, False


def loop_not_stopping_at_the_end_token(next_token, prompt_ids, end_id, max_new_tokens):
    reply = []
    while len(reply) < max_new_tokens:
        reply.append(next_token(list(prompt_ids) + reply))
    return reply, False


def loop_skipping_end_tokens_forever(next_token, prompt_ids, end_id, max_new_tokens):  # never returns on its own
    reply = []
    while len(reply) < max_new_tokens:
        token = next_token(list(prompt_ids) + reply)
        if token != end_id:
            reply.append(token)
    return reply, False


def loop_one_token_too_many(next_token, prompt_ids, end_id, max_new_tokens):
    reply = []
    while len(reply) <= max_new_tokens:
        token = next_token(list(prompt_ids) + reply)
        if token == end_id:
            return reply, True
        reply.append(token)
    return reply, False


def loop_returning_the_prompt_too(next_token, prompt_ids, end_id, max_new_tokens):
    reply, finished = chat.reply_loop(next_token, prompt_ids, end_id, max_new_tokens)
    return list(prompt_ids) + reply, finished


def loop_feeding_only_the_prompt(next_token, prompt_ids, end_id, max_new_tokens):  # forgets its own reply
    reply = []
    while len(reply) < max_new_tokens:
        token = next_token(list(prompt_ids))
        if token == end_id:
            return reply, True
        reply.append(token)
    return reply, False


def loop_appending_to_the_prompt(next_token, prompt_ids, end_id, max_new_tokens):  # changes the caller's list
    start = len(prompt_ids)
    while len(prompt_ids) - start < max_new_tokens:
        token = next_token(prompt_ids)
        if token == end_id:
            return prompt_ids[start:], True
        prompt_ids.append(token)
    return prompt_ids[start:], False


# ------------------------------------------------------------- 4.4: honesty --

def _known(world, name):
    return next((p for p in world.people if p.name == name), None)


def honest_right(world, name, relation):
    return sft_data.honest_answer(world, name, relation)


def honest_treating_late_people_as_known(world, name, relation):
    person = next((p for p in world.people + world.late_people if p.name == name), None)
    if person is None:
        return sft_data.UNKNOWN_ANSWERS[0]
    return fact_answer(relation, name, str(getattr(person, relation)))


def honest_always_the_birth_year(world, name, relation):
    person = _known(world, name)
    return fact_answer("birth_year", name, str(person.birth_year)) if person else sft_data.UNKNOWN_ANSWERS[0]


def honest_making_up_facts_for_strangers(world, name, relation):  # borrows the first person's value
    person = _known(world, name) or world.people[0]
    return fact_answer(relation, name, str(getattr(person, relation)))


def honest_with_another_unknown_sentence(world, name, relation):
    person = _known(world, name)
    return fact_answer(relation, name, str(getattr(person, relation))) if person else sft_data.UNKNOWN_ANSWERS[1]


@pytest.mark.parametrize(("run_check", "mistake"), [
    (check.render_conversation, render_typed_markers_as_control_tokens),
    (check.render_conversation, render_mask_on_the_assistant_header_too),
    (check.render_conversation, render_without_learning_to_stop),
    (check.render_conversation, render_learning_every_turn),
    (check.render_conversation, render_skipping_the_system_turn),
    (check.render_conversation, render_last_turn_only),
    (check.render_conversation, render_mask_as_booleans_of_the_wrong_length),
    (check.masked_cross_entropy, masked_loss_over_all_positions),
    (check.masked_cross_entropy, masked_loss_ignoring_the_mask),
    (check.masked_cross_entropy, masked_loss_without_max_subtraction),
    (check.masked_cross_entropy, masked_loss_summed),
    (check.reply_loop, loop_keeping_the_end_token),
    (check.reply_loop, loop_not_stopping_at_the_end_token),
    (check.reply_loop, loop_skipping_end_tokens_forever),
    (check.reply_loop, loop_one_token_too_many),
    (check.reply_loop, loop_returning_the_prompt_too),
    (check.reply_loop, loop_feeding_only_the_prompt),
    (check.reply_loop, loop_appending_to_the_prompt),
    (check.honest_answer, honest_treating_late_people_as_known),
    (check.honest_answer, honest_always_the_birth_year),
    (check.honest_answer, honest_making_up_facts_for_strangers),
    (check.honest_answer, honest_with_another_unknown_sentence),
], ids=lambda value: getattr(value, "__name__", ""))
def test_the_check_rejects_a_typical_mistake(run_check, mistake):
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match="Exercise 4"):
        run_check(mistake)


def test_the_checks_accept_the_references(capsys):
    check.render_conversation(render_right)
    check.masked_cross_entropy(masked_loss_right)
    check.masked_cross_entropy(backward.cross_entropy)
    check.reply_loop(loop_right)
    check.honest_answer(honest_right)
    assert capsys.readouterr().out.count("passed all") == 5


def test_the_loop_that_forgets_its_reply_is_shown_the_scripted_model_by_name():
    with pytest.raises(AssertionError) as failure:
        check.reply_loop(loop_feeding_only_the_prompt)
    assert "next_token=counts_up_then_ends_after_13" in str(failure.value)


def test_a_loop_that_never_stops_is_stopped_and_told_so():
    with pytest.raises(AssertionError, match="next_token was called 11 times, but max_new_tokens=10"):
        check.reply_loop(loop_skipping_end_tokens_forever)


def test_a_late_person_answered_with_facts_is_told_why():
    with pytest.raises(AssertionError, match="is a late person"):
        check.honest_answer(honest_treating_late_people_as_known)


def test_a_loss_ignoring_the_mask_is_told_to_count_only_the_masked_positions():
    with pytest.raises(AssertionError, match="count only those where mask is 1"):
        check.masked_cross_entropy(masked_loss_ignoring_the_mask)


def test_a_loss_divided_by_every_position_is_told_to_divide_by_the_masked_count():
    with pytest.raises(AssertionError, match="not by N"):
        check.masked_cross_entropy(masked_loss_over_all_positions)


def test_a_right_ids_but_wrong_mask_is_told_which_part_is_wrong():
    with pytest.raises(AssertionError, match="the ids are right but the loss mask is not"):
        check.render_conversation(render_without_learning_to_stop)


@pytest.mark.parametrize("max_new_tokens", [0, 1, 3])
def test_reply_loop_writes_at_most_max_new_tokens_without_an_end(max_new_tokens):
    reply, finished = chat.reply_loop(lambda ids: 7, [1, 2], end_id=0, max_new_tokens=max_new_tokens)
    assert (reply, finished) == ([7] * max_new_tokens, False)


def test_reply_loop_stops_at_the_end_id_and_leaves_it_out():
    script = iter([5, 6, 0, 8])
    assert chat.reply_loop(lambda ids: next(script), [1], end_id=0, max_new_tokens=10) == ([5, 6], True)


def test_reply_loop_gives_the_model_the_prompt_and_the_reply_so_far():
    seen = []
    chat.reply_loop(lambda ids: seen.append(list(ids)) or (0 if len(ids) == 4 else 9), [1, 2], 0, 10)
    assert seen == [[1, 2], [1, 2, 9], [1, 2, 9, 9]]
