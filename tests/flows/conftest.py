"""Fixtures of the flows tests: one real Prefect server per session, a reference pipeline that
subprocesses (workers, killed runs) can load, and a trained model.

Everything lives in one temporary folder: ``PREFECT_HOME`` (database, result storage), the model store
(``VERTICALS_HOME``) and a fabricated plugin distribution on ``PYTHONPATH``: a ``*.dist-info`` folder
whose ``entry_points.txt`` names :class:`verticals.testing.reference.ReferencePlugin` (and the windows
reference, :class:`verticals.testing.windows.WindowsPlugin`), so every process started by the tests (the
Prefect worker's flow runs, a score run killed with SIGKILL, Dask workers) discovers the pipelines
``testref.mlp`` and ``testwin.failure_windows`` through the ordinary entry-point path. The server runs in its own process
group, which the session kills at the end whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_support import PIPELINE, VERTICALS, Env, write_batch, write_plugin


@pytest.fixture(scope="session")
def flows_env() -> Iterator[Env]:
    """Session environment: temporary PREFECT_HOME and model store, and the reference plugin installed.

    Prefect reads its settings when first imported, so this runs before any test imports it.
    """
    from verticals.registry import reset_registry

    root = Path(tempfile.mkdtemp(prefix="verticals-flows-tests-"))
    env = Env(root)
    write_plugin(env.site)
    env.data.mkdir()
    saved = {k: os.environ.get(k) for k in env.vars}
    os.environ.update(env.vars)
    sys.path.insert(0, str(env.site))
    reset_registry()
    settings = contextlib.ExitStack()
    if "prefect" in sys.modules:  # imported earlier in this process: point its settings here too
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        settings.enter_context(temporary_settings({PREFECT_API_URL: env.api, PREFECT_HOME: str(env.prefect_home)}))
    try:
        yield env
    finally:
        settings.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        with contextlib.suppress(ValueError):
            sys.path.remove(str(env.site))
        sys.modules.pop("verticals_flows_testref", None)
        reset_registry()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _drain_prefect() -> None:
    """Send the logs and events this process still holds while the server is up (else Prefect retries
    them against a stopped server at exit, for a minute)."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            service.drain_all(timeout=15)


@pytest.fixture(scope="session")
def server_starting(flows_env: Env) -> Iterator[subprocess.Popen]:
    """``verticals server start --background`` launched (not yet waited for), so other set-up overlaps it."""
    proc = subprocess.Popen([VERTICALS, "server", "start", "--background", "--port", str(flows_env.port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **flows_env.vars})
    try:
        yield proc
    finally:
        _drain_prefect()
        if proc.poll() is None:
            proc.kill()
        state = flows_env.prefect_home / "verticals-server.json"
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.killpg(int(json.loads(state.read_text())["pgid"]), signal.SIGKILL)


@pytest.fixture(scope="session")
def prefect_api(flows_env: Env, server_starting: subprocess.Popen) -> str:
    """A real Prefect server on a loopback port, healthy; its API URL is in PREFECT_API_URL."""
    out, _ = server_starting.communicate(timeout=240)
    assert server_starting.returncode == 0, f"verticals server start failed:\n{out}"
    assert f"127.0.0.1:{flows_env.port}" in out
    return flows_env.api


@pytest.fixture(scope="session")
def trained(flows_env: Env, server_starting: subprocess.Popen) -> int:
    """A registered model of the reference pipeline (trained by the engine directly, while the server starts)."""
    from verticals import engine

    result = engine.train(PIPELINE, epochs=2, progress=False, variants=())
    return result.version


@pytest.fixture(scope="session")
def batch(flows_env: Env) -> Path:
    """4000 rows in 8 row groups (8 partitions), 5 of them rejected."""
    return write_batch(flows_env.data / "batch.parquet")
