"""Lesson 08's scaling laws: the fit finds known laws, the sweep predicts before it trains, the shipped sweep refits."""

import argparse
import csv
import json

import numpy as np
import pytest

from llmedu import scaling
from llmedu.checkpoint import file_sha256
from llmedu.scaling import QUICK, plan, read_results, summary
from llmedu.scaling_cli import add_parser
from llmedu.scaling_fit import LawFit, compute_optimal, fit_law, nonnegative_least_squares
from llmedu.threads import pinned

CHINCHILLA = LawFit(E=1.69, A=406.4, alpha=0.34, B=410.7, beta=0.28, rms_relative_error=0.0)  # their published fit


def sweep_grid(law: LawFit):
    n, d = np.meshgrid(np.geomspace(3e3, 2e6, 7), np.array([1e5, 3e5, 1e6]))
    return n.ravel(), d.ravel(), law.predict(n.ravel(), d.ravel())


# ---------------------------------------------------------------- the fit --

def test_fit_recovers_an_exact_law():
    law = LawFit(E=1.2, A=60.0, alpha=0.45, B=300.0, beta=0.4, rms_relative_error=0.0)
    fit = fit_law(*sweep_grid(law))
    for name in ("E", "A", "alpha", "B", "beta"):
        assert getattr(fit, name) == pytest.approx(getattr(law, name), rel=1e-3), name


def test_fit_on_noisy_runs_predicts_a_held_out_run_within_a_percent():
    law = LawFit(E=1.2, A=60.0, alpha=0.45, B=300.0, beta=0.4, rms_relative_error=0.0)
    n, d, loss = sweep_grid(law)
    noisy = loss * np.exp(np.random.default_rng(0).normal(0, 0.003, loss.shape))  # 0.3% noise, as in a real sweep
    largest = np.argmax(n * d)
    keep = np.arange(len(n)) != largest
    fit = fit_law(n[keep], d[keep], noisy[keep])
    assert fit.predict(n[largest], d[largest]) == pytest.approx(loss[largest], rel=0.01)
    assert fit.alpha == pytest.approx(0.45, abs=0.1) and fit.beta == pytest.approx(0.4, abs=0.1)


def test_nonnegative_least_squares_zeroes_a_coefficient_that_would_go_negative():
    X = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    y = np.array([2.0, 1.0, 0.0])  # the unconstrained line has slope -1
    w, sse = nonnegative_least_squares(X, y)
    assert w[1] == 0 and w[0] == pytest.approx(1.0) and sse == pytest.approx(2.0)


def test_fit_refuses_too_few_runs():
    with pytest.raises(ValueError, match="at least 5 runs"):
        fit_law([1e3, 1e4, 1e5], [1e5, 1e5, 1e6], [3.0, 2.5, 2.2])


def test_count_comparison_prefers_the_count_the_runs_follow():
    law = LawFit(E=1.2, A=60.0, alpha=0.45, B=300.0, beta=0.4, rms_relative_error=0.0)
    n, d, loss = sweep_grid(law)
    rows = [{"N": int(a), "N_total": int(a + 1024 * np.sqrt(a)), "D": int(b), "loss": float(c), "held_out": False}
            for a, b, c in zip(n, d, loss)]  # an embedding table that grows like the width, sqrt(N)
    rows[int(np.argmax(n * d))]["held_out"] = True
    comparison = scaling.count_comparison(rows)
    assert comparison["N"]["rms_relative_error"] < 1e-4 < comparison["N_total"]["rms_relative_error"]
    assert abs(comparison["N"]["forecast_error"]) < 1e-4


# ----------------------------------------------------- compute optimal --

def test_compute_optimal_matches_a_brute_force_search_on_chinchillas_law():
    flops = 5.76e23  # Chinchilla's own training compute
    n_opt, d_opt = compute_optimal(CHINCHILLA, flops)
    n_grid = np.geomspace(1e9, 1e12, 200_001)
    brute = n_grid[np.argmin(CHINCHILLA.predict(n_grid, flops / (6 * n_grid)))]
    assert n_opt == pytest.approx(brute, rel=1e-3)
    assert d_opt == pytest.approx(flops / (6 * n_opt))


def test_a_symmetric_law_wants_as_many_tokens_as_parameters():
    law = LawFit(E=1.0, A=50.0, alpha=0.3, B=50.0, beta=0.3, rms_relative_error=0.0)
    n_opt, d_opt = compute_optimal(law, np.array([1e12, 1e18]))
    np.testing.assert_allclose(d_opt / n_opt, [1.0, 1.0])


# ------------------------------------------------------- llmedu scaling --

def run_cli(*argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["scaling", *argv])
    return args.handler(args)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """A --quick sweep; records, at the start of every run, whether scaling.json already held a prediction."""
    out = tmp_path_factory.mktemp("scaling")
    seen, train_run = [], scaling.train_run

    def spy(*args):
        path = out / "scaling.json"
        seen.append(json.loads(path.read_text())["prediction"] if path.exists() else None)
        return train_run(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scaling, "train_run", spy)
        assert run_cli("--quick", "--out", str(out), "--seed", "7") == 0
    return out, seen


def test_quick_writes_json_csv_and_plot_with_the_contract_fields(quick):
    out, _ = quick
    result = read_results(out)
    rows = list(csv.DictReader(open(out / "scaling.csv")))
    assert len(rows) == len(result["runs"]) == len(QUICK.sizes) * len(QUICK.budgets)
    for row in rows:
        assert {"N", "D", "FLOPs", "loss"} <= set(row)
        assert int(row["FLOPs"]) == 6 * int(row["N"]) * int(row["D"])
        assert 0 < float(row["loss"]) < np.log(512) + 0.5  # below (or near) an untrained model's ln(vocab)
    assert result["command"] == pinned(f"llmedu scaling --quick --out {out} --seed 7") and result["seed"] == 7
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_quick_predicts_the_largest_run_before_training_it(quick):
    out, seen = quick
    result = read_results(out)
    largest = max(result["runs"], key=lambda r: (r["D"], r["N"]))
    assert result["runs"][-1]["held_out"] and result["runs"][-1] == largest
    assert seen[:-1] == [None] * (len(seen) - 1)  # no prediction while the fitted runs trained ...
    assert seen[-1]["loss"] == result["prediction"]["loss"]  # ... and there it was when the last one started
    assert result["prediction"]["relative_error"] == pytest.approx(
        (result["prediction"]["loss"] - largest["loss"]) / largest["loss"], abs=1e-6)


def test_plan_trains_the_largest_run_last():
    pairs = plan(QUICK)
    assert pairs[-1] == (QUICK.sizes[-1], QUICK.budgets[-1]) and len(set(pairs)) == len(pairs)


@pytest.mark.parametrize("content, says", [(None, "no such file"), (b"\xff\xfe not text", "not UTF-8"),
                                           (b"too short", "too short")])
def test_bad_data_is_a_clear_error_before_any_training(tmp_path, capsys, content, says):
    data = tmp_path / "text.txt"
    if content is not None:
        data.write_bytes(content)
    assert run_cli("--quick", "--out", str(tmp_path / "out"), "--data", str(data)) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------- the shipped sweep --

@pytest.fixture(scope="module")
def shipped():
    return read_results(scaling.ASSETS_JSON)


def test_refitting_the_shipped_runs_gives_the_shipped_prediction_and_ratio(shipped):
    fit = scaling.fit_rows(shipped["runs"])
    assert fit.predict(shipped["prediction"]["N"], shipped["prediction"]["D"]) == pytest.approx(
        shipped["prediction"]["loss"], abs=1e-6)
    assert summary(fit, shipped["runs"])["tokens_per_param"] == shipped["compute_optimal"]["tokens_per_param"]


def test_the_shipped_prediction_is_within_five_percent(shipped):
    assert abs(shipped["prediction"]["relative_error"]) < 0.05


def test_the_smallest_shipped_run_trains_again_to_its_shipped_loss(shipped, tmp_path):
    from llmedu.base_model import load_base_model
    from llmedu.world import make_world

    sweep = scaling.Sweep.from_dict(shipped["sweep"])
    row = min(shipped["runs"], key=lambda r: r["FLOPs"])
    data = tmp_path / "world.txt"
    data.write_text(make_world(1337, n_people=300).text, encoding="utf-8")
    assert file_sha256(str(data)) == shipped["data_sha256"]
    _, _, tokenizer, _ = load_base_model()
    size = (row["n_layers"], row["dim"], row["n_heads"])
    budget = next(b for b in sweep.budgets if sweep.steps(b) == row["steps"])
    again = scaling.train_run(sweep, size, budget, str(data), tokenizer, row["seed"], str(tmp_path),
                              scaling._validation_ids(str(data), tokenizer, sweep))
    assert again["loss"] == pytest.approx(row["loss"], abs=1e-4)  # thread counts may change the last bits


def test_the_printed_table_has_a_row_per_run_and_the_forecast(shipped):
    from llmedu.scaling_cli import table

    text = table(shipped)
    assert text.count("\n") == len(shipped["runs"]) + 3  # header, runs, fit, forecast, ratio
    assert f"predicted {shipped['prediction']['loss']:.4f}, actual {shipped['prediction']['actual']:.4f}" in text
    assert "Chinchilla ~20, nanochat 10.5" in text
