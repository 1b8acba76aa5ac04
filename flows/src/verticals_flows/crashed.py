"""Runs whose process died (SIGKILL, a lost machine) without telling the server: mark them crashed.

A flow-run process killed with SIGKILL never reports its end, so the server shows it "Running"
forever. The score flow knows better when it resumes: it holds the lock of the output's staging
folder, so no live process writes into that output any more, and every other run still "Running"
into the same output is dead. :func:`mark_abandoned` sets those runs to ``Crashed``, with a message
naming the run that resumed their work.

Every flow also holds a lock file named after its flow run while it executes (:func:`guarded`); a
run still "Running" whose lock nobody holds any more died, and the next run of the same flow on this
machine marks it crashed (:func:`mark_dead_runs`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from verticals_flows.config import FLOW_NAMES


def output_of(parameters: dict[str, Any], scheduled: datetime | None) -> Path | None:
    """The output folder a score run with these parameters writes (``{date}`` from its scheduled date)."""
    text = parameters.get("output")
    if not isinstance(text, str):
        return None
    if "{date}" in text:
        if scheduled is None:
            return None
        text = text.replace("{date}", scheduled.strftime("%Y-%m-%d"))
    return Path(text).expanduser().absolute()


def mark_abandoned(output: Path, *, current: Any, log: Callable[[str], None] | None = None) -> list[str]:
    """Set every other ``Running`` score run into ``output`` to ``Crashed``; return their ids.

    Call it only while holding the output's staging lock (that is what proves those runs are dead).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    marked = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAMES["score"]])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
            limit=200)
        for run in runs:
            if str(run.id) == str(current):
                continue
            if output_of(dict(run.parameters or {}), run.expected_start_time) != output:
                continue
            client.set_flow_run_state(run.id, Crashed(
                message=f"its process ended without reporting (killed?); flow run {current} resumed its "
                        f"work into {output}"), force=True)
            marked.append(str(run.id))
            if log is not None:
                log(f"flow run {run.name} ({run.id}) was still 'Running' but its process is gone: marked Crashed")
    return marked


# -- any flow: a lock file per running flow run ---------------------------------------------------------
def _locks() -> Path:
    from verticals_flows.server import prefect_home

    return prefect_home() / "verticals-runs"


@contextlib.contextmanager
def run_lock(flow_run_id: Any) -> Iterator[None]:
    """Hold ``$PREFECT_HOME/verticals-runs/<flow run id>.lock`` while the run executes.

    The kernel releases the lock when the process dies, however it dies: a later run that can take
    the lock of a run still shown "Running" knows that run's process is gone.
    """
    folder = _locks()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{flow_run_id}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _dead(flow_run_id: Any) -> bool:
    """Whether the run's lock file exists and nobody holds it (its process is gone)."""
    path = _locks() / f"{flow_run_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:  # no lock file: run on another machine, or before this version; cannot tell
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)
    return True


def mark_dead_runs(flow: str, *, current: Any, log: Callable[[str], None] | None = None) -> list[str]:
    """Set the ``Running`` runs of ``flow`` (train, score, monitor) whose process is gone to ``Crashed``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    marked = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAMES[flow]])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
            limit=200)
        for run in runs:
            if str(run.id) == str(current) or not _dead(run.id):
                continue
            client.set_flow_run_state(run.id, Crashed(
                message=f"its process ended without reporting (killed?); noticed by flow run {current}"),
                force=True)
            marked.append(str(run.id))
            if log is not None:
                log(f"flow run {run.name} ({run.id}) was still 'Running' but its process is gone: marked Crashed")
    return marked


@contextlib.contextmanager
def guarded(flow: str, logger: Any) -> Iterator[None]:
    """Around a flow's body: hold this run's lock and mark earlier runs of ``flow`` that died as crashed."""
    from prefect.runtime import flow_run

    current = flow_run.id
    if not current:  # not inside a flow run
        yield
        return
    with run_lock(current):
        try:
            mark_dead_runs(flow, current=current, log=logger.warning)
        except Exception as exc:  # bookkeeping only: never fail a run over it
            logger.warning("could not check for dead runs of the %s flow: %s", flow, exc)
        yield
