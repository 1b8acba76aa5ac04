"""`verticals plugins install|uninstall`: pip for the running interpreter, from a local plugin folder
(no network), with the plugin listed afterwards and gone after the uninstall."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest
from verticals.cli import main

NAME = "sdkprobe_install"
DIST = "verticals-sdkprobe-install"


def _listed() -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "verticals.cli", "plugins", "--json"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return json.loads(out)


def _error(capsys, args: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr().err.strip()


@pytest.mark.slow
def test_install_lists_the_plugin_and_uninstall_removes_it(tmp_path, capsys):
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution(DIST)
    main(["new-plugin", NAME, "--dir", str(tmp_path)])
    root = tmp_path / f"verticals-{NAME.replace('_', '-')}"
    capsys.readouterr()
    try:
        main(["plugins", "install", str(root), "--json"])
        installed = json.loads(capsys.readouterr().out)
        assert (installed["action"], installed["distribution"], installed["version"]) == ("installed", DIST, "0.1.0")
        (plugin,) = installed["plugins"]
        assert plugin["name"] == NAME and plugin["status"] == "loaded"
        assert plugin["registered"]["pipelines"] == [f"{NAME}.{NAME}"]
        assert metadata.distribution(DIST).version == "0.1.0"
        # A fresh process (what a user runs next) lists it.
        assert [p["name"] for p in _listed() if p["distribution"] == DIST] == [NAME]

        # Installing it again is fine (pip: already satisfied); the table output names the plugin.
        main(["plugins", "install", str(root)])
        out = capsys.readouterr().out
        assert out.startswith(f"installed {DIST}==0.1.0") and f"plugin {NAME} (loaded)" in out

        main(["plugins", "uninstall", NAME])  # by plugin name
        out = capsys.readouterr().out
        assert out.startswith(f"uninstalled {DIST}==0.1.0") and f"plugin {NAME} removed" in out
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", DIST], capture_output=True)
    assert [p for p in _listed() if p["distribution"] == DIST] == []
    code, err = _error(capsys, ["plugins", "uninstall", DIST])
    assert code == 2 and f"no installed plugin or distribution named '{DIST}'" in err


def test_install_and_uninstall_errors_are_one_line(tmp_path, capsys):
    cases = [
        (["plugins", "install", str(tmp_path / "missing")], "no such folder or file"),
        (["plugins", "install", str(tmp_path)], "has no pyproject.toml"),
        (["plugins", "uninstall", "verticals"], "verticals itself is not a plugin"),
        (["plugins", "uninstall", "pytest"], "pytest"),  # installed, but not a verticals plugin
        (["plugins", "uninstall", "no_such_plugin"], "no installed plugin or distribution named 'no_such_plugin'"),
        (["plugins", "install", "verticals-x", "--editable"], "--editable needs a local folder"),
    ]
    for args, expected in cases:
        code, err = _error(capsys, args)
        assert code == 2, (args, err)
        assert err.startswith("error: ") and expected in err and "fix:" in err and "\n" not in err, (args, err)


def test_plugins_listing_still_works_as_a_group(capsys):
    capsys.readouterr()
    main(["plugins", "--json"])
    names = [p["name"] for p in json.loads(capsys.readouterr().out)]
    assert "finance" in names and "flows" in names
    main(["plugins", "--help"])
    text = capsys.readouterr().out
    assert "install" in text and "uninstall" in text
