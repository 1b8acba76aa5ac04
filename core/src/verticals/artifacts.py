"""Named model artifacts: files a pipeline stores in its model version next to the ONNX model.

An item catalogue, a popularity vector, a neighbour matrix, thresholds — data too large or too binary
for the manifest's JSON. :meth:`verticals.pipeline.Pipeline.artifacts` returns them by name; registration
writes them under ``artifacts/`` in the version folder and lists each in the manifest with its sha256;
scoring loads them once per session, verifying every byte, and hands them to ``postprocess`` through
:class:`verticals.spec.ScoringContext`.

Storage by kind, none of which can execute code when read back:

* numpy arrays → ``.npy`` (read with ``allow_pickle=False``; object arrays are refused when stored);
* polars DataFrames → Parquet;
* ``bytes`` → a raw file, handed back as its :class:`~pathlib.Path`;
* a :class:`~pathlib.Path` → the file copied, handed back as its path.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from verticals.errors import ModelIntegrityError, UserError
from verticals.fsutil import safe_name
from verticals.names import safe_join

__all__ = ["FOLDER", "MANIFEST_KEY", "load", "save"]

FOLDER = "artifacts"
MANIFEST_KEY = "named_artifacts"


def save(artifacts: Mapping[str, Any], version_dir: Path) -> dict[str, dict[str, str]]:
    """Write ``artifacts`` under ``version_dir/artifacts``; return the manifest entries by name
    (``{"file": relative path, "kind": "npy" | "parquet" | "file"}``)."""
    import numpy as np
    import polars as pl

    entries: dict[str, dict[str, str]] = {}
    if not artifacts:
        return entries
    folder = Path(version_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in artifacts.items():
        safe_name(name, "artifact name")
        if isinstance(value, np.ndarray):
            target, kind = folder / f"{name}.npy", "npy"
            np.save(target, value, allow_pickle=False)
        elif isinstance(value, pl.DataFrame):
            target, kind = folder / f"{name}.parquet", "parquet"
            value.write_parquet(target)
        elif isinstance(value, bytes):
            target, kind = folder / name, "file"
            target.write_bytes(value)
        else:
            source = Path(value)
            target, kind = folder / f"{name}{''.join(source.suffixes)[-16:]}", "file"
            shutil.copyfile(source, target)
        entries[name] = {"file": f"{FOLDER}/{target.name}", "kind": kind}
    return entries


def load(version_dir: Path, entries: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Read the artifacts a manifest lists (the store has verified the files' sha256 already).

    Raises:
        ModelIntegrityError: an entry points outside the version folder or its file is missing.
    """
    import numpy as np
    import polars as pl

    out: dict[str, Any] = {}
    for name, entry in (entries or {}).items():
        rel = str(entry.get("file", ""))
        try:
            path = safe_join(Path(version_dir), rel, what="artifact")
        except UserError:
            raise ModelIntegrityError(f"artifact '{name}' of {version_dir} points outside its model version ({rel!r})",
                                      hint="the manifest was altered: retrain or restore the version") from None
        if not path.is_file():
            raise ModelIntegrityError(f"artifact '{name}' of {version_dir} is missing ({rel})",
                                      hint="the model version is incomplete: retrain or restore it")
        kind = entry.get("kind")
        if kind == "npy":
            out[name] = np.load(path, allow_pickle=False)
        elif kind == "parquet":
            out[name] = pl.read_parquet(path)
        else:
            out[name] = path
    return out
