"""``medical.imaging``: image files → class probabilities per image and per study, with saliency maps.

Scoring output, one row per image: ``patient_id``, ``study_id``, ``image_id`` (keyed pseudonyms),
``file`` (the path relative to the scored folder), ``p_<class>`` per class, ``score`` (P(positive) for
two classes, else the predicted class's probability), ``predicted`` (at the operating point chosen on
validation), ``flagged`` (predicted ≠ the first, normal class) and ``saliency`` (for flagged images: an
overlay PNG of the class-activation map, computed inside the ONNX graph, written as a side output).

Per study, ``_studies.parquet`` next to the parts: for two classes, the study's score is the **maximum**
P(positive) over its images (a finding on any slice makes the study positive) and it is flagged when
that maximum reaches the operating threshold; with more classes, the class probabilities are
**averaged** over the images and the most probable class is predicted. Both list the image count and
how many images were flagged.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.pipeline import Pipeline
from verticals.spec import (
    Batch,
    DatasetSpec,
    OutputColumn,
    Preprocessor,
    ReportSection,
    TrainingConfig,
)

from verticals_medical.preprocess import MedicalPreprocessor

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["DEFAULT_TARGET_SENSITIVITY", "ImagingPipeline", "class_column"]

DEFAULT_TARGET_SENSITIVITY = 0.90
_CAM_ALPHA = 0.45


def class_column(name: str) -> str:
    """``p_<class>`` with anything but letters, digits and underscores replaced by ``_``."""
    return "p_" + re.sub(r"[^0-9A-Za-z_]", "_", str(name)).lower()


class ImagingPipeline(Pipeline):
    """Image classification with patient-level splits, an operating point and saliency maps.

    Args:
        name, dataset: the pipeline's and its dataset's local names.
        classes: the labels, the normal (negative) one first; two classes make a binary task.
        size: side of the square the images are letterboxed to.
        window: a VOI window preset for DICOM (``lung``, ``soft_tissue``, ``bone``, ``brain``) or
            ``None`` for the file's own window.
        target_sensitivity: sensitivity the operating point must reach on validation.
        root: folder the training files live under (``file`` is relative to it in reports).
        epochs, width: training length and the network's base width.
    """

    description = "Medical images (DICOM, PNG/JPEG, NumPy) → class probabilities, per study, with saliency"
    model = "resnet"
    task = "multiclass"
    score_column = "score"
    primary_metric = "auroc"
    greater_is_better = True

    def __init__(self, name: str = "imaging", dataset: str = "ct_slices", classes: Sequence[str] = ("normal", "lesion"),
                 *, size: int = 64, window: str | None = None,
                 target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY, root: Path | str | None = None,
                 epochs: int = 20, width: int = 16, description: str = "") -> None:
        from verticals.errors import UserError

        if not 0 < target_sensitivity < 1:
            raise UserError(f"target sensitivity {target_sensitivity} is not in (0, 1)",
                            hint="use a fraction such as 0.9")
        if len(classes) < 2 or len(set(map(str, classes))) != len(classes):
            raise UserError(f"pipeline {name}: classes {list(classes)} must be two or more distinct labels",
                            hint="label the images with at least two classes")
        self.name = name
        self.dataset = dataset
        self.classes = [str(c) for c in classes]
        self.size = int(size)
        self.window = window
        self.target_sensitivity = float(target_sensitivity)
        self.root = Path(root) if root is not None else None
        self.width = int(width)
        if description:
            self.description = description
        self.training = TrainingConfig(epochs=int(epochs), batch_size=32, learning_rate=2e-3, weight_decay=1e-4,
                                       patience=5, class_weighting=True, seed=42)
        prob = tuple(OutputColumn(class_column(c), "float", f"P({c})") for c in self.classes)
        self.output_columns = (
            OutputColumn("patient_id", "string", "patient pseudonym (HMAC of PatientID, or of the given patient)"),
            OutputColumn("study_id", "string", "study pseudonym"),
            OutputColumn("image_id", "string", "image pseudonym (HMAC of SOPInstanceUID, or of the file)"),
            OutputColumn("file", "string", "the image file, relative to the scored folder"),
            *prob,
            OutputColumn("score", "float", f"P({self.classes[1]})" if len(self.classes) == 2
                         else "probability of the predicted class"),
            OutputColumn("predicted", "string", "predicted class at the operating point chosen on validation"),
            OutputColumn("flagged", "bool", f"predicted class is not '{self.classes[0]}'"),
            OutputColumn("saliency", "string", "class-activation overlay PNG (flagged images, scoring into a folder)"),
        )

    # -- contract ------------------------------------------------------------------------------------
    def preprocessor(self, dataset: DatasetSpec) -> Preprocessor:
        return MedicalPreprocessor(dataset.schema, self.classes, size=self.size, window=self.window)

    def model_options(self, dataset: DatasetSpec, info: Mapping[str, Any]) -> dict[str, Any]:
        return {"width": self.width}

    def split(self, frame: pl.DataFrame, dataset: DatasetSpec, seed: int) -> Any:
        from verticals_medical.splits import patient_split

        return patient_split(frame, dataset, seed, self.classes)

    def evaluate(self, predictions: pl.DataFrame, batch: Batch) -> dict[str, Any]:
        import numpy as np

        from verticals_medical.evaluation import classification_metrics

        if batch.target is None:
            return {}
        probabilities = self._probabilities(predictions)
        codes = {c: i for i, c in enumerate(self.classes)}
        predicted = np.asarray([codes[p] for p in predictions.get_column("predicted").to_list()], dtype=np.int64)
        return classification_metrics(np.asarray(batch.target), probabilities, predicted, self.classes)

    def _probabilities(self, predictions: pl.DataFrame) -> np.ndarray:
        import numpy as np

        if predictions.height == 0:
            return np.zeros((0, len(self.classes)))
        return np.column_stack([predictions.get_column(class_column(c)).to_numpy() for c in self.classes])

    def fit_extras(self, context: Any) -> dict[str, Any]:
        """The operating point on validation and the ``pixel_logistic`` baseline on the same split."""
        import numpy as np

        from verticals_medical.deid import PROFILE_VERSION
        from verticals_medical.evaluation import downsample, operating_threshold, pixel_logistic

        extras: dict[str, Any] = {"classes": self.classes, "saliency_size": self.size,
                                  "target_sensitivity": self.target_sensitivity, "deidentification": PROFILE_VERSION}
        if len(self.classes) == 2:
            valid = context.predictions.get("valid")
            batch = context.batches.get("valid")
            if valid is not None and batch is not None and batch.target is not None and valid.height:
                score = valid.get_column(class_column(self.classes[1])).to_numpy()
                y = np.asarray(batch.target)
                threshold = operating_threshold(y, score, self.target_sensitivity)
                extras["operating_point"] = {
                    "threshold": threshold, "target_sensitivity": self.target_sensitivity,
                    "valid_sensitivity": float(np.mean(score[y == 1] >= threshold)) if (y == 1).any() else None,
                    "valid_specificity": float(np.mean(score[y == 0] < threshold)) if (y == 0).any() else None}
            else:
                extras["operating_point"] = {"threshold": 0.5, "target_sensitivity": self.target_sensitivity,
                                             "note": "no validation examples: threshold 0.5"}
        pre = context.preprocessor
        data = {}
        for split in ("train", "test"):
            xs, ys = [], []
            frame = context.splits.test if split == "test" else context.splits.train
            for start in range(0, frame.height, 256):
                b = pre.transform(frame.slice(start, 256), with_target=True)
                if len(b):
                    xs.append(downsample(b.inputs["image"]))
                    ys.append(np.asarray(b.target))
            data[split] = (np.concatenate(xs) if xs else np.zeros((0, 256)),
                           np.concatenate(ys) if ys else np.zeros(0, dtype=np.int64))
        extras["baseline_metrics"] = {"pixel_logistic": pixel_logistic(*data["train"], *data["test"],
                                                                       classes=len(self.classes))}
        return extras

    # -- scoring -------------------------------------------------------------------------------------
    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: Batch, extras: Any) -> pl.DataFrame:
        import numpy as np
        import polars as pl
        from verticals.postprocess import softmax

        logits = np.asarray(outputs["logits"], dtype=np.float64).reshape(len(batch), -1)
        probabilities = softmax(logits)
        if len(self.classes) == 2:
            point = extras.get("operating_point") if hasattr(extras, "get") else None
            threshold = float(point["threshold"]) if point else 0.5
            score = probabilities[:, 1]
            predicted = (score >= threshold).astype(np.int64)
        else:
            predicted = probabilities.argmax(axis=1)
            score = probabilities.max(axis=1)
        aux = batch.aux
        n = len(batch)
        paths = aux.get_column("path").to_list() if aux is not None else [""] * n
        root = getattr(extras, "input_root", None) or (str(self.root) if self.root is not None else None)
        files = [_relative(p, root) for p in paths]
        saliency: list[str | None] = [None] * n
        flagged = predicted != 0
        if getattr(extras, "writes_side_outputs", False) and "cam" in outputs and "image" in batch.inputs:
            cams = np.asarray(outputs["cam"])
            for i in np.flatnonzero(flagged):
                name = hashlib.sha256(str(paths[i]).encode("utf-8", "surrogatepass")).hexdigest()[:20]
                target, relative = extras.side_output(f"saliency-{name}.png")
                Path(target).write_bytes(overlay_png(np.asarray(batch.inputs["image"][i]), cams[i, predicted[i]]))
                saliency[i] = relative
        columns: dict[str, Any] = {
            "patient_id": aux.get_column("patient") if aux is not None else pl.Series([None] * n, dtype=pl.String),
            "study_id": aux.get_column("study") if aux is not None else pl.Series([None] * n, dtype=pl.String),
            # From aux: scoring names rows by _row/_source and replaces the batch's ids.
            "image_id": aux.get_column("image") if aux is not None else pl.Series([None] * n, dtype=pl.String),
            "file": pl.Series(files, dtype=pl.String),
        }
        for k, c in enumerate(self.classes):
            columns[class_column(c)] = probabilities[:, k]
        columns["score"] = score
        columns["predicted"] = pl.Series([self.classes[int(k)] for k in predicted], dtype=pl.String)
        columns["flagged"] = pl.Series(flagged, dtype=pl.Boolean)
        columns["saliency"] = pl.Series(saliency, dtype=pl.String)
        return pl.DataFrame(columns)

    def summarize(self, parts: Sequence[Path], context: Any) -> dict[str, pl.DataFrame]:
        """``studies``: one row per study (see the module docstring)."""
        import polars as pl

        probs = [class_column(c) for c in self.classes]
        empty = pl.DataFrame(schema={"patient_id": pl.String, "study_id": pl.String, "images": pl.UInt32,
                                     "images_flagged": pl.UInt32, **{p: pl.Float64 for p in probs},
                                     "score": pl.Float64, "predicted": pl.String, "flagged": pl.Boolean})
        if not parts:
            return {"studies": empty}
        rows = pl.scan_parquet([str(p) for p in parts]).select("patient_id", "study_id", *probs, "score", "flagged")
        agg = [pl.len().cast(pl.UInt32).alias("images"), pl.col("flagged").sum().cast(pl.UInt32).alias("images_flagged")]
        if len(self.classes) == 2:
            point = context.get("operating_point") if hasattr(context, "get") else None
            threshold = float(point["threshold"]) if point else 0.5
            table = rows.group_by("patient_id", "study_id").agg(
                *agg, *(pl.col(p).max() for p in probs), pl.col("score").max()).collect()
            table = table.with_columns(
                pl.when(pl.col("score") >= threshold).then(pl.lit(self.classes[1])).otherwise(pl.lit(self.classes[0]))
                .alias("predicted"), (pl.col("score") >= threshold).alias("flagged"))
        else:
            table = rows.group_by("patient_id", "study_id").agg(*agg, *(pl.col(p).mean() for p in probs)).collect()
            best = table.select(probs).to_numpy().argmax(axis=1) if table.height else []
            table = table.with_columns(
                pl.Series("score", table.select(probs).to_numpy().max(axis=1) if table.height else [], dtype=pl.Float64),
                pl.Series("predicted", [self.classes[int(k)] for k in best], dtype=pl.String),
                pl.Series("flagged", [int(k) != 0 for k in best], dtype=pl.Boolean))
        return {"studies": table.select(empty.columns).sort("patient_id", "study_id")}

    # -- reporting -----------------------------------------------------------------------------------
    def report_sections(self, context: Any) -> list[ReportSection]:
        from verticals_medical.report import sections

        return sections(self, context)


def _relative(path: str, root: str | None) -> str:
    if not path:
        return path
    if root:
        try:
            rel = os.path.relpath(path, root)
        except ValueError:
            rel = None
        if rel is not None and not rel.startswith(".."):
            return Path(rel).as_posix()
    return Path(path).name


def overlay_png(image: np.ndarray, cam: np.ndarray) -> bytes:
    """The image (grayscale) with the class-activation map over it in red: positive evidence only,
    scaled to its own maximum, upsampled bilinearly to the image's size."""
    import io

    import numpy as np
    from PIL import Image

    gray = np.asarray(image).reshape(image.shape[-2], image.shape[-1]).astype(np.float32)
    heat = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    peak = float(heat.max())
    heat = heat / peak if peak > 0 else heat
    up = np.asarray(Image.fromarray((heat * 255).astype(np.uint8), "L").resize(gray.shape[::-1], Image.Resampling.BILINEAR),
                    dtype=np.float32) / 255.0
    rgb = np.repeat(gray[..., None], 3, axis=2)
    red = np.array([255.0, 40.0, 0.0], dtype=np.float32)
    mix = rgb * (1 - _CAM_ALPHA * up[..., None]) + red * (_CAM_ALPHA * up[..., None])
    buffer = io.BytesIO()
    Image.fromarray(np.clip(mix, 0, 255).astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _esc(value: Any) -> str:
    return html.escape(str(value))
