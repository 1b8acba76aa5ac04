"""The train stages end to end on the synthetic reference plugin (2,000 rows, a few epochs).

One training run (module fixture) feeds most tests: what gets registered, that scoring raw rows with
the registered model reproduces the evaluation predictions, the hooks, the report. Failure paths use
the cheap early stages or reuse the trained model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from verticals import engine, hookimpl
from verticals.errors import DataValidationError, NotFoundError, ParityError
from verticals.spec import ReportSection
from verticals.testing import use_plugins
from verticals.testing.reference import ReferencePipeline, ReferencePlugin, make_frame

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

ROWS = 2000
EPOCHS = 3
MANIFEST_KEYS = {"pipeline", "version", "created_at", "plugin", "code_version", "task", "input_schema",
                 "preprocessor", "signature", "metrics", "parity", "variants", "training_data", "reference",
                 "extras", "artifacts", "score_column", "output_columns"}


class TemperedPipeline(ReferencePipeline):
    """The reference pipeline with extras that change its scores, baselines and a report section."""

    description = "reference MLP with a fitted temperature"

    def fit_extras(self, context):
        # Something fitted after the network that postprocess must apply, at scoring time too.
        logits = context.outputs["valid"]["logits"]
        return {"temperature": float(1.0 + np.std(logits)),
                "baseline_metrics": {"constant": {"auc": 0.5}}}

    def postprocess(self, outputs, batch, extras):
        logits = np.asarray(outputs["logits"], dtype=np.float64)
        return pl.DataFrame({"score": 1.0 / (1.0 + np.exp(-logits / extras.get("temperature", 1.0)))})

    def report_sections(self, context):
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 2))
        ax.hist(context.predictions["test"]["score"].to_numpy(), bins=20)
        fig.savefig(Path(context.workdir) / "temperature.png")
        plt.close(fig)
        # The sections see everything fit_extras returned, the baselines' metrics included.
        constant = context.extras["baseline_metrics"]["constant"]["auc"]
        return [ReportSection("Temperature", f"<p>T = {context.extras['temperature']:.3f}; "
                                             f"constant baseline AUC {constant:.2f}</p>", images=["temperature.png"])]


class TemperedPlugin(ReferencePlugin):
    @hookimpl
    def register_pipelines(self, register):
        register(TemperedPipeline())


class Recorder:
    """Records every lifecycle hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    @hookimpl
    def before_train(self, pipeline, config):
        self.calls.append(("before_train", {"pipeline": pipeline, "config": dict(config)}))

    @hookimpl
    def after_train(self, pipeline, metrics, history):
        self.calls.append(("after_train", {"pipeline": pipeline, "metrics": metrics, "history": history}))

    @hookimpl
    def after_export(self, pipeline, path, parity):
        self.calls.append(("after_export", {"pipeline": pipeline, "path": Path(path), "parity": dict(parity)}))

    @hookimpl
    def after_register(self, pipeline, version, path, manifest):
        self.calls.append(("after_register", {"pipeline": pipeline, "version": version, "path": Path(path)}))

    @hookimpl
    def on_error(self, pipeline, stage, error):
        self.calls.append(("on_error", {"pipeline": pipeline, "stage": stage, "error": error}))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """Train once, stage by stage, as the Prefect flow does; keep every stage's result."""
    home = tmp_path_factory.mktemp("home")
    recorder = Recorder()
    with use_plugins({"reference": TemperedPlugin(rows=ROWS), "recorder": recorder}):
        name = "reference.mlp"
        loaded = engine.load_data(name)
        validated = engine.validate_data(name, loaded)
        splits = engine.split_data(name, validated, seed=7)
        fitted = engine.fit(name, splits, epochs=EPOCHS, seed=7, device="cpu", progress=False)
        from verticals.store import ModelStore

        staging = ModelStore(home).staging(name)
        evaluation = engine.evaluate(name, splits, fitted, workdir=staging)
        exported = engine.export(name, fitted, evaluation, staging)
        version = engine.register(name, validated, splits, fitted, evaluation, exported, home=home)
        yield {"home": home, "recorder": recorder, "loaded": loaded, "validated": validated, "splits": splits,
               "fitted": fitted, "evaluation": evaluation, "exported": exported, "version": version}


def test_registered_version_is_complete(run) -> None:
    from verticals.store import ModelStore

    version = run["version"]
    assert version.version == 1
    loaded = ModelStore(run["home"]).load("reference.mlp")  # sha256 of every file checked
    manifest = loaded.manifest
    assert MANIFEST_KEYS <= set(manifest)
    assert {"model.onnx", "report.html", "metrics.json", "figures/loss_curves.png",
            "temperature.png"} <= set(manifest["artifacts"])
    assert all(name in manifest["artifacts"] for name in [v["file"] for v in manifest["variants"].values()
                                                          if v["accepted"]])
    assert manifest["signature"]["inputs"] == {"x_num": {"dtype": "float32", "shape": [-1, 16]},
                                               "x_cat": {"dtype": "int64", "shape": [-1, 2]}}
    assert manifest["signature"]["outputs"] == ["logits"]
    assert "target" not in [c["name"] for c in manifest["input_schema"]]
    assert manifest["training_data"]["rows"] == ROWS and len(manifest["training_data"]["fingerprint"]) == 64
    assert manifest["training_data"]["source"] == "dataset reference.synthetic"
    assert manifest["plugin"]["name"] == "reference" and manifest["code_version"]["verticals"]
    assert manifest["parity"]["passed"] is True and manifest["parity"]["max_abs_diff"] <= 1e-4
    assert manifest["parity"]["rows"] != len(run["evaluation"].example["x_num"])
    assert set(manifest["reference"]["features"]) >= {"f00", "c0"} and manifest["reference"]["score"]
    # Baselines go to metrics.json only; the rest of the extras to the manifest.
    assert manifest["extras"] == {"temperature": pytest.approx(run["evaluation"].extras["temperature"])}
    metrics = json.loads((version.path / "metrics.json").read_text())
    assert set(metrics) == {"train", "valid", "test", "baselines"}
    assert metrics["baselines"] == {"constant": {"auc": 0.5}}
    assert metrics["test"] == pytest.approx(manifest["metrics"]["test"])
    assert 0.5 < metrics["test"]["auc"] <= 1.0
    assert not list(Path(run["home"], ".staging").iterdir())  # the staging folder was moved into place


def test_variants_are_recorded_honestly(run) -> None:
    variants = run["exported"].variants
    assert set(variants) == {"int8", "fp16"}
    for kind, record in variants.items():
        assert {"file", "metric", "delta", "accepted", "reason"} <= set(record), kind
        on_disk = (run["version"].path / f"model.{kind}.onnx").exists()
        assert on_disk == bool(record["accepted"]) == (record["file"] is not None)
        if record["accepted"]:
            assert abs(record["delta"]) <= record["tolerance"]
    if variants["fp16"]["provider"] != "CUDAExecutionProvider":
        assert variants["fp16"]["accepted"] is False


def _raw_test_rows(run) -> pl.DataFrame:
    ids = run["splits"].test.get_column("row_id").cast(pl.Int64)
    return run["loaded"].frame.filter(pl.col("row_id").is_in(ids.implode()))


def test_scoring_raw_rows_reproduces_evaluation(run) -> None:
    """Raw test rows → validate → transform → ONNX Runtime → postprocess == evaluation predictions."""
    from verticals.data.tabular import TabularPreprocessor
    from verticals.data.validation import validate
    from verticals.spec import Schema

    version = run["version"]
    manifest = version.manifest
    raw = _raw_test_rows(run).drop("target")
    pre = TabularPreprocessor(Schema.from_dict(manifest["input_schema"]))
    pre.load_state(manifest["preprocessor"])
    checked = validate(raw, Schema.from_dict(manifest["input_schema"]), stage="score",
                       training_ranges=pre.training_ranges(), category_modes=pre.category_modes())
    assert checked.rejects.height == 0
    batch = pre.transform(checked.valid, with_target=False)
    session = ort.InferenceSession(str(version.file("model.onnx")), providers=["CPUExecutionProvider"])
    outputs = dict(zip(manifest["signature"]["outputs"], session.run(None, batch.inputs), strict=True))
    ids = batch.ids.with_columns(pl.col("row_id").cast(pl.Int64))  # as scoring writes ids: schema type
    scored = pl.concat([ids, TemperedPipeline().postprocess(outputs, batch, manifest["extras"])],
                       how="horizontal")

    expected = run["evaluation"].predictions["test"]
    joined = expected.join(scored, on="row_id", suffix="_scored")
    assert joined.height == expected.height == run["splits"].test.height
    diff = np.abs(joined["score"].to_numpy() - joined["score_scored"].to_numpy()).max()
    assert diff <= 1e-5
    # And the metrics computed from the scored rows are the registered test metrics.
    from verticals.metrics import auc

    assert auc(joined["_target"].to_numpy(), joined["score_scored"].to_numpy()) == pytest.approx(
        manifest["metrics"]["test"]["auc"], abs=1e-6)


def test_verticals_scoring_reproduces_evaluation(run, tmp_path: Path) -> None:
    scoring = pytest.importorskip("verticals.scoring")
    source = tmp_path / "test_rows.parquet"
    _raw_test_rows(run).drop("target").write_parquet(source)
    with use_plugins({"reference": TemperedPlugin(rows=ROWS)}):
        # fp32 explicitly: the default (auto) scores with the int8 variant on a CPU with VNNI, whose
        # scores differ from fp32 evaluation by the quantization error the metric gate accepted.
        result = scoring.score("reference.mlp", source, tmp_path / "scored", device="cpu", home=run["home"],
                               progress=False, variant="fp32")
    assert result["rows_scored"] == run["splits"].test.height and result["rows_rejected"] == 0
    scored = pl.read_parquet(tmp_path / "scored" / "part-*.parquet")
    joined = run["evaluation"].predictions["test"].join(scored, on="row_id", suffix="_scored")
    assert joined.height == run["splits"].test.height
    assert np.abs(joined["score"].to_numpy() - joined["score_scored"].to_numpy()).max() <= 1e-5
    assert set(scored["model_version"].unique().to_list()) == {1}


def test_default_scoring_uses_the_accepted_int8_variant_where_the_cpu_has_fast_int8(run, tmp_path: Path,
                                                                                   monkeypatch) -> None:
    from verticals.metrics import auc

    scoring = pytest.importorskip("verticals.scoring")
    int8 = run["exported"].variants["int8"]
    source = tmp_path / "test_rows.parquet"
    _raw_test_rows(run).drop("target").write_parquet(source)
    monkeypatch.setenv("VERTICALS_FAST_INT8", "1")
    with use_plugins({"reference": TemperedPlugin(rows=ROWS)}):
        result = scoring.score("reference.mlp", source, tmp_path / "scored", device="cpu", home=run["home"],
                               progress=False)
    assert result["variant"] == ("int8" if int8["accepted"] else "fp32"), result["variant_reason"]
    assert result["variant_reason"].startswith("auto: ")
    if int8["accepted"]:  # the variant's scores move by its quantization error, its metric by at most the gate's
        scored = pl.read_parquet(tmp_path / "scored" / "part-*.parquet")
        joined = run["evaluation"].predictions["test"].join(scored, on="row_id", suffix="_scored") \
            .join(run["splits"].test.select(pl.col("row_id").cast(pl.Int64), "target"), on="row_id")
        assert np.abs(joined["score"].to_numpy() - joined["score_scored"].to_numpy()).max() <= 0.05
        y = joined["target"].to_numpy().astype(int)
        got = auc(y, joined["score_scored"].to_numpy())
        assert abs(got - auc(y, joined["score"].to_numpy())) <= int8["tolerance"] + 1e-9


def test_hooks_fire_in_order_with_their_arguments(run) -> None:
    recorder = run["recorder"]
    assert recorder.names() == ["before_train", "after_train", "after_export", "after_register"]
    calls = dict(recorder.calls)
    assert calls["before_train"]["config"]["epochs"] == EPOCHS
    assert calls["before_train"]["config"]["seed"] == 7
    assert calls["before_train"]["config"]["rows"] == run["splits"].sizes()
    assert set(calls["after_train"]["metrics"]) == {"train", "valid", "test"}
    assert [h["epoch"] for h in calls["after_train"]["history"]] == list(range(1, len(run["fitted"].history) + 1))
    assert calls["after_export"]["path"].name == "model.onnx" and calls["after_export"]["parity"]["passed"]
    assert calls["after_register"]["version"] == 1 and calls["after_register"]["path"] == run["version"].path


def test_report_shows_what_the_run_did(run) -> None:
    page = (run["version"].path / "report.html").read_text()
    test_auc = run["evaluation"].metrics["test"]["auc"]
    assert f"{test_auc:.4f}" in page
    assert "Temperature" in page and 'src="temperature.png"' in page and "constant baseline AUC 0.50" in page
    assert "rows per split" in page.lower() and "ONNX export" in page and "int8" in page
    assert "No training row was rejected." in page


def test_parity_failure_stops_registration(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real parity check against a different PyTorch module (the graph module left out) must fail."""
    from verticals import export as ex

    real = ex.check_parity
    monkeypatch.setattr(ex, "check_parity", lambda path, module, sample, tolerance=ex.PARITY_TOLERANCE, **kw:
                        real(path, module.model, sample, tolerance))
    recorder = Recorder()
    with use_plugins({"reference": TemperedPlugin(rows=ROWS), "recorder": recorder}):
        with pytest.raises(ParityError, match="differs from PyTorch"):
            engine.export("reference.mlp", run["fitted"], run["evaluation"], tmp_path / "work", variants=())
    assert recorder.names() == ["on_error"]
    assert recorder.calls[0][1]["stage"] == "verify"


def test_user_csv_with_bad_rows(tmp_path: Path) -> None:
    frame = make_frame(300, seed=0)
    csv = frame.with_columns(
        pl.when(pl.col("row_id") < 20).then(pl.lit("abc")).otherwise(pl.col("f02").cast(pl.String)).alias("f02"),
        pl.when(pl.col("row_id").is_between(20, 24)).then(pl.lit("7")).otherwise(pl.col("target").cast(pl.String))
        .alias("target"),
    )
    path = tmp_path / "train.csv"
    csv.write_csv(path)
    import hashlib

    with use_plugins({"reference": ReferencePlugin(rows=ROWS)}):
        loaded = engine.load_data("reference.mlp", path)
        validated = engine.validate_data("reference.mlp", loaded)
    assert loaded.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.source == str(path.resolve())
    assert validated.rows_in == 300 and validated.rows_rejected == 25 and validated.frame.height == 275
    assert dict(validated.reasons) == {"column 'f02': cannot read as float": 20,
                                       "target 'target' has unexpected label (expected one of: 0, 1)": 5}


def test_missing_file_and_all_rejected(tmp_path: Path) -> None:
    recorder = Recorder()
    with use_plugins({"reference": ReferencePlugin(rows=ROWS), "recorder": recorder}):
        missing = tmp_path / "nope.parquet"
        with pytest.raises(NotFoundError, match=str(missing)):
            engine.train("reference.mlp", data=missing, home=tmp_path / "home", progress=False)
        bad = make_frame(50, seed=0).with_columns(pl.lit(9).alias("target"))
        bad.write_parquet(tmp_path / "bad.parquet")
        with pytest.raises(DataValidationError, match=r"all 50 training rows were rejected.*unexpected label"):
            engine.train("reference.mlp", data=tmp_path / "bad.parquet", home=tmp_path / "home", progress=False)
    assert [(n, c["stage"]) for n, c in recorder.calls] == [("on_error", "load"), ("on_error", "validate")]
    assert not (tmp_path / "home" / "models").exists()


def test_stage_results_pickle(run) -> None:
    import pickle

    for key in ("loaded", "validated", "splits", "fitted", "evaluation", "exported"):
        restored = pickle.loads(pickle.dumps(run[key]))
        assert type(restored) is type(run[key])
    fitted = pickle.loads(pickle.dumps(run["fitted"]))
    with use_plugins({"reference": TemperedPlugin(rows=ROWS)}):
        _, _, model = fitted.modules()  # rebuilt from weights and the factory
    assert all(np.array_equal(v.numpy(), run["fitted"].weights[k]) for k, v in model.state_dict().items())


def test_cli_train_registers_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from verticals.cli import main

    home = tmp_path / "home"
    with use_plugins({"reference": ReferencePlugin(rows=ROWS)}):
        main(["train", "reference.mlp", "--epochs", "2", "--seed", "3", "--device", "cpu", "--no-progress",
              "--home", str(home)])
        out = capsys.readouterr().out
        version = home / "models" / "reference.mlp" / "v1"
        assert f"registered reference.mlp v1 at {version}" in out
        assert "test metrics: auc=" in out and "onnx parity: passed" in out
        assert f"report: {version / 'report.html'}" in out and (version / "report.html").is_file()
        manifest = json.loads((version / "manifest.json").read_text())
        assert manifest["training"]["epochs"] == 2 and manifest["training_data"]["seed"] == 3

        with pytest.raises(SystemExit) as exit_info:
            main(["train", "reference.mlp", "--data", str(tmp_path / "missing.csv"), "--home", str(home)])
        assert exit_info.value.code == NotFoundError.exit_code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "missing.csv" in err[0]
    assert not (home / "models" / "reference.mlp" / "v2").exists()
