"""Checks over a finished run's output that no single batch can make: ids that occur more than once.

Scoring never drops or merges rows, so an input with repeated ids gives output with repeated ids; a
user joining the scores back to the input then multiplies rows. The run still succeeds, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["duplicate_ids"]

EXAMPLES = 5


MAX_ROWS_ENV = "VERTICALS_DUPLICATE_CHECK_MAX_ROWS"
MAX_ROWS = 50_000_000  # hashing ids costs ~0.5-1 s per 1M rows on 2 cores: bounded by default


def max_rows() -> int:
    """Largest output checked for repeated ids: ``$VERTICALS_DUPLICATE_CHECK_MAX_ROWS`` (0: never)."""
    import os

    try:
        return int(os.environ.get(MAX_ROWS_ENV, MAX_ROWS))
    except ValueError:
        return MAX_ROWS


BUCKET_ROWS = 2_000_000
"""Output rows per pass of the check: ids are hashed into ``rows / BUCKET_ROWS`` buckets checked one at a
time, so the check's memory stays that of one bucket's hash table however large the output (one pass
over 10M distinct ids held ~0.45 GB; each pass re-reads only the id columns)."""


def duplicate_ids(files: Sequence[Path], ids: Sequence[str], *, rows: int | None = None,
                  examples: int = EXAMPLES, bucket_rows: int = BUCKET_ROWS) -> dict[str, Any]:
    """Ids occurring more than once across the part ``files``.

    Returns ``{"checked": True, "ids", "rows", "examples"}``: ``ids`` counts distinct repeated ids,
    ``rows`` the output rows carrying them, ``examples`` the first few (by value) as
    ``{column: value, "count": n}``. An output of more than :func:`max_rows` rows (``rows``) is not
    read: ``{"checked": False, "reason": ...}``. Reads the id columns only.
    """
    import polars as pl

    limit = max_rows()
    if rows is not None and rows > limit:
        return {"checked": False, "reason": f"{rows:,} output rows exceed {MAX_ROWS_ENV}={limit:,}"}
    if not files or not ids:
        return {"checked": True, "ids": 0, "rows": 0, "examples": []}
    scan = pl.scan_parquet([str(f) for f in files]).select(list(ids))
    buckets = max(1, -(-int(rows) // max(1, bucket_rows))) if rows else 1
    key = pl.col(ids[0]).hash(seed=0) if len(ids) == 1 else pl.struct(list(ids)).hash(seed=0)
    found = []
    for b in range(buckets):  # equal ids hash alike: a repeated id is repeated within its bucket
        part = scan if buckets == 1 else scan.filter(key % buckets == b)
        found.append(part.group_by(list(ids)).agg(pl.len().alias("_n")).filter(pl.col("_n") > 1)
                     .collect(engine="streaming"))
    repeated = pl.concat(found) if len(found) > 1 else found[0]
    first = repeated.sort(list(ids), nulls_last=True).head(examples)
    return {
        "checked": True,
        "ids": repeated.height,
        "rows": int(repeated["_n"].sum()) if repeated.height else 0,
        "examples": [{c: row[c] for c in ids} | {"count": row["_n"]} for row in first.iter_rows(named=True)],
    }


def describe(found: dict[str, Any], ids: Sequence[str]) -> str:
    """``3 ids occur more than once (7 rows), e.g. 17 (x3), 42 (x2)``: for the run's warnings."""
    def label(example: dict[str, Any]) -> str:
        value = example[ids[0]] if len(ids) == 1 else "/".join(f"{c}={example[c]}" for c in ids)
        return f"{value} (x{example['count']})"

    shown = ", ".join(label(e) for e in found["examples"])
    where = f"column {ids[0]!r}" if len(ids) == 1 else "columns " + ", ".join(repr(c) for c in ids)
    return (f"{found['ids']:,} id value(s) occur more than once in {where} ({found['rows']:,} output rows), "
            f"e.g. {shown}; joining the scores back to the input by id would repeat rows")
