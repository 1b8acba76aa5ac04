"""The training report: a self-contained page with its figures next to it, and metrics.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from verticals.report import ReportContext, write_report
from verticals.spec import ReportSection


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)
    return path


@pytest.fixture
def context() -> ReportContext:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    score = np.clip(0.3 * y + 0.7 * rng.random(300), 0, 1)
    return ReportContext(
        pipeline="reference.mlp", description="Synthetic <b>reference</b>", task="binary", primary_metric="auc",
        created_at="2026-11-22T10:00:00Z",
        metrics={"train": {"auc": 0.81, "brier": 0.12}, "valid": {"auc": 0.79, "brier": 0.13},
                 "test": {"auc": 0.7777, "brier": 0.131}},
        baselines={"logistic_regression": {"auc": 0.75, "brier": 0.14}},
        history=[{"epoch": i, "train_loss": 0.7 - 0.05 * i, "valid_loss": 0.68 - 0.03 * i,
                  "valid_auc": 0.7 + 0.02 * i} for i in range(1, 5)],
        best_epoch=3,
        parity={"max_abs_diff": 2.4e-7, "tolerance": 1e-4, "rows": 299, "passed": True,
                "outputs": {"logits": {"max_abs_diff": 2.4e-7, "limit": 1e-4}}},
        variants={"int8": {"file": "model.int8.onnx", "metric": 0.7771, "delta": -0.0006, "tolerance": 0.005,
                           "accepted": True, "provider": "CPUExecutionProvider", "reason": "within"},
                  "fp16": {"file": None, "metric": None, "delta": None, "tolerance": 0.005, "accepted": False,
                           "reason": "not verified: no CUDA GPU"}},
        data={"source": "data.csv", "rows_in": 1000, "rows_valid": 990, "rows_rejected": 10,
              "reasons": [["column 'f01' is outside [0, 1]", 7], ["target 'target' is missing", 3]],
              "splits": {"train": {"rows": 700}, "valid": {"rows": 90}, "test": {"rows": 200}}},
        run={"device": "cpu", "seed": 42},
        test_scores=(y, score),
    )


def test_report_is_self_contained_with_relative_figures(tmp_path: Path, context: ReportContext) -> None:
    outside = _png(tmp_path / "calibration.png")
    folder = tmp_path / "report"
    folder.mkdir()
    inside = _png(folder / "lift.png")
    sections = [ReportSection("Calibration <by band>", "<p>pipeline text</p>", images=[str(outside), "lift.png"])]

    path = write_report(folder, context, sections)

    page = path.read_text(encoding="utf-8")
    assert path == folder / "report.html"
    # Nothing fetched from elsewhere: every src is a relative path to a file that exists in the folder.
    sources = re.findall(r'src="([^"]+)"', page)
    assert "figures/loss_curves.png" in sources and "figures/test_scores.png" in sources
    assert "figures/calibration.png" in sources and "lift.png" in sources
    for src in sources:
        assert not src.startswith(("/", "http")), src
        assert (folder / src).is_file(), src
    assert inside.is_file()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    # Text from plugins and data is escaped; the pipeline's trusted HTML fragment is kept.
    assert "Calibration &lt;by band&gt;" in page and "Synthetic &lt;b&gt;reference&lt;/b&gt;" in page
    assert "<p>pipeline text</p>" in page
    # What a reader looks for: the test metric, the parity verdict, rejected rows and their reasons.
    assert "0.7777" in page and "passed" in page and "column &#x27;f01&#x27; is outside [0, 1]" in page
    assert "model.int8.onnx" in page and "not verified: no CUDA GPU" in page


def test_figures_are_real_pngs(tmp_path: Path, context: ReportContext) -> None:
    write_report(tmp_path, context)
    for name in ("loss_curves.png", "test_scores.png"):
        data = (tmp_path / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_metrics_json_has_splits_and_baselines(tmp_path: Path, context: ReportContext) -> None:
    write_report(tmp_path, context)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"train", "valid", "test", "baselines"}
    assert metrics["test"]["auc"] == pytest.approx(0.7777)
    assert metrics["baselines"]["logistic_regression"]["auc"] == pytest.approx(0.75)


def test_report_without_history_or_baselines(tmp_path: Path) -> None:
    bare = ReportContext(pipeline="x.y", metrics={"train": {"rmse": 1.0}, "valid": {"rmse": 1.1},
                                                  "test": {"rmse": 1.2}}, task="regression", primary_metric="rmse",
                         greater_is_better=False)
    page = write_report(tmp_path, bare).read_text()
    assert "lower is better" in page and "<img" not in page
    assert "baselines" not in json.loads((tmp_path / "metrics.json").read_text())


def test_report_helpers_format_escape_and_place_figures(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from verticals.report import figures_folder, fmt, html_table

    assert [fmt(v) for v in (0.91834, 12_000.0, 1234, None, True, float("nan"), 2e-5)] == \
        ["0.9183", "12,000", "1,234", "–", "yes", "–", "2.000e-05"]
    assert fmt(0.91834, digits=2) == "0.92"
    table = html_table(["name <b>", "value"], [["a&b", 0.5]], highlight=0)
    assert "<th>name &lt;b&gt;</th>" in table and "<td>a&amp;b</td>" in table
    assert '<td class="num">0.5000</td>' in table and '<tr class="hl">' in table
    folder = figures_folder(SimpleNamespace(workdir=tmp_path))
    assert folder == tmp_path / "figures" and folder.is_dir()
    from verticals.report import pyplot, save_figure

    fig, ax = pyplot().subplots()
    ax.plot([0, 1], [1, 0])
    assert save_figure(fig, SimpleNamespace(workdir=tmp_path), "curve.png") == "figures/curve.png"
    assert (folder / "curve.png").read_bytes()[:4] == b"\x89PNG" and not pyplot().fignum_exists(fig.number)
    with pytest.raises(ValueError, match="figure name"):
        save_figure(pyplot().figure(), SimpleNamespace(workdir=tmp_path), "../escape.png")


def test_html_table_highlights_one_row_or_several() -> None:
    from verticals.report import html_table

    rows = [["a", 1], ["b", 2], ["c", 3], ["d", 4]]

    def marked(table: str) -> list[str]:
        return [row.split("<td>")[1].split("</td>")[0] for row in table.split("<tr")[2:] if 'class="hl"' in row]

    assert marked(html_table(["k", "v"], rows, highlight=2)) == ["c"]
    assert marked(html_table(["k", "v"], rows, highlight=[0, 3])) == ["a", "d"]
    assert marked(html_table(["k", "v"], rows, highlight={1})) == ["b"]
    assert marked(html_table(["k", "v"], rows, highlight=range(0))) == []
    assert marked(html_table(["k", "v"], rows)) == []
    with pytest.raises(TypeError, match="row indices, not per-row flags"):
        html_table(["k", "v"], rows, highlight=[True, False, True, False])
