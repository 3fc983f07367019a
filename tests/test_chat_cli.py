"""`llmedu chat`: one question, a file of prompts as JSON, and the terminal conversation (lesson 04)."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from llmedu.chat_cli import converse
from llmedu.checkpoint import save_params
from llmedu.data import tokenizer_to_text
from llmedu.model import ModelConfig, init_params
from llmedu.sample import load_run
from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, BPETokenizer, sample_text


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    tokenizer = BPETokenizer.train(sample_text()[:3000], 280, special_tokens=list(CHAT_SPECIAL_TOKENS))
    config = ModelConfig(vocab_size=len(tokenizer), dim=16, n_layers=1, n_heads=2, n_kv_heads=2, hidden_dim=32,
                         max_seq_len=48)
    path = tmp_path_factory.mktemp("model") / "chat.safetensors"
    save_params(path, init_params(config, seed=0), config, tokenizer_text=tokenizer_to_text(tokenizer))
    return path


def chat_cli(*args):
    return subprocess.run([sys.executable, "-m", "llmedu.cli", "chat", *map(str, args)], capture_output=True, text=True)


def test_p_prints_only_the_reply_and_the_same_one_twice(model_file):
    first, second = (chat_cli("--model", model_file, "-p", "Hello?", "--max-new-tokens", "5") for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and "you>" not in first.stdout


def test_prompts_json_answers_every_line_as_a_fresh_conversation(model_file, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello?\n\nWho are you?\n", encoding="utf-8")
    done = chat_cli("--model", model_file, "--prompts", prompts, "--json", "--max-new-tokens", "4")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [row["prompt"] for row in rows] == ["Hello?", "Who are you?"] and all("reply" in row for row in rows)


def test_a_missing_model_is_a_clear_error(tmp_path):
    done = chat_cli("--model", tmp_path / "nothing.safetensors", "-p", "Hi")
    assert done.returncode == 2 and "llmedu chat:" in done.stderr and "Traceback" not in done.stderr


def scripted_conversation(model_file, lines, max_new_tokens=3):
    model = load_run(str(model_file))[:3]
    args = SimpleNamespace(temperature=0.0, top_p=None, max_new_tokens=max_new_tokens, seed=0)
    said, typed = [], iter(lines)

    def read(prompt):
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    converse(model, args, read=read, write=said.append)
    return said


def test_the_conversation_answers_each_line_until_quit(model_file):
    said = scripted_conversation(model_file, ["Hi", "And then?", "/quit", "never read"])
    assert sum(line.startswith("assistant> ") for line in said) == 2


def test_reset_clears_the_history(model_file):
    said = scripted_conversation(model_file, ["Hi", "/reset", "Hi"])
    replies = [line for line in said if line.startswith("assistant> ")]
    assert "(history cleared)" in said and replies[0] == replies[1]  # same question, same empty history


def test_a_history_too_long_for_the_context_drops_the_oldest_exchange(model_file):
    said = scripted_conversation(model_file, ["one two three four five"] * 4, max_new_tokens=4)
    assert any("oldest exchange was dropped" in line for line in said)
    assert sum(line.startswith("assistant> ") for line in said) == 4


# ------------------------------------------------------------- with tools (lesson 06) --

@pytest.fixture(scope="module")
def tool_model_file(tmp_path_factory):
    from llmedu.tokenizer import TOOL_SPECIAL_TOKENS

    from tiny_models import save_tiny_models

    tokenizer = BPETokenizer.train(sample_text()[:3000], 284,
                                   special_tokens=[*CHAT_SPECIAL_TOKENS, *TOOL_SPECIAL_TOKENS])
    return save_tiny_models(tmp_path_factory.mktemp("tools"), {"tool": 0}, 256, tokenizer)[0]


WORLD = ("--world-seed", "3", "--world-people", "12")


def test_tools_need_a_model_with_the_tool_markers(model_file):
    done = chat_cli("--model", model_file, "--tools", "calculator", "-p", "Hi", *WORLD)
    assert done.returncode == 2 and "add_special_tokens" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_tool_is_named_with_the_ones_there_are(tool_model_file):
    done = chat_cli("--model", tool_model_file, "--tools", "calculator,browser", "-p", "Hi", *WORLD)
    assert done.returncode == 2 and "['browser']" in done.stderr and "calculator, search" in done.stderr


def test_prompts_json_with_tools_lists_each_replys_calls(tool_model_file, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2 * 3?\nHello?\n", encoding="utf-8")
    done = chat_cli("--model", tool_model_file, "--tools", "calculator,search", "--prompts", prompts, "--json",
                    "--max-new-tokens", "6", *WORLD)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [sorted(row) for row in rows] == [["calls", "prompt", "reply"]] * 2


def test_a_reply_shows_each_call_and_result_before_the_answer():
    from llmedu.chat_cli import shown

    result = {"prompt": "q", "reply": "6.", "calls": [{"call": "calculator(2 * 3)", "result": "6"}]}
    assert shown(result, colour=False) == "[call] calculator(2 * 3)\n[result] 6\n6."
    assert shown(result, colour=True).startswith("\033[2m[call]")


def test_a_conversation_with_tools_keeps_the_calls_in_its_history(tool_model_file, monkeypatch):
    from llmedu import chat_cli
    from llmedu.tool_engine import ToolReply

    model = load_run(str(tool_model_file))[:3]
    monkeypatch.setattr(chat_cli, "chat_with_tools",
                        lambda *arguments, **sampling: ToolReply([], True, [("calculator(2 * 3)", "6")], "6."))
    history = []
    args = SimpleNamespace(temperature=0.0, top_p=None, max_new_tokens=4, seed=0)
    chat_cli.answer(model, "What is 2 * 3?", args, history, tools={"calculator": str})
    assert [turn["role"] for turn in history] == ["user", "assistant", "tool", "assistant"]
    assert history[1]["content"] == "calculator(2 * 3)" and history[-1]["content"] == "6."
