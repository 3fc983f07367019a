"""`llmedu speedrun --quick` runs every stage and writes a report holding every figure."""

import json
import subprocess
import sys

import pytest

REPORT_KEYS = ["val_loss", "bits_per_byte", "gzip_bits_per_byte", "bz2_bits_per_byte", "lzma_bits_per_byte",
               "fact_recall", "hallucination_rate", "n_params", "wall_s", "tokenizer_vocab_size",
               "tokenizer_bytes_per_token", "train_tokens_per_s", "params_file_bytes", "tokenizer_encode_mb_per_s",
               "tokenizer_encode_compile_s", "threads", "threads_reason", "threads_blas", "threads_numba",
               # lesson 04 (issue 11 names these)
               "base_accuracy_heldout_people", "sft_accuracy_seen_people", "sft_accuracy_heldout_people",
               "sft_accuracy_heldout_phrasings", "base_hallucination_rate", "sft_hallucination_rate",
               "sft_false_idk_rate", "sft_refusal_rate", "sft_false_refusal_rate", "sft_wall_s", "context_length",
               # lesson 05 (issue 12 names these)
               "rm_accuracy", "rm_ceiling", "rm_gold_correlation", "dpo_win_rate", "dpo_kl", "dpo_hallucination_rate",
               "grpo_accuracy_before", "grpo_accuracy_after", "grpo_kl", "grpo_win_rate", "bon_gold_reward",
               "bon_proxy_reward",
               *(f"arena_{what}_{model}" for what in ("rating", "ci_low", "ci_high")
                 for model in ("base", "sft", "dpo", "best_of_4", "grpo")),
               # lesson 06 (issue 13 names these)
               "tools_arith_acc_without", "tools_arith_acc_with", "tools_late_acc_without", "tools_late_acc_with",
               "tools_retrieval_hit1", "tools_known_acc_with_tools", "tools_needless_call_rate",
               # lesson 07 (issue 14 names these)
               *(f"asr_{attack}{defended}" for attack in ("jailbreak", "injection", "backdoor", "gcg")
                 for defended in ("", "_defended")),
               "gcg_filter_detection_rate", "gcg_filter_false_positive_rate", "backdoor_clean_accuracy",
               "defended_false_refusal_rate"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    done = subprocess.run([sys.executable, "-m", "llmedu.cli", "speedrun", "--quick", "--out", str(out), "--name", "t"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "t"


def test_report_json_holds_every_figure(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    missing = [key for key in REPORT_KEYS if key not in report]
    assert not missing


def test_figures_are_in_their_ranges(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    assert 0 <= report["fact_recall"] <= 1 and 0 <= report["hallucination_rate"] <= 1
    assert 0 < report["bits_per_byte"] < 16 and 0 < report["gzip_bits_per_byte"] < 8
    assert report["tokenizer_vocab_size"] == 320
    assert report["n_params"] > 0 and report["params_file_bytes"] > 4 * report["n_params"]


def test_sft_wall_time_is_the_fine_tuning_alone(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    assert report["sft_wall_s"] < report["sft_stage_wall_s"]  # the stage also evaluates three models
    tokens = report["sft_tokens_per_s"] * report["sft_wall_s"]
    assert tokens == pytest.approx(report["sft_steps"] * 4 * 256, rel=0.01)  # quick: 4 rows of 256 tokens a step
    assert report["sft_replay_fraction"] == 0.5


def test_report_markdown_has_every_section_and_its_plots(run_dir):
    markdown = (run_dir / "report.md").read_text()
    for heading in ("## World", "## Tokenizer", "## Pretraining", "## Evaluation", "### Samples", "## Fine-tuning",
                    "## Preference tuning", "### Arena", "## Tool use", "## Attacks and defences"):
        assert heading in markdown
    for plot in ("loss.png", "compression.png", "fact_recall.png", "sft_accuracy.png", "grpo.png", "best_of_n.png",
                 "arena.png", "tools_accuracy.png", "backdoor_sweep.png", "gcg_loss.png"):
        assert f"]({plot})" in markdown and (run_dir / plot).read_bytes()[:4] == b"\x89PNG"


def test_run_leaves_world_tokenizer_and_parameters_file(run_dir):
    for name in ("world.txt", "tokenizer.bpe", "model/model.safetensors", "model/log.jsonl", "sft/sft_train.jsonl",
                 "sft/sft_eval.jsonl", "sft/model/model.safetensors", "tools/tool_train.jsonl", "tools/tool_eval.jsonl",
                 "tools/model/model.safetensors", "attacks/guard/model/model.safetensors"):
        assert (run_dir / name).is_file(), name


def test_a_run_ships_as_a_base_model_that_loads_and_matches_its_card(run_dir, tmp_path):
    from llmedu.base_model import load_base_model, ship

    card = ship(run_dir, tmp_path)
    params, config, tokenizer, loaded_card = load_base_model(tmp_path)
    assert loaded_card == card and card["command"] == "llmedu speedrun --quick"
    assert config.to_dict() == card["config"] and card["world"]["n_people"] == card["speedrun_report"]["world_people"]
    assert 0 <= card["measured"]["fact_recall"] <= 1 and card["measured"]["held_out_nll"] > 0


def test_a_run_ships_a_chat_model_beside_its_base(run_dir, tmp_path):
    from llmedu.base_model import ship as ship_base
    from llmedu.chat_model import load_chat_model, ship

    ship_base(run_dir, tmp_path)
    card = ship(run_dir, tmp_path)
    params, config, tokenizer, loaded_card = load_chat_model(tmp_path)
    assert loaded_card == card and config.to_dict() == card["config"]
    assert 0 <= card["measured"]["sft_accuracy_heldout_people"] <= 1


def test_a_chat_model_refuses_to_ship_beside_another_base(run_dir, tmp_path):
    from llmedu.base_model import copy_params_file
    from llmedu.chat_model import ship

    copy_params_file(run_dir / "sft" / "model" / "model.safetensors", tmp_path / "base_model.safetensors")
    with pytest.raises(ValueError, match="ship the base model"):
        ship(run_dir, tmp_path)


def test_a_run_ships_a_tool_model_beside_its_chat_model(run_dir, tmp_path):
    from llmedu.base_model import ship as ship_base
    from llmedu.chat_model import ship as ship_chat
    from llmedu.tool_model import load_tool_model, ship

    ship_base(run_dir, tmp_path)
    ship_chat(run_dir, tmp_path)
    card = ship(run_dir, tmp_path)
    params, config, tokenizer, loaded_card = load_tool_model(tmp_path)
    assert loaded_card == card and config.to_dict() == card["config"] and config.vocab_size == len(tokenizer)
    assert "<|call_start|>" in tokenizer.special_tokens and 0 <= card["measured"]["tools_arith_acc_with"] <= 1


def test_a_run_ships_a_guard_beside_its_tool_model(run_dir, tmp_path):
    from llmedu.base_model import ship as ship_base
    from llmedu.chat_model import ship as ship_chat
    from llmedu.guard_model import load_guard_model, ship
    from llmedu.tool_model import ship as ship_tool

    ship_base(run_dir, tmp_path)
    ship_chat(run_dir, tmp_path)
    ship_tool(run_dir, tmp_path)
    card = ship(run_dir, tmp_path)
    params, config, tokenizer, loaded_card = load_guard_model(tmp_path)
    assert loaded_card == card and config.to_dict() == card["config"]
    assert 0 <= card["measured"]["asr_jailbreak"] <= 1 and card["speedrun_report"]["command"] == "llmedu speedrun --quick"


def test_tools_figures_are_shares_and_the_model_has_four_more_ids(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    assert report["tools_vocab_size"] == report["tokenizer_vocab_size"] + 4
    shares = [key for key in REPORT_KEYS if key.startswith("tools_")]
    assert all(report[key] is None or 0 <= report[key] <= 1 for key in shares)


def test_attack_figures_are_shares_and_the_sweep_covers_every_k(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    shares = [key for key in REPORT_KEYS if key.startswith(("asr_", "gcg_filter", "backdoor_clean", "defended_"))]
    assert all(0 <= report[key] <= 1 for key in shares)
    assert sorted(report["backdoor_sweep"], key=int) == ["0", "5"]  # the quick sweep
