"""A synthetic reference plugin of the *ranking* shape: user–item interactions → top-k items in the graph.

It walks the contract's grouping path end to end with data small enough to train in seconds:

* **dataset** ``interactions``: one row per interaction, ``user`` (role ``group``), ``timestamp`` (role
  ``time``), ``item`` (a string id); split ``leave_last`` (per user, the last interaction is test, the
  one before it validation; earlier ones reach those splits as context rows);
* **preprocessor** :class:`RankingPreprocessor` (``rowwise=False``, grouped by user, ordered by time):
  every non-context row with at least one earlier row is an example whose target is its item and whose
  input is the user's preceding ``max_history`` items (``history`` int64 indices, ``mask`` float32);
  at scoring each user is one example whose history is all of their rows;
* **model** ``item_embeddings``: mean of the history's item embeddings → dot products with every item
  (full-catalogue logits, trained with a full softmax); its ``scoring`` wrapper masks the items in the
  history and returns ``TopK`` indices and scores *inside the graph* (outputs ``items``, ``scores``;
  parity of ``items`` by sets, ties forgiven);
* **artifact** ``catalogue``: a polars frame of item ids (row ``i`` is model index ``i``) and their
  training popularity; ``postprocess`` maps indices back to the string ids;
* **metrics** Recall@10 and NDCG@10 of the model and of a popularity baseline (most interacted items
  the user has not seen) computed in the same run; NDCG@10 is primary.

Generating rule (seeded; :func:`make_interactions`): items fall into ``clusters`` equal groups, each
with a Zipf-like popularity inside the group (weight ``1 / (rank + 1)^0.7``). Users belong to a cluster
(cluster sizes decrease, so global popularity is dominated by the first clusters); each user makes
``min_length … max_length`` interactions with distinct items, each drawn from the user's own cluster
with probability ``affinity`` (else from the whole catalogue, by global weight), among items the user
has not interacted with yet. Timestamps: a start uniform over 60 days, then exponential gaps (mean
9 hours), so users interleave in time. Item ids are random ``sku-xxxxx`` strings whose sorted order is
unrelated to the clusters, so an index/id mix-up cannot pass the tests by accident.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from verticals.errors import PluginError
from verticals.hookspecs import hookimpl
from verticals.pipeline import Pipeline
from verticals.spec import (
    CONTEXT,
    Batch,
    Column,
    DatasetSpec,
    ModelSpec,
    OutputColumn,
    Preprocessor,
    ReportSection,
    Schema,
    SplitSpec,
    TensorSpec,
    TrainingConfig,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    import torch

__all__ = [
    "RankingPipeline",
    "RankingPlugin",
    "RankingPreprocessor",
    "interactions_schema",
    "make_interactions",
    "ranking_factory",
    "top_k_scorer",
]

TOP_K = 10
MAX_HISTORY = 20
_STATE_FORMAT = 1
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
NO_HISTORY = "first interaction of a user (no earlier item to learn from)"
UNKNOWN_TARGET = "item not in the training catalogue"


def interactions_schema() -> Schema:
    """``user`` (group), ``timestamp`` (time), ``item`` (category: unknown items are ignored in a history)."""
    return Schema((
        Column("user", "string", "group", on_missing="reject", description="user id"),
        Column("timestamp", "datetime", "time", on_missing="reject", description="when the interaction happened"),
        Column("item", "category", "feature", on_missing="reject",
               description="item id; an item unknown to the model is left out of the user's history"),
    ))


def make_interactions(users: int = 400, *, clusters: int = 5, items_per_cluster: int = 16, min_length: int = 5,
                      max_length: int = 14, affinity: float = 0.85, seed: int = 0, start: int = 0,
                      planted: bool = False) -> pl.DataFrame:
    """The reference interactions (see the module docstring), as an event log sorted by time.

    The catalogue (item ids, clusters, popularity) depends only on ``seed`` and the catalogue's shape;
    the users on ``seed`` and ``start``, so new users of the same catalogue (a scoring batch) are
    ``make_interactions(n, start=10_000)``.

    Args:
        users: how many users, numbered from ``start``.
        planted: also return the planted truth, ``user_cluster`` and ``item_cluster`` (for tests).

    Returns:
        ``user`` (``u00000`` …), ``timestamp`` (datetime, µs), ``item`` (``sku-xxxxx``) with distinct
        items per user.
    """
    import datetime as dt

    import numpy as np
    import polars as pl

    if not 0 < min_length <= max_length <= clusters * items_per_cluster:
        raise ValueError(f"need 0 < min_length <= max_length <= {clusters * items_per_cluster} items")
    rng = np.random.default_rng(seed)
    n_items = clusters * items_per_cluster
    ids: list[str] = []
    taken: set[str] = set()
    while len(ids) < n_items:
        name = "sku-" + "".join(rng.choice(list(_LETTERS), 5))
        if name not in taken:
            taken.add(name)
            ids.append(name)
    cluster_of = np.repeat(np.arange(clusters), items_per_cluster)
    within = (1.0 / (np.arange(items_per_cluster) + 1.0) ** 0.7)
    weight = np.concatenate([rng.permutation(within) for _ in range(clusters)])
    share = 1.0 / (np.arange(clusters) + 1.5)
    share = share / share.sum()
    global_weight = weight * share[cluster_of]
    rng = np.random.default_rng([seed, start])

    user_col: list[str] = []
    item_col: list[str] = []
    time_col: list[int] = []
    truth: list[tuple[int, int]] = []
    origin = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
    for u in range(start, start + users):
        c = int(rng.choice(clusters, p=share))
        length = int(rng.integers(min_length, max_length + 1))
        seen = np.zeros(n_items, dtype=bool)
        t = origin + int(rng.uniform(0, 60 * 86400e6))
        for _ in range(length):
            own = (cluster_of == c) & ~seen
            pool = own if own.any() and rng.random() < affinity else ~seen
            w = np.where(pool, weight if pool is own else global_weight, 0.0)
            i = int(rng.choice(n_items, p=w / w.sum()))
            seen[i] = True
            t += int(rng.exponential(9 * 3600e6)) + 1_000_000
            user_col.append(f"u{u:05d}")
            item_col.append(ids[i])
            time_col.append(t)
            truth.append((c, int(cluster_of[i])))
    frame = pl.DataFrame({"user": user_col, "timestamp": pl.Series(time_col, dtype=pl.Int64).cast(pl.Datetime("us")),
                          "item": item_col})
    if planted:
        frame = frame.with_columns(pl.Series("user_cluster", [u for u, _ in truth], dtype=pl.Int64),
                                   pl.Series("item_cluster", [i for _, i in truth], dtype=pl.Int64))
    return frame.sort("timestamp", maintain_order=True)


class RankingPreprocessor(Preprocessor):
    """User histories as padded item indices + mask; the next item as the target.

    Fitted state: the item vocabulary of the training split (sorted ids; index ``i`` is the model's item
    ``i``) and each item's training count (popularity, for the baseline). Examples:

    * with targets (training, validation, test): every non-context row that has an earlier row in its
      user's frame; target = its item's index, input = the up to ``max_history`` rows before it (context
      rows included). A user's first row is skipped (no history); so is a row whose item is not in the
      vocabulary (it cannot be a target). ``aux`` holds the popularity baseline's top-k per example.
    * without targets (scoring): one example per user with at least one non-context row; input = the
      user's last ``max_history`` rows. A user whose history holds no known item is still scored (the
      model's item biases decide) and flagged ``history:empty``.

    Histories are left-padded (oldest first, most recent last); unknown items are masked out.
    """

    rowwise: ClassVar[bool] = False
    materialize: ClassVar[bool] = True
    group_by: ClassVar[str | None] = "user"
    order_by: ClassVar[str | None] = "timestamp"
    # One example per user at scoring: the user's rows must arrive whole (``None``: the core never cuts a
    # group, however small the batch); the history is then cut to the last ``max_history`` items here.
    context_rows: ClassVar[int | None] = None

    def __init__(self, *, user: str = "user", time: str = "timestamp", item: str = "item",
                 max_history: int = MAX_HISTORY, top_k: int = TOP_K) -> None:
        self.user, self.time, self.item = user, time, item
        self.max_history, self.top_k = int(max_history), int(top_k)
        self.items: list[str] = []
        self.counts: list[int] = []
        self._index: dict[str, int] = {}
        self._popular: np.ndarray | None = None

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame) -> None:
        import polars as pl

        rows = frame.filter(~pl.col(CONTEXT).fill_null(False)) if CONTEXT in frame.columns else frame
        counts = rows.get_column(self.item).drop_nulls().value_counts(name="n").sort(self.item)
        if counts.height <= self.max_history:
            raise PluginError(
                f"ranking preprocessor: the training split has {counts.height} distinct items, no more than "
                f"the history length {self.max_history}; a user could have seen every item",
                hint="train on more items or lower max_history")
        self._set(counts.get_column(self.item).to_list(), counts.get_column("n").to_list())

    def _set(self, items: Sequence[str], counts: Sequence[int]) -> None:
        import numpy as np

        self.items = [str(i) for i in items]
        self.counts = [int(c) for c in counts]
        self._index = {name: i for i, name in enumerate(self.items)}
        # Most popular first; equal counts by index, so the baseline is deterministic.
        self._popular = np.lexsort((np.arange(len(self.counts)), -np.asarray(self.counts, dtype=np.int64)))

    @property
    def k(self) -> int:
        """Recommendations per example: ``top_k``, or fewer when the catalogue minus a full history is smaller."""
        return max(1, min(self.top_k, len(self.items) - self.max_history))

    def _require_fitted(self, what: str) -> None:
        if not self.items:
            raise PluginError(f"ranking preprocessor: {what} called before fit/load_state",
                              hint="fit the preprocessor on the training split first")

    # -- examples ------------------------------------------------------------------------------------
    def transform(self, frame: pl.DataFrame, *, with_target: bool) -> Batch:
        import numpy as np
        import polars as pl

        self._require_fitted("transform")
        missing = [c for c in (self.user, self.time, self.item) if c not in frame.columns]
        if missing:
            raise PluginError(f"ranking preprocessor: the frame lacks column(s) {', '.join(missing)}",
                              hint="pass validated rows with the dataset's columns")
        rows = frame.sort([self.user, self.time], maintain_order=True)
        n = rows.height
        codes = rows.get_column(self.item).cast(pl.String).replace_strict(
            self.items, list(range(len(self.items))), default=-1, return_dtype=pl.Int64).to_numpy()
        context = (rows.get_column(CONTEXT).fill_null(False).to_numpy() if CONTEXT in rows.columns
                   else np.zeros(n, dtype=bool))
        group = rows.get_column(self.user).rle_id().to_numpy() if n else np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, np.diff(group) != 0]) if n else np.zeros(0, dtype=np.int64)
        ends = np.r_[starts[1:], n].astype(np.int64) if n else np.zeros(0, dtype=np.int64)
        row_start = starts[group] if n else np.zeros(0, dtype=np.int64)
        skipped: dict[str, int] = {}
        if with_target:
            candidates = np.flatnonzero(~context)
            first = candidates[candidates == row_start[candidates]]
            unknown = candidates[(candidates != row_start[candidates]) & (codes[candidates] < 0)]
            at = candidates[(candidates != row_start[candidates]) & (codes[candidates] >= 0)]
            if first.size:
                skipped[NO_HISTORY] = int(first.size)
            if unknown.size:
                skipped[UNKNOWN_TARGET] = int(unknown.size)
            begin = row_start[at]
            target = codes[at].astype(np.int64)
        else:
            has_rows = np.add.reduceat((~context).astype(np.int64), starts) > 0 if n else np.zeros(0, dtype=bool)
            at = ends[has_rows]  # one past each user's last row: the history is everything before
            begin = starts[has_rows]
            target = None
        history, mask = self._histories(codes, at, begin)
        where = pl.Series(at if with_target else begin, dtype=pl.Int64)
        ids = pl.DataFrame({self.user: rows.get_column(self.user).cast(pl.String).gather(where)})
        aux = flags = None
        if with_target:
            aux = pl.DataFrame({"popular": pl.Series(self._baseline(history, mask), dtype=pl.Array(pl.Int64, self.k))
                                .cast(pl.List(pl.Int64))}) if at.size else \
                pl.DataFrame({"popular": pl.Series([], dtype=pl.List(pl.Int64))})
        else:
            flags = pl.Series("flags", np.where(mask.sum(axis=1) > 0, "", "history:empty"), dtype=pl.String)
        return Batch(ids=ids, inputs={"history": history, "mask": mask}, target=target, flags=flags, aux=aux,
                     skipped=skipped)

    def _histories(self, codes: np.ndarray, at: np.ndarray, begin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each example, the items of rows ``[max(begin, at - L), at)`` as ``[B, L]`` (left-padded)."""
        import numpy as np

        length = self.max_history
        pos = at[:, None] - length + np.arange(length)[None, :]
        inside = pos >= begin[:, None]
        items = codes[np.clip(pos, 0, None)] if codes.size else np.full(pos.shape, -1)
        known = inside & (items >= 0)
        history = np.where(known, items, 0).astype(np.int64)
        return history, known.astype(np.float32)

    def _baseline(self, history: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The popularity baseline's top-k per example: the most popular items not in the history."""
        import numpy as np

        head = self._popular[: self.k + self.max_history]
        seen = ((head[None, :, None] == history[:, None, :]) & (mask[:, None, :] > 0)).any(axis=2)
        pick = np.argsort(seen, axis=1, kind="stable")[:, : self.k]
        return head[pick]

    # -- contract ------------------------------------------------------------------------------------
    def signature(self) -> dict[str, TensorSpec]:
        return {"history": TensorSpec("int64", (-1, self.max_history)),
                "mask": TensorSpec("float32", (-1, self.max_history))}

    def info(self) -> dict[str, Any]:
        self._require_fitted("info")
        return {"items": len(self.items), "max_history": self.max_history, "top_k": self.k}

    def state(self) -> dict[str, Any]:
        self._require_fitted("state")
        return {"format": _STATE_FORMAT, "columns": {"user": self.user, "time": self.time, "item": self.item},
                "max_history": self.max_history, "top_k": self.top_k, "items": list(self.items),
                "counts": list(self.counts)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != _STATE_FORMAT:
            raise PluginError(f"RankingPreprocessor state has format {state.get('format')!r}, expected "
                              f"{_STATE_FORMAT}", hint="retrain the model with this version of verticals")
        columns = state.get("columns") or {}
        self.user = str(columns.get("user", self.user))
        self.time = str(columns.get("time", self.time))
        self.item = str(columns.get("item", self.item))
        self.max_history, self.top_k = int(state["max_history"]), int(state["top_k"])
        self._set(state["items"], state["counts"])

    def vocabularies(self) -> dict[str, list[str]]:
        return {self.item: list(self.items)}


# -- model ----------------------------------------------------------------------------------------------
def ranking_factory(info: Mapping[str, Any], dim: int = 32) -> torch.nn.Module:
    """Item embeddings; a user is the mean embedding of their history; logits = user · item + bias.

    ``forward(history, mask)`` returns full-catalogue logits ``[batch, items]`` (what the softmax loss
    trains). ``nn.Embedding`` plus a masked mean, not ``nn.EmbeddingBag`` (which exports as a slow
    ONNX ``Loop``).
    """
    import torch
    from torch import nn

    class ItemEmbeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            items = int(info["items"])
            self.top_k = int(info["top_k"])
            self.embed = nn.Embedding(items, dim)
            self.project = nn.Linear(dim, dim)
            self.output = nn.Parameter(torch.randn(items, dim) * (1.0 / dim ** 0.5))
            self.bias = nn.Parameter(torch.zeros(items))

        def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            vectors = self.embed(history) * mask.unsqueeze(-1)
            user = vectors.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
            return self.project(user) @ self.output.t() + self.bias

    return ItemEmbeddings()


def top_k_scorer(model: torch.nn.Module) -> torch.nn.Module:
    """The exported graph: the model's logits, items of the history masked out, then ``TopK``.

    Returns ``(items int64 [batch, k], scores float32 [batch, k])``, best first. A history holds at most
    ``max_history`` distinct items and ``k <= items - max_history``, so every slot is an unseen item.
    """
    import torch
    from torch import nn

    class TopK(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.k = int(model.top_k)

        def forward(self, history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.model(history=history, mask=mask)
            # Seen items as a [batch, items] mask: every real history slot writes 1 into its item's column,
            # padded slots into an extra column that is dropped. A plain scatter (no reduction) of one
            # value is deterministic with repeated items and runs in every precision (an fp16 variant).
            items = logits.shape[1]
            index = torch.where(mask > 0, history, torch.full_like(history, items))
            slots = torch.cat([torch.zeros_like(logits), logits.new_zeros((logits.shape[0], 1))], dim=1)
            seen = slots.scatter(1, index, torch.ones_like(logits[:, :1]).expand_as(mask))[:, :items] > 0
            scores, items = torch.topk(logits.masked_fill(seen, float("-inf")), self.k, dim=1)
            return items, scores

    return TopK()


# -- pipeline -------------------------------------------------------------------------------------------
class RankingPipeline(Pipeline):
    name = "next_item"
    description = "Synthetic reference pipeline: next item for a user from their history (top-10 in the graph)"
    dataset = "interactions"
    model = "item_embeddings"
    task = "ranking"
    score_column = "items"
    primary_metric = "ndcg@10"
    greater_is_better = True
    output_columns = (
        OutputColumn("items", "list[string]", "recommended item ids, best first, none the user has seen"),
        OutputColumn("scores", "list[float]", "the model's score of each recommended item"),
    )
    training = TrainingConfig(epochs=12, batch_size=128, learning_rate=0.01, weight_decay=1e-5, patience=3,
                              class_weighting=False, seed=42)

    def preprocessor(self, dataset: DatasetSpec) -> Preprocessor:
        return RankingPreprocessor(max_history=MAX_HISTORY, top_k=TOP_K)

    def model_options(self, dataset: DatasetSpec, info: Mapping[str, Any]) -> dict[str, Any]:
        return {"dim": 32}

    def loss(self, outputs: Sequence[torch.Tensor], target: torch.Tensor,
             class_weights: torch.Tensor | None) -> torch.Tensor:
        """Full softmax over the catalogue: cross-entropy of the logits against the next item."""
        import torch.nn.functional as F

        return F.cross_entropy(outputs[0].float(), target.long())

    def evaluate(self, predictions: pl.DataFrame, batch: Batch) -> dict[str, Any]:
        """Recall@10 and NDCG@10 of the model and (``popularity``) of the most-popular-unseen baseline."""
        from verticals.metrics import ndcg_at_k, recall_at_k

        if batch.target is None or not len(batch):
            return {}
        ours = _index_matrix(predictions.get_column("_index"))
        popular = _index_matrix(batch.aux.get_column("popular"))
        held_out = [[int(t)] for t in batch.target]
        return {
            "recall@10": recall_at_k(ours, held_out, TOP_K),
            "ndcg@10": ndcg_at_k(ours, held_out, TOP_K),
            "popularity": {"recall@10": recall_at_k(popular, held_out, TOP_K),
                           "ndcg@10": ndcg_at_k(popular, held_out, TOP_K)},
        }

    def fit_extras(self, context: Any) -> dict[str, Any]:
        """The test split's popularity-baseline metrics (shown next to the model's in the report)."""
        test = context.metrics.get("test") or {}
        return {"catalogue_items": len(context.preprocessor.items),
                "baseline_metrics": {"popularity": dict(test.get("popularity") or {})}}

    def artifacts(self, context: Any) -> Mapping[str, Any]:
        """``catalogue``: item id and training popularity per model index (row ``i`` = index ``i``)."""
        import polars as pl

        pre = context.preprocessor
        return {"catalogue": pl.DataFrame({"item": pl.Series(pre.items, dtype=pl.String),
                                           "popularity": pl.Series(pre.counts, dtype=pl.Int64)})}

    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: Batch, extras: Mapping[str, Any]) -> pl.DataFrame:
        """Indices → item ids through the ``catalogue`` artifact; ``_index`` keeps the indices for metrics.

        Before the model version exists (validation while training) there is no catalogue yet: ``items``
        is then null and metrics use ``_index``. A registered version without its catalogue is an error.
        """
        from verticals.postprocess import top_k_lists

        return top_k_lists(self.qualified_name, outputs["items"], outputs["scores"],
                           getattr(extras, "artifacts", {}).get("catalogue"), "catalogue_items" in extras,
                           rows=0 if batch is None else len(batch))

    def report_sections(self, context: Any) -> list[ReportSection]:
        """Catalogue coverage and popularity of the recommended items on the test split."""
        import html

        import numpy as np

        def coverage(recommended: np.ndarray, size: int) -> float:
            return float(np.unique(recommended[recommended >= 0]).size / size) if size else float("nan")

        test = context.predictions.get("test")
        if test is None or not test.height:
            return []
        index = _index_matrix(test.get_column("_index"))
        counts = np.asarray(context.preprocessor.counts, dtype=np.float64)
        share = counts / counts.sum()
        popular = _index_matrix(context.batches["test"].aux.get_column("popular")) \
            if context.batches["test"].aux is not None else np.zeros((0, 0), dtype=np.int64)
        rows = [("model", coverage(index, counts.size), float(share[index].mean()) if index.size else float("nan")),
                ("popularity baseline", coverage(popular, counts.size),
                 float(share[popular].mean()) if popular.size else float("nan"))]
        body = "".join(f"<tr><td>{html.escape(n)}</td><td>{c:.3f}</td><td>{p:.4f}</td></tr>" for n, c, p in rows)
        return [ReportSection(
            "Recommendations (test split)",
            "<p>Coverage: share of the catalogue recommended to at least one user. Popularity: mean training "
            "share of interactions of a recommended item (higher means more popular items).</p>"
            f"<table><tr><th>recommender</th><th>coverage@{TOP_K}</th><th>mean popularity</th></tr>{body}</table>")]


def _index_matrix(column: pl.Series) -> np.ndarray:
    """A list[int] column of equal-length lists as an int64 matrix."""
    import numpy as np

    if not column.len():
        return np.zeros((0, TOP_K), dtype=np.int64)
    width = int(column.list.len().max())
    return column.list.to_array(width).to_numpy().astype(np.int64)


class RankingPlugin:
    """The ranking reference plugin; ``users`` / ``clusters`` / ``items_per_cluster`` size the data."""

    def __init__(self, users: int = 400, *, clusters: int = 5, items_per_cluster: int = 16, seed: int = 0) -> None:
        self.users, self.clusters, self.items_per_cluster, self.seed = users, clusters, items_per_cluster, seed

    @hookimpl
    def register_datasets(self, register):
        def load():
            return make_interactions(self.users, clusters=self.clusters, items_per_cluster=self.items_per_cluster,
                                     seed=self.seed).lazy()

        register(DatasetSpec(
            name="interactions",
            loader=load,
            schema=interactions_schema(),
            split=SplitSpec("leave_last", holdout=1, min_rows=3),
            description="Generated user-item interactions with planted item clusters",
            source="generator: verticals.testing.ranking.make_interactions",
        ))

    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="item_embeddings", factory=ranking_factory, outputs=("logits",),
                           scoring=top_k_scorer, score_outputs=("items", "scores"),
                           parity={"items": "indices", "scores": "float"},
                           description="item embeddings, mean history, full-softmax dot products; top-k in graph"))

    @hookimpl
    def register_pipelines(self, register):
        register(RankingPipeline())
