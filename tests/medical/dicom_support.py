"""Small DICOM and image files built in the tests: each one exercises one ingestion rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def corpus_files() -> list[Path]:
    """The real DICOM files pydicom-data ships in its wheel (nothing is downloaded)."""
    import data_store

    root = Path(data_store.__file__).parent / "data"
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix == ".dcm")


def write_dicom(path: Path, pixels: np.ndarray | None, *, photometric: str = "MONOCHROME2", slope: float = 1.0,
                intercept: float = 0.0, window: tuple[float, float] | None = None, frames: int = 1,
                modality: str = "CT", sop_class: str | None = None,
                rows: int | None = None, cols: int | None = None, **header) -> Path:
    """A minimal valid DICOM file (explicit VR little endian), ``pixels`` int16
    ``[H, W]`` or ``[F, H, W]``; ``None`` writes no pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class or CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = header.pop("PatientID", "TESTPATIENT01")
    ds.PatientName = header.pop("PatientName", "DOE^JANE")
    ds.StudyInstanceUID = header.pop("StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = generate_uid()
    for key, value in header.items():
        setattr(ds, key, value)
    if pixels is not None or rows is not None:
        arr = np.asarray(pixels if pixels is not None else np.zeros((2, 2)), dtype=np.int16)
        ds.Rows = rows or arr.shape[-2]
        ds.Columns = cols or arr.shape[-1]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        if frames > 1:
            ds.NumberOfFrames = frames
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
