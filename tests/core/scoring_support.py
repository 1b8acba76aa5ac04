"""Shared by the scoring tests: a small pipeline whose schema exercises every validation rule, a real
exported model for it (TabularPreprocessor + reference MLP, exported like the engine does), and helpers.

The ONNX export is the slow part (~10 s), so it runs once per test session into a cache folder and each
test registers a copy in its own model store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from verticals.hookspecs import hookimpl
from verticals.pipeline import Pipeline
from verticals.spec import Column, DatasetSpec, ModelSpec, OutputColumn, Schema, TrainingConfig

PIPELINE = "scoretest.rules"

SCHEMA = Schema((
    Column("id", "int", "id"),
    Column("x1", "float"),                                             # NaN → imputed in the graph
    Column("x2", "float", min=0, max=100, on_out_of_range="flag"),     # clipped and flagged
    Column("x3", "float", min=-10, max=10, on_out_of_range="reject"),  # rejected with a reason
    Column("x4", "float", on_missing="reject"),                        # missing → rejected
    Column("x5", "int", on_missing="flag"),                            # missing → imputed and flagged
    Column("cat", "category", on_unknown="flag"),                      # unknown → index 0 and flagged
    Column("kind", "category", on_unknown="reject"),                   # unknown → rejected
    Column("y", "int", "target", categories=("0", "1")),
))
FEATURES = ["x1", "x2", "x3", "x4", "x5", "cat", "kind"]


def make_rows(n: int, *, seed: int = 0, start: int = 0, with_target: bool = True) -> pl.DataFrame:
    """Clean rows of the test dataset (every value valid)."""
    rng = np.random.default_rng([seed, start])
    data: dict[str, Any] = {
        "id": np.arange(start, start + n, dtype=np.int64),
        "x1": rng.normal(5, 2, n),
        "x2": rng.uniform(0, 100, n),
        "x3": rng.uniform(-10, 10, n),
        "x4": rng.normal(0, 1, n),
        "x5": rng.integers(0, 20, n),
        "cat": rng.choice(["a", "b", "c"], n),
        "kind": rng.choice(["k1", "k2"], n),
    }
    if with_target:
        data["y"] = (rng.random(n) < 1 / (1 + np.exp(-(data["x1"] - 5)))).astype(np.int64)
    return pl.DataFrame(data)


class RulesPipeline(Pipeline):
    name = "rules"
    dataset = "rules"
    model = "mlp"
    task = "binary"
    score_column = "score"
    output_columns = (OutputColumn("score", "float", "P(y = 1)"),)
    training = TrainingConfig(epochs=1, batch_size=256)


class ScoringTestPlugin:
    """An in-process plugin (``scoretest``) with the rules dataset, the reference MLP and the pipeline."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []

    @hookimpl
    def register_datasets(self, register):
        register(DatasetSpec(name="rules", loader=lambda: make_rows(2000).lazy(), schema=SCHEMA,
                             description="scoring test rows"))

    @hookimpl
    def register_models(self, register):
        from verticals.testing.reference import mlp_factory

        register(ModelSpec(name="mlp", factory=lambda info, **o: mlp_factory(info, hidden=(8,)), outputs=("logits",)))

    @hookimpl
    def register_pipelines(self, register):
        register(RulesPipeline())

    @hookimpl
    def after_score_batch(self, pipeline, version, batch_index, rows_in, rows_scored, rows_rejected, seconds):
        self.batches.append({"pipeline": pipeline, "version": version, "rows_in": rows_in,
                             "rows_scored": rows_scored, "rows_rejected": rows_rejected})


def export_model(folder: Path) -> Path:
    """Fit the preprocessor, build the MLP and export both as the engine does; writes ``manifest.json``.

    Also saves the composed torch module's state so a test can compare with torch eager.
    """
    import torch
    from verticals.data.tabular import TabularPreprocessor
    from verticals.data.validation import validate
    from verticals.export import compose, export_onnx
    from verticals.testing.reference import mlp_factory

    folder.mkdir(parents=True, exist_ok=True)
    train = validate(make_rows(2000, seed=1), SCHEMA, stage="train").valid
    pre = TabularPreprocessor(SCHEMA)
    pre.fit(train)
    torch.manual_seed(0)
    model = mlp_factory(pre.info(), hidden=(8,)).eval()
    sig = pre.signature()
    export_onnx(pre.graph_module(), model, sig, ("logits",), pre.transform(train.head(16), with_target=False).inputs,
                folder / "model.onnx")
    torch.save(compose(pre.graph_module(), model, list(sig)).state_dict(), folder.parent / "composed.pt")
    manifest = {
        "task": "binary", "score_column": "score",
        "output_columns": [{"name": "score", "dtype": "float", "description": ""}],
        "input_schema": SCHEMA.without_target().to_dict(), "preprocessor": pre.state(), "model_file": "model.onnx",
        "signature": {"inputs": {k: v.to_dict() for k, v in sig.items()}, "outputs": ["logits"]},
        "variants": {}, "extras": {},
    }
    (folder.parent / "manifest.json").write_text(json.dumps(manifest))
    return folder


def cached_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported model folder, made once per test session (shared by the scoring test modules)."""
    root = tmp_path_factory.getbasetemp() / "scoring-model"
    folder = root / "files"
    if not (root / "manifest.json").exists():
        export_model(folder)
    return folder


def register_model(home: Path, folder: Path, times: int = 1) -> Any:
    """Register the cached model ``times`` times in the store at ``home``; returns the last version."""
    from verticals.store import ModelStore

    manifest = json.loads((folder.parent / "manifest.json").read_text())
    store = ModelStore(home)
    version = None
    for _ in range(times):
        version = store.register(PIPELINE, folder, manifest)
    return version


def composed_module(folder: Path) -> Any:
    """The exported torch module (in-graph preprocessing + MLP) with its weights, for eager comparisons."""
    import torch
    from verticals.data.tabular import TabularPreprocessor
    from verticals.export import compose
    from verticals.testing.reference import mlp_factory

    manifest = json.loads((folder.parent / "manifest.json").read_text())
    pre = TabularPreprocessor(SCHEMA)
    pre.load_state(manifest["preprocessor"])
    module = compose(pre.graph_module(), mlp_factory(pre.info(), hidden=(8,)), list(pre.signature()))
    module.load_state_dict(torch.load(folder.parent / "composed.pt"))
    return module.eval(), pre


def reference_scores(folder: Path, frame: pl.DataFrame) -> pl.DataFrame:
    """Scores computed directly (validate → transform → plain ORT session → sigmoid), by id."""
    import onnxruntime as ort
    from verticals.data.tabular import TabularPreprocessor
    from verticals.data.validation import validate

    manifest = json.loads((folder.parent / "manifest.json").read_text())
    pre = TabularPreprocessor(SCHEMA)
    pre.load_state(manifest["preprocessor"])
    valid = validate(frame, SCHEMA, stage="score", vocabularies=pre.vocabularies()).valid
    batch = pre.transform(valid, with_target=False)
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {k: np.ascontiguousarray(v) for k, v in batch.inputs.items()})[0]
    return pl.DataFrame({"id": valid["id"].cast(pl.Int64), "expected": 1 / (1 + np.exp(-logits.astype(np.float64)))})


def write_parquet(frame: pl.DataFrame, path: Path, row_group: int = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, row_group_size=row_group)
    return path


def read_output(out: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """(all part files, _rejects.parquet, _manifest.json) of an output folder."""
    parts = sorted(out.glob("part-*.parquet"))
    scores = pl.concat([pl.read_parquet(p) for p in parts]) if parts else pl.DataFrame()
    return scores, pl.read_parquet(out / "_rejects.parquet"), json.loads((out / "_manifest.json").read_text())
