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
