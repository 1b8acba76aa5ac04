"""``verticals run train|score|monitor PIPELINE``: run a flow now, through Prefect.

Against ``PREFECT_API_URL`` when set, else Prefect's temporary local API (the runs are recorded in
``$PREFECT_HOME/prefect.db`` and appear in the UI once ``verticals server start`` runs). The plain
``verticals train`` and ``verticals score`` do the same work without Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

run_app = typer.Typer(name="run", no_args_is_help=True,
                      help="Run a pipeline's train, score or monitor flow now, through Prefect (tasks, "
                           "retries, resumable results, artifacts in the Prefect UI).")

Pipeline = Annotated[str, typer.Argument(help="Pipeline name, e.g. finance.credit_risk.")]
Home = Annotated[Path | None, typer.Option("--home", help="Model store root (default $VERTICALS_HOME).")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _quiet(ctx: typer.Context) -> None:
    """Prefect's console shows a user-facing error as one line, not a traceback (unless --debug)."""
    import os

    from verticals_flows.console import quiet_user_errors

    debug = bool(ctx.find_root().params.get("debug")) or os.environ.get("VERTICALS_DEBUG") == "1"
    quiet_user_errors(debug)


def _home(home: Path | None) -> str | None:
    return str(home.expanduser().absolute()) if home else None


@run_app.command("train")
def train(
    ctx: typer.Context,
    pipeline: Pipeline,
    data: Annotated[Path | None, typer.Option("--data", help="Training data file (default: the pipeline's dataset).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (default: the pipeline's).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: the pipeline's).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda or auto.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Recompute every stage instead of reusing results of "
                                                        "earlier runs with the same inputs.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Train, evaluate, export, verify and register a model through the train flow.

    Stages that finished in an earlier run with the same data, options and code are reused, so
    running the same command again after a failure resumes where it stopped.
    """
    from verticals_flows.console import flushed
    from verticals_flows.deployments import background_server_if_running
    from verticals_flows.train import train_flow

    _quiet(ctx)

    with background_server_if_running(), flushed():
        result = train_flow(pipeline=pipeline, data=str(data.expanduser().absolute()) if data else None,
                            epochs=epochs, seed=seed, device=device, fresh=fresh, home=_home(home))
    if as_json:
        _echo_json(result)
        return
    typer.echo(f"registered {result['pipeline']} v{result['version']} at {result['path']}")
    for split, values in (result.get("metrics") or {}).items():
        if isinstance(values, dict):
            shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            typer.echo(f"  {split}: {shown}")
    if result.get("report"):
        typer.echo(f"report: {result['report']}")


@run_app.command("score")
def score(
    ctx: typer.Context,
    pipeline: Pipeline,
    input: Annotated[Path, typer.Option("--input", "-i", help="Parquet or CSV file, or a folder of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (part files, _rejects, _manifest.json).")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Version, alias or 'latest' (default: production, else latest).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Rows per model call.")] = 65536,
    variant: Annotated[str, typer.Option("--variant", help="auto (default), fp32, int8 or fp16 (as `verticals score`).")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="ONNX Runtime threads per scoring "
                                                                       "process (default: all cores).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished output folder.")] = False,
    dask: Annotated[str | None, typer.Option("--dask", help="Score partitions on this Dask scheduler "
                                                          "(tcp://host:8786; default $VERTICALS_DASK_ADDRESS).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Partitions scored at once in this process (without Dask).")] = 1,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Batch-score a file or folder partition by partition through the score flow.

    Re-running the same command after a crash or a kill skips the partitions already committed and
    produces exactly the output of an uninterrupted run.
    """
    from verticals_flows.console import flushed
    from verticals_flows.deployments import background_server_if_running
    from verticals_flows.score import score_flow

    _quiet(ctx)

    with background_server_if_running(), flushed():
        manifest = score_flow(pipeline=pipeline, input=str(input.expanduser().absolute()),
                              output=str(output.expanduser().absolute()), model=model, device=device,
                              batch_size=batch_size, overwrite=overwrite, dask_address=dask, workers=workers,
                              threads=threads, variant=variant, home=_home(home))
    if as_json:
        _echo_json(manifest)
        return
    typer.echo(f"scored {manifest.get('rows_scored')} of {manifest.get('rows_in')} rows "
               f"({manifest.get('rows_rejected')} rejected) with {manifest.get('pipeline')} "
               f"v{manifest.get('model_version')} into {output}")


@run_app.command("monitor")
def monitor(
    ctx: typer.Context,
    pipeline: Pipeline,
    scores: Annotated[Path, typer.Option("--scores", "-s", help="The scoring output folder of the batch.")],
    input: Annotated[Path | None, typer.Option("--input", "-i", help="The batch that was scored (default: the "
                                                                    "input recorded in the scores' manifest).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model whose training reference to compare with "
                                                           "(default: the version that scored the batch).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Where to write the drift table (JSON).")] = None,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift/--no-fail-on-drift",
                                                help="End the run in the failed state 'Drifted' and exit with "
                                                     "code 6 when a PSI reaches 0.25.")] = True,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Compare a scored batch's feature and score distributions with the model's training reference.

    Prints PSI per feature and for the score (stable < 0.1 ≤ moderate < 0.25 ≤ significant). With
    significant drift the flow run ends in the state 'Drifted' and the command exits with code 6
    (unless --no-fail-on-drift).
    """
    from verticals_flows.console import flushed
    from verticals_flows.deployments import background_server_if_running
    from verticals_flows.monitor import default_report, monitor_flow

    _quiet(ctx)

    target = (report or default_report(pipeline, home)).expanduser().absolute()
    with background_server_if_running(), flushed():
        state = monitor_flow(pipeline=pipeline, scores=str(scores.expanduser().absolute()),
                             input=str(input.expanduser().absolute()) if input else None, model=model,
                             report=str(target), fail_on_drift=fail_on_drift, home=_home(home),
                             return_state=True)
    if state.name != "Drifted" or not target.is_file():
        state.result()  # raises the flow's error, if it failed
    result = json.loads(target.read_text())
    if as_json:
        _echo_json(result)
    else:
        _print_drift(result)
    if state.is_failed():
        state.result()  # DriftDetected: exit code 6


def _print_drift(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"drift of {result['pipeline']} against {result['model']}")
    for col in ("feature", "psi", "status"):
        table.add_column(col)
    for row in result["rows"]:
        psi = row.get("psi")
        table.add_row(str(row.get("feature")), "" if psi is None else f"{psi:.4f}", str(row.get("status")))
    console = Console()
    console.print(table)
    console.print(f"drift table: {result['report']}")


def register(app: typer.Typer) -> None:
    """Add ``verticals run``."""
    app.add_typer(run_app, name="run")
