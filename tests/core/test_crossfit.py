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


class BatchPipeline(SmallPipeline):
    name = "batch"
    training = TrainingConfig(epochs=1, batch_size=128, learning_rate=5e-3, patience=2, crossfit_below=1000,
                              crossfit_folds=3, crossfit_batch_size=32)


class BatchPlugin(ReferencePlugin):
    @hookimpl
    def register_pipelines(self, register):
        register(BatchPipeline())


def test_fold_models_train_in_the_crossfit_batch_size(verticals_plugins, verticals_home, monkeypatch) -> None:
    import verticals.training as training
    from verticals.engine import fit, load_data, split_data, validate_data

    sizes: list[int] = []
    real = training.fit_model

    def spy(*args, **kwargs):
        sizes.append(kwargs["batch_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "fit_model", spy)
    verticals_plugins({"ref": BatchPlugin(rows=200, n_numeric=2, n_categorical=0, hidden=(4,))})
    splits = split_data("ref.batch", validate_data("ref.batch", load_data("ref.batch")), seed=1)
    fit("ref.batch", splits, progress=False)
    assert sizes == [32, 32, 32, 128]  # the three fold models; the refitted final model keeps batch_size
    assert TrainingConfig().crossfit_batch_size == 0  # default: the fold models use batch_size


# -- crossfit_final = "bag": the average of the fold models ------------------------------------------------
def test_averaged_model_averages_every_output_in_its_structure() -> None:
    import torch
    from torch import nn
    from verticals.ensemble import AveragedModel
    from verticals.errors import PluginError

    class Scaled(nn.Module):
        def __init__(self, k: float, kind: str) -> None:
            super().__init__()
            self.k, self.kind = nn.Parameter(torch.tensor(k)), kind

        def forward(self, x_num=None):
            logit, parts = x_num.sum(1) * self.k, x_num * self.k
            if self.kind == "dict":
                return {"logits": logit, "contributions": parts}
            if self.kind == "int":
                return logit, torch.argmax(parts, dim=1)
            return (logit, parts) if self.kind == "tuple" else logit

    x = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    logit, parts = AveragedModel([Scaled(1.0, "tuple"), Scaled(2.0, "tuple"), Scaled(6.0, "tuple")])(x_num=x)
    torch.testing.assert_close(logit, x.sum(1) * 3.0)
    torch.testing.assert_close(parts, x * 3.0)
    torch.testing.assert_close(AveragedModel([Scaled(1.0, "one"), Scaled(3.0, "one")])(x_num=x), x.sum(1) * 2.0)
    out = AveragedModel([Scaled(1.0, "dict"), Scaled(3.0, "dict")])(x_num=x)
    assert list(out) == ["logits", "contributions"]
    torch.testing.assert_close(out["contributions"], x * 2.0)
    ensemble = AveragedModel([Scaled(1.0, "tuple"), Scaled(2.0, "tuple")])
    assert sorted(ensemble.state_dict()) == ["members.0.k", "members.1.k"]
    with pytest.raises(PluginError, match=r"cannot average output 1 of the fold models: it is torch.int64"):
        AveragedModel([Scaled(1.0, "int"), Scaled(2.0, "int")])(x_num=x)


def test_bag_history_is_the_mean_over_the_folds_still_training() -> None:
    from verticals.crossfit import _mean_history

    rows = _mean_history([[{"epoch": 1, "valid_loss": 1.0}, {"epoch": 2, "valid_loss": 0.5}],
                          [{"epoch": 1, "valid_loss": 3.0}]])
    assert rows == [{"epoch": 1.0, "valid_loss": 2.0, "folds": 2.0}, {"epoch": 2.0, "valid_loss": 0.5, "folds": 1.0}]


def test_bag_refuses_a_preprocessor_that_learns_from_the_target() -> None:
    """Sharing one preprocessor fitted on the pool is only safe when its state ignores the target: a
    target-encoding one would leak each fold's held-out labels into its out-of-fold outputs."""
    from types import SimpleNamespace

    from verticals.crossfit import check_target_free
    from verticals.data.tabular import TabularPreprocessor
    from verticals.errors import PluginError
    from verticals.spec import DatasetSpec
    from verticals.testing.reference import reference_schema

    class TargetEncoding(TabularPreprocessor):
        def fit(self, frame):
            super().fit(frame)
            import polars as pl

            self.rate_c0 = frame.group_by("c0").agg(pl.col("target").mean()).sort("c0")["target"].to_list()

        def state(self):
            return {**super().state(), "rate_c0": self.rate_c0}

    dataset = DatasetSpec(name="synthetic", loader=lambda: None, schema=reference_schema(4, 1))
    pool = make_frame(300, n_numeric=4, n_categorical=1)
    for cls, refused in ((TabularPreprocessor, False), (TargetEncoding, True)):
        pipe = SimpleNamespace(qualified_name="ref.mlp", preprocessor=lambda ds, cls=cls: cls(ds.schema))
        fitted = pipe.preprocessor(dataset)
        fitted.fit(pool)
        if refused:
            with pytest.raises(PluginError, match=r"TargetEncoding's fitted state depends on the target 'target'"):
                check_target_free(pipe, dataset, pool, fitted, seed=1)
        else:
            check_target_free(pipe, dataset, pool, fitted, seed=1)


class BaggedPipeline(SmallPipeline):
    name = "bagged"
    training = TrainingConfig(epochs=4, batch_size=128, learning_rate=5e-3, patience=2, crossfit_below=1000,
                              crossfit_folds=2, crossfit_repeats=2, crossfit_final="bag")


class TypoPipeline(SmallPipeline):
    name = "typo"
    training = TrainingConfig(epochs=2, crossfit_below=1000, crossfit_folds=3, crossfit_final="bagging")


class BaggedPlugin(ReferencePlugin):
    @hookimpl
    def register_pipelines(self, register):
        register(BaggedPipeline())
        register(TypoPipeline())


@pytest.mark.slow
def test_bagged_model_is_one_graph_averaging_the_fold_models(verticals_plugins, verticals_home) -> None:
    import pickle

    import onnx
    import torch
    from verticals.engine import fit, load_data, split_data, train, validate_data
    from verticals.ensemble import AveragedModel
    from verticals.errors import PluginError

    verticals_plugins({"ref": BaggedPlugin(rows=400, n_numeric=4, n_categorical=1, hidden=(8,))})
    result = train("ref.bagged", progress=False, variants=("int8",))
    record = SmallPipeline.seen[-1]
    summary = result.manifest["training"]["crossfit"]
    assert summary["final"] == "bag" and summary["repeats"] == 2 and len(summary["best_epochs"]) == 4
    assert summary["final_model"].startswith("average of 4 fold models")
    assert summary["final_model"].endswith("2 × 2-fold cross-fitting)")
    assert "average of 4 fold models" in (result.path / "report.html").read_text()
    int8 = result.manifest["variants"]["int8"]  # the averaged graph quantizes and is evaluated like any other
    assert result.manifest["parity"]["passed"] and int8["metric"] is not None, int8["reason"]
    graph = onnx.load(result.path / result.manifest["model_file"])
    assert [i.name for i in graph.graph.input] == ["x_num", "x_cat"] and len(graph.graph.output) == 1
    history = result.manifest["training"]["history"]
    assert history[0]["folds"] == 4 and len(history) >= max(summary["best_epochs"])
    # The out-of-fold logits came from the very fold models the final model averages.
    splits = split_data("ref.bagged", validate_data("ref.bagged", load_data("ref.bagged")), seed=42)
    fitted = pickle.loads(pickle.dumps(fit("ref.bagged", splits, progress=False)))
    pre, graph_module, model = fitted.modules()  # rebuilt from plain weights, as a Prefect worker would
    assert isinstance(model, AveragedModel) and len(model.members) == fitted.members == 4
    np.testing.assert_allclose(fitted.crossfit.outputs["logits"], record.outputs["logits"], atol=1e-6)
    from verticals.crossfit import fold_labels, repeat_seed

    pool = splits.train.vstack(splits.valid)
    batch = pre.transform(pool, with_target=True)
    with torch.no_grad():
        prepared = graph_module(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.inputs.items()})
        logits = [m(**prepared).numpy() for m in model.members]  # members: repeat 0 folds 0, 1; repeat 1 folds 0, 1
    expected = np.zeros(pool.height)
    for r in range(2):  # each row's out-of-fold logit: the mean of the two members (one per repeat) that never saw it
        labels = fold_labels(batch.target, pool.height, 2, repeat_seed(42, r))
        for k in range(2):
            held = labels == k
            expected[held] += logits[2 * r + k][held] / 2
    np.testing.assert_allclose(fitted.crossfit.outputs["logits"], expected, atol=1e-5)
    runs = fitted.crossfit.repeat_outputs  # each run's own out-of-fold logits: one member per row
    assert len(runs) == 2 and set(runs[0]) == set(fitted.crossfit.outputs)
    for r in range(2):
        labels = fold_labels(batch.target, pool.height, 2, repeat_seed(42, r))
        for k in range(2):
            held = labels == k
            np.testing.assert_allclose(runs[r]["logits"][held], logits[2 * r + k][held], atol=1e-5)
    np.testing.assert_allclose((runs[0]["logits"] + runs[1]["logits"]) / 2, fitted.crossfit.outputs["logits"],
                               atol=1e-6)
    with pytest.raises(PluginError, match=r"crossfit_final is 'bagging'.*'refit', 'bag'"):
        train("ref.typo", progress=False, variants=())


def test_fitted_states_compare_with_a_float_tolerance_only() -> None:
    from verticals.crossfit import _same_state

    assert _same_state({"std": [17.246267461182452, float("nan")], "n": 3}, {"std": [17.24626746118245, float("nan")], "n": 3})
    assert not _same_state({"std": [17.2462]}, {"std": [17.2463]})
    assert not _same_state({"vocab": ["a", "b"]}, {"vocab": ["b", "a"]})
    assert not _same_state({"a": 1}, {"a": 1, "b": 2})
