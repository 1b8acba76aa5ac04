"""All stages in one process: :func:`train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verticals.engine.common import _lookup, _stage
from verticals.engine.data import load_data, split_data, validate_data
from verticals.engine.evaluation import evaluate
from verticals.engine.exporting import export
from verticals.engine.fitting import fit
from verticals.engine.registration import register
from verticals.engine.results import TrainResult
from verticals.errors import ParityError


def train(pipeline: str, *, data: Path | str | None = None, epochs: int | None = None, seed: int | None = None,
          device: str | None = None, home: Path | str | None = None, progress: bool = True,
          variants: tuple[str, ...] | None = None, csv: Any = None) -> TrainResult:
    """Run every stage: load → validate → split → fit → evaluate → export → verify → register.

    Args:
        pipeline: pipeline name (qualified, or unique local name, or alias).
        data: a CSV/Parquet file with the dataset's columns; default: the dataset's loader.
        epochs, seed, device: override the pipeline's training defaults (``device``: auto/cpu/cuda[:N]).
        home: model store root (default ``$VERTICALS_HOME`` or the per-user data folder).
        progress: show a progress bar (on a terminal).
        variants: model variants to try (default int8 and fp16; ``()`` for none).
        csv: :class:`~verticals.data.files.CsvOptions` (encoding, separator) for a CSV ``data`` file.

    Returns:
        :class:`TrainResult` with the new version number, metrics, report path and manifest.
    """
    import shutil

    from verticals.store import ModelStore

    name = pipeline
    with _stage(pipeline, "load"):
        name = _lookup(pipeline)[0].qualified_name
    seed = _lookup(pipeline)[0].training.seed if seed is None else seed
    loaded = load_data(name, data, csv=csv)
    validated = validate_data(name, loaded)
    del loaded
    splits = split_data(name, validated, seed)
    fitted = fit(name, splits, epochs=epochs, seed=seed, device=device, progress=progress,
                 data=str(data) if data is not None else None)
    with _stage(name, "register"):
        staging = ModelStore(home).staging(name)
    try:
        evaluation = evaluate(name, splits, fitted, workdir=staging)
        exported = export(name, fitted, evaluation, staging, variants=variants)
        version = register(name, validated, splits, fitted, evaluation, exported, home=home)
    except ParityError:
        raise  # the staging folder keeps the failing model.onnx for inspection (clean_staging removes it)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TrainResult(version=version.version, metrics=evaluation.metrics,
                       report_path=version.path / "report.html", manifest=version.manifest, path=version.path)
