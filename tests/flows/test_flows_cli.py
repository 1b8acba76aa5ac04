"""The flows' CLI commands: present, cheap to load, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from flows_support import PIPELINE
from verticals.cli import main

PROBE = """
import sys
from verticals.cli import main
try:
    main({args!r})
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("prefect", "prefect_dask", "distributed", "dask") if m in sys.modules)
print("HEAVY=" + ",".join(heavy) + " CODE=" + str(code))
"""


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["run", "--help"]])
def test_cli_does_not_import_prefect(args: list[str]) -> None:
    """`verticals --help` and `verticals plugins` load the flows plugin without importing Prefect."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                         timeout=120).stdout
    assert "HEAVY= CODE=0" in out, out


def test_flow_commands_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    text = capsys.readouterr().out
    for command in ("run", "schedule", "schedules", "unschedule", "server", "worker"):
        assert f" {command} " in text
    main(["run", "--help"])
    text = capsys.readouterr().out
    for flow in ("train", "score", "monitor"):
        assert f" {flow} " in text


def test_bad_cron_is_a_one_line_user_error(flows_env, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["schedule", PIPELINE, "--flow", "score", "--cron", "61 * * * *", "--input", "x.parquet",
              "--output", "out"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid schedule '61 * * * *'") and "fix:" in err and "\n" not in err


def test_schedule_names_missing_flow_parameters(flows_env, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["schedule", PIPELINE, "--flow", "score", "--cron", "0 2 * * *"])
    assert exc.value.code == 2
    assert "needs --input, --output" in capsys.readouterr().err


def test_unknown_flow_is_rejected(flows_env, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["schedule", PIPELINE, "--flow", "predict", "--cron", "0 2 * * *"])
    assert exc.value.code == 2
    assert "unknown flow 'predict'" in capsys.readouterr().err


def test_server_status_reports_the_background_server(trained, prefect_api, flows_env,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """(``trained`` first: the session's model trains while the server starts.)"""
    import json

    capsys.readouterr()
    main(["server", "status", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["api_url"] == prefect_api and info["answers"] is True
    assert info["background_server"]["api"] == prefect_api and info["background_server"]["pid"] > 0
