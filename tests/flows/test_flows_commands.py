"""The flows' commands without a running server: quick one-line answers, the server's environment
(UI API URL, database), quiet consoles for user errors, and artifacts that read well in the UI."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from flows_support import VERTICALS, free_port

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _cli_without_server(tmp_path: Path, *args: str, api: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), DO_NOT_TRACK="1")
    if api:
        env["PREFECT_API_URL"] = api
    started = time.monotonic()
    proc = subprocess.run([VERTICALS, *args], capture_output=True, text=True, timeout=120, env=env)
    return proc, time.monotonic() - started


@pytest.mark.parametrize("args", [["schedules"], ["unschedule", "verticals-score/x"]])
def test_schedule_commands_without_a_server_are_one_quick_line(tmp_path, args):
    """No temporary server is started (that took 11-17 s and printed telemetry and lock tracebacks)."""
    proc, seconds = _cli_without_server(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    err = proc.stderr.strip()
    assert err.startswith("error: cannot ") and "none runs" in err and "verticals server start --background" in err
    assert "\n" not in err and "Traceback" not in err and "telemetry" not in err.lower()
    assert not (tmp_path / "prefect-home" / "prefect.db").exists(), "a temporary Prefect server was started"
    assert seconds < 30, f"took {seconds:.1f} s"


def test_a_server_that_does_not_answer_is_named(tmp_path):
    api = f"http://127.0.0.1:{free_port()}/api"
    proc, _ = _cli_without_server(tmp_path, "schedules", api=api)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: cannot list schedules: the Prefect server at {api} (PREFECT_API_URL) "
                                   "does not answer (fix: start it with `verticals server start --background`, "
                                   "or fix PREFECT_API_URL)")


def test_server_status_exits_non_zero_when_down(tmp_path):
    api = f"http://127.0.0.1:{free_port()}/api"
    proc, _ = _cli_without_server(tmp_path, "server", "status", api=api)
    assert proc.returncode == 1
    assert f"PREFECT_API_URL={api} (does not answer)" in proc.stdout
    assert "no Prefect server answers" in proc.stderr and "Traceback" not in proc.stderr
    proc, _ = _cli_without_server(tmp_path, "server", "stop", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"stopped": False, "pid": None}


def test_server_start_json_needs_background(capsys):
    from verticals.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["server", "start", "--json"])
    assert exc.value.code == 2
    out = json.loads(capsys.readouterr().out)  # under --json the error is JSON too
    assert out["error"] == "--json needs --background (a foreground server prints its log)"
    assert out["fix"] == "add --background, or drop --json" and out["code"] == 2


def test_server_environment_follows_port_and_database(monkeypatch):
    from verticals_flows import server

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # another server, from this shell
    monkeypatch.delenv("PREFECT_UI_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_UI_API_URL", raising=False)
    env = server.server_env("127.0.0.1", 4311, "postgresql+asyncpg://prefect:secret@db:5432/prefect")
    assert env["PREFECT_UI_API_URL"] == env["PREFECT_API_URL"] == "http://127.0.0.1:4311/api"
    assert env["PREFECT_SERVER_API_PORT"] == "4311"
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://prefect:secret@db:5432/prefect"
    # Listening on every interface: the UI still gets an address a browser can reach.
    assert server.server_env("0.0.0.0", 4312)["PREFECT_UI_API_URL"] == "http://127.0.0.1:4312/api"
    # A UI API URL the user set (a proxy in front of the server) is kept.
    monkeypatch.setenv("PREFECT_UI_API_URL", "https://prefect.example.org/api")
    assert server.server_env("127.0.0.1", 4311)["PREFECT_UI_API_URL"] == "https://prefect.example.org/api"


def test_database_urls_are_checked_and_never_shown_with_their_password():
    from verticals.errors import UserError
    from verticals_flows import server

    url = "postgresql+asyncpg://prefect:s3cret@db.internal:5432/prefect"
    server.check_database_url(url)
    assert server.shown_database(url) == "postgresql+asyncpg://prefect:***@db.internal:5432/prefect"
    assert "SQLite" in server.shown_database(None)
    with pytest.raises(UserError, match=r"names no driver.*postgresql\+asyncpg://"):
        server.check_database_url("postgresql://prefect:s3cret@db/prefect")
    with pytest.raises(UserError, match="unsupported database URL mysql://u:\\*\\*\\*@h/d") as exc:
        server.check_database_url("mysql://u:pw@h/d")
    assert "pw" not in str(exc.value)


def test_console_shows_a_user_error_as_one_line_and_keeps_other_tracebacks():
    from prefect.logging.handlers import PrefectConsoleHandler
    from verticals.errors import UserError
    from verticals_flows.console import quiet_user_errors

    stream = io.StringIO()
    handler = PrefectConsoleHandler(stream=stream)
    handler.setFormatter(logging.Formatter("%(levelname)s | %(message)s"))
    logger = logging.getLogger("prefect.verticals-test")
    logger.addHandler(handler)
    try:
        quiet_user_errors()
        for exc in (UserError("output /x already exists", hint="pass --overwrite"), RuntimeError("boom")):
            try:
                raise exc
            except Exception:
                logger.exception("Encountered exception during execution: %r", exc)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    user, other = text.split("ERROR | Encountered exception during execution: RuntimeError")
    assert "UserError('output /x already exists (fix: pass --overwrite)')" in user
    assert "Traceback" not in user and user.count("\n") == 1
    assert "Traceback" in other and "RuntimeError: boom" in other


def _capture_artifacts(monkeypatch) -> dict[str, object]:
    import prefect.artifacts

    made: dict[str, object] = {}
    monkeypatch.setattr(prefect.artifacts, "create_table_artifact", lambda table, key, **kw: made.setdefault(key, table))
    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda text, key, **kw: made.setdefault(key, text))
    monkeypatch.setattr(prefect.artifacts, "create_link_artifact", lambda link, key, **kw: made.setdefault(key, link))
    return made


def test_score_artifacts_are_narrow_and_keyed_as_documented(monkeypatch, tmp_path):
    from verticals.scoring.partitions import Partition
    from verticals_flows import artifacts

    made = _capture_artifacts(monkeypatch)
    source = tmp_path / "very" / "long" / "folder" / "name" / "applications-2026-11-27.parquet"
    parts = [Partition(index=i, kind="parquet", source=source, row_group=i) for i in range(3)]
    results = [SimpleNamespace(rows_in=100, rows_scored=99, rows_rejected=1, reused=i == 0) for i in range(3)]
    manifest = {"rows_in": 300, "rows_scored": 297, "rows_rejected": 3, "model_version": 2, "device": "cpu",
                "provider": "CPUExecutionProvider", "seconds": 1.5, "rows_per_second": 198.0,
                "input": str(source), "parts": [{"file": f"part-{i:05d}.parquet", "rows_in": 100} for i in range(3)]}
    artifacts.score_report("finance.credit_risk", tmp_path / "scores", manifest, parts, results)

    keys = {"verticals-score-finance-credit-risk-rows", "verticals-score-finance-credit-risk-summary",
            "verticals-score-finance-credit-risk-output"}
    assert set(made) == keys
    flows_md = (DOCS / "flows.md").read_text()
    for key in keys | {"verticals-train-finance-credit-risk-metrics", "verticals-monitor-finance-credit-risk-drift"}:
        assert key in flows_md, f"docs/flows.md does not name the artifact key {key}"

    table = made["verticals-score-finance-credit-risk-rows"]
    assert [r["reads"] for r in table] == [f"applications-2026-11-27.parquet rg {i}" for i in range(3)] + ["3 part(s)"]
    assert [r["resumed"] for r in table] == ["yes", "no", "no", "1"]
    for row in table:  # short scalar cells: no lists, no absolute paths
        assert all(not isinstance(v, (list, dict)) and len(str(v)) <= 40 for v in row.values()), row
    summary = made["verticals-score-finance-credit-risk-summary"]
    assert "| parts | 3 (1 resumed from an earlier run) |" in summary
    assert "part-00000.parquet" not in summary and "[" not in summary
    assert all(len(line) < 200 for line in summary.splitlines())


def test_output_of_a_run_follows_its_scheduled_date():
    from datetime import UTC, datetime

    from verticals_flows.crashed import output_of

    day = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    assert output_of({"output": "/data/scores/{date}"}, day) == Path("/data/scores/2026-11-27")
    assert output_of({"output": "/data/scores"}, None) == Path("/data/scores")
    assert output_of({"output": "/data/{date}"}, None) is None
    assert output_of({}, day) is None


def test_flows_docs_name_the_postgres_requirements():
    text = (DOCS / "flows.md").read_text()
    assert re.search(r"--database-url", text) and "pg_trgm" in text and "PostgreSQL" in text
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" in text
