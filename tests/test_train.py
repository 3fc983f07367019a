"""Specifications of the training loop, its checkpoints and the ``pretrain`` / ``sample`` commands (lesson 03).

Tiny models, few steps. The resume tests run ``python -m llmedu.cli
pretrain`` in a subprocess, stop it for real (SIGKILL, SIGINT) and check
that the resumed run ends with exactly the parameters of a run that was
never stopped.
"""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import MISSING, fields

import numpy as np
import pytest

from llmedu.checkpoint import load_params, read_safetensors
from llmedu.cli import PRETRAIN_FLAGS
from llmedu.train import NonFiniteLoss, TrainConfig, train

STEPS = 200  # long enough that the stopped runs are stopped mid-way, even on a fast machine
SMALL = ["--n-layers", "1", "--n-heads", "2", "--dim", "16", "--seq-len", "16", "--batch-size", "4",
         "--max-iters", str(STEPS), "--eval-interval", "10", "--eval-iters", "2", "--warmup-iters", "10",
         "--lr", "0.01", "--min-lr", "0.001", "--no-progress"]


def small_config(data, out, **changes) -> TrainConfig:
    fields = dict(data=str(data), n_layers=1, n_heads=2, dim=16, seq_len=16, batch_size=4, max_iters=60,
                  eval_interval=20, eval_iters=2, warmup_iters=5, lr=1e-2, min_lr=1e-3, out=str(out))
    return TrainConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    words = "the cat sat on a mat while a dog ran to the old red barn and back".split()
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "words.txt"
    path.write_text(" ".join(rng.choice(words) for _ in range(3000)) + "\n", encoding="utf-8")
    return path


def cli(*args):
    return [sys.executable, "-m", "llmedu.cli", *map(str, args)]


def pretrain(data, out, *extra):
    done = subprocess.run(cli("pretrain", "--data", data, "--out", out, *SMALL, *extra), capture_output=True, text=True)
    return done


@pytest.fixture(scope="module")
def reference_run(text_file, tmp_path_factory):
    """An uninterrupted CLI run: what every resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference")
    done = pretrain(text_file, out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def params_of(out):
    return load_params(os.path.join(out, "model.safetensors"))[0]


def assert_same_params(a, b):
    pa, pb = params_of(a), params_of(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        assert np.array_equal(pa[name], pb[name]), f"{name} differs"


def checkpoint_step(out) -> int:
    path = os.path.join(out, "train_state.safetensors")
    return int(read_safetensors(path)[1]["step"]) if os.path.exists(path) else -1


def log_rows(out):
    with open(os.path.join(out, "log.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def wait_for(condition, process, timeout=60.0):
    """Poll until condition() holds; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended first:\n{process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# --------------------------------------------------------------- training --

def test_loss_goes_down_on_a_repetitive_text(text_file, tmp_path):
    result = train(small_config(text_file, tmp_path), progress=False)
    first, last = result.evals[0], result.evals[-1]
    assert first["step"] == 0 and last["step"] == 60
    assert math.isclose(first["val_loss"], math.log(len(result.tokenizer)), rel_tol=0.05)  # untrained: uniform
    assert last["val_loss"] < 0.6 * first["val_loss"]


def test_log_has_one_row_per_step_with_the_fields(text_file, tmp_path):
    train(small_config(text_file, tmp_path, max_iters=25, eval_interval=10), progress=False)
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == list(range(26))
    for row in rows[1:]:
        assert {"step", "elapsed_s", "lr", "train_loss", "tokens_per_s"} <= row.keys()
        assert row["lr"] > 0 and row["train_loss"] > 0 and row["tokens_per_s"] > 0
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 10, 20, 25]
    assert all(b["elapsed_s"] >= a["elapsed_s"] for a, b in zip(rows, rows[1:]))


def test_checkpoint_files_are_complete_and_no_temporary_file_is_left(text_file, tmp_path):
    result = train(small_config(text_file, tmp_path, max_iters=10, eval_interval=5), progress=False)
    assert sorted(os.listdir(tmp_path)) == ["log.jsonl", "model.safetensors", "train_state.safetensors"]
    params, config, metadata = load_params(tmp_path / "model.safetensors")
    assert metadata["step"] == "10" and config == result.model_config
    assert all(np.array_equal(params[k], result.params[k]) for k in params)
    assert checkpoint_step(tmp_path) == 10


def test_gradient_accumulation_gives_the_gradient_of_the_whole_batch(text_file, tmp_path, monkeypatch):
    import llmedu.train as T
    real, micro_batches, clipped = T.loss_and_grads, [], []

    def recording_loss_and_grads(params, config, x, y, mask):
        assert mask is None  # pretraining: every position counts
        micro_batches.append((x, y, {k: v.copy() for k, v in params.items()}, config))
        return real(params, config, x, y)

    def recording_clip(grads, max_norm):
        clipped.append({k: v.copy() for k, v in grads.items()})
        return 0.0
    monkeypatch.setattr(T, "loss_and_grads", recording_loss_and_grads)
    monkeypatch.setattr(T, "clip_grad_norm", recording_clip)
    train(small_config(text_file, tmp_path, max_iters=1, warmup_iters=0, grad_accum=3, batch_size=2), progress=False)
    assert len(micro_batches) == 3 and len(clipped) == 1
    x = np.concatenate([m[0] for m in micro_batches])  # (6, T): the three micro-batches as one batch
    y = np.concatenate([m[1] for m in micro_batches])
    _, whole = real(micro_batches[0][2], micro_batches[0][3], x, y)
    for name, g in whole.items():
        assert np.allclose(clipped[0][name], g, rtol=1e-4, atol=1e-7), name


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(text_file, tmp_path):
    with pytest.raises(NonFiniteLoss) as caught:
        train(small_config(text_file, tmp_path, lr=1e30, eval_interval=1), progress=False)
    err = caught.value
    assert err.checkpoint_step is not None and err.step > err.checkpoint_step
    assert f"at step {err.step}" in str(err) and f"from step {err.checkpoint_step}" in str(err)
    params, _, metadata = load_params(tmp_path / "model.safetensors")
    assert metadata["step"] == str(err.checkpoint_step) == str(checkpoint_step(tmp_path))
    assert all(np.isfinite(p).all() for p in params.values())


def test_resume_from_a_folder_without_checkpoint_is_a_clear_error(text_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        train(small_config(text_file, tmp_path), resume=True, progress=False)


def test_a_fresh_run_refuses_to_overwrite_a_checkpoint(text_file, tmp_path):
    train(small_config(text_file, tmp_path, max_iters=6), progress=False)
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        train(small_config(text_file, tmp_path, max_iters=6), progress=False)


def test_config_validation_lists_every_bad_field(text_file):
    with pytest.raises(ValueError) as caught:
        TrainConfig(data=str(text_file), lr=-1.0, batch_size=0, beta2=1.0, tokenizer="word")
    for name in ("lr must", "batch_size must", "beta1 and beta2", "tokenizer must"):
        assert name in str(caught.value)


# ------------------------------------------------------------------ resume --

def test_resume_after_sigkill_ends_bit_identical_to_an_uninterrupted_run(text_file, reference_run, tmp_path):
    run = subprocess.Popen(cli("pretrain", "--data", text_file, "--out", tmp_path, *SMALL),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: checkpoint_step(tmp_path) > 0, run)  # a checkpoint after some training
    run.send_signal(signal.SIGKILL)
    run.communicate()
    assert 0 < checkpoint_step(tmp_path) < STEPS, "killed too late: the run had finished"
    done = subprocess.run(cli("pretrain", "--out", tmp_path, "--resume", "--no-progress"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_params(tmp_path, reference_run)
    assert [r["step"] for r in log_rows(tmp_path)] == list(range(STEPS + 1))


def test_sigint_saves_a_checkpoint_exits_cleanly_and_resumes_exactly(text_file, reference_run, tmp_path):
    run = subprocess.Popen(cli("pretrain", "--data", text_file, "--out", tmp_path, *SMALL),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: os.path.exists(tmp_path / "log.jsonl") and len(log_rows(tmp_path)) > 3, run)
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    step = checkpoint_step(tmp_path)
    assert 0 < step < STEPS and f"Interrupted at step {step}; checkpoint saved" in stdout
    assert log_rows(tmp_path)[-1]["step"] == step
    done = subprocess.run(cli("pretrain", "--data", text_file, "--out", tmp_path, *SMALL, "--resume"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_params(tmp_path, reference_run)


def test_resume_with_a_different_config_lists_each_difference(text_file, reference_run):
    done = subprocess.run(cli("pretrain", "--out", reference_run, "--resume", "--lr", "0.02", "--batch-size", "5"),
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "config differs" in done.stderr
    assert "lr: 0.01 vs 0.02" in done.stderr and "batch_size: 4 vs 5" in done.stderr
    assert "seq_len" not in done.stderr  # only the fields that differ


# --------------------------------------------------------------------- CLI --

def test_sample_prints_the_prompt_and_its_continuation_beyond_the_context_window(reference_run):
    done = subprocess.run(cli("sample", "--ckpt", reference_run, "--prompt", "the cat", "--max-new-tokens", 40,
                              "--seed", 3), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout[:-1]  # print's newline
    assert text.startswith("the cat") and len(text) == len("the cat") + 40  # 40 characters > seq_len 16
    again = subprocess.run(cli("sample", "--ckpt", reference_run, "--prompt", "the cat", "--max-new-tokens", 40,
                               "--seed", 3), capture_output=True, text=True)
    assert again.stdout == done.stdout


def test_a_bpe_run_embeds_its_tokenizer_in_the_parameters_file(text_file, tmp_path):
    from llmedu.sample import load_run, sample_text
    from llmedu.tokenizer import BPETokenizer

    result = train(small_config(text_file, tmp_path, tokenizer="bpe", vocab_size=270, max_iters=2, warmup_iters=0),
                   progress=False)
    params, config, tokenizer, _ = load_run(tmp_path)
    assert isinstance(tokenizer, BPETokenizer) and len(tokenizer) == config.vocab_size == 270
    assert tokenizer.encode("the cat sat") == result.tokenizer.encode("the cat sat")
    assert isinstance(sample_text(tmp_path, "the cat", max_new_tokens=5), str)


def test_pretrain_reports_a_data_error_without_a_traceback(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"abc\xffdef")
    done = subprocess.run(cli("pretrain", "--data", tmp_path / "bad.txt", "--out", tmp_path / "run"),
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "not UTF-8 text: byte offset 3" in done.stderr


def test_pretrain_help_states_the_train_config_defaults():
    for field in fields(TrainConfig):
        if field.name in ("task", "replay_fraction", "dpo_beta", "grpo_group_size", "grpo_beta"):  # sft, rlhf
            continue
        if field.default not in (None, MISSING):
            assert f"(default {field.default})" in PRETRAIN_FLAGS[field.name][1], field.name


def test_a_given_tokenizer_is_used_instead_of_building_one(text_file, tmp_path):
    from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, BPETokenizer

    given = BPETokenizer.train("a completely different text " * 50, 262, special_tokens=list(CHAT_SPECIAL_TOKENS))
    result = train(small_config(text_file, tmp_path, tokenizer="bpe", vocab_size=262, max_iters=2, warmup_iters=0),
                   progress=False, tokenizer=given)
    assert result.tokenizer is given and result.model_config.vocab_size == 262


@pytest.mark.parametrize(("changes", "message"), [
    (dict(tokenizer="char"), "is a BPETokenizer"),
    (dict(tokenizer="bpe", vocab_size=300), "has 262 ids"),
])
def test_a_given_tokenizer_that_does_not_fit_the_config_is_refused(text_file, tmp_path, changes, message):
    from llmedu.tokenizer import BPETokenizer

    given = BPETokenizer.train("the cat sat on the mat " * 50, 262)
    config = small_config(text_file, tmp_path, max_iters=2, warmup_iters=0, **changes)
    with pytest.raises(ValueError, match=message):
        train(config, progress=False, tokenizer=given)
    assert not (tmp_path / "model.safetensors").exists()
