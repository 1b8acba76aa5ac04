"""Validate a frame against a schema: cast, apply the column rules, split valid rows from rejects.

The same rules run at training and at scoring time. Everything is a vectorised polars expression, so
validation costs a small fraction of a scoring batch. Nothing is silently dropped: a row is either
valid (possibly flagged) or rejected with a reason naming the column, the value and the rule.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from verticals.errors import DataValidationError
from verticals.spec import Column, Schema

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

REJECT_COLUMNS = ("_row", "_reason")


@dataclass
class ValidationResult:
    """Valid rows (cast to the schema), rejected rows with reasons, and per-row flags."""

    valid: pl.DataFrame
    rejects: pl.DataFrame
    flags: pl.Series
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return self.valid.height + self.rejects.height


def _numeric_kind(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == _pl().Boolean


def _pl():
    import polars as pl

    return pl


def _cast_expr(column: Column, dtype: pl.DataType, source: str) -> pl.Expr:
    """Expression casting the raw column to the schema's type (failed parses become null)."""
    pl = _pl()
    c = pl.col(column.name)
    if column.dtype in ("float", "int"):
        if dtype == pl.Null:
            return c.cast(pl.Float64)
        if _numeric_kind(dtype):
            return c.cast(pl.Float64).fill_nan(None)
        if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
            return c.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).fill_nan(None)
    elif column.dtype in ("category", "string", "path"):
        if dtype == pl.Null or dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum) \
                or _numeric_kind(dtype):
            return c.cast(pl.String)
    elif column.dtype == "bool":
        if dtype == pl.Boolean:
            return c
        if dtype == pl.Null:
            return c.cast(pl.Boolean)
        if dtype.is_numeric():
            return pl.when(c == 1).then(True).when(c == 0).then(False).otherwise(None)
        if dtype == pl.String:
            low = c.str.strip_chars().str.to_lowercase()
            return (pl.when(low.is_in(["true", "1", "yes"])).then(True)
                    .when(low.is_in(["false", "0", "no"])).then(False).otherwise(None))
    elif column.dtype == "datetime":
        if dtype in (pl.Datetime, pl.Date) or isinstance(dtype, pl.Datetime):
            return c.cast(pl.Datetime("us"))
        if dtype == pl.Null:
            return c.cast(pl.Datetime("us"))
        if dtype == pl.String:
            return c.str.to_datetime(strict=False, time_unit="us")
    raise DataValidationError(
        f"{source}: column '{column.name}' has type {dtype}, which cannot be read as {column.dtype}",
        hint=f"provide '{column.name}' as {column.dtype} values",
    )


def _fmt(x: float | None) -> str:
    return "-inf" if x is None else f"{x:g}"


def validate(
    frame: pl.DataFrame,
    schema: Schema,
    *,
    stage: Literal["train", "score"],
    source: str = "input",
    row_offset: int = 0,
    vocabularies: Mapping[str, Collection[str]] | None = None,
) -> ValidationResult:
    """Check ``frame`` against ``schema``.

    Args:
        frame: raw input rows.
        schema: the dataset's schema (the target is ignored at ``stage="score"``).
        stage: ``train`` requires the target and checks its labels; ``score`` ignores it.
        source: where the rows come from (file name), used in messages.
        row_offset: row number of the frame's first row within ``source``.
        vocabularies: fitted category vocabularies by column; values outside them follow the
            column's ``on_unknown`` rule (``reject``/``flag``; ``unknown`` passes them on).

    Raises:
        DataValidationError: a required column is missing, or a column's type cannot be read as the
            schema's type at all.
    """
    pl = _pl()
    columns = [c for c in schema if stage == "train" or c.role != "target"]
    missing = [c.name for c in columns if (c.required or c.role == "target") and c.name not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing required column(s) {', '.join(repr(m) for m in missing)}",
            hint=f"the input needs columns {', '.join(c.name for c in columns)}",
        )
    warnings = []
    extra = [name for name in frame.columns if name not in schema]
    if extra:
        warnings.append(f"{source}: ignoring column(s) not in the schema: {', '.join(extra)}")

    raw = frame.with_row_index("_row", offset=row_offset)
    absent = [c for c in columns if c.name not in frame.columns]
    if absent:
        raw = raw.with_columns(pl.lit(None).alias(c.name) for c in absent)
    casts = [_cast_expr(c, raw.schema[c.name], source).alias(c.name) for c in columns]
    # Keep the raw text of string columns so a failed parse can quote the offending value.
    raw_copies = [pl.col(c.name).alias(f"__raw_{c.name}") for c in columns if raw.schema[c.name] == pl.String]
    checked = raw.select(pl.col("_row"), *casts, *raw_copies)

    reasons: list[pl.Expr] = []
    flags: list[pl.Expr] = []
    fixes: list[pl.Expr] = []
    for c in columns:
        col = pl.col(c.name)
        parse_failed = pl.col(f"__raw_{c.name}").is_not_null() & col.is_null()
        if raw.schema[c.name] in (pl.String,) and c.dtype in ("float", "int", "bool", "datetime"):
            reasons.append(pl.when(parse_failed).then(pl.format(
                "column '{}': cannot read {} as {}", pl.lit(c.name),
                pl.col(f"__raw_{c.name}").str.slice(0, 40), pl.lit(c.dtype))))
            is_missing = col.is_null() & ~parse_failed
        else:
            is_missing = col.is_null()
        if raw.schema[c.name] in (pl.String,) and c.dtype in ("category", "string", "path"):
            is_missing = is_missing | (col.str.strip_chars() == "")
        if c.role == "target":
            reasons.append(pl.when(is_missing).then(pl.lit(f"target '{c.name}' is missing")))
            if c.categories is not None:
                allowed = list(c.categories)
                reasons.append(pl.when(~is_missing & ~col.cast(pl.String).is_in(allowed)).then(pl.format(
                    "target '{}' has unexpected label '{}' (expected one of: {})", pl.lit(c.name),
                    col.cast(pl.String), pl.lit(", ".join(allowed)))))
            continue
        if c.role == "id":
            reasons.append(pl.when(is_missing).then(pl.lit(f"id column '{c.name}' is missing")))
            continue
        if c.on_missing == "reject":
            reasons.append(pl.when(is_missing).then(pl.lit(f"column '{c.name}' is missing (rule: reject)")))
        elif c.on_missing == "flag":
            flags.append(pl.when(is_missing).then(pl.lit(f"{c.name}:missing")))
        if c.dtype in ("float", "int"):
            lo = c.min if c.min is not None else float("-inf")
            hi = c.max if c.max is not None else float("inf")
            infinite = col.is_infinite()
            out = ~is_missing & ((col < lo) | (col > hi) | infinite)
            # Infinity can be clipped only to a finite bound.
            unclippable = infinite & (((col > 0) & (c.max is None)) | ((col < 0) & (c.min is None)))
            rng = f"[{_fmt(c.min)}, {_fmt(c.max) if c.max is not None else 'inf'}]"
            msg = pl.format("column '{}' = {} is outside {}", pl.lit(c.name), col.cast(pl.String), pl.lit(rng))
            if c.on_out_of_range == "reject":
                reasons.append(pl.when(out).then(msg))
            else:
                reasons.append(pl.when(out & unclippable).then(msg))
                if c.on_out_of_range == "flag":
                    flags.append(pl.when(out).then(pl.lit(f"{c.name}:out_of_range")))
                fixes.append(col.clip(lower_bound=c.min, upper_bound=c.max).alias(c.name))
        if c.dtype == "category":
            known = None
            if c.categories is not None:
                known = list(c.categories)
            elif vocabularies is not None and c.name in vocabularies:
                known = list(vocabularies[c.name])
            if known is not None and c.on_unknown != "unknown":
                unknown = ~is_missing & ~col.is_in(known)
                if c.on_unknown == "reject":
                    reasons.append(pl.when(unknown).then(pl.format(
                        "column '{}' has unknown category '{}'", pl.lit(c.name), col.str.slice(0, 40))))
                else:
                    flags.append(pl.when(unknown).then(pl.lit(f"{c.name}:unknown")))

    checked = checked.with_columns(
        (pl.concat_str(reasons, separator="; ", ignore_nulls=True) if reasons else pl.lit(None, pl.String))
        .alias("_reason"),
        (pl.concat_str(flags, separator=",", ignore_nulls=True) if flags else pl.lit("", pl.String))
        .fill_null("").alias("_flags"),
    )
    bad = checked["_reason"].is_not_null() & (checked["_reason"] != "")
    valid = checked.filter(~bad)
    if fixes:
        valid = valid.with_columns(fixes)
    keep = [c.name for c in columns]
    rejected_rows = checked.filter(bad).select("_row", "_reason")
    rejects = (
        raw.join(rejected_rows, on="_row", how="inner", maintain_order="left")
        .select([pl.col(n).cast(pl.String) for n in frame.columns] + [pl.col("_row"), pl.col("_reason")])
        if rejected_rows.height
        else pl.DataFrame(schema={**{n: pl.String for n in frame.columns}, "_row": pl.UInt32, "_reason": pl.String})
    )
    return ValidationResult(valid=valid.select(keep), rejects=rejects, flags=valid["_flags"], warnings=warnings)
