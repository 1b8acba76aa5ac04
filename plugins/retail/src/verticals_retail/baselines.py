"""The strong simple baselines, measured on the same split and with the same masking as the model.

* ``popularity``: the most interacted training items the user has not seen;
* ``item_knn``: cosine similarity of items on the binary user–item training matrix, each item keeping
  its ``neighbours`` most similar items; a user's score of an item is the sum of its similarities to
  the items of the user's history;
* ``ease``: Steck's EASE (WWW 2019), the closed-form item–item linear model
  ``B = I - P·diag(1/diag(P))``, ``P = (XᵀX + λI)⁻¹`` with a zero diagonal; λ is chosen on validation.

Every ranking excludes the items the user has seen (the same ``seen`` multi-hot the graph masks).
Dense matrices: memory is ``items²`` floats (6,096 MovieLens items: 150 MB), fine for catalogues up
to a few tens of thousands of items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["CURVE", "ease_weights", "interaction_matrix", "item_knn_weights", "ranking_metrics", "top_items"]

#: Recall@k is reported for k = 1 … CURVE.
CURVE = 50


def interaction_matrix(histories: Iterable[Sequence[int]], items: int) -> np.ndarray:
    """The binary user × item matrix (float32) of training histories."""
    import numpy as np

    lists = [list(h) for h in histories]
    x = np.zeros((len(lists), items), dtype=np.float32)
    rows = np.repeat(np.arange(len(lists)), [len(h) for h in lists])
    cols = np.asarray([c for h in lists for c in h], dtype=np.int64)
    x[rows, cols] = 1.0
    return x


def item_knn_weights(x: np.ndarray, neighbours: int = 100) -> np.ndarray:
    """Cosine item–item similarities, each row keeping its ``neighbours`` largest (self excluded)."""
    import numpy as np

    counts = x.sum(axis=0)
    norms = np.sqrt(counts)
    sim = (x.T @ x) / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(sim, 0.0)
    keep = min(neighbours, sim.shape[1])
    if keep < sim.shape[1]:
        cut = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
        sparse = np.zeros_like(sim)
        np.put_along_axis(sparse, cut, np.take_along_axis(sim, cut, axis=1), axis=1)
        sim = sparse
    return sim.astype(np.float32)


def ease_weights(x: np.ndarray, lam: float) -> np.ndarray:
    """EASE's item–item weights ``B`` for regularisation ``lam`` (zero diagonal)."""
    import numpy as np

    gram = (x.T @ x).astype(np.float32)  # float32: half the time of float64; lambda >= 1 keeps it well conditioned
    gram[np.diag_indices_from(gram)] += float(lam)
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def top_items(scores: np.ndarray | Callable[[np.ndarray], np.ndarray], seen: np.ndarray, k: int = CURVE,
              chunk: int = 1024) -> np.ndarray:
    """The ``k`` best unseen items per row, best first (ties by item index)."""
    import numpy as np

    out = []
    for lo in range(0, seen.shape[0], chunk):
        part = seen[lo:lo + chunk]
        s = scores(part) if callable(scores) else np.broadcast_to(scores, part.shape)
        s = np.where(part > 0, -np.inf, s.astype(np.float64))
        k_ = min(k, s.shape[1])
        cut = np.argpartition(-s, k_ - 1, axis=1)[:, :k_]
        order = np.lexsort((cut, -np.take_along_axis(s, cut, axis=1)), axis=1)
        out.append(np.take_along_axis(cut, order, axis=1))
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def ranking_metrics(top: np.ndarray, target: np.ndarray, counts: np.ndarray, k: int = 10) -> dict[str, object]:
    """Recall@k (= hit rate: one held-out item), NDCG@k, coverage@k, popularity bias, Recall@1…CURVE.

    ``popularity_bias@k``: the mean popularity percentile (0 = least, 1 = most interacted training
    item) of the recommended items; ``coverage@k``: share of the catalogue recommended to anyone.
    """
    import numpy as np

    if not len(target):
        return {}
    hit = top == np.asarray(target)[:, None]
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), top.shape[1])
    head = top[:, :k]
    ranks = np.argsort(np.argsort(counts, kind="stable"), kind="stable") / max(len(counts) - 1, 1)
    return {
        f"recall@{k}": float((first < k).mean()),
        f"ndcg@{k}": float(np.where(first < k, 1.0 / np.log2(first + 2.0), 0.0).mean()),
        f"coverage@{k}": float(np.unique(head).size / len(counts)),
        f"popularity_bias@{k}": float(ranks[head].mean()),
        "recall_curve": {str(j): float((first < j).mean()) for j in range(1, top.shape[1] + 1)},
    }
