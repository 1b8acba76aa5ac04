"""Stage results: plain, picklable dataclasses the Prefect train flow persists between tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.spec import Batch, ReportSection

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl


from verticals.engine.common import _lookup

EXAMPLE_ROWS = 64
"""Rows of the training split used as the export example (the parity sample has a different size)."""


PARITY_ROWS = 1000
"""Most test rows run through PyTorch and ONNX Runtime for the parity check."""


PARITY_BYTES = 256 << 20
"""...and at most this many bytes of inputs (image pipelines get fewer rows)."""


TOP_REASONS = 10


_PREDICT_BATCH = 65536


@dataclass
class LoadedData:
    """Raw training rows and where they came from.

    Attributes:
        pipeline: qualified pipeline name.
        frame: the rows as read (CSV columns as strings; validation casts them).
        source: the file path, or ``dataset <name>`` for the dataset's own loader.
        fingerprint: sha256 of the file's bytes, or of the frame's row hashes for a loader.
    """

    pipeline: str
    frame: pl.DataFrame
    source: str
    fingerprint: str


@dataclass
class ValidatedData:
    """Valid training rows (cast to the schema) and what was rejected, with reasons."""

    pipeline: str
    frame: pl.DataFrame
    rejects: pl.DataFrame
    warnings: list[str]
    source: str
    fingerprint: str
    rows_in: int
    rows_flagged: int
    reasons: list[tuple[str, int]]

    @property
    def rows_rejected(self) -> int:
        return self.rejects.height


@dataclass
class FitResult:
    """A trained model as plain data: weights as numpy arrays, the preprocessor as its JSON state.

    :meth:`modules` rebuilds the preprocessor, the in-graph module and the model from them (the model
    factory is called with the same ``info`` and ``model_options``, once per member of an averaged
    model), so the result pickles without the plugin's model classes.
    """

    pipeline: str
    preprocessor_state: dict[str, Any]
    info: dict[str, Any]
    model_options: dict[str, Any]
    weights: dict[str, np.ndarray]
    history: list[dict[str, float]]
    best_epoch: int
    epochs: int
    seed: int
    device: str
    seconds: float
    stopped_early: bool = False
    rows: dict[str, int] = field(default_factory=dict)
    crossfit: Any = None  # verticals.crossfit.CrossFit on small data
    #: 0 for one model; K when the model is the average of K fold models (``crossfit_final="bag"``):
    #: ``weights`` then hold ``members.<k>.<name>`` of a :class:`verticals.ensemble.AveragedModel`.
    members: int = 0
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ensemble(self) -> int:
        """How many models of consecutive seeds the model averages (``TrainingConfig.ensemble``); 1 for one
        model or a cross-fitted run (its fold models are described by ``crossfit``)."""
        return self.members if self.crossfit is None and self.members > 1 else 1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def modules(self) -> tuple[Any, Any, Any]:
        """``(preprocessor, graph_module, model)``, rebuilt once and cached (model on CPU, eval mode)."""
        if "modules" not in self._cache:
            import torch

            pipe, dataset, spec = _lookup(self.pipeline)
            pre = pipe.preprocessor(dataset)
            pre.load_state(self.preprocessor_state)
            if self.members:
                from verticals.ensemble import AveragedModel

                model = AveragedModel([spec.factory(self.info, **self.model_options) for _ in range(self.members)])
            else:
                model = spec.factory(self.info, **self.model_options)
            model.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights.items()})
            model.to("cpu").eval()
            graph = pre.graph_module()
            if graph is not None:
                graph.to("cpu").eval()
            self._cache["modules"] = (pre, graph, model)
        return self._cache["modules"]


@dataclass
class Evaluation:
    """Predictions and metrics of each split, the pipeline's extras and its report sections.

    Attributes:
        metrics: ``{"train", "valid", "test"}`` → metric → value (after ``fit_extras``).
        extras: what ``fit_extras`` returned, minus ``baseline_metrics`` (goes to the manifest and to
            ``postprocess``, here and at scoring time).
        baselines: ``fit_extras``'s ``baseline_metrics`` (model → metric → value), if any.
        predictions: split → id columns + output columns (+ ``_target``).
        test_batch: the test split as the model sees it (for parity and variant checks); for a streamed
            preprocessor only a sample of it (parity), the variant check then streams ``test_frame``.
        example: a few training rows' inputs (the export example).
        artifacts: the named artifacts ``Pipeline.artifacts`` returned, as written under ``workdir``
            (manifest entries, see :mod:`verticals.artifacts`).
        test_frame: the test split's rows, kept for streamed preprocessors.
        preprocessor_rejects: split → rows the preprocessor rejected; preprocessor_reasons: split → the
            most common reasons, with counts (an undecodable file's reason names the file);
            skipped: split → reason → rows that produced no example.
        sections: the pipeline's report sections (images inside ``workdir``).
        workdir: where the pipeline wrote its report files.
    """

    pipeline: str
    metrics: dict[str, dict[str, float]]
    extras: dict[str, Any]
    baselines: dict[str, Any]
    predictions: dict[str, pl.DataFrame]
    test_batch: Batch
    example: dict[str, np.ndarray]
    sections: list[ReportSection]
    workdir: Path
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)
    test_frame: pl.DataFrame | None = None
    preprocessor_rejects: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    preprocessor_reasons: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


@dataclass
class ExportResult:
    """The exported ONNX model in ``workdir``, its parity check and the variants kept."""

    pipeline: str
    workdir: Path
    model_file: str
    signature: dict[str, Any]
    parity: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    exporter: str
    opset: int
    seconds: float


@dataclass
class TrainResult:
    """What :func:`train` returns: the registered version, its metrics, report and manifest."""

    version: int
    metrics: dict[str, dict[str, float]]
    report_path: Path
    manifest: dict[str, Any]
    path: Path | None = None
