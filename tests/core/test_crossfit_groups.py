"""Cross-fitting over folds of whole groups (``TrainingConfig.crossfit_groups``): folds never split a group,
the pool is the training and validation examples once each (the test period and its gap never enter it),
every pooled example has exactly one out-of-fold output per repeat, and a bagged windows model trains,
exports with parity and scores."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
from verticals.crossfit import group_fold_labels, grouped, pool_groups
from verticals.data.splits import split_frame
from verticals.errors import PluginError
from verticals.hookspecs import hookimpl
from verticals.spec import CONTEXT, DatasetSpec, SplitSpec, TrainingConfig
from verticals.testing.windows import (
    INTERVAL_S,
    WindowsPipeline,
    WindowsPlugin,
    make_telemetry,
    telemetry_schema,
)


def test_group_folds_never_split_a_group_and_spread_the_positive_groups() -> None:
    rng = np.random.default_rng(0)
    groups = rng.choice([f"g{i:02d}" for i in range(20)], size=2000)
    marked = np.isin(groups, [f"g{i:02d}" for i in range(6)]) & (rng.random(2000) < 0.3)
    labels = group_fold_labels(groups, marked, 4, seed=3)
    for g in np.unique(groups):
        assert np.unique(labels[groups == g]).size == 1  # a group is never on both sides of a fold
    assert set(labels.tolist()) == {0, 1, 2, 3}
    positive_groups = np.unique(groups[marked])
    per_fold = np.bincount([labels[groups == g][0] for g in positive_groups], minlength=4)
    assert per_fold.max() - per_fold.min() <= 1  # the groups that failed are spread over the folds
    np.testing.assert_array_equal(labels, group_fold_labels(groups, marked, 4, seed=3))
    shuffled = rng.permutation(2000)  # folds follow the group names, not the rows' order
    np.testing.assert_array_equal(labels[shuffled], group_fold_labels(groups[shuffled], marked[shuffled], 4, seed=3))
    assert not np.array_equal(labels, group_fold_labels(groups, marked, 4, seed=4))


def _telemetry_dataset(strategy: str = "group_time") -> DatasetSpec:
    return DatasetSpec(name="telemetry", loader=lambda: None, schema=telemetry_schema(),
                       split=SplitSpec(strategy, test_fraction=0.2, valid_fraction=0.2, gap=float(8 * INTERVAL_S),
                                       holdout=3),
                       target_positive=1)


def _keys(frame: pl.DataFrame, examples: bool | None = None) -> set[tuple[str, object]]:
    if examples is not None and CONTEXT in frame.columns:
        frame = frame.filter(pl.col(CONTEXT).fill_null(False) != examples)
    elif examples is False:
        return set()
    return set(frame.select("machine", "time").iter_rows())


def test_pool_is_training_and_validation_once_each_and_nothing_of_the_test_period() -> None:
    frame = make_telemetry(10, 150, seed=2).frame
    splits = split_frame(frame, _telemetry_dataset(), seed=0)
    pool = pool_groups(splits, "machine", "time")
    assert pool.select("machine", "time").is_duplicated().sum() == 0  # every row once
    assert _keys(pool, examples=True) == _keys(splits.train) | _keys(splits.valid, examples=True)
    # The validation split's other context rows (the gap between the periods) stay context.
    assert _keys(pool, examples=False) == _keys(splits.valid, examples=False) - _keys(splits.train)
    assert _keys(pool, examples=False)
    # Nothing of the test period, nor of the gap before it: every pooled reading is earlier than the
    # first test reading by more than the gap.
    t_test = splits.test.filter(~pl.col(CONTEXT)).get_column("time").min()
    assert pool.get_column("time").max() < t_test - dt.timedelta(seconds=8 * INTERVAL_S)
    assert not _keys(pool) & _keys(splits.test, examples=True)
    assert pool.sort("machine", "time").equals(pool)


def test_pool_of_a_leave_last_split_keeps_each_row_once() -> None:
    frame = make_telemetry(6, 40, seed=1, late_machines=0).frame
    splits = split_frame(frame, _telemetry_dataset("leave_last"), seed=0)
    pool = pool_groups(splits, "machine", "time")
    assert pool.height == splits.train.height + splits.valid.filter(~pl.col(CONTEXT)).height
    assert _keys(pool, examples=True) == _keys(splits.train) | _keys(splits.valid, examples=True)
    assert not _keys(pool) & _keys(splits.test, examples=True)


def test_grouped_applies_whatever_the_size_and_defaults_stay_off() -> None:
    splits = split_frame(make_telemetry(4, 60, seed=0).frame, _telemetry_dataset(), seed=0)
    from verticals.crossfit import applies

    assert not TrainingConfig().crossfit_groups and not applies(TrainingConfig(), splits)
    assert applies(TrainingConfig(crossfit_groups=True), splits) and grouped(TrainingConfig(crossfit_groups=True), splits)
    assert grouped(TrainingConfig(crossfit_below=10**9), splits)  # a grouped split never gets row folds


# -- training ----------------------------------------------------------------------------------------------
class GroupedPipeline(WindowsPipeline):
    training = TrainingConfig(epochs=2, batch_size=128, learning_rate=3e-3, patience=3, crossfit_groups=True,
                              crossfit_folds=3, crossfit_final="bag")
    seen: ClassVar[list] = []

    def fit_extras(self, context):
        GroupedPipeline.seen.append((context.crossfit, context.splits))
        return super().fit_extras(context)


class GroupedPlugin(WindowsPlugin):
    def __init__(self, training: TrainingConfig | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.training = training

    @hookimpl
    def register_pipelines(self, register):
        pipe = GroupedPipeline()
        if self.training is not None:
            pipe.training = self.training
        register(pipe)


def _check_out_of_fold(record, splits) -> None:
    """Every pooled example once per repeat; a group's examples in one fold; none from the test period."""
    ids = record.ids
    assert ids.height == record.rows == len(record.target) == record.outputs["logits"].shape[0]
    assert ids.select("machine", "time").is_duplicated().sum() == 0
    assert record.fold.shape == (record.rows, record.repeats) and (record.fold >= 0).all()
    assert set(ids.iter_rows()) <= _keys(splits.train) | _keys(splits.valid, examples=True)
    assert not set(ids.iter_rows()) & _keys(splits.test, examples=True)
    machines = ids.get_column("machine").to_numpy()
    for r in range(record.repeats):
        for m in np.unique(machines):
            assert np.unique(record.fold[machines == m, r]).size == 1
    assert np.all(np.isfinite(record.outputs["logits"]))


@pytest.mark.slow
def test_bagged_windows_model_trains_exports_with_parity_and_scores(verticals_plugins, verticals_home,
                                                                    tmp_path) -> None:
    from verticals.engine import train
    from verticals.scoring import score

    plugin = GroupedPlugin(machines=9, readings=120, channels=16)
    verticals_plugins({"win": plugin})
    result = train("win.failure_windows", progress=False, variants=())
    record, splits = GroupedPipeline.seen[-1]
    summary = result.manifest["training"]["crossfit"]
    assert summary["groups"] == 9 and summary["group_column"] == "machine" and summary["folds"] == 3
    assert len(summary["best_epochs"]) == 3 and 0.0 <= summary["oof_metric"] <= 1.0
    assert "held-out groups" in summary["final_model"]
    assert result.manifest["parity"]["passed"]
    _check_out_of_fold(record, splits)

    data = tmp_path / "telemetry.parquet"
    plugin.telemetry().frame.drop("failure").write_parquet(data)
    out = score("win.failure_windows", data, tmp_path / "scored", progress=False)
    assert out["rows_in"] == out["rows_scored"] + out["rows_rejected"] and out["rows_out"] > 0
    scored = pl.read_parquet(tmp_path / "scored" / "part-*.parquet")
    assert scored.get_column("score").is_between(0.0, 1.0).all()


@pytest.mark.slow
def test_refit_with_repeats_covers_every_pooled_example_once_per_repeat(verticals_plugins, verticals_home) -> None:
    from verticals.engine import train

    config = TrainingConfig(epochs=1, batch_size=128, learning_rate=3e-3, patience=3, crossfit_groups=True,
                            crossfit_folds=3, crossfit_final="refit", crossfit_repeats=2)
    verticals_plugins({"win": GroupedPlugin(config, machines=9, readings=100, channels=8)})
    result = train("win.failure_windows", progress=False, variants=())
    record, splits = GroupedPipeline.seen[-1]
    assert record.repeats == 2 and len(record.best_epochs) == 6
    assert not np.array_equal(record.fold[:, 0], record.fold[:, 1])  # another assignment per repeat
    _check_out_of_fold(record, splits)
    assert result.manifest["training"]["epochs_run"] == record.epochs  # the refit: no early stopping


def test_too_few_groups_for_the_folds_is_one_clear_error(verticals_plugins, verticals_home) -> None:
    from verticals.engine import train

    config = TrainingConfig(epochs=1, crossfit_groups=True, crossfit_folds=12)
    verticals_plugins({"win": GroupedPlugin(config, machines=6, readings=60, channels=8)})
    with pytest.raises(PluginError, match=r"hold 6 group\(s\) of 'machine', fewer than crossfit_folds=12") as err:
        train("win.failure_windows", progress=False, variants=())
    assert "crossfit_folds=5" in str(err.value.hint)


def test_a_dataset_without_a_group_column_is_one_clear_error(verticals_plugins, verticals_home) -> None:
    from verticals.engine import train
    from verticals.testing.reference import ReferencePipeline, ReferencePlugin

    class Flat(ReferencePipeline):
        training = TrainingConfig(epochs=1, crossfit_groups=True)

    class FlatPlugin(ReferencePlugin):
        @hookimpl
        def register_pipelines(self, register):
            register(Flat())

    verticals_plugins({"ref": FlatPlugin(rows=200, n_numeric=2, n_categorical=0, hidden=(4,))})
    with pytest.raises(PluginError, match=r"needs a group column, but dataset 'ref.*' has no column with role='group'"):
        train("ref.mlp", progress=False, variants=())


def test_ids_that_do_not_identify_an_example_are_refused(verticals_plugins, verticals_home) -> None:
    from verticals.engine import train
    from verticals.testing.windows import WindowPreprocessor

    class MachineIds(WindowPreprocessor):
        def transform(self, frame, *, with_target):
            batch = super().transform(frame, with_target=with_target)
            batch.ids = batch.ids.select("machine")  # one id per machine, not per window
            return batch

    class Pipe(GroupedPipeline):
        def preprocessor(self, dataset):
            return MachineIds(self.window)

    class Plugin(GroupedPlugin):
        @hookimpl
        def register_pipelines(self, register):
            register(Pipe())

    verticals_plugins({"win": Plugin(machines=6, readings=60, channels=8)})
    with pytest.raises(PluginError, match=r"ids \(machine\) repeat across pooled examples"):
        train("win.failure_windows", progress=False, variants=())
