"""Failure metrics, the cost-based alert threshold and the training target shared by both pipelines.

**Target encoding.** The core hands a pipeline's loss one target per example. A failure prediction
model learns two things from it: *whether* the machine fails (binary) and, for a failure, *which modes*
(multi-label: TWF, HDF, PWF, OSF, RNF, or the fleet's modes). Both travel in one float:
``0`` for no failure, ``1 + bits / 64`` for a failure whose modes are the set bits of ``bits``
(``bits`` < 32, 0 when no mode is known). Everything above 0.5 is a failure, which is how the core's
binary metrics and class weights read it.

**Auxiliary horizons.** The fleet pipeline's target has more columns (``[N, 1 + K]``, see
:class:`verticals.spec.Batch`): column 0 is the encoded failure above, columns 1… say whether the
machine fails within each of K shorter and longer horizons (1 / 0, or −1 where the data cannot tell:
its readings end first, or the horizon reaches into the next split's period). A network with one
logit per horizon (``window_gru(auxiliary=True)``'s head, used only in training) learns them too (weight
:data:`AUX_LOSS_WEIGHT`): the same failures seen at several distances, meant as a smoother signal of
how close a failure is than one cut at H. Measured on the built-in fleet it did not help
(docs/manufacturing.md), so it is an option, not the default.

**Alert threshold.** The user states what a missed failure costs and what a false alarm (a needless
stop and inspection) costs. The threshold that minimises the expected cost per example on the
validation split is stored with the model and applied at scoring (``alert`` column).
Defaults: a missed failure 10,000, a false alarm 500 (currency units of the user's choice; only the
ratio, 20:1, matters): an unplanned stop with scrap and a damaged tool against an hour's inspection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    import torch

__all__ = [
    "DEFAULT_FALSE_ALARM_COST",
    "DEFAULT_MISS_COST",
    "choose_threshold",
    "cost_curve",
    "decode_target",
    "encode_target",
    "failure_loss",
    "failure_metrics",
    "recall_at_fpr",
]

DEFAULT_MISS_COST = 10_000.0
DEFAULT_FALSE_ALARM_COST = 500.0
MODE_LOSS_WEIGHT = 0.5
AUX_LOSS_WEIGHT = 1.0


def encode_target(failure: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """``0`` for no failure, ``1 + bits / 64`` for a failure (see the module docstring)."""
    import numpy as np

    failure = np.asarray(failure, dtype=bool)
    bits = np.asarray(bits, dtype=np.int64) & 31
    return np.where(failure, 1.0 + bits / 64.0, 0.0).astype(np.float32)


def decode_target(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(failure, mode bits)`` of an encoded target."""
    import numpy as np
    from verticals.spec import target_labels

    t = target_labels(target).astype(np.float64).reshape(-1)
    failure = t > 0.5
    bits = np.where(failure, np.rint((t - 1.0) * 64.0), 0).astype(np.int64)
    return failure, bits


def failure_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor, n_modes: int) -> torch.Tensor:
    """Binary cross-entropy of the failure logit, plus (weight 0.5) the multi-label cross-entropy of
    the mode logits on the failures whose modes are known, plus (weight :data:`AUX_LOSS_WEIGHT`), where
    the model returns a third output and the target has auxiliary columns, the cross-entropy of the
    horizon logits on the known (non-negative) horizon labels."""
    import torch
    import torch.nn.functional as F

    logits, mode_logits = outputs[0].float().reshape(-1), outputs[1].float()
    full = target.float().reshape(len(logits), -1)
    t = full[:, 0]
    if len(outputs) > 2 and full.shape[1] > 1:
        horizon_logits, labels = outputs[2].float(), full[:, 1:]
        known = labels >= 0
        if horizon_logits.shape != labels.shape:
            raise ValueError(f"{horizon_logits.shape[1]} horizon logits for {labels.shape[1]} horizon labels")
        if bool(known.any()):
            each = F.binary_cross_entropy_with_logits(horizon_logits, labels.clamp(min=0), reduction="none")
            aux = (each * known).sum() / known.sum()
        else:
            aux = torch.zeros((), device=logits.device)
    else:
        aux = None
    failure = (t > 0.5).float()
    loss = F.binary_cross_entropy_with_logits(logits, failure)
    bits = torch.where(t > 0.5, torch.round((t - 1.0) * 64.0), torch.zeros_like(t)).long()
    known = bits > 0
    if bool(known.any()):
        powers = 2 ** torch.arange(n_modes, device=bits.device)
        labels = ((bits[known].unsqueeze(1) // powers) % 2).float()
        loss = loss + MODE_LOSS_WEIGHT * F.binary_cross_entropy_with_logits(mode_logits[known], labels)
    if aux is not None:
        loss = loss + AUX_LOSS_WEIGHT * aux
    return loss


def recall_at_fpr(y_true: np.ndarray, y_score: np.ndarray, fpr: float = 0.01) -> float:
    """The largest recall reachable while at most ``fpr`` of the non-failures raise an alarm."""
    import numpy as np
    from sklearn.metrics import roc_curve

    y = np.asarray(y_true).reshape(-1) > 0.5
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y.all() or not y.any() or not np.isfinite(s).all():
        return float("nan")
    false_rate, true_rate, _ = roc_curve(y, s)
    return float(true_rate[false_rate <= fpr + 1e-12].max())


def cost_curve(y_true: np.ndarray, y_score: np.ndarray, miss_cost: float, false_alarm_cost: float,
               points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds, expected cost per example)``: alert when the score is at or above a threshold.

    Thresholds are the distinct scores (at most ``points`` quantiles of them) plus 1.0 + ε (never
    alert), so the minimum over the curve is the minimum over every achievable rule.
    """
    import numpy as np

    y = np.asarray(y_true).reshape(-1) > 0.5
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    candidates = np.unique(s)
    if candidates.size > points:
        candidates = np.unique(np.quantile(s, np.linspace(0, 1, points)))
    thresholds = np.append(candidates, np.nextafter(1.0, 2.0))
    order = np.argsort(s)
    sorted_s, sorted_y = s[order], y[order]
    below = np.searchsorted(sorted_s, thresholds, side="left")  # rows scoring under each threshold
    positives_below = np.concatenate([[0], np.cumsum(sorted_y)])[below]
    misses = positives_below
    false_alarms = (len(s) - below) - (int(y.sum()) - positives_below)
    cost = (miss_cost * misses + false_alarm_cost * false_alarms) / max(len(s), 1)
    return thresholds, cost


def choose_threshold(y_true: np.ndarray, y_score: np.ndarray, miss_cost: float,
                     false_alarm_cost: float) -> dict[str, Any]:
    """The threshold with the least expected cost (the highest of equal ones), with its curve."""
    import numpy as np

    thresholds, cost = cost_curve(y_true, y_score, miss_cost, false_alarm_cost)
    best = float(cost.min())
    index = int(np.flatnonzero(cost <= best + 1e-12)[-1])
    return {"threshold": float(min(thresholds[index], 1.0)), "expected_cost": best,
            "curve": {"threshold": [float(t) for t in np.minimum(thresholds, 1.0)],
                      "cost": [float(c) for c in cost]}}


def failure_metrics(y_true: np.ndarray, y_score: np.ndarray, alert: np.ndarray, *,
                    modes: pl.DataFrame | None = None, mode_names: Sequence[str] = (),
                    predicted_mode: Sequence[str] | None = None,
                    costs: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The metrics both pipelines report on a split.

    * ``pr_auc`` (primary; average precision), ``auc`` (ROC), ``recall_at_1pct_fpr``, ``brier``,
      ``positive_rate``;
    * at the alert threshold: ``alert_recall``, ``alert_precision``, ``alert_rate`` and
      ``cost_per_example`` (with ``costs``: ``miss`` and ``false_alarm``);
    * ``recall_by_mode``: per failure mode (a 0/1 column of ``modes``), the share of its failures that
      raised an alert; modes with no failure in the split are left out;
    * ``mode_accuracy``: among failures with a known mode, how often the predicted most likely mode is
      one of the true ones.
    """
    import numpy as np
    from verticals.metrics import auc, brier, pr_auc

    y = np.asarray(y_true).reshape(-1) > 0.5
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    a = np.asarray(alert, dtype=bool).reshape(-1)
    tp, fp = int((a & y).sum()), int((a & ~y).sum())
    out: dict[str, Any] = {
        "pr_auc": pr_auc(y, s),
        "auc": auc(y, s),
        "recall_at_1pct_fpr": recall_at_fpr(y, s, 0.01),
        "brier": brier(y, s),
        "positive_rate": float(y.mean()) if y.size else float("nan"),
        "alert_recall": tp / int(y.sum()) if y.any() else float("nan"),
        "alert_precision": tp / (tp + fp) if tp + fp else float("nan"),
        "alert_rate": float(a.mean()) if a.size else float("nan"),
    }
    if costs:
        misses = int((~a & y).sum())
        out["cost_per_example"] = (costs["miss"] * misses + costs["false_alarm"] * fp) / max(len(y), 1)
    if modes is not None and mode_names:
        by_mode: dict[str, float] = {}
        hit = np.zeros(len(y), dtype=bool)
        known = np.zeros(len(y), dtype=bool)
        for name in mode_names:
            if name not in modes.columns:
                continue
            flag = (modes.get_column(name).fill_null(0).to_numpy() > 0) & y
            if flag.any():
                by_mode[name] = float(a[flag].mean())
            known |= flag
            if predicted_mode is not None:
                hit |= flag & (np.asarray(predicted_mode) == name)
        out["recall_by_mode"] = by_mode
        if predicted_mode is not None and known.any():
            out["mode_accuracy"] = float(hit[known].mean())
    return out
