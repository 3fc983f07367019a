"""`llmedu rlhf reward-model | dpo | grpo` train from the command line, and say clearly what is wrong (lesson 05)."""

import json
import subprocess
import sys
from dataclasses import asdict

import pytest
from test_rlhf_training import base_file, comparisons_file, tokenizer  # noqa: F401 - pytest fixtures

from llmedu.sft import write_conversations
from llmedu.sft_data import Example


def rlhf(*args):
    return subprocess.run([sys.executable, "-m", "llmedu.cli", "rlhf", *map(str, args), "--no-progress"],
                          capture_output=True, text=True)


@pytest.mark.parametrize("command", ["reward-model", "dpo"])
def test_a_trainer_runs_on_a_comparisons_file(tmp_path, base_file, comparisons_file, command):  # noqa: F811
    done = rlhf(command, "--comparisons", comparisons_file, "--base", base_file, "--out", tmp_path / "run",
                "--steps", 2, "--batch-size", 2)
    assert done.returncode == 0, done.stderr
    assert "Done: step 2" in done.stdout and (tmp_path / "run" / "model.safetensors").is_file()


def test_grpo_runs_on_a_questions_file(tmp_path, base_file):  # noqa: F811
    questions = tmp_path / "q.jsonl"
    write_conversations(questions, [asdict(Example([{"role": "user", "content": f"When was P{i} born?"},
                                                    {"role": "assistant", "content": f"P{i} was born in 180{i}."}],
                                                   "fact", f"P{i}", "birth_year", f"180{i}", "seen_people"))
                                    for i in range(6)])
    done = rlhf("grpo", "--questions", questions, "--base", base_file, "--out", tmp_path / "run", "--steps", 2,
                "--batch-size", 2, "--group-size", 2)
    assert done.returncode == 0, done.stderr
    assert "Done: step 2" in done.stdout


def test_a_trainer_without_comparisons_says_what_to_give(tmp_path, base_file):  # noqa: F811
    done = rlhf("dpo", "--base", base_file, "--out", tmp_path / "run")
    assert done.returncode == 2 and "give --comparisons FILE" in done.stderr and "Traceback" not in done.stderr


def test_a_malformed_comparisons_line_is_reported_and_nothing_is_trained(tmp_path, base_file):  # noqa: F811
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello", "rejected": "Go"}) + "\n{oops\n", encoding="utf-8")
    done = rlhf("reward-model", "--comparisons", bad, "--base", base_file, "--out", tmp_path / "run")
    assert done.returncode == 2 and "line 2: not valid JSON" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()
