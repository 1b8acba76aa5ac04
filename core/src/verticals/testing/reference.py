"""A synthetic reference plugin: a tabular dataset with a known generating rule, and an MLP.

The core's tests and benchmarks use it so they exercise the real engine without a domain plugin.
Generating rule (seeded, documented so anyone can reproduce it):

* ``f00 … f{n-1}``: ``mu_j + sigma_j * z_j`` with ``z_j ~ N(0, 1)``, ``mu_j ~ U(-50, 50)``,
  ``sigma_j ~ U(0.5, 20)`` (so normalisation matters); 2 % of ``f01`` is missing.
* ``c0 … c{k-1}``: categories ``c{i}_0 … c{i}_{m-1}`` drawn uniformly (``m = 5, 12, 5, 12, …``).
* ``logit = sum_j w_j z_j + 0.8 z_0 z_1 + e_{c0} - 1.2`` with ``w_j ~ N(0, 0.6)`` on the first 8
  features and 0 elsewhere, ``e`` a per-category effect ``~ N(0, 0.7)``; ``target ~ Bernoulli(sigmoid)``.

With ``n_categorical=0`` and 64 numeric features the model is exactly the reference MLP of
``shared/PERFORMANCE.md`` (64 → 256 → 256 → 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from verticals.hookspecs import hookimpl
from verticals.pipeline import Pipeline
from verticals.spec import Column, DatasetSpec, ModelSpec, OutputColumn, Schema, SplitSpec, TrainingConfig

_CARDS = (5, 12)


def reference_schema(n_numeric: int = 16, n_categorical: int = 2) -> Schema:
    cols = [Column("row_id", "int", "id")]
    cols += [Column(f"f{j:02d}", "float") for j in range(n_numeric)]
    cols += [Column(f"c{i}", "category") for i in range(n_categorical)]
    cols.append(Column("target", "int", "target", categories=("0", "1")))
    return Schema(tuple(cols))


def make_frame(rows: int, *, n_numeric: int = 16, n_categorical: int = 2, seed: int = 0, start: int = 0,
               with_target: bool = True) -> Any:
    """Rows ``start … start+rows-1`` of the reference dataset, as a polars DataFrame.

    The generating parameters depend only on ``seed`` and the shape, so chunks made with different
    ``start`` values belong to one dataset (used to write large files chunk by chunk).
    """
    import numpy as np
    import polars as pl

    params = np.random.default_rng(seed)
    mu = params.uniform(-50, 50, n_numeric)
    sigma = params.uniform(0.5, 20, n_numeric)
    w = np.zeros(n_numeric)
    w[: min(8, n_numeric)] = params.normal(0, 0.6, min(8, n_numeric))
    effects = [params.normal(0, 0.7, _CARDS[i % 2]) for i in range(n_categorical)]

    rng = np.random.default_rng([seed, start])
    z = rng.standard_normal((rows, n_numeric)).astype(np.float32)
    x = (mu + sigma * z).astype(np.float32)
    if n_numeric > 1:
        x[rng.random(rows) < 0.02, 1] = np.nan
    logit = z @ w - 1.2
    if n_numeric > 1:
        logit += 0.8 * z[:, 0] * z[:, 1]
    data: dict[str, Any] = {"row_id": np.arange(start, start + rows, dtype=np.int64)}
    for j in range(n_numeric):
        data[f"f{j:02d}"] = x[:, j]
    for i in range(n_categorical):
        codes = rng.integers(0, _CARDS[i % 2], rows)
        if i == 0:
            logit += effects[i][codes]
        data[f"c{i}"] = np.char.add(f"c{i}_", codes.astype(str))
    if with_target:
        data["target"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pl.DataFrame(data)


def write_parquet(path: Path, rows: int, *, chunk: int = 500_000, row_group: int = 131_072, **kwargs: Any) -> Path:
    """Write ``rows`` reference rows to one Parquet file chunk by chunk (bounded memory)."""
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for start in range(0, rows, chunk):
            table = make_frame(min(chunk, rows - start), start=start, **kwargs).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=row_group)
    finally:
        if writer is not None:
            writer.close()
    return path


def mlp_factory(info: Mapping[str, Any], hidden: tuple[int, ...] = (256, 256), embedding_dim: int = 4) -> Any:
    """An MLP over the numeric inputs and one embedding per categorical input."""
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            cards = list(info.get("cardinalities", []))
            self.embeddings = nn.ModuleList(nn.Embedding(card, embedding_dim) for card in cards)
            width = len(info.get("numeric", [])) + embedding_dim * len(cards)
            layers: list[nn.Module] = []
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            layers.append(nn.Linear(width, 1))
            self.net = nn.Sequential(*layers)

        def forward(self, x_num: torch.Tensor | None = None, x_cat: torch.Tensor | None = None) -> torch.Tensor:
            parts = [] if x_num is None else [x_num]
            parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
            return self.net(torch.cat(parts, dim=1)).squeeze(1)

    return MLP()


class ReferencePipeline(Pipeline):
    name = "mlp"
    description = "Synthetic reference pipeline: MLP on a generated tabular dataset"
    dataset = "synthetic"
    model = "mlp"
    task = "binary"
    score_column = "score"
    primary_metric = "auc"
    output_columns = (OutputColumn("score", "float", "P(target = 1)"),)
    training = TrainingConfig(epochs=8, batch_size=512, learning_rate=2e-3, patience=3)


class ReferencePlugin:
    """The reference plugin; ``rows``/``n_numeric``/``n_categorical`` size the generated dataset."""

    def __init__(self, rows: int = 4000, n_numeric: int = 16, n_categorical: int = 2, seed: int = 0,
                 hidden: tuple[int, ...] = (64, 32)) -> None:
        self.rows, self.n_numeric, self.n_categorical, self.seed = rows, n_numeric, n_categorical, seed
        self.hidden = hidden

    @hookimpl
    def register_datasets(self, register):
        def load():
            return make_frame(self.rows, n_numeric=self.n_numeric, n_categorical=self.n_categorical,
                              seed=self.seed).lazy()

        register(DatasetSpec(
            name="synthetic",
            loader=load,
            schema=reference_schema(self.n_numeric, self.n_categorical),
            split=SplitSpec("stratified"),
            description="Generated by verticals.testing.reference (documented rule)",
            source="generator: verticals.testing.reference.make_frame",
        ))

    @hookimpl
    def register_models(self, register):
        hidden = self.hidden

        def factory(info, **options):
            return mlp_factory(info, hidden=options.get("hidden", hidden))

        register(ModelSpec(name="mlp", factory=factory, outputs=("logits",), description="reference MLP"))

    @hookimpl
    def register_pipelines(self, register):
        register(ReferencePipeline())
