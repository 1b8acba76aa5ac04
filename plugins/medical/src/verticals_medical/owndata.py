"""``medical.images``: a user's labelled images as an imaging pipeline, through the core's own-data mechanism.

```toml
name = "chest_xray"
template = "medical.images"
data = "xrays/"              # a folder with one subfolder per class, or a CSV/Parquet of path,label[,patient][,study]

[target]                     # optional for a folder; the classes, the normal (negative) one first
classes = ["normal", "pneumonia"]

[images]                     # optional
size = 64                    # side the images are letterboxed to
window = "lung"              # DICOM VOI preset: lung, soft_tissue, bone, brain (default: the file's window)
target_sensitivity = 0.9     # the operating point is chosen on validation to reach it
epochs = 20
```

Without ``target.classes`` the classes are the folder's subfolders (or, for a file, its labels), the
normal-looking one (normal, negative, healthy, no finding, ...) first; when none or several look normal,
declare them. Patients: the file's ``patient`` column, else each DICOM
file's PatientID, else each image is its own patient (a warning says how many); splits are always by
patient. The labels must have at least two classes, and no patient may have images of two classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.owndata import DataTemplate, OwnDataConfig

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl
    from verticals.pipeline import Pipeline
    from verticals.spec import Column, DatasetSpec

__all__ = ["images_template"]

_IMAGE_KEYS = {"size", "window", "target_sensitivity", "epochs"}


def _parse(config: OwnDataConfig) -> dict[str, Any]:
    from verticals_medical.imaging import PRESETS

    raw = config.raw.get("images") or {}
    if not isinstance(raw, dict) or set(raw) - _IMAGE_KEYS:
        bad = sorted(set(raw) - _IMAGE_KEYS) if isinstance(raw, dict) else raw
        raise config.fail(f"[images] has unknown key(s) {bad}", f"use {', '.join(sorted(_IMAGE_KEYS))}")
    if config.target != "label":
        raise config.fail(f"target.column is {config.target!r}; image lists use the column 'label'",
                          'name the label column "label" (or leave [target] out for a folder)')
    if config.ids:
        raise config.fail("'id' is not used by image data", "leave 'id' out: images are identified by pseudonyms")
    size = raw.get("size", 64)
    if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 512:
        raise config.fail(f"images.size = {size!r}", "use a whole number of pixels from 16 to 512, e.g. 64")
    window = raw.get("window")
    if window is not None and window not in PRESETS:
        raise config.fail(f"images.window = {window!r}", f"use one of {', '.join(PRESETS)}, or leave it out")
    sens = raw.get("target_sensitivity", 0.9)
    if not isinstance(sens, int | float) or isinstance(sens, bool) or not 0 < sens < 1:
        raise config.fail(f"images.target_sensitivity = {sens!r}", "use a fraction such as 0.9")
    epochs = raw.get("epochs", 20)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise config.fail(f"images.epochs = {epochs!r}", "use a whole number of epochs such as 20")
    target = config.raw.get("target") or {}
    classes = target.get("classes")
    if classes is None and (target.get("negative") is not None or target.get("positive") is not None):
        negative = target.get("negative")
        classes = [*(negative if isinstance(negative, list) else [negative]), target.get("positive")]
    if classes is not None:
        if not isinstance(classes, list) or len(classes) < 2 or any(c is None for c in classes) \
                or len({str(c) for c in classes}) != len(classes):
            raise config.fail(f"target.classes = {classes!r}", 'list two or more distinct labels, normal first: '
                                                               'classes = ["normal", "pneumonia"]')
        classes = [str(c) for c in classes]
    return {"size": size, "window": window, "target_sensitivity": float(sens), "epochs": epochs, "classes": classes}


_NORMAL = ("normal", "negative", "healthy", "no_finding", "no finding", "nofinding", "benign", "none", "no",
           "false", "0")


def _classes(config: OwnDataConfig) -> list[str]:
    """The declared classes, else the folder's subfolders (or the file's labels) with the normal-looking
    one first (normal, negative, healthy, no finding, ...).

    Raises:
        OwnDataError: the data cannot be read for its labels, or none of them looks normal.
    """
    declared = config.options.get("classes")
    if declared:
        return list(declared)
    data = config.data
    found: list[str] = []
    if data is not None and data.is_dir():
        found = sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    elif data is not None and data.is_file():
        from verticals.owndata import read_data

        try:
            found = sorted({str(v) for v in read_data(data).get_column("label").drop_nulls().to_list()})
        except Exception:  # unreadable or no label column: the data checks say so precisely
            found = []
    if len(found) < 2:
        raise config.fail(f"cannot tell the classes: {data} has {len(found)} class(es) {found}",
                          'fix the data (one subfolder or label per class), or declare [target] classes = '
                          '["normal", "finding"] with the normal class first')
    normal = [c for c in found if c.strip().casefold() in _NORMAL]
    if len(normal) != 1:
        raise config.fail(f"cannot tell which of the classes {', '.join(found)} is the normal one",
                          f"declare [target] classes = {found!r} reordered so that the normal class comes first")
    return [normal[0], *[c for c in found if c != normal[0]]]


def _read(config: OwnDataConfig) -> pl.DataFrame:
    from verticals_medical.datasets import read_listing, with_identities
    from verticals_medical.deid import Pseudonymizer

    where = f"data config {config.path}"
    frame = read_listing(Path(config.data), where=where)
    return with_identities(frame, Pseudonymizer(), where=where, classes=_classes(config))


def _schema(config: OwnDataConfig, columns: list[Column]) -> list[Column]:
    from verticals_medical.preprocess import medical_schema

    return list(medical_schema(_classes(config)).columns)


def _pipeline(config: OwnDataConfig, dataset: DatasetSpec) -> Pipeline:
    from verticals.spec import SplitSpec

    from verticals_medical.pipeline import ImagingPipeline

    dataset.split = SplitSpec("group", config.split.test_fraction, config.split.valid_fraction)
    root = config.data if config.data is not None and config.data.is_dir() else \
        (config.data.parent if config.data is not None else None)
    opts = config.options
    return ImagingPipeline(name=config.name, dataset=config.name, classes=_classes(config), size=opts["size"],
                           window=opts["window"], target_sensitivity=opts["target_sensitivity"], root=root,
                           epochs=opts["epochs"], description=config.description or "")


def images_template() -> DataTemplate:
    return DataTemplate(
        name="images", pipeline=_pipeline, read=_read, parse=_parse, adjust_schema=_schema, task="multiclass",
        description="labelled medical images (DICOM, PNG/JPEG, .npy): a folder of class subfolders or a "
                    "CSV/Parquet of path,label[,patient][,study]",
        sections={"images": "size, window preset, target sensitivity, epochs"},
        min_rows=12, example="plugins/medical/README.md")
