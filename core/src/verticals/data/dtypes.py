"""The polars dtypes of the columns verticals writes, by the dtype names of the contract.

One map for id columns (:class:`verticals.spec.Column` dtypes) and one for output columns
(:class:`verticals.spec.OutputColumn` dtypes), used by the train stages' prediction frames and by
scoring's part files, so both write an id or a score with the same type.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ID_DTYPES", "OUTPUT_DTYPES", "id_dtype", "output_dtype", "polars_dtype"]

#: Column dtype → polars dtype name of an id column (``datetime``: microsecond ``Datetime``).
ID_DTYPES: dict[str, Any] = {"int": "Int64", "float": "Float64", "category": "String", "string": "String",
                             "path": "String", "bool": "Boolean", "datetime": ("Datetime", "us")}

#: OutputColumn dtype → polars dtype name (``("List", inner)`` for lists); anything else is written as String.
OUTPUT_DTYPES: dict[str, Any] = {"float": "Float64", "int": "Int64", "string": "String", "bool": "Boolean",
                                 "list[string]": ("List", "String"), "list[int]": ("List", "Int64"),
                                 "list[float]": ("List", "Float64")}


def polars_dtype(spec: Any) -> Any:
    """The polars dtype of a map entry: a name (``"Int64"``), ``("List", inner)`` or ``("Datetime", unit)``."""
    import polars as pl

    if isinstance(spec, tuple):
        kind, arg = spec
        return pl.List(getattr(pl, arg)) if kind == "List" else getattr(pl, kind)(arg)
    return getattr(pl, spec)


def id_dtype(column_dtype: str) -> Any:
    """The polars dtype an id column of schema dtype ``column_dtype`` is written with; ``None`` if the
    contract has no type for it (the column is written as it comes)."""
    spec = ID_DTYPES.get(column_dtype)
    return None if spec is None else polars_dtype(spec)


def output_dtype(dtype: str) -> Any:
    """The polars dtype of an output column declared with ``dtype`` (String when unknown)."""
    return polars_dtype(OUTPUT_DTYPES.get(dtype, "String"))
