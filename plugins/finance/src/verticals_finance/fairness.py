"""Fair-lending checks per protected attribute (numpy only): approval, adverse impact, AUC, calibration.

For each group of a protected attribute (a category, or an age band for a numeric attribute), on the
test split at the approval cut-off (approve when PD < cut-off):

* **approval rate** and the **adverse-impact ratio** (AIR): the group's approval rate divided by the
  highest approval rate among the attribute's groups. The four-fifths rule of the US Uniform
  Guidelines flags an AIR below 0.8;
* **AUC** within the group (does the score rank applicants as well there?) and its gap to the AUC of
  the whole test split;
* **calibration**: mean PD against the observed bad rate, with a 95 % Wilson interval for the
  observed rate; the group is flagged when the mean PD lies outside that interval (the PD over- or
  understates the group's risk beyond what sampling explains).

Groups with fewer than :data:`MIN_GROUP` applicants are reported but only flagged as too small to
judge: a four-fifths or calibration verdict on a dozen applicants is noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["AIR_THRESHOLD", "AUC_GAP", "MIN_GROUP", "age_bands", "auc", "group_table", "wilson"]

AIR_THRESHOLD = 0.8
MIN_GROUP = 30
#: A group whose AUC is this much below the whole split's is flagged.
AUC_GAP = 0.05
#: Age bands (lower bounds) for a numeric attribute named like "age": 62 is the age US rules single out.
AGE_BANDS = ((0, "under 25"), (25, "25-39"), (40, "40-61"), (62, "62 and over"))


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties counted half); NaN with one class only."""
    import numpy as np

    y = np.asarray(y) > 0.5
    p = np.asarray(p, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(p)  # ties get their average rank
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    import math

    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def age_bands(values: np.ndarray) -> np.ndarray:
    """Age values as band labels (missing: ``missing``)."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.size, "missing", dtype=object)
    for lower, name in AGE_BANDS:
        out[values >= lower] = name
    return out


def _groups(name: str, values: Sequence[Any]) -> np.ndarray:
    import numpy as np

    array = np.asarray(values, dtype=object)
    numeric = all(v is None or isinstance(v, int | float) for v in array)
    if numeric and any(v is not None for v in array):
        floats = np.array([np.nan if v is None else float(v) for v in array])
        if "age" in name.lower():
            return age_bands(floats)
        finite = floats[np.isfinite(floats)]
        edges = np.unique(np.quantile(finite, [0.25, 0.5, 0.75])) if finite.size else np.array([])
        out = np.full(floats.size, "missing", dtype=object)
        bounds = [-np.inf, *edges, np.inf]
        for lo, hi in pairwise(bounds):
            label = f"{lo:g} to {hi:g}" if np.isfinite(lo) and np.isfinite(hi) else (
                f"below {hi:g}" if np.isfinite(hi) else f"{lo:g} and over")
            out[(floats >= lo) & (floats < hi)] = label
        return out
    return np.array(["missing" if v is None or str(v).strip() == "" else str(v).strip() for v in array], dtype=object)


def group_table(name: str, values: Sequence[Any], y: np.ndarray, pd: np.ndarray, cutoff: float
                ) -> list[dict[str, Any]]:
    """One row per group of the attribute ``name`` (see the module docstring), largest group first.

    Each row: ``group``, ``applicants``, ``share``, ``approval_rate``, ``air``, ``auc``, ``mean_pd``,
    ``bad_rate``, ``bad_rate_low``, ``bad_rate_high``, ``flags`` (list of short texts).
    """
    import numpy as np

    y = np.asarray(y, dtype=np.float64) > 0.5
    pd = np.asarray(pd, dtype=np.float64)
    groups = _groups(name, values)
    overall_auc = auc(y, pd)
    rows = []
    for group in sorted(set(groups.tolist()), key=lambda g: -(groups == g).sum()):
        mask = groups == group
        n = int(mask.sum())
        bad = int(y[mask].sum())
        low, high = wilson(bad, n)
        rows.append({"group": str(group), "applicants": n, "share": n / max(len(y), 1),
                     "approval_rate": float((pd[mask] < cutoff).mean()) if n else float("nan"),
                     "auc": auc(y[mask], pd[mask]), "mean_pd": float(pd[mask].mean()) if n else float("nan"),
                     "bad_rate": bad / n if n else float("nan"), "bad_rate_low": low, "bad_rate_high": high,
                     "flags": []})
    judged = [r for r in rows if r["applicants"] >= MIN_GROUP and r["group"] != "missing"]
    best = max((r["approval_rate"] for r in judged), default=float("nan"))
    for r in rows:
        r["air"] = r["approval_rate"] / best if best and best == best and best > 0 else float("nan")
        if r not in judged:
            r["flags"].append(f"fewer than {MIN_GROUP} applicants: not judged" if r["group"] != "missing"
                              else "attribute missing: not judged")
            continue
        if r["air"] < AIR_THRESHOLD:
            r["flags"].append(f"adverse impact: approval ratio {r['air']:.2f} < {AIR_THRESHOLD} (four-fifths rule)")
        if r["auc"] == r["auc"] and overall_auc == overall_auc and r["auc"] < overall_auc - AUC_GAP:
            r["flags"].append(f"ranks worse: AUC {r['auc']:.3f} vs {overall_auc:.3f} overall")
        if not r["bad_rate_low"] <= r["mean_pd"] <= r["bad_rate_high"]:
            side = "overstates" if r["mean_pd"] > r["bad_rate_high"] else "understates"
            r["flags"].append(f"PD {side} risk: mean PD {r['mean_pd']:.1%} vs observed {r['bad_rate']:.1%} "
                              f"(95% {r['bad_rate_low']:.1%}-{r['bad_rate_high']:.1%})")
    return rows
