"""``verticals manufacturing ...``: what a maintenance planner reads from a scoring run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["manufacturing_app"]


def manufacturing_app() -> Any:
    """The ``manufacturing`` command group."""
    app = typer.Typer(no_args_is_help=True, help="Failure prediction: read scoring outputs per machine.")

    @app.command("latest")
    def latest_cmd(
        folder: Annotated[Path, typer.Argument(help="Output folder of `verticals score manufacturing.failure_risk`.")],
        top: Annotated[int, typer.Option("--top", help="Show this many machines, highest risk first (0: all).")] = 20,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Per machine, the latest risk, mode and alert; machines with too few readings are listed too."""
        from verticals_manufacturing.latest import latest_by_machine

        latest, unscored = latest_by_machine(folder)
        shown = latest if top <= 0 else latest.head(top)
        if as_json:
            typer.echo(json.dumps({"machines": shown.to_dicts(), "unscored": unscored}, indent=2))
            return
        alerts = int(latest.get_column("alert").sum()) if latest.height else 0
        typer.echo(f"{latest.height} machine(s) scored, {alerts} on alert; {len(unscored)} without a score")
        machine, time = latest.columns[:2]
        for row in shown.iter_rows(named=True):
            flag = "ALERT" if row["alert"] else ""
            typer.echo(f"  {row[machine]!s:<16} {time} {row[time]!s:>8}  risk {row['probability']:.3f}  "
                       f"{row['mode']:<4} ({row['mode_probability']:.2f})  {flag}")
        for item in unscored:
            typer.echo(f"  {item['machine_id']:<16} no score: {item['readings']} reading(s), fewer than a window")

    return app
