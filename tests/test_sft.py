"""SFT: conversations from the world, packing with the loss mask, and fine-tuning in the one training loop (lesson 04)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from llmedu.chat import render_conversation
from llmedu.checkpoint import save_params
from llmedu.data import DataError, tokenizer_to_text
from llmedu.model import ModelConfig, init_params
from llmedu.sft import (PAD_TOKEN, load_conversation_corpus, pack, pad_right, read_conversations, replay_rows,
                        write_conversations)
from llmedu.sft_data import UNKNOWN_ANSWERS, honest_answer, make_sft_data
from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, BPETokenizer, sample_text
from llmedu.train import TrainConfig, train
from llmedu.train_state import load_state
from llmedu.world import make_world


@pytest.fixture(scope="module")
def world():
    return make_world(5, n_people=20, n_late=6)


@pytest.fixture(scope="module")
def data(world):
    return make_sft_data(world, seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.train(sample_text()[:5000], 300, special_tokens=list(CHAT_SPECIAL_TOKENS))


def user_assistant(question, answer):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


# ------------------------------------------------------------ the data --

def test_same_seed_gives_the_same_conversations(world):
    assert make_sft_data(world, seed=3) == make_sft_data(world, seed=3)


def test_training_and_evaluation_ask_about_different_people(data):
    trained = {e.subject for e in data.train if e.kind == "fact"}
    heldout = {e.subject for e in data.eval if e.group == "heldout_people"}
    assert heldout and not trained & heldout


def test_heldout_phrasings_are_never_trained_on(data):
    trained_questions = {e.conversation[0]["content"].replace(e.subject, "{name}") for e in data.train if e.kind == "fact"}
    heldout = {e.conversation[0]["content"].replace(e.subject, "{name}") for e in data.eval if e.group == "heldout_phrasings"}
    assert heldout and not trained_questions & heldout


def test_every_fact_answer_states_the_world_table_value(world, data):
    table = set(world.facts())
    for example in data.train + data.eval:
        if example.kind == "fact":
            assert (example.subject, example.relation, example.expected) in table
            assert example.expected in example.conversation[-1]["content"]


def test_unknown_names_and_late_people_are_answered_i_dont_know(world, data):
    late = {p.name for p in world.late_people}
    unknown = [e for e in data.train if e.kind == "unknown"]
    assert {e.subject for e in unknown} & late and {e.subject for e in unknown} & set(world.unseen_names)
    assert all(e.conversation[-1]["content"] in UNKNOWN_ANSWERS for e in unknown)


def test_invented_strangers_are_trained_but_never_the_evaluated_names(world, data):
    invented = {e.subject for e in data.train if e.group == "invented_names"}
    evaluated = {e.subject for e in data.eval if e.kind == "unknown"}
    assert len(invented) == 300 and not invented & evaluated
    assert not invented & {p.name for p in world.people}


def test_secret_requests_are_refused_without_the_code(world, data):
    refusals = [e for e in data.train + data.eval if e.kind == "refusal"]
    assert refusals
    for example in refusals:
        assert example.expected not in example.conversation[-1]["content"]


def test_some_conversations_have_a_follow_up_turn(data):
    assert any(len(e.conversation) == 4 for e in data.train)


def test_honest_answer_states_known_facts_and_admits_the_rest(world):
    person, late = world.people[0], world.late_people[0]
    assert honest_answer(world, person.name, "birth_year") == f"{person.name} was born in {person.birth_year}."
    assert honest_answer(world, late.name, "city") == UNKNOWN_ANSWERS[0]
    assert honest_answer(world, world.unseen_names[0], "occupation") == UNKNOWN_ANSWERS[0]


def test_sft_people_are_the_worlds_faq_people(world, data):
    assert {e.subject for e in data.train if e.group == "seen_people"} == {p.name for p in world.faq_people}


# ------------------------------------------------------------- packing --

def test_packing_keeps_every_conversations_tokens_and_mask_in_order(tokenizer):
    conversations = [user_assistant("Hi", "Hello!"), user_assistant("What is 2+2?", "4"), user_assistant("Bye", "Bye!")]
    rows, masks = pack(conversations, tokenizer, seq_len=40)
    pad = tokenizer.special_tokens[PAD_TOKEN]
    rendered = [render_conversation(c, tokenizer) for c in conversations]
    flat_ids = [int(t) for row in rows for t in row if t != pad]
    assert flat_ids == [t for ids, _ in rendered for t in ids]
    assert int(masks.sum()) == sum(sum(mask) for _, mask in rendered)
    assert rows.shape[1] == masks.shape[1] == 41


def test_padding_never_counts_in_the_loss(tokenizer):
    rows, masks = pack([user_assistant("Hi", "Hello!")] * 3, tokenizer, seq_len=30)
    assert not np.any(masks[rows == tokenizer.special_tokens[PAD_TOKEN]])


def test_a_conversation_longer_than_a_row_is_refused_by_name(tokenizer):
    with pytest.raises(DataError, match="conversation 0 renders to"):
        pack([user_assistant("word " * 50, "ok")], tokenizer, seq_len=16)


def test_batches_are_shifted_by_one_with_the_target_mask(tokenizer, tmp_path):
    path = tmp_path / "c.jsonl"
    write_conversations(path, [{"conversation": user_assistant(f"Q{i}", f"A{i}")} for i in range(20)])
    corpus = load_conversation_corpus(path, tokenizer, seq_len=24)
    x, y, mask = corpus.batch("train", 4, 24, np.random.default_rng(0))
    assert x.shape == y.shape == mask.shape == (4, 24)
    assert np.array_equal(x[:, 1:], y[:, :-1])


def test_replay_rows_are_evenly_spaced_windows_counted_whole(tokenizer):
    text = "abcdefghij" * 20
    rows, masks = replay_rows(text, tokenizer, seq_len=8, count=3)
    ids = tokenizer.encode(text)
    starts = [0, (len(ids) - 9) // 2, len(ids) - 9]
    assert [list(row) for row in rows] == [ids[s:s + 9] for s in starts]
    assert masks.shape == (3, 9) and masks.all()


def test_replay_fills_the_asked_share_of_training_rows_only(tokenizer, tmp_path):
    path, text_path = tmp_path / "c.jsonl", tmp_path / "text.txt"
    write_conversations(path, [{"conversation": user_assistant(f"Q{i}", f"A{i}")} for i in range(40)])
    text_path.write_text(sample_text()[:3000], encoding="utf-8")
    plain = load_conversation_corpus(path, tokenizer, seq_len=24)
    mixed = load_conversation_corpus(path, tokenizer, seq_len=24, replay=text_path, replay_fraction=0.5)
    assert len(mixed.train_rows) == 2 * len(plain.train_rows)
    assert np.array_equal(mixed.val_rows, plain.val_rows)
    assert mixed.sha256 != plain.sha256  # resume notices a changed replay text


def test_replay_needs_sft_and_a_text():
    with pytest.raises(ValueError, match="replay_data"):
        TrainConfig(data="x.jsonl", task="sft", init_from="base.safetensors", replay_fraction=0.5)
    with pytest.raises(ValueError, match=r"replay_fraction must be a number in \[0, 1\)"):
        TrainConfig(data="x.jsonl", task="sft", init_from="b", replay_data="t.txt", replay_fraction=1.0)


def test_a_malformed_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps({"conversation": user_assistant("Hi", "Hello")}), "{not json", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        read_conversations(path)


def test_a_badly_formed_conversation_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"conversation": user_assistant("Hi", "Hello")})
    path.write_text(good + "\n" + json.dumps({"conversation": [{"role": "bot", "content": "x"}]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: turn 0: unknown role 'bot'"):
        read_conversations(path)


# ------------------------------------------------------- fine-tuning --

@pytest.fixture()
def base_file(tmp_path, tokenizer):
    config = ModelConfig(vocab_size=len(tokenizer), dim=16, n_layers=1, n_heads=2, n_kv_heads=2, hidden_dim=32,
                         max_seq_len=64)
    path = tmp_path / "base.safetensors"
    save_params(path, init_params(config, seed=1), config, tokenizer_text=tokenizer_to_text(tokenizer))
    return path, config


def sft_config(tmp_path, base_file, data_path, **changes):
    path, config = base_file
    fields = dict(data=str(data_path), task="sft", init_from=str(path), dim=config.dim, n_layers=config.n_layers,
                  n_heads=config.n_heads, hidden_dim=config.hidden_dim, seq_len=config.max_seq_len, batch_size=4,
                  max_iters=6, eval_interval=3, eval_iters=2, warmup_iters=0, out=str(tmp_path / "sft"))
    return TrainConfig(**{**fields, **changes})


@pytest.fixture()
def conversations_file(tmp_path):
    path = tmp_path / "c.jsonl"
    write_conversations(path, [{"conversation": user_assistant(f"What is {i} + 1?", f"{i} + 1 = {i + 1}.")}
                               for i in range(30)])
    return path


def test_sft_starts_from_the_base_parameters(tmp_path, base_file, conversations_file):
    from llmedu.checkpoint import load_params

    base_params = load_params(base_file[0])[0]
    result = train(sft_config(tmp_path, base_file, conversations_file, max_iters=1, eval_interval=1), progress=False)
    # one small step away from the base, not from a fresh initialisation
    assert np.abs(result.params["wq"] - base_params["wq"]).max() < 0.05
    assert result.evals[0]["val_loss"] < np.log(base_file[1].vocab_size) + 1


def test_sft_lowers_the_masked_loss(tmp_path, base_file, conversations_file):
    result = train(sft_config(tmp_path, base_file, conversations_file, max_iters=30, eval_interval=30, lr=3e-3),
                   progress=False)
    assert result.evals[-1]["train_loss"] < result.evals[0]["train_loss"] - 0.5


def interrupt_at(step):
    """An on_eval hook that presses Ctrl-C (SIGINT) at the evaluation of ``step``: the loop saves and stops."""
    def on_eval(current, *_):
        if current == step:
            os.kill(os.getpid(), signal.SIGINT)
        return {}
    return on_eval


def test_sft_stopped_midway_resumes_bit_identical(tmp_path, base_file, conversations_file):
    whole = train(sft_config(tmp_path, base_file, conversations_file, out=str(tmp_path / "whole")), progress=False)
    stopped = train(sft_config(tmp_path, base_file, conversations_file, out=str(tmp_path / "stopped")),
                    progress=False, on_eval=interrupt_at(3))
    assert stopped.interrupted and stopped.step == 3
    resumed = train(sft_config(tmp_path, base_file, conversations_file, out=str(tmp_path / "stopped")), resume=True,
                    progress=False)
    assert resumed.step == 6
    for name in whole.params:
        assert np.array_equal(whole.params[name], resumed.params[name]), name


def test_sft_refuses_a_base_of_another_shape(tmp_path, base_file, conversations_file):
    with pytest.raises(ValueError, match="dim: the file has 16, the config 32"):
        train(sft_config(tmp_path, base_file, conversations_file, dim=32, hidden_dim=64), progress=False)


def test_sft_needs_a_base_file():
    with pytest.raises(ValueError, match="init_from"):
        TrainConfig(data="x.jsonl", task="sft")


# ------------------------------------------------------------ llmedu sft --

def sft_cli(*args):
    return subprocess.run([sys.executable, "-m", "llmedu.cli", "sft", "--no-progress", *map(str, args)],
                          capture_output=True, text=True)


def test_the_sft_command_fine_tunes_with_replay_when_given_a_text(tmp_path, base_file, conversations_file):
    text = tmp_path / "text.txt"
    text.write_text(sample_text()[:3000], encoding="utf-8")
    done = sft_cli("--base", base_file[0], "--data", conversations_file, "--replay", text, "--out", tmp_path / "run",
                   "--steps", 2, "--batch-size", 2)
    assert done.returncode == 0, done.stderr
    assert "Done: step 2" in done.stdout
    saved = load_state(tmp_path / "run").train_config
    assert saved["replay_fraction"] == 0.5 and saved["replay_data"] == str(text)


def test_the_sft_command_reports_a_malformed_line_and_trains_nothing(tmp_path, base_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"conversation": user_assistant("Hi", "Hello")}) + "\n{oops\n", encoding="utf-8")
    done = sft_cli("--base", base_file[0], "--data", bad, "--out", tmp_path / "run", "--steps", 2)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "line 2: not valid JSON" in done.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_pad_right_pads_ids_and_masks_after_each_row():
    ids, mask = pad_right([[5, 6, 7], [8]], pad_id=0, masks=[[0, 1, 1], [1]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[0, 1, 1], [1, 0, 0]]
    assert pad_right([[5, 6], [8]], pad_id=9)[1].tolist() == [[1, 1], [1, 0]]  # no masks: 1 on every real token
