"""Top-k recommendation metrics: recall@k, NDCG@k and catalogue coverage, in numpy.

Conventions: ``recommended`` is an integer matrix ``[examples, k]`` of item indices, best first (what a
top-k graph output holds); ``target`` holds one relevant item index per example (the held-out
interaction of a leave-last split). Entries below 0 in ``recommended`` are empty slots (fewer than
``k`` candidates) and never hit. With one relevant item per example:

* ``recall@k`` is the share of examples whose item is among the first ``k`` recommendations;
* ``NDCG@k`` is the mean of ``1 / log2(rank + 2)`` over examples whose item is at 0-based ``rank < k``
  (0 for the others): the ideal DCG of a single relevant item is 1, so no normalisation is left. It
  equals scikit-learn's ``ndcg_score`` on the one-hot relevance of the recommended slots (the tests
  check that).
* ``coverage`` is the share of the catalogue that appears in at least one recommendation list.

Empty inputs give ``nan`` rather than an exception, so one empty split does not stop a training run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["coverage", "hit_ranks", "ndcg_at_k", "recall_at_k"]


def _matrix(recommended: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be a 2-d matrix [examples, k], got shape {rec.shape}")
    tgt = np.asarray(target).reshape(-1)
    if tgt.size != rec.shape[0]:
        raise ValueError(f"target has {tgt.size} values but recommended has {rec.shape[0]} rows")
    return rec.astype(np.int64, copy=False), tgt.astype(np.int64, copy=False)


def hit_ranks(recommended: np.ndarray, target: np.ndarray, k: int | None = None) -> np.ndarray:
    """0-based rank of each example's target among its first ``k`` recommendations, ``-1`` if absent."""
    import numpy as np

    rec, tgt = _matrix(recommended, target)
    if k is not None:
        rec = rec[:, : max(0, int(k))]
    hits = (rec == tgt[:, None]) & (rec >= 0)
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1), -1)


def recall_at_k(recommended: np.ndarray, target: np.ndarray, k: int | None = None) -> float:
    """Share of examples whose target item is among the first ``k`` recommendations."""
    ranks = hit_ranks(recommended, target, k)
    return float((ranks >= 0).mean()) if ranks.size else float("nan")


def ndcg_at_k(recommended: np.ndarray, target: np.ndarray, k: int | None = None) -> float:
    """Mean NDCG@k with one relevant item per example (``1 / log2(rank + 2)`` on a hit, else 0)."""
    import numpy as np

    ranks = hit_ranks(recommended, target, k)
    if not ranks.size:
        return float("nan")
    gains = np.where(ranks >= 0, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    return float(gains.mean())


def coverage(recommended: np.ndarray, catalogue_size: int) -> float:
    """Share of the ``catalogue_size`` items that appear in at least one recommendation list."""
    import numpy as np

    rec = np.asarray(recommended).reshape(-1)
    if catalogue_size <= 0:
        return float("nan")
    return float(np.unique(rec[rec >= 0]).size / catalogue_size)
