"""Patient-level splits: every image of a patient lands in the same split, always.

Patients (not images) are shuffled with the seed, separately per class, and cut into test, validation
and training by the dataset's fractions, so each split keeps the classes' patient balance. A patient
whose images carry two different labels is refused: a patient-level split cannot keep such a patient
whole and honest at once. Without a ``patient`` column each image is its own patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from verticals.errors import DataValidationError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl
    from verticals.spec import DatasetSpec

__all__ = ["patient_split"]


def patient_split(frame: pl.DataFrame, dataset: DatasetSpec, seed: int, classes: Sequence[str]) -> Any:
    """``Splits(train, valid, test)`` of ``frame`` by patient (see the module docstring).

    Raises:
        DataValidationError: a patient has images of two classes, or a class has fewer than 3 patients.
    """
    import numpy as np
    import polars as pl
    from verticals.data.splits import Splits

    name = dataset.qualified_name
    if "patient" not in frame.columns or frame.get_column("patient").null_count() == frame.height:
        frame = frame.with_columns(pl.col("path").cast(pl.String).alias("patient"))
    else:
        frame = frame.with_columns(pl.coalesce(pl.col("patient").cast(pl.String), pl.col("path").cast(pl.String)))
    labels = frame.group_by("patient").agg(pl.col("label").cast(pl.String).unique().alias("labels"),
                                           pl.len().alias("images"))
    mixed = labels.filter(pl.col("labels").list.len() > 1)
    if mixed.height:
        first = mixed.sort("patient").row(0, named=True)
        raise DataValidationError(
            f"dataset '{name}': {mixed.height} patient(s) have images of more than one class, e.g. patient "
            f"{first['patient']} ({', '.join(sorted(first['labels']))})",
            hint="label per patient (or per study with one study per patient id); images of one patient "
                 "must share a class so that a patient never spans two splits")
    labels = labels.with_columns(pl.col("labels").list.first().alias("label")).sort("patient")
    fractions = dataset.split
    rng = np.random.default_rng(seed)
    assign: dict[str, str] = {}
    for cls in classes:
        patients = labels.filter(pl.col("label") == cls).get_column("patient").to_list()
        if len(patients) < 3:
            raise DataValidationError(
                f"dataset '{name}': class '{cls}' has {len(patients)} patient(s); a patient-level split needs "
                "at least 3 (one each for training, validation and test)",
                hint=f"add images of more '{cls}' patients")
        order = rng.permutation(len(patients))
        n_test = max(1, round(len(patients) * fractions.test_fraction))
        n_valid = max(1, round(len(patients) * fractions.valid_fraction))
        n_test = min(n_test, len(patients) - 2)
        n_valid = min(n_valid, len(patients) - n_test - 1)
        for rank, index in enumerate(order):
            assign[patients[index]] = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
    part = frame.get_column("patient").replace_strict(assign, return_dtype=pl.String)
    pick = {s: frame.filter(part == s) for s in ("train", "valid", "test")}
    return Splits(pick["train"], pick["valid"], pick["test"], strategy="patient", seed=seed)
