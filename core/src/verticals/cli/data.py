"""``verticals data register | list | show | remove | templates``: a user's own data as a pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _forget_registry() -> None:
    """Later commands in this process (tests, notebooks) rebuild the registry and see the change."""
    from verticals.registry import reset_registry

    reset_registry()


def describe(config: Any, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a config turns into: the names, the data file, its checks and the schema's columns."""
    from verticals.owndata import schema_of
    from verticals.registry import get_registry

    template = get_registry().templates.get(config.template)
    plugin = template.plugin if template else config.template.split(".", 1)[0]
    schema = schema_of(config, template)
    out: dict[str, Any] = {
        "name": config.name, "template": config.template, "pipeline": f"{plugin}.{config.name}",
        "dataset": f"{plugin}.{config.name}", "config": str(config.path), "sha256": config.sha256,
        "data": str(config.data) if config.data else None,
        "ids": config.ids or ["_row (0-based row number in the input file)", "_source (the input file)"],
        "target": {"column": config.target, "positive": config.positive, "negative": config.negative},
        "columns": [{"name": c.name, "role": c.role, "dtype": c.dtype, "monotonic": c.monotonic, "min": c.min,
                     "max": c.max, "on_missing": c.on_missing, "on_out_of_range": c.on_out_of_range,
                     "on_unknown": c.on_unknown, "range_margin": c.range_margin, "normalize": c.normalize}
                    for c in schema],
        "options": config.options,
    }
    if summary is not None:
        out["rows"], out["labels"] = summary.get("rows"), summary.get("labels")
    return out


def _print(summary: dict[str, Any]) -> None:
    typer.echo(f"  dataset  {summary['dataset']}  ({summary['data']}"
               + (f", {summary['rows']} rows" if summary.get("rows") is not None else "") + ")")
    target = summary["target"]
    labels = summary.get("labels") or {}
    counts = f" ({', '.join(f'{k}: {v}' for k, v in labels.items())})" if labels else ""
    typer.echo(f"  pipeline {summary['pipeline']}  template {summary['template']}")
    typer.echo(f"  target   {target['column']}: positive {target['positive']!r}, negative {target['negative']}{counts}")
    typer.echo(f"  ids      {', '.join(summary['ids'])}")
    for col in summary["columns"]:
        if col["role"] in ("id", "target"):
            continue
        extra = f", monotonic {col['monotonic']:+d}" if col["monotonic"] else ""
        role = f"{col['role']:<10}"
        typer.echo(f"  {role}{col['name']} ({col['dtype']}{extra})")


def register_and_print(path: Path, template: str | None, as_json: bool) -> None:
    """``verticals data register``: check the config against its file, store it, print what it became."""
    from verticals.owndata import register_config

    config, summary = register_config(path, default_template=template)
    _forget_registry()
    out = describe(config, summary)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    typer.echo(f"registered {config.path} (sha256 {config.sha256[:12]})")
    _print(out)
    typer.echo(f"train it with: verticals train {out['pipeline']}")


def remove_or_fail(name: str) -> dict[str, Any]:
    """Forget a registered config by name or path; what it was, or a NotFoundError naming the fix."""
    from verticals.errors import NotFoundError
    from verticals.owndata import remove_config

    gone = remove_config(name)
    _forget_registry()
    if gone is None:
        raise NotFoundError(f"no registered data config named or at '{name}'",
                            hint="run `verticals data list` to list them")
    return gone


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    data = typer.Typer(no_args_is_help=True, help="Your own data (CSV/Parquet + a small config) as a pipeline.")

    @data.command("register")
    def register_cmd(
        path: Annotated[Path, typer.Argument(help="TOML or JSON data config (see docs/own-data.md).")],
        template: Annotated[str | None, typer.Option("--template", "-t",
                                                     help="Template for a config without 'template'.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Check a config against its data file and store it: `<plugin>.<name>` is then trainable."""
        register_and_print(path, template, as_json)

    @data.command("list")
    def list_cmd(as_json: JsonOpt = False) -> None:
        """List the registered data configs and whether each is in use."""
        from verticals.registry import get_registry

        registry = get_registry()
        from verticals.owndata import registered

        in_use = {c.name for c in registry.own_data.values()}
        rows = [{"name": e["name"], "template": e.get("template"), "data": e.get("data"),
                 "rows": e.get("rows"), "registered_at": e.get("registered_at"), "source": e.get("source"),
                 "status": "ok" if e["name"] in in_use else "skipped (see the warning)"} for e in registered()]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            typer.echo("no data configs; add one with `verticals data register FILE`")
        for row in rows:
            typer.echo(f"{row['name']}  {row['template']}  {row['rows']} rows  {row['data']}  [{row['status']}]")

    @data.command("show")
    def show_cmd(name: Annotated[str, typer.Argument(help="Config name.")], as_json: JsonOpt = False) -> None:
        """Show what a registered config turns into (columns, rules, ids)."""
        from verticals.errors import NotFoundError
        from verticals.registry import get_registry

        registry = get_registry()
        config = next((c for c in registry.own_data.values() if c.name == name), None)
        if config is None:
            names = sorted({c.name for c in registry.own_data.values()})
            raise NotFoundError(f"no data config named '{name}' is in use",
                                hint=f"registered: {', '.join(names) or 'none'} (`verticals data list`)")
        out = describe(config)
        if as_json:
            typer.echo(json.dumps(out, indent=2, default=str))
            return
        typer.echo(f"{config.name}  ({config.path}, sha256 {config.sha256[:12]})")
        _print(out)

    @data.command("remove")
    def remove_cmd(name: Annotated[str, typer.Argument(help="Config name or the path it was registered from.")],
                   as_json: JsonOpt = False) -> None:
        """Forget a registered config (its data file and the models trained on it are left alone)."""
        gone = remove_or_fail(name)
        if as_json:
            typer.echo(json.dumps({"removed": gone}, indent=2))
            return
        typer.echo(f"removed {gone['name']} (registered from {gone.get('source')})")

    @data.command("templates")
    def templates_cmd(as_json: JsonOpt = False) -> None:
        """List the templates plugins offer for own data, with their extra config sections."""
        from verticals.registry import get_registry

        rows = [{"template": q, "description": t.description, "task": t.task, "min_rows": t.min_rows,
                 "sections": dict(t.sections), "example": t.example}
                for q, t in sorted(get_registry().templates.items())]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            typer.echo(f"{row['template']}  {row['description']} (at least {row['min_rows']} rows)")
            for key, text in row["sections"].items():
                typer.echo(f"    [{key}]  {text}")

    app.add_typer(data, name="data", help="Your own data (CSV/Parquet + a small config) as a pipeline.")
