"""The score flow on a grouping pipeline (the windows reference): an event log cut into 50 row groups
scores the same through `verticals score`, the flow's local workers and two Dask workers."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from flows_support import WINDOWS

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def _read(folder: Path) -> tuple[pl.DataFrame, dict]:
    import json

    parts = pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("part-*.parquet"))], how="vertical_relaxed")
    return parts.sort("machine", "time"), json.loads((folder / "_manifest.json").read_text())


def test_windows_score_alike_locally_and_on_two_dask_workers(prefect_api, flows_env, tmp_path: Path) -> None:
    from distributed import LocalCluster
    from verticals import engine
    from verticals.scoring import score
    from verticals.testing.windows import WindowsPlugin
    from verticals_flows.score import score_flow

    engine.train(WINDOWS, epochs=1, progress=False, variants=())
    # An event log (sorted by time, machines interleaved) in 50 row groups: no row group holds a machine.
    frame = WindowsPlugin(machines=9, readings=120).telemetry().frame.drop("failure")
    source = tmp_path / "log.parquet"
    pq.write_table(frame.to_arrow(), source, row_group_size=math.ceil(frame.height / 50))

    score(WINDOWS, source, tmp_path / "plain", progress=False)
    local = score_flow(pipeline=WINDOWS, input=str(source), output=str(tmp_path / "local"), workers=2,
                       return_state=True)
    assert local.is_completed(), local.message
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = score_flow(pipeline=WINDOWS, input=str(source), output=str(tmp_path / "dask"),
                          dask_address=cluster.scheduler_address, threads=1, return_state=True)
    assert dask.is_completed(), dask.message

    want, manifest = _read(tmp_path / "plain")
    machines = frame.get_column("machine").n_unique()
    short = frame.group_by("machine").len().filter(pl.col("len") < 16).get_column("len").sum()
    without = 15 * (machines - 1) + short  # each machine's first 15 readings, and the late machine's
    assert manifest["rows_in"] == frame.height == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_no_output"] == without and manifest["rows_out"] == frame.height - without == want.height
    for name in ("local", "dask"):
        rows, got = _read(tmp_path / name)
        assert rows.equals(want), name
        for key in ("rows_in", "rows_scored", "rows_rejected", "rows_out", "rows_no_output", "no_output_reasons"):
            assert got[key] == manifest[key], (name, key)
