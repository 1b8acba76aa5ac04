"""Prefect deployments with cron schedules: what ``verticals schedule|schedules|unschedule`` manage.

A schedule is an ordinary Prefect deployment, so everything a Prefect user knows applies (the UI's
Deployments page, ``prefect deployment ls``, pausing a schedule in the UI):

* flow ``verticals-train|score|monitor``, deployment name = the pipeline (``finance.credit_risk``) or
  ``--name``; full name ``verticals-score/finance.credit_risk``;
* entrypoint the installed module (``verticals_flows.score:score_flow``): no code is pulled, the worker
  runs the installed version of verticals and its plugins;
* work pool ``verticals`` (type ``process``; created when missing), served by ``verticals worker``;
* tags ``verticals`` and ``pipeline:<name>``; parameters with paths made absolute when scheduled.

Runs are created by the Prefect server's scheduler from the cron string and timezone; they execute
while a worker polls the pool.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verticals.errors import NotFoundError, UserError

from verticals_flows.config import ENTRYPOINTS, FLOW_NAMES, TAG, flow_of, work_pool

PATH_PARAMETERS = {"input", "output", "data", "scores", "home"}


def flow_object(flow: str) -> Any:
    """The Prefect flow object of ``train``, ``score`` or ``monitor`` (imports Prefect)."""
    import importlib

    module, _, attr = ENTRYPOINTS[flow_of(flow)].partition(":")
    return getattr(importlib.import_module(module), attr)


def _sync_client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def server_configured() -> bool:
    """Whether ``PREFECT_API_URL`` points at a server (else Prefect uses its temporary local one)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


@contextlib.contextmanager
def background_server_if_running() -> Iterator[str | None]:
    """Use the background server for flow runs when ``PREFECT_API_URL`` is unset and it answers.

    Otherwise a run would start Prefect's temporary API on the same SQLite database the server uses
    (slow, and two servers writing one SQLite file lock each other out). Yields the API URL used.
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from verticals_flows import server

    api = get_current_settings().api.url
    state = None if api else server.read_state()
    if state and server.healthy(state["api"], timeout=2.0):
        with temporary_settings({PREFECT_API_URL: state["api"]}):
            yield state["api"]
        return
    yield api or None


@contextlib.contextmanager
def server_api(action: str) -> Iterator[str]:
    """Talk to a running Prefect server for ``action`` (e.g. "list schedules"); yields its API URL.

    Schedules live on a server, whose scheduler creates their runs: ``PREFECT_API_URL`` when set,
    else the background server ``verticals server start --background`` recorded for this
    ``PREFECT_HOME``. Without either, or when it does not answer, this is a one-line error at once,
    instead of Prefect starting a temporary server for every command (10-20 s, and concurrent
    commands lock its SQLite database).
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from verticals_flows import server

    api = get_current_settings().api.url
    if api:
        if not server.healthy(api, timeout=5.0):
            raise UserError(f"cannot {action}: the Prefect server at {api} (PREFECT_API_URL) does not answer",
                            hint="start it with `verticals server start --background`, or fix PREFECT_API_URL")
        yield api
        return
    state = server.read_state()
    if state and server.healthy(state["api"], timeout=5.0):
        with temporary_settings({PREFECT_API_URL: state["api"]}):
            yield state["api"]
        return
    raise UserError(f"cannot {action}: schedules live on a Prefect server, and none runs "
                    "(PREFECT_API_URL is not set, no background server was started)",
                    hint="run `verticals server start --background`, then this command again")


def check_cron(cron: str, tz: str | None) -> None:
    """Reject a bad cron string or timezone with a one-line error before anything is written."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron, timezone=tz or "UTC")
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", str(exc)) if exc.errors() else str(exc)
        raise UserError(f"invalid schedule {cron!r} (timezone {tz or 'UTC'}): {reason}",
                        hint="use five cron fields such as '0 2 * * *' and an IANA timezone such as "
                             "Europe/Paris") from None


def flow_parameters(flow: str, pipeline: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The deployment's parameters: checked against the flow's signature, paths made absolute."""
    fn = flow_object(flow).fn
    signature = inspect.signature(fn)
    params: dict[str, Any] = {"pipeline": pipeline}
    for name, value in values.items():
        if value is None:
            continue
        if name not in signature.parameters:
            known = ", ".join(p for p in signature.parameters if p != "pipeline")
            raise UserError(f"the {flow_of(flow)} flow has no parameter {name!r}",
                            hint=f"its parameters are: {known}")
        if name in PATH_PARAMETERS:
            value = str(Path(str(value)).expanduser().absolute())
        params[name] = value
    missing = [n for n, p in signature.parameters.items()
               if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise UserError(f"the {flow_of(flow)} flow needs {', '.join('--' + m for m in missing)}",
                        hint=f"add {' '.join('--' + m + ' ...' for m in missing)} to the command")
    if "home" in signature.parameters and "home" not in params and os.environ.get("VERTICALS_HOME"):
        # The run should use the model store this schedule was made against, whatever the worker's env.
        params["home"] = str(Path(os.environ["VERTICALS_HOME"]).expanduser().absolute())
    return params


def ensure_work_pool(name: str) -> None:
    """Create the ``process`` work pool ``name`` unless it exists."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with _sync_client() as client:
        try:
            client.read_work_pool(name)
            return
        except ObjectNotFound:
            pass
        with contextlib.suppress(ObjectAlreadyExists):  # created by someone else meanwhile
            client.create_work_pool(WorkPoolCreate(
                name=name, type="process", description="verticals flows (verticals worker)",
                base_job_template=ProcessWorker.get_default_base_job_template()))


def schedule(pipeline: str, flow: str, cron: str, *, tz: str | None = None, name: str | None = None,
             parameters: Mapping[str, Any] | None = None, pool: str | None = None) -> dict[str, Any]:
    """Create or update the deployment ``verticals-<flow>/<name or pipeline>`` with this schedule."""
    from verticals.registry import get_registry

    short = flow_of(flow)
    qualified = get_registry().pipeline(pipeline).qualified_name
    check_cron(cron, tz)
    params = flow_parameters(short, qualified, parameters or {})
    deployment_name = name or qualified
    if "/" in deployment_name:
        raise UserError(f"invalid schedule name {deployment_name!r}", hint="leave '/' out of --name")
    pool = pool or work_pool()
    with server_api("schedule a flow"):
        return _apply(short, qualified, cron, tz, deployment_name, params, pool)


def _apply(short: str, qualified: str, cron: str, tz: str | None, deployment_name: str,
           params: dict[str, Any], pool: str) -> dict[str, Any]:
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    ensure_work_pool(pool)
    deployment = flow_object(short).to_deployment(
        name=deployment_name,
        schedules=[Cron(cron, timezone=tz or "UTC")],
        parameters=params,
        tags=[TAG, f"pipeline:{qualified}"],
        description=f"verticals {short} of {qualified} on '{cron}' ({tz or 'UTC'})",
        work_pool_name=pool,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployment_id = deployment.apply()
    return {"id": str(deployment_id), "name": f"{FLOW_NAMES[short]}/{deployment_name}", "flow": short,
            "pipeline": qualified, "cron": cron, "timezone": tz or "UTC", "work_pool": pool,
            "parameters": params}


def _next_from_cron(cron: str, tz: str) -> datetime | None:
    from zoneinfo import ZoneInfo

    from cronsim import CronSim

    try:
        return next(CronSim(cron, datetime.now(ZoneInfo(tz)).replace(microsecond=0)))
    except Exception:  # a schedule Prefect accepted but cronsim cannot iterate: show no date
        return None


def list_schedules() -> list[dict[str, Any]]:
    """Every verticals deployment with its schedules and next scheduled run."""
    with server_api("list schedules"):
        return _list_schedules()


def _list_schedules() -> list[dict[str, Any]]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    rows = []
    with _sync_client() as client:
        deployments = client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG])))
        flows = {}
        for dep in deployments:
            if dep.flow_id not in flows:
                flows[dep.flow_id] = client.read_flow(dep.flow_id).name
            upcoming = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[dep.id]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1)
            crons = [s for s in dep.schedules or [] if getattr(s.schedule, "cron", None)]
            next_run, source = None, None
            if upcoming and upcoming[0].expected_start_time:
                next_run, source = upcoming[0].expected_start_time, "server"
            elif crons and crons[0].active and not dep.paused:
                next_run = _next_from_cron(crons[0].schedule.cron, crons[0].schedule.timezone or "UTC")
                source = "cron" if next_run else None
            flow_name = flows[dep.flow_id]
            rows.append({
                "name": f"{flow_name}/{dep.name}",
                "flow": flow_name.removeprefix("verticals-"),
                "pipeline": (dep.parameters or {}).get("pipeline"),
                "cron": crons[0].schedule.cron if crons else None,
                "timezone": (crons[0].schedule.timezone or "UTC") if crons else None,
                "active": bool(crons and crons[0].active and not dep.paused),
                "next_run": next_run.astimezone(UTC).isoformat() if next_run else None,
                "next_run_source": source,
                "work_pool": dep.work_pool_name,
                "parameters": dict(dep.parameters or {}),
                "id": str(dep.id),
            })
    return sorted(rows, key=lambda r: r["name"])


def deployment_name(pipeline_or_name: str, flow: str | None, name: str | None) -> str:
    """``verticals-score/finance.credit_risk`` from what a user types to ``unschedule``."""
    if "/" in pipeline_or_name:
        return pipeline_or_name
    if flow is None:
        raise UserError(f"which flow's schedule of {pipeline_or_name!r}?",
                        hint="add --flow train|score|monitor, or pass the full name from `verticals schedules`")
    short = flow_of(flow)
    if name:
        return f"{FLOW_NAMES[short]}/{name}"
    from verticals.registry import get_registry

    try:
        qualified = get_registry().pipeline(pipeline_or_name).qualified_name
    except NotFoundError:  # the plugin may be gone; the schedule can still be removed by its name
        qualified = pipeline_or_name
    return f"{FLOW_NAMES[short]}/{qualified}"


def unschedule(full_name: str) -> str:
    """Delete the deployment ``full_name`` and its scheduled runs; returns the name."""
    with server_api("remove a schedule"):
        return _unschedule(full_name)


def _unschedule(full_name: str) -> str:
    from prefect.exceptions import ObjectNotFound

    with _sync_client() as client:
        try:
            dep = client.read_deployment_by_name(full_name)
        except ObjectNotFound:
            known = ", ".join(r["name"] for r in _list_schedules()) or "none"
            raise NotFoundError(f"no schedule named {full_name!r}; schedules: {known}",
                                hint="see `verticals schedules`") from None
        if TAG not in (dep.tags or []):
            raise UserError(f"deployment {full_name!r} was not made by verticals",
                            hint="remove it with `prefect deployment delete` if you mean to")
        client.delete_deployment(dep.id)
    return full_name
