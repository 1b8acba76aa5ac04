"""Batch scoring with ONNX Runtime: Parquet/CSV in, Parquet parts + rejects + manifest out.

``score()`` is the whole run; the Prefect score flow uses its building blocks to spread partitions over
workers and resume after failures::

    partitions = plan_partitions(input)                       # a file, or a Parquet row group, each
    session = ScoringSession.open(pipeline, model, device, batch_size)
    staging = prepare_staging(session, partitions, output)    # staging_dir(output), reused when it matches
    partitions = grouped_partitions(session, partitions, staging)  # whole groups per partition, if grouping
    results = [score_partition(session, p, staging) for p in partitions]   # idempotent, atomic
    manifest = finalize(session, staging, output, results, overwrite=False, started=t0, input=input)

Nothing in this package imports torch; onnxruntime, polars and pyarrow are imported when used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PartResult",
    "Partition",
    "ScoringSession",
    "check_sources",
    "finalize",
    "grouped_partitions",
    "plan_partitions",
    "prepare_staging",
    "score",
    "score_partition",
    "score_partitions",
    "staging_dir",
]

_WHERE = {
    "PartResult": "output", "finalize": "output", "prepare_staging": "output", "staging_dir": "output",
    "Partition": "partitions", "plan_partitions": "partitions",
    "ScoringSession": "session",
    "grouped_partitions": "grouping",
    "check_sources": "run", "score": "run", "score_partition": "run", "score_partitions": "run",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (keeps ``import verticals.scoring`` cheap)."""
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"verticals.scoring.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'verticals.scoring' has no attribute {name!r}")
