"""Scoring partitions: read → validate → transform in reader threads, the model in ORT, write in order.

The work of one batch is split so that the slow parts overlap: reader threads read a batch, validate it
against the model's schema and run the preprocessor while ONNX Runtime (which releases the GIL)
computes the previous one; the calling thread postprocesses and appends to the partition's part file.
At most a few batches are in flight, so memory is bounded by the batch size, not the input size.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
import time
import warnings as pywarnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.data.dtypes import id_dtype, output_dtype
from verticals.errors import DataValidationError, PluginError, VerticalsError
from verticals.locking import OutputLock
from verticals.scoring.grouping import SOURCE, SOURCE_ROW, grouped_partitions
from verticals.scoring.output import (
    STATE,
    AtomicParquet,
    PartResult,
    abandon,
    check_output,
    finalize,
    prepare_staging,
    record_result,
    recorded_result,
)
from verticals.scoring.partitions import Partition, plan_partitions, read_partition, source_columns
from verticals.scoring.session import DEFAULT_BATCH_SIZE, ScoringSession

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from verticals.spec import Batch, Schema

log = logging.getLogger("verticals.scoring")

__all__ = ["ScoringCancelled", "check_sources", "score", "score_partition", "score_partitions"]

Progress = Callable[[int, int], None]  # (rows read, rows scored) since the last call


# -- reader side ------------------------------------------------------------------------------------------
@dataclass
class _Work:
    """One batch ready for the model (or only rejects), tagged with its partition."""

    partition: Partition
    rows_in: int
    rows_valid: int
    rejects: pl.DataFrame | None
    batch: Batch | None
    flags: pl.Series | None
    stages: dict[str, float] = field(default_factory=dict)
    no_output: dict[str, int] = field(default_factory=dict)


@dataclass
class _End:
    """The last item of a partition."""

    partition: Partition
    warnings: list[str] = field(default_factory=list)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def check_sources(session: ScoringSession, partitions: Iterable[Partition]) -> list[str]:
    """Check each source's columns before any row is scored; returns warnings for extra columns.

    Raises:
        DataValidationError: a source lacks a required column (named, with the source).
    """
    required = [c.name for c in session.schema if c.required and c.role != "target"]
    notes: list[str] = []
    seen: set[Path] = set()
    for p in partitions:
        if p.source in seen:
            continue
        seen.add(p.source)
        names = source_columns(p)
        if names is None:
            continue
        missing = [c for c in required if c not in names]
        if missing:
            raise DataValidationError(f"{p.source}: missing required column(s) {', '.join(repr(m) for m in missing)}",
                                      hint=f"the model {session.version.label} needs columns "
                                           f"{', '.join(session.schema.names)}")
        extra = [n for n in names if n not in session.schema and n != session.target]
        if extra:
            shown = ", ".join(extra[:20]) + (f" and {len(extra) - 20} more" if len(extra) > 20 else "")
            notes.append(f"{p.source}: ignoring column(s) not in the model's schema: {shown}")
    return notes


def _validate(session: ScoringSession, partition: Partition, frame: pl.DataFrame, offset: int) -> Any:
    from verticals.data.validation import validate

    pre = session.preprocessor
    return validate(frame, session.schema, stage="score", source=str(partition.source), row_offset=offset,
                    vocabularies=session.vocabularies, training_ranges=pre.training_ranges(),
                    category_modes=getattr(pre, "category_modes", dict)())


def _rejects(res: Any, partition: Partition, origin: pl.DataFrame | None = None) -> pl.DataFrame | None:
    """Validation's rejects with ``_row`` and ``_source`` naming the user's file and row."""
    import polars as pl

    if not res.rejects.height:
        return None
    if origin is None:
        return res.rejects.with_columns(pl.col("_row").cast(pl.Int64), pl.lit(str(partition.source)).alias("_source"))
    at = res.rejects.get_column("_row").cast(pl.Int64)
    return res.rejects.drop([c for c in (SOURCE, SOURCE_ROW) if c in res.rejects.columns]).with_columns(
        origin.get_column(SOURCE_ROW).cast(pl.Int64).gather(at).alias("_row"),
        origin.get_column(SOURCE).cast(pl.String).gather(at).alias("_source"))


def redact(rejects: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """``rejects`` without the values of the schema's ``sensitive`` columns: null in their column and
    ``<redacted>`` wherever a reason quotes one."""
    import polars as pl

    names = [c.name for c in schema if c.sensitive and c.name in rejects.columns]
    if not names or not rejects.height:
        return rejects
    reasons = rejects.get_column("_reason").cast(pl.String).to_list()
    for name in names:
        for i, value in enumerate(rejects.get_column(name).cast(pl.String).to_list()):
            if value and reasons[i] and value in reasons[i]:
                reasons[i] = reasons[i].replace(value, "<redacted>")
    return rejects.with_columns(pl.Series("_reason", reasons, dtype=pl.String),
                                *(pl.lit(None, dtype=rejects.schema[n]).alias(n) for n in names))


def _merge_flags(validation: pl.Series | None, batch: Batch) -> pl.Series:
    """One comma-separated flag string per example: validation's rules and the preprocessor's own."""
    import polars as pl

    n = len(batch)
    own = batch.flags
    if validation is not None and len(validation) != n:
        validation = None
    if validation is None and own is None:
        return pl.repeat("", n, dtype=pl.String, eager=True).alias("flags")
    if validation is None or own is None:
        return (validation if own is None else own).cast(pl.String).fill_null("").rename("flags")
    frame = pl.DataFrame({"a": validation.cast(pl.String).fill_null(""), "b": own.cast(pl.String).fill_null("")})
    both = pl.concat_str([pl.col("a"), pl.col("b")], separator=",").str.split(",").list.unique(maintain_order=True) \
        .list.join(",")
    merged = pl.when(pl.col("a") == "").then(pl.col("b")).when(pl.col("b") == "").then(pl.col("a")).otherwise(both)
    return frame.select(merged.alias("flags")).to_series()


def _row_ids(partition: Partition, numbers: Any) -> pl.DataFrame:
    """Ids for a schema without id columns: each scored row's number in its source, and the source."""
    import numpy as np
    import polars as pl

    numbers = np.asarray(numbers, dtype=np.int64)
    return pl.DataFrame({"_row": numbers, "_source": pl.repeat(str(partition.source), len(numbers), dtype=pl.String,
                                                               eager=True)})


def _slice_batch(batch: Batch, start: int, stop: int) -> Batch:
    from verticals.spec import Batch

    return Batch(ids=batch.ids.slice(start, stop - start),
                 inputs={k: v[start:stop] for k, v in batch.inputs.items()},
                 target=None, flags=None if batch.flags is None else batch.flags.slice(start, stop - start),
                 aux=None if batch.aux is None else batch.aux.slice(start, stop - start))


def _own_rejects(session: ScoringSession, partition: Partition, batch: Batch, chunk: pl.DataFrame,
                 numbers: Any, sources: Any, columns: Sequence[str]) -> pl.DataFrame | None:
    """The preprocessor's rejects of ``chunk`` (positions ``_row`` there) as reject rows of the input:
    the row's values as text, its number and source file, and the preprocessor's reason."""
    import numpy as np
    import polars as pl

    own = batch.rejects
    if own is None or not own.height:
        return None
    if "_row" not in own.columns or "_reason" not in own.columns:
        raise PluginError(f"pipeline {session.name}: Batch.rejects needs columns _row and _reason, has {own.columns}",
                          hint="reject a row with its position in the frame given to transform and a reason")
    at = own.get_column("_row").cast(pl.Int64).to_numpy()
    if at.size and (at.min() < 0 or at.max() >= chunk.height):
        raise PluginError(f"pipeline {session.name}: Batch.rejects names row {int(at.max())} of a frame of "
                          f"{chunk.height} rows", hint="_row is the position in the frame given to transform")
    values = chunk[pl.Series(at)]
    frame = pl.DataFrame({c: (values.get_column(c).cast(pl.String) if c in values.columns
                              else pl.Series(c, [None] * len(at), dtype=pl.String)) for c in columns})
    named = np.full(len(at), str(partition.source), dtype=object) if sources is None \
        else np.asarray(sources, dtype=object)[at]
    return frame.with_columns(pl.Series("_row", np.asarray(numbers)[at], dtype=pl.Int64),
                              own.get_column("_reason").cast(pl.String).alias("_reason"),
                              pl.Series("_source", named.astype(str), dtype=pl.String))


def _prepare(session: ScoringSession, partition: Partition, frame: pl.DataFrame, offset: int,
             read_s: float = 0.0, notes: list[str] | None = None) -> list[_Work]:
    """Validate and transform ``frame``: one item per model batch (a grouping preprocessor gets whole
    groups, or pieces of a large group with its earlier rows as context). Validation's warnings about
    values (not the extra columns check_sources reports) go to ``notes``."""
    import numpy as np
    import polars as pl

    from verticals.data.examples import chunk_frame, transform_checked
    from verticals.spec import CONTEXT

    t0 = time.perf_counter()
    origin = None
    if SOURCE in frame.columns:  # a grouped copy of the input: rows name their own source and number
        origin = frame.select(SOURCE, SOURCE_ROW)
        frame = frame.drop(SOURCE, SOURCE_ROW)
    res = _validate(session, partition, frame, offset if origin is None else 0)
    if notes is not None:
        notes.extend(w for w in res.warnings if w not in notes and ": ignoring column(s)" not in w)
    rejects = _rejects(res, partition, origin)
    t1 = time.perf_counter()
    stages = {"read": read_s, "validate": t1 - t0}
    if not res.valid.height:
        return [_Work(partition, frame.height, 0, rejects, None, None, stages)]
    pre = session.preprocessor
    positions = res.rows.cast(pl.Int64).to_numpy()
    if origin is None:  # one source: named per reject row only (see _own_rejects), not per row
        numbers, sources = positions, None
    else:
        numbers = origin.get_column(SOURCE_ROW).cast(pl.Int64).to_numpy()[positions]
        sources = origin.get_column(SOURCE).to_numpy()[positions]
    if not pre.rowwise and pre.group_by is not None:
        valid = res.valid.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("__pos"))
        chunks = chunk_frame(valid, pre, session.batch_size)
    else:
        chunks = iter([res.valid.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("__pos"))])
    items: list[_Work] = []
    first = True
    for chunk in chunks:
        pos = chunk.get_column("__pos").to_numpy()
        chunk = chunk.drop("__pos")
        examples_in = chunk.height if CONTEXT not in chunk.columns else int((~chunk[CONTEXT]).sum())
        batch = transform_checked(pre, chunk, with_target=False, what=f"pipeline {session.name}, {partition.describe()}")
        own = _own_rejects(session, partition, batch, chunk, numbers[pos], None if sources is None else sources[pos],
                           frame.columns)
        if own is not None and CONTEXT in chunk.columns:
            own = own.filter(~pl.Series(chunk[CONTEXT].to_numpy()[batch.rejects["_row"].cast(pl.Int64).to_numpy()]))
        n_own = own.height if own is not None else 0
        merged = rejects if first else None
        if own is not None:
            merged = own if merged is None else pl.concat([merged, own], how="diagonal_relaxed")
        kept = pos
        if pre.rowwise and n_own:
            kept = np.delete(pos, batch.rejects["_row"].cast(pl.Int64).to_numpy())
        if not session.schema.ids and pre.rowwise and len(batch) == kept.size:
            batch.ids = _row_ids(partition, numbers[kept])
        if not pre.rowwise:
            row_flags = None
        elif kept.size == res.flags.len() and not n_own:  # every valid row, in order: no gather
            row_flags = res.flags
        else:
            row_flags = res.flags[pl.Series(kept)]
        flags = _merge_flags(row_flags, batch)
        t2 = time.perf_counter()
        # Cast and lay out the inputs as ORT wants them here, in the reader thread, not on the model's.
        if len(batch):
            batch.inputs = session.model_inputs(batch.inputs)
        work_stages = dict(stages, transform=time.perf_counter() - t1) if first else {"transform": time.perf_counter() - t2}
        rows_in = frame.height if first else 0
        rows_valid = examples_in - n_own  # context rows were counted in the chunk that holds them
        n, size = len(batch), session.batch_size
        pieces = [(0, n)] if n <= size else [(a, min(n, a + size)) for a in range(0, n, size)]
        for j, (a, b) in enumerate(pieces):
            part = batch if len(pieces) == 1 else _slice_batch(batch, a, b)
            items.append(_Work(partition, rows_in if j == 0 else 0, rows_valid if j == 0 else 0,
                               merged if j == 0 else None, part if len(part) else None,
                               flags if len(pieces) == 1 else flags.slice(a, b - a),
                               work_stages if j == 0 else {}, dict(batch.skipped) if j == 0 else {}))
            rows_valid = 0
        first = False
        t1 = time.perf_counter()
    return items


def _produce(session: ScoringSession, partition: Partition) -> Iterable[_Work | _End]:
    import polars as pl

    offset = partition.row_offset
    notes: list[str] = []
    if session.preprocessor.rowwise:
        frames = read_partition(partition, session.schema, session.batch_size)
        while True:
            t0 = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            yield from _prepare(session, partition, frame, offset, time.perf_counter() - t0, notes)
            offset += frame.height
    else:  # grouping preprocessors see the whole partition (a row group or a file) at once
        t0 = time.perf_counter()
        frames = list(read_partition(partition, session.schema, session.batch_size))
        if frames:
            yield from _prepare(session, partition, pl.concat(frames, how="vertical_relaxed"), offset,
                                time.perf_counter() - t0, notes)
    yield _End(partition, warnings=notes)


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _reader(session: ScoringSession, todo: deque[Partition], lock: threading.Lock, q: queue.Queue,
            stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            with lock:
                if not todo:
                    break
                partition = todo.popleft()
            blocked = 0.0  # time this reader waited for room in the queue: the model side was slower
            for item in _produce(session, partition):
                if blocked:
                    item_stages = getattr(item, "stages", None)
                    if item_stages is not None:
                        item_stages["reader_wait"] = blocked
                        blocked = 0.0
                t0 = time.perf_counter()
                if not _put(q, item, stop):
                    return
                blocked += time.perf_counter() - t0
    except BaseException as exc:  # handed to the consumer, which raises it
        _put(q, _Failed(exc), stop)
    finally:
        _put(q, _DONE, stop)


def _reader_count(session: ScoringSession, partitions: int) -> int:
    env = int(os.environ.get("VERTICALS_SCORE_READERS", "0") or 0)
    if env > 0:
        return max(1, min(env, partitions))
    from verticals.scoring.runtime import available_cores

    if session.device == "cuda":  # the GPU waits on decoding: several readers
        return max(1, min(partitions, available_cores() // 4 or 1, 4))
    pre = session.preprocessor
    if not pre.materialize:  # file decoding (images) is the bottleneck, not the model: decode in parallel
        return max(1, min(partitions, pre.workers or available_cores(), 8))
    return 1  # on the CPU the model needs the cores; one reader keeps ahead of it


# -- writer side ------------------------------------------------------------------------------------------
def _id_dtype(session: ScoringSession, name: str) -> Any:
    return id_dtype(session.schema[name].dtype) if name in session.schema else None


def empty_output_schema(session: ScoringSession) -> Any:
    """Arrow schema of a part file, for partitions with no valid rows (every part has the same columns)."""
    import polars as pl

    ids = session.schema.ids
    if not ids and not session.preprocessor.rowwise:  # examples of groups are named by group (and time)
        ids = [c for c in (session.schema.group, session.schema.time) if c]
    cols: dict[str, Any] = {n: _id_dtype(session, n) or pl.String for n in ids}
    if not cols and session.preprocessor.rowwise:
        cols = {"_row": pl.Int64, "_source": pl.String}
    for oc in session.pipeline.output_columns:
        cols[oc.name] = output_dtype(oc.dtype)
    cols["flags"] = pl.String
    cols["model_version"] = pl.Int64
    return pl.DataFrame(schema=cols).to_arrow().schema


def _part_frame(session: ScoringSession, batch: Batch, outputs: dict[str, Any], flags: pl.Series,
                context: Any = None) -> pl.DataFrame:
    import polars as pl

    try:
        post = session.pipeline.postprocess(outputs, batch, context if context is not None else session.context)
    except VerticalsError:
        raise
    except Exception as exc:
        raise PluginError(f"pipeline {session.name}: postprocess failed: {type(exc).__name__}: {exc}",
                          hint="fix the pipeline's postprocess") from exc
    if post.height != len(batch):
        raise PluginError(f"pipeline {session.name}: postprocess returned {post.height} rows for {len(batch)} examples",
                          hint="return one row per example of the batch")
    ids = batch.ids.with_columns(pl.col(n).cast(dt) for n in batch.ids.columns
                                 if (dt := _id_dtype(session, n)) is not None and batch.ids.schema[n] != dt)
    columns = []
    for oc in session.pipeline.output_columns:
        if oc.name not in post.columns:
            raise PluginError(f"pipeline {session.name}: postprocess did not return output column {oc.name!r}",
                              hint=f"return the declared output columns: "
                                   f"{', '.join(c.name for c in session.pipeline.output_columns)}")
        columns.append(post[oc.name].cast(output_dtype(oc.dtype)))
    return pl.concat([ids, pl.DataFrame(columns), pl.DataFrame([flags.rename("flags")])], how="horizontal") \
        .with_columns(pl.lit(session.model_version, dtype=pl.Int64).alias("model_version"))


class _PartState:
    def __init__(self, session: ScoringSession, partition: Partition, staging: Path, schema: Any) -> None:
        self.partition = partition
        self.part = AtomicParquet(staging / f"{partition.name}.parquet", schema)
        self.rejects = AtomicParquet(staging / STATE / f"{partition.name}.rejects.parquet")
        self.side_tmp, self.side = _side_dirs(staging, partition)
        self.no_output: dict[str, int] = {}
        self.rows_in = self.rows_scored = self.rows_rejected = self.rows_out = 0
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def abort(self) -> None:
        self.part.abort()
        self.rejects.abort()
        shutil.rmtree(self.side_tmp, ignore_errors=True)

    def commit_side(self) -> str | None:
        """Move the part's side outputs into place (before the part file: a committed part always
        has its side files)."""
        if not self.side_tmp.is_dir():
            return None
        shutil.rmtree(self.side, ignore_errors=True)  # left by a run killed before its marker
        os.replace(self.side_tmp, self.side)
        return self.side.name


def _side_dirs(staging: Path, partition: Partition) -> tuple[Path, Path]:
    """(folder side outputs are written to while the part is open, folder they are committed to)."""
    return staging / STATE / f"{partition.name}.side", staging / partition.name


def score_partitions(session: ScoringSession, partitions: Sequence[Partition], staging: Path | str, *,
                     progress: Progress | None = None, on_result: Callable[[PartResult], None] | None = None,
                     cancel: threading.Event | None = None) -> list[PartResult]:
    """Score ``partitions`` into ``staging`` with reader threads running ahead of the model.

    Partitions already recorded in ``staging`` (same model, same input) are returned as recorded without
    reading them. Each partition's part file and rejects appear atomically, then its marker.

    Args:
        on_result: called with each partition's result as soon as it is committed (or found recorded),
            in commit order, from the calling thread.
        cancel: when set, the run stops at the next batch: partitions not yet committed are abandoned
            (their temporary files removed) and :class:`ScoringCancelled` is raised.
    """
    staging = Path(staging)
    (staging / STATE).mkdir(parents=True, exist_ok=True)
    results: dict[int, PartResult] = {}
    todo: deque[Partition] = deque()
    for p in partitions:
        done = recorded_result(session, p, staging)
        if done is not None:
            results[p.index] = done
            if progress:
                progress(done.rows_in, done.rows_scored)
            if on_result:
                on_result(done)
        else:
            shutil.rmtree(_side_dirs(staging, p)[0], ignore_errors=True)  # half-written by a killed run
            todo.append(p)
    if todo:
        for r in _run(session, todo, staging, progress, on_result, cancel):
            results[r.index] = r
    return [results[p.index] for p in partitions]


class ScoringCancelled(VerticalsError):
    """A run stopped through its ``cancel`` event; nothing uncommitted was kept."""


def _run(session: ScoringSession, todo: deque[Partition], staging: Path, progress: Progress | None,
         on_result: Callable[[PartResult], None] | None = None,
         cancel: threading.Event | None = None) -> list[PartResult]:
    from verticals.registry import get_registry

    registry = get_registry()
    runner = session.runtime.runner
    n_readers = _reader_count(session, len(todo))
    q: queue.Queue = queue.Queue(maxsize=max(2, n_readers + runner.depth))
    stop = threading.Event()
    lock = threading.Lock()
    threads = [threading.Thread(target=_reader, args=(session, todo, lock, q, stop), daemon=True,
                                name=f"verticals-reader-{i}") for i in range(n_readers)]
    schema = empty_output_schema(session)
    states: dict[int, _PartState] = {}
    pending: deque[tuple[Any, Any, float, float]] = deque()
    done: list[PartResult] = []
    batch_index = 0

    def state_of(p: Partition) -> _PartState:
        if p.index not in states:
            states[p.index] = _PartState(session, p, staging, schema)
        return states[p.index]

    def finish(item: Any, future: Any, t0: float, submit_s: float) -> None:
        nonlocal batch_index
        st = state_of(item.partition)
        if isinstance(item, _End):
            side = st.commit_side()
            st.part.commit()
            rejects_file = st.rejects.path.name if st.rejects.commit() else None
            result = PartResult(index=item.partition.index, partition=item.partition.key,
                                fingerprint=item.partition.fingerprint, source=str(item.partition.source),
                                file=st.part.path.name, rows_in=st.rows_in, rows_scored=st.rows_scored,
                                rows_rejected=st.rows_rejected, rows_out=st.rows_out, rejects_file=rejects_file,
                                seconds=time.perf_counter() - st.started, run_key=session.run_key,
                                warnings=list(item.warnings), stages=dict(st.stages), no_output=dict(st.no_output),
                                side=side)
            record_result(staging, item.partition, result)
            done.append(result)
            del states[item.partition.index]
            if on_result:
                on_result(result)
            return
        for stage, seconds in item.stages.items():
            st.add(stage, seconds)
        rejected = item.rejects.height if item.rejects is not None else 0
        t_write = time.perf_counter()
        if item.rejects is not None:
            st.rejects.write(redact(item.rejects, session.schema))
        out_rows = 0
        if future is not None:
            frame, model_s, post_s = future.result()
            st.add("model", submit_s + model_s)  # CPU: ran in submit or a lane; GPU: waited for in a lane
            st.add("postprocess", post_s)
            t_write = time.perf_counter()
            st.part.write(frame)
            out_rows = frame.height
        st.add("write", time.perf_counter() - t_write)
        st.rows_in += item.rows_in
        st.rows_scored += item.rows_valid
        st.rows_rejected += rejected
        st.rows_out += out_rows
        for reason, count in item.no_output.items():
            st.no_output[reason] = st.no_output.get(reason, 0) + int(count)
        if progress:
            progress(item.rows_in, item.rows_valid)
        registry.notify("after_score_batch", pipeline=session.name, version=session.model_version,
                        batch_index=batch_index, rows_in=item.rows_in, rows_scored=item.rows_valid,
                        rows_rejected=rejected, seconds=time.perf_counter() - t0)
        batch_index += 1

    # Postprocessing (sigmoid, or a pipeline's reason codes and bands) runs in a small pool as each
    # batch's outputs arrive; the calling thread only appends finished frames, in order.
    post_pool = ThreadPoolExecutor(max_workers=max(1, runner.depth), thread_name_prefix="verticals-post")

    def post(item: _Work, future: Any) -> tuple[pl.DataFrame, float, float]:
        t_wait = time.perf_counter()
        outputs = future.result()
        t_post = time.perf_counter()
        side_tmp, _ = _side_dirs(staging, item.partition)
        context = session.context.with_part(side_tmp, item.partition.name,
                                            input_root=item.partition.source if item.partition.kind == "files" else None)
        frame = _part_frame(session, item.batch, outputs, item.flags, context)
        return frame, t_post - t_wait, time.perf_counter() - t_post

    for t in threads:
        t.start()
    try:
        running = len(threads)
        while running:
            t_get = time.perf_counter()
            if cancel is None:
                item = q.get()
            else:
                item = None
                while item is None:
                    if cancel.is_set():
                        raise ScoringCancelled("scoring run cancelled", hint="run it again: committed partitions "
                                                                             "are kept")
                    with contextlib.suppress(queue.Empty):
                        item = q.get(timeout=0.1)
            if item is _DONE:
                running -= 1
                continue
            if isinstance(item, _Failed):
                raise item.error
            t0 = time.perf_counter()
            if isinstance(item, _Work):  # time the writer side waited for the readers
                item.stages["writer_wait"] = item.stages.get("writer_wait", 0.0) + t0 - t_get
            future = runner.submit(item.batch.inputs) if isinstance(item, _Work) and item.batch is not None else None
            submit_s = time.perf_counter() - t0
            pending.append((item, post_pool.submit(post, item, future) if future is not None else None, t0, submit_s))
            while pending and (len(pending) > runner.depth or pending[0][1] is None or pending[0][1].done()):
                finish(*pending.popleft())
        while pending:
            finish(*pending.popleft())
    except BaseException:
        stop.set()
        for _item, future, _t0, _s in pending:
            if future is not None:
                with contextlib.suppress(BaseException):
                    future.result()
        for st in states.values():
            st.abort()
        raise
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        for t in threads:
            t.join(timeout=30)
        post_pool.shutdown(wait=True, cancel_futures=True)
    return done


def score_partition(session: ScoringSession, partition: Partition, staging: Path | str) -> PartResult:
    """Score one partition into ``staging``; idempotent.

    If the partition's part file and its committed marker exist (written by an earlier call with the
    same model and input), the recorded result is returned without reading anything. Otherwise the part
    file and the partition's rejects are written via temp files and ``os.replace``, then the marker.
    """
    return score_partitions(session, [partition], staging)[0]


# -- the whole run ------------------------------------------------------------------------------------------
def _progress_bar(total: int | None) -> tuple[Any, Progress]:
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class RowsPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s", style="progress.data.speed")

    from rich.console import Console

    # On stderr, and gone when done: stdout keeps one summary (the command prints it), pipes stay clean.
    bar = Progress(TextColumn("scoring"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.fields[total_text]} rows"),
                   RowsPerSecond(), TimeElapsedColumn(), transient=True, console=Console(stderr=True))
    task = bar.add_task("score", total=total, total_text=f"{total:,}" if total is not None else "?")

    def advance(rows_in: int, rows_scored: int) -> None:
        bar.advance(task, rows_in)

    return bar, advance


def score(pipeline: str, input: Path | str, output: Path | str, *, model: str | int | None = None,
          device: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE, overwrite: bool = False,
          home: Path | str | None = None, progress: bool = True, variant: str = "auto",
          threads: int | None = None, csv: Any = None, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score ``input`` (Parquet/CSV file or folder) with ``pipeline``'s model into the folder ``output``.

    ``csv`` (:class:`~verticals.data.files.CsvOptions`) sets the encoding and separator of CSV input;
    ``params`` the pipeline's scoring parameters (:meth:`~verticals.pipeline.Pipeline.scoring_parameters`,
    e.g. ``{"k": 20}``), checked before the output is touched.

    The output folder appears only when complete (parts, ``_rejects.parquet``, ``_manifest.json``); a
    rerun after an interruption resumes from the partitions already scored. Returns the manifest.

    Raises:
        NotFoundError: unknown pipeline, model version, or input.
        ModelIntegrityError: the model's files changed since registration.
        DataValidationError: a required column is missing, or a file cannot be read.
        UserError: ``output`` exists and ``overwrite`` is false.
    """
    started = time.time()
    output = Path(output).expanduser().absolute()
    check_output(output, overwrite=overwrite)
    partitions = plan_partitions(input, csv=csv)
    session = ScoringSession.open(pipeline, model, device, batch_size, home, variant=variant, threads=threads,
                                  params=params)
    staging: Path | None = None
    lock = OutputLock(output, what="scoring run")
    try:
        notes = check_sources(session, partitions)
        for note in notes:
            log.warning("%s", note)
            pywarnings.warn(note, UserWarning, stacklevel=2)
        lock.acquire()  # before anything at the output location is created, cleared or deleted
        staging = prepare_staging(session, partitions, output, overwrite=overwrite)
        rows = [p.rows for p in partitions]
        partitions = grouped_partitions(session, partitions, staging)
        total = sum(r for r in rows if r is not None) if all(r is not None for r in rows) else None
        bar, advance = _progress_bar(total) if progress else (contextlib.nullcontext(), None)
        with bar:
            results = score_partitions(session, partitions, staging, progress=advance)
        if not partitions or sum(r.rows_in for r in results) == 0:
            notes.append(f"{input}: no rows to score (the input is empty or has only a header)")
        manifest = finalize(session, staging, output, results, overwrite=overwrite, started=started,
                            input=input, warnings=notes)
        log.info("scored %s rows (%s rejected) in %.1f s: %s rows/s on %s", manifest["rows_in"],
                 manifest["rows_rejected"], manifest["seconds"], manifest["rows_per_second"], manifest["provider"])
        return manifest
    except BaseException as exc:
        abandon(session, staging, exc)  # still under the lock: only this run's staging folder
        raise
    finally:
        lock.release()
        session.close()
