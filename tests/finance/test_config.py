"""A user's own CSV, described by a config file, becomes a trainable and scorable credit pipeline
(the finance.credit template of the core's own-data mechanism)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import verticals_finance.plugin as finance_plugin
from verticals.errors import NotFoundError, UserError
from verticals.owndata import register_config, registered, remove_config
from verticals_finance.config import CONFIG_ENV, dataset_from_config, load_config

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
    (BASE.replace('name = "mine"', 'name = "My Loans"'), "'name' 'My Loans' is unusable"),
    (BASE.replace("negative = 0\n", ""), "[target] needs 'positive'"),
    ("colour = 'red'\n" + BASE, "unknown key(s) 'colour'"),
    (BASE + "[monotnic]\nx = 1\n", "'monotnic' (did you mean 'monotonic'?)"),
    (BASE + "[fair_lending]\nprotected = ['x']\n[monotonic]\nx = 1\n", "protected attribute 'x' is also declared monotonic"),
    (BASE + "[fair_lending]\nprotected = ['sex']\nuse_as_features = ['sex']\n", "which is not under [features]"),
    (BASE + "[fair_lending]\ncutoff = 2\n", "fair_lending.cutoff = 2"),
    (BASE + "[reasons]\ntop = 6\n", "reasons.top = 6"),
    (BASE + "[reasons.texts.x]\nbig = 'Too big'\n", "reasons.texts.x has key(s) ['big']"),
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
    with pytest.raises(NotFoundError, match=r"does not exist"):
        dataset_from_config(tmp_path / "mine.json").loader()


def test_env_var_registers_dataset_and_pipeline(monkeypatch, tmp_path, verticals_home, verticals_plugins) -> None:
    broken = _write(tmp_path, BASE.replace("negative = 0\n", ""))
    monkeypatch.setenv(CONFIG_ENV, f"{EXAMPLE}:{broken}")
    with pytest.warns(UserWarning, match=r"skipping data config"):
        registry = verticals_plugins({"finance": finance_plugin})
    pipe = registry.pipeline("finance.example_loans")
    assert registry.dataset_of(pipe).qualified_name == "finance.example_loans"
    assert registry.model_of(pipe).qualified_name == "finance.credit_pd"
    assert "finance.credit_risk" in registry.pipelines  # a broken config does not hide the others


def test_register_config_stores_a_verified_copy(tmp_path, verticals_home, verticals_plugins) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "loans.toml")
    shutil.copy(EXAMPLE.with_name("example_loans.csv"), folder / "example_loans.csv")
    verticals_plugins({"finance": finance_plugin})
    _, summary = register_config(folder / "loans.toml", default_template="finance.credit")
    assert summary["rows"] == 400 and summary["labels"]["yes"] >= 30
    [entry] = registered()
    assert entry["name"] == "example_loans" and entry["data"] == str(folder / "example_loans.csv")
    stored = verticals_home / "data" / "configs" / "loans.toml".replace("loans", "example_loans")
    assert stored.read_bytes() == (folder / "loans.toml").read_bytes()
    registry = verticals_plugins({"finance": finance_plugin})
    assert "finance.example_loans" in registry.pipelines
    # The original may be edited: the stored copy is what counts until registered again.
    (folder / "loans.toml").write_text("garbage")
    assert "finance.example_loans" in verticals_plugins({"finance": finance_plugin}).pipelines
    # A stored copy changed behind verticals' back fails its sha256 and is skipped with the fix.
    stored.write_text(stored.read_text().replace("400 synthetic", "401 synthetic"))
    with pytest.warns(UserWarning, match=r"changed after registration.*register it again"):
        registry = verticals_plugins({"finance": finance_plugin})
    assert "finance.example_loans" not in registry.pipelines
    other = folder / "copy.toml"
    shutil.copy(EXAMPLE, other)
    shutil.copy(EXAMPLE.with_name("example_loans.csv"), folder / "example_loans.csv")
    with pytest.raises(UserError, match=r"already registered"):
        register_config(other, default_template="finance.credit")
    assert remove_config("example_loans")["name"] == "example_loans"
    assert registered() == [] and not stored.exists()


def test_a_builtin_name_is_refused(tmp_path, verticals_home, verticals_plugins) -> None:
    shutil.copy(EXAMPLE.with_name("example_loans.csv"), tmp_path / "example_loans.csv")
    path = _write(tmp_path, EXAMPLE.read_text().replace('name = "example_loans"', 'name = "credit_risk"'), "c.toml")
    verticals_plugins({"finance": finance_plugin})
    with pytest.raises(UserError, match=r"'finance.credit_risk' is one of plugin finance's own"):
        register_config(path, default_template="finance.credit")


def test_cli_register_config_alias(tmp_path, verticals_home, capsys) -> None:
    from verticals.cli import main

    shutil.copy(EXAMPLE, tmp_path / "loans.toml")
    shutil.copy(EXAMPLE.with_name("example_loans.csv"), tmp_path / "example_loans.csv")
    main(["finance", "register-config", str(tmp_path / "loans.toml")])
    out = capsys.readouterr().out
    assert "pipeline finance.example_loans" in out and "debt_ratio (float, monotonic +1)" in out
    main(["finance", "configs", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "example_loans" and listed[0]["pipeline"] == "finance.example_loans"
    main(["finance", "unregister-config", "example_loans", "--json"])
    assert json.loads(capsys.readouterr().out) == {"forgotten": str(tmp_path / "loans.toml"), "name": "example_loans"}
    with pytest.raises(SystemExit) as exited:
        main(["finance", "unregister-config", "example_loans", "--json"])
    assert exited.value.code == 2
    error = json.loads(capsys.readouterr().out)
    assert error["code"] == 2 and "no registered data config" in error["error"] and error["fix"]


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


def test_configs_of_the_first_mechanism_are_pointed_out(verticals_home, verticals_plugins) -> None:
    legacy = verticals_home / "finance" / "configs.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps([str(EXAMPLE)]))
    with pytest.warns(UserWarning, match=rf"no longer read \(fix: run verticals data register {EXAMPLE}"):
        verticals_plugins({"finance": finance_plugin})
