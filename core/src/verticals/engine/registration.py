"""Stage register: report, metrics.json and manifest written, the version registered."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import VerticalsError

if TYPE_CHECKING:  # pragma: no cover

    from verticals.data.splits import Splits
    from verticals.pipeline import Pipeline
    from verticals.store import ModelVersion

from verticals.engine.common import _git_commit, _json_ready, _lookup, _notify, _stage

if TYPE_CHECKING:  # pragma: no cover
    from verticals.engine.results import Evaluation, ExportResult, FitResult, ValidatedData


def _report_context(pipe: Pipeline, validated: ValidatedData, splits: Splits, fitted: FitResult,
                    evaluation: Evaluation, exported: ExportResult, created_at: str) -> Any:
    from verticals import __version__
    from verticals.report import ReportContext

    split_info = {}
    for name, frame in evaluation.predictions.items():
        info: dict[str, Any] = {"rows": frame.height}
        if pipe.task == "binary" and "_target" in frame.columns and frame.height:
            info["positive_rate"] = float((frame.get_column("_target") > 0.5).mean())  # binary: above 0.5 is positive
        split_info[name] = info
    test = evaluation.predictions.get("test")
    scores = None
    if test is not None and "_target" in test.columns and pipe.score_column in test.columns:
        scores = (test.get_column("_target").to_numpy(), test.get_column(pipe.score_column).to_numpy())
    return ReportContext(
        pipeline=pipe.qualified_name, description=pipe.description, task=pipe.task,
        primary_metric=pipe.primary_metric, greater_is_better=pipe.greater_is_better, created_at=created_at,
        metrics=evaluation.metrics, baselines=evaluation.baselines, history=fitted.history,
        best_epoch=fitted.best_epoch, parity=exported.parity, variants=exported.variants,
        data={"source": validated.source, "fingerprint": validated.fingerprint, "rows_in": validated.rows_in,
              "rows_valid": validated.frame.height, "rows_rejected": validated.rows_rejected,
              "rows_flagged": validated.rows_flagged, "reasons": [list(r) for r in validated.reasons],
              "splits": split_info,
              "preprocessor_reasons": [[split, reason, count] for split, found in
                                       evaluation.preprocessor_reasons.items() for reason, count in found]},
        run={"device": fitted.device, "epochs (max)": fitted.epochs, "epochs run": len(fitted.history),
             "kept epoch": fitted.best_epoch, "stopped early": fitted.stopped_early, "seed": fitted.seed,
             "training time": f"{fitted.seconds:.1f} s", "split strategy": splits.strategy,
             "verticals": __version__,
             **({"cross-fitting": (f"{fitted.crossfit.folds} folds of whole groups ({fitted.crossfit.groups} "
                                   f"'{fitted.crossfit.group_column}' groups, {fitted.crossfit.rows} examples; "
                                   f"out-of-fold {pipe.primary_metric} {fitted.crossfit.oof_metric:.4f}; the "
                                   "validation split's metrics are in-sample: the model trained on it)"
                                   if getattr(fitted.crossfit, "groups", 0) else
                                   f"{fitted.crossfit.folds} folds over {fitted.crossfit.rows} rows"),
                 "final model": fitted.crossfit.final_model} if fitted.crossfit is not None else {}),
             **({"final model": (f"average of {fitted.ensemble} models trained on the same split with seeds "
                                 f"{fitted.seed}–{fitted.seed + fitted.ensemble - 1}, each early-stopped on "
                                 "validation; the kept epoch is their median")}
                if fitted.ensemble > 1 else {})},
        test_scores=scores, class_names=_class_names(pipe), score_name=pipe.score_column)


def _class_names(pipe: Pipeline) -> tuple[str, str] | None:
    """A binary target's two classes as the data names them (``good``, ``bad``), for the report's plots."""
    if pipe.task != "binary":
        return None
    try:
        dataset = _lookup(pipe.qualified_name)[1]
    except VerticalsError:
        return None
    target = dataset.schema.target
    positive = dataset.target_positive
    if target is None or positive is None or not target.categories:
        return None
    negatives = [str(c) for c in target.categories if str(c) != str(positive)]
    return (f"{target.name} = {'/'.join(negatives)}", f"{target.name} = {positive}")


def register(pipeline: str, validated: ValidatedData, splits: Splits, fitted: FitResult,
             evaluation: Evaluation, exported: ExportResult, *, home: Path | str | None = None) -> ModelVersion:
    """Write the report, metrics.json and the manifest next to the model, then register the folder.

    The folder is ``exported.workdir`` (a :meth:`~verticals.store.ModelStore.staging` folder is moved
    into place; any other folder is copied). Fires ``after_register``.
    """
    with _stage(pipeline, "register"):
        import shutil

        from verticals import __version__
        from verticals import artifacts as named
        from verticals.drift import profile
        from verticals.manifest import ModelManifest
        from verticals.registry import get_registry
        from verticals.report import write_report
        from verticals.store import ModelStore

        pipe, dataset, spec = _lookup(pipeline)
        name = pipe.qualified_name
        workdir = Path(exported.workdir)
        created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        # Files the pipeline's report sections wrote elsewhere come along into the version folder.
        if Path(evaluation.workdir).resolve() != workdir.resolve() and Path(evaluation.workdir).is_dir():
            for section in evaluation.sections:
                fixed = []
                for image in section.images:
                    src = Path(image) if Path(image).is_absolute() else Path(evaluation.workdir) / image
                    if src.is_file():
                        dst = workdir / "figures" / src.name
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(src, dst)
                        fixed.append(f"figures/{src.name}")
                    else:
                        fixed.append(str(image))
                section.images = fixed
        source_artifacts = Path(evaluation.workdir) / "artifacts"
        if evaluation.artifacts and source_artifacts.resolve() != (workdir / "artifacts").resolve():
            shutil.copytree(source_artifacts, workdir / "artifacts", dirs_exist_ok=True)
        context = _report_context(pipe, validated, splits, fitted, evaluation, exported, created_at)
        report_path = write_report(workdir, context, evaluation.sections)

        train_pred = evaluation.predictions["train"]
        train_scores = train_pred.get_column(pipe.score_column).to_numpy() \
            if pipe.score_column in train_pred.columns and train_pred.schema[pipe.score_column].is_numeric() else None
        # Scalar scores get a PSI profile; list outputs (top-k items) their slot shares and coverage.
        declared = [c.name for c in pipe.output_columns if c.name in train_pred.columns]
        reference = profile(splits.train, dataset.schema, train_scores, outputs=train_pred.select(declared))
        info = get_registry().plugin_info(pipe.plugin)
        manifest = ModelManifest(
            created_at=created_at,
            plugin={"name": pipe.plugin, "distribution": info.distribution if info else None,
                    "version": info.version if info else None},
            code_version={"verticals": __version__, "git": _git_commit(Path(__file__).resolve().parent)},
            task=pipe.task,
            dataset=dataset.qualified_name,
            model=spec.qualified_name,
            score_column=pipe.score_column,
            primary_metric=pipe.primary_metric,
            greater_is_better=pipe.greater_is_better,
            output_columns=[{"name": c.name, "dtype": c.dtype, "description": c.description}
                            for c in pipe.output_columns],
            input_schema=dataset.schema.without_target().to_dict(),
            preprocessor=named.save_state(fitted.preprocessor_state, workdir),
            model_file=exported.model_file,
            signature=exported.signature,
            metrics=evaluation.metrics,
            parity=exported.parity,
            variants=exported.variants,
            training_data={"source": validated.source, "rows": validated.rows_in,
                           "rows_valid": validated.frame.height, "rows_rejected": validated.rows_rejected,
                           "fingerprint": validated.fingerprint, "splits": splits.sizes(),
                           "preprocessor_rejects": evaluation.preprocessor_rejects,
                           "preprocessor_reasons": {k: [list(r) for r in v]
                                                    for k, v in evaluation.preprocessor_reasons.items()},
                           "no_example": evaluation.skipped,
                           "split_strategy": splits.strategy, "seed": splits.seed},
            training={"epochs": fitted.epochs, "epochs_run": len(fitted.history),
                      "best_epoch": fitted.best_epoch, "stopped_early": fitted.stopped_early,
                      "seed": fitted.seed, "device": fitted.device, "seconds": round(fitted.seconds, 3),
                      "history": fitted.history, "model_options": fitted.model_options,
                      "crossfit": fitted.crossfit.summary() if fitted.crossfit is not None else None,
                      "ensemble": fitted.ensemble},
            reference=reference,
            extras=evaluation.extras,
            named_artifacts=evaluation.artifacts,
            report=report_path.name,
        )
        manifest = _json_ready(manifest.to_dict(), "manifest", name)
        version = ModelStore(home).register(name, workdir, manifest)
        _notify("after_register", pipeline=name, version=version.version, path=version.path,
                manifest=version.manifest)
        return version
