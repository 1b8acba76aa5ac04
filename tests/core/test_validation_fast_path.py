"""Validation's fast path (numeric columns no rule can touch pass through untouched) decides exactly
what the full row-wise rules decide: same valid rows and values, flags, rejects and reasons."""

from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from verticals.data import validation
from verticals.data.validation import validate
from verticals.spec import Column, Schema

SCHEMA = Schema((
    Column("id", "int", "id"),
    Column("plain", "float"),  # impute missing, no range: only infinity rejects
    Column("clipped", "float", min=0, max=10, on_out_of_range="clip"),
    Column("flagged", "float", min=-5, max=5, on_out_of_range="flag", on_missing="flag"),
    Column("strict", "float", min=0, on_out_of_range="reject", on_missing="reject"),
    Column("count", "int", min=0, max=1000, on_out_of_range="clip"),
))
RANGES = {"plain": (-1.0, 1.0), "clipped": (0.0, 8.0), "flagged": (-4.0, 4.0), "strict": (0.0, 50.0),
          "count": (0.0, 100.0)}
SPECIAL = [math.nan, math.inf, -math.inf, None, 1e9, -1e9]


def _value(draw: st.DrawFn, clean: bool) -> float | None:
    if clean or draw(st.integers(0, 9)) < 7:
        return draw(st.floats(0, 4, width=32))
    return draw(st.sampled_from(SPECIAL))


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 40))
    width = draw(st.sampled_from([pl.Float32, pl.Float64]))
    data: dict[str, pl.Series] = {"id": pl.Series("id", range(n), dtype=pl.Int64)}
    for name in ("plain", "clipped", "flagged", "strict"):
        clean = draw(st.booleans())  # most columns clean in some frames, dirty in others
        data[name] = pl.Series(name, [_value(draw, clean) for _ in range(n)], dtype=width)
    counts = [draw(st.integers(0, 50)) if draw(st.booleans()) else draw(st.sampled_from([None, -3, 5000]))
              for _ in range(n)]
    data["count"] = pl.Series("count", counts, dtype=pl.Int64)
    return pl.DataFrame(data)


def _both(frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch, **kw):
    fast = validate(frame, SCHEMA, stage="score", **kw)
    with monkeypatch.context() as m:
        m.setattr(validation, "_clean_columns", lambda *a: (frozenset(), {}))
        full = validate(frame, SCHEMA, stage="score", **kw)
    return fast, full


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames(), learned=st.booleans())
def test_fast_path_decides_exactly_what_the_full_rules_decide(frame, learned, monkeypatch):
    fast, full = _both(frame, monkeypatch, training_ranges=RANGES if learned else None)
    assert fast.valid.schema == full.valid.schema
    assert fast.valid.equals(full.valid)
    assert fast.flags.to_list() == full.flags.to_list()
    assert fast.rows.to_list() == full.rows.to_list()
    assert fast.rejects.equals(full.rejects)


def test_float32_input_stays_float32_and_clean_columns_are_not_copied():
    frame = pl.DataFrame({"id": [1, 2, 3], "plain": pl.Series([0.5, 0.25, -0.5], dtype=pl.Float32),
                          "clipped": [1.0, 2.0, 3.0], "flagged": [0.0, 1.0, 2.0], "strict": [1.0, 2.0, 3.0],
                          "count": [1, 2, 3]})
    res = validate(frame, SCHEMA, stage="score")
    assert res.valid.schema["plain"] == pl.Float32  # the file's width is kept, not widened to Float64
    assert res.valid.schema["count"] == pl.Float64
    assert res.rejects.height == 0 and res.flags.to_list() == ["", "", ""]
    clean, extremes = validation._clean_columns(frame, list(SCHEMA), frame.schema)
    assert clean == {"plain", "clipped", "flagged", "strict", "count"}
    assert extremes["plain"] == pytest.approx((-0.5, 0.5))


def test_a_nan_an_infinity_or_a_value_out_of_range_makes_its_column_take_the_full_rules():
    frame = pl.DataFrame({"id": [1, 2], "plain": [math.nan, 0.0], "clipped": [11.0, 1.0], "flagged": [0.0, math.inf],
                          "strict": [1.0, 2.0], "count": [None, 3]})
    clean, _ = validation._clean_columns(frame, list(SCHEMA), frame.schema)
    assert clean == {"strict"}
    res = validate(frame, SCHEMA, stage="score")
    assert res.valid["clipped"].to_list() == [10.0, 1.0]
    assert res.valid["flagged"].to_list() == [0.0, 5.0]  # infinity clipped to the finite bound, and flagged
    assert res.flags.to_list() == ["", "flagged:out_of_range"]
    assert res.valid["plain"].to_list()[0] is None  # NaN is missing (imputed in the model), as before

