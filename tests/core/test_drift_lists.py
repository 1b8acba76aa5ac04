"""Drift profiles of list-valued outputs (top-k recommendations): slot shares, coverage, concentration."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from verticals.drift import compare, list_profile, profile
from verticals.spec import Column, Schema


def _recs(rows: int, items: int, seed: int, skew: float = 1.0) -> pl.Series:
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(items) + 1.0) ** skew
    picks = [rng.choice(items, 5, replace=False, p=weights / weights.sum()) for _ in range(rows)]
    return pl.Series("items", [[f"item-{i:03d}" for i in row] for row in picks], dtype=pl.List(pl.String))


def test_list_profile_counts_slots_distinct_values_coverage_and_concentration():
    values = pl.Series("items", [["a", "b"], ["a", "c"], ["a", None], []], dtype=pl.List(pl.String))
    p = list_profile(values, catalogue=10)
    assert p["kind"] == "list" and p["rows"] == 4
    assert p["mean_length"] == 5 / 4  # nulls are not recommendations
    assert p["distinct"] == 3 and p["coverage"] == 0.3 and p["top_share"] == 1.0
    assert p["categories"] == ["a", "b", "c"] and p["proportions"] == pytest.approx([0.6, 0.2, 0.2])
    assert p["other"] == 0.0
    # Fixed-width arrays (what a top-k output reshapes into) profile the same.
    arrays = pl.Series("items", [[1, 2], [1, 3]], dtype=pl.Array(pl.Int64, 2))
    assert list_profile(arrays)["categories"] == ["1", "2", "3"]
    assert list_profile(arrays)["coverage"] is None


def test_profile_keeps_scalar_scores_and_profiles_list_outputs_only():
    frame = pl.DataFrame({"x": np.arange(50.0)})
    outputs = pl.DataFrame({"items": _recs(50, 40, 0), "scores": [[1.0, 0.5]] * 50, "band": ["a"] * 50,
                            "_index": [[1, 2]] * 50})
    ref = profile(frame, Schema((Column("x"),)), None, outputs=outputs, catalogue={"items": 40})
    assert ref["score"] is None
    assert sorted(ref["outputs"]) == ["items", "scores"]  # no scalar column, no private column
    assert ref["outputs"]["items"]["coverage"] == ref["outputs"]["items"]["distinct"] / 40


def test_compare_finds_recommendations_that_crowd_into_fewer_items():
    ref = profile(pl.DataFrame({"x": [1.0]}), Schema((Column("x"),)), None,
                  outputs=pl.DataFrame({"items": _recs(2000, 60, 1)}), catalogue={"items": 60})
    same = compare(ref, pl.DataFrame({"x": [1.0]}), outputs=pl.DataFrame({"items": _recs(2000, 60, 2)}))
    crowded = compare(ref, pl.DataFrame({"x": [1.0]}), outputs=pl.DataFrame({"items": _recs(2000, 60, 3, skew=3)}))
    row = {r["feature"]: r for r in same}["items"]
    assert row["kind"] == "list" and row["status"] == "stable" and row["reference_coverage"] == row["coverage"]
    moved = {r["feature"]: r for r in crowded}["items"]
    assert moved["status"] == "significant"
    assert moved["top_share"] > moved["reference_top_share"]
    empty = compare(ref, pl.DataFrame({"x": [1.0]}), outputs=pl.DataFrame({"items": pl.Series([], dtype=pl.List(pl.String))}))
    assert math.isnan({r["feature"]: r for r in empty}["items"]["psi"])
    # Without outputs (a caller that predates list profiles) nothing changes.
    assert [r["feature"] for r in compare(ref, pl.DataFrame({"x": [1.0]}))] == ["x"]


def test_drift_counter_streams_list_outputs_exactly_as_compare_does():
    from verticals.drift import DriftCounter

    ref = profile(pl.DataFrame({"x": [1.0]}), Schema((Column("x"),)), None,
                  outputs=pl.DataFrame({"items": _recs(1000, 60, 1)}), catalogue={"items": 60})
    new = pl.DataFrame({"items": _recs(900, 60, 4, skew=2)})
    counter = DriftCounter(ref)
    for start in range(0, new.height, 128):  # batch by batch, as the monitor flow reads part files
        counter.add(outputs=new.slice(start, 128))
    streamed = {r["feature"]: r for r in counter.result()}["items"]
    whole = {r["feature"]: r for r in compare(ref, pl.DataFrame({"x": [1.0]}), outputs=new)}["items"]
    assert streamed == pytest.approx(whole)
    assert streamed["distinct"] <= 60 and streamed["coverage"] == streamed["distinct"] / 60
    # Nothing counted: no row for the list (rather than a NaN claiming a comparison).
    assert [r["feature"] for r in DriftCounter(ref).result()] == ["x"]
