"""A user's own CSV, described by a config file, becomes a trainable and scorable credit pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import verticals_finance.plugin as finance_plugin
from verticals.errors import NotFoundError, UserError
from verticals_finance.config import (
    CONFIG_ENV,
    dataset_from_config,
    forget_config,
    load_config,
    register_config,
    registered_configs,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "plugins" / "finance" / "examples" / "example_loans.toml"


def test_example_config_describes_the_dataset() -> None:
    spec = dataset_from_config(EXAMPLE)
    schema = spec.schema
    assert spec.name == "example_loans" and spec.target_positive == "yes"
    assert schema.ids == ["loan_id"]
    assert schema.target.name == "defaulted" and schema.target.categories == ("no", "yes")
    assert [c.name for c in schema.features] == ["income", "debt_ratio", "loan_amount", "age", "years_employed",
                                                 "home", "purpose"]
    assert {c.name: c.monotonic for c in schema.features if c.monotonic} == {
        "debt_ratio": 1, "income": -1, "years_employed": -1}
    amount = schema["loan_amount"]
    assert (amount.min, amount.on_out_of_range, amount.on_missing) == (1, "reject", "reject")
    assert schema["age"].on_missing == "flag"  # default for numeric features
    assert schema["home"].on_unknown == "flag"  # default for categorical features
    assert spec.split.valid_fraction == 0.15
    assert spec.loader().height == 400


def _write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = '''name = "mine"
data = "mine.csv"
id = "id"
[target]
column = "y"
positive = 1
negative = 0
[features]
numeric = ["x"]
categorical = ["c"]
'''


@pytest.mark.parametrize(("text", "message"), [
    (BASE.replace('name = "mine"', 'name = "My Loans"'), "'name' must be lowercase"),
    (BASE.replace('name = "mine"', 'name = "credit_risk"'), "taken by a built-in"),
    (BASE.replace("negative = 0\n", ""), "target.negative' is missing"),
    (BASE + "colour = 'red'\n", "unknown key(s) colour"),
    (BASE + "[monotonic]\nc = 1\n", "monotonic feature 'c' is not a numeric feature"),
    (BASE + "[monotonic]\nx = 2\n", "must be 1, -1 or 0"),
    (BASE + "[rules.x]\non_missing = 'drop'\n", "rules.x.on_missing = 'drop'"),
    (BASE.replace('categorical = ["c"]', 'categorical = ["x"]'), "listed more than once"),
    (BASE.replace("[features]", "[features]\nnumeric = ["), "cannot be parsed"),
])
def test_config_mistakes_are_named_with_the_file_and_a_fix(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value) and "fix:" in str(err.value)


def test_numeric_labels_and_json_configs(tmp_path: Path) -> None:
    data = {"name": "mine", "data": "mine.csv", "id": ["id"], "target": {"column": "y", "positive": 1, "negative": [0]},
            "features": {"numeric": ["x"]}}
    config = load_config(_write(tmp_path, json.dumps(data), "mine.json"))
    assert (config.positive, config.negative) == ("1", ["0"])
    assert config.data == tmp_path / "mine.csv"
    with pytest.raises(NotFoundError, match="does not exist"):
        dataset_from_config(tmp_path / "mine.json").loader()


def test_env_var_registers_dataset_and_pipeline(monkeypatch, tmp_path, verticals_home, verticals_plugins) -> None:
    broken = _write(tmp_path, BASE.replace("negative = 0\n", ""))
    monkeypatch.setenv(CONFIG_ENV, f"{EXAMPLE}:{broken}")
    with pytest.warns(UserWarning, match="skipping credit config"):
        registry = verticals_plugins({"finance": finance_plugin})
    pipe = registry.pipeline("finance.example_loans")
    assert registry.dataset_of(pipe).qualified_name == "finance.example_loans"
    assert registry.model_of(pipe).qualified_name == "finance.credit_pd"
    assert "finance.credit_risk" in registry.pipelines  # a broken config does not hide the others


def test_register_config_remembers_the_file(tmp_path, verticals_home, verticals_plugins) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "loans.toml")
    shutil.copy(EXAMPLE.with_name("example_loans.csv"), folder / "example_loans.csv")
    config = register_config(folder / "loans.toml")
    assert registered_configs() == [folder / "loans.toml"]
    assert (verticals_home / "finance" / "configs.json").is_file()
    registry = verticals_plugins({"finance": finance_plugin})
    assert "finance.example_loans" in registry.pipelines
    other = folder / "copy.toml"
    shutil.copy(folder / "loans.toml", other)
    with pytest.raises(UserError, match="already registered"):
        register_config(other)
    assert forget_config(config.name) == folder / "loans.toml"
    assert registered_configs() == []


def test_cli_register_config(tmp_path, verticals_home, capsys) -> None:
    from verticals.cli import main

    shutil.copy(EXAMPLE, tmp_path / "loans.toml")
    shutil.copy(EXAMPLE.with_name("example_loans.csv"), tmp_path / "example_loans.csv")
    main(["finance", "register-config", str(tmp_path / "loans.toml")])
    out = capsys.readouterr().out
    assert "pipeline finance.example_loans" in out and "debt_ratio (float, monotonic +1)" in out
    main(["finance", "configs", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "example_loans" and listed[0]["from"] == "registered"
    main(["finance", "unregister-config", "example_loans", "--json"])
    assert json.loads(capsys.readouterr().out) == {"forgotten": str(tmp_path / "loans.toml")}
    with pytest.raises(SystemExit) as exited:
        main(["finance", "unregister-config", "example_loans", "--json"])
    assert exited.value.code == 2
    error = json.loads(capsys.readouterr().out)
    assert error["code"] == 2 and "no registered credit config" in error["error"] and error["fix"]


@pytest.mark.slow
def test_config_pipeline_trains_and_scores(tmp_path, monkeypatch, verticals_home, verticals_plugins) -> None:
    from verticals.engine import train
    from verticals.scoring import score

    monkeypatch.setenv(CONFIG_ENV, str(EXAMPLE))
    verticals_plugins({"finance": finance_plugin})
    result = train("finance.example_loans", epochs=3, progress=False, variants=())
    assert result.manifest["training_data"]["rows_rejected"] == 1  # the negative loan amount
    assert set(result.manifest["extras"]["features"]) >= {"debt_ratio", "home"}
    out = score("finance.example_loans", EXAMPLE.with_name("example_loans.csv"), tmp_path / "scored", progress=False)
    assert (out["rows_in"], out["rows_scored"], out["rows_rejected"]) == (400, 399, 1)
    scored = pl.read_parquet(tmp_path / "scored" / "part-00000.parquet")
    assert scored.filter(pl.col("loan_id") == "L0011")["flags"].item() == "income:missing"
    rejects = pl.read_parquet(tmp_path / "scored" / "_rejects.parquet")
    assert rejects["loan_id"].to_list() == ["L0007"] and "loan_amount" in rejects["_reason"].item()
