"""CLI commands of verticals-flows, one module per group; Prefect is imported inside each command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the flows' commands to the ``verticals`` CLI."""
    from verticals_flows.commands import run, schedule, server
    from verticals_flows.config import prefect_defaults

    prefect_defaults()
    run.register(app)
    schedule.register(app)
    server.register(app)
