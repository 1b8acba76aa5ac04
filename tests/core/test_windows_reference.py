"""The windows reference pipeline (machine telemetry): generator, sliding windows with context rows,
the group_time split's gap, and train → export → parity → register."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from verticals.data.examples import Examples
from verticals.data.splits import split_frame
from verticals.registry import get_registry
from verticals.spec import CONTEXT
from verticals.testing import use_plugins
from verticals.testing.windows import (
    INTERVAL_S,
    SENSORS,
    WindowPreprocessor,
    WindowsPlugin,
    average_precision,
    best_f1_threshold,
    make_telemetry,
)

W, H = 8, 4
STEP = timedelta(seconds=INTERVAL_S)


def _fitted(frame: pl.DataFrame, window: int = W) -> WindowPreprocessor:
    pre = WindowPreprocessor(window)
    pre.fit(frame)
    return pre


def _raw_windows(frame: pl.DataFrame, ids: pl.DataFrame, window: int) -> np.ndarray:
    """The last ``window`` readings of each id's machine up to its time, straight from the frame."""
    out = []
    for machine, time in ids.iter_rows():
        rows = frame.filter((pl.col("machine") == machine) & (pl.col("time") <= time)).sort("time").tail(window)
        assert rows.height == window
        out.append(rows.select(pl.col(s).cast(pl.Float32).fill_null(float("nan")) for s in SENSORS).to_numpy())
    return np.stack(out)


# -- generator ------------------------------------------------------------------------------------------------
def test_generator_is_seeded_and_labels_are_failures_within_the_horizon():
    a, b = make_telemetry(6, 120, horizon=H, seed=3), make_telemetry(6, 120, horizon=H, seed=3)
    assert a.frame.equals(b.frame) and a.events.equals(b.events)
    assert not a.frame.equals(make_telemetry(6, 120, horizon=H, seed=4).frame)
    frame, events = a.frame, a.events
    # An event log: sorted by time, machines interleaved.
    assert frame.get_column("time").is_sorted()
    assert frame.head(6).get_column("machine").n_unique() == 6
    assert set(events.get_column("mode")) == {"bearing", "overheat"}
    # The label of a reading is 1 exactly when a failure of its machine falls in (t, t + H readings].
    joined = frame.join(events.rename({"time": "failed_at"}), on="machine", how="left")
    within = joined.with_columns(((pl.col("failed_at") > pl.col("time"))
                                  & (pl.col("failed_at") <= pl.col("time") + STEP * H)).fill_null(False).alias("hit"))
    expected = within.group_by("machine", "time").agg(pl.col("hit").any(), pl.col("failure").first())
    assert (expected.get_column("hit").cast(pl.Int64) == expected.get_column("failure")).all()
    assert 0.02 < frame.get_column("failure").mean() < 0.3
    # The late machine has fewer readings than a window; some vibration values are missing.
    sizes = frame.group_by("machine").len()
    assert sizes.get_column("len").min() < 16
    assert 0 < frame.get_column("vibration").null_count() < frame.height * 0.02


# -- preprocessor -------------------------------------------------------------------------------------------
def test_one_window_per_reading_with_enough_history_and_the_rest_counted_as_skipped():
    frame = make_telemetry(4, 40, horizon=H, seed=1, late_machines=1, late_readings=5).frame
    pre = _fitted(frame)
    batch = pre.transform(frame, with_target=True)
    machines = frame.get_column("machine").n_unique()
    late = 5
    assert len(batch) == frame.height - (W - 1) * (machines - 1) - late
    assert batch.skipped == {pre.skip_reason: (W - 1) * (machines - 1) + late}
    assert "fewer than 8 readings" in pre.skip_reason
    assert batch.ids.columns == ["machine", "time"]
    assert batch.inputs["window"].shape == (len(batch), W, len(SENSORS))
    assert batch.inputs["window"].dtype == np.float32 and batch.inputs["machine_type"].dtype == np.int64
    np.testing.assert_array_equal(batch.inputs["window"], _raw_windows(frame, batch.ids, W))
    # The target and the auxiliary data belong to the window's last reading.
    last = batch.ids.join(frame, on=["machine", "time"], how="left", maintain_order="left")
    np.testing.assert_array_equal(batch.target, last.get_column("failure").to_numpy().astype(np.float32))
    assert batch.aux.get_column("machine_type").to_list() == last.get_column("machine_type").to_list()
    np.testing.assert_array_equal(pre.targets(frame), batch.target)
    # Input order does not matter: the preprocessor orders each machine's readings by time.
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=5)
    again = pre.transform(shuffled, with_target=True)
    order = again.ids.with_row_index("i").join(batch.ids.with_row_index("j"), on=["machine", "time"])
    np.testing.assert_array_equal(again.inputs["window"][order["i"].to_numpy()],
                                  batch.inputs["window"][order["j"].to_numpy()])


def test_context_rows_give_history_but_are_never_examples_and_duplicates_are_rejected():
    frame = make_telemetry(2, 30, horizon=H, seed=2, late_machines=0).frame
    pre = _fitted(frame)
    cut = frame.get_column("time").sort()[frame.height // 2]
    marked = frame.with_columns((pl.col("time") < cut).alias(CONTEXT))
    batch = pre.transform(marked, with_target=False)
    assert batch.target is None and not batch.skipped  # every example row has W-1 readings before it
    assert batch.ids.get_column("time").min() >= cut
    assert len(batch) == marked.filter(~pl.col(CONTEXT)).height
    np.testing.assert_array_equal(batch.inputs["window"], _raw_windows(frame, batch.ids, W))
    # A second reading of a machine at the same time is rejected with its position and reason.
    duplicate = pl.concat([marked, marked.filter(~pl.col(CONTEXT)).head(1)])
    out = pre.transform(duplicate, with_target=False)
    assert out.rejects.get_column("_row").to_list() == [duplicate.height - 1]
    assert "duplicate reading: machine" in out.rejects.get_column("_reason").item()
    assert len(out) == len(batch)


def test_streamed_chunks_cut_inside_machines_give_the_same_windows_as_one_piece():
    frame = make_telemetry(5, 90, horizon=H, seed=4).frame
    pre = _fitted(frame)
    whole = pre.transform(frame, with_target=True)
    streamed = Examples(pre, frame, name="train", chunk_rows=37, workers=2)  # 37 < 90 readings of a machine
    batches = list(streamed.batches(16))
    assert max(len(b) for b in batches) <= 16
    merged = pl.concat([b.ids for b in batches]).with_row_index("i")
    assert merged.height == len(whole) and streamed.skipped == whole.skipped
    order = merged.join(whole.ids.with_row_index("j"), on=["machine", "time"])
    assert order.height == len(whole)
    windows = np.concatenate([b.inputs["window"] for b in batches])
    np.testing.assert_array_equal(windows[order["i"].to_numpy()], whole.inputs["window"][order["j"].to_numpy()])
    # A shuffled epoch mixes the machines of a chunk within a mini-batch and holds every example once;
    # a first pass that is shuffled (training's) still counts the skipped readings.
    wide = Examples(pre, frame, name="train", chunk_rows=400, workers=1)
    shuffled = list(wide.batches(64, shuffle=True, seed=1, epoch=0))
    assert wide.skipped == whole.skipped
    assert pl.concat([b.ids for b in shuffled]).sort(["machine", "time"]).equals(whole.ids.sort(["machine", "time"]))
    assert max(b.ids.get_column("machine").n_unique() for b in shuffled) > 1


# -- split -------------------------------------------------------------------------------------------------
def test_registry_accepts_grouped_splits_only_with_group_and_time_columns():
    from verticals.hookspecs import hookimpl
    from verticals.plugins import PluginWarning
    from verticals.spec import Column, DatasetSpec, Schema, SplitSpec

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            readings = (Column("machine", "string", "group"), Column("x"), Column("y", "int", "target"))
            register(DatasetSpec("no_time", lambda: None, Schema(readings), split=SplitSpec("group_time", gap=60)))
            register(DatasetSpec("backwards", lambda: None, Schema((*readings, Column("t", "datetime", "time"))),
                                 split=SplitSpec("group_time", gap=-60)))
            register(DatasetSpec("ok", lambda: None, Schema((*readings, Column("t", "datetime", "time"))),
                                 split=SplitSpec("group_time", gap=60)))

    with pytest.warns(PluginWarning) as record, use_plugins({"p": Plugin()}) as registry:
        assert set(registry.datasets) == {"p.ok"}  # no id column needed: examples are named by group and time
    messages = " | ".join(str(w.message) for w in record)
    assert "uses the 'group_time' split but lacks a group or a time column" in messages
    assert "'backwards' has a negative split gap (-60)" in messages
    with pytest.raises(ValueError, match="window must be at least 2 readings, got 1"):
        WindowPreprocessor(1)


def _splits(plugin: WindowsPlugin):
    with use_plugins({"win": plugin}):
        registry = get_registry()
        pipe = registry.pipeline("win.failure_windows")
        dataset = registry.dataset_of(pipe)
        frame = plugin.telemetry().frame
        return frame, dataset, split_frame(frame, dataset, seed=0)


def test_group_time_gap_keeps_every_training_label_horizon_before_validation_and_test():
    plugin = WindowsPlugin(machines=8, readings=160, window=W, horizon=H)
    _, dataset, splits = _splits(plugin)
    assert dataset.split.strategy == "group_time" and dataset.split.gap >= H * INTERVAL_S
    examples = {name: part.filter(~pl.col(CONTEXT)) if CONTEXT in part.columns else part
                for name, part in splits.items()}
    horizon = STEP * H
    valid_start = examples["valid"].get_column("time").min()
    test_start = examples["test"].get_column("time").min()
    # No training example's label window (t, t + H readings] reaches the first validation reading, and
    # no validation example's reaches the first test reading.
    assert examples["train"].get_column("time").max() + horizon < valid_start
    assert examples["valid"].get_column("time").max() + horizon < test_start
    # ...checked against the failures themselves: every failure behind a training label happened
    # before validation starts.
    events = plugin.telemetry().events.rename({"time": "failed_at"})
    positives = examples["train"].filter(pl.col("failure") == 1).join(events, on="machine")
    causes = positives.filter((pl.col("failed_at") > pl.col("time")) & (pl.col("failed_at") <= pl.col("time") + horizon))
    assert causes.height >= positives.select(pl.struct("machine", "time").n_unique()).item() > 0
    assert causes.get_column("failed_at").max() < valid_start
    # Context rows are earlier readings of the same machines, never later than the split's examples.
    for name in ("valid", "test"):
        context = getattr(splits, name).filter(pl.col(CONTEXT))
        assert context.get_column("time").max() < examples[name].get_column("time").min()


def test_windows_at_the_split_boundary_get_their_history_from_context_rows():
    plugin = WindowsPlugin(machines=6, readings=120, window=W, horizon=H, late_machines=0)
    frame, _, splits = _splits(plugin)
    pre = _fitted(splits.train)
    valid = Examples(pre, splits.valid, name="valid", chunk_rows=50)
    batch = _concat(valid)
    valid_rows = splits.valid.filter(~pl.col(CONTEXT))
    assert len(batch) == valid_rows.height and not valid.skipped  # the first readings after the cut too
    first = batch.ids.group_by("machine").agg(pl.col("time").min()).sort("machine")
    window = _raw_windows(frame, first, W)
    picked = batch.ids.with_row_index("i").join(first, on=["machine", "time"]).sort("machine")
    np.testing.assert_array_equal(batch.inputs["window"][picked["i"].to_numpy()], window)
    # Those windows reach back before the cut: their earlier readings are context (training period).
    assert (first.get_column("time") - STEP * (W - 1) < valid_rows.get_column("time").min()).all()
    # Without context rows the same readings would produce no example.
    bare = pre.transform(valid_rows, with_target=True)
    assert bare.skipped == {pre.skip_reason: (W - 1) * valid_rows.get_column("machine").n_unique()}


def _concat(examples: Examples):
    from verticals.spec import Batch

    return Batch.concat(list(examples.batches(10_000)))


# -- metrics -----------------------------------------------------------------------------------------------
def test_average_precision_and_best_f1_threshold():
    y = np.array([1, 0, 1, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    # precision at each hit: 1/1, 2/3, 3/6 -> mean over positives
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert average_precision(np.zeros(3), s[:3]) != average_precision(np.zeros(3), s[:3])  # nan
    assert average_precision(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # one tied step
    assert best_f1_threshold(y, s) == pytest.approx(0.7)  # alerts on 0.9, 0.8, 0.7: F1 = 0.667
    assert best_f1_threshold(np.zeros(3), s[:3], default=0.4) == 0.4


# -- end to end --------------------------------------------------------------------------------------------
def test_train_export_parity_register_with_structured_metrics_and_a_baseline(verticals_home):
    from verticals import engine
    from verticals.store import ModelStore

    plugin = WindowsPlugin()  # 24 machines x 240 readings: 3,264 training windows, ~1 s an epoch
    with use_plugins({"win": plugin}):
        result = engine.train("win.failure_windows", epochs=6, seed=0, home=verticals_home, progress=False,
                              variants=())
    manifest = result.manifest
    assert manifest["parity"]["passed"]
    assert manifest["signature"]["inputs"]["window"] == {"dtype": "float32", "shape": [-1, 16, 4]}
    assert manifest["training_data"]["split_strategy"] == "group_time"
    # The late machine (fewer readings than a window) made no example, and says why.
    assert manifest["training_data"]["no_example"]["test"] == {"fewer than 16 readings of the machine (window)": 10}
    test = result.metrics["test"]
    assert 0 <= test["recall"] <= 1 and 0 < test["precision"] <= 1
    assert set(test["recall_by_type"]) == {"press", "pump", "fan"}
    assert 0 < manifest["extras"]["threshold"] < 1
    # The model sees the precursor's shape; a threshold on the last reading mostly does not.
    metrics_json = json.loads((result.path / "metrics.json").read_text())
    baseline = metrics_json["baselines"]["last_reading_threshold"]
    assert test["auc"] > 0.85, test
    assert test["auc"] > baseline["auc"] + 0.1 and test["pr_auc"] > baseline["pr_auc"], (test, baseline)
    assert ModelStore(verticals_home).load("win.failure_windows", result.version).version == result.version
    assert "Recall per machine type" in (result.path / "report.html").read_text()


def test_conformance_kit_takes_the_windows_pipeline_through_scoring(verticals_home):
    from verticals.testing.conformance import check_pipeline

    with use_plugins({"win": WindowsPlugin(machines=9, readings=120)}):
        report = check_pipeline("win.failure_windows", epochs=1, home=verticals_home, sample_rows=600)
    assert 0 < report.rows_in <= 600 and report.rows_in == report.rows_scored + report.rows_rejected
    assert {"parity", "row accounting", "output rows", "deterministic scoring",
            "layout-independent scoring"} <= set(report.checks)
