"""Cutting scoring input into partitions and reading each one in bounded batches.

A :class:`Partition` is the unit of idempotent work and of one output part file: one Parquet row group,
one CSV file, or a chunk of a folder of other files (images) for pipelines whose schema has a
``path``-typed column. Readers are looked up by ``Partition.kind`` in :data:`READERS`, so a new input
kind (a DICOM folder, a JSON-lines file) is one planner plus one reader function.

Memory stays bounded because nothing reads more than one batch (``batch_size`` rows) of one partition
at a time: Parquet through ``ParquetFile.iter_batches`` restricted to one row group, CSV through
``pyarrow.csv.open_csv`` (streaming blocks), files by listing only.

Only the columns the model's schema names are read (a wide file with 500 extra columns costs what its
schema columns cost); the others are named once per file in a warning.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.data.files import (
    CsvOptions,
    csv_error,
    csv_header,
    csv_parse_options,
    csv_read_options,
    parquet_error,
    text_columns,
)
from verticals.errors import DataValidationError, NotFoundError, UserError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from verticals.spec import Schema

__all__ = ["READERS", "Partition", "plan_partitions", "read_partition", "source_columns"]

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv")
FILES_PER_PARTITION = 1024
CSV_BLOCK_BYTES = 4 << 20
WHOLE_ROW_GROUP_BYTES = 256 << 20  # larger row groups are read in batches (bounded memory)


@dataclass(frozen=True)
class Partition:
    """One unit of scoring work; becomes ``part-<index>.parquet`` in the output.

    Attributes:
        index: position in the plan (names the part file).
        kind: ``parquet`` (one row group), ``csv`` (one file) or ``files`` (a chunk of a folder).
        source: the file it reads (the folder, for ``files``).
        row_group: the Parquet row group, or ``None`` for an empty Parquet file.
        row_offset: number of the partition's first row within ``source`` (for ``_row`` in rejects).
        rows: row count when known before reading (Parquet metadata, file listings).
        fingerprint: size and mtime of ``source``; a recorded result is reused only if it matches.
        files: for ``files`` partitions, the file paths (relative to ``source``).
        csv: how a ``csv`` partition is read (encoding, separator); default UTF-8, ``,`` (tab for .tsv).
    """

    index: int
    kind: str
    source: Path
    row_group: int | None = None
    row_offset: int = 0
    rows: int | None = None
    fingerprint: str = ""
    files: tuple[str, ...] = field(default=(), repr=False)
    csv: CsvOptions | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        """``part-00042``: the stem of the partition's output files."""
        return f"part-{self.index:05d}"

    @property
    def key(self) -> str:
        """What the partition reads; stable across runs over the same input."""
        key = f"{self.kind}:{self.source}"
        if self.row_group is not None:
            key += f"#rg{self.row_group}"
        if self.files:
            digest = hashlib.sha256("\n".join(self.files).encode()).hexdigest()[:16]
            key += f"#files{len(self.files)}-{digest}"
        return key

    def describe(self) -> str:
        """How messages name it: ``data.parquet row group 3``."""
        if self.kind == "parquet" and self.row_group is not None:
            return f"{self.source} row group {self.row_group}"
        if self.kind == "files":
            return f"{self.source} files {self.row_offset}-{self.row_offset + len(self.files) - 1}"
        return str(self.source)


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(PARQUET_SUFFIXES)


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(CSV_SUFFIXES)


def plan_partitions(input: Path | str, *, files_per_partition: int | None = None,
                    csv: CsvOptions | None = None) -> list[Partition]:
    """The partitions of ``input``: each Parquet row group, each CSV file, or chunks of other files.

    ``input`` is a Parquet or CSV file, or a folder of them (searched recursively; names starting with
    ``.`` or ``_`` are skipped, as Spark and this tool write them). A folder holding no Parquet or CSV
    file is a file dataset (images): its files are cut into chunks of ``files_per_partition``. ``csv``
    says how CSV files are read (encoding, separator).

    Raises:
        NotFoundError: ``input`` does not exist, or a folder holds no files.
        DataValidationError: a Parquet file cannot be read (truncated, not Parquet).
    """
    root = Path(input).expanduser()
    if not root.exists():
        raise NotFoundError(f"input {root} does not exist", hint="pass a Parquet or CSV file, or a folder of them")
    if root.is_file():
        if _is_parquet(root):
            return _plan_parquet([root], start=0)
        if _is_csv(root):
            return _plan_csv([root], start=0, csv=csv)
        raise UserError(f"input {root} is neither Parquet nor CSV (by its name)",
                        hint=f"use a file ending in {', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)}, or a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p, root))
    if not files:
        raise NotFoundError(f"input folder {root} holds no files",
                            hint="point --input at the folder that holds the data files")
    tabular = [p for p in files if _is_parquet(p) or _is_csv(p)]
    if not tabular:
        return _plan_files(root, files, files_per_partition or FILES_PER_PARTITION)
    parts: list[Partition] = []
    for path in tabular:
        planned = _plan_parquet([path], start=len(parts)) if _is_parquet(path) else \
            _plan_csv([path], start=len(parts), csv=csv)
        parts.extend(planned)
    return parts


def _open_parquet(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path, memory_map=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # permissions and the like: reported as a file system error
        raise parquet_error(path, exc) from exc


def _plan_parquet(paths: list[Path], *, start: int) -> list[Partition]:
    out: list[Partition] = []
    for path in paths:
        meta = _open_parquet(path).metadata
        fp = _fingerprint(path)
        if meta.num_row_groups == 0:
            out.append(Partition(start + len(out), "parquet", path, None, 0, 0, fp))
            continue
        offset = 0
        for rg in range(meta.num_row_groups):
            rows = meta.row_group(rg).num_rows
            out.append(Partition(start + len(out), "parquet", path, rg, offset, rows, fp))
            offset += rows
    return out


def _plan_csv(paths: list[Path], *, start: int, csv: CsvOptions | None = None) -> list[Partition]:
    return [Partition(start + i, "csv", p, None, 0, None, _fingerprint(p), csv=csv) for i, p in enumerate(paths)]


def _plan_files(root: Path, files: list[Path], per: int) -> list[Partition]:
    rel = [p.relative_to(root).as_posix() for p in files]
    listing = "\n".join(f"{r}:{_fingerprint(p)}" for r, p in zip(rel, files, strict=True))
    fp = hashlib.sha256(listing.encode()).hexdigest()[:16]
    return [Partition(i, "files", root, None, start, len(rel[start:start + per]), fp, tuple(rel[start:start + per]))
            for i, start in enumerate(range(0, len(rel), per))]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- columns -----------------------------------------------------------------------------------------
def source_columns(partition: Partition) -> list[str] | None:
    """Column names of the partition's source without reading its rows (``None``: empty CSV file)."""
    if partition.kind == "parquet":
        return list(_open_parquet(partition.source).schema_arrow.names)
    if partition.kind == "csv":
        return csv_header(partition.source, partition.csv)
    return None


# -- reading -----------------------------------------------------------------------------------------
Reader = Callable[[Partition, "Schema", int], Iterator["pl.DataFrame"]]


def read_partition(partition: Partition, schema: Schema, batch_size: int) -> Iterator[pl.DataFrame]:
    """Yield the partition's rows as frames of at most ``batch_size`` rows, in order.

    Only the schema's columns that the source has are read; every value of a CSV file is read as text
    and typed by validation, so one bad cell rejects one row instead of failing the file.
    """
    try:
        reader = READERS[partition.kind]
    except KeyError:
        raise UserError(f"no reader for input kind {partition.kind!r} ({partition.describe()})",
                        hint=f"known kinds: {', '.join(sorted(READERS))}") from None
    return reader(partition, schema, batch_size)


def _wanted(names: list[str], schema: Schema) -> list[str]:
    # ``__source``/``__source_row``: where a grouped row came from (verticals.scoring.grouping).
    return [n for n in names if n in schema or n in ("__source", "__source_row")]


def _read_parquet(partition: Partition, schema: Schema, batch_size: int) -> Iterator[pl.DataFrame]:
    import polars as pl
    import pyarrow as pa

    if partition.row_group is None:
        return
    pf = _open_parquet(partition.source)
    columns = _wanted(list(pf.schema_arrow.names), schema)
    try:
        if os.environ.get("VERTICALS_PARQUET_READER") == "polars" and partition.rows:
            # polars' native reader, for comparison in bench/ (same rows: the row group's slice)
            frame = pl.scan_parquet(partition.source).select(columns).slice(partition.row_offset, partition.rows) \
                .collect()
            for start in range(0, frame.height, batch_size):
                yield frame.slice(start, batch_size)
            return
        if pf.metadata.row_group(partition.row_group).total_byte_size <= WHOLE_ROW_GROUP_BYTES:
            # Decoding a whole row group at once is ~1.5x faster than iter_batches' re-chunking; the
            # row group's size is fixed by the file, not by how many rows the input has.
            frame = pl.from_arrow(pf.read_row_group(partition.row_group, columns=columns, use_threads=True))
            for start in range(0, frame.height, batch_size):  # type: ignore[union-attr]
                yield frame.slice(start, batch_size)  # type: ignore[union-attr]
            return
        for record_batch in pf.iter_batches(batch_size=batch_size, row_groups=[partition.row_group],
                                            columns=columns, use_threads=True):
            yield pl.from_arrow(record_batch)  # type: ignore[misc]
    except (pa.ArrowException, OSError, pl.exceptions.PolarsError) as exc:
        raise DataValidationError(f"{partition.describe()}: cannot read Parquet data ({_one_line(exc)})",
                                  hint="the file is damaged or truncated; rewrite it") from exc


def _read_csv(partition: Partition, schema: Schema, batch_size: int) -> Iterator[pl.DataFrame]:
    import polars as pl
    import pyarrow as pa
    import pyarrow.csv as pacsv

    csv = partition.csv or CsvOptions()
    names = csv_header(partition.source, csv)
    if names is None:  # an empty file: no header, no rows
        return
    columns = _wanted(names, schema)
    try:
        reader = pacsv.open_csv(
            partition.source,
            read_options=csv_read_options(csv, CSV_BLOCK_BYTES, use_threads=True),
            parse_options=csv_parse_options(partition.source, csv),
            convert_options=text_columns(columns),
        )
        pending: list[Any] = []  # record batches not yet handed out
        held = 0
        for block in reader:
            pending.append(block)
            held += block.num_rows
            while held >= batch_size:
                table = pa.Table.from_batches(pending)
                yield pl.from_arrow(table.slice(0, batch_size))  # type: ignore[misc]
                rest = table.slice(batch_size)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            yield pl.from_arrow(pa.Table.from_batches(pending))  # type: ignore[misc]
    except (pa.ArrowException, OSError, UnicodeDecodeError, pl.exceptions.PolarsError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # permissions and the like: reported as a file system error
        raise csv_error(partition.source, exc, csv) from exc


def _read_files(partition: Partition, schema: Schema, batch_size: int) -> Iterator[pl.DataFrame]:
    import polars as pl

    path_columns = [c.name for c in schema if c.dtype == "path"]
    if not path_columns:
        raise DataValidationError(
            f"{partition.source}: a folder of non-tabular files, but the model's schema has no path column",
            hint="pass a Parquet or CSV file, or use a pipeline that scores files (images)")
    paths = [os.path.join(partition.source, f) for f in partition.files]
    for start in range(0, len(paths), batch_size):
        yield pl.DataFrame({path_columns[0]: paths[start:start + batch_size]})


READERS: dict[str, Reader] = {"parquet": _read_parquet, "csv": _read_csv, "files": _read_files}
