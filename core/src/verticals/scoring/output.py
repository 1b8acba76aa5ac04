"""The output folder: part files written atomically, per-partition records, rejects, manifest, rename.

Layout while a run is in progress (``staging_dir(output)``, next to the output so the last step is a
rename on one filesystem)::

    <parent>/.<name>.partial/
        part-00000.parquet ...             finished parts (temp file + os.replace, never half-written)
        _state/run.json                    what the parts were scored with (model, variant, input)
        _state/part-00000.json             committed marker: the partition's PartResult
        _state/part-00000.rejects.parquet  its rejected rows

:func:`finalize` merges the rejects into ``_rejects.parquet``, writes ``_manifest.json``, drops
``_state`` and renames the folder to ``<output>``. Until that rename nothing exists at ``<output>``, so
an interrupted run never leaves output that looks complete; rerunning reuses the committed parts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import FileSystemError, PluginError, UserError, VerticalsError
from verticals.fsutil import fsync_dir as _fsync_dir
from verticals.fsutil import write_json_atomic
from verticals.jsonutil import plain_json

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from verticals.scoring.partitions import Partition
    from verticals.scoring.session import ScoringSession

__all__ = ["MANIFEST", "NO_OUTPUT", "NO_OUTPUT_LISTED", "REJECTS", "PartResult", "finalize", "prepare_staging",
           "staging_dir"]

MANIFEST = "_manifest.json"
REJECTS = "_rejects.parquet"
#: Every reason a valid row made no output row, with its row count (``reason``, ``rows``; most rows first).
NO_OUTPUT = "_no_output.parquet"
#: Reasons listed in the manifest's ``no_output_reasons`` (most rows first); all of them are in ``NO_OUTPUT``.
#: A reason can name a group (a machine with too few readings), so their number grows with the data.
NO_OUTPUT_LISTED = 20
STATE = "_state"
REJECT_TAIL = ("_row", "_source", "_reason")


@dataclass
class PartResult:
    """What scoring one partition produced; recorded next to its part file so reruns can skip it.

    ``rows_in == rows_scored + rows_rejected``; ``rows_out`` counts output rows (examples), which differs
    from ``rows_scored`` only for pipelines that group rows (sessions, windows).
    """

    index: int
    partition: str
    fingerprint: str
    source: str
    file: str
    rows_in: int
    rows_scored: int
    rows_rejected: int
    rows_out: int
    rejects_file: str | None
    seconds: float
    run_key: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    reused: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    no_output: dict[str, int] = field(default_factory=dict)
    """Valid input rows that produced no output row, by reason (a machine with fewer readings than a
    window); only grouping pipelines have them."""
    side: str | None = None
    """The part's folder of side outputs (per-example files), relative to the output folder."""

    @property
    def rows_no_output(self) -> int:
        return sum(self.no_output.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def staging_dir(output: Path | str) -> Path:
    """``<parent>/.<name>.partial``: deterministic, so a rerun (or another flow task) finds it."""
    output = Path(output).expanduser().absolute()
    return output.parent / f".{output.name}.partial"


def committed_parts(staging: Path) -> int:
    """How many partitions a staging folder holds committed results for (what a re-run resumes)."""
    return len(list((Path(staging) / STATE).glob("part-*.json")))


def abandon(session: ScoringSession, staging: Path | None, error: BaseException) -> None:
    """A scoring run failed: drop a staging folder nothing can resume from, and fire ``on_error``.

    A staging folder with committed partitions is kept, so the next run with the same input and
    output resumes from it (``verticals score`` and the Prefect score flow alike).
    """
    if staging is not None and committed_parts(staging) == 0:
        shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(Exception):
        from verticals.registry import get_registry

        get_registry().notify("on_error", pipeline=session.name, stage="score", error=error)


def prepare_staging(session: ScoringSession, partitions: Sequence[Partition], output: Path | str, *,
                    overwrite: bool = False) -> Path:
    """Create (or reuse) the staging folder of ``output`` for this model and input.

    Parts recorded by an earlier, interrupted run with the same model files, variant and input are kept
    (so a rerun resumes); anything else found there is cleared.

    Raises:
        UserError: ``output`` exists and ``overwrite`` is false, or it is not a folder.
    """
    output = Path(output).expanduser().absolute()
    check_output(output, overwrite=overwrite)
    staging = staging_dir(output)
    key = {**session.run_key, "partitions": [[p.key, p.fingerprint] for p in partitions]}
    run_file = staging / STATE / "run.json"
    try:
        if staging.exists():
            try:
                previous = json.loads(run_file.read_text())
            except (OSError, ValueError):
                previous = None
            if previous != plain_json(key):
                shutil.rmtree(staging)
        (staging / STATE).mkdir(parents=True, exist_ok=True)
        if not run_file.exists():
            write_json_atomic(run_file, key)
    except OSError as exc:
        raise cannot_write(output, exc) from None
    return staging


def check_output(output: Path, *, overwrite: bool) -> None:
    """Refuse an existing output unless ``overwrite``; refuse a file where the folder should go.

    Also checks, by creating and removing a folder next to it, that the output can be written there
    (a read-only or immutable folder, /proc, a full disk fail here, naming the output folder).
    """
    if output.exists() or output.is_symlink():
        if not overwrite:
            raise UserError(f"output {output} already exists", hint="choose a new folder or pass --overwrite")
        if not output.is_dir():
            raise UserError(f"output {output} exists and is not a folder", hint="remove it or choose another path")
    # Probe the nearest existing folder on the way to the output: creates nothing that stays behind.
    base = output.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    probe = base / f".{output.name}.probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        import errno

        if exc.errno == errno.ENOENT and base.is_dir():  # /proc, /sys: the folder exists, takes no new ones
            raise FileSystemError(f"cannot write the output folder {output}: {base} does not accept new folders "
                                  "(a virtual file system)", hint="choose a folder on a disk (--output)") from None
        raise cannot_write(output, exc) from None


def cannot_write(output: Path, exc: OSError) -> FileSystemError:
    """The one-line error for an output folder that cannot be written (never naming the staging folder)."""
    from verticals.errors import os_error

    _, fix = os_error(exc)
    reason = (exc.strerror or str(exc)).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    return FileSystemError(f"cannot write the output folder {output}: {reason}", hint=f"{fix} (--output)")


# -- part files ---------------------------------------------------------------------------------------
class AtomicParquet:
    """A Parquet file written batch by batch into a temp file and moved into place by :meth:`commit`."""

    def __init__(self, path: Path, empty_schema: Any = None) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.empty_schema = empty_schema
        self.writer: Any = None
        self.rows = 0

    def write(self, frame: pl.DataFrame | Any) -> None:
        """Append a polars frame or an arrow table (cast to the first one's schema)."""

        table = frame.to_arrow() if hasattr(frame, "to_arrow") else frame
        if self.writer is None:
            self.writer = _writer(self.tmp, table.schema)
        elif table.schema != self.writer.schema:
            table = table.cast(self.writer.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> bool:
        """Close and move into place; returns False (and writes nothing) if empty without a schema."""
        import pyarrow as pa

        if self.writer is None:
            if self.empty_schema is None:
                return False
            self.writer = _writer(self.tmp, self.empty_schema)
            self.writer.write_table(pa.Table.from_pylist([], schema=self.empty_schema))
        self.writer.close()
        self.writer = None
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        return True

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        with contextlib.suppress(OSError):
            self.tmp.unlink()


CONSTANT_COLUMNS = ("model_version",)
"""Columns with one value per part file: dictionary-encoded (one value and run lengths), so writing one
costs next to nothing (PLAIN, an Int64 per row: 0.024 µs of the 0.08 µs per row of a part's write)."""


def _writer(path: Path, schema: Any) -> Any:
    """A Parquet writer that dictionary-encodes only text columns and :data:`CONSTANT_COLUMNS`.

    pyarrow tries a dictionary for every column by default and gives up only after a page of unique
    ids or scores: writing a part that way took 3x longer (17 ms vs 5 ms per 65k rows, measured).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    def texty(t: Any) -> bool:
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return texty(t.value_type)
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)

    return pq.ParquetWriter(path, schema, use_dictionary=[f.name for f in schema if texty(f.type)
                                                         or f.name in CONSTANT_COLUMNS] or False)


def marker_path(staging: Path, partition: Partition) -> Path:
    return staging / STATE / f"{partition.name}.json"


def recorded_result(session: ScoringSession, partition: Partition, staging: Path) -> PartResult | None:
    """The committed result of ``partition`` in ``staging``, if it was scored with this model and input."""
    try:
        data = json.loads(marker_path(staging, partition).read_text())
    except (OSError, ValueError):
        return None
    result = PartResult.from_dict(data)
    same = (result.partition == partition.key and result.fingerprint == partition.fingerprint
            and result.run_key == plain_json(session.run_key))
    if not same or not (staging / result.file).is_file():
        return None
    if result.rejects_file and not (staging / STATE / result.rejects_file).is_file():
        return None
    result.reused = True
    return result


def record_result(staging: Path, partition: Partition, result: PartResult) -> None:
    write_json_atomic(marker_path(staging, partition), result.to_dict())


# -- finishing ------------------------------------------------------------------------------------------
def _merge_rejects(staging: Path, results: Sequence[PartResult], columns: Sequence[str]) -> int:
    """Stream every partition's rejects into ``_rejects.parquet`` (one schema: all input columns as text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [staging / STATE / r.rejects_file for r in results if r.rejects_file]
    names: list[str] = []
    for f in files:
        for name in pq.read_schema(f).names:
            if name not in names and name not in REJECT_TAIL:
                names.append(name)
    if not files:
        names = list(columns)
    schema = pa.schema([(n, pa.string()) for n in names] + [("_row", pa.int64()), ("_source", pa.string()),
                                                              ("_reason", pa.string())])
    target = AtomicParquet(staging / REJECTS, schema)
    rows = 0
    try:
        for f in files:
            pf = pq.ParquetFile(f)
            for rb in pf.iter_batches(batch_size=65536):
                cols = []
                for fld in schema:
                    if fld.name in rb.schema.names:
                        cols.append(rb.column(fld.name).cast(fld.type))
                    else:
                        cols.append(pa.nulls(rb.num_rows, fld.type))
                target.write(pa.Table.from_arrays(cols, schema=schema))
                rows += rb.num_rows
        target.commit()
    except BaseException:
        target.abort()
        raise
    return rows


def _write_no_output(staging: Path, reasons: dict[str, int]) -> None:
    """``_no_output.parquet``: every no-output reason and its rows (none: no file, an old one removed)."""
    import pyarrow as pa

    path = staging / NO_OUTPUT
    if not reasons:
        path.unlink(missing_ok=True)
        return
    schema = pa.schema([("reason", pa.string()), ("rows", pa.int64())])
    target = AtomicParquet(path, schema)
    try:
        target.write(pa.Table.from_arrays([pa.array(list(reasons), pa.string()),
                                           pa.array(list(reasons.values()), pa.int64())], schema=schema))
        target.commit()
    except BaseException:
        target.abort()
        raise


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("verticals", "onnxruntime-gpu", "onnxruntime", "polars", "pyarrow", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def finalize(session: ScoringSession, staging: Path | str, output: Path | str, results: Sequence[PartResult], *,
             overwrite: bool = False, started: float | None = None, input: Path | str | None = None,
             warnings: Sequence[str] = (), extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge rejects, write ``_manifest.json`` and move the staging folder to ``output``; returns the manifest.

    Args:
        results: one :class:`PartResult` per planned partition.
        overwrite: replace an existing ``output``; the old folder is moved aside only after the new one
            is complete, and deleted after the new one is in place.
        started: ``time.time()`` when the run started (for ``seconds`` and ``rows_per_second``).
    """
    staging = Path(staging)
    output = Path(output).expanduser().absolute()
    results = sorted(results, key=lambda r: r.index)
    for r in results:
        if not (staging / r.file).is_file():
            raise VerticalsError(f"cannot finalize {output}: part {r.file} is missing from {staging}",
                                 hint="rerun the scoring command; it resumes from the parts that exist")
    keep = {r.file for r in results}
    for stale in [*staging.glob("part-*.parquet"), *staging.glob(".*.tmp")]:
        if stale.name not in keep:  # left by an earlier plan of this staging folder, or a crashed writer
            stale.unlink(missing_ok=True)
    sides = {r.side for r in results if r.side}
    for stale in staging.glob("part-*"):
        if stale.is_dir() and stale.name not in sides:
            shutil.rmtree(stale, ignore_errors=True)
    rejected = _merge_rejects(staging, results, [*session.schema.names])
    totals = {k: sum(getattr(r, k) for r in results)
              for k in ("rows_in", "rows_scored", "rows_rejected", "rows_out", "rows_no_output")}
    no_output: dict[str, int] = {}
    for r in results:
        for reason, count in r.no_output.items():
            no_output[reason] = no_output.get(reason, 0) + count
    no_output = dict(sorted(no_output.items(), key=lambda kv: (-kv[1], kv[0])))
    _write_no_output(staging, no_output)
    if totals["rows_in"] != totals["rows_scored"] + totals["rows_rejected"] or rejected != totals["rows_rejected"] \
            or totals["rows_no_output"] > totals["rows_scored"]:
        raise VerticalsError(f"row accounting broke for {output}: {totals} with {rejected} reject rows written",
                             hint="this is a bug in verticals scoring; please report it with the input")
    finished = time.time()
    seconds = max(finished - (started if started is not None else finished), 1e-9)
    warn = list(dict.fromkeys([*warnings, *(w for r in results for w in r.warnings)]))
    resumed = [r for r in results if r.reused]
    rows_now = totals["rows_in"] - sum(r.rows_in for r in resumed)  # throughput: this run's rows only
    summaries = _summaries(session, staging, results)
    duplicates = _duplicates(session, staging, results)
    if duplicates is not None and duplicates.get("ids"):
        from verticals.scoring.checks import describe

        warn.append(f"{output}: {describe(duplicates, session.schema.ids)}")
    manifest = {
        "pipeline": session.name,
        "model_version": session.model_version,
        **totals,
        "no_output_reasons": dict(list(no_output.items())[:NO_OUTPUT_LISTED]),
        "no_output_reason_count": len(no_output),
        "no_output_file": NO_OUTPUT if no_output else None,
        "device": session.device,
        "provider": session.provider,
        "variant": session.variant,
        "variant_reason": getattr(session, "variant_reason", ""),
        "seconds": round(seconds, 4),
        "rows_per_second": round(rows_now / seconds, 1),
        "parts_resumed": len(resumed),
        "rows_resumed": totals["rows_in"] - rows_now,
        "duplicate_ids": duplicates,
        "started_at": _iso(started) if started is not None else None,
        "finished_at": _iso(finished),
        "input": str(Path(input).expanduser().absolute()) if input is not None else None,
        "output": str(output),
        "parts": [{"file": r.file, "source": r.source, "partition": r.partition, "rows_in": r.rows_in,
                   "rows_scored": r.rows_scored, "rows_rejected": r.rows_rejected, "rows_out": r.rows_out,
                   "rows_no_output": r.rows_no_output, "side_outputs": r.side,
                   "seconds": round(r.seconds, 4), "reused": r.reused} for r in results],
        "rejects_file": REJECTS,
        "summaries": summaries,
        "stages": _stages(results),
        "session": session.describe(),
        "warnings": warn,
        "versions": _versions(),
        **(extra or {}),
    }
    write_json_atomic(staging / MANIFEST, manifest)
    shutil.rmtree(staging / STATE, ignore_errors=True)
    _fsync_dir(staging)
    _move_into_place(staging, output, overwrite=overwrite)
    return manifest


def _duplicates(session: ScoringSession, staging: Path, results: Sequence[PartResult]) -> dict[str, Any] | None:
    """Repeated ids in the output parts; None for schemas without id columns in the output."""
    import pyarrow.parquet as pq

    from verticals.scoring.checks import duplicate_ids

    ids = list(session.schema.ids)
    if not ids or not results or any(c not in pq.read_schema(staging / results[0].file).names for c in ids):
        return None
    return duplicate_ids([staging / r.file for r in results if r.rows_out], ids, rows=sum(r.rows_out for r in results))


def _summaries(session: ScoringSession, staging: Path, results: Sequence[PartResult]) -> dict[str, Any]:
    """Write the pipeline's ``summarize`` tables as ``_<name>.parquet``; ``{name: {file, rows}}``."""
    import polars as pl

    from verticals.names import name_problem

    parts = [staging / r.file for r in results if r.rows_out]
    try:
        tables = session.pipeline.summarize(parts, session.context) or {}
    except VerticalsError:
        raise
    except Exception as exc:
        raise PluginError(f"pipeline {session.name}: summarize failed: {type(exc).__name__}: {exc}",
                          hint="fix the pipeline's summarize") from exc
    written: dict[str, Any] = {}
    for name, frame in tables.items():
        problem = name_problem(name)
        if problem or not isinstance(frame, pl.DataFrame):
            raise PluginError(f"pipeline {session.name}: summarize returned table {name!r:.60} "
                              f"({'a name that ' + problem if problem else type(frame).__name__})",
                              hint="return {name: polars.DataFrame} with lowercase names of letters, digits, underscores")
        file = f"_{name}.parquet"
        tmp = staging / f".{file}.tmp"
        frame.write_parquet(tmp)
        os.replace(tmp, staging / file)
        written[name] = {"file": file, "rows": frame.height}
    return written


def _stages(results: Sequence[PartResult]) -> dict[str, float]:
    """Seconds spent per stage, summed over partitions and threads (reader stages overlap the model)."""
    total: dict[str, float] = {}
    for r in results:
        if not r.reused:
            for k, v in r.stages.items():
                total[k] = total.get(k, 0.0) + v
    return {k: round(v, 4) for k, v in total.items()}


def _move_into_place(staging: Path, output: Path, *, overwrite: bool) -> None:
    check_output(output, overwrite=overwrite)
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(output, old)
    try:
        os.rename(staging, output)
    except BaseException:
        if old is not None:
            os.rename(old, output)
        raise
    _fsync_dir(output.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
