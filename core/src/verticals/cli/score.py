"""``verticals score``: batch-score a Parquet/CSV file or folder with a registered model.

The command is a thin shell over :func:`verticals.scoring.score`; errors are one line (exit code by
kind), the provider that actually ran and the throughput are printed at the end.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer


def score_command(
    pipeline: Annotated[str, typer.Argument(help="Pipeline, e.g. finance.credit_risk.")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Parquet or CSV file, or a folder of them.",
                                        show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (created atomically).",
                                         show_default=False)],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Version (3, v3, latest) or alias; default: the production alias, else the latest.",
        show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto (CUDA when a GPU and "
                                                         "onnxruntime-gpu can run it).")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Rows per model call.")] = 65536,
    variant: Annotated[str, typer.Option(
        "--variant", help="fp32 (default), int8, fp16, or auto (int8 on CPU / fp16 on CUDA when the "
                          "manifest marks it accepted).")] = "fp32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder "
                                                                "(only once the new output is complete).")] = False,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads "
                                                                          "(default: all usable cores).",
                                                show_default=False)] = None,
    home: Annotated[Path | None, typer.Option("--home", help="Model store root (default: $VERTICALS_HOME).",
                                              show_default=False)] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's manifest as JSON.")] = False,
) -> None:
    """Score INPUT with PIPELINE's model into the folder OUTPUT.

    OUTPUT gets part-*.parquet (ids, output columns, flags, model_version), _rejects.parquet (rows that
    failed validation, with _row, _source and _reason) and _manifest.json (row counts, model version,
    device and provider, timing). An interrupted run leaves no OUTPUT; rerunning resumes it.
    """
    from verticals.scoring import score

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("verticals.scoring").setLevel(logging.INFO if not as_json else logging.WARNING)
    manifest = score(pipeline, input, output, model=model, device=device, batch_size=batch_size,
                     overwrite=overwrite, home=home, progress=progress and not as_json, variant=variant,
                     threads=threads)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2, default=str))
        return
    typer.echo(
        f"scored {manifest['rows_in']:,} rows with {manifest['pipeline']} v{manifest['model_version']} "
        f"({manifest['variant']}) on {manifest['provider']}: {manifest['rows_scored']:,} scored, "
        f"{manifest['rows_rejected']:,} rejected, {manifest['rows_per_second']:,.0f} rows/s "
        f"in {manifest['seconds']:.1f} s")
    typer.echo(f"output: {manifest['output']} ({len(manifest['parts'])} part files"
               f"{', rejects in _rejects.parquet' if manifest['rows_rejected'] else ''})")
    # Warnings about values (categories matched after normalisation, likely misspellings); the ones
    # about columns were printed before scoring started.
    for note in manifest.get("warnings") or []:
        if ": ignoring column(s)" not in note:
            typer.echo(f"warning: {note}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``verticals score`` to the CLI."""
    app.command("score", no_args_is_help=True)(score_command)
