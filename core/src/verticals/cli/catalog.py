"""``verticals plugins``, ``verticals pipelines``, ``verticals datasets``: what is installed."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def plugins(as_json: JsonOpt = False) -> None:
    """List installed plugins and what each registered.

    Shows each entry point of group 'verticals': distribution, version, status (loaded, failed,
    incompatible with this core, disabled), the hooks it implements, what it registered and any
    problem found while loading it; --json adds the core versions each plugin declares it supports.
    """
    from verticals.registry import get_registry

    registry = get_registry()
    if as_json:
        _print_json([p.to_dict() for p in registry.plugins])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="verticals plugins")
    for col in ("plugin", "distribution", "status", "hooks", "registered"):
        table.add_column(col, overflow="fold", no_wrap=col in ("plugin", "name", "dataset", "model", "distribution"))  # identifiers stay whole
    for p in registry.plugins:
        registered = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in p.registered.items())
        status = p.status if not p.errors else f"{p.status}\n" + "\n".join(p.errors)
        table.add_row(p.name, p.label, status, ", ".join(p.hooks), registered)
    console = Console()
    if not registry.plugins:
        console.print("No plugins installed. Install one, e.g. pip install -e plugins/finance")
        return
    console.print(table)


def pipelines(as_json: JsonOpt = False) -> None:
    """List registered pipelines with their dataset, model and task."""
    from verticals.registry import get_registry

    registry = get_registry()
    rows = []
    for name, p in sorted(registry.pipelines.items()):
        info = registry.plugin_info(p.plugin)
        rows.append({
            "name": name,
            "plugin": info.label if info else p.plugin,
            "task": p.task,
            "dataset": registry.dataset_of(p).qualified_name,
            "model": registry.model_of(p).qualified_name,
            "aliases": sorted(a for a, q in registry.aliases["pipeline"].items() if q == name),
            "primary_metric": p.primary_metric,
            "outputs": [c.name for c in p.output_columns],
            "description": p.description,
        })
    if as_json:
        _print_json(rows)
        return
    _table("verticals pipelines", rows, ("name", "task", "dataset", "model", "description"))


def datasets(as_json: JsonOpt = False) -> None:
    """List registered datasets with their kind, split and source."""
    from verticals.registry import get_registry

    registry = get_registry()
    rows = []
    for name, d in sorted(registry.datasets.items()):
        rows.append({
            "name": name,
            "kind": d.kind,
            "split": d.split.strategy,
            "ids": d.schema.ids,
            "target": d.schema.target.name if d.schema.target else None,
            "features": [c.name for c in d.schema.features],
            "columns": d.schema.to_dict(),
            "source": d.source,
            "description": d.description,
        })
    if as_json:
        _print_json(rows)
        return
    _table("verticals datasets", rows, ("name", "kind", "split", "target", "source"))


def _table(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print(f"{title}: none registered. 'verticals plugins' shows what is installed.")
        return
    table = Table(title=title)
    identifiers = ("plugin", "name", "dataset", "model", "distribution")
    for col in columns:  # identifiers stay whole; prose wraps by words
        table.add_column(col, overflow="fold", no_wrap=col in identifiers,
                         min_width=24 if col in ("description", "source") else None)
    for row in rows:
        table.add_row(*(str(row.get(c) if row.get(c) is not None else "") for c in columns))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
    app.command("pipelines")(pipelines)
    app.command("datasets")(datasets)
