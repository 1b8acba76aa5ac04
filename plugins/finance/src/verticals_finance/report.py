"""The credit risk pipeline's sections of the training report (HTML tables + matplotlib PNGs).

All comparisons are on the test split, which neither the network, its calibration nor the baselines
saw. Sections:

1. *Model vs baselines*: AUC, Gini, KS, Brier score and log loss of the calibrated PD next to both
   baselines; ROC and calibration curves; score (points) distributions of good and bad applicants;
   applicants and bad rate per risk band.
2. *Reason codes and monotonic constraints*: how often each feature is an applicant's first reason,
   the points it costs on average, and each numeric feature's effect on the points across its range
   (the constrained ones can be seen to be monotone).
3. *Population stability*: PSI per feature and for the score between the training split (the
   reference stored in the model) and the test split, with :mod:`verticals.drift`, the same
   computation the monitor flow runs on every scored batch.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from verticals.report import html_table, pyplot, save_figure
from verticals.spec import ReportSection

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from verticals_finance.pipeline import CreditRiskPipeline

__all__ = ["bad_rate_by_band", "calibration_curve", "credit_sections", "psi_rows"]

MODEL_LABEL = "credit_pd (this model)"
_METRICS = ("auc", "gini", "ks", "brier", "logloss")


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean predicted PD, observed bad rate and row count per quantile bin of the prediction."""
    import numpy as np

    y = np.asarray(y, dtype=np.float64).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if p.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(index, minlength=max(len(edges) - 1, 1)).astype(np.float64)
    keep = counts > 0
    mean_p = np.bincount(index, weights=p, minlength=counts.size)[keep] / counts[keep]
    rate = np.bincount(index, weights=y, minlength=counts.size)[keep] / counts[keep]
    return mean_p, rate, counts[keep]


def bad_rate_by_band(y: np.ndarray, pd: np.ndarray, bands: Any) -> list[dict[str, Any]]:
    """Per band of the master scale: applicants, share, bad rate and mean PD (bands with no rows too)."""
    import numpy as np

    from verticals_finance.scorecard import assign_bands

    y = np.asarray(y, dtype=np.float64).reshape(-1)
    labels = assign_bands(pd, bands)
    rows = []
    lower = 0.0
    for name, upper in bands:
        mask = labels == name
        n = int(mask.sum())
        rows.append({"band": name, "pd_range": f"[{lower:.0%}, {upper:.0%})" if upper < 1 else f"[{lower:.0%}, 100%]",
                     "rows": n, "share": n / max(len(y), 1),
                     "bad_rate": float(y[mask].mean()) if n else float("nan"),
                     "mean_pd": float(np.asarray(pd)[mask].mean()) if n else float("nan")})
        lower = upper
    return rows


def psi_rows(context: Any, pd_train: np.ndarray, pd_test: np.ndarray) -> list[dict[str, Any]]:
    """PSI per feature and for the score, training split (reference) vs test split."""
    from verticals.drift import compare, profile

    reference = profile(context.splits.train, context.dataset.schema, pd_train)
    return compare(reference, context.splits.test, pd_test)


def _baselines(pipeline: CreditRiskPipeline, context: Any) -> dict[str, np.ndarray]:
    result = getattr(context, "finance_baselines", None)
    if result is None:  # report built from a context fit_extras did not see: fit them again
        from verticals_finance.baselines import fit_baselines

        info = context.preprocessor.info()
        result = fit_baselines(context.batches, context.preprocessor.state(), list(info.get("cardinalities", [])),
                               seed=int(getattr(context.splits, "seed", None) or pipeline.training.seed))
    return {name: scores["test"] for name, scores in result.scores.items() if "test" in scores}


def _plot_comparison(context: Any, y: np.ndarray, scores: dict[str, np.ndarray]) -> str:
    """ROC and calibration curves of the model and the baselines; returns the figure's report path."""
    import numpy as np

    fig, (roc, cal) = pyplot().subplots(1, 2, figsize=(10, 4.2))
    pos = y > 0.5
    for name, p in scores.items():
        order = np.argsort(-p, kind="mergesort")
        tpr = np.r_[0, np.cumsum(pos[order]) / max(pos.sum(), 1)]
        fpr = np.r_[0, np.cumsum(~pos[order]) / max((~pos).sum(), 1)]
        roc.plot(fpr, tpr, label=name, lw=1.5)
        mean_p, rate, _ = calibration_curve(y, p)
        cal.plot(mean_p, rate, marker="o", ms=3, label=name, lw=1.2)
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc.set(xlabel="false positive rate (goods declined)", ylabel="true positive rate (bads caught)",
            title="ROC, test split")
    top = max(float(max((p.max() for p in scores.values()), default=1.0)), float(y.mean()) * 2, 0.05)
    cal.plot([0, top], [0, top], color="grey", lw=0.8, ls="--")
    cal.set(xlabel="mean predicted PD (decile of predictions)", ylabel="observed bad rate",
            title="Calibration, test split")
    for ax in (roc, cal):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, context, "finance_roc_calibration.png")


def _plot_points(context: Any, y: np.ndarray, points: dict[str, np.ndarray]) -> str:
    """Points of good and bad applicants per model; returns the figure's report path."""
    import numpy as np

    fig, axes = pyplot().subplots(1, len(points), figsize=(4.2 * len(points), 3.6), sharey=True, squeeze=False)
    everything = np.concatenate(list(points.values()))
    bins = np.linspace(np.percentile(everything, 0.5), np.percentile(everything, 99.5), 36)
    for ax, (name, pts) in zip(axes[0], points.items(), strict=True):
        ax.hist(pts[y < 0.5], bins=bins, alpha=0.6, density=True, label="good", color="tab:blue")
        ax.hist(pts[y > 0.5], bins=bins, alpha=0.6, density=True, label="bad", color="tab:red")
        ax.set(title=name, xlabel="points (higher = lower risk)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density")
    return save_figure(fig, context, "finance_points_by_class.png")


def _plot_bands(context: Any, per_model: dict[str, list[dict[str, Any]]]) -> str:
    """Bad rate and share of applicants per band and model; returns the figure's report path."""
    import numpy as np

    names = list(per_model)
    bands = [r["band"] for r in per_model[names[0]]]
    x = np.arange(len(bands))
    width = 0.8 / len(names)
    fig, (rate_ax, share_ax) = pyplot().subplots(1, 2, figsize=(10, 3.8))
    for i, name in enumerate(names):
        rows = per_model[name]
        rate_ax.bar(x + i * width, [r["bad_rate"] if r["rows"] else 0 for r in rows], width, label=name)
        share_ax.bar(x + i * width, [r["share"] for r in rows], width, label=name)
    for ax, title in ((rate_ax, "bad rate per band"), (share_ax, "share of applicants per band")):
        ax.set_xticks(x + width * (len(names) - 1) / 2, bands)
        ax.set(title=title + ", test split", xlabel="band")
        ax.grid(axis="y", alpha=0.3)
    rate_ax.legend(fontsize=8)
    return save_figure(fig, context, "finance_bad_rate_by_band.png")


def _comparison_section(pipeline: CreditRiskPipeline, context: Any) -> ReportSection:
    import numpy as np

    from verticals_finance.scorecard import Scaling, bands_from_json

    y = np.asarray(context.batches["test"].target, dtype=np.float64)
    scores = {MODEL_LABEL: context.predictions["test"].get_column("pd").to_numpy().astype(np.float64)}
    scores.update(_baselines(pipeline, context))
    metrics = {name: pipeline.metrics(y, p) for name, p in scores.items()}
    rows = [[name, *(metrics[name].get(m, float("nan")) for m in _METRICS)] for name in scores]
    best = max((n for n in scores if n != MODEL_LABEL), key=lambda n: metrics[n]["auc"], default=None)
    gap = ""
    if best is not None:
        delta = metrics[MODEL_LABEL]["auc"] - metrics[best]["auc"]
        gap = (f"<p>Test AUC of the model minus the best baseline ({html.escape(best)}): <b>{delta:+.4f}</b> "
               f"on {len(y)} applicants ({int(y.sum())} bad).</p>")
    scaling = Scaling.from_json(context.extras.get("scaling"))
    bands = bands_from_json(context.extras.get("bands"))
    per_band = {name: bad_rate_by_band(y, p, bands) for name, p in scores.items()}
    band_rows = []
    for name, band_list in per_band.items():
        for r in band_list:
            band_rows.append([name, r["band"], r["pd_range"], r["rows"], r["share"], r["bad_rate"], r["mean_pd"]])
    cal = context.extras.get("calibration") or {}
    calibration = (f"<p>Calibration: Platt scaling fitted on {html.escape(str(cal.get('fitted_on', 'the validation split')))} "
                   f"({cal.get('rows', '?')} applicants), PD = sigmoid({cal.get('a', 1.0):.4f} · logit + {cal.get('b', 0.0):.4f})"
                   f"{' — ' + html.escape(str(cal['note'])) if cal.get('note') else ''}. Baselines are not recalibrated.</p>")
    points = {name: scaling.points(p) for name, p in scores.items()}
    images = [_plot_comparison(context, y, scores), _plot_points(context, y, points), _plot_bands(context, per_band)]
    seconds = context.extras.get("baseline_seconds") or {}
    fit_times = ", ".join(f"{html.escape(str(k))} {v:.1f} s" for k, v in seconds.items())
    body = (
        "<p>All figures on the test split. Points: "
        f"{scaling.base_points:g} at good:bad odds {scaling.base_odds:g}:1, {scaling.pdo:g} points to double "
        "the odds; baselines' PDs are put on the same scale. Baselines are trained in the same run on "
        f"the same split and inputs (fit time: {fit_times or 'n/a'}).</p>"
        + gap + html_table(["model", *_METRICS], rows, highlight=0) + calibration
        + "<h3>Applicants and bad rate per band</h3>"
        + html_table(["model", "band", "PD range", "rows", "share", "bad rate", "mean PD"], band_rows)
    )
    return ReportSection("Credit risk: model vs baselines", body, images)


def _effect_curves(context: Any, scale: float, points: int = 60) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Points each numeric feature contributes across its training 1–99 % range (others fixed)."""
    import numpy as np

    model, graph = context.model, context.graph_module
    if model is None or "x_num" not in context.batches["train"].inputs:
        return {}
    import torch

    info = context.preprocessor.info()
    x_train = np.asarray(context.batches["train"].inputs["x_num"], dtype=np.float64)
    curves = {}
    with torch.no_grad():
        for j, name in enumerate(info.get("numeric", [])):
            column = x_train[:, j][~np.isnan(x_train[:, j])]
            if column.size == 0:
                continue
            grid = np.unique(np.linspace(*np.percentile(column, [1, 99]), points))
            x = np.tile(np.nanmedian(x_train, axis=0), (grid.size, 1))
            x[:, j] = grid
            inputs = {"x_num": torch.from_numpy(x.astype(np.float32))}
            if "x_cat" in context.batches["train"].inputs:
                inputs["x_cat"] = torch.ones((grid.size, len(info.get("categorical", []))), dtype=torch.long)
            prepared = graph(**inputs) if graph is not None else inputs
            _, contributions = model(**prepared)
            curves[name] = (grid, -contributions[:, j].numpy().astype(np.float64) * scale)
    return curves


def _reasons_section(pipeline: CreditRiskPipeline, context: Any) -> ReportSection:
    import numpy as np

    from verticals_finance.scorecard import Scaling

    extras = context.extras
    names = list(extras.get("features") or [])
    used = set(extras.get("used_features") or names)
    predictions = context.predictions["test"]
    first = [r[0] for r in predictions.get_column("reasons").to_list() if r]
    n = predictions.height
    contributions = np.asarray(context.outputs["test"]["contributions"], dtype=np.float64)
    scale = float((extras.get("calibration") or {}).get("a", 1.0)) * Scaling.from_json(extras.get("scaling")).factor
    lost = contributions * scale
    monotonic = extras.get("monotonic") or {}
    rows = []
    for j, name in enumerate(names):
        rows.append([name, "yes" if name in used else "no", {1: "+1 (PD never falls)", -1: "-1 (PD never rises)"}
                     .get(monotonic.get(name, 0), ""), first.count(name) / max(n, 1),
                     float(np.mean(np.abs(lost[:, j]))) if n else float("nan"),
                     float(np.max(lost[:, j])) if n else float("nan")])
    rows.sort(key=lambda r: -r[4])
    images = []
    curves = _effect_curves(context, scale)
    if curves:
        cols = 3
        count = len(curves)
        fig, axes = pyplot().subplots((count + cols - 1) // cols, cols, figsize=(11, 2.7 * ((count + cols - 1) // cols)),
                                 squeeze=False)
        from verticals_finance.reasons import feature_label

        for ax, (name, (grid, pts)) in zip(axes.flat, curves.items(), strict=False):
            direction = monotonic.get(name, 0)
            ax.plot(grid, pts, color="tab:green" if direction else "tab:blue")
            ax.set_title(f"{name}" + (f"  (monotonic {direction:+d})" if direction else ""), fontsize=9)
            ax.set_xlabel(feature_label(name, getattr(pipeline, "units", None)), fontsize=8)
            ax.set_ylabel("points vs average (+ = lower risk)", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[count:]:
            ax.axis("off")
        images.append(save_figure(fig, context, "finance_feature_effects.png"))
    body = (
        "<p>Each applicant's reasons are the features that cost the most points compared with the average "
        "training applicant (the model's exact additive contributions, converted to points); a feature that "
        "lowers the risk is never a reason, and a feature the model does not use (its contribution never "
        "moves) is never listed. The curves show, for each numeric feature, the points it adds (up) or "
        "costs (down) across its training range; constrained features are green.</p>"
        + html_table(["feature", "used", "monotonic", "share of applicants with it as first reason",
                  "mean |points|", "largest cost (points)"], rows)
    )
    return ReportSection("Credit risk: reason codes and monotonic constraints", body, images)


def _psi_section(pipeline: CreditRiskPipeline, context: Any) -> ReportSection:
    import numpy as np

    train_pd = context.predictions["train"].get_column("pd").to_numpy().astype(np.float64)
    test_pd = context.predictions["test"].get_column("pd").to_numpy().astype(np.float64)
    rows = psi_rows(context, train_pd, test_pd)
    body = (
        "<p>Population stability index between the training split (the reference profile stored in the "
        "model manifest) and the test split: per feature, and for the score (PD; PSI is the same for points, "
        "which order applicants identically). PSI &lt; 0.1 stable, 0.1–0.25 moderate, &gt; 0.25 significant. "
        "The test split is a random sample of the same data, so small values are expected here; the monitor "
        "flow computes the same on each scored batch.</p>"
        + html_table(["feature", "kind", "PSI", "status"], [[r["feature"], r["kind"], r["psi"], r["status"]] for r in rows])
    )
    return ReportSection("Credit risk: population stability (PSI)", body)


def credit_sections(pipeline: CreditRiskPipeline, context: Any) -> list[ReportSection]:
    """The finance sections of the training report (see the module docstring)."""
    from verticals_finance.analyst import analyst_sections

    comparison = _comparison_section(pipeline, context)
    return [*analyst_sections(pipeline, context, _baselines(pipeline, context)), comparison,
            _reasons_section(pipeline, context), _psi_section(pipeline, context)]
