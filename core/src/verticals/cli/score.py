"""``verticals score``: batch-score a Parquet/CSV file or folder with a registered model.

The command is a thin shell over :func:`verticals.scoring.score`. It prints one summary (stdout), each
warning once (stderr: ignored columns, empty input, repeated ids), and after a resumed run how many
parts were reused; throughput counts only the rows scored in this run. Errors are one line (exit code
by kind), or JSON under ``--json``.
"""

from __future__ import annotations

import logging
import warnings as pywarnings
from pathlib import Path
from typing import Annotated, Any

import typer

from verticals.cli.output import print_json
from verticals.cli.train import EncodingOpt, SeparatorOpt


def score_command(
    pipeline: Annotated[str, typer.Argument(help="Pipeline: qualified name, short name or alias, e.g. "
                                                 "finance.credit_risk or credit_risk.")],
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
        "--variant", help="auto (default: int8 on a CPU with fast int8 kernels (VNNI) / fp16 on CUDA when "
                          "the metric gate accepted it at registration, else fp32), fp32, int8 or fp16.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder "
                                                                "(only once the new output is complete).")] = False,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="ONNX Runtime intra-op threads "
                                                                          "(default: all usable cores).",
                                                show_default=False)] = None,
    k: Annotated[int | None, typer.Option(
        "--k", help="Items per list, for a pipeline with a 'k' scoring parameter (recommendations); "
                    "default: the pipeline's.", show_default=False)] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="A scoring parameter the pipeline declares, NAME=VALUE (repeatable).",
        show_default=False)] = None,
    encoding: EncodingOpt = "utf-8",
    separator: SeparatorOpt = None,
    home: Annotated[Path | None, typer.Option("--home", help="Model store root (default: $VERTICALS_HOME).",
                                              show_default=False)] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's manifest as JSON; errors too.")] = False,
) -> None:
    """Score INPUT with PIPELINE's model into the folder OUTPUT.

    OUTPUT gets part-*.parquet (ids, output columns, flags, model_version), _rejects.parquet (rows that
    failed validation, with _row, _source and _reason) and _manifest.json (row counts, model version,
    device and provider, timing). An interrupted run leaves no OUTPUT; rerunning resumes it.
    """
    from verticals.cli.names import installed_pipeline
    from verticals.data.files import CsvOptions
    from verticals.scoring import score

    csv = CsvOptions(encoding, separator)
    params = scoring_params(param, k)
    name = installed_pipeline(pipeline, home)
    scoring_log = logging.getLogger("verticals.scoring")
    level = scoring_log.level
    scoring_log.setLevel(logging.ERROR)  # its info duplicates the summary, its warnings are shown below
    manifest: dict[str, Any] | None = None
    try:
        with pywarnings.catch_warnings(record=True) as caught:
            pywarnings.simplefilter("always", UserWarning)
            manifest = score(name, input, output, model=model, device=device, batch_size=batch_size,
                             overwrite=overwrite, home=home, progress=progress and not as_json and _terminal(),
                             variant=variant,
                             threads=threads, csv=csv, params=params)
    finally:
        scoring_log.setLevel(level)
        notes = [str(w.message) for w in caught] + list((manifest or {}).get("warnings") or [])
        if not as_json:  # under --json they are in the manifest's "warnings"
            for note in dict.fromkeys(notes):
                typer.echo(f"warning: {note}", err=True)
    if as_json:
        print_json(manifest)
        return
    for line in summary(manifest):
        typer.echo(line)


def scoring_params(pairs: list[str] | None, k: int | None) -> dict[str, str | int] | None:
    """``--param NAME=VALUE`` pairs and ``--k`` as one dict (checked against the pipeline by the core)."""
    from verticals.errors import UserError

    params: dict[str, str | int] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--param {pair!r} is not NAME=VALUE", hint="write it as --param k=20")
        params[name.strip()] = value.strip()
    if k is not None:
        if "k" in params and str(params["k"]) != str(k):
            raise UserError(f"--k {k} and --param k={params['k']} disagree", hint="give k once")
        params["k"] = k
    return params or None


def _terminal() -> bool:
    """A progress bar only where a person watches (stderr is a terminal), never into a log file."""
    import sys

    return sys.stderr.isatty()


def _why(manifest: dict[str, Any]) -> str:
    """`` (auto: ...)``-style note on why the variant scored, when ``auto`` chose it."""
    reason = str(manifest.get("variant_reason") or "")
    return f"; {reason}" if reason.startswith("auto") else ""


#: No-output reasons the summary names (most rows first); the rest are counted.
_REASONS_SHOWN = 3


def summary(manifest: dict[str, Any]) -> list[str]:
    """The run in two or three lines: counts, model and provider, throughput; resumed parts; the output."""
    resumed = int(manifest.get("parts_resumed") or 0)
    rows_now = manifest["rows_in"] - int(manifest.get("rows_resumed") or 0)
    lines = [
        f"scored {manifest['rows_in']:,} rows with {manifest['pipeline']} v{manifest['model_version']} "
        f"({manifest['variant']}{_why(manifest)}) on {manifest['provider']}: {manifest['rows_scored']:,} scored, "
        f"{manifest['rows_rejected']:,} rejected; {manifest['rows_per_second']:,.0f} rows/s "
        f"in {manifest['seconds']:.1f} s"]
    rows_out = manifest.get("rows_out", manifest["rows_scored"])
    if rows_out != manifest["rows_scored"] or manifest.get("rows_no_output"):
        # A grouping pipeline: many rows make one example (a user's history), some make none.
        listed = list((manifest.get("no_output_reasons") or {}).items())
        why = "; ".join(f"{reason}: {count:,}" for reason, count in listed[:_REASONS_SHOWN])
        more = int(manifest.get("no_output_reason_count") or len(listed)) - min(len(listed), _REASONS_SHOWN)
        if more > 0:
            shown = sum(count for _, count in listed[:_REASONS_SHOWN])
            why += (f"; and {more:,} more reason(s) for {int(manifest['rows_no_output']) - shown:,} rows, all in "
                    f"{manifest.get('no_output_file') or 'the manifest'}")
        lines.append(f"{rows_out:,} output rows (examples) from the {manifest['rows_scored']:,} scored rows"
                     + (f"; rows without output: {why}" if why else ""))
    if resumed:
        lines.append(f"resumed {resumed} of {len(manifest['parts'])} part files ({manifest['rows_resumed']:,} rows) "
                     f"from an interrupted run; {rows_now:,} rows scored in this run")
    lines.append(f"output: {manifest['output']} ({len(manifest['parts'])} part files"
                 f"{', rejects in _rejects.parquet' if manifest['rows_rejected'] else ''})")
    return lines


def register(app: typer.Typer) -> None:
    """Add ``verticals score`` to the CLI."""
    app.command("score", no_args_is_help=True)(score_command)
