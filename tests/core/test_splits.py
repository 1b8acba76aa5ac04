"""split_frame: every strategy loses and duplicates nothing, leaks nothing, and repeats for a seed."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from verticals.data.splits import split_frame
from verticals.errors import DataValidationError, PluginError
from verticals.spec import Column, DatasetSpec, Schema, SplitSpec


def dataset(strategy: str, test: float = 0.2, valid: float = 0.1, columns: tuple[Column, ...] = ()) -> DatasetSpec:
    schema = Schema((Column("rid", "int", "id"), Column("x", "float"), *columns,
                     Column("y", "int", "target", categories=("0", "1"))))
    return DatasetSpec(name="d", loader=lambda: None, schema=schema, split=SplitSpec(strategy, test, valid))


def frame(n: int = 5000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = dt.datetime(2024, 1, 1)
    return pl.DataFrame({
        "rid": np.arange(n),
        "x": rng.normal(size=n),
        "g": rng.integers(0, 400, n),
        # Coarse days, so many rows share a timestamp and boundaries fall inside ties.
        "t": [start + dt.timedelta(days=int(d)) for d in rng.integers(0, 60, n)],
        "y": (rng.random(n) < 0.12).astype(np.int64),
    })


def assert_partition(splits, data: pl.DataFrame) -> None:
    ids = [set(part["rid"].to_list()) for _, part in splits.items()]
    assert sum(len(i) for i in ids) == data.height == sum(splits.sizes().values())
    assert set().union(*ids) == set(data["rid"].to_list())
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


@pytest.mark.parametrize("strategy", ["stratified", "random", "group", "time"])
def test_no_row_lost_or_duplicated_and_same_seed_same_split(strategy):
    data = frame()
    spec = dataset(strategy, columns=(Column("g", "int", "group"), Column("t", "datetime", "time")))
    first = split_frame(data, spec, seed=3)
    assert_partition(first, data)
    again = split_frame(data, spec, seed=3)
    for (_, a), (_, b) in zip(first.items(), again.items()):
        assert a.equals(b)
    assert first.train.height > first.test.height > first.valid.height > 0


@pytest.mark.parametrize("strategy", ["stratified", "random", "group"])
def test_a_different_seed_gives_a_different_split(strategy):
    data = frame()
    spec = dataset(strategy, columns=(Column("g", "int", "group"),))
    a, b = split_frame(data, spec, seed=1), split_frame(data, spec, seed=2)
    assert not a.test["rid"].equals(b.test["rid"])


def test_stratified_keeps_the_class_balance_in_every_split():
    data = frame(4000)
    splits = split_frame(data, dataset("stratified"), seed=0)
    overall = data["y"].mean()
    for _, part in splits.items():
        assert part["y"].mean() == pytest.approx(overall, abs=0.005)
    assert splits.sizes() == {"train": 2800, "valid": 400, "test": 800}


def test_random_split_sizes_follow_the_fractions():
    assert split_frame(frame(1000), dataset("random", 0.25, 0.15), seed=0).sizes() == \
        {"train": 600, "valid": 150, "test": 250}


def test_group_split_never_puts_a_group_on_two_sides_and_counts_groups():
    data = frame()
    splits = split_frame(data, dataset("group", columns=(Column("g", "int", "group"),)), seed=5)
    groups = [set(part["g"].to_list()) for _, part in splits.items()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    n_groups = data["g"].n_unique()
    assert len(groups[2]) == round(0.2 * n_groups)
    assert len(groups[1]) == round(0.1 * n_groups)


def test_time_split_is_strictly_ordered_and_ties_go_to_the_later_split():
    data = frame()
    splits = split_frame(data, dataset("time", columns=(Column("t", "datetime", "time"),)), seed=0)
    assert splits.train["t"].max() < splits.valid["t"].min()
    assert splits.valid["t"].max() < splits.test["t"].min()
    ordered = data["t"].sort()
    # The timestamp at the cut position belongs wholly to the later split.
    assert splits.test["t"].min() == ordered[data.height - splits.sizes()["test"]]
    assert splits.test.height >= round(0.2 * data.height)


def test_float_target_is_stratified_on_its_deciles():
    rng = np.random.default_rng(0)
    data = pl.DataFrame({"rid": np.arange(3000), "x": rng.normal(size=3000), "y": rng.exponential(size=3000)})
    schema = Schema((Column("rid", "int", "id"), Column("x", "float"), Column("y", "float", "target")))
    spec = DatasetSpec(name="r", loader=lambda: None, schema=schema, split=SplitSpec("stratified"))
    splits = split_frame(data, spec, seed=0)
    assert_partition(splits, data)
    for _, part in splits.items():
        assert part["y"].median() == pytest.approx(data["y"].median(), rel=0.05)


def test_missing_columns_and_bad_fractions_are_named_errors():
    data = frame()
    with pytest.raises(PluginError, match="role='group'"):
        split_frame(data, dataset("group"), seed=0)
    with pytest.raises(PluginError, match="leave no training rows"):
        split_frame(data, dataset("random", 0.6, 0.5), seed=0)
    spec = dataset("time", columns=(Column("t", "datetime", "time"),))
    with pytest.raises(DataValidationError, match="missing"):
        split_frame(data.with_columns(pl.lit(None, pl.Datetime("us")).alias("t")), spec, seed=0)
    with pytest.raises(DataValidationError, match="'t'"):
        split_frame(data.drop("t"), spec, seed=0)
