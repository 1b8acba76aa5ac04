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


def duplicate_ids(files: Sequence[Path], ids: Sequence[str], *, examples: int = EXAMPLES) -> dict[str, Any] | None:
    """Ids occurring more than once across the part ``files``: ``{"ids", "rows", "examples"}`` or None.

    ``ids`` counts distinct repeated ids, ``rows`` the output rows carrying them; ``examples`` shows the
    first few (by value) as ``{column: value}``. Streams the id columns only (polars' streaming engine).
    """
    import polars as pl

    if not files or not ids:
        return None
    scan = pl.scan_parquet([str(f) for f in files]).select(list(ids))
    repeated = (scan.group_by(list(ids)).agg(pl.len().alias("_n")).filter(pl.col("_n") > 1)
                .collect(engine="streaming"))
    if repeated.height == 0:
        return None
    first = repeated.sort(list(ids), nulls_last=True).head(examples)
    return {
        "ids": repeated.height,
        "rows": int(repeated["_n"].sum()),
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
