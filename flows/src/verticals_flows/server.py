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

import json
import os
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


def start_background(host: str, port: int, *, timeout: float = 180.0) -> dict[str, Any]:
    """Start ``prefect server start`` in its own process group and wait until its API is healthy."""
    existing = read_state()
    if existing:
        return {**existing, "already_running": True}
    where = urls(host, port)
    if healthy(where["api"]):
        raise UserError(f"something already answers at {where['api']}",
                        hint="use it (export PREFECT_API_URL=" + where["api"] + ") or pick another --port")
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "verticals-server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(server_command(host, port), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    state = {"pid": proc.pid, "pgid": proc.pid, "host": host, "port": port, **where, "log": str(log_path),
             "prefect_home": str(home), "started_at": time.time()}
    state_file().write_text(json.dumps(state, indent=2))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(where["api"]):
            return state
        if proc.poll() is not None:
            state_file().unlink(missing_ok=True)
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise VerticalsError(f"prefect server exited with code {proc.returncode}: {tail[0]}",
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


def run_foreground(host: str, port: int) -> None:
    """Replace this process with ``prefect server start`` (Ctrl-C stops it)."""
    command = server_command(host, port)
    os.execv(command[0], command)


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
