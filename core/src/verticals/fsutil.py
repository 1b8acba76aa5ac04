"""Small filesystem helpers shared by the model store, the train stages and scoring output: atomic
writes (readers see the old file or the new one, never half of one) and file hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from verticals.jsonutil import json_default

_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (after a rename) so the rename survives a crash; best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` via a hidden temporary file in the same folder (``.<name>.*.tmp``), flushed to
    disk, then ``os.replace``; the temporary file is removed if anything fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path | str, data: Any) -> None:
    """Write ``data`` as indented JSON (numpy values, paths, sets, dates coerced by
    :func:`verticals.jsonutil.json_default`; NaN kept) with :func:`write_text_atomic`."""
    write_text_atomic(path, json.dumps(data, indent=2, default=json_default, allow_nan=True) + "\n")


def sha256_file(path: Path | str, digest: Any = None, *, fsync: bool = False) -> Any:
    """Feed the bytes of ``path`` into ``digest`` (default: a new sha256) and return it.

    Pass one digest over several files to hash them together; call ``.hexdigest()`` on the result.
    ``fsync`` also flushes the file to disk (before the store declares it registered).
    """
    digest = digest if digest is not None else hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
        if fsync:
            os.fsync(fh.fileno())
    return digest


MAX_NAME = 200
"""Longest name (in bytes, UTF-8) accepted where a name becomes a file or folder name."""


def safe_name(name: str, what: str = "name") -> str:
    """``name`` if it can be a single file name inside a folder, else ``ValueError`` saying why.

    The rule is :func:`verticals.names.name_problem` with any characters but separators allowed:
    refuses empty names, ``.``/``..``, a leading ``.``, path separators, NUL and names over
    :data:`MAX_NAME` bytes, so a name coming from data or a plugin can never point outside its folder.
    """
    from verticals.names import FILE, name_problem

    text = str(name)
    problem = name_problem(text, pattern=FILE, max_len=MAX_NAME)
    if problem is not None:
        shown = repr(text) if len(text) <= 80 else repr(text[:60]) + f"... ({len(text)} chars)"
        raise ValueError(f"{what} {shown} {problem.removeprefix('it ')}")
    return text
