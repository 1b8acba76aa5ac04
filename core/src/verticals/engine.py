"""The train stages: load → validate → split → fit → evaluate → export (+ verify) → register (+ report).

Each stage is a function of plain, picklable dataclasses, so the Prefect train flow runs each as a
task and persists its result, and :func:`train` chains them in one process. Every stage

* looks the pipeline up in the registry by name (a worker process rebuilds the registry itself),
* fires the lifecycle hooks of :mod:`verticals.hookspecs` (``before_train`` … ``after_register``),
* on failure calls ``on_error`` with its stage name once, then lets the error propagate.

What the stages promise a user:

* **Nothing silently dropped.** Rejected training rows are counted and their reasons summarised in
  the report; if every row is rejected, training stops with the most common reason.
* **Scoring reproduces evaluation.** The evaluation predictions are made by the same path scoring
  takes (preprocessor transform → graph → ``postprocess`` with the manifest's ``extras``), in float32
  on the CPU, and the ONNX export is checked against PyTorch on held-out rows before registering.
* **A version is complete or absent.** Artifacts, report and manifest are written into a
  :meth:`~verticals.store.ModelStore.staging` folder and registered in one rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import (
    DataValidationError,
    NotFoundError,
    ParityError,
    PluginError,
    UserError,
    VerticalsError,
)
from verticals.fsutil import sha256_file
from verticals.jsonutil import plain_json
from verticals.spec import Batch, ReportSection

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

    from verticals.data.splits import Splits
    from verticals.spec import DatasetSpec, ModelSpec, Pipeline
    from verticals.store import ModelVersion

__all__ = [
    "Evaluation",
    "ExportResult",
    "FitResult",
    "LoadedData",
    "TrainResult",
    "ValidatedData",
    "evaluate",
    "export",
    "fit",
    "load_data",
    "register",
    "split_data",
    "train",
    "validate_data",
]

CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
EXAMPLE_ROWS = 64
"""Rows of the training split used as the export example (the parity sample has a different size)."""
PARITY_ROWS = 1000
"""Most test rows run through PyTorch and ONNX Runtime for the parity check."""
PARITY_BYTES = 256 << 20
"""...and at most this many bytes of inputs (image pipelines get fewer rows)."""
TOP_REASONS = 10
_PREDICT_BATCH = 65536


# -- stage results -----------------------------------------------------------------------------------------
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
    factory is called with the same ``info`` and ``model_options``), so the result pickles without
    the plugin's model classes.
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
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

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


# -- helpers -----------------------------------------------------------------------------------------------
def _lookup(pipeline: str) -> tuple[Pipeline, DatasetSpec, ModelSpec]:
    from verticals.registry import get_registry

    registry = get_registry()
    pipe = registry.pipeline(pipeline)
    return pipe, registry.dataset_of(pipe), registry.model_of(pipe)


def _notify(hook: str, **kwargs: Any) -> None:
    from verticals.registry import get_registry

    get_registry().notify(hook, **kwargs)


@contextlib.contextmanager
def _stage(pipeline: str, stage: str) -> Iterator[None]:
    """Call ``on_error(pipeline, stage, error)`` once for an error escaping ``stage``, then re-raise."""
    try:
        yield
    except Exception as exc:
        if not getattr(exc, "_verticals_stage", None):
            with contextlib.suppress(Exception):
                exc._verticals_stage = stage  # type: ignore[attr-defined]
            name = pipeline
            with contextlib.suppress(Exception):
                name = _lookup(pipeline)[0].qualified_name
            with contextlib.suppress(Exception):
                _notify("on_error", pipeline=name, stage=stage, error=exc)
        raise


def _frame_fingerprint(frame: pl.DataFrame) -> str:
    """sha256 of the column names, types and polars row hashes (stable within one polars version)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[n, str(t)] for n, t in frame.schema.items()]).encode())
    if frame.height:
        digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()


def _read_file(path: Path, csv: Any = None) -> pl.DataFrame:
    """A user's training file; one-line errors name the file and the fix (see :mod:`verticals.data.files`)."""
    import polars as pl

    from verticals.data.files import CsvOptions, read_csv, read_parquet

    name = path.name.lower()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.lower().endswith(PARQUET_SUFFIXES))
        if not files:
            raise NotFoundError(f"training data folder {path} holds no Parquet file",
                                hint="pass a .csv or .parquet file, or a folder of .parquet files")
        return pl.concat([read_parquet(f) for f in files], how="diagonal_relaxed")
    if name.endswith(PARQUET_SUFFIXES):
        return read_parquet(path)
    if name.endswith(CSV_SUFFIXES):
        # Every column as text: validation casts it and rejects unreadable values row by row, naming
        # them, instead of the reader failing on the first bad cell. Missing-value markers are
        # pyarrow's defaults ("", "NA", "NaN", "null", ...), the ones scoring's CSV reader uses, so a
        # row is treated alike in training and scoring.
        import pyarrow.csv as pacsv

        return read_csv(path, csv or CsvOptions(), list(pacsv.ConvertOptions().null_values))
    raise UserError(f"cannot read training data {path}: unknown file type",
                    hint=f"use one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")


_REASON_PATTERNS = (
    (re.compile(r"^(column '[^']*'): cannot read .* as (\w+)$", re.S), r"\1: cannot read as \2"),
    (re.compile(r"^(column '[^']*') = .* (is outside \[.*\])$", re.S), r"\1 \2"),
    (re.compile(r"^(column '[^']*' has unknown category) '.*'$", re.S), r"\1"),
    (re.compile(r"^(target '[^']*' has unexpected label) '.*' (\(expected .*\))$", re.S), r"\1 \2"),
)


def _reason_key(reason: str) -> str:
    """A rejection reason without the offending value, so equal causes are counted together."""
    for pattern, repl in _REASON_PATTERNS:
        if pattern.match(reason):
            return pattern.sub(repl, reason)
    return reason


def _summarise_reasons(rejects: pl.DataFrame, top: int = TOP_REASONS) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    if rejects.height and "_reason" in rejects.columns:
        for reason in rejects.get_column("_reason").to_list():
            for part in {_reason_key(p.strip()) for p in str(reason).split("; ") if p.strip()}:
                counts[part] += 1
    return counts.most_common(top)


def _git_commit(where: Path) -> str | None:
    """The commit of the git checkout ``where`` belongs to, or None outside one (or without git)."""
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def _json_ready(value: Any, what: str, pipeline: str) -> Any:
    """``value`` round-tripped through JSON (numpy scalars become floats), or a PluginError naming it."""
    try:
        return plain_json(value)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"pipeline '{pipeline}': {what} is not JSON ({exc})",
                          hint="return only dicts, lists, strings, numbers and booleans") from exc


def _slice_batch(batch: Batch, rows: int) -> dict[str, np.ndarray]:
    return {k: v[:rows] for k, v in batch.inputs.items()}


# -- stages ------------------------------------------------------------------------------------------------
def load_data(pipeline: str, data: Path | str | None = None, *, csv: Any = None) -> LoadedData:
    """Read the training rows: the pipeline's dataset, or a user's CSV/Parquet file with its columns.

    Raises:
        NotFoundError: ``data`` does not exist (the message names the path).
        PluginError: the dataset's loader failed.
    """
    with _stage(pipeline, "load"):
        import polars as pl

        pipe, dataset, _ = _lookup(pipeline)
        if data is not None:
            path = Path(data).expanduser()
            if not path.exists():
                raise NotFoundError(f"training data file {path} does not exist",
                                    hint=f"pass a CSV or Parquet file with the columns of dataset "
                                         f"{dataset.qualified_name} (`verticals datasets`)")
            frame = _read_file(path, csv)
            if path.is_dir():
                digest = hashlib.sha256()
                for f in sorted(p for p in path.iterdir() if p.name.lower().endswith(PARQUET_SUFFIXES)):
                    digest.update(f.name.encode())
                    sha256_file(f, digest)
                fingerprint = digest.hexdigest()
            else:
                fingerprint = sha256_file(path).hexdigest()
            return LoadedData(pipe.qualified_name, frame, str(path.resolve()), fingerprint)
        try:
            raw = dataset.loader()
            frame = raw.collect() if isinstance(raw, pl.LazyFrame) else raw
        except VerticalsError:
            raise
        except Exception as exc:
            raise PluginError(f"dataset '{dataset.qualified_name}' loader failed: {type(exc).__name__}: {exc}",
                              hint="fix the plugin's dataset loader, or pass --data FILE") from exc
        if not isinstance(frame, pl.DataFrame):
            raise PluginError(f"dataset '{dataset.qualified_name}' loader returned {type(frame).__name__}",
                              hint="return a polars LazyFrame or DataFrame")
        return LoadedData(pipe.qualified_name, frame, f"dataset {dataset.qualified_name}",
                          _frame_fingerprint(frame))


def validate_data(pipeline: str, loaded: LoadedData) -> ValidatedData:
    """Validate the rows at ``stage="train"``; count rejected rows and summarise why.

    Raises:
        DataValidationError: a required column is missing, or every row was rejected.
    """
    with _stage(pipeline, "validate"):
        from verticals.data.validation import validate

        _, dataset, _ = _lookup(pipeline)
        result = validate(loaded.frame, dataset.schema, stage="train", source=loaded.source)
        reasons = _summarise_reasons(result.rejects)
        if result.valid.height == 0:
            top = f"; most common reason: {reasons[0][0]} ({reasons[0][1]} rows)" if reasons else ""
            raise DataValidationError(
                f"{loaded.source}: all {result.rows_in} training rows were rejected{top}",
                hint=f"fix the data to match the schema of dataset {dataset.qualified_name} "
                     "(`verticals datasets --json` lists its columns and rules)")
        flagged = int((result.flags != "").sum()) if result.flags is not None else 0
        return ValidatedData(
            pipeline=loaded.pipeline, frame=result.valid, rejects=result.rejects, warnings=list(result.warnings),
            source=loaded.source, fingerprint=loaded.fingerprint, rows_in=result.rows_in,
            rows_flagged=flagged, reasons=reasons)


def split_data(pipeline: str, validated: ValidatedData, seed: int | None = None) -> Splits:
    """Split valid rows into train / validation / test by the dataset's strategy (seeded).

    Raises:
        DataValidationError: the training split would be empty.
    """
    with _stage(pipeline, "split"):
        from verticals.data.splits import Splits

        pipe, dataset, _ = _lookup(pipeline)
        seed = pipe.training.seed if seed is None else seed
        try:
            splits = pipe.split(validated.frame, dataset, seed)
        except VerticalsError:
            raise
        except Exception as exc:
            raise PluginError(f"pipeline '{pipe.qualified_name}' split failed: {type(exc).__name__}: {exc}",
                              hint="fix Pipeline.split") from exc
        if not isinstance(splits, Splits):
            raise PluginError(f"pipeline '{pipe.qualified_name}' split returned {type(splits).__name__}",
                              hint="return verticals.data.splits.Splits")
        sizes = splits.sizes()
        if sizes["train"] < 2 or sizes["test"] < 2:
            raise DataValidationError(
                f"{validated.source}: {validated.frame.height} valid rows split into {sizes}; training needs "
                "at least 2 rows in train and in test",
                hint="provide more rows")
        return splits


def fit(pipeline: str, splits: Splits, *, epochs: int | None = None, seed: int | None = None,
        device: str | None = None, progress: bool = True, data: str | None = None) -> FitResult:
    """Fit the preprocessor on the training split, build the model and train it (``before_train`` first).

    Args:
        epochs, seed, device: override the pipeline's :class:`~verticals.spec.TrainingConfig`.
        data: the training data's source, passed to ``before_train``.
    """
    with _stage(pipeline, "fit"):
        from verticals.data.examples import Examples, drop_context
        from verticals.training import cpu_threads, fit_model, seed_everything, select_device

        pipe, dataset, spec = _lookup(pipeline)
        config = pipe.training
        seed = config.seed if seed is None else int(seed)
        epochs = config.epochs if epochs is None else int(epochs)
        if epochs < 1:
            raise UserError(f"epochs must be at least 1, got {epochs}", hint="pass --epochs 1 or more")
        device = select_device(device)
        pre = pipe.preprocessor(dataset)
        pre.fit(drop_context(splits.train) if pre.rowwise else splits.train)
        chunk = pre.chunk_rows or config.batch_size
        train_batch = Examples(pre, splits.train, name="train", chunk_rows=chunk)
        valid_batch = Examples(pre, splits.valid, name="valid", chunk_rows=chunk)
        info = dict(pre.info())
        options = dict(pipe.model_options(dataset, info))
        seed_everything(seed)
        model = spec.factory(info, **options)
        graph = pre.graph_module()
        rows = splits.sizes()
        _notify("before_train", pipeline=pipe.qualified_name,
                config={"epochs": epochs, "seed": seed, "device": device, "data": data, "rows": rows})
        with cpu_threads(model, device):
            out = fit_model(pipe, model, graph, train_batch, valid_batch, epochs=epochs,
                            batch_size=config.batch_size, lr=config.learning_rate,
                            weight_decay=config.weight_decay, patience=config.patience, seed=seed, device=device,
                            class_weighting=config.class_weighting, progress=progress, output_names=spec.outputs,
                            model_spec=spec)
        trained = out.model.to("cpu").eval()
        weights = {k: v.detach().cpu().numpy().copy() for k, v in trained.state_dict().items()}
        result = FitResult(
            pipeline=pipe.qualified_name, preprocessor_state=_json_ready(pre.state(), "preprocessor state",
                                                                         pipe.qualified_name),
            info=info, model_options=options, weights=weights, history=[dict(h) for h in out.history],
            best_epoch=int(out.best_epoch), epochs=epochs, seed=seed, device=out.device,
            seconds=float(out.seconds), stopped_early=bool(out.stopped_early), rows=rows)
        if graph is not None:
            graph.to("cpu").eval()
        result._cache["modules"] = (pre, graph, trained)
        return result


def _eval_device(fitted: FitResult) -> str:
    """The training device where it still exists here (a result made on a GPU machine is evaluated on
    the CPU of one without)."""
    import torch

    return fitted.device if fitted.device.startswith("cuda") and torch.cuda.is_available() else "cpu"


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
        chunk = pre.chunk_rows or pipe.training.batch_size
        examples = {name: Examples(pre, frame, name=name, chunk_rows=chunk) for name, frame in splits.items()}
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
            workdir=workdir, model=model, graph_module=graph)
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
        baselines = dict(raw_extras.pop("baseline_metrics", None) or {})
        extras = raw_extras
        context.extras = dict(extras)
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

                frame = frame.with_columns(pl.Series("_target", batch.target))
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


def _onnx_outputs(session: Any, inputs: Mapping[str, np.ndarray], batch_size: int = _PREDICT_BATCH
                  ) -> dict[str, np.ndarray]:
    import numpy as np

    names = [o.name for o in session.get_outputs()]
    feeds_names = [i.name for i in session.get_inputs()]
    n = next(iter(inputs.values())).shape[0] if inputs else 0
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, max(n, 1), batch_size):
        feeds = {k: np.ascontiguousarray(inputs[k][start:start + batch_size]) for k in feeds_names}
        for i, out in enumerate(session.run(None, feeds)):
            parts[i].append(out)
    return {name: np.concatenate(chunks) for name, chunks in zip(names, parts, strict=True)}


def _primary_metric_via_onnx(pipe: Pipeline, evaluation: Evaluation, path: Path,
                             providers: list[str] | tuple[str, ...], fitted: FitResult | None = None
                             ) -> tuple[float, str]:
    """The pipeline's primary metric on the test split, computed through the ONNX file ``path``
    (batch by batch from ``evaluation.test_frame`` for a streamed preprocessor)."""
    import polars as pl

    from verticals import artifacts as named
    from verticals.ort import open_session
    from verticals.spec import ScoringContext
    from verticals.training import postprocess_checked, split_metrics

    session = open_session(path, providers)
    context = ScoringContext(evaluation.extras, named.load(Path(evaluation.workdir), evaluation.artifacts))
    if evaluation.test_frame is None or fitted is None:
        stream = [evaluation.test_batch]
    else:
        from verticals.data.examples import Examples

        pre = fitted.modules()[0]
        stream = Examples(pre, evaluation.test_frame, name="test",
                          chunk_rows=pre.chunk_rows or pipe.training.batch_size).batches(_PREDICT_BATCH)
    preds, lights = [], []
    for batch in stream:
        if not len(batch):
            continue
        outputs = _onnx_outputs(session, batch.inputs)
        preds.append(postprocess_checked(pipe, outputs, batch, context))
        lights.append(batch.light())
    metrics = split_metrics(pipe, pl.concat(preds, how="vertical_relaxed"), Batch.concat(lights))
    return float(metrics[pipe.primary_metric]), session.get_providers()[0]


def export(pipeline: str, fitted: FitResult, evaluation: Evaluation, workdir: Path, *,
           variants: tuple[str, ...] | None = None) -> ExportResult:
    """Export to ``workdir/model.onnx``, check parity on held-out rows (stage ``verify``), make variants.

    Args:
        variants: variant kinds to try (default :data:`verticals.export.VARIANTS`; ``()`` for none).

    Raises:
        ParityError: ONNX Runtime's outputs differ from PyTorch's by more than the tolerance.
    """
    from verticals import export as ex

    started = time.perf_counter()
    with _stage(pipeline, "export"):
        pipe, _, spec = _lookup(pipeline)
        pre, graph, model = fitted.modules()
        signature = pre.signature()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        scorer = spec.scoring(model).eval() if spec.scoring is not None else model
        path = ex.export_onnx(graph, scorer, signature, tuple(spec.exported_outputs), evaluation.example,
                              workdir / "model.onnx", opset=ex.OPSET)
        exporter = ex.onnx_exporter(path)
    with _stage(pipeline, "verify"):
        test = evaluation.test_batch
        row_bytes = sum(a.nbytes // max(1, a.shape[0]) for a in test.inputs.values()) or 1
        rows = min(PARITY_ROWS, len(test), max(3, PARITY_BYTES // row_bytes))
        if rows == len(next(iter(evaluation.example.values()))):
            rows = rows - 1 if rows > 2 else rows + 1
        rows = max(1, min(rows, len(test)))
        parity = ex.check_parity(path, ex.compose(graph, scorer, list(signature)), _slice_batch(test, rows),
                                 kinds=dict(spec.parity))
        parity.update(exporter=exporter, opset=ex.OPSET)
        if not parity["passed"]:
            worst = max(parity["outputs"].items(), key=lambda kv: kv[1]["max_abs_diff"] - kv[1]["limit"])[0] \
                if parity["outputs"] else "?"
            raise ParityError(
                f"{pipe.qualified_name}: ONNX Runtime differs from PyTorch by {parity['max_abs_diff']:.3g} on "
                f"output '{worst}' over {parity['rows']} test rows (tolerance {parity['tolerance']:g}); "
                f"model kept at {path} for inspection",
                hint="look for ops that export differently (in-place updates, data-dependent control flow, "
                     "train-mode layers) in the model's forward")
        _notify("after_export", pipeline=pipe.qualified_name, path=path, parity=parity)
    with _stage(pipeline, "export"):
        kinds = ex.VARIANTS if variants is None else tuple(variants)
        made: dict[str, dict[str, Any]] = {}
        if kinds:
            reference, _ = _primary_metric_via_onnx(pipe, evaluation, path, ["CPUExecutionProvider"], fitted)
            made = ex.build_variants(
                path, lambda p, providers: _primary_metric_via_onnx(pipe, evaluation, p, list(providers), fitted),
                reference, kinds=kinds, metric_name=pipe.primary_metric)
            for record in made.values():
                record["reference"] = reference
        return ExportResult(
            pipeline=pipe.qualified_name, workdir=workdir, model_file=path.name,
            signature={"inputs": {k: v.to_dict() for k, v in signature.items()},
                       "outputs": list(spec.exported_outputs)},
            parity=parity, variants=made, exporter=exporter, opset=ex.OPSET,
            seconds=round(time.perf_counter() - started, 3))


def _report_context(pipe: Pipeline, validated: ValidatedData, splits: Splits, fitted: FitResult,
                    evaluation: Evaluation, exported: ExportResult, created_at: str) -> Any:
    from verticals import __version__
    from verticals.report import ReportContext

    split_info = {}
    for name, frame in evaluation.predictions.items():
        info: dict[str, Any] = {"rows": frame.height}
        if pipe.task == "binary" and "_target" in frame.columns and frame.height:
            info["positive_rate"] = float((frame.get_column("_target") > 0.5).mean())  # binary: above 0.5 is positive
        split_info[name] = info
    test = evaluation.predictions.get("test")
    scores = None
    if test is not None and "_target" in test.columns and pipe.score_column in test.columns:
        scores = (test.get_column("_target").to_numpy(), test.get_column(pipe.score_column).to_numpy())
    return ReportContext(
        pipeline=pipe.qualified_name, description=pipe.description, task=pipe.task,
        primary_metric=pipe.primary_metric, greater_is_better=pipe.greater_is_better, created_at=created_at,
        metrics=evaluation.metrics, baselines=evaluation.baselines, history=fitted.history,
        best_epoch=fitted.best_epoch, parity=exported.parity, variants=exported.variants,
        data={"source": validated.source, "fingerprint": validated.fingerprint, "rows_in": validated.rows_in,
              "rows_valid": validated.frame.height, "rows_rejected": validated.rows_rejected,
              "rows_flagged": validated.rows_flagged, "reasons": [list(r) for r in validated.reasons],
              "splits": split_info,
              "preprocessor_reasons": [[split, reason, count] for split, found in
                                       evaluation.preprocessor_reasons.items() for reason, count in found]},
        run={"device": fitted.device, "epochs (max)": fitted.epochs, "epochs run": len(fitted.history),
             "kept epoch": fitted.best_epoch, "stopped early": fitted.stopped_early, "seed": fitted.seed,
             "training time": f"{fitted.seconds:.1f} s", "split strategy": splits.strategy,
             "verticals": __version__},
        test_scores=scores)


def register(pipeline: str, validated: ValidatedData, splits: Splits, fitted: FitResult,
             evaluation: Evaluation, exported: ExportResult, *, home: Path | str | None = None) -> ModelVersion:
    """Write the report, metrics.json and the manifest next to the model, then register the folder.

    The folder is ``exported.workdir`` (a :meth:`~verticals.store.ModelStore.staging` folder is moved
    into place; any other folder is copied). Fires ``after_register``.
    """
    with _stage(pipeline, "register"):
        import shutil

        from verticals import __version__
        from verticals.drift import profile
        from verticals.manifest import ModelManifest
        from verticals.registry import get_registry
        from verticals.report import write_report
        from verticals.store import ModelStore

        pipe, dataset, spec = _lookup(pipeline)
        name = pipe.qualified_name
        workdir = Path(exported.workdir)
        created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        # Files the pipeline's report sections wrote elsewhere come along into the version folder.
        if Path(evaluation.workdir).resolve() != workdir.resolve() and Path(evaluation.workdir).is_dir():
            for section in evaluation.sections:
                fixed = []
                for image in section.images:
                    src = Path(image) if Path(image).is_absolute() else Path(evaluation.workdir) / image
                    if src.is_file():
                        dst = workdir / "figures" / src.name
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(src, dst)
                        fixed.append(f"figures/{src.name}")
                    else:
                        fixed.append(str(image))
                section.images = fixed
        source_artifacts = Path(evaluation.workdir) / "artifacts"
        if evaluation.artifacts and source_artifacts.resolve() != (workdir / "artifacts").resolve():
            shutil.copytree(source_artifacts, workdir / "artifacts", dirs_exist_ok=True)
        context = _report_context(pipe, validated, splits, fitted, evaluation, exported, created_at)
        report_path = write_report(workdir, context, evaluation.sections)

        train_pred = evaluation.predictions["train"]
        train_scores = train_pred.get_column(pipe.score_column).to_numpy() \
            if pipe.score_column in train_pred.columns and train_pred.schema[pipe.score_column].is_numeric() else None
        # Scalar scores get a PSI profile; list outputs (top-k items) their slot shares and coverage.
        declared = [c.name for c in pipe.output_columns if c.name in train_pred.columns]
        reference = profile(splits.train, dataset.schema, train_scores, outputs=train_pred.select(declared))
        info = get_registry().plugin_info(pipe.plugin)
        manifest = ModelManifest(
            created_at=created_at,
            plugin={"name": pipe.plugin, "distribution": info.distribution if info else None,
                    "version": info.version if info else None},
            code_version={"verticals": __version__, "git": _git_commit(Path(__file__).resolve().parent)},
            task=pipe.task,
            dataset=dataset.qualified_name,
            model=spec.qualified_name,
            score_column=pipe.score_column,
            primary_metric=pipe.primary_metric,
            greater_is_better=pipe.greater_is_better,
            output_columns=[{"name": c.name, "dtype": c.dtype, "description": c.description}
                            for c in pipe.output_columns],
            input_schema=dataset.schema.without_target().to_dict(),
            preprocessor=fitted.preprocessor_state,
            model_file=exported.model_file,
            signature=exported.signature,
            metrics=evaluation.metrics,
            parity=exported.parity,
            variants=exported.variants,
            training_data={"source": validated.source, "rows": validated.rows_in,
                           "rows_valid": validated.frame.height, "rows_rejected": validated.rows_rejected,
                           "fingerprint": validated.fingerprint, "splits": splits.sizes(),
                           "preprocessor_rejects": evaluation.preprocessor_rejects,
                           "preprocessor_reasons": {k: [list(r) for r in v]
                                                    for k, v in evaluation.preprocessor_reasons.items()},
                           "no_example": evaluation.skipped,
                           "split_strategy": splits.strategy, "seed": splits.seed},
            training={"epochs": fitted.epochs, "epochs_run": len(fitted.history),
                      "best_epoch": fitted.best_epoch, "stopped_early": fitted.stopped_early,
                      "seed": fitted.seed, "device": fitted.device, "seconds": round(fitted.seconds, 3),
                      "history": fitted.history, "model_options": fitted.model_options},
            reference=reference,
            extras=evaluation.extras,
            named_artifacts=evaluation.artifacts,
            report=report_path.name,
        )
        manifest = _json_ready(manifest.to_dict(), "manifest", name)
        version = ModelStore(home).register(name, workdir, manifest)
        _notify("after_register", pipeline=name, version=version.version, path=version.path,
                manifest=version.manifest)
        return version


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
