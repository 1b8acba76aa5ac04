"""Errors of the flows (no Prefect import: the CLI maps them to exit codes)."""

from __future__ import annotations

from verticals.errors import VerticalsError


class DriftDetected(VerticalsError):
    """The monitor flow found a PSI at or above the significant-drift threshold (exit code 6)."""

    exit_code = 6
