"""The plugin's datasets, and reading a user's image folder or file list into the medical schema."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.spec import DatasetSpec, SplitSpec

from verticals_medical.preprocess import medical_schema
from verticals_medical.synthetic import CLASSES

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

__all__ = ["IMAGE_SUFFIXES", "ct_dataset", "list_images", "read_listing", "with_identities"]

IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")


def ct_dataset(patients: int = 120, *, slices: int = 4, pixels: int = 96, seed: int = 0,
               root: Path | str | None = None, name: str = "ct_slices") -> DatasetSpec:
    """The embedded default (:mod:`verticals_medical.synthetic`), generated on first use into ``root``
    (default: a folder under the model store's home named by the parameters)."""

    def folder() -> Path:
        if root is not None:
            return Path(root)
        from verticals.store import home

        return home() / "datasets" / f"medical-ct-{patients}-{slices}-{pixels}-{seed}"

    def load() -> pl.DataFrame:
        from verticals_medical.deid import Pseudonymizer
        from verticals_medical.synthetic import frame_of, make_series

        pseudonymize = Pseudonymizer()  # refuses to start without a key, before writing anything
        return frame_of(make_series(folder(), patients, slices=slices, pixels=pixels, seed=seed), pseudonymize)

    return DatasetSpec(
        name=name, loader=load, schema=medical_schema(CLASSES), split=SplitSpec("group", 0.2, 0.2), kind="files",
        target_positive=CLASSES[1],
        description=f"Synthetic CT series: {patients} patients × {slices} slices, half with a lesion "
                    "(verticals_medical.synthetic)",
        source="generator: verticals_medical.synthetic.make_series (phantom body, noise, spherical lesions)",
        license="generated")


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive; hidden names and names starting with ``_`` skipped)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(
        part.startswith((".", "_")) for part in p.relative_to(folder).parts))


def read_listing(data: Path, *, where: str) -> pl.DataFrame:
    """``path, label[, patient][, study]`` from a folder of class subfolders or a CSV/Parquet file.

    Raises:
        OwnDataError: the folder has no class subfolders or images, the file lacks ``path`` or
            ``label``, or a listed file does not exist.
    """
    import polars as pl
    from verticals.owndata import OwnDataError, read_data

    if data.is_dir():
        classes = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
        if not classes:
            raise OwnDataError(f"{where}: image folder {data} has no class subfolders",
                               hint="put the images of each class in a subfolder named by the class "
                                    "(e.g. normal/, pneumonia/), or list them in a CSV of path,label")
        rows = [(str(f), c.name) for c in classes for f in list_images(c)]
        if not rows:
            raise OwnDataError(f"{where}: image folder {data} holds no files in its class subfolders",
                               hint="copy the images into the class subfolders")
        return pl.DataFrame(rows, schema={"path": pl.String, "label": pl.String}, orient="row")
    frame = read_data(data)
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise OwnDataError(f"{where}: data file {data} has no column(s) {', '.join(missing)}",
                           hint="list the images as columns path,label[,patient][,study]")
    extra = [c for c in frame.columns if c not in ("path", "label", "patient", "study")]
    frame = frame.select([c for c in ("path", "label", "patient", "study") if c in frame.columns]).with_columns(
        pl.col(c).cast(pl.String) for c in frame.columns if c not in extra)
    base = data.parent
    paths = [str(p if Path(p).is_absolute() else base / p) if p is not None else None
             for p in frame.get_column("path").to_list()]
    frame = frame.with_columns(pl.Series("path", paths, dtype=pl.String))
    absent = [p for p in paths if p is not None and not Path(p).is_file()]
    if absent:
        raise OwnDataError(f"{where}: {len(absent)} listed file(s) do not exist, e.g. {absent[0]}",
                           hint=f"fix the paths in {data.name} (relative paths are relative to its folder)")
    return frame


def with_identities(frame: pl.DataFrame, pseudonymize: Any, *, where: str,
                    classes: Sequence[str] | None = None) -> pl.DataFrame:
    """``frame`` with pseudonymised ``patient`` and ``study`` columns.

    Per image, the patient is the frame's ``patient`` value, else the DICOM header's PatientID (read
    without pixel data), else the image itself — each such image is its own patient, and a warning says
    how many. Studies likewise (StudyInstanceUID, else one study per patient). Raw values never leave
    this function.

    Raises:
        OwnDataError: fewer than two classes, a label outside ``classes``, or a patient with images of
            two classes (named by pseudonym).
    """
    import polars as pl
    from verticals.owndata import OwnDataError

    labels = frame.get_column("label").cast(pl.String)
    present = sorted(set(labels.drop_nulls().to_list()))
    if len(present) < 2:
        raise OwnDataError(f"{where}: the labels have {len(present)} class(es) ({', '.join(present) or 'none'}); "
                           "a classifier needs at least two",
                           hint="add images of the other class(es)")
    if classes is not None:
        other = [c for c in present if c not in classes]
        if other:
            raise OwnDataError(f"{where}: label(s) {', '.join(repr(c) for c in other[:5])} are not among the declared "
                               f"classes {', '.join(classes)}", hint="add them to target.classes or remove those images")
    given_p = frame.get_column("patient").to_list() if "patient" in frame.columns else [None] * frame.height
    given_s = frame.get_column("study").to_list() if "study" in frame.columns else [None] * frame.height
    patients, studies = [], []
    own = 0
    for path, gp, gs in zip(frame.get_column("path").to_list(), given_p, given_s, strict=True):
        header_p = header_s = None
        if (gp is None or gs is None) and path is not None:
            header_p, header_s = _dicom_ids(path)
        if gp is not None and str(gp).strip():
            patient = pseudonymize("patient", str(gp).strip())
        elif header_p:
            patient = pseudonymize("patient", header_p)
        else:
            patient = pseudonymize("patient", f"file:{path}")
            own += 1
        if gs is not None and str(gs).strip():
            study = pseudonymize("study", str(gs).strip())
        elif header_s:
            study = pseudonymize("study", header_s)
        else:
            study = pseudonymize("study", f"patient:{patient}")
        patients.append(patient)
        studies.append(study)
    if own:
        warnings.warn(f"{where}: {own} of {frame.height} image(s) have no patient (no 'patient' column and no DICOM "
                      "PatientID): each is treated as its own patient, so images of one person could land in both "
                      "training and test (fix: add a patient column)", UserWarning, stacklevel=2)
    out = frame.with_columns(pl.Series("patient", patients, dtype=pl.String),
                             pl.Series("study", studies, dtype=pl.String))
    mixed = out.group_by("patient").agg(pl.col("label").n_unique().alias("n")).filter(pl.col("n") > 1)
    if mixed.height:
        raise OwnDataError(f"{where}: {mixed.height} patient(s) have images of more than one class, e.g. patient "
                           f"{mixed.sort('patient')['patient'][0]} (pseudonym)",
                           hint="label per patient: splits keep each patient whole, so one patient cannot "
                                "stand for two classes")
    return out


def _dicom_ids(path: str) -> tuple[str | None, str | None]:
    """PatientID and StudyInstanceUID of a DICOM file (header only), or ``(None, None)``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return None, None
    if head[128:132] != b"DICM" and not path.lower().endswith((".dcm", ".dicom")):
        return None, None
    import pydicom

    from verticals_medical.imaging import quiet_pydicom

    quiet_pydicom()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", "StudyInstanceUID"])
    except Exception:  # corrupt files are rejected with their reason when decoded
        return None, None
    pid = str(ds.get("PatientID", "") or "").strip() or None
    sid = str(ds.get("StudyInstanceUID", "") or "").strip() or None
    return pid, sid
