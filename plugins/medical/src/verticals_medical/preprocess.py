"""Image files → model pixels, pseudonymised ids and rejects; the schema of every medical dataset.

One row per file (``path``), an optional ``label``, an optional ``patient`` and ``study``. The
preprocessor decodes each file (:mod:`verticals_medical.imaging`) in the core's decode threads, turns
every undecodable file into a reject with its path and reason, and never lets a raw header value out:
patient, study, series and instance identifiers become keyed pseudonyms (:mod:`verticals_medical.deid`).

Where identifiers come from, per image (as in the dataset loaders, so splits and outputs agree): the
frame's ``patient``/``study`` columns (pseudonymised unless they already are); otherwise a DICOM file's
own header (PatientID, StudyInstanceUID); otherwise the image is its own patient and study.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from verticals.spec import Batch, Column, Preprocessor, Schema, TensorSpec

from verticals_medical.imaging import PRESETS, ImageRejected, decode

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    import torch

__all__ = ["AUX_COLUMNS", "MedicalPreprocessor", "is_pseudonym", "medical_schema"]

AUX_COLUMNS = ("path", "image", "patient", "study", "series", "modality", "kind")
_PSEUDONYM = re.compile(r"^[PSRI]-[0-9a-f]{16}$")


def medical_schema(classes: Sequence[str]) -> Schema:
    """One row per image file: its path, its label, and (optional) the patient and study it belongs to."""
    return Schema((
        Column("path", "path", "feature", on_missing="reject",
               description="image file: DICOM, PNG, JPEG, TIFF or NumPy .npy"),
        Column("label", "category", "target", categories=tuple(classes), description="the image's class"),
        Column("patient", "string", "group", required=False,
               description="patient pseudonym: images of one patient never span two splits"),
        Column("study", "string", "attribute", required=False, description="study pseudonym (per-study scores)"),
    ))


def is_pseudonym(value: str, kind: str) -> bool:
    return bool(_PSEUDONYM.match(value)) and value[0] == {"patient": "P", "study": "S", "series": "R"}.get(kind, "I")


class DecodeCache:
    """Decoded files kept in memory by the process, up to ``VERTICALS_MEDICAL_CACHE_MB`` megabytes
    (default 256; 0 turns it off), least recently used first out. Training reads every file once per
    epoch, and again for evaluation, the baseline and the report, and a flow may score in the same
    process: with the cache a JPEG 2000 radiograph is decoded once. Entries are keyed by path, size,
    modification time, model size and window, so a changed file is decoded again. Raw header
    identifiers live only here, in memory; rejects are not cached (their reason is cheap to find again)."""

    def __init__(self) -> None:
        import os
        import threading
        from collections import OrderedDict

        raw = os.environ.get("VERTICALS_MEDICAL_CACHE_MB", "").strip()
        try:
            megabytes = float(raw) if raw else 256.0
        except ValueError:
            from verticals.errors import UserError

            raise UserError(f"VERTICALS_MEDICAL_CACHE_MB={raw!r} is not a number",
                            hint="set it to a size in megabytes such as 256 (0 turns the cache off), or unset it") \
                from None
        self.limit = int(max(megabytes, 0.0) * (1 << 20))
        self.used = 0
        self.entries: OrderedDict[tuple, Any] = OrderedDict()
        self.lock = threading.Lock()

    def decode(self, path: str, size: int, window: str | None) -> Any:
        import os

        if self.limit <= 0:
            return decode(path, size, window=window)
        try:
            stat = os.stat(path)
            key = (path, stat.st_size, stat.st_mtime_ns, size, window)
        except OSError:
            return decode(path, size, window=window)  # rejected with its reason there
        with self.lock:
            hit = self.entries.get(key)
            if hit is not None:
                self.entries.move_to_end(key)
                return hit
        decoded = decode(path, size, window=window)
        with self.lock:
            if key not in self.entries:
                self.entries[key] = decoded
                self.used += decoded.pixels.nbytes + 512
                while self.used > self.limit and self.entries:
                    _, old = self.entries.popitem(last=False)
                    self.used -= old.pixels.nbytes + 512
        return decoded


_SHARED: DecodeCache | None = None


def shared_cache() -> DecodeCache:
    """The process's :class:`DecodeCache` (created on first use)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = DecodeCache()
    return _SHARED


class MedicalPreprocessor(Preprocessor):
    """Files → ``image`` uint8 ``[N, 1, size, size]``; streamed, decoded in threads, row-wise.

    Fitted state: the mean and standard deviation of the pixels (in ``[0, 1]``) of up to ``fit_images``
    decodable training images, applied inside the exported graph; the classes; the window preset.
    """

    rowwise = True
    materialize = False
    workers = 0
    chunk_rows = 32

    def __init__(self, schema: Schema, classes: Sequence[str], *, size: int = 64, window: str | None = None,
                 fit_images: int = 128) -> None:
        if window is not None and window not in PRESETS:
            from verticals.errors import UserError

            raise UserError(f"unknown window preset {window!r}", hint=f"use one of {', '.join(PRESETS)}, or none")
        self.schema = schema
        self.classes = [str(c) for c in classes]
        self.size = int(size)
        self.window = window
        self.fit_images = int(fit_images)
        self.mean, self.std = 0.5, 0.25
        self._pseudonymize: Any = None
        self._cache = shared_cache()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. a training stage's result persisted by a flow) without the key."""
        return {**self.__dict__, "_pseudonymize": None, "_cache": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = shared_cache()

    # -- helpers -------------------------------------------------------------------------------------
    def pseudonymize(self, kind: str, value: str) -> str:
        if self._pseudonymize is None:
            from verticals_medical.deid import Pseudonymizer

            self._pseudonymize = Pseudonymizer()
        return self._pseudonymize(kind, value)

    def _ident(self, kind: str, header: str | None, given: Any, path: str) -> str:
        """The frame's value (pseudonymised unless it already is), else the header's, else the file's."""
        if given is not None and str(given).strip():
            text = str(given).strip()
            return text if is_pseudonym(text, kind) else self.pseudonymize(kind, text)
        if header:
            return self.pseudonymize(kind, header)
        return self.pseudonymize(kind, f"file:{path}")

    def targets(self, frame: pl.DataFrame) -> np.ndarray | None:
        import numpy as np
        import polars as pl

        if "label" not in frame.columns:
            return None
        codes = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([codes.get(v, -1) for v in frame.get_column("label").cast(pl.String).to_list()],
                          dtype=np.int64)

    # -- contract ------------------------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame) -> None:
        import numpy as np

        total = squares = 0.0
        count = 0
        seen = 0
        for path in frame.get_column("path").to_list():
            if seen >= self.fit_images:
                break
            try:
                pixels = self._cache.decode(str(path), self.size, self.window).pixels
            except ImageRejected:
                continue  # transform rejects it with its reason; statistics come from the others
            x = pixels.astype(np.float64) / 255.0
            total += float(x.sum())
            squares += float((x * x).sum())
            count += x.size
            seen += 1
        if count:
            mean = total / count
            self.mean = float(mean)
            self.std = float(max(np.sqrt(max(squares / count - mean * mean, 0.0)), 1e-3))

    def transform(self, frame: pl.DataFrame, *, with_target: bool) -> Batch:
        import numpy as np
        import polars as pl

        paths = [str(p) for p in frame.get_column("path").to_list()]
        patients = frame.get_column("patient").to_list() if "patient" in frame.columns else [None] * len(paths)
        studies = frame.get_column("study").to_list() if "study" in frame.columns else [None] * len(paths)
        images = np.empty((len(paths), 1, self.size, self.size), dtype=np.uint8)
        keep: list[int] = []
        bad: list[int] = []
        reasons: list[str] = []
        aux: dict[str, list[str]] = {c: [] for c in AUX_COLUMNS}
        image_ids: list[str] = []
        for i, (path, decoded) in enumerate(zip(paths, self._decode_all(paths), strict=True)):
            if isinstance(decoded, ImageRejected):
                bad.append(i)
                reasons.append(f"{path}: {decoded}")
                continue
            images[len(keep)] = decoded.pixels[None]
            keep.append(i)
            patient = self._ident("patient", decoded.patient, patients[i], path)
            if (studies[i] is not None and str(studies[i]).strip()) or decoded.study:
                study = self._ident("study", decoded.study, studies[i], path)
            elif decoded.patient or (patients[i] is not None and str(patients[i]).strip()):
                study = self.pseudonymize("study", f"patient:{patient}")  # one study per patient
            else:
                study = self.pseudonymize("study", f"file:{path}")
            aux["path"].append(path)
            aux["patient"].append(patient)
            aux["study"].append(study)
            aux["series"].append(self.pseudonymize("series", decoded.series) if decoded.series else "")
            aux["modality"].append(decoded.modality)
            aux["kind"].append(decoded.kind)
            image_ids.append(self.pseudonymize("image", decoded.instance or f"file:{path}"))
            aux["image"].append(image_ids[-1])
        kept = frame[pl.Series(keep, dtype=pl.UInt32)] if bad else frame
        rejects = None
        if bad:
            rejects = frame[pl.Series(bad, dtype=pl.UInt32)].select(pl.all().cast(pl.String)).with_columns(
                pl.Series("_row", bad, dtype=pl.Int64), pl.Series("_reason", reasons, dtype=pl.String))
        target = None
        if with_target and "label" in kept.columns:
            target = self.targets(kept)
        return Batch(ids=pl.DataFrame({"image": image_ids}, schema={"image": pl.String}),
                     inputs={"image": images[: len(keep)]}, target=target,
                     aux=pl.DataFrame(aux, schema={c: pl.String for c in AUX_COLUMNS}), rejects=rejects)

    def _decode_all(self, paths: list[str]) -> list[Any]:
        """Each file decoded (or its :class:`ImageRejected`), in order. Training hands over chunks of
        ``chunk_rows`` files from several threads already; a larger frame (a scoring batch: a whole
        partition of a folder) is decoded in a pool of threads here, so one partition still uses every
        core (pydicom's decoders, Pillow and numpy release the GIL for the heavy part)."""
        import os

        def one(path: str) -> Any:
            try:
                return self._cache.decode(path, self.size, self.window)
            except ImageRejected as exc:
                return exc

        threads = min(8, os.cpu_count() or 1)
        if len(paths) <= 2 * (self.chunk_rows or 32) or threads < 2:
            return [one(p) for p in paths]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verticals-medical-decode") as pool:
            return list(pool.map(one, paths))

    def augment(self, batch: Batch, rng: np.random.Generator) -> Batch:
        """Training batches only: random horizontal flips, shifts of up to 1/16 of the side and ±10 %
        brightness; what a lesion looks like does not change under them, where it lies does."""
        import numpy as np

        image = batch.inputs["image"].copy()
        n = image.shape[0]
        flip = rng.random(n) < 0.5
        image[flip] = image[flip][..., ::-1]
        limit = max(1, self.size // 16)
        for i in range(n):
            dy, dx = (int(v) for v in rng.integers(-limit, limit + 1, 2))
            image[i] = np.roll(image[i], (dy, dx), axis=(-2, -1))
        gain = rng.uniform(0.9, 1.1, (n, 1, 1, 1))
        image = np.clip(np.rint(image.astype(np.float32) * gain), 0, 255).astype(np.uint8)
        return replace(batch, inputs={**batch.inputs, "image": image})

    def signature(self) -> dict[str, TensorSpec]:
        return {"image": TensorSpec("uint8", (-1, 1, self.size, self.size))}

    def info(self) -> dict[str, Any]:
        return {"channels": 1, "size": self.size, "classes": len(self.classes)}

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "mean": self.mean, "std": self.std, "classes": self.classes,
                "window": self.window, "fit_images": self.fit_images}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.size = int(state["size"])
        self.mean, self.std = float(state["mean"]), float(state["std"])
        self.classes = [str(c) for c in state["classes"]]
        self.window = state.get("window")
        self.fit_images = int(state.get("fit_images", self.fit_images))

    def graph_module(self) -> torch.nn.Module:
        from verticals_medical.model import normalize_module

        return normalize_module(self.mean, self.std)
