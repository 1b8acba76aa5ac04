"""What every command prints: text or JSON, and errors as one line or as a JSON object.

Commands take ``as_json: JsonOpt = False`` and call :func:`print_json` when it is set. Errors need no
code in the commands: :func:`verticals.cli.main` turns any error into one line on stderr, or, when
``--json`` is on the command line, into ``{"error": ..., "fix": ..., "code": ..., "kind": ...}`` on
stdout, so a script that parses stdout always gets JSON. Exit codes are :data:`EXIT_CODES`
(documented in ``docs/cli.md``); a plugin's commands get the same behaviour by using
:data:`JsonOpt` and raising :class:`~verticals.errors.VerticalsError` subclasses.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from verticals.errors import os_error

__all__ = ["EXIT_CODES", "JsonOpt", "error_payload", "json_requested", "os_error", "print_json"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text; errors too.")]

EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected error (a bug: rerun with --debug and report the traceback)",
    2: "usage or input error: an unknown name, a bad option value, unreadable or invalid data",
    3: "plugin error: a plugin failed to load or broke the contract",
    4: "model integrity error: a registered model's files changed",
    5: "ONNX parity error: the exported model disagrees with PyTorch",
    6: "file system error: a path cannot be read or written (permissions, read-only, full disk)",
    130: "interrupted (Ctrl-C)",
}
"""Exit code → meaning; :class:`~verticals.errors.VerticalsError` subclasses carry theirs."""

FILESYSTEM_EXIT = 6

_KINDS = {1: "internal", 2: "user", 3: "plugin", 4: "integrity", 5: "parity", 6: "filesystem", 130: "interrupted"}


def _printable(obj: Any) -> Any:
    from verticals.jsonutil import json_default

    try:
        return json_default(obj)
    except TypeError:  # printing must not fail on an odd value: show it as text
        return str(obj)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (paths and numpy scalars as plain values)."""
    typer.echo(json.dumps(data, indent=2, default=_printable))


def json_requested(args: list[str]) -> bool:
    """Whether ``--json`` is among the command's options (before a ``--`` separator)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def error_payload(message: str, fix: str | None, code: int) -> dict[str, Any]:
    """The JSON object of an error: what is wrong, how to fix it, the exit code and its kind."""
    return {"error": message, "fix": fix, "code": code, "kind": _KINDS.get(code, "error")}
