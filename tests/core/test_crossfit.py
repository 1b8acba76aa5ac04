"""K-fold cross-fitting on small data: stratified folds, out-of-fold outputs for every pooled row, a final
model trained for the folds' median best epoch, and the record in the manifest and TrainContext."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from verticals.crossfit import applies, fold_labels
from verticals.data.splits import Splits
from verticals.hookspecs import hookimpl
from verticals.spec import TrainingConfig
from verticals.testing.reference import ReferencePipeline, ReferencePlugin, make_frame


def test_folds_are_stratified_seeded_and_cover_every_row() -> None:
    y = np.r_[np.ones(23), np.zeros(77)]
    labels = fold_labels(y, 100, 5, seed=1)
    assert sorted(np.bincount(labels)) == [20] * 5
    positives = np.bincount(labels[y == 1], minlength=5)
    assert positives.max() - positives.min() <= 1
    np.testing.assert_array_equal(labels, fold_labels(y, 100, 5, seed=1))
    assert not np.array_equal(labels, fold_labels(y, 100, 5, seed=2))


def test_applies_below_the_configured_size_only() -> None:
    frame = make_frame(100, n_numeric=2, n_categorical=0)
    splits = Splits(frame.head(70), frame.slice(70, 10), frame.tail(20))
    assert applies(TrainingConfig(crossfit_below=100), splits)
    assert not applies(TrainingConfig(crossfit_below=80), splits)
    assert not applies(TrainingConfig(), splits)  # off by default


class SmallPipeline(ReferencePipeline):
    training = TrainingConfig(epochs=4, batch_size=128, learning_rate=5e-3, patience=2, crossfit_below=1000,
                              crossfit_folds=3)
    seen: ClassVar[list] = []

    def fit_extras(self, context):
        SmallPipeline.seen.append(context.crossfit)
        return {}


class SmallPlugin(ReferencePlugin):
    @hookimpl
    def register_pipelines(self, register):
        register(SmallPipeline())


@pytest.mark.slow
def test_small_data_trains_with_crossfitting(verticals_plugins, verticals_home) -> None:
    from verticals.engine import train

    verticals_plugins({"ref": SmallPlugin(rows=400, n_numeric=4, n_categorical=1, hidden=(8,))})
    result = train("ref.mlp", progress=False, variants=())
    record = SmallPipeline.seen[-1]
    summary = result.manifest["training"]["crossfit"]
    assert summary["folds"] == 3 and summary["rows"] == 320 and len(summary["best_epochs"]) == 3
    assert summary["epochs"] == round(float(np.median(summary["best_epochs"])))
    assert result.manifest["training"]["epochs_run"] == summary["epochs"]  # no early stopping at the end
    assert record.outputs["logits"].shape == (320,) and record.target.shape == (320,)
    assert np.all(np.isfinite(record.outputs["logits"])) and 0.5 < min(summary["fold_metrics"]) <= 1.0
