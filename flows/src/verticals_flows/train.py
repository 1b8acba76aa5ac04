"""The train flow: load → validate → split → fit → evaluate → export → verify → register, as tasks.

Each task calls the stage of the same name in :mod:`verticals.engine` (which also fires the lifecycle
hooks); the flow adds retries, persisted results and the artifacts a Prefect user reads.

Resuming: load, validate, split, fit and evaluate persist their results with the cache policy
``INPUTS + TASK_SOURCE``, keyed by a small *lineage* string instead of the frames they receive (see
:mod:`verticals_flows.caching`). Running the same flow again with the same data, options and code
reuses them (shown as ``Cached`` in the UI), so a run that failed while exporting or registering
starts again at the export, not at epoch 1. ``fresh=True`` (``--fresh``) recomputes everything.

Export, verify and register are not cached: they write the version's files into a fresh staging
folder of the model store which registering moves into place, so a cached result would point at a
folder that no longer exists. They are the cheap stages; each run that reaches them registers a new
version, as ``verticals train`` does.

Retries: loading (a file share, a plugin's download-free loader) and registering (filesystem) may fail
transiently and are retried; fitting once (a lost GPU). A :class:`verticals.errors.VerticalsError`
(bad data, a parity failure) is never retried: it would fail the same way.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from verticals_flows import artifacts, crashed
from verticals_flows.caching import source_key, then
from verticals_flows.config import FLOW_NAMES
from verticals_flows.retries import transient

# The heavy arguments are left out of the hash; ``key`` stands for them.
_CACHED = dict(persist_result=True, cache_policy=INPUTS + TASK_SOURCE - "loaded" - "validated" - "splits"
               - "fitted")


@task(name="load", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient, **_CACHED)
def load(pipeline: str, data: str | None, key: str) -> Any:
    """Read the training rows (the pipeline's dataset, or ``data``)."""
    from verticals import engine

    return engine.load_data(pipeline, data)


@task(name="validate", **_CACHED)
def validate(pipeline: str, key: str, loaded: Any) -> Any:
    """Validate rows against the dataset's schema; rejected rows are counted with reasons."""
    from verticals import engine

    return engine.validate_data(pipeline, loaded)


@task(name="split", **_CACHED)
def split(pipeline: str, key: str, validated: Any, seed: int | None) -> Any:
    """Split valid rows into train / validation / test by the dataset's strategy."""
    from verticals import engine

    return engine.split_data(pipeline, validated, seed)


@task(name="fit", retries=1, retry_delay_seconds=5, retry_condition_fn=transient, **_CACHED)
def fit(pipeline: str, key: str, splits: Any, epochs: int | None, seed: int | None, device: str | None,
        data: str | None) -> Any:
    """Fit the preprocessor and train the model (early stopping on the validation split)."""
    from verticals import engine

    return engine.fit(pipeline, splits, epochs=epochs, seed=seed, device=device, progress=False, data=data)


@task(name="evaluate", **_CACHED)
def evaluate(pipeline: str, key: str, splits: Any, fitted: Any, workdir: str) -> Any:
    """Predict every split, fit the pipeline's extras, compute metrics and the report sections."""
    from verticals import engine

    return engine.evaluate(pipeline, splits, fitted, workdir=Path(workdir))


@task(name="export")
def export(pipeline: str, fitted: Any, evaluation: Any, workdir: str, variants: list[str] | None) -> Any:
    """Export to ONNX, check it against PyTorch on held-out rows, build the accepted variants."""
    from verticals import engine

    return engine.export(pipeline, fitted, evaluation, Path(workdir),
                         variants=None if variants is None else tuple(variants))


@task(name="verify")
def verify(pipeline: str, exported: Any) -> dict[str, Any]:
    """Gate before registering: the parity check passed and every file to register loads in ONNX Runtime
    with the signature the manifest will record."""
    from verticals.errors import ParityError
    from verticals.ort import open_session

    parity = dict(exported.parity)
    if not parity.get("passed"):
        raise ParityError(f"{pipeline}: the export's parity check did not pass ({parity.get('max_abs_diff')})",
                          hint="see the export task's log")
    files = [exported.model_file] + [v["file"] for v in exported.variants.values()
                                     if v.get("accepted") and v.get("file")]
    expected = set(exported.signature.get("inputs", {}))
    for name in files:
        path = Path(exported.workdir) / name
        session = open_session(path)
        inputs = {i.name for i in session.get_inputs()}
        if inputs != expected:
            raise ParityError(f"{pipeline}: {path} takes inputs {sorted(inputs)}, the signature says "
                              f"{sorted(expected)}", hint="re-export the model (run with --fresh)")
    return {**{k: v for k, v in parity.items() if not isinstance(v, (dict, list))}, "files": files}


@task(name="register", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=transient)
def register(pipeline: str, validated: Any, splits: Any, fitted: Any, evaluation: Any, exported: Any,
             home: str | None) -> Any:
    """Write the report and manifest next to the model and register the version in the model store."""
    from verticals import engine

    return engine.register(pipeline, validated, splits, fitted, evaluation, exported, home=home)


@flow(name=FLOW_NAMES["train"], flow_run_name="train-{pipeline}", validate_parameters=True)
def train_flow(pipeline: str, data: str | None = None, epochs: int | None = None, seed: int | None = None,
               device: str | None = None, variants: list[str] | None = None, fresh: bool = False,
               home: str | None = None) -> dict[str, Any]:
    """Train ``pipeline`` and register the model, stage by stage, resuming from an earlier run's results.

    Args:
        pipeline: pipeline name, e.g. ``finance.credit_risk``.
        data: CSV/Parquet file with the dataset's columns (default: the pipeline's dataset).
        epochs, seed, device: override the pipeline's training defaults.
        variants: model variants to try (``["int8", "fp16"]``; default the engine's; ``[]`` for none).
        fresh: recompute every stage instead of reusing results of earlier runs.
        home: the model store's root (``$VERTICALS_HOME`` when not given).

    Returns:
        ``pipeline``, ``version``, ``path``, ``report``, ``metrics`` and ``parity``.
    """
    from verticals.errors import ParityError
    from verticals.registry import get_registry
    from verticals.store import ModelStore

    logger = get_run_logger()
    with crashed.guarded("train", logger):  # a run of this flow that died shows as Crashed
        name = get_registry().pipeline(pipeline).qualified_name
        store = ModelStore(home)
        options = {"refresh_cache": True} if fresh else {}

        key = source_key(name, data)
        loaded = load.with_options(**options)(name, data, key)
        key = then(key, loaded.fingerprint)
        validated = validate.with_options(**options)(name, key, loaded)
        del loaded
        logger.info("%s: %d rows, %d valid, %d rejected", validated.source, validated.rows_in,
                    validated.frame.height, validated.rows_rejected)
        key = then(key, "seed", seed)
        splits = split.with_options(**options)(name, key, validated, seed)
        key = then(key, "fit", epochs, seed, device)
        fitted = fit.with_options(**options)(name, key, splits, epochs, seed, device, data)
        # Report files of a cached evaluation must outlive the run that made them: a folder per lineage.
        evaluated_in = store.home / ".flows" / "train" / key
        evaluation = evaluate.with_options(**options)(name, key, splits, fitted, str(evaluated_in))
        staging = store.staging(name)
        try:
            exported = export(name, fitted, evaluation, str(staging), variants)
            parity = verify(name, exported)
            version = register(name, validated, splits, fitted, evaluation, exported, home)
        except ParityError:
            raise  # the staging folder keeps the failing model.onnx for inspection, as `verticals train` does
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        report = version.path / version.manifest.get("report", "report.html")
        artifacts.train_report(name, version, evaluation.metrics, report if report.is_file() else None, parity)
        logger.info("registered %s at %s", version.label, version.path)
        return {"pipeline": name, "version": version.version, "path": str(version.path),
                "report": str(report) if report.is_file() else None, "metrics": evaluation.metrics,
                "parity": parity, "rows": {"in": validated.rows_in, "rejected": validated.rows_rejected,
                                           **splits.sizes()}}
