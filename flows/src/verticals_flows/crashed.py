"""Runs whose process died (SIGKILL, a lost machine) without telling the server: mark them crashed.

A flow-run process killed with SIGKILL never reports its end, so the server shows it "Running"
forever. The score flow knows better when it resumes: it holds the lock of the output's staging
folder, so no live process writes into that output any more, and every other run still "Running"
into the same output is dead. :func:`mark_abandoned` sets those runs to ``Crashed``, with a message
naming the run that resumed their work.
"""

from __future__ import annotations

from collections.abc import Callable
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
