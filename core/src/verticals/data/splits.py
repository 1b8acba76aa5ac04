"""Train / validation / test splits that do not leak.

One function, :func:`split_frame`, follows the dataset's :class:`~verticals.spec.SplitSpec`:

* ``stratified``: random within each target value, so every split keeps the class balance (a float
  target with many values is stratified on its deciles);
* ``random``: a seeded permutation of the rows;
* ``group``: the groups (``role="group"`` column, e.g. a patient or machine) are permuted and cut, so a
  group never spans two splits; the fractions count groups, not rows;
* ``time``: rows are ordered by the ``role="time"`` column and cut at the fractions of the rows; a
  boundary time belongs wholly to the later split, so validation starts strictly after the last
  training time and test strictly after the last validation time.

Every split is deterministic for a seed and keeps the input's row order within each part. Sizes are
rounded per stratum (or group count), so they can differ from the fractions by a row per stratum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from verticals.errors import DataValidationError, PluginError
from verticals.spec import DatasetSpec

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
        """Rows per split: ``{"train": ..., "valid": ..., "test": ...}``."""
        return {"train": self.train.height, "valid": self.valid.height, "test": self.test.height}

    def items(self) -> list[tuple[str, pl.DataFrame]]:
        """``[("train", frame), ("valid", frame), ("test", frame)]``."""
        return [("train", self.train), ("valid", self.valid), ("test", self.test)]


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
    else:
        raise PluginError(
            f"dataset '{name}' has unknown split strategy {strategy!r}",
            hint="use one of stratified, random, group, time",
        )

    parts = [frame.filter(pl.Series(labels == code)) for code in (0, 1, 2)]
    return Splits(train=parts[0], valid=parts[1], test=parts[2], strategy=strategy, seed=seed)


def _require_column(frame: pl.DataFrame, column: str, dataset: str, strategy: str) -> None:
    if column not in frame.columns:
        raise DataValidationError(
            f"dataset '{dataset}': the {strategy} split needs column '{column}', which the rows lack",
            hint=f"keep '{column}' in the frame passed to split_frame",
        )
