"""``verticals server start|stop|status`` and ``verticals worker``: the processes behind schedules and
the Prefect UI (see :mod:`verticals_flows.server`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from verticals.errors import UserError

from verticals_flows.config import DEFAULT_HOST, DEFAULT_PORT

server_app = typer.Typer(name="server", no_args_is_help=True,
                         help="A persistent local Prefect server: the UI, and the scheduler that creates runs.")

Host = Annotated[str, typer.Option("--host", help="Address to listen on.")]
Port = Annotated[int, typer.Option("--port", help="Port of the API and the UI.")]


def _how_to_use(api: str, ui: str) -> None:
    typer.echo(f"Prefect UI:  {ui}")
    typer.echo(f"Use it:      export PREFECT_API_URL={api}")
    typer.echo("Run schedules: verticals worker   (in another shell, with PREFECT_API_URL set)")


@server_app.command("start")
def start(
    host: Host = DEFAULT_HOST,
    port: Port = DEFAULT_PORT,
    background: Annotated[bool, typer.Option("--background", "-b", help="Start it detached and return once it "
                                                                      "answers; stop it with `verticals server stop`.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="With --background: seconds to wait for it.")] = 180.0,
) -> None:
    """Start a Prefect server on $PREFECT_HOME/prefect.db (the database local runs already use)."""
    from verticals_flows import server

    if background:
        state = server.start_background(host, port, timeout=timeout)
        verb = "already running" if state.get("already_running") else "started"
        typer.echo(f"Prefect server {verb} (pid {state['pid']}, log {state['log']})")
        _how_to_use(state["api"], state["ui"])
        return
    where = server.urls(host, port)
    _how_to_use(where["api"], where["ui"])
    server.run_foreground(host, port)


@server_app.command("stop")
def stop() -> None:
    """Stop the server started with `verticals server start --background`."""
    from verticals_flows import server

    state = server.stop()
    typer.echo(f"stopped Prefect server (pid {state['pid']})" if state else "no background Prefect server is running")


@server_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Which Prefect API this shell uses, and whether it answers."""
    from prefect.settings import get_current_settings

    from verticals_flows import server

    api = get_current_settings().api.url
    state = server.read_state()
    info = {"api_url": api or None, "answers": bool(api) and server.healthy(api),
            "background_server": state, "prefect_home": str(server.prefect_home())}
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    if api:
        typer.echo(f"PREFECT_API_URL={api} ({'answers' if info['answers'] else 'does not answer'})")
    else:
        typer.echo(f"no PREFECT_API_URL: runs use a temporary local API on {info['prefect_home']}/prefect.db")
    if state:
        typer.echo(f"background server: pid {state['pid']} at {state['ui']}")


def worker(
    pool: Annotated[str | None, typer.Option("--pool", help="Work pool (default $VERTICALS_WORK_POOL or 'verticals').")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Flow runs at once.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Worker name shown in the UI.")] = None,
    run_once: Annotated[bool, typer.Option("--run-once", help="Run what is due, then exit.")] = False,
) -> None:
    """Execute scheduled and triggered runs of verticals deployments (a Prefect process worker)."""
    import os

    from verticals_flows import deployments, server
    from verticals_flows.config import work_pool

    if not deployments.server_configured():
        raise UserError("no Prefect server configured for the worker (PREFECT_API_URL is not set)",
                        hint="start one with `verticals server start` and export the PREFECT_API_URL it prints")
    pool = pool or work_pool()
    deployments.ensure_work_pool(pool)
    command = server.worker_command(pool, limit=limit, name=name, run_once=run_once)
    typer.echo(f"worker polling work pool {pool!r}", err=True)
    os.execv(command[0], command)


def register(app: typer.Typer) -> None:
    """Add ``server`` and ``worker``."""
    app.add_typer(server_app, name="server")
    app.command("worker")(worker)
