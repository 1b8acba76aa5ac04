"""The score flow: same output as `verticals score`, locally and on a Dask cluster, and exactly the same
output after a run is killed (SIGKILL) partway and run again."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from flows_support import PIPELINE, kill_group, read_output, start_slow_score_flow, wait_for
from verticals.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def _artifacts(flow_run_id) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found}


def test_local_and_dask_runs_write_what_verticals_score_writes(prefect_api, trained, batch, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster
    from verticals.scoring import score
    from verticals_flows import score as score_module
    from verticals_flows.score import score_flow

    plain = score(PIPELINE, batch, tmp_path / "plain", progress=False)
    state = score_flow(pipeline=PIPELINE, input=str(batch), output=str(tmp_path / "local"), workers=2,
                       return_state=True)
    assert state.is_completed(), state.message
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask_state = score_flow(pipeline=PIPELINE, input=str(batch), output=str(tmp_path / "dask"),
                                dask_address=cluster.scheduler_address, threads=1, return_state=True)
        with Client(cluster) as client:
            opened = client.run(lambda: len(__import__("verticals_flows.score").score._SESSIONS))
    assert dask_state.is_completed(), dask_state.message
    assert sum(opened.values()) >= 1, "no Dask worker opened a scoring session: partitions did not run there"
    assert not score_module._SESSIONS, "the flow's process kept sessions open after the runs"

    want_rows, want_rejects, want = read_output(tmp_path / "plain")
    assert want["rows_in"] == 4000 and want["rows_rejected"] == 5 and len(want["parts"]) == 8
    for name in ("local", "dask"):
        rows, rejects, manifest = read_output(tmp_path / name)
        assert rows.equals(want_rows), name
        assert rejects.equals(want_rejects), name
        for key in ("rows_in", "rows_scored", "rows_rejected", "model_version", "pipeline"):
            assert manifest[key] == want[key], (name, key)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert plain["rows_scored"] == want["rows_scored"]

    found = _artifacts(state.state_details.flow_run_id)
    table = json.loads(found["verticals-score-testref-mlp-rows"].data)
    assert [r["part"] for r in table] == [f"part-{i:05d}" for i in range(8)] + ["total"]
    assert table[-1]["rows_in"] == 4000 and table[-1]["rows_rejected"] == 5
    assert all(r["rows_in"] == r["rows_scored"] + r["rows_rejected"] for r in table)
    assert [r["reads"] for r in table[:-1]] == [f"batch.parquet rg {i}" for i in range(8)]
    assert all(not isinstance(v, (list, dict)) for r in table for v in r.values())
    summary = found["verticals-score-testref-mlp-summary"].data
    assert str(tmp_path / "local") in summary and "| parts | 8 (0 resumed from an earlier run) |" in summary


def _runs_into(out: Path) -> list:
    """The score flow runs whose output parameter is ``out``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["verticals-score"])), limit=200)
    return [r for r in runs if (r.parameters or {}).get("output") == str(out)]




def test_killed_run_resumes_to_exactly_the_uninterrupted_output(prefect_api, flows_env, trained, batch,
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from verticals.scoring import staging_dir
    from verticals_flows.score import score_flow

    out = tmp_path / "resumed"
    proc = start_slow_score_flow(tmp_path, flows_env.vars, PIPELINE, batch, out, sleep=0.15, batch_size=100)
    markers = staging_dir(out) / "_state"
    try:
        wait_for(lambda: len(list(markers.glob("part-*.json"))) >= 2 or proc.poll() is not None, 180,
                 "two committed partitions")
    finally:
        kill_group(proc, signal.SIGKILL)
    committed = sorted(p.name for p in markers.glob("part-*.json"))
    assert 2 <= len(committed) < 8, f"kill came too late or the run failed: {committed} {proc.stderr.read()[-2000:]}"
    assert not out.exists(), "a killed run must not leave an output that looks finished"

    killed = _runs_into(out)
    assert [r.state.type.value for r in killed] == ["RUNNING"], "the killed run should still look Running"

    state = score_flow(pipeline=PIPELINE, input=str(batch), output=str(out), batch_size=100, return_state=True)
    manifest = state.result()
    reused = [p["file"] for p in manifest["parts"] if p["reused"]]
    assert len(reused) >= len(committed), (reused, committed)
    # The resuming run proved the killed one dead (it holds the output's lock) and marked it Crashed.
    after = {str(r.id): r.state for r in _runs_into(out)}
    assert after[str(killed[0].id)].type.value == "CRASHED"
    assert str(state.state_details.flow_run_id) in after[str(killed[0].id)].message
    assert after[str(state.state_details.flow_run_id)].type.value == "COMPLETED"
    capsys.readouterr()
    main(["run", "score", PIPELINE, "--input", str(batch), "--output", str(tmp_path / "straight"), "--json"])
    uninterrupted = json.loads(capsys.readouterr().out)

    rows, rejects, got = read_output(out)
    want_rows, want_rejects, want = read_output(tmp_path / "straight")
    assert rows.height == want_rows.height == 4000 - 5
    assert rows["row_id"].n_unique() == rows.height, "duplicated rows"
    assert rows.equals(want_rows), "resumed output differs from an uninterrupted run"
    assert rejects.equals(want_rejects)
    for key in ("rows_in", "rows_scored", "rows_rejected", "rows_out"):
        assert got[key] == want[key] == uninterrupted[key], key
    assert not staging_dir(out).exists()


def test_a_dead_run_of_any_flow_is_marked_crashed_by_the_next_run(prefect_api, flows_env) -> None:
    """Runs hold a lock file while they execute; the next run marks a 'Running' one whose lock is free."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Running
    from verticals_flows import crashed
    from verticals_flows.train import train_flow

    with get_client(sync_client=True) as client:
        dead = client.create_flow_run(train_flow, parameters={"pipeline": PIPELINE}, state=Running())
        alive = client.create_flow_run(train_flow, parameters={"pipeline": PIPELINE}, state=Running())
    locks = flows_env.prefect_home / "verticals-runs"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / f"{dead.id}.lock").touch()  # what a SIGKILLed run leaves: the file, no holder
    with crashed.run_lock(alive.id):  # a live run holds its lock
        marked = crashed.mark_dead_runs("train", current="the-next-run")
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(dead.id).state.type.value == "CRASHED"
        assert "the-next-run" in client.read_flow_run(dead.id).state.message
        assert client.read_flow_run(alive.id).state.type.value == "RUNNING"
        client.set_flow_run_state(alive.id, Cancelled(), force=True)
    assert marked == [str(dead.id)]
    assert not (locks / f"{dead.id}.lock").exists() and not (locks / f"{alive.id}.lock").exists()


def test_run_into_an_existing_output_is_one_line_without_traceback(prefect_api, flows_env, trained, batch,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    proc = flows_env.cli("run", "score", PIPELINE, "--input", str(batch), "--output", str(out), check=False)
    assert proc.returncode == 2, proc.stderr
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "Still processing" not in text, text
    assert proc.stderr.strip().splitlines()[-1] == (f"error: output {out} already exists (fix: choose a new "
                                                    "folder or pass --overwrite)")
    assert (out / "keep.txt").read_text() == "x"
