"""The embedded default: seeded CT-like slices written as real DICOM series.

Patient ``i`` of seed ``s`` (``numpy.random.default_rng([s, i])``):

* a **phantom body**: an elliptical soft-tissue trunk (40 ± 10 HU, semi-axes 36–44 % × 26–34 % of the
  field of view) in air (−1000 HU), two elliptical lungs (−850 ± 30 HU), a vertebral body (≈ 700 HU)
  and a fat rim (−100 HU); shapes vary per patient and drift slowly from slice to slice;
* **noise**: Gaussian, σ = 12–25 HU per patient (a dose level), plus a faint smooth field (beam
  hardening-like shading, ±8 HU);
* **lesions**: half of the patients (label ``lesion``) carry one spherical lesion in the soft tissue
  outside the lungs, radius 4–9 % of the field of view and contrast +35 to +110 HU (hyper-dense, e.g. an
  enhancing mass), centred on the middle slice so every slice of the series cuts it (a smaller disc on
  the outer slices); the others are ``normal``. Labels are per patient, as in a study-level read.
* ``slices`` slices per patient (default 4), 5 mm apart, ``pixels × pixels`` (default 96), stored as
  ``int16`` with RescaleSlope 1 and RescaleIntercept −1024 and a soft-tissue window (40/400) in the
  header; one study and one series per patient, with plausible (invented) names, ids, dates, an
  institution and physician names: the de-identification tests look for those values in every file
  the platform writes.

What it does not simulate: real anatomy and its variation, partial-volume effects, streak or motion
artefacts, contrast phases, calcifications or other look-alikes, scanner-specific noise texture,
vendor-specific headers or compressed transfer syntaxes (the pydicom-data corpus covers those), and
the label noise of real reads. A model that does well here has learned to see a bright blob in
noise; it says nothing about clinical performance.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["CLASSES", "INDEX", "make_series"]

CLASSES = ("normal", "lesion")
INDEX = "_series.json"
_FIRST = ("ALEX", "MARIA", "JONAS", "PRIYA", "SOFIA", "KENJI", "AMARA", "LUCAS")
_LAST = ("HOLLOWAY", "FERREIRA", "NAKAMURA", "OKONKWO", "LINDQVIST", "DUBROVSKY", "ABERNATHY", "QUESADA")


def _ellipse(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return ((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 <= 1.0


def _slice(rng_shape: dict[str, Any], n: int, z: int, slices: int, rng: np.random.Generator,
           lesion: dict[str, float] | None) -> np.ndarray:
    """One slice in HU (float)."""
    import numpy as np

    ys, xs = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
    drift = (z - (slices - 1) / 2) * 0.01 * n
    s = rng_shape
    hu = np.full((n, n), -1000.0)
    body = _ellipse(xs, ys, s["cx"], s["cy"] + drift * 0.2, s["ax"] * n, s["ay"] * n)
    inner = _ellipse(xs, ys, s["cx"], s["cy"] + drift * 0.2, s["ax"] * n - 2.5, s["ay"] * n - 2.5)
    hu[body] = -100.0
    hu[inner] = s["tissue"]
    for side in (-1, 1):
        lung = _ellipse(xs, ys, s["cx"] + side * s["lung_dx"] * n, s["cy"] - 0.04 * n,
                        s["lung_ax"] * n * (1 + 0.02 * drift), s["lung_ay"] * n)
        hu[lung & inner] = s["lung"]
    spine = _ellipse(xs, ys, s["cx"], s["cy"] + s["ay"] * n * 0.62, 0.06 * n, 0.05 * n)
    hu[spine] = 700.0
    if lesion is not None:
        dz = (z - (slices - 1) / 2) * lesion["dz"]
        r2 = lesion["r"] ** 2 - dz ** 2
        r = float(np.sqrt(max(r2, (0.5 * lesion["r"]) ** 2)))
        mask = (xs - lesion["x"]) ** 2 + (ys - lesion["y"]) ** 2 <= r ** 2
        hu[mask & inner] += lesion["contrast"]
    shade = s["shade"] * np.cos((xs - s["cx"]) / n * np.pi) * np.cos((ys - s["cy"]) / n * np.pi)
    hu[body] += shade[body]
    hu += rng.normal(0.0, s["sigma"], (n, n))
    return hu


def _lesion_site(rng: np.random.Generator, s: dict[str, Any], n: int, radius: float) -> tuple[float, float]:
    """A lesion centre in soft tissue: inside the trunk, away from the lungs, the spine and the rim."""
    import numpy as np

    for _ in range(200):
        angle = rng.uniform(0, 2 * np.pi)
        frac = rng.uniform(0.0, 0.7)
        x = s["cx"] + np.cos(angle) * frac * (s["ax"] * n - radius - 3)
        y = s["cy"] + np.sin(angle) * frac * (s["ay"] * n - radius - 3)
        in_lung = any(((x - (s["cx"] + side * s["lung_dx"] * n)) / (s["lung_ax"] * n + radius)) ** 2
                      + ((y - (s["cy"] - 0.04 * n)) / (s["lung_ay"] * n + radius)) ** 2 <= 1.0 for side in (-1, 1))
        in_spine = ((x - s["cx"]) / (0.06 * n + radius)) ** 2 + \
            ((y - (s["cy"] + s["ay"] * n * 0.62)) / (0.05 * n + radius)) ** 2 <= 1.0
        if not in_lung and not in_spine:
            return float(x), float(y)
    return float(s["cx"]), float(s["cy"] + 0.2 * s["ay"] * n)  # pragma: no cover - always found above


def _uid(*parts: Any) -> str:
    """A valid, deterministic DICOM UID under the '2.25.' root (a UUID-derived integer)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _write(path: Path, hu: np.ndarray, header: dict[str, Any], z: int) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = _uid(header["series_uid"], z)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientName = header["name"]
    ds.PatientID = header["patient_id"]
    ds.PatientBirthDate = header["birth"]
    ds.PatientSex = header["sex"]
    ds.StudyInstanceUID = header["study_uid"]
    ds.SeriesInstanceUID = header["series_uid"]
    ds.FrameOfReferenceUID = _uid(header["study_uid"], "frame")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = header["date"]
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = header["time"]
    ds.AccessionNumber = header["accession"]
    ds.StudyID = header["study_id"]
    ds.InstitutionName = "Lakeside Synthetic Hospital"
    ds.ReferringPhysicianName = header["physician"]
    ds.OperatorsName = "TECH^SYNTHETIC"
    ds.StationName = "SYNCT01"
    ds.StudyDescription = "CT CHEST ABDOMEN (synthetic)"
    ds.SeriesDescription = "AXIAL 5MM (synthetic)"
    ds.Manufacturer = "verticals synthetic"
    ds.SeriesNumber = 1
    ds.InstanceNumber = z + 1
    ds.SliceThickness = 5.0
    ds.ImagePositionPatient = [-180.0, -180.0, -5.0 * z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [360.0 / hu.shape[0], 360.0 / hu.shape[1]]
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    stored = np.clip(np.rint(hu + 1024.0), -32768, 32767).astype(np.int16)
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_series(root: Path | str, patients: int, *, slices: int = 4, pixels: int = 96, seed: int = 0,
                positive_fraction: float = 0.5) -> list[dict[str, Any]]:
    """Write ``patients`` synthetic CT series into ``root`` and return one record per file:
    ``path`` (absolute), ``label``, ``patient_id`` (the raw, invented header value), ``study_uid``.

    A folder generated with the same parameters is reused (its index file records them); a folder
    holding anything else is refused rather than mixed with new files.

    Raises:
        UserError: bad parameters, or ``root`` holds files this generator did not write with them.
    """
    import numpy as np
    from verticals.errors import UserError

    if patients < 2 or slices < 1 or pixels < 32 or not 0 < positive_fraction < 1:
        raise UserError(f"cannot generate {patients} patients × {slices} slices of {pixels}² pixels "
                        f"with a positive fraction of {positive_fraction}",
                        hint="ask for at least 2 patients, 1 slice, 32 pixels and a fraction in (0, 1)")
    root = Path(root).expanduser().resolve()
    params = {"generator": "verticals_medical.synthetic.make_series", "patients": int(patients),
              "slices": int(slices), "pixels": int(pixels), "seed": int(seed),
              "positive_fraction": float(positive_fraction)}
    index = root / INDEX
    if index.is_file():
        recorded = json.loads(index.read_text())
        if recorded.get("params") == params:
            return [dict(r, path=str(root / r["path"])) for r in recorded["records"]]
    if root.exists() and any(root.iterdir()):
        raise UserError(f"series folder {root} is not empty and was not generated with {params}",
                        hint="pass an empty or new folder")
    root.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    n = int(pixels)
    positives = set(np.random.default_rng([seed, 10**6]).permutation(patients)[: round(patients * positive_fraction)]
                    .tolist())
    for i in range(patients):
        rng = np.random.default_rng([seed, i])
        label = CLASSES[int(i in positives)]
        shape = {"cx": n / 2 + rng.uniform(-0.03, 0.03) * n, "cy": n / 2 + rng.uniform(-0.03, 0.03) * n,
                 "ax": rng.uniform(0.36, 0.44), "ay": rng.uniform(0.26, 0.34), "tissue": rng.normal(40, 10),
                 "lung": rng.normal(-850, 30), "lung_dx": rng.uniform(0.15, 0.19), "lung_ax": rng.uniform(0.09, 0.12),
                 "lung_ay": rng.uniform(0.13, 0.17), "sigma": rng.uniform(12, 25), "shade": rng.uniform(-8, 8)}
        lesion = None
        if label == "lesion":
            radius = rng.uniform(0.04, 0.09) * n
            x, y = _lesion_site(rng, shape, n, radius)
            lesion = {"x": x, "y": y, "r": radius, "dz": radius / max(slices, 2), "contrast": rng.uniform(35, 110)}
        tag = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:10]
        header = {"name": f"{_LAST[int(rng.integers(len(_LAST)))]}^{_FIRST[int(rng.integers(len(_FIRST)))]}"
                          f"^{i:04d}",
                  "patient_id": f"SYN{seed:03d}{i:05d}", "birth": f"19{int(rng.integers(30, 99))}0{int(rng.integers(1, 10))}15",
                  "sex": "MF"[int(rng.integers(2))], "study_uid": _uid(seed, i, "study"),
                  "series_uid": _uid(seed, i, "series"), "date": f"2025{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
                  "time": f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}00",
                  "accession": f"ACC{seed:02d}{i:06d}", "study_id": f"ST{i:05d}",
                  "physician": f"DR^{_LAST[int(rng.integers(len(_LAST)))]}"}
        folder = root / f"case-{tag}"
        folder.mkdir(parents=True, exist_ok=True)
        for z in range(slices):
            hu = _slice(shape, n, z, slices, rng, lesion)
            path = folder / f"slice-{z + 1:03d}.dcm"
            _write(path, hu, header, z)
            records.append({"path": str(path.relative_to(root)), "label": label,
                            "patient_id": header["patient_id"], "study_uid": header["study_uid"]})
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps({"params": params, "records": records}))
    os.replace(tmp, index)
    return [dict(r, path=str(root / r["path"])) for r in records]


def frame_of(records: list[dict[str, Any]], pseudonymize: Any) -> pl.DataFrame:
    """The dataset's frame of generated records: ``path``, ``label``, and pseudonymised ``patient`` and
    ``study`` (the raw header values never enter a frame)."""
    import polars as pl

    return pl.DataFrame({
        "path": [r["path"] for r in records],
        "label": [r["label"] for r in records],
        "patient": [pseudonymize("patient", r["patient_id"]) for r in records],
        "study": [pseudonymize("study", r["study_uid"]) for r in records],
    })
