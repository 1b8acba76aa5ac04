"""Names and settings the flows, the deployments and the CLI share.

Kept free of Prefect imports: the CLI reads these while building ``verticals --help``.

Environment:
    VERTICALS_WORK_POOL: the Prefect work pool scheduled runs go to (default ``verticals``).
    VERTICALS_DASK_ADDRESS: a Dask scheduler (``tcp://host:8786``) that scores partitions when a run
        names none with ``--dask``.
"""

from __future__ import annotations

import os

FLOWS = ("train", "score", "monitor")
FLOW_NAMES = {"train": "verticals-train", "score": "verticals-score", "monitor": "verticals-monitor"}
ENTRYPOINTS = {
    "train": "verticals_flows.train:train_flow",
    "score": "verticals_flows.score:score_flow",
    "monitor": "verticals_flows.monitor:monitor_flow",
}
TAG = "verticals"
DEFAULT_WORK_POOL = "verticals"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200


def work_pool() -> str:
    """The work pool deployments are created on and ``verticals worker`` polls."""
    return os.environ.get("VERTICALS_WORK_POOL", "").strip() or DEFAULT_WORK_POOL


def dask_address(explicit: str | None = None) -> str | None:
    """The Dask scheduler to score on: the explicit value, else ``$VERTICALS_DASK_ADDRESS``, else None."""
    value = (explicit or os.environ.get("VERTICALS_DASK_ADDRESS", "")).strip()
    return value or None


def flow_of(name: str) -> str:
    """``score`` or ``verticals-score`` → ``score``; anything else is a user error."""
    from verticals.errors import UserError

    short = name.removeprefix("verticals-")
    if short not in FLOWS:
        raise UserError(f"unknown flow {name!r}", hint=f"use one of {', '.join(FLOWS)}")
    return short


def prefect_defaults() -> None:
    """Defaults for Prefect settings the user left unset; call before Prefect is imported.

    Prefect gives its temporary local API 20 s to start. Its first start creates the SQLite database
    (migrations), which takes longer than that on a busy 2-core machine; 120 s avoids a spurious
    "Timed out while attempting to connect to ephemeral Prefect API server".
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Prefect's server sends usage telemetry unless told not to; offline it prints "Failed to send
    # telemetry" errors into every command. Off unless the user turns it on.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
