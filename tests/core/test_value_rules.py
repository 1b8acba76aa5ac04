"""Default value rules every tabular pipeline gets: numeric ranges learned in training (clip + flag far
outside, flag negatives never seen) and category normalisation (trim, case-fold) with near misses
reported as warnings."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from verticals.data.tabular import TabularPreprocessor
from verticals.data.validation import validate
from verticals.spec import Column, Schema


def _schema(**amount: object) -> Schema:
    return Schema((Column("id", "string", "id"), Column("amount", "float", **amount),
                   Column("home", "category", on_unknown="flag"),
                   Column("records", "category", categories=("no", "yes"), on_unknown="reject"),
                   Column("y", "category", "target", categories=("good", "bad"))))


TRAIN = pl.DataFrame({"id": [str(i) for i in range(6)], "amount": [250.0, 1000, 2000, 5000, 9000, 18250],
                      "home": ["rent", "Rent", "owner", "rent", "owner", "parents"],
                      "records": ["no", "yes", "no", "no", "yes", "no"],
                      "y": ["good", "bad", "good", "good", "bad", "good"]})


def _fitted(schema: Schema) -> TabularPreprocessor:
    pre = TabularPreprocessor(schema, positive="bad")
    pre.fit(validate(TRAIN, schema, stage="train").valid)
    return pre


def _score(pre: TabularPreprocessor, schema: Schema, frame: pl.DataFrame):
    return validate(frame, schema, stage="score", vocabularies=pre.vocabularies(),
                    training_ranges=pre.training_ranges(), category_modes=pre.category_modes())


def _rows(**columns: list) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"id": [f"n{i}" for i in range(n)], "amount": [1000.0] * n, "home": ["rent"] * n, "records": ["no"] * n}
    return pl.DataFrame({**base, **columns})


def test_numeric_range_is_learned_on_the_training_split() -> None:
    schema = _schema()
    pre = _fitted(schema)
    assert pre.training_ranges() == {"amount": (250.0, 18250.0)}
    state = pre.state()
    again = TabularPreprocessor(schema)
    again.load_state(state)
    assert again.training_ranges() == pre.training_ranges()


def test_far_outside_values_are_clipped_and_flagged_near_ones_pass() -> None:
    schema = _schema()
    pre = _fitted(schema)
    # margin 10 % of the range (1,800): 20,000 is within it; 25,000 is not; -500 is negative (never seen).
    res = _score(pre, schema, _rows(amount=[20000.0, 25000.0, -500.0, 100.0, None]))
    assert res.rejects.height == 0
    assert res.valid["amount"].to_list() == [20000.0, 18250.0, 250.0, 100.0, None]
    assert res.flags.to_list() == ["", "amount:out_of_training_range",
                                   "amount:negative_never_seen", "", ""]


def test_explicit_rules_come_first_and_margin_none_turns_it_off() -> None:
    schema = _schema(min=0.0, max=1e6, on_out_of_range="flag")
    pre = _fitted(schema)
    res = _score(pre, schema, _rows(amount=[5e6, -10.0]))
    # clipped to the explicit bound first (1e6), then into the training range; -10 becomes the
    # explicit minimum 0, which is within the margin below the training minimum (250 - 1,800)
    assert res.valid["amount"].to_list() == [18250.0, 0.0]
    assert res.flags.to_list() == ["amount:out_of_range,amount:out_of_training_range", "amount:out_of_range"]
    off = _schema(range_margin=None)
    pre = _fitted(off)
    res = _score(pre, off, _rows(amount=[1e9, -500.0]))
    assert res.valid["amount"].to_list() == [1e9, -500.0] and res.flags.to_list() == ["", ""]


def test_a_negative_column_is_not_flagged_for_negatives() -> None:
    schema = _schema()
    pre = TabularPreprocessor(schema, positive="bad")
    pre.fit(validate(TRAIN.with_columns(pl.col("amount") - 1000), schema, stage="train").valid)
    res = _score(pre, schema, _rows(amount=[-600.0]))
    assert res.flags.to_list() == [""]


def test_categories_are_trimmed_and_case_folded_before_lookup() -> None:
    schema = _schema()
    pre = _fitted(schema)
    assert pre.vocabularies()["home"] == ["rent", "owner", "parents"]  # "Rent" is the same category
    frame = _rows(home=["rent", " RENT ", "Owner", "castle"], records=["no", "YES", " no", "no"])
    res = _score(pre, schema, frame)
    assert res.rejects.height == 0  # "YES" is the closed category "yes"
    assert res.flags.to_list() == ["", "", "", "home:unknown"]
    batch = pre.transform(res.valid, with_target=False)
    np.testing.assert_array_equal(batch.inputs["x_cat"][:, 0], [1, 1, 2, 0])
    np.testing.assert_array_equal(batch.inputs["x_cat"][:, 1], [1, 2, 1, 1])
    assert any("'home'" in w and "' RENT ' as 'rent'" in w and "trimming and case-folding" in w
               for w in res.warnings)


def test_near_misses_are_warnings_and_exact_mode_keeps_exact_matching() -> None:
    schema = _schema()
    pre = _fitted(schema)
    res = _score(pre, schema, _rows(home=["rnet", "ownr", "castle"]))
    [warning] = [w for w in res.warnings if "unknown category" in w]
    assert "'rnet' (1 rows; did you mean 'rent'?)" in warning and "'ownr'" in warning and "castle" not in warning
    exact = Schema(tuple(Column(c.name, c.dtype, c.role, categories=c.categories, on_unknown=c.on_unknown,
                                normalize="exact") for c in schema))
    pre = _fitted(exact)
    assert sorted(pre.vocabularies()["home"]) == ["Rent", "owner", "parents", "rent"]
    res = _score(pre, exact, _rows(home=["RENT"], records=["YES"]))
    assert res.rejects.height == 1 and "unknown category 'YES'" in res.rejects["_reason"].item()


@pytest.mark.parametrize("mode", ["trim", "casefold"])
def test_older_states_without_modes_match_exactly(mode: str) -> None:
    schema = _schema()
    pre = _fitted(schema)
    state = pre.state()
    for entry in state["categorical"]:
        entry.pop("normalize")
    for entry in state["numeric"]:
        entry.pop("min"), entry.pop("max")
    old = TabularPreprocessor(schema)
    old.load_state(state)
    assert old.category_modes() == {"home": "exact", "records": "exact"} and old.training_ranges() == {}
