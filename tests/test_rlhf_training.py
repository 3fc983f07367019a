"""The reward model, DPO and GRPO run in the one training loop: they learn, and resume bit-identical (lesson 05)."""

import json
from dataclasses import asdict

import numpy as np
import pytest

from test_sft import interrupt_at
from tiny_models import save_tiny_models, tiny_tokenizer

from llmedu.preference import Comparison, read_comparisons, write_comparisons
from llmedu.reward_model import accuracy
from llmedu.sft import sft_config, write_conversations
from llmedu.sft_data import Example
from llmedu.train import train


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer(n_chars=5000, vocab_size=300)


@pytest.fixture(scope="module")
def base_file(tmp_path_factory, tokenizer):
    return save_tiny_models(tmp_path_factory.mktemp("base"), {"base": 1}, max_seq_len=48, tokenizer=tokenizer)[0]


@pytest.fixture(scope="module")
def comparisons_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("comparisons") / "c.jsonl"
    write_comparisons(path, [Comparison([{"role": "user", "content": f"What is {i} + 1?"}], f"It is {i + 1}.",
                                        "No idea, go away.", 1.0, 0.0) for i in range(30)])
    return path


def config(tmp_path, base_file, data, task, name, **changes):
    fields = dict(steps=12, lr=3e-3, batch_size=4, seed=0, eval_interval=6, task=task)
    return sft_config(base_file, data, tmp_path / name, **{**fields, **changes})


def resumes_bit_identical(make):
    whole = train(make("whole"), progress=False)
    stopped = train(make("stopped"), progress=False, on_eval=interrupt_at(6))
    assert stopped.interrupted and stopped.step == 6
    resumed = train(make("stopped"), resume=True, progress=False)
    return all(np.array_equal(whole.params[n], resumed.params[n]) for n in whole.params)


def test_the_reward_model_learns_to_rank_the_chosen_replies(tmp_path, base_file, comparisons_file, tokenizer):
    result = train(config(tmp_path, base_file, comparisons_file, "reward_model", "rm", steps=40), progress=False)
    pairs = read_comparisons(comparisons_file)
    assert accuracy(result.params, result.model_config, tokenizer, pairs) > 0.9
    assert result.evals[-1]["train_loss"] < result.evals[0]["train_loss"]


def test_dpo_lowers_its_loss_from_log_2(tmp_path, base_file, comparisons_file):
    result = train(config(tmp_path, base_file, comparisons_file, "dpo", "dpo", dpo_beta=0.5), progress=False)
    assert result.evals[0]["train_loss"] == pytest.approx(np.log(2), abs=1e-4)  # the policy starts as the reference
    assert result.evals[-1]["train_loss"] < 0.6


@pytest.mark.parametrize("task", ["reward_model", "dpo"])
def test_preference_training_stopped_midway_resumes_bit_identical(tmp_path, base_file, comparisons_file, task):
    assert resumes_bit_identical(lambda name: config(tmp_path, base_file, comparisons_file, task, name))


def test_grpo_stopped_midway_resumes_bit_identical(tmp_path, base_file):
    questions = tmp_path / "q.jsonl"
    write_conversations(questions, [asdict(Example([{"role": "user", "content": f"When was Person {i} born?"},
                                                    {"role": "assistant", "content": f"Person {i} was born in 18{i:02d}."}],
                                                   "fact", f"Person {i}", "birth_year", f"18{i:02d}", "seen_people"))
                                    for i in range(20)])
    assert resumes_bit_identical(lambda name: config(tmp_path, base_file, questions, "grpo", name, batch_size=2,
                                                     grpo_group_size=3))


def test_a_malformed_comparisons_line_stops_training_before_it_starts(tmp_path, base_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello", "rejected": "Go"}) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        train(config(tmp_path, base_file, bad, "dpo", "bad"), progress=False)
    assert not (tmp_path / "bad").exists()
