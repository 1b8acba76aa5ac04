"""Validate a frame against a schema: cast, apply the column rules, split valid rows from rejects.

The same rules run at training and at scoring time. Everything is a vectorised polars expression, so
validation costs a small fraction of a scoring batch. Nothing is silently dropped: a row is either
valid (possibly flagged) or rejected with a reason naming the column, the value and the rule.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from verticals.errors import DataValidationError
from verticals.spec import Column, Schema

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

REJECT_COLUMNS = ("_row", "_reason")
MISSING_TEXT = ("", "nan", "na", "n/a", "null", "none")


@dataclass
class ValidationResult:
    """Valid rows (cast to the schema), rejected rows with reasons, and per-row flags."""

    valid: pl.DataFrame
    rejects: pl.DataFrame
    flags: pl.Series
    warnings: list[str] = field(default_factory=list)
    rows: pl.Series | None = None
    """Row number (``row_offset`` + position in the input frame) of each valid row."""

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
        if dtype.is_float():  # keep the file's width: float32 stays float32 (half the bytes downstream)
            return c.fill_nan(None)
        if _numeric_kind(dtype):
            return c.cast(pl.Float64)  # integers and booleans hold no NaN
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


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _fmt(x: float | None) -> str:
    return "-inf" if x is None else f"{x:g}"



#: Flags of the learned value rules (see ``Column.range_margin``).
OUT_OF_TRAINING_RANGE = "out_of_training_range"
NEGATIVE_NEVER_SEEN = "negative_never_seen"
#: Distinct unknown values per column and batch examined for near misses (the rest are counted only).
NEAR_MISS_VALUES = 50
NEAR_MISS_CUTOFF = 0.75


def _mode(column: Column, modes: Mapping[str, str]) -> str:
    if column.dtype != "category":
        return "exact"
    return modes.get(column.name, column.normalize)


def _bounds(c: Column, lo: float, hi: float) -> tuple[float, float, float]:
    """(lowest value left alone, highest value left alone, margin's lower bound) of a learned range."""
    margin = float(c.range_margin or 0.0)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    low, high = lo - margin * span, hi + margin * span
    # In a never-negative column a negative value is flagged even within the margin.
    return (max(low, 0.0) if lo >= 0 else low), high, low


def _learned(frame: pl.DataFrame, schema: Schema, ranges: Mapping[str, tuple[float, float]],
             flags: bool, known: Mapping[str, tuple[Any, Any]] | None = None) -> tuple[pl.DataFrame, pl.Series | None]:
    """Apply the learned range rules to validated rows (after the explicit rules' clipping).

    Cheap in the usual case: one min/max per column decides which columns have a value to fix, and
    only those get row-wise work; ``known`` gives (min, max) of columns whose values are already
    known (a superset of the frame's rows is fine: it only makes the check conservative). Returns the
    fixed frame and, with ``flags``, each row's learned flags (``None`` when no row has one)."""
    pl = _pl()
    columns = [c for c in schema.features if c.dtype in ("float", "int") and c.range_margin is not None
               and c.name in ranges and c.name in frame.columns]
    if not columns or not frame.height:
        return frame, None
    known = known or {}
    ask = [c for c in columns if c.name not in known]
    row = frame.select([pl.col(c.name).min().alias(f"{i}<") for i, c in enumerate(ask)]
                       + [pl.col(c.name).max().alias(f"{i}>") for i, c in enumerate(ask)]).row(0) if ask else ()
    stats = dict(known)
    stats.update({c.name: (row[i], row[len(ask) + i]) for i, c in enumerate(ask)})
    hit = []
    for c in columns:
        floor, high, _ = _bounds(c, *ranges[c.name])
        smallest, largest = stats[c.name]
        if (smallest is not None and smallest < floor) or (largest is not None and largest > high):
            hit.append(c)
    if not hit:
        return frame, None
    parts, fixes = [], []
    for c in hit:
        lo, hi = ranges[c.name]
        floor, high, low = _bounds(c, lo, hi)
        col = pl.col(c.name)
        parts.append(pl.when(((col < low) | (col > high)) & col.is_finite())
                     .then(pl.lit(f"{c.name}:{OUT_OF_TRAINING_RANGE}")))
        if lo >= 0:
            parts.append(pl.when(col < 0).then(pl.lit(f"{c.name}:{NEGATIVE_NEVER_SEEN}")))
        fixes.append(pl.when((col < floor) | (col > high)).then(col.clip(lower_bound=lo, upper_bound=hi))
                     .otherwise(col).alias(c.name))
    texts = frame.select(pl.concat_str(parts, separator=",", ignore_nulls=True).fill_null("")).to_series() \
        if flags else None
    return frame.with_columns(fixes), texts


def _clean_columns(frame: pl.DataFrame, columns: list[Column], types: Mapping[str, Any]) -> tuple[
        frozenset[str], dict[str, tuple[Any, Any]]]:
    """Numeric feature columns of ``frame`` that no rule can touch, decided from one read-only pass of
    per-column statistics: no null, no NaN, finite, within ``[min, max]``. Validation passes them through
    untouched (no cast, no per-row condition), which on a wide float frame is most of its cost.

    Returns (those columns, ``(min, max)`` of every numeric column examined, for the learned range rule).
    """
    pl = _pl()
    cands = [c for c in columns if c.role == "feature" and c.dtype in ("float", "int")
             and c.name in types and types[c.name].is_numeric() and not types[c.name].is_decimal()]
    if not cands or not frame.height:
        return frozenset(), {}
    exprs = []
    for i, c in enumerate(cands):
        col = pl.col(c.name)
        exprs += [col.null_count().alias(f"{i}n"), col.min().alias(f"{i}<"), col.max().alias(f"{i}>")]
        if types[c.name].is_float():
            exprs.append(col.is_nan().any().alias(f"{i}nan"))
    row = frame.select(exprs).row(0, named=True)
    clean, extremes = set(), {}
    inf = float("inf")
    for i, c in enumerate(cands):
        lo, hi = row[f"{i}<"], row[f"{i}>"]
        extremes[c.name] = (lo, hi)
        if row[f"{i}n"] or row.get(f"{i}nan") or lo is None or hi is None or lo == -inf or hi == inf:
            continue
        if (c.min is not None and lo < c.min) or (c.max is not None and hi > c.max):
            continue
        clean.add(c.name)
    return frozenset(clean), extremes


@functools.lru_cache(maxsize=64)
def _rules(schema: Schema, stage: str, types: tuple[tuple[str, pl.DataType], ...], source: str,
           vocab_key: tuple[tuple[str, tuple[str, ...]], ...],
           learned_key: tuple[Any, ...] = ((), ()), clean: frozenset[str] = frozenset()) -> tuple[list[Any], ...]:
    """The expressions that check a frame: casts, raw-text copies, (condition, reason) and
    (condition, flag) pairs, fixes. They depend only on the schema, the input's types, the
    vocabularies and which numeric columns are ``clean`` (see :func:`_clean_columns`; usually the
    same set batch after batch), so they are built once per kind of input: building them costs more
    than running them on a 65k-row batch of a wide frame."""
    pl = _pl()
    columns = [c for c in schema if stage == "train" or c.role != "target"]
    types = dict(types)  # type: ignore[assignment]
    vocabularies = dict(vocab_key)
    modes = dict(learned_key[1])
    casts = [(pl.col(c.name) if types[c.name].is_float() else pl.col(c.name).cast(pl.Float64)) if c.name in clean
             else _cast_expr(c, types[c.name], source).alias(c.name) for c in columns]
    # Keep the raw text of string columns so a failed parse can quote the offending value.
    raw_copies = [pl.col(c.name).alias(f"__raw_{c.name}") for c in columns if types[c.name] == pl.String]

    # (condition, message) pairs: conditions decide, messages are built only for the rows that need them.
    reasons: list[tuple[pl.Expr, pl.Expr]] = []
    flags: list[tuple[pl.Expr, pl.Expr]] = []
    fixes: list[pl.Expr] = []
    for c in columns:
        if c.name in clean:  # no null, NaN, infinity or out-of-range value in this frame: no rule fires
            continue
        col = pl.col(c.name)
        raw_text = pl.col(f"__raw_{c.name}")
        # Text that spells a missing value ("NaN", "null", "NA", "") is missing, not unreadable.
        parse_failed = (raw_text.is_not_null() & col.is_null()
                        & ~raw_text.str.strip_chars().str.to_lowercase().is_in(list(MISSING_TEXT)))
        if types[c.name] in (pl.String,) and c.dtype in ("float", "int", "bool", "datetime"):
            reasons.append((parse_failed, pl.format(
                "column '{}': cannot read {} as {}", pl.lit(c.name),
                pl.col(f"__raw_{c.name}").str.slice(0, 40), pl.lit(c.dtype))))
            is_missing = col.is_null() & ~parse_failed
        else:
            is_missing = col.is_null()
        if types[c.name] in (pl.String,) and c.dtype in ("category", "string", "path"):
            is_missing = is_missing | (col.str.strip_chars() == "")
        if c.role == "target":
            reasons.append((is_missing, pl.lit(f"target '{c.name}' is missing")))
            if c.categories is not None:
                allowed = list(c.categories)
                known = col.cast(pl.String).is_in(allowed)
                if c.dtype in ("float", "int"):
                    # Numeric labels were read as Float64 ("1.0"): compare them as numbers.
                    numbers = [float(v) for v in allowed if _is_number(v)]
                    known = col.is_in(numbers) if len(numbers) == len(allowed) else known
                reasons.append((~is_missing & ~known, pl.format(
                    "target '{}' has unexpected label '{}' (expected one of: {})", pl.lit(c.name),
                    col.cast(pl.String), pl.lit(", ".join(allowed)))))
            continue
        if c.role == "id":
            reasons.append((is_missing, pl.lit(f"id column '{c.name}' is missing")))
            continue
        if not c.required and types[c.name] == pl.Null:
            # An optional column the input does not have (a users file without the item column): its
            # values are absent by design, so no missing-value rule applies.
            continue
        if c.on_missing == "reject":
            reasons.append((is_missing, pl.lit(f"column '{c.name}' is missing (rule: reject)")))
        elif c.on_missing == "flag":
            flags.append((is_missing, pl.lit(f"{c.name}:missing")))
        if c.dtype in ("float", "int"):
            # NaN became null in the cast and a null comparison never fires, so no missing-value term
            # is needed; infinity is out of any range (a finite bound catches it by comparison).
            out_parts = [col < c.min] if c.min is not None else []
            if c.max is not None:
                out_parts.append(col > c.max)
            if c.min is None or c.max is None:
                out_parts.append(col.is_infinite())
            out = pl.any_horizontal(out_parts) if len(out_parts) > 1 else out_parts[0]
            # Infinity can be clipped only to a finite bound.
            ends = ([col == float("inf")] if c.max is None else []) + ([col == float("-inf")] if c.min is None else [])
            unclippable = pl.any_horizontal(ends) if ends else pl.lit(False)
            rng = f"[{_fmt(c.min)}, {_fmt(c.max) if c.max is not None else 'inf'}]"
            msg = pl.format("column '{}' = {} is outside {}", pl.lit(c.name), col.cast(pl.String), pl.lit(rng))
            if c.on_out_of_range == "reject":
                reasons.append((out, msg))
            else:
                reasons.append((out & unclippable, msg))
                if c.on_out_of_range == "flag":
                    flags.append((out, pl.lit(f"{c.name}:out_of_range")))
                fixes.append(col.clip(lower_bound=c.min, upper_bound=c.max).alias(c.name))
        if c.dtype == "category":
            known = None
            if c.categories is not None:
                known = list(c.categories)
            elif vocabularies is not None and c.name in vocabularies:
                known = list(vocabularies[c.name])
            if known is not None and c.on_unknown != "unknown":
                from verticals.data.tabular import category_key, category_key_expr

                mode = _mode(c, modes)
                unknown = ~is_missing & ~category_key_expr(col, mode).is_in([category_key(v, mode) for v in known])
                if c.on_unknown == "reject":
                    reasons.append((unknown, pl.format(
                        "column '{}' has unknown category '{}'", pl.lit(c.name), col.str.slice(0, 40))))
                else:
                    flags.append((unknown, pl.lit(f"{c.name}:unknown")))


    def fires(rules: list[tuple[pl.Expr, pl.Expr]]) -> pl.Expr:
        # A null condition does not fire, as in when/then.
        return pl.any_horizontal([cond.fill_null(False) for cond, _ in rules]) if rules else pl.lit(False)

    return casts, raw_copies, reasons, flags, fixes, fires(reasons).alias("__bad"), fires(flags).alias("__flagged")


def _vocab_key(schema: Schema, vocabularies: Mapping[str, Collection[str]] | None) -> tuple[Any, ...]:
    """The part of ``vocabularies`` the rules use (closed-world category columns), hashable."""
    if not vocabularies:
        return ()
    used = [c.name for c in schema if c.dtype == "category" and c.on_unknown != "unknown"
            and c.categories is None and c.name in vocabularies]
    return tuple((name, tuple(str(v) for v in vocabularies[name])) for name in used)


def validate(
    frame: pl.DataFrame,
    schema: Schema,
    *,
    stage: Literal["train", "score"],
    source: str = "input",
    row_offset: int = 0,
    vocabularies: Mapping[str, Collection[str]] | None = None,
    training_ranges: Mapping[str, tuple[float, float]] | None = None,
    category_modes: Mapping[str, str] | None = None,
) -> ValidationResult:
    """Check ``frame`` against ``schema``.

    Args:
        frame: raw input rows.
        schema: the dataset's schema (the target is ignored at ``stage="score"``).
        stage: ``train`` requires the target and checks its labels; ``score`` ignores it.
        source: where the rows come from (file name), used in messages.
        row_offset: row number of the frame's first row within ``source``.
        vocabularies: fitted category vocabularies by column; values outside them follow the
            column's ``on_unknown`` rule (``reject``/``flag``; ``unknown`` passes them on). Values that
            match a category only after the column's normalisation, and unknown values close to a
            category (a likely misspelling), are reported in ``warnings``.
        training_ranges: ``(min, max)`` per numeric feature on the training split
            (:meth:`Preprocessor.training_ranges`): the columns' ``range_margin`` rule clips and flags
            values far outside it (``<col>:out_of_training_range``) and negative values in a column
            never negative in training (``<col>:negative_never_seen``).
        category_modes: the normalisation each categorical column's vocabulary was matched with
            (default: the column's ``normalize``).

    Types of the valid rows: a ``float``/``int`` column read as floats keeps the input's width (Float32
    stays Float32: no widening copy), integers, booleans and parsed text become Float64; a missing value
    (null, NaN, text such as "NA") is null.

    Raises:
        DataValidationError: a required column is missing, or a column's type cannot be read as the
            schema's type at all.
    """
    pl = _pl()
    columns = [c for c in schema if stage == "train" or c.role != "target"]
    present = set(frame.columns)
    names = set(schema.names)
    missing = [c.name for c in columns if (c.required or c.role == "target") and c.name not in present]
    if missing:
        raise DataValidationError(
            f"{source}: missing required column(s) {', '.join(repr(m) for m in missing)}",
            hint=f"the input needs columns {', '.join(c.name for c in columns)}",
        )
    warnings = []
    extra = [name for name in frame.columns if name not in names]
    if extra:
        warnings.append(f"{source}: ignoring column(s) not in the schema: {', '.join(extra)}")

    raw = frame.with_row_index("_row", offset=row_offset)
    absent = [c for c in columns if c.name not in present]
    if absent:
        raw = raw.with_columns(pl.lit(None).alias(c.name) for c in absent)
    types = raw.schema  # DataFrame.schema builds a new mapping per call: read it once
    learned_key = ((), tuple(sorted((category_modes or {}).items())))
    clean, extremes = _clean_columns(frame, columns, types)
    casts, raw_copies, reasons, flags, fixes, bad_if, flag_if = _rules(
        schema, stage, tuple((c.name, types[c.name]) for c in columns), source, _vocab_key(schema, vocabularies),
        learned_key, clean)

    def texts(rules: list[tuple[pl.Expr, pl.Expr]], separator: str) -> pl.Expr:
        return pl.concat_str([pl.when(cond).then(msg) for cond, msg in rules], separator=separator,
                             ignore_nulls=True)

    # Cast, then decide which rows fail and which are flagged.
    checked = raw.select(pl.col("_row"), *casts, *raw_copies).with_columns(bad_if, flag_if)
    # Messages quote values, and turning numbers into text is the costliest step of validation: build
    # reasons for the rejected rows and flags for the flagged rows only.
    bad = checked.get_column("__bad")
    if bad.any():
        valid, bad_rows = checked.filter(~bad), checked.filter(bad)
    else:
        valid, bad_rows = checked, checked.clear()
    if flags and valid.height and valid["__flagged"].any():
        row_flags = valid.select(pl.when(pl.col("__flagged")).then(texts(flags, ",")).otherwise(pl.lit(""))
                                 .fill_null("").alias("_flags")).to_series()
    else:
        row_flags = pl.repeat("", valid.height, dtype=pl.String, eager=True).alias("_flags")
    if fixes:
        valid = valid.with_columns(fixes)
    if training_ranges:  # after the explicit rules: the learned rule sees the values they kept
        # Columns passed through untouched keep their extremes: no second statistics pass for them.
        valid, learned_flags = _learned(valid, schema, training_ranges, flags=True,
                                        known={k: v for k, v in extremes.items() if k in clean})
        if learned_flags is not None:
            row_flags = pl.DataFrame({"a": row_flags, "b": learned_flags}).select(
                pl.when(pl.col("a") == "").then(pl.col("b")).when(pl.col("b") == "").then(pl.col("a"))
                .otherwise(pl.concat_str(["a", "b"], separator=",")).alias("_flags")).to_series()
    if vocabularies:
        warnings.extend(category_warnings(valid, schema, vocabularies, category_modes or {}, source))
    keep = [c.name for c in columns]
    rejected_rows = bad_rows.select("_row", texts(reasons, "; ").alias("_reason")) if bad_rows.height \
        else pl.DataFrame(schema={"_row": pl.UInt32, "_reason": pl.String})
    rejects = (
        raw.join(rejected_rows, on="_row", how="inner", maintain_order="left")
        .select([pl.col(n).cast(pl.String) for n in frame.columns] + [pl.col("_row"), pl.col("_reason")])
        if rejected_rows.height
        else pl.DataFrame(schema={**{n: pl.String for n in frame.columns}, "_row": pl.UInt32, "_reason": pl.String})
    )
    return ValidationResult(valid=valid.select(keep), rejects=rejects, flags=row_flags, warnings=warnings,
                            rows=valid.get_column("_row"))


def apply_training_ranges(frame: pl.DataFrame, schema: Schema,
                          training_ranges: Mapping[str, tuple[float, float]] | None) -> pl.DataFrame:
    """``frame`` (validated rows) with the learned range rule's clipping applied, as scoring applies it:
    the engine evaluates the validation and test splits this way so scoring reproduces evaluation."""
    if not training_ranges:
        return frame
    return _learned(frame, schema, training_ranges, flags=False)[0]


def category_warnings(frame: pl.DataFrame, schema: Schema, vocabularies: Mapping[str, Collection[str]],
                      modes: Mapping[str, str], source: str) -> list[str]:
    """Warnings for category values outside the vocabulary: matched only after normalisation (scored as
    that category), or close to a category (a likely misspelling, scored as unknown)."""
    import difflib

    from verticals.data.tabular import category_key

    pl = _pl()
    notes: list[str] = []
    for c in schema.features:
        vocab = [str(v) for v in vocabularies.get(c.name, [])]
        if c.dtype != "category" or not vocab or c.name not in frame.columns:
            continue
        values = frame.get_column(c.name).cast(pl.String)
        odd = values.filter(values.is_not_null() & ~values.is_in(vocab) & (values.str.strip_chars() != ""))
        if not odd.len():
            continue
        counts = odd.value_counts(name="n", sort=True).head(NEAR_MISS_VALUES).rows()
        mode = _mode(c, modes)
        keys = {category_key(v, mode): v for v in vocab}
        folded = {category_key(v, "casefold"): v for v in vocab}
        matched, close = [], []
        for value, n in counts:
            if category_key(value, mode) in keys:
                matched.append(f"{value!r} as {keys[category_key(value, mode)]!r} ({n})")
                continue
            near = folded.get(category_key(value, "casefold")) or next(
                iter(difflib.get_close_matches(category_key(value, "casefold"), list(folded), n=1,
                                               cutoff=NEAR_MISS_CUTOFF)), None)
            if near is not None:
                close.append(f"{value!r} ({n} rows; did you mean {folded.get(near, near)!r}?)")
        if matched:
            how = {"casefold": "trimming and case-folding", "trim": "trimming"}.get(mode, mode)
            notes.append(f"{source}: column '{c.name}': value(s) matched a training category only after {how}: "
                         f"{', '.join(matched[:5])}{' ...' if len(matched) > 5 else ''}; scored as that category")
        if close:
            notes.append(f"{source}: column '{c.name}': unknown category {', '.join(close[:5])}"
                         f"{' ...' if len(close) > 5 else ''}; scored as unknown (fix the value, or retrain "
                         "with it)")
    return notes
