"""`llmedu tools prepare`: the files `llmedu sft` needs to teach a chat model tools (lesson 06)."""

import json
import subprocess
import sys

from tiny_models import save_tiny_models
from llmedu.sample import load_run


def prepare(*args):
    return subprocess.run([sys.executable, "-m", "llmedu.cli", "tools", "prepare", *map(str, args)],
                          capture_output=True, text=True)


def test_prepare_writes_the_grown_model_the_conversations_and_the_next_command(tmp_path):
    chat_file = save_tiny_models(tmp_path, {"chat": 0}, max_seq_len=256)[0]
    out = tmp_path / "tools"
    done = prepare(out, "--chat", chat_file, "--world-seed", "3", "--world-people", "12")
    assert done.returncode == 0, done.stderr
    _, config, tokenizer, _ = load_run(str(out / "chat_with_tool_tokens.safetensors"))
    assert config.vocab_size == len(tokenizer) == load_run(str(chat_file))[1].vocab_size + 4
    first = json.loads((out / "tool_train.jsonl").read_text().splitlines()[0])
    assert {"conversation", "kind", "subject"} <= set(first)
    assert (out / "tool_eval.jsonl").is_file() and (out / "world.txt").is_file()
    assert "llmedu sft --base" in done.stdout


def test_prepare_refuses_a_chat_file_that_is_missing(tmp_path):
    done = prepare(tmp_path / "out", "--chat", tmp_path / "nothing.safetensors", "--world-people", "12")
    assert done.returncode == 2 and "llmedu tools prepare:" in done.stderr and "Traceback" not in done.stderr
