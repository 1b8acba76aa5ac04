"""verticals-flows as a verticals plugin: it adds ``verticals run``, the scheduling commands and the
Prefect server and worker commands.

Importing this module must stay cheap (``verticals --help`` loads every plugin): it imports typer and
the command modules only, which import Prefect inside the command functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from verticals import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import typer


@hookimpl
def register_commands(app: typer.Typer) -> None:
    """Add ``run``, ``schedule``, ``schedules``, ``unschedule``, ``server`` and ``worker``."""
    from verticals_flows.commands import register

    register(app)
