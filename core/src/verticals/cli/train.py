"""``verticals train PIPELINE``: train, evaluate, export, verify and register a model in one command.

The work is :func:`verticals.engine.train`; this module only parses options and prints what a user
needs next: the version registered, its test metrics, the ONNX parity check, the variants kept and
where the report is. Errors are :class:`~verticals.errors.VerticalsError` (one line, non-zero exit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from verticals.cli.output import JsonOpt, print_json

EncodingOpt = Annotated[str, typer.Option(
    "--encoding", help="Text encoding of a CSV file, e.g. latin-1 or cp1252.")]
SeparatorOpt = Annotated[str | None, typer.Option(
    "--separator", help="Field separator of a CSV file, e.g. ';' or '\\t' (default: ',' or tab for .tsv).",
    show_default=False)]


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _rejected_line(data: dict[str, Any]) -> str:
    """One line on the training rows that made no example: rejected by validation (a value against the
    schema) or by the preprocessor (an undecodable file), with the most common reason."""
    validation = int(data.get("rows_rejected") or 0)
    by_split = {k: int(v) for k, v in (data.get("preprocessor_rejects") or {}).items() if v}
    if not validation and not by_split:
        return ""
    parts = []
    if validation:
        parts.append(f"{validation} by validation")
    if by_split:
        splits = ", ".join(f"{n} {k}" for k, n in by_split.items())
        parts.append(f"{sum(by_split.values())} by the preprocessor ({splits})")
    reasons = [r for found in (data.get("preprocessor_reasons") or {}).values() for r in found]
    first = f"; e.g. {reasons[0][0]}" if reasons else ""
    return f"rejected training rows: {', '.join(parts)}{first} (the report lists the most common reasons)"


def train(
    pipeline: Annotated[str, typer.Argument(help="Pipeline to train, e.g. finance.credit_risk.")],
    data: Annotated[Path | None, typer.Option(
        "--data", help="CSV or Parquet file with the pipeline dataset's columns (default: the dataset's "
                       "own data).", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", min=1, help="Maximum epochs (default: the pipeline's).", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", min=0, max=2**32 - 1,
        help="Seed for the split, initialisation and batching, 0 to 4294967295 (default: the pipeline's).",
        show_default=False)] = None,
    device: Annotated[str, typer.Option(
        "--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Show a progress bar per epoch.")] = True,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Model store root (default: $VERTICALS_HOME, else the per-user data folder).",
        show_default=False)] = None,
    encoding: EncodingOpt = "utf-8",
    separator: SeparatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train PIPELINE, check its ONNX export against PyTorch and register it as a new version."""
    from verticals.cli.names import installed_pipeline
    from verticals.data.files import CsvOptions
    from verticals.engine import train as run_training

    csv = CsvOptions(encoding, separator)
    pipeline = installed_pipeline(pipeline, home)  # names the missing plugin of a known model
    result = run_training(pipeline, data=data, epochs=epochs, seed=seed, device=device, home=home,
                          progress=progress and not as_json, csv=csv)
    manifest = result.manifest
    name = manifest.get("pipeline", pipeline)
    if as_json:
        print_json({"pipeline": name, "version": result.version, "path": str(result.path),
                    "report": str(result.report_path), "metrics": result.metrics,
                    "primary_metric": manifest.get("primary_metric"), "parity": manifest.get("parity"),
                    "variants": manifest.get("variants") or {}, "training_data": manifest.get("training_data")})
        return
    typer.echo(f"registered {name} v{result.version} at {Path(result.report_path).parent}")
    test = {k: v for k, v in (result.metrics.get("test") or {}).items() if isinstance(v, (int, float))}
    primary = manifest.get("primary_metric")
    order = ([primary] if primary in test else []) + [k for k in test if k != primary]
    typer.echo("test metrics: " + (" ".join(f"{k}={_num(test[k])}" for k in order) or "none"))
    rejected = _rejected_line(manifest.get("training_data") or {})
    if rejected:
        typer.echo(rejected)
    parity = manifest.get("parity") or {}
    typer.echo(f"onnx parity: {'passed' if parity.get('passed') else 'FAILED'} — max |onnx − torch| "
               f"{parity.get('max_abs_diff', float('nan')):.2e} on {parity.get('rows', '?')} test rows "
               f"(tolerance {parity.get('tolerance', float('nan')):g})")
    for kind, v in (manifest.get("variants") or {}).items():
        state = "registered" if v.get("accepted") else "not registered"
        delta = v.get("delta")
        shown = f"Δ {v.get('metric_name', 'metric')} {delta:+.4f}" if isinstance(delta, (int, float)) else ""
        typer.echo(f"variant {kind}: {state} {shown} ({v.get('reason', '')})".replace("  ", " "))
    typer.echo(f"report: {result.report_path}")


def register(app: typer.Typer) -> None:
    """Add ``verticals train`` to the CLI (once, however often the CLI is set up)."""
    if any(getattr(c, "callback", None) is train for c in app.registered_commands):
        return
    app.command("train")(train)
