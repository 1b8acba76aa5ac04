"""Grouping the input of a grouping pipeline before it is scored.

A pipeline whose preprocessor declares ``group_by`` (a user, a machine, a study) needs every row of a
group, in ``order_by`` order, in one piece. Real input is rarely laid out that way: an event log is
sorted by time, with users or machines interleaved over the whole file. So before scoring, the core
rewrites the input rows into one Parquet file in the staging folder:

* sorted by ``(group, order, source row)``; an input of more than :data:`BUCKET_ROWS` rows is first
  cut into hash buckets of the group (one streaming pass, each bucket a file in the staging folder), and
  the buckets are sorted one at a time, so memory is that of sorting one bucket, not the whole input
  (polars' sort holds its whole input: 2.2 GB for 10M interactions, against 0.4 GB for 1M);
* cut into row groups on group boundaries (about :data:`ROWS_PER_PART` rows each; a larger group gets a
  row group of its own), so every partition holds whole groups and partitions can be scored in any
  order, on any worker;
* with each row's source file (``__source``) and row number in it (``__source_row``), so rejects name
  the user's file and row, not the staging copy.

The same rows give the same grouped file whatever their order and row groups in the input, so a file
scored in one row group and the same rows in fifty give identical output. Groups follow each other in
group order up to :data:`BUCKET_ROWS` input rows; above it, in group order within each bucket, bucket
after bucket (every group is still whole and in ``order_by`` order). The grouped file lives in the
staging folder's state and is reused by a resumed run; it is deleted when the run finishes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import DataValidationError
from verticals.scoring.output import STATE
from verticals.scoring.partitions import Partition, _fingerprint, _one_line

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from verticals.scoring.session import ScoringSession
    from verticals.spec import Schema

__all__ = ["BUCKET_ROWS", "ROWS_PER_PART", "SOURCE", "SOURCE_ROW", "grouped_partitions", "needs_grouping"]

ROWS_PER_PART = 131_072
BUCKET_ROWS = 250_000
"""Input rows sorted at once: a larger input is sorted in ``ceil(rows / BUCKET_ROWS)`` hash buckets of its
groups (at most :data:`MAX_BUCKETS`), one after the other."""
MAX_BUCKETS = 256  # bucket files open at once while the input is cut
SOURCE = "__source"
SOURCE_ROW = "__source_row"
GROUPED = "grouped.parquet"


def needs_grouping(session: ScoringSession) -> bool:
    """Whether ``session``'s preprocessor groups rows (and so its input must be grouped first)."""
    pre = session.preprocessor
    return not pre.rowwise and pre.group_by is not None


def _sort_key(column: str, schema: Schema, dtype: Any) -> pl.Expr:
    """A sort key for ``column`` in its schema type (CSV text cast leniently; bad values sort as null)."""
    import polars as pl

    expr = pl.col(column)
    if column not in schema or dtype != pl.String:
        return expr
    kind = schema[column].dtype
    if kind == "float":
        return expr.cast(pl.Float64, strict=False)
    if kind == "int":
        return expr.cast(pl.Float64, strict=False)
    if kind == "datetime":
        return expr.str.to_datetime(strict=False)
    return expr


def _stage_csv(partition: Partition, schema: Schema, target: Path) -> Path | None:
    """The schema's columns of a CSV file copied to Parquet as text, through the reader that scoring
    and training use (:mod:`verticals.data.files`: any encoding, and the same one-line errors for a
    ragged row or a wrong separator); ``None`` for an empty file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from verticals.data.files import (
        CsvOptions,
        csv_error,
        csv_header,
        csv_parse_options,
        csv_read_options,
        text_columns,
    )

    options = partition.csv or CsvOptions()
    names = csv_header(partition.source, options)
    if names is None:
        return None
    columns = [n for n in names if n in schema]
    writer = None
    try:
        reader = pacsv.open_csv(partition.source, read_options=csv_read_options(options, 8 << 20, use_threads=True),
                                parse_options=csv_parse_options(partition.source, options),
                                convert_options=text_columns(columns))
        writer = pq.ParquetWriter(target, reader.schema)
        for block in reader:
            writer.write_batch(block)
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        if writer is not None:
            writer.close()
            writer = None
        target.unlink(missing_ok=True)
        raise csv_error(partition.source, exc, options) from exc
    finally:
        if writer is not None:
            writer.close()
    return target


def _scan(partitions: Sequence[Partition], schema: Schema, work: Path
          ) -> tuple[pl.LazyFrame, list[tuple[str, Path]]]:
    """Every input row once, with its source file and its row number there (CSV files are staged as
    Parquet in ``work`` first); and the Parquet file each source is read from (its own, or staged)."""
    import polars as pl

    frames = []
    files: list[tuple[str, Path]] = []
    seen: set[tuple[Path, str]] = set()
    for p in partitions:
        if (p.source, p.kind) in seen:
            continue
        seen.add((p.source, p.kind))
        if p.kind == "parquet":
            if p.row_group is None:
                continue
            path = p.source
        elif p.kind == "csv":
            staged = _stage_csv(p, schema, work / f".csv-{len(frames)}.parquet")
            if staged is None:
                continue
            path = staged
        else:
            raise DataValidationError(f"{p.describe()}: a grouping pipeline scores Parquet or CSV input",
                                      hint="pass the rows as a Parquet or CSV file")
        lf = pl.scan_parquet(path)
        names = [n for n in lf.collect_schema().names() if n in schema]
        frames.append(lf.select(names).with_row_index(SOURCE_ROW)
                      .with_columns(pl.lit(str(p.source)).alias(SOURCE)))
        files.append((str(p.source), path))
    if not frames:
        return pl.LazyFrame(), []
    return pl.concat(frames, how="diagonal_relaxed"), files


def _bucket_files(files: Sequence[tuple[str, Path]], schema: Schema, columns: pl.Schema, group: str,
                  buckets: int, work: Path) -> list[Path]:
    """Cut the rows of ``files`` ((source, Parquet file) pairs) into ``buckets`` Parquet files by a hash
    of their group, so every row of a group lands in the same file. One pass, a row group (at most
    :data:`ROWS_PER_PART` rows of it) at a time; rows get the ``columns`` of the whole input (its
    source and row number included), as :func:`_scan` gives them."""
    import polars as pl
    import pyarrow.parquet as pq

    from verticals.scoring.partitions import _plan_parquet, read_partition

    paths = [work / f".bucket-{b:04d}.parquet" for b in range(buckets)]
    writers: dict[int, Any] = {}
    empty = pl.DataFrame(schema=columns)
    key = (pl.col(group).cast(pl.String).hash(seed=0) % buckets).alias("__bucket")
    try:
        for source, path in files:
            for part in _plan_parquet([path], start=0):
                at = part.row_offset
                for frame in read_partition(part, schema, ROWS_PER_PART):
                    frame = frame.with_columns(pl.int_range(at, at + frame.height).alias(SOURCE_ROW),
                                               pl.lit(source).alias(SOURCE))
                    at += frame.height
                    frame = pl.concat([empty, frame], how="diagonal_relaxed").select(columns.names()).cast(columns)
                    for (b,), piece in frame.with_columns(key).partition_by("__bucket", as_dict=True,
                                                                             include_key=False).items():
                        table = piece.to_arrow()
                        if b not in writers:
                            writers[b] = pq.ParquetWriter(paths[b], table.schema, compression="lz4")
                        writers[b].write_table(table.cast(writers[b].schema))
    finally:
        for writer in writers.values():
            writer.close()
    return [paths[b] for b in sorted(writers)]


def _sorted_runs(lf: pl.LazyFrame, files: Sequence[tuple[str, Path]], schema: Schema, keys: list[pl.Expr],
                 group: str, work: Path) -> Any:
    """Yield Parquet files that, read one after the other, hold every row of ``lf`` with each group
    contiguous and in ``keys`` order: one sorted file, or (above :data:`BUCKET_ROWS` rows) one sorted
    file per hash bucket of the groups, each written when the previous one has been consumed."""
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(path).metadata.num_rows for _, path in files)
    buckets = min(MAX_BUCKETS, -(-rows // BUCKET_ROWS))
    if buckets <= 1:
        out = work / ".sorted-0000.parquet"
        lf.sort(keys, nulls_last=True).sink_parquet(out)
        yield out
        out.unlink(missing_ok=True)
        return
    for i, part in enumerate(_bucket_files(files, schema, lf.collect_schema(), group, buckets, work)):
        import polars as pl

        out = work / f".sorted-{i:04d}.parquet"
        pl.scan_parquet(part).sort(keys, nulls_last=True).sink_parquet(out)
        part.unlink()
        yield out
        out.unlink(missing_ok=True)


def _cut(table: Any, group: str, rows: int) -> int | None:
    """Where to end a row group of ``table`` (whose groups are contiguous) near ``rows`` rows: the start
    of the group holding row ``rows``, or, where that group starts the table, its end (a large group
    gets a row group of its own); ``None`` while that group may go on past the table."""
    import pyarrow.compute as pc

    keys = table.column(group)
    value = keys[rows]
    same = pc.is_null(keys) if not value.is_valid else pc.fill_null(pc.equal(keys, value), False)
    start = pc.index(same, True).as_py()
    if start > 0:
        return start
    end = pc.index(same.slice(rows), False).as_py()
    return None if end < 0 else rows + end


def _write_cut(sorted_files: Any, target: Path, group: str) -> None:
    """Write the rows of ``sorted_files`` (read in turn; no group spans two of them) into ``target``
    with row groups of at most ROWS_PER_PART rows cut on ``group`` boundaries (a larger group: one row
    group of its own)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def batches() -> Any:
        for path in sorted_files:
            yield from pq.ParquetFile(path).iter_batches(batch_size=ROWS_PER_PART)

    writer = None
    carry: pa.Table | None = None
    try:
        for batch in batches():
            table = pa.Table.from_batches([batch])
            if carry is not None and carry.num_rows:
                table = pa.concat_tables([carry, table.cast(carry.schema)])
            writer = writer or pq.ParquetWriter(target, table.schema)
            while table.num_rows > ROWS_PER_PART:
                cut = _cut(table, group, ROWS_PER_PART)
                if cut is None:  # one group fills the table: wait for its end
                    break
                writer.write_table(table.slice(0, cut), row_group_size=cut)
                table = table.slice(cut)
            carry = table
        if carry is not None and carry.num_rows:
            writer = writer or pq.ParquetWriter(target, carry.schema)
            writer.write_table(carry, row_group_size=carry.num_rows)
    finally:
        if writer is not None:
            writer.close()


def grouped_partitions(session: ScoringSession, partitions: Sequence[Partition], staging: Path | str
                       ) -> list[Partition]:
    """The partitions to score: ``partitions`` unchanged for a row-wise pipeline, else partitions over
    the grouped copy of the input in ``staging`` (written once; a resumed run reuses it).

    Raises:
        DataValidationError: the input lacks the group column, or cannot be read.
    """
    if not needs_grouping(session):
        return list(partitions)
    import polars as pl

    from verticals.scoring.partitions import _plan_parquet

    pre = session.preprocessor
    group, order = pre.group_by, pre.order_by
    target = Path(staging) / STATE / GROUPED
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        lf, files = _scan(partitions, session.schema, target.parent)
        columns = lf.collect_schema()
        if not columns.names():
            return []
        if group not in columns:
            raise DataValidationError(f"{partitions[0].source}: missing the group column '{group}'",
                                      hint=f"the model {session.version.label} groups rows by '{group}'")
        keys = [pl.col(group).cast(pl.String)]
        if order and order in columns:
            keys.append(_sort_key(order, session.schema, columns[order]))
        # Ties in (group, order) keep the input's order; the source's name is a key only where there are
        # several (a sort key of ~50 bytes per row, in memory, for nothing).
        keys += [pl.col(SOURCE), pl.col(SOURCE_ROW)] if len(files) > 1 else [pl.col(SOURCE_ROW)]
        tmp_cut = target.with_name(f".{GROUPED}.tmp")
        try:
            _write_cut(_sorted_runs(lf, files, session.schema, keys, group, target.parent), tmp_cut, group)
            os.replace(tmp_cut, target)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise DataValidationError(f"{partitions[0].source}: cannot group the input by '{group}' "
                                      f"({_one_line(exc)})", hint="check that the files are readable") from exc
        finally:
            tmp_cut.unlink(missing_ok=True)
            for pattern in (".csv-*.parquet", ".bucket-*.parquet", ".sorted-*.parquet"):
                for leftover in target.parent.glob(pattern):
                    leftover.unlink(missing_ok=True)
    planned = _plan_parquet([target], start=0)
    return [Partition(index=p.index, kind=p.kind, source=p.source, row_group=p.row_group,
                      row_offset=p.row_offset, rows=p.rows, fingerprint=_fingerprint(target)) for p in planned]
