"""A throw-away PostgreSQL server for the flows tests (Debian's ``postgresql`` package).

Where the server binaries are missing and the tests run as root with ``apt-get`` (CI: a fresh Debian
machine), the package is installed first; elsewhere the test is skipped with the command to run.
The cluster is created with ``initdb`` in a temporary folder (as the ``postgres`` user when running as
root: PostgreSQL refuses to run as root), listens on a free loopback port, and is stopped and removed
at the end. Nothing touches the machine's own clusters.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_support import free_port

PASSWORD = "verticals-test"


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def ensure_installed() -> Path:
    """The bin folder of the newest installed PostgreSQL; installs Debian's ``postgresql`` if missing."""
    found = _bin_dir()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("PostgreSQL is not installed: run `apt-get install -y postgresql` (as root) to run this test")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"], env=env,
                   check=True, capture_output=True, timeout=900)
    found = _bin_dir()
    assert found, "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb exists"
    return found


def _as_postgres(command: list[str]) -> list[str]:
    """Run as the ``postgres`` user when this process is root (the server refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Postgres:
    """A running cluster: ``url`` is what Prefect takes, ``psql(sql)`` runs a query as the superuser."""

    def __init__(self, bin_dir: Path, root: Path, port: int, proc: subprocess.Popen) -> None:
        self.bin_dir, self.root, self.port, self.proc = bin_dir, root, port, proc
        self.url = f"postgresql+asyncpg://prefect:{PASSWORD}@127.0.0.1:{port}/prefect"

    @property
    def version(self) -> str:
        return subprocess.run([str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                              check=True).stdout.strip()

    def psql(self, sql: str, database: str = "prefect") -> str:
        proc = subprocess.run(_as_postgres([str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                                            "-U", "postgres", "-d", database, "-tAc", sql]),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """Create, start, yield, stop and remove a PostgreSQL cluster with a database ``prefect``."""
    bin_dir = ensure_installed()
    root = Path(tempfile.mkdtemp(prefix="verticals-pg-"))
    root.chmod(0o755)
    data, sockets = root / "data", root / "sockets"
    for folder in (data, sockets):
        folder.mkdir()
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    proc = None
    try:
        subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                     "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=300)
        with open(root / "server.log", "wb") as log:
            proc = subprocess.Popen(_as_postgres([str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                                                  "-k", str(sockets), "-c", "listen_addresses=127.0.0.1",
                                                  "-c", "fsync=off"]),
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            assert proc.poll() is None, (root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "PostgreSQL did not accept connections within 60 s"
            time.sleep(0.3)
        server = Postgres(bin_dir, root, port, proc)
        server.psql(f"CREATE ROLE prefect LOGIN PASSWORD '{PASSWORD}'", database="postgres")
        server.psql("CREATE DATABASE prefect OWNER prefect", database="postgres")
        yield server
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)  # PostgreSQL's "fast shutdown"
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
