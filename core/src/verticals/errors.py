"""Errors a user or a plugin author sees.

Every error carries a one-line message that names what is wrong, where, and (when known) the fix.
The CLI prints ``str(error)`` and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations


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
