"""Named model artifacts: files a pipeline stores in its model version next to the ONNX model.

An item catalogue, a popularity vector, a neighbour matrix, thresholds — data too large or too binary
for the manifest's JSON. :meth:`verticals.pipeline.Pipeline.artifacts` returns them by name; registration
writes them under ``artifacts/`` in the version folder and lists each in the manifest with its sha256;
scoring loads them once per session, verifying every byte, and hands them to ``postprocess`` through
:class:`verticals.spec.ScoringContext`.

The same storage holds a preprocessor's **large fitted state**: :meth:`Preprocessor.state` may return
numpy arrays or polars DataFrames as top-level values (a recommender's known histories, a vocabulary of
millions); registration writes them under ``preprocessor/`` (:func:`save_state`) and the manifest keeps
a reference in their place, so the manifest stays small JSON whatever the data's size; scoring reads
them back (:func:`load_state`) before it calls :meth:`Preprocessor.load_state`.

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

__all__ = ["FOLDER", "MANIFEST_KEY", "STATE_FOLDER", "is_large", "load", "load_state", "save", "save_state"]

FOLDER = "artifacts"
MANIFEST_KEY = "named_artifacts"
#: Where a preprocessor's large state values are stored in a model version.
STATE_FOLDER = "preprocessor"
_REF = "$file"


def save(artifacts: Mapping[str, Any], version_dir: Path, folder: str = FOLDER) -> dict[str, dict[str, str]]:
    """Write ``artifacts`` under ``version_dir/<folder>``; return the manifest entries by name
    (``{"file": relative path, "kind": "npy" | "parquet" | "file"}``)."""
    import numpy as np
    import polars as pl

    entries: dict[str, dict[str, str]] = {}
    if not artifacts:
        return entries
    name_of_folder = folder
    folder = Path(version_dir) / name_of_folder
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
        entries[name] = {"file": f"{name_of_folder}/{target.name}", "kind": kind}
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


def is_large(value: Any) -> bool:
    """Whether ``value`` is a state value stored as a file: a numpy array or a polars DataFrame."""
    import numpy as np
    import polars as pl

    return isinstance(value, (np.ndarray, pl.DataFrame))


def save_state(state: Mapping[str, Any], version_dir: Path) -> dict[str, Any]:
    """``state`` as the manifest stores it: each large top-level value (:func:`is_large`) written under
    ``version_dir/preprocessor`` and replaced by ``{"$file": relative path, "kind": "npy" | "parquet"}``."""
    large = {key: value for key, value in state.items() if is_large(value)}
    entries = save(large, version_dir, folder=STATE_FOLDER)
    return {key: ({_REF: entries[key]["file"], "kind": entries[key]["kind"]} if key in large else value)
            for key, value in state.items()}


def load_state(state: Mapping[str, Any], version_dir: Path) -> dict[str, Any]:
    """``state`` from a manifest with every stored value read back (the inverse of :func:`save_state`).

    Raises:
        ModelIntegrityError: a reference points outside the version folder or its file is missing.
    """
    refs = {key: {"file": str(value[_REF]), "kind": str(value.get("kind", ""))} for key, value in state.items()
            if isinstance(value, Mapping) and _REF in value}
    if not refs:
        return dict(state)
    loaded = load(version_dir, refs)
    return {key: loaded.get(key, value) for key, value in state.items()}
