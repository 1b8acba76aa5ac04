"""The one check of names that become file or folder names, and of relative paths read from records.

Pipeline, dataset, model, config and plugin names, model aliases and ids used in side-output file
names all end up in a path somewhere (``<home>/models/<pipeline>/``, ``<home>/monitoring/<pipeline>/``,
``verticals-<plugin>/``, ``artifacts/<name>.npy``, side-output files named after ids). :func:`check_name`
(or :func:`verticals.fsutil.safe_name`, the same rule raising ``ValueError`` for file names) is what
every such place calls, so none of them can be handed ``../x``, an absolute path, a NUL byte or a name
longer than a file system allows.
:func:`safe_join` does the same for relative paths read from manifests and reports.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from verticals.errors import UserError

__all__ = ["FILE", "NAME_MAX", "PLUGIN", "QUALIFIED", "SIMPLE", "check_name", "name_problem", "safe_join"]

NAME_MAX = 128  # well under the 255 bytes of a file name, leaving room for prefixes and suffixes
SIMPLE = re.compile(r"[a-z][a-z0-9_]*")  # registry names, plugin names, config names
PLUGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # entry-point names: the first part of qualified names
QUALIFIED = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # plugin.name, and names in the model store
FILE = re.compile(r"[^/\\\x00]+")  # any file name: artifact names, ids in side-output file names


def _problem(name: object, pattern: re.Pattern[str], max_len: int) -> str | None:
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL byte"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name in (".", "..") or (".." in name and pattern is not FILE):
        return "contains '..'"
    if name.startswith("."):
        return "starts with '.'"
    if len(name.encode("utf-8", "surrogatepass")) > max_len:
        return f"is longer than {max_len} bytes"
    if not pattern.fullmatch(name):
        return "has characters outside " + ("a-z, 0-9 and '_' (starting with a letter)" if pattern is SIMPLE
                                            else f"the pattern {pattern.pattern}")
    return None


def check_name(name: object, *, what: str, pattern: re.Pattern[str] = SIMPLE, max_len: int = NAME_MAX,
               hint: str | None = None, error: type[UserError] = UserError) -> str:
    """Return ``name`` when it is safe as one path component; else raise ``error`` saying why.

    Args:
        what: how the message names it, e.g. ``"pipeline name"`` or ``"alias"``.
        pattern: the characters allowed (the whole name must match); :data:`SIMPLE` by default.
        hint: the fix shown to the user (default: what the pattern allows).
    """
    problem = _problem(name, pattern, max_len)
    if problem is None:
        return name  # type: ignore[return-value]
    shown = repr(name) if not isinstance(name, str) or len(name) <= 80 else repr(name[:60]) + f"... ({len(name)} chars)"
    if hint is None:
        hint = ("use lowercase letters, digits and underscores, starting with a letter" if pattern is SIMPLE
                else "use letters, digits, '_', '.', '-'; no '..', '/' or leading '.'")
        hint += f", at most {max_len} characters"
    raise error(f"invalid {what} {shown}: it {problem}", hint=hint)


def name_problem(name: object, *, pattern: re.Pattern[str] = SIMPLE, max_len: int = NAME_MAX) -> str | None:
    """Why ``name`` is unsafe (``"contains '..'"``, ...), or None; for callers that report rather than raise."""
    return _problem(name, pattern, max_len)


def safe_join(root: Path, relative: object, *, what: str) -> Path:
    """``root / relative`` for a relative path read from a record (a manifest's artifact list, a report).

    Refuses anything that could point outside ``root``: absolute paths, ``..`` parts, NUL bytes,
    backslashes, empty names.
    """
    if not isinstance(relative, str) or not relative or "\x00" in relative or "\\" in relative:
        raise UserError(f"unsafe {what} path {relative!r}", hint="use a path relative to its folder")
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or any(len(p.encode("utf-8", "surrogatepass")) > 255 for p in rel.parts):
        raise UserError(f"unsafe {what} path {relative!r}", hint="use a path relative to its folder")
    return Path(root) / rel
