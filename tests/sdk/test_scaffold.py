"""`verticals new-plugin` writes a plugin named after itself whose own tests pass on the first run,
before it is installed, and whose binary score is a calibrated probability."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from verticals.cli import main


def _load(root: Path, name: str):
    """Import the generated plugin module from its src/ folder (not installed)."""
    sys.path.insert(0, str(root / "src"))
    try:
        return importlib.import_module(f"verticals_{name}.plugin")
    finally:
        sys.path.remove(str(root / "src"))
        for mod in [m for m in sys.modules if m.startswith(f"verticals_{name}")]:
            sys.modules.pop(mod)


def test_new_plugin_passes_its_own_tests_before_installing(tmp_path):
    main(["new-plugin", "telco", "--dir", str(tmp_path)])
    root = tmp_path / "verticals-telco"
    assert (root / "pyproject.toml").read_text().count('telco = "verticals_telco.plugin"') == 1
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["VERTICALS_PLUGINS"] = "telco"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout


def test_everything_is_named_after_the_plugin(tmp_path, capsys, verticals_plugins):
    capsys.readouterr()
    main(["new-plugin", "insurance_fraud", "--dir", str(tmp_path), "--json"])
    made = json.loads(capsys.readouterr().out)
    root = tmp_path / "verticals-insurance-fraud"
    assert made["path"] == str(root.absolute())
    assert (made["distribution"], made["pipeline"], made["dataset"], made["model"]) == (
        "verticals-insurance-fraud", "insurance_fraud.insurance_fraud", "insurance_fraud.insurance_fraud_data",
        "insurance_fraud.mlp")
    text = "\n".join(p.read_text() for p in root.rglob("*") if p.is_file()).lower()
    for leftover in ("churn", "customer", "tenure", "subscri", "telco"):
        assert leftover not in text, f"the scaffold still mentions {leftover!r}"
    assert 'name = "verticals-insurance-fraud"' in text and 'requires-python = ">=3.11"' in text
    registry = verticals_plugins({"insurance_fraud": _load(root, "insurance_fraud")})
    assert list(registry.pipelines) == ["insurance_fraud.insurance_fraud"]
    assert list(registry.datasets) == ["insurance_fraud.insurance_fraud_data"]
    pipeline = registry.pipeline("insurance_fraud")  # the short name works too
    dataset = registry.dataset_of(pipeline)
    assert [c.name for c in dataset.schema.columns] == ["record_id", "amount", "age_days", "events", "segment",
                                                       "label"]
    assert [c.name for c in pipeline.output_columns] == ["score"]


def test_pipeline_option_renames_only_the_pipeline(tmp_path, verticals_plugins):
    main(["new-plugin", "claims", "--dir", str(tmp_path), "--pipeline", "fraud_risk"])
    registry = verticals_plugins({"claims": _load(tmp_path / "verticals-claims", "claims")})
    assert list(registry.pipelines) == ["claims.fraud_risk"]
    assert list(registry.datasets) == ["claims.claims_data"]


@pytest.mark.parametrize(("name", "why"), [
    ("finance", "the distribution verticals-finance=="),
    ("flows", "the distribution verticals-flows=="),
])
def test_names_of_installed_distributions_are_refused(tmp_path, capsys, name, why):
    with pytest.raises(SystemExit) as exc:
        main(["new-plugin", name, "--dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: plugin name '{name}' is taken: {why}") and "(fix: choose another name" in err
    assert "\n" not in err
    assert not (tmp_path / f"verticals-{name}").exists()


def test_an_installed_plugins_entry_point_name_is_refused(tmp_path):
    from verticals.errors import UserError
    from verticals.scaffold import taken

    # `flows` is the entry-point name of verticals-flows; a plugin of the same name would clash with it.
    assert "verticals-flows" in taken("flows")
    assert taken("surely_unused_name_42") is None
    with pytest.raises(UserError, match="is taken"):
        from verticals.scaffold import create_plugin

        create_plugin("finance", tmp_path)


def test_bad_names_existing_folders_and_files_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as bad:
        main(["new-plugin", "Bad-Name", "--dir", str(tmp_path)])
    assert bad.value.code == 2
    assert "invalid plugin name 'Bad-Name'" in capsys.readouterr().err
    (tmp_path / "verticals-x").mkdir()
    with pytest.raises(SystemExit) as exists:
        main(["new-plugin", "x", "--dir", str(tmp_path)])
    assert exists.value.code == 2
    assert "already exists" in capsys.readouterr().err
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for target in (a_file, a_file / "sub"):
        with pytest.raises(SystemExit) as not_dir:
            main(["new-plugin", "y", "--dir", str(target)])
        assert not_dir.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "fix:" in err and "\n" not in err and "Traceback" not in err


def _mean_score_and_rate(tmp_path: Path, registry, pipeline: str, home: Path) -> tuple[float, float]:
    import polars as pl
    from verticals import engine
    from verticals.scoring import score

    dataset = registry.dataset_of(registry.pipeline(pipeline))
    frame = dataset.loader().collect()
    batch = tmp_path / f"reference-{len(list(tmp_path.iterdir()))}.parquet"
    frame.drop("label").write_parquet(batch)
    version = engine.train(pipeline, home=home, progress=False, variants=()).version
    out = tmp_path / f"scores-v{version}"
    score(pipeline, batch, out, model=str(version), home=home, progress=False)
    scores = pl.read_parquet(sorted(out.glob("part-*.parquet")))["score"]
    return float(scores.mean()), float(frame["label"].mean())


def test_the_binary_score_is_a_calibrated_probability(tmp_path, verticals_home, verticals_plugins):
    """Mean score ≈ positive rate on the reference data; class weighting (opt-in) would break that."""
    main(["new-plugin", "probe", "--dir", str(tmp_path)])
    registry = verticals_plugins({"probe": _load(tmp_path / "verticals-probe", "probe")})
    pipeline = registry.pipeline("probe.probe")
    assert pipeline.training.class_weighting is False

    mean, rate = _mean_score_and_rate(tmp_path, registry, "probe.probe", verticals_home)
    assert 0.15 < rate < 0.4, rate
    print(f"mean score {mean:.4f}, positive rate {rate:.4f}")
    assert abs(mean - rate) < 0.03, f"mean score {mean:.3f} vs positive rate {rate:.3f}"

    # The same pipeline with class weighting: the mean score moves far above the positive rate.
    pipeline.training = dataclasses.replace(pipeline.training, class_weighting=True)
    weighted, _ = _mean_score_and_rate(tmp_path, registry, "probe.probe", verticals_home)
    print(f"with class weighting: mean score {weighted:.4f}")
    assert weighted > rate + 0.1, f"weighted mean {weighted:.3f} vs positive rate {rate:.3f}"


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
