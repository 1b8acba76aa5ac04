"""The training loop on the reference plugin: learns, repeats for a seed, stops early, restores the best."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from verticals.data.splits import split_frame  # noqa: E402
from verticals.data.validation import validate  # noqa: E402
from verticals.errors import PluginError, UserError  # noqa: E402
from verticals.testing import use_plugins  # noqa: E402
from verticals.testing.reference import ReferencePlugin  # noqa: E402
from verticals.training import (  # noqa: E402
    class_weights,
    default_loss,
    evaluate_split,
    fit_model,
    predict_outputs,
    seed_everything,
    select_device,
)


@pytest.fixture(scope="module")
def reference():
    """Registry objects, fitted preprocessor and batches of a 2,000-row reference dataset."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared machine: threads only contend
    with use_plugins({"reference": ReferencePlugin(rows=2000)}) as registry:
        pipeline = registry.pipeline("reference.mlp")
        dataset = registry.dataset_of(pipeline)
        spec = registry.model_of(pipeline)
        valid_rows = validate(dataset.loader().collect(), dataset.schema, stage="train").valid
        splits = split_frame(valid_rows, dataset, seed=0)
        pre = pipeline.preprocessor(dataset)
        pre.fit(splits.train)
        batches = {name: pre.transform(frame, with_target=True) for name, frame in splits.items()}
        yield pipeline, spec, pre, batches
    torch.set_num_threads(threads)


def train(reference, *, seed=7, epochs=3, lr=3e-3, patience=3):
    pipeline, spec, pre, batches = reference
    seed_everything(seed)
    model = spec.factory(pre.info())
    return fit_model(pipeline, model, pre.graph_module(), batches["train"], batches["valid"], epochs=epochs,
                     batch_size=128, lr=lr, weight_decay=1e-5, patience=patience, seed=seed, device="cpu",
                     class_weighting=True, progress=False, output_names=spec.outputs)


def test_training_learns_and_records_history(reference):
    out = train(reference)
    assert [row["epoch"] for row in out.history] == [1, 2, 3]
    assert {"train_loss", "valid_loss", "valid_auc", "valid_logloss", "seconds"} <= set(out.history[0])
    assert out.history[-1]["train_loss"] < out.history[0]["train_loss"]
    assert max(row["valid_auc"] for row in out.history) > 0.7  # the generating rule is learnable
    assert out.device == "cpu" and out.seconds > 0
    assert not out.model.training


def test_same_seed_same_metrics_different_seed_different(reference):
    a, b, c = (train(reference, seed=s, epochs=2) for s in (11, 11, 12))
    assert a.history and [r | {"seconds": 0} for r in a.history] == [r | {"seconds": 0} for r in b.history]
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)
    assert a.history[-1]["train_loss"] != c.history[-1]["train_loss"]


def test_best_weights_are_restored_and_predictions_reproduce_the_best_metric(reference):
    pipeline, spec, pre, batches = reference
    out = train(reference, epochs=4, lr=3e-2, patience=10)  # a high rate, so epochs differ
    best = max(out.history, key=lambda r: r["valid_auc"])
    assert out.best_epoch == best["epoch"] < len(out.history)  # the last epoch was worse: weights restored
    outputs = predict_outputs(out.model, pre.graph_module(), batches["valid"], "cpu", 97, spec.outputs)
    assert set(outputs) == {"logits"} and outputs["logits"].shape == (len(batches["valid"]),)
    _, metrics = evaluate_split(pipeline, outputs, batches["valid"])
    assert metrics["auc"] == pytest.approx(best["valid_auc"], abs=1e-9)


def test_stopping_on_the_validation_loss_keeps_the_lowest_loss_epoch(reference):
    pipeline, spec, pre, batches = reference
    seed_everything(7)
    out = fit_model(pipeline, spec.factory(pre.info()), pre.graph_module(), batches["train"], batches["valid"],
                    epochs=4, batch_size=256, lr=3e-2, weight_decay=0.0, patience=10, seed=7, device="cpu",
                    progress=False, stop_on="loss")
    best = min(out.history, key=lambda r: r["valid_loss"])
    assert out.best_epoch == best["epoch"]
    outputs = predict_outputs(out.model, pre.graph_module(), batches["valid"], "cpu", 512, spec.outputs)
    logits = torch.from_numpy(outputs["logits"])
    target = torch.from_numpy(np.array(batches["valid"].target, dtype=np.float32))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert float(loss) == pytest.approx(best["valid_loss"], rel=1e-4)
    with pytest.raises(PluginError, match=r"early stopping on 'brier'"):
        fit_model(pipeline, spec.factory(pre.info()), pre.graph_module(), batches["train"], batches["valid"],
                  epochs=1, batch_size=256, lr=1e-3, weight_decay=0.0, patience=1, seed=7, device="cpu",
                  progress=False, stop_on="brier")


def test_a_model_penalty_is_added_per_row_and_left_out_of_the_reported_losses(reference):
    pipeline, spec, pre, batches = reference
    rows: list[int] = []

    def run(penalty=None):
        seed_everything(7)
        model = spec.factory(pre.info())
        if penalty is not None:
            model.penalty = lambda n: (rows.append(n), penalty(model, n))[1]
        out = fit_model(pipeline, model, pre.graph_module(), batches["train"], batches["valid"], epochs=2,
                        batch_size=256, lr=1e-2, weight_decay=0.0, patience=5, seed=7, device="cpu",
                        progress=False)
        return out, torch.cat([p.detach().reshape(-1) for p in out.model.parameters()])

    plain, plain_weights = run()
    # A constant has no gradient: the same weights, and the reported losses do not include it.
    shifted, shifted_weights = run(lambda model, n: torch.tensor(100.0))
    assert torch.equal(plain_weights, shifted_weights)
    assert [r | {"seconds": 0} for r in shifted.history] == [r | {"seconds": 0} for r in plain.history]
    assert set(rows) == {len(batches["train"])}  # per row: the training rows, whatever the batch size
    # A strong ridge penalty (λ·‖θ‖² over the whole objective, divided by the rows) shrinks the weights.
    _, ridge_weights = run(lambda model, n: 1e4 * sum((p ** 2).sum() for p in model.parameters()) / n)
    assert float(ridge_weights.norm()) < 0.8 * float(plain_weights.norm())


def test_early_stopping_when_the_metric_stops_improving(reference):
    out = train(reference, epochs=10, lr=0.0, patience=2)  # nothing changes: no epoch beats the first
    assert len(out.history) == 3 and out.stopped_early and out.best_epoch == 1


def test_graph_module_is_not_trained(reference):
    _, spec, pre, _ = reference
    graph = pre.graph_module()
    before = {k: v.clone() for k, v in graph.state_dict().items()}
    pipeline, _, _, batches = reference
    seed_everything(0)
    fit_model(pipeline, spec.factory(pre.info()), graph, batches["train"], batches["valid"], epochs=1,
              batch_size=256, lr=1e-2, weight_decay=0.0, patience=1, seed=0, device="cpu", progress=False)
    for key, value in graph.state_dict().items():
        assert torch.equal(value, before[key])


def test_select_device():
    assert select_device("cpu") == "cpu"
    assert select_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device(None) == select_device("auto")
    with pytest.raises(UserError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cpu"):
            select_device("cuda")


def test_class_weights_balance_the_classes():
    w = class_weights("binary", np.array([0, 0, 0, 1], dtype=np.float32))
    np.testing.assert_allclose(w, [4 / 6, 4 / 2])
    w = class_weights("multiclass", np.array([0, 1, 1, 2, 2, 2]))
    np.testing.assert_allclose(w * np.array([1, 2, 3]), [2, 2, 2])
    assert class_weights("regression", np.array([1.0])) is None


def test_default_loss_by_task():
    import torch.nn.functional as F

    logits = torch.tensor([0.3, -1.0, 2.0, 0.1])
    target = torch.tensor([1.0, 0.0, 1.0, 0.0])
    weights = torch.tensor([0.5, 2.0])
    expected = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(4.0))
    assert torch.allclose(default_loss("binary", logits[:, None], target, weights), expected)
    assert torch.allclose(default_loss("binary", logits, target, None),
                          F.binary_cross_entropy_with_logits(logits, target))
    multi = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    cw = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(default_loss("multiclass", multi, labels, cw), F.cross_entropy(multi, labels, weight=cw))
    assert torch.allclose(default_loss("regression", logits, target, None), F.mse_loss(logits, target))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_with_mixed_precision(reference):
    pipeline, spec, pre, batches = reference
    seed_everything(7)
    graph = pre.graph_module()
    out = fit_model(pipeline, spec.factory(pre.info()), graph, batches["train"], batches["valid"], epochs=3,
                    batch_size=128, lr=3e-3, weight_decay=1e-5, patience=3, seed=7, device="auto",
                    progress=False, output_names=spec.outputs)
    assert out.device == "cuda"
    assert max(row["valid_auc"] for row in out.history) > 0.7
    assert next(out.model.parameters()).device.type == "cpu"  # handed back ready for export
    on_cpu = predict_outputs(out.model, graph, batches["valid"], "cpu", 512, spec.outputs)["logits"]
    on_gpu = predict_outputs(out.model, graph, batches["valid"], "cuda", 512, spec.outputs)["logits"]
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)  # evaluation runs in float32 on both
