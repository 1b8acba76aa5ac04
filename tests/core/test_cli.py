"""The ``verticals`` CLI: catalog commands, error handling, plugin commands and import weight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_dists import dists_fixture  # noqa: F401
from verticals import __version__
from verticals.cli import main
from verticals.errors import NotFoundError
from verticals.plugins import PluginWarning

HEAVY = ("torch", "onnxruntime", "prefect", "polars", "matplotlib", "sklearn")

COMMANDS_PLUGIN = '''
import typer

from verticals import hookimpl
from verticals.errors import NotFoundError


def boom(name: str) -> None:
    """Fail like a user mistake."""
    raise NotFoundError(f"unknown pipeline '{name}'", hint="run 'verticals pipelines' to list them")


def crash() -> None:
    """Fail like a bug."""
    raise ValueError("bad state")


def leave() -> None:
    """Exit with a chosen code."""
    raise typer.Exit(4)


@hookimpl
def register_commands(app):
    app.command("boom")(boom)
    app.command("crash")(crash)
    app.command("leave")(leave)
'''

FAILING_COMMANDS = '''
from verticals import hookimpl


@hookimpl
def register_commands(app):
    raise RuntimeError("typer too old")
'''

BROKEN_PLUGIN = """raise ImportError("No module named 'sklearn_extra'")\n"""


def run(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``main(args)`` in-process; return (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def run_process(args: list[str], *, pythonpath: list[Path] = (), env: dict[str, str] | None = None,
                importtime: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m verticals.cli ARGS`` in a fresh interpreter, like the console script."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VERTICALS_")}
    full_env["COLUMNS"] = "200"
    full_env.pop("PYTHONWARNINGS", None)  # what a user sees: Python's default filters
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "verticals.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=120)


@pytest.fixture
def churn(dists, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich tables wide enough not to fold names
    site = dists.add("verticals-churn", version="2.0")
    dists.only("churn")
    return site


# -- catalog commands ---------------------------------------------------------------------------------
def test_plugins_json(churn, capsys):
    code, out, _ = run(["plugins", "--json"], capsys)
    assert code == 0
    rows = {p["name"]: p for p in json.loads(out)}
    assert rows["churn"] == {
        "name": "churn", "distribution": "verticals-churn", "version": "2.0",
        "module": rows["churn"]["module"], "status": "loaded", "requires": [],
        "hooks": ["register_datasets", "register_models", "register_pipelines"],
        "registered": {"datasets": ["churn.customers"], "models": ["churn.linear"],
                       "pipelines": ["churn.churn_risk"]},
        "errors": [],
    }
    assert rows["churn"]["module"].startswith("churn_plugin_")


def test_plugins_table(churn, capsys):
    code, out, _ = run(["plugins"], capsys)
    assert code == 0
    assert "verticals-churn==2.0" in out and "loaded" in out
    assert "pipelines: churn.churn_risk" in out


def test_pipelines_json_and_table(churn, capsys):
    code, out, _ = run(["pipelines", "--json"], capsys)
    assert code == 0
    (row,) = json.loads(out)
    assert row == {
        "name": "churn.churn_risk", "plugin": "verticals-churn==2.0", "task": "binary",
        "dataset": "churn.customers", "model": "churn.linear", "aliases": ["churn"],
        "primary_metric": "auc", "outputs": ["score"], "description": "Churn risk of a customer",
    }
    code, out, _ = run(["pipelines"], capsys)
    assert code == 0 and "churn.churn_risk" in out and "churn.customers" in out


def test_datasets_json_and_table(churn, capsys):
    code, out, _ = run(["datasets", "--json"], capsys)
    assert code == 0
    (row,) = json.loads(out)
    # Column rules are part of the JSON, so a user can see why a row would be rejected.
    columns = {c["name"]: c for c in row.pop("columns")}
    assert set(columns) == {"customer_id", "tenure", "plan", "churned"}
    assert columns["churned"]["role"] == "target" and "on_missing" in columns["tenure"]
    assert row == {
        "name": "churn.customers", "kind": "tabular", "split": "stratified", "ids": ["customer_id"],
        "target": "churned", "features": ["tenure", "plan"], "source": "written by hand in the test",
        "description": "Four customers",
    }
    code, out, _ = run(["datasets"], capsys)
    assert code == 0 and "churn.customers" in out and "stratified" in out


def test_empty_catalog_says_so(dists, capsys):
    dists.add("verticals-quiet", "from verticals import hookimpl\n")
    dists.only("quiet")
    code, out, _ = run(["pipelines"], capsys)
    assert code == 0 and "none registered" in out
    code, out, _ = run(["pipelines", "--json"], capsys)
    assert code == 0 and json.loads(out) == []


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert (code, out) == (0, f"verticals {__version__}\n")


def test_help_lists_commands_and_shows_no_type_next_to_flags(churn, capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("plugins", "pipelines", "datasets"):
        assert f"\n  {command} " in out
    assert "--debug" in out and "--version" in out
    assert "<bool>" not in out
    code, out, _ = run(["plugins", "--help"], capsys)
    assert code == 0 and "--json" in out and "<bool>" not in out


# -- mistakes and errors ------------------------------------------------------------------------------
def test_no_arguments_shows_help(churn, capsys):
    code, out, err = run([], capsys)
    assert code == 2
    assert "Usage: verticals [OPTIONS] COMMAND" in out + err


@pytest.mark.parametrize(("args", "message"), [
    (["nosuch"], "error: No such command 'nosuch'. (fix: see 'verticals --help')"),
    (["plugins", "--jsn"], "error: No such option: --jsn (Possible options: --json) "
                           "(fix: see 'verticals plugins --help')"),
])
def test_usage_mistakes_are_one_line(churn, capsys, args, message):
    code, out, err = run(args, capsys)
    assert code == 2
    assert err == message + "\n"
    assert out == ""


@pytest.fixture
def commands(dists, monkeypatch):
    dists.add("verticals-tools", COMMANDS_PLUGIN)
    dists.only("tools")


def test_plugin_commands_appear_in_help(commands, capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "\n  boom " in out and "\n  crash " in out


def test_user_error_is_one_line_with_its_exit_code(commands, capsys):
    code, out, err = run(["boom", "credit_rsik"], capsys)
    assert code == NotFoundError.exit_code == 2
    assert err == ("error: unknown pipeline 'credit_rsik' (fix: run 'verticals pipelines' to list them)\n")
    assert "Traceback" not in out + err


def test_debug_shows_the_traceback(commands, capsys):
    with pytest.raises(NotFoundError, match="credit_rsik"):
        main(["--debug", "boom", "credit_rsik"])
    with pytest.raises(ValueError, match="bad state"):
        main(["--debug", "crash"])


def test_unexpected_error_is_one_line_pointing_at_debug(commands, capsys):
    code, _, err = run(["crash"], capsys)
    assert code == 1
    assert err == "error: ValueError: bad state (run 'verticals --debug ...' for the traceback)\n"


def test_exit_code_of_typer_exit_is_kept(commands, capsys):
    code, _, _ = run(["leave"], capsys)
    assert code == 4


def test_main_can_run_twice_in_one_process(commands, capsys):
    assert run(["plugins", "--json"], capsys)[0] == 0
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and out.count("\n  boom ") == 1


def test_failing_register_commands_is_reported_and_the_cli_works(dists, capsys):
    dists.add("verticals-churn")
    dists.add("verticals-oldtyper", FAILING_COMMANDS, version="0.0.1")
    dists.only("churn", "oldtyper")
    with pytest.warns(PluginWarning, match="plugin verticals-oldtyper==0.0.1 hook `register_commands` raised "
                                           "RuntimeError: typer too old"):
        code, out, _ = run(["pipelines", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["name"] == "churn.churn_risk"


# -- in a real process: warnings on stderr, strict mode, import weight --------------------------------------
def test_broken_plugin_warns_and_other_commands_keep_working(dists):
    good = dists.add("verticals-churn")
    bad = dists.add("verticals-broken", BROKEN_PLUGIN, version="0.3")
    proc = run_process(["pipelines"], pythonpath=[good, bad], env={"VERTICALS_PLUGINS": "churn,broken"})
    assert proc.returncode == 0, proc.stderr
    assert "churn.churn_risk" in proc.stdout
    (warning,) = proc.stderr.splitlines()
    assert warning.startswith("warning: plugin verticals-broken==0.3 (entry point 'broken = ")
    assert "failed to import: ImportError: No module named 'sklearn_extra'" in warning


def test_strict_mode_fails_the_command_in_one_line(dists):
    bad = dists.add("verticals-broken", BROKEN_PLUGIN, version="0.3")
    proc = run_process(["plugins"], pythonpath=[bad],
                       env={"VERTICALS_PLUGINS": "broken", "VERTICALS_STRICT_PLUGINS": "1"})
    assert proc.returncode == 3
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: plugin verticals-broken==0.3 ") and "failed to import" in line


def _imported(importtime_stderr: str) -> set[str]:
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("args", [["--help"], ["plugins"]])
def test_help_and_plugins_import_no_heavy_library(args):
    # The installed plugins (verticals-finance, verticals-flows) are loaded too: they must stay light.
    proc = run_process(args, importtime=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = _imported(proc.stderr)
    assert "verticals" in imported and "typer" in imported  # the measurement works
    heavy = sorted(set(HEAVY) & imported)
    assert heavy == [], f"`verticals {' '.join(args)}` imported {heavy}; import them inside functions"
