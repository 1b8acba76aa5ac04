"""The baselines of a training run, on the run's own split and with the model's masking.

Each baseline is fitted on the training histories the preprocessor saw, ranks the validation and
test examples the model ranks (the same ``seen`` multi-hot masks every list), and is scored with the
same metric code. EASE's λ is the candidate with the best validation NDCG@10; test is read once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verticals_retail.baselines import (
    CURVE,
    ease_weights,
    interaction_matrix,
    item_knn_weights,
    ranking_metrics,
    top_items,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["BASELINES", "fit_baselines"]

BASELINES = ("popularity", "item_knn", "ease")


def _split(pre: Any, frame: Any) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    batch = pre.transform(frame, with_target=True)
    return batch.inputs["seen"], np.asarray(batch.target if batch.target is not None else [], dtype=np.int64)


def fit_baselines(pipe: Any, context: Any) -> dict[str, Any]:
    """``fit_extras`` of the retail pipelines: baseline metrics (test), their Recall@k curves, EASE's λ,
    the validation comparison that picks the shipped model, and what scoring needs (list length)."""
    import numpy as np

    pre = context.preprocessor
    counts = np.asarray(pre.counts, dtype=np.float64)
    items = len(pre.items)
    x = interaction_matrix(pre.histories.get_column("items").to_list(), items)
    seen_valid, y_valid = _split(pre, context.splits.valid)
    seen_test, y_test = _split(pre, context.splits.test)
    k = min(CURVE, items)

    def measure(scorer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return (ranking_metrics(top_items(scorer, seen_valid, k), y_valid, counts),
                ranking_metrics(top_items(scorer, seen_test, k), y_test, counts))

    valid: dict[str, dict[str, Any]] = {}
    test: dict[str, dict[str, Any]] = {}
    valid["popularity"], test["popularity"] = measure(counts)
    knn = item_knn_weights(x, pipe.knn_neighbours)
    valid["item_knn"], test["item_knn"] = measure(lambda seen: seen @ knn)

    tried: dict[str, float] = {}
    best: tuple[float, float, Any] | None = None
    for lam in pipe.ease_lambdas:
        weights = ease_weights(x, lam)
        v = ranking_metrics(top_items(lambda seen, w=weights: seen @ w, seen_valid, k), y_valid, counts)
        tried[f"{lam:g}"] = v.get("ndcg@10", float("nan"))
        if best is None or v.get("ndcg@10", -1.0) > best[0]:
            best = (v.get("ndcg@10", -1.0), lam, weights)
    assert best is not None
    _, lam, weights = best
    valid["ease"], test["ease"] = measure(lambda seen: seen @ weights)


    def head(m: dict[str, Any]) -> dict[str, float]:
        return {key: float(value) for key, value in m.items() if key != "recall_curve"}

    model_valid = {key: value for key, value in (context.metrics.get("valid") or {}).items()
                   if key in ("recall@10", "ndcg@10")}
    on_valid = {"model": model_valid.get("ndcg@10", float("nan")),
                **{name: valid[name].get("ndcg@10", float("nan")) for name in BASELINES}}
    return {
        "catalogue_items": items,
        "list_length": int(pre.k),
        "baseline_metrics": {name: head(test[name]) for name in BASELINES},
        "baseline_curves": {name: test[name].get("recall_curve", {}) for name in BASELINES},
        "baseline_validation": {name: head(valid[name]) for name in BASELINES},
        "ease_lambda": float(lam),
        "ease_lambda_validation_ndcg": tried,
        "validation_ndcg@10": on_valid,
        "best_on_validation": max(on_valid, key=lambda n: -1.0 if on_valid[n] != on_valid[n] else on_valid[n]),
        "split": {"valid_examples": len(y_valid), "test_examples": len(y_test),
                  "tie_seed": getattr(context.splits, "seed", None)},
    }
