"""`llmedu speedrun --quick` writes a report holding every figure of every stage."""

import json
import subprocess
import sys


def test_quick_speedrun_writes_report_with_tokenizer_figures(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "llmedu.cli", "speedrun", "--quick", "--out", str(tmp_path), "--name", "t"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    assert report["tokenizer_vocab_size"] == 512
    assert 1.0 < report["tokenizer_bytes_per_token"] < 8.0
    for key in ("tokenizer_train_s", "tokenizer_encode_mb_per_s", "wall_s", "seed"):
        assert key in report
    markdown = (tmp_path / "t" / "report.md").read_text()
    assert "bytes per token" in markdown
    assert (tmp_path / "t" / "tokenizer.bpe").is_file()
