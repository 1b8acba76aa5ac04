"""Small filesystem helpers shared by the model store and scoring output (atomic writes)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (after a rename) so the rename survives a crash; best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


MAX_NAME = 200
"""Longest name (in bytes, UTF-8) accepted where a name becomes a file or folder name."""


def safe_name(name: str, what: str = "name") -> str:
    """``name`` if it can be a single file name inside a folder, else ``ValueError`` saying why.

    Refuses empty names, ``.``/``..``, path separators, NUL and names over :data:`MAX_NAME` bytes, so a
    name coming from data or a plugin can never point outside its folder.
    """
    text = str(name)
    if not text or text in (".", ".."):
        raise ValueError(f"{what} {text!r} is empty or a relative folder reference")
    if "/" in text or "\\" in text or "\0" in text:
        raise ValueError(f"{what} {text!r} contains a path separator or NUL")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_NAME:
        raise ValueError(f"{what} is longer than {MAX_NAME} bytes")
    return text
