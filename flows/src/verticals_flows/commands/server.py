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
    database_url: Annotated[str | None, typer.Option(
        "--database-url", envvar="PREFECT_SERVER_DATABASE_CONNECTION_URL", show_envvar=True,
        help="PostgreSQL for production: postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB (PostgreSQL "
             ">= 14.9 with the pg_trgm extension). Default: SQLite at $PREFECT_HOME/prefect.db.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --background: print the server's record as JSON.")] = False,
) -> None:
    """Start a Prefect server: the UI and API on --port, the scheduler, on SQLite or PostgreSQL.

    SQLite ($PREFECT_HOME/prefect.db, the database local runs already use) is the embedded default;
    use PostgreSQL where several workers and runs write at once.
    """
    from verticals_flows import server

    if background:
        state = server.start_background(host, port, timeout=timeout, database=database_url)
        if as_json:
            typer.echo(json.dumps(state, indent=2, default=str))
            return
        verb = "already running" if state.get("already_running") else "started"
        typer.echo(f"Prefect server {verb} (pid {state['pid']}, log {state['log']})")
        typer.echo(f"Database:    {state.get('database') or server.shown_database(None)}")
        _how_to_use(state["api"], state["ui"])
        return
    if as_json:
        raise UserError("--json needs --background (a foreground server prints its log)",
                        hint="add --background, or drop --json")
    where = server.urls(host, port)
    typer.echo(f"Database:    {server.shown_database(server.database_url(database_url))}")
    _how_to_use(where["api"], where["ui"])
    server.run_foreground(host, port, database_url)


@server_app.command("stop")
def stop(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Stop the server started with `verticals server start --background`."""
    from verticals_flows import server

    state = server.stop()
    if as_json:
        typer.echo(json.dumps({"stopped": state is not None, "pid": (state or {}).get("pid")}))
        return
    typer.echo(f"stopped Prefect server (pid {state['pid']})" if state else "no background Prefect server is running")


@server_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Which Prefect API this shell uses, and whether it answers.

    Exit code 0 when the server this shell would use (PREFECT_API_URL, else the background server)
    answers, 1 when it does not or when there is none.
    """
    from prefect.settings import get_current_settings

    from verticals_flows import server

    api = get_current_settings().api.url
    state = server.read_state()
    target = api or (state or {}).get("api")
    info = {"api_url": api or None, "answers": bool(target) and server.healthy(target),
            "background_server": state, "prefect_home": str(server.prefect_home())}
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        if api:
            typer.echo(f"PREFECT_API_URL={api} ({'answers' if info['answers'] else 'does not answer'})")
        elif state:
            typer.echo("no PREFECT_API_URL: verticals commands use the background server")
        else:
            typer.echo(f"no PREFECT_API_URL: `verticals run` uses a temporary local API on "
                       f"{info['prefect_home']}/prefect.db")
        if state:
            typer.echo(f"background server: pid {state['pid']} at {state['ui']} "
                       f"({state.get('database') or server.shown_database(None)})")
            if not api:
                typer.echo(f"use it: export PREFECT_API_URL={state['api']}")
        if not info["answers"]:
            typer.echo("no Prefect server answers; start one with `verticals server start --background`", err=True)
    if not info["answers"]:
        raise typer.Exit(1)


def worker(
    pool: Annotated[str | None, typer.Option("--pool", help="Work pool (default $VERTICALS_WORK_POOL or 'verticals').")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Flow runs at once.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Worker name shown in the UI.")] = None,
    run_once: Annotated[bool, typer.Option("--run-once", help="Run what is due, then exit.")] = False,
    stop_timeout: Annotated[float, typer.Option("--stop-timeout", min=0, help="Seconds a stopping worker (SIGTERM, "
                                                "Ctrl-C) gives its runs before it kills them.")] = 10.0,
) -> None:
    """Execute scheduled and triggered runs of verticals deployments (a Prefect process worker).

    SIGTERM or one Ctrl-C stops it promptly: an idle worker at once, one executing runs after at most
    --stop-timeout seconds; a second signal stops it immediately.
    """
    from verticals_flows import deployments, server
    from verticals_flows.config import work_pool

    pool = pool or work_pool()
    # The worker process creates the pool when missing; a Prefect client here would make this
    # process wait for Prefect's background services at exit, delaying a requested stop.
    with deployments.server_api("start a worker") as api:
        pass
    command = server.worker_command(pool, limit=limit, name=name, run_once=run_once)
    typer.echo(f"worker polling work pool {pool!r} at {api} (stop: Ctrl-C or SIGTERM)", err=True)
    code = server.run_worker(command, stop_timeout=stop_timeout, api=api)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``server`` and ``worker``."""
    app.add_typer(server_app, name="server")
    app.command("worker")(worker)
