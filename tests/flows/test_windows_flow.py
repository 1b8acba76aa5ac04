"""The score flow on a grouping pipeline (the windows reference): an event log cut into 50 row groups
scores the same through `verticals score`, the flow's local workers and two Dask workers, and a run
killed with SIGKILL resumes to exactly the uninterrupted output."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from flows_support import WINDOWS, kill_group, start_slow_score_flow, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

PART_ROWS = 250  # about two machines per grouped partition


@pytest.fixture(scope="module")
def event_log(flows_env, tmp_path_factory) -> Path:
    """A trained windows model, and its telemetry as an event log in 50 row groups (no row group holds a
    whole machine)."""
    from verticals import engine
    from verticals.testing.windows import WindowsPlugin

    engine.train(WINDOWS, epochs=1, progress=False, variants=())
    frame = WindowsPlugin(machines=9, readings=120).telemetry().frame.drop("failure")
    source = tmp_path_factory.mktemp("windows") / "log.parquet"
    pq.write_table(frame.to_arrow(), source, row_group_size=math.ceil(frame.height / 50))
    return source


def _read(folder: Path) -> tuple[pl.DataFrame, dict]:
    import json

    parts = pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("part-*.parquet"))], how="vertical_relaxed")
    return parts.sort("machine", "time"), json.loads((folder / "_manifest.json").read_text())


def test_windows_score_alike_locally_and_on_two_dask_workers(prefect_api, event_log, tmp_path: Path) -> None:
    from distributed import LocalCluster
    from verticals.scoring import score
    from verticals_flows.score import score_flow

    source = event_log
    frame = pl.read_parquet(source)
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


def test_killed_windows_run_resumes_to_exactly_the_uninterrupted_output(prefect_api, flows_env, event_log,
                                                                        tmp_path: Path, monkeypatch) -> None:
    from verticals.scoring import grouping, score, staging_dir
    from verticals_flows.score import score_flow

    monkeypatch.setattr(grouping, "ROWS_PER_PART", PART_ROWS)
    out = tmp_path / "resumed"
    proc = start_slow_score_flow(tmp_path, flows_env.vars, WINDOWS, event_log, out, sleep=0.3, batch_size=64,
                                 rows_per_part=PART_ROWS)
    markers = staging_dir(out) / "_state"
    try:
        wait_for(lambda: len(list(markers.glob("part-*.json"))) >= 1 or proc.poll() is not None, 180,
                 "a committed partition")
    finally:
        kill_group(proc, signal.SIGKILL)
    committed = sorted(p.name for p in markers.glob("part-*.json"))
    straight = score(WINDOWS, event_log, tmp_path / "straight", batch_size=64, progress=False)
    assert 1 <= len(committed) < len(straight["parts"]), \
        f"kill came too late or the run failed: {committed} of {len(straight['parts'])} {proc.stderr.read()[-2000:]}"
    assert not out.exists(), "a killed run must not leave an output that looks finished"

    manifest = score_flow(pipeline=WINDOWS, input=str(event_log), output=str(out), batch_size=64)
    assert sum(p["reused"] for p in manifest["parts"]) >= len(committed)
    rows, got = _read(out)
    want, _ = _read(tmp_path / "straight")
    assert rows.select(pl.struct("machine", "time").n_unique()).item() == rows.height, "duplicated windows"
    assert rows.drop("model_version").equals(want.drop("model_version"))
    for key in ("rows_in", "rows_scored", "rows_rejected", "rows_out", "rows_no_output", "no_output_reasons"):
        assert got[key] == straight[key], key
    assert not staging_dir(out).exists()
