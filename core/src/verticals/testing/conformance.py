"""One conformance suite for any registered pipeline: train → export → parity → register → score.

A plugin author calls :func:`check_pipeline` from a test (the ``verticals new-plugin`` scaffold does)::

    def test_conformance(verticals_home):
        check_pipeline("telco.churn", epochs=1)

It runs the real engine on the pipeline's own dataset (or ``data``) and asserts what every pipeline
owes its users; each failed check raises :class:`ConformanceError` naming the check and the fix.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verticals.errors import VerticalsError

MANIFEST_KEYS = ("pipeline", "version", "input_schema", "preprocessor", "signature", "metrics", "parity",
                 "training_data", "artifacts", "plugin", "code_version", "created_at")


class ConformanceError(VerticalsError):
    """A pipeline does not meet the contract."""


@dataclass
class ConformanceReport:
    """What :func:`check_pipeline` verified, with the figures it saw."""

    pipeline: str
    version: int
    metrics: dict[str, Any]
    parity: dict[str, Any]
    rows_in: int
    rows_scored: int
    rows_rejected: int
    checks: list[str] = field(default_factory=list)


def _require(ok: bool, check: str, problem: str, fix: str, report: ConformanceReport | None = None) -> None:
    if not ok:
        raise ConformanceError(f"conformance check '{check}' failed: {problem}", hint=fix)
    if report is not None:
        report.checks.append(check)


def check_pipeline(pipeline: str, *, data: Path | str | None = None, epochs: int = 1, seed: int = 0,
                   home: Path | str | None = None, sample_rows: int = 500) -> ConformanceReport:
    """Train, register and score ``pipeline`` once, checking the contract at each step.

    Args:
        pipeline: registered pipeline name.
        data: optional training file; default the pipeline's dataset.
        epochs: training epochs (1 is enough to check the plumbing).
        seed: training seed.
        home: model store root (default ``$VERTICALS_HOME``; tests should point it at a temp folder).
        sample_rows: rows of the training data scored back through ``verticals.scoring.score``.
    """
    import polars as pl

    from verticals import engine
    from verticals.registry import get_registry
    from verticals.scoring import score
    from verticals.store import ModelStore

    registry = get_registry()
    pipe = registry.pipeline(pipeline)
    dataset = registry.dataset_of(pipe)
    name = pipe.qualified_name

    result = engine.train(name, data=data, epochs=epochs, seed=seed, home=home, progress=False, variants=())
    report = ConformanceReport(pipeline=name, version=result.version, metrics=result.metrics,
                               parity=result.manifest.get("parity", {}), rows_in=0, rows_scored=0,
                               rows_rejected=0)
    manifest = result.manifest
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    _require(not missing, "manifest", f"manifest of {name} v{result.version} lacks {missing}",
             "register through verticals.engine", report)
    _require(bool(report.parity.get("passed")), "parity",
             f"ONNX differs from PyTorch by {report.parity.get('max_abs_diff')}",
             "make the model exportable (see docs/plugins.md, export pitfalls)", report)
    test_metrics = result.metrics.get("test", {})
    _require(pipe.primary_metric in test_metrics, "metrics",
             f"test metrics {sorted(test_metrics)} lack the primary metric '{pipe.primary_metric}'",
             "return it from Pipeline.metrics", report)
    version = ModelStore(home).load(name, result.version)  # verifies sha256 of every artifact
    report.checks.append("integrity")

    # Score a sample of the training data back, without its target.
    frame = engine.load_data(name, data).frame
    target = dataset.schema.target
    sample = frame.head(sample_rows)
    if target is not None and target.name in sample.columns:
        sample = sample.drop(target.name)
    with tempfile.TemporaryDirectory(prefix="verticals-conformance-") as tmp:
        source = Path(tmp) / "input.parquet"
        sample.write_parquet(source)
        outputs = []
        for attempt in ("first", "second"):
            out = Path(tmp) / f"scores-{attempt}"
            manifest_out = score(name, source, out, model=str(result.version), device="cpu", home=home,
                                 progress=False)
            outputs.append((out, manifest_out))
        out, scored = outputs[0]
        report.rows_in, report.rows_scored = scored["rows_in"], scored["rows_scored"]
        report.rows_rejected = scored["rows_rejected"]
        _require(scored["rows_in"] == scored["rows_scored"] + scored["rows_rejected"], "row accounting",
                 f"rows_in {scored['rows_in']} != scored {scored['rows_scored']} + rejected "
                 f"{scored['rows_rejected']}", "report a bug in verticals", report)
        _require(scored["rows_in"] == sample.height, "rows in", f"scored {scored['rows_in']} of "
                 f"{sample.height} rows", "report a bug in verticals", report)
        parts = sorted(out.glob("part-*.parquet"))
        table = pl.concat([pl.read_parquet(p) for p in parts]) if parts else pl.DataFrame()
        # A grouping pipeline's examples (a user, a machine window) are named by their group when the
        # schema has no id column; its output has one row per example, not per input row.
        ids = dataset.schema.ids or ([dataset.schema.group] if dataset.schema.group else [])
        wanted = [*ids, *(c.name for c in pipe.output_columns), "model_version"]
        absent = [c for c in wanted if c not in table.columns]
        _require(not absent, "output columns", f"scoring output lacks {absent}",
                 "postprocess must return every declared output column", report)
        rows_out = scored.get("rows_out", scored["rows_scored"])
        _require(table.height == rows_out, "output rows",
                 f"{table.height} rows in parts, manifest says {rows_out}",
                 "report a bug in verticals", report)
        again = pl.concat([pl.read_parquet(p) for p in sorted(outputs[1][0].glob("part-*.parquet"))]) \
            if parts else pl.DataFrame()
        same = table.sort(ids).select(wanted).equals(again.sort(ids).select(wanted)) if parts else True
        _require(same, "deterministic scoring", "scoring the same input twice gave different outputs",
                 "postprocess must not depend on randomness or global state", report)
    del version
    return report
