"""`verticals new-plugin` writes a plugin whose own tests pass on the first run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from verticals.cli import main


def test_new_plugin_passes_its_own_tests(tmp_path):
    main(["new-plugin", "telco", "--dir", str(tmp_path)])
    root = tmp_path / "verticals-telco"
    assert (root / "pyproject.toml").read_text().count('telco = "verticals_telco.plugin"') == 1
    env = {**os.environ, "VERTICALS_PLUGINS": "telco"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout


def test_new_plugin_refuses_bad_names_and_existing_folders(tmp_path, capsys):
    with pytest.raises(SystemExit) as bad:
        main(["new-plugin", "Bad-Name", "--dir", str(tmp_path)])
    assert bad.value.code == 2
    assert "invalid plugin name 'Bad-Name'" in capsys.readouterr().err
    (tmp_path / "verticals-x").mkdir()
    with pytest.raises(SystemExit) as exists:
        main(["new-plugin", "x", "--dir", str(tmp_path)])
    assert exists.value.code == 2
    assert "already exists" in capsys.readouterr().err


def test_new_plugin_declares_the_core_versions_it_supports(tmp_path):
    import tomllib

    import verticals
    from verticals.compat import Requirement, compatible_range, from_module

    main(["new-plugin", "telco", "--dir", str(tmp_path)])
    root = tmp_path / "verticals-telco"
    expected = compatible_range(verticals.__version__)
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps == [f"verticals{expected}"]
    namespace: dict = {}
    exec(compile((root / "src/verticals_telco/plugin.py").read_text(), "plugin.py", "exec"), namespace)
    assert namespace["VERTICALS_REQUIRES"] == expected
    declared, problem = from_module(type("M", (), namespace))
    assert problem is None and declared == Requirement(expected, "VERTICALS_REQUIRES")
    assert declared.fits(verticals.__version__)
