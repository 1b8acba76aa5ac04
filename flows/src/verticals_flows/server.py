"""A persistent local Prefect server and the worker that executes scheduled runs.

With no ``PREFECT_API_URL`` every flow run starts Prefect's temporary local API on the SQLite database
``$PREFECT_HOME/prefect.db`` and stops it on exit: fine for ``verticals run``, but nothing is there to
create scheduled runs or show the UI between commands. ``verticals server start`` runs ``prefect server
start`` on that same database (so earlier runs and schedules show up), and ``verticals worker`` runs
``prefect worker start`` on the ``verticals`` process pool. Both are the stock Prefect processes; these
commands only add defaults, a readiness wait and a clean stop (``--background`` starts the server in
its own process group, recorded in ``$PREFECT_HOME/verticals-server.json``, so ``stop`` ends all of it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from verticals.errors import UserError, VerticalsError


def prefect_home() -> Path:
    """``$PREFECT_HOME`` as Prefect resolves it (default ``~/.prefect``)."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home).expanduser()


def state_file() -> Path:
    return prefect_home() / "verticals-server.json"


def urls(host: str, port: int) -> dict[str, str]:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    return {"ui": base, "api": f"{base}/api"}


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process with that pid
        return True
    return True


def read_state() -> dict[str, Any] | None:
    """The background server this machine's ``PREFECT_HOME`` recorded, if its process still runs."""
    path = state_file()
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(int(state.get("pid", -1))):
        path.unlink(missing_ok=True)
        return None
    return state


def server_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


def database_url(explicit: str | None = None) -> str | None:
    """The server's database: ``explicit``, else Prefect's own setting
    (``PREFECT_SERVER_DATABASE_CONNECTION_URL``), else ``None`` (SQLite in ``$PREFECT_HOME``)."""
    if explicit:
        return explicit
    from prefect.settings import get_current_settings

    value = get_current_settings().server.database.connection_url
    if value is None:
        return None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return text or None


def check_database_url(url: str) -> None:
    """Refuse a URL Prefect cannot use, before a server is started on it."""
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return
    if url.startswith(("postgresql://", "postgres://")):
        raise UserError(f"database URL {shown_database(url)} names no driver",
                        hint="write postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE")
    raise UserError(f"unsupported database URL {shown_database(url)}",
                    hint="use postgresql+asyncpg://USER:PASSWORD@HOST:5432/DATABASE (PostgreSQL >= 14.9 "
                         "with pg_trgm), or leave it out for SQLite")


def shown_database(url: str | None) -> str:
    """The database URL with its password masked (for messages, status and the state file)."""
    if not url:
        return "SQLite (default: $PREFECT_HOME/prefect.db)"
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def server_env(host: str, port: int, database: str | None = None) -> dict[str, str]:
    """The server process's environment: the UI calls the API on this host and port (whatever
    ``PREFECT_API_URL`` this shell has), and the database is ``database`` when given."""
    env = dict(os.environ)
    where = urls(host, port)
    env["PREFECT_API_URL"] = where["api"]
    if not (env.get("PREFECT_UI_API_URL") or env.get("PREFECT_SERVER_UI_API_URL")):
        env["PREFECT_UI_API_URL"] = where["api"]
    env["PREFECT_SERVER_API_HOST"] = host
    env["PREFECT_SERVER_API_PORT"] = str(port)
    if database:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database
    return env


def start_background(host: str, port: int, *, timeout: float = 180.0,
                     database: str | None = None) -> dict[str, Any]:
    """Start ``prefect server start`` in its own process group and wait until its API is healthy."""
    existing = read_state()
    if existing:
        return {**existing, "already_running": True}
    database = database_url(database)
    if database:
        check_database_url(database)
    where = urls(host, port)
    if healthy(where["api"]):
        raise UserError(f"something already answers at {where['api']}",
                        hint="use it (export PREFECT_API_URL=" + where["api"] + ") or pick another --port")
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "verticals-server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(server_command(host, port), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=server_env(host, port, database))
    state = {"pid": proc.pid, "pgid": proc.pid, "host": host, "port": port, **where, "log": str(log_path),
             "prefect_home": str(home), "database": shown_database(database), "started_at": time.time()}
    state_file().write_text(json.dumps(state, indent=2))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(where["api"]):
            return state
        if proc.poll() is not None:
            state_file().unlink(missing_ok=True)
            raise VerticalsError(f"prefect server exited with code {proc.returncode}: {_last_error(log_path)}",
                                 hint=f"read {log_path}")
        time.sleep(0.25)
    stop()
    raise VerticalsError(f"prefect server did not answer at {where['api']} within {timeout:.0f} s",
                         hint=f"read {log_path}")


def stop(timeout: float = 20.0) -> dict[str, Any] | None:
    """Stop the background server (its whole process group); None when none was running."""
    state = read_state()
    if state is None:
        return None
    pgid = int(state.get("pgid", state["pid"]))
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(int(state["pid"])):
            time.sleep(0.1)
        if not _alive(int(state["pid"])):
            break
    state_file().unlink(missing_ok=True)
    return state


def _last_error(log_path: Path) -> str:
    """The most telling line of a failed server's log: its last exception line, else its last line."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b", line)]
    return (errors or lines or ["(no output)"])[-1][:300]


def run_foreground(host: str, port: int, database: str | None = None) -> None:
    """Replace this process with ``prefect server start`` (Ctrl-C stops it)."""
    database = database_url(database)
    if database:
        check_database_url(database)
    command = server_command(host, port)
    os.execve(command[0], command, server_env(host, port, database))


def worker_command(pool: str, *, limit: int | None = None, name: str | None = None,
                   run_once: bool = False) -> list[str]:
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    if limit:
        command += ["--limit", str(limit)]
    if name:
        command += ["--name", name]
    if run_once:
        command.append("--run-once")
    return command


def run_worker(command: list[str], *, stop_timeout: float = 10.0, api: str | None = None) -> int:
    """Run the Prefect worker ``command`` as a child and stop it promptly on SIGTERM or one Ctrl-C.

    ``prefect worker start`` takes 30 s or more to act on SIGTERM or a first Ctrl-C (it finishes
    its polling cycle and flushes to the server). Here the first signal is passed on to the worker's
    process group; an idle worker is killed after a second, one executing flow runs gets
    ``stop_timeout`` seconds for Prefect's own shutdown first, and a second signal kills the group at
    once. Flow-run processes run in sessions of their own (Prefect starts them so); a run whose
    process dies is marked crashed by the next run of its flow (:mod:`verticals_flows.crashed`).
    Returns the exit code: 0 after a requested stop, else the worker's own.
    """
    env = {**os.environ, "PREFECT_API_URL": api} if api else None
    proc = subprocess.Popen(command, start_new_session=True, env=env)
    stopping: dict[str, float] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        if "at" in stopping:
            _signal_group(proc.pid, signal.SIGKILL)
            return
        stopping["at"] = time.monotonic()
        print(f"stopping the worker (signal {signal.Signals(signum).name}; within {stop_timeout:.0f} s, "
              "or at once on a second signal)", file=sys.stderr, flush=True)
        _signal_group(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if "at" not in stopping:
                    continue
                # An idle worker has nothing to finish: no reason to wait for Prefect's slow shutdown.
                grace = stop_timeout if _children(proc.pid) else min(stop_timeout, 1.0)
                if time.monotonic() - stopping["at"] > grace:
                    _signal_group(proc.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _signal_group(proc.pid, signal.SIGKILL)  # flow-run processes that outlived the worker
    if "at" in stopping:
        print("worker stopped", file=sys.stderr, flush=True)
        return 0
    return code


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the flow runs a worker executes); empty where /proc is missing."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields and len(fields) > 1 and fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
