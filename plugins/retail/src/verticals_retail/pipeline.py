"""``retail.movielens``: the next items for each user, top-k inside the graph, baselines beside it.

Split (``leave_last`` in the core): per user ordered by time, with ties at the same timestamp broken
by a seeded shuffle (the run's seed), the last positive is test, the one before validation, earlier
ones training history; users with fewer than 5 positives stay wholly in training. Hyper-parameters
(EASE's λ, early stopping) are chosen on validation; test is read once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from verticals.pipeline import Pipeline
from verticals.spec import (
    Batch,
    DatasetSpec,
    OutputColumn,
    Preprocessor,
    ReportSection,
    ScoringParameter,
    TrainingConfig,
)

from verticals_retail.model import MASKED
from verticals_retail.preprocess import MAX_HISTORY, TOP_K, HistoryPreprocessor

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    import torch

__all__ = ["EASE_LAMBDAS", "LIST_LENGTH", "RecommendationPipeline"]

#: Items per list when a run does not set ``k``.
LIST_LENGTH = 10
#: EASE's regularisation candidates (chosen on validation NDCG@10).
EASE_LAMBDAS = (100.0, 300.0, 1000.0)
METRIC_K = 10


class RecommendationPipeline(Pipeline):
    """The next items per user from their history (see the module docstring)."""

    name: ClassVar[str] = "movielens"
    description: ClassVar[str] = ("MovieLens (rating >= 4 as implicit feedback): the next movies for each user, "
                                  "top-k in the ONNX graph, seen movies masked; popularity, item-kNN and EASE beside it")
    dataset: ClassVar[str] = "movielens"
    model: ClassVar[str] = "recommender"
    task = "ranking"
    score_column: ClassVar[str] = "items"
    primary_metric: ClassVar[str] = "ndcg@10"
    greater_is_better: ClassVar[bool] = True
    output_columns: ClassVar[tuple[OutputColumn, ...]] = (
        OutputColumn("items", "list[string]", "recommended item ids, best first, none the user has seen"),
        OutputColumn("scores", "list[float]", "the model's score of each recommended item"),
    )
    training: ClassVar[TrainingConfig] = TrainingConfig(epochs=20, batch_size=256, learning_rate=0.003,
                                                        weight_decay=0.0, patience=3, class_weighting=False, seed=0)
    #: Model options (architecture, embedding size) and the history window; see :mod:`verticals_retail.model`.
    arch: ClassVar[str] = "mean"
    dim: ClassVar[int] = 64
    max_history: ClassVar[int] = MAX_HISTORY
    top_k: ClassVar[int] = TOP_K
    ease_lambdas: ClassVar[tuple[float, ...]] = EASE_LAMBDAS
    knn_neighbours: ClassVar[int] = 100
    #: An own-data config's item table (``data``, ``id``, ``title``), for titles in the report.
    items_table: ClassVar[dict[str, str]] = {}

    def __init__(self, **overrides: Any) -> None:
        for key, value in overrides.items():
            if not hasattr(type(self), key):
                raise TypeError(f"RecommendationPipeline has no option {key!r}")
            setattr(self, key, value)
        self._counts: np.ndarray | None = None

    # -- preprocessing and model ---------------------------------------------------------------------
    def preprocessor(self, dataset: DatasetSpec) -> Preprocessor:
        return _Tracked(self, max_history=self.max_history, top_k=self.top_k)

    def model_options(self, dataset: DatasetSpec, info: Mapping[str, Any]) -> dict[str, Any]:
        return {"arch": self.arch, "dim": int(self.dim)}

    def loss(self, outputs: Sequence[torch.Tensor], target: torch.Tensor,
             class_weights: torch.Tensor | None) -> torch.Tensor:
        """Full softmax over the catalogue: cross-entropy of the logits against the next item (a held-out
        item the catalogue lacks, target -1, counts in metrics but not in the loss)."""
        import torch.nn.functional as F

        target = target.long()
        known = target >= 0
        if not bool(known.any()):
            return outputs[0].sum() * 0.0
        return F.cross_entropy(outputs[0][known].float(), target[known])

    # -- metrics -------------------------------------------------------------------------------------
    def evaluate(self, predictions: pl.DataFrame, batch: Batch) -> dict[str, Any]:
        """Recall@10, NDCG@10, coverage@10, popularity bias@10 and Recall@1…50 of the model."""
        import numpy as np

        from verticals_retail.baselines import ranking_metrics

        if batch.target is None or not len(batch) or self._counts is None:
            return {}
        top = _index_matrix(predictions.get_column("_index"))
        return ranking_metrics(top, np.asarray(batch.target), self._counts, METRIC_K)

    def fit_extras(self, context: Any) -> dict[str, Any]:
        """The baselines on the same split and masking: popularity, item-kNN, EASE (λ on validation)."""
        from verticals_retail.evaluation import fit_baselines

        extras = fit_baselines(self, context)
        # The model version's known histories are the whole log, held-out items included: scoring a
        # users file must never recommend what a user already has (the core saves the state after this).
        for split in ("valid", "test"):
            context.preprocessor.remember(getattr(context.splits, split))
        return extras

    def artifacts(self, context: Any) -> Mapping[str, Any]:
        """``catalogue``: item id and training popularity per model index (row ``i`` = index ``i``)."""
        import polars as pl

        pre = context.preprocessor
        return {"catalogue": pl.DataFrame({"item": pl.Series(pre.items, dtype=pl.String),
                                           "popularity": pl.Series(pre.counts, dtype=pl.Int64)})}

    # -- scoring -------------------------------------------------------------------------------------
    def scoring_parameters(self, extras: Mapping[str, Any]) -> Sequence[ScoringParameter]:
        """``k``: the list length, 1 … the exported list (at most the catalogue)."""
        catalogue = int(extras.get("catalogue_items") or 0)
        exported = int(extras.get("list_length") or catalogue)
        if exported < catalogue:
            why = (f"this model version exports the best {exported:,} of its {catalogue:,} catalogue items; "
                   "retrain with a larger top_k for longer lists")
        else:
            why = f"the catalogue has {catalogue:,} items"
        return (ScoringParameter("k", "the number of recommended items per user", min(LIST_LENGTH, exported),
                                 minimum=1, maximum=exported or None, maximum_reason=why),)

    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: Batch, extras: Mapping[str, Any]) -> pl.DataFrame:
        """Indices → item ids through the ``catalogue`` artifact, cut to ``k``; seen items never appear.

        While training there is no catalogue yet: ``items`` is null and metrics use ``_index``.
        """
        import numpy as np
        from verticals.postprocess import top_k_lists

        index = np.asarray(outputs["items"], dtype=np.int64)
        scores = np.asarray(outputs["scores"], dtype=np.float64)
        params = getattr(extras, "params", {}) or {}
        if "k" in params:
            index, scores = index[:, : int(params["k"])], scores[:, : int(params["k"])]
        valid = scores > MASKED / 2  # a seen item fills a slot only when the catalogue runs out
        return top_k_lists(self.qualified_name, index, scores, getattr(extras, "artifacts", {}).get("catalogue"),
                           "catalogue_items" in extras, rows=len(batch), keep=valid)

    # -- reporting -----------------------------------------------------------------------------------
    def report_sections(self, context: Any) -> list[ReportSection]:
        from verticals_retail.report import report_sections

        return report_sections(self, context)


class _Tracked(HistoryPreprocessor):
    """The preprocessor, telling its pipeline the training popularity (for coverage and bias metrics)."""

    def __init__(self, pipeline: RecommendationPipeline, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pipeline = pipeline

    def _set(self, items: Sequence[str], counts: Sequence[int]) -> None:
        import numpy as np

        super()._set(items, counts)
        self._pipeline._counts = np.asarray(self.counts, dtype=np.float64)


def _index_matrix(column: pl.Series) -> np.ndarray:
    """A list[int] column of equal-length lists as an int64 matrix."""
    import numpy as np

    if not column.len():
        return np.zeros((0, METRIC_K), dtype=np.int64)
    width = int(column.list.len().max())
    return column.list.to_array(width).to_numpy().astype(np.int64)
