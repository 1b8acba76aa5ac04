"""The retail pipelines' sections of the training report: metrics against the baselines, Recall@k for
k = 1…50, coverage and popularity bias, and example users (their last items and their recommendations,
by title where the item table has titles)."""

from __future__ import annotations

import html
from typing import Any

from verticals.report import html_table, pyplot, save_figure
from verticals.spec import ReportSection

from verticals_retail.evaluation import BASELINES

__all__ = ["report_sections"]

_LABELS = {"model": "model", "popularity": "popularity", "item_knn": "item-kNN (cosine, 100 neighbours)",
           "ease": "EASE"}




def _titles(pipe: Any) -> dict[str, str]:
    """Item id → title for MovieLens or from an own-data config's item table; empty (ids are shown)
    otherwise."""
    if getattr(pipe, "items_table", None):
        from verticals_retail.owndata import item_titles

        try:
            return item_titles(pipe)
        except Exception:  # a report never fails for want of titles
            return {}
    if getattr(pipe, "dataset", "") != "movielens":
        return {}
    try:
        from verticals_retail.data import movielens_items

        items = movielens_items()
    except Exception:
        return {}
    return dict(zip(items.get_column("item").to_list(), items.get_column("title").to_list(), strict=True))


def report_sections(pipe: Any, context: Any) -> list[ReportSection]:
    """See the module docstring."""
    test = dict(context.metrics.get("test") or {})
    if not test:
        return []
    extras = context.extras or {}
    baselines = extras.get("baseline_metrics") or {}
    curves = {"model": test.get("recall_curve") or {}, **(extras.get("baseline_curves") or {})}
    keys = ["recall@10", "ndcg@10", "coverage@10", "popularity_bias@10"]
    rows = [[_LABELS["model"], *[test.get(k, float("nan")) for k in keys]]]
    rows += [[_LABELS[n], *[(baselines.get(n) or {}).get(k, float("nan")) for k in keys]] for n in BASELINES]
    choice = extras.get("validation_ndcg@10") or {}
    plt = pyplot()
    images = []
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, curve in curves.items():
        if curve:
            ks = sorted(int(k) for k in curve)
            ax.plot(ks, [curve[str(k)] for k in ks], label=_LABELS.get(name, name), lw=2 if name == "model" else 1)
    ax.set(xlabel="k", ylabel="Recall@k (test)", title="Recall@k, k = 1…50")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    images.append(save_figure(fig, context, "retail_recall_at_k.png"))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    names = [r[0] for r in rows]
    for ax, column, label in ((axes[0], 3, "coverage@10 (share of catalogue)"),
                              (axes[1], 4, "popularity bias@10 (mean percentile)")):
        ax.barh(names, [r[column] for r in rows], color=["#1f77b4"] + ["#999999"] * len(BASELINES))
        ax.set(xlabel=label, xlim=(0, 1))
        ax.tick_params(axis="y", labelsize=7)
    images.append(save_figure(fig, context, "retail_coverage_bias.png"))
    body = ("<p>Test split: each eligible user's last positive, ranked against the whole catalogue minus the "
            "items the user has seen (the same mask for every recommender). Recall@10 is the hit rate (one "
            "held-out item). Coverage@10: share of the catalogue recommended to anyone; popularity bias@10: mean "
            f"popularity percentile of the recommended items (1 = most popular). EASE λ = {extras.get('ease_lambda')} "
            "(chosen on validation).</p>"
            + html_table(["recommender", *keys], rows)
            + "<p>Validation NDCG@10 (what the choice of the shipped model rests on): "
            + ", ".join(f"{html.escape(_LABELS.get(n, n))} {v:.4f}" for n, v in choice.items())
            + f"; best on validation: {html.escape(str(extras.get('best_on_validation', '')))}.</p>"
            + ("" if extras.get("best_on_validation") in (None, "model") else
               "<p><b>The model does not beat the best baseline on validation.</b> The exported graph is the "
               "model; compare the test figures above before putting it in production.</p>"))
    return [ReportSection("Recommendations: model against the baselines", body, images), _examples(pipe, context)]


def _examples(pipe: Any, context: Any, users: int = 5, last: int = 5) -> ReportSection:
    """A few test users: their last history items and the model's top 10, by title."""
    import numpy as np
    import polars as pl

    pre = context.preprocessor
    titles = _titles(pipe)
    batch = context.batches["test"]
    predictions = context.predictions["test"]
    if not len(batch) or "_index" not in predictions.columns:
        return ReportSection("Example users", "<p>No test users.</p>")
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(batch), size=min(users, len(batch)), replace=False))
    ids = batch.ids.get_column(pre.user).cast(pl.String).to_list()

    def name(index: int) -> str:
        item = pre.items[int(index)]
        return titles.get(item, item)

    blocks = []
    for i in pick:
        user = ids[int(i)]
        history = [name(c) for c in (pre.history(user) or [])][-last:]
        recommended = [name(c) for c in predictions.get_column("_index")[int(i)].to_list()[:10]]
        target = name(int(batch.target[int(i)])) if batch.target is not None else ""
        hit = " (in the list)" if target in recommended else ""
        blocks.append(
            f"<h4>user {html.escape(user)}</h4><p><b>last training items:</b> "
            + html.escape("; ".join(history)) + "<br><b>recommended:</b> " + html.escape("; ".join(recommended))
            + f"<br><b>held-out next item:</b> {html.escape(target)}{hit}</p>")
    return ReportSection("Example users (test split)", "".join(blocks))
