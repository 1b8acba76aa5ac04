"""``verticals new-plugin``: start a third-party plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def new_plugin(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. telco (distribution verticals-telco).")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to create verticals-NAME/.")] = Path("."),
    pipeline: Annotated[str, typer.Option(help="Name of the example pipeline.")] = "churn",
) -> None:
    """Create a plugin distribution whose tests pass on the first run."""
    from verticals.scaffold import create_plugin

    root = create_plugin(name, directory, pipeline=pipeline)
    typer.echo(f"created {root}")
    typer.echo(f"next: cd {root} && pip install -e . && pytest && verticals train {name}.{pipeline}")


def register(app: typer.Typer) -> None:
    app.command("new-plugin")(new_plugin)
