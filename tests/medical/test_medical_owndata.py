"""A user's own images through ``medical.images``: a folder of class subfolders or a CSV listing,
patients from the listing or the DICOM header (else each image its own, with a warning), and the
refusals — one class only, a patient in two classes, empty folders; more than two classes end to end
through postprocess, metrics and per-study rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from dicom_support import write_dicom
from medical_support import KEY, SmallPlugin
from PIL import Image
from verticals.owndata import OwnDataError, load_config, register_config
from verticals.spec import Batch
from verticals.testing import use_plugins


@pytest.fixture
def medical(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTICALS_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("VERTICALS_HOME", str(tmp_path / "home"))
    with use_plugins({"medical": SmallPlugin(tmp_path / "ct")}):
        yield tmp_path


def _registry(folder):
    """The registry rebuilt (as at a new start), so configs registered since are in it."""
    from verticals.registry import get_registry

    with use_plugins({"medical": SmallPlugin(folder / "ct")}):
        return get_registry()


def _png(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 40), value, np.uint8), "L").save(path)


def _config(folder, data: str, extra: str = "") -> object:
    path = folder / "images.toml"
    path.write_text(f'name = "xrays"\ntemplate = "medical.images"\ndata = "{data}"\n{extra}')
    return path


def test_a_folder_of_class_subfolders_becomes_a_pipeline(medical):
    for label, n in (("normal", 8), ("effusion", 7)):
        for i in range(n):
            _png(medical / "xrays" / label / f"sub{i % 2}" / f"{i}.png", 40 + 10 * i)
    dcm = write_dicom(medical / "xrays" / "effusion" / "scan.dcm", np.zeros((8, 8)), PatientID="MRN-77231")
    write_dicom(medical / "xrays" / "effusion" / "scan2.dcm", np.zeros((8, 8)), PatientID="MRN-77231")
    with pytest.warns(UserWarning, match="15 of 17 image.*each is treated as its own patient"):
        _, summary = register_config(_config(medical, "xrays", '[target]\nclasses = ["normal", "effusion"]\n'))
    assert summary["rows"] == 17 and summary["labels"] == {"normal": 8, "effusion": 9}
    registry = _registry(medical)
    pipe, dataset = registry.pipelines["medical.xrays"], registry.datasets["medical.xrays"]
    assert pipe.classes == ["normal", "effusion"] and dataset.kind == "files"
    with pytest.warns(UserWarning, match="own patient"):
        frame = dataset.loader()
    assert frame.filter(pl.col("path") == str(dcm))["patient"].item() == \
        frame.filter(pl.col("path").str.ends_with("scan2.dcm"))["patient"].item()  # the header's PatientID
    assert not frame["patient"].str.contains("MRN").any() and frame["patient"].str.starts_with("P-").all()


def test_a_csv_listing_with_patients_and_the_refusals(medical):
    rows = []
    for p in range(8):
        label = "normal" if p % 2 else "nodule"
        for i in range(2):
            _png(medical / "imgs" / f"p{p}-{i}.png", 30 * p + i)
            rows.append((f"imgs/p{p}-{i}.png", label, f"PAT{p:03d}"))
    pl.DataFrame(rows, schema=["path", "label", "patient"], orient="row").write_csv(medical / "list.csv")
    _, summary = register_config(_config(medical, "list.csv"))
    assert summary["labels"] == {"normal": 8, "nodule": 8}
    frame = _registry(medical).datasets["medical.xrays"].loader()
    assert frame["patient"].n_unique() == 8 and not frame["patient"].str.contains("PAT").any()
    # A patient in two classes: refused at registration, named by pseudonym only.
    bad = [(p, "normal" if (i == 0 and pid == "PAT000") else lab, pid) for i, (p, lab, pid) in enumerate(rows)]
    pl.DataFrame(bad, schema=["path", "label", "patient"], orient="row").write_csv(medical / "list.csv")
    with pytest.raises(OwnDataError, match=r"1 patient\(s\) have images of more than one class, e.g. patient P-") as info:
        register_config(_config(medical, "list.csv"))
    assert "PAT000" not in str(info.value)
    # One class only.
    pl.DataFrame([(p, "normal", pid) for p, _, pid in rows], schema=["path", "label", "patient"],
                 orient="row").write_csv(medical / "list.csv")
    with pytest.raises(OwnDataError, match=r"cannot tell the classes: .* has 1 class\(es\) \[.normal.\]"):
        register_config(_config(medical, "list.csv"))
    with pytest.raises(OwnDataError, match=r"1 class\(es\) \(normal\); a classifier needs at least two"):
        register_config(_config(medical, "list.csv", '[target]\nclasses = ["normal", "nodule"]\n'))
    # A listed file that does not exist; a listing without the label column.
    pl.DataFrame({"path": ["imgs/none.png"], "label": ["a"]}).write_csv(medical / "list.csv")
    with pytest.raises(OwnDataError, match="1 listed file"):
        register_config(_config(medical, "list.csv"))
    pl.DataFrame({"path": ["imgs/p0-0.png"]}).write_csv(medical / "list.csv")
    with pytest.raises(OwnDataError, match=r"has no column\(s\) label"):
        register_config(_config(medical, "list.csv"))


def test_empty_folders_and_bad_sections_are_refused(medical):
    (medical / "empty").mkdir()
    with pytest.raises(OwnDataError, match="has no class subfolders"):
        register_config(_config(medical, "empty"))
    (medical / "empty" / "normal").mkdir()
    (medical / "empty" / "lesion").mkdir()
    with pytest.raises(OwnDataError, match="holds no files in its class subfolders"):
        register_config(_config(medical, "empty"))
    _png(medical / "pets" / "cats" / "a.png", 1)
    _png(medical / "pets" / "dogs" / "b.png", 2)
    with pytest.raises(OwnDataError, match="cannot tell which of the classes cats, dogs is the normal one"):
        register_config(_config(medical, "pets"))
    with pytest.raises(OwnDataError, match=r"images\.window = 'lungs'"):
        load_config(_config(medical, "empty", '[images]\nwindow = "lungs"\n'))
    with pytest.raises(OwnDataError, match=r"target\.classes"):
        load_config(_config(medical, "empty", '[target]\nclasses = ["only"]\n'))


def test_three_classes_through_postprocess_metrics_and_studies(tmp_path):
    from verticals.spec import ScoringContext
    from verticals_medical.pipeline import ImagingPipeline

    pipe = ImagingPipeline(classes=("normal", "benign", "malignant"), size=16)
    rng = np.random.default_rng(0)
    n = 9
    logits = rng.normal(size=(n, 3))
    aux = pl.DataFrame({"path": [str(tmp_path / f"s{i // 3}" / f"{i}.png") for i in range(n)],
                        "image": [f"I-{i:016x}" for i in range(n)], "patient": [f"P-{i // 3:016x}" for i in range(n)],
                        "study": [f"S-{i // 3:016x}" for i in range(n)], "series": [""] * n, "modality": [""] * n,
                        "kind": ["raster"] * n})
    batch = Batch(ids=pl.DataFrame({"image": aux["image"]}), inputs={"image": np.zeros((n, 1, 16, 16), np.uint8)},
                  target=np.array([0, 1, 2] * 3), aux=aux)
    side = tmp_path / "side"
    out = pipe.postprocess({"logits": logits, "cam": rng.normal(size=(n, 3, 2, 2))}, batch,
                           ScoringContext({}, side_dir=side, part="part-00000", input_root=tmp_path))
    assert out["file"].to_list()[0] == "s0/0.png"
    assert out["predicted"].to_list() == [pipe.classes[k] for k in logits.argmax(axis=1)]
    assert out["flagged"].to_list() == (logits.argmax(axis=1) != 0).tolist()
    assert (out["saliency"].is_not_null() == out["flagged"]).all() and len(list(side.iterdir())) == out["flagged"].sum()
    metrics = pipe.evaluate(out, batch)
    assert set(metrics["auroc_per_class"]) == {"normal", "benign", "malignant"}
    assert np.isclose(metrics["auroc"], np.mean(list(metrics["auroc_per_class"].values())))
    assert set(metrics["recall_per_class"]) == set(pipe.classes) and "sensitivity" not in metrics
    part = tmp_path / "part.parquet"
    out.write_parquet(part)
    studies = pipe.summarize([part], ScoringContext({}))["studies"]
    assert studies.height == 3 and studies["images"].to_list() == [3, 3, 3]
    means = out.group_by("study_id").agg(pl.col("p_benign").mean()).sort("study_id")["p_benign"].to_numpy()
    np.testing.assert_allclose(studies.sort("study_id")["p_benign"].to_numpy(), means)
