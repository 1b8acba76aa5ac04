"""Reason codes built from offsets give, row by row, what the per-slot definition gives: the top reasons
in rank order, without the slots that cost too little (or nothing finite), with their points and texts."""

from __future__ import annotations

import numpy as np
import polars as pl
from verticals_finance.reasons import reason_codes

NAMES = ["income", "age", "debt", "amount", "home", "job"]
TEXTS = {"numeric": {n: {"high": f"{n} high", "low": f"{n} low", "missing": f"{n} missing"}
                     for n in NAMES[:4]},
         "categorical": {"home": ["home unknown", "home is rent", "home is own"],
                         "job": ["job unknown", "job is fixed"]}}


def _expected(lost, top, min_points, x_num, x_cat, medians):
    rows = []
    for r in range(lost.shape[0]):
        ranked = sorted(range(len(NAMES)), key=lambda j: (-lost[r, j] if lost[r, j] >= min_points else np.inf, j))
        picked = [j for j in ranked[:top] if lost[r, j] >= min_points and np.isfinite(lost[r, j])]
        texts = []
        for j in picked:
            if j < 4:
                v = x_num[r, j]
                texts.append(TEXTS["numeric"][NAMES[j]]["missing" if np.isnan(v) else "high" if v > medians[j] else "low"])
            else:
                vocab = TEXTS["categorical"][NAMES[j]]
                texts.append(vocab[min(int(x_cat[r, j - 4]), len(vocab) - 1)])
        rows.append(([NAMES[j] for j in picked], [round(float(lost[r, j]), 1) for j in picked], texts))
    return rows


def test_reason_lists_match_the_per_row_definition():
    rng = np.random.default_rng(3)
    n = 300
    lost = rng.normal(2, 4, (n, len(NAMES)))
    lost[rng.random(lost.shape) < 0.05] = np.nan
    lost[rng.random(lost.shape) < 0.02] = np.inf  # never a reason: not a finite cost
    x_num = rng.normal(0, 1, (n, 4)).astype(np.float32)
    x_num[rng.random(x_num.shape) < 0.1] = np.nan
    x_cat = rng.integers(0, 3, (n, 2))
    medians = [0.0, 0.1, -0.1, 0.0]
    reasons, points, texts = reason_codes(lost, NAMES, top=3, min_points=1.0, texts=TEXTS,
                                          inputs={"x_num": x_num, "x_cat": x_cat}, medians=medians)
    assert (reasons.dtype, points.dtype, texts.dtype) == (pl.List(pl.String), pl.List(pl.Float64), pl.List(pl.String))
    assert (reasons.name, points.name, texts.name) == ("reasons", "reason_points", "reason_texts")
    got = list(zip(reasons.to_list(), points.to_list(), texts.to_list(), strict=True))
    assert got == [tuple(e) for e in _expected(lost, 3, 1.0, x_num, x_cat, medians)]
    assert any(len(r) == 0 for r in reasons.to_list()) and any(len(r) == 3 for r in reasons.to_list())
