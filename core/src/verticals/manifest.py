"""The model manifest, typed: what a registered model version says about itself (``manifest.json``).

One definition of the manifest's fields, read by the model store (:attr:`verticals.store.ModelVersion.info`),
written by the engine (:func:`verticals.engine.register`) and read by scoring
(:class:`verticals.scoring.ScoringSession`). The JSON stays the contract on disk; this class is how code
reads and writes it, so a field is named, typed and documented once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from verticals.spec import Schema

__all__ = ["ModelManifest"]


@dataclass(frozen=True)
class ModelManifest:
    """A model version's manifest.

    Attributes:
        pipeline, version, created_at: set by the store at registration.
        plugin: ``{name, distribution, version}`` of the plugin that trained it.
        code_version: ``{verticals, git}``.
        task, dataset, model, score_column, primary_metric, greater_is_better: from the pipeline.
        output_columns: ``[{name, dtype, description}]`` scoring adds per example.
        input_schema: the columns scoring input must have (the dataset's schema without its target).
        preprocessor: the fitted preprocessor's state.
        model_file: the fp32 ONNX file; ``variants``: ``{kind: {file, metric, delta, accepted, ...}}``.
        signature: ``{inputs: {name: TensorSpec dict}, outputs: [names]}`` of the exported graph.
        metrics: split → metric → value (dicts for structured metrics); ``parity``: the parity check.
        training_data: source, rows, fingerprint, split sizes and strategy, preprocessor rejects.
        training: epochs, best epoch, seed, device, history, model options.
        reference: the training drift profile (:mod:`verticals.drift`).
        extras: what ``Pipeline.fit_extras`` returned (handed to ``postprocess``).
        named_artifacts: ``{name: {file, kind}}`` (:mod:`verticals.artifacts`).
        report: the HTML report's file name.
        artifacts: ``{relative file: sha256}`` of every file of the version, set by the store.
        raw: the manifest as read, with any keys this class does not name.
    """

    pipeline: str = ""
    version: int = 0
    created_at: str | None = None
    plugin: dict[str, Any] = field(default_factory=dict)
    code_version: dict[str, Any] = field(default_factory=dict)
    task: str = ""
    dataset: str = ""
    model: str = ""
    score_column: str = ""
    primary_metric: str = ""
    greater_is_better: bool = True
    output_columns: list[dict[str, Any]] = field(default_factory=list)
    input_schema: list[dict[str, Any]] = field(default_factory=list)
    preprocessor: dict[str, Any] | None = None
    model_file: str = "model.onnx"
    signature: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    named_artifacts: dict[str, dict[str, str]] = field(default_factory=dict)
    report: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelManifest:
        """The typed view of a manifest dict (missing keys take their defaults; unknown keys stay in ``raw``)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"raw"}
        values = {k: v for k, v in data.items() if k in names and v is not None}
        return cls(**values, raw=dict(data))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written as ``manifest.json`` (store-set keys only when set)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "raw"}
        for key in ("pipeline", "version", "created_at", "artifacts"):
            if not out.get(key):
                out.pop(key, None)
        return {**{k: v for k, v in self.raw.items() if k not in out}, **out}

    @property
    def schema(self) -> Schema | None:
        """The scoring input schema, or ``None`` for a manifest that predates it."""
        return Schema.from_dict(self.input_schema).without_target() if self.input_schema else None

    @property
    def input_dtypes(self) -> dict[str, str]:
        """The graph's input dtypes by name."""
        return {k: v.get("dtype") for k, v in (self.signature.get("inputs") or {}).items()}

    @property
    def output_names(self) -> list[str]:
        """The exported graph's output names."""
        return list(self.signature.get("outputs") or [])
