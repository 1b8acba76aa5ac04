"""Stage evaluate: every split predicted batch by batch, extras and artifacts fitted, metrics and report sections."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import (
    DataValidationError,
    PluginError,
    VerticalsError,
)
from verticals.spec import Batch, ReportSection

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from verticals.data.splits import Splits

from verticals.engine.common import _eval_device, _json_ready, _lookup, _notify, _stage, _state_ready
from verticals.engine.data import _summarise_reasons
from verticals.engine.results import _PREDICT_BATCH, EXAMPLE_ROWS, PARITY_BYTES, PARITY_ROWS, Evaluation

if TYPE_CHECKING:  # pragma: no cover
    from verticals.engine.results import FitResult


def _parity_sample(examples: Any, rows: int, example_rows: int) -> Batch:
    """Up to ``rows`` test examples (at most :data:`PARITY_BYTES` of inputs), never ``example_rows``
    many, so the parity check runs at a batch size the export example did not fix."""
    picked: list[Batch] = []
    have, limit = 0, rows
    for batch in examples.batches(max(1, min(rows, 4096))):
        if not len(batch):
            continue
        row_bytes = sum(a.nbytes // max(1, a.shape[0]) for a in batch.inputs.values()) or 1
        limit = min(rows, max(3, PARITY_BYTES // row_bytes))
        picked.append(batch.take(slice(0, limit - have)))
        have += len(picked[-1])
        if have >= limit:
            break
    if not picked:
        raise DataValidationError(f"pipeline '{examples.name}': the test split produced no example",
                                  hint="provide more rows, or check the preprocessor's rejects")
    sample = Batch.concat(picked)
    n = len(sample)
    if n == example_rows:
        sample = sample.take(slice(0, n - 1)) if n > 2 else sample
    return sample


def _write_artifacts(raw: Mapping[str, Any], pipeline: str) -> dict[str, Any]:
    """Check ``Pipeline.artifacts``'s result: names that are file names, values of a storable kind."""
    import numpy as np
    import polars as pl

    from verticals.fsutil import safe_name

    if not isinstance(raw, Mapping):
        raise PluginError(f"pipeline '{pipeline}' artifacts returned {type(raw).__name__}",
                          hint="return a dict name -> numpy array, polars DataFrame, bytes or Path")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            safe_name(str(name), "artifact name")
        except ValueError as exc:
            raise PluginError(f"pipeline '{pipeline}': {exc}", hint="name artifacts with plain file names") from exc
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise PluginError(f"pipeline '{pipeline}': artifact '{name}' is an object array (would need pickle)",
                                  hint="store strings as a polars DataFrame, numbers as numeric arrays")
        elif not isinstance(value, (pl.DataFrame, bytes, Path)):
            raise PluginError(f"pipeline '{pipeline}': artifact '{name}' is a {type(value).__name__}",
                              hint="return a numpy array, polars DataFrame, bytes or Path")
        elif isinstance(value, Path) and not value.is_file():
            raise PluginError(f"pipeline '{pipeline}': artifact '{name}' file {value} does not exist",
                              hint="write the file before returning its path")
        out[str(name)] = value
    return out


def evaluate(pipeline: str, splits: Splits, fitted: FitResult, *, workdir: Path | None = None) -> Evaluation:
    """Predict every split, fit the pipeline's extras and artifacts on them, then compute metrics
    (``after_train``).

    Predictions run batch by batch (a split is never held as model inputs unless its preprocessor is
    materialized), in float32 on the training device, through the module that is exported (the model
    spec's ``scoring`` wrapper where there is one). ``fit_extras`` sees predictions made without
    extras; the final predictions and metrics are made with the extras and artifacts the model version
    will hold, so scoring reproduces them.

    Args:
        workdir: where the pipeline's report sections write their files (default: a new temporary
            folder); :func:`train` passes the version's staging folder.
    """
    with _stage(pipeline, "evaluate"):
        from verticals.data.examples import Examples
        from verticals.spec import ScoringContext
        from verticals.training import TrainContext, postprocess_checked, predict_examples, split_metrics

        pipe, dataset, spec = _lookup(pipeline)
        pre, graph, model = fitted.modules()
        scorer = spec.scoring(model).eval() if spec.scoring is not None else model
        device = _eval_device(fitted)
        workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="verticals-eval-"))
        workdir.mkdir(parents=True, exist_ok=True)
        from verticals.data.validation import apply_training_ranges

        # Values far outside the training range are clipped as scoring clips them (learned value rules).
        ranges = pre.training_ranges()
        chunk = pre.chunk_rows or pipe.training.batch_size
        examples = {name: Examples(pre, apply_training_ranges(frame, dataset.schema, ranges), name=name,
                                   chunk_rows=chunk) for name, frame in splits.items()}
        predicted = {name: predict_examples(pipe, scorer, graph, ex, device=device, batch_size=_PREDICT_BATCH,
                                            names=spec.exported_outputs)
                     for name, ex in examples.items()}
        batches = {name: (ex.batch() if ex.materialized else predicted[name].batch)
                   for name, ex in examples.items()}
        outputs = {name: p.outputs for name, p in predicted.items()}
        predictions = {name: p.predictions for name, p in predicted.items()}
        metrics = {name: split_metrics(pipe, predictions[name], batches[name]) for name in batches}
        context = TrainContext(
            pipeline=pipe, dataset=dataset, splits=splits, batches=batches, outputs=outputs,
            predictions=predictions, metrics=metrics, history=fitted.history, preprocessor=pre,
            workdir=workdir, model=model, graph_module=graph, crossfit=fitted.crossfit)
        try:
            raw_extras = pipe.fit_extras(context) or {}
        except VerticalsError:
            raise
        except Exception as exc:
            raise PluginError(f"pipeline '{pipe.qualified_name}' fit_extras failed: {type(exc).__name__}: {exc}",
                              hint="fix Pipeline.fit_extras") from exc
        if not isinstance(raw_extras, Mapping):
            raise PluginError(f"pipeline '{pipe.qualified_name}' fit_extras returned {type(raw_extras).__name__}",
                              hint="return a dict of JSON values")
        raw_extras = _json_ready(dict(raw_extras), "fit_extras result", pipe.qualified_name)
        # fit_extras may complete the preprocessor's scoring-time state (e.g. a recommender's known
        # histories, held-out rows included): the version stores the state as it is now.
        fitted.preprocessor_state = _state_ready(pre.state(), pipe.qualified_name)
        # The report sections see everything fit_extras returned (TrainContext.extras); the manifest's
        # extras leave the baselines' metrics out (they go to metrics.json).
        context.extras = dict(raw_extras)
        baselines = dict(raw_extras.pop("baseline_metrics", None) or {})
        extras = raw_extras
        try:
            artifacts = _write_artifacts(pipe.artifacts(context) or {}, pipe.qualified_name)
        except VerticalsError:
            raise
        except Exception as exc:
            raise PluginError(f"pipeline '{pipe.qualified_name}' artifacts failed: {type(exc).__name__}: {exc}",
                              hint="fix Pipeline.artifacts") from exc
        from verticals import artifacts as named

        artifacts = named.save(artifacts, workdir)
        scoring_context = ScoringContext(extras, named.load(workdir, artifacts))
        for name, batch in batches.items():
            if len(batch):
                predictions[name] = postprocess_checked(pipe, outputs[name], batch, scoring_context)
            metrics[name] = split_metrics(pipe, predictions[name], batch)
        context.predictions, context.metrics = predictions, metrics
        try:
            sections = list(pipe.report_sections(context) or [])
        except VerticalsError:
            raise
        except Exception as exc:
            raise PluginError(f"pipeline '{pipe.qualified_name}' report_sections failed: "
                              f"{type(exc).__name__}: {exc}", hint="fix Pipeline.report_sections") from exc
        bad = [s for s in sections if not isinstance(s, ReportSection)]
        if bad:
            raise PluginError(f"pipeline '{pipe.qualified_name}' report_sections returned "
                              f"{type(bad[0]).__name__}, not ReportSection", hint="return ReportSection objects")
        frames = {}
        for name, batch in batches.items():
            frame = _with_ids(batch.ids, predictions[name], dataset.schema) if len(batch) else predictions[name]
            if batch.target is not None and len(batch):
                import polars as pl

                frame = frame.with_columns(pl.Series("_target", batch.labels))
            if batch.aux is not None and len(batch):  # auxiliary data (failure mode, group) for reports
                frame = frame.hstack(batch.aux.select([c for c in batch.aux.columns if c not in frame.columns]))
            frames[name] = frame
        _notify("after_train", pipeline=pipe.qualified_name, metrics=metrics, history=fitted.history)
        test = examples["test"]
        example_rows = min(EXAMPLE_ROWS, examples["train"].rows)
        if test.materialized:
            test_batch = batches["test"]
        else:
            test_batch = _parity_sample(test, PARITY_ROWS, example_rows)
        example = _parity_sample(examples["train"], example_rows, -1).inputs
        rejected = {name: ex.rejects.height for name, ex in examples.items() if ex.rejects is not None}
        reasons = {name: _summarise_reasons(ex.rejects) for name, ex in examples.items()
                   if ex.rejects is not None and ex.rejects.height}
        skipped = {name: dict(ex.skipped) for name, ex in examples.items() if ex.skipped}
        return Evaluation(
            pipeline=pipe.qualified_name, metrics=metrics, extras=extras, baselines=baselines,
            predictions=frames, test_batch=test_batch, example=example, sections=sections, workdir=workdir,
            artifacts=artifacts, test_frame=None if test.materialized else splits.test,
            preprocessor_rejects=rejected, skipped=skipped, preprocessor_reasons=reasons)


def _with_ids(ids: pl.DataFrame, predictions: pl.DataFrame, schema: Any) -> pl.DataFrame:
    """Id columns (in their schema types, as scoring writes them) and prediction columns side by side."""
    import polars as pl

    from verticals.data.dtypes import id_dtype

    keep = [c for c in ids.columns if c not in predictions.columns]
    casts = [pl.col(c).cast(dt) if c in schema and (dt := id_dtype(schema[c].dtype)) is not None else pl.col(c)
             for c in keep]
    return pl.concat([ids.select(casts), predictions], how="horizontal")
