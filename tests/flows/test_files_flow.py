"""The score flow on a folder of images (the files reference pipeline): in local threads and on a 2-worker
Dask cluster it writes what ``verticals score`` writes — the same rows, the same rejected files with
their reasons, and each part's heat maps committed with that part, byte for byte."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import polars as pl
import pytest
from flows_support import FILES_PIPELINE

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def _read(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(rows sorted by path with each heat map's bytes, rejects sorted by path, manifest); checks that
    every heat map lies in its own part's folder and that no other file is there."""
    rows = []
    for part in sorted(folder.glob("part-*.parquet")):
        frame = pl.read_parquet(part)
        assert all(h.startswith(f"{part.stem}/") for h in frame["heatmap"]), part
        rows.append(frame.with_columns(pl.col("heatmap").map_elements(lambda h: (folder / h).read_bytes(),
                                                                      return_dtype=pl.Binary)))
    table = pl.concat(rows).sort("path")
    assert len(list(folder.rglob("*.png"))) == table.height
    rejects = pl.read_parquet(folder / "_rejects.parquet").sort("path")
    return table, rejects, json.loads((folder / "_manifest.json").read_text())


def test_flow_scores_a_folder_of_images_like_verticals_score(prefect_api, flows_env, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import verticals.scoring
    from distributed import Client, LocalCluster
    from verticals import engine
    from verticals.scoring import partitions, run, score
    from verticals.testing.files import make_images
    from verticals_flows.score import score_flow

    engine.train(FILES_PIPELINE, epochs=1, progress=False, variants=())
    inbox = flows_env.data / "images"
    make_images(inbox, 30, seed=8, corrupt=2)
    cut = functools.partial(partitions.plan_partitions, files_per_partition=8)  # 4 partitions
    monkeypatch.setattr(verticals.scoring, "plan_partitions", cut)
    monkeypatch.setattr(run, "plan_partitions", cut)

    score(FILES_PIPELINE, inbox, tmp_path / "plain", progress=False)
    want_rows, want_rejects, want = _read(tmp_path / "plain")
    assert want["rows_in"] == 30 and want["rows_rejected"] == 2 and want["rows_out"] == 28
    assert len(want["parts"]) == 4
    assert all(r.startswith(f"cannot decode image file {p}: ") for p, r in want_rejects.select("path", "_reason").iter_rows())

    state = score_flow(pipeline=FILES_PIPELINE, input=str(inbox), output=str(tmp_path / "local"), workers=2,
                       return_state=True)
    assert state.is_completed(), state.message
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask_state = score_flow(pipeline=FILES_PIPELINE, input=str(inbox), output=str(tmp_path / "dask"),
                                dask_address=cluster.scheduler_address, threads=1, return_state=True)
        with Client(cluster) as client:
            opened = client.run(lambda: len(__import__("verticals_flows.score").score._SESSIONS))
    assert dask_state.is_completed(), dask_state.message
    assert sum(opened.values()) >= 1, "no Dask worker opened a scoring session: partitions did not run there"
    for name in ("local", "dask"):
        rows, rejects, manifest = _read(tmp_path / name)
        assert rows.equals(want_rows), name
        assert rejects.select("path", "_reason").equals(want_rejects.select("path", "_reason")), name
        for key in ("rows_in", "rows_scored", "rows_rejected", "rows_out"):
            assert manifest[key] == want[key], (name, key)
        assert [p["side_outputs"] for p in manifest["parts"]] == [p["side_outputs"] for p in want["parts"]]
