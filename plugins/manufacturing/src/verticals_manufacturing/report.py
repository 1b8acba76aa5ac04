"""The manufacturing pipelines' sections of the training report (HTML tables + matplotlib PNGs).

* Model against baselines: test metrics side by side and the precision-recall curves;
* Recall per failure mode at each model's alert threshold;
* Alert threshold: the validation cost curve with the chosen threshold;
* (fleet) Alert lead time: a histogram of how many cycles before each failure the first alert came;
* (fleet) Sensor traces: a few test machines' readings before a failure with the risk over time.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from verticals.report import fmt, html_table, pyplot, save_figure
from verticals.spec import ReportSection

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["LEVEL_MACHINES", "failure_sections"]

#: Fleet size at which the fleet network drew level with gradient boosting on the built-in fleet
#: (test PR-AUC, network − gradient boosting: −0.024 at 200 machines and −0.001 at 400 over seeds 0–4,
#: −0.002 at 800 over seeds 0–9; ``bench/manufacturing_pr_auc.py --machines 200 400 800``).
LEVEL_MACHINES = 400

_COLUMNS = (("pr_auc", "PR-AUC"), ("auc", "ROC-AUC"), ("recall_at_1pct_fpr", "recall at 1 % false alarms"),
            ("alert_recall", "alert recall"), ("alert_precision", "alert precision"),
            ("cost_per_example", "cost per example"))






def _test_scores(context: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    import numpy as np

    y = np.asarray(context.batches["test"].labels).reshape(-1) > 0.5
    scores = {"model": context.predictions["test"].get_column("probability").to_numpy()}
    baselines = getattr(context, "manufacturing_baselines", None) or {}
    targets = baselines.get("targets", {})
    for name, by_split in baselines.get("scores", {}).items():
        if "test" in by_split and len(by_split["test"]) == len(y) and np.array_equal(
                np.asarray(targets.get("test")).reshape(-1) > 0.5, y):
            scores[name] = by_split["test"]
    return y, scores


def _fleet_size(pipe: Any, context: Any) -> str:
    """For a fleet pipeline: how many machines trained it, and below :data:`LEVEL_MACHINES` what that
    means for trusting the network over gradient boosting."""
    from verticals_manufacturing.layout import TelemetryLayout

    layout = getattr(pipe, "layout", None)
    train = getattr(getattr(context, "splits", None), "train", None)
    if not isinstance(layout, TelemetryLayout) or train is None or layout.machine not in train.columns:
        return ""
    machines = train.get_column(layout.machine).n_unique()
    text = f"<p><b>Fleet size:</b> this run trained on {machines:,} machines."
    if machines < LEVEL_MACHINES:
        text += (f" On the built-in fleet a single GRU drew level with gradient boosting at about {LEVEL_MACHINES} "
                 "machines and was below it on fewer (the learning curve in docs/manufacturing.md, \"Fleet "
                 "size\"); the average of three that is the default now was measured at 800 machines only. With "
                 "this few machines, read the two rows above before trusting the network's ranking over gradient "
                 "boosting's, or train on more machines' telemetry.")
    return text + "</p>"


def _network(pipe: Any, context: Any) -> str:
    """What the fleet network is beyond its registered name: an average of seeds, an auxiliary head."""
    model = getattr(context, "model", None)
    members = list(getattr(model, "members", None) or ([model] if model is not None else []))
    parts = []
    if len(members) > 1 and getattr(context, "crossfit", None) is None:
        parts.append(f"The network is the average of {len(members)} copies trained with consecutive seeds on the "
                     "same split (<code>TrainingConfig.ensemble</code>), each early-stopped on validation.")
    head = getattr(members[0], "horizons", None) if members else None
    fractions = getattr(getattr(context, "preprocessor", None), "horizons", ())
    horizon = getattr(pipe, "horizon", None)
    if head is not None and fractions and horizon is not None:
        span = f"{pipe.layout.describe(fractions[0] * horizon)} to {pipe.layout.describe(fractions[-1] * horizon)}"
        parts.append(f"In training it also learned whether the machine fails within each of {len(fractions)} "
                     f"horizons ({html.escape(span)}, a head the exported graph does not have): the "
                     "training loss in the loss plot includes that term, the validation loss does not.")
    return f"<p>{' '.join(parts)}</p>" if parts else ""


def _comparison(pipe: Any, context: Any) -> ReportSection:
    from sklearn.metrics import precision_recall_curve

    test = context.metrics.get("test", {})
    baselines = context.extras.get("baseline_metrics", {}) if isinstance(context.extras, dict) else {}
    rows = [["model (" + pipe.model + ")", *[test.get(k, float("nan")) for k, _ in _COLUMNS]]]
    rows += [[name, *[m.get(k, float("nan")) for k, _ in _COLUMNS]] for name, m in baselines.items()]
    y, scores = _test_scores(context)
    images = []
    if y.any() and not y.all():
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for name, s in scores.items():
            precision, recall, _ = precision_recall_curve(y, s)
            ax.step(recall, precision, where="post", label=name, lw=1.4)
        ax.axhline(float(y.mean()), color="grey", ls="--", lw=0.8, label="no skill")
        ax.set(xlabel="recall (failures caught)", ylabel="precision (alerts that were failures)",
               title="Precision-recall, test split", ylim=(0, 1.02))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        images.append(save_figure(fig, context, "manufacturing_pr_curve.png"))
    crossfit = getattr(context, "crossfit", None)
    how = ("<p>Test split; each model alerts at its own cost-optimal threshold chosen on validation. "
           "The baselines are trained on the same split and the same physics features.</p>")
    if crossfit is not None and getattr(crossfit, "groups", 0):
        how = ("<p>Test split. The network is the " + html.escape(crossfit.final_model) + "; its alert threshold "
               "comes from its out-of-fold probabilities. <code>hist_gradient_boosting_crossfit</code> is "
               "gradient boosting fitted the same way (the same pooled windows and folds of machines, each fold "
               "model early-stopped on its held-out machines, their average; threshold from its out-of-fold "
               "probabilities); the other baselines train on the training split and choose their threshold on "
               "validation. Same physics features for all. The network's validation figures are in-sample "
               "(it trained on the validation period); its out-of-fold "
               f"{html.escape(pipe.primary_metric)} is {fmt(crossfit.oof_metric)}.</p>")
    body = (how + _network(pipe, context)
            + html_table(["model", *[label for _, label in _COLUMNS]], rows))
    model_auc = test.get("pr_auc", float("nan"))
    trees = baselines.get("hist_gradient_boosting", {}).get("pr_auc", float("nan"))
    if model_auc == model_auc and trees == trees:
        verdict = "at or above" if model_auc >= trees else "below"
        body += (f"<p><b>Against gradient boosting:</b> the network's test PR-AUC is {verdict} gradient "
                 f"boosting's in this run ({model_auc:.4f} against {trees:.4f}, {model_auc - trees:+.4f}). "
                 "One run is one seed; <code>bench/manufacturing_pr_auc.py</code> gives the mean over seeds.</p>")
    body += _fleet_size(pipe, context)
    measured = (getattr(pipe, "measured_goal", None) or {}).get(pipe.model)
    if measured:
        body += ("<p><b>The goal over seeds</b> (the network's mean test PR-AUC at or above gradient boosting's, "
                 f"built-in fleet, <code>bench/manufacturing_pr_auc.py</code>): {html.escape(measured)}</p>")
    return ReportSection("Failure prediction: model against baselines", body, images)


def _modes(pipe: Any, context: Any) -> ReportSection:
    test = context.metrics.get("test", {})
    aux = context.batches["test"].aux
    baselines = context.extras.get("baseline_metrics", {})
    rows = []
    for mode in pipe.mode_names:
        count = int((aux.get_column(mode) > 0).sum()) if aux is not None and mode in aux.columns else 0
        model = test.get("recall_by_mode", {}).get(mode, float("nan"))
        rows.append([mode, count, model, *[b.get("recall_by_mode", {}).get(mode, float("nan"))
                                           for b in baselines.values()]])
    body = ("<p>Share of each mode's test failures (positive examples carrying the mode) that raised an "
            f"alert. Mode accuracy (predicted most likely mode among the true ones): "
            f"{fmt(test.get('mode_accuracy', float('nan')))}.</p>"
            + html_table(["mode", "failures", "model", *baselines], rows))
    return ReportSection("Failure prediction: recall per failure mode", body)


def _costs(context: Any) -> ReportSection:
    extras = context.extras
    curve = extras.get("cost_curve") or {}
    images = []
    if curve.get("threshold"):
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.8))
        ax.plot(curve["threshold"], curve["cost"], lw=1.4)
        ax.axvline(extras["threshold"], color="tab:red", ls="--", lw=1, label=f"chosen {extras['threshold']:.3g}")
        ax.set(xlabel="alert threshold (probability)", ylabel="expected cost per example", xscale="symlog",
               title="Cost curve, out-of-fold windows" if extras.get("threshold_source", "").startswith("out-of-fold")
               else "Cost curve, validation split")
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        images.append(save_figure(fig, context, "manufacturing_cost_curve.png"))
    costs = extras.get("costs", {})
    body = (f"<p>A missed failure costs {fmt(costs.get('miss'))}, a false alarm {fmt(costs.get('false_alarm'))}. "
            f"The threshold {fmt(extras.get('threshold'))} minimises the expected cost on "
            f"{html.escape(str(extras.get('threshold_source', 'the validation split')))} "
            f"({fmt(extras.get('valid_expected_cost'))} per example); it is stored with the model and "
            "sets the <code>alert</code> column at scoring.</p>")
    issues = extras.get("label_issues")
    if issues:
        body += (f"<p>Training labels: {issues['mode_without_failure']} row(s) carry a mode flag without a "
                 f"failure (learned as no failure); {issues['failure_without_mode']} failure(s) have no mode.</p>")
    return ReportSection("Failure prediction: alert threshold from costs", body, images)


def _lead_times(pipe: Any, context: Any) -> ReportSection:
    from verticals_manufacturing.risk import lead_times

    layout = pipe.layout
    batch = context.batches["test"]
    alert = context.predictions["test"].get_column("alert").to_numpy()
    leads, failures = lead_times(batch.ids.get_column(layout.machine).to_list(),
                                 layout.numeric_time(batch.ids.get_column(layout.time)),
                                 batch.aux.get_column("next_failure").to_list(), alert)
    images = []
    if leads:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.6))
        if layout.datetime:
            ax.hist([v / 3600.0 for v in leads], bins=20, rwidth=0.85)
            xlabel = "hours between first alert and failure"
        else:
            ax.hist(leads, bins=range(0, int(pipe.horizon) + 2), align="left", rwidth=0.85)
            xlabel = "cycles between first alert and failure"
        ax.set(xlabel=xlabel, ylabel="failures", title="Alert lead time, test")
        ax.grid(alpha=0.3)
        images.append(save_figure(fig, context, "manufacturing_lead_time.png"))
    body = (f"<p>{len(leads)} of {failures} test failures were preceded by an alert within the horizon of "
            f"{layout.describe(pipe.horizon)}.</p>")
    return ReportSection("Failure risk: alert lead time", body, images)


def _traces(pipe: Any, context: Any, machines: int = 3) -> ReportSection:
    import numpy as np
    import polars as pl

    layout = pipe.layout
    machine_col, time_col = layout.machine, layout.time
    test = context.splits.test.with_columns(layout.numeric_time_expr().alias("__t"))
    events = test.filter(layout.failed_expr()).select(machine_col, "__t").head(machines)
    ids = context.batches["test"].ids
    preds = pl.DataFrame({machine_col: ids.get_column(machine_col),
                          "__t": layout.numeric_time(ids.get_column(time_col)),
                          "probability": context.predictions["test"].get_column("probability")})
    scale = 3600.0 if layout.datetime else 1.0
    unit = "h" if layout.datetime else "cycles"
    # The traces: torque and vibration where the layout has them, else the first sensors.
    shown = [s for s in ("torque", "vibration") if s in layout.sensors] or list(layout.sensors[:2])
    images = []
    if events.height:
        plt = pyplot()
        fig, axes = plt.subplots(events.height, 1, figsize=(8, 2.8 * events.height), squeeze=False)
        for ax, (machine, at) in zip(axes[:, 0], events.iter_rows(), strict=True):
            lo = at - 4 * float(pipe.horizon)
            rows = test.filter((pl.col(machine_col) == machine) & pl.col("__t").is_between(lo, at)).sort("__t")
            risk = preds.filter((pl.col(machine_col) == machine) & pl.col("__t").is_between(lo, at)).sort("__t")
            x = (rows["__t"].to_numpy() - at) / scale
            for name in shown:
                values = rows.get_column(name).cast(pl.Float64).to_numpy()
                span = (np.nanmax(values) - np.nanmin(values)) or 1.0
                ax.plot(x, (values - np.nanmin(values)) / span, lw=1, label=f"{name} (scaled)")
            if len(layout.temperatures) == 2:
                low, high = layout.temperatures
                diff = (rows[high].cast(pl.Float64) - rows[low].cast(pl.Float64)).to_numpy()
                span = (np.nanmax(diff) - np.nanmin(diff)) or 1.0
                ax.plot(x, (diff - np.nanmin(diff)) / span, lw=1, label=f"{high} − {low} (scaled)")
            ax.plot((risk["__t"].to_numpy() - at) / scale, risk["probability"], color="black", lw=2, label="risk")
            ax.axhline(context.extras.get("threshold", 0.5), color="tab:red", ls="--", lw=0.8)
            ax.axvline(0.0, color="tab:red", lw=1)
            ax.set_title(f"{machine}: failure at {time_col} "
                         f"{rows[time_col][-1] if rows.height else at}", fontsize=9)
            ax.set_xlabel(f"{unit} before the failure")
            ax.set_ylim(-0.05, 1.05)
            ax.legend(fontsize=7, loc="upper left")
        images.append(save_figure(fig, context, "manufacturing_traces.png"))
    return ReportSection("Failure risk: sensor traces before failures",
                         "<p>Readings of test machines before a failure (red line), each scaled to [0, 1], "
                         "with the model's risk (black) and the alert threshold (dashed).</p>", images)


def failure_sections(pipe: Any, context: Any) -> list[ReportSection]:
    sections = [_comparison(pipe, context), _modes(pipe, context), _costs(context)]
    if getattr(pipe, "horizon", None) is not None and context.batches["test"].aux is not None:
        sections += [_lead_times(pipe, context), _traces(pipe, context)]
    return sections
