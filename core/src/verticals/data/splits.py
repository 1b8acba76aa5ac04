"""Train / validation / test splits that do not leak.

One function, :func:`split_frame`, follows the dataset's :class:`~verticals.spec.SplitSpec`:

* ``stratified``: random within each target value, so every split keeps the class balance (a float
  target with many values is stratified on its deciles);
* ``random``: a seeded permutation of the rows;
* ``group``: the groups (``role="group"`` column, e.g. a patient or machine) are permuted and cut, so a
  group never spans two splits; the fractions count groups, not rows;
* ``time``: rows are ordered by the ``role="time"`` column and cut at the fractions of the rows; a
  boundary time belongs wholly to the later split, so validation starts strictly after the last
  training time and test strictly after the last validation time;
* ``leave_last``: per group (a user), ordered by time with ties broken by a seeded shuffle, the last
  ``holdout`` rows are test and the ``holdout`` before them validation; the rest is training. The
  validation and test frames also carry the group's earlier rows as *context* (:data:`CONTEXT` true):
  a preprocessor reads them as history but makes no example of them. Groups with fewer than
  ``min_rows`` rows (or, with ``positive_only``, fewer positive rows) stay in training;
* ``group_time``: per group (a machine), ordered by time, cut at two global times (the fractions of the
  rows): rows before ``t_valid - gap`` are training, rows in ``[t_valid, t_test - gap)`` validation,
  rows from ``t_test`` on test. Rows inside a gap are examples of no split, so no training example's
  label window (the prediction horizon, at most ``gap``) reaches into the validation or test period.
  Validation and test carry every earlier row of their groups as context.

Every split is deterministic for a seed and keeps the input's row order within each part. Sizes are
rounded per stratum (or group count), so they can differ from the fractions by a row per stratum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from verticals.errors import DataValidationError, PluginError
from verticals.spec import CONTEXT, DatasetSpec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["Splits", "split_frame"]

#: A float target with more distinct values than this is stratified on its deciles.
_MAX_STRATA = 50


@dataclass
class Splits:
    """The three parts of a dataset (polars frames of validated rows); a plain picklable dataclass."""

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    strategy: str = ""
    seed: int | None = None

    def sizes(self) -> dict[str, int]:
        """Example rows per split (context rows not counted): ``{"train": ..., "valid": ..., "test": ...}``."""
        return {name: _examples(frame) for name, frame in self.items()}

    def context_sizes(self) -> dict[str, int]:
        """Context rows per split (history that is read but never an example)."""
        return {name: frame.height - _examples(frame) for name, frame in self.items()}

    def items(self) -> list[tuple[str, pl.DataFrame]]:
        """``[("train", frame), ("valid", frame), ("test", frame)]``."""
        return [("train", self.train), ("valid", self.valid), ("test", self.test)]


def _examples(frame: pl.DataFrame) -> int:
    import polars as pl

    if CONTEXT not in frame.columns:
        return frame.height
    return int(frame.select((~pl.col(CONTEXT).fill_null(False)).sum()).item())


def _counts(n: int, test_fraction: float, valid_fraction: float) -> tuple[int, int]:
    """Test and validation sizes out of ``n`` items (rounded; never more than ``n`` together)."""
    n_test = min(n, round(n * test_fraction))
    n_valid = min(n - n_test, round(n * valid_fraction))
    return n_test, n_valid


def _assign(order: np.ndarray, n_test: int, n_valid: int, labels: np.ndarray) -> None:
    """Write split codes (0 train, 1 valid, 2 test) for the items in ``order`` (already shuffled)."""
    labels[order[:n_test]] = 2
    labels[order[n_test:n_test + n_valid]] = 1


def _strata(frame: pl.DataFrame, target: str) -> np.ndarray:
    """One integer stratum per row: the target value, or its decile for a many-valued float target."""
    import numpy as np
    import polars as pl

    col = frame.get_column(target)
    if col.dtype.is_float() and col.n_unique() > _MAX_STRATA:
        values = col.to_numpy().astype(np.float64)
        finite = values[np.isfinite(values)]
        edges = np.unique(np.quantile(finite, np.linspace(0.1, 0.9, 9))) if finite.size else np.array([])
        strata = np.searchsorted(edges, values, side="right")
        strata[~np.isfinite(values)] = -1
        return strata
    return col.cast(pl.String).fill_null("\0null").rank("dense").cast(pl.Int64).to_numpy()


def split_frame(frame: pl.DataFrame | pl.LazyFrame, dataset: DatasetSpec, seed: int,
                positive: Any = None) -> Splits:
    """Split validated rows into train, validation and test following ``dataset.split``.

    Args:
        frame: the dataset's valid rows.
        dataset: whose ``split`` (strategy, fractions) and schema (target, group, time) are used.
        seed: the same seed and rows give the same splits.
        positive: accepted for symmetry with the preprocessor; stratification uses every target
            value, so a binary target is balanced whatever its positive label.

    Raises:
        PluginError: the fractions are invalid, or the strategy needs a column the schema lacks.
        DataValidationError: the group or time column is missing from the rows or has missing values.
    """
    import numpy as np
    import polars as pl

    del positive  # stratifying on every label balances the positive class too
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    spec = dataset.split
    name = dataset.qualified_name
    if not (0 <= spec.test_fraction < 1 and 0 <= spec.valid_fraction < 1
            and spec.test_fraction + spec.valid_fraction < 1):
        raise PluginError(
            f"dataset '{name}': split fractions test={spec.test_fraction}, valid={spec.valid_fraction} "
            "leave no training rows",
            hint="use fractions in [0, 1) whose sum is below 1",
        )
    n = frame.height
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int8)
    strategy = spec.strategy

    if strategy == "random" or (strategy == "stratified" and dataset.schema.target is None):
        n_test, n_valid = _counts(n, spec.test_fraction, spec.valid_fraction)
        _assign(rng.permutation(n), n_test, n_valid, labels)
    elif strategy == "stratified":
        target = dataset.schema.target.name
        _require_column(frame, target, name, "stratified")
        strata = _strata(frame, target)
        order = np.argsort(strata, kind="stable")
        bounds = np.flatnonzero(np.diff(strata[order])) + 1
        for members in np.split(order, bounds):
            if members.size == 0:
                continue
            n_test, n_valid = _counts(members.size, spec.test_fraction, spec.valid_fraction)
            _assign(members[rng.permutation(members.size)], n_test, n_valid, labels)
    elif strategy == "group":
        group = dataset.schema.group
        if group is None:
            raise PluginError(
                f"dataset '{name}' splits by group but its schema has no column with role='group'",
                hint="mark the grouping column (patient, user, machine) with role='group'",
            )
        _require_column(frame, group, name, "group")
        codes = frame.get_column(group)
        if codes.null_count():
            raise DataValidationError(
                f"dataset '{name}': group column '{group}' has {codes.null_count()} missing value(s)",
                hint=f"set on_missing='reject' on '{group}' or fill it in the loader",
            )
        # Sorted unique groups, then a seeded permutation: independent of the rows' order.
        uniques, inverse = np.unique(codes.cast(pl.String).to_numpy().astype(str), return_inverse=True)
        n_test, n_valid = _counts(uniques.size, spec.test_fraction, spec.valid_fraction)
        group_labels = np.zeros(uniques.size, dtype=np.int8)
        _assign(rng.permutation(uniques.size), n_test, n_valid, group_labels)
        labels = group_labels[inverse.reshape(-1)]
    elif strategy == "time":
        time = dataset.schema.time
        if time is None:
            raise PluginError(
                f"dataset '{name}' splits by time but its schema has no column with role='time'",
                hint="mark the timestamp column with role='time'",
            )
        _require_column(frame, time, name, "time")
        times = frame.get_column(time)
        if times.null_count():
            raise DataValidationError(
                f"dataset '{name}': time column '{time}' has {times.null_count()} missing value(s); "
                "a time split needs every row's time",
                hint=f"set on_missing='reject' on '{time}'",
            )
        n_test, n_valid = _counts(n, spec.test_fraction, spec.valid_fraction)
        ordered = times.sort()
        # A boundary time goes wholly to the later split: every row at or after the time found at the
        # cut position moves there, so valid starts strictly after train and test after valid.
        if n_valid:
            labels[(times >= ordered[n - n_test - n_valid]).to_numpy()] = 1
        if n_test:
            labels[(times >= ordered[n - n_test]).to_numpy()] = 2
    elif strategy in ("leave_last", "group_time"):
        return _grouped_split(frame, dataset, seed, rng)
    else:
        raise PluginError(
            f"dataset '{name}' has unknown split strategy {strategy!r}",
            hint="use one of stratified, random, group, time, leave_last, group_time",
        )

    parts = [frame.filter(pl.Series(labels == code)) for code in (0, 1, 2)]
    return Splits(train=parts[0], valid=parts[1], test=parts[2], strategy=strategy, seed=seed)


def _require_column(frame: pl.DataFrame, column: str, dataset: str, strategy: str) -> None:
    if column not in frame.columns:
        raise DataValidationError(
            f"dataset '{dataset}': the {strategy} split needs column '{column}', which the rows lack",
            hint=f"keep '{column}' in the frame passed to split_frame",
        )


def _group_and_time(frame: pl.DataFrame, dataset: DatasetSpec, strategy: str) -> tuple[str, str]:
    name = dataset.qualified_name
    group, time = dataset.schema.group, dataset.schema.time
    if group is None or time is None:
        raise PluginError(
            f"dataset '{name}' splits by {strategy} but its schema lacks a column with role="
            f"{'group' if group is None else 'time'}",
            hint="mark the user/machine column role='group' and the timestamp column role='time'",
        )
    for column in (group, time):
        _require_column(frame, column, name, strategy)
        missing = frame.get_column(column).null_count()
        if missing:
            raise DataValidationError(
                f"dataset '{name}': {strategy} split column '{column}' has {missing} missing value(s)",
                hint=f"set on_missing='reject' on '{column}'",
            )
    return group, time


def _grouped_split(frame: pl.DataFrame, dataset: DatasetSpec, seed: int, rng: np.random.Generator) -> Splits:
    """``leave_last`` and ``group_time``: examples per split, earlier rows of a group as context."""
    import numpy as np
    import polars as pl

    spec = dataset.split
    strategy = spec.strategy
    group, time = _group_and_time(frame, dataset, strategy)
    # A seeded tie-breaker: rows of a group at the same time are ordered by it, never by their ids.
    work = frame.with_columns(pl.Series("__tie", rng.permutation(frame.height)),
                              pl.Series("__row", np.arange(frame.height)))
    work = work.sort([group, time, "__tie"])
    labels = np.zeros(work.height, dtype=np.int8)  # 0 train, 1 valid, 2 test, -1 in a gap (no split)
    group_index = work.get_column(group).rle_id().to_numpy()
    starts = np.flatnonzero(np.r_[True, np.diff(group_index) != 0])
    if strategy == "leave_last":
        holdout = max(1, int(spec.holdout))
        eligible = pl.lit(True)
        target = dataset.schema.target
        if spec.positive_only and target is not None and target.name in work.columns:
            positive = dataset.target_positive if dataset.target_positive is not None else 1
            eligible = pl.col(target.name).cast(pl.String) == str(positive)
        ranked = work.with_columns(eligible.alias("__ok")).with_columns(
            pl.when(pl.col("__ok")).then(pl.col("__ok").cast(pl.Int64).cum_sum(reverse=True).over(group))
            .otherwise(None).alias("__from_end"),
            pl.col("__ok").cast(pl.Int64).sum().over(group).alias("__n_ok"),
            pl.len().over(group).alias("__n"))
        enough = (pl.col("__n") >= max(int(spec.min_rows), 2 * holdout + 1)) & (pl.col("__n_ok") >= 2 * holdout + 1)
        code = (pl.when(enough & (pl.col("__from_end") <= holdout)).then(2)
                .when(enough & (pl.col("__from_end") <= 2 * holdout)).then(1).otherwise(0))
        labels = ranked.select(code.cast(pl.Int8)).to_series().to_numpy().copy()
        # Rows after a group's first held-out row are never training history: with positive_only a
        # non-positive row after the test item would otherwise leak the future into training.
        held = np.where(labels > 0, np.arange(work.height), work.height)
        first_held = np.minimum.reduceat(held, starts)[group_index]
        labels[(labels == 0) & (np.arange(work.height) > first_held)] = -1
    else:
        if not (0 <= spec.test_fraction < 1 and 0 <= spec.valid_fraction < 1
                and spec.test_fraction + spec.valid_fraction < 1):
            raise PluginError(f"dataset '{dataset.qualified_name}': split fractions leave no training rows",
                              hint="use fractions in [0, 1) whose sum is below 1")
        times = work.get_column(time)
        numeric = times.dt.epoch("us").cast(pl.Float64) / 1e6 if times.dtype.is_temporal() else times.cast(pl.Float64)
        values = numeric.to_numpy()
        ordered = np.sort(values)
        n = values.size
        n_test, n_valid = _counts(n, spec.test_fraction, spec.valid_fraction)
        t_test = ordered[n - n_test] if n_test else np.inf
        t_valid = ordered[n - n_test - n_valid] if n_valid else t_test
        gap = float(spec.gap)
        labels[:] = -1
        labels[values < t_valid - gap] = 0
        labels[(values >= t_valid) & (values < t_test - gap)] = 1
        labels[values >= t_test] = 2
    position = np.arange(work.height)
    parts = []
    for code in (0, 1, 2):
        if code == 0:
            keep, context = labels == 0, None
        else:
            # Examples of this split plus every earlier row of their groups, as context.
            last = np.maximum.reduceat(np.where(labels == code, position, -1), starts)[group_index]
            keep = position <= last
            context = pl.Series(CONTEXT, (labels != code)[keep])
        part = work.filter(pl.Series(keep)).drop("__tie", "__row")
        if context is not None:
            part = part.with_columns(context)
        parts.append(part)
    return Splits(train=parts[0], valid=parts[1], test=parts[2], strategy=strategy, seed=seed)
