"""The train flow's lineage key of a pipeline registered from a user's own data: it changes with the
config and with the data file, so a re-registered config never reuses another file's cached stages."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import verticals_finance.plugin as finance_plugin
from verticals_flows.caching import source_key

EXAMPLE = Path(__file__).resolve().parents[2] / "plugins" / "finance" / "examples" / "example_loans.toml"


def test_own_data_key_follows_config_and_data_file(tmp_path, monkeypatch, verticals_home, verticals_plugins) -> None:
    shutil.copy(EXAMPLE, tmp_path / "loans.toml")
    shutil.copy(EXAMPLE.with_name("example_loans.csv"), tmp_path / "example_loans.csv")
    monkeypatch.setenv("VERTICALS_DATA_CONFIG", str(tmp_path / "loans.toml"))
    verticals_plugins({"finance": finance_plugin})
    first = source_key("finance.example_loans", None)
    builtin = source_key("finance.credit_risk", None)
    assert first != builtin and source_key("finance.example_loans", None) == first
    csv = tmp_path / "example_loans.csv"
    csv.write_text(csv.read_text() + "\n")
    os.utime(csv, ns=(csv.stat().st_atime_ns, csv.stat().st_mtime_ns + 10**9))
    second = source_key("finance.example_loans", None)
    assert second != first
    config = tmp_path / "loans.toml"
    config.write_text(config.read_text().replace("400 synthetic", "400"))
    verticals_plugins({"finance": finance_plugin})
    assert source_key("finance.example_loans", None) != second
