"""A synthetic reference plugin of the *files* shape: a folder of tiny images, two classes, a small CNN.

The core's tests use it to take image files through the whole contract (streamed, decoded in threads,
augmented, rejected when undecodable, side outputs while scoring) without a domain plugin. Register it
with :func:`verticals.testing.use_plugins` (``{"files": FilesPlugin(root=tmp)}`` gives the pipeline
``files.shapes``).

Generating rule of :func:`make_images` (seeded, documented so anyone can reproduce it); image ``i``:

* width and height drawn independently from ``U{20 … 64}`` pixels; mode ``L`` (grayscale) with
  probability 0.3, else ``RGB``;
* background: uniform noise in ``[0, 90]`` per pixel (and per channel for RGB);
* one bright shape, intensity ``U{170 … 255}`` (per channel for RGB), fully inside the image at a
  uniform position: a filled axis-aligned **square** of side ``s``, or a filled **disc** of the same
  area (radius ``s / sqrt(pi)``), with ``s = U(0.35, 0.6) * min(width, height)``;
* label ``disc`` with probability 0.5, else ``square``. File names (``img-00042.png``) do not reveal it.

``corrupt`` files (PNG headers followed by garbage, or a truncated PNG) keep their label in the
frame: the preprocessor must reject them with their path and the reason, and everything else goes on.

The pipeline: :class:`ImagePreprocessor` decodes each file with Pillow (EXIF orientation applied, any
mode to RGB), letterboxes it to ``size × size`` (aspect ratio kept, black padding, bilinear, so the
result depends only on the file) and hands ``uint8`` pixels to the graph, where
:func:`normalize_module` scales them with the channel statistics fitted on training images. The model
(:func:`cnn_factory`) returns the logit of ``disc`` and its class-activation map; ``postprocess``
turns them into ``score``, ``label`` and, while scoring into a folder, a PNG heat map per image.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.hookspecs import hookimpl
from verticals.pipeline import Pipeline
from verticals.spec import (
    Batch,
    Column,
    DatasetSpec,
    ModelSpec,
    OutputColumn,
    Preprocessor,
    Schema,
    SplitSpec,
    TensorSpec,
    TrainingConfig,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    import torch

__all__ = [
    "CLASSES",
    "FilesPlugin",
    "ImagePreprocessor",
    "ShapesPipeline",
    "cnn_factory",
    "decode_image",
    "files_schema",
    "make_images",
    "normalize_module",
]

CLASSES = ("square", "disc")
"""Target labels, in the order of their encoding (``disc`` is the positive class)."""
POSITIVE = "disc"
INDEX = "_images.json"
"""File in a generated folder that records the generator's parameters and each image's label."""
_SIDES = (20, 64)
_GRAY = 0.3


def files_schema() -> Schema:
    """One row per image file: its path (the id, carried to the scoring output) and its label."""
    return Schema((
        Column("path", "path", "id", on_missing="reject", description="image file (PNG, JPEG, … any Pillow reads)"),
        Column("label", "category", "target", categories=CLASSES, description="the shape in the image"),
    ))


# -- data --------------------------------------------------------------------------------------------------
def _draw(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One image by the module's generating rule: ``(pixels [H, W] or [H, W, 3] uint8, label)``."""
    import numpy as np

    width = int(rng.integers(_SIDES[0], _SIDES[1] + 1))
    height = int(np.clip(round(width * float(rng.uniform(0.75, 1.33))), _SIDES[0], _SIDES[1]))
    gray = bool(rng.random() < _GRAY)
    label = CLASSES[int(rng.random() < 0.5)]
    channels = 1 if gray else 3
    pixels = rng.integers(0, 91, (height, width, channels)).astype(np.uint8)
    side = float(rng.uniform(0.45, 0.7)) * min(width, height)
    half = side / 2 if label == "square" else side / math.sqrt(math.pi)
    cx = float(rng.uniform(half, width - half))
    cy = float(rng.uniform(half, height - half))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    if label == "square":
        mask = (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    else:
        mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= half ** 2
    pixels[mask] = rng.integers(170, 256, channels).astype(np.uint8)
    return (pixels[:, :, 0] if gray else pixels), label


def _corrupt_bytes(rng: np.random.Generator, valid_png: bytes, i: int) -> bytes:
    """Undecodable content: a PNG signature and garbage, or a valid PNG cut in half (alternating)."""
    if i % 2 == 0:
        return b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 64).astype("uint8").tobytes()
    return valid_png[: max(40, len(valid_png) // 2)]


def make_images(root: Path | str, images: int, *, seed: int = 0, corrupt: int = 0) -> pl.DataFrame:
    """Write ``images`` PNG files (the last ``corrupt`` of them undecodable) into ``root`` and return the
    dataset's frame: ``path`` (absolute) and ``label``, one row per file, in file-name order.

    A folder already generated with the same parameters is reused as it is (its index file records
    them); a folder holding anything else is refused rather than mixed with new files.

    Raises:
        UserError: ``root`` holds files that this generator did not write with these parameters.
    """
    import io

    import numpy as np
    import polars as pl
    from PIL import Image

    from verticals.errors import UserError

    if images < 1 or not 0 <= corrupt <= images:
        raise UserError(f"cannot generate {images} images with {corrupt} corrupt ones",
                        hint="ask for at least one image and at most as many corrupt ones as images")
    root = Path(root).expanduser().resolve()
    params = {"generator": "verticals.testing.files.make_images", "images": int(images), "seed": int(seed),
              "corrupt": int(corrupt)}
    index = root / INDEX
    if index.is_file():
        recorded = json.loads(index.read_text())
        if recorded.get("params") == params:
            return pl.DataFrame({"path": [str(root / n) for n in recorded["files"]],
                                 "label": recorded["labels"]})
    if root.exists() and any(root.iterdir()):
        raise UserError(f"image folder {root} is not empty and was not generated with {params}",
                        hint="pass an empty or new folder as root")
    root.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    labels: list[str] = []
    width = max(5, len(str(images - 1)))
    for i in range(images):
        rng = np.random.default_rng([seed, i])
        pixels, label = _draw(rng)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").save(buffer, format="PNG")
        data = buffer.getvalue()
        if i >= images - corrupt:
            data = _corrupt_bytes(rng, data, i)
        name = f"img-{i:0{width}d}.png"
        (root / name).write_bytes(data)
        names.append(name)
        labels.append(label)
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps({"params": params, "files": names, "labels": labels}))
    os.replace(tmp, index)
    return pl.DataFrame({"path": [str(root / n) for n in names], "label": labels})


# -- preprocessing -----------------------------------------------------------------------------------------
def decode_image(path: str, size: int) -> tuple[np.ndarray, str]:
    """``(pixels uint8 [3, size, size], source mode)`` of the image file at ``path``.

    EXIF orientation is applied, every mode becomes RGB (grayscale is replicated), and the image is
    letterboxed: scaled to fit ``size × size`` with its aspect ratio kept (bilinear), centred on black.

    Raises:
        OSError: the file is missing, unreadable or not an image Pillow can decode (also raised for a
            decompression bomb or a truncated file).
    """
    import numpy as np
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:  # reads the header only
            limit = Image.MAX_IMAGE_PIXELS
            if limit and img.width * img.height > limit:  # checked before decoding a single pixel
                raise OSError(f"{img.width}×{img.height} pixels is more than Pillow's limit of {limit}")
            img.load()
            mode = img.mode
            img = ImageOps.exif_transpose(img)
            rgb = img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise OSError(f"too many pixels ({exc})") from exc
    except (SyntaxError, ValueError) as exc:  # Pillow plugins raise these for malformed headers
        raise OSError(str(exc)) from exc
    boxed = ImageOps.pad(rgb, (size, size), method=Image.Resampling.BILINEAR, color=(0, 0, 0))
    return np.asarray(boxed, dtype=np.uint8).transpose(2, 0, 1), mode


def _reason(path: str, exc: BaseException) -> str:
    """One line naming the file and what is wrong with it (Pillow's own message, without the path it
    repeats)."""
    if isinstance(exc, FileNotFoundError):
        return f"image file {path} does not exist"
    text = str(exc).replace(repr(path), "").replace(f'"{path}"', "").replace(path, "")
    text = " ".join(text.split()).rstrip(" :") or type(exc).__name__
    return f"cannot decode image file {path}: {text}"


def normalize_module(mean: Sequence[float], std: Sequence[float]) -> torch.nn.Module:
    """The in-graph preprocessing: ``uint8`` pixels → ``(x / 255 - mean) / std`` per channel, float32."""
    import torch
    from torch import nn

    class Normalize(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("scale", 1.0 / torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"image": (image.float() * (1.0 / 255.0) - self.mean) * self.scale}

    return Normalize()


class ImagePreprocessor(Preprocessor):
    """Image files → ``image`` uint8 [N, 3, size, size]; streamed, decoded in threads, row-wise.

    Fitted state: per-channel mean and standard deviation of the pixels (in ``[0, 1]``) of up to
    ``fit_images`` decodable training images, applied inside the exported graph.
    """

    rowwise = True
    materialize = False
    workers = 0  # decode threads: as many as cores (at most 8); Pillow releases the GIL while decoding
    chunk_rows = 64

    def __init__(self, schema: Schema, *, size: int = 32, positive: str = POSITIVE, fit_images: int = 256) -> None:
        paths = [c.name for c in schema if c.dtype == "path"]
        if not paths:
            from verticals.errors import PluginError

            raise PluginError("ImagePreprocessor needs a 'path'-typed column in the dataset schema",
                              hint="add Column(name, 'path', ...) to the schema")
        self.schema = schema
        self.path = paths[0]
        self.ids = schema.ids
        self.target = schema.target.name if schema.target is not None else None
        self.size = int(size)
        self.positive = positive
        self.fit_images = int(fit_images)
        self.mean = [0.5, 0.5, 0.5]
        self.std = [0.25, 0.25, 0.25]

    def fit(self, frame: pl.DataFrame) -> None:
        import numpy as np

        total = np.zeros(3)
        squares = np.zeros(3)
        count = 0
        for path in frame.get_column(self.path).head(4 * self.fit_images).to_list():
            if count >= self.fit_images:
                break
            try:
                pixels, _ = decode_image(str(path), self.size)
            except OSError:
                continue  # transform rejects it with its reason; statistics come from the others
            x = pixels.reshape(3, -1).astype(np.float64) / 255.0
            total += x.sum(axis=1)
            squares += (x * x).sum(axis=1)
            count += x.shape[1]
        if count:
            mean = total / count
            std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
            self.mean = [float(v) for v in mean]
            self.std = [float(max(v, 1e-3)) for v in std]

    def transform(self, frame: pl.DataFrame, *, with_target: bool) -> Batch:
        import numpy as np
        import polars as pl

        paths = frame.get_column(self.path).to_list()
        images = np.empty((len(paths), 3, self.size, self.size), dtype=np.uint8)
        modes: list[str] = []
        keep: list[int] = []
        bad: list[int] = []
        reasons: list[str] = []
        for i, path in enumerate(paths):
            try:
                images[len(keep)], mode = decode_image(str(path), self.size)
            except OSError as exc:
                bad.append(i)
                reasons.append(_reason(str(path), exc))
                continue
            keep.append(i)
            modes.append(mode)
        rows = pl.Series(keep, dtype=pl.UInt32)
        kept = frame[rows] if bad else frame
        rejects = None
        if bad:
            rejects = frame[pl.Series(bad, dtype=pl.UInt32)].select(pl.all().cast(pl.String)).with_columns(
                pl.Series("_row", bad, dtype=pl.Int64), pl.Series("_reason", reasons, dtype=pl.String))
        target = None
        if with_target and self.target is not None and self.target in kept.columns:
            target = (kept.get_column(self.target).cast(pl.String) == self.positive).to_numpy().astype(np.float32)
        return Batch(ids=kept.select(self.ids), inputs={"image": images[: len(keep)]}, target=target,
                     aux=pl.DataFrame({"mode": modes}, schema={"mode": pl.String}), rejects=rejects)

    def targets(self, frame: pl.DataFrame) -> np.ndarray | None:
        """Labels straight from the frame (no decoding) for class weights; undecodable files included."""
        import numpy as np
        import polars as pl

        if self.target is None or self.target not in frame.columns:
            return None
        return (frame.get_column(self.target).cast(pl.String) == self.positive).to_numpy().astype(np.float32)

    def augment(self, batch: Batch, rng: np.random.Generator) -> Batch:
        """Random horizontal and vertical flips (each with probability 0.5 per image): the planted
        shapes do not change under them, their positions and the noise do."""
        image = batch.inputs["image"].copy()
        n = image.shape[0]
        horizontal = rng.random(n) < 0.5
        vertical = rng.random(n) < 0.5
        image[horizontal] = image[horizontal][..., ::-1]
        image[vertical] = image[vertical][..., ::-1, :]
        return replace(batch, inputs={**batch.inputs, "image": image})

    def signature(self) -> dict[str, TensorSpec]:
        return {"image": TensorSpec("uint8", (-1, 3, self.size, self.size))}

    def info(self) -> dict[str, Any]:
        return {"channels": 3, "size": self.size, "classes": list(CLASSES)}

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "mean": self.mean, "std": self.std, "positive": self.positive,
                "path": self.path, "fit_images": self.fit_images}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.size = int(state["size"])
        self.mean = [float(v) for v in state["mean"]]
        self.std = [float(v) for v in state["std"]]
        self.positive = str(state.get("positive", self.positive))
        self.fit_images = int(state.get("fit_images", self.fit_images))

    def graph_module(self) -> torch.nn.Module:
        return normalize_module(self.mean, self.std)


# -- model -------------------------------------------------------------------------------------------------
def cnn_factory(info: Mapping[str, Any], width: int = 8) -> Any:
    """Three 3×3 convolutions with batch normalisation (``width``, 2×, 4× channels; two 2×2 max-pools), global average pooling
    and a linear layer. Outputs the logit of the positive class and its class-activation map
    ``[N, size/4, size/4]`` (the linear layer applied at every position, so its mean is the logit)."""
    from torch import nn

    channels = int(info.get("channels", 3))

    class ShapeCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = int(width)
            self.features = nn.Sequential(
                nn.Conv2d(channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU())
            self.head = nn.Linear(4 * w, 1)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.features(image)
            logits = self.head(features.mean(dim=(2, 3))).squeeze(1)
            cam = (features * self.head.weight.view(1, -1, 1, 1)).sum(dim=1) + self.head.bias
            return logits, cam

    return ShapeCNN()


# -- pipeline ----------------------------------------------------------------------------------------------
def _heatmap_png(cam: np.ndarray, size: int) -> bytes:
    """A grayscale PNG of ``sigmoid(cam)`` (bright: evidence for ``disc``), upscaled to ``size``."""
    import io

    import numpy as np
    from PIL import Image

    from verticals.postprocess import sigmoid

    pixels = np.rint(sigmoid(cam.astype(np.float64)) * 255.0).astype(np.uint8)
    img = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


class ShapesPipeline(Pipeline):
    name = "shapes"
    description = "Synthetic files reference pipeline: square or disc, a small CNN on tiny images"
    dataset = "images"
    model = "cnn"
    task = "binary"
    score_column = "score"
    primary_metric = "auc"
    output_columns = (
        OutputColumn("score", "float", "P(disc)"),
        OutputColumn("label", "string", "predicted shape (disc when score ≥ 0.5)"),
        OutputColumn("heatmap", "string", "class-activation map PNG, relative to the output folder "
                                          "(scoring into a folder only)"),
    )
    training = TrainingConfig(epochs=3, batch_size=32, learning_rate=1e-2, patience=3)

    def __init__(self, size: int = 32) -> None:
        self.size = int(size)

    def preprocessor(self, dataset: DatasetSpec) -> Preprocessor:
        return ImagePreprocessor(dataset.schema, size=self.size, positive=dataset.target_positive or POSITIVE)

    def evaluate(self, predictions: pl.DataFrame, batch: Batch) -> dict[str, Any]:
        """The default binary metrics, ``accuracy`` at 0.5, and ``auc_by_mode`` (per source image mode,
        from ``batch.aux``; modes whose examples are all one class have no AUC and are left out)."""
        import numpy as np

        from verticals.metrics import default_metrics

        y = np.asarray(batch.target)
        score = predictions.get_column("score").to_numpy()
        metrics: dict[str, Any] = dict(default_metrics("binary", y, score))
        metrics["accuracy"] = float(np.mean((score >= 0.5) == (y >= 0.5))) if y.size else float("nan")
        if batch.aux is not None and "mode" in batch.aux.columns:
            modes = batch.aux.get_column("mode").to_numpy()
            by_mode = {}
            for mode in sorted(set(modes.tolist())):
                pick = modes == mode
                if 0 < y[pick].sum() < pick.sum():
                    by_mode[str(mode)] = float(default_metrics("binary", y[pick], score[pick])["auc"])
            metrics["auc_by_mode"] = by_mode
        return metrics

    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: Batch, extras: Any) -> pl.DataFrame:
        import numpy as np
        import polars as pl

        from verticals.postprocess import sigmoid

        score = sigmoid(np.asarray(outputs["logits"], dtype=np.float64).reshape(-1))
        label = np.where(score >= 0.5, CLASSES[1], CLASSES[0])
        heatmaps: list[str | None] = [None] * len(score)
        if getattr(extras, "writes_side_outputs", False) and "cam" in outputs:
            size = int(extras.get("heatmap_size", 32)) if hasattr(extras, "get") else 32
            # Named by the example's ids (its path): unique within a part, the same in every run.
            keys = ["\x1f".join(map(str, row)) for row in batch.ids.iter_rows()]
            for i, (key, cam) in enumerate(zip(keys, outputs["cam"], strict=True)):
                digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
                target, relative = extras.side_output(f"heatmap-{digest}.png")
                Path(target).write_bytes(_heatmap_png(np.asarray(cam), size))
                heatmaps[i] = relative
        return pl.DataFrame({"score": score, "label": label, "heatmap": pl.Series(heatmaps, dtype=pl.String)})

    def fit_extras(self, context: Any) -> dict[str, Any]:
        return {"heatmap_size": self.size}


class FilesPlugin:
    """The files reference plugin.

    Args:
        root: folder the images are generated into (reused when it holds the same generation); default a
            folder under the model store's home, named by the parameters.
        images: number of image files; corrupt: how many of them (the last ones) are undecodable.
        seed: generator seed. size: side of the square the images are letterboxed to.
    """

    def __init__(self, root: Path | str | None = None, images: int = 300, *, corrupt: int = 0, seed: int = 0,
                 size: int = 32) -> None:
        self.root = Path(root) if root is not None else None
        self.images, self.corrupt, self.seed, self.size = int(images), int(corrupt), int(seed), int(size)

    def folder(self) -> Path:
        if self.root is not None:
            return self.root
        from verticals.store import home

        return home() / "datasets" / f"testing-files-{self.images}-{self.corrupt}-{self.seed}"

    @hookimpl
    def register_datasets(self, register):
        def load():
            return make_images(self.folder(), self.images, seed=self.seed, corrupt=self.corrupt)

        register(DatasetSpec(
            name="images",
            loader=load,
            schema=files_schema(),
            split=SplitSpec("stratified"),
            kind="files",
            target_positive=POSITIVE,
            description="Generated PNG images: a bright square or disc on noise (verticals.testing.files)",
            source="generator: verticals.testing.files.make_images",
        ))

    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="cnn", factory=cnn_factory, outputs=("logits", "cam"),
                           description="small CNN with a class-activation map"))

    @hookimpl
    def register_pipelines(self, register):
        register(ShapesPipeline(size=self.size))
