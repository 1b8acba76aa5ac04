"""``verticals models``: list, show, verify and promote versions in the model store.

The store's root is ``$VERTICALS_HOME`` (else the per-user data folder); ``--home`` overrides it for
one command. Errors are :class:`~verticals.errors.VerticalsError` subclasses, printed as one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
HomeOpt = Annotated[Path | None, typer.Option(
    "--home", help="Model store root (default: $VERTICALS_HOME, else the per-user data folder).",
    show_default=False)]
PipelineArg = Annotated[str, typer.Argument(help="Qualified pipeline name, e.g. finance.credit_risk.")]
RefArg = Annotated[str | None, typer.Argument(
    help="Version: 3, v3, latest or an alias (default: the production alias, else the latest).",
    show_default=False)]

_MAX_METRICS = 4

models_app = typer.Typer(
    name="models",
    help="Registered model versions: list, show, verify, promote.",
    no_args_is_help=True,
)


def _store(home: Path | None) -> Any:
    from verticals.store import ModelStore

    return ModelStore(home)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _test_metrics(manifest: dict[str, Any]) -> dict[str, Any]:
    """Metrics on the test split: ``metrics["test"]``, or ``metrics`` itself when it is flat."""
    metrics = manifest.get("metrics") or {}
    if not isinstance(metrics, dict):
        return {}
    test = metrics.get("test")
    if isinstance(test, dict):
        return test
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _primary_metrics(manifest: dict[str, Any], limit: int = _MAX_METRICS) -> str:
    """``auc=0.8123 gini=0.6246 ...``: the pipeline's primary metric first, then the others in order."""
    test = {k: v for k, v in _test_metrics(manifest).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    primary = manifest.get("primary_metric") or metrics.get("primary")
    names = list(test)
    if isinstance(primary, str) and primary in test:
        names.remove(primary)
        names.insert(0, primary)
    return " ".join(f"{n}={_num(test[n])}" for n in names[:limit])


def _parity_max(parity: Any) -> float | None:
    """Largest |ONNX − PyTorch| difference recorded in ``manifest["parity"]``, whatever its nesting."""
    if isinstance(parity, bool):
        return None
    if isinstance(parity, (int, float)):
        return float(parity)
    if not isinstance(parity, dict):
        return None
    for key in ("max_abs_diff", "max_diff", "max_abs_error", "max_error", "max_abs"):
        value = parity.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    found = [v for v in (_parity_max(x) for x in parity.values() if isinstance(x, dict)) if v is not None]
    return max(found) if found else None


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _created(value: Any) -> str:
    return str(value)[:16].replace("T", " ") if value else ""


def _row(mv: Any) -> dict[str, Any]:
    return {
        "pipeline": mv.pipeline,
        "version": mv.version,
        "aliases": list(mv.aliases),
        "created_at": mv.created_at,
        "metrics": _test_metrics(mv.manifest),
        "parity_max_diff": _parity_max(mv.manifest.get("parity")),
        "path": str(mv.path),
    }


def list_models(
    pipeline: Annotated[str | None, typer.Argument(
        help="Only this pipeline (default: all).", show_default=False)] = None,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """List registered versions with aliases, creation time, test metrics and ONNX parity."""
    store = _store(home)
    if pipeline:
        versions = store.versions(pipeline)
        if not versions:
            store.resolve(pipeline)  # raises NotFoundError listing the pipelines that have models
    else:
        versions = [mv for name in store.pipelines() for mv in store.versions(name)]
    rows = [_row(mv) for mv in versions]
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print(f"No models in {store.models_dir}. Train one with `verticals train PIPELINE`.")
        return
    table = Table(title=f"models in {store.home}")
    for col in ("pipeline", "version", "aliases", "created (UTC)", "test metrics", "parity max diff"):
        table.add_column(col, overflow="fold", no_wrap=col in ("pipeline", "version", "created (UTC)"))  # identifiers stay whole
    for mv, row in zip(versions, rows, strict=True):
        parity = row["parity_max_diff"]
        table.add_row(mv.pipeline, f"v{mv.version}", ", ".join(mv.aliases), _created(mv.created_at),
                      _primary_metrics(mv.manifest), "" if parity is None else f"{parity:.2e}")
    console.print(table)


def show(
    pipeline: PipelineArg,
    version: RefArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    home: HomeOpt = None,
) -> None:
    """Summarize one version's manifest: origin, data, signature, metrics, parity, variants, files."""
    mv = _store(home).resolve(pipeline, version)
    if as_json:
        _print_json(mv.manifest)
        return
    from rich.console import Console
    from rich.table import Table

    m = mv.manifest
    console = Console()
    console.print(f"[bold]{mv.label}[/bold]  aliases: {', '.join(mv.aliases) or '-'}")
    lines = [("path", str(mv.path)), ("created", str(m.get("created_at", "")))]
    plugin = m.get("plugin")
    if isinstance(plugin, dict):
        lines.append(("plugin", " ".join(str(plugin.get(k, "")) for k in ("name", "distribution", "version"))))
    code = m.get("code_version")
    if isinstance(code, dict):
        lines.append(("code", ", ".join(f"{k} {v}" for k, v in code.items() if v)))
    if m.get("task"):
        lines.append(("task", str(m["task"])))
    data = m.get("training_data")
    if isinstance(data, dict):
        lines.append(("training data", f"{data.get('source', '?')} ({data.get('rows', '?')} rows, "
                                       f"fingerprint {str(data.get('fingerprint', '?'))[:16]})"))
    signature = m.get("signature")
    if isinstance(signature, dict):
        inputs = signature.get("inputs") or {}
        lines.append(("inputs", ", ".join(
            f"{name} {spec.get('dtype')}{spec.get('shape')}" if isinstance(spec, dict) else str(name)
            for name, spec in inputs.items())))
        lines.append(("outputs", ", ".join(map(str, signature.get("outputs") or []))))
    parity = _parity_max(m.get("parity"))
    if parity is not None:
        lines.append(("parity max diff", f"{parity:.2e}"))
    for key, value in lines:
        console.print(f"  {key:<16} {value}")

    metrics = m.get("metrics")
    if isinstance(metrics, dict) and metrics:
        splits = {k: v for k, v in metrics.items() if isinstance(v, dict)} or {"test": _test_metrics(m)}
        names = list(dict.fromkeys(n for split in splits.values() for n in split))
        table = Table(title="metrics")
        table.add_column("metric")
        for split in splits:
            table.add_column(split, justify="right")
        for n in names:
            table.add_row(n, *(_num(splits[s].get(n, "")) for s in splits))
        console.print(table)
    variants = m.get("variants")
    if isinstance(variants, dict) and variants:
        table = Table(title="variants")
        for col in ("variant", "file", "metric", "delta", "accepted"):
            table.add_column(col)
        for name, v in variants.items():
            v = v if isinstance(v, dict) else {}
            table.add_row(name, str(v.get("file", "")), _num(v.get("metric", "")), _num(v.get("delta", "")),
                          str(v.get("accepted", "")))
        console.print(table)
    table = Table(title="files")
    for col in ("file", "bytes", "sha256"):
        table.add_column(col, overflow="fold", no_wrap=col in ("pipeline", "version", "created (UTC)"))  # identifiers stay whole
    for name, digest in sorted(mv.artifacts.items()):
        path = mv.path / name
        size = str(path.stat().st_size) if path.is_file() else "missing"
        table.add_row(name, size, digest[:16])
    console.print(table)


def verify(pipeline: PipelineArg, version: RefArg = None, home: HomeOpt = None) -> None:
    """Check a version's files against the sha256 in its manifest (exit code 4 if one changed)."""
    mv = _store(home).load(pipeline, version)
    typer.echo(f"ok: {mv.label} — {len(mv.artifacts)} files match their sha256")


def promote(
    pipeline: PipelineArg,
    version: Annotated[str, typer.Argument(help="Version to promote: 3, v3, latest or another alias.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to point at the version.")] = "production",
    home: HomeOpt = None,
) -> None:
    """Point an alias (default: production) at a version; scoring without --model uses production."""
    store = _store(home)
    before = store.aliases(pipeline).get(alias)
    mv = store.promote(pipeline, version, alias)
    was = f" (was v{before})" if before is not None and before != mv.version else ""
    typer.echo(f"{pipeline}: {alias} → v{mv.version}{was}")


models_app.command("list")(list_models)
models_app.command("show")(show)
models_app.command("verify")(verify)
models_app.command("promote")(promote)


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to the CLI (once, however often the CLI is set up)."""
    if any(group.typer_instance is models_app for group in app.registered_groups):
        return
    app.add_typer(models_app, name="models")
