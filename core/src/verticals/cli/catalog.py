"""``verticals plugins``, ``pipelines [show NAME]``, ``datasets [show NAME]``: what is installed.

The listings fit the terminal (:mod:`verticals.cli.tables`); ``show`` prints what a user needs before
preparing a file to score: the input columns with their types and rules, the outputs, the split and
the data's source.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from verticals.cli.output import JsonOpt, print_json
from verticals.cli.tables import Col, console, render

NameArg = Annotated[str, typer.Argument(help="Qualified name or alias, e.g. finance.credit_risk or credit_risk.",
                                        show_default=False)]


def plugins(as_json: JsonOpt = False) -> None:
    """List installed plugins and what each registered.

    Shows each entry point of group 'verticals': distribution, version, status (loaded, failed,
    incompatible with this core, disabled), the hooks it implements, what it registered and any
    problem found while loading it; --json adds the core versions each plugin declares it supports.
    """
    from verticals.registry import get_registry

    registry = get_registry()
    if as_json:
        print_json([p.to_dict() for p in registry.plugins])
        return
    rows = []
    for p in registry.plugins:
        rows.append({
            "plugin": p.name, "distribution": p.label,
            "status": p.status if not p.errors else f"{p.status}: " + "; ".join(p.errors),
            "hooks": ", ".join(p.hooks),
            "registered": "\n".join(f"{kind}: {', '.join(names)}" for kind, names in p.registered.items()),
        })
    render("verticals plugins", [
        Col("plugin", "plugin"), Col("distribution", "distribution", priority=2),
        Col("status", "status", "text"), Col("registered", "registered", "words", priority=1),
        Col("hooks", "hooks", "words", priority=3),
    ], rows, empty="No plugins installed. Install one, e.g. pip install -e plugins/finance")


# -- pipelines ------------------------------------------------------------------------------------------
pipelines_app = typer.Typer(name="pipelines", help="Registered pipelines: list them, or show one.",
                            invoke_without_command=True)


def _pipeline_row(registry: Any, name: str, p: Any) -> dict[str, Any]:
    info = registry.plugin_info(p.plugin)
    return {
        "name": name,
        "plugin": info.label if info else p.plugin,
        "task": p.task,
        "dataset": registry.dataset_of(p).qualified_name,
        "model": registry.model_of(p).qualified_name,
        "aliases": sorted(a for a, q in registry.aliases["pipeline"].items() if q == name),
        "primary_metric": p.primary_metric,
        "outputs": [c.name for c in p.output_columns],
        "description": p.description,
    }


@pipelines_app.callback(invoke_without_command=True)
def pipelines(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List registered pipelines with their dataset, model and task ('pipelines show NAME' for one)."""
    if ctx.invoked_subcommand is not None:
        return
    from verticals.registry import get_registry

    registry = get_registry()
    rows = [_pipeline_row(registry, name, p) for name, p in sorted(registry.pipelines.items())]
    if as_json:
        print_json(rows)
        return
    render("verticals pipelines", [
        Col("name", "name"), Col("task", "task", priority=1), Col("dataset", "dataset", priority=3),
        Col("aliases", "aliases", "words", priority=5), Col("model", "model", priority=4),
        Col("description", "description", "text", priority=2),
    ], rows, empty="verticals pipelines: none registered. 'verticals plugins' shows what is installed.")


def _columns(schema: Any) -> list[dict[str, Any]]:
    return [c.to_dict() for c in schema]


def _rules(c: Any) -> str:
    """A column's validation rules in a few words: ``missing: impute; range [0, 120] (reject)``."""
    parts = [("required" if c.required else "optional") if c.role != "target" else "training only"]
    parts.append(f"missing: {c.on_missing}")
    if c.min is not None or c.max is not None:
        low = "-inf" if c.min is None else f"{c.min:g}"
        high = "inf" if c.max is None else f"{c.max:g}"
        parts.append(f"range [{low}, {high}] ({c.on_out_of_range})")
    if c.categories is not None:
        shown = ", ".join(c.categories[:8]) + (f", … {len(c.categories) - 8} more" if len(c.categories) > 8 else "")
        parts.append(f"one of {shown} (unknown: {c.on_unknown})")
    elif c.dtype in ("category", "string"):
        parts.append(f"unknown: {c.on_unknown}")
    return "; ".join(parts)


def _print_columns(title: str, schema: Any) -> None:
    rows = [{"column": c.name, "type": c.dtype, "role": c.role, "rules": _rules(c), "description": c.description}
            for c in schema]
    render(title, [Col("column", "column"), Col("type", "type"), Col("role", "role", priority=1),
                   Col("rules", "rules", "text", priority=2), Col("description", "description", "text", priority=3)],
           rows)


def _print_fields(fields: list[tuple[str, Any]]) -> None:
    """``key  value`` lines; long values wrap between words under their start, never inside a word."""
    import textwrap

    from rich.text import Text

    out = console()
    key_width = max(len(k) for k, _ in fields)
    room = max(out.width - key_width - 2, 20)
    lines = []
    for key, value in fields:
        parts = textwrap.wrap("" if value is None else str(value), width=room, break_long_words=False,
                              break_on_hyphens=False) or [""]
        lines.append(f"{key:<{key_width}}  {parts[0]}")
        lines.extend(" " * (key_width + 2) + part for part in parts[1:])
    out.print(Text("\n".join(lines)), soft_wrap=True)


def _dataset_dict(d: Any) -> dict[str, Any]:
    return {
        "name": d.qualified_name,
        "kind": d.kind,
        "split": d.split.strategy,
        "ids": d.schema.ids,
        "target": d.schema.target.name if d.schema.target else None,
        "features": [c.name for c in d.schema.features],
        "columns": _columns(d.schema),
        "source": d.source,
        "description": d.description,
    }


@pipelines_app.command("show")
def show_pipeline(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show one pipeline: the input columns a file to score needs, the outputs, the dataset and its split."""
    from verticals.registry import get_registry

    registry = get_registry()
    p = registry.pipeline(name)
    dataset = registry.dataset_of(p)
    row = _pipeline_row(registry, p.qualified_name, p)
    inputs = dataset.schema.without_target()
    data = {**row, "outputs": [{"name": c.name, "dtype": c.dtype, "description": c.description}
                               for c in p.output_columns],
            "inputs": _columns(inputs), "target": dataset.schema.target.name if dataset.schema.target else None,
            "split": {"strategy": dataset.split.strategy, "test_fraction": dataset.split.test_fraction,
                      "valid_fraction": dataset.split.valid_fraction},
            "source": dataset.source,
            "training": {"epochs": p.training.epochs, "batch_size": p.training.batch_size,
                         "learning_rate": p.training.learning_rate, "seed": p.training.seed,
                         "class_weighting": p.training.class_weighting}}
    if as_json:
        print_json(data)
        return
    target = dataset.schema.target
    _print_fields([
        ("pipeline", row["name"]), ("aliases", ", ".join(row["aliases"]) or "-"), ("plugin", row["plugin"]),
        ("task", row["task"]), ("primary metric", row["primary_metric"]), ("dataset", row["dataset"]),
        ("model", row["model"]), ("target", f"{target.name} ({target.dtype}, needed to train, not to score)"
                                  if target else "-"),
        ("split", f"{dataset.split.strategy} (test {dataset.split.test_fraction:g}, "
                  f"validation {dataset.split.valid_fraction:g})"),
        ("source", dataset.source or "-"), ("description", row["description"] or "-"),
    ])
    _print_columns("input columns (a file to score needs the required ones)", inputs)
    render("outputs (besides the id columns, flags and model_version)",
           [Col("name", "output"), Col("dtype", "type"), Col("description", "description", "text", priority=1)],
           data["outputs"])


# -- datasets -------------------------------------------------------------------------------------------
datasets_app = typer.Typer(name="datasets", help="Registered datasets: list them, or show one.",
                           invoke_without_command=True)


@datasets_app.callback(invoke_without_command=True)
def datasets(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List registered datasets with their kind, split and source ('datasets show NAME' for one)."""
    if ctx.invoked_subcommand is not None:
        return
    from verticals.registry import get_registry

    registry = get_registry()
    rows = [_dataset_dict(d) for _, d in sorted(registry.datasets.items())]
    if as_json:
        print_json(rows)
        return
    render("verticals datasets", [
        Col("name", "name"), Col("kind", "kind", priority=3), Col("split", "split", priority=2),
        Col("target", "target", priority=1), Col("source", "source", "words", priority=4),
    ], rows, empty="verticals datasets: none registered. 'verticals plugins' shows what is installed.")


@datasets_app.command("show")
def show_dataset(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show one dataset: its columns with types and validation rules, its split and its source."""
    from verticals.registry import get_registry

    registry = get_registry()
    d = registry.dataset(name)
    data = {**_dataset_dict(d), "split": {"strategy": d.split.strategy, "test_fraction": d.split.test_fraction,
                                          "valid_fraction": d.split.valid_fraction},
            "license": d.license,
            "pipelines": sorted(q for q, p in registry.pipelines.items()
                                if registry.dataset_of(p).qualified_name == d.qualified_name)}
    if as_json:
        print_json(data)
        return
    _print_fields([
        ("dataset", d.qualified_name), ("kind", d.kind),
        ("ids", ", ".join(d.schema.ids) or "- (rows are named by their number in the file)"),
        ("target", data["target"] or "-"),
        ("split", f"{d.split.strategy} (test {d.split.test_fraction:g}, validation {d.split.valid_fraction:g})"),
        ("source", d.source or "-"), ("license", d.license or "-"),
        ("pipelines", ", ".join(data["pipelines"]) or "-"), ("description", d.description or "-"),
    ])
    _print_columns("columns", d.schema)


def register(app: typer.Typer) -> None:
    from verticals.cli import plugin_packages

    plugin_packages.register(app, plugins)  # `plugins` lists; `plugins install|uninstall` wrap pip
    app.add_typer(pipelines_app, name="pipelines")
    app.add_typer(datasets_app, name="datasets")
