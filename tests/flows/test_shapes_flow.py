"""The score flow on the ranking and files reference pipelines (the tabular and windows shapes have their
own flow tests): `verticals score`, the flow's local workers and two Dask workers write the same rows, and
a run killed with SIGKILL between partitions resumes to exactly the uninterrupted output."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from flows_support import FILES, RANKING, kill_group, start_slow_score_flow, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


KEYS = {RANKING: ["user"], FILES: ["path"]}


@pytest.fixture(scope="module")
def shape_inputs(flows_env, tmp_path_factory) -> dict[str, Path]:
    """Trained ranking and files models, and an input for each: an event log of new users (same
    catalogue) sorted by time in 20 row groups, and the generated image folder (two undecodable files)."""
    from verticals import engine
    from verticals.registry import get_registry
    from verticals.testing.ranking import make_interactions

    for pipeline in (RANKING, FILES):
        engine.train(pipeline, epochs=1, progress=False, variants=())
    folder = tmp_path_factory.mktemp("shapes")
    log = make_interactions(120, seed=0, start=10_000).sort("timestamp")
    source = folder / "events.parquet"
    pq.write_table(log.drop([c for c in log.columns if c not in ("user", "timestamp", "item")]).to_arrow(), source,
                   row_group_size=math.ceil(log.height / 20))
    loaded = get_registry().dataset("testfiles.images").loader()
    images = Path((loaded.collect() if isinstance(loaded, pl.LazyFrame) else loaded)["path"][0]).parent
    return {RANKING: source, FILES: images}


def _read(folder: Path, keys: list[str]) -> tuple[pl.DataFrame, dict]:
    parts = pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("part-*.parquet"))], how="vertical_relaxed")
    return parts.sort(keys).drop("model_version"), json.loads((folder / "_manifest.json").read_text())


@pytest.mark.parametrize("pipeline", [RANKING, FILES])
def test_shapes_score_alike_in_the_cli_the_flow_and_on_two_dask_workers(prefect_api, shape_inputs, pipeline,
                                                                         tmp_path: Path) -> None:
    from distributed import LocalCluster
    from verticals.scoring import score
    from verticals_flows.score import score_flow

    source = shape_inputs[pipeline]
    score(pipeline, source, tmp_path / "plain", progress=False)
    local = score_flow(pipeline=pipeline, input=str(source), output=str(tmp_path / "local"), workers=2,
                       return_state=True)
    assert local.is_completed(), local.message
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = score_flow(pipeline=pipeline, input=str(source), output=str(tmp_path / "dask"),
                          dask_address=cluster.scheduler_address, threads=1, return_state=True)
    assert dask.is_completed(), dask.message
    want, manifest = _read(tmp_path / "plain", KEYS[pipeline])
    assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_out"] == want.height > 0
    if pipeline == FILES:
        assert manifest["rows_rejected"] == 2  # the undecodable images, with their file and reason
        for rel in want["heatmap"]:
            assert (tmp_path / "plain" / rel).is_file()
    else:
        seen = pl.read_parquet(source).group_by("user").agg(pl.col("item"))
        joined = want.join(seen, on="user")
        assert all(not set(recs) & set(hist) for recs, hist in zip(joined["items"], joined["item"], strict=True))
    for name in ("local", "dask"):
        rows, got = _read(tmp_path / name, KEYS[pipeline])
        assert rows.equals(want), name
        for key in ("rows_in", "rows_scored", "rows_rejected", "rows_out", "rows_no_output"):
            assert got[key] == manifest[key], (name, key)


@pytest.mark.parametrize("pipeline", [RANKING, FILES])
def test_killed_shape_runs_resume_to_exactly_the_uninterrupted_output(prefect_api, flows_env, shape_inputs,
                                                                      pipeline, tmp_path: Path, monkeypatch) -> None:
    from verticals.scoring import grouping, partitions, score, staging_dir
    from verticals_flows.score import score_flow

    monkeypatch.setattr(grouping, "ROWS_PER_PART", 150)
    monkeypatch.setattr(partitions, "FILES_PER_PARTITION", 10)
    source = shape_inputs[pipeline]
    out = tmp_path / "resumed"
    proc = start_slow_score_flow(tmp_path, flows_env.vars, pipeline, source, out, sleep=0.4, batch_size=32,
                                 rows_per_part=150, files_per_partition=10)
    markers = staging_dir(out) / "_state"
    try:
        wait_for(lambda: len(list(markers.glob("part-*.json"))) >= 1 or proc.poll() is not None, 180,
                 "a committed partition")
    finally:
        kill_group(proc, signal.SIGKILL)
    committed = sorted(p.name for p in markers.glob("part-*.json"))
    straight = score(pipeline, source, tmp_path / "straight", batch_size=32, progress=False)
    assert 1 <= len(committed) < len(straight["parts"]), \
        f"kill came too late or the run failed: {committed} of {len(straight['parts'])} {proc.stderr.read()[-2000:]}"
    assert not out.exists(), "a killed run must not leave an output that looks finished"

    manifest = score_flow(pipeline=pipeline, input=str(source), output=str(out), batch_size=32)
    assert sum(p["reused"] for p in manifest["parts"]) >= len(committed)
    rows, got = _read(out, KEYS[pipeline])
    want, _ = _read(tmp_path / "straight", KEYS[pipeline])
    assert rows.select(pl.struct(KEYS[pipeline]).n_unique()).item() == rows.height, "duplicated rows"
    assert rows.equals(want)
    for key in ("rows_in", "rows_scored", "rows_rejected", "rows_out", "rows_no_output"):
        assert got[key] == straight[key], key
    assert not staging_dir(out).exists()
