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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from verticals.errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

    from verticals.data.splits import Splits
    from verticals.pipeline import Pipeline
    from verticals.spec import DatasetSpec, ModelSpec, Preprocessor, TrainingConfig
    from verticals.training import FitOutput

__all__ = ["FINALS", "CrossFit", "applies", "check_target_free", "fit_crossfitted", "fold_labels", "repeat_seed"]

#: The values of :attr:`TrainingConfig.crossfit_final`.
FINALS = ("refit", "bag")


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

    @property
    def models(self) -> int:
        """Fold models trained: ``folds * repeats``."""
        return self.folds * self.repeats

    @property
    def final_model(self) -> str:
        """What the final model is, in words (manifest and report)."""
        if self.final == "bag":
            runs = f"; {self.repeats} × {self.folds}-fold cross-fitting" if self.repeats > 1 else ""
            return (f"average of {self.models} fold models, each early-stopped on its held-out fold "
                    f"(one preprocessor fitted on the {self.rows} pooled rows{runs})")
        return (f"one model trained on all {self.rows} pooled rows for {self.epochs} epochs "
                "(the fold models' median best epoch)")

    def summary(self) -> dict[str, Any]:
        """JSON for the manifest and the report (no arrays)."""
        return {"folds": self.folds, "rows": self.rows, "best_epochs": list(self.best_epochs),
                "epochs": self.epochs, "fold_metrics": [round(float(v), 6) for v in self.fold_metrics],
                "repeats": self.repeats, "final": self.final, "final_model": self.final_model}


def applies(config: TrainingConfig, splits: Splits) -> bool:
    """Whether cross-fitting replaces the single validation split for this training run."""
    below = int(getattr(config, "crossfit_below", 0) or 0)
    pooled = splits.train.height + splits.valid.height
    return below > 0 and pooled < below and int(getattr(config, "crossfit_folds", 5)) >= 2


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


def _mean_history(histories: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """One row per epoch: the mean of each value over the fold models still training at that epoch."""
    rows: list[dict[str, float]] = []
    for e in range(max((len(h) for h in histories), default=0)):
        live = [h[e] for h in histories if len(h) > e]
        keys = [k for k in live[0] if k != "epoch" and all(k in r for r in live)]
        row: dict[str, float] = {"epoch": float(e + 1)}
        row.update({k: sum(float(r[k]) for r in live) / len(live) for k in keys})
        row["folds"] = float(len(live))
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
        FitOutput,
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
    pool = pl.concat([splits.train, splits.valid], how="vertical_relaxed")
    shared = pipe.preprocessor(dataset)
    shared.fit(pool)
    if final == "bag":
        check_target_free(pipe, dataset, pool, shared, seed)
    pool_target = shared.transform(pool, with_target=True).target
    stratify = pool_target if pipe.task in ("binary", "multiclass") else None
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
            inner, outer = pool.filter(pl.Series(~held)), pool.filter(pl.Series(held))
            if final == "bag":
                pre = shared
            else:
                pre = pipe.preprocessor(dataset)
                pre.fit(inner)
            train_batch, valid_batch = pre.transform(inner, with_target=True), pre.transform(outer, with_target=True)
            info = dict(pre.info())
            seed_everything(run_seed)
            model = spec.factory(info, **dict(pipe.model_options(dataset, info)))
            graph = pre.graph_module()
            with cpu_threads(model, device):
                out = fit_model(pipe, model, graph, train_batch, valid_batch, epochs=epochs,
                                batch_size=batch_size, lr=config.learning_rate,
                                weight_decay=config.weight_decay, patience=config.patience, seed=run_seed,
                                device=device, class_weighting=config.class_weighting, progress=progress,
                                output_names=spec.outputs,
                                stop_on=str(getattr(config, "crossfit_stop_on", "metric")))
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
        from verticals.ensemble import AveragedModel

        info = dict(shared.info())
        options = dict(pipe.model_options(dataset, info))
        ensemble = AveragedModel([m.model.to("cpu").eval() for m in members]).eval()
        out = FitOutput(model=ensemble, history=_mean_history([m.history for m in members]),
                        best_epoch=final_epochs, seconds=sum(m.seconds for m in members),
                        device=members[0].device, stopped_early=any(m.stopped_early for m in members))
        graph = shared.graph_module()
        if graph is not None:
            graph.to("cpu").eval()
        return shared, graph, out, info, options, record
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
