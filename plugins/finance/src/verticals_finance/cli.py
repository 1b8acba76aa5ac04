"""``verticals finance ...``: the plugin's first own-data commands, now aliases of ``verticals data``."""

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
        path: Annotated[Path, typer.Argument(help="TOML or JSON credit config (see docs/own-data.md).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Same as `verticals data register FILE --template finance.credit`."""
        from verticals.cli.data import register_and_print

        from verticals_finance.config import TEMPLATE

        register_and_print(path, TEMPLATE, as_json)

    @app.command("unregister-config")
    def unregister_config_cmd(name: Annotated[str, typer.Argument(help="Config name or path.")],
                              as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
                              ) -> None:
        """Same as `verticals data remove NAME`."""
        from verticals.cli.data import remove_or_fail

        gone = remove_or_fail(name)
        if as_json:
            typer.echo(json.dumps({"forgotten": gone.get("source"), "name": gone["name"]}, indent=2))
            return
        typer.echo(f"removed {gone['name']} (registered from {gone.get('source')})")

    @app.command("configs")
    def configs_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """The credit configs in use (`verticals data list` lists every template's)."""
        from verticals.registry import get_registry

        from verticals_finance.config import TEMPLATE

        rows = [{"name": c.name, "pipeline": q, "config": str(c.path), "data": str(c.data), "sha256": c.sha256}
                for q, c in sorted(get_registry().own_data.items()) if c.template == TEMPLATE]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            typer.echo("no credit configs; add one with `verticals data register FILE`")
        for row in rows:
            typer.echo(f"{row['pipeline']}  {row['config']}")

    return app
