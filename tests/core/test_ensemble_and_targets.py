"""Seed ensembles (``TrainingConfig.ensemble``) and targets with auxiliary columns ([N, K], column 0 the
label), with outputs a model returns in training only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from verticals.hookspecs import hookimpl
from verticals.spec import Batch, ModelSpec, TrainingConfig, target_labels
from verticals.testing.reference import ReferencePipeline, ReferencePlugin, mlp_factory


def test_target_labels_are_column_zero_of_a_wide_target() -> None:
    assert target_labels(np.array([0.0, 1.0])).tolist() == [0.0, 1.0]
    wide = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    assert target_labels(wide).tolist() == [1.0, 0.0]
    import polars as pl

    batch = Batch(ids=pl.DataFrame({"id": [1, 2]}), inputs={}, target=wide)
    assert batch.labels.tolist() == [1.0, 0.0] and batch.take(slice(1, 2)).labels.tolist() == [0.0]
    assert Batch(ids=pl.DataFrame({"id": [1]}), inputs={}).labels is None


class EnsemblePipeline(ReferencePipeline):
    name = "ensemble"
    training = TrainingConfig(epochs=2, batch_size=128, learning_rate=5e-3, patience=2, ensemble=3)


class SinglePipeline(ReferencePipeline):
    name = "single"
    training = dataclasses.replace(EnsemblePipeline.training, ensemble=1)


class BadPipeline(ReferencePipeline):
    name = "bad"
    training = dataclasses.replace(EnsemblePipeline.training, ensemble=0)


class EnsemblePlugin(ReferencePlugin):
    @hookimpl
    def register_pipelines(self, register):
        for pipe in (EnsemblePipeline(), SinglePipeline(), BadPipeline()):
            register(pipe)


def test_seed_ensemble_averages_models_of_consecutive_seeds_into_one_graph(verticals_plugins,
                                                                           verticals_home) -> None:
    import onnx
    import torch
    from verticals.engine import fit, load_data, split_data, train, validate_data
    from verticals.ensemble import AveragedModel
    from verticals.errors import PluginError

    verticals_plugins({"ref": EnsemblePlugin(rows=400, n_numeric=4, n_categorical=1, hidden=(8,))})
    result = train("ref.ensemble", progress=False, variants=())
    assert result.manifest["parity"]["passed"]
    graph = onnx.load(result.path / result.manifest["model_file"])
    assert len(graph.graph.output) == 1
    assert result.manifest["training"]["history"][0]["members"] == 3 and result.manifest["training"]["ensemble"] == 3
    assert "average of 3 models trained on the same split with seeds 42–44" in (result.path / "report.html").read_text()
    splits = split_data("ref.ensemble", validate_data("ref.ensemble", load_data("ref.ensemble")), seed=42)
    fitted = fit("ref.ensemble", splits, progress=False)
    _, graph_module, model = fitted.modules()
    assert isinstance(model, AveragedModel) and fitted.members == 3
    # Member k is exactly the single model trained with seed 42 + k on the same split.
    for k in (0, 2):
        single = fit("ref.single", splits, seed=42 + k, progress=False)
        mine = {name[len(f"members.{k}."):]: w for name, w in fitted.weights.items() if name.startswith(f"members.{k}.")}
        assert mine.keys() == single.weights.keys()
        for name, w in single.weights.items():
            np.testing.assert_array_equal(mine[name], w)
    # ... and the ensemble's logit is their mean.
    pre = fitted.modules()[0]
    batch = pre.transform(splits.test, with_target=True)
    with torch.no_grad():
        inputs = graph_module(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.inputs.items()})
        each = np.stack([m(**inputs).numpy() for m in model.members])
        np.testing.assert_allclose(model(**inputs).numpy(), each.mean(axis=0), atol=1e-6)
    with pytest.raises(PluginError, match=r"TrainingConfig.ensemble is 0"):
        fit("ref.bad", splits, progress=False)


class AuxTargetPipeline(ReferencePipeline):
    """The target gains a column the loss also learns (whether the first numeric feature is positive);
    the model returns a second logit for it in training only."""

    name = "aux"
    model = "aux_mlp"
    training = TrainingConfig(epochs=2, batch_size=128, learning_rate=5e-3, patience=2, class_weighting=True)

    def preprocessor(self, dataset):
        base = super().preprocessor(dataset)

        class Wide(type(base)):
            def transform(self, frame, *, with_target):
                batch = super().transform(frame, with_target=with_target)
                if batch.target is not None:
                    extra = (np.asarray(batch.inputs["x_num"])[:, 0] > 0).astype(np.float32)
                    batch = dataclasses.replace(batch, target=np.column_stack([batch.target, extra]))
                return batch

        wide = Wide.__new__(Wide)
        wide.__dict__.update(base.__dict__)
        return wide

    def loss(self, outputs, target, class_weights):
        import torch.nn.functional as F

        assert target.ndim == 2 and target.shape[1] == 2
        loss = F.binary_cross_entropy_with_logits(outputs[0].float(), target[:, 0].float())
        if len(outputs) > 1:  # training: the auxiliary head
            loss = loss + F.binary_cross_entropy_with_logits(outputs[1].float(), target[:, 1].float())
        return loss


class AuxPlugin(ReferencePlugin):
    @hookimpl
    def register_models(self, register):
        super().register_models(register)

        def factory(info, **options):
            import torch

            class WithAux(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.body = mlp_factory(info, hidden=(8,))
                    self.aux = torch.nn.Linear(4, 1)

                def forward(self, x_num=None, x_cat=None):
                    logits = self.body(x_num, x_cat)
                    return (logits, self.aux(x_num).squeeze(1)) if self.training else logits

            return WithAux()

        register(ModelSpec(name="aux_mlp", factory=factory, outputs=("logits",), description="MLP + aux head"))

    @hookimpl
    def register_pipelines(self, register):
        register(AuxTargetPipeline())


def test_a_target_with_auxiliary_columns_trains_weights_and_reports_on_its_label(verticals_plugins,
                                                                                  verticals_home) -> None:
    import json

    from verticals.training import class_weights

    wide = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(class_weights("binary", wide), class_weights("binary", wide[:, 0]))
    from verticals.engine import train

    verticals_plugins({"ref": AuxPlugin(rows=400, n_numeric=4, n_categorical=1, hidden=(8,))})
    result = train("ref.aux", progress=False, variants=())
    assert result.manifest["parity"]["passed"]
    metrics = json.loads((result.path / "metrics.json").read_text())
    assert 0.5 < metrics["test"]["auc"] <= 1.0
    # The report reads the label: the positive rate per split and the test scores per true class.
    assert (result.path / "figures" / "test_scores.png").exists()
    assert "test_scores.png" in (result.path / "report.html").read_text()
