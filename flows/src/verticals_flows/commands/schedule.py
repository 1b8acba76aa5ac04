"""``verticals schedule``, ``verticals schedules``, ``verticals unschedule``: cron schedules as Prefect
deployments (see :mod:`verticals_flows.deployments`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from verticals.errors import UserError

Flow = Annotated[str | None, typer.Option("--flow", "-f", help="train, score or monitor.")]


def _param(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise UserError(f"invalid --param {text!r}", hint="write --param NAME=VALUE, e.g. --param workers=2")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip().replace("-", "_"), value


def schedule(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name, e.g. finance.credit_risk.")],
    flow: Annotated[str, typer.Option("--flow", "-f", help="train, score or monitor.")],
    cron: Annotated[str, typer.Option("--cron", help="Cron string, e.g. '0 2 * * *' (02:00 every day).")],
    timezone: Annotated[str | None, typer.Option("--timezone", "--tz", help="IANA timezone of the cron string (default UTC).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Schedule name (default: the pipeline); "
                                                               "use it for several schedules of one flow.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="train: training data file.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="train: epochs.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="train: random seed.")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="score/monitor: input file or folder.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="score: output folder; {date} becomes the "
                                                                    "run's scheduled date.")] = None,
    scores: Annotated[Path | None, typer.Option("--scores", help="monitor: scoring output folder.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="score/monitor: model version or alias.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda or auto.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="score: rows per model call.")] = None,
    overwrite: Annotated[bool | None, typer.Option("--overwrite", help="score: replace the output each run.")] = None,
    dask: Annotated[str | None, typer.Option("--dask", help="score: Dask scheduler address.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Any other flow parameter, NAME=VALUE (repeatable).")] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="Work pool (default $VERTICALS_WORK_POOL or 'verticals').")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the deployment as JSON.")] = False,
) -> None:
    """Create or update a Prefect deployment that runs a flow on a cron schedule.

    Runs execute while `verticals worker` (and a Prefect server) run; see `verticals server start`.
    Paths are stored absolute, so the worker may run anywhere on this machine.
    """
    from verticals_flows import deployments

    values: dict[str, Any] = {"data": data, "epochs": epochs, "seed": seed, "input": input, "output": output,
                              "scores": scores, "model": model, "device": device, "batch_size": batch_size,
                              "overwrite": overwrite, "dask_address": dask}
    for text in param or []:
        key, value = _param(text)
        values[key] = value
    made = deployments.schedule(pipeline, flow, cron, tz=timezone, name=name, parameters=values, pool=pool)
    rows = [r for r in deployments.list_schedules() if r["name"] == made["name"]]
    if rows:
        made["next_run"] = rows[0]["next_run"]
    if as_json:
        typer.echo(json.dumps(made, indent=2, default=str))
        return
    typer.echo(f"scheduled {made['name']}: '{made['cron']}' ({made['timezone']}) on work pool "
               f"{made['work_pool']}; next run {made.get('next_run') or 'not yet planned'}")
    if not deployments.server_configured():
        typer.echo("note: PREFECT_API_URL is not set, so this went to the background server; runs happen "
                   "while `verticals worker` runs", err=True)


def schedules(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List verticals schedules with their cron string, timezone and next run."""
    from verticals_flows import deployments

    rows = deployments.list_schedules()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo("No schedules. Add one with `verticals schedule PIPELINE --flow score --cron '0 2 * * *' ...`")
        return
    header = ("NAME", "CRON", "TIMEZONE", "NEXT RUN (UTC)", "ACTIVE", "WORK POOL")
    lines = [header] + [(r["name"], r["cron"] or "", r["timezone"] or "", r["next_run"] or "-",
                         "yes" if r["active"] else "no", r["work_pool"] or "") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:  # plain columns: names stay whole in narrow terminals and in logs
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def unschedule(
    pipeline: Annotated[str, typer.Argument(help="Pipeline, or the full schedule name shown by `verticals schedules`.")],
    flow: Flow = None,
    name: Annotated[str | None, typer.Option("--name", help="Schedule name, when it is not the pipeline's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the removed schedule's name as JSON.")] = False,
) -> None:
    """Remove a schedule (its Prefect deployment and the runs it had scheduled)."""
    from verticals_flows import deployments

    full = deployments.unschedule(deployments.deployment_name(pipeline, flow, name))
    if as_json:
        typer.echo(json.dumps({"removed": full}))
        return
    typer.echo(f"removed schedule {full}")


def register(app: typer.Typer) -> None:
    """Add ``schedule``, ``schedules`` and ``unschedule``."""
    app.command("schedule")(schedule)
    app.command("schedules")(schedules)
    app.command("unschedule")(unschedule)
