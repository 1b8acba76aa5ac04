"""What each flow publishes to the Prefect UI: tables, links and summaries a user reads after a run.

Artifacts get keys (``verticals-score-finance-credit-risk``) so the UI's Artifacts page keeps one
history per pipeline and flow; the latest version is what a user sees first.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def key(flow: str, pipeline: str, what: str = "") -> str:
    """An artifact key: lowercase letters, digits and dashes only (Prefect's rule)."""
    raw = "-".join(p for p in ("verticals", flow, pipeline, what) if p)
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", raw.lower())).strip("-")


def _plain(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return dict(obj)
    return dict(vars(obj)) if hasattr(obj, "__dict__") else {"value": obj}


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def _uri(path: Path | str) -> str:
    return Path(path).absolute().as_uri()


def _short_source(part: Any, input: Path | None) -> str:
    """What a partition reads, relative to the run's input: ``batch.parquet rg 3``, ``2026-11/a.csv``."""
    source = Path(getattr(part, "source", str(part)))
    shown = source.name
    if input is not None:
        try:
            rel = source.relative_to(input)
            shown = str(rel) if str(rel) != "." else source.name
        except ValueError:
            pass
    if getattr(part, "kind", None) == "parquet" and getattr(part, "row_group", None) is not None:
        return f"{shown} rg {part.row_group}"
    files = getattr(part, "files", ())
    if files:
        return f"{shown} files {part.row_offset}-{part.row_offset + len(files) - 1}"
    return shown


SUMMARY_FIELDS = ("rows_in", "rows_scored", "rows_rejected", "device", "provider", "seconds", "rows_per_second")


def score_report(pipeline: str, output: Path, manifest: Mapping[str, Any], partitions: Sequence[Any],
                 results: Sequence[Any]) -> None:
    """Row accounting per partition and in total, and where the output is.

    The per-part table keeps to narrow cells (the part, what it read relative to the input, the row
    counts) so it fits the UI without scrolling; the summary is one value per line.
    """
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    source_root = Path(str(manifest["input"])) if manifest.get("input") else None
    if source_root is not None and source_root.is_file():
        source_root = source_root.parent
    rows = []
    for part, result in zip(partitions, results, strict=True):
        r = _plain(result)
        rows.append({
            "part": getattr(part, "name", str(part)),
            "reads": _short_source(part, source_root),
            "rows_in": _cell(r.get("rows_in")),
            "rows_scored": _cell(r.get("rows_scored")),
            "rows_rejected": _cell(r.get("rows_rejected")),
            "resumed": "yes" if r.get("reused", r.get("resumed", False)) else "no",
        })
    resumed = sum(1 for r in rows if r["resumed"] == "yes")
    rows.append({"part": "total", "reads": f"{len(partitions)} part(s)", "rows_in": manifest.get("rows_in"),
                 "rows_scored": manifest.get("rows_scored"), "rows_rejected": manifest.get("rows_rejected"),
                 "resumed": str(resumed)})
    create_table_artifact(rows, key=key("score", pipeline, "rows"),
                          description=f"Row accounting of {pipeline} scoring into {output} (input "
                                      f"{manifest.get('input', '')}): rows_in = rows_scored + rows_rejected "
                                      "on every line; 'resumed' parts were committed by an earlier, "
                                      "interrupted run.")
    summary = [f"# Scored {pipeline} v{manifest.get('model_version')}", "",
               "| | |", "|---|---|"]
    for field in SUMMARY_FIELDS:
        if field in manifest:
            summary.append(f"| {field} | {_cell(manifest[field])} |")
    summary.append(f"| parts | {len(partitions)} ({resumed} resumed from an earlier run) |")
    summary += ["", f"Input: `{manifest.get('input', '')}`", "", f"Output: `{output}`", "",
                f"Rejected rows with reasons: `{output / '_rejects.parquet'}`", "",
                f"Manifest (per-part details): `{output / '_manifest.json'}`"]
    create_markdown_artifact("\n".join(summary), key=key("score", pipeline, "summary"),
                             description=f"{pipeline} scoring summary")
    create_link_artifact(_uri(output), link_text=str(output), key=key("score", pipeline, "output"),
                         description=f"Output folder of the {pipeline} scoring run")


def train_report(pipeline: str, version: Any, metrics: Mapping[str, Mapping[str, Any]],
                 report: Path | None, parity: Mapping[str, Any] | None) -> None:
    """The metric table (split × metric), the parity check and where the model and report are."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    names = sorted({m for split in metrics.values() if isinstance(split, Mapping) for m in split})
    table = [{"split": split, **{m: _cell(values.get(m)) for m in names}}
             for split, values in metrics.items() if isinstance(values, Mapping)]
    create_table_artifact(table, key=key("train", pipeline, "metrics"),
                          description=f"{version.label}: metrics per split")
    lines = [f"# Trained {version.label}", "", f"Model folder: `{version.path}`"]
    if report is not None:
        lines += ["", f"Training report: `{report}`"]
    if parity:
        lines += ["", "ONNX parity (ONNX Runtime vs PyTorch): " + ", ".join(
            f"{k}={_cell(v)}" for k, v in parity.items() if not isinstance(v, (dict, list)))]
    create_markdown_artifact("\n".join(lines), key=key("train", pipeline, "summary"),
                             description=f"{version.label} training summary")
    if report is not None:
        create_link_artifact(_uri(report), link_text=str(report), key=key("train", pipeline, "report"),
                             description=f"Training report of {version.label}")


def drift_report(pipeline: str, model_label: str, rows: Sequence[Mapping[str, Any]], drifted: Sequence[str],
                 thresholds: Mapping[str, float], scores: Path, table_file: Path | None) -> None:
    """The drift table (PSI and status per feature and for the score) and the verdict."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact([{k: _cell(v) for k, v in row.items()} for row in rows],
                          key=key("monitor", pipeline, "drift"),
                          description=f"PSI of {scores} against the training reference of {model_label}")
    verdict = (f"**Drift** in {', '.join(drifted)} (PSI ≥ {thresholds.get('significant')})" if drifted
               else f"No significant drift (every PSI < {thresholds.get('significant')})")
    lines = [f"# Drift of {pipeline}: {'DRIFT' if drifted else 'stable'}", "", verdict, "",
             f"Scored batch: `{scores}`", "", f"Reference: training data of {model_label}", "",
             "Thresholds: PSI < {m} stable, {m} ≤ PSI < {s} moderate (investigate), PSI ≥ {s} "
             "significant (drift: retrain or review)".format(m=thresholds.get("moderate"),
                                                             s=thresholds.get("significant"))]
    if table_file is not None:
        lines += ["", f"Drift table: `{table_file}`"]
    create_markdown_artifact("\n".join(lines), key=key("monitor", pipeline, "summary"),
                             description=f"{pipeline} drift verdict")
