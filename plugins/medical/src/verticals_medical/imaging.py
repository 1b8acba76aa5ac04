"""Reading one image file into the model's pixels: DICOM (pydicom), PNG/JPEG/TIFF (Pillow), NumPy.

Every reader returns a :class:`Decoded`: ``size × size`` grayscale ``uint8`` pixels and the few header
facts the platform keeps (:mod:`verticals_medical.deid`). Anything that cannot become an example raises
:class:`ImageRejected` with a one-line reason; the preprocessor turns that into a reject with the path.

DICOM, in order:

1. ``dcmread`` (the pixel data is not decoded yet). Not DICOM or truncated → rejected as corrupt.
2. Refused before decoding: SR and other objects without pixel data, segmentations (SEG), presentation
   states; more than ``max_pixels`` pixels per frame (``VERTICALS_MEDICAL_MAX_PIXELS``, default 64 M);
   photometric interpretations other than MONOCHROME1/2, RGB, YBR_* and PALETTE COLOR.
3. **Multi-frame**: one example per file, from the *middle* frame (``NumberOfFrames // 2``); only that
   frame is decoded. Cine loops and multi-frame CT/MR are therefore represented by one slice.
4. Compressed transfer syntaxes decode through the pylibjpeg plugins (JPEG baseline/extended/lossless,
   JPEG-LS, JPEG 2000, HTJ2K, RLE); a syntax no installed decoder supports is rejected, naming it.
5. Modality LUT: rescale slope/intercept (Hounsfield units for CT), then the VOI window: a pipeline
   preset (``lung`` −600/1500, ``soft_tissue`` 40/400, ``bone`` 400/1800, ``brain`` 40/80), else the
   file's first WindowCenter/WindowWidth, else the 0.5th–99.5th percentile of the frame. MONOCHROME1 is
   inverted after windowing, so bright always means dense. Colour (RGB, YBR, palette) becomes
   luminance (ITU-R 601).

PNG/JPEG/TIFF: the header is read first and images over ``max_pixels`` are refused without decoding;
EXIF orientation applied; any mode to 8-bit grayscale (16-bit grayscale scaled by its own range). NumPy
``.npy``: memory-mapped, shape checked first; ``[H, W]`` or ``[H, W, C]`` (C = 1, 3, 4), min–max scaled
to 0–255 unless already ``uint8``; pickled arrays are refused.

Resize: letterboxed to ``size × size`` (aspect ratio kept, bilinear, black padding), so the result
depends only on the file. Normalisation is not done here: it is part of the exported graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["MAX_PIXELS_ENV", "PRESETS", "Decoded", "ImageRejected", "decode", "max_pixels"]

MAX_PIXELS_ENV = "VERTICALS_MEDICAL_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 64_000_000
PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0), "soft_tissue": (40.0, 400.0), "bone": (400.0, 1800.0), "brain": (40.0, 80.0),
}
_SEG = "1.2.840.10008.5.1.4.1.1.66.4"
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_PRESENTATION_STATE_PREFIX = "1.2.840.10008.5.1.4.1.1.11."
_NO_IMAGE_MODALITIES = {"SR": "a structured report", "SEG": "a segmentation", "PR": "a presentation state",
                        "KO": "a key object selection", "RTSTRUCT": "an RT structure set", "RTPLAN": "an RT plan",
                        "REG": "a registration", "DOC": "an encapsulated document"}
_PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_ICT",
                "YBR_RCT", "YBR_PARTIAL_420"}
_RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class ImageRejected(Exception):
    """The file cannot become an example; ``str(exc)`` is the reason (without the path)."""


@dataclass
class Decoded:
    """Model pixels and the header facts the platform keeps (raw identifiers, pseudonymised by the caller)."""

    pixels: np.ndarray  # uint8 [size, size]
    kind: str  # dicom, raster, numpy
    modality: str = ""
    patient: str | None = None
    study: str | None = None
    series: str | None = None
    instance: str | None = None
    frames: int = 1
    notes: list[str] = field(default_factory=list)


def max_pixels() -> int:
    """Pixels per frame above which a file is refused before decoding (``VERTICALS_MEDICAL_MAX_PIXELS``)."""
    from verticals.errors import UserError

    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"{MAX_PIXELS_ENV}={raw!r} is not a positive whole number",
                        hint=f"set it to a pixel count such as {DEFAULT_MAX_PIXELS}, or unset it")
    return value


def _is_dicom(path: str, head: bytes) -> bool:
    return head[128:132] == b"DICM" or path.lower().endswith((".dcm", ".dicom"))


def decode(path: str, size: int, *, window: str | None = None, limit: int | None = None) -> Decoded:
    """The file at ``path`` as model pixels (see the module docstring).

    Raises:
        ImageRejected: the file is missing, corrupt, not an image, too large, or of a kind refused above.
    """
    limit = limit or max_pixels()
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except FileNotFoundError:
        raise ImageRejected("file does not exist") from None
    except OSError as exc:
        raise ImageRejected(f"cannot read the file ({exc.strerror or exc})") from None
    if not head:
        raise ImageRejected("empty file")
    if _is_dicom(path, head):
        return _dicom(path, size, window, limit)
    if head.startswith(b"\x93NUMPY") or path.lower().endswith(".npy"):
        return _numpy(path, size, limit)
    return _raster(path, size, limit)


# -- DICOM ---------------------------------------------------------------------------------------------
def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    text = str(value).strip()
    return text or None


_QUIET = False


def quiet_pydicom() -> None:
    """Silence pydicom's warnings and log records (once per process): they quote header values (UIDs,
    names) verbatim, and logs are among what must stay free of them. Reasons for rejects are ours."""
    global _QUIET
    if _QUIET:
        return
    import logging
    import warnings

    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    _QUIET = True


def _dicom(path: str, size: int, window: str | None, limit: int) -> Decoded:
    import numpy as np
    import pydicom
    from pydicom.errors import InvalidDicomError

    quiet_pydicom()
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise ImageRejected(f"corrupt DICOM: {_first_line(exc)}") from None
    except Exception as exc:  # truncated element lengths, bad sequences, ...; the message may quote values
        raise ImageRejected(f"corrupt DICOM: cannot parse the header ({type(exc).__name__})") from None
    sop = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").upper()
    if sop == _SEG or modality == "SEG":
        raise ImageRejected("DICOM segmentation (SEG): a label map, not an image to classify")
    if sop.startswith(_SR_PREFIX) or modality == "SR":
        raise ImageRejected("DICOM structured report (SR): no pixel data")
    if sop.startswith(_PRESENTATION_STATE_PREFIX):
        raise ImageRejected("DICOM presentation state: no pixel data")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if not modality:
            raise ImageRejected("corrupt or truncated DICOM: neither pixel data nor a modality could be read")
        raise ImageRejected(f"DICOM without pixel data ({_NO_IMAGE_MODALITIES.get(modality, f'modality {modality}')})")
    if modality in _NO_IMAGE_MODALITIES:
        raise ImageRejected(f"DICOM {_NO_IMAGE_MODALITIES[modality]} ({modality}): not an image to classify")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise ImageRejected("DICOM pixel data without valid Rows/Columns") from None
    if rows <= 0 or cols <= 0:
        raise ImageRejected(f"DICOM with {rows}×{cols} pixels")
    if rows * cols > limit:
        raise ImageRejected(f"{cols}×{rows} pixels per frame is more than the limit of {limit:,} "
                            f"(raise {MAX_PIXELS_ENV} to accept it)")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    if photometric not in _PHOTOMETRIC:
        raise ImageRejected(f"unsupported photometric interpretation {photometric or '(none)'}")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    index = frames // 2 if frames > 1 else None
    try:
        arr = ds.pixel_array if index is None else _one_frame(ds, index)
    except (NotImplementedError, RuntimeError) as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        name = getattr(syntax, "name", "") or str(syntax)
        if "decoder" in str(exc).lower() or "plugin" in str(exc).lower() or "transfer syntax" in str(exc).lower():
            raise ImageRejected(f"transfer syntax {name} ({syntax}) has no installed decoder "
                                "(install the pylibjpeg plugins or python-gdcm)") from None
        raise ImageRejected(f"cannot decode the pixel data ({_first_line(exc)})") from None
    except Exception as exc:  # truncated or malformed pixel data (messages name sizes, not header values)
        raise ImageRejected(f"corrupt DICOM pixel data ({type(exc).__name__}: {_first_line(exc)})") from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and frames > 1 and index is None:  # pragma: no cover - pixel_array of a whole volume
        arr = arr[frames // 2]
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3 or arr.ndim == 3:
        gray = _luminance(arr.astype(np.float64))
        values = _scale_range(gray, None)
    else:
        from pydicom.pixels import apply_rescale

        values = np.asarray(apply_rescale(arr, ds), dtype=np.float64)
        values = _window(values, ds, window)
        if photometric == "MONOCHROME1":
            values = 1.0 - values
    pixels = _letterbox(np.rint(values * 255.0).astype(np.uint8), size)
    return Decoded(pixels=pixels, kind="dicom", modality=modality, patient=_text(ds, "PatientID"),
                   study=_text(ds, "StudyInstanceUID"), series=_text(ds, "SeriesInstanceUID"),
                   instance=_text(ds, "SOPInstanceUID"), frames=frames)


def _one_frame(ds: Any, index: int) -> np.ndarray:
    from pydicom.pixels import pixel_array

    return pixel_array(ds, index=index)


def _window(values: np.ndarray, ds: Any, window: str | None) -> np.ndarray:
    """Map modality values to [0, 1] by the preset, the file's window, or its percentile range."""
    import numpy as np

    if window is not None:
        center, width = PRESETS[window]
    else:
        center = _first_number(ds.get("WindowCenter"))
        width = _first_number(ds.get("WindowWidth"))
        if center is None or width is None or width <= 1:
            return _scale_range(values, (0.5, 99.5))
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    return np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)


def _first_number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str | bytes) and hasattr(value, "__len__"):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


# -- other formats -------------------------------------------------------------------------------------
def _raster(path: str, size: int, limit: int) -> Decoded:
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:  # reads the header only
            if img.width * img.height > limit:
                raise ImageRejected(f"{img.width}×{img.height} pixels is more than the limit of {limit:,} "
                                    f"(raise {MAX_PIXELS_ENV} to accept it)")
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                values = _scale_range(np.asarray(img, dtype=np.float64), None)
            else:
                values = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image that Pillow can read (PNG, JPEG, TIFF, BMP) nor DICOM") from None
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"too many pixels ({_first_line(exc)})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"corrupt image ({_first_line(exc)})") from None
    pixels = _letterbox(np.rint(values * 255.0).astype(np.uint8), size)
    return Decoded(pixels=pixels, kind="raster")


def _numpy(path: str, size: int, limit: int) -> Decoded:
    import numpy as np

    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ImageRejected(f"not a plain NumPy array file ({_first_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise ImageRejected(f"corrupt NumPy file ({_first_line(exc)})") from None
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        height, width = arr.shape[:2]
    elif arr.ndim == 2:
        height, width = arr.shape
    else:
        raise ImageRejected(f"NumPy array of shape {tuple(arr.shape)}: expected [H, W] or [H, W, C] with C in 1, 3, 4")
    if height * width > limit:
        raise ImageRejected(f"{width}×{height} pixels is more than the limit of {limit:,} "
                            f"(raise {MAX_PIXELS_ENV} to accept it)")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ImageRejected(f"NumPy array of dtype {arr.dtype}: expected numbers")
    values = np.asarray(arr, dtype=np.float64)
    if values.ndim == 3:
        values = values[..., 0] if values.shape[2] == 1 else _luminance(values[..., :3])
    if not np.isfinite(values).all():
        raise ImageRejected("NumPy array holds NaN or infinite values")
    values = values / 255.0 if arr.dtype == np.uint8 else _scale_range(values, None)
    pixels = _letterbox(np.rint(values * 255.0).astype(np.uint8), size)
    return Decoded(pixels=pixels, kind="numpy")


# -- helpers -------------------------------------------------------------------------------------------
def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _scale_range(values: np.ndarray, percentiles: tuple[float, float] | None) -> np.ndarray:
    import numpy as np

    if percentiles is None:
        low, high = float(values.min()), float(values.max())
    else:
        low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _letterbox(gray: np.ndarray, size: int) -> np.ndarray:
    import numpy as np
    from PIL import Image, ImageOps

    img = Image.fromarray(np.ascontiguousarray(gray), "L")
    return np.asarray(ImageOps.pad(img, (size, size), method=Image.Resampling.BILINEAR, color=0), dtype=np.uint8)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
