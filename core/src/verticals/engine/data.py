"""Stages load, validate and split: the training rows, what was rejected and why, the splits."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import (
    DataValidationError,
    NotFoundError,
    PluginError,
    UserError,
    VerticalsError,
)
from verticals.fsutil import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from verticals.data.splits import Splits

from verticals.engine.common import _lookup, _stage
from verticals.engine.results import TOP_REASONS, LoadedData, ValidatedData

CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".csv.zst")


PARQUET_SUFFIXES = (".parquet", ".pq")


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
        # Every column as text, through scoring's reader: validation casts it and rejects unreadable
        # values row by row, naming them, instead of the reader failing on the first bad cell.
        return read_csv(path, csv or CsvOptions())
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
