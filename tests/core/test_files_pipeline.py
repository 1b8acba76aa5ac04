"""The files reference pipeline end to end: a folder of generated PNG images (two of them undecodable)
through train → export → parity → register, with the engine's stages and with ``verticals train``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from verticals import engine
from verticals.testing import use_plugins
from verticals.testing.files import FilesPlugin, make_images

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

IMAGES = 240
CORRUPT = 2
EPOCHS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """Train once, stage by stage (as the Prefect flow does), and register; keep every stage's result."""
    from verticals.store import ModelStore

    root = tmp_path_factory.mktemp("images")
    home = tmp_path_factory.mktemp("home")
    plugin = FilesPlugin(root=root, images=IMAGES, corrupt=CORRUPT, seed=1)
    with use_plugins({"files": plugin}):
        name = "files.shapes"
        validated = engine.validate_data(name, engine.load_data(name))
        splits = engine.split_data(name, validated, seed=5)
        fitted = engine.fit(name, splits, epochs=EPOCHS, seed=5, device="cpu", progress=False)
        staging = ModelStore(home).staging(name)
        evaluation = engine.evaluate(name, splits, fitted, workdir=staging)
        exported = engine.export(name, fitted, evaluation, staging, variants=())
        version = engine.register(name, validated, splits, fitted, evaluation, exported, home=home)
        yield {"root": root, "home": home, "plugin": plugin, "splits": splits, "fitted": fitted,
               "evaluation": evaluation, "version": version, "manifest": version.manifest,
               "frame": make_images(root, IMAGES, seed=1, corrupt=CORRUPT)}


def _corrupt_paths(run) -> list[str]:
    return run["frame"]["path"].to_list()[-CORRUPT:]


def test_registers_a_model_that_takes_uint8_pixels_and_exports_two_outputs(run) -> None:
    manifest = run["manifest"]
    assert manifest["pipeline"] == "files.shapes" and run["version"].version == 1
    assert manifest["signature"]["inputs"] == {"image": {"dtype": "uint8", "shape": [-1, 3, 32, 32]}}
    assert manifest["signature"]["outputs"] == ["logits", "cam"]
    # measured at registration, beyond the 3 kB of uint8 pixels: the CNN's feature maps (float32)
    if manifest["signature"]["bytes_per_example"] is not None:  # measured where /proc allows it
        assert manifest["signature"]["bytes_per_example"] > 3 * 32 * 32, manifest["signature"]
    assert "memory_measured_on" in manifest["signature"]
    assert manifest["input_schema"] == [c for c in manifest["input_schema"] if c["name"] == "path"]
    pre = manifest["preprocessor"]
    assert pre["size"] == 32 and len(pre["mean"]) == len(pre["std"]) == 3
    session = ort.InferenceSession(str(run["version"].path / manifest["model_file"]),
                                   providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("image", "tensor(uint8)")]


def test_parity_covers_the_logit_and_the_activation_map(run) -> None:
    parity = run["manifest"]["parity"]
    assert parity["passed"] and set(parity["outputs"]) == {"logits", "cam"}
    assert all(o["max_abs_diff"] <= o["limit"] for o in parity["outputs"].values())
    assert parity["rows"] >= 3


def test_the_model_learns_the_planted_shapes(run) -> None:
    metrics = run["evaluation"].metrics
    assert metrics["test"]["auc"] > 0.85, metrics["test"]
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    by_mode = metrics["test"]["auc_by_mode"]  # a structured metric from Batch.aux reaches metrics.json
    assert set(by_mode) <= {"L", "RGB"} and "RGB" in by_mode
    stored = json.loads((run["version"].path / "metrics.json").read_text())
    assert stored["test"]["auc_by_mode"] == by_mode


def test_undecodable_training_files_are_rejected_with_path_and_reason(run) -> None:
    data = run["manifest"]["training_data"]
    assert data["rows"] == IMAGES and data["rows_rejected"] == 0  # valid rows: validation cannot decode
    assert sum(data["preprocessor_rejects"].values()) == CORRUPT
    reasons = [reason for found in data["preprocessor_reasons"].values() for reason, _ in found]
    for path in _corrupt_paths(run):
        assert any(r.startswith(f"cannot decode image file {path}: ") for r in reasons), reasons
    sizes = data["splits"]
    assert sum(sizes.values()) == IMAGES  # split sizes count rows; the rejected ones made no example
    report = (run["version"].path / "report.html").read_text()
    assert "Valid rows the preprocessor rejected" in report
    assert all(Path(p).name in report for p in _corrupt_paths(run))


def test_training_streams_and_is_reproducible(run) -> None:
    """Same seed, same splits: the same weights, though chunks are decoded in threads and augmented."""
    with use_plugins({"files": run["plugin"]}):
        again = engine.fit("files.shapes", run["splits"], epochs=EPOCHS, seed=5, device="cpu", progress=False)
    first = run["fitted"]
    assert again.weights.keys() == first.weights.keys()
    assert all(np.array_equal(again.weights[k], first.weights[k]) for k in first.weights)
    assert [h["train_loss"] for h in again.history] == [h["train_loss"] for h in first.history]


def test_onnx_model_reproduces_the_evaluation_predictions(run) -> None:
    """Decode the test split again, run the registered ONNX file on its uint8 pixels and postprocess:
    the scores evaluation recorded come back, and the activation map averages to the logit."""
    from verticals.registry import get_registry
    from verticals.spec import ScoringContext

    manifest = run["manifest"]
    with use_plugins({"files": run["plugin"]}):
        registry = get_registry()
        pipe = registry.pipeline("files.shapes")
        pre = pipe.preprocessor(registry.dataset_of(pipe))
    pre.load_state(manifest["preprocessor"])
    batch = pre.transform(run["splits"].test, with_target=False)
    session = ort.InferenceSession(str(run["version"].path / manifest["model_file"]),
                                   providers=["CPUExecutionProvider"])
    logits, cam = session.run(None, {"image": batch.inputs["image"]})
    assert cam.shape == (len(batch), 8, 8) and np.allclose(cam.mean(axis=(1, 2)), logits, atol=1e-4)
    scored = pipe.postprocess({"logits": logits, "cam": cam}, batch, ScoringContext(manifest["extras"]))
    assert scored["heatmap"].null_count() == len(batch)  # no side outputs outside a scoring run
    recorded = run["evaluation"].predictions["test"]
    rejected = 0 if batch.rejects is None else batch.rejects.height
    assert recorded.height == len(batch) == run["splits"].test.height - rejected
    joined = recorded.join(pl.concat([batch.ids, scored], how="horizontal"), on="path", suffix="_onnx")
    assert joined.height == len(batch)
    assert np.allclose(joined["score"], joined["score_onnx"], atol=1e-5)
    assert joined["label"].to_list() == joined["label_onnx"].to_list()


def test_cli_train_reports_the_rejected_file(run, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from verticals.cli import main

    home = tmp_path / "home"
    with use_plugins({"files": run["plugin"]}):
        main(["train", "files.shapes", "--epochs", "1", "--seed", "2", "--device", "cpu", "--no-progress",
              "--home", str(home)])
    out = capsys.readouterr().out
    version = home / "models" / "files.shapes" / "v1"
    assert f"registered files.shapes v1 at {version}" in out
    assert "test metrics: auc=" in out and "onnx parity: passed" in out
    line = next(x for x in out.splitlines() if x.startswith("rejected training rows:"))
    assert f"{CORRUPT} by the preprocessor" in line and "cannot decode image file " in line
    assert any(p in line for p in _corrupt_paths(run))
    assert (version / "model.onnx").is_file()
