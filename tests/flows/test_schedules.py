"""Scheduling against a real Prefect server: `verticals schedule` creates a deployment whose scheduled runs
follow the cron string, a real worker executes a triggered run of it, `verticals unschedule` removes it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flows_support import PIPELINE, VERTICALS, kill_group, read_output, wait_for
from verticals.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

DEPLOYMENT = f"verticals-score/{PIPELINE}"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    main(list(args))
    return capsys.readouterr().out


def _scheduled_runs(deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=50)


def _at(runs: list, tz: str) -> set[tuple[int, int]]:
    return {(r.expected_start_time.astimezone(ZoneInfo(tz)).hour, r.expected_start_time.astimezone(ZoneInfo(tz)).minute)
            for r in runs}


def test_schedule_trigger_worker_unschedule(prefect_api, flows_env, trained, batch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # The worker starts first: its start-up (two Python processes importing Prefect) overlaps the checks.
    log = tmp_path / "worker.log"
    with open(log, "wb") as sink:
        worker = subprocess.Popen([VERTICALS, "worker"], start_new_session=True, stdout=sink,
                                  stderr=subprocess.STDOUT, env={**os.environ, **flows_env.vars})
    try:
        _check_schedule_and_run(flows_env, batch, tmp_path, capsys, worker, log)
    finally:
        kill_group(worker)


def _check_schedule_and_run(flows_env, batch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            worker: subprocess.Popen, log: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    made = json.loads(_cli(capsys, "schedule", PIPELINE, "--flow", "score", "--cron", "30 3 * * *",
                           "--timezone", "Europe/Paris", "--input", str(batch), "--output",
                           str(tmp_path / "scores-{date}"), "--json"))
    assert made["name"] == DEPLOYMENT and made["parameters"]["input"] == str(batch)
    assert made["parameters"]["home"] == str(flows_env.home)

    # The server's scheduler creates the upcoming runs, every one at 03:30 Paris time.
    runs = wait_for(lambda: _scheduled_runs(made["id"]), 60, "scheduled runs of the deployment")
    assert _at(runs, "Europe/Paris") == {(3, 30)}
    listed = json.loads(_cli(capsys, "schedules", "--json"))
    assert [r["name"] for r in listed] == [DEPLOYMENT]
    assert listed[0]["cron"] == "30 3 * * *" and listed[0]["timezone"] == "Europe/Paris"
    assert listed[0]["next_run"] == runs[0].expected_start_time.isoformat()
    assert DEPLOYMENT in _cli(capsys, "schedules")

    # A run triggered now is executed by a real worker polling the work pool.
    run = run_deployment(DEPLOYMENT, timeout=0)

    def finished():
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run.id).state
        return state if state.is_final() or worker.poll() is not None else None

    state = wait_for(finished, 240, "the worker to finish the triggered run", interval=0.5)
    if not state.is_completed():
        kill_group(worker)
        raise AssertionError(f"{state.name}: {state.message}\n{log.read_text()[-3000:]}")
    out = tmp_path / f"scores-{run.expected_start_time.strftime('%Y-%m-%d')}"
    rows, rejects, manifest = read_output(out)
    assert manifest["rows_in"] == 4000 and rows.height == manifest["rows_scored"] == 4000 - 5
    assert rejects.height == 5
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))}
    assert {"verticals-score-testref-mlp-rows", "verticals-score-testref-mlp-summary",
            "verticals-score-testref-mlp-output"} <= keys

    # Scheduling again updates the deployment: its runs move to the new time.
    again = json.loads(_cli(capsys, "schedule", PIPELINE, "--flow", "score", "--cron", "15 4 * * *",
                            "--input", str(batch), "--output", str(tmp_path / "scores-{date}"), "--json"))
    assert again["id"] == made["id"]
    wait_for(lambda: _at(_scheduled_runs(made["id"]), "UTC") == {(4, 15)}, 60, "rescheduled runs at 04:15 UTC")

    assert f"removed schedule {DEPLOYMENT}" in _cli(capsys, "unschedule", PIPELINE, "--flow", "score")
    assert json.loads(_cli(capsys, "schedules", "--json")) == []
    assert _scheduled_runs(made["id"]) == []
    with pytest.raises(SystemExit) as exc:
        main(["unschedule", PIPELINE, "--flow", "score"])
    assert exc.value.code == 2


def test_prefect_yaml_declares_the_standard_deployments(prefect_api, flows_env, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`prefect deploy --all` with the shipped prefect.yaml makes the schedules `verticals schedules` lists."""
    import sys

    from verticals_flows import PREFECT_YAML
    from verticals_flows.deployments import ensure_work_pool

    ensure_work_pool("verticals")  # what `verticals worker` does first; `prefect deploy` needs the pool
    env = {**os.environ, **flows_env.vars, "VERTICALS_SCORE_INPUT": str(tmp_path / "in"),
           "VERTICALS_SCORE_OUTPUT": str(tmp_path / "out")}
    proc = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file",
                           str(PREFECT_YAML)], capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    listed = {r["name"]: r for r in json.loads(_cli(capsys, "schedules", "--json"))}
    assert set(listed) == {f"verticals-{flow}/finance.credit_risk" for flow in ("train", "score", "monitor")}
    score = listed["verticals-score/finance.credit_risk"]
    assert score["cron"] == "0 2 * * *" and score["work_pool"] == "verticals"
    assert score["parameters"] == {"pipeline": "finance.credit_risk", "input": str(tmp_path / "in"),
                                   "output": str(tmp_path / "out") + "/{date}"}
    assert listed["verticals-monitor/finance.credit_risk"]["parameters"]["scores"] == score["parameters"]["output"]
    for name in listed:
        _cli(capsys, "unschedule", name)
    assert json.loads(_cli(capsys, "schedules", "--json")) == []


def test_schedules_listing_is_quiet_and_quick(prefect_api, flows_env) -> None:
    """Against a running server: no temporary server, no telemetry or lock messages, one table."""
    import time

    started = time.monotonic()
    proc = flows_env.cli("schedules")
    seconds = time.monotonic() - started
    assert proc.stderr.strip() == "", proc.stderr
    assert proc.stdout.startswith(("No schedules", "NAME"))
    assert seconds < 30, f"verticals schedules took {seconds:.1f} s"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_worker_stops_promptly(prefect_api, flows_env, tmp_path: Path, sig: str) -> None:
    """SIGTERM, or a single Ctrl-C (SIGINT), stops an idle worker within seconds (Prefect's: 30-46 s)."""
    import signal
    import time

    log = tmp_path / "worker.log"
    with open(log, "wb") as sink:
        worker = subprocess.Popen([VERTICALS, "worker"], start_new_session=True, stdout=sink,
                                  stderr=subprocess.STDOUT, env={**os.environ, **flows_env.vars})
    try:
        wait_for(lambda: "started!" in log.read_text() or worker.poll() is not None, 180, "the worker to start")
        assert worker.poll() is None, log.read_text()
        started = time.monotonic()
        worker.send_signal(getattr(signal, sig))
        code = worker.wait(timeout=60)
        seconds = time.monotonic() - started
    finally:
        kill_group(worker, signal.SIGKILL, timeout=5)
    assert code == 0, log.read_text()
    assert seconds < 12, f"the worker took {seconds:.1f} s to stop on {sig}"
    text = log.read_text()
    assert "worker stopped" in text and "Traceback" not in text
