"""Every listing at 60, 80 and 140 columns: identifiers and numbers appear whole, never split or cut;
columns left out are named; too narrow for any table, the rows become a list."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from verticals.cli import main
from verticals.cli.tables import Col, fit
from verticals.registry import get_registry
from verticals.store import ModelStore

WIDTHS = (60, 80, 140)


def cli(capsys, monkeypatch, width: int, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("COLUMNS", str(width))
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def not_shown(out: str) -> set[str]:
    """Headers named in the '(not shown at N columns: a, b; ...)' note."""
    m = re.search(r"\(not shown at \d+ columns: ([^;]+);", " ".join(out.split()))
    return set(m.group(1).split(", ")) if m else set()


def assert_whole(out: str, identifiers: list[str]) -> None:
    for ident in identifiers:
        assert ident in out, f"{ident!r} is split or missing in:\n{out}"


def assert_fits(out: str, width: int) -> None:
    """Table lines fit; a longer line may only be a title naming a path (paths are never wrapped)."""
    for line in out.splitlines():
        if line.startswith("models in /"):
            continue
        assert len(line.rstrip()) <= width or " " not in line.strip(), f"line wider than {width}: {line!r}"


@pytest.fixture
def store(tmp_path, monkeypatch) -> ModelStore:
    monkeypatch.setenv("VERTICALS_HOME", str(tmp_path / "home"))
    return ModelStore()


def add(store: ModelStore, pipeline: str, **manifest) -> None:
    staging = store.staging(pipeline)
    (staging / "model.onnx").write_bytes(b"onnx")
    (staging / "model.int8.onnx").write_bytes(b"int8")
    base = {"task": "binary", "primary_metric": "auc",
            "metrics": {"valid": {"auc": 0.8012}, "test": {"auc": 0.8358, "gini": 0.6716, "ks": 0.5123,
                                                           "brier": 0.1123, "log_loss": 0.3456}},
            "parity": {"max_abs_diff": 2.4e-7, "passed": True},
            "plugin": {"name": "finance", "distribution": "verticals-finance", "version": "0.1.0"},
            "variants": {"int8": {"file": "model.int8.onnx", "accepted": True, "metric": 0.8351, "delta": -0.0007,
                                  "reason": "within tolerance"},
                         "fp16": {"file": None, "accepted": False, "reason": "no CUDA GPU here"}}}
    base.update(manifest)
    store.register(pipeline, staging, base)


@pytest.mark.parametrize("width", WIDTHS)
def test_plugins_pipelines_datasets_at_every_width(capsys, monkeypatch, width):
    registry = get_registry()
    code, out, _ = cli(capsys, monkeypatch, width, "plugins")
    assert code == 0
    assert_fits(out, width)
    hidden = not_shown(out)
    assert_whole(out, [p.name for p in registry.plugins])
    if "distribution" not in hidden:
        assert_whole(out, [p.label for p in registry.plugins])
    if "registered" not in hidden:
        assert_whole(out, [n for p in registry.plugins for names in p.registered.values() for n in names])
    if "hooks" not in hidden:
        assert_whole(out, [h for p in registry.plugins for h in p.hooks])

    code, out, _ = cli(capsys, monkeypatch, width, "pipelines")
    assert code == 0
    assert_fits(out, width)
    hidden = not_shown(out)
    assert_whole(out, list(registry.pipelines))
    if "dataset" not in hidden:
        assert_whole(out, [registry.dataset_of(p).qualified_name for p in registry.pipelines.values()])
    if "model" not in hidden:
        assert_whole(out, [registry.model_of(p).qualified_name for p in registry.pipelines.values()])
    if width >= 80:
        assert "task" not in hidden and "binary" in out

    code, out, _ = cli(capsys, monkeypatch, width, "datasets")
    assert code == 0
    assert_fits(out, width)
    assert_whole(out, list(registry.datasets))
    if "target" not in not_shown(out):
        assert_whole(out, [d.schema.target.name for d in registry.datasets.values() if d.schema.target])


@pytest.mark.parametrize("width", WIDTHS)
def test_models_list_and_show_at_every_width(capsys, monkeypatch, store, width):
    add(store, "finance.credit_risk")
    add(store, "finance.credit_risk_lending_club")
    store.promote("finance.credit_risk", 1, "production")
    store.promote("finance.credit_risk", 1, "champion-2026-q4")
    code, out, _ = cli(capsys, monkeypatch, width, "models", "list")
    assert code == 0
    assert_fits(out, width)
    assert_whole(out, ["finance.credit_risk", "finance.credit_risk_lending_club", "v1"])
    hidden = not_shown(out)
    if "test metrics" not in hidden:
        assert_whole(out, ["auc=0.8358", "gini=0.6716", "ks=0.5123", "brier=0.1123"])
    if "aliases" not in hidden:
        assert_whole(out, ["production", "champion-2026-q4"])

    code, out, _ = cli(capsys, monkeypatch, width, "models", "show", "credit_risk")
    assert code == 0
    assert_whole(out, ["finance.credit_risk v1", "model.int8.onnx", "0.8358", "0.6716", "int8", "fp16"])
    # JSON spellings, not Python's
    assert "None" not in out and "True" not in out and "False" not in out
    assert "true" in out and "false" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_pipelines_show_and_datasets_show(capsys, monkeypatch, width):
    registry = get_registry()
    name = sorted(registry.pipelines)[0]
    pipe = registry.pipeline(name)
    dataset = registry.dataset_of(pipe)
    code, out, _ = cli(capsys, monkeypatch, width, "pipelines", "show", name)
    assert code == 0
    assert_whole(out, [name, dataset.qualified_name, *(c.name for c in dataset.schema.without_target()),
                       *(c.name for c in pipe.output_columns), dataset.split.strategy])
    code, out, _ = cli(capsys, monkeypatch, width, "pipelines", "show", name, "--json")
    data = json.loads(out)
    assert [c["name"] for c in data["inputs"]] == dataset.schema.without_target().names
    assert data["outputs"][0]["name"] == pipe.output_columns[0].name and data["dataset"] == dataset.qualified_name

    code, out, _ = cli(capsys, monkeypatch, width, "datasets", "show", dataset.qualified_name)
    assert code == 0
    assert_whole(out, [dataset.qualified_name, *dataset.schema.names])
    code, out, _ = cli(capsys, monkeypatch, width, "datasets", "show", dataset.qualified_name, "--json")
    data = json.loads(out)
    assert [c["name"] for c in data["columns"]] == dataset.schema.names and name in data["pipelines"]


def test_show_unknown_name_is_one_line(capsys, monkeypatch):
    code, _, err = cli(capsys, monkeypatch, 80, "pipelines", "show", "nosuch_pipeline")
    assert code == 2 and err.startswith("error: unknown pipeline 'nosuch_pipeline'") and err.count("\n") == 1


def test_too_narrow_for_a_table_becomes_a_list(capsys, monkeypatch):
    registry = get_registry()
    code, out, _ = cli(capsys, monkeypatch, 30, "pipelines")
    assert code == 0
    assert "┃" not in out and "│" not in out
    for name in registry.pipelines:
        assert f"\n{name}\n" in out
    assert "  task: binary" in out


def test_fit_drops_the_least_important_columns_first():
    cols = [Col("a", "a"), Col("b", "b", priority=2), Col("c", "c", "text", priority=1)]
    rows = [{"a": "x" * 20, "b": "y" * 20, "c": "some words of prose here"}]
    assert [c.key for c in fit(cols, rows, 200)] == ["a", "b", "c"]
    assert [c.key for c in fit(cols, rows, 45)] == ["a", "c"]
    assert [c.key for c in fit(cols, rows, 24)] == ["a"]
    assert fit(cols, rows, 20) is None  # even the name does not fit: list layout


def test_help_uses_the_terminal_width(capsys, monkeypatch):
    _, wide, _ = cli(capsys, monkeypatch, 140, "score", "--help")
    _, narrow, _ = cli(capsys, monkeypatch, 60, "score", "--help")
    assert max(len(line) for line in wide.splitlines()) > 100
    assert max(len(line) for line in narrow.splitlines()) <= 60
    assert "--encoding" in wide and "--separator" in wide


def test_broken_manifest_is_listed_as_broken_and_the_others_still_listed(capsys, monkeypatch, store):
    add(store, "finance.credit_risk")
    add(store, "finance.credit_risk")
    add(store, "finance.other")
    manifest = store.models_dir / "finance.credit_risk" / "v2" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])  # truncated
    code, out, err = cli(capsys, monkeypatch, 140, "models", "list")
    assert code == 0
    assert "finance.other" in out and "BROKEN" in out and "v2" in out
    assert "1 version(s) cannot be read" in err
    code, out, _ = cli(capsys, monkeypatch, 140, "models", "list", "--json")
    rows = json.loads(out)
    assert [(r["pipeline"], r["version"], r.get("broken", False)) for r in rows] == [
        ("finance.credit_risk", 1, False), ("finance.other", 1, False), ("finance.credit_risk", 2, True)]
    assert "manifest.json" in rows[2]["error"]
    # a broken version is removed by number with --force
    code, _, err = cli(capsys, monkeypatch, 80, "models", "delete", "finance.credit_risk", "2")
    assert code == 4 and "cannot read" in err
    code, out, _ = cli(capsys, monkeypatch, 80, "models", "delete", "finance.credit_risk", "2", "--force")
    assert code == 0 and "deleted finance.credit_risk v2" in out
    assert [mv.version for mv in store.versions("finance.credit_risk")] == [1]


def test_short_names_delete_and_unalias(capsys, monkeypatch, store):
    add(store, "finance.credit_risk")
    add(store, "finance.credit_risk")
    code, out, _ = cli(capsys, monkeypatch, 80, "models", "promote", "credit_risk", "2", "--json")
    assert code == 0 and json.loads(out) == {"pipeline": "finance.credit_risk", "alias": "production",
                                             "version": 2, "previous": None}
    code, out, _ = cli(capsys, monkeypatch, 80, "models", "verify", "credit_risk", "--json")
    assert code == 0 and json.loads(out)["version"] == 2 and json.loads(out)["ok"] is True
    code, _, err = cli(capsys, monkeypatch, 80, "models", "delete", "credit_risk", "2")
    assert code == 2
    assert "finance.credit_risk v2 is what alias 'production' points at; not deleted" in err
    assert "--force" in err and "train" not in err
    code, out, _ = cli(capsys, monkeypatch, 80, "models", "unalias", "credit_risk", "production")
    assert code == 0 and "alias production removed (it pointed at v2)" in out
    code, out, _ = cli(capsys, monkeypatch, 80, "models", "delete", "credit_risk", "v2", "--json")
    assert code == 0 and json.loads(out)["deleted"] is True
    assert [mv.version for mv in store.versions("finance.credit_risk")] == [1]
    add(store, "finance.credit_risk")
    assert store.resolve("finance.credit_risk").version == 3  # a deleted number is not given out again
    code, _, err = cli(capsys, monkeypatch, 80, "models", "show", "credit_risk_x")
    assert code == 2 and "train" not in err  # a lookup mistake is never fixed by retraining
    code, _, err = cli(capsys, monkeypatch, 80, "models", "show", "credit_risk_islr")
    assert code == 2  # an installed pipeline without a model yet: training is the fix
    assert "pipeline finance.credit_risk_islr has no model" in err
    assert "train one with `verticals train finance.credit_risk_islr`" in err


def test_a_model_whose_plugin_is_not_installed(capsys, monkeypatch, store, tmp_path):
    add(store, "gone.churn", plugin={"name": "gone", "distribution": "verticals-gone", "version": "1.2"})
    code, out, _ = cli(capsys, monkeypatch, 140, "models", "show", "gone.churn")
    assert code == 0 and "verticals-gone 1.2 (not installed: scoring needs it)" in out
    code, out, _ = cli(capsys, monkeypatch, 140, "models", "list", "churn")  # the store knows the short name
    assert code == 0 and "gone.churn" in out
    data = tmp_path / "in.csv"
    data.write_text("a\n1\n")
    code, _, err = cli(capsys, monkeypatch, 140, "score", "churn", "-i", str(data), "-o", str(tmp_path / "o"))
    assert code == 2
    assert err == ("error: pipeline gone.churn was trained by verticals-gone==1.2, which is not installed "
                   "(fix: install it (pip install verticals-gone) and run the command again)\n")
    assert not Path(tmp_path / "o").exists()
