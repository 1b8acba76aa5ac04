"""Production set-up: `verticals server start --database-url` on a real PostgreSQL server, and the
schedule → worker → completed run integration against it."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from flows_support import PIPELINE, VERTICALS, free_port, kill_group, read_output, wait_for
from postgres_support import PASSWORD, running_postgres

pytestmark = [pytest.mark.slow, pytest.mark.prefect, pytest.mark.postgres]


def _run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([VERTICALS, *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"verticals {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_schedule_worker_and_run_on_postgres(flows_env, trained, batch, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with running_postgres() as pg:
        port = free_port()
        api = f"http://127.0.0.1:{port}/api"
        env = {**os.environ, **flows_env.vars, "PREFECT_HOME": str(tmp_path / "prefect-pg"),
               "PREFECT_SERVER_UI_ENABLED": "true"}
        env.pop("PREFECT_API_URL")  # the commands find the background server of this PREFECT_HOME
        started = _run(env, "server", "start", "--background", "--port", str(port), "--database-url", pg.url)
        try:
            assert f"postgresql+asyncpg://prefect:***@127.0.0.1:{pg.port}/prefect" in started.stdout
            assert PASSWORD not in started.stdout
            # Prefect created its tables and the pg_trgm extension in this database.
            assert pg.psql("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'") == "pg_trgm"
            # The UI calls the API on the port it was started on (not the default 4200).
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=30) as response:
                assert json.loads(response.read())["api_url"] == api
            status = _run(env, "server", "status", "--json")
            assert json.loads(status.stdout)["answers"] is True

            made = json.loads(_run(env, "schedule", PIPELINE, "--flow", "score", "--cron", "0 4 * * *",
                                   "--input", str(batch), "--output", str(tmp_path / "scores-{date}"),
                                   "--json").stdout)
            assert pg.psql(f"SELECT count(*) FROM deployment WHERE id = '{made['id']}'") == "1"
            listed = json.loads(_run(env, "schedules", "--json").stdout)
            assert [r["name"] for r in listed] == [made["name"]]

            log = tmp_path / "worker.log"
            with open(log, "wb") as sink:
                worker = subprocess.Popen([VERTICALS, "worker"], start_new_session=True, stdout=sink,
                                          stderr=subprocess.STDOUT, env=env)
            try:
                with temporary_settings({PREFECT_API_URL: api}):
                    run = run_deployment(made["name"], timeout=0)

                    def finished():
                        with get_client(sync_client=True) as client:
                            state = client.read_flow_run(run.id).state
                        return state if state.is_final() or worker.poll() is not None else None

                    state = wait_for(finished, 300, "the worker to finish the run on PostgreSQL", interval=1)
                assert state.is_completed(), f"{state.name}: {state.message}\n{log.read_text()[-3000:]}"
            finally:
                kill_group(worker)
            out = tmp_path / f"scores-{run.expected_start_time.strftime('%Y-%m-%d')}"
            rows, rejects, manifest = read_output(out)
            assert manifest["rows_in"] == 4000 and rows.height == 4000 - 5 and rejects.height == 5
            assert pg.psql(f"SELECT state_type FROM flow_run WHERE id = '{run.id}'") == "COMPLETED"
        finally:
            subprocess.run([VERTICALS, "server", "stop"], env=env, capture_output=True, timeout=120)
