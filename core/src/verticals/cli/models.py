"""``verticals models``: list, show, verify, promote, unalias and delete versions in the model store.

The store's root is ``$VERTICALS_HOME`` (else the per-user data folder); ``--home`` overrides it for
one command. Errors are :class:`~verticals.errors.VerticalsError` subclasses, printed as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from verticals.cli.output import JsonOpt, print_json
from verticals.cli.tables import Col, console, render

HomeOpt = Annotated[Path | None, typer.Option(
    "--home", help="Model store root (default: $VERTICALS_HOME, else the per-user data folder).",
    show_default=False)]
PipelineArg = Annotated[str, typer.Argument(help="Pipeline: qualified name, short name or alias, e.g. "
                                                 "finance.credit_risk or credit_risk.")]
RefArg = Annotated[str | None, typer.Argument(
    help="Version: 3, v3, latest or an alias (default: the production alias, else the latest).",
    show_default=False)]

_MAX_METRICS = 4

models_app = typer.Typer(
    name="models",
    help="Registered model versions: list, show, verify, promote, unalias, delete.",
    no_args_is_help=True,
)


def _store(home: Path | None) -> Any:
    from verticals.store import ModelStore

    return ModelStore(home)


def _pipeline(name: str, store: Any) -> str:
    """The qualified name; an installed pipeline without any model is told to train one."""
    from verticals.cli.names import stored_pipeline
    from verticals.errors import NotFoundError

    qualified = stored_pipeline(name, store)
    if qualified not in store.pipelines():
        raise NotFoundError(f"pipeline {qualified} has no model in {store.models_dir} yet",
                            hint=f"train one with `verticals train {qualified}`, or point --home / "
                                 "VERTICALS_HOME at the store that holds its models")
    return qualified


def _value(value: Any) -> str:
    """A manifest value as JSON spells it (true, false, null), numbers to 4 significant digits."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _num(value)


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
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
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
    """List registered versions with aliases, creation time, test metrics and ONNX parity.

    A version whose manifest cannot be read is listed as broken; the others are listed as usual.
    """
    store = _store(home)
    name = _pipeline(pipeline, store) if pipeline else None
    versions, problems = store.survey(name)
    rows = [_row(mv) for mv in versions]
    if as_json:
        print_json(rows + [{**p, "broken": True} for p in problems] if problems else rows)
        return
    if not rows and not problems:
        console().print(f"No models in {store.models_dir}. Train one with `verticals train PIPELINE`.")
        return
    table = []
    for mv, row in zip(versions, rows, strict=True):
        parity = row["parity_max_diff"]
        table.append({"pipeline": mv.pipeline, "version": f"v{mv.version}", "aliases": ", ".join(mv.aliases),
                      "created": _created(mv.created_at), "metrics": _primary_metrics(mv.manifest),
                      "parity": "" if parity is None else f"{parity:.2e}"})
    render(f"models in {store.home}", [
        Col("pipeline", "pipeline"), Col("version", "version"), Col("aliases", "aliases", "words", priority=1),
        Col("metrics", "test metrics", "words", priority=2), Col("created", "created (UTC)", priority=3),
        Col("parity", "parity max diff", priority=4, justify="right"),
    ], table, empty="")
    for p in problems:  # full messages, not squeezed into a column
        version = f" v{p['version']}" if p["version"] is not None else ""
        typer.echo(f"BROKEN {p['pipeline']}{version}: {p['error']}")
    if problems:
        typer.echo(f"warning: {len(problems)} version(s) cannot be read; `verticals models show PIPELINE N` "
                   "names the file, `verticals models delete PIPELINE N --force` removes one", err=True)


def show(
    pipeline: PipelineArg,
    version: RefArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    home: HomeOpt = None,
) -> None:
    """Summarize one version's manifest: origin, data, signature, metrics, parity, variants, files."""
    store = _store(home)
    mv = store.resolve(_pipeline(pipeline, store), version)
    if as_json:
        print_json(mv.manifest)
        return
    from rich.text import Text

    m = mv.manifest
    out = console()
    out.print(Text(f"{mv.label}  aliases: {', '.join(mv.aliases) or '-'}", style="bold"))
    lines = [("path", str(mv.path)), ("created", _value(m.get("created_at")))]
    plugin = m.get("plugin")
    if isinstance(plugin, dict):
        lines.append(("plugin", " ".join(_value(plugin.get(k)) for k in ("name", "distribution", "version")
                                         if plugin.get(k) is not None) + _installed(plugin)))
    code = m.get("code_version")
    if isinstance(code, dict):
        lines.append(("code", ", ".join(f"{k} {_value(v)}" for k, v in code.items() if v)))
    if m.get("task"):
        lines.append(("task", _value(m["task"])))
    data = m.get("training_data")
    if isinstance(data, dict):
        lines.append(("training data", f"{_value(data.get('source'))} ({_value(data.get('rows'))} rows, "
                                       f"fingerprint {_value(data.get('fingerprint'))[:16]})"))
    signature = m.get("signature")
    if isinstance(signature, dict):
        inputs = signature.get("inputs") or {}
        lines.append(("inputs", ", ".join(
            f"{name} {_value(spec.get('dtype'))}{_shape(spec.get('shape'))}" if isinstance(spec, dict) else str(name)
            for name, spec in inputs.items())))
        lines.append(("outputs", ", ".join(map(str, signature.get("outputs") or []))))
    parity = _parity_max(m.get("parity"))
    if parity is not None:
        lines.append(("parity max diff", f"{parity:.2e}"))
    out.print(Text("\n".join(f"  {key:<16} {value}" for key, value in lines)), soft_wrap=True)

    metrics = m.get("metrics")
    if isinstance(metrics, dict) and metrics:
        splits = {k: v for k, v in metrics.items() if isinstance(v, dict)} or {"test": _test_metrics(m)}
        names = list(dict.fromkeys(n for split in splits.values() for n in split))
        rows = [{"metric": n, **{s: _num(splits[s].get(n)) for s in splits}} for n in names]
        render("metrics", [Col("metric", "metric"), *(Col(s, s, justify="right", priority=i)
                                                      for i, s in enumerate(splits))], rows)
    variants = m.get("variants")
    if isinstance(variants, dict) and variants:
        rows = []
        for name, v in variants.items():
            v = v if isinstance(v, dict) else {}
            rows.append({"variant": name, "file": v.get("file") or "-", "metric": _value(v.get("metric")),
                         "delta": _value(v.get("delta")), "accepted": _value(v.get("accepted")),
                         "reason": v.get("reason") or ""})
        render("variants", [Col("variant", "variant"), Col("accepted", "accepted"), Col("file", "file", priority=1),
                            Col("metric", "metric", priority=2, justify="right"),
                            Col("delta", "delta", priority=2, justify="right"),
                            Col("reason", "reason", "text", priority=3)], rows)
    rows = []
    for name, digest in sorted(mv.artifacts.items()):
        path = mv.path / name
        rows.append({"file": name, "bytes": f"{path.stat().st_size:,}" if path.is_file() else "missing",
                     "sha256": digest[:16]})
    render("files", [Col("file", "file"), Col("bytes", "bytes", justify="right"),
                     Col("sha256", "sha256 (first 16)", priority=1)], rows)


def _shape(shape: Any) -> str:
    if isinstance(shape, (list, tuple)):
        return "[" + ", ".join("batch" if d is None or isinstance(d, str) or (isinstance(d, int) and d < 0) else str(d) for d in shape) + "]"
    return "" if shape is None else f"[{shape}]"


def _installed(plugin: dict[str, Any]) -> str:
    """`` (not installed)`` when the distribution that trained the model is missing here."""
    from importlib import metadata

    dist = plugin.get("distribution")
    if not dist:
        return ""
    try:
        metadata.version(str(dist))
    except metadata.PackageNotFoundError:
        return " (not installed: scoring needs it)"
    return ""


def verify(pipeline: PipelineArg, version: RefArg = None, as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """Check a version's files against the sha256 in its manifest (exit code 4 if one changed)."""
    store = _store(home)
    mv = store.load(_pipeline(pipeline, store), version)
    if as_json:
        print_json({"pipeline": mv.pipeline, "version": mv.version, "ok": True, "files": len(mv.artifacts),
                    "path": str(mv.path)})
        return
    typer.echo(f"ok: {mv.label} — {len(mv.artifacts)} files match their sha256")


def promote(
    pipeline: PipelineArg,
    version: Annotated[str, typer.Argument(help="Version to promote: 3, v3, latest or another alias.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to point at the version.")] = "production",
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Point an alias (default: production) at a version; scoring without --model uses production."""
    store = _store(home)
    name = _pipeline(pipeline, store)
    before = store.aliases(name).get(alias)
    mv = store.promote(name, version, alias)
    if as_json:
        print_json({"pipeline": name, "alias": alias, "version": mv.version, "previous": before})
        return
    was = f" (was v{before})" if before is not None and before != mv.version else ""
    typer.echo(f"{name}: {alias} → v{mv.version}{was}")


def unalias(
    pipeline: PipelineArg,
    alias: Annotated[str, typer.Argument(help="Alias to remove, e.g. production.")],
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Remove an alias (the version stays); scoring without --model then takes the latest version."""
    store = _store(home)
    name = _pipeline(pipeline, store)
    before = store.aliases(name).get(alias)
    store.unalias(name, alias)
    if as_json:
        print_json({"pipeline": name, "alias": alias, "removed": True, "version": before})
        return
    typer.echo(f"{name}: alias {alias} removed (it pointed at v{before})")


def delete(
    pipeline: PipelineArg,
    version: Annotated[str, typer.Argument(help="Version to delete: 3, v3, latest or an alias.")],
    force: Annotated[bool, typer.Option("--force", help="Delete it even if an alias points at it (the "
                                                        "alias is removed too).")] = False,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
) -> None:
    """Delete one version's folder; refuses a version an alias points at unless --force."""
    store = _store(home)
    name = _pipeline(pipeline, store)
    mv, removed = store.delete(name, version, force=force)
    if as_json:
        print_json({"pipeline": name, "version": mv.version, "deleted": True, "aliases_removed": removed,
                    "path": str(mv.path)})
        return
    also = f"; alias {', '.join(removed)} removed" if removed else ""
    typer.echo(f"deleted {mv.label} ({mv.path}){also}")


models_app.command("list")(list_models)
models_app.command("show")(show)
models_app.command("verify")(verify)
models_app.command("promote")(promote)
models_app.command("unalias")(unalias)
models_app.command("delete")(delete)


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to the CLI (once, however often the CLI is set up)."""
    if any(group.typer_instance is models_app for group in app.registered_groups):
        return
    app.add_typer(models_app, name="models")
