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


def side_output_columns(table: Any, scored: dict[str, Any], names: list[str]) -> list[str]:
    """The output columns among ``names`` that refer to side outputs: string columns whose every value
    (nulls aside) is a path inside one of the side-output folders the scoring manifest records."""
    import polars as pl

    folders = {p["side_outputs"] for p in scored.get("parts", []) if p.get("side_outputs")}
    found = []
    for name in names:
        if name not in table.columns or table.schema[name] != pl.String:
            continue
        values = table.get_column(name).drop_nulls()
        if values.len() and folders and all(v.split("/", 1)[0] in folders and "/" in v for v in values):
            found.append(name)
    return found


def _check_side_outputs(out: Path, table: Any, columns: list[str], scored: dict[str, Any],
                        report: ConformanceReport) -> None:
    """Every referenced side output exists inside the output folder, in the folder of its own part, and
    the side-output folders hold nothing else (they are committed with their part, whole)."""
    import polars as pl

    referenced: set[Path] = set()
    root = out.resolve()
    for name in columns:
        values = table.select(pl.col(name), pl.col("_part")).drop_nulls(name)
        for value, part in values.iter_rows():
            file = (out / value).resolve()
            _require(file.is_relative_to(root) and file.is_file(), "side outputs",
                     f"output column '{name}' refers to {value}, which is not a file in the output folder",
                     "write side outputs through extras.side_output(name) and return the relative path it gives")
            _require(value.split("/", 1)[0] == part, "side outputs",
                     f"output column '{name}' of {part} refers to {value}, a file of another part",
                     "return the relative path extras.side_output gives while scoring this batch")
            referenced.add(file)
    folders = {p["side_outputs"] for p in scored.get("parts", []) if p.get("side_outputs")}
    extra = sorted(str(f.relative_to(root)) for d in folders for f in (out / d).resolve().rglob("*")
                   if f.is_file() and f not in referenced)
    _require(not extra, "side outputs", f"{len(extra)} side-output file(s) no output row refers to, e.g. {extra[:3]}",
             "return the relative path of every side output written, in the row it belongs to", report)


def _hash_side_outputs(out: Path, table: Any, columns: list[str]) -> Any:
    """``table`` with side-output paths replaced by the sha256 of the files' bytes (part names differ
    between layouts; the content must not)."""
    import polars as pl

    from verticals.fsutil import sha256_file

    return table.with_columns(
        pl.col(c).map_elements(lambda v: sha256_file(out / v).hexdigest(), return_dtype=pl.String)
        for c in columns)


def _link_files(paths: list[str], folder: Path) -> dict[str, str]:
    """A folder holding ``paths`` (symbolic links, or copies where links are refused): file name there →
    original path."""
    import os
    import shutil

    folder.mkdir(parents=True)
    mapping = {}
    for i, original in enumerate(paths):
        target = folder / f"{i:06d}-{Path(original).name}"
        try:
            os.symlink(os.path.abspath(original), target)
        except OSError:
            shutil.copyfile(original, target)
        mapping[target.name] = original
    return mapping


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

    # Score a sample of the training data back, without its target: whole groups for a grouping
    # pipeline (a user's history, a machine's readings), the first rows otherwise.
    frame = engine.load_data(name, data).frame
    target = dataset.schema.target
    pre = pipe.preprocessor(dataset)
    group = pre.group_by if not pre.rowwise else None
    if group is not None and group in frame.columns:
        sizes = frame.group_by(group, maintain_order=True).len()
        keep = sizes.filter(sizes["len"].cum_sum() <= max(sample_rows, int(sizes["len"][0])))[group]
        sample = frame.filter(pl.col(group).is_in(keep.implode()))
    else:
        sample = frame.head(sample_rows)
    if target is not None and target.name in sample.columns:
        sample = sample.drop(target.name)
    with tempfile.TemporaryDirectory(prefix="verticals-conformance-") as tmp:
        source = Path(tmp) / "input.parquet"
        sample.write_parquet(source)
        # The same rows shuffled and cut into many row groups must score exactly alike.
        scattered = Path(tmp) / "scattered.parquet"
        sample.sample(fraction=1.0, shuffle=True, seed=seed).write_parquet(
            scattered, row_group_size=max(1, sample.height // 7))
        outputs = []
        for attempt, src in (("first", source), ("second", source), ("scattered", scattered)):
            out = Path(tmp) / f"scores-{attempt}"
            manifest_out = score(name, src, out, model=str(result.version), device="cpu", home=home,
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
        def read(folder: Path) -> pl.DataFrame:
            found = sorted(folder.glob("part-*.parquet"))
            return pl.concat([pl.read_parquet(p).with_columns(pl.lit(p.stem).alias("_part")) for p in found]) \
                if found else pl.DataFrame()

        parts = sorted(out.glob("part-*.parquet"))
        table = read(out)
        wanted = [*(c.name for c in pipe.output_columns), "model_version"]
        absent = [c for c in wanted if c not in table.columns]
        _require(not absent, "output columns", f"scoring output lacks {absent}",
                 "postprocess must return every declared output column", report)
        _require(table.height == scored.get("rows_out", scored["rows_scored"]), "output rows",
                 f"{table.height} rows in parts, manifest says {scored.get('rows_out')}",
                 "report a bug in verticals", report)
        if pre.rowwise:
            _require(table.height == scored["rows_scored"], "one output per row",
                     f"{table.height} output rows for {scored['rows_scored']} scored rows of a row-wise pipeline",
                     "a row-wise preprocessor must make one example per valid row (or reject it)", report)
        ids = [c for c in table.columns if c not in {*wanted, "flags", "_part"}] if parts else []
        side = side_output_columns(table, scored, wanted) if parts else []
        if side:
            _check_side_outputs(out, table, side, scored, report)

        def comparable(t: pl.DataFrame, folder: Path) -> pl.DataFrame:
            keys = [c for c in ids if c != "_source"]  # _source names the file, which differs on purpose
            t = _hash_side_outputs(folder, t, side) if side else t
            return t.select(keys + wanted).sort(keys) if keys else t.select(wanted)

        again, shuffled = read(outputs[1][0]), read(outputs[2][0])
        same = comparable(table, out).equals(comparable(again, outputs[1][0])) if parts else True
        _require(same, "deterministic scoring", "scoring the same input twice gave different outputs",
                 "postprocess must not depend on randomness or global state", report)
        if parts and ("_row" not in ids):  # row numbers differ when the rows are shuffled
            _require(comparable(table, out).equals(comparable(shuffled, outputs[2][0])), "layout-independent scoring",
                     "the same rows shuffled and cut into many row groups scored differently",
                     "a grouping preprocessor must take its order from order_by, and carry context rows", report)
        paths = [c.name for c in dataset.schema if c.dtype == "path" and c.name in sample.columns]
        if dataset.kind == "files" and paths and parts:
            _check_folder_input(name, result.version, home, sample, paths[0], table, comparable, out, tmp,
                                report)
    del version
    return report


def _check_folder_input(name: str, version: int, home: Any, sample: Any, path: str, table: Any,
                        comparable: Any, out: Path, tmp: str, report: ConformanceReport) -> None:
    """A files dataset: the sample's files put in a folder score as the listing of them did (the input
    users of an image pipeline pass: ``verticals score PIPELINE --input FOLDER``)."""
    import polars as pl

    from verticals.scoring import score

    if sample.select(pl.col(path).is_duplicated().any()).item() or sample[path].null_count():
        return  # a folder cannot hold one file twice; nothing to compare
    mapping = _link_files(sample.get_column(path).to_list(), Path(tmp) / "folder-input")
    folder_out = Path(tmp) / "scores-folder"
    scored = score(name, Path(tmp) / "folder-input", folder_out, model=str(version), device="cpu", home=home,
                   progress=False)
    _require(scored["rows_in"] == sample.height, "folder input",
             f"a folder of the {sample.height} sampled files scored {scored['rows_in']} rows",
             "report a bug in verticals", report)
    found = sorted(folder_out.glob("part-*.parquet"))
    folder_table = pl.concat([pl.read_parquet(p).with_columns(pl.lit(p.stem).alias("_part")) for p in found]) \
        if found else pl.DataFrame()
    if path not in table.columns or path not in folder_table.columns:
        return  # outputs keyed by row number only: counts checked above
    folder_table = folder_table.with_columns(
        pl.col(path).map_elements(lambda p: mapping.get(Path(p).name), return_dtype=pl.String))
    same = comparable(table, out).equals(comparable(folder_table, folder_out))
    _require(same and scored["rows_rejected"] == report.rows_rejected, "folder input",
             "the sampled files scored differently as a folder than as a listing of their paths",
             "decode files from their path only (no state carried between rows or batches)", report)
