"""``verticals finance ...``: the plugin's first own-data commands, now aliases of ``verticals data``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from verticals.registry import reset_registry

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
        from verticals.cli.data import describe
        from verticals.owndata import register_config

        from verticals_finance.config import TEMPLATE

        config, summary = register_config(path, default_template=TEMPLATE)
        reset_registry()  # later commands in this process see the new pipeline
        out = describe(config, summary)
        if as_json:
            typer.echo(json.dumps(out, indent=2, default=str))
            return
        typer.echo(f"registered {config.path} (sha256 {config.sha256[:12]})")
        from verticals.cli.data import _print

        _print(out)
        typer.echo(f"train it with: verticals train {out['pipeline']}")

    @app.command("unregister-config")
    def unregister_config_cmd(name: Annotated[str, typer.Argument(help="Config name or path.")],
                              as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
                              ) -> None:
        """Same as `verticals data remove NAME`."""
        from verticals.errors import NotFoundError
        from verticals.owndata import remove_config

        gone = remove_config(name)
        reset_registry()
        if gone is None:
            raise NotFoundError(f"no registered data config named or at '{name}'",
                                hint="run `verticals data list` to list them")
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
