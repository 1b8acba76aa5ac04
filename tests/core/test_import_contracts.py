"""The import-linter contracts (root pyproject.toml) cover every plugin package, and the contract module
``verticals.spec`` loads no implementation at import time."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {c["name"]: c for c in CONFIG["contracts"]}

#: The verticals' domain plugins, present in this checkout or not (yet).
DOMAINS = ("verticals_finance", "verticals_medical", "verticals_retail", "verticals_manufacturing")


def _plugin_packages() -> list[str]:
    return sorted(p.parent.name for p in ROOT.glob("plugins/*/src/*/__init__.py"))


def test_the_checkout_has_plugin_packages():
    assert "verticals_finance" in _plugin_packages()


@pytest.mark.parametrize("package", _plugin_packages())
def test_every_plugin_package_is_under_every_contract(package):
    assert package in CONFIG["root_packages"], f"add {package} to root_packages"
    assert package in CONTRACTS["plugins import no flows and no prefect"]["source_modules"]
    assert package in CONTRACTS["core imports no plugin, no flows, no prefect"]["forbidden_modules"]
    assert package in CONTRACTS["flows import no plugin"]["forbidden_modules"]


def test_plugins_not_in_the_checkout_yet_are_forbidden_to_core_and_flows():
    for contract in ("core imports no plugin, no flows, no prefect", "flows import no plugin"):
        assert set(DOMAINS) <= set(CONTRACTS[contract]["forbidden_modules"]), contract


def test_scoring_may_not_import_torch():
    contract = CONTRACTS["scoring imports no torch"]
    assert contract["source_modules"] == ["verticals.scoring"] and contract["forbidden_modules"] == ["torch"]


def test_the_contract_module_imports_no_implementation():
    code = ("import sys, verticals.spec; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('verticals', 'torch', 'numpy', 'polars', 'onnxruntime', 'sklearn', 'pluggy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # verticals/__init__ re-exports the SDK (errors, hookspecs with pluggy's marker, spec) and nothing else.
    assert set(out) <= {"verticals", "verticals.errors", "verticals.hookspecs", "verticals.spec", "pluggy"} | {
        m for m in out if m.startswith("pluggy.")}, out


def test_pipeline_lives_beside_the_contract_not_in_it():
    """The contract module holds types only; the old import path says where Pipeline went."""
    import verticals
    import verticals.pipeline

    assert verticals.Pipeline is verticals.pipeline.Pipeline
    with pytest.raises(ImportError, match=r"from verticals import Pipeline"):
        from verticals.spec import Pipeline  # noqa: F401
