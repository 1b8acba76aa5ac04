"""Small data done right: K-fold cross-fitting for early stopping and calibration.

On a small file the default split leaves a validation split of a hundred rows, a few dozen of them
positive, to choose the epoch and to calibrate on: both then depend more on which rows fell there than
on the data. Below :attr:`TrainingConfig.crossfit_below` training + validation rows (a pipeline
setting; the credit pipelines use 2,000), the engine instead

1. pools the training and validation splits (the test split stays untouched) and cuts the pool into
   ``crossfit_folds`` stratified folds (seeded);
2. for each fold, fits a fresh preprocessor and model on the other folds, early-stopping on that fold,
   and keeps the fold's best epoch and the model's outputs on it (out-of-fold outputs: every pooled row
   is predicted once, by a model that never saw it);
3. fits the final preprocessor and model on the whole pool for the median best epoch, without early
   stopping.

The out-of-fold outputs reach :meth:`Pipeline.fit_extras` as ``context.crossfit`` (a
:class:`CrossFit`), so calibration is fitted on every pooled row instead of the validation split; the
validation split's metrics of the final model are then in-sample and say so in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from verticals.data.splits import Splits
    from verticals.pipeline import Pipeline
    from verticals.spec import DatasetSpec, ModelSpec, TrainingConfig

__all__ = ["CrossFit", "applies", "fit_crossfitted", "fold_labels"]


@dataclass
class CrossFit:
    """What cross-fitting learned, for ``fit_extras`` and the report.

    Attributes:
        folds: number of folds.
        rows: pooled rows (training + validation split).
        best_epochs: each fold model's best epoch.
        epochs: epochs the final model was trained for (the median of ``best_epochs``).
        outputs: out-of-fold model outputs by name, one row per pooled row (training split rows first,
            then validation split rows, in their order in :class:`~verticals.data.splits.Splits`).
        target: the pooled rows' encoded target, in the same order.
        fold_metrics: each fold model's primary metric on its held-out fold.
    """

    folds: int
    rows: int
    best_epochs: list[int]
    epochs: int
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    target: np.ndarray | None = None
    fold_metrics: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON for the manifest and the report (no arrays)."""
        return {"folds": self.folds, "rows": self.rows, "best_epochs": list(self.best_epochs),
                "epochs": self.epochs, "fold_metrics": [round(float(v), 6) for v in self.fold_metrics]}


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


def fit_crossfitted(pipe: Pipeline, dataset: DatasetSpec, spec: ModelSpec, splits: Splits, *, epochs: int,
                    seed: int, device: str, progress: bool = True) -> tuple[Any, Any, Any, dict[str, Any],
                                                                             dict[str, Any], CrossFit]:
    """Run the procedure of the module docstring.

    Returns:
        ``(preprocessor, graph_module, fit_output, info, model_options, crossfit)`` of the final model.
    """
    import numpy as np
    import polars as pl

    from verticals.training import cpu_threads, evaluate_split, fit_model, predict_outputs, seed_everything

    config = pipe.training
    folds = int(getattr(config, "crossfit_folds", 5))
    pool = pl.concat([splits.train, splits.valid], how="vertical_relaxed")
    probe = pipe.preprocessor(dataset)
    probe.fit(pool)
    pool_target = probe.transform(pool, with_target=True).target
    stratify = pool_target if pipe.task in ("binary", "multiclass") else None
    labels = fold_labels(None if stratify is None else np.asarray(stratify), pool.height, folds, seed)
    best_epochs: list[int] = []
    fold_metrics: list[float] = []
    oof: dict[str, np.ndarray] = {}
    for k in range(folds):
        held = labels == k
        inner, outer = pool.filter(pl.Series(~held)), pool.filter(pl.Series(held))
        pre = pipe.preprocessor(dataset)
        pre.fit(inner)
        train_batch, valid_batch = pre.transform(inner, with_target=True), pre.transform(outer, with_target=True)
        info = dict(pre.info())
        seed_everything(seed + k + 1)
        model = spec.factory(info, **dict(pipe.model_options(dataset, info)))
        graph = pre.graph_module()
        with cpu_threads(model, device):
            out = fit_model(pipe, model, graph, train_batch, valid_batch, epochs=epochs,
                            batch_size=config.batch_size, lr=config.learning_rate,
                            weight_decay=config.weight_decay, patience=config.patience, seed=seed + k + 1,
                            device=device, class_weighting=config.class_weighting, progress=progress,
                            output_names=spec.outputs)
        best_epochs.append(int(out.best_epoch))
        if graph is not None:
            graph.to("cpu").eval()
        outputs = predict_outputs(out.model, graph, valid_batch, device="cpu", batch_size=65536, names=spec.outputs)
        _, metrics = evaluate_split(pipe, outputs, valid_batch, {})
        fold_metrics.append(float(metrics.get(pipe.primary_metric, float("nan"))))
        for name, values in outputs.items():
            values = np.asarray(values)
            if name not in oof:
                oof[name] = np.zeros((pool.height, *values.shape[1:]), dtype=values.dtype)
            oof[name][np.flatnonzero(held)] = values
    final_epochs = max(1, round(float(np.median(best_epochs))))
    pre = pipe.preprocessor(dataset)
    pre.fit(pool)
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
    record = CrossFit(folds=folds, rows=pool.height, best_epochs=best_epochs, epochs=final_epochs, outputs=oof,
                      target=np.asarray(batch.target), fold_metrics=fold_metrics)
    return pre, graph, out, info, options, record
