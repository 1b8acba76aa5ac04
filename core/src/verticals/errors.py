"""Errors a user or a plugin author sees.

Every error carries a one-line message that names what is wrong, where, and (when known) the fix.
The CLI prints ``str(error)`` and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import errno


class VerticalsError(Exception):
    """Base class of every error verticals raises on purpose.

    Args:
        message: what is wrong and where, in one line.
        hint: how to fix it, appended as ``(fix: ...)``.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} (fix: {hint})")


class UserError(VerticalsError):
    """A mistake in what the user asked for: an unknown name, a missing file, a bad option."""

    exit_code = 2


class NotFoundError(UserError):
    """An unknown pipeline, dataset, model, version or file."""


class DataValidationError(UserError):
    """Input data does not satisfy the schema (a missing required column, an unusable type)."""


class PluginError(VerticalsError):
    """A plugin broke the contract: it failed to import, registered something invalid, or a hook raised."""

    exit_code = 3


class ModelIntegrityError(VerticalsError):
    """A registered model's files do not match the sha256 recorded in its manifest."""

    exit_code = 4


class ParityError(VerticalsError):
    """ONNX Runtime output differs from PyTorch by more than the stated tolerance."""

    exit_code = 5


class FileSystemError(VerticalsError):
    """A path the user chose cannot be read or written: permissions, a read-only or full file system."""

    exit_code = 6


_OS_FIXES = {
    errno.EROFS: "choose a folder on a writable file system",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose another folder (this one refuses changes: immutable or protected)",
    errno.ENOSPC: "free disk space or choose another folder",
    errno.EDQUOT: "free space within your quota or choose another folder",
    errno.ENOENT: "check the path; its parent folder must exist",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder where a file was expected: choose another path",
    errno.EEXIST: "remove it or choose another path",
    errno.ENAMETOOLONG: "use a shorter path",
}


def os_error(exc: OSError, what: str | None = None) -> tuple[str, str]:
    """``(message, fix)`` for a file system error: the path and the cause, never a Python class name."""
    path = exc.filename if exc.filename is not None else None
    reason = (exc.strerror or str(exc)).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    where = f" {path}" if path is not None else ""
    target = f"{what}{where}" if what else f"cannot access{where}"
    return f"{target}: {reason}", _OS_FIXES.get(exc.errno or 0, "check the path and its permissions")
