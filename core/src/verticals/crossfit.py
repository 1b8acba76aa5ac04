"""Small data done right: K-fold cross-fitting for early stopping and calibration.

On a small file the default split leaves a validation split of a hundred rows, a few dozen of them
positive, to choose the epoch and to calibrate on: both then depend more on which rows fell there than
on the data. Below :attr:`TrainingConfig.crossfit_below` training + validation rows (a pipeline
setting; the credit pipelines use 2,000), the engine instead

1. pools the training and validation splits (the test split stays untouched) and cuts the pool into
   ``crossfit_folds`` stratified folds (seeded);
2. for each fold, trains a fresh model on the other folds (in mini-batches of
   ``crossfit_batch_size`` when set, else ``batch_size``), early-stopping on that fold, and keeps the
   fold's best epoch and the model's outputs on it (out-of-fold outputs: every pooled row is predicted
   once, by a model that never saw it). With ``crossfit_repeats = R > 1`` this is done R times over
   different fold assignments (seeded), and a row's out-of-fold output is the mean of the R models
   that never saw it;
3. makes the final model, as :attr:`TrainingConfig.crossfit_final` says:

   * ``"refit"`` (the default): each fold model has its own preprocessor, fitted on its training
     folds; the final preprocessor and model are fitted on the whole pool for the median best epoch,
     without early stopping.
   * ``"bag"``: the final model is the **average of the K fold models**, R × K with repeats
     (:class:`verticals.ensemble.AveragedModel`: every output is the members' mean, one module, one
     exported graph). Averaging needs one input encoding, so a single preprocessor is fitted on the
     whole pool and every fold model trains on its transform. Its *unsupervised* statistics (medians,
     scaling, vocabularies, quantile knots) then also see each model's held-out fold, which makes the
     out-of-fold outputs very slightly optimistic; statistics of the *target* would leak the held-out
     labels themselves, so a preprocessor whose fitted state changes when the pool's target column is
     shuffled is refused (:class:`~verticals.errors.PluginError`: use ``"refit"``). The tabular
     preprocessor learns only the label set and the positive class from the target, which a shuffle
     does not change. No model is trained after the folds, so a single run (R = 1) costs less time
     than refitting.
     Use it where averaging the outputs is meaningful (logits; an additive model's contributions).

The out-of-fold outputs reach :meth:`Pipeline.fit_extras` as ``context.crossfit`` (a
:class:`CrossFit`), so calibration is fitted on every pooled row instead of the validation split: with
``"bag"`` on the outputs of the very models the final model averages. The validation split's metrics of
the final model are then in-sample and say so in the report.

Grouped and time-ordered data
-----------------------------
Row folds are wrong where examples belong to groups: a machine's windows (and the readings they are
built from), a patient's images or a user's sessions would land on both sides of a fold. Folds are cut
from whole groups (the dataset's ``role="group"`` column) when

* :attr:`TrainingConfig.crossfit_groups` is true: cross-fitting then runs on every training run,
  whatever its size (for a fleet whose validation period holds a few dozen failures), or
* cross-fitting applies through ``crossfit_below`` and the split strategy is grouped (``group``,
  ``group_time``, ``leave_last``).

What changes:

* **The pool** (:func:`pool_groups`) is every group's training and validation rows, each row once. The
  validation split carries its groups' earlier rows as context (:data:`~verticals.spec.CONTEXT`): those
  that are training examples become examples of the pool again; the rest (with ``group_time`` the gap
  between the training and the validation period) stay context, read as history and never an example.
  The test split, and with ``group_time`` the gap before it, contribute nothing: no pooled row comes
  from them, and no pooled example's label looks into the test period (the validation examples end
  ``gap`` before it).
* **Folds** (:func:`group_fold_labels`) are whole groups, stratified on whether a group has a positive
  example (binary: a machine that failed; multiclass: one of the rarest class), seeded; the sorted group
  names are permuted, so the folds do not depend on the rows' order. Fewer groups than folds is an
  error.
* Each fold model trains on the other folds' groups and early-stops on its held-out groups; its
  outputs on them are the out-of-fold outputs. Examples are matched to the pool by their ids
  (:attr:`Batch.ids <verticals.spec.Batch>`, which must then identify an example), so every pooled
  example has exactly one out-of-fold output per repeat; ``CrossFit.ids`` holds the pooled examples'
  ids in the order of ``outputs`` and ``target``, and ``CrossFit.fold`` each one's fold per repeat.
* Streamed preprocessors (windows, users) are fed as in ordinary training
  (:class:`~verticals.data.examples.Examples`), chunk by chunk, whole groups per chunk.

The one assumption grouped folds make: **groups are independent given time**. A fold model sees the
other machines over the whole pooled period, including the time of its held-out machines' validation
period; what one machine's readings say about another's at the same time (a shared supply, a
fleet-wide event) would make the out-of-fold outputs optimistic. The single validation split of
``group_time`` makes no such assumption, but it has only the last period's examples to choose on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from verticals.errors import PluginError
from verticals.spec import target_labels

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

    from verticals.data.splits import Splits
    from verticals.pipeline import Pipeline
    from verticals.spec import DatasetSpec, ModelSpec, Preprocessor, TrainingConfig
    from verticals.training import FitOutput

__all__ = ["FINALS", "GROUPED_STRATEGIES", "CrossFit", "applies", "averaged", "check_target_free", "fit_crossfitted",
           "fold_labels", "group_fold_labels", "grouped", "pool_groups", "repeat_seed"]

#: The values of :attr:`TrainingConfig.crossfit_final`.
FINALS = ("refit", "bag")
#: Split strategies whose examples belong to groups: cross-fitting over them cuts folds of whole groups.
GROUPED_STRATEGIES = ("group", "group_time", "leave_last")


@dataclass
class CrossFit:
    """What cross-fitting learned, for ``fit_extras`` and the report.

    Attributes:
        folds: number of folds.
        rows: pooled rows (training + validation split).
        best_epochs: each fold model's best epoch.
        epochs: the median of ``best_epochs``: the epochs the final model was trained for (``"refit"``).
        outputs: out-of-fold model outputs by name, one row per pooled row (training split rows first,
            then validation split rows, in their order in :class:`~verticals.data.splits.Splits`).
        target: the pooled rows' encoded target, in the same order.
        fold_metrics: each fold model's primary metric on its held-out fold.
        final: ``"refit"`` or ``"bag"`` (:attr:`TrainingConfig.crossfit_final`).
        repeats: how many times the K-fold procedure ran over different fold assignments
            (:attr:`TrainingConfig.crossfit_repeats`); ``best_epochs`` and ``fold_metrics`` have
            ``folds * repeats`` entries.
        repeat_outputs: with ``repeats > 1``, each run's own out-of-fold outputs (one model per row),
            in the order of ``outputs``; ``outputs`` is their mean. How much the runs disagree on a row
            tells how much averaging more models changes its output (calibrating an average).
        groups: with folds of whole groups, the number of pooled groups (0: row folds); ``rows`` then
            counts pooled *examples* (a window, an image), in the order of ``ids``.
        group_column: the column whose values are the groups ("" for row folds).
        ids: with group folds, the pooled examples' ids (``Batch.ids``), in the order of ``outputs``.
        fold: with group folds, each pooled example's fold, one column per repeat (``[rows, repeats]``).
        oof_metric: with group folds, the pipeline's primary metric over every pooled example's
            out-of-fold output (the figure to compare cross-fitted settings on; NaN where not computed).
    """

    folds: int
    rows: int
    best_epochs: list[int]
    epochs: int
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    target: np.ndarray | None = None
    fold_metrics: list[float] = field(default_factory=list)
    final: str = "refit"
    repeats: int = 1
    repeat_outputs: list[dict[str, np.ndarray]] = field(default_factory=list)
    groups: int = 0
    group_column: str = ""
    ids: pl.DataFrame | None = None
    fold: np.ndarray | None = None
    oof_metric: float = float("nan")

    @property
    def models(self) -> int:
        """Fold models trained: ``folds * repeats``."""
        return self.folds * self.repeats

    @property
    def final_model(self) -> str:
        """What the final model is, in words (manifest and report)."""
        runs = f"; {self.repeats} × {self.folds}-fold cross-fitting" if self.repeats > 1 else ""
        if self.groups:
            what = f"'{self.group_column}' group" if self.group_column else "group"
            if self.final == "bag":
                return (f"average of {self.models} fold models, each trained on the other folds' groups and "
                        f"early-stopped on its held-out groups ({self.folds} folds of whole {what}s over "
                        f"{self.groups} groups and {self.rows} pooled training and validation examples; one "
                        f"preprocessor fitted on the pool{runs})")
            return (f"one model trained on all {self.rows} pooled training and validation examples of "
                    f"{self.groups} groups for {self.epochs} epochs (the median best epoch of {self.models} "
                    f"fold models early-stopped on held-out {what}s)")
        if self.final == "bag":
            return (f"average of {self.models} fold models, each early-stopped on its held-out fold "
                    f"(one preprocessor fitted on the {self.rows} pooled rows{runs})")
        return (f"one model trained on all {self.rows} pooled rows for {self.epochs} epochs "
                "(the fold models' median best epoch)")

    def summary(self) -> dict[str, Any]:
        """JSON for the manifest and the report (no arrays)."""
        out = {"folds": self.folds, "rows": self.rows, "best_epochs": list(self.best_epochs),
               "epochs": self.epochs, "fold_metrics": [round(float(v), 6) for v in self.fold_metrics],
               "repeats": self.repeats, "final": self.final, "final_model": self.final_model}
        if self.groups:
            metric = float(self.oof_metric)
            out.update({"groups": self.groups, "group_column": self.group_column,
                        "oof_metric": None if metric != metric else round(metric, 6)})
        return out


def applies(config: TrainingConfig, splits: Splits) -> bool:
    """Whether cross-fitting replaces the single validation split for this training run: always with
    ``crossfit_groups``, else below ``crossfit_below`` training + validation rows."""
    if bool(getattr(config, "crossfit_groups", False)):
        return True
    below = int(getattr(config, "crossfit_below", 0) or 0)
    pooled = splits.train.height + splits.valid.height
    return below > 0 and pooled < below and int(getattr(config, "crossfit_folds", 5)) >= 2


def grouped(config: TrainingConfig, splits: Splits) -> bool:
    """Whether cross-fitting cuts folds of whole groups: ``crossfit_groups``, or a grouped split strategy."""
    return bool(getattr(config, "crossfit_groups", False)) or splits.strategy in GROUPED_STRATEGIES


def pool_groups(splits: Splits, group: str, order: str | None = None) -> pl.DataFrame:
    """The training and validation splits as one frame, each row once, sorted by ``group`` and ``order``.

    Rows that are examples of either split are examples of the pool; the validation split's other
    context rows (with ``group_time``: the gap between the two periods) stay context
    (:data:`~verticals.spec.CONTEXT` true). A row the validation split carries as context is matched to
    the training split's row by group, order and occurrence (both splits keep a group's rows in the
    same order). Nothing of the test split is read.
    """
    import polars as pl

    from verticals.spec import CONTEXT

    keys = [group] + ([order] if order and order in splits.train.columns and order in splits.valid.columns else [])

    def prepared(frame: pl.DataFrame) -> pl.DataFrame:
        context = pl.col(CONTEXT).fill_null(False) if CONTEXT in frame.columns else pl.lit(False)
        return frame.with_columns(context.alias(CONTEXT), pl.int_range(pl.len(), dtype=pl.Int64).over(keys)
                                  .alias("__occurrence"))

    train, valid = prepared(splits.train), prepared(splits.valid)
    matched = [*keys, "__occurrence"]
    in_train = train.select(matched).with_columns(pl.lit(True).alias("__in_train"))
    valid = valid.join(in_train, on=matched, how="left", maintain_order="left", nulls_equal=True).with_columns(
        (pl.col(CONTEXT) & ~pl.col("__in_train").fill_null(False)).alias(CONTEXT)).drop("__in_train")
    rest = train.join(valid.select(matched), on=matched, how="anti", maintain_order="left", nulls_equal=True)
    pool = pl.concat([valid, rest.select(valid.columns)], how="vertical_relaxed")
    return pool.sort([*keys, "__occurrence"], maintain_order=True).drop("__occurrence")


def group_fold_labels(groups: np.ndarray, marked: np.ndarray | None, folds: int, seed: int) -> np.ndarray:
    """A fold number per row such that every group's rows share one fold (seeded).

    Args:
        groups: each row's group (any values; compared as strings).
        marked: per row, whether it makes its group "positive" (holds the rarest target value); the
            positive and the other groups are each spread evenly over the folds. ``None``: no strata.
        folds: number of folds (at most the number of groups).
    """
    import numpy as np

    names, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    inverse = inverse.reshape(-1)
    positive = np.zeros(names.size, dtype=bool)
    if marked is not None:
        np.logical_or.at(positive, inverse, np.asarray(marked, dtype=bool))
    return fold_labels(positive.astype(np.int8) if marked is not None else None, names.size, folds, seed)[inverse]


def fold_labels(target: np.ndarray | None, n: int, folds: int, seed: int) -> np.ndarray:
    """A fold number per row, stratified on a binary/multiclass target (seeded), else random."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.empty(n, dtype=np.int64)
    groups = [np.arange(n)] if target is None else [np.flatnonzero(target == v) for v in np.unique(target)]
    start = 0
    for rows in groups:
        rows = rows[rng.permutation(rows.size)]
        labels[rows] = (np.arange(rows.size) + start) % folds
        start += rows.size  # continue the round-robin so small classes do not all land in fold 0
    return labels


def repeat_seed(seed: int, repeat: int) -> int:
    """The seed of repeat ``repeat`` (0-based) of K-fold cross-fitting: its fold assignment and, offset
    by fold, its models' training seeds. Repeat 0 uses ``seed`` itself."""
    return int(seed) + 7919 * int(repeat)


def _final_of(pipe: Pipeline) -> str:
    final = str(getattr(pipe.training, "crossfit_final", "refit"))
    if final not in FINALS:
        raise PluginError(
            f"pipeline '{pipe.qualified_name}': TrainingConfig.crossfit_final is {final!r}",
            hint=f"set it to one of {', '.join(repr(f) for f in FINALS)}",
        )
    return final


def _same_state(a: Any, b: Any) -> bool:
    """Whether two fitted states are equal, floats within a relative 1e-9 (a parallel reduction's sum
    may differ in its last bit from one call to the next)."""
    import math

    from verticals.artifacts import is_large

    if is_large(a) or is_large(b):  # a large state value (numpy array or polars DataFrame)
        if type(a) is not type(b):
            return False
        if hasattr(a, "equals"):
            return bool(a.equals(b))
        import numpy as np

        return a.dtype == b.dtype and a.shape == b.shape and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return False
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check_target_free(pipe: Pipeline, dataset: DatasetSpec, pool: pl.DataFrame, fitted: Preprocessor,
                      seed: int) -> None:
    """Refuse a shared preprocessor that learns from the target (it would leak held-out labels).

    Fits a second preprocessor on ``pool`` with its target column shuffled (seeded) and compares the
    fitted states: a state that depends on which row has which label (target encoding, supervised
    binning) differs; the label set and the positive class do not.

    Raises:
        PluginError: the states differ.
    """
    import polars as pl

    target = dataset.schema.target
    if target is None or target.name not in pool.columns or pool.height < 2:
        return
    probe = pipe.preprocessor(dataset)
    probe.fit(pool.with_columns(pl.col(target.name).shuffle(seed=seed)))
    if not _same_state(probe.state(), fitted.state()):
        raise PluginError(
            f"pipeline '{pipe.qualified_name}': crossfit_final='bag' shares one preprocessor across the fold "
            f"models, but {type(fitted).__name__}'s fitted state depends on the target '{target.name}' (it "
            "changes when the target is shuffled), so it would leak each fold's held-out labels",
            hint="set TrainingConfig(crossfit_final='refit'), or fit the preprocessor without the target",
        )


def _fold(pipe: Any, dataset: Any, pool: pl.DataFrame, held: np.ndarray, shared: Any | None,
          fit_frame: Any = None) -> tuple[pl.DataFrame, pl.DataFrame, Any]:
    """One fold of the pooled rows: ``(training rows, held-out rows, preprocessor)``. The preprocessor is
    ``shared`` when given (a bag of fold models shares one), else a new one fitted on the training rows
    (``fit_frame(pre, rows)`` picks the rows it is fitted on, e.g. without context rows)."""
    import polars as pl

    inner, outer = pool.filter(pl.Series(~held)), pool.filter(pl.Series(held))
    if shared is not None:
        return inner, outer, shared
    pre = pipe.preprocessor(dataset)
    pre.fit(inner if fit_frame is None else fit_frame(pre, inner))
    return inner, outer, pre


def _train_fold(pipe: Pipeline, dataset: DatasetSpec, spec: ModelSpec, pre: Preprocessor, train: Any, held: Any,
                *, seed: int, epochs: int, batch_size: int, device: str, progress: bool,
                model_spec: ModelSpec | None = None) -> tuple[FitOutput, Any]:
    """One fold model: built from ``pre``'s info (seeded), trained on ``train`` and early-stopped on the
    held-out ``held`` (batches or :class:`~verticals.data.examples.Examples`); ``(fit output, graph)``."""
    from verticals.training import cpu_threads, fit_model, seed_everything

    config = pipe.training
    info = dict(pre.info())
    seed_everything(seed)
    model = spec.factory(info, **dict(pipe.model_options(dataset, info)))
    graph = pre.graph_module()
    with cpu_threads(model, device):
        out = fit_model(pipe, model, graph, train, held, epochs=epochs, batch_size=batch_size,
                        lr=config.learning_rate, weight_decay=config.weight_decay, patience=config.patience,
                        seed=seed, device=device, class_weighting=config.class_weighting, progress=progress,
                        output_names=spec.outputs, model_spec=model_spec,
                        stop_on=str(getattr(config, "crossfit_stop_on", "metric")))
    return out, graph


def _bagged(pipe: Pipeline, dataset: DatasetSpec, shared: Preprocessor, members: list[FitOutput],
            epochs: int) -> tuple[Any, Any, FitOutput, dict[str, Any], dict[str, Any]]:
    """``crossfit_final = "bag"``: the fold models averaged into one module, with the shared
    preprocessor and its graph module; ``(preprocessor, graph, fit output, info, model options)``."""
    info = dict(shared.info())
    options = dict(pipe.model_options(dataset, info))
    out = averaged(members, best_epoch=epochs)
    graph = shared.graph_module()
    if graph is not None:
        graph.to("cpu").eval()
    return shared, graph, out, info, options


def averaged(members: list[FitOutput], best_epoch: int | None = None, count: str = "folds") -> FitOutput:
    """Several trained models of one architecture as one fit output: an
    :class:`~verticals.ensemble.AveragedModel` of them (CPU, eval mode), the mean history per epoch
    (with ``count``: how many models were still training), the summed wall time and, unless given, the
    members' median best epoch."""
    import statistics

    from verticals.ensemble import AveragedModel
    from verticals.training import FitOutput

    ensemble = AveragedModel([m.model.to("cpu").eval() for m in members]).eval()
    best = int(statistics.median_low([m.best_epoch for m in members])) if best_epoch is None else int(best_epoch)
    return FitOutput(model=ensemble, history=_mean_history([m.history for m in members], count), best_epoch=best,
                     seconds=sum(m.seconds for m in members), device=members[0].device,
                     stopped_early=any(m.stopped_early for m in members))


def _mean_history(histories: list[list[dict[str, float]]], count: str = "folds") -> list[dict[str, float]]:
    """One row per epoch: the mean of each value over the fold models still training at that epoch."""
    rows: list[dict[str, float]] = []
    for e in range(max((len(h) for h in histories), default=0)):
        live = [h[e] for h in histories if len(h) > e]
        keys = [k for k in live[0] if k != "epoch" and all(k in r for r in live)]
        row: dict[str, float] = {"epoch": float(e + 1)}
        row.update({k: sum(float(r[k]) for r in live) / len(live) for k in keys})
        row[count] = float(len(live))
        rows.append(row)
    return rows


def fit_crossfitted(pipe: Pipeline, dataset: DatasetSpec, spec: ModelSpec, splits: Splits, *, epochs: int,
                    seed: int, device: str, progress: bool = True) -> tuple[Any, Any, Any, dict[str, Any],
                                                                             dict[str, Any], CrossFit]:
    """Run the procedure of the module docstring.

    Returns:
        ``(preprocessor, graph_module, fit_output, info, model_options, crossfit)`` of the final model;
        with ``"bag"``, ``fit_output.model`` is an :class:`~verticals.ensemble.AveragedModel` and its
        history the fold models' mean per epoch.
    """
    import numpy as np
    import polars as pl

    from verticals.training import (
        cpu_threads,
        evaluate_split,
        fit_model,
        predict_outputs,
        seed_everything,
    )

    config = pipe.training
    final = _final_of(pipe)
    folds = int(getattr(config, "crossfit_folds", 5))
    repeats = int(getattr(config, "crossfit_repeats", 1))
    if repeats < 1:
        raise PluginError(f"pipeline '{pipe.qualified_name}': TrainingConfig.crossfit_repeats is {repeats}",
                          hint="set it to 1 (one K-fold run) or more")
    batch_size = int(getattr(config, "crossfit_batch_size", 0) or 0) or config.batch_size
    if grouped(config, splits):
        return _fit_grouped(pipe, dataset, spec, splits, epochs=epochs, seed=seed, device=device, progress=progress,
                            final=final, folds=folds, repeats=repeats)
    pool = pl.concat([splits.train, splits.valid], how="vertical_relaxed")
    shared = pipe.preprocessor(dataset)
    shared.fit(pool)
    if final == "bag":
        check_target_free(pipe, dataset, pool, shared, seed)
    pool_target = shared.transform(pool, with_target=True).target
    stratify = target_labels(pool_target) if pipe.task in ("binary", "multiclass") else None
    members: list[FitOutput] = []
    best_epochs: list[int] = []
    fold_metrics: list[float] = []
    oof: dict[str, np.ndarray] = {}
    runs: list[dict[str, np.ndarray]] = []
    for r in range(repeats):
        run: dict[str, np.ndarray] = {}
        runs.append(run)
        labels = fold_labels(None if stratify is None else np.asarray(stratify), pool.height, folds, repeat_seed(seed, r))
        for k in range(folds):
            run_seed = repeat_seed(seed, r) + k + 1
            held = labels == k
            inner, outer, pre = _fold(pipe, dataset, pool, held, shared if final == "bag" else None)
            train_batch, valid_batch = pre.transform(inner, with_target=True), pre.transform(outer, with_target=True)
            out, graph = _train_fold(pipe, dataset, spec, pre, train_batch, valid_batch, seed=run_seed,
                                     epochs=epochs, batch_size=batch_size, device=device, progress=progress)
            members.append(out)
            best_epochs.append(int(out.best_epoch))
            if graph is not None:
                graph.to("cpu").eval()
            outputs = predict_outputs(out.model, graph, valid_batch, device="cpu", batch_size=65536,
                                      names=spec.outputs)
            _, metrics = evaluate_split(pipe, outputs, valid_batch, {})
            fold_metrics.append(float(metrics.get(pipe.primary_metric, float("nan"))))
            for name, values in outputs.items():
                values = np.asarray(values)
                if name not in oof:
                    dtype = values.dtype if repeats == 1 else np.float64
                    oof[name] = np.zeros((pool.height, *values.shape[1:]), dtype=dtype)
                if repeats == 1:
                    oof[name][np.flatnonzero(held)] = values
                else:
                    oof[name][np.flatnonzero(held)] += values / repeats
                    if name not in run:
                        run[name] = np.zeros((pool.height, *values.shape[1:]), dtype=values.dtype)
                    run[name][np.flatnonzero(held)] = values
    final_epochs = max(1, round(float(np.median(best_epochs))))
    record = CrossFit(folds=folds, rows=pool.height, best_epochs=best_epochs, epochs=final_epochs, outputs=oof,
                      target=np.asarray(pool_target), fold_metrics=fold_metrics, final=final, repeats=repeats,
                      repeat_outputs=runs if repeats > 1 else [])
    if final == "bag":
        return (*_bagged(pipe, dataset, shared, members, final_epochs), record)
    pre = shared  # fitted on the whole pool above
    batch = pre.transform(pool, with_target=True)
    empty = pre.transform(pool.clear(), with_target=True)  # no validation rows: no early stopping
    info = dict(pre.info())
    options = dict(pipe.model_options(dataset, info))
    seed_everything(seed)
    model = spec.factory(info, **options)
    graph = pre.graph_module()
    with cpu_threads(model, device):
        out = fit_model(pipe, model, graph, batch, empty, epochs=final_epochs, batch_size=config.batch_size,
                        lr=config.learning_rate, weight_decay=config.weight_decay, patience=0, seed=seed,
                        device=device, class_weighting=config.class_weighting, progress=progress,
                        output_names=spec.outputs)
    return pre, graph, out, info, options, record


def _group_column(pipe: Pipeline, dataset: DatasetSpec, splits: Splits) -> str:
    group = dataset.schema.group
    if group is None:
        raise PluginError(
            f"pipeline '{pipe.qualified_name}': cross-fitting over groups needs a group column, but dataset "
            f"'{dataset.qualified_name}' has no column with role='group'",
            hint="mark the machine/patient/user column role='group', or set TrainingConfig(crossfit_groups=False)")
    for name, frame in (("training", splits.train), ("validation", splits.valid)):
        if group not in frame.columns:
            raise PluginError(f"pipeline '{pipe.qualified_name}': the {name} split lacks group column '{group}'",
                              hint=f"keep '{group}' in the frames that Pipeline.split returns")
    return group


def _example_positions(pool_ids: pl.DataFrame, ids: pl.DataFrame, what: str, pipe: Pipeline) -> np.ndarray:
    """Each example of ``ids`` as its row number in ``pool_ids`` (the pooled examples)."""
    import polars as pl

    keys = list(pool_ids.columns)
    indexed = pool_ids.with_row_index("__pooled")
    found = ids.select(keys).join(indexed, on=keys, how="left", maintain_order="left", nulls_equal=True)
    positions = found.get_column("__pooled")
    if found.height != ids.height or positions.null_count():
        raise PluginError(
            f"pipeline '{pipe.qualified_name}': {what} produced {positions.null_count() or found.height - ids.height} "
            "example(s) whose ids are not ids of the pooled examples",
            hint="the preprocessor must make the same examples of a group whatever else is in the frame")
    return positions.cast(pl.Int64).to_numpy()


def _fit_grouped(pipe: Pipeline, dataset: DatasetSpec, spec: ModelSpec, splits: Splits, *, epochs: int, seed: int,
                 device: str, progress: bool, final: str, folds: int, repeats: int
                 ) -> tuple[Any, Any, Any, dict[str, Any], dict[str, Any], CrossFit]:
    """Cross-fitting over folds of whole groups (module docstring, "Grouped and time-ordered data")."""
    import numpy as np
    import polars as pl

    from verticals.data.examples import Examples, drop_context
    from verticals.spec import Batch
    from verticals.training import (
        cpu_threads,
        evaluate_split,
        fit_model,
        predict_examples,
        seed_everything,
        split_metrics,
    )

    config = pipe.training
    fold_batch = int(getattr(config, "crossfit_batch_size", 0) or 0) or config.batch_size
    if folds < 2:
        raise PluginError(f"pipeline '{pipe.qualified_name}': TrainingConfig.crossfit_folds is {folds}",
                          hint="cross-fitting over groups needs at least 2 folds (3-5 is usual)")
    group = _group_column(pipe, dataset, splits)
    shared = pipe.preprocessor(dataset)
    order = shared.order_by if shared.order_by else dataset.schema.time
    pool = pool_groups(splits, group, order)
    row_groups = pool.get_column(group).cast(pl.String).to_numpy().astype(str)
    n_groups = int(np.unique(row_groups).size)
    if n_groups < folds:
        raise PluginError(
            f"pipeline '{pipe.qualified_name}': the training and validation splits hold {n_groups} group(s) of "
            f"'{group}', fewer than crossfit_folds={folds}",
            hint=(f"set TrainingConfig(crossfit_folds={min(n_groups, 5)}) or lower, or train on more groups"
                  if n_groups >= 2 else "train on data with more groups, or set TrainingConfig(crossfit_groups=False)"))

    def fit_frame(pre: Any, frame: pl.DataFrame) -> pl.DataFrame:
        return drop_context(frame) if pre.rowwise else frame

    shared.fit(fit_frame(shared, pool))
    if final == "bag":
        check_target_free(pipe, dataset, fit_frame(shared, pool), shared, seed)
    chunk = shared.chunk_rows or config.batch_size
    lights = [b.light() for b in Examples(shared, pool, name="pooled", chunk_rows=chunk).batches(65536) if len(b)]
    pooled = Batch.concat(lights) if lights else None
    if pooled is None or pooled.target is None:
        raise PluginError(f"pipeline '{pipe.qualified_name}': the pooled training and validation splits make no "
                          "example with a target", hint="train on more data")
    pool_ids = pooled.ids
    if pool_ids.width == 0 or pool_ids.is_duplicated().any():
        raise PluginError(
            f"pipeline '{pipe.qualified_name}': cross-fitting over groups matches examples by their ids, but the "
            f"preprocessor's ids ({', '.join(pool_ids.columns) or 'none'}) repeat across pooled examples",
            hint="return Batch.ids that identify one example (e.g. the group and time columns)")
    target = np.asarray(pooled.target)
    # Folds are drawn over the groups of the pooled rows (a group too short to make an example still
    # goes to one fold), stratified on whether the group has a positive example (binary) or one of the
    # rarest class (multiclass), where the ids name the group.
    row_marked = None
    if pipe.task in ("binary", "multiclass") and group in pool_ids.columns and len(target):
        flat = target_labels(target).astype(np.float64)
        if pipe.task == "binary":
            marked = flat > 0.5
        else:
            values, counts = np.unique(flat, return_counts=True)
            marked = flat == values[int(np.argmin(counts))]
        example_groups = pool_ids.get_column(group).cast(pl.String).to_numpy().astype(str)
        row_marked = np.isin(row_groups, np.unique(example_groups[marked]))
    members: list[FitOutput] = []
    best_epochs: list[int] = []
    fold_metrics: list[float] = []
    oof: dict[str, np.ndarray] = {}
    fold_of = np.full((len(pool_ids), repeats), -1, dtype=np.int64)
    for r in range(repeats):
        labels = group_fold_labels(row_groups, row_marked, folds, repeat_seed(seed, r))
        for k in range(folds):
            run_seed = repeat_seed(seed, r) + k + 1
            inner, outer, pre = _fold(pipe, dataset, pool, labels == k, shared if final == "bag" else None,
                                      fit_frame)
            train_ex = Examples(pre, inner, name=f"fold {k + 1} training", chunk_rows=chunk)
            held_ex = Examples(pre, outer, name=f"fold {k + 1} held-out", chunk_rows=chunk)
            out, graph = _train_fold(pipe, dataset, spec, pre, train_ex, held_ex, seed=run_seed, epochs=epochs,
                                     batch_size=fold_batch, device=device, progress=progress, model_spec=spec)
            members.append(out)
            best_epochs.append(int(out.best_epoch))
            trained = out.model.to("cpu").eval()
            if graph is not None:
                graph.to("cpu").eval()
            scorer = spec.scoring(trained).eval() if spec.scoring is not None else trained
            predicted = predict_examples(pipe, scorer, graph, held_ex, device="cpu", batch_size=65536,
                                         names=spec.exported_outputs)
            fold_metrics.append(float(split_metrics(pipe, predicted.predictions, predicted.batch)
                                      .get(pipe.primary_metric, float("nan"))))
            at = _example_positions(pool_ids, predicted.batch.ids, f"fold {k + 1}'s held-out groups", pipe)
            if np.any(fold_of[at, r] >= 0):
                raise PluginError(f"pipeline '{pipe.qualified_name}': a pooled example was held out twice in "
                                  "one repeat of grouped cross-fitting",
                                  hint="make Batch.ids identify one example")
            fold_of[at, r] = k
            for name, values in predicted.outputs.items():
                values = np.asarray(values)
                if name not in oof:
                    dtype = values.dtype if repeats == 1 else np.float64
                    oof[name] = np.zeros((len(pool_ids), *values.shape[1:]), dtype=dtype)
                if repeats == 1:
                    oof[name][at] = values
                else:
                    oof[name][at] += values / repeats
        missing = int((fold_of[:, r] < 0).sum())
        if missing:
            raise PluginError(f"pipeline '{pipe.qualified_name}': {missing} pooled example(s) got no out-of-fold "
                              f"output in repeat {r + 1} of grouped cross-fitting",
                              hint="the preprocessor must make the same examples of a group whatever else is in "
                                   "the frame")
    final_epochs = max(1, round(float(np.median(best_epochs))))
    _, pooled_metrics = evaluate_split(pipe, oof, pooled, {})
    record = CrossFit(folds=folds, rows=len(pool_ids), best_epochs=best_epochs, epochs=final_epochs, outputs=oof,
                      target=target, fold_metrics=fold_metrics, final=final, repeats=repeats, groups=n_groups,
                      group_column=group, ids=pool_ids, fold=fold_of,
                      oof_metric=float(pooled_metrics.get(pipe.primary_metric, float("nan"))))
    if final == "bag":
        return (*_bagged(pipe, dataset, shared, members, final_epochs), record)
    pre = shared  # fitted on the whole pool above
    info = dict(pre.info())
    options = dict(pipe.model_options(dataset, info))
    seed_everything(seed)
    model = spec.factory(info, **options)
    graph = pre.graph_module()
    with cpu_threads(model, device):
        out = fit_model(pipe, model, graph, Examples(pre, pool, name="pooled", chunk_rows=chunk),
                        Examples(pre, pool.clear(), name="none", chunk_rows=chunk), epochs=final_epochs,
                        batch_size=config.batch_size, lr=config.learning_rate, weight_decay=config.weight_decay,
                        patience=0, seed=seed, device=device, class_weighting=config.class_weighting,
                        progress=progress, output_names=spec.outputs, model_spec=spec)
    return pre, graph, out, info, options, record
