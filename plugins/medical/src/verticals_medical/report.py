"""The imaging pipeline's sections of the training report: operating point, baseline, confusion,
calibration, and Grad-CAM overlays of test images (true/false positives and negatives)."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

from verticals.spec import ReportSection

if TYPE_CHECKING:  # pragma: no cover
    from verticals_medical.pipeline import ImagingPipeline

__all__ = ["sections"]

PER_OUTCOME = 2
_SCAN_ROWS = 256


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


def sections(pipe: ImagingPipeline, context: Any) -> list[ReportSection]:
    test = context.metrics.get("test", {})
    valid = context.metrics.get("valid", {})
    extras = context.extras or {}
    baseline = (extras.get("baseline_metrics") or {}).get("pixel_logistic", {})
    rows = [("model AUROC (test)", test.get("auroc", float("nan"))),
            ("pixel_logistic baseline AUROC (test, same split)", baseline.get("auroc", float("nan")))]
    point = extras.get("operating_point")
    if point:
        rows += [("operating threshold on P(" + pipe.classes[1] + ")", point.get("threshold")),
                 ("target sensitivity (chosen on validation)", point.get("target_sensitivity")),
                 ("sensitivity validation / test", f"{_fmt(valid.get('sensitivity', float('nan')))} / "
                                                   f"{_fmt(test.get('sensitivity', float('nan')))}"),
                 ("specificity validation / test", f"{_fmt(valid.get('specificity', float('nan')))} / "
                                                   f"{_fmt(test.get('specificity', float('nan')))}")]
    if "auroc_per_class" in test:
        rows += [(f"AUROC {c} vs rest (test)", v) for c, v in test["auroc_per_class"].items()]
    calib = test.get("calibration") or {}
    rows += [("Brier score (test)", calib.get("brier", float("nan"))),
             ("expected calibration error (test)", calib.get("ece", float("nan")))]
    table = "".join(f"<tr><th>{_fmt(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    out = [ReportSection("Operating point and baseline", f"<table>{table}</table>")]
    confusion = test.get("confusion")
    if confusion:
        head = "".join(f"<th>pred. {html.escape(c)}</th>" for c in pipe.classes)
        body = "".join(f"<tr><th>true {html.escape(t)}</th>" + "".join(
            f"<td>{confusion[t].get(p, 0)}</td>" for p in pipe.classes) + "</tr>" for t in pipe.classes)
        out.append(ReportSection("Confusion matrix (test, at the operating point)",
                                 f"<table><tr><th></th>{head}</tr>{body}</table>"))
    try:
        out.append(_grad_cam_section(pipe, context))
    except Exception as exc:  # the report still gets written; say why the overlays are missing
        out.append(ReportSection("Grad-CAM", f"<p>No overlays: {html.escape(type(exc).__name__)}: "
                                             f"{html.escape(str(exc)[:200])}</p>"))
    return out


def _grad_cam_section(pipe: ImagingPipeline, context: Any) -> ReportSection:
    """Up to two test images per outcome (TP, FP, TN, FN), each with its Grad-CAM for the predicted class."""
    import numpy as np
    from PIL import Image

    from verticals_medical.model import grad_cam
    from verticals_medical.pipeline import overlay_png

    test = context.splits.test.head(_SCAN_ROWS)
    if test.height == 0 or context.model is None:
        return ReportSection("Grad-CAM", "<p>No test images.</p>")
    batch = context.preprocessor.transform(test, with_target=True)
    if not len(batch):
        return ReportSection("Grad-CAM", "<p>No decodable test images.</p>")
    predicted = context.predictions["test"].select("image_id", "predicted")
    codes = {c: i for i, c in enumerate(pipe.classes)}
    order = batch.ids.with_row_index("_i").join(predicted, left_on="image", right_on="image_id", how="inner")
    picks: dict[str, list[tuple[int, int]]] = {"true positive": [], "false positive": [], "true negative": [],
                                               "false negative": []}
    for i, pred in order.select("_i", "predicted").iter_rows():
        truth, guess = int(batch.target[i]), codes[pred]
        outcome = ("true " if (truth != 0) == (guess != 0) else "false ") + ("positive" if guess != 0 else "negative")
        if len(picks[outcome]) < PER_OUTCOME:
            picks[outcome].append((i, guess))
    chosen = [(k, i, g) for k, v in picks.items() for i, g in v]
    if not chosen:
        return ReportSection("Grad-CAM", "<p>No test predictions to explain.</p>")
    index = np.asarray([i for _, i, _ in chosen])
    maps = grad_cam(context.model, context.graph_module, batch.inputs["image"][index], [g for _, _, g in chosen])
    images, captions = [], []
    for j, (outcome, i, guess) in enumerate(chosen):
        name = f"gradcam-{outcome.replace(' ', '-')}-{j}.png"
        path = context.workdir / name
        path.write_bytes(overlay_png(batch.inputs["image"][i], maps[j]))
        with Image.open(path) as img:  # upscale small inputs so the overlay is readable in the report
            img.resize((192, 192), Image.Resampling.NEAREST).save(path)
        images.append(str(path))
        captions.append(f"<li>{html.escape(name)}: {outcome}, predicted {html.escape(pipe.classes[guess])}, "
                        f"true {html.escape(pipe.classes[int(batch.target[i])])}</li>")
    text = ("<p>Grad-CAM (captum <code>LayerGradCam</code> on the last residual stage) for the predicted "
            "class, over the model's input pixels; red marks the regions that raised the predicted class's "
            "score. Images are identified here only by outcome.</p><ul>" + "".join(captions) + "</ul>")
    return ReportSection("Grad-CAM on test images", text, images=images)
