"""Reference profiles and PSI: same population → stable, shifted population → significant."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from verticals.drift import PSI_MODERATE, PSI_SIGNIFICANT, compare, profile, psi, status
from verticals.spec import Column, Schema
from verticals.testing.reference import make_frame, reference_schema

SCHEMA = reference_schema(n_numeric=4, n_categorical=2)


@pytest.fixture(scope="module")
def reference():
    train = make_frame(20_000, n_numeric=4, n_categorical=2, seed=0)
    scores = np.random.default_rng(0).beta(2, 5, train.height)
    return profile(train, SCHEMA, scores)


def new_rows(rows: int = 20_000) -> pl.DataFrame:
    # Same generating rule, different rows (``start`` draws fresh values).
    return make_frame(rows, n_numeric=4, n_categorical=2, seed=0, start=1_000_000)


def by_feature(rows):
    return {r["feature"]: r for r in rows}


def test_profile_is_json_with_decile_buckets_and_a_missing_bucket(reference):
    again = json.loads(json.dumps(reference))
    f01 = again["features"]["f01"]
    assert f01["kind"] == "numeric" and len(f01["edges"]) == 9
    assert f01["missing"] == pytest.approx(0.02, abs=0.005)  # the rule makes 2 % of f01 missing
    assert sum(f01["proportions"]) + f01["missing"] == pytest.approx(1.0)
    np.testing.assert_allclose(f01["proportions"], (1 - f01["missing"]) / 10, atol=0.002)
    c1 = again["features"]["c1"]
    assert c1["kind"] == "categorical" and len(c1["categories"]) == 12 and c1["other"] == 0.0
    assert again["score"]["kind"] == "numeric" and again["rows"] == 20_000


def test_same_population_is_stable(reference):
    rows = compare(reference, new_rows(), np.random.default_rng(1).beta(2, 5, 20_000))
    assert [r["feature"] for r in rows] == ["f00", "f01", "f02", "f03", "c0", "c1", "score"]
    for row in rows:
        assert row["psi"] < 0.01 and row["status"] == "stable", row


def test_shifted_population_is_significant(reference):
    shifted = new_rows().with_columns(
        pl.col("f00") + pl.col("f00").std(),  # a one-sigma shift
        pl.when(pl.col("c0") == "c0_1").then(pl.lit("c0_new")).otherwise(pl.col("c0")).alias("c0"),
        pl.when(pl.col("f02") > pl.col("f02").median()).then(None).otherwise(pl.col("f02")).alias("f02"),
    )
    rows = by_feature(compare(reference, shifted, np.random.default_rng(1).beta(5, 2, 20_000)))
    for name in ("f00", "f02", "c0", "score"):
        assert rows[name]["psi"] >= PSI_SIGNIFICANT and rows[name]["status"] == "significant", rows[name]
    for name in ("f01", "f03", "c1"):
        assert rows[name]["status"] == "stable"


def test_a_missing_column_counts_as_all_missing_and_no_rows_is_unknown(reference):
    rows = by_feature(compare(reference, new_rows(1000).drop("f03")))
    assert rows["f03"]["status"] == "significant"
    assert "score" not in rows  # no scores given
    empty = compare(reference, new_rows().head(0))
    assert all(math.isnan(r["psi"]) and r["status"] == "unknown" for r in empty)


def test_psi_thresholds_and_empty_buckets():
    assert status(0.0) == "stable"
    assert status(PSI_MODERATE) == "moderate"
    assert status(PSI_SIGNIFICANT - 1e-9) == "moderate"
    assert status(PSI_SIGNIFICANT) == "significant"
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    value = psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1])  # an empty reference bucket: finite, and large
    assert math.isfinite(value) and value > PSI_MODERATE


def test_ties_and_few_distinct_values_get_fewer_buckets():
    schema = Schema((Column("k", "int"), Column("b", "bool")))
    data = pl.DataFrame({"k": [1] * 70 + [2] * 30, "b": [True] * 50 + [False] * 50})
    ref = profile(data, schema)
    assert ref["features"]["k"]["edges"] == [1.0, 2.0]
    assert ref["features"]["k"]["proportions"] == [0.7, 0.3, 0.0]
    assert ref["score"] is None
    flipped = pl.DataFrame({"k": [1] * 30 + [2] * 70, "b": [True] * 50 + [False] * 50})
    rows = by_feature(compare(ref, flipped))
    assert rows["k"]["status"] == "significant" and rows["b"]["psi"] == pytest.approx(0.0)


def test_counting_batch_by_batch_gives_the_psi_of_all_rows_at_once(reference):
    from verticals.drift import DriftCounter

    rows = new_rows(9_000).with_columns(pl.col("f00") * 1.5)
    scores = np.random.default_rng(1).beta(2, 4, rows.height)
    counter = DriftCounter(reference)
    for start in range(0, rows.height, 1_000):
        counter.add(rows.slice(start, 1_000), scores[start:start + 1_000])
    streamed = {r["feature"]: r["psi"] for r in counter.result()}
    whole = {r["feature"]: r["psi"] for r in compare(reference, rows, scores)}
    assert streamed.keys() == whole.keys() and "score" in streamed
    for name, value in whole.items():
        assert streamed[name] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert counter.rows == rows.height
