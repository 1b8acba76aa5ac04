"""The training report: one HTML page a person reads to decide whether a model is fit to promote.

``report.html`` is self-contained (inline CSS, no scripts, nothing fetched from the network); its
figures are PNG files in ``figures/`` next to it, referenced by relative paths, so the folder can be
copied, archived or served as it is. ``metrics.json`` next to it holds the same numbers for machines.

The engine supplies the standard sections from a :class:`ReportContext` (data, metrics, loss curves,
ONNX parity and variants); pipelines add theirs (:meth:`verticals.Pipeline.report_sections`), which
are rendered after the standard ones. matplotlib (Agg backend) is imported only inside the functions
that draw.

Plugins build their sections with the same helpers the standard sections use: :func:`fmt` (numbers for
reading), :func:`html_table` (an escaped HTML table, numbers right-aligned), :func:`pyplot` (matplotlib
on the Agg backend, imported on first use) and :func:`figures_folder` (where a section's PNGs go).
"""

from __future__ import annotations

import html
import json
import math
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verticals.spec import ReportSection

__all__ = ["FIGURES", "ReportContext", "figures_folder", "fmt", "html_table", "pyplot", "save_figure",
           "write_metrics", "write_report"]

FIGURES = "figures"
"""Sub-folder of the report folder that holds the PNGs."""

_SPLITS = ("train", "valid", "test")


@dataclass
class ReportContext:
    """What the standard sections of the report show.

    Attributes:
        pipeline: qualified pipeline name.
        title: page heading (default: the pipeline name).
        description: the pipeline's one-line description.
        task: ``binary``, ``multiclass``, ...
        primary_metric: the metric early stopping and variant checks use; highlighted in the table.
        greater_is_better: direction of ``primary_metric``.
        created_at: UTC ISO-8601 time of the run.
        metrics: ``{"train": {...}, "valid": {...}, "test": {...}}``.
        baselines: ``{model name: {metric: value}}`` on the test split, when the pipeline fits baselines.
        history: one dict per epoch: ``epoch``, ``train_loss``, ``valid_loss`` and the primary metric.
        best_epoch: the epoch whose weights were kept (early stopping), if known.
        parity: :func:`verticals.export.check_parity`'s result.
        variants: the manifest's ``variants``.
        data: data summary: ``source``, ``fingerprint``, ``rows_in``, ``rows_valid``, ``rows_rejected``,
            ``rows_flagged``, ``reasons`` (list of ``[reason, count]``), ``splits`` (rows per split),
            ``preprocessor_reasons`` (list of ``[split, reason, count]`` for valid rows the
            preprocessor could not turn into examples, such as undecodable files).
        run: facts about the run shown as a table (device, epochs, seed, seconds, versions).
        test_scores: optional ``(y_true, y_score)`` on the test split, for the score distribution plot.
        class_names: for a binary target, how the plot names class 0 and class 1 (the dataset's
            labels, e.g. ``("good", "bad")``); default ``target = 0`` / ``target = 1``.
        score_name: the score's name on the plot's axis (the pipeline's score column).
    """

    pipeline: str
    title: str = ""
    description: str = ""
    task: str = "binary"
    primary_metric: str = ""
    greater_is_better: bool = True
    created_at: str = ""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    test_scores: tuple[Any, Any] | None = None
    class_names: tuple[str, str] | None = None
    score_name: str = "score"


# -- formatting -------------------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A value as a report shows it: floats to ``digits`` decimals (scientific when tiny or huge), ints
    with thousands separators, ``None`` as "–", booleans as yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value.is_integer() and 1e3 <= abs(value) < 1e15:
            return f"{int(value):,}"
        if value != 0 and (abs(value) < 10.0 ** -(digits - 1) or abs(value) >= 1e6):
            return f"{value:.{max(digits - 1, 1)}e}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(value: Any, digits: int = 4) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    text = _esc(fmt(value, digits))
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def html_table(header: Sequence[str] | None, rows: Sequence[Sequence[Any]], *,
               highlight: int | Collection[int] | None = None, cls: str = "", digits: int = 4) -> str:
    """An HTML table: every cell escaped and formatted by :func:`fmt`.

    ``highlight`` marks rows (class ``hl``): one row index, or a collection of them (e.g. the rows a
    section flags for review).
    """
    marked = {highlight} if isinstance(highlight, int) else set(highlight or ())
    if any(isinstance(i, bool) for i in marked):
        raise TypeError("html_table: highlight takes row indices, not per-row flags; "
                        "pass [i for i, flag in enumerate(flags) if flag]")
    head = "" if header is None else f"<thead><tr>{''.join(f'<th>{_esc(h)}</th>' for h in header)}</tr></thead>"
    body = []
    for i, row in enumerate(rows):
        attr = ' class="hl"' if i in marked else ""
        body.append(f"<tr{attr}>{''.join(_cell(c, digits) for c in row)}</tr>")
    return f'<table class="{cls}">{head}<tbody>{"".join(body)}</tbody></table>'


def _signed(value: Any) -> Any:
    return f"{value:+.4f}" if isinstance(value, float) and math.isfinite(value) else value


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# -- figures ----------------------------------------------------------------------------------------------
def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figures_folder(context: Any) -> Path:
    """The folder a report section's PNGs go to (``figures/`` of the training run's work folder)."""
    folder = Path(context.workdir) / FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_figure(fig: Any, context: Any, name: str) -> str:
    """Lay out ``fig``, write it as ``figures/<name>`` of the training run (:func:`figures_folder`), close
    it, and return the path a :class:`ReportSection`'s ``images`` lists (``"figures/<name>"``)."""
    from verticals.fsutil import safe_name

    safe_name(name, "figure name")
    fig.tight_layout()
    fig.savefig(figures_folder(context) / name, dpi=90)
    pyplot().close(fig)
    return f"{FIGURES}/{name}"


def _plot_history(context: ReportContext, target: Path) -> bool:
    """Train/validation loss and the validation metric per epoch; the kept epoch is marked."""
    history = [h for h in context.history if "epoch" in h]
    if not history:
        return False
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    metric = context.primary_metric
    metric_key = next((k for k in (f"valid_{metric}", metric) if k and any(k in h for h in history)), None)
    panels = 2 if metric_key else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.4), squeeze=False)
    ax = axes[0][0]
    for key, label in (("train_loss", "train"), ("valid_loss", "validation")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax.plot(epochs, [math.nan if v is None else v for v in values], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss per epoch")
    if metric_key:
        ax2 = axes[0][1]
        ax2.plot(epochs, [h.get(metric_key, math.nan) for h in history], marker="o", ms=3, color="tab:green")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel(metric)
        ax2.set_title(f"validation {metric}")
    from matplotlib.ticker import MaxNLocator

    for row in axes:
        for a in row:
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
            if context.best_epoch is not None:
                a.axvline(context.best_epoch, color="grey", ls="--", lw=1, label="kept epoch")
            a.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return True


def _plot_scores(context: ReportContext, target: Path) -> bool:
    """Histogram of the test split's scores per true class (binary tasks): how well they separate."""
    if context.task != "binary" or context.test_scores is None:
        return False
    import numpy as np

    y_true, y_score = (np.asarray(a, dtype=float) for a in context.test_scores)
    ok = np.isfinite(y_true) & np.isfinite(y_score)
    y_true, y_score = y_true[ok], y_score[ok]
    if y_true.size == 0:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    bins = np.linspace(float(y_score.min()), float(y_score.max()) + 1e-9, 30)
    names = context.class_names or ("target = 0", "target = 1")
    for label, color in ((0, "tab:blue"), (1, "tab:red")):
        sel = y_score[y_true == label]
        if sel.size:
            ax.hist(sel, bins=bins, alpha=0.55, density=True, color=color, label=f"{names[label]} ({sel.size:,})")
    ax.set_xlabel(context.score_name)
    ax.set_ylabel("density")
    ax.set_title("test split: score by true class")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return True


# -- standard sections ------------------------------------------------------------------------------------
def _data_section(context: ReportContext) -> ReportSection | None:
    data = context.data
    if not data:
        return None
    facts = [("source", data.get("source")), ("fingerprint (sha256)", data.get("fingerprint")),
             ("rows read", data.get("rows_in")), ("rows valid", data.get("rows_valid")),
             ("rows rejected", data.get("rows_rejected")), ("rows flagged", data.get("rows_flagged"))]
    parts = [html_table(None, [(k, v) for k, v in facts if v is not None], cls="facts")]
    splits = data.get("splits") or {}
    if splits:
        parts.append("<h3>Rows per split</h3>")
        parts.append(html_table(("split", "rows", "positive rate"),
                            [(s, info.get("rows"), info.get("positive_rate")) if isinstance(info, dict)
                             else (s, info, None) for s, info in splits.items()]))
    reasons = data.get("reasons") or []
    if reasons:
        parts.append("<h3>Top reasons for rejected rows</h3>")
        parts.append(html_table(("reason", "rows"), [tuple(r) for r in reasons]))
    elif data.get("rows_rejected") == 0:
        parts.append("<p>No training row was rejected.</p>")
    unusable = data.get("preprocessor_reasons") or []
    if unusable:
        parts.append("<h3>Valid rows the preprocessor rejected (no example made)</h3>")
        parts.append(html_table(("split", "reason", "rows"), [tuple(r) for r in unusable]))
    return ReportSection("Data", "\n".join(parts))


def _metrics_section(context: ReportContext, figures: list[str]) -> ReportSection | None:
    splits = {s: _numeric(context.metrics.get(s) or {}) for s in _SPLITS if context.metrics.get(s)}
    if not splits and not figures:
        return None
    parts = []
    if splits:
        names = list(dict.fromkeys(n for values in splits.values() for n in values))
        if context.primary_metric in names:
            names.remove(context.primary_metric)
            names.insert(0, context.primary_metric)
        rows = [(n, *(splits[s].get(n) for s in splits)) for n in names]
        direction = "higher" if context.greater_is_better else "lower"
        parts.append(f"<p>Primary metric: <b>{_esc(context.primary_metric)}</b> ({direction} is better), "
                     "highlighted. Test metrics are computed once, after training, on rows the model never "
                     "saw.</p>")
        parts.append(html_table(("metric", *splits), rows, highlight=0 if context.primary_metric in names else None))
    if context.baselines:
        names = list(dict.fromkeys(n for v in context.baselines.values() for n in _numeric(v)))
        test = _numeric(context.metrics.get("test") or {})
        rows = [("this model", *(test.get(n) for n in names))]
        rows += [(model, *(_numeric(values).get(n) for n in names)) for model, values in context.baselines.items()]
        parts.append("<h3>Baselines (test split)</h3>")
        parts.append(html_table(("model", *names), rows, highlight=0))
        ours = test.get(context.primary_metric)
        better = [(model, _numeric(values).get(context.primary_metric)) for model, values in context.baselines.items()]
        better = [(m, v) for m, v in better if v is not None and ours is not None
                  and (v > ours if context.greater_is_better else v < ours)]
        if better:
            parts.append("<p><b>This model loses to "
                         + ", ".join(f"{_esc(m)} ({_esc(fmt(v))})" for m, v in better)
                         + f" on {_esc(context.primary_metric)} ({_esc(fmt(ours))} here).</b></p>")
    structured = {k: v for k, v in (context.metrics.get("test") or {}).items() if isinstance(v, Mapping)}
    for name, values in structured.items():
        parts.append(f"<h3>{_esc(name)} (test split)</h3>")
        parts.append(html_table(("", name), [(k, v if not isinstance(v, Mapping) else str(dict(v)))
                                         for k, v in values.items()]))
    return ReportSection("Metrics", "\n".join(parts), images=figures)


def _export_section(context: ReportContext) -> ReportSection | None:
    if not context.parity and not context.variants:
        return None
    parts = []
    p = context.parity
    if p:
        verdict = "passed" if p.get("passed") else "FAILED"
        parts.append(f"<p>ONNX Runtime ({_esc(p.get('provider', 'CPU'))}) against PyTorch on "
                     f"{_esc(fmt(p.get('rows')))} held-out test rows, at a batch size different from the "
                     f"export example: <b>{verdict}</b>; largest absolute difference "
                     f"{_esc(fmt(p.get('max_abs_diff')))} (tolerance {_esc(fmt(p.get('tolerance')))} × "
                     "max(1, |output|)).</p>")
        outputs = p.get("outputs") or {}
        if outputs:
            parts.append(html_table(("output", "max |ONNX − PyTorch|", "limit"),
                                [(name, o.get("max_abs_diff"), o.get("limit")) for name, o in outputs.items()]))
        if p.get("exporter"):
            parts.append(f"<p>Exporter: {_esc(p['exporter'])}; opset {_esc(p.get('opset', ''))}.</p>")
    if context.variants:
        parts.append("<h3>Variants</h3><p>Each variant is scored on the test split through the pipeline's "
                     "own postprocessing and metric and registered only when the metric moves by no more "
                     "than the tolerance.</p>")
        rows = [(name, v.get("file") or "not registered", v.get("metric"), _signed(v.get("delta")), v.get("tolerance"),
                 v.get("provider"), bool(v.get("accepted")), v.get("reason")) for name, v in context.variants.items()]
        parts.append(html_table(("variant", "file", context.primary_metric or "metric", "Δ vs fp32", "tolerance",
                             "provider", "registered", "reason"), rows))
    return ReportSection("ONNX export", "\n".join(parts))


def _run_section(context: ReportContext) -> ReportSection | None:
    if not context.run:
        return None
    return ReportSection("Run", html_table(None, list(context.run.items()), cls="facts"))


# -- writing ----------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:72rem;
     padding:0 1rem;color:#1d232a;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.25rem;border-bottom:1px solid #d8dde3;
   padding-bottom:.2rem;margin-top:2rem} h3{font-size:1.02rem;margin-top:1.2rem}
.sub{color:#5b6570;margin-top:0} table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}
th,td{border:1px solid #d8dde3;padding:.3rem .6rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums} th{background:#f3f5f7}
table.facts td.num{text-align:left} tr.hl td{background:#fff6d6;font-weight:600}
.summary{background:#f3f7fb;border:1px solid #d8e2ec;border-radius:6px;padding:.6rem .9rem}
img{max-width:100%;height:auto;display:block;margin:.6rem 0;border:1px solid #eef0f2}
nav a{margin-right:1rem} footer{margin-top:3rem;color:#5b6570;font-size:.85rem}
"""


def _relative_image(folder: Path, image: str | Path) -> str | None:
    """A path relative to ``folder`` for ``image``; files outside the folder are copied into figures/."""
    path = Path(image)
    candidate = path if path.is_absolute() else folder / path
    if not candidate.is_file():
        return None
    try:
        return candidate.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        target = folder / FIGURES / candidate.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate, target)
        return target.relative_to(folder).as_posix()


def _summary(context: ReportContext) -> str:
    """One line a reader can stop at: the test metric, the parity verdict, the variants kept."""
    parts = []
    test = _numeric(context.metrics.get("test") or {})
    if context.primary_metric in test:
        parts.append(f"test {_esc(context.primary_metric)} <b>{_esc(fmt(test[context.primary_metric]))}</b>")
    if context.parity:
        verdict = "passed" if context.parity.get("passed") else "<b>FAILED</b>"
        parts.append(f"ONNX parity {verdict} (max diff {_esc(fmt(context.parity.get('max_abs_diff')))})")
    if context.variants:
        kept = [k for k, v in context.variants.items() if v.get("accepted")]
        parts.append("variants registered: " + (_esc(", ".join(kept)) if kept else "none"))
    data = context.data
    if data.get("rows_rejected"):
        parts.append(f"{_esc(fmt(data['rows_rejected']))} training rows rejected")
    return f'<p class="summary">{" · ".join(parts)}</p>' if parts else ""


def _render(folder: Path, context: ReportContext, sections: Sequence[ReportSection]) -> str:
    title = context.title or context.pipeline
    body = []
    nav = []
    for i, section in enumerate(sections):
        anchor = f"s{i}"
        nav.append(f'<a href="#{anchor}">{_esc(section.title)}</a>')
        images = []
        for image in section.images:
            rel = _relative_image(folder, image)
            if rel is None:
                images.append(f"<p><i>missing figure: {_esc(image)}</i></p>")
            else:
                images.append(f'<img src="{_esc(rel)}" alt="{_esc(Path(rel).stem)}">')
        body.append(f'<section id="{anchor}"><h2>{_esc(section.title)}</h2>\n{section.html}\n{"".join(images)}</section>')
    sub = " · ".join(_esc(x) for x in (context.description, context.task, context.created_at) if x)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_esc(title)} — training report</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{_esc(title)} — training report</h1><p class=\"sub\">{sub}</p>\n"
            f"{_summary(context)}\n<nav>{''.join(nav)}</nav>\n{''.join(body)}\n"
            "<footer>Written by verticals. Figures are the PNG files in figures/ next to this page; the "
            "numbers are also in metrics.json.</footer></body></html>\n")


def write_metrics(folder: Path, metrics: Mapping[str, Any], baselines: Mapping[str, Any] | None = None) -> Path:
    """``metrics.json``: ``{"train", "valid", "test"}`` plus ``baselines`` when the pipeline has some."""
    data: dict[str, Any] = {s: dict(metrics.get(s) or {}) for s in _SPLITS}
    if baselines:
        data["baselines"] = dict(baselines)
    path = Path(folder) / "metrics.json"
    path.write_text(json.dumps(data, indent=2, allow_nan=True, default=float) + "\n", encoding="utf-8")
    return path


def write_report(folder: Path, context: ReportContext, sections: Sequence[ReportSection] = ()) -> Path:
    """Write ``report.html``, its PNG figures and ``metrics.json`` into ``folder``.

    Args:
        folder: where to write (created if needed); figures go to ``folder/figures``.
        context: what the standard sections show (data, metrics, loss curves, parity, variants, run).
        sections: the pipeline's own sections, rendered after the standard ones. Their ``images`` are
            paths inside ``folder`` (relative to it, or absolute); images elsewhere are copied in.

    Returns:
        The path of ``report.html``.
    """
    folder = Path(folder)
    figures = folder / FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    drawn: list[str] = []
    if _plot_history(context, figures / "loss_curves.png"):
        drawn.append(f"{FIGURES}/loss_curves.png")
    if _plot_scores(context, figures / "test_scores.png"):
        drawn.append(f"{FIGURES}/test_scores.png")
    standard = [_metrics_section(context, drawn), _data_section(context), _export_section(context),
                _run_section(context)]
    every = [s for s in standard if s is not None] + list(sections)
    path = folder / "report.html"
    path.write_text(_render(folder, context, every), encoding="utf-8")
    write_metrics(folder, context.metrics, context.baselines)
    return path
