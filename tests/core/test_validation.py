"""Validation rules: every row is valid (maybe flagged) or rejected with a reason; nothing vanishes."""

from __future__ import annotations

import math

import polars as pl
import pytest
from verticals.data.validation import validate
from verticals.errors import DataValidationError
from verticals.spec import Column, Schema

SCHEMA = Schema((
    Column("id", "string", "id"),
    Column("amount", "float", min=1, on_out_of_range="reject", on_missing="reject"),
    Column("income", "float", min=0, max=1e6, on_out_of_range="flag", on_missing="flag"),
    Column("age", "int", min=18, max=100, on_out_of_range="clip"),
    Column("home", "category", on_unknown="flag"),
    Column("job", "category", on_unknown="reject", required=False),
    Column("status", "category", "target", categories=("good", "bad")),
))


def frame(**overrides):
    base = {"id": ["a"], "amount": [100.0], "income": [10.0], "age": [30.0], "home": ["own"],
            "job": ["fixed"], "status": ["good"]}
    base.update(overrides)
    return pl.DataFrame(base)


def reasons(result):
    return dict(zip(result.rejects["id"].to_list(), result.rejects["_reason"].to_list(), strict=True))


def test_every_row_is_accounted_for_and_reasons_name_column_value_and_rule():
    f = pl.DataFrame({
        "id": ["ok", "neg", "inf", "nan", "txt", "rich", "old", "label", "nolabel", "newjob", "newhome"],
        "amount": ["5", "-3", "inf", "NaN", "abc", "5", "5", "5", "5", "5", "5"],
        "income": [1.0, 1.0, 1.0, 1.0, 1.0, 5e6, None, 1.0, 1.0, 1.0, 1.0],
        "age": [30.0, 30, 30, 30, 30, 30, 150, 30, 30, 30, 30],
        "home": ["own"] * 10 + ["castle"],
        "job": ["fixed"] * 9 + ["astronaut", "fixed"],
        "status": ["good"] * 7 + ["ugly", None, "good", "bad"],
    })
    r = validate(f, SCHEMA, stage="train", vocabularies={"home": ["own", "rent"], "job": ["fixed"]})
    assert r.rows_in == f.height == r.valid.height + r.rejects.height
    why = reasons(r)
    assert why["neg"] == "column 'amount' = -3.0 is outside [1, inf]"
    assert "column 'amount' = inf is outside" in why["inf"]
    assert why["nan"] == "column 'amount' is missing (rule: reject)"
    assert why["txt"] == "column 'amount': cannot read abc as float"
    assert why["label"] == "target 'status' has unexpected label 'ugly' (expected one of: good, bad)"
    assert why["nolabel"] == "target 'status' is missing"
    assert why["newjob"] == "column 'job' has unknown category 'astronaut'"
    valid = r.valid.with_columns(r.flags.alias("flags"))
    rows = {row["id"]: row for row in valid.iter_rows(named=True)}
    assert set(rows) == {"ok", "rich", "old", "newhome"}
    assert rows["rich"]["income"] == 1e6 and rows["rich"]["flags"] == "income:out_of_range"
    assert rows["old"]["age"] == 100 and rows["old"]["flags"] == "income:missing"
    assert rows["newhome"]["flags"] == "home:unknown"
    assert rows["ok"]["flags"] == ""
    assert r.rejects["_row"].to_list() == [1, 2, 3, 4, 7, 8, 9]


def test_missing_value_spellings_are_missing_not_unreadable():
    f = frame(id=["a", "b", "c", "d"], amount=["1", "2", "3", "4"], income=["NaN", " null ", "", "n/a"],
              age=[30.0] * 4, home=["own"] * 4, job=["fixed"] * 4, status=["good"] * 4)
    r = validate(f, SCHEMA, stage="train")
    assert r.rejects.height == 0
    assert r.flags.to_list() == ["income:missing"] * 4


def test_infinity_without_a_finite_bound_is_rejected_even_when_clipping():
    schema = Schema((Column("id", "string", "id"), Column("x", "float", on_out_of_range="clip")))
    r = validate(pl.DataFrame({"id": ["a", "b"], "x": [1.0, -math.inf]}), schema, stage="score")
    assert r.valid["x"].to_list() == [1.0]
    assert "column 'x' = -inf is outside" in r.rejects["_reason"][0]


def test_missing_required_column_is_an_error_naming_it_and_the_source():
    with pytest.raises(DataValidationError, match=r"applicants.csv: missing required column\(s\) 'amount'"):
        validate(frame().drop("amount"), SCHEMA, stage="score", source="applicants.csv")


def test_target_is_ignored_when_scoring_and_optional_columns_may_be_absent():
    r = validate(frame().drop("status", "job"), SCHEMA, stage="score")
    assert r.valid.height == 1 and "status" not in r.valid.columns


def test_extra_columns_are_ignored_with_a_warning_naming_them():
    r = validate(frame(extra=[1], other=["x"]), SCHEMA, stage="train")
    assert r.valid.height == 1 and "extra" not in r.valid.columns
    assert r.warnings == ["input: ignoring column(s) not in the schema: extra, other"]


def test_a_column_of_an_unusable_type_is_an_error():
    with pytest.raises(DataValidationError, match="column 'amount' has type List"):
        validate(frame(amount=[[1.0]]), SCHEMA, stage="score")


def test_row_numbers_continue_across_batches():
    r = validate(frame(amount=[-1.0]), SCHEMA, stage="score", row_offset=1000)
    assert r.rejects["_row"].to_list() == [1000]
