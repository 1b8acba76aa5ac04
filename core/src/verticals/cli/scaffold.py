"""``verticals new-plugin``: start a third-party plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def new_plugin(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. insurance_fraud (distribution "
                                             "verticals-insurance-fraud, pipeline insurance_fraud.insurance_fraud).")],
    directory: Annotated[Path, typer.Option("--dir", help="Folder to create verticals-NAME/ in.")] = Path("."),
    pipeline: Annotated[str | None, typer.Option(help="Name of the example pipeline (default: the plugin's name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was created as JSON.")] = False,
) -> None:
    """Create a plugin distribution whose tests pass on the first run, before it is installed.

    The plugin registers a generated example dataset (NAME_data, neutral columns), an MLP and a
    binary pipeline whose score is a calibrated probability. Names of installed distributions and
    plugins are refused.
    """
    from verticals.scaffold import create_plugin, plugin_names

    root = create_plugin(name, directory, pipeline=pipeline)
    names = plugin_names(name, pipeline)
    qualified = f"{name}.{names['pipeline']}"
    steps = [f"cd {root}", "pytest", "verticals plugins install .", f"verticals train {qualified}"]
    if as_json:
        typer.echo(json.dumps({"path": str(root.absolute()), "plugin": name,
                               "distribution": f"verticals-{names['dist']}", "package": f"verticals_{name}",
                               "pipeline": qualified, "dataset": f"{name}.{names['dataset']}",
                               "model": f"{name}.mlp", "next": steps}, indent=2))
        return
    typer.echo(f"created {root} (pipeline {qualified}, dataset {name}.{names['dataset']})")
    typer.echo("next: " + " && ".join(steps))


def register(app: typer.Typer) -> None:
    app.command("new-plugin")(new_plugin)
