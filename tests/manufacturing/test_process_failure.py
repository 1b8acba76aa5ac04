"""manufacturing.process_failure end to end on a small generated AI4I table: metrics and baselines in
metrics.json, the cost threshold stored and applied at scoring, the report, and bad input."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from manufacturing_support import SmallPlugin
from verticals.testing import use_plugins
from verticals_manufacturing.ai4i import AIR, MODES, PROCESS, SPEED, generate_ai4i

pytestmark = pytest.mark.slow
NAME = "manufacturing.process_failure"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from verticals.engine import train

    home = tmp_path_factory.mktemp("home")
    with use_plugins({"manufacturing": SmallPlugin()}):
        result = train(NAME, home=home, epochs=3, progress=False, variants=())
    return result, home


def _score(home, frame: pl.DataFrame, tmp_path, name: str) -> tuple[pl.DataFrame, dict]:
    from verticals.scoring import score

    src = tmp_path / f"{name}.parquet"
    frame.write_parquet(src)
    out = tmp_path / f"{name}-out"
    with use_plugins({"manufacturing": SmallPlugin()}):
        manifest = score(NAME, src, out, home=home, progress=False)
    parts = sorted(out.glob("part-*.parquet"))
    table = pl.concat([pl.read_parquet(p) for p in parts]) if parts else pl.DataFrame()
    return table, manifest | {"_out": out}


def test_metrics_baselines_and_threshold_are_stored(trained):
    result, _ = trained
    metrics = json.loads((result.path / "metrics.json").read_text())
    test = metrics["test"]
    for key in ("pr_auc", "auc", "recall_at_1pct_fpr", "alert_recall", "cost_per_example"):
        assert isinstance(test[key], float), key
    assert 0.0 < test["pr_auc"] <= 1.0
    assert set(test["recall_by_mode"]) <= set(MODES) and test["recall_by_mode"]
    for name in ("hist_gradient_boosting", "logistic_regression"):
        assert 0.0 < metrics["baselines"][name]["pr_auc"] <= 1.0
        assert "recall_by_mode" in metrics["baselines"][name]
    extras = result.manifest["extras"]
    assert 0.0 <= extras["threshold"] <= 1.0
    assert extras["costs"] == {"miss": 10_000.0, "false_alarm": 500.0}
    curve = extras["cost_curve"]
    assert min(curve["cost"]) == pytest.approx(extras["valid_expected_cost"])
    # The generated data reproduces the released file's contradictory labels; they are counted.
    assert extras["label_issues"]["mode_without_failure"] >= 0
    report = (result.path / "report.html").read_text()
    for title in ("model against baselines", "recall per failure mode", "alert threshold from costs"):
        assert title in report
    assert (result.path / "figures" / "manufacturing_pr_curve.png").is_file()
    assert (result.path / "figures" / "manufacturing_cost_curve.png").is_file()


def test_time_ordered_split_puts_test_after_training(trained):
    result, _ = trained
    sizes = result.manifest["training_data"]["splits"]
    assert sizes["train"] > sizes["test"] > 0


def test_scoring_applies_the_stored_threshold_and_ignores_labels(trained, tmp_path):
    result, home = trained
    frame = generate_ai4i(400, seed=9)
    with_labels, m1 = _score(home, frame, tmp_path, "labelled")
    without, _ = _score(home, frame.drop("Machine failure", *MODES), tmp_path, "unlabelled")
    assert with_labels.drop("model_version").equals(without.drop("model_version"))
    assert m1["rows_in"] == m1["rows_scored"] == 400 and m1["rows_rejected"] == 0
    threshold = result.manifest["extras"]["threshold"]
    assert (without["alert"] == (without["probability"] >= threshold)).all()
    assert set(without["mode"].unique()) <= set(MODES)
    assert {"UDI", "Product ID", "probability", "mode", "mode_probability", "alert"} <= set(without.columns)


def test_bad_input_is_rejected_with_reasons_or_imputed(trained, tmp_path):
    _, home = trained
    frame = generate_ai4i(20, seed=11).with_columns(pl.col("Type").cast(pl.String))
    rows = frame.to_dicts()
    rows[0][SPEED] = None                 # a sensor dropout: imputed in the graph, flagged
    rows[1]["Type"] = "X"                 # unknown product type
    rows[2][AIR] = 25.3                   # degrees Celsius in a kelvin column
    rows[2][PROCESS] = 35.9
    rows[3][SPEED] = -1200.0              # impossible: negative speed
    rows[4]["Machine failure"] = 0        # a mode flag without a failure: scored like any row
    rows[4]["HDF"] = 1
    table, manifest = _score(home, pl.DataFrame(rows), tmp_path, "bad")
    assert manifest["rows_in"] == 20 == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == 3
    rejects = pl.read_parquet(manifest["_out"] / "_rejects.parquet").sort("_row")
    reasons = dict(zip(rejects["_row"].to_list(), rejects["_reason"].to_list(), strict=True))
    assert "unknown" in reasons[1] and "'Type'" in reasons[1]
    assert "Celsius" in reasons[2] and "273.15" in reasons[2]
    assert "Rotational speed" in reasons[3] and "outside" in reasons[3]
    dropout = table.filter(pl.col("UDI") == rows[0]["UDI"])
    assert dropout.height == 1 and np.isfinite(dropout["probability"][0])
    assert "Rotational speed [rpm]:missing" in dropout["flags"][0]


def test_training_on_celsius_data_fails_with_the_reason(tmp_path):
    from verticals.engine import train
    from verticals.errors import VerticalsError

    data = tmp_path / "celsius.csv"
    generate_ai4i(300, seed=2).with_columns(pl.col(AIR) - 273.15, pl.col(PROCESS) - 273.15).write_csv(data)
    with use_plugins({"manufacturing": SmallPlugin()}), pytest.raises(VerticalsError, match="Celsius"):
        train(NAME, data=str(data), home=tmp_path / "home", epochs=1, progress=False, variants=())


def test_conformance(tmp_path):
    from verticals.testing.conformance import check_pipeline

    with use_plugins({"manufacturing": SmallPlugin(ai4i_rows=1500)}):
        report = check_pipeline(NAME, home=tmp_path, epochs=1, sample_rows=300)
    assert "parity" in report.checks and report.rows_in == report.rows_scored + report.rows_rejected
