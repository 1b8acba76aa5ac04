"""Report sections a credit analyst and a credit committee read (test split unless stated):

* **Reading this report**: what "bad" means for this data, how many applicants and bads the figures
  rest on, the AUC with a bootstrap 95 % interval (and the model's gap to the best baseline with its
  interval), mean PD against the observed bad rate, and, when the data is small, what that does to
  the confidence in every figure;
* **Scorecard**: the points each category of each categorical feature adds or costs (the table a
  committee signs), with applicants and bad rate per category on the training split;
* **Risk bands**: a pivot of applicants (%) and bad rate (%) per band, flagged when the bad rate does
  not rise from band to band;
* **Cut-offs**: approval rate, expected (mean PD) and observed bad rate of the approved, and share of
  bads declined, at points cut-offs; and the KS chart (cumulative points of goods and bads);
* **Fair lending** (when the config declares protected attributes): which are excluded from the model
  and which were opted in, then per attribute and group the approval rate at the cut-off, the
  adverse-impact ratio, AUC and calibration, with flags (:mod:`verticals_finance.fairness`).

Numbers are rounded for reading: rates in percent with one decimal, points as integers, AUC to three
decimals.
"""

from __future__ import annotations

import html
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from verticals.report import html_table, pyplot, save_figure
from verticals.spec import ReportSection

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from verticals_finance.pipeline import CreditRiskPipeline

__all__ = ["BOOTSTRAP", "analyst_sections", "bootstrap_auc", "cutoff_table", "ks_curve", "scorecard_rows"]

BOOTSTRAP = 1000
#: Below this many test applicants the report says the data is small.
SMALL_TEST = 500


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f} %"


def bootstrap_auc(y: np.ndarray, p: np.ndarray, other: np.ndarray | None = None, *, draws: int = BOOTSTRAP,
                  seed: int = 0) -> dict[str, float]:
    """AUC of ``p`` with a percentile 95 % bootstrap interval; with ``other``, also the paired
    interval of ``AUC(p) − AUC(other)`` (same resamples)."""
    import numpy as np

    from verticals_finance.fairness import auc

    y = np.asarray(y) > 0.5
    rng = np.random.default_rng(seed)
    values, deltas = [], []
    for _ in range(draws):
        idx = rng.integers(0, y.size, y.size)
        if y[idx].all() or not y[idx].any():
            continue
        a = auc(y[idx], p[idx])
        values.append(a)
        if other is not None:
            deltas.append(a - auc(y[idx], other[idx]))
    out = {"auc": auc(y, p), "low": float(np.percentile(values, 2.5)) if values else float("nan"),
           "high": float(np.percentile(values, 97.5)) if values else float("nan"), "draws": len(values)}
    if other is not None and deltas:
        out.update(delta=out["auc"] - auc(y, other), delta_low=float(np.percentile(deltas, 2.5)),
                   delta_high=float(np.percentile(deltas, 97.5)))
    return out


def ks_curve(y: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Points grid, cumulative share of bads and of goods at or below each, the KS and where it is."""
    import numpy as np

    y = np.asarray(y) > 0.5
    grid = np.unique(points)
    bad = np.searchsorted(np.sort(points[y]), grid, side="right") / max(int(y.sum()), 1)
    good = np.searchsorted(np.sort(points[~y]), grid, side="right") / max(int((~y).sum()), 1)
    gap = bad - good
    at = int(np.argmax(gap)) if gap.size else 0
    return grid, bad, good, float(gap[at]) if gap.size else float("nan"), float(grid[at]) if gap.size else float("nan")


def cutoff_table(y: np.ndarray, pd: np.ndarray, points: np.ndarray, steps: int = 10) -> list[dict[str, Any]]:
    """Approve applicants with points ≥ cut-off: approval rate, expected and observed bad rate of the
    approved, share of all bads declined, at the deciles of the points distribution."""
    import numpy as np

    y = np.asarray(y) > 0.5
    cuts = np.unique(np.percentile(points, np.linspace(0, 90, steps)).round())
    rows = []
    for cut in cuts:
        ok = points >= cut
        n_ok = int(ok.sum())
        rows.append({"cutoff": int(cut), "approval_rate": n_ok / max(y.size, 1),
                     "expected_bad_rate": float(pd[ok].mean()) if n_ok else float("nan"),
                     "observed_bad_rate": float(y[ok].mean()) if n_ok else float("nan"),
                     "bads_declined": float(y[~ok].sum() / max(int(y.sum()), 1))})
    return rows


def scorecard_rows(context: Any, scale: float) -> list[list[Any]]:
    """Per categorical feature and category: training applicants, bad rate, points (exact, additive)."""
    import numpy as np

    info = context.preprocessor.info()
    vocab = context.preprocessor.vocabularies()
    train = context.batches["train"]
    contributions = np.asarray(context.outputs["train"]["contributions"], dtype=np.float64)
    n_num = len(info.get("numeric", []))
    y = np.asarray(train.target) > 0.5
    rows = []
    protected = set(context.extras.get("protected_features") or [])
    for j, name in enumerate(info.get("categorical", [])):
        codes = np.asarray(train.inputs["x_cat"])[:, j]
        labels = ["(unknown or missing)"] + [str(v) for v in vocab.get(name, [])]
        for code in range(len(labels)):
            mask = codes == code
            n = int(mask.sum())
            if code and not n:
                continue
            pts = -float(contributions[mask, n_num + j].mean()) * scale if n else 0.0
            rows.append([name + (" (protected, opted in)" if name in protected else ""), labels[code], n,
                         _pct(float(y[mask].mean())) if n else "n/a", round(pts)])
    return rows


def _plot_ks(context: Any, grid: np.ndarray, bad: np.ndarray, good: np.ndarray, ks: float, at: float) -> str:
    """The KS chart (cumulative share of bads and goods by points); returns the figure's report path."""
    fig, ax = pyplot().subplots(figsize=(5.6, 3.6))
    ax.step(grid, bad * 100, where="post", color="tab:red", label="bad applicants")
    ax.step(grid, good * 100, where="post", color="tab:blue", label="good applicants")
    ax.axvline(at, color="grey", ls="--", lw=1)
    ax.set(xlabel="points (higher = lower risk)", ylabel="cumulative share at or below (%)",
           title=f"KS = {100 * ks:.1f} at {at:.0f} points, test split")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, context, "finance_ks.png")


def _reading(pipeline: CreditRiskPipeline, context: Any, y: np.ndarray, pd: np.ndarray,
             baselines: dict[str, np.ndarray]) -> ReportSection:

    from verticals_finance.fairness import auc

    best = max(baselines, key=lambda n: auc(y, baselines[n]), default=None)
    boot = bootstrap_auc(y, pd, baselines[best] if best else None,
                         seed=int(getattr(context.splits, "seed", None) or 0))
    n, bads = y.size, int(y.sum())
    crossfit = getattr(context, "crossfit", None)
    total = sum(len(b) for b in context.batches.values())
    small = crossfit is not None or n < SMALL_TEST
    cal = context.extras.get("calibration") or {}
    parts = [
        f"<p><b>What “bad” means here:</b> {html.escape(pipeline.bad_means or 'the positive label of the target')}. "
        "PD is the calibrated probability of that outcome; <i>good</i> is every other declared label.</p>",
        f"<p>The figures below rest on the test split: <b>{n}</b> applicants, <b>{bads}</b> bad "
        f"(observed bad rate {_pct(bads / max(n, 1))}); the model's mean PD there is {_pct(float(pd.mean()))}.</p>",
        f"<p>Test AUC <b>{boot['auc']:.3f}</b>, 95 % bootstrap interval {boot['low']:.3f}–{boot['high']:.3f} "
        f"({boot['draws']} resamples of the test split).</p>",
    ]
    if best and "delta" in boot:
        parts.append(f"<p>AUC minus the best baseline ({html.escape(best)}): {boot['delta']:+.3f}, 95 % interval "
                     f"{boot['delta_low']:+.3f} to {boot['delta_high']:+.3f} (paired resamples).</p>")
    parts.append(f"<p>Calibration: Platt scaling fitted on {html.escape(str(cal.get('fitted_on', 'the validation split')))}.</p>")
    if small:
        runs = f" (run {crossfit.repeats} times over different folds)" if getattr(crossfit, "repeats", 1) > 1 else ""
        stop = ("log loss" if getattr(pipeline.training, "crossfit_stop_on", "metric") == "loss"
                else pipeline.primary_metric.upper())
        how = (f"early stopping and calibration used {crossfit.folds}-fold cross-fitting{runs} over the "
               f"{crossfit.rows} training and validation rows (each fold model stopped on its held-out fold's "
               f"{stop}; fold best epochs {crossfit.best_epochs}); the "
               f"final model is the {html.escape(crossfit.final_model)}, so the validation metrics in the "
               "standard sections are in-sample" if crossfit is not None else "no cross-fitting was needed")
        shape = (context.extras.get("shape") or {}).get("text")
        if shape:
            how += f". The numeric features' curves are {html.escape(shape)}"
        oof = cal.get("out_of_fold_brier")
        if oof is not None:
            how += (f". Out-of-fold Brier score {float(oof):.4f} (the calibrated out-of-fold predictions of the "
                    "pooled rows)")
        parts.append(
            f"<p class=\"warn\"><b>Small data.</b> {total} valid rows in all; {how}. With {bads} bads in the test "
            f"split an AUC moves by about ±{(boot['high'] - boot['low']) / 2:.3f} from one sample of applicants "
            "to the next: differences between models smaller than that are not evidence, and per-band or "
            "per-group rates below rest on few applicants.</p>")
    return ReportSection("Credit risk: reading this report", "".join(parts))


def _bands_pivot(y: np.ndarray, scores: dict[str, np.ndarray], bands: Any) -> tuple[str, bool]:
    from verticals_finance.report import bad_rate_by_band

    per = {name: bad_rate_by_band(y, p, bands) for name, p in scores.items()}
    names = list(per)
    first = per[names[0]]
    rows = []
    for i, band in enumerate(first):
        row = [band["band"], band["pd_range"]]
        for name in names:
            r = per[name][i]
            row += [r["rows"], _pct(r["share"]), _pct(r["bad_rate"]) if r["rows"] else "-"]
        rows.append(row)
    rates = [r["bad_rate"] for r in first if r["rows"]]
    monotonic = all(b >= a for a, b in pairwise(rates))
    header = ["band", "PD range"] + [f"{n}: {c}" for n in names for c in ("applicants", "share", "bad rate")]
    return html_table(header, rows), monotonic


def _fair_lending(pipeline: CreditRiskPipeline, context: Any, y: np.ndarray, pd: np.ndarray) -> ReportSection | None:
    from verticals_finance.fairness import AIR_THRESHOLD, MIN_GROUP, group_table

    declared = list(pipeline.protected)
    if not declared:
        return None
    test = context.splits.test
    opted = [n for n in pipeline.protected_features if n in declared]
    excluded = [n for n in declared if n not in opted]
    parts = [f"<p>Protected attributes declared for this pipeline: <b>{html.escape(', '.join(declared))}</b>. "
             f"Excluded from the model's features: {html.escape(', '.join(excluded) or 'none')}."]
    if opted:
        parts.append(f" <b>Used as model features at the config's explicit request "
                     f"(fair_lending.use_as_features): {html.escape(', '.join(opted))}</b>; they are never reason codes.")
    parts.append(f" Approval at the cut-off: PD &lt; {pipeline.cutoff:.0%}. Adverse-impact ratio: a group's "
                 f"approval rate over the highest group's; below {AIR_THRESHOLD} fails the four-fifths rule. "
                 f"Groups under {MIN_GROUP} applicants are shown, not judged. Calibration is flagged when the "
                 "mean PD lies outside the 95 % interval of the group's observed bad rate.</p>")
    flagged = 0
    for name in declared:
        if name not in test.columns:
            parts.append(f"<p>{html.escape(name)}: not in the data; nothing to check.</p>")
            continue
        rows = group_table(name, test.get_column(name).to_list(), y, pd, pipeline.cutoff)
        flagged += sum(1 for r in rows if any(not f.endswith("not judged") for f in r["flags"]))
        parts.append(f"<h3>{html.escape(name)}</h3>" + html_table(
            ["group", "applicants", "share", "approval rate", "adverse-impact ratio", "AUC", "mean PD",
             "observed bad rate (95 %)", "flags"],
            [[r["group"], r["applicants"], _pct(r["share"]), _pct(r["approval_rate"]),
              "n/a" if r["air"] != r["air"] else f"{r['air']:.2f}",
              "n/a" if r["auc"] != r["auc"] else f"{r['auc']:.3f}", _pct(r["mean_pd"]),
              f"{_pct(r['bad_rate'])} ({_pct(r['bad_rate_low'])}–{_pct(r['bad_rate_high'])})",
              "; ".join(r["flags"]) or "ok"] for r in rows],
            highlight=[i for i, r in enumerate(rows) if any(not f.endswith("not judged") for f in r["flags"])]))
    verdict = (f"<p class=\"warn\"><b>{flagged} group(s) flagged</b>: review them before using this model.</p>"
               if flagged else "<p>No group flagged.</p>")
    return ReportSection("Credit risk: fair lending", verdict + "".join(parts))


def analyst_sections(pipeline: CreditRiskPipeline, context: Any,
                     baselines: dict[str, np.ndarray]) -> list[ReportSection]:
    """The sections of the module docstring, in reading order."""
    import numpy as np

    from verticals_finance.report import MODEL_LABEL
    from verticals_finance.scorecard import Scaling, bands_from_json

    y = np.asarray(context.batches["test"].target, dtype=np.float64)
    pd = context.predictions["test"].get_column("pd").to_numpy().astype(np.float64)
    extras = context.extras
    scaling = Scaling.from_json(extras.get("scaling"))
    scale = float((extras.get("calibration") or {}).get("a", 1.0)) * scaling.factor
    points = context.predictions["test"].get_column("points").to_numpy().astype(np.float64)
    sections = [_reading(pipeline, context, y, pd, baselines)]

    card = scorecard_rows(context, scale)
    if card:
        sections.append(ReportSection("Credit risk: scorecard points per category", (
            "<p>Points each category adds (+, lower risk) or costs (−) against the average training applicant; "
            "an applicant's points are the base plus the sum over features (numeric features: see the effect "
            "curves). Applicants and bad rate per category are on the training split; a category with few "
            "applicants has an uncertain value.</p>")
            + html_table(["feature", "category", "applicants (train)", "bad rate (train)", "points"], card)))

    pivot, monotonic = _bands_pivot(y, {MODEL_LABEL: pd, **baselines}, bands_from_json(extras.get("bands")))
    flag = ("" if monotonic else "<p class=\"warn\"><b>Flag:</b> the model's observed bad rate does not rise "
            "from band to band on the test split; a band boundary separates applicants of similar risk, or "
            "the bands hold too few applicants.</p>")
    sections.append(ReportSection("Credit risk: risk bands", flag + pivot))

    grid, bad, good, ks, at = ks_curve(y, points)
    ks_figure = _plot_ks(context, grid, bad, good, ks, at)
    cuts = cutoff_table(y, pd, points)
    sections.append(ReportSection("Credit risk: cut-offs and KS", (
        "<p>Approving applicants at or above a points cut-off: the share approved, their expected bad rate "
        "(mean PD) and observed bad rate, and the share of all bad applicants declined.</p>")
        + html_table(["cut-off (points ≥)", "approval rate", "expected bad rate", "observed bad rate", "bads declined"],
                 [[r["cutoff"], _pct(r["approval_rate"]), _pct(r["expected_bad_rate"]), _pct(r["observed_bad_rate"]),
                   _pct(r["bads_declined"])] for r in cuts]), [ks_figure]))
    fair = _fair_lending(pipeline, context, y, pd)
    if fair is not None:
        sections.append(fair)
    return sections
