"""medical.imaging end to end on a tiny synthetic CT set: metrics, baseline and operating point in
metrics.json, the exported graph (dynamic batch, CAM output), scoring a nested folder (per-image and
per-study rows, saliency side outputs, rejects, exact accounting) and patient-level splits."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import polars as pl
import pytest
from medical_support import KEY, SmallPlugin
from PIL import Image
from verticals.testing import use_plugins

pytestmark = pytest.mark.slow
NAME = "medical.imaging"
PSEUDONYM = re.compile(r"^[PSI]-[0-9a-f]{16}$")


@pytest.fixture(scope="module")
def key():
    old = os.environ.get("VERTICALS_PSEUDONYM_KEY")
    os.environ["VERTICALS_PSEUDONYM_KEY"] = KEY
    yield KEY
    if old is None:
        os.environ.pop("VERTICALS_PSEUDONYM_KEY", None)
    else:
        os.environ["VERTICALS_PSEUDONYM_KEY"] = old


@pytest.fixture(scope="module")
def trained(tmp_path_factory, key):
    from verticals.engine import train

    base = tmp_path_factory.mktemp("medical")
    plugin = SmallPlugin(base / "ct")
    with use_plugins({"medical": plugin}):
        result = train(NAME, home=base / "home", progress=False, variants=())
    return result, base, plugin


@pytest.fixture(scope="module")
def scored(trained):
    from verticals.scoring import score

    _, base, plugin = trained
    src = base / "to-score"
    shutil.copytree(base / "ct", src / "ward-a", ignore=shutil.ignore_patterns("_*"))
    (src / "ward-b" / "extra").mkdir(parents=True)
    (src / "ward-b" / "extra" / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 40)
    (src / "ward-b" / "notes.png").write_text("not an image\n")
    Image.fromarray(np.full((40, 50), 90, np.uint8), "L").save(src / "ward-b" / "extra" / "photo.png")
    out = base / "scored"
    with use_plugins({"medical": plugin}):
        manifest = score(NAME, src, out, home=base / "home", progress=False)
    parts = sorted(out.glob("part-*.parquet"))
    return pl.concat([pl.read_parquet(p) for p in parts]), manifest, out, src


def test_metrics_baseline_and_operating_point_are_stored(trained):
    result, _, _ = trained
    metrics = json.loads((result.path / "metrics.json").read_text())
    test = metrics["test"]
    for key in ("auroc", "sensitivity", "specificity", "accuracy"):
        assert isinstance(test[key], float), key
    assert 0.0 <= test["auroc"] <= 1.0
    assert isinstance(metrics["baselines"]["pixel_logistic"]["auroc"], float)
    confusion = test["confusion"]
    assert set(confusion) == {"normal", "lesion"}
    assert sum(sum(row.values()) for row in confusion.values()) == test["examples"]
    assert {"brier", "ece", "curve"} <= set(test["calibration"])
    manifest = json.loads((result.path / "manifest.json").read_text())
    point = manifest["extras"]["operating_point"]
    assert point["target_sensitivity"] == 0.9 and 0.0 <= point["threshold"] <= 1.0
    assert point["valid_sensitivity"] >= 0.9  # chosen on validation to reach the target
    report = (result.path / "report.html").read_text()
    assert "pixel_logistic" in report and "Grad-CAM" in report and "Operating point" in report
    # The section shows the baseline's AUROC from this run, not a blank.
    baseline_auroc = metrics["baselines"]["pixel_logistic"]["auroc"]
    assert f"pixel_logistic baseline AUROC (test, same split)</th><td>{baseline_auroc:.3f}" in report
    assert list(result.path.rglob("gradcam-*.png"))


def test_exported_graph_has_a_dynamic_batch_and_a_cam_whose_mean_is_the_logit(trained):
    import onnxruntime as ort

    result, _, _ = trained
    session = ort.InferenceSession(str(result.path / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["logits", "cam"]
    rng = np.random.default_rng(0)
    for n in (1, 5):
        image = rng.integers(0, 256, (n, 1, 32, 32), dtype=np.uint8)
        logits, cam = session.run(None, {"image": image})
        assert logits.shape == (n, 2) and cam.shape == (n, 2, 4, 4)
        np.testing.assert_allclose(cam.mean(axis=(2, 3)), logits, rtol=1e-4, atol=1e-4)


def test_scoring_a_nested_folder_gives_image_and_study_rows_and_rejects(scored, trained):
    table, manifest, out, src = scored
    files = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
    assert manifest["rows_in"] == len(files)
    assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == 2 and table.height == manifest["rows_scored"]
    rejects = pl.read_parquet(out / "_rejects.parquet")
    reasons = dict(zip([os.path.basename(p) for p in rejects["path"]], rejects["_reason"], strict=True))
    assert set(reasons) == {"broken.dcm", "notes.png"}
    assert "corrupt" in reasons["broken.dcm"] and "not an image" in reasons["notes.png"]
    assert all(str(src) in r for r in reasons.values())
    # Per image: pseudonymised ids, the path relative to the scored folder, probabilities, the class.
    assert sorted(table["file"].to_list()) == sorted(f for f in files if not f.endswith(("broken.dcm", "notes.png")))
    for column in ("patient_id", "study_id", "image_id"):
        assert all(PSEUDONYM.match(v) for v in table[column].to_list()), column
    assert not any("SYN" in v for v in table["patient_id"].to_list())
    np.testing.assert_allclose(table["p_normal"] + table["p_lesion"], 1.0, atol=1e-6)
    np.testing.assert_allclose(table["score"], table["p_lesion"])
    threshold = json.loads((trained[0].path / "manifest.json").read_text())["extras"]["operating_point"]["threshold"]
    assert (table["predicted"] == "lesion").to_list() == (table["p_lesion"] >= threshold).to_list()
    # Saliency overlays for flagged images only, inside the output folder.
    flagged = table.filter(pl.col("flagged"))
    assert flagged.height and flagged["saliency"].null_count() == 0
    assert table.filter(~pl.col("flagged"))["saliency"].null_count() == table.height - flagged.height
    with Image.open(out / flagged["saliency"][0]) as img:
        assert img.mode == "RGB" and img.size == (32, 32)
    # Per study: one row per synthetic patient (one study each) plus the lone PNG; max aggregation.
    studies = pl.read_parquet(out / "_studies.parquet")
    assert manifest["summaries"]["studies"] == {"file": "_studies.parquet", "rows": studies.height}
    assert studies["images"].sum() == table.height
    assert studies.height == table.select("study_id").n_unique() == trained[2].patients + 1
    per = table.group_by("study_id").agg(pl.col("p_lesion").max().alias("max"))
    joined = studies.join(per, on="study_id")
    np.testing.assert_allclose(joined["score"], joined["max"])
    assert (joined["flagged"] == (joined["score"] >= threshold)).all()


def test_splits_keep_patients_whole_and_refuse_mixed_or_too_few(trained):
    from verticals.errors import DataValidationError
    from verticals.registry import get_registry

    _, _, plugin = trained
    with use_plugins({"medical": plugin}):
        registry = get_registry()
        pipe, dataset = registry.pipelines[NAME], registry.datasets["medical.ct_slices"]
        frame = dataset.loader()
        splits = pipe.split(frame, dataset, 7)
        sets = [set(f["patient"].to_list()) for _, f in splits.items()]
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
        assert sum(f.height for _, f in splits.items()) == frame.height
        for _, f in splits.items():  # every split holds both classes
            assert set(f["label"].to_list()) == {"normal", "lesion"}
        mixed = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("lesion" if frame["label"][0] ==
                                   "normal" else "normal")).otherwise(pl.col("label")).alias("label"))
        with pytest.raises(DataValidationError, match="have images of more than one class"):
            pipe.split(mixed, dataset, 7)
        few = frame.filter((pl.col("label") == "normal") | pl.col("patient").is_in(
            frame.filter(pl.col("label") == "lesion")["patient"].unique().sort().head(2).to_list()))
        with pytest.raises(DataValidationError, match="class 'lesion' has 2 patient"):
            pipe.split(few, dataset, 7)


def test_without_a_key_training_and_scoring_say_how_to_set_one(trained, monkeypatch, tmp_path):
    from verticals.engine import train
    from verticals.scoring import score
    from verticals_medical.deid import PseudonymKeyError

    _, base, plugin = trained
    monkeypatch.delenv("VERTICALS_PSEUDONYM_KEY")
    monkeypatch.delenv("VERTICALS_PSEUDONYM_KEY_FILE", raising=False)
    with use_plugins({"medical": SmallPlugin(tmp_path / "fresh")}), pytest.raises(PseudonymKeyError) as info:
        train(NAME, home=tmp_path / "home", progress=False, variants=())
    assert "VERTICALS_PSEUDONYM_KEY" in info.value.hint and "\n" not in str(info.value)
    assert not (tmp_path / "fresh").exists()  # refused before anything was generated
    with use_plugins({"medical": plugin}), pytest.raises(PseudonymKeyError):
        score(NAME, base / "ct", tmp_path / "out", home=base / "home", progress=False)
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")
    monkeypatch.setenv("VERTICALS_PSEUDONYM_KEY_FILE", str(key_file))
    from verticals_medical.deid import Pseudonymizer

    assert Pseudonymizer()("patient", "x") == Pseudonymizer(KEY.encode())("patient", "x")


def test_empty_folder_is_refused(trained, tmp_path):
    from verticals.errors import NotFoundError
    from verticals.scoring import score

    _, base, plugin = trained
    (tmp_path / "empty").mkdir()
    with use_plugins({"medical": plugin}), pytest.raises(NotFoundError, match="holds no files"):
        score(NAME, tmp_path / "empty", tmp_path / "out", home=base / "home", progress=False)


def test_verticals_score_cli_on_a_dicom_folder(trained, tmp_path, capsys):
    from verticals.cli import main

    _, base, plugin = trained
    out = tmp_path / "cli-out"
    with use_plugins({"medical": plugin}):
        main(["score", NAME, "--input", str(base / "ct"), "--output", str(out), "--no-progress",
              "--home", str(base / "home")])
    text = capsys.readouterr().out
    rows = plugin.patients * plugin.slices
    assert f"{rows} scored, 0 rejected" in text
    written = json.loads((out / "_manifest.json").read_text())
    assert written["rows_in"] == rows and written["summaries"]["studies"]["rows"] == plugin.patients
    assert "SYN" not in text  # no raw PatientID printed


def test_a_scored_listing_never_writes_raw_patient_ids_into_the_rejects(trained, tmp_path):
    """A CSV listing with the hospital's own patient and study ids: the rows that fail are rejected
    with their reason, and neither id reaches _rejects.parquet (the columns are ``sensitive``)."""
    from verticals.scoring import score

    _, base, plugin = trained
    good = sorted((base / "ct").rglob("*.dcm"))[:2]
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 40)
    listing = tmp_path / "listing.csv"
    pl.DataFrame({"path": [str(p) for p in good] + [str(broken), str(tmp_path / "gone.dcm")],
                  "patient": ["MRN-0001", "MRN-0001", "MRN-0002", "MRN-0003"],
                  "study": ["ACC-11", "ACC-11", "ACC-22", "ACC-33"]}).write_csv(listing)
    out = tmp_path / "out"
    with use_plugins({"medical": plugin}):
        manifest = score(NAME, listing, out, home=base / "home", progress=False)
    assert manifest["rows_scored"] == 2 and manifest["rows_rejected"] == 2
    rejects = pl.read_parquet(out / "_rejects.parquet")
    assert rejects["patient"].null_count() == rejects.height == 2 and rejects["study"].null_count() == 2
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    for raw in (b"MRN-000", b"ACC-"):
        assert raw not in written
