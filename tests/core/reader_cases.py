"""Bad input as data: one table of cases for every reader, each with the outcome a user must get.

A case writes one input file (``make(folder) -> path``) and states its outcome:

* ``error``: the run stops with a :class:`~verticals.errors.VerticalsError` whose one-line message
  matches ``match``, and leaves nothing that looks like output;
* ``rejects``: the run completes; exactly ``rejected`` rows are in the rejects with a reason matching
  ``match``, the others are scored;
* ``scored``: the run completes with every row scored (``flagged`` of them flagged).

Readers: ``score`` (``verticals score`` on Parquet and CSV files) and ``train`` (the training reader of
``verticals train --data``, up to validation). Readers still to come (DICOM and image files,
interaction and telemetry files) add their rows here and a runner in ``RUNNERS`` of the test module:
the table, not the test code, is what grows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scoring_support import make_rows


@dataclass(frozen=True)
class Case:
    reader: str  # "score" or "train"
    name: str
    make: Callable[[Path], Path]
    expect: str  # "error" | "rejects" | "scored"
    match: str = ""  # regex: the error message, or every reject reason
    rejected: int = 0
    flagged: int | None = None

    @property
    def id(self) -> str:
        return f"{self.reader}-{self.name}"


ROWS = 40


def _parquet(frame: pl.DataFrame, name: str = "in.parquet", row_group: int = 1000) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        frame.write_parquet(path, row_group_size=row_group)
        return path

    return make


def _csv(text: str | bytes, name: str = "in.csv") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return path

    return make


def _bytes(data: bytes, name: str) -> Callable[[Path], Path]:
    return _csv(data, name)


def _mangled_parquet(cut: float) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "in.parquet"
        make_rows(3000).write_parquet(path, row_group_size=3000)
        blob = path.read_bytes()
        path.write_bytes(blob[: int(len(blob) * cut)])
        return path

    return make


def _damaged_page_header(folder: Path) -> Path:
    """Garbage over the first data page header of column x1 (the footer intact)."""
    import pyarrow.parquet as pq

    path = folder / "in.parquet"
    make_rows(3000).write_parquet(path, row_group_size=3000)
    start = pq.ParquetFile(path).metadata.row_group(0).column(1).data_page_offset
    blob = bytearray(path.read_bytes())
    blob[start:start + 64] = b"\xff" * 64
    path.write_bytes(bytes(blob))
    return path


def _with(frame: pl.DataFrame, **columns: object) -> pl.DataFrame:
    return frame.with_columns(**columns)


def _text_rows() -> str:
    return make_rows(ROWS).write_csv()


_clean = make_rows(ROWS)
_clean_csv = _text_rows()
_header = _clean_csv.splitlines()[0]
_x3 = np.array(_clean["x3"].to_list())
_x3_bad = _x3.copy()
_x3_bad[[2, 7]] = [np.nan, np.inf]
_x3_range = _x3.copy()
_x3_range[[1, 3, 5]] = [11.0, -11.0, 1e300]
_x4_null = [None if i % 10 == 0 else float(v) for i, v in enumerate(_clean["x4"].to_list())]
_kind = ["k3" if i in (0, 9) else v for i, v in enumerate(_clean["kind"].to_list())]
_cat_unicode = ["é" if i == 1 else "🦜\u200b" if i == 2 else "\u202e" if i == 3 else v
                for i, v in enumerate(_clean["cat"].to_list())]
_cat_huge = ["x" * 1_000_000 if i == 4 else v for i, v in enumerate(_clean["cat"].to_list())]

CASES: list[Case] = [
    # -- Parquet, scoring -------------------------------------------------------------------------------
    Case("score", "parquet-truncated", _mangled_parquet(cut=0.5), "error", r"in\.parquet: cannot read as Parquet"),
    Case("score", "parquet-footer-only", _mangled_parquet(cut=0.02), "error", r"in\.parquet: cannot read as Parquet"),
    Case("score", "parquet-damaged-page-header", _damaged_page_header, "error",
         r"in\.parquet row group 0: cannot read Parquet data"),
    Case("score", "parquet-not-parquet", _bytes(b"id,x1\n1,2\n", "in.parquet"), "error",
         r"in\.parquet: cannot read as Parquet"),
    Case("score", "parquet-empty-file", _bytes(b"", "in.parquet"), "error", r"in\.parquet: cannot read as Parquet"),
    Case("score", "parquet-zero-rows", _parquet(make_rows(0)), "scored", flagged=0),
    Case("score", "parquet-missing-column", _parquet(_clean.drop("x3")), "error",
         r"in\.parquet: missing required column\(s\) 'x3'"),
    Case("score", "parquet-list-column", _parquet(_with(_clean, x2=pl.col("x2").map_elements(
        lambda v: [v], return_dtype=pl.List(pl.Float64)))), "error", r"column 'x2' has type List\(Float64\)"),
    Case("score", "parquet-struct-column", _parquet(_with(_clean, x1=pl.struct(pl.col("x1"), pl.col("x2")))),
         "error", r"column 'x1' has type Struct"),
    Case("score", "parquet-text-in-numbers", _parquet(_with(_clean, x1=pl.when(pl.col("id") < 3).then(pl.lit("abc"))
                                                            .otherwise(pl.col("x1").cast(pl.String)))),
         "rejects", r"column 'x1': cannot read abc as float", rejected=3),
    Case("score", "parquet-nan-inf-in-reject-column", _parquet(_with(_clean, x3=pl.Series(_x3_bad))), "rejects",
         r"column 'x3'", rejected=1),  # NaN is a missing value (imputed); inf is out of range (rejected)
    Case("score", "parquet-out-of-range", _parquet(_with(_clean, x3=pl.Series(_x3_range))), "rejects",
         r"column 'x3' = .* is outside \[-10(\.0)?, 10(\.0)?\]", rejected=3),
    Case("score", "parquet-null-required", _parquet(_with(_clean, x4=pl.Series(_x4_null, dtype=pl.Float64))),
         "rejects", r"column 'x4' is missing", rejected=4),
    Case("score", "parquet-unknown-category", _parquet(_with(_clean, kind=pl.Series(_kind))), "rejects",
         r"column 'kind' has unknown category 'k3'", rejected=2),
    Case("score", "parquet-unicode-categories", _parquet(_with(_clean, cat=pl.Series(_cat_unicode))), "scored",
         flagged=3),
    Case("score", "parquet-huge-string", _parquet(_with(_clean, cat=pl.Series(_cat_huge))), "scored", flagged=1),
    Case("score", "parquet-int-overflow", _parquet(_with(_clean, x5=pl.when(pl.col("id") == 0)
                                                         .then(pl.lit(2**63 - 1)).otherwise(pl.col("x5")))),
         "scored", flagged=1),  # scored, clipped and flagged out_of_training_range
    Case("score", "parquet-all-null-column", _parquet(_with(_clean, x1=pl.lit(None, dtype=pl.Float64))), "scored",
         flagged=0),
    # -- CSV, scoring -----------------------------------------------------------------------------------
    Case("score", "csv-short-row", _csv(_clean_csv + "1,2,3\n"), "error",
         r"in\.csv: line 42 has 3 fields but the header has 9"),
    Case("score", "csv-long-row", _csv(_clean_csv + "1,2,3,4,5,6,7,8,9,10,11\n"), "error",
         r"in\.csv: line 42 has 11 fields but the header has 9"),
    Case("score", "csv-empty-file", _csv(""), "scored", flagged=0),
    Case("score", "csv-header-only", _csv(_header + "\n"), "scored", flagged=0),
    Case("score", "csv-missing-column", _csv(make_rows(ROWS).drop("x4").write_csv()), "error",
         r"in\.csv: missing required column\(s\) 'x4'"),
    Case("score", "csv-text-in-numbers", _csv(_header + "\n" + "7,abc,1,1,1,1,a,k1,0\n"), "rejects",
         r"column 'x1': cannot read abc as float", rejected=1),
    Case("score", "csv-latin1-bytes", _csv(_clean_csv.encode() + b"8,1,1,1,1,1,caf\xe9,k1,0\n"), "error",
         r"in\.csv: not valid UTF-8 text .*--encoding latin-1"),
    Case("score", "csv-bom", _csv(b"\xef\xbb\xbf" + _clean_csv.encode()), "scored", flagged=0),
    Case("score", "csv-unbalanced-quote", _csv(_clean_csv + '9,"1,1,1,1,1,a,k1,0\n'), "error",
         r"in\.csv: line 42 has \d+ fields but the header has 9 .*unclosed quote"),
    Case("score", "csv-nul-byte", _csv(_clean_csv.encode() + b"10,1,1,1,1,1,a\x00b,k1,0\n"), "scored", flagged=1),
    Case("score", "csv-missing-value-spellings", _csv(_header + "\n" + "\n".join(
        f"{i},{m},1,1,1,1,a,k1,0" for i, m in enumerate(["", "NA", "NaN", "null", "N/A"])) + "\n"), "scored",
         flagged=0),
    Case("score", "csv-inf-spellings", _csv(_header + "\n" + "\n".join(
        f"{i},1,1,{m},1,1,a,k1,0" for i, m in enumerate(["inf", "-inf", "Infinity"])) + "\n"), "rejects",
         r"column 'x3'", rejected=3),
    Case("score", "csv-duplicate-header", _csv(_header + ",x1\n" + "1,1,1,1,1,1,a,k1,0,5\n"), "error",
         r"in\.csv: column\(s\) 'x1' appear more than once in the header"),
    # -- training reader ---------------------------------------------------------------------------------
    Case("train", "parquet-truncated", _mangled_parquet(cut=0.5), "error", r"in\.parquet: cannot read as Parquet"),
    Case("train", "parquet-empty-file", _bytes(b"", "in.parquet"), "error", r"in\.parquet: cannot read as Parquet"),
    Case("train", "parquet-not-parquet", _bytes(b"id,x1\n1,2\n", "in.parquet"), "error",
         r"in\.parquet: cannot read as Parquet"),
    # training reads CSV with scoring's reader: the same file fails, or passes, the same way
    Case("train", "csv-short-row", _csv(make_rows(ROWS).write_csv() + "1,2,3\n"), "error",
         r"in\.csv: line \d+ has 3 fields but the header has 9"),
    Case("train", "csv-long-row", _csv(make_rows(ROWS).write_csv() + "1,2,3,4,5,6,7,8,9,10,11\n"), "error",
         r"in\.csv: line \d+ has 11 fields but the header has 9"),
    Case("train", "csv-unbalanced-quote", _csv(make_rows(ROWS).write_csv() + '9,"1,1,1,1,1,a,k1,0\n'), "error",
         r"in\.csv: line \d+ has \d+ fields but the header has 9 .*unclosed quote"),
    Case("train", "csv-duplicate-header", _csv(_header + ",x1\n" + "1,1,1,1,1,1,a,k1,0,5\n"), "error",
         r"in\.csv: column\(s\) 'x1' appear more than once in the header"),
    Case("train", "csv-latin1-bytes", _csv(make_rows(ROWS).write_csv().encode() + b"8,1,1,1,1,1,caf\xe9,k1,0\n"),
         "error", r"in\.csv: not valid UTF-8 text"),
    Case("train", "csv-missing-column", _csv(make_rows(ROWS).drop("x4").write_csv()), "error",
         r"missing required column.*'x4'"),
    Case("train", "csv-bad-label", _csv(make_rows(ROWS).write_csv() + "99,1,1,1,1,1,a,k1,7\n"), "rejects",
         r"target 'y' has unexpected label '7(\.0)?'", rejected=1),
    Case("train", "csv-label-not-a-number", _csv(make_rows(ROWS).write_csv() + "99,1,1,1,1,1,a,k1,maybe\n"),
         "rejects", r"column 'y': cannot read maybe as int", rejected=1),
    Case("train", "csv-text-in-numbers", _csv(make_rows(ROWS).write_csv() + "98,abc,1,1,1,1,a,k1,1\n"), "rejects",
         r"column 'x1': cannot read abc as float", rejected=1),
    Case("train", "csv-every-row-bad", _csv(_header + "\n" + "1,1,1,99,1,1,a,k1,0\n"), "error",
         r"all 1 training rows were rejected"),
]
