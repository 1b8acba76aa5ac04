"""``verticals finance ...``: register a credit config so its pipeline is available in every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["finance_app"]


def finance_app() -> Any:
    """The ``finance`` command group."""
    app = typer.Typer(no_args_is_help=True, help="Credit risk: your own data as a credit pipeline.")

    @app.command("register-config")
    def register_config_cmd(
        path: Annotated[Path, typer.Argument(help="TOML or JSON credit config (see docs/finance.md).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Check a credit config and remember it: `finance.<name>` is then trainable and scorable."""
        from verticals_finance.config import describe, register_config

        config = register_config(path)
        summary = describe(config)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        typer.echo(f"registered {config.path}")
        typer.echo(f"  dataset  {summary['dataset']}  ({summary['data']})")
        typer.echo(f"  pipeline {summary['pipeline']}  target {summary['target']}")
        for col in summary["columns"]:
            if col["role"] != "feature":
                continue
            extra = f", monotonic {col['monotonic']:+d}" if col["monotonic"] else ""
            typer.echo(f"  feature  {col['name']} ({col['dtype']}{extra})")
        typer.echo(f"train it with: verticals train {summary['pipeline']}")

    @app.command("unregister-config")
    def unregister_config_cmd(
        name: Annotated[str, typer.Argument(help="Config name or path.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Forget a registered credit config (the file itself is left alone)."""
        from verticals.errors import NotFoundError

        from verticals_finance.config import forget_config

        gone = forget_config(name)
        if gone is None:
            raise NotFoundError(f"no registered credit config named or at '{name}'",
                                hint="run `verticals finance configs` to list them")
        if as_json:
            typer.echo(json.dumps({"forgotten": str(gone)}, indent=2))
            return
        typer.echo(f"forgot {gone}")

    @app.command("configs")
    def configs_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """List the credit configs in use (environment variable and registered ones)."""
        from verticals_finance.config import CONFIG_ENV, config_paths, load_config, registered_configs

        remembered = set(registered_configs())
        rows = []
        for path in config_paths():
            try:
                name, problem = load_config(path).name, ""
            except Exception as exc:  # show the problem, keep listing
                name, problem = "", str(exc)
            rows.append({"path": str(path), "name": name, "from": "registered" if path in remembered else CONFIG_ENV,
                         "problem": problem})
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            typer.echo("no credit configs; add one with `verticals finance register-config FILE`")
        for row in rows:
            status = f"ERROR {row['problem']}" if row["problem"] else f"finance.{row['name']}"
            typer.echo(f"{status}  {row['path']}  ({row['from']})")

    return app
